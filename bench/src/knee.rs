//! `knee`: the highest load a target carries without loss, found by running
//! the shape at growing numbers of conferences.
//!
//! The search doubles the conferences from `--start` while a round passes,
//! then bisects between the last pass and the first failure until they are
//! one conference (or 5%) apart. A round passes when its loss is at most
//! `--max-loss` (the "zero loss" is the default 0) and the generator
//! kept its schedule and kept up with what came back. When the generator is
//! what fails, the search stops there: beyond it the bench measures itself,
//! and the report says the knee is bounded by the generator, not the target.
//!
//! Each step is a fresh target ([`runner::round`]), so one step's state (the
//! caches of a big run) does not carry into the next.

use serde::Serialize;

use crate::BenchError;
use crate::engine::Measurement;
use crate::runner::{self, Settings};
use crate::shape::{Plan, Shape};
use crate::target::TargetKind;

/// Conferences apart (as a share of the passing load) at which bisection
/// stops: one conference, or this close.
const RESOLUTION: f64 = 0.05;

/// What to search.
#[derive(Debug, Clone)]
pub struct KneeConfig {
    /// The run every step starts from (its plan's conference count is replaced).
    pub settings: Settings,
    /// The shape (the plan is rebuilt per step).
    pub shape: Shape,
    /// Endpoints per conference.
    pub endpoints: usize,
    /// Speakers per conference (audio-room).
    pub speakers: usize,
    /// Which target.
    pub kind: TargetKind,
    /// Conferences of the first step.
    pub start: usize,
    /// Conferences the search never goes beyond.
    pub max: usize,
    /// The highest loss ratio a passing step may show (0: none at all).
    pub max_loss: f64,
}

/// One step of the search: one round at one load.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// Conferences in this step.
    pub conferences: usize,
    /// Media packets per second out of the target.
    pub egress_pps: f64,
    /// Media packets per second into it.
    pub ingress_pps: f64,
    /// Lost ÷ expected deliveries.
    pub loss_ratio: f64,
    /// Cores' worth of CPU the target process used over the window (`None`:
    /// not measured, e.g. `--url`).
    pub target_cores: Option<f64>,
    /// Cores' worth of the whole machine busy over the window (idle
    /// subtracted): the target, the generator and the kernel's softirq work.
    pub machine_cores: Option<f64>,
    /// Whether the generator kept its schedule and kept up receiving.
    pub generator_ok: bool,
    /// Verified packets that failed authentication, their checksum or their
    /// header's prediction ([`Measurement::integrity_failures`]).
    pub integrity_failures: u64,
    /// Whether the step counts as carried: loss within `max_loss`, the
    /// generator kept up, and no integrity failure.
    pub passed: bool,
}

impl Step {
    /// Egress packets per second per core of target CPU (process time).
    pub fn egress_pps_per_target_core(&self) -> Option<f64> {
        self.target_cores
            .filter(|&c| c > 0.0)
            .map(|c| self.egress_pps / c)
    }

    fn from_measurement(conferences: usize, m: &Measurement, max_loss: f64) -> Self {
        let w = m.window_s.max(f64::MIN_POSITIVE);
        let generator_ok = m.generator_held_rate() && m.generator_kept_up_receiving();
        let loss_ratio = m.loss_ratio();
        let integrity_failures = m.integrity_failures();
        Self {
            conferences,
            egress_pps: m.egress_packets as f64 / w,
            ingress_pps: m.ingress_packets as f64 / w,
            loss_ratio,
            target_cores: m.target_cpu_ns.map(|ns| ns as f64 / 1e9 / w),
            machine_cores: m.machine_busy_ns.map(|ns| ns as f64 / 1e9 / w),
            generator_ok,
            integrity_failures,
            passed: generator_ok && loss_ratio <= max_loss && integrity_failures == 0,
        }
    }
}

/// What ended the search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    /// The target lost packets above the knee: the knee is the target's.
    Target,
    /// The generator could not hold the next load: the target carried
    /// everything the bench could offer, the true knee is higher.
    Generator,
    /// Every step passed up to `--max-conferences`.
    Max,
}

/// The search's result.
#[derive(Debug, Clone, Serialize)]
pub struct KneeReport {
    /// The shape searched.
    pub shape: String,
    /// `media.io` of the target.
    pub io: String,
    /// Endpoints per conference.
    pub endpoints: usize,
    /// The loss a passing step could show.
    pub max_loss: f64,
    /// Every how many received media packets one was verified
    /// (`--verify-every`).
    pub verify_every: u32,
    /// Every step, in the order run.
    pub steps: Vec<Step>,
    /// The highest passing step (`None`: even the first failed).
    pub knee: Option<Step>,
    /// What ended the search.
    pub bound: Bound,
}

impl KneeReport {
    /// A human-readable table: every step, then the knee.
    pub fn table(&self) -> String {
        use std::fmt::Write as _;
        let mut s = format!(
            "knee search · shape {} · {} endpoints per conference · io {} · verify 1 in {} · pass: loss <= {:.3}%, the generator kept up, no integrity failure\n\
             conferences  egress pps  ingress pps    loss %  target cores  machine cores  pps/target core  gen ok  passed\n",
            self.shape,
            self.endpoints,
            self.io,
            self.verify_every,
            self.max_loss * 100.0
        );
        let opt = |v: Option<f64>, prec: usize| v.map_or("-".to_owned(), |v| format!("{v:.prec$}"));
        for st in &self.steps {
            let _ = writeln!(
                s,
                "{:>11}  {:>10.0}  {:>11.0}  {:>8.3}  {:>12}  {:>13}  {:>15}  {:>6}  {:>6}",
                st.conferences,
                st.egress_pps,
                st.ingress_pps,
                st.loss_ratio * 100.0,
                opt(st.target_cores, 2),
                opt(st.machine_cores, 2),
                opt(st.egress_pps_per_target_core(), 0),
                if st.generator_ok { "yes" } else { "no" },
                if st.passed { "yes" } else { "no" },
            );
        }
        match (&self.knee, self.bound) {
            (None, _) => s.push_str("knee: none; even the first step failed\n"),
            (Some(k), b) => {
                let _ = writeln!(
                    s,
                    "knee: {} conferences, {:.0} egress pps ({} per target core){}",
                    k.conferences,
                    k.egress_pps,
                    opt(k.egress_pps_per_target_core(), 0),
                    match b {
                        Bound::Target => "; above it the target lost packets",
                        Bound::Generator =>
                            "; above it the generator could not keep up: the target's knee is higher",
                        Bound::Max => "; every step passed up to --max-conferences",
                    }
                );
            }
        }
        s
    }
}

/// Runs the search against real targets.
pub fn run(cfg: &KneeConfig) -> Result<KneeReport, BenchError> {
    if cfg.start == 0 || cfg.max < cfg.start {
        return Err(BenchError::Config(format!(
            "knee: --start {} and --max-conferences {}: expected 1 <= start <= max",
            cfg.start, cfg.max
        )));
    }
    let (steps, knee, bound) = search(cfg.start, cfg.max, |conferences| {
        let mut s = cfg.settings.clone();
        s.plan = Plan::new(cfg.shape, conferences, cfg.endpoints, cfg.speakers)
            .map_err(BenchError::Config)?;
        s.info.conferences = conferences;
        s.opts.media_ports = u16::try_from(conferences * cfg.endpoints + 200).unwrap_or(u16::MAX);
        s.opts.run_tag = format!("{}-{:08x}", std::process::id(), rand::random::<u32>());
        let label = format!("knee {conferences} conferences");
        let (m, _, _) = runner::round(cfg.kind, &s, &label)?;
        Ok(Step::from_measurement(conferences, &m, cfg.max_loss))
    })?;
    Ok(KneeReport {
        shape: cfg.shape.name().into(),
        io: cfg.settings.opts.io.clone(),
        endpoints: cfg.endpoints,
        max_loss: cfg.max_loss,
        verify_every: cfg.settings.engine.verify_every,
        steps,
        knee,
        bound,
    })
}

/// The search itself, over any way of running a step: doubling from
/// `start` while steps pass, then bisection; stops at a generator failure.
fn search(
    start: usize,
    max: usize,
    mut step: impl FnMut(usize) -> Result<Step, BenchError>,
) -> Result<(Vec<Step>, Option<Step>, Bound), BenchError> {
    let mut steps = Vec::new();
    let mut best: Option<Step> = None;
    let mut failed_at: Option<usize> = None;
    let mut c = start;
    // Doubling.
    loop {
        let st = step(c)?;
        steps.push(st.clone());
        if !st.passed {
            if !st.generator_ok {
                return Ok((steps, best, Bound::Generator));
            }
            failed_at = Some(c);
            break;
        }
        best = Some(st);
        if c >= max {
            break;
        }
        c = c.saturating_mul(2).min(max);
    }
    let Some(mut hi) = failed_at else {
        return Ok((steps, best, Bound::Max));
    };
    // Bisection between the last pass and the first failure.
    while let Some(lo) = best.as_ref().map(|b| b.conferences) {
        if hi - lo <= 1 || (hi - lo) as f64 <= RESOLUTION * lo as f64 {
            break;
        }
        let mid = lo + (hi - lo) / 2;
        let st = step(mid)?;
        steps.push(st.clone());
        if st.passed {
            best = Some(st);
        } else if !st.generator_ok {
            return Ok((steps, best, Bound::Generator));
        } else {
            hi = mid;
        }
    }
    Ok((steps, best, Bound::Target))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A step of a fake target that carries `capacity` conferences and a
    /// generator that keeps up to `generator` conferences.
    fn fake(c: usize, capacity: usize, generator: usize) -> Step {
        let generator_ok = c <= generator;
        let loss_ratio = if c <= capacity { 0.0 } else { 0.02 };
        Step {
            conferences: c,
            egress_pps: c as f64 * 1000.0,
            ingress_pps: c as f64 * 300.0,
            loss_ratio,
            target_cores: Some(c.min(capacity) as f64 / capacity as f64),
            machine_cores: None,
            generator_ok,
            integrity_failures: 0,
            passed: generator_ok && loss_ratio == 0.0,
        }
    }

    #[test]
    fn doubling_then_bisection_finds_the_last_conference_carried() {
        let (steps, knee, bound) = search(1, 1000, |c| Ok(fake(c, 37, 1000))).expect("search");
        let order: Vec<usize> = steps.iter().map(|s| s.conferences).collect();
        assert_eq!(order, [1, 2, 4, 8, 16, 32, 64, 48, 40, 36, 38, 37]);
        assert_eq!(knee.map(|k| k.conferences), Some(37));
        assert_eq!(bound, Bound::Target);
    }

    #[test]
    fn a_generator_that_cannot_keep_up_ends_the_search_and_says_so() {
        let (steps, knee, bound) = search(1, 1000, |c| Ok(fake(c, 500, 20))).expect("search");
        assert_eq!(steps.last().map(|s| s.conferences), Some(32));
        assert_eq!(knee.map(|k| k.conferences), Some(16));
        assert_eq!(bound, Bound::Generator);
    }

    #[test]
    fn every_step_passing_stops_at_the_maximum() {
        let (steps, knee, bound) = search(3, 10, |c| Ok(fake(c, 500, 1000))).expect("search");
        let order: Vec<usize> = steps.iter().map(|s| s.conferences).collect();
        assert_eq!(order, [3, 6, 10]);
        assert_eq!(knee.map(|k| k.conferences), Some(10));
        assert_eq!(bound, Bound::Max);
    }

    #[test]
    fn a_first_step_that_fails_gives_no_knee() {
        let (steps, knee, bound) = search(4, 100, |c| Ok(fake(c, 2, 1000))).expect("search");
        assert_eq!(steps.len(), 1);
        assert!(knee.is_none());
        assert_eq!(bound, Bound::Target);
    }

    #[test]
    fn bisection_stops_within_five_percent_of_large_loads() {
        let (steps, knee, _) = search(100, 10_000, |c| Ok(fake(c, 1234, 10_000))).expect("search");
        let k = knee.expect("knee").conferences;
        assert!(
            k <= 1234 && 1234 - k <= (RESOLUTION * k as f64) as usize + 1,
            "{k}"
        );
        assert!(steps.len() < 12, "{} steps", steps.len());
    }

    #[test]
    fn egress_per_target_core_divides_by_the_cores_used() {
        let st = fake(10, 5, 100);
        assert!(!st.passed);
        assert_eq!(st.egress_pps_per_target_core(), Some(10_000.0));
    }
}
