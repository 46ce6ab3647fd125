//! The shop's secrets: the link signing keys, the key the shop reports conversions with, the
//! webhook signing secret and the admin password's hash. On the embedded store they live in
//! `<data>/secrets.toml` (owner-only); on PostgreSQL in the database, where the first node to
//! start stores what it generated and every other node reads the same, so a link signed on one
//! node opens on all of them and an admin login works on any. Either way the environment can
//! give each one (`NUDGE_SIGNING_KEYS`, `NUDGE_SIGNING_KEY`, `NUDGE_CONVERSIONS_API_KEY`,
//! `NUDGE_WEBHOOK_SECRET`, `NUDGE_ADMIN_PASSWORD_HASH`), and the environment wins.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::ids::AdminSessionId;
use crate::signing::{Claims, Signer};
use crate::store::Store;

/// The name of the secrets in a shared store.
const SHARED: &str = "secrets.toml";

/// The secrets a node runs with.
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
    /// The secrets were created (`secrets.toml`, or the database's).
    pub created: bool,
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
    #[error("reading the shared secrets: {0}")]
    Store(String),
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

    /// The secrets for a node with the data directory `data`: from the `shared` store's
    /// database when there is one, else from `<data>/secrets.toml`, either created with fresh
    /// random keys when there are none yet; then what the environment gives. Says what it
    /// generated.
    pub fn load(shared: Option<&Store>, data: &Path) -> Result<(Secrets, Generated), SecretsError> {
        let (mut secrets, generated) = Secrets::stored(shared, data)?;
        secrets.apply_environment()?;
        Ok((secrets, generated))
    }

    fn stored(shared: Option<&Store>, data: &Path) -> Result<(Secrets, Generated), SecretsError> {
        let Some(store) = shared.filter(|s| s.is_shared()) else {
            return Secrets::load_or_create(data);
        };
        let mut mine = None;
        let text = store
            .shared_secret(SHARED, || {
                let mut fresh = Secrets::fresh();
                let password = random_b64(18);
                fresh.admin_password_hash = hash_password(&password).ok();
                let text = fresh.to_toml();
                mine = Some((password, text.clone()));
                text
            })
            .map_err(|e| SecretsError::Store(e.to_string()))?;
        let secrets: Secrets = toml::from_str(&text).map_err(|e| SecretsError::Parse(shared_path(), e.to_string()))?;
        let mut generated = Generated::default();
        // What this node generated is what was stored: it is the first node, and says so.
        if let Some((password, mine)) = mine
            && mine == text
        {
            generated.created = true;
            generated.admin_password = Some(write_first_password(data, &password)?);
        }
        Ok((secrets, generated))
    }

    /// Reads `<data>/secrets.toml`, creating it with fresh random keys when missing, and an
    /// admin password when there is none yet. Says what it generated. (The environment is not
    /// read: `load` is what a node uses.)
    pub fn load_or_create(data: &Path) -> Result<(Secrets, Generated), SecretsError> {
        let path = Secrets::path(data);
        let mut generated = Generated::default();
        let mut secrets = match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).map_err(|e| SecretsError::Parse(path.clone(), e.to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                generated.created = true;
                Secrets::fresh()
            }
            Err(e) => return Err(SecretsError::Io(path, e)),
        };
        if secrets.admin_password_hash.is_none() {
            let password = random_b64(18);
            secrets.admin_password_hash = Some(hash_password(&password)?);
            generated.admin_password = Some(write_first_password(data, &password)?);
        }
        let mut changed = generated.created || generated.admin_password.is_some();
        if secrets.webhook_secret.is_empty() {
            secrets.webhook_secret = random_b64(32);
            changed = true;
        }
        if changed {
            secrets.save(data)?;
        }
        Ok((secrets, generated))
    }

    fn fresh() -> Secrets {
        Secrets {
            signing_key: "k1".into(),
            conversions_api_key: random_b64(24),
            webhook_secret: random_b64(32),
            admin_password_hash: None,
            keys: [("k1".to_string(), random_b64(32))].into(),
        }
    }

    fn to_toml(&self) -> String {
        format!("# Generated by nudge. Keep this private.\n{}", toml::to_string(self).expect("secrets serialize"))
    }

    /// What the environment gives wins over what is stored: twelve-factor deployments keep
    /// their secrets there. `NUDGE_SIGNING_KEYS` is `kid=base64url,...`; without
    /// `NUDGE_SIGNING_KEY`, the last one listed signs.
    fn apply_environment(&mut self) -> Result<(), SecretsError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        if let Some(key) = var("NUDGE_CONVERSIONS_API_KEY") {
            self.conversions_api_key = key;
        }
        if let Some(secret) = var("NUDGE_WEBHOOK_SECRET") {
            self.webhook_secret = secret;
        }
        if let Some(hash) = var("NUDGE_ADMIN_PASSWORD_HASH") {
            argon2::password_hash::phc::PasswordHash::new(&hash).map_err(|e| {
                SecretsError::Parse("NUDGE_ADMIN_PASSWORD_HASH".into(), format!("not an Argon2 PHC string: {e}"))
            })?;
            self.admin_password_hash = Some(hash);
        }
        if let Some(keys) = var("NUDGE_SIGNING_KEYS") {
            let mut parsed = BTreeMap::new();
            for pair in keys.split(',').map(str::trim) {
                let (kid, key) = pair.split_once('=').ok_or_else(|| {
                    SecretsError::Parse("NUDGE_SIGNING_KEYS".into(), format!("`{pair}`: expected kid=base64url-key"))
                })?;
                self.signing_key = kid.to_string();
                parsed.insert(kid.to_string(), key.to_string());
            }
            self.keys = parsed;
        }
        if let Some(kid) = var("NUDGE_SIGNING_KEY") {
            self.signing_key = kid;
        }
        Ok(())
    }

    /// Replaces the admin password (ending every admin session), in the `shared` store's
    /// database when there is one, else in `<data>/secrets.toml`.
    pub fn set_admin_password(shared: Option<&Store>, data: &Path, password: &str) -> Result<(), SecretsError> {
        if password.chars().count() < MIN_ADMIN_PASSWORD {
            return Err(SecretsError::Password(format!(
                "the admin password needs at least {MIN_ADMIN_PASSWORD} characters"
            )));
        }
        let (mut secrets, _) = Secrets::stored(shared, data)?;
        secrets.admin_password_hash = Some(hash_password(password)?);
        match shared.filter(|s| s.is_shared()) {
            Some(store) => {
                store.set_shared_secret(SHARED, &secrets.to_toml()).map_err(|e| SecretsError::Store(e.to_string()))?
            }
            None => secrets.save(data)?,
        }
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
        let text = self.to_toml();
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

/// Where a shared store's secrets are, for messages.
fn shared_path() -> PathBuf {
    PathBuf::from("the database's secrets")
}

/// Writes a generated admin password to `<data>/admin-password.txt` (owner-only), replacing one
/// there, and returns the path.
fn write_first_password(data: &Path, password: &str) -> Result<PathBuf, SecretsError> {
    let file = Secrets::first_password_path(data);
    std::fs::create_dir_all(data).map_err(|e| SecretsError::Io(data.into(), e))?;
    let _ = std::fs::remove_file(&file);
    write_private(&file, &format!("{password}\n")).map_err(|e| SecretsError::Io(file.clone(), e))?;
    Ok(file)
}
