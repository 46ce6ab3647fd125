//! Sealed tokens for email links, checkout links, unsubscribe links and the admin cookie: a
//! compact JSON payload with an expiry, encrypted and authenticated with ChaCha20-Poly1305 under
//! a key derived from the named signing key, so a link shows nobody the visitor id, email or name
//! it carries, and keys can be rotated (every configured key opens, one seals). A token is
//! `kid.sealed`, the last base64url (a random nonce, the ciphertext, the tag). Tokens of the
//! earlier form, `kid.payload.signature` (HMAC-SHA256 over readable JSON), still verify, so links
//! in emails already sent keep working until they expire.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, KeyInit, Mac};
use ring::aead;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::ids::{AdminSessionId, ConversationId, OutboxId, VisitorId};

type HmacSha256 = Hmac<Sha256>;

/// An answer carried by an email's button: the slot it answers and the quick reply's value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    pub slot: String,
    pub value: String,
}

/// What a token grants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "k")]
pub enum Claims {
    /// An email link: who the shopper is and where they came from.
    #[serde(rename = "c")]
    Chat {
        email: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        campaign: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        product: Option<String>,
        /// The visitor a follow-up email was sent to: the link resumes that visitor, and
        /// clicking it proves the address is theirs.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        visitor: Option<VisitorId>,
        /// The conversation the email followed up on: the link resumes it however long ago it
        /// was.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        conversation: Option<ConversationId>,
        /// A quick reply given in the email: opening the link answers the conversation's open
        /// question with it, as a `choose` would.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        answer: Option<Answer>,
    },
    /// A checkout link: the shop URL it leads to, and whose click it records.
    #[serde(rename = "r")]
    Checkout { visitor: VisitorId, conversation: ConversationId, target: String },
    /// A one-click unsubscribe link.
    #[serde(rename = "u")]
    Unsubscribe { visitor: VisitorId },
    /// A double opt-in link: following it proves `email` is the visitor's.
    #[serde(rename = "v")]
    Confirm { visitor: VisitorId, email: String },
    /// The open pixel of a sent email (the outbox item).
    #[serde(rename = "o")]
    Open { item: OutboxId },
    /// A link in a sent email: where it leads, and which email's click it counts.
    #[serde(rename = "l")]
    Click { item: OutboxId, target: String },
    /// A marketer's admin session (the cookie). `pw` fingerprints the password hash it was
    /// issued under, so changing the password ends every session.
    #[serde(rename = "a")]
    Admin { pw: String, sid: AdminSessionId },
}

#[derive(Serialize, Deserialize)]
struct Payload {
    /// Expiry, seconds since the Unix epoch.
    x: u64,
    #[serde(flatten)]
    claims: Claims,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the link is malformed or truncated")]
    Malformed,
    #[error("the link was signed with a key this server does not have")]
    UnknownKey,
    #[error("the link has been tampered with")]
    BadSignature,
    #[error("the link has expired")]
    Expired,
}

/// The keys: every one verifies, `signing` signs.
#[derive(Clone)]
pub struct Signer {
    signing: String,
    keys: BTreeMap<String, Vec<u8>>,
}

impl std::fmt::Debug for Signer {
    // Keys never reach logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer {{ signing: {:?}, keys: {:?} }}", self.signing, self.keys.keys().collect::<Vec<_>>())
    }
}

impl Signer {
    pub fn new(signing: &str, keys: BTreeMap<String, Vec<u8>>) -> Result<Signer, String> {
        if !keys.contains_key(signing) {
            return Err(format!("signing key `{signing}` is not among the keys"));
        }
        if keys.keys().any(|k| k.is_empty() || k.contains('.')) {
            return Err("key ids must be non-empty and contain no `.`".into());
        }
        Ok(Signer { signing: signing.to_string(), keys })
    }

    pub fn sign(&self, claims: &Claims, expires_at: u64) -> String {
        let mut sealed =
            serde_json::to_vec(&Payload { x: expires_at, claims: claims.clone() }).expect("claims serialize");
        let mut nonce = [0u8; aead::NONCE_LEN];
        getrandom::fill(&mut nonce).expect("the operating system's random source is unavailable");
        sealing_key(&self.keys[&self.signing])
            .seal_in_place_append_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(self.signing.as_bytes()),
                &mut sealed,
            )
            .expect("a token is far below the AEAD's length limit");
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&sealed);
        format!("{}.{}", self.signing, B64.encode(blob))
    }

    /// The claims of a token that this server sealed (or signed) and that has not expired at
    /// `now` (seconds).
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, TokenError> {
        self.verify_until(token, now).map(|(claims, _)| claims)
    }

    /// `verify`, with the token's expiry (seconds).
    pub fn verify_until(&self, token: &str, now: u64) -> Result<(Claims, u64), TokenError> {
        let payload = match token.matches('.').count() {
            1 => self.open(token)?,
            _ => self.verify_signed(token)?,
        };
        if payload.x <= now {
            return Err(TokenError::Expired);
        }
        Ok((payload.claims, payload.x))
    }

    fn open(&self, token: &str) -> Result<Payload, TokenError> {
        let (kid, blob) = token.split_once('.').ok_or(TokenError::Malformed)?;
        let key = self.keys.get(kid).ok_or(TokenError::UnknownKey)?;
        let mut blob = B64.decode(blob).map_err(|_| TokenError::Malformed)?;
        if blob.len() < aead::NONCE_LEN + aead::CHACHA20_POLY1305.tag_len() {
            return Err(TokenError::Malformed);
        }
        let mut sealed = blob.split_off(aead::NONCE_LEN);
        let nonce = aead::Nonce::try_assume_unique_for_key(&blob).map_err(|_| TokenError::Malformed)?;
        let payload = sealing_key(key)
            .open_in_place(nonce, aead::Aad::from(kid.as_bytes()), &mut sealed)
            .map_err(|_| TokenError::BadSignature)?;
        serde_json::from_slice(payload).map_err(|_| TokenError::Malformed)
    }

    /// A token of the earlier, signed-only form.
    fn verify_signed(&self, token: &str) -> Result<Payload, TokenError> {
        let (signed, signature) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let (kid, payload) = signed.split_once('.').ok_or(TokenError::Malformed)?;
        let signature = B64.decode(signature).map_err(|_| TokenError::Malformed)?;
        let key = self.keys.get(kid).ok_or(TokenError::UnknownKey)?;
        // `verify_slice` compares in constant time.
        mac(key, signed).verify_slice(&signature).map_err(|_| TokenError::BadSignature)?;
        let payload = B64.decode(payload).map_err(|_| TokenError::Malformed)?;
        serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)
    }
}

/// The AEAD key of a signing key: HMAC-SHA256 of a fixed label under it, so the same secret never
/// serves two algorithms directly.
fn sealing_key(key: &[u8]) -> aead::LessSafeKey {
    let derived = mac(key, "nudge token sealing v1").finalize().into_bytes();
    let unbound = aead::UnboundKey::new(&aead::CHACHA20_POLY1305, &derived).expect("32 bytes is the key length");
    aead::LessSafeKey::new(unbound)
}

fn mac(key: &[u8], data: &str) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data.as_bytes());
    mac
}

/// Compares two secrets in time that does not depend on where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(kid: &str) -> Signer {
        let keys = [("old".to_string(), b"old-key".to_vec()), ("new".to_string(), b"new-key".to_vec())].into();
        Signer::new(kid, keys).expect("signer")
    }

    fn claims(i: u64) -> Claims {
        Claims::Chat {
            email: format!("a{i}@example.com"),
            name: Some("Ana".into()),
            campaign: None,
            product: None,
            visitor: None,
            conversation: None,
            answer: None,
        }
    }

    #[test]
    fn round_trips_and_rotates() {
        let old = signer("old");
        let new = signer("new");
        for i in 0..50 {
            let token = old.sign(&claims(i), 1_000 + i);
            assert_eq!(new.verify(&token, 999), Ok(claims(i)), "old tokens verify after rotation");
            assert_eq!(new.verify(&token, 1_000 + i), Err(TokenError::Expired));
        }
        let only_new = Signer::new("new", [("new".to_string(), b"new-key".to_vec())].into()).expect("signer");
        assert_eq!(only_new.verify(&old.sign(&claims(0), 10), 0), Err(TokenError::UnknownKey));
    }

    #[test]
    fn a_sealed_token_shows_nothing_it_carries() {
        let s = signer("new");
        let visitor = VisitorId::mint(1);
        let claims = Claims::Chat {
            email: "ana.secret@example.com".into(),
            name: Some("Anastasia".into()),
            campaign: None,
            product: None,
            visitor: Some(visitor),
            conversation: None,
            answer: None,
        };
        let token = s.sign(&claims, 10_000);
        let (kid, blob) = token.split_once('.').expect("kid.sealed");
        assert_eq!(kid, "new");
        let bytes = B64.decode(blob).expect("base64url");
        let text = String::from_utf8_lossy(&bytes);
        for secret in ["ana.secret", "Anastasia", &visitor.to_string()] {
            assert!(!text.contains(secret) && !token.contains(secret), "{secret} readable in {token}");
        }
        assert_eq!(s.verify(&token, 0), Ok(claims.clone()));
        assert_ne!(s.sign(&claims, 10_000), token, "a fresh nonce each time");
    }

    #[test]
    fn links_signed_before_sealing_still_verify() {
        let s = signer("old");
        let payload = serde_json::to_vec(&Payload { x: 5_000, claims: claims(3) }).expect("json");
        let signed = format!("old.{}", B64.encode(payload));
        let signature = mac(b"old-key", &signed).finalize().into_bytes();
        let legacy = format!("{signed}.{}", B64.encode(signature));
        assert_eq!(s.verify(&legacy, 0), Ok(claims(3)));
        assert_eq!(s.verify(&legacy, 5_000), Err(TokenError::Expired));
        let forged = format!("{signed}.{}", B64.encode([0u8; 32]));
        assert_eq!(s.verify(&forged, 0), Err(TokenError::BadSignature));
    }

    #[test]
    fn every_tampered_byte_is_refused() {
        let s = signer("new");
        let token = s.sign(&claims(7), 10_000);
        for i in 0..token.len() {
            for replacement in [b'A', b'z', b'.', b'-'] {
                let mut bytes = token.clone().into_bytes();
                if bytes[i] == replacement {
                    continue;
                }
                bytes[i] = replacement;
                let tampered = String::from_utf8(bytes).expect("ascii");
                assert!(s.verify(&tampered, 0).is_err(), "accepted {tampered}");
            }
            assert!(s.verify(&token[..i], 0).is_err(), "accepted a truncated token");
        }
    }
}
