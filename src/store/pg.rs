//! The PostgreSQL backend (`--store postgres://…`), shared by any number of Nudge nodes. Each
//! batch of commands is one transaction (`pg/apply.rs`); each read is one query. The schema is
//! embedded (`pg/migrations/`) and applied at start.
//!
//! The driver is async (tokio-postgres, pooled by deadpool) and runs on the store's own small
//! runtime, so that the store's blocking callers (reader threads, the outbox worker, the command
//! line) and its async ones (chat sessions on actix's runtimes) wait on it the same way, and
//! the pool's connections never belong to a runtime that might stop first.

mod apply;
mod migrate;

use std::collections::VecDeque;
use std::future::Future;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use serde::de::DeserializeOwned;
use tokio_postgres::types::{Json, ToSql};
use tokio_postgres::{NoTls, Row};

use super::{Command, EmailEvent, Result, Seen, StoreError};
use crate::domain::{Conversation, Entry, Order, OutboxItem, OutboxState, Profile, Spend, Status};
use crate::ids::{AdminSessionId, ConversationId, OutboxId, VisitorId};

pub use migrate::SCHEMA_VERSION;

/// Connections per node: enough for the chat's commits, the readers and the outbox at once.
const POOL: usize = 16;
/// How long a commit or read waits for a connection, and a connection attempt for the server,
/// before it fails (an `internal` error frame) instead of hanging while the database is away.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Rows per page of a listing read.
const PAGE: i64 = 500;

pub(super) struct Pg {
    pool: Pool,
    /// For connections of their own (the listener for other nodes' answers).
    config: tokio_postgres::Config,
    runtime: Option<tokio::runtime::Runtime>,
    /// This node's name in outbox leases and in `connected`.
    node: String,
    /// Where changes of this node's chats go, once the node joined (`cluster.rs`).
    presence: std::sync::OnceLock<cluster::PresenceSender>,
    /// Batches committed (each its own transaction).
    batches: AtomicU64,
}

impl Drop for Pg {
    /// The runtime may be dropped on an async thread (the server's shutdown): it must not block.
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A query parameter, owned so that the query can run on the store's runtime.
pub(super) type Param = Box<dyn ToSql + Send + Sync>;

macro_rules! params {
    ($($p:expr),* $(,)?) => { vec![$(Box::new($p) as $crate::store::pg::Param),*] };
}

// After `params!`, which it uses.
mod cluster;

/// `url` with its password replaced, for messages and logs.
pub(super) fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => url.split('@').next_back().unwrap_or("").to_string(),
    }
}

/// A driver error as one readable line: the server's message when it sent one.
pub(super) fn db(e: tokio_postgres::Error) -> StoreError {
    let reason = match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                text = format!("{text}: {cause}");
                source = cause.source();
            }
            text
        }
    };
    StoreError::Postgres(reason)
}

fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => db(e),
        other => StoreError::Postgres(format!("no database connection: {other}")),
    }
}

/// Milliseconds as PostgreSQL's `bigint`.
fn ms(at: u64) -> i64 {
    i64::try_from(at).unwrap_or(i64::MAX)
}

fn u(at: i64) -> u64 {
    u64::try_from(at).unwrap_or(0)
}

fn json<T: DeserializeOwned>(row: &Row, column: usize, table: &'static str) -> Result<T> {
    row.try_get::<_, Json<T>>(column)
        .map(|j| j.0)
        .map_err(|e| StoreError::Corrupt { tree: table, reason: e.to_string() })
}

fn value<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).expect("store values serialize")
}

/// A listing read in pages: `fetch(after)` returns the page after the key `after`, each row with
/// its key.
fn pages<'a, K: Clone + 'a, T: 'a>(
    mut fetch: impl FnMut(Option<K>) -> Result<Vec<(K, T)>> + 'a,
) -> impl Iterator<Item = Result<T>> + 'a {
    let (mut after, mut buffer, mut done) = (None::<K>, VecDeque::new(), false);
    std::iter::from_fn(move || {
        if buffer.is_empty() && !done {
            match fetch(after.clone()) {
                Ok(rows) => {
                    done = (rows.len() as i64) < PAGE;
                    after = rows.last().map(|(key, _)| key.clone());
                    buffer.extend(rows.into_iter().map(|(_, row)| row));
                }
                Err(e) => {
                    done = true;
                    return Some(Err(e));
                }
            }
        }
        buffer.pop_front().map(Ok)
    })
}

impl Pg {
    /// Connects, checks that the database is reachable, and applies the schema's migrations.
    pub(super) fn connect(url: &str) -> Result<Pg> {
        let mut config =
            tokio_postgres::Config::from_str(url).map_err(|e| StoreError::Postgres(format!("{}: {e}", redact(url))))?;
        config.connect_timeout(TIMEOUT);
        if config.get_application_name().is_none() {
            config.application_name("nudge");
        }
        let manager =
            Manager::from_config(config.clone(), NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("nudge-pg")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Postgres(format!("cannot start the database runtime: {e}")))?;
        let pool = {
            let _inside = runtime.enter();
            Pool::builder(manager)
                .max_size(POOL)
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .wait_timeout(Some(TIMEOUT))
                .create_timeout(Some(TIMEOUT))
                .recycle_timeout(Some(TIMEOUT))
                .build()
                .map_err(|e| StoreError::Postgres(format!("cannot build the connection pool: {e}")))?
        };
        let node = OutboxId::mint(crate::now_ms()).to_string();
        let (batches, presence) = (AtomicU64::new(0), std::sync::OnceLock::new());
        let pg = Pg { pool, config, runtime: Some(runtime), node, presence, batches };
        let pool = pg.pool.clone();
        pg.block(async move { migrate::run(&pool).await }).map_err(|e| match e {
            StoreError::Postgres(reason) => StoreError::Postgres(format!("{}: {reason}", redact(url))),
            other => other,
        })?;
        Ok(pg)
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("the runtime lives until drop")
    }

    /// Runs `work` on the store's runtime and waits for it on this thread (any thread: an
    /// async one blocks, as with sled's reads).
    fn block<T: Send + 'static>(&self, work: impl Future<Output = Result<T>> + Send + 'static) -> Result<T> {
        let (done, wait) = std::sync::mpsc::sync_channel(1);
        self.runtime().spawn(async move { drop(done.send(work.await)) });
        wait.recv().map_err(|_| StoreError::Closed)?
    }

    fn rows(&self, sql: &'static str, params: Vec<Param>) -> Result<Vec<Row>> {
        let pool = self.pool.clone();
        self.block(async move {
            let client = pool.get().await.map_err(pool_error)?;
            let statement = client.prepare_cached(sql).await.map_err(db)?;
            let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect();
            client.query(&statement, &refs).await.map_err(db)
        })
    }

    fn one<T>(&self, sql: &'static str, params: Vec<Param>, read: impl Fn(&Row) -> Result<T>) -> Result<Option<T>> {
        self.rows(sql, params)?.first().map(read).transpose()
    }

    fn exists(&self, sql: &'static str, params: Vec<Param>) -> Result<bool> {
        Ok(!self.rows(sql, params)?.is_empty())
    }

    fn count(&self, sql: &'static str, params: Vec<Param>) -> usize {
        let counted = self.one(sql, params, |row| row.try_get::<_, i64>(0).map_err(db));
        match counted {
            Ok(n) => n.unwrap_or(0) as usize,
            Err(e) => {
                log::error!("store: cannot count: {e}");
                0
            }
        }
    }

    pub(super) async fn commit(&self, commands: Vec<Command>) -> Result<()> {
        let (done, wait) = tokio::sync::oneshot::channel();
        let (pool, node) = (self.pool.clone(), self.node.clone());
        self.runtime().spawn(async move { drop(done.send(apply::batch(&pool, &node, commands).await)) });
        let result = wait.await.map_err(|_| StoreError::Closed)?;
        self.counted(result)
    }

    pub(super) fn commit_blocking(&self, commands: Vec<Command>) -> Result<()> {
        let (pool, node) = (self.pool.clone(), self.node.clone());
        let result = self.block(async move { apply::batch(&pool, &node, commands).await });
        self.counted(result)
    }

    fn counted(&self, result: Result<()>) -> Result<()> {
        if result.is_ok() {
            self.batches.fetch_add(1, Ordering::Relaxed);
            // Each batch is its own transaction: a group of one.
            metrics::histogram!(crate::metrics::name::GROUP_BATCHES).record(1.0);
        }
        result
    }

    pub(super) fn stats(&self) -> (u64, u64) {
        // Every batch is one transaction, durable at its commit.
        let batches = self.batches.load(Ordering::Relaxed);
        (batches, batches)
    }

    pub(super) fn visitor(&self, id: &VisitorId) -> Result<Option<Profile>> {
        self.one("SELECT profile FROM visitors WHERE id = $1", params![id.to_string()], |r| json(r, 0, "visitors"))
    }

    pub(super) fn latest_conversation(&self, visitor: &VisitorId) -> Result<Option<Conversation>> {
        self.one(
            "SELECT c.body, (SELECT t.last_at FROM turns t WHERE t.conversation = c.id ORDER BY t.turn DESC LIMIT 1)
             FROM conversations c WHERE c.visitor = $1 ORDER BY c.id DESC LIMIT 1",
            params![visitor.to_string()],
            conversation,
        )
    }

    pub(super) fn conversation(&self, id: &ConversationId) -> Result<Option<Conversation>> {
        self.one(
            "SELECT c.body, (SELECT t.last_at FROM turns t WHERE t.conversation = c.id ORDER BY t.turn DESC LIMIT 1)
             FROM conversations c WHERE c.id = $1",
            params![id.to_string()],
            conversation,
        )
    }

    pub(super) fn conversations(&self) -> impl Iterator<Item = Result<Conversation>> + '_ {
        pages(move |after: Option<String>| {
            let rows = self.rows(
                "SELECT c.body, (SELECT t.last_at FROM turns t WHERE t.conversation = c.id ORDER BY t.turn DESC LIMIT 1), c.id
                 FROM conversations c WHERE c.id > $1 ORDER BY c.id LIMIT $2",
                params![after.unwrap_or_default(), PAGE],
            )?;
            rows.iter().map(|r| Ok((r.try_get::<_, String>(2).map_err(db)?, conversation(r)?))).collect()
        })
    }

    pub(super) fn visitor_by_email(&self, email: &str) -> Result<Option<Profile>> {
        self.one(
            "SELECT v.profile FROM emails e JOIN visitors v ON v.id = e.visitor WHERE e.email = $1",
            params![email.to_string()],
            |r| json(r, 0, "visitors"),
        )
    }

    pub(super) fn order(&self, id: &str) -> Result<Option<Order>> {
        self.one("SELECT body FROM orders WHERE id = $1", params![id.to_string()], |r| json(r, 0, "orders"))
    }

    /// Visitors by id from `sql` (its `$1` the page's cursor, `$2` its size, `$3` and on
    /// `filter`'s parameters), a page at a time.
    fn visitors_where<'a>(
        &'a self,
        sql: &'static str,
        filter: impl Fn() -> Vec<Param> + 'a,
    ) -> impl Iterator<Item = Result<Profile>> + 'a {
        pages(move |after: Option<String>| {
            let mut params = params![after.unwrap_or_default(), PAGE];
            params.extend(filter());
            let rows = self.rows(sql, params)?;
            rows.iter().map(|r| Ok((r.try_get::<_, String>(1).map_err(db)?, json(r, 0, "visitors")?))).collect()
        })
    }

    pub(super) fn visitors(&self) -> impl Iterator<Item = Result<Profile>> + '_ {
        self.visitors_where("SELECT profile, id FROM visitors WHERE id > $1 ORDER BY id LIMIT $2", Vec::new)
    }

    pub(super) fn visitor_count(&self) -> usize {
        self.count("SELECT count(*) FROM visitors", params![])
    }

    pub(super) fn visitors_by_last_seen(
        &self,
        after: Option<Seen>,
    ) -> impl Iterator<Item = Result<(Seen, Profile)>> + '_ {
        let first = after;
        pages(move |after: Option<Seen>| {
            let rows = match after.or(first) {
                Some(after) => self.rows(
                    "SELECT profile FROM visitors WHERE (last_seen_at, id) < ($1, $2)
                     ORDER BY last_seen_at DESC, id DESC LIMIT $3",
                    params![ms(after.at), after.visitor.to_string(), PAGE],
                )?,
                None => self
                    .rows("SELECT profile FROM visitors ORDER BY last_seen_at DESC, id DESC LIMIT $1", params![PAGE])?,
            };
            rows.iter()
                .map(|r| {
                    let profile: Profile = json(r, 0, "visitors")?;
                    let seen = Seen { at: profile.last_seen_at, visitor: profile.id };
                    Ok((seen, (seen, profile)))
                })
                .collect()
        })
    }

    pub(super) fn count_with_status(&self, status: Status) -> usize {
        self.count("SELECT count(*) FROM visitors WHERE status = $1", params![status as i16])
    }

    pub(super) fn count_in_campaign(&self, campaign: &str) -> usize {
        self.count("SELECT count(*) FROM visitors WHERE campaign = $1", params![campaign.to_string()])
    }

    pub(super) fn visitors_with_status(&self, status: Status) -> impl Iterator<Item = Result<Profile>> + '_ {
        self.visitors_where(
            "SELECT profile, id FROM visitors WHERE id > $1 AND status = $3 ORDER BY id LIMIT $2",
            move || params![status as i16],
        )
    }

    pub(super) fn visitors_in_campaign(&self, campaign: &str) -> impl Iterator<Item = Result<Profile>> + '_ {
        self.visitors_where("SELECT profile, id FROM visitors WHERE id > $1 AND campaign = $3 ORDER BY id LIMIT $2", {
            let campaign = campaign.to_string();
            move || params![campaign.clone()]
        })
    }

    pub(super) fn conversations_of(&self, visitor: &VisitorId) -> Result<Vec<Conversation>> {
        let rows = self.rows(
            "SELECT c.body, (SELECT t.last_at FROM turns t WHERE t.conversation = c.id ORDER BY t.turn DESC LIMIT 1)
             FROM conversations c WHERE c.visitor = $1 ORDER BY c.id",
            params![visitor.to_string()],
        )?;
        rows.iter().map(conversation).collect()
    }

    pub(super) fn transcript(&self, conversation: &ConversationId) -> Result<Vec<Entry>> {
        let rows = self.rows(
            "SELECT entries FROM turns WHERE conversation = $1 ORDER BY turn",
            params![conversation.to_string()],
        )?;
        let mut entries = Vec::new();
        for row in &rows {
            entries.extend(json::<Vec<Entry>>(row, 0, "turns")?);
        }
        Ok(entries)
    }

    /// Leases up to `limit` due jobs to this node. `SKIP LOCKED`: two nodes claiming at once get
    /// different jobs instead of waiting for each other.
    pub(super) fn claim_due(&self, now: u64, limit: usize, lease_ms: u64) -> Result<Vec<OutboxItem>> {
        let rows = self.rows(
            "UPDATE outbox SET lease_owner = $3, lease_until = $4 WHERE id IN (
                SELECT id FROM outbox WHERE pending AND due_at <= $1 AND (lease_until IS NULL OR lease_until <= $1)
                ORDER BY due_at, id LIMIT $2 FOR UPDATE SKIP LOCKED)
             RETURNING body",
            params![ms(now), limit as i64, self.node.clone(), ms(now.saturating_add(lease_ms))],
        )?;
        let mut due: Vec<OutboxItem> = rows.iter().map(|r| json(r, 0, "outbox")).collect::<Result<_>>()?;
        due.sort_by_key(|item| (item.due_at, item.id));
        Ok(due)
    }

    /// When the earliest pending job can run: its due time, or when another node's lease on it
    /// runs out.
    pub(super) fn next_follow_up_at(&self) -> Result<Option<u64>> {
        let next = self.one(
            "SELECT min(greatest(due_at, coalesce(lease_until, 0))) FROM outbox WHERE pending",
            params![],
            |r| r.try_get::<_, Option<i64>>(0).map_err(db),
        )?;
        Ok(next.flatten().map(u))
    }

    pub(super) fn follow_up(&self, id: &OutboxId) -> Result<Option<OutboxItem>> {
        self.one("SELECT body FROM outbox WHERE id = $1", params![id.to_string()], |r| json(r, 0, "outbox"))
    }

    pub(super) fn follow_ups(&self) -> impl Iterator<Item = Result<OutboxItem>> + '_ {
        pages(move |after: Option<String>| {
            let rows = self.rows(
                "SELECT body, id FROM outbox WHERE id > $1 ORDER BY id LIMIT $2",
                params![after.unwrap_or_default(), PAGE],
            )?;
            rows.iter().map(|r| Ok((r.try_get::<_, String>(1).map_err(db)?, json(r, 0, "outbox")?))).collect()
        })
    }

    pub(super) fn admin_session_live(&self, id: &AdminSessionId, now: u64) -> Result<bool> {
        self.exists("SELECT 1 FROM admin_sessions WHERE id = $1 AND expires_at > $2", params![id.to_string(), ms(now)])
    }

    pub(super) fn email_event(&self, item: &OutboxId, event: EmailEvent) -> Result<bool> {
        self.exists(
            "SELECT 1 FROM email_events WHERE item = $1 AND event = $2",
            params![item.to_string(), event as i16],
        )
    }

    pub(super) fn marketing_sent_to(&self, visitor: &VisitorId) -> Result<Vec<u64>> {
        let rows =
            self.rows("SELECT body FROM outbox WHERE visitor = $1 AND NOT pending", params![visitor.to_string()])?;
        let mut sent = Vec::new();
        for row in &rows {
            let item: OutboxItem = json(row, 0, "outbox")?;
            if let (Some(_), OutboxState::Sent { at }) = (item.job.marketing_email(), &item.state) {
                sent.push(*at);
            }
        }
        Ok(sent)
    }

    pub(super) fn triggers_shown(&self) -> Result<std::collections::BTreeMap<(String, u32), u64>> {
        let rows = self.rows("SELECT trigger, variant, shown FROM triggers_shown", params![])?;
        Ok(rows.iter().map(|r| ((r.get(0), r.get::<_, i32>(1) as u32), r.get::<_, i64>(2) as u64)).collect())
    }

    pub(super) fn spend(&self) -> impl Iterator<Item = Result<Spend>> + '_ {
        let rows = self.rows("SELECT body FROM spend ORDER BY date, campaign, platform", params![]);
        let rows: Vec<Result<Spend>> = match rows {
            Ok(rows) => rows.iter().map(|r| json(r, 0, "spend")).collect(),
            Err(e) => vec![Err(e)],
        };
        rows.into_iter()
    }

    pub(super) fn link_spent(&self, link: &[u8; 16]) -> Result<bool> {
        self.exists("SELECT 1 FROM spent_links WHERE link = $1", params![link.to_vec()])
    }

    pub(super) fn is_erased(&self, visitor: &VisitorId) -> Result<bool> {
        self.exists("SELECT 1 FROM erased WHERE visitor = $1", params![visitor.to_string()])
    }

    pub(super) fn shared_secret(&self, name: &str, create: impl FnOnce() -> String) -> Result<String> {
        let read = |pg: &Pg| {
            pg.one("SELECT value FROM secrets WHERE name = $1", params![name.to_string()], |r| {
                r.try_get::<_, String>(0).map_err(db)
            })
        };
        if let Some(value) = read(self)? {
            return Ok(value);
        }
        self.rows(
            "INSERT INTO secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            params![name.to_string(), create()],
        )?;
        read(self)?
            .ok_or_else(|| StoreError::Postgres(format!("the shared secret `{name}` vanished while it was read")))
    }

    pub(super) fn set_shared_secret(&self, name: &str, value: &str) -> Result<()> {
        self.rows(
            "INSERT INTO secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            params![name.to_string(), value.to_string()],
        )
        .map(drop)
    }

    /// Runs `work` unless another node holds the lock `name` (a session advisory lock on a
    /// connection of its own, held while `work` runs).
    pub(super) fn exclusive<T>(&self, name: &str, work: impl FnOnce() -> T) -> Result<Option<T>> {
        let (pool, key) = (self.pool.clone(), name.to_string());
        let (client, held) = self.block(async move {
            let client = pool.get().await.map_err(pool_error)?;
            let held = client.query_one(LOCK_SQL, &[&key]).await.map_err(db)?.get::<_, bool>(0);
            Ok((client, held))
        })?;
        if !held {
            return Ok(None);
        }
        let mut guard = Held(Some(client));
        let done = work();
        let (client, key) = (guard.0.take().expect("held until here"), name.to_string());
        self.block(async move { client.execute(UNLOCK_SQL, &[&key]).await.map_err(db) })?;
        Ok(Some(done))
    }

    /// Every commit is durable when it returns (`synchronous_commit` is the server's default,
    /// and `migrate` refuses a database where it is off).
    pub(super) fn flush(&self) -> Result<()> {
        Ok(())
    }
}

const LOCK_SQL: &str = "SELECT pg_try_advisory_lock(hashtextextended($1, 1))";
const UNLOCK_SQL: &str = "SELECT pg_advisory_unlock(hashtextextended($1, 1))";

/// The connection holding an `exclusive` lock. Should `work` panic, the connection is closed
/// instead of going back to the pool with the lock still held.
struct Held(Option<deadpool_postgres::Object>);

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            drop(deadpool_postgres::Object::take(client));
        }
    }
}

/// A conversation row: its body and the time of its last turn.
fn conversation(row: &Row) -> Result<Conversation> {
    let mut conversation: Conversation = json(row, 0, "conversations")?;
    let last: Option<i64> = row.try_get(1).map_err(db)?;
    conversation.last_at = last.map_or(conversation.started_at, u);
    Ok(conversation)
}
