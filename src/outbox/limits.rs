//! Limits that protect the shopper from marketing email: no more than
//! `max_marketing_emails_per_day` in any 24 hours, and none during quiet hours in the shopper's
//! time zone (the widget's, else the shop's `timezone`). A follow-up that hits a limit is not
//! dropped: it waits until the limit allows it.

use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};
use serde::Deserialize;

/// A daily window, in minutes after local midnight; `start > end` wraps past midnight
/// ("21:00-08:00"). Written `""` for none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(try_from = "String")]
pub struct QuietHours(Option<(u16, u16)>);

impl TryFrom<String> for QuietHours {
    type Error = String;

    fn try_from(text: String) -> Result<QuietHours, String> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(QuietHours(None));
        }
        let bad = || format!("quiet hours {text:?} are not written like \"21:00-08:00\" (or \"\" for none)");
        let minutes = |t: &str| -> Option<u16> {
            let (h, m) = t.trim().split_once(':')?;
            let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
            (h < 24 && m < 60 && t.trim().len() == 5).then_some(h * 60 + m)
        };
        let (start, end) = text.split_once('-').ok_or_else(bad)?;
        let (start, end) = (minutes(start).ok_or_else(bad)?, minutes(end).ok_or_else(bad)?);
        if start == end {
            return Err(format!("quiet hours {text:?} start and end at the same time"));
        }
        Ok(QuietHours(Some((start, end))))
    }
}

/// A time zone named as the IANA database names it ("Europe/Berlin").
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "String")]
pub struct Zone(pub String);

impl TryFrom<String> for Zone {
    type Error = String;

    fn try_from(name: String) -> Result<Zone, String> {
        TimeZone::get(name.trim())
            .map(|_| Zone(name.trim().to_string()))
            .map_err(|_| format!("unknown time zone {name:?}"))
    }
}

impl Default for Zone {
    fn default() -> Zone {
        Zone("UTC".into())
    }
}

/// Whether `name` is a time zone this server knows (a widget's `timezone`).
pub fn known_zone(name: &str) -> bool {
    name.len() <= 64 && TimeZone::get(name).is_ok()
}

impl QuietHours {
    /// When sending at `now` (ms) in `zone` is allowed: `None` when it is already, else the end
    /// of the quiet window (ms).
    pub fn ends(&self, now: u64, zone: &str) -> Option<u64> {
        let (start, end) = self.0?;
        let tz = TimeZone::get(zone).unwrap_or(TimeZone::UTC);
        let local: Zoned = Timestamp::from_millisecond(now as i64).ok()?.to_zoned(tz);
        let minute = local.hour() as u16 * 60 + local.minute() as u16;
        let quiet = if start < end { (start..end).contains(&minute) } else { minute >= start || minute < end };
        if !quiet {
            return None;
        }
        let wait = (i64::from(end) - i64::from(minute)).rem_euclid(24 * 60);
        // The window ends at the start of its last minute; the seconds already gone count.
        let into_minute = i64::from(local.second()) * 1000 + i64::from(local.millisecond());
        Some(now + (wait * 60_000 - into_minute).max(0) as u64)
    }
}

/// When the daily cap allows one more email, given when the earlier ones went out (ms):
/// `None` when it does now, else the moment the oldest of the last `cap` leaves the 24 hours.
pub fn cap_frees(sent: &[u64], cap: u32, now: u64) -> Option<u64> {
    const DAY: u64 = 24 * 60 * 60 * 1000;
    if cap == 0 {
        return None;
    }
    let mut recent: Vec<u64> = sent.iter().copied().filter(|at| at + DAY > now).collect();
    if recent.len() < cap as usize {
        return None;
    }
    recent.sort_unstable();
    Some(recent[recent.len() - cap as usize] + DAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-01 at hh:mm UTC, in ms.
    fn at(hh: u64, mm: u64) -> u64 {
        (1_796_083_200 + hh * 3600 + mm * 60) * 1000
    }

    #[test]
    fn quiet_hours_wrap_midnight_and_follow_the_zone() {
        let quiet = QuietHours::try_from("21:00-08:00".to_string()).expect("valid");
        assert_eq!(quiet.ends(at(12, 0), "UTC"), None, "midday is fine");
        assert_eq!(quiet.ends(at(22, 30), "UTC"), Some(at(22, 30) + 9 * 3_600_000 + 30 * 60_000), "to 08:00");
        assert_eq!(quiet.ends(at(7, 59), "UTC"), Some(at(8, 0)));
        // 12:00 UTC is 21:00 in Tokyo (UTC+9): quiet there until 08:00, 23:00 UTC.
        assert_eq!(quiet.ends(at(12, 0), "Asia/Tokyo"), Some(at(23, 0)));
        assert_eq!(QuietHours::try_from(String::new()).expect("none").ends(at(23, 0), "UTC"), None);
        for bad in ["21-08", "25:00-08:00", "21:00-21:00", "9:00-10:00"] {
            assert!(QuietHours::try_from(bad.to_string()).is_err(), "{bad}");
        }
        assert!(
            Zone::try_from("Europe/Berlin".to_string()).is_ok() && Zone::try_from("Mars/Olympus".to_string()).is_err()
        );
    }

    #[test]
    fn the_daily_cap_frees_when_the_oldest_email_is_a_day_old() {
        let day = 24 * 3_600_000;
        assert_eq!(cap_frees(&[], 1, at(12, 0)), None);
        assert_eq!(cap_frees(&[at(10, 0)], 1, at(12, 0)), Some(at(10, 0) + day));
        assert_eq!(cap_frees(&[at(10, 0) - day], 1, at(12, 0)), None, "yesterday's is past");
        assert_eq!(cap_frees(&[at(9, 0), at(10, 0)], 2, at(12, 0)), Some(at(9, 0) + day));
        assert_eq!(cap_frees(&[at(10, 0)], 0, at(12, 0)), None, "0: no cap");
    }
}
