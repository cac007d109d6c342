//! `run` and `compare`: start a target, connect, drive, stop; alternate targets
//! round by round so that drift (thermal, other load) hits all of them alike.

use crate::BenchError;
use crate::engine::{self, EngineConfig, Measurement};
use crate::report::{Aggregate, Report, RunInfo};
use crate::shape::{Plan, Shape};
use crate::target::{self, RunOptions, TargetKind};

/// A whole request: the plan, how to start targets, how long to run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Who publishes, who receives.
    pub plan: Plan,
    /// Target options.
    pub opts: RunOptions,
    /// Timing.
    pub engine: EngineConfig,
    /// What the report echoes back.
    pub info: RunInfo,
}

/// One round against one fresh target: start, connect, handshake, drive, stop.
pub fn round(
    kind: TargetKind,
    settings: &Settings,
    label: &str,
) -> Result<(Measurement, Option<String>, &'static str), BenchError> {
    let mut target = target::start(kind, &settings.opts)?;
    let mut legs = target.connect(&settings.plan, &settings.opts)?;
    engine::handshake(&mut legs, settings.opts.connect_timeout)?;
    // `--loss`: from here on, so that ICE and DTLS are not what is measured.
    if settings.opts.loss_percent > 0 {
        let ns = target.netns_name().ok_or_else(|| {
            BenchError::Config(format!(
                "--loss needs {} in a network namespace (--netns)",
                target.name()
            ))
        })?;
        let ports = legs.iter().map(|l| l.remote.port());
        let lo = ports.clone().min().unwrap_or(0);
        let hi = ports.max().unwrap_or(0);
        crate::netns::inject_loss(ns, (lo, hi), settings.opts.loss_percent)?;
    }
    let mut cfg = settings.engine.clone();
    cfg.label = label.to_owned();
    let m = engine::run(&mut legs, &settings.plan, target.pid(), &cfg)?;
    let io = target.io_backend();
    let network = target.network();
    drop(legs);
    drop(target);
    Ok((m, io, network))
}

fn push(
    agg: &mut Aggregate,
    (m, io, network): (Measurement, Option<String>, &'static str),
    timeline: &mut Vec<engine::Bucket>,
) {
    if agg.rounds.is_empty() && timeline.is_empty() {
        timeline.clone_from(&m.timeline);
    }
    agg.io_backend = agg.io_backend.take().or(io);
    agg.network = network;
    agg.rounds.push(m);
}

/// `run`: one target, one round.
pub fn run(kind: TargetKind, settings: &Settings) -> Result<Report, BenchError> {
    let mut primary = Aggregate::new(kind.name());
    let mut timeline = Vec::new();
    push(
        &mut primary,
        round(kind, settings, kind.name())?,
        &mut timeline,
    );
    Ok(Report {
        info: settings.info.clone(),
        primary,
        null: None,
        janus: None,
        uring: None,
        timeline,
    })
}

/// `compare`: ringbridge, the null forwarder and (when compiled in) Janus,
/// alternated for `rounds` rounds; one report with the ratios. With
/// `--io xdp`, ringbridge on io_uring runs in every round too, so that the
/// two backends are measured side by side.
pub fn compare(settings: &Settings, rounds: usize) -> Result<Report, BenchError> {
    let mut bridge = Aggregate::new("ringbridge");
    let uring_settings = (settings.opts.io == "xdp").then(|| {
        let mut s = settings.clone();
        s.opts.io = "uring".into();
        s
    });
    let mut uring = uring_settings
        .as_ref()
        .map(|_| Aggregate::new("ringbridge"));
    let mut null = Aggregate::new("null");
    // The Janus legs publish no simulcast layers: a simulcast shape compares
    // ringbridge with the null forwarder only.
    let simulcast = settings.info.shape == Shape::MeetingSimulcast.name();
    if simulcast && target::JANUS_AVAILABLE {
        eprintln!(
            "note: {}: Janus is left out (its legs publish no simulcast)",
            settings.info.shape
        );
    }
    let mut janus = (target::JANUS_AVAILABLE && !simulcast).then(|| Aggregate::new("janus"));
    let mut timeline = Vec::new();
    let mut ignored = Vec::new();
    for r in 0..rounds {
        let label = |t: &str| format!("round {}/{rounds} {t}", r + 1);
        push(
            &mut bridge,
            round(TargetKind::Ringbridge, settings, &label("ringbridge"))?,
            &mut timeline,
        );
        if let (Some(u), Some(us)) = (uring.as_mut(), uring_settings.as_ref()) {
            push(
                u,
                round(TargetKind::Ringbridge, us, &label("ringbridge uring"))?,
                &mut ignored,
            );
        }
        push(
            &mut null,
            round(TargetKind::Null, settings, &label("null"))?,
            &mut ignored,
        );
        if let Some(j) = janus.as_mut() {
            match round(TargetKind::Janus, settings, &label("janus")) {
                Ok(m) => push(j, m, &mut ignored),
                // Janus is optional in a comparison: when it cannot run at all (package
                // missing, no namespaces), the report goes on without it. A failure
                // after a round that worked is a real error.
                Err(e) if r == 0 => {
                    eprintln!("warning: leaving Janus out of the comparison: {e}");
                    janus = None;
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(Report {
        info: settings.info.clone(),
        primary: bridge,
        null: Some(null),
        janus,
        uring,
        timeline,
    })
}
