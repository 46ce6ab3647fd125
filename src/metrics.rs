//! What `/metrics` shows, in the Prometheus text format: counters, gauges and histograms
//! recorded through the `metrics` facade anywhere in the crate (`metrics::counter!(name::…)`),
//! rendered by the Prometheus exporter's recorder, which the server installs once per process.
//! `Metrics` keeps the one thing the server itself reads back: whether the outbox worker runs.

use std::sync::OnceLock;
use std::sync::atomic::AtomicBool;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub mod hot;

#[derive(Debug, Default)]
pub struct Metrics {
    /// Whether the outbox worker thread is alive (for `/healthz`).
    pub outbox_running: AtomicBool,
}

/// Every metric's name, and what it counts.
pub mod name {
    pub const CONNECTIONS_OPEN: &str = "nudge_connections_open";
    pub const CONNECTIONS: &str = "nudge_connections_total";
    pub const MESSAGES: &str = "nudge_messages_total";
    pub const ERROR_FRAMES: &str = "nudge_error_frames_total";
    /// Routed messages by `how` (slot, pattern, examples, fallback).
    pub const ROUTES: &str = "nudge_routes_total";
    /// From a shopper's frame arriving to the last frame of its answer sent.
    pub const REPLY_SECONDS: &str = "nudge_reply_seconds";
    /// From a batch handed to the store to its being durable.
    pub const COMMIT_SECONDS: &str = "nudge_store_commit_seconds";
    /// Batches made durable by one flush (the group commit; 1 on PostgreSQL).
    pub const GROUP_BATCHES: &str = "nudge_store_group_batches";
    pub const BATCHES: &str = "nudge_store_batches_total";
    pub const FLUSHES: &str = "nudge_store_flushes_total";
    pub const RELOADS: &str = "nudge_intent_reloads_total";
    pub const RELOAD_FAILURES: &str = "nudge_intent_reload_failures_total";
    pub const OUTBOX_DONE: &str = "nudge_outbox_done_total";
    pub const OUTBOX_RETRIES: &str = "nudge_outbox_retries_total";
    pub const OUTBOX_DEAD: &str = "nudge_outbox_dead_total";
    pub const OUTBOX_SKIPPED: &str = "nudge_outbox_skipped_total";
    pub const OUTBOX_PANICS: &str = "nudge_outbox_panics_total";
    pub const OUTBOX_RUNNING: &str = "nudge_outbox_running";
    /// Jobs found due at the worker's last look (at most one claim: 64 on sled, 1 on PostgreSQL).
    pub const OUTBOX_DUE: &str = "nudge_outbox_due";
    /// How late a job ran after it was due.
    pub const OUTBOX_LAG_SECONDS: &str = "nudge_outbox_lag_seconds";
}

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the recorder (once per process; later calls change nothing).
pub fn install() {
    HANDLE.get_or_init(|| {
        let batches = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
        let lag = [0.1, 1.0, 10.0, 60.0, 600.0, 3600.0, 6.0 * 3600.0, 24.0 * 3600.0];
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(name::GROUP_BATCHES.into()), &batches)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full(name::OUTBOX_LAG_SECONDS.into()), &lag));
        let recorder = match builder {
            Ok(builder) => builder.build_recorder(),
            Err(e) => {
                log::error!("metrics: {e}");
                return None;
            }
        };
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            log::warn!("metrics: another recorder is installed; /metrics shows nothing");
            return None;
        }
        describe();
        // Histogram samples wait in the recorder until upkeep folds them into their buckets:
        // without it they would pile up between scrapes (or forever, with nobody scraping).
        let upkeep = handle.clone();
        let spawned = std::thread::Builder::new().name("nudge-metrics".into()).spawn(move || {
            loop {
                std::thread::sleep(std::time::Duration::from_secs(5));
                upkeep.run_upkeep();
            }
        });
        if let Err(e) = spawned {
            log::error!("metrics: cannot start the upkeep thread: {e}");
        }
        Some(handle)
    });
}

/// Every counter and what it counts: described, and at zero before it first counts.
const COUNTERS: [(&str, &str); 11] = [
    (name::CONNECTIONS, "Chat connections accepted."),
    (name::ERROR_FRAMES, "Error frames sent."),
    (name::BATCHES, "Batches made durable."),
    (name::FLUSHES, "Flushes to disk (group commits) or transactions."),
    (name::RELOADS, "Successful intent reloads."),
    (name::RELOAD_FAILURES, "Intent reloads refused because of errors."),
    (name::OUTBOX_DONE, "Outbox jobs done (emails sent, events posted, checks run)."),
    (name::OUTBOX_RETRIES, "Temporary failures (retried)."),
    (name::OUTBOX_DEAD, "Outbox jobs dead-lettered."),
    (name::OUTBOX_SKIPPED, "Outbox jobs not wanted any more when due."),
    (name::OUTBOX_PANICS, "Outbox jobs that panicked."),
];

/// The help lines, and every counter at zero before it first counts.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    for (counter, help) in COUNTERS {
        describe_counter!(counter, help);
        metrics::counter!(counter).absolute(0);
    }
    describe_gauge!(name::CONNECTIONS_OPEN, "Open chat connections.");
    describe_gauge!(name::OUTBOX_RUNNING, "1 while the outbox worker runs.");
    describe_gauge!(name::OUTBOX_DUE, "Jobs found due at the outbox worker's last look.");
    describe_histogram!(name::GROUP_BATCHES, "Batches made durable by one flush.");
    describe_histogram!(name::OUTBOX_LAG_SECONDS, Unit::Seconds, "How late an outbox job ran after it was due.");
    metrics::gauge!(name::CONNECTIONS_OPEN).set(0.0);
}

/// The text exposition (empty when no recorder could be installed).
pub fn render() -> String {
    let Some(handle) = HANDLE.get().and_then(Option::as_ref) else { return String::new() };
    let mut text = handle.render();
    hot::render(&mut text);
    text
}

/// Counts one of `name` (a counter).
pub fn count(name: &'static str) {
    metrics::counter!(name).increment(1);
}
