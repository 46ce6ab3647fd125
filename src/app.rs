//! What every request handler, session and background thread shares: the configuration, the
//! store, the intents in force, the signing keys and secrets, the limits, the open sessions and
//! the shutdown signal. Its own module, so that the route modules depend on it and not on the
//! server that wires them together.

use std::sync::{Arc, RwLock};

use crate::config::Config;
use crate::intents::IntentSet;
use crate::metrics::Metrics;
use crate::secrets::Secrets;
use crate::signing::Signer;
use crate::store::Store;

/// What every request handler and session shares.
pub struct App {
    pub config: Config,
    /// The time every handler, session and background thread reads (`Clock::system` but in tests).
    pub clock: crate::clock::Clock,
    pub store: Store,
    /// The URL shoppers reach us at, without a trailing slash.
    pub public_url: String,
    /// `scheme://host[:port]` of `public_url`, for the WebSocket origin check.
    pub public_origin: String,
    pub metrics: Metrics,
    pub signer: Signer,
    /// The conversions API key and the admin password hash.
    pub secrets: Secrets,
    /// Conversions are checked and recorded one at a time, so a repeated delivery is counted once.
    pub conversions: tokio::sync::Mutex<()>,
    /// Open chat sessions by visitor, for agents' replies.
    pub live: Arc<crate::chat::agents::Live>,
    /// Set on SIGTERM (`App::stop`): sessions tell their widgets to reconnect elsewhere and close.
    pub shutdown: crate::signal::Shutdown,
    /// Raised with `shutdown`, for the background threads' sleeps.
    pub stopping: crate::signal::Signal,
    /// The outbox worker's rounds: a test waits on them to know the worker looked.
    pub outbox_rounds: crate::signal::Rounds,
    /// The chat sessions running, which the shutdown waits for.
    pub sessions: Arc<Sessions>,
    /// Read at every message by both workers: a lock or a reference count here would be a
    /// cache line the two cores pass back and forth (`ArcSwap::load` writes only to the
    /// reading thread's own slots).
    pub(crate) intents: arc_swap::ArcSwap<IntentSet>,
    /// The learned lead score, refitted by the journey sweep.
    pub(crate) learned: RwLock<Option<Arc<crate::leads::learned::Model>>>,
}

impl App {
    /// Milliseconds since the epoch, by the app's clock.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Seconds since the epoch, by the app's clock: what signed tokens expire by.
    pub fn now_secs(&self) -> u64 {
        self.now_ms() / 1000
    }

    /// The learned lead model, once the store had enough outcomes to fit one.
    pub fn learned(&self) -> Option<Arc<crate::leads::learned::Model>> {
        self.learned.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set_learned(&self, model: Option<crate::leads::learned::Model>) {
        *self.learned.write().unwrap_or_else(|e| e.into_inner()) = model.map(Arc::new);
    }

    /// The current intent set; a session keeps the one it got for the message it is answering.
    pub fn intents(&self) -> Arc<IntentSet> {
        self.intents.load_full()
    }

    /// The current intent set, for a moment: hold it across no `.await` (the slots it takes are
    /// few per thread, and after them a load counts references again).
    pub fn intents_now(&self) -> arc_swap::Guard<Arc<IntentSet>> {
        self.intents.load()
    }

    /// Starts the shutdown: sessions close with "reconnect elsewhere" after the reply in
    /// progress, and the background threads wake up to end.
    pub fn stop(&self) {
        self.shutdown.raise();
        self.stopping.raise();
        self.store.outbox_signal().raise();
    }

    /// Swaps in a new set; sessions pick it up with their next message.
    pub fn replace_intents(&self, set: IntentSet) {
        self.intents.store(Arc::new(set));
    }
}

/// Sessions still running, for the shutdown to wait on.
#[derive(Default)]
pub struct Sessions {
    open: std::sync::atomic::AtomicUsize,
    ended: tokio::sync::Notify,
}

impl Sessions {
    /// Counts a session as running for as long as the guard lives.
    pub fn enter(self: &Arc<Self>) -> SessionGuard {
        self.open.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        SessionGuard(self.clone())
    }

    fn running(&self) -> usize {
        self.open.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Returns once no session runs (or after `limit`, with how many still did).
    pub(crate) async fn drained(&self, limit: std::time::Duration) -> usize {
        let waiting = async {
            while self.running() > 0 {
                let ended = self.ended.notified();
                if self.running() == 0 {
                    break;
                }
                ended.await;
            }
        };
        let _ = tokio::time::timeout(limit, waiting).await;
        self.running()
    }
}

pub struct SessionGuard(Arc<Sessions>);

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        self.0.ended.notify_waiters();
    }
}
