//! Hot reload of the intent files: a debounced directory watch (editors save by writing a
//! temporary file and renaming it, so one save is several events), then a full recompile. A set
//! with errors is never swapped in: the server keeps serving the last good one and logs every
//! error with its `file:line:col`.

use std::sync::Arc;
use std::time::Duration;

use notify_debouncer_mini::notify::RecursiveMode;
use notify_debouncer_mini::{DebounceEventResult, Debouncer, new_debouncer};

use crate::app::App;
use crate::intents::IntentSet;

/// Quiet time after the last change before recompiling.
const DEBOUNCE: Duration = Duration::from_millis(200);

/// Keeps the watch alive; dropping it stops reloading.
pub struct Watch {
    _debouncer: Debouncer<notify_debouncer_mini::notify::RecommendedWatcher>,
}

pub fn watch(app: Arc<App>) -> Result<Watch, notify_debouncer_mini::notify::Error> {
    let dir = app.config.intents.clone();
    let reloading = app.clone();
    // inotify also reports files being opened for reading (another process loading the same
    // pack); only a change of names, sizes or modification times is worth a recompile.
    let mut last = fingerprint(&dir);
    let mut debouncer = new_debouncer(DEBOUNCE, move |result: DebounceEventResult| match result {
        Ok(events) if events.iter().any(|e| is_intent_file(&e.path)) => {
            let now = fingerprint(&reloading.config.intents);
            if now != last {
                last = now;
                reload(&reloading);
            }
        }
        Ok(_) => {}
        Err(e) => log::warn!("watching {}: {e}", reloading.config.intents.display()),
    })?;
    debouncer.watcher().watch(&dir, RecursiveMode::Recursive)?;
    Ok(Watch { _debouncer: debouncer })
}

/// Names, sizes and modification times of every intent and email file.
fn fingerprint(dir: &std::path::Path) -> Vec<(std::path::PathBuf, u64, Option<std::time::SystemTime>)> {
    let mut files: Vec<_> = [dir.to_path_buf(), dir.join(crate::intents::EMAILS_DIR)]
        .iter()
        .flat_map(std::fs::read_dir)
        .flatten()
        .flatten()
        .filter(|e| is_intent_file(&e.path()))
        .filter_map(|e| e.metadata().ok().map(|m| (e.path(), m.len(), m.modified().ok())))
        .collect();
    files.sort();
    files
}

fn is_intent_file(path: &std::path::Path) -> bool {
    path.extension().is_some_and(|x| x == "toml")
}

/// Recompiles the whole set and swaps it in, or keeps the old one.
pub fn reload(app: &App) {
    match IntentSet::load(&app.config.intents) {
        Ok(set) => {
            for warning in &set.warnings {
                log::warn!("{warning}");
            }
            log::info!("intents reloaded: {} intents, {} slots", set.intents.len(), set.slots.len());
            // Counted before the swap, so whoever sees the new set also sees it counted.
            crate::metrics::count(crate::metrics::name::RELOADS);
            app.replace_intents(set);
        }
        Err(errors) => {
            for error in &errors {
                log::error!("{error}");
            }
            log::error!("intents not reloaded ({} errors); still serving the last good set", errors.len());
            crate::metrics::count(crate::metrics::name::RELOAD_FAILURES);
        }
    }
}
