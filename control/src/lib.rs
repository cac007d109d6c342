//! ringbridge's control plane: tokens, signalling, colibri websockets, stats.
//!
//! The control plane owns two HTTP listeners:
//!
//! - the public one (default `0.0.0.0:9090`): `POST /conferences/{room}/endpoints`
//!   (an SDP offer in, an SDP answer out, WHIP-shaped), `DELETE
//!   /conferences/{room}/endpoints/{id}`, and the colibri websocket
//!   `GET /colibri-ws/{server_id}/{room}/{id}?pwd=...`, and the room page
//!   (`GET /`, `GET /{room}`, files under `/_app/`, see [`web`]);
//! - the private one (default `127.0.0.1:8080`): `/about/health`,
//!   `/about/version`, `/colibri/stats`, `POST /colibri/drain/enable|disable`,
//!   `POST /colibri/shutdown`, as jitsi-videobridge, and Prometheus `/metrics`.
//!
//! It never touches packets: it talks to the media plane through the
//! [`MediaPlane`] trait and reads its [`MediaEvent`]s from a channel.
//!
//! ```no_run
//! # async fn demo<M: ringbridge_control::MediaPlane>(media: std::sync::Arc<M>,
//! #     events: ringbridge_control::EventReceiver) -> Result<(), ringbridge_control::ControlError> {
//! use ringbridge_control::{ControlSettings, config::AuthConfig};
//! let settings = ControlSettings::new(
//!     "default-id",
//!     Default::default(),
//!     Default::default(),
//!     AuthConfig::default(),
//!     "a secret".into(),
//! );
//! let control = ringbridge_control::bind(settings, media, events).await?;
//! println!("signalling on {}", control.public_addr());
//! control.run(async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```

pub mod colibri;
pub mod config;
pub mod error;
mod http;
pub mod media;
mod metrics;
mod operator;
mod process;
mod ratelimit;
pub mod receiver_constraints;
mod registry;
pub mod signalling;
pub mod stats;
pub mod token;
pub mod web;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, info};

pub use config::{AuthConfig, LoadConfig, PrivateConfig, PublicConfig};
pub use error::{ApiError, ControlError};
pub use media::{
    ConferenceId, EndpointId, EndpointPolicy, EventReceiver, EventSender, JoinAnswer, JoinRequest,
    MappedSource, MediaError, MediaEvent, MediaPlane, MediaStats, MuteRequest,
    ReceiverConstraintsUpdate, RefusalReason,
};
pub use signalling::valid_room_name;
pub use token::{
    Identity, MintError, TokenError, TokenRequest, TokenVerifier, mint_token, random_secret, verify,
};

pub use operator::ShutdownHandle;

use operator::{Gate, Operator, OperatorState};
use ratelimit::Limits;
use registry::{Caps, Registry};
use signalling::Signalling;
use stats::Sampler;

/// Everything the control plane needs to start.
#[derive(Debug, Clone)]
pub struct ControlSettings {
    /// `server_id`: this bridge's id, the first segment of colibri websocket paths.
    pub server_id: String,
    /// `[public]`: the signalling listener.
    pub public: PublicConfig,
    /// `[private]`: the operator listener.
    pub private: PrivateConfig,
    /// `[auth]`: token rules.
    pub auth: AuthConfig,
    /// The HS256 secret in force: `auth.app_secret`, or the one dev mode generated.
    pub app_secret: String,
    /// How often `/colibri/stats` rates are sampled. [`ControlSettings::new`] uses 1 s.
    pub stats_interval: Duration,
    /// `[load]`: drives `stress_level`. [`ControlSettings::new`] uses the defaults.
    pub load: LoadConfig,
    /// `shutdown_timeout_s`: how long a graceful shutdown waits for conferences
    /// to end. [`ControlSettings::new`] uses [`DEFAULT_SHUTDOWN_TIMEOUT`].
    pub shutdown_timeout: Duration,
}

/// Default of `shutdown_timeout_s`: 600 s.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(600);

impl ControlSettings {
    /// Settings with the default stats interval (1 s).
    pub fn new(
        server_id: impl Into<String>,
        public: PublicConfig,
        private: PrivateConfig,
        auth: AuthConfig,
        app_secret: String,
    ) -> Self {
        Self {
            server_id: server_id.into(),
            public,
            private,
            auth,
            app_secret,
            stats_interval: Duration::from_secs(1),
            load: LoadConfig::default(),
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
        }
    }
}

/// A control plane whose listeners are bound; [`Control::run`] serves them.
pub struct Control<M: MediaPlane> {
    public: TcpListener,
    private: TcpListener,
    public_addr: SocketAddr,
    private_addr: SocketAddr,
    media: Arc<M>,
    events: EventReceiver,
    registry: Arc<Registry>,
    verifier: TokenVerifier,
    server_id: String,
    cors: web::cors::Cors,
    stats_interval: Duration,
    load: LoadConfig,
    shutdown_timeout: Duration,
    state: Arc<OperatorState>,
    limits: Arc<Limits>,
}

impl<M: MediaPlane> std::fmt::Debug for Control<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("public_addr", &self.public_addr)
            .field("private_addr", &self.private_addr)
            .field("server_id", &self.server_id)
            .finish_non_exhaustive()
    }
}

/// Checks `settings` and binds both listeners (port 0 picks a free port; see
/// [`Control::public_addr`]). Nothing is served until [`Control::run`].
pub async fn bind<M: MediaPlane>(
    settings: ControlSettings,
    media: Arc<M>,
    events: EventReceiver,
) -> Result<Control<M>, ControlError> {
    if settings.app_secret.is_empty() {
        return Err(ControlError::Settings("the app secret is empty".into()));
    }
    // The server id is a path segment of every colibri websocket URL.
    if !valid_room_name(&settings.server_id) {
        return Err(ControlError::Settings(format!(
            "server_id {:?} must be 1 to 128 characters of A-Z a-z 0-9 . _ -",
            settings.server_id
        )));
    }
    if settings.stats_interval.is_zero() {
        return Err(ControlError::Settings(
            "stats interval must be positive".into(),
        ));
    }
    let (public, public_addr) = listen("public", settings.public.listen).await?;
    let (private, private_addr) = listen("private", settings.private.listen).await?;
    Ok(Control {
        public,
        private,
        public_addr,
        private_addr,
        media,
        events,
        registry: Arc::new(Registry::with_caps(Caps {
            max_conferences: settings.load.max_conferences,
            max_endpoints_per_conference: settings.load.max_endpoints_per_conference,
        })),
        limits: Arc::new(Limits::new(&settings.public)),
        verifier: TokenVerifier::new(&settings.auth, &settings.app_secret)
            .map_err(|e| ControlError::Settings(e.to_string()))?,
        server_id: settings.server_id,
        cors: web::cors::Cors::new(&settings.public.allowed_origins),
        stats_interval: settings.stats_interval,
        load: settings.load,
        shutdown_timeout: settings.shutdown_timeout,
        state: Arc::new(OperatorState::default()),
    })
}

async fn listen(
    which: &'static str,
    addr: SocketAddr,
) -> Result<(TcpListener, SocketAddr), ControlError> {
    let bind_err = |source| ControlError::Bind {
        which,
        addr,
        source,
    };
    let listener = TcpListener::bind(addr).await.map_err(bind_err)?;
    let local = listener.local_addr().map_err(bind_err)?;
    Ok((listener, local))
}

impl<M: MediaPlane> Control<M> {
    /// The address the public (signalling) listener is bound to.
    pub fn public_addr(&self) -> SocketAddr {
        self.public_addr
    }

    /// The address the private (operator) listener is bound to.
    pub fn private_addr(&self) -> SocketAddr {
        self.private_addr
    }

    /// A handle that asks [`Control::run`] to stop: gracefully (as `POST
    /// /colibri/shutdown`) or at once. Take it before calling `run`.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.state.clone())
    }

    /// Serves both listeners, applies media events and samples stats until
    /// `shutdown` completes, an immediate stop is asked for, or a graceful
    /// shutdown (a [`ShutdownHandle`] or `POST /colibri/shutdown`) has seen the
    /// last conference end or `shutdown_timeout` pass; then stops accepting,
    /// lets requests in flight finish (up to 5 s) and closes every colibri
    /// websocket.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ControlError> {
        let Control {
            public,
            private,
            public_addr,
            private_addr,
            media,
            mut events,
            registry,
            verifier,
            server_id,
            cors,
            stats_interval,
            load,
            shutdown_timeout,
            state,
            limits,
        } = self;
        let (stop_tx, stop_rx) = watch::channel(false);
        let sampler = Arc::new(Sampler::default());

        let signalling_core = Arc::new(Signalling {
            media: media.clone(),
            registry: registry.clone(),
            verifier,
            server_id,
            cors,
            limits: limits.clone(),
        });
        // Events go through signalling: an expiry may start an owner grace period.
        let event_signalling = signalling_core.clone();
        let event_task = tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                event_signalling.handle_event(event);
            }
            debug!("media event channel closed");
        });
        let sampler_task = tokio::spawn({
            let (media, sampler) = (media.clone(), sampler.clone());
            async move {
                let mut tick = tokio::time::interval(stats_interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    sampler.record(Instant::now(), media.stats());
                }
            }
        });

        let signalling = Arc::new(Gate {
            inner: signalling_core,
            state: state.clone(),
            registry: registry.clone(),
            sampler: sampler.clone(),
            max_packet_rate: load.max_packet_rate,
        });
        let operator = Arc::new(Operator {
            media,
            sampler,
            state: state.clone(),
            load,
            registry: registry.clone(),
            limits,
        });
        info!(public = %public_addr, private = %private_addr, "control plane listening");
        let stop_registry = registry.clone();
        let stop = async move {
            tokio::select! {
                () = shutdown => {}
                () = state.stopped(&stop_registry, shutdown_timeout) => {}
            }
            info!("control plane stopping");
            let _ = stop_tx.send(true);
        };
        tokio::join!(
            stop,
            http::serve(public, "public", signalling, stop_rx.clone()),
            http::serve(private, "private", operator, stop_rx),
        );
        registry.close_all_sockets();
        event_task.abort();
        sampler_task.abort();
        Ok(())
    }
}
