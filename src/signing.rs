//! Signed tokens for email links, checkout links and unsubscribe links: HMAC-SHA256 over a
//! compact JSON payload with an expiry and a key id, so keys can be rotated (every configured key
//! verifies, one signs). A token is `kid.payload.signature`, the last two base64url.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::ids::{AdminSessionId, ConversationId, VisitorId};

type HmacSha256 = Hmac<Sha256>;

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
        let payload = serde_json::to_vec(&Payload { x: expires_at, claims: claims.clone() }).expect("claims serialize");
        let signed = format!("{}.{}", self.signing, B64.encode(payload));
        let signature = mac(&self.keys[&self.signing], &signed).finalize().into_bytes();
        format!("{signed}.{}", B64.encode(signature))
    }

    /// The claims of a token that this server signed and that has not expired at `now` (seconds).
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, TokenError> {
        let (signed, signature) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let (kid, payload) = signed.split_once('.').ok_or(TokenError::Malformed)?;
        let signature = B64.decode(signature).map_err(|_| TokenError::Malformed)?;
        let key = self.keys.get(kid).ok_or(TokenError::UnknownKey)?;
        // `verify_slice` compares in constant time.
        mac(key, signed).verify_slice(&signature).map_err(|_| TokenError::BadSignature)?;
        let payload = B64.decode(payload).map_err(|_| TokenError::Malformed)?;
        let payload: Payload = serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
        if payload.x <= now {
            return Err(TokenError::Expired);
        }
        Ok(payload.claims)
    }
}

fn mac(key: &[u8], data: &str) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data.as_bytes());
    mac
}

/// Secrets generated into the data directory on first start (`secrets.toml`, readable by the
/// owner only): the signing keys and the key the shop uses to report conversions.
#[derive(Serialize, Deserialize)]
pub struct Secrets {
    pub signing_key: String,
    pub conversions_api_key: String,
    /// The key tag-webhook events are signed with (`X-Nudge-Signature`).
    #[serde(default)]
    pub webhook_secret: String,
    /// Argon2id PHC string of the `/admin` password (`nudge admin-password` sets it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_password_hash: Option<String>,
    /// Key id → base64url key. Add a key and point `signing_key` at it to rotate.
    pub keys: BTreeMap<String, String>,
}

impl std::fmt::Debug for Secrets {
    // Like `Signer`: names, never values.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Secrets {{ signing_key: {:?}, keys: {:?}, .. }}",
            self.signing_key,
            self.keys.keys().collect::<Vec<_>>()
        )
    }
}

/// What `Secrets::load_or_create` had to make, so the first start can say how to use it.
#[derive(Debug, Default)]
pub struct Generated {
    /// `secrets.toml` was created.
    pub file: bool,
    /// Where a fresh admin password was written (mode 0600; only its hash is in
    /// `secrets.toml`): the path is printed, never the password, which service logs would keep.
    pub admin_password: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{0}: {1}")]
    Parse(PathBuf, String),
    #[error("{0}")]
    Password(String),
}

/// The shortest admin password `nudge admin-password` accepts.
pub const MIN_ADMIN_PASSWORD: usize = 12;

impl Secrets {
    pub fn path(data: &Path) -> PathBuf {
        data.join("secrets.toml")
    }

    /// Where the first start writes the admin password it generated.
    pub fn first_password_path(data: &Path) -> PathBuf {
        data.join("admin-password.txt")
    }

    /// Reads `<data>/secrets.toml`, creating it with fresh random keys when missing, and an
    /// admin password when there is none yet. Says what it generated.
    pub fn load_or_create(data: &Path) -> Result<(Secrets, Generated), SecretsError> {
        let path = Secrets::path(data);
        let mut generated = Generated::default();
        let mut secrets = match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).map_err(|e| SecretsError::Parse(path.clone(), e.to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                generated.file = true;
                Secrets {
                    signing_key: "k1".into(),
                    conversions_api_key: random_b64(24),
                    webhook_secret: String::new(),
                    admin_password_hash: None,
                    keys: [("k1".to_string(), random_b64(32))].into(),
                }
            }
            Err(e) => return Err(SecretsError::Io(path, e)),
        };
        if secrets.admin_password_hash.is_none() {
            let password = random_b64(18);
            secrets.admin_password_hash = Some(hash_password(&password)?);
            let file = Secrets::first_password_path(data);
            std::fs::create_dir_all(data).map_err(|e| SecretsError::Io(data.into(), e))?;
            let _ = std::fs::remove_file(&file);
            write_private(&file, &format!("{password}\n")).map_err(|e| SecretsError::Io(file.clone(), e))?;
            generated.admin_password = Some(file);
        }
        let mut changed = generated.file || generated.admin_password.is_some();
        if secrets.webhook_secret.is_empty() {
            secrets.webhook_secret = random_b64(32);
            changed = true;
        }
        if changed {
            secrets.save(data)?;
        }
        Ok((secrets, generated))
    }

    /// Replaces the admin password (ending every admin session).
    pub fn set_admin_password(data: &Path, password: &str) -> Result<(), SecretsError> {
        if password.chars().count() < MIN_ADMIN_PASSWORD {
            return Err(SecretsError::Password(format!(
                "the admin password needs at least {MIN_ADMIN_PASSWORD} characters"
            )));
        }
        let (mut secrets, _) = Secrets::load_or_create(data)?;
        secrets.admin_password_hash = Some(hash_password(password)?);
        secrets.save(data)?;
        // The generated first password is no longer the password.
        match std::fs::remove_file(Secrets::first_password_path(data)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(SecretsError::Io(Secrets::first_password_path(data), e))
            }
            _ => Ok(()),
        }
    }

    /// Whether `password` is the admin password (Argon2id; slow on purpose).
    pub fn admin_password_matches(&self, password: &str) -> bool {
        use argon2::password_hash::{PasswordVerifier, phc::PasswordHash};
        let Some(hash) = self.admin_password_hash.as_deref().and_then(|h| PasswordHash::new(h).ok()) else {
            return false;
        };
        argon2::Argon2::default().verify_password(password.as_bytes(), &hash).is_ok()
    }

    /// The claim an admin session carries: a fingerprint of the current password hash.
    pub fn admin_claims(&self, sid: AdminSessionId) -> Claims {
        use sha2::Digest;
        let digest = Sha256::digest(self.admin_password_hash.as_deref().unwrap_or("").as_bytes());
        Claims::Admin { pw: B64.encode(&digest[..9]), sid }
    }

    /// Writes the file (owner-only) through a temporary file and a rename, so a crash leaves
    /// either the old or the new secrets.
    fn save(&self, data: &Path) -> Result<(), SecretsError> {
        let path = Secrets::path(data);
        std::fs::create_dir_all(data).map_err(|e| SecretsError::Io(data.into(), e))?;
        let text = format!(
            "# Generated by nudge. Keep this file private.\n{}",
            toml::to_string(self).expect("secrets serialize")
        );
        let tmp = path.with_extension("toml.tmp");
        let _ = std::fs::remove_file(&tmp);
        write_private(&tmp, &text).map_err(|e| SecretsError::Io(tmp.clone(), e))?;
        std::fs::rename(&tmp, &path).map_err(|e| SecretsError::Io(path, e))
    }

    pub fn signer(&self) -> Result<Signer, SecretsError> {
        let path = PathBuf::from("secrets.toml");
        let mut keys = BTreeMap::new();
        for (kid, key) in &self.keys {
            let bytes = B64.decode(key).map_err(|e| SecretsError::Parse(path.clone(), format!("key `{kid}`: {e}")))?;
            keys.insert(kid.clone(), bytes);
        }
        Signer::new(&self.signing_key, keys).map_err(|e| SecretsError::Parse(path, e))
    }
}

fn hash_password(password: &str) -> Result<String, SecretsError> {
    use argon2::password_hash::PasswordHasher;
    argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| SecretsError::Password(format!("cannot hash the admin password: {e}")))
}

fn random_b64(len: usize) -> String {
    let mut bytes = vec![0u8; len];
    getrandom::fill(&mut bytes).expect("the operating system's random source is unavailable");
    B64.encode(bytes)
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(text.as_bytes())
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
