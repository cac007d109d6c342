//! The load engine: one thread paces every published stream by a schedule,
//! sends each video frame as one `sendmmsg` burst, drains every socket with
//! `recvmmsg` when epoll says it is readable, and accounts for each packet:
//! per-slot sequence continuity from its RTP header, one-way latency against
//! its send time (sender and receiver share one clock, this process's). Every
//! packet, or a random sample of one in [`EngineConfig::verify_every`], is
//! authenticated, decrypted in place and its payload checked (checksum, the
//! stream and counter it names, the send time stamped in it); the others are
//! placed by their header ([`crate::verify`]). Nothing on the per-packet path
//! allocates.
//!
//! Time line of a run: connect (signalling, ICE, DTLS) → `warmup` (media flows,
//! slots open on keyframes, nothing counted; it lasts until every receive slot
//! has delivered, at most [`MAX_SLOT_WAIT`] longer) → the measured window of
//! `duration` (CPU time of the target is read at both ends) → `drain` (sending
//! stops, packets sent in the window still count when they arrive).

use std::io::IsTerminal;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use ringbridge_bridge::proto::sdp::MediaKind;

use crate::BenchError;
use crate::mmsg::Batch;
use crate::payload::{self, Stamp};
use crate::shape::{Plan, SIMULCAST_LAYERS};
use crate::sys;
use crate::target::{Leg, Session};
use crate::verify::{self, Sampler, SendLog, Slot};

/// Audio: one Opus packet every 20 ms.
pub const AUDIO_INTERVAL: Duration = Duration::from_millis(20);
/// Video: 30 frames per second.
pub const VIDEO_INTERVAL: Duration = Duration::from_nanos(33_333_333);
/// Bytes of payload in every video packet.
pub const VIDEO_PACKET: usize = 1200;
/// A keyframe every this many frames (one per second), so slots that open
/// late (the bridge waits for a keyframe) start quickly.
pub const KEYFRAME_INTERVAL: u32 = 30;
/// The warm-up goes on for at most this long past `warmup` while some receive
/// slot has not delivered its first packet (a DTLS flight or the first keyframe
/// lost under `--loss`, a slow join on a loaded machine): the window measures
/// forwarding, not joining.
pub const MAX_SLOT_WAIT: Duration = Duration::from_secs(10);
/// Sending is late by more than this at p99: the generator could not hold the
/// schedule.
pub const MAX_LAG_P99: Duration = Duration::from_millis(5);
/// The generator thread busy for more than this share of the window: it was
/// saturated, and what it did not read the kernel dropped or queued late.
pub const MAX_GENERATOR_UTIL: f64 = 0.95;
/// Unread bytes (buffer memory) in the generator's sockets at every sample of
/// the window: it never caught up with what came back.
pub const MAX_GENERATOR_BACKLOG: u64 = 256 * 1024;

/// Packets in video frame `frame`: 5, and 6 every fifth frame (5.2 on average:
/// 5.2 × 1200 B × 8 × 30/s ≈ 1.5 Mbit/s of payload).
pub fn packets_in_frame(frame: u32) -> usize {
    if frame.is_multiple_of(5) { 6 } else { 5 }
}

/// Payload bytes of Opus packet `counter`: 100 to 200, varying.
pub fn audio_size(counter: u32) -> usize {
    100 + (counter.wrapping_mul(37) % 101) as usize
}

/// Timing of a run.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Media flows, nothing is counted.
    pub warmup: Duration,
    /// The measured window.
    pub duration: Duration,
    /// After the window: no sending, late packets still count.
    pub drain: Duration,
    /// Width of a time-line bucket (plot and `timeline` in the report).
    pub bucket: Duration,
    /// Draw a progress bar on stderr (only when it is a terminal).
    pub progress: bool,
    /// Prefix of the progress bar.
    pub label: String,
    /// Authenticate, decrypt and check every Nth received media packet of
    /// each receive slot (at random positions, N on average); the others are
    /// accounted from their plaintext RTP header ([`crate::verify`]). 1:
    /// every packet (the default of `run`, `compare` and `scale`: their checks
    /// catch any single damaged packet); 16 for `knee` and `soak` (see
    /// [`DEFAULT_SAMPLED_VERIFY_EVERY`]).
    pub verify_every: u32,
}

/// `--verify-every` of `knee` and `soak`. Their question is how much the
/// target carries (and for how long), and one generator thread that decrypts
/// every packet it receives saturates before the bridge does; one packet in
/// 16 of every slot still catches a bridge that damages media (it fails
/// authentication or its checksum when sampled) and a header that lies (a
/// header mismatch), at about a sixteenth of the crypto.
pub const DEFAULT_SAMPLED_VERIFY_EVERY: u32 = 16;

/// One bucket of the time line.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Bucket {
    /// Start of the bucket, seconds since media started.
    pub t_s: f64,
    /// Whether the bucket is (partly) in the warm-up.
    pub warmup: bool,
    /// Media packets sent per second.
    pub ingress_pps: f64,
    /// Media packets received per second.
    pub egress_pps: f64,
    /// Latency percentiles of the packets received in the bucket, microseconds.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct Measurement {
    /// Length of the measured window, seconds (as observed).
    pub window_s: f64,
    /// Media packets sent in the window.
    pub ingress_packets: u64,
    /// Their UDP payload bytes.
    pub ingress_bytes: u64,
    /// Media packets received in the window (by arrival time).
    pub egress_packets: u64,
    /// Their UDP payload bytes.
    pub egress_bytes: u64,
    /// Deliveries expected for packets sent in the window (sent × fan-out).
    pub expected: u64,
    /// Deliveries of packets sent in the window that arrived intact.
    pub delivered: u64,
    /// One-way latency of those deliveries, nanoseconds.
    pub latency_ns: Histogram<u64>,
    /// Sequence numbers skipped in receive slots, over the whole run.
    pub seq_gaps: u64,
    /// Packets that came behind a later one (reordered or duplicated).
    pub late: u64,
    /// Payloads whose checksum failed.
    pub corrupt: u64,
    /// Datagrams that failed SRTP authentication (of those verified).
    pub auth_failures: u64,
    /// [`EngineConfig::verify_every`] of the run.
    pub verify_every: u32,
    /// Media packets authenticated, decrypted and checked, over the whole
    /// run (with `verify_every` 1, every one).
    pub verified: u64,
    /// Verified packets whose authenticated payload named another stream or
    /// counter than their slot's header predicted ([`crate::verify`]), from
    /// the start of the window to the end of the drain (in the warm-up a
    /// slot's source may still change: a simulcast layer switch).
    pub header_mismatches: u64,
    /// Packets accounted from their header whose send time was unknown (no
    /// longer in the send log), over the whole run: counted as egress, not as
    /// delivered.
    pub unattributed: u64,
    /// Seconds from the start of media until every receive slot had delivered
    /// its first packet (`None`: some never did within the warm-up plus
    /// [`MAX_SLOT_WAIT`]). The window starts after the warm-up and after this.
    pub slots_open_s: Option<f64>,
    /// Receive slots (forwarded stream × receiver) that had delivered nothing
    /// when the window started.
    pub slots_missing: u64,
    /// Legs that received at least one media packet over the run (a
    /// receiver the target never served shows up as the gap between this and
    /// the number of receiving legs).
    pub legs_with_media: u64,
    /// The target's CPU time over the window, nanoseconds (`None`: not measured).
    pub target_cpu_ns: Option<u64>,
    /// The generator's CPU time over the window, nanoseconds.
    pub generator_cpu_ns: Option<u64>,
    /// Busy CPU time of the whole machine over the window, all cores,
    /// nanoseconds (`/proc/stat`, idle and iowait subtracted): the target,
    /// the generator, the kernel's softirq work for both (which no process
    /// is charged for, and where XDP and veth delivery run), and whatever
    /// else the machine ran meanwhile.
    pub machine_busy_ns: Option<u64>,
    /// Cores of the machine ([`sys::machine_cores`]).
    pub machine_cores: Option<usize>,
    /// CPU time of the generator's (single) engine thread over the window,
    /// nanoseconds.
    pub generator_thread_cpu_ns: Option<u64>,
    /// Datagrams the kernel dropped on the generator's sockets from the start
    /// of the window to the end of the drain (`/proc/net/udp` `drops`).
    pub generator_socket_drops: Option<u64>,
    /// The smallest receive backlog (`/proc/net/udp` `rx_queue`, bytes of
    /// buffer memory) of the generator's sockets over the samples taken every
    /// time-line bucket of the window: above [`MAX_GENERATOR_BACKLOG`] the
    /// generator never drained its sockets.
    pub generator_min_backlog: Option<u64>,
    /// How late sends were against their schedule, nanoseconds.
    pub lag_ns: Histogram<u64>,
    /// Packets the generator failed to send (socket buffer full, errors).
    pub send_failures: u64,
    /// The time line.
    pub timeline: Vec<Bucket>,
    /// Negotiated SRTP profile (`None` for plain RTP).
    pub profile: Option<&'static str>,
}

impl Measurement {
    /// Lost deliveries ÷ expected deliveries (0 when nothing was expected).
    pub fn loss_ratio(&self) -> f64 {
        if self.expected == 0 {
            return 0.0;
        }
        self.expected.saturating_sub(self.delivered) as f64 / self.expected as f64
    }

    /// Whether the generator kept its schedule: nothing failed to send and the
    /// p99 lateness stayed under [`MAX_LAG_P99`].
    pub fn generator_held_rate(&self) -> bool {
        self.send_failures == 0
            && self.lag_ns.value_at_quantile(0.99) <= MAX_LAG_P99.as_nanos() as u64
    }

    /// Share of the window the generator's engine thread was on the CPU.
    pub fn generator_cpu_util(&self) -> Option<f64> {
        let ns = self.generator_thread_cpu_ns?;
        (self.window_s > 0.0).then(|| ns as f64 / 1e9 / self.window_s)
    }

    /// Whether the generator kept up with what came back: no kernel drops on
    /// its sockets, its thread not saturated ([`MAX_GENERATOR_UTIL`]) and its
    /// sockets drained at least once per sample ([`MAX_GENERATOR_BACKLOG`]).
    pub fn generator_kept_up_receiving(&self) -> bool {
        self.generator_socket_drops.unwrap_or(0) == 0
            && self.generator_min_backlog.unwrap_or(0) <= MAX_GENERATOR_BACKLOG
            && self
                .generator_cpu_util()
                .is_none_or(|u| u <= MAX_GENERATOR_UTIL)
    }

    /// Whole-machine busy CPU nanoseconds per media packet the target sent
    /// in the window ([`Measurement::machine_busy_ns`]).
    pub fn machine_ns_per_egress_packet(&self) -> Option<f64> {
        let cpu = self.machine_busy_ns?;
        (self.egress_packets > 0).then(|| cpu as f64 / self.egress_packets as f64)
    }

    /// Share of the machine's cores that were busy over the window (1.0:
    /// every core all the time, when the machine figure is bounded by the
    /// window and says nothing about the target).
    pub fn machine_util(&self) -> Option<f64> {
        let (busy, cores) = (self.machine_busy_ns?, self.machine_cores?);
        (self.window_s > 0.0).then(|| busy as f64 / (self.window_s * 1e9 * cores as f64))
    }

    /// Received media packets that failed a check when verified: SRTP
    /// authentication, the payload's checksum, or the header's prediction
    /// ([`Measurement::header_mismatches`]). A target that damages or
    /// misroutes media shows here, with full or sampled verification.
    pub fn integrity_failures(&self) -> u64 {
        self.auth_failures + self.corrupt + self.header_mismatches
    }

    /// Target CPU nanoseconds per media packet it sent in the window.
    pub fn cpu_ns_per_egress_packet(&self) -> Option<f64> {
        let cpu = self.target_cpu_ns?;
        (self.egress_packets > 0).then(|| cpu as f64 / self.egress_packets as f64)
    }
}

/// Runs ICE and DTLS on every leg until all are connected.
pub fn handshake(legs: &mut [Leg], timeout: Duration) -> Result<(), BenchError> {
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; crate::mmsg::DATAGRAM_BUF];
    loop {
        crate::interrupt::check()?;
        let now = Instant::now();
        let mut connected = 0;
        for leg in legs.iter_mut() {
            while let Some(d) = leg.session.poll_transmit(now) {
                let _ = leg.socket.send_to(&d, leg.remote);
            }
            while let Ok((n, _)) = leg.socket.recv_from(&mut buf) {
                let _ = leg.session.handle_datagram(now, &mut buf[..n]);
            }
            leg.session.handle_timeout(now);
            if let Some(why) = leg.session.failure() {
                return Err(BenchError::Connect(format!(
                    "endpoint {} failed: {why}",
                    leg.endpoint
                )));
            }
            connected += usize::from(leg.session.is_connected());
        }
        if connected == legs.len() {
            return Ok(());
        }
        if now >= deadline {
            return Err(BenchError::Connect(format!(
                "{connected} of {} legs connected (ICE + DTLS) within {timeout:?}",
                legs.len()
            )));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

struct Stream {
    leg: usize,
    id: u32,
    kind: MediaKind,
    due: Instant,
    seq: u16,
    ts: u32,
    counter: u32,
    frame: u32,
    /// Simulcast layer of a simulcast video.
    layer: Option<u8>,
    /// Receivers get its packets (counted in `expected`).
    forwarded: bool,
}

/// The receive slots of one leg (few: a linear scan by SSRC is fastest).
#[derive(Default)]
struct LegState {
    slots: Vec<Slot>,
}

/// Counts of the per-packet checks, over the whole run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Checks {
    verified: u64,
    corrupt: u64,
    header_mismatches: u64,
    unattributed: u64,
}

/// recvmmsg batches one leg gets per turn of the engine's loop: a leg
/// whose socket holds more waits for the next turn, so that a generator
/// that falls behind still sends on schedule and closes its window on time
/// (reading one socket until it was empty could take seconds then, and the
/// window never closed).
pub const RECV_BATCHES_PER_TURN: usize = 4;

/// What one received datagram turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rx {
    /// Not media (STUN, DTLS, SRTCP), or media that failed verification
    /// (counted in the session's auth failures or in [`Checks::corrupt`]).
    Dropped,
    /// A media packet: when it was sent (`None`: unknown), and whether it
    /// opened a receive slot.
    Media { send_ns: Option<u64>, opened: bool },
}

/// Accounts for one received datagram of a leg: control traffic goes to the
/// session; a media packet is verified (authenticated and decrypted by the
/// session, its payload checked) when it opens a slot or when its slot's turn
/// comes, and is otherwise placed by its header.
fn receive(
    session: &mut dyn Session,
    st: &mut LegState,
    sampler: &mut Sampler,
    log: &SendLog,
    checks: &mut Checks,
    now: Instant,
    datagram: &mut [u8],
) -> Rx {
    let Some((ssrc, seq)) = verify::rtp_header(datagram) else {
        let _ = session.handle_datagram(now, datagram);
        return Rx::Dropped;
    };
    let slot = st.slots.iter().position(|s| s.ssrc == ssrc);
    if let Some(k) = slot
        && !st.slots[k].take_turn()
    {
        let (stream, counter) = st.slots[k].unverified(seq);
        let send_ns = log.lookup(stream, counter);
        checks.unattributed += u64::from(send_ns.is_none());
        return Rx::Media {
            send_ns,
            opened: false,
        };
    }
    // Verified: a failure here is the session's (auth) or a checksum's.
    let Some(view) = session.handle_datagram(now, datagram) else {
        return Rx::Dropped;
    };
    checks.verified += 1;
    let Some(Ok(stamp)) = datagram.get(view.payload.clone()).map(payload::check) else {
        checks.corrupt += 1;
        return Rx::Dropped;
    };
    let opened = match slot {
        Some(k) => {
            checks.header_mismatches += u64::from(st.slots[k].verified(view.seq, &stamp, sampler));
            false
        }
        None => {
            st.slots
                .push(Slot::open(view.ssrc, view.seq, &stamp, sampler));
            true
        }
    };
    Rx::Media {
        send_ns: Some(stamp.send_ns),
        opened,
    }
}

struct BucketAcc {
    ingress: u64,
    egress: u64,
    hist: Histogram<u64>,
}

fn histogram() -> Histogram<u64> {
    // 1 ns .. 60 s, 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000_000, 3).unwrap_or_else(|_| {
        Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits are valid"))
    })
}

fn us(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        h.value_at_quantile(q) as f64 / 1000.0
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Warmup,
    Measure,
    Drain,
}

/// Drives `legs` (already connected) through warm-up, the measured window and
/// the drain, and returns what was measured. `pid` is the target process whose
/// CPU time is read at both ends of the window.
pub fn run(
    legs: &mut [Leg],
    plan: &Plan,
    pid: Option<u32>,
    cfg: &EngineConfig,
) -> Result<Measurement, BenchError> {
    let fanout = plan.fanout();
    let mut poll = Poll::new()?;
    let fds: Vec<i32> = legs.iter().map(|l| l.socket.as_raw_fd()).collect();
    for (i, fd) in fds.iter().enumerate() {
        poll.registry()
            .register(&mut SourceFd(fd), Token(i), Interest::READABLE)?;
    }
    let mut events = Events::with_capacity(1024);
    let mut states: Vec<LegState> = legs.iter().map(|_| LegState::default()).collect();
    for s in &mut states {
        s.slots.reserve(64);
    }

    let epoch = Instant::now();
    let t0 = epoch + Duration::from_millis(20);
    // The window starts at `warm_end` or once every slot is open, whichever
    // is later (bounded by `slot_deadline`); these move with it.
    let mut warm_end = t0 + cfg.warmup;
    let slot_deadline = warm_end + MAX_SLOT_WAIT;
    let mut end = warm_end + cfg.duration;
    let mut drain_end = end + cfg.drain;
    let ns = |t: Instant| t.saturating_duration_since(epoch).as_nanos() as u64;
    let (mut warm_ns, mut end_ns) = (ns(warm_end), ns(end));

    let mut streams: Vec<Stream> = Vec::new();
    for (l, leg) in legs.iter().enumerate() {
        for s in &leg.sends {
            let period = match s.kind {
                MediaKind::Audio => AUDIO_INTERVAL,
                _ => VIDEO_INTERVAL,
            };
            // Spread the streams' phases as independent clients would be.
            let phase = period.mul_f64(f64::from(s.id.wrapping_mul(2_654_435_761) % 1000) / 1000.0);
            streams.push(Stream {
                leg: l,
                id: s.id,
                kind: s.kind,
                due: t0 + phase,
                seq: rand::random(),
                ts: rand::random(),
                counter: 0,
                frame: 0,
                layer: s.layer,
                forwarded: s.forwarded(),
            });
        }
    }

    // Every forwarded stream's send times, for the packets not decrypted.
    let mut send_log = SendLog::new(streams.iter().filter(|s| s.forwarded).map(|s| s.id));
    let mut sampler = Sampler::new(cfg.verify_every, rand::random());
    let mut checks = Checks::default();
    let mut out = Batch::new(8);
    let mut inb = Batch::new(64);
    // The generator never needs the peer address of what it receives.
    inb.want_names = false;
    // Legs whose sockets may hold datagrams not read yet.
    let mut unread = vec![false; legs.len()];
    let mut todo: Vec<usize> = Vec::with_capacity(legs.len());
    let mut scratch = [0u8; crate::mmsg::DATAGRAM_BUF];
    let mut m = Measurement {
        window_s: 0.0,
        ingress_packets: 0,
        ingress_bytes: 0,
        egress_packets: 0,
        egress_bytes: 0,
        expected: 0,
        delivered: 0,
        latency_ns: histogram(),
        seq_gaps: 0,
        late: 0,
        corrupt: 0,
        auth_failures: 0,
        verify_every: sampler.every(),
        verified: 0,
        header_mismatches: 0,
        unattributed: 0,
        legs_with_media: 0,
        target_cpu_ns: None,
        generator_cpu_ns: None,
        machine_busy_ns: None,
        machine_cores: sys::machine_cores(),
        generator_thread_cpu_ns: None,
        generator_socket_drops: None,
        generator_min_backlog: None,
        lag_ns: histogram(),
        send_failures: 0,
        timeline: Vec::new(),
        profile: legs.iter().find_map(|l| l.session.profile()),
        slots_open_s: None,
        slots_missing: 0,
    };
    let slots_expected = streams.iter().filter(|s| s.forwarded).count() as u64 * fanout;
    let mut slots_open = 0u64;
    let inodes: std::collections::HashSet<u64> =
        fds.iter().filter_map(|&fd| sys::socket_inode(fd)).collect();
    let (mut drops0, mut thread0, mut machine0) = (None, None, None);
    // Header mismatches before the window are slots whose source changed
    // while the target settled (a simulcast layer chosen, then switched):
    // they re-anchor, and are not counted.
    let mut mismatches0 = 0u64;
    let mut sent_in_window = 0u64;
    let mut acc = BucketAcc {
        ingress: 0,
        egress: 0,
        hist: histogram(),
    };
    let mut bucket_start = t0;
    let mut phase = Phase::Warmup;
    let (mut measure_start, mut cpu0, mut gen0) = (warm_end, None, None);
    let me = std::process::id();
    let mut next_housekeeping = epoch;
    let mut next_progress = epoch;

    let total = drain_end.saturating_duration_since(epoch);
    let bar = if cfg.progress && std::io::stderr().is_terminal() {
        let bar = ProgressBar::with_draw_target(
            Some(total.as_millis() as u64),
            ProgressDrawTarget::stderr(),
        );
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {elapsed}/{duration} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(cfg.label.clone());
        bar
    } else {
        ProgressBar::hidden()
    };

    loop {
        crate::interrupt::check()?;
        let now = Instant::now();
        // Phase changes: CPU snapshots at both ends of the window (also when
        // a turn overran the end of the drain: the window is closed before
        // the loop ends).
        if m.slots_open_s.is_none() && slots_open >= slots_expected {
            m.slots_open_s = Some(now.saturating_duration_since(t0).as_secs_f64());
        }
        if phase == Phase::Warmup
            && now >= warm_end
            && (slots_open >= slots_expected || now >= slot_deadline)
        {
            if now > warm_end + Duration::from_millis(1) {
                warm_end = now;
                end = warm_end + cfg.duration;
                drain_end = end + cfg.drain;
                (warm_ns, end_ns) = (ns(warm_end), ns(end));
            }
            m.slots_missing = slots_expected.saturating_sub(slots_open);
            phase = Phase::Measure;
            measure_start = now;
            cpu0 = pid.and_then(sys::process_cpu_ns);
            gen0 = sys::process_cpu_ns(me);
            thread0 = sys::thread_cpu_ns();
            machine0 = sys::machine_busy_ns();
            drops0 = sys::udp_socket_stats(&inodes).map(|s| s.drops);
            mismatches0 = checks.header_mismatches;
        } else if phase == Phase::Measure && now >= end {
            phase = Phase::Drain;
            m.window_s = now.duration_since(measure_start).as_secs_f64();
            m.machine_busy_ns = match (machine0, sys::machine_busy_ns()) {
                (Some(a), Some(b)) => Some(b.saturating_sub(a)),
                _ => None,
            };
            m.target_cpu_ns = match (cpu0, pid.and_then(sys::process_cpu_ns)) {
                (Some(a), Some(b)) => Some(b.saturating_sub(a)),
                _ => None,
            };
            m.generator_cpu_ns = match (gen0, sys::process_cpu_ns(me)) {
                (Some(a), Some(b)) => Some(b.saturating_sub(a)),
                _ => None,
            };
            m.generator_thread_cpu_ns = match (thread0, sys::thread_cpu_ns()) {
                (Some(a), Some(b)) => Some(b.saturating_sub(a)),
                _ => None,
            };
        }
        if now >= drain_end {
            break;
        }
        // Time line.
        if phase == Phase::Measure
            && now >= bucket_start + cfg.bucket
            && let Some(st) = sys::udp_socket_stats(&inodes)
        {
            m.generator_min_backlog = Some(
                m.generator_min_backlog
                    .map_or(st.rx_queue, |b| b.min(st.rx_queue)),
            );
        }
        while now >= bucket_start + cfg.bucket {
            let secs = cfg.bucket.as_secs_f64();
            m.timeline.push(Bucket {
                t_s: bucket_start.duration_since(t0).as_secs_f64(),
                warmup: bucket_start < warm_end,
                ingress_pps: acc.ingress as f64 / secs,
                egress_pps: acc.egress as f64 / secs,
                p50_us: us(&acc.hist, 0.5),
                p99_us: us(&acc.hist, 0.99),
                p999_us: us(&acc.hist, 0.999),
            });
            acc.ingress = 0;
            acc.egress = 0;
            acc.hist.reset();
            bucket_start += cfg.bucket;
        }

        // Sends that are due.
        let mut next_due = now + Duration::from_millis(5);
        if now < end {
            for s in &mut streams {
                while s.due <= now {
                    let leg = &mut legs[s.leg];
                    let send_ns = ns(now);
                    let lag = now.duration_since(s.due);
                    // A simulcast layer's packet size and count (the top
                    // layer is the plain video).
                    let (video_size, video_n) = match s.layer {
                        Some(l) => match SIMULCAST_LAYERS.get(usize::from(l)) {
                            Some(&(size, n)) if n > 0 => (size, n),
                            _ => (VIDEO_PACKET, packets_in_frame(s.frame)),
                        },
                        None => (VIDEO_PACKET, packets_in_frame(s.frame)),
                    };
                    let (n, interval) = match s.kind {
                        MediaKind::Audio => (1, AUDIO_INTERVAL),
                        _ => (video_n, VIDEO_INTERVAL),
                    };
                    let mut built = 0;
                    for k in 0..n {
                        let (size, prefix): (usize, &[u8]) = match s.kind {
                            MediaKind::Audio => (audio_size(s.counter), &[]),
                            _ if k > 0 => (video_size, &payload::VP8_CONTINUATION),
                            _ if s.frame.is_multiple_of(KEYFRAME_INTERVAL) => {
                                (video_size, &payload::VP8_KEYFRAME_START)
                            }
                            _ => (video_size, &payload::VP8_FRAME_START),
                        };
                        let stamp = Stamp {
                            stream: s.id,
                            counter: s.counter,
                            send_ns,
                        };
                        if s.forwarded {
                            send_log.record(s.id, s.counter, send_ns);
                        }
                        payload::write(&mut scratch[..size], prefix, &stamp);
                        let marker = s.kind != MediaKind::Audio && k + 1 == n;
                        let written = match s.layer {
                            Some(layer) => leg.session.write_rtp_layer(
                                layer,
                                s.seq,
                                s.ts,
                                marker,
                                &scratch[..size],
                                &mut out.bufs[built],
                            ),
                            None => leg.session.write_rtp(
                                s.kind,
                                s.seq,
                                s.ts,
                                marker,
                                &scratch[..size],
                                &mut out.bufs[built],
                            ),
                        };
                        match written {
                            Ok(len) => {
                                out.lens[built] = len;
                                out.set_name(built, &leg.remote);
                                built += 1;
                            }
                            Err(_) => m.send_failures += 1,
                        }
                        s.seq = s.seq.wrapping_add(1);
                        s.counter = s.counter.wrapping_add(1);
                    }
                    let sent = out.send(fds[s.leg], built).unwrap_or(0);
                    m.send_failures += (built - sent) as u64;
                    let bytes: usize = out.lens[..sent].iter().sum();
                    acc.ingress += sent as u64;
                    if phase == Phase::Measure && (warm_ns..end_ns).contains(&send_ns) {
                        // Lower simulcast layers reach nobody: not expected.
                        if s.forwarded {
                            sent_in_window += sent as u64;
                        }
                        m.ingress_packets += sent as u64;
                        m.ingress_bytes += bytes as u64;
                        let _ = m.lag_ns.record(lag.as_nanos() as u64);
                    }
                    s.ts = s.ts.wrapping_add(match s.kind {
                        MediaKind::Audio => 960,
                        _ => 3000,
                    });
                    s.frame = s.frame.wrapping_add(1);
                    s.due += interval;
                }
                next_due = next_due.min(s.due);
            }
        }

        // ICE consent, DTLS timers: not per packet (they may allocate).
        if now >= next_housekeeping {
            next_housekeeping = now + Duration::from_millis(20);
            for leg in legs.iter_mut() {
                while let Some(d) = leg.session.poll_transmit(now) {
                    let _ = leg.socket.send_to(&d, leg.remote);
                }
                leg.session.handle_timeout(now);
            }
        }
        if now >= next_progress {
            next_progress = now + Duration::from_millis(200);
            bar.set_position(now.duration_since(epoch).as_millis() as u64);
            if let Some(b) = m.timeline.last() {
                bar.set_message(format!(
                    "egress {:.0} pps, p99 {:.0} µs",
                    b.egress_pps, b.p99_us
                ));
            }
        }

        // Wait for datagrams or the next send.
        let wait = next_due
            .min(next_housekeeping)
            .min(drain_end)
            .saturating_duration_since(Instant::now());
        let timeout = if wait < Duration::from_micros(300) || !todo.is_empty() {
            Duration::ZERO
        } else {
            wait
        };
        match poll.poll(&mut events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
        // Edge-triggered: a leg stays on the to-do list until its socket
        // is empty, but gets at most RECV_BATCHES_PER_TURN batches a turn.
        for ev in events.iter() {
            let l = ev.token().0;
            if l < unread.len() && !unread[l] {
                unread[l] = true;
                todo.push(l);
            }
        }
        let mut t = 0;
        while t < todo.len() {
            let l = todo[t];
            let Some(leg) = legs.get_mut(l) else {
                todo.swap_remove(t);
                continue;
            };
            let mut drained = false;
            for _ in 0..RECV_BATCHES_PER_TURN {
                let got = match inb.recv(fds[l]) {
                    Ok(0) | Err(_) => {
                        drained = true;
                        break;
                    }
                    Ok(n) => n,
                };
                let now = Instant::now();
                let now_ns = ns(now);
                let in_window = phase == Phase::Measure;
                for i in 0..got {
                    let len = inb.lens[i];
                    let Some(datagram) = inb.bufs[i].get_mut(..len) else {
                        continue;
                    };
                    let Rx::Media { send_ns, opened } = receive(
                        leg.session.as_mut(),
                        &mut states[l],
                        &mut sampler,
                        &send_log,
                        &mut checks,
                        now,
                        datagram,
                    ) else {
                        continue;
                    };
                    slots_open += u64::from(opened);
                    acc.egress += 1;
                    if in_window {
                        m.egress_packets += 1;
                        m.egress_bytes += len as u64;
                    }
                    let Some(send_ns) = send_ns else { continue };
                    let latency = now_ns.saturating_sub(send_ns);
                    let _ = acc.hist.record(latency.max(1));
                    if phase != Phase::Warmup && (warm_ns..end_ns).contains(&send_ns) {
                        m.delivered += 1;
                        let _ = m.latency_ns.record(latency.max(1));
                    }
                }
                if got < inb.capacity() {
                    drained = true;
                    break;
                }
            }
            if drained {
                unread[l] = false;
                todo.swap_remove(t);
            } else {
                t += 1;
            }
        }
    }
    bar.finish_and_clear();
    m.generator_socket_drops = match (drops0, sys::udp_socket_stats(&inodes)) {
        (Some(a), Some(b)) => Some(b.drops.saturating_sub(a)),
        _ => None,
    };
    m.expected = sent_in_window * fanout;
    for (leg, st) in legs.iter().zip(&states) {
        m.auth_failures += leg.session.auth_failures();
        m.legs_with_media += u64::from(!st.slots.is_empty());
        for slot in &st.slots {
            m.seq_gaps += slot.continuity.gaps;
            m.late += slot.continuity.late;
        }
    }
    m.verified = checks.verified;
    m.corrupt = checks.corrupt;
    m.header_mismatches = if phase == Phase::Warmup {
        0
    } else {
        checks.header_mismatches.saturating_sub(mismatches0)
    };
    m.unattributed = checks.unattributed;
    for fd in &fds {
        let _ = poll.registry().deregister(&mut SourceFd(fd));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringbridge_bridge::proto::client::RtpView;

    /// A session whose "SRTP" is a CRC-32 tag over the header and payload:
    /// any changed byte fails its authentication, as with real SRTP.
    #[derive(Default)]
    struct TaggedSession {
        failures: u64,
        opened: u64,
    }

    fn tag(bytes: &[u8]) -> [u8; 4] {
        crc32fast::hash(bytes).to_be_bytes()
    }

    impl Session for TaggedSession {
        fn poll_transmit(&mut self, _: Instant) -> Option<Vec<u8>> {
            None
        }
        fn handle_timeout(&mut self, _: Instant) {}
        fn is_connected(&self) -> bool {
            true
        }
        fn failure(&self) -> Option<String> {
            None
        }
        fn write_rtp(
            &mut self,
            _: MediaKind,
            _: u16,
            _: u32,
            _: bool,
            _: &[u8],
            _: &mut [u8],
        ) -> Result<usize, String> {
            Err("receive only".into())
        }
        fn handle_datagram(&mut self, _: Instant, d: &mut [u8]) -> Option<RtpView> {
            let (ssrc, seq) = verify::rtp_header(d)?;
            let body = d.len().checked_sub(4)?;
            if d[body..] != tag(&d[..body]) {
                self.failures += 1;
                return None;
            }
            self.opened += 1;
            Some(RtpView {
                ssrc,
                pt: 96,
                seq,
                ts: 0,
                marker: false,
                payload: 12..body,
            })
        }
        fn auth_failures(&self) -> u64 {
            self.failures
        }
        fn profile(&self) -> Option<&'static str> {
            None
        }
    }

    /// Packet `counter` of stream 7 as the target forwards it in slot 0x5107
    /// (sequence numbers offset from the counter, wrapping), sent at
    /// `counter × 1000` ns.
    fn forwarded(counter: u32) -> Vec<u8> {
        let mut p = vec![0u8; 12 + 100];
        p[0] = 0x80;
        p[1] = 96;
        let seq = (counter as u16).wrapping_add(65_000);
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[8..12].copy_from_slice(&0x5107u32.to_be_bytes());
        let stamp = Stamp {
            stream: 7,
            counter,
            send_ns: u64::from(counter) * 1000,
        };
        payload::write(&mut p[12..], &[], &stamp);
        let t = tag(&p);
        p.extend_from_slice(&t);
        p
    }

    fn resign(p: &mut Vec<u8>) {
        p.truncate(p.len() - 4);
        let t = tag(p);
        p.extend_from_slice(&t);
    }

    struct Harness {
        session: TaggedSession,
        st: LegState,
        sampler: Sampler,
        log: SendLog,
        checks: Checks,
        /// Send times of the media packets accounted, in order.
        send_ns: Vec<Option<u64>>,
    }

    impl Harness {
        fn new(every: u32) -> Self {
            Self {
                session: TaggedSession::default(),
                st: LegState::default(),
                sampler: Sampler::new(every, 42),
                log: SendLog::new([7]),
                checks: Checks::default(),
                send_ns: Vec::new(),
            }
        }

        /// The sender logs packets `..=counter` of stream 7.
        fn sent(&mut self, counter: u32) {
            self.log.record(7, counter, u64::from(counter) * 1000);
        }

        fn take(&mut self, mut p: Vec<u8>) {
            let rx = receive(
                &mut self.session,
                &mut self.st,
                &mut self.sampler,
                &self.log,
                &mut self.checks,
                Instant::now(),
                &mut p,
            );
            if let Rx::Media { send_ns, .. } = rx {
                self.send_ns.push(send_ns);
            }
        }

        fn continuity(&self) -> (u64, u64, u64) {
            let c = self.st.slots[0].continuity;
            (c.gaps, c.late, c.received)
        }
    }

    /// Sampled: about one packet in 16 is decrypted, yet every packet is
    /// accounted, with the send time of the packet its header names, across
    /// the sequence number's wrap, with loss and reordering counted.
    #[test]
    fn sampled_verification_accounts_for_every_packet_by_its_header() {
        let mut h = Harness::new(16);
        let lost = [600, 601, 1700];
        let mut order: Vec<u32> = (0..3000).filter(|c| !lost.contains(c)).collect();
        order.swap(100, 101); // 101 before 100
        for c in 0..3000 {
            h.sent(c);
            if c == 100 {
                continue; // comes after 101
            }
            if !lost.contains(&c) {
                h.take(forwarded(c));
            }
            if c == 101 {
                h.take(forwarded(100));
            }
        }
        assert_eq!(h.send_ns.len(), order.len());
        let wrong = order
            .iter()
            .zip(&h.send_ns)
            .position(|(&c, &ns)| ns != Some(u64::from(c) * 1000));
        assert_eq!(wrong, None, "every packet placed by its header");
        assert_eq!(h.continuity(), (3 + 1, 1, order.len() as u64));
        assert!(
            (120..260).contains(&h.checks.verified),
            "{} of {} decrypted",
            h.checks.verified,
            order.len()
        );
        assert_eq!(h.session.opened, h.checks.verified);
        let Checks {
            corrupt,
            header_mismatches,
            unattributed,
            ..
        } = h.checks;
        assert_eq!((corrupt, header_mismatches, unattributed), (0, 0, 0));
        assert_eq!(h.session.failures, 0);
    }

    /// `--verify-every 1`: every packet is decrypted and checked.
    #[test]
    fn full_verification_decrypts_every_packet() {
        let mut h = Harness::new(1);
        for c in 0..500 {
            h.sent(c);
            h.take(forwarded(c));
        }
        assert_eq!(h.checks.verified, 500);
        assert_eq!(h.session.opened, 500);
    }

    /// Damage to the packets of a slot is caught as soon as the slot's turn
    /// comes: the gap between verified packets is at most 2N − 1, so any run
    /// of that many damaged packets has one verified, and it is reported as
    /// an auth failure (changed after protection) or as corrupt (changed
    /// before it, re-signed).
    #[test]
    fn damaged_packets_among_unverified_ones_are_caught_when_sampled() {
        let mut h = Harness::new(16);
        for c in 0..1000 {
            h.sent(c);
            let mut p = forwarded(c);
            if (300..331).contains(&c) {
                p[50] ^= 1; // after protection: the tag no longer matches
            }
            if (600..631).contains(&c) {
                p[50] ^= 1; // before protection: a valid tag over bad media
                resign(&mut p);
            }
            h.take(p);
        }
        assert!(h.session.failures >= 1, "an auth failure was sampled");
        assert!(h.checks.corrupt >= 1, "a corrupt payload was sampled");
        // A single damaged packet is only caught with full verification.
        let mut h = Harness::new(1);
        for c in 0..10 {
            h.sent(c);
            let mut p = forwarded(c);
            if c == 5 {
                p[50] ^= 1;
                resign(&mut p);
            }
            h.take(p);
        }
        assert_eq!(h.checks.corrupt, 1);
    }

    /// A header the target changed without the authenticated payload
    /// agreeing: a rewritten sequence number fails authentication when
    /// sampled, and a target that renumbers (or sends another stream's
    /// packets in the slot) with valid protection is a header mismatch.
    #[test]
    fn an_attack_on_the_header_is_detected() {
        let mut h = Harness::new(16);
        for c in 0..1000 {
            h.sent(c);
            let mut p = forwarded(c);
            if (200..231).contains(&c) {
                p[3] = p[3].wrapping_add(5); // sequence number moved, tag kept
            }
            if c >= 500 {
                // From here the slot carries packets 100 later than its
                // sequence numbers say.
                let seq = u16::from_be_bytes([p[2], p[3]]).wrapping_sub(100);
                p[2..4].copy_from_slice(&seq.to_be_bytes());
                resign(&mut p);
            }
            h.take(p);
        }
        assert!(h.session.failures >= 1, "the moved sequence number");
        assert!(h.checks.header_mismatches >= 1, "the renumbered slot");
    }

    /// A packet of a slot nothing was verified of yet is always decrypted
    /// (it anchors the slot), and a forged one from an unknown SSRC opens
    /// no slot.
    #[test]
    fn a_slot_opens_on_a_verified_packet_only() {
        let mut h = Harness::new(1000);
        for c in 0..10 {
            h.sent(c);
        }
        let mut forged = forwarded(0);
        forged[60] ^= 1;
        h.take(forged);
        assert!(h.st.slots.is_empty());
        assert_eq!(h.session.failures, 1);
        h.take(forwarded(1));
        assert_eq!(h.st.slots.len(), 1);
        assert_eq!(h.checks.verified, 1);
        assert_eq!(h.send_ns, [Some(1000)]);
        // One the send log does not hold (never sent, or a lap old):
        // counted, with no send time.
        h.take(forwarded(2));
        h.take(forwarded(20));
        assert_eq!(h.send_ns[1..], [Some(2000), None]);
        assert_eq!(h.checks.unattributed, 1);
    }

    #[test]
    fn video_is_about_one_and_a_half_megabits_and_audio_fifty_pps() {
        let per_second: usize = (0..30).map(packets_in_frame).sum();
        let mbit = (per_second * VIDEO_PACKET * 8) as f64 / 1e6;
        assert!((1.4..1.6).contains(&mbit), "{mbit} Mbit/s");
        assert_eq!(
            Duration::from_secs(1).as_nanos() / AUDIO_INTERVAL.as_nanos(),
            50
        );
        assert!((0..1000).map(audio_size).all(|s| (100..=200).contains(&s)));
    }

    #[test]
    fn loss_and_cpu_per_packet_follow_the_counts() {
        let mut m = Measurement {
            window_s: 2.0,
            ingress_packets: 100,
            ingress_bytes: 0,
            egress_packets: 200,
            egress_bytes: 0,
            expected: 200,
            delivered: 198,
            latency_ns: histogram(),
            seq_gaps: 0,
            late: 0,
            corrupt: 0,
            auth_failures: 0,
            verify_every: 1,
            verified: 200,
            header_mismatches: 0,
            unattributed: 0,
            legs_with_media: 0,
            slots_open_s: None,
            slots_missing: 0,
            target_cpu_ns: Some(2_000_000),
            generator_cpu_ns: None,
            machine_busy_ns: Some(3_000_000),
            machine_cores: Some(2),
            generator_thread_cpu_ns: Some(1_000_000_000),
            generator_socket_drops: Some(0),
            generator_min_backlog: Some(0),
            lag_ns: histogram(),
            send_failures: 0,
            timeline: Vec::new(),
            profile: None,
        };
        assert!((m.loss_ratio() - 0.01).abs() < 1e-9);
        assert_eq!(m.cpu_ns_per_egress_packet(), Some(10_000.0));
        assert!(m.generator_held_rate());
        m.lag_ns.record(50_000_000).expect("record");
        assert!(!m.generator_held_rate(), "50 ms late at p99");
        assert_eq!(m.generator_cpu_util(), Some(0.5));
        assert!(m.generator_kept_up_receiving());
        m.generator_socket_drops = Some(3);
        assert!(!m.generator_kept_up_receiving(), "kernel drops");
        m.generator_socket_drops = Some(0);
        m.generator_min_backlog = Some(4 << 20);
        assert!(!m.generator_kept_up_receiving(), "never drained");
        m.generator_min_backlog = Some(0);
        m.generator_thread_cpu_ns = Some(1_980_000_000);
        assert!(!m.generator_kept_up_receiving(), "99% busy");
        m.target_cpu_ns = None;
        assert_eq!(m.cpu_ns_per_egress_packet(), None);
    }
}
