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
                f.write_str(hex(&self.0).as_str())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({self})", stringify!($name))
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(hex(&self.0).as_str())
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
    random(&mut bytes[6..]);
    bytes
}

/// Bytes from the operating system's random source, fetched 4 KiB at a time per thread: every
/// message mints a turn id, and a system call for 10 bytes was 2 % of a chat worker's time.
/// Each byte is handed out once, so the ids are exactly as unguessable as the source.
fn random(out: &mut [u8]) {
    const POOL: usize = 4096;
    thread_local! {
        static POOL_BYTES: std::cell::RefCell<(Box<[u8; POOL]>, usize)> =
            std::cell::RefCell::new((Box::new([0; POOL]), POOL));
    }
    POOL_BYTES.with_borrow_mut(|(pool, used)| {
        if *used + out.len() > POOL {
            // The OS random source failing is not something a chat server can recover from
            // sensibly; falling back to a weaker source would silently make ids guessable.
            getrandom::fill(&mut pool[..]).expect("the operating system's random source is unavailable");
            *used = 0;
        }
        out.copy_from_slice(&pool[*used..*used + out.len()]);
        *used += out.len();
    });
}

/// 32 lowercase hex characters, without the formatting machinery (ids are written into every
/// stored profile, conversation and outbox item, and into frames).
struct Hex([u8; 32]);

impl Hex {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

fn hex(bytes: &[u8; 16]) -> Hex {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(b >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(b & 15)];
    }
    Hex(out)
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
        assert_eq!(serde_json::to_string(&a).ok(), Some(format!("\"{a}\"")));
        let bytes: [u8; 16] = std::array::from_fn(|i| (i * 17) as u8);
        assert_eq!(VisitorId(bytes).to_string(), "00112233445566778899aabbccddeeff");
    }

    #[test]
    fn the_random_part_is_never_handed_out_twice() {
        // More ids than one pool of random bytes holds, so refills are crossed too.
        let ids: std::collections::HashSet<[u8; 10]> =
            (0..2000).map(|_| VisitorId::mint(5).0[6..].try_into().expect("ten random bytes")).collect();
        assert_eq!(ids.len(), 2000);
    }

    #[test]
    fn rejects_bad_ids() {
        for bad in ["", "abc", &"g".repeat(32), &"A".repeat(32), &"0".repeat(33)] {
            assert_eq!(VisitorId::parse(bad), Err(BadId), "{bad:?}");
        }
    }
}
