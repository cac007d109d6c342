//! The private (operator) listener: jitsi-videobridge's health, version, stats,
//! drain and shutdown paths, and Prometheus `/metrics`; plus the gate in front
//! of signalling that drain and graceful shutdown close.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::watch;
use tracing::info;

use crate::config::LoadConfig;
use crate::error::{ApiError, ErrorCode};
use crate::http::{Body, Handler, response, segments};
use crate::media::{ConferenceId, MediaPlane};
use crate::metrics;
use crate::process::ProcessStats;
use crate::ratelimit::Limits;
use crate::registry::Registry;
use crate::stats::{ControlView, Sampler, stats_json, stress_level};

/// Largest body accepted on `POST /colibri/shutdown`.
const MAX_SHUTDOWN_BODY: usize = 1024;

/// How often a graceful shutdown looks whether the last conference ended.
const SHUTDOWN_POLL: Duration = Duration::from_millis(200);

/// What was asked of the control plane's lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopRequest {
    /// Keep running.
    None,
    /// Refuse new joins, wait for conferences to end (or the timeout), stop.
    Graceful,
    /// Stop now.
    Now,
}

/// Drain and shutdown state, shared by both listeners and [`ShutdownHandle`]s.
pub(crate) struct OperatorState {
    drain: AtomicBool,
    graceful: AtomicBool,
    conferences_created: AtomicU64,
    /// Joins answered with an error, by error code.
    joins_refused: Mutex<BTreeMap<&'static str, u64>>,
    stop: watch::Sender<StopRequest>,
}

impl Default for OperatorState {
    fn default() -> Self {
        Self {
            drain: AtomicBool::new(false),
            graceful: AtomicBool::new(false),
            conferences_created: AtomicU64::new(0),
            joins_refused: Mutex::new(BTreeMap::new()),
            stop: watch::Sender::new(StopRequest::None),
        }
    }
}

impl OperatorState {
    fn count_refusal(&self, code: &'static str) {
        let mut refused = self.joins_refused.lock().unwrap_or_else(|p| p.into_inner());
        *refused.entry(code).or_insert(0) += 1;
    }

    fn joins_refused(&self) -> Vec<(&'static str, u64)> {
        let refused = self.joins_refused.lock().unwrap_or_else(|p| p.into_inner());
        refused.iter().map(|(&code, &n)| (code, n)).collect()
    }

    fn draining(&self) -> bool {
        self.drain.load(Ordering::Relaxed)
    }

    fn shutting_down(&self) -> bool {
        self.graceful.load(Ordering::Relaxed)
    }

    fn request(&self, req: StopRequest) {
        self.stop.send_if_modified(|cur| {
            // Now wins over Graceful; nothing goes back to None.
            let upgrade = matches!(
                (*cur, req),
                (StopRequest::None, StopRequest::Graceful | StopRequest::Now)
                    | (StopRequest::Graceful, StopRequest::Now)
            );
            if upgrade {
                *cur = req;
            }
            upgrade
        });
        if req == StopRequest::Graceful {
            self.graceful.store(true, Ordering::Relaxed);
        }
    }

    /// Completes when a stop was asked for and, for a graceful one, when the
    /// last conference ended or `timeout` passed (an immediate stop asked for
    /// meanwhile cuts the wait short).
    pub(crate) async fn stopped(&self, registry: &Registry, timeout: Duration) {
        let mut rx = self.stop.subscribe();
        let Ok(req) = rx.wait_for(|r| *r != StopRequest::None).await.map(|r| *r) else {
            return std::future::pending().await;
        };
        if req == StopRequest::Now {
            info!("immediate shutdown asked for");
            return;
        }
        let deadline = Instant::now() + timeout;
        info!(
            conferences = registry.conference_count(),
            timeout_s = timeout.as_secs(),
            "graceful shutdown: refusing new joins, waiting for conferences to end"
        );
        loop {
            let left = registry.conference_count();
            if left == 0 {
                info!("graceful shutdown: no conference left");
                return;
            }
            if Instant::now() >= deadline {
                info!(
                    conferences = left,
                    "graceful shutdown: timeout, stopping anyway"
                );
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(SHUTDOWN_POLL) => {}
                () = wait_now(&mut rx) => {
                    info!(conferences = left, "immediate shutdown asked for during graceful shutdown");
                    return;
                }
            }
        }
    }
}

/// Completes once an immediate stop is asked for (or the sender is gone).
async fn wait_now(rx: &mut watch::Receiver<StopRequest>) {
    // The guard `wait_for` returns is not `Send`; drop it here.
    let _ = rx.wait_for(|r| *r == StopRequest::Now).await.map(|_| ());
}

/// Asks a running control plane to stop, from outside (a signal handler).
#[derive(Clone)]
pub struct ShutdownHandle(pub(crate) Arc<OperatorState>);

impl std::fmt::Debug for ShutdownHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShutdownHandle")
            .field("graceful", &self.0.shutting_down())
            .finish_non_exhaustive()
    }
}

impl ShutdownHandle {
    /// Graceful shutdown, as `POST /colibri/shutdown {"graceful-shutdown": true}`:
    /// new joins get `503 shutting-down`, and [`crate::Control::run`] returns
    /// once no conference is left or after the shutdown timeout.
    pub fn graceful(&self) {
        self.0.request(StopRequest::Graceful);
    }

    /// Stops now, even with conferences running.
    pub fn now(&self) {
        self.0.request(StopRequest::Now);
    }
}

/// State of the private listener.
pub(crate) struct Operator<M> {
    pub(crate) media: Arc<M>,
    pub(crate) sampler: Arc<Sampler>,
    pub(crate) state: Arc<OperatorState>,
    pub(crate) load: LoadConfig,
    /// Live rooms: conference sizes, completions and their lifetimes.
    pub(crate) registry: Arc<Registry>,
    /// The public listener's rate limits, for their counters.
    pub(crate) limits: Arc<Limits>,
}

impl<M: MediaPlane> Operator<M> {
    fn view(&self) -> ControlView {
        ControlView {
            drain: self.state.draining(),
            graceful_shutdown: self.state.shutting_down(),
            conferences_created: self.state.conferences_created.load(Ordering::Relaxed),
            max_packet_rate: self.load.max_packet_rate,
            healthy: self.media.health().is_ok(),
            totals: self.registry.totals(),
            conference_sizes: self.registry.conference_sizes(),
            joins_refused: self.state.joins_refused(),
            rate_limits: self.limits.snapshot(),
            process: ProcessStats::read(),
        }
    }

    async fn shutdown(&self, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
        let body = Limited::new(req.into_body(), MAX_SHUTDOWN_BODY)
            .collect()
            .await
            .map_err(|_| {
                ApiError::bad_request(format!("the body is larger than {MAX_SHUTDOWN_BODY} bytes"))
            })?
            .to_bytes();
        let doc: serde_json::Value = serde_json::from_slice(&body).map_err(|_| {
            ApiError::bad_request(r#"expected a JSON body such as {"graceful-shutdown": true}"#)
        })?;
        let Some(graceful) = doc.get("graceful-shutdown").and_then(graceful_flag) else {
            return Err(ApiError::bad_request(
                r#""graceful-shutdown" must be true or false (or "true" or "false")"#,
            ));
        };
        if graceful {
            info!("graceful shutdown asked for over HTTP");
            self.state.request(StopRequest::Graceful);
        } else {
            info!("immediate shutdown asked for over HTTP");
            self.state.request(StopRequest::Now);
        }
        Ok(json(serde_json::json!({ "graceful-shutdown": graceful })))
    }
}

/// `"graceful-shutdown"`'s value: a JSON boolean, or the strings `"true"` and
/// `"false"` (any case), which jvb's `graceful_shutdown.sh` sends and jvb's
/// JSON binding accepts.
fn graceful_flag(v: &serde_json::Value) -> Option<bool> {
    match v {
        serde_json::Value::Bool(b) => Some(*b),
        serde_json::Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        serde_json::Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

fn json(v: serde_json::Value) -> Response<Body> {
    response(StatusCode::OK, Some("application/json"), v.to_string())
}

impl<M: MediaPlane> Handler for Operator<M> {
    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let get = req.method() == Method::GET;
        let post = req.method() == Method::POST;
        match req.uri().path() {
            "/about/health" if get => match self.media.health() {
                Ok(()) => response(StatusCode::OK, None, ""),
                Err(reason) => {
                    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "unhealthy", reason)
                        .into_response()
                }
            },
            "/about/version" if get => json(serde_json::json!({
                "name": "ringbridge",
                "version": env!("CARGO_PKG_VERSION"),
                "os": std::env::consts::OS,
            })),
            "/colibri/stats" if get => json(stats_json(
                &self.media.stats(),
                &self.sampler.rates(),
                SystemTime::now(),
                &self.view(),
            )),
            "/metrics" if get => response(
                StatusCode::OK,
                Some(metrics::CONTENT_TYPE),
                metrics::render(&self.media.stats(), &self.sampler.rates(), &self.view()),
            ),
            "/colibri/drain/enable" if post => {
                self.state.drain.store(true, Ordering::Relaxed);
                info!("drain enabled: new conferences are refused");
                json(serde_json::json!({ "drain": true }))
            }
            "/colibri/drain/disable" if post => {
                self.state.drain.store(false, Ordering::Relaxed);
                info!("drain disabled");
                json(serde_json::json!({ "drain": false }))
            }
            "/colibri/shutdown" if post => self
                .shutdown(req)
                .await
                .unwrap_or_else(ApiError::into_response),
            "/about/health"
            | "/about/version"
            | "/colibri/stats"
            | "/metrics"
            | "/colibri/drain/enable"
            | "/colibri/drain/disable"
            | "/colibri/shutdown" => ApiError::method_not_allowed().into_response(),
            _ => ApiError::not_found("no such path").into_response(),
        }
    }
}

/// In front of signalling: refuses joins while shutting down (every join),
/// draining or overloaded (`stress_level` over 1: new conferences only),
/// counts conferences created, and counts every refused join by its error code.
pub(crate) struct Gate<H> {
    pub(crate) inner: Arc<H>,
    pub(crate) state: Arc<OperatorState>,
    pub(crate) registry: Arc<Registry>,
    /// The sampled packet rates that `stress_level` comes from.
    pub(crate) sampler: Arc<Sampler>,
    /// `load.max_packet_rate`.
    pub(crate) max_packet_rate: u64,
}

impl<H: Handler> Handler for Gate<H> {
    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let room = match (req.method(), segments(req.uri().path()).as_slice()) {
            // Rooms are known by their canonical name (percent-decoded, NFKC,
            // lowercase), as signalling registers them.
            (&Method::POST, ["conferences", room, "endpoints"]) => Some(ConferenceId(
                crate::token::canonical_room(room).unwrap_or_else(|| (*room).to_owned()),
            )),
            _ => None,
        };
        let Some(room) = room else {
            return self.inner.clone().handle(req).await;
        };
        let existed = self.registry.has_conference(&room);
        if self.state.shutting_down() {
            self.state.count_refusal("shutting-down");
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting-down",
                "the bridge is shutting down and takes no new joins",
            )
            .into_response();
        }
        if !existed && self.state.draining() {
            self.state.count_refusal("draining");
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "draining",
                "the bridge is draining: it takes no new conferences",
            )
            .into_response();
        }
        let stress = stress_level(&self.sampler.rates(), self.max_packet_rate);
        if !existed && stress > 1.0 {
            self.state.count_refusal("overloaded");
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                format!(
                    "the bridge is overloaded (stress level {stress:.2}): it takes no new \
                     conferences; joins into running ones go on"
                ),
            )
            .into_response();
        }
        let resp = self.inner.clone().handle(req).await;
        if let Some(ErrorCode(code)) = resp.extensions().get::<ErrorCode>() {
            self.state.count_refusal(code);
        }
        // Two first joins racing into the same new room may both count; the
        // registry, not this gate, is the authority on what exists.
        if !existed && resp.status() == StatusCode::CREATED {
            self.state
                .conferences_created
                .fetch_add(1, Ordering::Relaxed);
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn graceful_shutdown_takes_booleans_and_their_strings() {
        assert_eq!(graceful_flag(&json!(true)), Some(true));
        assert_eq!(graceful_flag(&json!(false)), Some(false));
        // jvb's graceful_shutdown.sh sends a string.
        assert_eq!(graceful_flag(&json!("true")), Some(true));
        assert_eq!(graceful_flag(&json!("True")), Some(true));
        assert_eq!(graceful_flag(&json!("false")), Some(false));
        for bad in [
            json!("yes"),
            json!(1),
            json!(null),
            json!([true]),
            json!(""),
        ] {
            assert_eq!(graceful_flag(&bad), None, "{bad}");
        }
    }

    #[test]
    fn refusals_are_counted_by_code_in_code_order() {
        let state = OperatorState::default();
        state.count_refusal("token-expired");
        state.count_refusal("draining");
        state.count_refusal("token-expired");
        assert_eq!(
            state.joins_refused(),
            vec![("draining", 1), ("token-expired", 2)]
        );
    }
}
