//! Schema migrations, embedded in the binary and applied in order at start (and by `nudge
//! migrate`). Nodes starting together take turns through an advisory lock; a database migrated
//! by a newer Nudge is refused, since this binary would misread it.

use deadpool_postgres::Pool;

use super::{db, pool_error};
use crate::store::{Result, StoreError};

const MIGRATIONS: &[&str] = &[
    include_str!("migrations/001_init.sql"),
    include_str!("migrations/002_nodes.sql"),
    include_str!("migrations/003_triggers.sql"),
];

/// The schema version this binary writes.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// Held while one node migrates; any other number is free for other applications.
const LOCK: i64 = 0x6e75_6467_655f_6d67; // "nudge_mg"

/// Applies the migrations the database lacks; returns the versions applied.
pub(super) async fn run(pool: &Pool) -> Result<Vec<i32>> {
    let mut client = pool.get().await.map_err(pool_error)?;
    let synchronous: String = client.query_one("SHOW synchronous_commit", &[]).await.map_err(db)?.get(0);
    if synchronous == "off" {
        return Err(StoreError::Schema(
            "the database has synchronous_commit = off: a reply would be sent before its turn is durable; turn it on for Nudge's database".into(),
        ));
    }
    client.execute("SELECT pg_advisory_lock($1)", &[&LOCK]).await.map_err(db)?;
    let result = apply(&mut client).await;
    let unlocked = client.execute("SELECT pg_advisory_unlock($1)", &[&LOCK]).await.map_err(db);
    let applied = result?;
    unlocked?;
    Ok(applied)
}

async fn apply(client: &mut deadpool_postgres::Client) -> Result<Vec<i32>> {
    let fresh: bool = client.query_one("SELECT to_regclass('nudge_migrations') IS NULL", &[]).await.map_err(db)?.get(0);
    if fresh {
        client
            .batch_execute(
                "CREATE TABLE nudge_migrations (
                    version integer PRIMARY KEY,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )",
            )
            .await
            .map_err(db)?;
    }
    let current: i32 =
        client.query_one("SELECT coalesce(max(version), 0) FROM nudge_migrations", &[]).await.map_err(db)?.get(0);
    if current > SCHEMA_VERSION {
        return Err(StoreError::Schema(format!(
            "the database's schema is version {current}, newer than this nudge knows ({SCHEMA_VERSION}): run the nudge that migrated it, or a newer one"
        )));
    }
    let mut applied = Vec::new();
    for (version, sql) in (current + 1..).zip(&MIGRATIONS[current as usize..]) {
        let tx = client.transaction().await.map_err(db)?;
        tx.batch_execute(sql).await.map_err(|e| StoreError::Schema(format!("migration {version}: {}", db(e))))?;
        tx.execute("INSERT INTO nudge_migrations (version) VALUES ($1)", &[&version]).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        log::info!("store: applied schema migration {version}");
        applied.push(version);
    }
    Ok(applied)
}
