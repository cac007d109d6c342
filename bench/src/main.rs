//! `ringbridge-bench`: load-test harness for ringbridge. See bench/README.md.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use ringbridge_bench::engine::{DEFAULT_SAMPLED_VERIFY_EVERY, EngineConfig};
use ringbridge_bench::flood::{self, FloodConfig, FloodKind, FloodTarget, Replay};
use ringbridge_bench::knee::{self, KneeConfig};
use ringbridge_bench::report::{Report, RunInfo};
use ringbridge_bench::runner::{self, Settings};
use ringbridge_bench::scale::{self, ScaleConfig};
use ringbridge_bench::shape::{Plan, Shape};
use ringbridge_bench::soak::{self, SoakConfig};
use ringbridge_bench::target::{ProfileChoice, RunOptions, TargetKind};
use ringbridge_bench::{BenchError, interrupt, null, plot, sys};

#[derive(Parser, Debug)]
#[command(
    name = "ringbridge-bench",
    version,
    about = "Load-test harness for ringbridge"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Drive one target with one shape and report.
    Run {
        #[command(flatten)]
        common: Common,
        /// ringbridge (default), null or janus.
        #[arg(long, default_value = "ringbridge")]
        target: TargetKind,
    },
    /// ringbridge, the null forwarder (and Janus when compiled in), alternated.
    Compare {
        #[command(flatten)]
        common: Common,
        /// Rounds of each target (3 or more for a spread; 1 for a quick look).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Run ringbridge and the null forwarder on loopback instead of behind a veth
        /// pair like Janus (the default, which needs root and `ip`).
        #[arg(long)]
        loopback: bool,
    },
    /// Resident memory per endpoint and joins per second per core: starts a
    /// bridge, joins every endpoint of the plan (offer, ICE, DTLS), measures
    /// (bench/src/scale.rs). E.g. `--conferences 100 --endpoints 10`.
    Scale {
        #[command(flatten)]
        common: Common,
        /// Endpoints whose offers are posted before their handshakes run together.
        #[arg(long, default_value_t = 100)]
        wave: usize,
        /// Offers of a wave in flight at once (1: one after the other).
        #[arg(long, default_value_t = 8)]
        parallel: usize,
        /// Storms run, each on a bridge of its own; the report is the round
        /// with the median join rate, every round's rate listed.
        #[arg(long, default_value_t = 1)]
        rounds: usize,
    },
    /// The highest load the target carries without loss: the shape at
    /// doubling numbers of conferences, then bisection (bench/src/knee.rs).
    /// E.g. `--shape meeting --endpoints 8 --netns --duration 3`.
    Knee {
        #[command(flatten)]
        common: Common,
        /// ringbridge (default), null or janus.
        #[arg(long, default_value = "ringbridge")]
        target: TargetKind,
        /// Conferences of the first step (`--conferences` is not used).
        #[arg(long, default_value_t = 1)]
        start: usize,
        /// Conferences the search never goes beyond.
        #[arg(long, default_value_t = 512)]
        max_conferences: usize,
        /// The highest loss a step may show and still count as carried, as a
        /// ratio (0, the default: none at all).
        #[arg(long, default_value_t = 0.0)]
        max_loss: f64,
    },
    /// A long run that samples the bridge's resident memory and open
    /// descriptors (bench/src/soak.rs); `--duration` is the soak's length.
    Soak {
        #[command(flatten)]
        common: Common,
        /// Seconds between samples.
        #[arg(long, default_value_t = 10.0)]
        every: f64,
        /// Seconds of warm-up (from the start of media) before the first sample
        /// that growth is measured from.
        #[arg(long, default_value_t = 60.0)]
        settle: f64,
    },
    /// Floods a bridge's media ports with hostile datagrams as fast as one
    /// thread can (bench/src/flood.rs) and prints what it sent as one JSON line.
    Flood {
        /// A media port to flood (repeat for several).
        #[arg(long = "to", required = true)]
        to: Vec<SocketAddr>,
        /// The STUN USERNAME (`bridge-ufrag:client-ufrag`) of the endpoint at the
        /// matching `--to`, for Binding requests with a wrong MESSAGE-INTEGRITY.
        /// Give one per `--to` or none (then no `stun` kind).
        #[arg(long = "stun-username")]
        stun_username: Vec<String>,
        /// An inherited UDP socket descriptor of a live endpoint: captured SRTP
        /// is replayed from it (its validated address).
        #[arg(long, requires_all = ["replay_file", "replay_to"])]
        replay_fd: Option<i32>,
        /// The captured datagrams, one per line in hex.
        #[arg(long)]
        replay_file: Option<PathBuf>,
        /// Where the endpoint sends (its port on the bridge).
        #[arg(long)]
        replay_to: Option<SocketAddr>,
        /// Kinds to send, comma-separated: garbage, stun, unknown, oversized, replay
        /// (default: all that the other options make possible).
        #[arg(long, value_delimiter = ',')]
        kinds: Vec<ringbridge_bench::flood::FloodKind>,
        /// Seconds.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Sockets the unknown addresses send from.
        #[arg(long, default_value_t = 8)]
        sources: usize,
        /// Pin the flooding thread to this core.
        #[arg(long)]
        core: Option<usize>,
    },
    /// The null forwarder itself (the bench starts it as a child process).
    NullForwarder {
        /// Address to bind.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
}

#[derive(Args, Debug)]
struct Common {
    /// meeting, meeting-simulcast, livestream or audio-room.
    #[arg(long, default_value = "meeting")]
    shape: Shape,
    /// Conferences.
    #[arg(long, default_value_t = 1)]
    conferences: usize,
    /// Endpoints per conference, publishers included.
    #[arg(long, default_value_t = 4)]
    endpoints: usize,
    /// Speakers per conference (audio-room).
    #[arg(long, default_value_t = 2)]
    speakers: usize,
    /// Measured seconds (per round).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of media before measuring (slots open, keyframes, caches).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// SRTP profile: gcm or cm-sha1.
    #[arg(long, default_value = "gcm")]
    profile: ProfileChoice,
    /// The bridge's I/O backend (media.io): uring, mmsg, auto or xdp. xdp
    /// needs --netns (AF_XDP on the namespace's veth; `compare` then runs
    /// ringbridge on io_uring beside it) and no --loss (the XDP program
    /// takes media before nftables could drop it).
    #[arg(long, default_value = "uring")]
    io: String,
    /// Write the JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write an SVG plot of pps and latency over time here.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// A running bridge's public URL (http://127.0.0.1:9090); CPU figures are then left out.
    #[arg(long)]
    url: Option<String>,
    /// That bridge's auth.app_secret.
    #[arg(long)]
    secret: Option<String>,
    /// The ringbridge binary (default: next to this one).
    #[arg(long)]
    bridge_bin: Option<PathBuf>,
    /// Core the target is pinned to.
    #[arg(long, default_value_t = 1)]
    target_core: usize,
    /// Core the generator is pinned to.
    #[arg(long, default_value_t = 0)]
    generator_core: usize,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Run ringbridge and the null forwarder in network namespaces of their own
    /// behind a veth pair, as Janus always is (needs root and `ip`). The default for
    /// `compare`.
    #[arg(long)]
    netns: bool,
    /// Drop PERCENT of the media datagrams at random each way (to and from the
    /// target) with nftables inside the target's namespace, once every leg is
    /// connected. Needs `--netns` (and `nft`, package nftables).
    #[arg(long, value_name = "PERCENT", default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=99))]
    loss: u8,
    /// Run ringbridge in single-port mode (`media.port`): every endpoint on
    /// this one UDP port. 0 (the default): a port per endpoint from
    /// `media.port_range`.
    #[arg(long, value_name = "PORT", default_value_t = 0)]
    media_port: u16,
    /// Shorthand for `--media-port 10000`.
    #[arg(long, conflicts_with = "media_port")]
    single_port: bool,
    /// Authenticate, decrypt and check every Nth received media packet of
    /// each receive slot (at random positions, N on average); the others are
    /// accounted from their plaintext RTP header (sequence continuity, loss,
    /// latency by the send time of the packet the header names). 1: every
    /// packet. Default: 1 for run, compare and scale (their checks catch any
    /// single damaged packet), 16 for knee and soak (so that one generator
    /// thread keeps up with the bridge).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    verify_every: Option<u32>,
}

impl Common {
    /// The `media.port` the bridge gets (0: a port per endpoint).
    fn media_port(&self) -> u16 {
        if self.single_port {
            10_000
        } else {
            self.media_port
        }
    }
}

fn settings(c: &Common) -> Result<Settings, BenchError> {
    if !matches!(c.io.as_str(), "uring" | "mmsg" | "auto" | "xdp") {
        return Err(BenchError::Config(format!(
            "--io {:?}: expected uring, mmsg, auto or xdp",
            c.io
        )));
    }
    if c.io == "xdp" && (!c.netns || c.loss > 0 || c.media_port() != 0 || c.url.is_some()) {
        return Err(BenchError::Config(
            "--io xdp runs AF_XDP on the veth of the bridge's namespace: it needs --netns \
             (compare's default), and takes no --loss (the XDP program takes media before \
             nftables sees it), no --media-port (single-port mode is not supported over \
             AF_XDP) and no --url"
                .into(),
        ));
    }
    if !(c.duration > 0.0 && c.warmup >= 0.0) {
        return Err(BenchError::Config(
            "--duration must be > 0 and --warmup >= 0".into(),
        ));
    }
    if c.media_port() != 0 && c.media_port() < 1024 {
        return Err(BenchError::Config(format!(
            "--media-port {}: expected 0 or a port from 1024 to 65535",
            c.media_port()
        )));
    }
    if c.media_port() != 0 && c.url.is_some() {
        return Err(BenchError::Config(
            "--media-port configures the bridge the bench starts; with --url set media.port              in that bridge's configuration instead"
                .into(),
        ));
    }
    if c.loss > 0 && !c.netns {
        return Err(BenchError::Config(
            "--loss drops datagrams with nftables inside the target's network namespace: \
             it needs --netns (and, for compare, no --loopback)"
                .into(),
        ));
    }
    let plan =
        Plan::new(c.shape, c.conferences, c.endpoints, c.speakers).map_err(BenchError::Config)?;
    let info = RunInfo {
        shape: c.shape.name().into(),
        profile: c.profile.name().into(),
        conferences: c.conferences,
        endpoints: c.endpoints,
        speakers: plan.speakers,
        duration_s: c.duration,
        warmup_s: c.warmup,
        io: c.io.clone(),
        loss_injected_percent: c.loss,
        media_port: c.media_port(),
        verify_every: c.verify_every.unwrap_or(1),
    };
    Ok(Settings {
        plan,
        opts: RunOptions {
            profile: c.profile,
            io: c.io.clone(),
            target_core: c.target_core,
            generator_core: c.generator_core,
            bridge_bin: c.bridge_bin.clone(),
            url: c.url.clone(),
            secret: c.secret.clone(),
            connect_timeout: Duration::from_secs(30),
            run_tag: format!("{}-{:08x}", std::process::id(), rand::random::<u32>()),
            netns: c.netns,
            loss_percent: c.loss,
            media_port: c.media_port(),
            media_ports: u16::try_from(c.conferences * c.endpoints + 200).unwrap_or(u16::MAX),
            signalling_parallel: 1,
        },
        engine: EngineConfig {
            warmup: Duration::from_secs_f64(c.warmup),
            duration: Duration::from_secs_f64(c.duration),
            drain: Duration::from_millis(300),
            bucket: Duration::from_millis(250),
            progress: !c.quiet,
            label: String::new(),
            verify_every: c.verify_every.unwrap_or(1),
        },
        info,
    })
}

/// `knee` and `soak`: without `--verify-every`, a sample of the received
/// packets is verified ([`DEFAULT_SAMPLED_VERIFY_EVERY`]).
fn sampled(mut s: Settings, c: &Common) -> Settings {
    if c.verify_every.is_none() {
        s.engine.verify_every = DEFAULT_SAMPLED_VERIFY_EVERY;
        s.info.verify_every = DEFAULT_SAMPLED_VERIFY_EVERY;
    }
    s
}

fn output(c: &Common, report: &Report) -> Result<(), BenchError> {
    print!("{}", report.table());
    if let Some(path) = &c.json {
        let text = serde_json::to_string_pretty(&report.to_json())
            .map_err(|e| BenchError::Config(format!("JSON: {e}")))?;
        std::fs::write(path, text + "\n")?;
    }
    if let Some(path) = &c.plot {
        let title = format!(
            "{} · {} · {}×{} endpoints · {}",
            report.primary.target,
            report.info.shape,
            report.info.conferences,
            report.info.endpoints,
            report.info.profile
        );
        std::fs::write(path, plot::svg(&title, &report.timeline))?;
    }
    Ok(())
}

/// Prints a search's or a long run's table and writes its JSON to `json`.
fn print_and_save(
    table: &str,
    json: Option<&std::path::Path>,
    report: &impl serde::Serialize,
) -> Result<(), BenchError> {
    print!("{table}");
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(report)
            .map_err(|e| BenchError::Config(format!("JSON: {e}")))?;
        std::fs::write(path, text + "\n")?;
    }
    Ok(())
}

fn pin_generator(c: &Common) {
    if sys::available_cores() < 2 || c.target_core == c.generator_core {
        eprintln!("warning: generator and target share a core: CPU figures are not comparable");
    }
    if let Err(e) = sys::pin_current_thread(c.generator_core) {
        eprintln!(
            "warning: cannot pin the generator to core {}: {e}",
            c.generator_core
        );
    }
}

struct FloodArgs {
    to: Vec<SocketAddr>,
    stun_username: Vec<String>,
    replay_fd: Option<i32>,
    replay_file: Option<PathBuf>,
    replay_to: Option<SocketAddr>,
    kinds: Vec<FloodKind>,
    duration: f64,
    sources: usize,
    core: Option<usize>,
}

fn flood(a: FloodArgs) -> Result<(), BenchError> {
    if a.duration.is_nan() || a.duration <= 0.0 {
        return Err(BenchError::Config("--duration must be > 0".into()));
    }
    if !a.stun_username.is_empty() && a.stun_username.len() != a.to.len() {
        return Err(BenchError::Config(
            "give one --stun-username per --to, or none".into(),
        ));
    }
    let targets =
        a.to.iter()
            .enumerate()
            .map(|(i, &addr)| FloodTarget {
                addr,
                stun_username: a.stun_username.get(i).cloned(),
            })
            .collect();
    let replay = match (a.replay_fd, &a.replay_file, a.replay_to) {
        (Some(fd), Some(file), Some(to)) => {
            let packets = flood::read_replay_file(&std::fs::read_to_string(file)?)?;
            // SAFETY: the descriptor was handed down by the parent for this
            // use only; nothing else in this process opens or owns it.
            let socket = unsafe { flood::inherited_socket(fd) };
            Some(Replay {
                socket,
                to,
                packets,
            })
        }
        _ => None,
    };
    let kinds = if a.kinds.is_empty() {
        FloodKind::ALL
            .into_iter()
            .filter(|k| match k {
                FloodKind::Replay => replay.is_some(),
                FloodKind::Stun => !a.stun_username.is_empty(),
                _ => true,
            })
            .collect()
    } else {
        a.kinds
    };
    if let Some(core) = a.core
        && let Err(e) = sys::pin_current_thread(core)
    {
        eprintln!("warning: cannot pin the flood to core {core}: {e}");
    }
    let report = flood::run(&FloodConfig {
        targets,
        replay,
        kinds,
        duration: Duration::from_secs_f64(a.duration),
        sources: a.sources,
    })?;
    let line =
        serde_json::to_string(&report).map_err(|e| BenchError::Config(format!("JSON: {e}")))?;
    println!("{line}");
    Ok(())
}

fn main_inner() -> Result<(), BenchError> {
    let cli = Cli::parse();
    if !matches!(cli.cmd, Cmd::NullForwarder { .. }) {
        interrupt::install()?;
    }
    match cli.cmd {
        Cmd::NullForwarder { listen } => null::serve(listen),
        Cmd::Scale {
            common,
            wave,
            parallel,
            rounds,
        } => {
            if common.url.is_some() {
                return Err(BenchError::Config(
                    "scale measures a bridge it starts: no --url".into(),
                ));
            }
            let mut s = settings(&common)?;
            s.opts.signalling_parallel = parallel.max(1);
            pin_generator(&common);
            let report = scale::run_rounds(
                &ScaleConfig {
                    plan: s.plan,
                    opts: s.opts,
                    wave,
                },
                rounds,
            )?;
            print_and_save(&report.table(), common.json.as_deref(), &report)?;
            Ok(())
        }
        Cmd::Soak {
            common,
            every,
            settle,
        } => {
            if common.url.is_some() {
                return Err(BenchError::Config(
                    "soak samples a bridge it starts: no --url".into(),
                ));
            }
            if !(every > 0.0 && settle >= 0.0) {
                return Err(BenchError::Config(
                    "--every must be > 0 and --settle >= 0".into(),
                ));
            }
            let s = sampled(settings(&common)?, &common);
            pin_generator(&common);
            let report = soak::run(&SoakConfig {
                plan: s.plan,
                opts: s.opts,
                engine: s.engine,
                every: Duration::from_secs_f64(every),
                settle: Duration::from_secs_f64(settle),
            })?;
            print_and_save(&report.table(), common.json.as_deref(), &report)?;
            if report.passed() {
                Ok(())
            } else {
                Err(BenchError::Target(
                    "soak: memory grew 1% or more, descriptors changed, the bridge died, or verified media failed its checks".into(),
                ))
            }
        }
        Cmd::Flood {
            to,
            stun_username,
            replay_fd,
            replay_file,
            replay_to,
            kinds,
            duration,
            sources,
            core,
        } => flood(FloodArgs {
            to,
            stun_username,
            replay_fd,
            replay_file,
            replay_to,
            kinds,
            duration,
            sources,
            core,
        }),
        Cmd::Knee {
            common,
            target,
            start,
            max_conferences,
            max_loss,
        } => {
            if common.url.is_some() {
                return Err(BenchError::Config(
                    "knee starts a fresh target per step: no --url".into(),
                ));
            }
            if !(0.0..1.0).contains(&max_loss) {
                return Err(BenchError::Config(format!(
                    "--max-loss {max_loss}: expected a ratio from 0 to below 1"
                )));
            }
            let s = sampled(settings(&common)?, &common);
            pin_generator(&common);
            let report = knee::run(&KneeConfig {
                settings: s,
                shape: common.shape,
                endpoints: common.endpoints,
                speakers: common.speakers,
                kind: target,
                start,
                max: max_conferences,
                max_loss,
            })?;
            print_and_save(&report.table(), common.json.as_deref(), &report)?;
            Ok(())
        }
        Cmd::Run { common, target } => {
            if target == TargetKind::Ringbridge && common.url.is_some() {
                eprintln!("note: --url: the bridge is not ours, CPU figures are left out");
            } else if common.url.is_some() {
                return Err(BenchError::Config(
                    "--url only applies to --target ringbridge".into(),
                ));
            }
            if common.netns && common.url.is_some() {
                return Err(BenchError::Config(
                    "--netns starts the target in a namespace; --url names a running one".into(),
                ));
            }
            let s = settings(&common)?;
            pin_generator(&common);
            let report = runner::run(target, &s)?;
            output(&common, &report)
        }
        Cmd::Compare {
            mut common,
            rounds,
            loopback,
        } => {
            if rounds == 0 {
                return Err(BenchError::Config(
                    "compare needs --rounds 1 or more".into(),
                ));
            }
            if rounds < 3 {
                eprintln!(
                    "note: --rounds {rounds}: fewer than 3 rounds give no spread; the ratios \
                     are indicative only"
                );
            }
            if common.url.is_some() {
                return Err(BenchError::Config(
                    "compare starts its own targets; --url is for run".into(),
                ));
            }
            if loopback && common.netns {
                return Err(BenchError::Config(
                    "--loopback and --netns contradict each other".into(),
                ));
            }
            // All three targets behind the same kind of veth pair, so that their packets
            // take the same kernel path; --loopback opts out.
            common.netns = !loopback;
            if loopback {
                eprintln!(
                    "note: --loopback: Janus runs behind a veth pair, ringbridge and the null \
                     forwarder on loopback (a different kernel path)"
                );
            }
            let s = settings(&common)?;
            pin_generator(&common);
            let report = runner::compare(&s, rounds)?;
            output(&common, &report)
        }
    }
}

fn main() -> ExitCode {
    match main_inner() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ BenchError::Interrupted) => {
            eprintln!("ringbridge-bench: {e}");
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("ringbridge-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
