//! `ringbridge-bench soak`: a long run of one shape that samples the bridge's
//! resident memory (`VmRSS`) and open descriptors (`/proc/<pid>/fd`) every
//! [`SoakConfig::every`] while the engine drives media (issue 13 item 5), and
//! says whether the bridge survived.
//!
//! Memory growth is taken from the first sample at or after
//! [`SoakConfig::settle`] (caches, packet pools and slots fill in the first
//! minute) to the last sample.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::BenchError;
use crate::engine::{self, EngineConfig, Measurement};
use crate::scale::{fd_count, rss_kib};
use crate::shape::Plan;
use crate::target::{self, RunOptions};

/// What a soak does.
#[derive(Debug, Clone)]
pub struct SoakConfig {
    /// Who publishes, who receives.
    pub plan: Plan,
    /// How the bridge is started.
    pub opts: RunOptions,
    /// The engine's timing (`duration` is the soak's length).
    pub engine: EngineConfig,
    /// Time between samples.
    pub every: Duration,
    /// Samples before this (from the start of media) are warm-up: growth is
    /// measured from the first sample after it.
    pub settle: Duration,
}

/// One sample of the bridge process.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Sample {
    /// Seconds since media started.
    pub t_s: f64,
    /// `VmRSS`, KiB.
    pub rss_kib: u64,
    /// Open file descriptors.
    pub fds: usize,
    /// Datagrams the bridge has held in a send backlog so far (a full socket
    /// buffer; the backlog's memory is taken then), from `/colibri/stats`:
    /// a step in `rss_kib` with a rise here is a burst's high-water mark.
    pub send_backlogged: Option<u64>,
}

/// What a soak measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SoakReport {
    /// Every sample.
    pub samples: Vec<Sample>,
    /// Resident memory growth from the first sample after the settle time to
    /// the last, percent (`None`: no sample after it).
    pub rss_growth_percent: Option<f64>,
    /// Fewest open descriptors over the samples after the settle time.
    pub fds_min: usize,
    /// Most open descriptors over those samples.
    pub fds_max: usize,
    /// Whether the bridge was still running at the end.
    pub bridge_alive: bool,
    /// Lines of the bridge's log that report a panic.
    pub panics: usize,
    /// Lost deliveries ÷ expected over the engine's window.
    pub loss_ratio: f64,
    /// Media packets sent per second over the window.
    pub ingress_pps: f64,
    /// Every how many received media packets one was verified
    /// (`--verify-every`).
    pub verify_every: u32,
    /// Verified packets that failed authentication, their checksum or their
    /// header's prediction ([`Measurement::integrity_failures`]).
    pub integrity_failures: u64,
}

/// Runs the soak.
pub fn run(cfg: &SoakConfig) -> Result<SoakReport, BenchError> {
    let mut rb = crate::ringbridge::RingbridgeTarget::start(&cfg.opts)?;
    let pid = target::Target::pid(&rb).ok_or_else(|| {
        BenchError::Config("soak samples a bridge it starts itself: no --url".into())
    })?;
    let mut legs = target::Target::connect(&mut rb, &cfg.plan, &cfg.opts)?;
    engine::handshake(&mut legs, cfg.opts.connect_timeout)?;

    let private = rb.private_addr();
    let backlogged = move || private.and_then(crate::ringbridge::send_backlogged);
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        let every = cfg.every;
        std::thread::spawn(move || {
            let start = Instant::now();
            let mut samples = Vec::new();
            let mut next = start;
            while !stop.load(Ordering::Relaxed) {
                if Instant::now() >= next {
                    let (Some(rss), Some(fds)) = (rss_kib(pid), fd_count(pid)) else {
                        break; // the bridge is gone
                    };
                    samples.push(Sample {
                        t_s: start.elapsed().as_secs_f64(),
                        rss_kib: rss,
                        fds,
                        send_backlogged: backlogged(),
                    });
                    next += every;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            samples
        })
    };
    let measured: Result<Measurement, BenchError> =
        engine::run(&mut legs, &cfg.plan, Some(pid), &cfg.engine);
    stop.store(true, Ordering::Relaxed);
    let mut samples = sampler
        .join()
        .map_err(|_| BenchError::Target("the sampler thread panicked".into()))?;
    // One last sample at the very end.
    if let (Some(rss), Some(fds)) = (rss_kib(pid), fd_count(pid)) {
        let t_s = samples.last().map_or(0.0, |s| s.t_s) + 0.001;
        samples.push(Sample {
            t_s: t_s.max(cfg.engine.warmup.as_secs_f64() + cfg.engine.duration.as_secs_f64()),
            rss_kib: rss,
            fds,
            send_backlogged: backlogged(),
        });
    }
    let bridge_alive = rb.is_running();
    let panics = rb.log_panics();
    drop(legs);
    drop(rb);
    let m = measured?;
    let settled: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.t_s >= cfg.settle.as_secs_f64())
        .collect();
    let rss_growth_percent = match (settled.first(), settled.last()) {
        (Some(a), Some(b)) if settled.len() >= 2 && a.rss_kib > 0 => {
            Some((b.rss_kib as f64 - a.rss_kib as f64) * 100.0 / a.rss_kib as f64)
        }
        _ => None,
    };
    Ok(SoakReport {
        fds_min: settled.iter().map(|s| s.fds).min().unwrap_or(0),
        fds_max: settled.iter().map(|s| s.fds).max().unwrap_or(0),
        samples,
        rss_growth_percent,
        bridge_alive,
        panics,
        loss_ratio: m.loss_ratio(),
        ingress_pps: if m.window_s > 0.0 {
            m.ingress_packets as f64 / m.window_s
        } else {
            0.0
        },
        verify_every: m.verify_every,
        integrity_failures: m.integrity_failures(),
    })
}

impl SoakReport {
    /// The human-readable summary.
    pub fn table(&self) -> String {
        let mut s = String::from("t_s\trss_kib\tfds\tsend_backlogged\n");
        for x in &self.samples {
            let backlogged = x.send_backlogged.map_or("-".to_owned(), |n| n.to_string());
            s.push_str(&format!(
                "{:.0}\t{}\t{}\t{backlogged}\n",
                x.t_s, x.rss_kib, x.fds
            ));
        }
        s.push_str(&format!(
            "resident memory growth after warm-up: {} (target < 1%)\n",
            self.rss_growth_percent
                .map_or("n/a (no two samples after the warm-up)".to_owned(), |g| {
                    format!("{g:+.2}%")
                })
        ));
        s.push_str(&format!(
            "open descriptors after warm-up: min {} max {}\n",
            self.fds_min, self.fds_max
        ));
        s.push_str(&format!(
            "bridge alive at the end: {}; panics in its log: {}; media {:.0} pkt/s in, loss {:.3}%\n",
            self.bridge_alive,
            self.panics,
            self.ingress_pps,
            self.loss_ratio * 100.0
        ));
        s.push_str(&format!(
            "received media verified 1 in {}: {} integrity failure(s)\n",
            self.verify_every, self.integrity_failures
        ));
        s
    }

    /// Whether the run met the bar: growth under 1%, constant
    /// descriptors, the bridge alive, no panic; and no damaged media among
    /// what was verified.
    pub fn passed(&self) -> bool {
        self.rss_growth_percent.is_some_and(|g| g < 1.0)
            && self.fds_min == self.fds_max
            && self.bridge_alive
            && self.panics == 0
            && self.integrity_failures == 0
    }
}
