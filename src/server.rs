//! Startup: opens the store, compiles the intents, binds the listener and builds the HTTP app.
//! `start` returns the bound address, so tests and scripts can ask for port 0.

use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, RwLock};

use actix_web::{HttpResponse, web};

use crate::app::App;
use crate::config::Config;
use crate::intents::{Diagnostic, IntentSet};
use crate::metrics::Metrics;
use crate::secrets::{Generated, Secrets, SecretsError};
use crate::store::StoreError;
use crate::{admin, api, chat, pages, reload};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "there is no intents directory at {0}: Nudge answers from intent files there; start with the starter pack \
         that comes with Nudge (its `intents/` directory) and point to it with `nudge serve --intents DIR`"
    )]
    NoIntents(String),
    #[error("the intents in {dir} have errors:\n{}", list(.errors))]
    Intents { dir: String, errors: Vec<Diagnostic> },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    #[error("cannot make the data directory {0}: {1}")]
    Data(String, std::io::Error),
    #[error("cannot listen on {0}: {1}")]
    Bind(String, std::io::Error),
    #[error("{0}")]
    Outbox(String),
    #[error("cannot start the {0}: {1}")]
    Spawn(&'static str, std::io::Error),
}

fn list(errors: &[Diagnostic]) -> String {
    errors.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n")
}

pub struct Running {
    pub addr: SocketAddr,
    pub public_url: String,
    pub server: actix_web::dev::Server,
    pub app: Arc<App>,
    /// The intent directory watch (hot reload), alive as long as this is.
    pub watch: Option<reload::Watch>,
    /// What this start generated (to print once).
    pub generated: Generated,
    /// The outbox worker; it ends after `App::shutdown` is set.
    pub outbox: std::thread::JoinHandle<()>,
    /// The retention sweep, when a retention period is set; it ends after `App::shutdown`.
    pub retention: Option<std::thread::JoinHandle<()>>,
    /// The journey sweep (enters visitors into journeys); it ends after `App::shutdown`.
    pub journeys: std::thread::JoinHandle<()>,
}

/// How long the shutdown waits for sessions to send the answer in progress and close.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(10);

impl Running {
    /// Serves until `stop` resolves (SIGTERM), then shuts down in order: sessions are told to
    /// reconnect elsewhere once their reply in progress is sent and are waited for, HTTP stops,
    /// the background threads end (an email being sent finishes), the store is flushed.
    pub async fn run_until(self, stop: impl std::future::Future<Output = ()> + 'static) -> Result<(), StoreError> {
        let Running { server, app, watch, outbox, retention, journeys, .. } = self;
        let handle = server.handle();
        let stopping = app.clone();
        actix_web::rt::spawn(async move {
            stop.await;
            log::info!("shutting down: telling chat clients to reconnect, finishing replies in progress");
            // No new connections; the open ones answer what they are answering and close.
            handle.pause().await;
            stopping.stop();
            let left = stopping.sessions.drained(DRAIN).await;
            if left > 0 {
                log::warn!("{left} chat session(s) did not close within {} s", DRAIN.as_secs());
            }
            handle.stop(true).await;
        });
        if let Err(e) = server.await {
            log::error!("server: {e}");
        }
        drop(watch);
        for (name, thread) in
            [("outbox worker", Some(outbox)), ("retention sweep", retention), ("journey sweep", Some(journeys))]
        {
            if thread.is_some_and(|t| t.join().is_err()) {
                log::error!("the {name} panicked");
            }
        }
        app.store.flush()?;
        log::info!("stopped; the store is flushed");
        Ok(())
    }
}

/// Everything that can fail at startup happens here, before the first request.
pub fn start(config: Config) -> Result<Running, StartError> {
    start_with(config, crate::clock::Clock::system())
}

/// `start`, reading time from `clock` (a test's movable clock).
pub fn start_with(config: Config, clock: crate::clock::Clock) -> Result<Running, StartError> {
    crate::metrics::install();
    if !config.intents.is_dir() {
        return Err(StartError::NoIntents(config.intents.display().to_string()));
    }
    let intents = IntentSet::load(&config.intents)
        .map_err(|errors| StartError::Intents { dir: config.intents.display().to_string(), errors })?;
    for warning in &intents.warnings {
        log::warn!("{warning}");
    }
    let receivers = crate::outbox::Receivers {
        mailer: crate::outbox::Mailer::from_config(&config).map_err(StartError::Outbox)?,
        webhook: config
            .tag_webhook_url
            .as_deref()
            .map(crate::outbox::Webhook::from_config)
            .transpose()
            .map_err(StartError::Outbox)?,
    };
    // The data directory holds secrets and mail files whichever the store: owner-only.
    crate::store::private_dir(&config.data).map_err(|e| StartError::Data(config.data.display().to_string(), e))?;
    let store = config.open_store()?;
    let (secrets, generated) = Secrets::load(Some(&store), &config.data)?;
    let signer = secrets.signer()?;
    let listener = TcpListener::bind(&config.listen).map_err(|e| StartError::Bind(config.listen.clone(), e))?;
    let addr = listener.local_addr().map_err(|e| StartError::Bind(config.listen.clone(), e))?;
    let public_url = config.public_url(addr);
    let public_origin = origin_of(&public_url);
    let per_ip = crate::chat::limits::PerIp::new(
        (config.messages_per_second_per_ip, config.messages_per_second_per_ip * 2.0),
        (config.connections_per_minute_per_ip / 60.0, config.connections_per_minute_per_ip),
    );
    let app = Arc::new(App {
        config,
        clock,
        store,
        public_url: public_url.clone(),
        public_origin,
        metrics: Metrics::default(),
        signer,
        secrets,
        conversions: tokio::sync::Mutex::new(()),
        live: Arc::default(),
        shutdown: Default::default(),
        stopping: Default::default(),
        sessions: Default::default(),
        outbox_rounds: Default::default(),
        intents: arc_swap::ArcSwap::from_pointee(intents),
        learned: RwLock::new(None),
    });
    if app.store.is_shared() {
        // Several nodes: where this node's chats are, for the others, and their answers to them.
        let store = app.store.clone();
        app.live.on_presence(move |visitor, here| store.set_connected(visitor, here));
        // Weak: `live` holds the store (above), and a store holding `live` would keep both alive
        // after the server stops.
        let live = Arc::downgrade(&app.live);
        app.store.join_cluster(move |visitor, text| match (serde_json::from_str(&text), live.upgrade()) {
            (Ok(event), Some(live)) => drop(live.send(&visitor, &event)),
            (Err(e), _) => log::warn!("a person's action from another node is not understood: {e}"),
            (Ok(_), None) => {}
        });
    }
    let data = web::Data::from(app.clone());
    // What only one route uses is its own handle, not part of `App`: the chat socket's limits per
    // address, the admin login's.
    let (per_ip, logins) = (web::Data::from(per_ip), web::Data::new(admin::Logins::default()));
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(data.clone())
            .app_data(per_ip.clone())
            .app_data(logins.clone())
            .app_data(web::PayloadConfig::new(64 * 1024))
            .route("/ws", web::get().to(chat::ws))
            .route("/healthz", web::get().to(healthz))
            .route("/metrics", web::get().to(metrics))
            .configure(pages::routes)
            .configure(api::routes)
            .configure(crate::triggers::routes)
            .configure(admin::routes)
    })
    .listen(listener)
    .map_err(|e| StartError::Bind(addr.to_string(), e))?
    .shutdown_timeout(10)
    // `main` handles SIGTERM/SIGINT itself, to close chat sessions before stopping the server.
    .disable_signals()
    .run();
    let watch = match reload::watch(app.clone()) {
        Ok(watch) => Some(watch),
        Err(e) => {
            log::warn!("intent files will not be reloaded on change: {e}");
            None
        }
    };
    let outbox = crate::outbox::spawn(app.clone(), receivers).map_err(|e| StartError::Spawn("outbox worker", e))?;
    let retention = crate::retention::spawn(app.clone()).map_err(|e| StartError::Spawn("retention sweep", e))?;
    let journeys = crate::journeys::sweep::spawn(app.clone()).map_err(|e| StartError::Spawn("journey sweep", e))?;
    crate::allocator::collect_all();
    Ok(Running { addr, public_url, server, app, watch, generated, outbox, retention, journeys })
}

/// Live when the HTTP server answers and the outbox worker runs: a server whose emails have
/// stopped is not healthy, whatever its chat does.
async fn healthz(app: web::Data<App>) -> HttpResponse {
    if app.metrics.outbox_running.load(std::sync::atomic::Ordering::Relaxed) || app.shutdown.is_raised() {
        HttpResponse::Ok().content_type("text/plain").body("ok\n")
    } else {
        HttpResponse::ServiceUnavailable().content_type("text/plain").body("the outbox worker is not running\n")
    }
}

async fn metrics(app: web::Data<App>) -> HttpResponse {
    let (batches, flushes) = app.store.stats();
    metrics::counter!(crate::metrics::name::BATCHES).absolute(batches);
    metrics::counter!(crate::metrics::name::FLUSHES).absolute(flushes);
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(crate::metrics::render())
}

fn origin_of(url: &str) -> String {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let end = url[after_scheme..].find('/').map_or(url.len(), |i| after_scheme + i);
    url[..end].to_string()
}
