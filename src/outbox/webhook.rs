//! Tag events for the shop's retargeting webhook: a JSON POST signed with HMAC-SHA256 over
//! `<timestamp>.<body>` (header `X-Nudge-Signature: v1=<hex>`, `X-Nudge-Timestamp`), the way
//! Stripe and Slack sign theirs, so the receiver can check it came from us and is fresh. Sent
//! only for visitors with ads consent.

use std::time::Duration;

use hmac::{KeyInit, Mac};
use serde_json::json;

use super::Failure;
use crate::app::App;
use crate::domain::OutboxItem;

const TIMEOUT: Duration = Duration::from_secs(10);

pub struct Webhook {
    url: String,
    agent: ureq::Agent,
}

impl Webhook {
    pub fn from_config(url: &str) -> Result<Webhook, String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("tag_webhook_url {url:?}: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("tag_webhook_url {url:?}: use an http or https URL"));
        }
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(TIMEOUT))
            .http_status_as_error(false)
            .max_redirects(0)
            .build()
            .into();
        Ok(Webhook { url: url.to_string(), agent })
    }

    pub(super) fn deliver(&self, app: &App, item: &OutboxItem, tag: &str, at: u64, now: u64) -> Result<(), Failure> {
        let profile = app.store.visitor(&item.visitor).map_err(|e| Failure::Temporary(e.to_string()))?;
        let profile = profile.ok_or_else(|| Failure::Unwanted("the visitor is gone".into()))?;
        if !profile.consent.as_ref().is_some_and(|c| c.ads) {
            return Err(Failure::Unwanted("no ads consent".into()));
        }
        let body = json!({
            "event": "tag",
            "id": item.id,
            "visitor": profile.id,
            "tag": tag,
            "at": crate::export::rfc3339(at),
            "campaign": profile.campaign,
            "tags": profile.tags,
        })
        .to_string();
        let timestamp = (now / 1000).to_string();
        let response = self
            .agent
            .post(&self.url)
            .header("content-type", "application/json")
            .header("x-nudge-timestamp", &timestamp)
            .header("x-nudge-signature", &format!("v1={}", sign(&app.secrets.webhook_secret, &timestamp, &body)))
            .header("x-nudge-event-id", &item.id.to_string())
            .send(body.as_bytes())
            .map_err(|e| Failure::Temporary(e.to_string()))?;
        match response.status().as_u16() {
            200..=299 => Ok(()),
            // Rate limits, timeouts and server errors are the receiver's bad moment; other
            // answers mean it will never take this event.
            408 | 429 | 500..=599 => Err(Failure::Temporary(format!("the webhook answered {}", response.status()))),
            status => Err(Failure::Permanent(format!("the webhook answered {status}"))),
        }
    }
}

/// `hex(HMAC-SHA256(secret, "<timestamp>.<body>"))`.
pub fn sign(secret: &str, timestamp: &str, body: &str) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}
