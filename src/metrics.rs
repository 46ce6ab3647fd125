//! Counters exported at `/metrics` in the Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Metrics {
    pub connections_open: AtomicI64,
    pub connections_total: AtomicU64,
    pub messages_total: AtomicU64,
    pub errors_total: AtomicU64,
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
    pub outbox_done: AtomicU64,
    pub outbox_retries: AtomicU64,
    pub outbox_dead: AtomicU64,
    pub outbox_skipped: AtomicU64,
    /// Jobs (or worker loops) that panicked; each job was dead-lettered.
    pub outbox_panics: AtomicU64,
    /// Whether the outbox worker thread is alive (for `/healthz`).
    pub outbox_running: AtomicBool,
}

impl Metrics {
    /// The text exposition; `store` is (batches committed, flushes) from the group commit.
    pub fn render(&self, store: (u64, u64)) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        };
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed).to_string();
        metric(
            "nudge_connections_open",
            "gauge",
            "Open chat connections.",
            self.connections_open.load(Ordering::Relaxed).to_string(),
        );
        metric("nudge_connections_total", "counter", "Chat connections accepted.", get(&self.connections_total));
        metric("nudge_messages_total", "counter", "Shopper messages answered.", get(&self.messages_total));
        metric("nudge_error_frames_total", "counter", "Error frames sent.", get(&self.errors_total));
        metric("nudge_intent_reloads_total", "counter", "Successful intent reloads.", get(&self.reloads_ok));
        metric(
            "nudge_intent_reload_failures_total",
            "counter",
            "Intent reloads refused because of errors.",
            get(&self.reloads_failed),
        );
        metric(
            "nudge_outbox_done_total",
            "counter",
            "Outbox jobs done (emails sent, events posted, checks run).",
            get(&self.outbox_done),
        );
        metric("nudge_outbox_retries_total", "counter", "Temporary failures (retried).", get(&self.outbox_retries));
        metric("nudge_outbox_dead_total", "counter", "Outbox jobs dead-lettered.", get(&self.outbox_dead));
        metric(
            "nudge_outbox_skipped_total",
            "counter",
            "Outbox jobs not wanted any more when due.",
            get(&self.outbox_skipped),
        );
        metric("nudge_outbox_panics_total", "counter", "Outbox jobs that panicked.", get(&self.outbox_panics));
        metric(
            "nudge_outbox_running",
            "gauge",
            "1 while the outbox worker runs.",
            u8::from(self.outbox_running.load(Ordering::Relaxed)).to_string(),
        );
        metric("nudge_store_batches_total", "counter", "Batches made durable.", store.0.to_string());
        metric("nudge_store_flushes_total", "counter", "Flushes to disk (group commits).", store.1.to_string());
        out
    }
}
