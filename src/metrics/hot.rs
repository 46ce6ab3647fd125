//! What every message records: two counters and two latency histograms, kept in shards that
//! each thread writes on cache lines of its own, and added up when `/metrics` is read.
//!
//! Recorded through the Prometheus exporter, each message wrote four times to cache lines both
//! chat workers write (a counter's atomic, a histogram's queue of samples), and each of those
//! writes waited for the line to come over from the other core: at 1,000 connections a build
//! without them answered about 3 % more messages (BENCHMARKS.md, thirtieth session).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use super::name;
use crate::intents::How;

/// Threads beyond this many share shards (still counted right, with the old contention).
const SHARDS: usize = 8;

/// Bucket bounds of both latency histograms, in seconds.
const SECONDS: [f64; 13] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];
/// A histogram's cells: one per bucket, one above the last bound, and the sum in nanoseconds.
const CELLS: usize = SECONDS.len() + 2;
const SUM: usize = CELLS - 1;

pub static MESSAGES: Counters<1> = Counters::new(name::MESSAGES, "Shopper messages answered.");
/// By `How as usize`.
pub static ROUTES: Counters<4> =
    Counters::new(name::ROUTES, "Messages routed, by how (slot, pattern, examples, fallback).");
pub static REPLY_SECONDS: Histogram = Histogram::new(name::REPLY_SECONDS, "From a shopper's frame to its answer sent.");
pub static COMMIT_SECONDS: Histogram =
    Histogram::new(name::COMMIT_SECONDS, "From a batch handed to the store to durable.");

/// `N` counts for each shard; a shard fills whole cache lines, so no two shards share one.
#[repr(align(128))]
struct Shard<const N: usize>([AtomicU64; N]);

struct Cells<const N: usize>([Shard<N>; SHARDS]);

impl<const N: usize> Cells<N> {
    const fn new() -> Self {
        Cells([const { Shard([const { AtomicU64::new(0) }; N]) }; SHARDS])
    }

    /// The calling thread's shard.
    fn mine(&self) -> &[AtomicU64; N] {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static SHARD: usize = NEXT.fetch_add(1, Relaxed) % SHARDS;
        }
        &self.0[SHARD.with(|shard| *shard)].0
    }

    fn total(&self, cell: usize) -> u64 {
        self.0.iter().map(|shard| shard.0[cell].load(Relaxed)).sum()
    }
}

/// A counter, or with `N` above one a counter for each `How` (`ROUTES`).
pub struct Counters<const N: usize> {
    name: &'static str,
    help: &'static str,
    cells: Cells<N>,
}

impl<const N: usize> Counters<N> {
    const fn new(name: &'static str, help: &'static str) -> Self {
        Counters { name, help, cells: Cells::new() }
    }

    pub fn increment(&self, cell: usize) {
        self.cells.mine()[cell].fetch_add(1, Relaxed);
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}\n# TYPE {} counter", self.name, self.help, self.name);
        if N == 1 {
            let _ = writeln!(out, "{} {}", self.name, self.cells.total(0));
        } else {
            for how in How::ALL {
                let _ = writeln!(out, "{}{{how=\"{}\"}} {}", self.name, how.as_str(), self.cells.total(how as usize));
            }
        }
        out.push('\n');
    }
}

pub struct Histogram {
    name: &'static str,
    help: &'static str,
    cells: Cells<CELLS>,
}

impl Histogram {
    const fn new(name: &'static str, help: &'static str) -> Self {
        Histogram { name, help, cells: Cells::new() }
    }

    pub fn record(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        let bucket = SECONDS.iter().position(|&le| seconds <= le).unwrap_or(SECONDS.len());
        let cells = self.cells.mine();
        cells[bucket].fetch_add(1, Relaxed);
        cells[SUM].fetch_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    }

    /// Buckets count every sample at or below their bound, as Prometheus has it.
    fn render(&self, out: &mut String) {
        let name = self.name;
        let _ = writeln!(out, "# HELP {name} {}\n# TYPE {name} histogram", self.help);
        let mut below = 0;
        for (bucket, le) in SECONDS.iter().enumerate() {
            below += self.cells.total(bucket);
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {below}");
        }
        let count = below + self.cells.total(SECONDS.len());
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", self.cells.total(SUM) as f64 / 1e9);
        let _ = writeln!(out, "{name}_count {count}\n");
    }
}

/// The text exposition of everything above.
pub fn render(out: &mut String) {
    MESSAGES.render(out);
    ROUTES.render(out);
    REPLY_SECONDS.render(out);
    COMMIT_SECONDS.render(out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_add_up_across_threads_and_buckets_are_cumulative() {
        let histogram = Histogram::new("h", "help");
        let counters = Counters::<4>::new("c", "help");
        std::thread::scope(|scope| {
            for _ in 0..SHARDS + 3 {
                scope.spawn(|| {
                    histogram.record(Duration::from_micros(700));
                    histogram.record(Duration::from_secs(11));
                    counters.increment(How::Pattern as usize);
                });
            }
        });
        let threads = SHARDS as u64 + 3;
        let mut out = String::new();
        histogram.render(&mut out);
        counters.render(&mut out);
        for line in [
            "h_bucket{le=\"0.0005\"} 0".to_string(),
            format!("h_bucket{{le=\"0.001\"}} {threads}"),
            format!("h_bucket{{le=\"10\"}} {threads}"),
            format!("h_bucket{{le=\"+Inf\"}} {}", 2 * threads),
            format!("h_count {}", 2 * threads),
            format!("h_sum {}", (threads * 11_000_700_000) as f64 / 1e9),
            format!("c{{how=\"pattern\"}} {threads}"),
            "c{how=\"slot\"} 0".to_string(),
        ] {
            assert!(out.lines().any(|l| l == line), "{line} in\n{out}");
        }
    }
}
