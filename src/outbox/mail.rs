//! Follow-up emails: rendered from their template in the conversation's language with a link
//! that resumes the chat and an RFC 8058 one-click unsubscribe link, and sent over SMTP (or
//! written to `<data>/mail` as `.eml` files when no SMTP server is configured). The Message-ID is
//! the outbox id, so the one resend a crash can cause is recognisable as the same message.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::{Message, SmtpTransport, Transport as _};

use super::Failure;
use crate::app::App;
use crate::config::Config;
use crate::domain::{OutboxItem, Profile, Status};
use crate::ids::{Email, VisitorId};
use crate::pages::escape_html;
use crate::signing::Claims;

/// Resume links in emails stay valid this long ...
const RESUME_TTL_SECS: u64 = 30 * 24 * 60 * 60;
/// ... and unsubscribe links longer, as RFC 8058 asks.
const UNSUBSCRIBE_TTL_SECS: u64 = 365 * 24 * 60 * 60;
const SMTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Confirmation links (double opt-in) stay valid this long.
const CONFIRM_TTL_SECS: u64 = 7 * 24 * 60 * 60;

/// Where mail goes, and from whom.
pub struct Mailer {
    transport: Transport,
    from: Mailbox,
}

enum Transport {
    Smtp(SmtpTransport),
    /// No SMTP server configured: each message becomes an `.eml` file in this directory,
    /// named `<visitor>-<outbox id>.eml` so that erasing the visitor can find it.
    Files(PathBuf),
}

impl Mailer {
    /// Checks the configuration at startup, so a typo is not found at 3 am.
    pub fn from_config(config: &Config) -> Result<Mailer, String> {
        let from = config.mail_from.parse().map_err(|e| format!("mail_from {:?}: {e}", config.mail_from))?;
        let transport = match &config.smtp_url {
            Some(url) => SmtpTransport::from_url(url)
                .map(|builder| Transport::Smtp(builder.timeout(Some(SMTP_TIMEOUT)).build()))
                // The URL may hold a password: the error names the key, not the value.
                .map_err(|e| format!("smtp_url: {e} (expected smtp://[user:password@]host[:port][?tls=required])"))?,
            None => {
                let dir = mail_dir(config);
                crate::store::private_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                Transport::Files(dir)
            }
        };
        Ok(Mailer { transport, from })
    }

    fn send(&self, item: &OutboxItem, message: &Message) -> Result<(), Failure> {
        match &self.transport {
            Transport::Smtp(smtp) => smtp.send(message).map(drop).map_err(|e| {
                if e.is_permanent() {
                    Failure::Permanent(e.to_string())
                } else {
                    // Transient SMTP replies, refused connections, timeouts: try again later.
                    Failure::Temporary(e.to_string())
                }
            }),
            Transport::Files(dir) => {
                let path = dir.join(format!("{}-{}.eml", item.visitor, item.id));
                std::fs::write(&path, message.formatted()).map_err(|e| Failure::Temporary(e.to_string()))
            }
        }
    }

    /// Sends the marketing email `template` if it is still wanted; returns the variant sent.
    pub(super) fn deliver(
        &self,
        app: &App,
        item: &OutboxItem,
        template: &str,
        now: u64,
        buyers: Buyers,
    ) -> Result<u32, Failure> {
        let profile = app.store.visitor(&item.visitor).map_err(|e| Failure::Temporary(e.to_string()))?;
        let (profile, address) = wanted(profile.as_ref(), buyers).map_err(|reason| Failure::Unwanted(reason.into()))?;
        if app.config.double_opt_in && !profile.confirmed(address.as_str()) {
            return Err(Failure::Unwanted("address not confirmed (double opt-in)".into()));
        }
        let zone = profile.timezone.as_deref().unwrap_or(&app.config.timezone.0);
        if let Some(until) = app.config.quiet_hours.ends(now, zone) {
            return Err(Failure::Later { until, reason: format!("quiet hours in {zone}") });
        }
        let sent = app.store.marketing_sent_to(&item.visitor).map_err(|e| Failure::Temporary(e.to_string()))?;
        if let Some(until) = super::limits::cap_frees(&sent, app.config.max_marketing_emails_per_day, now) {
            let cap = app.config.max_marketing_emails_per_day;
            return Err(Failure::Later { until, reason: format!("at most {cap} marketing email(s) a day") });
        }
        let intents = app.intents();
        let email = intents
            .email(template)
            .ok_or_else(|| Failure::Permanent(format!("no email template `{template}` any more")))?;
        let variant = pick_variant(app, email, profile).map_err(|e| Failure::Temporary(e.to_string()))?;
        let body = email.body(&item.locale, variant);
        let question = match asks(body) {
            true => Some(open_question(app, item, profile, now)?),
            false => None,
        };
        let message = compose(app, &self.from, item, body, profile, address, question.as_ref(), now)
            .map_err(Failure::Permanent)?;
        self.send(item, &message).map(|()| variant as u32)
    }
}

impl Mailer {
    /// Double opt-in: asks the owner of `email` to confirm it, unless the visitor already did or
    /// the address is no longer theirs.
    pub(super) fn confirm(&self, app: &App, item: &OutboxItem, email: &str, now: u64) -> Result<(), Failure> {
        let profile = app.store.visitor(&item.visitor).map_err(|e| Failure::Temporary(e.to_string()))?;
        let profile = profile.ok_or_else(|| Failure::Unwanted("the visitor is gone".into()))?;
        if profile.confirmed(email) {
            return Err(Failure::Unwanted("already confirmed".into()));
        }
        if profile.preference("email") != Some(email) {
            return Err(Failure::Unwanted("the visitor gave another address since".into()));
        }
        let address = Email::parse(email).map_err(|e| Failure::Permanent(e.to_string()))?;
        let claims = Claims::Confirm { visitor: profile.id, email: address.to_string() };
        let link = format!("{}/v/{}", app.public_url, app.signer.sign(&claims, now / 1000 + CONFIRM_TTL_SECS));
        let (subject, text) = if item.locale == "de" {
            (
                "Bitte bestätigen Sie Ihre E-Mail-Adresse",
                format!(
                    "Hallo,\n\nSie haben uns im Chat diese Adresse genannt und E-Mails von uns gewünscht. \
                     Bitte bestätigen Sie das mit diesem Link:\n\n{link}\n\nWaren Sie das nicht, ignorieren Sie \
                     diese E-Mail einfach; Sie hören dann nichts mehr von uns.\n"
                ),
            )
        } else {
            (
                "Please confirm your email address",
                format!(
                    "Hello,\n\nYou gave us this address in our chat and asked for our emails. Please confirm \
                     with this link:\n\n{link}\n\nIf that was not you, just ignore this email; you will not hear \
                     from us again.\n"
                ),
            )
        };
        let html = format!(
            "<p>{}</p><p><a href=\"{}\">{}</a></p>",
            escape_html(&text),
            escape_html(&link),
            escape_html(&link)
        );
        let to: Mailbox = address.to_string().parse().map_err(|e| Failure::Permanent(format!("{e}")))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .message_id(Some(format!("<{}@{}>", item.id, host(app))))
            .multipart(MultiPart::alternative_plain_html(text, html))
            .map_err(|e| Failure::Permanent(format!("cannot build the message: {e}")))?;
        self.send(item, &message)
    }
}

fn host(app: &App) -> String {
    url::Url::parse(&app.public_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or("nudge.localhost".into())
}

pub fn mail_dir(config: &Config) -> PathBuf {
    config.data.join("mail")
}

/// Removes the `.eml` files written for `visitor` (erasure): they hold the address, the
/// preferences and a resume link. Returns how many.
pub fn erase_mail(config: &Config, visitor: &VisitorId) -> std::io::Result<usize> {
    let prefix = format!("{visitor}-");
    remove_mail(config, |name, _| name.starts_with(&prefix))
}

/// Removes the `.eml` files last written before `cutoff` (ms since the epoch; retention).
pub fn expire_mail(config: &Config, cutoff: u64) -> std::io::Result<usize> {
    let cutoff = std::time::UNIX_EPOCH + Duration::from_millis(cutoff);
    remove_mail(config, |_, modified| modified < cutoff)
}

fn remove_mail(config: &Config, doomed: impl Fn(&str, std::time::SystemTime) -> bool) -> std::io::Result<usize> {
    let entries = match std::fs::read_dir(mail_dir(config)) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        let modified = entry.metadata()?.modified()?;
        if entry.file_name().to_str().is_some_and(|name| name.ends_with(".eml") && doomed(name, modified)) {
            std::fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Whether an email goes to visitors who bought: a follow-up about a chat does not; a journey
/// step may (a win-back), since its journey ends by itself on a new order.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Buyers {
    Skip,
    Send,
}

/// Whether the email is still wanted, and where it goes; otherwise why not.
fn wanted(profile: Option<&Profile>, buyers: Buyers) -> Result<(&Profile, Email), &'static str> {
    let profile = profile.ok_or("the visitor is gone")?;
    if profile.status == Status::Converted && buyers == Buyers::Skip {
        return Err("converted");
    }
    if !profile.consent.as_ref().is_some_and(|c| c.marketing) {
        return Err("no marketing consent");
    }
    let address = profile.preference("email").and_then(|e| Email::parse(e).ok()).ok_or("no email address")?;
    Ok((profile, address))
}

/// The question a conversation waits on, as an email shows it: its words and quick replies.
struct Question {
    slot: String,
    text: String,
    /// (label, value) of each quick reply.
    choices: Vec<(String, String)>,
}

/// Whether an email shows the chat's open question (`{{ question }}` or `{{ answers }}`).
fn asks(body: &crate::intents::EmailBody) -> bool {
    [&body.subject, &body.text, &body.html].iter().any(|t| t.names().any(|n| n == "question" || n == "answers"))
}

/// The question the item's conversation still waits on, once the shopper has been away for
/// `unfinished_after_secs`; not wanted once it was answered.
fn open_question(app: &App, item: &OutboxItem, profile: &Profile, now: u64) -> Result<Question, Failure> {
    let conversation = app.store.conversation(&item.conversation).map_err(|e| Failure::Temporary(e.to_string()))?;
    let conversation = conversation.ok_or_else(|| Failure::Unwanted("the conversation is gone".into()))?;
    let pending = conversation.pending.ok_or_else(|| Failure::Unwanted("no question open any more".into()))?;
    let until = conversation.last_at.saturating_add(app.config.unfinished_after_secs.saturating_mul(1000));
    if until > now {
        return Err(Failure::Later { until, reason: "the shopper was in the chat since".into() });
    }
    let intents = app.intents();
    let slot = intents.slot(&pending.slot).ok_or_else(|| Failure::Unwanted("the question is gone".into()))?;
    let question = slot.question(&item.locale);
    let known = |name: &str| {
        let value = profile.preference(name)?;
        Some(intents.slot(name).map_or(value, |s| s.display(&item.locale, value)))
    };
    let raw = |name: &str| profile.preference(name);
    Ok(Question {
        slot: pending.slot.clone(),
        text: question.ask.render(known),
        choices: question.choices.iter().map(|c| (c.label.render(known), c.value.render(raw))).collect(),
    })
}

/// The message: the template in the conversation's language, with the visitor's preferences,
/// a resume link, the open question's answers as links when it shows them, and the unsubscribe
/// headers.
#[allow(clippy::too_many_arguments)]
fn compose(
    app: &App,
    from: &Mailbox,
    item: &OutboxItem,
    body: &crate::intents::EmailBody,
    profile: &Profile,
    address: Email,
    question: Option<&Question>,
    now: u64,
) -> Result<Message, String> {
    let intents = app.intents();
    let owned = |name: &str| profile.preference(name).map(str::to_string);
    let resume = Claims::Chat {
        email: address.to_string(),
        name: owned("name"),
        campaign: profile.campaign.clone(),
        product: owned("product"),
        visitor: Some(profile.id),
        conversation: Some(item.conversation),
        answer: None,
    };
    let unsubscribe = Claims::Unsubscribe { visitor: profile.id };
    let url = |path: &str, claims: &Claims, ttl: u64| {
        format!("{}/{path}/{}", app.public_url, app.signer.sign(claims, now / 1000 + ttl))
    };
    // Choices read as their quick replies' words in the email's language, as in the chat.
    let shown = |name: &str, value: &str| {
        intents.slot(name).map_or(value.to_string(), |slot| slot.display(&item.locale, value).to_string())
    };
    let mut values: BTreeMap<&str, String> =
        profile.preferences.iter().map(|(name, p)| (name.as_str(), shown(name, &p.value))).collect();
    values.insert("resume_url", url("c", &resume, RESUME_TTL_SECS));
    let unsubscribe_url = url("u", &unsubscribe, UNSUBSCRIBE_TTL_SECS);
    values.insert("unsubscribe_url", unsubscribe_url.clone());
    // Each quick reply a link that answers as the same visitor, in the same conversation.
    let answers: Vec<(String, String)> = question.map_or_else(Vec::new, |q| {
        q.choices
            .iter()
            .map(|(label, value)| {
                let answer = crate::signing::Answer { slot: q.slot.clone(), value: value.clone() };
                let mut claims = resume.clone();
                if let Claims::Chat { answer: carried, .. } = &mut claims {
                    *carried = Some(answer);
                }
                (label.clone(), url("c", &claims, RESUME_TTL_SECS))
            })
            .collect()
    });
    if let Some(q) = question {
        values.insert("question", q.text.clone());
        let lines: Vec<String> = answers.iter().map(|(label, link)| format!("{label}: {link}")).collect();
        values.insert("answers", lines.join("\n"));
    }
    let subject = header_text(&body.subject.render(|n| values.get(n).map(String::as_str))).unwrap_or_default();
    // Every link but the unsubscribe one goes through `/l/`, which counts the click; the HTML
    // part carries an open pixel.
    let click = |target: &str| url("l", &Claims::Click { item: item.id, target: target.to_string() }, RESUME_TTL_SECS);
    let tracked = |text: &str| track_links(text, &app.public_url, &app.config.shop_hosts, &unsubscribe_url, &click);
    let text = tracked(&body.text.render(|n| values.get(n).map(String::as_str)))?;
    let mut escaped: BTreeMap<&str, String> = values.iter().map(|(k, v)| (*k, escape_html(v))).collect();
    if question.is_some() {
        // Buttons in the HTML part, built here (every value escaped).
        let buttons: String = answers
            .iter()
            .map(|(label, link)| {
                format!(
                    "<a href=\"{}\" style=\"display:inline-block;margin:4px;padding:8px 14px;border:1px solid #1f4fd1;\
                     border-radius:16px;color:#1f4fd1;text-decoration:none\">{}</a>",
                    escape_html(link),
                    escape_html(label)
                )
            })
            .collect();
        escaped.insert("answers", buttons);
    }
    let mut html = tracked(&body.html.render(|n| escaped.get(n).map(String::as_str)))?;
    let pixel = url("o", &Claims::Open { item: item.id }, RESUME_TTL_SECS);
    html.push_str(&format!("<img src=\"{pixel}\" width=\"1\" height=\"1\" alt=\"\">"));
    let to = Mailbox::new(
        owned("name").and_then(|name| header_text(&name)),
        address.to_string().parse().map_err(|e| format!("the address {address} cannot be mailed: {e}"))?,
    );
    let message = Message::builder()
        .from(from.clone())
        .to(to)
        .subject(subject)
        .message_id(Some(format!("<{}@{}>", item.id, host(app))))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("List-Unsubscribe"),
            format!("<{unsubscribe_url}>"),
        ))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
            "List-Unsubscribe=One-Click".into(),
        ))
        .multipart(MultiPart::alternative_plain_html(text, html))
        .map_err(|e| format!("cannot build the message: {e}"))?;
    Ok(message)
}

/// A/B variants are assigned by visitor, as reply variants are; with `auto_winner`, a declared
/// winner goes to everyone.
fn pick_variant(
    app: &App,
    email: &crate::intents::Email,
    profile: &Profile,
) -> Result<usize, crate::store::StoreError> {
    let assigned = crate::dialogue::choose_variant(&profile.id, &email.id, email.variants());
    if !email.auto_winner || email.variants() < 2 {
        return Ok(assigned);
    }
    let arms = crate::admin::report::email_arms(&app.store, &email.id, email.variants())?;
    Ok(crate::ab::winner(&arms, &crate::ab::probability_best(&arms)).unwrap_or(assigned))
}

/// Every `http(s)` link in a rendered email replaced by its `/l/` link, except `keep` (the
/// unsubscribe link, which must work without a detour). A link that leads neither to Nudge's
/// chat nor to a shop host is an error: the email is not sent with it.
fn track_links(
    text: &str,
    public_url: &str,
    shop_hosts: &[String],
    keep: &str,
    click: &dyn Fn(&str) -> String,
) -> Result<String, String> {
    static LINK: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(r#"https?://[^\s"'<>]+"#).expect("valid"));
    let mut out = String::with_capacity(text.len() + 256);
    let mut last = 0;
    for found in LINK.find_iter(text) {
        out.push_str(&text[last..found.start()]);
        // A sentence's full stop after a link is not part of it.
        let written = found.as_str().trim_end_matches(['.', ',', ';', ':', '!', '?', ')']);
        last = found.start() + written.len();
        // In the HTML part an `&` in a link is written `&amp;`.
        let link = written.replace("&amp;", "&");
        if link == keep.replace("&amp;", "&") {
            out.push_str(written);
            continue;
        }
        match crate::leads::email_target(&link, public_url, shop_hosts) {
            Some(target) => out.push_str(&click(target.as_str())),
            None => {
                return Err(format!("the email links to {link}, which is neither this chat nor a host in shop_hosts"));
            }
        }
    }
    out.push_str(&text[last..]);
    Ok(out)
}

/// A shopper's words made safe for a mail header: control characters (a CR or LF would start a
/// new header, and lettre refuses to format one) become spaces, runs of space collapse. `None`
/// when nothing printable is left.
fn header_text(raw: &str) -> Option<String> {
    let text = raw.split(|c: char| c.is_control() || c.is_whitespace()).filter(|w| !w.is_empty()).collect::<Vec<_>>();
    (!text.is_empty()).then(|| text.join(" "))
}

#[cfg(test)]
mod tests {
    use super::{header_text, track_links};

    #[test]
    fn links_go_through_l_except_unsubscribe_and_foreign_ones_stop_the_email() {
        let hosts = vec!["shop.example".to_string()];
        let click = |t: &str| format!("[L {t}]");
        let text = "Back: https://chat.example/c/tok. Shop: <a href=\"https://shop.example/x?a=1&amp;b=2\">x</a> \
                    Bye: https://chat.example/u/un";
        let tracked = track_links(text, "https://chat.example", &hosts, "https://chat.example/u/un", &click);
        assert_eq!(
            tracked.expect("tracked"),
            "Back: [L https://chat.example/c/tok]. Shop: <a href=\"[L https://shop.example/x?a=1&b=2]\">x</a> \
             Bye: https://chat.example/u/un"
        );
        let foreign = track_links("see https://evil.example/", "https://chat.example", &hosts, "", &click);
        assert!(foreign.expect_err("refused").contains("https://evil.example/"));
    }

    #[test]
    fn header_text_has_no_line_breaks_or_controls() {
        for (raw, clean) in [
            ("Ann", Some("Ann")),
            ("Ann\nBcc: x@evil.example", Some("Ann Bcc: x@evil.example")),
            ("Ann\r\nX", Some("Ann X")),
            ("  Ann \t Lee ", Some("Ann Lee")),
            ("\u{7}\u{1b}", None),
            ("", None),
        ] {
            assert_eq!(header_text(raw).as_deref(), clean, "{raw:?}");
        }
    }
}
