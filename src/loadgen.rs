//! `nudge loadgen`: a `chat.v1` load generator. One current-thread runtime per thread with
//! connections assigned round-robin (one multi-thread runtime starves connections once a worker
//! has hundreds of ready tasks, see BENCHMARKING.md), 4 KiB read buffers, latency in an HDR
//! histogram. Closed loop by default; `--rate` gives an open loop measured from the intended send
//! time, so a slow reply cannot hide the requests it delayed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio_tungstenite::tungstenite::Message;

use crate::client;
use crate::protocol::{ClientFrame, Hello, ServerFrame};

/// What shoppers say: greetings, questions, flow answers, out-of-scope, both languages.
const MIX: [&str; 12] = [
    "hi",
    "do you ship to Austria?",
    "I'm looking for sneakers",
    "42",
    "black",
    "how long does delivery take",
    "100",
    "where is my order?",
    "what's the weather like tomorrow",
    "Wie lange dauert die Lieferung?",
    "what is your return policy",
    "thanks!",
];

#[derive(Debug, Clone)]
pub struct Options {
    pub url: String,
    pub connections: usize,
    pub duration: Duration,
    pub warmup: Duration,
    /// Total messages per second across all connections (open loop); `None` is a closed loop.
    pub rate: Option<f64>,
    /// Only hold the connections open (after `hello`).
    pub idle: bool,
    pub threads: usize,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub connections: usize,
    pub connected: u64,
    pub measured_secs: f64,
    pub round_trips: u64,
    pub round_trips_per_sec: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub errors: u64,
    /// Why, by reason (what the server said, and which of its settings refused), most first.
    pub reasons: Vec<(String, u64)>,
    pub reconnects: u64,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "connections {} ({} connected), {:.1} s measured",
            self.connections, self.connected, self.measured_secs
        )?;
        writeln!(f, "round trips {} ({:.0}/s)", self.round_trips, self.round_trips_per_sec)?;
        writeln!(
            f,
            "latency p50 {:.2} ms  p95 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            self.p50_ms, self.p95_ms, self.p99_ms, self.max_ms
        )?;
        writeln!(f, "errors {}, reconnects {}", self.errors, self.reconnects)?;
        for (reason, count) in &self.reasons {
            writeln!(f, "  {count:>8}  {reason}")?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct Counters {
    connected: AtomicU64,
    round_trips: AtomicU64,
    errors: std::sync::Mutex<std::collections::HashMap<String, u64>>,
    reconnects: AtomicU64,
}

impl Counters {
    fn error(&self, reason: String) {
        *self.errors.lock().unwrap_or_else(|e| e.into_inner()).entry(reason).or_default() += 1;
    }
}

/// What a refusal means, with the server setting behind it: a load test from one address meets
/// the per-address limits a shop needs against floods (bench/nudge.toml raises them).
fn refused(error: &client::ClientError) -> String {
    use tokio_tungstenite::tungstenite::Error;
    match error {
        client::ClientError::Ws(Error::Http(response)) => {
            let body = response.body().as_deref().map(String::from_utf8_lossy).unwrap_or_default();
            let status = response.status().as_u16();
            let setting = if status == 429 {
                " (the server's max_connections_per_ip and connections_per_minute_per_ip)"
            } else {
                ""
            };
            format!("connect refused with {status}: {}{setting}", body.trim())
        }
        other => format!("connect failed: {other}"),
    }
}

fn error_frame(code: crate::protocol::ErrorCode, message: &str) -> String {
    let setting = if code == crate::protocol::ErrorCode::RateLimited {
        " (the server's messages_per_second and messages_per_second_per_ip)"
    } else {
        ""
    };
    format!("error frame {code:?}: {message}{setting}")
}

/// The shared clock of a run: connections ramp up, then warm up, then are measured.
#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    measure_from: Instant,
    end: Instant,
}

pub fn run(options: &Options) -> Report {
    let counters = Arc::new(Counters::default());
    let threads = options.threads.max(1);
    // Spread connection attempts so the accept queue is not flooded: 200 µs apart.
    let ramp = Duration::from_micros(200) * options.connections as u32;
    let start = Instant::now();
    let window = Window {
        start,
        measure_from: start + ramp + options.warmup,
        end: start + ramp + options.warmup + options.duration,
    };
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let options = options.clone();
            let counters = counters.clone();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                runtime.block_on(async move {
                    let mut tasks = Vec::new();
                    for i in (t..options.connections).step_by(threads) {
                        let (options, counters) = (options.clone(), counters.clone());
                        tasks.push(tokio::spawn(connection(i, options, counters, window)));
                    }
                    let mut histogram = new_histogram();
                    for task in tasks {
                        if let Ok(h) = task.await {
                            let _ = histogram.add(h);
                        }
                    }
                    histogram
                })
            })
        })
        .collect();
    let mut histogram = new_histogram();
    for handle in handles {
        if let Ok(h) = handle.join() {
            let _ = histogram.add(h);
        }
    }
    let measured = options.duration.as_secs_f64();
    let ms = |us: u64| us as f64 / 1000.0;
    let round_trips = counters.round_trips.load(Ordering::Relaxed);
    let mut reasons: Vec<(String, u64)> =
        std::mem::take(&mut *counters.errors.lock().unwrap_or_else(|e| e.into_inner())).into_iter().collect();
    reasons.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Report {
        connections: options.connections,
        connected: counters.connected.load(Ordering::Relaxed),
        measured_secs: measured,
        round_trips,
        round_trips_per_sec: round_trips as f64 / measured,
        p50_ms: ms(histogram.value_at_quantile(0.50)),
        p95_ms: ms(histogram.value_at_quantile(0.95)),
        p99_ms: ms(histogram.value_at_quantile(0.99)),
        max_ms: ms(histogram.max()),
        errors: reasons.iter().map(|(_, n)| n).sum(),
        reasons,
        reconnects: counters.reconnects.load(Ordering::Relaxed),
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// One shopper: connect (retrying refusals), say hello, then talk until the window ends.
async fn connection(index: usize, options: Options, counters: Arc<Counters>, window: Window) -> Histogram<u64> {
    let mut histogram = new_histogram();
    let starts = window.start + Duration::from_micros(200) * index as u32;
    tokio::time::sleep_until(starts.into()).await;
    let per_connection = options.rate.map(|r| Duration::from_secs_f64(options.connections as f64 / r.max(0.001)));
    // The schedule follows from when this connection was meant to start, not from when its task
    // woke: a generator thread busy with other handshakes wakes many tasks late at once, and
    // their sends would then come in bursts, with gaps between, for the whole run.
    let mut next_send = starts;
    let mut message = index;
    let mut first = true;
    while Instant::now() < window.end {
        let mut socket = match client::connect(&options.url).await {
            Ok(socket) => socket,
            Err(e) => {
                counters.error(refused(&e));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if !first {
            counters.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        first = false;
        if client::send(&mut socket, &ClientFrame::Hello(Hello::default())).await.is_err() || !opened(&mut socket).await
        {
            counters.error("no welcome after hello".into());
            continue;
        }
        counters.connected.fetch_add(1, Ordering::Relaxed);
        if options.idle {
            idle(&mut socket, window.end).await;
            return histogram;
        }
        loop {
            let intended = match per_connection {
                Some(interval) => {
                    next_send += interval;
                    tokio::time::sleep_until(next_send.into()).await;
                    next_send
                }
                None => Instant::now(),
            };
            if intended >= window.end {
                return histogram;
            }
            message += 1;
            let frame = ClientFrame::Say { text: MIX[message % MIX.len()].to_string() };
            if client::send(&mut socket, &frame).await.is_err() {
                break;
            }
            match answered(&mut socket).await {
                Some(answer) => {
                    if let Err(reason) = answer {
                        counters.error(reason);
                    }
                    if intended >= window.measure_from {
                        histogram.saturating_record(intended.elapsed().as_micros() as u64);
                        counters.round_trips.fetch_add(1, Ordering::Relaxed);
                    }
                }
                None => break,
            }
        }
        counters.error("the server closed the connection".into());
    }
    histogram
}

/// Waits for `welcome` (or, from an echo server, the echoed `hello`).
async fn opened(socket: &mut client::Socket) -> bool {
    while let Some(Ok(message)) = socket.next().await {
        if let Message::Text(text) = message {
            return text.contains("\"welcome\"") || text.contains("\"hello\"");
        }
    }
    false
}

/// Reads until the answer to the last `say`: the first reply of a step carries `how`; later
/// frames of a step (the next question, tags, checkout) are skipped. An echo server's echoed
/// `say` also counts. `Some(Err(reason))` for an error frame, `None` when the connection is gone.
async fn answered(socket: &mut client::Socket) -> Option<Result<(), String>> {
    loop {
        match socket.next().await? {
            Ok(Message::Text(text)) => {
                if let Some(answer) = answer(&text) {
                    return Some(answer);
                }
            }
            Ok(Message::Ping(payload)) => {
                let _ = socket.send(Message::Pong(payload)).await;
            }
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

/// Whether a text frame answers the last `say` (`Some(Ok)`: an echoed `say` or a reply with
/// `how`; `Some(Err)`: an error frame) or is a later frame of the step (`None`). Only the frame's
/// type and whether it has `how` are read: the generator shares the machine with the server it
/// measures, and decoding every reply whole (its text, choices and captures) cost it a fifth of
/// its time per round trip.
fn answer(text: &str) -> Option<Result<(), String>> {
    if text.contains("\"type\":\"say\"") {
        return Some(Ok(()));
    }
    match serde_json::from_str::<Glance>(text) {
        Ok(Glance { kind: "reply", how: Some(_) }) => Some(Ok(())),
        Ok(Glance { kind: "error", .. }) => match serde_json::from_str::<ServerFrame>(text) {
            Ok(ServerFrame::Error { code, message }) => Some(Err(error_frame(code, &message))),
            _ => Some(Err(format!("unreadable error frame: {text}"))),
        },
        _ => None,
    }
}

/// What `answer` reads of a server frame; the rest is skipped unread.
#[derive(serde::Deserialize)]
struct Glance<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    how: Option<serde::de::IgnoredAny>,
}

async fn idle(socket: &mut client::Socket, end: Instant) {
    let deadline = tokio::time::sleep_until(end.into());
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => return,
            message = socket.next() => match message {
                // tungstenite answers pings itself on the next read; keep reading.
                Some(Ok(_)) => continue,
                _ => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ErrorCode;

    #[test]
    fn a_step_is_answered_by_its_first_reply_or_an_error_and_later_frames_are_skipped() {
        let error = ServerFrame::error(ErrorCode::RateLimited, "too many messages; please slow down").to_json();
        let rows: [(&str, Option<Result<(), String>>); 6] = [
            (r#"{"type":"say","text":"hi"}"#, Some(Ok(()))),
            (r#"{"type":"reply","text":"Hello!","intent":"greeting","choices":[],"how":"pattern","confidence":1.0}"#, Some(Ok(()))),
            (r#"{"type":"reply","text":"What size do you wear?","intent":"product_interest","choices":[]}"#, None),
            (r#"{"type":"tags","tags":["interest:sneakers"],"pixel":[]}"#, None),
            (&error, Some(Err("error frame RateLimited: too many messages; please slow down (the server's messages_per_second and messages_per_second_per_ip)".into()))),
            (r#"{"type":"error"}"#, Some(Err(r#"unreadable error frame: {"type":"error"}"#.into()))),
        ];
        for (frame, expected) in rows {
            assert_eq!(answer(frame), expected, "{frame}");
        }
    }
}
