//! The `ringbridge` binary: `run` the bridge, mint a `token`, `tune` the host,
//! or print and check a `config`.

mod cli;

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use ringbridge_bridge::config::{self, Config};
use ringbridge_bridge::io::xdp::XdpPlane;
use ringbridge_bridge::io::{
    Backend, ShardSpec, choose_backend, host_address, spawn_shard, spawn_tcp_listener,
    spawn_xdp_shard,
};
use ringbridge_bridge::plane::ShardedMediaPlane;
use ringbridge_bridge::proto::shard::ShardConfig;
use ringbridge_control::media::{MediaEvent, MediaPlane};
use ringbridge_control::token::{TokenRequest, mint_token, random_secret};
use ringbridge_control::{ControlSettings, bind};

/// ringbridge: a WebRTC media bridge (SFU) for self-hosted video conferencing.
#[derive(Debug, Parser)]
#[command(name = "ringbridge", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the bridge. Without --config (or with --dev) in dev mode: a random
    /// secret unless one is configured, and a join link for room "demo"
    /// (printed on a terminal, else written to a file only you can read).
    Run {
        /// Configuration file (TOML); it must set a key (`auth.app_secret`,
        /// `auth.public_keys_dir` or `auth.jwks_file`) unless --dev is given.
        /// Default: the embedded default configuration, in dev mode.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Dev mode with a configuration file: start without a key (a random
        /// secret is made) and announce a join link.
        #[arg(long)]
        dev: bool,
    },
    /// Print a token (JWT) signed with the configured `auth.app_secret`.
    Token {
        /// Room the token is for (`*` for any room).
        #[arg(long)]
        room: String,
        /// Make the holder an owner (affiliation `owner`).
        #[arg(long)]
        owner: bool,
        /// Display name (`context.user.name`).
        #[arg(long)]
        name: Option<String>,
        /// Lifetime, e.g. `90s`, `30m`, `1h`, `2d`.
        #[arg(long, default_value = "1h", value_parser = parse_ttl)]
        ttl: Duration,
        /// Configuration file (TOML) holding `auth.app_secret`.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print a link that opens the room page with the token
        /// (`<public.url>/<room>#jwt=<token>`; without `public.url`, built from
        /// `public.listen`) instead of the bare token.
        #[arg(long)]
        link: bool,
    },
    /// Check the host against the tuning profile, or apply it.
    Tune {
        #[command(subcommand)]
        command: cli::tune::TuneCommand,
    },
    /// Print the default configuration, or validate a configuration file.
    Config {
        #[command(subcommand)]
        command: cli::config_cmd::ConfigCommand,
    },
}

fn parse_ttl(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 90s, 30m, 1h or 2d"))?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("`{s}`: unit must be s, m, h or d")),
    };
    if n == 0 {
        return Err("ttl must be positive".into());
    }
    n.checked_mul(mult)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("`{s}` is too long"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `run` sets up logging from its configuration (log.level, log.format).
    if !matches!(cli.command, Command::Run { .. }) {
        cli::logging::init(&config::LogConfig::default());
    }
    let result = match cli.command {
        Command::Run { config, dev } => run(config, dev),
        Command::Token {
            room,
            owner,
            name,
            ttl,
            config,
            link,
        } => token(config, room, owner, name, ttl, link),
        Command::Tune { command } => cli::tune::run(command),
        Command::Config { command } => cli::config_cmd::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringbridge: {e}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(path: Option<PathBuf>) -> Result<Config, String> {
    match path {
        Some(p) => Config::load(&p).map_err(|e| format!("config {}: {e}", p.display())),
        None => Config::parse(config::DEFAULT_CONFIG)
            .map_err(|e| format!("embedded default config: {e}")),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn token(
    path: Option<PathBuf>,
    room: String,
    owner: bool,
    name: Option<String>,
    ttl: Duration,
    link: bool,
) -> Result<(), String> {
    if link && room == "*" {
        return Err("--link needs a room name: a token for any room (*) opens no page".into());
    }
    let cfg = load_config(path)?;
    let Some(secret) = cfg.auth.app_secret.as_deref() else {
        return Err(
            "auth.app_secret is not set in the configuration, and tokens are signed with it \
             (`ringbridge config init-secret FILE` writes one; a bridge in dev mode makes a \
             throwaway secret and hands out its own join link)"
                .into(),
        );
    };
    let req = TokenRequest {
        room,
        owner,
        name,
        ttl,
        now_unix: unix_now(),
    };
    let room = req.room.clone();
    let jwt = mint_token(&cfg.auth, secret, &req).map_err(|e| e.to_string())?;
    if link {
        let base = cli::link::base_url(&cfg.public, cfg.public.listen);
        println!("{}", cli::link::room_link(&base, &room, &jwt));
    } else {
        println!("{jwt}");
    }
    Ok(())
}

/// Cores for the shards: configured, or all but core 0 (the control plane's).
fn shard_cores(cfg: &Config) -> Vec<Option<usize>> {
    if !cfg.media.cores.is_empty() {
        return cfg.media.cores.iter().map(|&c| Some(c)).collect();
    }
    let n = config::available_cores();
    if n <= 1 {
        vec![Some(0)]
    } else {
        (1..n).map(Some).collect()
    }
}

fn run(path: Option<PathBuf>, dev: bool) -> Result<(), String> {
    // Dev mode only for the README's `run` (no --config) or when asked for.
    let dev_mode = dev || path.is_none();
    let shown = path.as_ref().map(|p| p.display().to_string());
    let cfg = load_config(path)?;
    if !dev_mode {
        cfg.require_key()
            .map_err(|e| format!("config {}: {e}", shown.as_deref().unwrap_or_default()))?;
    }
    cli::logging::init(&cfg.log);
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        config = shown.as_deref().unwrap_or("(embedded default)"),
        dev_mode,
        "ringbridge {} starting",
        env!("CARGO_PKG_VERSION")
    );
    let choice = choose_backend(cfg.media.io)?;
    if let Some(reason) = &choice.fallback_reason {
        tracing::warn!(%reason, "io_uring unavailable; shards use recvmmsg/sendmmsg");
    }
    cli::tune::warn_below_profile(&cfg);
    // Without auth.app_secret (dev mode, or only public keys configured), HMAC
    // tokens are checked against a random secret nobody else knows.
    let secret_source = if cfg.auth.app_secret.is_some() {
        cli::dev::SecretSource::Configured
    } else {
        cli::dev::SecretSource::Random
    };
    let secret = cfg.auth.app_secret.clone().unwrap_or_else(random_secret);
    let advertise: Vec<IpAddr> = if cfg.media.advertise.is_empty() {
        vec![host_address()]
    } else {
        cfg.media.advertise.clone()
    };
    let certificate = dimpl::certificate::generate_self_signed_certificate()
        .map_err(|e| format!("cannot make the DTLS certificate: {e:?}"))?;

    let cores = shard_cores(&cfg);
    let [lo, hi] = cfg.media.port_range;
    let total = u32::from(hi - lo) + 1;
    let n = cores.len() as u32;
    let max_shards = ringbridge_bridge::proto::ice::MAX_SHARDS;
    if cfg.media.port != 0 && cores.len() > max_shards {
        return Err(format!(
            "media.port: single-port mode finds a datagram's shard from its ICE ufrag, which \
             names at most {max_shards} shards; media.cores gives {n}"
        ));
    }
    let single_port = match cfg.media.port {
        0 => None,
        port => Some(
            ringbridge_bridge::io::SinglePort::bind(cfg.media.bind, port, cores.len(), true)
                .map_err(|e| {
                    format!(
                        "media.port: cannot bind UDP {}:{port} for {n} shards: {e}",
                        cfg.media.bind
                    )
                })?,
        ),
    };
    if single_port.is_none() && total < n {
        return Err(format!(
            "media.port_range: {total} ports cannot be split among {n} shards"
        ));
    }
    // media.io = "xdp": attach the XDP program and bind the AF_XDP socket now,
    // or refuse to start with the reason.
    let xdp = if choice.backend == Backend::Xdp {
        let slices: Vec<(u16, u16)> = (0..n).map(|i| shard_ports(lo, total, n, i)).collect();
        let plane = XdpPlane::start(&cfg.media.xdp_interface, cfg.media.bind, &slices).map_err(
            |reason| {
                format!(
                    "media.io = \"xdp\" cannot run on {:?}: {reason}",
                    cfg.media.xdp_interface
                )
            },
        )?;
        tracing::info!(
            interface = %cfg.media.xdp_interface,
            mode = plane.backend_name(),
            "AF_XDP data path attached"
        );
        Some(std::sync::Arc::new(plane))
    } else {
        None
    };
    let io_backend = xdp
        .as_ref()
        .map_or(choice.backend.name(), |p| p.backend_name());
    let (internal_tx, mut internal_rx) = ringbridge_bridge::io::event_channel();
    let mut handles = Vec::with_capacity(cores.len());
    for (i, core) in cores.iter().enumerate() {
        let spec = ShardSpec {
            index: i,
            core: *core,
            ports: shard_ports(lo, total, n, i as u32),
            bind: cfg.media.bind,
            core_config: ShardConfig {
                advertise: advertise.clone(),
                certificate: certificate.clone(),
                srtp_profiles: cfg.media.srtp_profiles.clone(),
                video_start_bitrate_kbps: cfg.media.video_start_bitrate_kbps,
                index: i,
                tcp_port: (cfg.media.tcp_port != 0).then_some(cfg.media.tcp_port),
                single_port: single_port.as_ref().map(|sp| sp.port()),
                audio_last_n: cfg.media.audio_last_n,
                drop_silence: cfg.media.drop_silence,
            },
            single_port: single_port.clone(),
        };
        let handle = match &xdp {
            Some(plane) => spawn_xdp_shard(spec, plane, internal_tx.clone()),
            None => spawn_shard(spec, choice.backend, internal_tx.clone()),
        }
        .map_err(|e| format!("cannot start shard {i}: {e}"))?;
        handles.push(handle);
    }
    drop(internal_tx);
    // From here on this thread is the control plane's: both accept loops,
    // every connection, the media-event and stats tasks run on it (the
    // current-thread runtime below), pinned to core 0 with the ICE-TCP
    // listener it starts. It was a one-worker multi-thread runtime whose
    // `block_on` ran the accept loops on this unpinned thread and each
    // connection on the worker: a wake-up across threads per connection.
    // Alternating `ringbridge-bench scale` storms (18 of 1,000 to 5,000 joins,
    // 54,000 per binary): 257 -> 250 us of bridge CPU per join, and a third
    // fewer context switches (`perf stat`: 5.2 -> 3.5-4.2 per join).
    let control_core = core_affinity::CoreId { id: 0 };
    if !core_affinity::set_for_current(control_core) {
        tracing::debug!(core = control_core.id, "cannot pin the control plane");
    }
    let tcp = if cfg.media.tcp_port == 0 {
        None
    } else {
        let addr = std::net::SocketAddr::new(cfg.media.bind, cfg.media.tcp_port);
        let listener = spawn_tcp_listener(addr, handles.clone())
            .map_err(|e| format!("media.tcp_port: cannot listen on TCP {addr}: {e}"))?;
        Some(listener)
    };
    tracing::info!(
        shards = handles.len(),
        cores = ?cores.iter().flatten().collect::<Vec<_>>(),
        io_backend,
        advertise = ?advertise,
        ports = ?single_port.is_none().then_some(cfg.media.port_range),
        single_port = ?single_port.as_ref().map(|sp| sp.port()),
        steered = single_port.as_ref().is_some_and(|sp| sp.steered()),
        tcp_port = cfg.media.tcp_port,
        "media plane started"
    );
    let mut plane = ShardedMediaPlane::new(handles);
    if let Some(listener) = tcp {
        plane = plane.with_tcp_listener(listener.stats);
    }
    let plane = Arc::new(plane);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the control runtime: {e}"))?;

    let result = runtime.block_on(async {
        let (events_tx, events_rx) = tokio::sync::mpsc::unbounded_channel();
        let forward_plane = plane.clone();
        tokio::spawn(async move {
            while let Some(ev) = internal_rx.recv().await {
                if let MediaEvent::EndpointExpired { conference, .. } = &ev {
                    forward_plane.endpoint_expired(conference);
                }
                if events_tx.send(ev).is_err() {
                    break;
                }
            }
        });
        let mut settings = ControlSettings::new(
            cfg.server_id.clone(),
            cfg.public.clone(),
            cfg.private.clone(),
            cfg.auth.clone(),
            secret.clone(),
        );
        settings.load = cfg.load.clone();
        settings.shutdown_timeout = Duration::from_secs(cfg.shutdown_timeout_s);
        let control = bind(settings, plane.clone(), events_rx)
            .await
            .map_err(|e| e.to_string())?;
        let public = control.public_addr();
        let link_file = if dev_mode {
            dev_banner(&cfg, &secret, secret_source, public)?
        } else {
            None
        };
        let stop = shutdown_signals(control.shutdown_handle());
        cli::systemd::notify(ringbridge_tuning::systemd::READY);
        let watched = plane.clone();
        cli::systemd::spawn_watchdog(move || watched.health());
        let result = control.run(stop).await.map_err(|e| e.to_string());
        cli::systemd::notify(ringbridge_tuning::systemd::STOPPING);
        drop(link_file);
        result
    });
    plane.shutdown();
    tracing::info!("ringbridge stopped");
    result
}

/// Dev mode's owner token for room `demo` and its link (see [`cli::dev`]).
fn dev_banner(
    cfg: &Config,
    secret: &str,
    source: cli::dev::SecretSource,
    public: std::net::SocketAddr,
) -> Result<Option<cli::dev::LinkFile>, String> {
    let req = TokenRequest {
        room: "demo".into(),
        owner: true,
        name: Some("dev".into()),
        ttl: Duration::from_secs(24 * 3600),
        now_unix: unix_now(),
    };
    let jwt = mint_token(&cfg.auth, secret, &req).map_err(|e| format!("dev token: {e}"))?;
    let base = cli::link::base_url(&cfg.public, public);
    let link = cli::link::room_link(&base, &req.room, &jwt);
    let join_url = format!("{base}/conferences/{}/endpoints", req.room);
    cli::dev::announce(source, &req.room, &link, &jwt, &join_url)
}

/// The first SIGTERM or SIGINT starts a graceful shutdown (new joins refused,
/// conferences may end, up to `shutdown_timeout_s`); a second one stops now.
async fn shutdown_signals(handle: ringbridge_control::ShutdownHandle) {
    shutdown_signal().await;
    cli::systemd::notify(ringbridge_tuning::systemd::STOPPING);
    tracing::info!("graceful shutdown; signal again to stop at once");
    handle.graceful();
    shutdown_signal().await;
    tracing::warn!("second signal: stopping at once");
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("shutting down");
}

/// Shard `i`'s slice (inclusive) of the `total` ports from `lo`, split among `n`.
fn shard_ports(lo: u16, total: u32, n: u32, i: u32) -> (u16, u16) {
    let first = u32::from(lo) + total * i / n;
    let last = u32::from(lo) + total * (i + 1) / n - 1;
    (first as u16, last as u16)
}

#[cfg(test)]
mod tests {
    use super::parse_ttl;
    use std::time::Duration;

    #[test]
    fn ttl_units() {
        assert_eq!(parse_ttl("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_ttl("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_ttl("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_ttl("45"), Ok(Duration::from_secs(45)));
        assert!(parse_ttl("1w").is_err());
        assert!(parse_ttl("h").is_err());
        assert!(parse_ttl("0s").is_err());
    }
}
