//! `ringbridge-bench scale`: resident memory per endpoint and completed joins
//! per second per core (issue 13 item 6).
//!
//! Starts a bridge (one shard, the whole process pinned to the target core),
//! reads its resident memory (`VmRSS` of `/proc/<pid>/status`), joins every
//! endpoint of the plan (HTTP offer, then ICE and DTLS until SRTP keys are
//! installed on both sides), reads the resident memory again and divides. The
//! join rate is the joins completed divided by the bridge's CPU time over the
//! storm (`/proc/<pid>/stat` utime + stime of all its threads, control plane
//! included), i.e. joins per second of one core; the wall-clock rate is printed
//! beside it (it also holds the bench's own signalling and DTLS client work, on
//! the other core).
//!
//! Joins are made in waves of [`ScaleConfig::wave`] endpoints: the offers of a
//! wave are posted several at a time (`--parallel`, default 8, each on a
//! thread of the generator's core; `--parallel 1` posts them one after the
//! other), then the wave's ICE and DTLS run together, as a burst of participants
//! arriving would. Posted one at a time, the offers reach the bridge at the pace
//! of one client's round trips: every join then wakes an idle control plane and
//! shard on its own, and the timers of the endpoints already joined run for
//! longer, both charged to the joins (about 30 % more bridge CPU per join on
//! the 2-core development machine).

use std::time::{Duration, Instant};

use crate::BenchError;
use crate::engine;
use crate::shape::Plan;
use crate::target::{self, RunOptions, TargetKind};

/// What a scale run does.
#[derive(Debug, Clone)]
pub struct ScaleConfig {
    /// Who joins.
    pub plan: Plan,
    /// How the bridge is started.
    pub opts: RunOptions,
    /// Endpoints joined together (offers, then handshakes).
    pub wave: usize,
}

/// What a scale run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScaleReport {
    /// Endpoints joined (ICE and DTLS completed).
    pub endpoints: usize,
    /// Conferences they joined.
    pub conferences: usize,
    /// The bridge's resident memory before the first join, KiB.
    pub rss_before_kib: u64,
    /// After the last endpoint connected, KiB.
    pub rss_after_kib: u64,
    /// `(after - before) / endpoints`, KiB.
    pub rss_per_endpoint_kib: f64,
    /// Wall time from the first offer to the last DTLS handshake, seconds.
    pub wall_s: f64,
    /// Time spent in signalling (HTTP offer and answer), seconds.
    pub signalling_s: f64,
    /// Time spent in ICE and DTLS, seconds.
    pub handshake_s: f64,
    /// The bridge's CPU time over the storm, seconds.
    pub bridge_cpu_s: f64,
    /// `endpoints / wall_s`.
    pub joins_per_s_wall: f64,
    /// `endpoints / bridge_cpu_s`: joins per second of one core.
    pub joins_per_core_s: f64,
    /// The bridge's memory by mapping kind after the joins (`/proc/<pid>/smaps`
    /// Rss summed by pathname or `[heap]`/`[anon]`), KiB, largest first.
    pub rss_by_mapping_kib: Vec<(String, u64)>,
    /// The bridge's CPU seconds per second in the half second after the last
    /// join, every endpoint connected and sending nothing: the work that grows
    /// with the endpoints joined and the time they stay (timers, keyframe
    /// requests for sources that never send), charged to the joins during the
    /// storm.
    pub idle_cpu_per_s: f64,
    /// `joins_per_core_s` of every round run (`--rounds`), in order; this
    /// report is the round with the median rate.
    pub rounds_joins_per_core_s: Vec<f64>,
}

/// `VmRSS` of process `pid`, KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_field(pid, "VmRSS:")
}

/// A `kB` field of `/proc/<pid>/status`.
pub fn status_field(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Open file descriptors of process `pid`.
pub fn fd_count(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// `utime + stime` of process `pid` (`/proc/<pid>/stat`), nanoseconds.
pub fn stat_cpu_ns(pid: u32) -> Option<u64> {
    crate::sys::stat_cpu_ns(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Rss of process `pid` by mapping (`/proc/<pid>/smaps`): file mappings by
/// path, anonymous ones as `[anon]`, largest first. KiB.
pub fn rss_by_mapping(pid: u32) -> Vec<(String, u64)> {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/smaps")) else {
        return Vec::new();
    };
    let mut by: std::collections::BTreeMap<String, u64> = Default::default();
    let mut current = String::from("[anon]");
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let Some(first) = f.next() else { continue };
        if first.contains('-') && first.chars().next().is_some_and(|c| c.is_ascii_hexdigit()) {
            // A mapping header: address perms offset dev inode [path].
            let path = f.nth(4).unwrap_or("");
            current = if path.is_empty() {
                "[anon]".to_owned()
            } else {
                path.to_owned()
            };
        } else if first == "Rss:" {
            let kib: u64 = f.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            *by.entry(current.clone()).or_default() += kib;
        }
    }
    let mut v: Vec<(String, u64)> = by.into_iter().filter(|(_, k)| *k > 0).collect();
    v.sort_by_key(|e| std::cmp::Reverse(e.1));
    v
}

/// Starts a bridge, joins every endpoint of the plan, measures.
pub fn run(cfg: &ScaleConfig) -> Result<ScaleReport, BenchError> {
    let mut target = target::start(TargetKind::Ringbridge, &cfg.opts)?;
    let pid = target.pid().ok_or_else(|| {
        BenchError::Config("scale measures a bridge it starts itself: no --url".into())
    })?;
    // Settle: the bridge's first scrape, allocator arenas of idle threads.
    std::thread::sleep(Duration::from_millis(500));
    let rss_before = rss_kib(pid).ok_or_else(|| BenchError::Target("no VmRSS".into()))?;
    let cpu0 = stat_cpu_ns(pid).unwrap_or(0);
    let start = Instant::now();
    let mut legs_all = Vec::with_capacity(cfg.plan.all.len());
    let (mut signalling, mut handshaking) = (Duration::ZERO, Duration::ZERO);
    let wave = cfg.wave.max(1);
    for chunk in cfg.plan.all.chunks(wave) {
        let sub = Plan {
            all: chunk.to_vec(),
            ..cfg.plan.clone()
        };
        let t = Instant::now();
        let mut legs = target.connect(&sub, &cfg.opts)?;
        signalling += t.elapsed();
        let t = Instant::now();
        engine::handshake(&mut legs, cfg.opts.connect_timeout)?;
        handshaking += t.elapsed();
        legs_all.extend(legs);
    }
    let wall = start.elapsed();
    let cpu1 = stat_cpu_ns(pid).unwrap_or(0);
    // Let the bridge's timers and the control plane's bookkeeping of the last
    // joins run before reading memory.
    let settle = Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    let cpu2 = stat_cpu_ns(pid).unwrap_or(0);
    let idle_cpu_per_s =
        cpu2.saturating_sub(cpu1) as f64 / 1e9 / settle.elapsed().as_secs_f64().max(1e-9);
    let rss_after = rss_kib(pid).ok_or_else(|| BenchError::Target("no VmRSS".into()))?;
    let by_mapping = rss_by_mapping(pid);
    let n = legs_all.len();
    let cpu_s = cpu1.saturating_sub(cpu0) as f64 / 1e9;
    drop(legs_all);
    drop(target);
    Ok(ScaleReport {
        endpoints: n,
        conferences: cfg.plan.conferences,
        rss_before_kib: rss_before,
        rss_after_kib: rss_after,
        rss_per_endpoint_kib: rss_after.saturating_sub(rss_before) as f64 / n.max(1) as f64,
        wall_s: wall.as_secs_f64(),
        signalling_s: signalling.as_secs_f64(),
        handshake_s: handshaking.as_secs_f64(),
        bridge_cpu_s: cpu_s,
        joins_per_s_wall: n as f64 / wall.as_secs_f64().max(1e-9),
        joins_per_core_s: if cpu_s > 0.0 { n as f64 / cpu_s } else { 0.0 },
        rss_by_mapping_kib: by_mapping.into_iter().take(8).collect(),
        idle_cpu_per_s,
        rounds_joins_per_core_s: Vec::new(),
    })
}

/// Runs `rounds` storms, each on a bridge of its own, and returns the round
/// with the median join rate, every round's rate in it. One storm's rate moves
/// by 10-20% from run to run on the 2-core development VM (quiet, same binary:
/// 2,041 to 2,143 joins/s per core at 3,000 endpoints, 1,538 to 2,381 at
/// 1,000), more than the changes it is meant to show.
pub fn run_rounds(cfg: &ScaleConfig, rounds: usize) -> Result<ScaleReport, BenchError> {
    let mut reports = Vec::with_capacity(rounds.max(1));
    for _ in 0..rounds.max(1) {
        crate::interrupt::check()?;
        reports.push(run(cfg)?);
    }
    let rates: Vec<f64> = reports.iter().map(|r| r.joins_per_core_s).collect();
    reports.sort_by(|a, b| a.joins_per_core_s.total_cmp(&b.joins_per_core_s));
    let mut median = reports.swap_remove(reports.len() / 2);
    median.rounds_joins_per_core_s = rates;
    Ok(median)
}

impl ScaleReport {
    /// The human-readable summary, with the targets.
    pub fn table(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!(
            "endpoints joined (offer + ICE + DTLS): {} in {} conferences\n",
            self.endpoints, self.conferences
        ));
        s.push_str(&format!(
            "resident memory: {} KiB before, {} KiB after: {:.1} KiB per endpoint (target <= 100)\n",
            self.rss_before_kib, self.rss_after_kib, self.rss_per_endpoint_kib
        ));
        s.push_str(&format!(
            "joins: {:.2} s wall ({:.2} s signalling, {:.2} s ICE+DTLS): {:.0} joins/s wall; \
             bridge CPU {:.3} s: {:.0} joins/s per core (target >= 2000)\n",
            self.wall_s,
            self.signalling_s,
            self.handshake_s,
            self.joins_per_s_wall,
            self.bridge_cpu_s,
            self.joins_per_core_s
        ));
        if self.rounds_joins_per_core_s.len() > 1 {
            let mut sorted = self.rounds_joins_per_core_s.clone();
            sorted.sort_by(f64::total_cmp);
            let list: Vec<String> = self
                .rounds_joins_per_core_s
                .iter()
                .map(|r| format!("{r:.0}"))
                .collect();
            s.push_str(&format!(
                "joins/s per core over {} rounds: {} (min {:.0}, median {:.0}, max {:.0}); the figures above are the median round's\n",
                sorted.len(),
                list.join(", "),
                sorted.first().copied().unwrap_or(0.0),
                self.joins_per_core_s,
                sorted.last().copied().unwrap_or(0.0),
            ));
        }
        s.push_str(&format!(
            "bridge CPU with the {} endpoints joined and idle: {:.0} ms per second\n",
            self.endpoints,
            self.idle_cpu_per_s * 1000.0
        ));
        s.push_str("bridge Rss by mapping after the joins (KiB):");
        for (m, k) in &self.rss_by_mapping_kib {
            s.push_str(&format!(" {m}={k}"));
        }
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_memory_descriptors_and_mappings() {
        let me = std::process::id();
        assert!(rss_kib(me).is_some_and(|k| k > 0));
        assert!(fd_count(me).is_some_and(|n| n >= 3));
        let maps = rss_by_mapping(me);
        assert!(!maps.is_empty());
        assert!(maps.windows(2).all(|w| w[0].1 >= w[1].1), "largest first");
    }
}
