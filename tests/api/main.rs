//! Integration tests: the real `nudge` binary on a free port with a temporary store, driven by a
//! real WebSocket client.

mod admin;
mod backend;
mod bad_input;
mod chat;
mod cli;
mod concurrency;
mod durability;
mod email;
mod flow;
mod fuzz_regressions;
mod garbage;
mod helpers;
mod intent_files;
mod journeys;
mod leads;
mod nodes;
mod privacy;
mod receivers;
mod reliability;
mod reload;
mod retargeting;
mod triggers;
mod webdriver;
mod widget;
