//! Identifiers minted by the server: visitors, conversations, outbox jobs and turns.
//!
//! All are 16 bytes: a 48-bit big-endian millisecond timestamp, then 80 random bits. Time first
//! so that sled keys sort by creation time; random so that a visitor id cannot be guessed. On the
//! wire they are 32 lowercase hex characters, and they can only be built by minting or parsing.

use std::fmt;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("an id is 32 lowercase hex characters")]
pub struct BadId;

macro_rules! id_type {
    ($name:ident) => {
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; 16]);

        impl $name {
            /// A fresh id for `now_ms`.
            pub fn mint(now_ms: u64) -> Self {
                Self(mint_bytes(now_ms))
            }

            pub fn parse(s: &str) -> Result<Self, BadId> {
                parse_hex(s).map(Self)
            }

            pub fn from_bytes(bytes: &[u8]) -> Result<Self, BadId> {
                bytes.try_into().map(Self).map_err(|_| BadId)
            }

            pub fn as_bytes(&self) -> &[u8; 16] {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                for b in self.0 {
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({self})", stringify!($name))
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(VisitorId);
id_type!(ConversationId);
id_type!(OutboxId);
// A marketer's admin session: named by the cookie, live while the store holds it.
id_type!(AdminSessionId);
// A turn of a conversation, minted by the session: the key that makes appending it idempotent.
id_type!(TurnId);

impl TurnId {
    /// A fresh id that sorts after `previous` (the session's last turn), so that a transcript
    /// reads in the order its turns happened even within one millisecond.
    pub fn after(previous: Option<TurnId>, now_ms: u64) -> TurnId {
        let fresh = TurnId::mint(now_ms);
        match previous {
            Some(previous) if previous >= fresh => {
                TurnId(u128::from_be_bytes(previous.0).wrapping_add(1).to_be_bytes())
            }
            _ => fresh,
        }
    }
}

fn mint_bytes(now_ms: u64) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&now_ms.to_be_bytes()[2..]);
    // The OS random source failing is not something a chat server can recover from sensibly;
    // falling back to a weaker source would silently make ids guessable.
    getrandom::fill(&mut bytes[6..]).expect("the operating system's random source is unavailable");
    bytes
}

fn parse_hex(s: &str) -> Result<[u8; 16], BadId> {
    let raw = s.as_bytes();
    if raw.len() != 32 {
        return Err(BadId);
    }
    let mut out = [0u8; 16];
    for (i, pair) in raw.chunks(2).enumerate() {
        let hi = hex_digit(pair[0])?;
        let lo = hex_digit(pair[1])?;
        out[i] = hi << 4 | lo;
    }
    Ok(out)
}

fn hex_digit(c: u8) -> Result<u8, BadId> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        _ => Err(BadId),
    }
}

/// An email address, trimmed and lowercased so that one person has one key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Email(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not an email address")]
pub struct BadEmail(String);

impl Email {
    pub fn parse(s: &str) -> Result<Email, BadEmail> {
        let email = s.trim().to_lowercase();
        let valid = email.len() <= 254
            && email.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains('@')
            })
            && !email.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';'));
        if valid { Ok(Email(email)) } else { Err(BadEmail(s.to_string())) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A fresh resume key for a widget (32 hex characters of randomness) and the hash the store
/// keeps of it: the key itself is only ever in the widget's storage.
pub fn mint_resume_key() -> (String, String) {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the operating system's random source is unavailable");
    let key: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let hash = resume_key_hash(&key);
    (key, hash)
}

pub fn resume_key_hash(key: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(key.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turn_ids_follow_each_other_within_a_millisecond() {
        let mut last = None;
        for _ in 0..1000 {
            let next = TurnId::after(last, 7);
            assert!(last.is_none_or(|last| next > last));
            last = Some(next);
        }
    }

    #[test]
    fn emails_are_normalized_or_refused() {
        assert_eq!(Email::parse("  Ana@Example.COM ").map(|e| e.to_string()), Ok("ana@example.com".to_string()));
        for bad in ["", "ana", "ana@", "@example.com", "ana@example", "a b@example.com", "ana@x.com, bob@y.com"] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn round_trip_and_order() {
        let a = VisitorId::mint(1_000);
        let b = VisitorId::mint(2_000);
        assert!(a < b, "ids sort by time");
        assert_eq!(VisitorId::parse(&a.to_string()), Ok(a));
    }

    #[test]
    fn rejects_bad_ids() {
        for bad in ["", "abc", &"g".repeat(32), &"A".repeat(32), &"0".repeat(33)] {
            assert_eq!(VisitorId::parse(bad), Err(BadId), "{bad:?}");
        }
    }
}
