//! What the nodes sharing a database know of each other: which node holds which visitor's chat
//! (`connected`, kept true by each node's heartbeat in `nodes`), and a person's answer written in
//! one node's `/admin` for a chat held by another. The answer is a row of `agent_messages`;
//! `NOTIFY nudge_agent` only wakes the other nodes, which read the rows themselves, so an answer
//! written while a node's listener was reconnecting is read when it is back.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio_postgres::{AsyncMessage, NoTls};

use super::{Pg, db, ms, pool_error};
use crate::ids::VisitorId;
use crate::store::Result;

/// How often a node says it is alive, and how long the others believe it.
const HEARTBEAT: Duration = Duration::from_secs(2);
const ALIVE_MS: u64 = 10_000;
/// How long an answer is kept for a node to read it.
const KEEP_MS: u64 = 5 * 60 * 1000;

/// Hands a person's answer to this node's open chats of the visitor.
pub type Deliver = Arc<dyn Fn(VisitorId, String) + Send + Sync>;

/// Changes of where this node's chats are: (visitor, open).
pub(super) type PresenceSender = tokio::sync::mpsc::UnboundedSender<(VisitorId, bool)>;
type Presence = tokio::sync::mpsc::UnboundedReceiver<(VisitorId, bool)>;

impl Pg {
    /// Starts this node's heartbeat and its listener for answers written on other nodes.
    pub(in crate::store) fn join(&self, deliver: Deliver) {
        let (pool, node, config) = (self.pool.clone(), self.node.clone(), self.config.clone());
        let (presence, changes) = tokio::sync::mpsc::unbounded_channel();
        if self.presence.set(presence).is_err() {
            return;
        }
        self.runtime().spawn(heartbeat(pool.clone(), node.clone()));
        self.runtime().spawn(record_presence(pool.clone(), node, changes));
        self.runtime().spawn(listen(config, pool, deliver));
    }

    /// Records that this node holds (or no longer holds) a chat of `visitor`: in the
    /// background, as it is not part of any reply, and in order, so that a chat that opened
    /// and closed at once is not left recorded as open.
    pub(in crate::store) fn set_connected(&self, visitor: VisitorId, connected: bool) {
        if let Some(presence) = self.presence.get() {
            let _ = presence.send((visitor, connected));
        }
    }

    /// Whether a live node other than this one holds a chat of `visitor`.
    pub(in crate::store) fn connected_elsewhere(&self, visitor: &VisitorId) -> Result<bool> {
        self.exists(
            "SELECT 1 FROM connected c JOIN nodes n ON n.node = c.node
             WHERE c.visitor = $1 AND c.node <> $2 AND n.seen_at > $3",
            params![visitor.to_string(), self.node.clone(), ms(crate::now_ms().saturating_sub(ALIVE_MS))],
        )
    }

    /// Leaves a person's answer for the node that holds the visitor's chat, and wakes the nodes.
    pub(in crate::store) fn post_agent_message(&self, visitor: &VisitorId, text: &str) -> Result<()> {
        let (pool, visitor, text) = (self.pool.clone(), visitor.to_string(), text.to_string());
        self.block(async move {
            let mut client = pool.get().await.map_err(pool_error)?;
            let tx = client.transaction().await.map_err(db)?;
            let now = ms(crate::now_ms());
            tx.execute("INSERT INTO agent_messages (visitor, text, at) VALUES ($1, $2, $3)", &[&visitor, &text, &now])
                .await
                .map_err(db)?;
            // Delivered when the transaction commits, with the row already visible.
            tx.execute("NOTIFY nudge_agent", &[]).await.map_err(db)?;
            tx.commit().await.map_err(db)
        })
    }
}

/// Where this node's chats are, written one change after the other.
async fn record_presence(pool: Pool, node: String, mut changes: Presence) {
    while let Some((visitor, connected)) = changes.recv().await {
        let sql = match connected {
            true => "INSERT INTO connected (visitor, node) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            false => "DELETE FROM connected WHERE visitor = $1 AND node = $2",
        };
        let result = match pool.get().await {
            Ok(client) => client.execute(sql, &[&visitor.to_string(), &node]).await.map(drop).map_err(db),
            Err(e) => Err(pool_error(e)),
        };
        if let Err(e) = result {
            log::warn!("store: cannot record where {visitor} is connected: {e}");
        }
    }
}

/// Says every `HEARTBEAT` that this node is alive, forgets nodes long gone with their
/// connections, and removes answers old enough to have been read.
async fn heartbeat(pool: Pool, node: String) {
    loop {
        let now = crate::now_ms();
        let beat = async {
            let client = pool.get().await.map_err(pool_error)?;
            client
                .execute(
                    "INSERT INTO nodes (node, seen_at) VALUES ($1, $2) ON CONFLICT (node) DO UPDATE SET seen_at = $2",
                    &[&node, &ms(now)],
                )
                .await
                .map_err(db)?;
            let gone = ms(now.saturating_sub(10 * ALIVE_MS));
            client
                .execute("DELETE FROM connected WHERE node IN (SELECT node FROM nodes WHERE seen_at < $1)", &[&gone])
                .await
                .map_err(db)?;
            client.execute("DELETE FROM nodes WHERE seen_at < $1", &[&gone]).await.map_err(db)?;
            let old = ms(now.saturating_sub(KEEP_MS));
            client.execute("DELETE FROM agent_messages WHERE at < $1", &[&old]).await.map_err(db)
        };
        if let Err(e) = beat.await {
            log::warn!("store: heartbeat: {e}");
        }
        tokio::time::sleep(HEARTBEAT).await;
    }
}

/// Listens for `nudge_agent` on a connection of its own, reconnecting when it breaks; at every
/// wake-up (and after every reconnect) reads the answers it has not handed on yet.
async fn listen(config: tokio_postgres::Config, pool: Pool, deliver: Deliver) {
    let since = crate::now_ms();
    let mut handed = HashSet::new();
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let (wake, mut woken) = tokio::sync::mpsc::unbounded_channel();
                let driver = tokio::spawn(async move {
                    while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                        match message {
                            Ok(AsyncMessage::Notification(_)) => drop(wake.send(())),
                            Ok(_) => {}
                            Err(_) => break,
                        }
                    }
                });
                if let Err(e) = client.batch_execute("LISTEN nudge_agent").await {
                    log::warn!("store: cannot listen for answers from other nodes: {e}");
                } else {
                    loop {
                        if let Err(e) = hand_on(&pool, since, &mut handed, &deliver).await {
                            log::warn!("store: cannot read answers from other nodes: {e}");
                        }
                        if woken.recv().await.is_none() {
                            break;
                        }
                    }
                }
                driver.abort();
            }
            Err(e) => log::warn!("store: the listener for answers from other nodes cannot connect: {}", db(e)),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Hands on every answer written since this node started that it has not handed on yet.
/// (Read by time, not by the highest id seen: ids are taken before commit, so a smaller one can
/// commit later.)
async fn hand_on(pool: &Pool, since: u64, handed: &mut HashSet<i64>, deliver: &Deliver) -> Result<()> {
    let client = pool.get().await.map_err(pool_error)?;
    let floor = since.max(crate::now_ms().saturating_sub(KEEP_MS));
    let rows = client
        .query("SELECT id, visitor, text FROM agent_messages WHERE at >= $1 ORDER BY id", &[&ms(floor)])
        .await
        .map_err(db)?;
    let mut current = HashSet::new();
    for row in &rows {
        let (id, visitor, text): (i64, String, String) = (row.get(0), row.get(1), row.get(2));
        current.insert(id);
        if !handed.contains(&id)
            && let Ok(visitor) = VisitorId::parse(&visitor)
        {
            deliver(visitor, text);
        }
    }
    // Only what the next read can return needs remembering.
    *handed = current;
    Ok(())
}
