//! `ringbridge-bench flood`: hostile datagrams at a bridge's media ports, as
//! fast as one thread can send them (issue 13 item 2).
//!
//! Five kinds, sent in turn in `sendmmsg` batches of [`BATCH`], each kind
//! aimed at what the bridge counts it as:
//!
//! | kind | what | from | the bridge's drop reason |
//! |---|---|---|---|
//! | `garbage` | random bytes, random length | unknown addresses | mostly `garbage` (a random first byte is STUN, DTLS or RTP 44% of the time: then `unknown_source` or `malformed`) |
//! | `stun` | Binding requests with the endpoint's USERNAME and a wrong MESSAGE-INTEGRITY | unknown addresses | `stun_integrity` |
//! | `unknown` | RTP, RTCP and DTLS-looking datagrams | unknown addresses | `unknown_source` |
//! | `oversized` | [`OVERSIZED`] bytes, RTP-looking | unknown addresses | `oversized` |
//! | `replay` | SRTP a live endpoint sent (captured) | that endpoint's own socket | `replay` |
//!
//! "Unknown addresses" are [`FloodConfig::sources`] sockets of this process on
//! 127.0.0.1 (other source ports than any endpoint's). The replayed SRTP must
//! come from the endpoint's validated address to get past the ICE gate: without
//! raw sockets the caller hands the endpoint's socket down (`--replay-fd`, an
//! inherited descriptor), as an on-path attacker would spoof the address.
//!
//! Every datagram is built before the clock starts (pools of [`POOL`] per kind
//! and target), so the loop is copies and system calls only.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use rand::Rng;
use ringbridge_bridge::proto::stun::{self, BindingRequest, IceRole, IntegrityKey, TransactionId};

use crate::BenchError;
use crate::mmsg::{Batch, DATAGRAM_BUF};

/// Datagrams per `sendmmsg`.
pub const BATCH: usize = 32;
/// Prebuilt datagrams per kind and target.
pub const POOL: usize = 256;
/// Size of an oversized datagram: above the bridge's `MAX_DATAGRAM` (1800),
/// under the bench's buffers.
pub const OVERSIZED: usize = 1900;

/// One kind of hostile datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FloodKind {
    /// Random bytes of random length (1 to 1200).
    Garbage,
    /// STUN Binding requests with a right USERNAME and a wrong MESSAGE-INTEGRITY.
    Stun,
    /// RTP, RTCP and DTLS-looking datagrams from addresses that passed no ICE check.
    Unknown,
    /// Datagrams larger than the bridge takes.
    Oversized,
    /// Captured SRTP, sent again from the endpoint's own address.
    Replay,
}

impl FloodKind {
    /// Every kind, in the order the loop sends them.
    pub const ALL: [FloodKind; 5] = [
        Self::Garbage,
        Self::Stun,
        Self::Unknown,
        Self::Oversized,
        Self::Replay,
    ];

    /// The name on the command line and in the report.
    pub fn name(self) -> &'static str {
        match self {
            Self::Garbage => "garbage",
            Self::Stun => "stun",
            Self::Unknown => "unknown",
            Self::Oversized => "oversized",
            Self::Replay => "replay",
        }
    }
}

impl std::str::FromStr for FloodKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown flood kind {s:?}: expected garbage, stun, unknown, oversized or replay"
                )
            })
    }
}

/// A media port under flood.
#[derive(Debug, Clone)]
pub struct FloodTarget {
    /// The bridge's address and port of one endpoint.
    pub addr: SocketAddr,
    /// That endpoint's STUN USERNAME (`bridge-ufrag:client-ufrag`), for `stun`
    /// datagrams that get as far as the integrity check; `None`: no `stun` to it.
    pub stun_username: Option<String>,
}

/// Captured SRTP to replay from a live endpoint's socket.
#[derive(Debug)]
pub struct Replay {
    /// The endpoint's socket (inherited from the process that owns the call).
    pub socket: UdpSocket,
    /// Where the endpoint sends: its port on the bridge.
    pub to: SocketAddr,
    /// Datagrams the endpoint sent, as sent.
    pub packets: Vec<Vec<u8>>,
}

/// What to flood, and how long.
#[derive(Debug)]
pub struct FloodConfig {
    /// Ports flooded with `garbage`, `stun`, `unknown` and `oversized`.
    pub targets: Vec<FloodTarget>,
    /// The `replay` kind (left out when `None`).
    pub replay: Option<Replay>,
    /// Kinds to send (each once per round).
    pub kinds: Vec<FloodKind>,
    /// How long.
    pub duration: Duration,
    /// Sockets the unknown addresses are sent from.
    pub sources: usize,
}

/// What a flood sent.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FloodReport {
    /// How long it ran, seconds.
    pub duration_s: f64,
    /// Datagrams sent, by kind name.
    pub sent: std::collections::BTreeMap<&'static str, u64>,
    /// All datagrams sent.
    pub total: u64,
    /// `total / duration_s`.
    pub rate_pps: f64,
    /// Batches the kernel refused outright (errors other than a full buffer).
    pub send_errors: u64,
    /// CPU time of the flooding thread ÷ its wall time (1.0: one core saturated).
    pub cpu_util: f64,
}

/// One prebuilt pool: the datagrams and where they go.
struct Pool {
    kind: FloodKind,
    /// Sent from this descriptor (`None`: rotate over the unknown sources).
    fd: Option<RawFd>,
    to: SocketAddr,
    datagrams: Vec<Vec<u8>>,
    next: usize,
}

fn random_bytes(rng: &mut impl Rng, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rng.fill(&mut v[..]);
    v
}

fn stun_pool(rng: &mut impl Rng, username: &str) -> Result<Vec<Vec<u8>>, BenchError> {
    // A password of the right length and shape, but not the endpoint's.
    let wrong = IntegrityKey::new(b"flood-wrong-password-0000");
    (0..POOL)
        .map(|_| {
            let mut buf = vec![0u8; 512];
            let req = BindingRequest {
                transaction_id: TransactionId(rng.random()),
                username: username.as_bytes(),
                priority: rng.random(),
                role: IceRole::Controlling {
                    tie_breaker: rng.random(),
                },
                use_candidate: rng.random(),
            };
            let n = stun::write_binding_request(&mut buf, &req, &wrong)
                .map_err(|e| BenchError::Config(format!("STUN username {username:?}: {e}")))?;
            buf.truncate(n);
            Ok(buf)
        })
        .collect()
}

fn unknown_pool(rng: &mut impl Rng) -> Vec<Vec<u8>> {
    (0..POOL)
        .map(|i| {
            let len = rng.random_range(40..1200);
            let mut d = random_bytes(rng, len);
            match i % 4 {
                // RTP: version 2, Opus or VP8 payload type.
                0 | 1 => {
                    d[0] = 0x80;
                    d[1] = if i % 8 < 4 { 111 } else { 96 };
                }
                // RTCP (sender report).
                2 => {
                    d[0] = 0x80;
                    d[1] = 200;
                }
                // A DTLS 1.2 handshake record.
                _ => {
                    d[0] = 22;
                    d[1] = 0xFE;
                    d[2] = 0xFD;
                }
            }
            d
        })
        .collect()
}

fn oversized_pool(rng: &mut impl Rng) -> Vec<Vec<u8>> {
    (0..POOL)
        .map(|_| {
            let mut d = random_bytes(rng, OVERSIZED);
            d[0] = 0x80;
            d[1] = 111;
            d
        })
        .collect()
}

fn pools(cfg: &FloodConfig) -> Result<Vec<Pool>, BenchError> {
    let mut rng = rand::rng();
    let mut pools = Vec::new();
    for &kind in &cfg.kinds {
        if kind == FloodKind::Replay {
            let r = cfg.replay.as_ref().ok_or_else(|| {
                BenchError::Config("the replay kind needs --replay-fd and --replay-file".into())
            })?;
            if r.packets.is_empty() || r.packets.iter().any(|p| p.len() > DATAGRAM_BUF) {
                return Err(BenchError::Config(
                    "the replay file holds no packets, or one over 2048 bytes".into(),
                ));
            }
            pools.push(Pool {
                kind,
                fd: Some(r.socket.as_raw_fd()),
                to: r.to,
                datagrams: r.packets.clone(),
                next: 0,
            });
            continue;
        }
        for t in &cfg.targets {
            let datagrams = match kind {
                FloodKind::Garbage => (0..POOL)
                    .map(|_| {
                        let len = rng.random_range(1..=1200);
                        random_bytes(&mut rng, len)
                    })
                    .collect(),
                FloodKind::Stun => match &t.stun_username {
                    Some(u) => stun_pool(&mut rng, u)?,
                    None => continue,
                },
                FloodKind::Unknown => unknown_pool(&mut rng),
                FloodKind::Oversized => oversized_pool(&mut rng),
                FloodKind::Replay => continue,
            };
            pools.push(Pool {
                kind,
                fd: None,
                to: t.addr,
                datagrams,
                next: 0,
            });
        }
    }
    if pools.is_empty() {
        return Err(BenchError::Config(
            "nothing to flood: give --to (and --stun-username for stun)".into(),
        ));
    }
    Ok(pools)
}

/// Floods until `cfg.duration` has passed; single-threaded, unpaced.
pub fn run(cfg: &FloodConfig) -> Result<FloodReport, BenchError> {
    let mut pools = pools(cfg)?;
    let sources: Vec<UdpSocket> = (0..cfg.sources.max(1))
        .map(|_| ringbridge_bridge::io::udp::bind_udp(SocketAddr::from(([127, 0, 0, 1], 0))))
        .collect::<Result<_, _>>()?;
    let mut sent = std::collections::BTreeMap::new();
    for p in &pools {
        sent.insert(p.kind.name(), 0u64);
    }
    let mut batch = Batch::new(BATCH);
    let mut send_errors = 0u64;
    let mut source = 0usize;
    let cpu0 = crate::sys::thread_cpu_ns();
    let start = Instant::now();
    let end = start + cfg.duration;
    let mut counts = vec![0u64; pools.len()];
    'outer: loop {
        for (pi, pool) in pools.iter_mut().enumerate() {
            if Instant::now() >= end {
                break 'outer;
            }
            for i in 0..BATCH {
                let d = &pool.datagrams[pool.next];
                pool.next = (pool.next + 1) % pool.datagrams.len();
                batch.bufs[i][..d.len()].copy_from_slice(d);
                batch.lens[i] = d.len();
                batch.set_name(i, &pool.to);
            }
            let fd = match pool.fd {
                Some(fd) => fd,
                None => {
                    source = (source + 1) % sources.len();
                    sources[source].as_raw_fd()
                }
            };
            match batch.send(fd, BATCH) {
                Ok(n) => counts[pi] += n as u64,
                Err(_) => send_errors += 1,
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = match (cpu0, crate::sys::thread_cpu_ns()) {
        (Some(a), Some(b)) => b.saturating_sub(a) as f64 / 1e9,
        _ => 0.0,
    };
    for (p, n) in pools.iter().zip(&counts) {
        *sent.entry(p.kind.name()).or_default() += n;
    }
    let total: u64 = counts.iter().sum();
    Ok(FloodReport {
        duration_s: elapsed,
        sent,
        total,
        rate_pps: if elapsed > 0.0 {
            total as f64 / elapsed
        } else {
            0.0
        },
        send_errors,
        cpu_util: if elapsed > 0.0 { cpu / elapsed } else { 0.0 },
    })
}

/// Reads a replay file: one datagram per line, in hex.
pub fn read_replay_file(text: &str) -> Result<Vec<Vec<u8>>, BenchError> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            if l.len() % 2 != 0 {
                return Err(BenchError::Config(
                    "replay file: odd-length hex line".into(),
                ));
            }
            (0..l.len())
                .step_by(2)
                .map(|i| {
                    l.get(i..i + 2)
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                        .ok_or_else(|| BenchError::Config("replay file: not hex".into()))
                })
                .collect()
        })
        .collect()
}

/// Writes datagrams in the format [`read_replay_file`] reads.
pub fn write_replay_file(packets: &[Vec<u8>]) -> String {
    let mut s = String::new();
    for p in packets {
        for b in p {
            s.push_str(&format!("{b:02x}"));
        }
        s.push('\n');
    }
    s
}

/// The replay socket inherited as descriptor `fd` (see the module docs).
///
/// # Safety
///
/// `fd` must be an open UDP socket this process owns and nothing else uses
/// as an owned descriptor.
pub unsafe fn inherited_socket(fd: RawFd) -> UdpSocket {
    use std::os::fd::FromRawFd;
    // SAFETY: the caller's contract.
    unsafe { UdpSocket::from_raw_fd(fd) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_files_round_trip() {
        let packets = vec![vec![0x80, 0, 1, 255], vec![], vec![7; 3]];
        let text = write_replay_file(&packets);
        let back = read_replay_file(&text).expect("parses");
        assert_eq!(back, vec![vec![0x80, 0, 1, 255], vec![7; 3]]);
        assert!(read_replay_file("abc\n").is_err());
        assert!(read_replay_file("zz\n").is_err());
    }

    #[test]
    fn a_short_flood_sends_every_kind_it_was_given() {
        let sink = ringbridge_bridge::io::udp::bind_udp("127.0.0.1:0".parse().expect("addr"))
            .expect("sink");
        let cfg = FloodConfig {
            targets: vec![FloodTarget {
                addr: sink.local_addr().expect("addr"),
                stun_username: Some("bridge:client".into()),
            }],
            replay: None,
            kinds: vec![
                FloodKind::Garbage,
                FloodKind::Stun,
                FloodKind::Unknown,
                FloodKind::Oversized,
            ],
            duration: Duration::from_millis(50),
            sources: 2,
        };
        let r = run(&cfg).expect("runs");
        for k in ["garbage", "stun", "unknown", "oversized"] {
            assert!(r.sent[k] > 0, "{k}: {r:?}");
        }
        assert_eq!(r.total, r.sent.values().sum::<u64>());
        assert!(r.rate_pps > 0.0);
        let mut buf = [0u8; 4096];
        let (n, _) = sink.recv_from(&mut buf).expect("something arrived");
        assert!(n > 0);
    }
}
