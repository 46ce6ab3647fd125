//! The mail worker: one thread that sends due follow-ups from the outbox. Each is checked again
//! at send time (not sent when the shopper converted, unsubscribed, has no marketing consent or
//! no address), rendered from its template with a link that resumes the chat and an RFC 8058
//! one-click unsubscribe link, and sent over SMTP (or written to `<data>/mail` as `.eml` files
//! when no SMTP server is configured). Temporary failures are retried with exponential backoff;
//! permanent ones are dead-lettered. The outcome is committed right after the server's answer,
//! and the Message-ID is the outbox id, so the one resend a crash in between can cause is
//! recognisable as the same message.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::{FileTransport, Message, SmtpTransport, Transport as _};

use crate::config::Config;
use crate::ids::Email;
use crate::now_ms;
use crate::pages::escape_html;
use crate::server::App;
use crate::signing::Claims;
use crate::store::{OutboxItem, OutboxState, Profile, Status, Write};

/// Resume links in emails stay valid this long ...
const RESUME_TTL_SECS: u64 = 30 * 24 * 60 * 60;
/// ... and unsubscribe links longer, as RFC 8058 asks.
const UNSUBSCRIBE_TTL_SECS: u64 = 365 * 24 * 60 * 60;
/// The longest wait between two attempts.
const MAX_BACKOFF_MS: u64 = 6 * 60 * 60 * 1000;
/// How often an idle worker looks for newly due items (and for shutdown).
const POLL: Duration = Duration::from_millis(200);
const SMTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Where mail goes.
pub enum Transport {
    Smtp(SmtpTransport),
    /// No SMTP server configured: each message becomes an `.eml` file.
    Files(FileTransport),
}

enum Failure {
    Temporary(String),
    Permanent(String),
}

impl Transport {
    pub fn from_config(config: &Config) -> Result<Transport, String> {
        match &config.smtp_url {
            Some(url) => SmtpTransport::from_url(url)
                .map(|builder| Transport::Smtp(builder.timeout(Some(SMTP_TIMEOUT)).build()))
                // The URL may hold a password: the error names the key, not the value.
                .map_err(|e| format!("smtp_url: {e} (expected smtp://[user:password@]host[:port][?tls=required])")),
            None => {
                let dir = mail_dir(config);
                std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                Ok(Transport::Files(FileTransport::new(dir)))
            }
        }
    }

    fn send(&self, message: &Message) -> Result<(), Failure> {
        match self {
            Transport::Smtp(smtp) => smtp.send(message).map(drop).map_err(|e| {
                if e.is_permanent() {
                    Failure::Permanent(e.to_string())
                } else {
                    // Transient SMTP replies, refused connections, timeouts: try again later.
                    Failure::Temporary(e.to_string())
                }
            }),
            Transport::Files(files) => files.send(message).map(drop).map_err(|e| Failure::Temporary(e.to_string())),
        }
    }
}

pub fn mail_dir(config: &Config) -> PathBuf {
    config.data.join("mail")
}

/// Checks that the configured sender is an address; at startup, so a typo is not found at 3 am.
pub fn sender(config: &Config) -> Result<Mailbox, String> {
    config.mail_from.parse().map_err(|e| format!("mail_from {:?}: {e}", config.mail_from))
}

/// Starts the worker; it stops soon after `App::shutdown` is set.
pub fn spawn(app: Arc<App>, transport: Transport, from: Mailbox) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("nudge-mail".into()).spawn(move || {
        while !*app.shutdown.borrow() {
            let now = now_ms();
            match app.store.due_follow_ups(now, 64) {
                Ok(due) if !due.is_empty() => {
                    for item in due {
                        let outcome = deliver(&app, &transport, &from, item, now_ms());
                        if let Err(e) = app.store.commit_blocking(vec![Write::Outbox(outcome)]) {
                            log::error!("outbox: cannot record a delivery: {e}");
                            std::thread::sleep(POLL);
                        }
                    }
                    continue;
                }
                Ok(_) => {}
                Err(e) => log::error!("outbox: cannot read due follow-ups: {e}"),
            }
            let next = app.store.next_follow_up_at().ok().flatten().unwrap_or(u64::MAX);
            std::thread::sleep(Duration::from_millis(next.saturating_sub(now)).clamp(Duration::from_millis(5), POLL));
        }
    })
}

/// Tries to send one due item and returns it with its new state.
fn deliver(app: &App, transport: &Transport, from: &Mailbox, mut item: OutboxItem, now: u64) -> OutboxItem {
    let metrics = &app.metrics;
    let profile = match app.store.visitor(&item.visitor) {
        Ok(profile) => profile,
        Err(e) => return retry(app, item, now, format!("cannot read the visitor: {e}")),
    };
    let (profile, address) = match wanted(profile.as_ref()) {
        Ok(wanted) => wanted,
        Err(reason) => {
            metrics.mail_skipped.fetch_add(1, Ordering::Relaxed);
            item.state = OutboxState::Skipped { at: now, reason: reason.into() };
            return item;
        }
    };
    let message = match compose(app, from, &item, profile, address, now) {
        Ok(message) => message,
        Err(error) => return dead(app, item, now, error),
    };
    match transport.send(&message) {
        Ok(()) => {
            metrics.mail_sent.fetch_add(1, Ordering::Relaxed);
            item.state = OutboxState::Sent { at: now_ms() };
            item
        }
        Err(Failure::Permanent(error)) => dead(app, item, now, error),
        Err(Failure::Temporary(error)) => retry(app, item, now, error),
    }
}

/// Whether the email is still wanted, and where it goes; otherwise why not.
fn wanted(profile: Option<&Profile>) -> Result<(&Profile, Email), &'static str> {
    let profile = profile.ok_or("the visitor is gone")?;
    if profile.status == Status::Converted {
        return Err("converted");
    }
    if !profile.consent.as_ref().is_some_and(|c| c.marketing) {
        return Err("no marketing consent");
    }
    let address = profile.preference("email").and_then(|e| Email::parse(e).ok()).ok_or("no email address")?;
    Ok((profile, address))
}

fn retry(app: &App, mut item: OutboxItem, now: u64, error: String) -> OutboxItem {
    item.attempts += 1;
    if item.attempts >= app.config.mail_max_attempts {
        let error = format!("gave up after {} attempts: {error}", item.attempts);
        return dead(app, item, now, error);
    }
    app.metrics.mail_retries.fetch_add(1, Ordering::Relaxed);
    log::warn!("outbox: follow-up {} will be retried: {error}", item.id);
    let backoff = app.config.mail_retry_secs.saturating_mul(1000).saturating_mul(1 << (item.attempts - 1).min(20));
    item.due_at = now + backoff.min(MAX_BACKOFF_MS);
    item.last_error = Some(error);
    item
}

fn dead(app: &App, mut item: OutboxItem, now: u64, error: String) -> OutboxItem {
    app.metrics.mail_dead.fetch_add(1, Ordering::Relaxed);
    log::error!("outbox: follow-up {} dead-lettered: {error}", item.id);
    item.last_error = Some(error.clone());
    item.state = OutboxState::Dead { at: now, error };
    item
}

/// The message: the template in the conversation's language, with the visitor's preferences,
/// a resume link and the unsubscribe headers.
fn compose(
    app: &App,
    from: &Mailbox,
    item: &OutboxItem,
    profile: &Profile,
    address: Email,
    now: u64,
) -> Result<Message, String> {
    let intents = app.intents();
    let template = intents.email(&item.email).ok_or_else(|| format!("no email template `{}` any more", item.email))?;
    let body = template.body(&item.locale);
    let owned = |name: &str| profile.preference(name).map(str::to_string);
    let resume = Claims::Chat {
        email: address.to_string(),
        name: owned("name"),
        campaign: profile.campaign.clone(),
        product: owned("product"),
        visitor: Some(profile.id),
    };
    let unsubscribe = Claims::Unsubscribe { visitor: profile.id };
    let url = |path: &str, claims: &Claims, ttl: u64| {
        format!("{}/{path}/{}", app.public_url, app.signer.sign(claims, now / 1000 + ttl))
    };
    let mut values: BTreeMap<&str, String> =
        profile.preferences.iter().map(|(name, p)| (name.as_str(), p.value.clone())).collect();
    values.insert("resume_url", url("c", &resume, RESUME_TTL_SECS));
    let unsubscribe_url = url("u", &unsubscribe, UNSUBSCRIBE_TTL_SECS);
    values.insert("unsubscribe_url", unsubscribe_url.clone());
    let subject: String =
        body.subject.render(|n| values.get(n).map(String::as_str)).chars().filter(|c| !c.is_control()).collect();
    let text = body.text.render(|n| values.get(n).map(String::as_str));
    let escaped: BTreeMap<&str, String> = values.iter().map(|(k, v)| (*k, escape_html(v))).collect();
    let html = body.html.render(|n| escaped.get(n).map(String::as_str));
    let to = Mailbox::new(
        owned("name"),
        address.to_string().parse().map_err(|e| format!("the address {address} cannot be mailed: {e}"))?,
    );
    let host = url::Url::parse(&app.public_url).ok().and_then(|u| u.host_str().map(str::to_string));
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(subject)
        .message_id(Some(format!("<{}@{}>", item.id, host.as_deref().unwrap_or("nudge.localhost"))))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("List-Unsubscribe"),
            format!("<{unsubscribe_url}>"),
        ))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
            "List-Unsubscribe=One-Click".into(),
        ))
        .multipart(MultiPart::alternative_plain_html(text, html))
        .map_err(|e| format!("cannot build the message: {e}"))
}
