//! Leads: when a visitor qualifies, the checkout link built for exactly what they asked for,
//! which redirect targets are allowed, and attributing the shop's orders.

pub mod learned;

use url::Url;

use crate::config::Config;
use crate::domain::{Change, Conversation, Order, Profile, Status};
use crate::ids::{BadEmail, ConversationId, Email, VisitorId};
use crate::intents::template::Template;
use crate::signing::{Claims, Signer, TokenError};
use crate::store::{Command, Store};

/// Whether a visitor who is still chatting has reached the score and told us what is required.
pub fn qualifies(profile: &Profile, config: &Config) -> bool {
    profile.status == Status::Chatting
        && profile.score >= config.qualify_score
        && config.qualify_requires.iter().all(|p| profile.preferences.contains_key(p))
}

/// Whether a checkout link can be built: the required preferences are known and the lead has
/// not bought yet (an intent with `checkout = true` offers it whatever the score).
pub fn can_check_out(profile: &Profile, config: &Config) -> bool {
    profile.status < Status::Converted && config.qualify_requires.iter().all(|p| profile.preferences.contains_key(p))
}

/// The shop URL for this visitor's preferences, from the `checkout_url` template.
pub fn checkout_target(config: &Config, profile: &Profile, campaign: Option<&str>) -> Result<Url, String> {
    let template = Template::parse(&config.checkout_url).map_err(|e| format!("checkout_url: {e}"))?;
    let visitor = profile.id.to_string();
    let raw = |name: &str| match name {
        "sku" => profile.preference("sku").or(profile.preference("product")),
        "campaign" => campaign.or(profile.campaign.as_deref()),
        "visitor" => Some(visitor.as_str()),
        other => profile.preference(other),
    };
    // Every value is URL-encoded, so a preference can never add a parameter or change the host.
    let encoded: std::collections::HashMap<&str, String> = template
        .names()
        .map(|name| (name, url::form_urlencoded::byte_serialize(raw(name).unwrap_or("").as_bytes()).collect()))
        .collect();
    let rendered = template.render(|name| encoded.get(name).map(String::as_str));
    let mut url = Url::parse(&rendered).map_err(|e| format!("checkout_url: {e}"))?;
    if !target_allowed(&url, &config.shop_hosts) {
        return Err(format!("checkout_url host {:?} is not in shop_hosts", url.host_str()));
    }
    url.set_fragment(None);
    Ok(url)
}

/// Only http(s) URLs on an allow-listed host (or its subdomains) may be redirected to.
pub fn target_allowed(url: &Url, hosts: &[String]) -> bool {
    matches!(url.scheme(), "https" | "http")
        && url.username().is_empty()
        && url
            .host_str()
            .is_some_and(|host| hosts.iter().any(|allowed| host == allowed || host.ends_with(&format!(".{allowed}"))))
}

/// Where a link in an email may lead: Nudge's own chat links (`<public_url>/c/...`) or a shop
/// host; the URL as parsed, never the raw text.
pub fn email_target(target: &str, public_url: &str, hosts: &[String]) -> Option<Url> {
    let url = Url::parse(target).ok()?;
    let own = format!("{}/c/", public_url.trim_end_matches('/'));
    (url.as_str().starts_with(&own) || target_allowed(&url, hosts)).then_some(url)
}

/// The signed `/r/` link that records the click and leads to `target`.
pub fn checkout_link(
    signer: &Signer,
    public_url: &str,
    visitor: VisitorId,
    conversation: ConversationId,
    target: String,
    expires_at: u64,
) -> String {
    let claims = Claims::Checkout { visitor, conversation, target };
    format!("{public_url}/r/{}", signer.sign(&claims, expires_at))
}

/// What a verified email link says about the shopper.
#[derive(Debug)]
pub struct EmailLink {
    pub email: Email,
    pub name: Option<String>,
    pub campaign: Option<String>,
    pub product: Option<String>,
    /// Set in follow-up emails: the visitor the email was written for ...
    pub visitor: Option<VisitorId>,
    /// ... and the conversation it followed up on.
    pub conversation: Option<ConversationId>,
    /// An answer to the conversation's open question (a button in the email).
    pub answer: Option<crate::signing::Answer>,
    /// The token's hash (what a spent link is remembered by) and expiry (seconds).
    pub id: [u8; 16],
    pub expires_at: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("this is not an email link")]
    NotEmailLink,
    #[error(transparent)]
    BadEmail(#[from] BadEmail),
}

impl EmailLink {
    /// Verifies an email-link token at `now` (seconds).
    pub fn verify(signer: &Signer, token: &str, now: u64) -> Result<EmailLink, LinkError> {
        match signer.verify_until(token, now)? {
            (Claims::Chat { email, name, campaign, product, visitor, conversation, answer }, expires_at) => {
                use sha2::Digest;
                let digest = sha2::Sha256::digest(token.as_bytes());
                let mut id = [0u8; 16];
                id.copy_from_slice(&digest[..16]);
                let email = Email::parse(&email)?;
                Ok(EmailLink { email, name, campaign, product, visitor, conversation, answer, id, expires_at })
            }
            _ => Err(LinkError::NotEmailLink),
        }
    }

    /// The visitor the link belongs to: the one it was written for, else whoever the address
    /// was linked to before.
    pub fn find(&self, store: &Store) -> crate::store::Result<Option<Profile>> {
        if let Some(visitor) = &self.visitor
            && let Some(profile) = store.visitor(visitor)?
        {
            return Ok(Some(profile));
        }
        store.visitor_by_email(self.email.as_str())
    }

    /// What the link knows of its visitor (email, name, product, campaign), as changes to the
    /// profile.
    pub fn changes(&self, now: u64) -> Vec<Change> {
        let known =
            [("email", Some(self.email.to_string())), ("name", self.name.clone()), ("product", self.product.clone())];
        let preferences = known.into_iter().filter_map(|(name, value)| {
            Some(Change::Preference { name: name.into(), value: value?, at: now, message: "email link".into() })
        });
        // The signed link came to this address: following it proves the address.
        let confirmed = Change::ConfirmEmail { email: self.email.to_string(), at: now, source: "email link".into() };
        preferences.chain(self.campaign.clone().map(Change::Campaign)).chain([confirmed]).collect()
    }

    /// The command that indexes the email, so the same link finds this visitor on any device.
    pub fn link(&self, visitor: VisitorId) -> Command {
        Command::LinkEmail { email: self.email.to_string(), visitor }
    }
}

/// A conversion as the shop reports it.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conversion {
    pub order_id: String,
    pub checkout_token: Option<String>,
    pub visitor: Option<String>,
    pub value: f64,
    pub currency: String,
}

impl Conversion {
    /// Checks what JSON cannot: a usable order id, a sane value and an ISO currency code.
    pub fn validate(&self) -> Result<(), String> {
        if self.order_id.trim().is_empty() || self.order_id.len() > 200 {
            return Err("`order_id` must be 1 to 200 characters".into());
        }
        if !self.value.is_finite() || self.value < 0.0 {
            return Err("`value` must be a non-negative number".into());
        }
        if !crate::domain::is_currency(&self.currency) {
            return Err("`currency` must be an ISO 4217 currency such as EUR".into());
        }
        if self.checkout_token.is_none() && self.visitor.is_none() {
            return Err("give `checkout_token` (from the checkout link) or `visitor`".into());
        }
        Ok(())
    }
}

/// The order attributed to the visitor's conversation, its campaign and the reply variants shown.
pub fn attribute(
    conversion: &Conversion,
    profile: &Profile,
    conversation: Option<&Conversation>,
    variants: Vec<(String, u32)>,
    now: u64,
) -> Order {
    Order {
        id: conversion.order_id.trim().to_string(),
        visitor: profile.id,
        conversation: conversation.map(|c| c.id),
        campaign: conversation.and_then(|c| c.source.campaign.clone()).or(profile.campaign.clone()),
        variants,
        value: conversion.value,
        currency: conversion.currency.clone(),
        at: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_targets_are_allow_listed() {
        let hosts = vec!["shop.example".to_string()];
        for (url, allowed) in [
            ("https://shop.example/cart", true),
            ("https://eu.shop.example/cart", true),
            ("https://shop.example.evil.com/", false),
            ("https://evilshop.example/", false),
            ("javascript:alert(1)", false),
            ("https://user@shop.example/", false),
            ("ftp://shop.example/", false),
        ] {
            let parsed = Url::parse(url).expect("url");
            assert_eq!(target_allowed(&parsed, &hosts), allowed, "{url}");
        }
    }

    #[test]
    fn checkout_urls_encode_preferences() {
        let config = Config::default();
        let mut profile = Profile::new(VisitorId::mint(0), 0, "en");
        for (name, value) in [("product", "running shoes"), ("size", "42&evil=1")] {
            let pref = crate::domain::Preference { value: value.into(), at: 0, message: String::new() };
            profile.preferences.insert(name.into(), pref);
        }
        let url = checkout_target(&config, &profile, Some("spring sale")).expect("url");
        assert_eq!(
            url.as_str(),
            "https://shop.example/cart?sku=running+shoes&size=42%26evil%3D1&utm_campaign=spring+sale"
        );
    }
}
