//! Per-address rate limits on the public listener: joins (`POST
//! /conferences/{room}/endpoints`) and colibri websocket upgrades, each a token
//! bucket per client address (`public.join_rate_limit` / `join_rate_burst`,
//! `public.ws_rate_limit` / `ws_rate_burst`). A request over the limit is answered
//! `429 rate-limited` with `Retry-After`, before its token or `pwd` is looked at.
//!
//! The table of addresses is bounded (`public.rate_limit_addresses`): when it is
//! full, the address that entered it first is forgotten. An address forgotten
//! that way starts again with a full burst, which gains an attacker nothing: to
//! push one of its own addresses out it must bring as many fresh addresses, each
//! with a full burst of its own. IPv6 clients are counted by /64 (one subscriber's
//! prefix), IPv4-mapped IPv6 addresses as IPv4.
//!
//! Behind a reverse proxy on the same host every request comes from a loopback
//! address; for those, the last address of `X-Forwarded-For` (the one the proxy
//! appended) is the client, as nginx's `$proxy_add_x_forwarded_for` writes it.
//! Only loopback peers are trusted with that header.
//!
//! Why not the `governor` crate: its keyed limiter keeps one entry per key until
//! told to forget idle ones, so a flood from many addresses grows it without
//! bound between cleanups; the cap here is the point.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hyper::HeaderMap;

/// One rate: `per_second` requests per second on average, `burst` at once.
/// `per_second == 0` turns the limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rate {
    /// Sustained requests per second per address; 0: no limit.
    pub(crate) per_second: u32,
    /// Requests an idle address may make at once (the bucket's size).
    pub(crate) burst: u32,
}

/// The client address of a connection, put into each request's extensions by
/// the accept loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PeerAddr(pub(crate) SocketAddr);

/// What the limiter counts an address as: IPv4 as is, IPv6 by its /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ClientKey(IpAddr);

impl ClientKey {
    /// The key of `ip`.
    pub(crate) fn of(ip: IpAddr) -> ClientKey {
        match ip {
            IpAddr::V4(v4) => ClientKey(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientKey(IpAddr::V4(v4)),
                None => {
                    let s = v6.segments();
                    ClientKey(IpAddr::V6(Ipv6Addr::new(
                        s[0], s[1], s[2], s[3], 0, 0, 0, 0,
                    )))
                }
            },
        }
    }

    /// The client of a request from `peer`: the peer itself, or for a loopback
    /// peer (a local reverse proxy) the last `X-Forwarded-For` address, if it
    /// parses.
    pub(crate) fn of_request(peer: IpAddr, headers: &HeaderMap) -> ClientKey {
        if peer.is_loopback()
            && let Some(forwarded) = last_forwarded_for(headers)
        {
            return ClientKey::of(forwarded);
        }
        ClientKey::of(peer)
    }
}

/// The last address of the last `X-Forwarded-For` header.
fn last_forwarded_for(headers: &HeaderMap) -> Option<IpAddr> {
    let value = headers.get_all("x-forwarded-for").iter().next_back()?;
    let last = value.to_str().ok()?.rsplit(',').next()?.trim();
    last.parse().ok()
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

struct Table {
    buckets: HashMap<ClientKey, Bucket>,
    /// Keys in the order they entered `buckets`, oldest first.
    order: VecDeque<ClientKey>,
}

/// A token bucket per client address, at most `capacity` addresses.
pub(crate) struct Limiter {
    rate: Rate,
    capacity: usize,
    table: Mutex<Table>,
    /// Requests refused since start.
    limited: AtomicU64,
}

impl Limiter {
    /// A limiter at `rate` that tracks at most `capacity` addresses (at least one).
    pub(crate) fn new(rate: Rate, capacity: usize) -> Limiter {
        Limiter {
            rate,
            capacity: capacity.max(1),
            table: Mutex::new(Table {
                buckets: HashMap::new(),
                order: VecDeque::new(),
            }),
            limited: AtomicU64::new(0),
        }
    }

    /// Takes one request of `key` at `now`: `Ok` if it may go on, else how long
    /// until it would be allowed.
    pub(crate) fn check(&self, key: ClientKey, now: Instant) -> Result<(), Duration> {
        let Rate { per_second, burst } = self.rate;
        if per_second == 0 {
            return Ok(());
        }
        let (rate, size) = (f64::from(per_second), f64::from(burst.max(1)));
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if !table.buckets.contains_key(&key) {
            if table.buckets.len() >= self.capacity
                && let Some(oldest) = table.order.pop_front()
            {
                table.buckets.remove(&oldest);
            }
            table.order.push_back(key);
            table.buckets.insert(
                key,
                Bucket {
                    tokens: size,
                    at: now,
                },
            );
        }
        let Some(bucket) = table.buckets.get_mut(&key) else {
            return Ok(());
        };
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(size);
        bucket.at = bucket.at.max(now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        self.limited.fetch_add(1, Ordering::Relaxed);
        Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
    }

    /// Addresses tracked now (at most the capacity).
    pub(crate) fn tracked(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .buckets
            .len()
    }

    /// Requests refused since start.
    pub(crate) fn limited(&self) -> u64 {
        self.limited.load(Ordering::Relaxed)
    }
}

/// `Retry-After` in whole seconds (HTTP has no finer unit): rounded up, at least 1.
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    let whole = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    whole.max(1)
}

/// The two limits of the public listener.
pub(crate) struct Limits {
    /// `POST /conferences/{room}/endpoints`.
    pub(crate) join: Limiter,
    /// `GET /colibri-ws/...`.
    pub(crate) websocket: Limiter,
}

impl Limits {
    /// Limits from `[public]`.
    pub(crate) fn new(public: &crate::config::PublicConfig) -> Limits {
        let cap = public.rate_limit_addresses;
        Limits {
            join: Limiter::new(
                Rate {
                    per_second: public.join_rate_limit,
                    burst: public.join_rate_burst,
                },
                cap,
            ),
            websocket: Limiter::new(
                Rate {
                    per_second: public.ws_rate_limit,
                    burst: public.ws_rate_burst,
                },
                cap,
            ),
        }
    }

    /// Requests refused, by kind, and the addresses tracked (both tables).
    pub(crate) fn snapshot(&self) -> RateLimitView {
        RateLimitView {
            limited: vec![
                ("join", self.join.limited()),
                ("websocket", self.websocket.limited()),
            ],
            addresses: (self.join.tracked() + self.websocket.tracked()) as u64,
        }
    }
}

/// What `/metrics` shows of the limits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RateLimitView {
    /// Requests answered `429`, by kind (`join`, `websocket`).
    pub(crate) limited: Vec<(&'static str, u64)>,
    /// Addresses the limiters track now, both tables together.
    pub(crate) addresses: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn v4(last: u8) -> ClientKey {
        ClientKey::of(IpAddr::from([192, 0, 2, last]))
    }

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let l = Limiter::new(
            Rate {
                per_second: 2,
                burst: 5,
            },
            100,
        );
        let t0 = Instant::now();
        for i in 0..5 {
            assert_eq!(l.check(v4(1), t0), Ok(()), "request {i} of the burst");
        }
        let wait = l.check(v4(1), t0).expect_err("over the burst");
        assert_eq!(wait, Duration::from_millis(500));
        assert_eq!(retry_after_secs(wait), 1);
        // Another address has its own bucket.
        assert_eq!(l.check(v4(2), t0), Ok(()));
        // Half a second later one request is allowed, and only one.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(l.check(v4(1), t1), Ok(()));
        assert!(l.check(v4(1), t1).is_err());
        // A long pause refills up to the burst, no more.
        let t2 = t1 + Duration::from_secs(3600);
        for _ in 0..5 {
            assert_eq!(l.check(v4(1), t2), Ok(()));
        }
        assert!(l.check(v4(1), t2).is_err());
        assert_eq!(l.limited(), 3);
    }

    #[test]
    fn zero_is_off() {
        let l = Limiter::new(
            Rate {
                per_second: 0,
                burst: 1,
            },
            10,
        );
        let t0 = Instant::now();
        for _ in 0..1000 {
            assert_eq!(l.check(v4(1), t0), Ok(()));
        }
        assert_eq!(l.tracked(), 0, "an unlimited limiter tracks nothing");
    }

    #[test]
    fn the_table_is_capped_and_forgets_the_oldest_address() {
        let l = Limiter::new(
            Rate {
                per_second: 1,
                burst: 1,
            },
            3,
        );
        let t0 = Instant::now();
        for a in 1..=3 {
            assert_eq!(l.check(v4(a), t0), Ok(()));
        }
        assert!(l.check(v4(1), t0).is_err(), "address 1 spent its burst");
        // A fourth address pushes the first one out.
        assert_eq!(l.check(v4(4), t0), Ok(()));
        assert_eq!(l.tracked(), 3);
        assert!(l.check(v4(2), t0).is_err(), "address 2 is still tracked");
        assert_eq!(l.check(v4(1), t0), Ok(()), "address 1 was forgotten");
        // Ten thousand fresh addresses later, still three.
        for i in 0..10_000u32 {
            let _ = l.check(ClientKey::of(IpAddr::from(i.to_be_bytes())), t0);
        }
        assert_eq!(l.tracked(), 3);
        let t = l.table.lock().expect("lock");
        assert_eq!(t.order.len(), 3, "the order queue is bounded too");
    }

    #[test]
    fn ipv6_counts_by_prefix_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(ClientKey::of(a), ClientKey::of(b));
        assert_ne!(ClientKey::of(a), ClientKey::of(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("ip");
        assert_eq!(ClientKey::of(mapped), v4(7));
    }

    #[test]
    fn forwarded_for_is_trusted_from_loopback_only() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("198.51.100.9, 192.0.2.5"),
        );
        let lo: IpAddr = "127.0.0.1".parse().expect("ip");
        let lo6: IpAddr = "::1".parse().expect("ip");
        let far: IpAddr = "203.0.113.1".parse().expect("ip");
        assert_eq!(ClientKey::of_request(lo, &h), v4(5));
        assert_eq!(ClientKey::of_request(lo6, &h), v4(5));
        assert_eq!(ClientKey::of_request(far, &h), ClientKey::of(far));
        h.insert("x-forwarded-for", HeaderValue::from_static("garbage"));
        assert_eq!(ClientKey::of_request(lo, &h), ClientKey::of(lo));
        assert_eq!(
            ClientKey::of_request(lo, &HeaderMap::new()),
            ClientKey::of(lo)
        );
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(2001)), 3);
    }
}
