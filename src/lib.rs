//! Nudge: a self-hosted conversational marketing server.
//!
//! The binary (`main.rs`) only parses the command line; everything else lives here, named after
//! the product: `intents` (compiled intent files, pure routing), `dialogue` (the pure engine that
//! turns a message into replies and effects), `store` (the only module that touches sled),
//! `chat` (the `chat.v1` WebSocket session), `server` (the HTTP app), `pages` (widget and pages),
//! `client` (the terminal chat client).

pub mod ab;
pub mod admin;
pub mod allocator;
pub mod api;
pub mod app;
pub mod chat;
pub mod client;
pub mod clock;
pub mod config;
pub mod dialogue;
pub mod domain;
pub mod export;
pub mod fuzzing;
pub mod ids;
pub mod intents;
pub mod journeys;
pub mod metrics;
pub mod outbox;
pub mod pages;
pub mod protocol;
pub mod reload;
pub mod retention;
pub mod server;
pub mod signal;
pub mod store;
pub mod triggers;

/// Milliseconds since the Unix epoch by the system clock. The server reads its `App::clock`
/// (`clock::Clock`, which tests move ahead); the command line and the liveness of
/// nodes on a shared database (wall time between machines) read this.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
pub mod leads;
pub mod loadgen;
pub mod secrets;
pub mod signing;
