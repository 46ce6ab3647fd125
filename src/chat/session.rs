//! One connection: the frame loop, heartbeats, and the conversation it carries.

use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, ProtocolError, Session};

use super::agents::FromPerson;
use super::effects::{self, Outcome};
use super::hello;
use super::limits::{Admitted, Bucket};
use super::unsaved::Unsaved;
use crate::app::App;
use crate::dialogue::{self, Input};
use crate::domain::{Change, ConsentChange, Conversation, Entry, Handoff, Profile, Source, Speaker, Undo};
use crate::ids::{ConversationId, TurnId, VisitorId};
use crate::leads::{EmailLink, LinkError};
use crate::metrics::{hot, name};
use crate::protocol::{self, ClientFrame, ErrorCode, Hello, ServerFrame};
use crate::store::Command;

/// The `intent` of replies a person wrote (from the admin).
pub const AGENT: &str = "agent";

/// Counts a connection as open for as long as it lives.
struct Connected;

impl Drop for Connected {
    fn drop(&mut self) {
        metrics::gauge!(name::CONNECTIONS_OPEN).decrement(1.0);
    }
}

/// The connection's task. Its state is built before the block that runs it, and moved in once:
/// an `async fn`'s future keeps a second copy of its arguments (264 bytes on every
/// connection).
pub fn run(
    app: Arc<App>,
    admitted: Admitted,
    ws: Session,
    stream: AggregatedMessageStream,
) -> impl Future<Output = ()> {
    // Boxed: 176 bytes that would take the task past a size class (1,024 bytes against 768).
    let mut stream = Box::new(stream);
    let config = &app.config;
    let heartbeat = secs(config.heartbeat_secs);
    let mut connection = Connection {
        last_heard: Instant::now(),
        last_chat: Instant::now(),
        pace: Pace { budget: Bucket::new(config.messages_per_second, config.message_burst), strikes: 0 },
        chat: Chat { app: app.clone(), state: State::Waiting },
        admitted,
        ws,
    };
    async move {
        metrics::gauge!(name::CONNECTIONS_OPEN).increment(1.0);
        crate::metrics::count(name::CONNECTIONS);
        let _open = Connected;
        // The shutdown waits until this is dropped.
        let _running = app.sessions.enter();
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
        // These waits last for the whole connection, not one frame (`signal::woken_when`).
        let stopping = app.shutdown.raised();
        tokio::pin!(stopping);
        let mut agent = app.live.register();
        let inbox = agent.inbox.clone();
        let mail = inbox.next();
        tokio::pin!(mail);
        // The loop only waits; what comes is handled in a boxed future, made inside `select!` and
        // run after it, so an idle connection's task holds what waiting needs, not room for a
        // reply, a ping or a close in flight, nor for what `select!` gave (tokio's task: 1,664 →
        // 768 bytes per connection, `-Zprint-type-sizes`).
        let close = loop {
            // In this order, so a frame that came costs a look at two flags and one poll:
            // `select!` would otherwise start at a random branch. The stop and a person's action
            // come before the next frame; a reply in progress always completes first (`select!`
            // only looks between frames). While frames keep coming, heartbeats wait: chat frames
            // stop at the rate limit.
            let handler: Pin<Box<dyn Future<Output = Next> + '_>> = tokio::select! {
                biased;
                _ = &mut stopping => {
                    break Some(CloseReason { code: CloseCode::Restart, description: Some("server restarting".into()) });
                }
                event = &mut mail => {
                    mail.set(inbox.next());
                    Box::pin(connection.on_person(event))
                }
                message = stream.recv() => Box::pin(connection.on_frame(message, &mut agent)),
                _ = ticks.tick() => Box::pin(connection.on_tick()),
            };
            match handler.await {
                Next::Wait => {}
                Next::Close(reason) => break reason,
                Next::Gone => return,
            }
        };
        log_close(&close);
        let _ = Box::pin(connection.ws.close(close)).await;
    }
}

/// What the frame loop does next.
enum Next {
    Wait,
    Close(Option<CloseReason>),
    /// The client is gone (a send failed): nothing more to send.
    Gone,
}

/// A connection's state between frames. (Its time limits are read from the configuration
/// when needed, not kept in every idle connection.)
struct Connection {
    ws: Session,
    chat: Chat,
    admitted: Admitted,
    pace: Pace,
    last_heard: Instant,
    last_chat: Instant,
}

/// Of where a conversation came from, the session needs only the campaign (for checkout
/// links); the rest is stored, and would cost every idle connection up to 4 KiB.
fn keep_campaign(source: &mut Source) {
    *source = Source { campaign: source.campaign.take(), ..Source::default() };
}

/// A configured number of seconds, at least one.
fn secs(configured: u64) -> Duration {
    Duration::from_secs(configured.max(1))
}

impl Connection {
    async fn on_person(&mut self, event: FromPerson) -> Next {
        let frames = self.chat.on_person(event).await;
        self.send(frames).await
    }

    /// A heartbeat: closes a connection that went quiet, pings the others.
    async fn on_tick(&mut self) -> Next {
        let config = &self.chat.app.config;
        if self.last_heard.elapsed() > secs(config.heartbeat_secs) * 3 {
            return Next::Close(Some(CloseReason { code: CloseCode::Away, description: Some("no heartbeat".into()) }));
        }
        if self.last_chat.elapsed() > secs(config.idle_timeout_secs) {
            let description = Some("idle".into());
            return Next::Close(Some(CloseReason { code: CloseCode::Other(super::CLOSE_IDLE), description }));
        }
        sent(self.ws.ping(b"").await)
    }

    async fn on_frame(
        &mut self,
        frame: Option<Result<AggregatedMessage, ProtocolError>>,
        agent: &mut super::agents::Registration,
    ) -> Next {
        self.last_heard = Instant::now();
        // When the text frame being answered arrived.
        let mut answering = None;
        let frames = match frame {
            None => return Next::Close(None),
            Some(Ok(AggregatedMessage::Text(text))) => {
                self.last_chat = self.last_heard;
                answering = Some(self.last_chat);
                match self.pace.take(&self.admitted, self.last_chat, self.chat.app.config.rate_limit_strikes) {
                    Paced::Answer => {
                        let frames = self.chat.handle(&text).await;
                        if let State::Open(open) = &self.chat.state {
                            agent.carry(open.profile.id);
                        }
                        frames
                    }
                    Paced::Refuse => {
                        vec![ServerFrame::error(ErrorCode::RateLimited, "too many messages; please slow down")]
                    }
                    Paced::Close => {
                        let description = Some("rate limited".into());
                        return Next::Close(Some(CloseReason { code: CloseCode::Policy, description }));
                    }
                }
            }
            Some(Ok(AggregatedMessage::Binary(_))) => vec![ServerFrame::error(
                ErrorCode::BadRequest,
                "binary frames are not part of chat.v1: send JSON text frames",
            )],
            Some(Ok(AggregatedMessage::Ping(bytes))) => return sent(self.ws.pong(&bytes).await),
            Some(Ok(AggregatedMessage::Pong(_))) => return Next::Wait,
            Some(Ok(AggregatedMessage::Close(_))) => return Next::Close(None),
            Some(Err(error)) => {
                let (frame, reason) = protocol_error(&error);
                let _ = self.ws.text(frame.to_json()).await;
                return Next::Close(Some(reason));
            }
        };
        let next = self.send(frames).await;
        if let Some(started) = answering {
            hot::REPLY_SECONDS.record(started.elapsed());
        }
        next
    }

    async fn send(&mut self, frames: Vec<ServerFrame>) -> Next {
        match send(&mut self.ws, frames, secs(self.chat.app.config.send_timeout_secs)).await {
            true => Next::Wait,
            false => Next::Gone,
        }
    }
}

/// A ping or pong sent, or the client gone.
fn sent<E>(result: Result<(), E>) -> Next {
    match result {
        Ok(()) => Next::Wait,
        Err(_) => Next::Gone,
    }
}

/// A connection's message budget, and how many messages in a row it refused.
struct Pace {
    budget: Bucket,
    strikes: u32,
}

enum Paced {
    Answer,
    /// Over the budget: an error frame.
    Refuse,
    /// Over it `rate_limit_strikes` times in a row: the connection closes.
    Close,
}

impl Pace {
    /// Spends one message of the connection's budget and of its address's (`admitted`).
    fn take(&mut self, admitted: &Admitted, now: Instant, most_strikes: u32) -> Paced {
        if self.budget.take(now) && admitted.take_message(now) {
            self.strikes = 0;
            return Paced::Answer;
        }
        self.strikes += 1;
        if self.strikes >= most_strikes { Paced::Close } else { Paced::Refuse }
    }
}

/// Sends `frames` in order, each within `timeout`: the outgoing queue is bounded, so a client
/// that stops reading is dropped (`false`) instead of having its replies buffered without limit.
async fn send(ws: &mut Session, frames: Vec<ServerFrame>, timeout: Duration) -> bool {
    for frame in frames {
        match &frame {
            ServerFrame::Error { .. } => crate::metrics::count(name::ERROR_FRAMES),
            ServerFrame::Reply(protocol::Reply { how: Some(how), .. }) => hot::ROUTES.increment(*how as usize),
            _ => {}
        }
        let mut text = std::pin::pin!(ws.text(frame.to_json()));
        // The outgoing queue nearly always has room and the first poll sends: only a frame that
        // has to wait is given a timer (one per frame cost a clock read and the runtime's handle).
        let sent = match std::future::poll_fn(|cx| Poll::Ready(text.as_mut().poll(cx))).await {
            Poll::Ready(sent) => sent.is_ok(),
            Poll::Pending => matches!(tokio::time::timeout(timeout, text).await, Ok(Ok(()))),
        };
        if !sent {
            return false;
        }
    }
    true
}

/// Refusals are worth a line for whoever runs the shop; a client that went quiet is not.
fn log_close(close: &Option<CloseReason>) {
    match close {
        Some(CloseReason {
            code: CloseCode::Policy | CloseCode::Size | CloseCode::Invalid | CloseCode::Protocol,
            description,
        }) => log::warn!("chat closed: {}", description.as_deref().unwrap_or("protocol error")),
        Some(CloseReason { description, .. }) => log::debug!("chat closed: {}", description.as_deref().unwrap_or("")),
        None => {}
    }
}

/// The error frame and close reason for a frame the codec could not accept. These end the
/// connection because the byte stream can no longer be trusted to be in sync.
fn protocol_error(error: &ProtocolError) -> (ServerFrame, CloseReason) {
    match error {
        ProtocolError::Overflow => (
            ServerFrame::error(ErrorCode::TooLong, "frame too large"),
            CloseReason { code: CloseCode::Size, description: Some("frame too large".into()) },
        ),
        ProtocolError::Io(e) if e.kind() == std::io::ErrorKind::InvalidData => (
            ServerFrame::error(ErrorCode::BadRequest, "text frame is not valid UTF-8"),
            CloseReason { code: CloseCode::Invalid, description: Some("invalid UTF-8".into()) },
        ),
        other => (
            ServerFrame::error(ErrorCode::BadRequest, format!("WebSocket protocol error: {other}")),
            CloseReason { code: CloseCode::Protocol, description: None },
        ),
    }
}

/// What a frame asks of an open conversation. A frame's fields without `hello`'s: a
/// `ClientFrame` is 304 bytes, and the future answering a message held it three times over
/// (920 of its 2,664 bytes, boxed and copied for every frame).
enum Asked {
    Message(String, Sent),
    Consent(protocol::Consent),
    Hello,
}

/// How a message came: typed (`say`), or a quick reply chosen (`choose`).
#[derive(Clone, Copy)]
enum Sent {
    Typed,
    Chosen,
}

struct Chat {
    app: Arc<App>,
    state: State,
}

/// A connection waits for `hello`; then it carries the conversation `hello` opened. Only an
/// open conversation answers messages: the types say so, not a check in every handler.
enum State {
    Waiting,
    /// A visitor the store does not know yet who has only said hello, held as nothing but the
    /// commands that would store them: they say everything `Open` would hold, and the first
    /// message rebuilds it from them (`Open::replay`). Most connections from an ad's landing
    /// page never say more; each is spared the conversation's memory (~1.3 KiB).
    Greeted(Unsaved),
    /// Boxed: the frame loop's future holds a word for it, not the whole conversation.
    Open(Box<Open>),
}

impl State {
    /// The open conversation, rebuilt first for a visitor who only said hello.
    fn open(&mut self) -> Result<Option<&mut Open>, crate::store::StoreError> {
        if let State::Greeted(unsaved) = self {
            let mut open = Open::replay(unsaved)?;
            open.unsaved = std::mem::take(unsaved);
            *self = State::Open(Box::new(open));
        }
        Ok(match self {
            State::Open(open) => Some(open),
            State::Waiting | State::Greeted(_) => None,
        })
    }
}

/// The conversation a connection carries once `hello` has opened it.
struct Open {
    profile: Profile,
    conversation: Conversation,
    /// The message whose commit failed, and the turn id it had: its retry reuses the id.
    failed: Option<(String, TurnId)>,
    /// The last turn this session stored: the next one sorts after it.
    last_turn: Option<TurnId>,
    /// What `hello` would store (a new visitor, the visit, the conversation, the greeting):
    /// committed with the first message, so a visitor who only said hello is not stored.
    unsaved: Unsaved,
}

/// When a step's commands are stored.
enum Persist {
    /// Before its frames are sent (every message).
    Now,
    /// With the next message's commit (the greeting of `hello`).
    WithNextMessage,
}

impl Chat {
    async fn handle(&mut self, raw: &str) -> Vec<ServerFrame> {
        let asked = match protocol::decode(raw) {
            Err(reason) => return vec![ServerFrame::error(ErrorCode::BadRequest, reason)],
            // Boxed, as the rare paths below: every message's future would otherwise be as large
            // as the largest of them, and is copied whole at each level it is awaited through.
            Ok(ClientFrame::Hello(hello)) if matches!(self.state, State::Waiting) => {
                return Box::pin(self.hello(hello)).await.unwrap_or_else(|error| vec![error]);
            }
            Ok(ClientFrame::Hello(_)) => Asked::Hello,
            Ok(ClientFrame::Say { text }) => Asked::Message(text, Sent::Typed),
            Ok(ClientFrame::Choose { value }) => Asked::Message(value, Sent::Chosen),
            Ok(ClientFrame::Consent(consent)) => Asked::Consent(consent),
        };
        let result = match self.state.open() {
            Err(e) => Err(internal(e)),
            Ok(None) => Err(ServerFrame::error(ErrorCode::BadRequest, "send hello first")),
            Ok(Some(open)) => open.answer(&self.app, asked).await,
        };
        result.unwrap_or_else(|error| vec![error])
    }

    async fn hello(&mut self, mut hello: Hello) -> Result<Vec<ServerFrame>, ServerFrame> {
        let max = self.app.config.max_hello_bytes;
        if hello.attribution_bytes() > max {
            let message = format!("page, referrer, campaign, utm and click ids are at most {max} bytes together");
            return Err(ServerFrame::error(ErrorCode::TooLong, message));
        }
        let now = self.app.now_ms();
        let mut frames = Vec::new();
        let link = match hello.token.as_deref().filter(|t| !t.is_empty()) {
            None => None,
            Some(token) => match self.email_link(token, now) {
                Ok(link) => Some(link),
                // A bad link still gets a chat, as an anonymous visitor.
                Err(error) => {
                    frames.push(error);
                    None
                }
            },
        };
        let requested = hello.visitor.as_deref().and_then(|v| VisitorId::parse(v).ok());
        let key = hello.key.clone();
        let resume_window = self.app.config.resume_window_secs * 1000;
        let hello::Recalled { link, found, spent } = self
            .app
            .store
            .read(move |store| hello::recall(store, link, requested, key, now, resume_window))
            .await
            .map_err(internal)?;
        if spent {
            let message = "this email link was already used; the chat goes on where it was first opened";
            frames.push(ServerFrame::error(ErrorCode::Unauthorized, message));
        }
        let hello::Opened { mut profile, conversation, returning, history, key, mut commands } =
            hello::open(&mut hello, found, link.as_ref(), now, resume_window);
        super::now_about(profile.id, conversation.id);
        frames.push(ServerFrame::Welcome {
            visitor: profile.id.to_string(),
            conversation: conversation.id.to_string(),
            returning,
            key,
            history,
            locale: conversation.locale.clone(),
        });
        let mut conversation = conversation;
        keep_campaign(&mut conversation.source);
        let person = person(&self.app, &profile, now);
        // A button in an email answers the question the conversation still waits on; one that no
        // longer fits (answered meanwhile in the chat) answers nothing.
        let answer = link
            .as_ref()
            .and_then(|l| l.answer.clone())
            .filter(|a| conversation.pending.as_ref().is_some_and(|p| p.slot == a.slot));
        let intents = self.app.intents();
        if let Some(seen) = &hello.trigger {
            match hello::triggered(&intents, seen, now) {
                Ok(change) => commands.push(Command::change(&mut profile, change)),
                Err(why) => frames.push(ServerFrame::error(ErrorCode::BadRequest, why)),
            }
        }
        let mut open =
            Box::new(Open { profile, conversation, failed: None, last_turn: None, unsaved: Unsaved::default() });
        let start = hello::opens_in(&intents, hello.start.as_deref()).unwrap_or_else(|why| {
            frames.push(ServerFrame::error(ErrorCode::BadRequest, why));
            None
        });
        if let Some(name) = person {
            // A person has the chat: they greet, not the bot.
            open.unsaved = Unsaved::hold(&commands).map_err(internal)?;
            self.state = State::Open(open);
            frames.push(ServerFrame::Handoff { agent: Some(name) });
            return Ok(frames);
        }
        let (input, persist) = match (&answer, start) {
            // Recorded at once, as a `choose` would be: opening the link is the answer.
            (Some(answer), _) => (Input::Choose(&answer.value), Persist::Now),
            (None, Some(id)) => (Input::Open(id), Persist::WithNextMessage),
            (None, None) => (Input::Start, Persist::WithNextMessage),
        };
        // On an error nothing of this hello was stored, and the connection still waits for
        // one: the client may say hello again.
        let greeted = !returning && matches!(persist, Persist::WithNextMessage);
        frames.extend(open.step(&self.app, input, commands, persist).await?);
        self.state = match greeted {
            true => State::Greeted(std::mem::take(&mut open.unsaved)),
            false => State::Open(open),
        };
        Ok(frames)
    }

    /// Verifies an email link token from `hello`. (Its error is a frame, sent and dropped at
    /// once: not worth a box.)
    #[allow(clippy::result_large_err)]
    fn email_link(&self, token: &str, now: u64) -> Result<EmailLink, ServerFrame> {
        EmailLink::verify(&self.app.signer, token, now / 1000).map_err(|e| {
            let message = match e {
                LinkError::NotEmailLink => "this token is not an email link".to_string(),
                other => other.to_string(),
            };
            ServerFrame::error(ErrorCode::Unauthorized, message)
        })
    }

    /// What a person did in the admin. The store already holds who has the chat; the session
    /// mirrors it, so that it knows without a read whether the bot may answer.
    async fn on_person(&mut self, event: FromPerson) -> Vec<ServerFrame> {
        match self.state.open() {
            Ok(Some(open)) => open.on_person(&self.app, event).await,
            Ok(None) => Vec::new(),
            Err(e) => {
                log::error!("store: {e}");
                Vec::new()
            }
        }
    }
}

/// The name of the person who has the chat at `now`, while one has it.
fn person(app: &App, profile: &Profile, now: u64) -> Option<String> {
    match profile.handoff(now, app.config.handoff_idle_secs.saturating_mul(1000)) {
        Handoff::Taken(agent) => Some(agent.name.clone()),
        _ => None,
    }
}

impl Open {
    async fn answer(&mut self, app: &Arc<App>, asked: Asked) -> Result<Vec<ServerFrame>, ServerFrame> {
        match asked {
            Asked::Message(text, sent) => self.message(app, &text, sent).await,
            // Boxed: once per visitor, and its future holds a copy of the profile.
            Asked::Consent(consent) => Box::pin(self.consent(app, consent)).await,
            Asked::Hello => {
                Err(ServerFrame::error(ErrorCode::BadRequest, "hello was already received on this connection"))
            }
        }
    }

    /// A greeted visitor's conversation, from the commands `hello` held for them: the profile
    /// they create and change, the conversation they open (of its source the session keeps the
    /// campaign, as `hello` does) and set, the greeting's turn. (The writer builds the stored
    /// profile from the same commands.)
    fn replay(unsaved: &Unsaved) -> Result<Open, crate::store::StoreError> {
        let (mut profile, mut conversation, mut last_turn) = (None, None::<Conversation>, None);
        for command in unsaved.commands()? {
            match command {
                Command::Visitor { visitor, change: Change::Create { at, locale } } => {
                    profile = Some(Profile::new(visitor, at, &locale));
                }
                Command::Visitor { change, .. } => profile.iter_mut().for_each(|p| p.apply(&change)),
                Command::OpenConversation(mut opened) => {
                    keep_campaign(&mut opened.source);
                    opened.last_at = opened.started_at;
                    conversation = Some(*opened);
                }
                Command::AppendTurn { turn, entries, .. } => {
                    last_turn = Some(turn);
                    if let (Some(c), Some(entry)) = (&mut conversation, entries.last()) {
                        c.last_at = entry.at;
                    }
                }
                Command::SetPending { pending, .. } => {
                    conversation.iter_mut().for_each(|c| c.pending = pending.clone())
                }
                Command::ConversationLocale { locale, .. } => {
                    conversation.iter_mut().for_each(|c| c.locale.clone_from(&locale))
                }
                _ => {}
            }
        }
        match (profile, conversation) {
            (Some(profile), Some(conversation)) => {
                Ok(Open { profile, conversation, failed: None, last_turn, unsaved: Unsaved::default() })
            }
            _ => Err(crate::store::StoreError::Corrupt {
                tree: "the greeting held in memory",
                reason: "it creates no visitor or opens no conversation".into(),
            }),
        }
    }

    async fn message(&mut self, app: &Arc<App>, text: &str, sent: Sent) -> Result<Vec<ServerFrame>, ServerFrame> {
        let text = text.trim();
        if text.is_empty() {
            return Err(ServerFrame::error(ErrorCode::BadRequest, "empty message"));
        }
        let max = app.config.max_message_chars;
        if text.chars().count() > max {
            return Err(ServerFrame::error(ErrorCode::TooLong, format!("messages are at most {max} characters")));
        }
        hot::MESSAGES.increment(0);
        let now = app.now_ms();
        if let Some(name) = person(app, &self.profile, now) {
            return Box::pin(self.pass_to_person(app, text, name, now)).await;
        }
        let input = match sent {
            Sent::Typed => Input::Say(text),
            Sent::Chosen => Input::Choose(text),
        };
        self.step(app, input, Vec::new(), Persist::Now).await
    }

    /// A message while a person has the chat: stored in the transcript for them to read, and no
    /// reply from the bot.
    async fn pass_to_person(
        &mut self,
        app: &App,
        text: &str,
        name: String,
        now: u64,
    ) -> Result<Vec<ServerFrame>, ServerFrame> {
        let entry = Entry::said(Speaker::Shopper, text, now);
        self.append(app, entry).await.map_err(internal)?;
        Ok(vec![ServerFrame::Received { agent: name }])
    }

    /// Records the shopper's choice (with time and source) and answers with the tags the page
    /// may now fire.
    async fn consent(&mut self, app: &App, consent: protocol::Consent) -> Result<Vec<ServerFrame>, ServerFrame> {
        let mut profile = self.profile.clone();
        let change = Change::Consent(ConsentChange::page(consent, "widget", app.now_ms()));
        self.commit(app, vec![Command::change(&mut profile, change)]).await.map_err(internal)?;
        self.profile = profile;
        Ok(vec![ServerFrame::Tags { tags: Vec::new(), pixel: Vec::new() }])
    }

    /// Runs the engine, makes its effects durable, and returns the frames to send. On a store
    /// failure the in-memory conversation is left as it was, so a retry continues cleanly; a
    /// retry of the same message reuses the failed turn's id, so it is stored once whatever the
    /// failure left behind.
    async fn step(
        &mut self,
        app: &Arc<App>,
        input: Input<'_>,
        commands: Vec<Command>,
        persist: Persist,
    ) -> Result<Vec<ServerFrame>, ServerFrame> {
        let now = app.now_ms();
        let state = dialogue::State {
            visitor: self.profile.id,
            locale: &self.conversation.locale,
            preferences: &self.profile.preferences,
            pending: self.conversation.pending.as_ref(),
        };
        let said = input.text();
        let turn = match self.failed.take() {
            Some((text, turn)) if Some(text.as_str()) == said => turn,
            _ => TurnId::after(self.last_turn, now),
        };
        let mut undo = Undo::default();
        let outcome = {
            let intents = app.intents_now();
            let step = dialogue::step(&intents, &state, input, now);
            let policy = effects::Policy {
                config: &app.config,
                signer: &app.signer,
                public_url: &app.public_url,
                entry_intents: &intents.journeys.entry_intents,
                unfinished_email: intents.email(crate::intents::UNFINISHED_CHAT).is_some(),
            };
            effects::apply(step, &mut self.profile, &mut undo, &self.conversation, turn, commands, &policy, now)
        };
        let (commands, frames, conversation) = match outcome {
            Outcome::Erase { commands, frames, locale } => {
                let erased = Box::pin(self.erase(app, frames, commands, locale, now)).await;
                if erased.is_err() {
                    undo.restore(&mut self.profile);
                }
                return erased;
            }
            Outcome::Continue { commands, frames, conversation } => (commands, frames, conversation),
        };
        let stored = match persist {
            Persist::WithNextMessage => Unsaved::hold(&commands).map(|held| self.unsaved = held),
            Persist::Now => self.commit(app, commands).await,
        };
        if let Err(e) = stored {
            undo.restore(&mut self.profile);
            self.failed = said.map(|text| (text.to_string(), turn));
            return Err(internal(e));
        }
        self.last_turn = Some(turn);
        if let Some(conversation) = conversation {
            self.conversation = conversation;
        }
        self.conversation.last_at = now;
        Ok(frames)
    }

    /// Commits `commands` after whatever `hello` left unsaved, which stays for the next try when
    /// the commit fails.
    async fn commit(&mut self, app: &App, commands: Vec<Command>) -> Result<(), crate::store::StoreError> {
        app.store.commit(self.unsaved.before(commands)?).await?;
        self.unsaved = Unsaved::default();
        Ok(())
    }

    async fn on_person(&mut self, app: &App, event: FromPerson) -> Vec<ServerFrame> {
        match event {
            FromPerson::Took { agent } => {
                let name = agent.name.clone();
                self.profile.agent = Some(agent);
                vec![ServerFrame::Handoff { agent: Some(name) }]
            }
            FromPerson::HandedBack { at } => {
                self.profile.apply(&Change::HandBack { at });
                vec![ServerFrame::Handoff { agent: None }]
            }
            FromPerson::Answered { agent, text } => {
                let name = agent.name.clone();
                self.profile.agent = Some(agent);
                // Recorded first: what the shopper reads is in the transcript.
                if let Err(e) = self.append(app, Entry::said(Speaker::Agent, &text, app.now_ms())).await {
                    log::error!("an agent's message could not be stored: {e}");
                    return Vec::new();
                }
                vec![ServerFrame::Reply(protocol::Reply {
                    text,
                    intent: AGENT.into(),
                    choices: Vec::new(),
                    how: None,
                    confidence: None,
                    captured: Default::default(),
                    agent: Some(name),
                    locale: None,
                })]
            }
        }
    }

    /// Appends one entry as a turn of its own to the open conversation.
    async fn append(&mut self, app: &App, entry: Entry) -> Result<(), crate::store::StoreError> {
        let turn = TurnId::after(self.last_turn, entry.at);
        self.conversation.last_at = entry.at;
        let append = Command::AppendTurn { conversation: self.conversation.id, turn, entries: vec![entry] };
        self.commit(app, vec![append]).await?;
        self.last_turn = Some(turn);
        Ok(())
    }

    /// The shopper asked to be forgotten: the erasure of everything stored about the visitor
    /// (this turn is not even written), then a fresh visitor and conversation, announced by a
    /// new `welcome` so the widget forgets the old id too.
    async fn erase(
        &mut self,
        app: &Arc<App>,
        mut frames: Vec<ServerFrame>,
        mut commands: Vec<Command>,
        locale: String,
        now: u64,
    ) -> Result<Vec<ServerFrame>, ServerFrame> {
        let mut fresh = Profile::new(VisitorId::mint(now), now, &locale);
        let fresh_conversation = Conversation {
            id: ConversationId::mint(now),
            visitor: fresh.id,
            started_at: now,
            last_at: now,
            locale,
            source: Source::default(),
            pending: None,
        };
        let old = self.profile.id;
        commands.push(Command::Erase { visitor: old, at: now });
        let create = Change::Create { at: now, locale: fresh.locale.clone() };
        commands.push(Command::Visitor { visitor: fresh.id, change: create });
        commands.push(Command::OpenConversation(Box::new(fresh_conversation.clone())));
        let (key, hash) = crate::ids::mint_resume_key();
        commands.push(Command::change(&mut fresh, Change::ResumeKey(hash)));
        self.commit(app, commands).await.map_err(internal)?;
        forget_mail(app, old).await;
        super::now_about(fresh.id, fresh_conversation.id);
        frames.push(ServerFrame::Welcome {
            visitor: fresh.id.to_string(),
            conversation: fresh_conversation.id.to_string(),
            returning: false,
            key: Some(key),
            history: Vec::new(),
            locale: fresh_conversation.locale.clone(),
        });
        self.profile = fresh;
        self.conversation = fresh_conversation;
        Ok(frames)
    }
}

/// The last lines of a transcript as a widget shows them again.
pub(super) fn history(entries: Vec<Entry>) -> Vec<protocol::Line> {
    let skip = entries.len().saturating_sub(protocol::HISTORY_LINES);
    let from = |s: Speaker| match s {
        Speaker::Shopper => "shopper",
        Speaker::Bot => "bot",
        Speaker::Agent => "agent",
    };
    entries
        .into_iter()
        .skip(skip)
        .map(|e| protocol::Line { from: from(e.from).into(), text: e.text, at: e.at })
        .collect()
}

/// The mail files written to an erased visitor go with them (off the async workers).
pub(crate) async fn forget_mail(app: &Arc<App>, visitor: VisitorId) {
    let app = app.clone();
    let removed = tokio::task::spawn_blocking(move || crate::outbox::erase_mail(&app.config, &visitor)).await;
    if let Ok(Err(e)) = removed {
        log::error!("erasure: the mail files of {visitor} could not all be removed: {e}");
    }
}

fn internal(error: crate::store::StoreError) -> ServerFrame {
    log::error!("store: {error}");
    ServerFrame::error(ErrorCode::Internal, "could not save the conversation; please try again")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Change, Entry, Source, Speaker};
    use crate::ids::{ConversationId, TurnId, VisitorId};

    #[test]
    fn a_greeted_visitor_is_rebuilt_as_hello_left_them() {
        let mut profile = Profile::new(VisitorId::mint(1), 1, "en");
        let source = Source {
            campaign: Some("spring".into()),
            page: Some("https://shop.example/shoes".into()),
            utm: [("campaign".to_string(), "spring".to_string())].into(),
            ..Source::default()
        };
        let opened = Conversation {
            id: ConversationId::mint(1),
            visitor: profile.id,
            started_at: 1,
            last_at: 0, // not stored (read from the last turn)
            locale: "en".into(),
            source,
            pending: None,
        };
        let turn = TurnId::after(None, 2);
        let pending = crate::domain::Pending {
            slot: "size".into(),
            tries: 0,
            then: vec!["colour".into()],
            done: Some("shoe_found".into()),
            intent: "find_running_shoes".into(),
        };
        let visit = Change::Visit {
            at: 1,
            locale: Some("de".into()),
            campaign: Some("spring".into()),
            utm: Default::default(),
        };
        let preference =
            Change::Preference { name: "product".into(), value: "running shoes".into(), at: 2, message: String::new() };
        let commands = vec![
            Command::Visitor { visitor: profile.id, change: Change::Create { at: 1, locale: "en".into() } },
            Command::change(&mut profile, visit),
            Command::OpenConversation(Box::new(opened.clone())),
            Command::change(&mut profile, Change::ResumeKey("ab".repeat(32))),
            Command::change(&mut profile, Change::Timezone("Europe/Berlin".into())),
            Command::change(&mut profile, preference),
            Command::ConversationLocale { conversation: opened.id, locale: "de".into() },
            Command::SetPending { conversation: opened.id, pending: Some(pending.clone()) },
            Command::AppendTurn {
                conversation: opened.id,
                turn,
                entries: vec![Entry::said(Speaker::Bot, "Welche Größe?", 2)],
            },
        ];
        let held = Unsaved::hold(&commands).expect("encodes");
        let open = Open::replay(&held).expect("rebuilt");
        assert_eq!(open.profile, profile, "every change, as the session applied it");
        let expected = Conversation {
            last_at: 2,
            locale: "de".into(),
            pending: Some(pending),
            // Of the source, the session keeps the campaign (the store has the rest).
            source: Source { campaign: Some("spring".into()), ..Source::default() },
            ..opened
        };
        assert_eq!(open.conversation, expected);
        assert_eq!(open.last_turn, Some(turn), "the next turn sorts after the greeting");
        let mut state = State::Greeted(held);
        let open = state.open().expect("rebuilt").expect("open");
        assert_eq!(open.unsaved.commands().expect("held"), commands, "still stored with the first message");

        let nobody = Unsaved::hold(&commands[2..3]).expect("encodes");
        assert!(matches!(Open::replay(&nobody), Err(crate::store::StoreError::Corrupt { .. })), "no visitor created");
    }
}
