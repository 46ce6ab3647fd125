//! Retention: conversations not active for `retention_days` are removed with their transcripts,
//! visitors not seen for that long are erased entirely, and mail files that old are removed. Runs at start and then hourly on its
//! own thread; `retention_days = 0` keeps everything. Nodes sharing a PostgreSQL store sweep
//! one at a time (`Store::exclusive`); each removes its own mail files.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::app::App;
use crate::store::{Command, Result, Store};

const EVERY: Duration = Duration::from_secs(60 * 60);
const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// Expires everything last active before `cutoff` (ms); returns (visitors erased,
/// conversations removed).
pub fn sweep(store: &Store, cutoff: u64, now: u64) -> Result<(usize, usize)> {
    let mut writes = Vec::new();
    let mut erased = std::collections::HashSet::new();
    for profile in store.visitors() {
        let profile = profile?;
        if profile.last_seen_at < cutoff {
            erased.insert(profile.id);
            writes.push(Command::Erase { visitor: profile.id, at: now });
        }
    }
    let visitors = writes.len();
    for conversation in store.conversations() {
        let conversation = conversation?;
        if conversation.last_at < cutoff && !erased.contains(&conversation.visitor) {
            writes.push(Command::ExpireConversation(conversation.id));
        }
    }
    let conversations = writes.len() - visitors;
    // Spent email links only need remembering while their tokens could still be used.
    writes.push(Command::ForgetSpentLinks { at: now });
    store.commit_blocking(writes)?;
    Ok((visitors, conversations))
}

/// Starts the hourly sweep when a retention period is configured.
pub fn spawn(app: Arc<App>) -> std::io::Result<Option<std::thread::JoinHandle<()>>> {
    let days = app.config.retention_days;
    if days == 0 {
        return Ok(None);
    }
    std::thread::Builder::new()
        .name("nudge-retention".into())
        .spawn(move || {
            let mut next = Instant::now();
            while !app.shutdown.is_raised() {
                if Instant::now() >= next {
                    let now = app.now_ms();
                    let cutoff = now.saturating_sub(days.saturating_mul(DAY_MS));
                    match crate::outbox::expire_mail(&app.config, cutoff) {
                        Ok(0) => {}
                        Ok(files) => log::info!("retention: removed {files} mail files older than {days} days"),
                        Err(e) => log::error!("retention: mail files: {e}"),
                    }
                    // Nodes sharing a database take turns: one sweep at a time.
                    match app.store.exclusive("retention", || sweep(&app.store, cutoff, now)) {
                        Ok(Some(Ok((0, 0)))) => {}
                        Ok(Some(Ok((visitors, conversations)))) => log::info!(
                            "retention: erased {visitors} visitors and {conversations} conversations older than {days} days"
                        ),
                        Ok(None) => log::info!("retention: another node is sweeping"),
                        Ok(Some(Err(e))) | Err(e) => log::error!("retention sweep: {e}"),
                    }
                    next = Instant::now() + EVERY;
                }
                app.stopping.sleep(next.saturating_duration_since(Instant::now()));
            }
        })
        .map(Some)
}
