//! Profiles as stored: postcard (value version 4), field by field in a fixed order.
//!
//! The store writer encodes a visitor's whole profile after every message that changes it, and as
//! JSON (version 1) that was a quarter of the writer's time, half of it spent scanning the captured
//! messages for characters to escape. Postcard copies strings as they are. Statuses are stored as
//! their index codes (`Status as u8`), so renaming a variant never changes what is on disk.
//! Profiles written before (JSON) are still read; a new field needs a new version here.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{Result, StoreError, VALUE_VERSION};
use crate::domain::{Agent, Confirmation, ConsentRecord, Engaged, Preference, Profile, Status};
use crate::ids::VisitorId;

const PROFILE_VERSION: u8 = 4;

#[derive(Serialize)]
struct Out<'a> {
    id: &'a [u8; 16],
    created_at: u64,
    last_seen_at: u64,
    locale: &'a str,
    visits: u32,
    consent: &'a Option<ConsentRecord>,
    preferences: &'a BTreeMap<String, Preference>,
    tags: &'a BTreeSet<String>,
    score: i64,
    handoff_at: Option<u64>,
    agent: &'a Option<Agent>,
    handed_back_at: Option<u64>,
    status: u8,
    status_at: Vec<(u8, u64)>,
    campaign: &'a Option<String>,
    utm: &'a BTreeMap<String, String>,
    orders: &'a [String],
    confirmed: &'a Option<Confirmation>,
    resume_keys: &'a [String],
    timezone: &'a Option<String>,
    journeys: &'a BTreeMap<String, u64>,
    intents: &'a BTreeMap<String, u64>,
    triggers: &'a BTreeMap<String, Engaged>,
}

#[derive(Deserialize)]
struct In {
    id: [u8; 16],
    created_at: u64,
    last_seen_at: u64,
    locale: String,
    visits: u32,
    consent: Option<ConsentRecord>,
    preferences: BTreeMap<String, Preference>,
    tags: BTreeSet<String>,
    score: i64,
    handoff_at: Option<u64>,
    agent: Option<Agent>,
    handed_back_at: Option<u64>,
    status: u8,
    status_at: Vec<(u8, u64)>,
    campaign: Option<String>,
    utm: BTreeMap<String, String>,
    orders: Vec<String>,
    confirmed: Option<Confirmation>,
    resume_keys: Vec<String>,
    timezone: Option<String>,
    journeys: BTreeMap<String, u64>,
    intents: BTreeMap<String, u64>,
    triggers: BTreeMap<String, Engaged>,
}

fn fields(p: &Profile) -> Out<'_> {
    Out {
        id: p.id.as_bytes(),
        created_at: p.created_at,
        last_seen_at: p.last_seen_at,
        locale: &p.locale,
        visits: p.visits,
        consent: &p.consent,
        preferences: &p.preferences,
        tags: &p.tags,
        score: p.score,
        handoff_at: p.handoff_at,
        agent: &p.agent,
        handed_back_at: p.handed_back_at,
        status: p.status as u8,
        status_at: p.status_at.iter().map(|(s, at)| (*s as u8, *at)).collect(),
        campaign: &p.campaign,
        utm: &p.utm,
        orders: &p.orders,
        confirmed: &p.confirmed,
        resume_keys: &p.resume_keys,
        timezone: &p.timezone,
        journeys: &p.journeys,
        intents: &p.intents,
        triggers: &p.triggers,
    }
}

pub(super) fn encode(p: &Profile) -> Vec<u8> {
    let out = fields(p);
    // Room for the captured values and messages, so the buffer is not grown several times.
    let strings: usize = p.preferences.iter().map(|(k, v)| k.len() + v.value.len() + v.message.len()).sum();
    let mut bytes = Vec::with_capacity(160 + strings + p.tags.iter().map(|t| t.len() + 1).sum::<usize>());
    bytes.push(PROFILE_VERSION);
    super::postcard_after(&out, bytes).expect("profiles serialize")
}

pub(super) fn decode(raw: &[u8]) -> Result<Profile> {
    let corrupt = |reason: String| StoreError::Corrupt { tree: "visitors", reason };
    let status = |code: u8| Status::ALL.get(code as usize).copied().ok_or_else(|| corrupt(format!("status {code}")));
    match raw.split_first() {
        Some((&PROFILE_VERSION, bytes)) => {
            let p: In = postcard::from_bytes(bytes).map_err(|e| corrupt(e.to_string()))?;
            Ok(Profile {
                id: VisitorId::from_bytes(&p.id).map_err(|e| corrupt(e.to_string()))?,
                created_at: p.created_at,
                last_seen_at: p.last_seen_at,
                locale: p.locale,
                visits: p.visits,
                consent: p.consent,
                preferences: p.preferences,
                tags: p.tags,
                score: p.score,
                handoff_at: p.handoff_at,
                agent: p.agent,
                handed_back_at: p.handed_back_at,
                status: status(p.status)?,
                status_at: p.status_at.into_iter().map(|(s, at)| Ok((status(s)?, at))).collect::<Result<_>>()?,
                campaign: p.campaign,
                utm: p.utm,
                orders: p.orders,
                confirmed: p.confirmed,
                resume_keys: p.resume_keys,
                timezone: p.timezone,
                journeys: p.journeys,
                intents: p.intents,
                triggers: p.triggers,
            })
        }
        Some((&VALUE_VERSION, _)) => super::decode("visitors", raw),
        Some((v, _)) => Err(corrupt(format!("unknown value version {v}"))),
        None => Err(corrupt("empty value".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A profile with every field set, so a field left out of `Out` or `In` shows.
    fn full() -> Profile {
        let mut p = Profile::new(VisitorId::mint(1_000), 1_000, "de");
        p.last_seen_at = 2_000;
        p.visits = 3;
        p.consent = Some(ConsentRecord { marketing: true, ads: false, at: 1_100, source: "hello".into() });
        p.preferences.insert(
            "size".into(),
            Preference { value: "42".into(), at: 1_200, message: "I wear \"42\"\n, größe".into() },
        );
        p.tags.insert("interest:sneakers".into());
        p.score = -7;
        p.handoff_at = Some(1_300);
        p.agent = Some(Agent { session: "s".into(), name: "Ana".into(), at: 1_400 });
        p.handed_back_at = Some(1_500);
        p.status = Status::CheckoutClicked;
        p.status_at.insert(Status::Qualified, 1_600);
        p.status_at.insert(Status::CheckoutClicked, 1_700);
        p.campaign = Some("spring".into());
        p.utm.insert("source".into(), "newsletter".into());
        p.orders.push("o-1".into());
        p.confirmed = Some(Confirmation { email: "a@example.com".into(), at: 1_800, source: "link".into() });
        p.resume_keys.push("ab".repeat(32));
        p.timezone = Some("Europe/Berlin".into());
        p.journeys.insert("welcome".into(), 1_900);
        p.intents.insert("shoe_size".into(), 1_950);
        p.triggers.insert("exit".into(), Engaged { variant: 1, at: 1_990 });
        p
    }

    #[test]
    fn a_profile_comes_back_as_it_was_stored_in_either_version() {
        for p in [full(), Profile::new(VisitorId::mint(5), 5, "en")] {
            let compact = encode(&p);
            assert_eq!(compact[0], PROFILE_VERSION);
            assert_eq!(decode(&compact).expect("postcard"), p);
            let json = super::super::encode(&p);
            assert_eq!(decode(&json).expect("JSON from before"), p);
            assert!(compact.len() < json.len(), "{} bytes against JSON's {}", compact.len(), json.len());
        }
    }

    #[test]
    fn a_damaged_profile_is_an_error_not_a_panic() {
        let compact = encode(&full());
        for bad in [&compact[..compact.len() / 2], &[PROFILE_VERSION][..], &[9, 1, 2][..], &[][..]] {
            assert!(matches!(decode(bad), Err(StoreError::Corrupt { tree: "visitors", .. })), "{bad:?}");
        }
        let p = Profile::new(VisitorId::mint(5), 5, "en");
        let mut out = Out { status: 9, ..fields(&p) };
        assert!(decode(&postcard::to_extend(&out, vec![PROFILE_VERSION]).expect("encode")).is_err(), "status 9");
        out.status_at = vec![(1, 5), (9, 6)];
        out.status = 0;
        assert!(decode(&postcard::to_extend(&out, vec![PROFILE_VERSION]).expect("encode")).is_err(), "status_at 9");
    }
}
