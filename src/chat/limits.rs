//! Limits that keep one visitor from hurting the others: message rate per connection and per IP
//! address (token buckets), new connections per IP address (a token bucket too), and open
//! connections per IP address. An address's buckets outlive its connections until they have
//! refilled, so reconnecting never buys a fresh budget.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use actix_web::http::header::HeaderMap;

use crate::config::Network;

/// A token bucket: `rate` tokens a second, at most `burst` saved up.
#[derive(Debug, Clone)]
pub struct Bucket {
    tokens: f64,
    last: Instant,
    rate: f64,
    burst: f64,
}

impl Bucket {
    pub fn new(rate: f64, burst: f64) -> Bucket {
        Bucket { tokens: burst, last: Instant::now(), rate, burst }
    }

    /// Takes a token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
    }

    /// Whether the bucket is as full as a new one: forgetting it then gives nothing away.
    pub fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.burst
    }
}

/// The address the limits count: the peer, or, when the peer is one of our `trusted` reverse
/// proxies, the right-most `X-Forwarded-For` hop that is not one of them (hops further left were
/// written by the client and prove nothing).
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[Network]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.0.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops = headers
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|hop| hop.trim().parse::<IpAddr>().ok())
        .collect::<Vec<_>>();
    let mut client = peer;
    for hop in hops.into_iter().rev() {
        match hop {
            Some(ip) if is_trusted(&ip) => client = ip,
            Some(ip) => return ip,
            // An unreadable hop ends what we can trust; count the last proxy that wrote it.
            None => return client,
        }
    }
    client
}

/// An address's message budget, which its connections share and take from without a lock (two
/// worker threads take from it at once). The token bucket as the generic cell rate algorithm
/// keeps it: one number, the time (ns after `epoch`) at which the bucket is full again.
struct Budget {
    full_at: AtomicU64,
    epoch: Instant,
    /// ns one message costs (a token's refill time).
    interval: u64,
    /// ns the bucket can be ahead of now: `burst` tokens.
    depth: u64,
}

impl Budget {
    fn new((rate, burst): (f64, f64)) -> Budget {
        // Capped (a rate of 0 refills in 30 years) so that the sums below cannot overflow.
        let interval = (1e9 / rate).min(1e18) as u64;
        let depth = (burst * interval as f64).min(4e18) as u64;
        Budget { full_at: AtomicU64::new(0), epoch: Instant::now(), interval, depth }
    }

    fn ns(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    /// Takes a token if there is one.
    fn take(&self, now: Instant) -> bool {
        let now = self.ns(now);
        let mut full_at = self.full_at.load(Ordering::Relaxed);
        loop {
            let next = full_at.max(now) + self.interval;
            if next - now > self.depth {
                return false;
            }
            match self.full_at.compare_exchange_weak(full_at, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(seen) => full_at = seen,
            }
        }
    }

    fn is_full(&self, now: Instant) -> bool {
        self.full_at.load(Ordering::Relaxed) <= self.ns(now)
    }
}

struct Address {
    connections: usize,
    messages: Arc<Budget>,
    connects: Bucket,
}

/// Connections and budgets per IP address. An address is forgotten once it has no connection
/// and its buckets have refilled, so the map holds the addresses that are connected or were
/// lately.
pub struct PerIp {
    addresses: Mutex<Addresses>,
    messages: (f64, f64),
    connects: (f64, f64),
}

struct Addresses {
    /// foldhash: every message looks its address up.
    map: foldhash::HashMap<IpAddr, Address>,
    swept: Instant,
}

/// How often the map is swept for addresses that can be forgotten.
const SWEEP: std::time::Duration = std::time::Duration::from_secs(1);

impl PerIp {
    /// `messages` and `connects` are (per second, burst) for each address.
    pub fn new(messages: (f64, f64), connects: (f64, f64)) -> Arc<PerIp> {
        let addresses = Addresses { map: foldhash::HashMap::default(), swept: Instant::now() };
        Arc::new(PerIp { addresses: Mutex::new(addresses), messages, connects })
    }

    /// Counts a new connection from `ip`, or refuses it when `max` are already open or the
    /// address opens connections faster than its budget.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<Admitted> {
        let now = Instant::now();
        let mut addresses = self.addresses.lock().unwrap_or_else(|e| e.into_inner());
        if now.duration_since(addresses.swept) >= SWEEP {
            addresses.swept = now;
            addresses.map.retain(|_, a| a.connections > 0 || !(a.messages.is_full(now) && a.connects.is_full(now)));
        }
        let address = addresses.map.entry(ip).or_insert_with(|| Address {
            connections: 0,
            messages: Arc::new(Budget::new(self.messages)),
            connects: Bucket::new(self.connects.0, self.connects.1),
        });
        if address.connections >= max || !address.connects.take(now) {
            return None;
        }
        address.connections += 1;
        Some(Admitted { limits: self.clone(), ip, messages: address.messages.clone() })
    }
}

/// A connection counted against its address; dropping it releases the slot.
pub struct Admitted {
    limits: Arc<PerIp>,
    pub ip: IpAddr,
    /// The address's budget, held here so that a message does not look it up under the lock.
    messages: Arc<Budget>,
}

impl Admitted {
    /// Takes one message from the address's budget.
    pub fn take_message(&self, now: Instant) -> bool {
        self.messages.take(now)
    }
}

impl Drop for Admitted {
    /// Releases the slot; the address's buckets stay until they have refilled.
    fn drop(&mut self) {
        let mut addresses = self.limits.addresses.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(address) = addresses.map.get_mut(&self.ip) {
            address.connections -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn buckets_refill_at_their_rate() {
        let start = Instant::now();
        let mut bucket = Bucket::new(2.0, 3.0);
        let taken = (0..5).filter(|_| bucket.take(start)).count();
        assert_eq!(taken, 3, "the burst");
        assert!(!bucket.take(start + Duration::from_millis(100)));
        assert!(bucket.take(start + Duration::from_millis(600)), "one token after half a second");
    }

    #[test]
    fn an_address_budget_refills_as_a_bucket_does() {
        let budget = Budget::new((2.0, 3.0));
        let start = Instant::now();
        let taken = (0..5).filter(|_| budget.take(start)).count();
        assert_eq!(taken, 3, "the burst");
        assert!(!budget.take(start + Duration::from_millis(100)));
        assert!(budget.take(start + Duration::from_millis(600)), "one token after half a second");
        assert!(!budget.is_full(start + Duration::from_millis(600)));
        assert!(budget.is_full(start + Duration::from_secs(2)), "refilled");
        let closed = Budget::new((0.0, 1.0));
        assert!(closed.take(start) && !closed.take(start + Duration::from_secs(3600)), "no refill at rate 0");
    }

    #[test]
    fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
        let trusted = [Network::try_from("10.0.0.0/8".to_string()).expect("net")];
        let mut headers = HeaderMap::new();
        let forwarded = actix_web::http::header::HeaderValue::from_static("198.51.100.7, 203.0.113.9, 10.1.2.3");
        headers.insert(actix_web::http::header::HeaderName::from_static("x-forwarded-for"), forwarded);
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert_eq!(client_ip(ip("10.0.0.1"), &headers, &trusted), ip("203.0.113.9"), "right-most untrusted hop");
        assert_eq!(client_ip(ip("192.0.2.1"), &headers, &trusted), ip("192.0.2.1"), "an untrusted peer's header");
        assert_eq!(client_ip(ip("10.0.0.1"), &HeaderMap::new(), &trusted), ip("10.0.0.1"), "no header");
        assert!(Network::try_from("10.0.0.0/33".to_string()).is_err());
        assert!(Network::try_from("::1".to_string()).is_ok());
    }

    #[test]
    fn an_address_keeps_its_budgets_across_reconnects() {
        let limits = PerIp::new((1.0, 2.0), (0.5, 3.0));
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let first = limits.admit(ip, 10).expect("first");
        let now = Instant::now();
        assert!(first.take_message(now) && first.take_message(now));
        assert!(!first.take_message(now), "the address's burst is spent");
        drop(first);
        let again = limits.admit(ip, 10).expect("reconnect");
        assert!(!again.take_message(now), "reconnecting does not refill it");
        drop(again);
        assert!(limits.admit(ip, 10).is_some(), "third connection within the connection burst");
        assert!(limits.admit(ip, 10).is_none(), "the fourth in a row is too fast");
    }

    #[test]
    fn addresses_are_capped_and_released() {
        let limits = PerIp::new((10.0, 10.0), (100.0, 100.0));
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let first = limits.admit(ip, 2).expect("first");
        let second = limits.admit(ip, 2).expect("second");
        assert!(limits.admit(ip, 2).is_none(), "third refused");
        drop(first);
        assert!(limits.admit(ip, 2).is_some(), "a slot was released");
        drop(second);
    }
}
