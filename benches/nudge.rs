//! `cargo bench`: routing (starter pack and a generated pack of 500 intents), slot capture, the
//! durable transcript append (group commit) at 1, 16 and 256 concurrent writers, and the leads
//! export per 10,000 visitors.

use std::path::Path;

use divan::{Bencher, counter::ItemsCount};
use nudge::dialogue::{self, Input, State};
use nudge::domain::{Change, Entry, Pending, Preference, Speaker};
use nudge::ids::{ConversationId, TurnId, VisitorId};
use nudge::intents::{IntentSet, text};
use nudge::store::{Command, Store};

fn main() {
    divan::main();
}

const MESSAGES: [&str; 10] = [
    "hi",
    "do you ship to Austria?",
    "I'm looking for black sneakers in size 42",
    "how long does delivery take",
    "I would like to know where my parcel is",
    "I have to speak with customer assistance",
    "what's the weather like tomorrow",
    "Wie lange dauert die Lieferung?",
    "can you help me get a rebate of money",
    "I need assistance editing my user data",
];

fn starter_pack() -> IntentSet {
    IntentSet::load(Path::new("intents")).expect("starter pack compiles")
}

/// 500 intents with 4 patterns and 8 examples each, over a shared vocabulary so that the
/// example ranker has real overlap to sort out.
fn generated_pack() -> (tempfile::TempDir, IntentSet) {
    let dir = tempfile::tempdir().expect("dir");
    let words: Vec<String> =
        (0..3000).map(|i| format!("w{:x}{}", i * 7919 % 4096, ["a", "o", "e", "i"][i % 4])).collect();
    let mut text = String::from(
        "[[intent]]\nid = \"welcome\"\n[intent.en]\nreply = [\"hi\"]\n\n[[intent]]\nid = \"fallback\"\n[intent.en]\nreply = [\"?\"]\n",
    );
    for i in 0..500 {
        let w = |k: usize| &words[(i * 13 + k * 101) % words.len()];
        text += &format!(
            "\n[[intent]]\nid = \"intent_{i}\"\npatterns = ['''\\b{} (my|the) {}\\b''', '''\\b{}\\W+{}\\b''', '''^{} {}''', '''\\b{}s? {}\\b''']\n",
            w(0),
            w(1),
            w(2),
            w(3),
            w(4),
            w(5),
            w(6),
            w(7)
        );
        let examples: Vec<String> =
            (0..8).map(|e| format!("\"i need help to {} {} {} order\"", w(e + 1), w(e + 9), w(e + 17))).collect();
        text += &format!("examples = [{}]\n[intent.en]\nreply = [\"reply {i}\"]\n", examples.join(", "));
    }
    std::fs::write(dir.path().join("generated.toml"), text).expect("write");
    let set = IntentSet::load(dir.path()).expect("generated pack compiles");
    (dir, set)
}

#[divan::bench]
fn route_starter_pack(bencher: Bencher) {
    let set = starter_pack();
    let messages: Vec<text::Message> = MESSAGES.iter().map(|m| text::Message::new(m)).collect();
    bencher
        .counter(ItemsCount::new(messages.len()))
        .bench_local(|| messages.iter().map(|m| set.route(m, &|_| false).intent).sum::<usize>());
}

#[divan::bench]
fn route_500_intents(bencher: Bencher) {
    let (_dir, set) = generated_pack();
    let messages: Vec<text::Message> = MESSAGES.iter().map(|m| text::Message::new(m)).collect();
    bencher
        .counter(ItemsCount::new(messages.len()))
        .bench_local(|| messages.iter().map(|m| set.route(m, &|_| false).intent).sum::<usize>());
}

#[divan::bench]
fn normalize(bencher: Bencher) {
    bencher
        .counter(ItemsCount::new(MESSAGES.len()))
        .bench_local(|| MESSAGES.iter().map(|m| text::normalize(m).len()).sum::<usize>());
}

/// A whole engine step that answers a pending size question and asks the next one.
#[divan::bench]
fn slot_capture_step(bencher: Bencher) {
    let set = starter_pack();
    let preferences =
        [("product".to_string(), Preference { value: "sneakers".into(), at: 0, message: "sneakers".into() })].into();
    let pending = Pending {
        slot: "size".into(),
        tries: 0,
        then: vec!["colour".into(), "budget".into()],
        done: Some("lead_summary".into()),
        intent: "product_interest".into(),
    };
    let state = State { visitor: VisitorId::mint(1), locale: "en", preferences: &preferences, pending: Some(&pending) };
    bencher.bench_local(|| dialogue::step(&set, &state, Input::Say("I wear 42"), 0).frames.len());
}

fn entry(i: usize) -> Entry {
    Entry {
        at: i as u64,
        from: Speaker::Shopper,
        text: "do you ship to Austria?".into(),
        intent: Some("shipping_options".into()),
        how: None,
        confidence: None,
        variant: None,
    }
}

/// Durable appends: `writers` sessions commit a turn (message and reply) at once and wait for
/// their flush, as the chat sessions do; counted per turn.
#[divan::bench(args = [1, 16, 256], sample_count = 20)]
fn transcript_append_durable(bencher: Bencher, writers: usize) {
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open(dir.path()).expect("store");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().expect("runtime");
    let conversations: Vec<ConversationId> = (0..writers).map(|i| ConversationId::mint(i as u64)).collect();
    bencher.counter(ItemsCount::new(writers)).bench_local(|| {
        runtime.block_on(async {
            let commits = conversations.iter().enumerate().map(|(i, c)| {
                let store = store.clone();
                let write = Command::AppendTurn {
                    conversation: *c,
                    turn: TurnId::mint(i as u64),
                    entries: vec![entry(i), entry(i)],
                };
                tokio::spawn(async move { store.commit(vec![write]).await })
            });
            for commit in commits.collect::<Vec<_>>() {
                commit.await.expect("join").expect("commit");
            }
        });
    });
}

#[divan::bench(sample_count = 5)]
fn export_leads_10k_visitors(bencher: Bencher) {
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open(dir.path()).expect("store");
    let writes: Vec<Command> = (0..10_000u64)
        .flat_map(|i| {
            let visitor = VisitorId::mint(i);
            let preferences =
                [("product", "sneakers"), ("size", "42"), ("email", "a@example.com")].map(|(name, value)| {
                    Change::Preference { name: name.into(), value: value.into(), at: i, message: value.into() }
                });
            [Change::Create { at: i, locale: "en".into() }, Change::Tags(vec!["interest:sneakers".into()])]
                .into_iter()
                .chain(preferences)
                .map(move |change| Command::Visitor { visitor, change })
        })
        .collect();
    store.commit_blocking(writes).expect("populate");
    let filter = nudge::export::LeadFilter::default();
    bencher.counter(ItemsCount::new(10_000usize)).bench_local(|| {
        nudge::export::leads(&store, &filter, nudge::export::Format::Csv, false, std::io::sink(), |_, _| {})
            .expect("export")
    });
}
