//! Counters exported at `/metrics` in the Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Metrics {
    pub connections_open: AtomicI64,
    pub connections_total: AtomicU64,
    pub messages_total: AtomicU64,
    pub errors_total: AtomicU64,
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
    pub mail_sent: AtomicU64,
    pub mail_retries: AtomicU64,
    pub mail_dead: AtomicU64,
    pub mail_skipped: AtomicU64,
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
        metric("nudge_mail_sent_total", "counter", "Follow-up emails sent.", get(&self.mail_sent));
        metric("nudge_mail_retries_total", "counter", "Temporary send failures (retried).", get(&self.mail_retries));
        metric("nudge_mail_dead_total", "counter", "Follow-ups dead-lettered.", get(&self.mail_dead));
        metric(
            "nudge_mail_skipped_total",
            "counter",
            "Follow-ups not wanted any more at send time.",
            get(&self.mail_skipped),
        );
        metric("nudge_store_batches_total", "counter", "Batches made durable.", store.0.to_string());
        metric("nudge_store_flushes_total", "counter", "Flushes to disk (group commits).", store.1.to_string());
        out
    }
}
