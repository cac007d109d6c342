//! The report: figures per target aggregated over rounds, the ratios between
//! targets, the JSON shape (stable keys, see bench/README.md) and the human table.

use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{Value, json};

use crate::engine::{Bucket, Measurement};

/// Loss above this withholds the ratios.
pub const MAX_LOSS_FOR_RATIOS: f64 = 0.01;

/// Machine busier than this over a window withholds the machine-wide ratios:
/// a saturated machine's busy time is the window times its cores, whatever
/// the target cost (other work on a shared machine fills it).
pub const MAX_MACHINE_UTIL_FOR_RATIOS: f64 = 0.95;

/// Every round of one target, added up.
#[derive(Debug, Clone)]
pub struct Aggregate {
    /// `ringbridge`, `null` or `janus`.
    pub target: &'static str,
    /// The target's I/O backend, if it said.
    pub io_backend: Option<String>,
    /// How the generator reached it: `loopback` or `veth`.
    pub network: &'static str,
    /// The rounds, in order.
    pub rounds: Vec<Measurement>,
}

impl Aggregate {
    /// An aggregate of no rounds yet.
    pub fn new(target: &'static str) -> Self {
        Self {
            target,
            io_backend: None,
            network: "loopback",
            rounds: Vec::new(),
        }
    }

    fn sum(&self, f: impl Fn(&Measurement) -> u64) -> u64 {
        self.rounds.iter().map(f).sum()
    }

    /// Seconds measured over all rounds.
    pub fn window_s(&self) -> f64 {
        self.rounds.iter().map(|m| m.window_s).sum()
    }

    fn rate(&self, n: u64) -> f64 {
        let w = self.window_s();
        if w > 0.0 { n as f64 / w } else { 0.0 }
    }

    /// Media packets per second into the target.
    pub fn ingress_pps(&self) -> f64 {
        self.rate(self.sum(|m| m.ingress_packets))
    }
    /// Media packets per second out of the target.
    pub fn egress_pps(&self) -> f64 {
        self.rate(self.sum(|m| m.egress_packets))
    }
    /// Bits per second into the target (UDP payload).
    pub fn ingress_bps(&self) -> f64 {
        self.rate(self.sum(|m| m.ingress_bytes) * 8)
    }
    /// Bits per second out of the target (UDP payload).
    pub fn egress_bps(&self) -> f64 {
        self.rate(self.sum(|m| m.egress_bytes) * 8)
    }
    /// Lost ÷ expected deliveries over all rounds.
    pub fn loss_ratio(&self) -> f64 {
        let expected = self.sum(|m| m.expected);
        if expected == 0 {
            return 0.0;
        }
        expected.saturating_sub(self.sum(|m| m.delivered)) as f64 / expected as f64
    }
    /// Latency of every round.
    pub fn latency(&self) -> Histogram<u64> {
        let mut all = self.rounds.first().map_or_else(
            || Histogram::new(3).unwrap_or_else(|_| unreachable!("3 digits are valid")),
            |m| m.latency_ns.clone(),
        );
        for m in self.rounds.iter().skip(1) {
            let _ = all.add(&m.latency_ns);
        }
        all
    }
    /// Target CPU ns per egress packet over all rounds (`None` if any round
    /// could not read it).
    pub fn cpu_ns_per_egress_packet(&self) -> Option<f64> {
        let mut cpu = 0u64;
        for m in &self.rounds {
            cpu += m.target_cpu_ns?;
        }
        let pkts = self.sum(|m| m.egress_packets);
        (pkts > 0).then(|| cpu as f64 / pkts as f64)
    }
    /// Whole-machine busy CPU ns per egress packet over all rounds
    /// ([`Measurement::machine_busy_ns`]; `None` if any round could not
    /// read it).
    pub fn machine_ns_per_egress_packet(&self) -> Option<f64> {
        let mut cpu = 0u64;
        for m in &self.rounds {
            cpu += m.machine_busy_ns?;
        }
        let pkts = self.sum(|m| m.egress_packets);
        (pkts > 0).then(|| cpu as f64 / pkts as f64)
    }
    /// The busiest round's [`Measurement::machine_util`].
    pub fn machine_util(&self) -> Option<f64> {
        self.rounds
            .iter()
            .filter_map(Measurement::machine_util)
            .reduce(f64::max)
    }
    /// Why this target's machine-wide figure cannot back a ratio (on top of
    /// [`Aggregate::unfit_for_ratio`]), if it cannot.
    pub fn machine_unfit_for_ratio(&self) -> Option<String> {
        let util = self.machine_util()?;
        (util > MAX_MACHINE_UTIL_FOR_RATIOS).then(|| {
            format!(
                "the machine was saturated during {}'s window ({:.0}% of every core busy: \
                 other work fills what the target leaves)",
                self.target,
                util * 100.0
            )
        })
    }
    /// Whether the generator kept the schedule in every round.
    pub fn generator_held_rate(&self) -> bool {
        self.rounds.iter().all(Measurement::generator_held_rate)
    }
    /// Whether the generator kept up with what came back in every round (no
    /// kernel drops on its sockets, its thread not saturated).
    pub fn generator_kept_up_receiving(&self) -> bool {
        self.rounds
            .iter()
            .all(Measurement::generator_kept_up_receiving)
    }
    /// Datagrams the kernel dropped on the generator's sockets, all rounds
    /// (`None` if no round could read `/proc/net/udp`).
    pub fn generator_socket_drops(&self) -> Option<u64> {
        self.rounds
            .iter()
            .filter_map(|m| m.generator_socket_drops)
            .reduce(|a, b| a + b)
    }
    /// The largest of the rounds' smallest receive backlogs (bytes).
    pub fn generator_min_backlog(&self) -> Option<u64> {
        self.rounds
            .iter()
            .filter_map(|m| m.generator_min_backlog)
            .max()
    }
    /// Share of the measured time the generator's engine thread was on the CPU
    /// (the busiest round).
    pub fn generator_cpu_util(&self) -> Option<f64> {
        self.rounds
            .iter()
            .filter_map(Measurement::generator_cpu_util)
            .reduce(f64::max)
    }
    /// Why the generator's receive side did not keep up, if it did not.
    fn receive_side_note(&self) -> Option<String> {
        if self.generator_kept_up_receiving() {
            return None;
        }
        Some(format!(
            "generator could not keep up (receive side) against {}: thread {} busy, \
             {} datagrams dropped by the kernel on its sockets, never less than {} \
             bytes unread in them",
            self.target,
            self.generator_cpu_util()
                .map_or("?".to_owned(), |u| format!("{:.0}%", u * 100.0)),
            self.generator_socket_drops()
                .map_or("?".to_owned(), |d| d.to_string()),
            self.generator_min_backlog()
                .map_or("?".to_owned(), |d| d.to_string()),
        ))
    }
    /// Why this target's figures cannot back a ratio, if they cannot.
    pub fn unfit_for_ratio(&self) -> Option<String> {
        if !self.generator_held_rate() {
            return Some(format!(
                "the generator could not hold the target rate against {}",
                self.target
            ));
        }
        if let Some(why) = self.receive_side_note() {
            return Some(why);
        }
        let loss = self.loss_ratio();
        if loss > MAX_LOSS_FOR_RATIOS {
            return Some(format!(
                "{} lost {:.2}% of packets (more than 1%)",
                self.target,
                loss * 100.0
            ));
        }
        if self.cpu_ns_per_egress_packet().is_none()
            || self.machine_ns_per_egress_packet().is_none()
        {
            return Some(format!("{}'s CPU time was not measured", self.target));
        }
        None
    }
    fn latency_json(&self) -> Value {
        let h = self.latency();
        let q = |q: f64| {
            if h.is_empty() {
                Value::Null
            } else {
                json!(h.value_at_quantile(q) as f64 / 1000.0)
            }
        };
        json!({"p50": q(0.5), "p99": q(0.99), "p999": q(0.999), "max": q(1.0)})
    }
    fn lag_p99_us(&self) -> f64 {
        self.rounds
            .iter()
            .map(|m| m.lag_ns.value_at_quantile(0.99) as f64 / 1000.0)
            .fold(0.0, f64::max)
    }
    fn generator_cpu_ratio(&self) -> Option<f64> {
        let mut cpu = 0u64;
        for m in &self.rounds {
            cpu += m.generator_cpu_ns?;
        }
        let w = self.window_s();
        (w > 0.0).then(|| cpu as f64 / 1e9 / w)
    }
    /// This target's figures as JSON (one entry of `targets`).
    pub fn to_json(&self) -> Value {
        json!({
            "target": self.target,
            "io_backend": self.io_backend,
            "network": self.network,
            "rounds": self.rounds.len(),
            "window_s": self.window_s(),
            "ingress_pps": self.ingress_pps(),
            "egress_pps": self.egress_pps(),
            "ingress_bps": self.ingress_bps(),
            "egress_bps": self.egress_bps(),
            "loss_ratio": self.loss_ratio(),
            "latency_us": self.latency_json(),
            "cpu_ns_per_egress_packet": self.cpu_ns_per_egress_packet(),
            "per_round_cpu_ns_per_egress_packet": self.rounds.iter().map(Measurement::cpu_ns_per_egress_packet).collect::<Vec<_>>(),
            "machine_cpu_ns_per_egress_packet": self.machine_ns_per_egress_packet(),
            "machine_util": self.machine_util(),
            "per_round_machine_cpu_ns_per_egress_packet": self.rounds.iter().map(Measurement::machine_ns_per_egress_packet).collect::<Vec<_>>(),
            "generator": {
                "held_rate": self.generator_held_rate(),
                "lag_p99_us": self.lag_p99_us(),
                "cpu_ratio": self.generator_cpu_ratio(),
                "cpu_util": self.generator_cpu_util(),
                "socket_drops": self.generator_socket_drops(),
                "min_backlog_bytes": self.generator_min_backlog(),
                "kept_up_receiving": self.generator_kept_up_receiving(),
                "send_failures": self.sum(|m| m.send_failures),
            },
            "checks": {
                "expected": self.sum(|m| m.expected),
                "delivered": self.sum(|m| m.delivered),
                "seq_gaps": self.sum(|m| m.seq_gaps),
                "late": self.sum(|m| m.late),
                "corrupt": self.sum(|m| m.corrupt),
                "auth_failures": self.sum(|m| m.auth_failures),
                "verify_every": self.rounds.first().map(|m| m.verify_every),
                "verified": self.sum(|m| m.verified),
                "header_mismatches": self.sum(|m| m.header_mismatches),
                "unattributed": self.sum(|m| m.unattributed),
                "legs_with_media": self.rounds.iter().map(|m| m.legs_with_media).min(),
                "slots_missing": self.sum(|m| m.slots_missing),
                "slots_open_s": self.rounds.iter().map(|m| m.slots_open_s).collect::<Vec<_>>(),
            },
            "negotiated_profile": self.rounds.first().and_then(|m| m.profile),
        })
    }
}

/// What the run was asked to do.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    /// `meeting`, `livestream`, `audio-room`.
    pub shape: String,
    /// The SRTP profile asked for (`gcm`, `cm-sha1`).
    pub profile: String,
    /// Conferences.
    pub conferences: usize,
    /// Endpoints per conference.
    pub endpoints: usize,
    /// Speakers per conference (publishers).
    pub speakers: usize,
    /// Measured window per round, seconds.
    pub duration_s: f64,
    /// Warm-up per round, seconds.
    pub warmup_s: f64,
    /// The target's I/O backend asked for (`--io`).
    pub io: String,
    /// Percent of the media datagrams dropped each way (`--loss`; 0: none).
    pub loss_injected_percent: u8,
    /// Every how many received media packets one is authenticated, decrypted
    /// and checked (`--verify-every`; 1: all).
    pub verify_every: u32,
    /// The bridge's `media.port` (`--media-port`; 0: a port per endpoint).
    pub media_port: u16,
}

/// The whole report: the primary target's figures at the top level (stable
/// keys), the ratios, and every target's details under `targets`.
#[derive(Debug, Clone)]
pub struct Report {
    /// The request.
    pub info: RunInfo,
    /// The target the top-level figures are of.
    pub primary: Aggregate,
    /// The null forwarder's runs, when measured.
    pub null: Option<Aggregate>,
    /// Janus's runs, when measured.
    pub janus: Option<Aggregate>,
    /// ringbridge on io_uring, measured beside a primary on another backend
    /// (`compare --io xdp`).
    pub uring: Option<Aggregate>,
    /// The primary's first round's time line.
    pub timeline: Vec<Bucket>,
}

/// Ratios, or why they are withheld. The comparison is of whole-machine CPU
/// per egress packet ([`Aggregate::machine_ns_per_egress_packet`]): the
/// target's own process time misses the softirq work it causes (all of
/// XDP's, and the kernel UDP stack's on the receiving side), which is where
/// the backends differ. The `process_` ratios are of the target's process
/// time alone.
#[derive(Debug, Clone, PartialEq)]
pub struct Ratios {
    /// null machine ns/pkt ÷ primary machine ns/pkt.
    pub efficiency_vs_null: Option<f64>,
    /// janus machine ns/pkt ÷ primary machine ns/pkt.
    pub ratio_vs_janus: Option<f64>,
    /// ringbridge-on-io_uring machine ns/pkt ÷ primary machine ns/pkt.
    pub ratio_vs_uring: Option<f64>,
    /// null process ns/pkt ÷ primary process ns/pkt.
    pub process_efficiency_vs_null: Option<f64>,
    /// janus process ns/pkt ÷ primary process ns/pkt.
    pub process_ratio_vs_janus: Option<f64>,
    /// ringbridge-on-io_uring process ns/pkt ÷ primary process ns/pkt.
    pub process_ratio_vs_uring: Option<f64>,
    /// Why a measured comparison was not turned into a ratio.
    pub withheld: Vec<String>,
}

impl Report {
    /// The ratios between the primary target and the others, withheld (with
    /// the reason) when either side's figures cannot back one.
    pub fn ratios(&self) -> Ratios {
        let mut withheld = Vec::new();
        let mut ratio = |other: &Option<Aggregate>| -> [Option<f64>; 2] {
            let Some(other) = other.as_ref() else {
                return [None, None];
            };
            let mut why: Vec<String> = [self.primary.unfit_for_ratio(), other.unfit_for_ratio()]
                .into_iter()
                .flatten()
                .collect();
            let name = match other.io_backend.as_deref() {
                Some(io) if other.target == self.primary.target => {
                    format!("{} ({io})", other.target)
                }
                _ => other.target.to_owned(),
            };
            let of = |f: fn(&Aggregate) -> Option<f64>| {
                let (p, o) = (f(&self.primary)?, f(other)?);
                (p > 0.0).then(|| o / p)
            };
            if why.is_empty() {
                let mut saturated: Vec<String> = [
                    self.primary.machine_unfit_for_ratio(),
                    other.machine_unfit_for_ratio(),
                ]
                .into_iter()
                .flatten()
                .collect();
                saturated.dedup();
                if saturated.is_empty() {
                    return [
                        of(Aggregate::machine_ns_per_egress_packet),
                        of(Aggregate::cpu_ns_per_egress_packet),
                    ];
                }
                withheld.push(format!(
                    "no machine-wide ratio vs {name} (process CPU only): {}",
                    saturated.join("; ")
                ));
                return [None, of(Aggregate::cpu_ns_per_egress_packet)];
            }
            why.dedup();
            withheld.push(format!("no ratio vs {name}: {}", why.join("; ")));
            [None, None]
        };
        let [efficiency_vs_null, process_efficiency_vs_null] = ratio(&self.null);
        let [ratio_vs_janus, process_ratio_vs_janus] = ratio(&self.janus);
        let [ratio_vs_uring, process_ratio_vs_uring] = ratio(&self.uring);
        Ratios {
            efficiency_vs_null,
            ratio_vs_janus,
            ratio_vs_uring,
            process_efficiency_vs_null,
            process_ratio_vs_janus,
            process_ratio_vs_uring,
            withheld,
        }
    }

    /// The JSON report.
    pub fn to_json(&self) -> Value {
        let ratios = self.ratios();
        let p = &self.primary;
        let total = self.info.conferences * self.info.endpoints;
        let mut targets = vec![p.to_json()];
        targets.extend(self.uring.iter().map(Aggregate::to_json));
        targets.extend(self.null.iter().map(Aggregate::to_json));
        targets.extend(self.janus.iter().map(Aggregate::to_json));
        let mut v = json!({
            "shape": self.info.shape,
            "profile": self.info.profile,
            "negotiated_profile": p.rounds.first().and_then(|m| m.profile),
            "target": p.target,
            "conferences": self.info.conferences,
            "endpoints": self.info.endpoints,
            "total_endpoints": total,
            "speakers": self.info.speakers,
            "duration_s": self.info.duration_s,
            "warmup_s": self.info.warmup_s,
            "rounds": p.rounds.len(),
            "egress_pps": p.egress_pps(),
            "ingress_pps": p.ingress_pps(),
            "egress_bps": p.egress_bps(),
            "ingress_bps": p.ingress_bps(),
            "loss_ratio": p.loss_ratio(),
            "loss_injected_percent": self.info.loss_injected_percent,
            "media_port": self.info.media_port,
            "single_port": self.info.media_port != 0,
            "latency_us": p.latency_json(),
            "bridge_cpu_ns_per_egress_packet": p.cpu_ns_per_egress_packet(),
            "null_cpu_ns_per_egress_packet": self.null.as_ref().and_then(Aggregate::cpu_ns_per_egress_packet),
            "janus_cpu_ns_per_egress_packet": self.janus.as_ref().and_then(Aggregate::cpu_ns_per_egress_packet),
            "efficiency_vs_null": ratios.efficiency_vs_null,
            "ratio_vs_janus": ratios.ratio_vs_janus,
            "ratios_withheld": ratios.withheld,
            "generator_held_rate": p.generator_held_rate(),
            "generator_kept_up_receiving": p.generator_kept_up_receiving(),
            "generator_cpu_util": p.generator_cpu_util(),
            "generator_socket_drops": p.generator_socket_drops(),
            "network": p.network,
            "io_backend": p.io_backend.clone().unwrap_or_else(|| self.info.io.clone()),
            "targets": targets,
            "timeline": self.timeline,
        });
        // Added apart: one json! of every key exceeds the macro's recursion.
        let machine = json!({
            "bridge_machine_cpu_ns_per_egress_packet": p.machine_ns_per_egress_packet(),
            "null_machine_cpu_ns_per_egress_packet": self.null.as_ref().and_then(Aggregate::machine_ns_per_egress_packet),
            "janus_machine_cpu_ns_per_egress_packet": self.janus.as_ref().and_then(Aggregate::machine_ns_per_egress_packet),
            "uring_cpu_ns_per_egress_packet": self.uring.as_ref().and_then(Aggregate::cpu_ns_per_egress_packet),
            "uring_machine_cpu_ns_per_egress_packet": self.uring.as_ref().and_then(Aggregate::machine_ns_per_egress_packet),
            "ratio_vs_uring": ratios.ratio_vs_uring,
            "process_efficiency_vs_null": ratios.process_efficiency_vs_null,
            "process_ratio_vs_janus": ratios.process_ratio_vs_janus,
            "process_ratio_vs_uring": ratios.process_ratio_vs_uring
        });
        if let (Value::Object(v), Value::Object(m)) = (&mut v, machine) {
            v.extend(m);
        }
        v
    }

    /// The human table.
    pub fn table(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let i = &self.info;
        let _ = writeln!(
            s,
            "shape {} · {} conference(s) × {} endpoints · profile {} · {} s measured per round",
            i.shape, i.conferences, i.endpoints, i.profile, i.duration_s
        );
        if i.media_port != 0 {
            let _ = writeln!(
                s,
                "ringbridge in single-port mode: every endpoint on UDP port {}",
                i.media_port
            );
        }
        if i.loss_injected_percent > 0 {
            let _ = writeln!(
                s,
                "loss injected: {}% of the media datagrams each way (nftables in the target's namespace); \
                 the loss % below includes it",
                i.loss_injected_percent
            );
        }
        let _ = writeln!(
            s,
            "{:<11} {:>6} {:>8} {:>11} {:>11} {:>9} {:>9} {:>8} {:>9} {:>9} {:>11} {:>11} {:>6} {:>9}",
            "target",
            "io",
            "network",
            "ingress pps",
            "egress pps",
            "egr Mb/s",
            "loss %",
            "p50 µs",
            "p99 µs",
            "p99.9 µs",
            "cpu ns/pkt",
            "mach ns/pkt",
            "mach %",
            "gen ok"
        );
        for a in std::iter::once(&self.primary)
            .chain(self.uring.iter())
            .chain(self.null.iter())
            .chain(self.janus.iter())
        {
            let h = a.latency();
            let q = |q: f64| {
                if h.is_empty() {
                    "-".to_owned()
                } else {
                    format!("{:.0}", h.value_at_quantile(q) as f64 / 1000.0)
                }
            };
            let _ = writeln!(
                s,
                "{:<11} {:>6} {:>8} {:>11.0} {:>11.0} {:>9.1} {:>9.3} {:>8} {:>9} {:>9} {:>11} {:>11} {:>6} {:>9}",
                a.target,
                a.io_backend.as_deref().unwrap_or("?"),
                a.network,
                a.ingress_pps(),
                a.egress_pps(),
                a.egress_bps() / 1e6,
                a.loss_ratio() * 100.0,
                q(0.5),
                q(0.99),
                q(0.999),
                a.cpu_ns_per_egress_packet()
                    .map_or("-".to_owned(), |v| format!("{v:.0}")),
                a.machine_ns_per_egress_packet()
                    .map_or("-".to_owned(), |v| format!("{v:.0}")),
                a.machine_util()
                    .map_or("-".to_owned(), |u| format!("{:.0}", u * 100.0)),
                if !a.generator_held_rate() {
                    "NO (send)"
                } else if !a.generator_kept_up_receiving() {
                    "NO (recv)"
                } else {
                    "yes"
                },
            );
        }
        if let Some(profile) = self.primary.rounds.first().and_then(|m| m.profile) {
            let _ = writeln!(s, "negotiated SRTP profile: {profile}");
        }
        let r = self.ratios();
        let process = |p: Option<f64>| p.map_or("-".to_owned(), |v| format!("{v:.3}"));
        for (key, machine, proc_only) in [
            (
                "efficiency_vs_null",
                r.efficiency_vs_null,
                r.process_efficiency_vs_null,
            ),
            ("ratio_vs_uring", r.ratio_vs_uring, r.process_ratio_vs_uring),
            ("ratio_vs_janus", r.ratio_vs_janus, r.process_ratio_vs_janus),
        ] {
            if let (None, Some(p)) = (machine, proc_only) {
                let _ = writeln!(s, "process_{key} = {p:.3} (process CPU alone)");
            }
        }
        if let Some(e) = r.efficiency_vs_null {
            let _ = writeln!(
                s,
                "efficiency_vs_null = {e:.3} (null machine ns/pkt ÷ {} machine ns/pkt; \
                 process CPU alone: {})",
                self.primary.target,
                process(r.process_efficiency_vs_null)
            );
        }
        if let Some(u) = r.ratio_vs_uring {
            let _ = writeln!(
                s,
                "ratio_vs_uring = {u:.3} (io_uring machine ns/pkt ÷ {} machine ns/pkt; \
                 process CPU alone: {})",
                self.primary.io_backend.as_deref().unwrap_or(&self.info.io),
                process(r.process_ratio_vs_uring)
            );
        }
        if let Some(j) = r.ratio_vs_janus {
            let _ = writeln!(
                s,
                "ratio_vs_janus = {j:.2} (janus machine ns/pkt ÷ {} machine ns/pkt; \
                 process CPU alone: {})",
                self.primary.target,
                process(r.process_ratio_vs_janus)
            );
        }
        if self.primary.machine_ns_per_egress_packet().is_some() {
            let _ = writeln!(
                s,
                "mach ns/pkt: busy CPU of the whole machine (/proc/stat, every core, idle and \
                 iowait subtracted) over the window ÷ egress packets: the target, the \
                 generator, the kernel's softirq work and anything else running"
            );
        }
        for w in &r.withheld {
            let _ = writeln!(s, "{w}");
        }
        if !self.primary.generator_held_rate() {
            let _ = writeln!(
                s,
                "warning: the generator could not hold the target rate (sends late or failed): \
                 figures understate the offered load"
            );
        }
        if let Some(why) = self.primary.receive_side_note() {
            let _ = writeln!(
                s,
                "warning: {why}: loss is the generator's, not the target's"
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measurement(egress: u64, cpu_ns: u64, expected: u64, delivered: u64) -> Measurement {
        let mut latency = Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("hist");
        latency.record(40_000).expect("record");
        Measurement {
            window_s: 1.0,
            ingress_packets: egress / 2,
            ingress_bytes: egress * 500,
            egress_packets: egress,
            egress_bytes: egress * 1000,
            expected,
            delivered,
            latency_ns: latency,
            seq_gaps: 0,
            late: 0,
            corrupt: 0,
            auth_failures: 0,
            verify_every: 1,
            verified: egress,
            header_mismatches: 0,
            unattributed: 0,
            legs_with_media: 3,
            slots_open_s: Some(0.5),
            slots_missing: 0,
            target_cpu_ns: Some(cpu_ns),
            generator_cpu_ns: Some(100_000_000),
            // The generator and the kernel's share on top of the target's.
            machine_busy_ns: Some(cpu_ns * 2 + 1_000_000),
            machine_cores: Some(2),
            generator_thread_cpu_ns: Some(100_000_000),
            generator_socket_drops: Some(0),
            generator_min_backlog: Some(0),
            lag_ns: Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("hist"),
            send_failures: 0,
            timeline: Vec::new(),
            profile: Some("AEAD_AES_128_GCM"),
        }
    }

    fn report(null_delivered: u64) -> Report {
        let mut bridge = Aggregate::new("ringbridge");
        let mut null = Aggregate::new("null");
        for _ in 0..3 {
            bridge.rounds.push(measurement(1000, 2_000_000, 1000, 1000));
            null.rounds
                .push(measurement(1000, 1_000_000, 1000, null_delivered));
        }
        Report {
            info: RunInfo {
                shape: "meeting".into(),
                profile: "gcm".into(),
                conferences: 1,
                endpoints: 3,
                speakers: 3,
                duration_s: 1.0,
                warmup_s: 1.0,
                io: "uring".into(),
                loss_injected_percent: 0,
                media_port: 0,
                verify_every: 1,
            },
            primary: bridge,
            null: Some(null),
            janus: None,
            uring: None,
            timeline: Vec::new(),
        }
    }

    #[test]
    fn report_has_every_stable_key_and_the_ratio() {
        let r = report(1000);
        let v = r.to_json();
        for key in [
            "shape",
            "profile",
            "endpoints",
            "duration_s",
            "egress_pps",
            "ingress_pps",
            "loss_ratio",
            "latency_us",
            "bridge_cpu_ns_per_egress_packet",
            "efficiency_vs_null",
            "ratio_vs_janus",
            "io_backend",
            "network",
            "generator_cpu_util",
            "generator_socket_drops",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        for q in ["p50", "p99", "p999"] {
            assert!(
                v["latency_us"][q]
                    .as_f64()
                    .is_some_and(|x| x > 39.0 && x < 41.0)
            );
        }
        assert_eq!(v["bridge_cpu_ns_per_egress_packet"], json!(2000.0));
        assert_eq!(v["bridge_machine_cpu_ns_per_egress_packet"], json!(5000.0));
        assert_eq!(v["null_machine_cpu_ns_per_egress_packet"], json!(3000.0));
        // The comparison is of the whole machine's CPU; process time apart.
        assert_eq!(v["efficiency_vs_null"], json!(0.6));
        assert_eq!(v["process_efficiency_vs_null"], json!(0.5));
        assert_eq!(v["ratio_vs_janus"], Value::Null);
        assert_eq!(v["ratio_vs_uring"], Value::Null);
        assert_eq!(v["egress_pps"], json!(1000.0));
        assert_eq!(v["loss_ratio"], json!(0.0));
        assert!(r.table().contains("efficiency_vs_null = 0.600"));
    }

    #[test]
    fn an_xdp_primary_is_compared_with_io_uring_on_machine_cpu() {
        let mut r = report(1000);
        r.primary.io_backend = Some("xdp (native, copy)".into());
        let mut uring = Aggregate::new("ringbridge");
        uring.io_backend = Some("uring".into());
        for _ in 0..3 {
            // Less process time than xdp's, more of the machine's.
            uring.rounds.push(measurement(1000, 1_500_000, 1000, 1000));
            uring.rounds.last_mut().expect("round").machine_busy_ns = Some(10_000_000);
        }
        r.uring = Some(uring);
        let v = r.to_json();
        assert_eq!(v["uring_machine_cpu_ns_per_egress_packet"], json!(10_000.0));
        assert_eq!(v["ratio_vs_uring"], json!(2.0));
        assert_eq!(v["process_ratio_vs_uring"], json!(0.75));
        assert_eq!(v["targets"].as_array().map(Vec::len), Some(3));
        let table = r.table();
        assert!(table.contains("ratio_vs_uring = 2.000"), "{table}");
        // A machine busy all the window (other work): process ratios only.
        r.uring.as_mut().expect("uring").rounds[1].machine_busy_ns = Some(1_960_000_000);
        let v = r.to_json();
        assert_eq!(v["ratio_vs_uring"], Value::Null);
        assert_eq!(v["process_ratio_vs_uring"], json!(0.75));
        assert_eq!(v["efficiency_vs_null"], json!(0.6));
        let why = v["ratios_withheld"][0].as_str().expect("reason");
        assert!(
            why.contains("no machine-wide ratio vs ringbridge (uring)")
                && why.contains("98% of every core busy"),
            "{why}"
        );
        r.uring.as_mut().expect("uring").rounds[0].machine_busy_ns = None;
        let ratios = r.ratios();
        assert_eq!(ratios.ratio_vs_uring, None);
        assert!(
            ratios.withheld[0].contains("no ratio vs ringbridge (uring)"),
            "{:?}",
            ratios.withheld
        );
    }

    #[test]
    fn ratios_are_withheld_when_loss_exceeds_one_percent() {
        let r = report(980);
        let v = r.to_json();
        assert_eq!(v["efficiency_vs_null"], Value::Null);
        let why = v["ratios_withheld"][0].as_str().expect("reason");
        assert!(why.contains("null lost 2.00%"), "{why}");
        assert!(r.table().contains("no ratio vs null"));
    }

    #[test]
    fn ratios_are_withheld_when_the_generator_fell_behind() {
        let mut r = report(1000);
        r.primary.rounds[1].send_failures = 3;
        let ratios = r.ratios();
        assert_eq!(ratios.efficiency_vs_null, None);
        assert!(ratios.withheld[0].contains("could not hold the target rate"));
    }

    #[test]
    fn ratios_are_withheld_when_the_generator_could_not_receive() {
        let mut r = report(1000);
        r.null.as_mut().expect("null").rounds[0].generator_socket_drops = Some(40);
        let v = r.to_json();
        assert_eq!(v["efficiency_vs_null"], Value::Null);
        let why = v["ratios_withheld"][0].as_str().expect("reason");
        assert!(
            why.contains("generator could not keep up (receive side)"),
            "{why}"
        );
        let mut r = report(1000);
        r.primary.rounds[2].generator_thread_cpu_ns = Some(990_000_000);
        let v = r.to_json();
        assert_eq!(v["efficiency_vs_null"], Value::Null);
        assert_eq!(v["generator_cpu_util"], json!(0.99));
        assert_eq!(v["generator_socket_drops"], json!(0));
        assert!(
            r.table()
                .contains("generator could not keep up (receive side)")
        );
    }
}
