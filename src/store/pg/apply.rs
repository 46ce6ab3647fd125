//! A batch of commands as one transaction. The rules are the embedded store's (`Profile::apply`
//! for what happens to a profile; an ended follow-up only changes to sent; nothing is written
//! for an erased visitor), kept across nodes by locks instead of one writer thread:
//!
//! - Every visitor a batch names is locked first (`pg_advisory_xact_lock` on the id, in id
//!   order), so two nodes' batches for one visitor (a chat turn and a conversion, an erasure)
//!   run one after the other, each reading what the other committed. The tombstone is read
//!   after the lock is held, so an erasure committed meanwhile is seen.
//! - Idempotence lives in keys: a turn by its turn id, an order by its id, one pending job per
//!   visitor and job key (`ON CONFLICT DO NOTHING`), not in a read before the write.
//! - A turn, an email event or a pending question whose conversation or email is gone writes
//!   nothing: the statements test that the row they belong to exists.
//! - A batch of one command that is one statement about no visitor (most chat messages: one
//!   turn) runs without `BEGIN` and `COMMIT`: a statement is atomic by itself, and this saves two
//!   of its three round trips.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use deadpool_postgres::{Pool, Transaction};
use tokio_postgres::types::{Json, ToSql};

use super::{db, json, ms, pool_error, value};
use crate::domain::{Change, Job, OutboxItem, OutboxState, Profile};
use crate::ids::VisitorId;
use crate::store::{Command, Result};

pub(super) async fn batch(pool: &Pool, node: &str, mut commands: Vec<Command>) -> Result<()> {
    if commands.is_empty() {
        return Ok(());
    }
    let mut client = pool.get().await.map_err(pool_error)?;
    if commands.len() == 1 && one_statement(&commands[0]) {
        let mut batch = Batch { conn: Conn::Alone(&client), node, erased: HashSet::new(), profiles: BTreeMap::new() };
        return batch.apply(commands.remove(0)).await;
    }
    let tx = client.transaction().await.map_err(db)?;
    let visitors: BTreeSet<String> = commands.iter().filter_map(visitor_of).map(|v| v.to_string()).collect();
    let visitors: Vec<String> = visitors.into_iter().collect();
    let erased = lock(&tx, &visitors).await?;
    let mut batch = Batch { conn: Conn::Tx(&tx), node, erased, profiles: BTreeMap::new() };
    for command in commands {
        batch.apply(command).await?;
    }
    batch.finish_profiles().await?;
    tx.commit().await.map_err(db)
}

/// Commands that are one statement about no visitor's row (`apply` below), so that alone they
/// need no transaction.
fn one_statement(command: &Command) -> bool {
    matches!(
        command,
        Command::AppendTurn { .. }
            | Command::SetPending { .. }
            | Command::ConversationLocale { .. }
            | Command::ExpireConversation(_)
            | Command::EndAdminSession(_)
            | Command::SpendLink { .. }
            | Command::ForgetSpentLinks { .. }
            | Command::RecordSpend(_)
            | Command::EmailEvent { .. }
            | Command::TriggerShown { .. }
    )
}

/// The visitor a command is about, for the lock.
fn visitor_of(command: &Command) -> Option<VisitorId> {
    match command {
        Command::Visitor { visitor, .. }
        | Command::LinkEmail { visitor, .. }
        | Command::CancelFollowUps { visitor, .. }
        | Command::Erase { visitor, .. } => Some(*visitor),
        Command::OpenConversation(conversation) => Some(conversation.visitor),
        Command::Enqueue(item) | Command::Finish(item) => Some(item.visitor),
        Command::RecordOrder(order) => Some(order.visitor),
        _ => None,
    }
}

/// Locks `visitors` (sorted) for the transaction and returns those of them that were erased.
async fn lock(tx: &Transaction<'_>, visitors: &[String]) -> Result<HashSet<String>> {
    if visitors.is_empty() {
        return Ok(HashSet::new());
    }
    let locks =
        prepared(tx, "SELECT pg_advisory_xact_lock(hashtextextended(v, 0)) FROM unnest($1::text[]) AS v").await?;
    tx.execute(&locks, &[&visitors]).await.map_err(db)?;
    // A new statement, so a new snapshot: it sees an erasure committed while we waited.
    let erased = prepared(tx, "SELECT visitor FROM erased WHERE visitor = ANY($1)").await?;
    let rows = tx.query(&erased, &[&visitors]).await.map_err(db)?;
    Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
}

async fn prepared(tx: &Transaction<'_>, sql: &str) -> Result<tokio_postgres::Statement> {
    tx.prepare_cached(sql).await.map_err(db)
}

/// A profile as it was before the batch, and as the batch's commands left it.
struct Cached {
    before: Option<Profile>,
    after: Option<Profile>,
}

/// Where a batch's statements go: its transaction, or the connection for a batch of one
/// statement.
enum Conn<'t, 'c> {
    Tx(&'t Transaction<'c>),
    Alone(&'t deadpool_postgres::Client),
}

struct Batch<'t, 'c> {
    conn: Conn<'t, 'c>,
    node: &'t str,
    erased: HashSet<String>,
    /// Profiles are read once per batch and written once at its end, however many changes.
    profiles: BTreeMap<VisitorId, Cached>,
}

impl Batch<'_, '_> {
    async fn run(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        match self.conn {
            Conn::Tx(tx) => tx.execute(&prepared(tx, sql).await?, params).await,
            Conn::Alone(client) => client.execute(&client.prepare_cached(sql).await.map_err(db)?, params).await,
        }
        .map_err(db)
    }

    async fn rows(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<tokio_postgres::Row>> {
        match self.conn {
            Conn::Tx(tx) => tx.query(&prepared(tx, sql).await?, params).await,
            Conn::Alone(client) => client.query(&client.prepare_cached(sql).await.map_err(db)?, params).await,
        }
        .map_err(db)
    }

    fn is_erased(&self, visitor: &VisitorId) -> bool {
        self.erased.contains(&visitor.to_string())
    }

    async fn apply(&mut self, command: Command) -> Result<()> {
        match command {
            Command::Visitor { visitor, .. }
            | Command::LinkEmail { visitor, .. }
            | Command::CancelFollowUps { visitor, .. }
                if self.is_erased(&visitor) => {}
            Command::OpenConversation(ref c) if self.is_erased(&c.visitor) => {}
            Command::Enqueue(ref item) if self.is_erased(&item.visitor) => {}
            Command::Visitor { visitor, change } => {
                let cached = self.profile(visitor).await?;
                match (&mut cached.after, &change) {
                    (None, Change::Create { at, locale }) => cached.after = Some(Profile::new(visitor, *at, locale)),
                    (None, _) => {}
                    (Some(profile), change) => profile.apply(change),
                }
            }
            Command::LinkEmail { email, visitor } => {
                self.run(
                    "INSERT INTO emails (email, visitor) VALUES ($1, $2)
                     ON CONFLICT (email) DO UPDATE SET visitor = excluded.visitor",
                    &[&email, &visitor.to_string()],
                )
                .await?;
            }
            Command::RecordOrder(order) => {
                self.run(
                    "INSERT INTO orders (id, visitor, body) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
                    &[&order.id, &order.visitor.to_string(), &value(&order)],
                )
                .await?;
            }
            Command::OpenConversation(c) => {
                self.run(
                    "INSERT INTO conversations (id, visitor, started_at, body) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (id) DO NOTHING",
                    &[&c.id.to_string(), &c.visitor.to_string(), &ms(c.started_at), &value(&c)],
                )
                .await?;
            }
            Command::AppendTurn { conversation, turn, entries } => {
                let last_at = entries.last().map_or(0, |e| ms(e.at));
                self.run(
                    "INSERT INTO turns (conversation, turn, last_at, entries)
                     SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM conversations WHERE id = $1)
                     ON CONFLICT (conversation, turn) DO NOTHING",
                    &[&conversation.to_string(), &turn.to_string(), &last_at, &Json(&entries)],
                )
                .await?;
            }
            Command::SetPending { conversation, pending } => {
                self.run(
                    "UPDATE conversations SET body = jsonb_set(body, '{pending}', $2) WHERE id = $1",
                    &[&conversation.to_string(), &value(&pending)],
                )
                .await?;
            }
            Command::ConversationLocale { conversation, locale } => {
                self.run(
                    "UPDATE conversations SET body = jsonb_set(body, '{locale}', $2) WHERE id = $1",
                    &[&conversation.to_string(), &value(&locale)],
                )
                .await?;
            }
            Command::Enqueue(item) => {
                // Conflicts with the id (a retried batch) or with the same job pending: nothing.
                self.run(
                    "INSERT INTO outbox (id, visitor, job_key, pending, due_at, body) VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT DO NOTHING",
                    &[
                        &item.id.to_string(),
                        &item.visitor.to_string(),
                        &item.job.key(),
                        &(item.state == OutboxState::Pending),
                        &ms(item.due_at),
                        &value(&item),
                    ],
                )
                .await?;
            }
            Command::Finish(item) => self.finish(&item, true).await?,
            Command::CancelFollowUps { visitor, reason, at } => {
                let rows = self
                    .rows("SELECT body FROM outbox WHERE visitor = $1 AND pending FOR UPDATE", &[&visitor.to_string()])
                    .await?;
                for row in &rows {
                    let mut item: OutboxItem = json(row, 0, "outbox")?;
                    if matches!(item.job, Job::TagEvent { .. }) {
                        continue;
                    }
                    item.state = OutboxState::Cancelled { at, reason: reason.clone() };
                    self.finish(&item, false).await?;
                }
            }
            Command::Erase { visitor, at } => {
                let id = visitor.to_string();
                self.run("INSERT INTO erased (visitor, at) VALUES ($1, $2) ON CONFLICT DO NOTHING", &[&id, &ms(at)])
                    .await?;
                for sql in [
                    "DELETE FROM visitors WHERE id = $1",
                    "DELETE FROM emails WHERE visitor = $1",
                    "DELETE FROM conversations WHERE visitor = $1",
                    "DELETE FROM outbox WHERE visitor = $1",
                ] {
                    self.run(sql, &[&id]).await?;
                }
                self.profile(visitor).await?.after = None;
                self.profiles.get_mut(&visitor).expect("read above").before = None;
                self.erased.insert(id);
            }
            Command::ExpireConversation(id) => {
                self.run("DELETE FROM conversations WHERE id = $1", &[&id.to_string()]).await?;
            }
            Command::OpenAdminSession { id, at, expires_at } => {
                self.run("DELETE FROM admin_sessions WHERE expires_at <= $1", &[&ms(at)]).await?;
                self.run(
                    "INSERT INTO admin_sessions (id, expires_at) VALUES ($1, $2)
                     ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at",
                    &[&id.to_string(), &ms(expires_at)],
                )
                .await?;
            }
            Command::EndAdminSession(id) => {
                self.run("DELETE FROM admin_sessions WHERE id = $1", &[&id.to_string()]).await?;
            }
            Command::SpendLink { link, expires_at } => {
                self.run(
                    "INSERT INTO spent_links (link, expires_at) VALUES ($1, $2)
                     ON CONFLICT (link) DO UPDATE SET expires_at = excluded.expires_at",
                    &[&link.as_slice(), &ms(expires_at)],
                )
                .await?;
            }
            Command::ForgetSpentLinks { at } => {
                self.run("DELETE FROM spent_links WHERE expires_at <= $1", &[&ms(at)]).await?;
            }
            Command::RecordSpend(spend) => {
                self.run(
                    "INSERT INTO spend (date, campaign, platform, body) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (date, campaign, platform) DO UPDATE SET body = excluded.body",
                    &[&spend.date, &spend.campaign, &spend.platform, &value(&spend)],
                )
                .await?;
            }
            Command::EmailEvent { item, event, at } => {
                self.run(
                    "INSERT INTO email_events (item, event, at)
                     SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM outbox WHERE id = $1)
                     ON CONFLICT (item, event) DO NOTHING",
                    &[&item.to_string(), &(event as i16), &ms(at)],
                )
                .await?;
            }
            Command::TriggerShown { trigger, variant } => {
                self.run(
                    "INSERT INTO triggers_shown (trigger, variant, shown) VALUES ($1, $2, 1)
                     ON CONFLICT (trigger, variant) DO UPDATE SET shown = triggers_shown.shown + 1",
                    &[&trigger, &(variant as i32)],
                )
                .await?;
            }
        }
        Ok(())
    }

    /// The outcome of a run. An ended job only changes to sent (a delivery that raced with a
    /// cancel happened); a worker's outcome other than sent counts only while the job is still
    /// leased to this node (`leased`), so a node whose lease ran out cannot overwrite the
    /// outcome of the node that took the job over.
    async fn finish(&self, item: &OutboxItem, leased: bool) -> Result<()> {
        let rows =
            self.rows("SELECT body, lease_owner FROM outbox WHERE id = $1 FOR UPDATE", &[&item.id.to_string()]).await?;
        let Some(row) = rows.first() else { return Ok(()) };
        let old: OutboxItem = json(row, 0, "outbox")?;
        let owner: Option<String> = row.get(1);
        let sent = matches!(item.state, OutboxState::Sent { .. });
        if old.state != OutboxState::Pending && !sent {
            return Ok(());
        }
        if leased && !sent && owner.as_deref().is_some_and(|owner| owner != self.node) {
            log::warn!(
                "outbox: {} ({}) was taken over by another node; its outcome here is dropped",
                item.job.describe(),
                item.id
            );
            return Ok(());
        }
        self.run(
            "UPDATE outbox SET body = $2, pending = $3, due_at = $4, lease_owner = NULL, lease_until = NULL WHERE id = $1",
            &[&item.id.to_string(), &value(item), &(item.state == OutboxState::Pending), &ms(item.due_at)],
        )
        .await?;
        Ok(())
    }

    async fn profile(&mut self, visitor: VisitorId) -> Result<&mut Cached> {
        if !self.profiles.contains_key(&visitor) {
            let rows = self.rows("SELECT profile FROM visitors WHERE id = $1", &[&visitor.to_string()]).await?;
            let before: Option<Profile> = rows.first().map(|r| json(r, 0, "visitors")).transpose()?;
            self.profiles.insert(visitor, Cached { after: before.clone(), before });
        }
        Ok(self.profiles.get_mut(&visitor).expect("inserted above"))
    }

    /// Writes the profiles the batch changed, with the columns the admin's queries use.
    async fn finish_profiles(&mut self) -> Result<()> {
        for (visitor, Cached { before, after }) in std::mem::take(&mut self.profiles) {
            let Some(after) = after else { continue };
            if before.as_ref() == Some(&after) {
                continue;
            }
            self.run(
                "INSERT INTO visitors (id, status, campaign, last_seen_at, profile) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (id) DO UPDATE SET status = excluded.status, campaign = excluded.campaign,
                     last_seen_at = excluded.last_seen_at, profile = excluded.profile",
                &[
                    &visitor.to_string(),
                    &(after.status as i16),
                    &after.campaign,
                    &ms(after.last_seen_at),
                    &value(&after),
                ],
            )
            .await?;
        }
        Ok(())
    }
}
