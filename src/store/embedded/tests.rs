//! Every command on a fresh store, and what it leaves stored; batches all or nothing.
//! Data driven: each case is commands in, the whole store rendered as lines out.

use std::collections::BTreeMap;

use super::T;
use super::apply::{Group, Memory};
use crate::domain::{
    Change, ConsentChange, Conversation, Entry, Job, Order, OutboxItem, OutboxState, Source, Speaker, Status,
};
use crate::ids::{ConversationId, TurnId, VisitorId};
use crate::intents::slots::ConsentKind;
use crate::protocol::Consent;
use crate::store::{Command, Store, StoreError};

/// Fixed ids, so that the rendering can name them.
struct World {
    v1: VisitorId,
    v2: VisitorId,
    c1: ConversationId,
    c2: ConversationId,
    t1: TurnId,
    t2: TurnId,
    names: BTreeMap<[u8; 16], &'static str>,
}

impl World {
    fn new() -> World {
        let (v1, v2) = (VisitorId::mint(1), VisitorId::mint(2));
        let (c1, c2) = (ConversationId::mint(3), ConversationId::mint(4));
        let (t1, t2) = (TurnId::mint(5), TurnId::mint(6));
        let names = [
            (*v1.as_bytes(), "V1"),
            (*v2.as_bytes(), "V2"),
            (*c1.as_bytes(), "C1"),
            (*c2.as_bytes(), "C2"),
            (*t1.as_bytes(), "T1"),
            (*t2.as_bytes(), "T2"),
        ]
        .into();
        World { v1, v2, c1, c2, t1, t2, names }
    }

    fn name(&self, bytes: &[u8]) -> String {
        <[u8; 16]>::try_from(bytes)
            .ok()
            .and_then(|b| self.names.get(&b))
            .map_or_else(|| format!("?{}", bytes.len()), |n| n.to_string())
    }

    fn create(&self, visitor: VisitorId) -> Command {
        Command::Visitor { visitor, change: Change::Create { at: 10, locale: "en".into() } }
    }

    fn change(&self, visitor: VisitorId, change: Change) -> Command {
        Command::Visitor { visitor, change }
    }

    fn open(&self, id: ConversationId, visitor: VisitorId) -> Command {
        Command::OpenConversation(Box::new(Conversation {
            id,
            visitor,
            started_at: 10,
            last_at: 10,
            locale: "en".into(),
            source: Source::default(),
            pending: None,
        }))
    }

    /// The question a conversation waits on in a flow: the shoe size.
    fn size_question(&self) -> crate::domain::Pending {
        crate::domain::Pending {
            slot: "size".into(),
            tries: 0,
            then: Vec::new(),
            done: None,
            intent: "product_interest".into(),
        }
    }

    fn turn(&self, conversation: ConversationId, turn: TurnId, text: &str) -> Command {
        Command::AppendTurn { conversation, turn, entries: vec![shopper_says(text)] }
    }

    fn job(&self, visitor: VisitorId, job: Job) -> OutboxItem {
        OutboxItem::new(visitor, self.c1, job, "en", 30, 40)
    }

    fn email(&self, visitor: VisitorId) -> OutboxItem {
        self.job(visitor, Job::Email { template: "your_selection".into() })
    }

    /// The whole store as lines, ids by name, in tree order.
    fn render(&self, store: &Store) -> Vec<String> {
        let mut out = Vec::new();
        for profile in store.visitors() {
            let p = profile.expect("visitor");
            let prefs: Vec<String> = p.preferences.iter().map(|(k, v)| format!("{k}={}", v.value)).collect();
            let consent = p.consent.map_or("-".into(), |c| format!("m:{} a:{} {}", c.marketing, c.ads, c.source));
            out.push(format!(
                "visitor {} visits={} seen={} {} {} campaign={} score={} tags={:?} prefs={:?} consent=({consent}) handoff={:?} orders={:?}",
                self.name(p.id.as_bytes()),
                p.visits,
                p.last_seen_at,
                p.locale,
                p.status.as_str(),
                p.campaign.as_deref().unwrap_or("-"),
                p.score,
                p.tags,
                prefs,
                p.handoff_at,
                p.orders,
            ));
        }
        let trees = &store.embedded().trees;
        for (key, _) in trees.iter(T::LeadsByStatus).flatten() {
            let status = Status::ALL[key[0] as usize].as_str();
            out.push(format!("status {status} {}", self.name(&key[1..])));
        }
        for (key, _) in trees.iter(T::LeadsByCampaign).flatten() {
            let split = key.iter().position(|b| *b == 0).expect("campaign key");
            out.push(format!("campaign {} {}", String::from_utf8_lossy(&key[..split]), self.name(&key[split + 1..])));
        }
        // The injected failure is an unreadable conversation: rendered as what it is.
        for conversation in store.conversations() {
            let Ok(c) = conversation else {
                out.push("conversation unreadable".into());
                continue;
            };
            let pending = c.pending.map_or("-".into(), |p| p.slot);
            out.push(format!(
                "conversation {} of {} {} pending={pending}",
                self.name(c.id.as_bytes()),
                self.name(c.visitor.as_bytes()),
                c.locale
            ));
        }
        for (key, _) in trees.iter(T::Pending).flatten() {
            out.push(format!("pending question of {}", self.name(&key)));
        }
        for (key, _) in trees.iter(T::Locales).flatten() {
            out.push(format!("language of {}", self.name(&key)));
        }
        for (key, _) in trees.iter(T::VisitorConversations).flatten() {
            out.push(format!("conversations of {}: {}", self.name(&key[..16]), self.name(&key[16..])));
        }
        // Turns wherever they are kept (waiting, merged or recent), each once.
        let mut turns = BTreeMap::new();
        let recent: Vec<_> = trees.iter(T::RecentTurns).flatten().collect();
        let merged: Vec<_> = trees.iter(T::Transcripts).flatten().collect();
        let stored = recent.iter().flat_map(|(_, value)| super::turns::records(value).expect("recent turns"));
        for s in stored.chain(merged.iter().flat_map(|(k, v)| super::turns::in_transcripts(k, v).expect("turns"))) {
            let entries = super::turns::decode(s.value).expect("turn");
            let texts: Vec<String> = entries.into_iter().map(|e| e.text).collect();
            turns.insert((s.conversation.to_vec(), s.turn.to_vec()), texts);
        }
        for ((conversation, turn), texts) in turns {
            out.push(format!("turn {} {} {texts:?}", self.name(&conversation), self.name(&turn)));
        }
        for (key, value) in trees.iter(T::Emails).flatten() {
            out.push(format!("email {} -> {}", String::from_utf8_lossy(&key), self.name(&value)));
        }
        for (key, value) in trees.iter(T::Orders).flatten() {
            let order: Order = super::decode("orders", &value).expect("order");
            out.push(format!(
                "order {} of {} value={}",
                String::from_utf8_lossy(&key),
                self.name(order.visitor.as_bytes()),
                order.value
            ));
        }
        let mut outbox = Vec::new();
        for item in store.follow_ups() {
            let item = item.expect("outbox");
            outbox.push(format!(
                "outbox {} for {} {} due={}",
                item.job.describe(),
                self.name(item.visitor.as_bytes()),
                item.state.name(),
                item.due_at
            ));
        }
        // Items minted in one millisecond have random order: sorted by what they say.
        outbox.sort();
        out.extend(outbox);
        let due = trees.len(T::OutboxDue);
        let pending = trees.len(T::OutboxPending);
        if due + pending > 0 {
            out.push(format!("outbox indexes: {due} due, {pending} pending"));
        }
        for (key, _) in trees.iter(T::Erased).flatten() {
            out.push(format!("erased {}", self.name(&key)));
        }
        out
    }
}

fn shopper_says(text: &str) -> Entry {
    Entry {
        at: 20,
        from: Speaker::Shopper,
        text: text.into(),
        intent: None,
        how: None,
        confidence: None,
        variant: None,
    }
}

fn fresh() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open(dir.path()).expect("store");
    (dir, store)
}

#[test]
fn every_command_on_a_fresh_store() {
    let w = World::new();
    let (v1, v2, c1, c2) = (w.v1, w.v2, w.c1, w.c2);
    let yes = Consent { marketing: true, ads: true };
    let pref = |name: &str, value: &str, at| Change::Preference {
        name: name.into(),
        value: value.into(),
        at,
        message: "m".into(),
    };
    let order = Order {
        id: "A-1".into(),
        visitor: v1,
        conversation: Some(c1),
        campaign: None,
        variants: Vec::new(),
        value: 99.0,
        currency: "EUR".into(),
        at: 50,
    };
    let sent = |mut item: OutboxItem| {
        item.state = OutboxState::Sent { at: 60 };
        item
    };
    let mail = w.email(v1);
    let cases: Vec<(&str, Vec<Command>, Vec<&str>)> = vec![
        (
            "create",
            vec![w.create(v1), w.create(v1)],
            vec![
                "visitor V1 visits=0 seen=10 en chatting campaign=- score=0 tags={} prefs=[] consent=(-) handoff=None orders=[]",
                "status chatting V1",
            ],
        ),
        ("a change to a visitor that is not stored is dropped", vec![w.change(v2, pref("size", "42", 11))], vec![]),
        (
            "visit",
            vec![
                w.create(v1),
                w.change(
                    v1,
                    Change::Visit {
                        at: 12,
                        locale: Some("de".into()),
                        campaign: Some("spring".into()),
                        utm: Default::default(),
                    },
                ),
                w.change(v1, Change::Visit { at: 11, locale: None, campaign: None, utm: Default::default() }),
            ],
            vec![
                "visitor V1 visits=2 seen=12 de chatting campaign=spring score=0 tags={} prefs=[] consent=(-) handoff=None orders=[]",
                "status chatting V1",
                "campaign spring V1",
            ],
        ),
        (
            "preferences, tags, score, handoff, locale, campaign",
            vec![
                w.create(v1),
                w.change(v1, pref("size", "41", 11)),
                w.change(v1, pref("size", "42", 12)),
                w.change(v1, pref("colour", "black", 12)),
                w.change(v1, Change::Tags(vec!["interest:boots".into(), "vip".into()])),
                w.change(v1, Change::Tags(vec!["vip".into()])),
                w.change(v1, Change::Score(5)),
                w.change(v1, Change::Score(-2)),
                w.change(v1, Change::Handoff { at: 13 }),
                w.change(v1, Change::Handoff { at: 12 }),
                w.change(v1, Change::Locale("de".into())),
                w.change(v1, Change::Campaign("autumn".into())),
            ],
            vec![
                "visitor V1 visits=0 seen=10 de chatting campaign=autumn score=3 tags={\"interest:boots\", \"vip\"} prefs=[\"colour=black\", \"size=42\"] consent=(-) handoff=Some(13) orders=[]",
                "status chatting V1",
                "campaign autumn V1",
            ],
        ),
        (
            "a status only moves forward, and its index follows",
            vec![
                w.create(v1),
                w.change(v1, Change::Status { status: Status::CheckoutClicked, at: 11 }),
                w.change(v1, Change::Status { status: Status::Qualified, at: 12 }),
            ],
            vec![
                "visitor V1 visits=0 seen=10 en checkout_clicked campaign=- score=0 tags={} prefs=[] consent=(-) handoff=None orders=[]",
                "status checkout_clicked V1",
            ],
        ),
        (
            "consent: a page's banner cannot undo an unsubscribe, the chat can",
            vec![
                w.create(v1),
                w.create(v2),
                w.change(v1, Change::Consent(ConsentChange::page(yes, "hello", 11))),
                w.change(v1, Change::Consent(ConsentChange::unsubscribe(12))),
                w.change(v1, Change::Consent(ConsentChange::page(yes, "widget", 13))),
                w.change(v2, Change::Consent(ConsentChange::unsubscribe(12))),
                w.change(v2, Change::Consent(ConsentChange::chat(ConsentKind::Marketing, true, 13))),
            ],
            vec![
                "visitor V1 visits=0 seen=10 en chatting campaign=- score=0 tags={} prefs=[] consent=(m:false a:true unsubscribe_link) handoff=None orders=[]",
                "visitor V2 visits=0 seen=10 en chatting campaign=- score=0 tags={} prefs=[] consent=(m:true a:false chat) handoff=None orders=[]",
                "status chatting V1",
                "status chatting V2",
            ],
        ),
        (
            "link an email",
            vec![w.create(v1), Command::LinkEmail { email: "ana@example.com".into(), visitor: v1 }],
            vec![
                "visitor V1 visits=0 seen=10 en chatting campaign=- score=0 tags={} prefs=[] consent=(-) handoff=None orders=[]",
                "status chatting V1",
                "email ana@example.com -> V1",
            ],
        ),
        (
            "an order is recorded once and converts its visitor",
            vec![
                w.create(v1),
                Command::RecordOrder(Box::new(order.clone())),
                w.change(v1, Change::Order { id: "A-1".into(), at: 50 }),
                Command::RecordOrder(Box::new(Order { value: 1.0, ..order.clone() })),
                w.change(v1, Change::Order { id: "A-1".into(), at: 51 }),
            ],
            vec![
                "visitor V1 visits=0 seen=10 en converted campaign=- score=0 tags={} prefs=[] consent=(-) handoff=None orders=[\"A-1\"]",
                "status converted V1",
                "order A-1 of V1 value=99",
            ],
        ),
        (
            "a conversation: opened once, turns idempotent by id, pending and locale",
            vec![
                w.create(v1),
                w.open(c1, v1),
                w.turn(c1, w.t1, "hi"),
                w.turn(c1, w.t1, "hi"),
                w.turn(c1, w.t2, "boots"),
                Command::SetPending { conversation: c1, pending: Some(w.size_question()) },
                Command::ConversationLocale { conversation: c1, locale: "de".into() },
                w.open(c1, v1),
                Command::SetPending { conversation: c2, pending: None },
            ],
            vec![
                "visitor V1 visits=0 seen=10 en chatting campaign=- score=0 tags={} prefs=[] consent=(-) handoff=None orders=[]",
                "status chatting V1",
                "conversation C1 of V1 de pending=size",
                "pending question of C1",
                "language of C1",
                "conversations of V1: C1",
                "turn C1 T1 [\"hi\"]",
                "turn C1 T2 [\"boots\"]",
            ],
        ),
        (
            "expire a conversation, its pending question and language too: nothing can be added to it afterwards",
            vec![
                w.create(v1),
                w.open(c1, v1),
                w.turn(c1, w.t1, "hi"),
                Command::SetPending { conversation: c1, pending: None },
                Command::ConversationLocale { conversation: c1, locale: "de".into() },
                Command::ExpireConversation(c1),
                w.turn(c1, w.t2, "late"),
                Command::SetPending { conversation: c1, pending: None },
                Command::ConversationLocale { conversation: c1, locale: "fr".into() },
            ],
            vec![
                "visitor V1 visits=0 seen=10 en chatting campaign=- score=0 tags={} prefs=[] consent=(-) handoff=None orders=[]",
                "status chatting V1",
            ],
        ),
        (
            "enqueue once per visitor and job; finish",
            vec![
                w.create(v1),
                Command::Enqueue(Box::new(mail.clone())),
                Command::Enqueue(Box::new(w.email(v1))),
                Command::Enqueue(Box::new(mail.clone())),
                Command::Finish(Box::new(sent(mail.clone()))),
                Command::Enqueue(Box::new(w.email(v1))),
            ],
            vec![
                "visitor V1 visits=0 seen=10 en chatting campaign=- score=0 tags={} prefs=[] consent=(-) handoff=None orders=[]",
                "status chatting V1",
                "outbox email your_selection for V1 pending due=40",
                "outbox email your_selection for V1 sent due=40",
                "outbox indexes: 1 due, 1 pending",
            ],
        ),
        (
            "cancel: emails and the abandonment check, not tag events; a late outcome only as sent",
            vec![
                w.create(v1),
                Command::Enqueue(Box::new(mail.clone())),
                Command::Enqueue(Box::new(w.job(v1, Job::Abandoned))),
                Command::Enqueue(Box::new(w.job(v1, Job::TagEvent { tag: "vip".into(), at: 30 }))),
                Command::CancelFollowUps { visitor: v1, reason: "converted".into(), at: 45 },
                Command::Finish(Box::new(OutboxItem { due_at: 99, ..mail.clone() })),
            ],
            vec![
                "visitor V1 visits=0 seen=10 en chatting campaign=- score=0 tags={} prefs=[] consent=(-) handoff=None orders=[]",
                "status chatting V1",
                "outbox cart abandonment check for V1 cancelled due=40",
                "outbox email your_selection for V1 cancelled due=40",
                "outbox webhook: tag vip for V1 pending due=40",
                "outbox indexes: 1 due, 1 pending",
            ],
        ),
        (
            "erase: everything about the visitor goes, the order stays, nothing comes back",
            vec![
                w.create(v1),
                w.create(v2),
                w.change(v1, pref("email", "ana@example.com", 11)),
                Command::LinkEmail { email: "ana@example.com".into(), visitor: v1 },
                w.open(c1, v1),
                w.open(c2, v2),
                w.turn(c1, w.t1, "hi"),
                Command::Enqueue(Box::new(mail.clone())),
                Command::RecordOrder(Box::new(order.clone())),
                Command::Erase { visitor: v1, at: 70 },
                w.create(v1),
                w.change(v1, pref("size", "42", 71)),
                w.open(c1, v1),
                w.turn(c1, w.t2, "still typing"),
                Command::LinkEmail { email: "ana@example.com".into(), visitor: v1 },
                Command::Enqueue(Box::new(w.email(v1))),
                Command::Finish(Box::new(sent(mail.clone()))),
            ],
            vec![
                "visitor V2 visits=0 seen=10 en chatting campaign=- score=0 tags={} prefs=[] consent=(-) handoff=None orders=[]",
                "status chatting V2",
                "conversation C2 of V2 en pending=-",
                "conversations of V2: C2",
                "order A-1 of V1 value=99",
                "erased V1",
            ],
        ),
    ];
    for (name, commands, expected) in cases {
        // Once as one batch, once a batch per command: the same state either way.
        for batched in [true, false] {
            let (_dir, store) = fresh();
            if batched {
                store.commit_blocking(commands.clone()).expect(name);
            } else {
                for command in &commands {
                    store.commit_blocking(vec![command.clone()]).expect(name);
                }
            }
            assert_eq!(w.render(&store), expected, "{name} (batched: {batched})");
        }
    }
}

/// A value that cannot be decoded: the failure a test can inject into a real store.
fn corrupt_conversation(store: &Store, id: &ConversationId) {
    store.embedded().trees[T::Conversations].insert(id.as_bytes(), &[1, b'{'][..]).expect("insert");
}

#[test]
fn a_batch_whose_last_command_fails_leaves_nothing_and_its_retry_stores_the_turn_once() {
    let w = World::new();
    let (_dir, store) = fresh();
    store.commit_blocking(vec![w.create(w.v1), w.open(w.c1, w.v1)]).expect("setup");
    corrupt_conversation(&store, &w.c2);
    let before = w.render(&store);
    let turn = vec![
        w.turn(w.c1, w.t1, "I wear 42"),
        w.change(
            w.v1,
            Change::Preference { name: "size".into(), value: "42".into(), at: 20, message: "I wear 42".into() },
        ),
        w.change(w.v1, Change::Status { status: Status::Qualified, at: 20 }),
        Command::Enqueue(Box::new(w.email(w.v1))),
        Command::Erase { visitor: w.v2, at: 20 },
    ];
    let mut failing = turn.clone();
    failing.push(Command::ExpireConversation(w.c2));
    let error = store.commit_blocking(failing).expect_err("the last command fails");
    assert!(matches!(error, StoreError::Corrupt { tree: "conversations", .. }), "{error}");
    assert_eq!(w.render(&store), before, "nothing of the failed batch is stored");

    // The session retries the same message with the same turn id, and may do so twice.
    store.commit_blocking(turn.clone()).expect("retry");
    store.commit_blocking(turn).expect("retry again");
    let after = w.render(&store);
    assert_eq!(after.iter().filter(|l| l.starts_with("turn C1")).count(), 1, "{after:#?}");
    // Until a checkpoint, a retried turn may sit in two groups' values (readers key turns by
    // id); the checkpoint writes it once.
    let trees = &store.embedded().trees;
    store.embedded().checkpoint().expect("checkpoint");
    let merged: Vec<_> = trees[T::Transcripts].iter().flatten().collect();
    let records: usize = merged.iter().map(|(k, v)| super::turns::in_transcripts(k, v).expect("turns").len()).sum();
    assert_eq!(records, 1, "stored once");
    assert!(after[0].contains("qualified") && after[0].contains("size=42"), "{after:#?}");
    assert_eq!(after.iter().filter(|l| l.starts_with("outbox email")).count(), 1, "{after:#?}");
}

#[test]
fn in_a_group_a_failing_batch_does_not_take_the_others_with_it() {
    let w = World::new();
    let (_dir, store) = fresh();
    store.commit_blocking(vec![w.create(w.v1), w.open(w.c1, w.v1)]).expect("setup");
    corrupt_conversation(&store, &w.c2);
    let trees = &store.embedded().trees;
    let mut memory = Memory::load(trees).expect("memory");
    let mut group = Group::new(trees);
    group.stage(&mut memory, &[w.turn(w.c1, w.t1, "first")]).expect("first batch");
    let failing = vec![w.turn(w.c1, w.t2, "second"), Command::ExpireConversation(w.c2)];
    assert!(group.stage(&mut memory, &failing).is_err());
    group.stage(&mut memory, &[w.create(w.v2), Command::Erase { visitor: w.v1, at: 30 }]).expect("third batch");
    // A batch staged later in the group sees what earlier ones staged, the failed one excepted.
    group.stage(&mut memory, &[w.turn(w.c1, w.t2, "after the erasure")]).expect("fourth batch");
    group.commit(&mut memory, 1).expect("commit");
    let rendered = w.render(&store);
    assert!(!rendered.iter().any(|l| l.starts_with("turn")), "{rendered:#?}");
    assert!(rendered.contains(&"erased V1".to_string()), "{rendered:#?}");
    assert!(rendered.iter().any(|l| l.starts_with("visitor V2")), "{rendered:#?}");
}

#[test]
fn a_group_a_crash_interrupted_is_completed_from_the_journal_at_open() {
    let w = World::new();
    // What a group of the first batch plus a turn leaves.
    let reference = tempfile::tempdir().expect("dir");
    let complete = {
        let store = Store::open(reference.path()).expect("store");
        store.commit_blocking(vec![w.create(w.v1), w.open(w.c1, w.v1), w.turn(w.c1, w.t1, "hi")]).expect("commit");
        w.render(&store)
    };
    // The turn's group journaled, then a crash before any of its writes reached the trees; in
    // the journal's files, or in the tree that stores from before kept it in.
    for legacy in [false, true] {
        let dir = tempfile::tempdir().expect("dir");
        {
            let store = Store::open(dir.path()).expect("store");
            store.commit_blocking(vec![w.create(w.v1), w.open(w.c1, w.v1)]).expect("setup");
            store.flush().expect("checkpoint");
            let expected = w.render(&store);
            assert_ne!(expected, complete);
            let trees = &store.embedded().trees;
            let turn = [w.c1.as_bytes().as_slice(), w.t1.as_bytes()].concat();
            let value = super::turns::encode(&[shopper_says("hi")]);
            let writes = [(T::Transcripts, turn.as_slice(), Some(value.as_slice()))];
            if legacy {
                let mut entry = Vec::new();
                super::journal::encode(&mut entry, writes.into_iter());
                trees[T::Journal].insert(7u64.to_be_bytes(), entry).expect("journal");
                store.embedded().db.flush().expect("flush");
            } else {
                trees.journal.append(7, writes.into_iter()).expect("journal");
                trees.journal.sync().expect("sync");
            }
            assert_eq!(w.render(&store), expected, "the crash came before the group's writes");
        }
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(w.render(&store), complete, "completed at open (legacy: {legacy})");
        let trees = &store.embedded().trees;
        assert!(trees[T::Journal].is_empty() && trees.journal.records() == 0, "and the entry removed");
        // Replaying is harmless when the writes had all landed: committing goes on normally.
        store.commit_blocking(vec![w.turn(w.c1, w.t2, "again")]).expect("commit after replay");
    }
}

#[test]
fn a_checkpoint_writes_what_waits_into_the_trees_and_removes_the_journal_entries_it_covered() {
    let w = World::new();
    let (_dir, store) = fresh();
    let trees = &store.embedded().trees;
    let pause = |paused| trees.overlay.paused.store(paused, std::sync::atomic::Ordering::Relaxed);
    pause(true);
    store.commit_blocking(vec![w.create(w.v1), w.open(w.c1, w.v1), w.turn(w.c1, w.t1, "hi")]).expect("commit");
    let before = w.render(&store);
    // Acknowledged: the journal has the group, the trees not yet.
    assert!(trees[T::Visitors].is_empty() && trees[T::Transcripts].is_empty() && trees[T::LeadsByStatus].is_empty());
    assert_eq!(trees.journal.records(), 1);
    // The checkpoint thread does it within a second; here, now.
    store.embedded().checkpoint().expect("checkpoint");
    assert_eq!((trees[T::Visitors].len(), trees[T::Conversations].len(), trees[T::Transcripts].len()), (1, 1, 1));
    assert_eq!(trees[T::LeadsByStatus].len(), 1);
    assert!(trees[T::RecentTurns].is_empty(), "turns go straight into transcripts");
    assert_eq!(trees.journal.records(), 0);
    assert_eq!(w.render(&store), before, "reads the same");
    // A key written many times waits once, and is written once.
    for n in 1..=10 {
        store.commit_blocking(vec![w.change(w.v1, Change::Score(n))]).expect("commit");
    }
    assert_eq!(trees.overlay.range(T::Visitors, &[]).len(), 1);
    assert_eq!(trees.journal.records(), 10);
    pause(false);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while trees.journal.records() > 0 {
        assert!(std::time::Instant::now() < deadline, "the checkpoint thread never ran");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(store.visitor(&w.v1).expect("read").map(|p| p.score), Some(55));
    assert_eq!(
        trees[T::Visitors].get(w.v1.as_bytes()).expect("read"),
        trees.get(T::Visitors, w.v1.as_bytes()).expect("read")
    );
}

#[test]
fn leads_page_newest_first_and_an_older_store_gets_the_index_at_open() {
    let w = World::new();
    let dir = tempfile::tempdir().expect("dir");
    let visit = |at| Change::Visit { at, locale: None, campaign: None, utm: Default::default() };
    {
        let store = Store::open(dir.path()).expect("store");
        let commands = vec![w.create(w.v1), w.create(w.v2), w.change(w.v1, visit(30)), w.change(w.v2, visit(20))];
        store.commit_blocking(commands).expect("commit");
        let order: Vec<_> = store.visitors_by_last_seen(None).map(|r| r.expect("read").1.id).collect();
        assert_eq!(order, [w.v1, w.v2]);
        let after = store.visitors_by_last_seen(None).next().expect("first").expect("read").0;
        let rest: Vec<_> = store.visitors_by_last_seen(Some(after)).map(|r| r.expect("read").1.id).collect();
        assert_eq!(rest, [w.v2], "the page after the first");
        store.commit_blocking(vec![w.change(w.v2, visit(40))]).expect("seen again");
        let order: Vec<_> = store.visitors_by_last_seen(None).map(|r| r.expect("read").1.id).collect();
        assert_eq!(order, [w.v2, w.v1], "moved to the front, and only once");
        store.embedded().trees[T::LeadsBySeen].clear().expect("as before the index existed");
    }
    let store = Store::open(dir.path()).expect("reopen");
    let order: Vec<_> = store.visitors_by_last_seen(None).map(|r| r.expect("read").1.id).collect();
    assert_eq!(order, [w.v2, w.v1]);
}

#[test]
fn a_spent_link_is_remembered_until_its_token_expires() {
    let (_dir, store) = fresh();
    let (a, b) = ([1u8; 16], [2u8; 16]);
    store
        .commit_blocking(vec![
            Command::SpendLink { link: a, expires_at: 1_000 },
            Command::SpendLink { link: b, expires_at: 5_000 },
            Command::SpendLink { link: a, expires_at: 1_000 },
        ])
        .expect("commit");
    assert!(store.link_spent(&a).expect("read") && store.link_spent(&b).expect("read"));
    assert!(!store.link_spent(&[3u8; 16]).expect("read"));
    store.commit_blocking(vec![Command::ForgetSpentLinks { at: 1_000 }]).expect("commit");
    assert!(!store.link_spent(&a).expect("read"), "expired: forgotten");
    assert!(store.link_spent(&b).expect("read"), "still usable: remembered");
}

#[test]
fn turns_read_the_same_waiting_and_checkpointed_and_an_erasure_takes_the_waiting_ones_even_after_a_crash() {
    let w = World::new();
    let (t3, t4) = (TurnId::mint(7), TurnId::mint(8));
    let (dir, crashed) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
    let texts = |store: &Store, c: &ConversationId| -> Vec<String> {
        store.transcript(c).expect("transcript").into_iter().map(|e| e.text).collect()
    };
    let waiting = |store: &Store| store.embedded().trees.overlay.range(T::RecentTurns, &[]).len();
    {
        let store = Store::open(dir.path()).expect("store");
        let trees = &store.embedded().trees;
        trees.overlay.paused.store(true, std::sync::atomic::Ordering::Relaxed);
        store
            .commit_blocking(vec![w.create(w.v1), w.open(w.c1, w.v1), w.create(w.v2), w.open(w.c2, w.v2)])
            .expect("setup");
        store.commit_blocking(vec![w.turn(w.c1, w.t1, "one"), w.turn(w.c2, w.t1, "two")]).expect("turns");
        // A retry of the same turn, in a group of its own.
        store.commit_blocking(vec![w.turn(w.c1, w.t1, "one")]).expect("retry");
        store.commit_blocking(vec![w.turn(w.c1, w.t2, "three")]).expect("turn");
        assert_eq!((waiting(&store), trees[T::Transcripts].len()), (3, 0), "one value per group");
        assert_eq!(texts(&store, &w.c1), ["one", "three"]);
        let before = w.render(&store);

        store.embedded().checkpoint().expect("checkpoint");
        assert_eq!((waiting(&store), trees[T::RecentTurns].len()), (0, 0));
        assert_eq!(trees[T::Transcripts].len(), 2, "a chunk per conversation, each turn once");
        assert_eq!(w.render(&store), before, "the same turns");

        // Checkpointed and waiting turns read together, in order; the latest gives `last_at`.
        let mut later = shopper_says("four");
        later.at = 30;
        store
            .commit_blocking(vec![Command::AppendTurn { conversation: w.c1, turn: t3, entries: vec![later] }])
            .expect("turn");
        assert_eq!(texts(&store, &w.c1), ["one", "three", "four"]);
        assert_eq!(store.conversation(&w.c1).expect("read").map(|c| c.last_at), Some(30));

        // V2's waiting turn goes with the erasure, also from the group's value.
        store.commit_blocking(vec![w.turn(w.c2, t4, "five"), w.turn(w.c1, t4, "six")]).expect("turns");
        store.commit_blocking(vec![Command::Erase { visitor: w.v2, at: 40 }]).expect("erase");
        assert_eq!(texts(&store, &w.c2), Vec::<String>::new());

        // A crash now: the store as it is on disk, without the checkpoint a clean stop makes.
        assert_eq!(trees.journal.records(), 3, "the groups since the checkpoint");
        copy_dir(dir.path(), crashed.path());
    }
    for (path, how) in [(dir.path(), "after a clean stop"), (crashed.path(), "after a crash")] {
        let store = Store::open(path).expect("reopen");
        let trees = &store.embedded().trees;
        assert_eq!((trees.journal.records(), trees[T::RecentTurns].len()), (0, 0), "{how}: replayed and merged");
        assert_eq!(texts(&store, &w.c1), ["one", "three", "four", "six"], "{how}: nothing lost");
        let rendered = w.render(&store);
        assert!(!rendered.iter().any(|l| l.starts_with("turn C2")), "{how}: nothing erased came back: {rendered:#?}");
    }
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        match entry.file_type().expect("type").is_dir() {
            true => copy_dir(&entry.path(), &target),
            false => drop(std::fs::copy(entry.path(), target).expect("copy")),
        }
    }
}

#[test]
fn a_commit_wakes_the_outbox_worker_only_for_a_job_due_before_it_wakes_anyway() {
    let w = World::new();
    let (_dir, store) = fresh();
    store.commit_blocking(vec![w.create(w.v1)]).expect("setup");
    let raised = |store: &Store| store.outbox_signal().take(std::time::Duration::ZERO);
    let due_at = |due_at| OutboxItem { due_at, ..w.email(w.v1) };
    // While the worker looks (as at start), every job wakes it.
    store.commit_blocking(vec![Command::Enqueue(Box::new(due_at(5_000)))]).expect("enqueue");
    assert!(raised(&store));
    store.outbox_sleeps_until(1_000);
    store.commit_blocking(vec![Command::Enqueue(Box::new(due_at(2_000)))]).expect("enqueue");
    assert!(!raised(&store), "due after the worker wakes by itself");
    store.commit_blocking(vec![Command::Enqueue(Box::new(due_at(500)))]).expect("enqueue");
    assert!(raised(&store), "due before");
    store.outbox_awake();
    store.commit_blocking(vec![Command::Enqueue(Box::new(due_at(9_000)))]).expect("enqueue");
    assert!(raised(&store), "the worker is looking: it must look again");
}

/// The writer learns which conversations exist as it opens them; one opened before the store
/// was opened again is found in the trees, and its question and language are stored all the same.
#[test]
fn a_conversation_from_before_a_restart_takes_its_question_and_language() {
    let w = World::new();
    let dir = tempfile::tempdir().expect("dir");
    {
        let store = Store::open(dir.path()).expect("store");
        store.commit_blocking(vec![w.create(w.v1), w.open(w.c1, w.v1)]).expect("setup");
    }
    let store = Store::open(dir.path()).expect("reopen");
    for command in [
        Command::SetPending { conversation: w.c1, pending: Some(w.size_question()) },
        Command::ConversationLocale { conversation: w.c1, locale: "de".into() },
        Command::SetPending { conversation: w.c2, pending: None },
    ] {
        store.commit_blocking(vec![command]).expect("commit");
    }
    let rendered = w.render(&store);
    assert!(rendered.contains(&"conversation C1 of V1 de pending=size".to_string()), "{rendered:#?}");
    assert!(!rendered.iter().any(|l| l.contains("C2")), "nothing for a conversation never opened: {rendered:#?}");
}

/// Answers reach a current-thread runtime through a relay task on it; a runtime that stops takes
/// its relay along, and the next one on the same thread starts another.
#[test]
fn commits_are_answered_on_every_runtime_a_thread_runs_in_turn() {
    let w = World::new();
    let (_dir, store) = fresh();
    store.commit_blocking(vec![w.create(w.v1), w.create(w.v2)]).expect("setup");
    for score in 1..=3 {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let (one, two) = runtime.block_on(async {
            tokio::join!(
                store.commit(vec![w.change(w.v1, Change::Score(score))]),
                store.commit(vec![w.change(w.v2, Change::Score(score))]),
            )
        });
        one.and(two).expect("both answered");
    }
    let rendered = w.render(&store);
    assert_eq!(rendered.iter().filter(|l| l.contains("score=6")).count(), 2, "{rendered:#?}");
}
