//! The public listener: joining and leaving conferences (WHIP-shaped), moderator
//! actions, token refresh, and the colibri websocket upgrade.
//!
//! Room rules (issue 5): a member cannot open a room (`403 owner-required`); when
//! the last owner leaves, every endpoint is told (`ConferenceEnding`) and, after
//! `auth.owner_grace_s` without an owner, removed (`EndpointRemoved`). Owners may
//! mute (`POST .../endpoints/{id}/mute`) and remove (`DELETE`) other endpoints;
//! others get `403 moderator-required`. With `auth.enforce_expiry`, endpoints are
//! warned 60 s before their token's `exp` and removed at it, unless `PUT
//! .../endpoints/{id}/token` brings a fresh token of the same user. Timers run on
//! tokio's clock, so tests drive them with a paused clock.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tracing::{debug, info, warn};

use crate::colibri::{self, SocketAction};
use crate::error::ApiError;
use crate::http::{Body, Handler, query_param, response, segments};
use crate::media::{
    ConferenceId, EndpointId, EndpointPolicy, JoinRequest, MediaError, MediaEvent, MediaPlane,
    MuteRequest, RefusalReason,
};
use crate::ratelimit::{ClientKey, Limits, PeerAddr, retry_after_secs};
use crate::registry::{AdmitRefusal, Membership, Registry, Removed, SocketRefusal};
use crate::token::{Identity, TokenError, TokenVerifier, canonical_room};
use crate::web::{self, cors::Cors};

/// Largest SDP offer accepted.
pub const MAX_OFFER_SIZE: usize = 64 * 1024;

/// Largest moderator request body (`{"audio": .., "video": ..}`).
pub const MAX_ACTION_SIZE: usize = 4 * 1024;

/// How long before its token's `exp` an endpoint is warned (`auth.enforce_expiry`).
pub const EXPIRY_WARNING: Duration = Duration::from_secs(60);

/// Whether a canonical room name (see [`canonical_room`]) is acceptable: 1 to 128
/// characters, each a letter or digit (any script) or `. _ -`.
pub fn valid_canonical_room(room: &str) -> bool {
    (1..=128).contains(&room.chars().count())
        && room
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// A room name as a URL path segment: ASCII letters, digits and `. _ -` as they
/// are, every other byte percent-encoded.
pub fn room_path_segment(room: &str) -> String {
    let mut out = String::with_capacity(room.len());
    for b in room.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A successful join, before it is rendered as HTTP.
#[derive(Debug)]
pub(crate) struct Joined {
    pub(crate) endpoint: EndpointId,
    pub(crate) pwd: String,
    pub(crate) answer_sdp: String,
}

/// Whether `room` is an acceptable conference name: 1 to 128 characters of
/// `A-Z a-z 0-9 . _ -`.
pub fn valid_room_name(room: &str) -> bool {
    (1..=128).contains(&room.len())
        && room
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// State of the public listener.
pub(crate) struct Signalling<M> {
    pub(crate) media: Arc<M>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) verifier: TokenVerifier,
    pub(crate) server_id: String,
    /// `public.allowed_origins` for the signalling paths.
    pub(crate) cors: Cors,
    /// Per-address limits on joins and websocket upgrades.
    pub(crate) limits: Arc<Limits>,
}

impl<M: MediaPlane> Handler for Signalling<M> {
    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_owned();
        let segs = segments(&path);
        if !Cors::applies(&segs) {
            return self.route(req, &path, &segs).await;
        }
        if req.method() == Method::OPTIONS {
            return self.cors.preflight(req.headers());
        }
        let headers = req.headers().clone();
        let mut resp = self.route(req, &path, &segs).await;
        self.cors.decorate(&headers, &mut resp);
        resp
    }
}

impl<M: MediaPlane> Signalling<M> {
    async fn route(
        self: &Arc<Self>,
        req: Request<Incoming>,
        path: &str,
        segs: &[&str],
    ) -> Response<Body> {
        if let Some(refused) = self.rate_limit(&req, segs) {
            return refused;
        }
        let result = match segs {
            ["conferences", room, "endpoints"] => match *req.method() {
                Method::POST => self.join(room, req).await,
                _ => Err(ApiError::method_not_allowed()),
            },
            ["conferences", room, "endpoints", endpoint] => match *req.method() {
                Method::DELETE => self.leave(room, endpoint, &req).await,
                _ => Err(ApiError::method_not_allowed()),
            },
            ["conferences", room, "endpoints", endpoint, "mute"] => match *req.method() {
                Method::POST => self.mute(room, endpoint, req).await,
                _ => Err(ApiError::method_not_allowed()),
            },
            ["conferences", room, "endpoints", endpoint, "token"] => match *req.method() {
                Method::PUT => self.refresh_token(room, endpoint, &req),
                _ => Err(ApiError::method_not_allowed()),
            },
            ["colibri-ws", server_id, room, endpoint] => match *req.method() {
                Method::GET => self.upgrade(server_id, room, endpoint, req),
                _ => Err(ApiError::method_not_allowed()),
            },
            _ => {
                let trailing_slash = path.len() > 1 && path.ends_with('/');
                web::handle(
                    req.method(),
                    segs,
                    trailing_slash,
                    req.headers().get(header::IF_NONE_MATCH),
                )
                .unwrap_or_else(|| Err(ApiError::not_found("no such path")))
            }
        };
        result.unwrap_or_else(ApiError::into_response)
    }

    /// `429 rate-limited` with `Retry-After` when `req` is a join or a websocket
    /// upgrade over its client's limit; checked before anything else about it.
    fn rate_limit<B>(&self, req: &Request<B>, segs: &[&str]) -> Option<Response<Body>> {
        let (limiter, what) = match (req.method(), segs) {
            (&Method::POST, ["conferences", _, "endpoints"]) => (&self.limits.join, "joins"),
            (&Method::GET, ["colibri-ws", _, _, _]) => {
                (&self.limits.websocket, "websocket upgrades")
            }
            _ => return None,
        };
        let peer = req.extensions().get::<PeerAddr>()?.0.ip();
        let client = ClientKey::of_request(peer, req.headers());
        let wait = limiter.check(client, Instant::now()).err()?;
        let secs = retry_after_secs(wait);
        debug!(%peer, what, retry_after_s = secs, "rate limited");
        let mut resp = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            format!("too many {what} from this address; retry in {secs} s"),
        )
        .into_response();
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        Some(resp)
    }

    /// The conference id of a room as written in the URL: its canonical form
    /// (see [`canonical_room`]), which must be a valid room name.
    fn check_room(room: &str) -> Result<ConferenceId, ApiError> {
        match canonical_room(room).filter(|r| valid_canonical_room(r)) {
            Some(room) => Ok(ConferenceId(room)),
            None => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad-room",
                "room names are 1 to 128 letters, digits, . _ or - (percent-encoded in URLs)",
            )),
        }
    }

    fn authorize<B>(&self, req: &Request<B>, room: &ConferenceId) -> Result<Identity, ApiError> {
        let token = bearer_token(req.headers())
            .or_else(|| query_param(req.uri().query(), "jwt").filter(|t| !t.is_empty()))
            .ok_or(TokenError::Missing)?;
        self.verifier
            .verify(token, &room.0, now_unix())
            .inspect_err(|e| debug!(conference = %room, code = e.code(), "token refused"))
            .map_err(ApiError::from)
    }

    async fn join(
        self: &Arc<Self>,
        room: &str,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, ApiError> {
        let conference = Self::check_room(room)?;
        let identity = self.authorize(&req, &conference)?;
        if !is_sdp(req.headers()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "the offer must be sent as Content-Type: application/sdp",
            ));
        }
        let too_large = || {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "offer-too-large",
                format!("the offer is larger than {MAX_OFFER_SIZE} bytes"),
            )
        };
        // A declared length over the limit is refused before any of it is read.
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_OFFER_SIZE as u64) {
            return Err(too_large());
        }
        let body = Limited::new(req.into_body(), MAX_OFFER_SIZE)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<LengthLimitError>() {
                    too_large()
                } else {
                    ApiError::bad_request("the offer could not be read")
                }
            })?
            .to_bytes();
        if body.is_empty() {
            return Err(ApiError::bad_request("the offer is empty"));
        }
        let offer_sdp = String::from_utf8(body.to_vec())
            .map_err(|_| ApiError::bad_request("the offer is not UTF-8"))?;

        let Joined {
            endpoint,
            pwd,
            answer_sdp,
        } = self.admit(&conference, &identity, offer_sdp).await?;

        let mut resp = response(StatusCode::CREATED, Some("application/sdp"), answer_sdp);
        let room_seg = room_path_segment(&conference.0);
        let location = format!("/conferences/{room_seg}/endpoints/{endpoint}");
        let link = format!(
            "</colibri-ws/{}/{room_seg}/{endpoint}?pwd={pwd}>; rel=\"colibri-ws\"",
            self.server_id
        );
        // Room, endpoint id, server id and pwd are all header-safe by construction.
        let headers = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&location) {
            headers.insert(header::LOCATION, v);
        }
        if let Ok(v) = HeaderValue::from_str(&link) {
            headers.insert(header::LINK, v);
        }
        Ok(resp)
    }

    async fn leave<B>(
        self: &Arc<Self>,
        room: &str,
        endpoint: &str,
        req: &Request<B>,
    ) -> Result<Response<Body>, ApiError> {
        let conference = Self::check_room(room)?;
        let identity = self.authorize(req, &conference)?;
        let endpoint = EndpointId(endpoint.to_owned());
        self.remove_as(&conference, &endpoint, &identity).await?;
        Ok(response(StatusCode::NO_CONTENT, None, ""))
    }

    async fn mute(
        self: &Arc<Self>,
        room: &str,
        endpoint: &str,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, ApiError> {
        let conference = Self::check_room(room)?;
        let identity = self.authorize(&req, &conference)?;
        let body = Limited::new(req.into_body(), MAX_ACTION_SIZE)
            .collect()
            .await
            .map_err(|_| {
                ApiError::bad_request(format!("the body is larger than {MAX_ACTION_SIZE} bytes"))
            })?
            .to_bytes();
        let mute = parse_mute(&body)?;
        let endpoint = EndpointId(endpoint.to_owned());
        self.mute_as(&conference, &endpoint, &identity, mute)
            .await?;
        Ok(response(StatusCode::NO_CONTENT, None, ""))
    }

    fn refresh_token<B>(
        self: &Arc<Self>,
        room: &str,
        endpoint: &str,
        req: &Request<B>,
    ) -> Result<Response<Body>, ApiError> {
        let conference = Self::check_room(room)?;
        let identity = self.authorize(req, &conference)?;
        let endpoint = EndpointId(endpoint.to_owned());
        self.refresh_as(&conference, &endpoint, &identity)?;
        Ok(response(StatusCode::NO_CONTENT, None, ""))
    }

    /// Adds an endpoint for a checked `identity`: room rules, then the media plane
    /// with the endpoint's policy, then (with `auth.enforce_expiry`) its expiry.
    pub(crate) async fn admit(
        self: &Arc<Self>,
        conference: &ConferenceId,
        identity: &Identity,
        offer_sdp: String,
    ) -> Result<Joined, ApiError> {
        let auth = self.verifier.auth();
        let screen_sharing = identity.feature("screen-sharing", auth.features_default);
        let member = Membership {
            display_name: identity.name.clone(),
            user_id: identity.user_id.clone(),
            owner: identity.owner,
            jti: identity.jti.clone(),
            screen_sharing,
            expires_at: identity.expires_at,
        };
        // Registered before the media plane hears of it, so that events about
        // the new endpoint (its first sources map) are never lost.
        let (endpoint, pwd) = self
            .registry
            .admit(conference, member, auth.single_use_jti)
            .map_err(|r| match r {
                AdmitRefusal::OwnerRequired => ApiError::new(
                    StatusCode::FORBIDDEN,
                    "owner-required",
                    "only an owner (moderator) may open this room",
                ),
                AdmitRefusal::JtiInUse => ApiError::new(
                    StatusCode::FORBIDDEN,
                    "jti-in-use",
                    "this token already has a live endpoint",
                ),
                AdmitRefusal::ConferenceFull => ApiError::new(
                    StatusCode::FORBIDDEN,
                    "conference-full",
                    "this conference has as many endpoints as it may (load.max_endpoints_per_conference)",
                ),
                AdmitRefusal::TooManyConferences => ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too-many-conferences",
                    "this bridge hosts as many conferences as it may (load.max_conferences)",
                ),
            })?;
        let join = JoinRequest {
            conference: conference.clone(),
            endpoint: endpoint.clone(),
            offer_sdp,
        };
        let policy = EndpointPolicy { screen_sharing };
        let answer = match self.media.join_with_policy(join, policy).await {
            Ok(answer) => answer,
            Err(e) => {
                if let Some(Removed::LastOwnerLeft(generation)) = self
                    .registry
                    .remove_with_notice(conference, &endpoint, None)
                {
                    self.start_grace(conference.clone(), generation);
                }
                info!(%conference, %endpoint, error = %e, "join refused by the media plane");
                return Err(media_error(e));
            }
        };
        info!(%conference, %endpoint, owner = identity.owner, screen_sharing, "endpoint joined");
        if auth.enforce_expiry {
            self.schedule_expiry(conference.clone(), endpoint.clone(), 0, identity.expires_at);
        }
        Ok(Joined {
            endpoint,
            pwd,
            answer_sdp: answer.answer_sdp,
        })
    }

    /// `DELETE`: the endpoint's own user leaves; an owner removes (kicks) anyone.
    pub(crate) async fn remove_as(
        self: &Arc<Self>,
        conference: &ConferenceId,
        endpoint: &EndpointId,
        caller: &Identity,
    ) -> Result<(), ApiError> {
        let Some(joined_as) = self.registry.user_id(conference, endpoint) else {
            return Err(ApiError::not_found("no such endpoint in this conference"));
        };
        let same_user = matches!((&joined_as, &caller.user_id), (Some(a), Some(b)) if a == b);
        if !same_user && !caller.owner {
            return Err(moderator_required(
                "only the endpoint's own user or an owner may remove it",
            ));
        }
        let reason = if same_user { "left" } else { "kicked" };
        let notice = (!same_user).then(|| colibri::endpoint_removed("kicked"));
        if !self.expel(conference, endpoint, notice).await {
            return Err(ApiError::not_found("no such endpoint in this conference"));
        }
        info!(%conference, %endpoint, reason, "endpoint removed");
        Ok(())
    }

    /// `POST .../mute`: owners only.
    pub(crate) async fn mute_as(
        self: &Arc<Self>,
        conference: &ConferenceId,
        endpoint: &EndpointId,
        caller: &Identity,
        mute: MuteRequest,
    ) -> Result<(), ApiError> {
        if !caller.owner {
            return Err(moderator_required("only an owner may mute others"));
        }
        if self.registry.user_id(conference, endpoint).is_none() {
            return Err(ApiError::not_found("no such endpoint in this conference"));
        }
        match self
            .media
            .mute(conference.clone(), endpoint.clone(), mute)
            .await
        {
            Ok(()) => {}
            Err(MediaError::NotFound) => {
                return Err(ApiError::not_found("no such endpoint in this conference"));
            }
            Err(e) => return Err(media_error(e)),
        }
        self.registry.notify(
            conference,
            endpoint,
            colibri::endpoint_muted(mute.audio, mute.video),
        );
        info!(%conference, %endpoint, audio = ?mute.audio, video = ?mute.video, "endpoint muted by a moderator");
        Ok(())
    }

    /// `PUT .../token`: a fresh token of the same user for the same room moves the
    /// endpoint's expiry.
    pub(crate) fn refresh_as(
        self: &Arc<Self>,
        conference: &ConferenceId,
        endpoint: &EndpointId,
        identity: &Identity,
    ) -> Result<(), ApiError> {
        let Some(member) = self.registry.membership(conference, endpoint) else {
            return Err(ApiError::not_found("no such endpoint in this conference"));
        };
        let same_user =
            matches!((&member.user_id, &identity.user_id), (Some(a), Some(b)) if a == b);
        if !same_user {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "user-mismatch",
                "the token is for another user than the endpoint's",
            ));
        }
        let generation = self
            .registry
            .refresh_expiry(conference, endpoint, identity.expires_at)
            .ok_or_else(|| ApiError::not_found("no such endpoint in this conference"))?;
        if self.verifier.auth().enforce_expiry {
            self.schedule_expiry(
                conference.clone(),
                endpoint.clone(),
                generation,
                identity.expires_at,
            );
        }
        info!(%conference, %endpoint, expires_at = identity.expires_at, "token refreshed");
        Ok(())
    }

    /// Removes an endpoint (queueing `notice` as its last message) from the
    /// registry and the media plane; starts the owner grace period if it was the
    /// last owner. Returns whether it existed.
    async fn expel(
        self: &Arc<Self>,
        conference: &ConferenceId,
        endpoint: &EndpointId,
        notice: Option<String>,
    ) -> bool {
        let Some(removed) = self
            .registry
            .remove_with_notice(conference, endpoint, notice)
        else {
            return false;
        };
        if let Removed::LastOwnerLeft(generation) = removed {
            self.start_grace(conference.clone(), generation);
        }
        match self.media.leave(conference.clone(), endpoint.clone()).await {
            Ok(()) | Err(MediaError::NotFound) => {}
            Err(e) => {
                warn!(%conference, %endpoint, error = %e, "media plane failed to remove endpoint")
            }
        }
        true
    }

    /// Applies one media-plane event (the control plane's event task calls this).
    pub(crate) fn handle_event(self: &Arc<Self>, event: MediaEvent) {
        if let Some((conference, generation)) = self.registry.handle_event(event) {
            self.start_grace(conference, generation);
        }
    }

    /// The last owner left `conference`: tell everyone, and end the conference
    /// after `auth.owner_grace_s` unless grace period `generation` is cancelled by an
    /// owner joining.
    fn start_grace(self: &Arc<Self>, conference: ConferenceId, generation: u64) {
        let grace = self.verifier.auth().owner_grace_s;
        info!(%conference, grace_s = grace, "last owner left");
        self.registry
            .broadcast(&conference, None, &colibri::conference_ending(grace));
        let this = self.clone();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(grace);
        tokio::spawn(async move {
            tokio::time::sleep_until(deadline).await;
            let gone = this.registry.end_grace(
                &conference,
                generation,
                &colibri::endpoint_removed("owner-left"),
            );
            if gone.is_empty() {
                return;
            }
            info!(%conference, endpoints = gone.len(), "conference ended: no owner came back");
            for endpoint in gone {
                match this.media.leave(conference.clone(), endpoint.clone()).await {
                    Ok(()) | Err(MediaError::NotFound) => {}
                    Err(e) => {
                        warn!(%conference, %endpoint, error = %e, "media plane failed to remove endpoint")
                    }
                }
            }
        });
    }

    /// With `auth.enforce_expiry`: warns the endpoint [`EXPIRY_WARNING`] before
    /// `expires_at` and removes it then, unless its expiry generation moved on
    /// (a fresh token arrived).
    fn schedule_expiry(
        self: &Arc<Self>,
        conference: ConferenceId,
        endpoint: EndpointId,
        generation: u64,
        expires_at: u64,
    ) {
        let left = Duration::from_secs(expires_at.saturating_sub(now_unix()));
        // Deadlines are fixed now, not when the task first runs.
        let deadline = tokio::time::Instant::now() + left;
        let this = self.clone();
        tokio::spawn(async move {
            let current = |this: &Arc<Self>| {
                this.registry
                    .expiry(&conference, &endpoint)
                    .is_some_and(|(g, _)| g == generation)
            };
            let warn_at = deadline
                .checked_sub(EXPIRY_WARNING)
                .unwrap_or(deadline)
                .max(tokio::time::Instant::now());
            tokio::time::sleep_until(warn_at).await;
            if !current(&this) {
                return;
            }
            let in_seconds = deadline.saturating_duration_since(warn_at);
            this.registry.notify(
                &conference,
                &endpoint,
                colibri::token_expiring(expires_at, in_seconds.as_secs()),
            );
            tokio::time::sleep_until(deadline).await;
            if !current(&this) {
                return;
            }
            if this
                .expel(
                    &conference,
                    &endpoint,
                    Some(colibri::endpoint_removed("token-expired")),
                )
                .await
            {
                info!(%conference, %endpoint, "endpoint expired with its token");
            }
        });
    }

    fn upgrade(
        self: &Arc<Self>,
        server_id: &str,
        room: &str,
        endpoint: &str,
        mut req: Request<Incoming>,
    ) -> Result<Response<Body>, ApiError> {
        let conference = match canonical_room(room).filter(|r| valid_canonical_room(r)) {
            Some(r) if server_id == self.server_id => ConferenceId(r),
            _ => return Err(ApiError::not_found("no such colibri websocket")),
        };
        let endpoint = EndpointId(endpoint.to_owned());
        self.registry
            .check_pwd(
                &conference,
                &endpoint,
                query_param(req.uri().query(), "pwd"),
            )
            .map_err(|r| match r {
                SocketRefusal::NotFound => ApiError::not_found("no such colibri websocket"),
                SocketRefusal::BadPwd => {
                    ApiError::new(StatusCode::UNAUTHORIZED, "bad-pwd", "wrong colibri pwd")
                }
            })?;
        let key = websocket_key(req.headers())?;

        let on_upgrade = hyper::upgrade::on(&mut req);
        let registry = self.registry.clone();
        let this = self.clone();
        let (c, e) = (conference.clone(), endpoint.clone());
        let on_action = move |action: SocketAction| match action {
            SocketAction::RefuseScreen { source } => {
                let (this, c, e) = (this.clone(), c.clone(), e.clone());
                tokio::spawn(async move {
                    let r = this
                        .media
                        .refuse_source(
                            c.clone(),
                            e.clone(),
                            source.clone(),
                            RefusalReason::ScreenSharingNotGranted,
                        )
                        .await;
                    if let Err(err) = r {
                        debug!(conference = %c, endpoint = %e, %source, error = %err, "cannot refuse source");
                    }
                });
            }
            SocketAction::ReceiverConstraints(update) => {
                let (this, c, e) = (this.clone(), c.clone(), e.clone());
                tokio::spawn(async move {
                    let r = this
                        .media
                        .set_receiver_constraints(c.clone(), e.clone(), update)
                        .await;
                    if let Err(err) = r {
                        debug!(conference = %c, endpoint = %e, error = %err, "cannot set receiver constraints");
                    }
                });
            }
        };
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    let ws = WebSocketStream::from_raw_socket(
                        TokioIo::new(upgraded),
                        Role::Server,
                        Some(colibri::websocket_config()),
                    )
                    .await;
                    colibri::run_socket(ws, registry, conference, endpoint, on_action).await;
                }
                Err(e) => debug!(%conference, %endpoint, error = %e, "websocket upgrade failed"),
            }
        });

        let mut resp = response(StatusCode::SWITCHING_PROTOCOLS, None, "");
        let headers = resp.headers_mut();
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        if let Ok(v) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
            headers.insert(header::SEC_WEBSOCKET_ACCEPT, v);
        }
        Ok(resp)
    }
}

/// Checks the websocket handshake headers and returns `Sec-WebSocket-Key`.
fn websocket_key(headers: &HeaderMap) -> Result<HeaderValue, ApiError> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if !has_token(header::UPGRADE, "websocket") || !has_token(header::CONNECTION, "upgrade") {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "a websocket upgrade is required",
        ));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return Err(ApiError::bad_request("Sec-WebSocket-Version must be 13"));
    }
    headers
        .get(header::SEC_WEBSOCKET_KEY)
        .cloned()
        .ok_or_else(|| ApiError::bad_request("Sec-WebSocket-Key is missing"))
}

/// The token of an `Authorization: Bearer <token>` header, if any.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Whether the body is declared as `application/sdp` (parameters allowed).
fn is_sdp(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/sdp"))
}

fn moderator_required(message: &str) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "moderator-required", message)
}

/// `{"audio": bool, "video": bool}`, either may be left out, not both.
fn parse_mute(body: &[u8]) -> Result<MuteRequest, ApiError> {
    let bad = || ApiError::bad_request("the body must be JSON {\"audio\": bool, \"video\": bool}");
    let v: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(body).map_err(|_| bad())?;
    let flag = |k: &str| match v.get(k) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(bad()),
    };
    let mute = MuteRequest {
        audio: flag("audio")?,
        video: flag("video")?,
    };
    if mute.audio.is_none() && mute.video.is_none() {
        return Err(bad());
    }
    Ok(mute)
}

fn media_error(e: MediaError) -> ApiError {
    match e {
        MediaError::BadOffer(why) => ApiError::new(StatusCode::BAD_REQUEST, "bad-offer", why),
        MediaError::Overloaded(why) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", why)
        }
        MediaError::NotFound | MediaError::Unavailable => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the media plane is unavailable",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AuthConfig, FeaturesDefault};
    use crate::media::{JoinAnswer, MediaStats};
    use serde_json::Value;
    use std::sync::Mutex;
    use tokio::sync::mpsc;

    #[derive(Default)]
    struct Fake {
        policies: Mutex<Vec<(EndpointId, EndpointPolicy)>>,
        leaves: Mutex<Vec<EndpointId>>,
        mutes: Mutex<Vec<(EndpointId, MuteRequest)>>,
    }

    impl MediaPlane for Fake {
        async fn join(&self, _req: JoinRequest) -> Result<JoinAnswer, MediaError> {
            Ok(JoinAnswer {
                answer_sdp: "v=0\r\n".into(),
            })
        }
        async fn join_with_policy(
            &self,
            req: JoinRequest,
            policy: EndpointPolicy,
        ) -> Result<JoinAnswer, MediaError> {
            self.policies
                .lock()
                .expect("lock")
                .push((req.endpoint.clone(), policy));
            self.join(req).await
        }
        async fn mute(
            &self,
            _c: ConferenceId,
            e: EndpointId,
            mute: MuteRequest,
        ) -> Result<(), MediaError> {
            self.mutes.lock().expect("lock").push((e, mute));
            Ok(())
        }
        async fn refuse_source(
            &self,
            _c: ConferenceId,
            _e: EndpointId,
            _s: String,
            _r: RefusalReason,
        ) -> Result<(), MediaError> {
            Ok(())
        }
        async fn leave(&self, _c: ConferenceId, e: EndpointId) -> Result<(), MediaError> {
            self.leaves.lock().expect("lock").push(e);
            Ok(())
        }
        fn stats(&self) -> MediaStats {
            MediaStats::default()
        }
    }

    fn signalling(auth: AuthConfig) -> Arc<Signalling<Fake>> {
        Arc::new(Signalling {
            media: Arc::new(Fake::default()),
            registry: Arc::new(Registry::default()),
            verifier: TokenVerifier::new(&auth, "unit-test-secret").expect("keys"),
            server_id: "test".into(),
            cors: Cors::default(),
            limits: Arc::new(Limits::new(&crate::config::PublicConfig::default())),
        })
    }

    fn person(user: &str, owner: bool) -> Identity {
        Identity {
            user_id: Some(user.into()),
            owner,
            room: "r".into(),
            expires_at: now_unix() + 3600,
            ..Identity::default()
        }
    }

    fn room() -> ConferenceId {
        ConferenceId("r".into())
    }

    async fn join(s: &Arc<Signalling<Fake>>, who: &Identity) -> Result<EndpointId, &'static str> {
        s.admit(&room(), who, "v=0".into())
            .await
            .map(|j| j.endpoint)
            .map_err(|e| e.code)
    }

    fn socket(s: &Arc<Signalling<Fake>>, e: &EndpointId) -> mpsc::Receiver<String> {
        let (_, mut rx) = s.registry.attach_socket(&room(), e).expect("attached");
        assert!(rx.try_recv().is_ok_and(|m| m.contains("ServerHello")));
        rx
    }

    /// Lets spawned timer tasks run up to their next await.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    /// The classes of every queued message.
    fn classes(rx: &mut mpsc::Receiver<String>) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(m) = rx.try_recv() {
            let v: Value = serde_json::from_str(&m).expect("json");
            out.push(v["colibriClass"].as_str().unwrap_or("").to_owned());
        }
        out
    }

    fn closed(rx: &mut mpsc::Receiver<String>) -> bool {
        matches!(rx.try_recv(), Err(mpsc::error::TryRecvError::Disconnected))
    }

    #[tokio::test(start_paused = true)]
    async fn members_cannot_open_a_room() {
        let s = signalling(AuthConfig::default());
        assert_eq!(join(&s, &person("m1", false)).await, Err("owner-required"));
        let owner = join(&s, &person("o1", true)).await.expect("owner opens");
        assert!(join(&s, &person("m1", false)).await.is_ok());
        // The owner leaving does not stop members joining during the grace period.
        s.remove_as(&room(), &owner, &person("o1", true))
            .await
            .expect("leave");
        assert!(join(&s, &person("m2", false)).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn conference_ends_after_the_owner_grace_period() {
        let s = signalling(AuthConfig::default());
        let owner = join(&s, &person("o1", true)).await.expect("join");
        let m1 = join(&s, &person("m1", false)).await.expect("join");
        let m2 = join(&s, &person("m2", false)).await.expect("join");
        let (mut r1, mut r2) = (socket(&s, &m1), socket(&s, &m2));
        s.remove_as(&room(), &owner, &person("o1", true))
            .await
            .expect("leave");
        settle().await;
        for rx in [&mut r1, &mut r2] {
            assert_eq!(
                classes(rx),
                ["EndpointConnectivityStatusChangeEvent", "ConferenceEnding"]
            );
        }
        assert!(s.registry.in_grace(&room()));
        tokio::time::advance(Duration::from_secs(59)).await;
        settle().await;
        assert!(classes(&mut r1).is_empty());
        assert!(s.registry.user_id(&room(), &m1).is_some());

        tokio::time::advance(Duration::from_secs(2)).await;
        settle().await;
        for rx in [&mut r1, &mut r2] {
            assert_eq!(classes(rx), ["EndpointRemoved"]);
            assert!(closed(rx));
        }
        assert!(s.registry.user_id(&room(), &m1).is_none());
        assert!(!s.registry.in_grace(&room()));
        let leaves = s.media.leaves.lock().expect("lock").clone();
        assert_eq!(leaves.len(), 3);
        for e in [&owner, &m1, &m2] {
            assert!(leaves.contains(e));
        }
        // The room is closed: a member cannot reopen it.
        assert_eq!(join(&s, &person("m1", false)).await, Err("owner-required"));
    }

    #[tokio::test(start_paused = true)]
    async fn an_owner_coming_back_cancels_the_grace_period() {
        let s = signalling(AuthConfig {
            owner_grace_s: 10,
            ..AuthConfig::default()
        });
        let o1 = join(&s, &person("o1", true)).await.expect("join");
        let m1 = join(&s, &person("m1", false)).await.expect("join");
        let mut r1 = socket(&s, &m1);
        s.remove_as(&room(), &o1, &person("o1", true))
            .await
            .expect("leave");
        settle().await;
        tokio::time::advance(Duration::from_secs(5)).await;
        let o2 = join(&s, &person("o2", true)).await.expect("owner back");
        tokio::time::advance(Duration::from_secs(20)).await;
        settle().await;
        assert!(s.registry.user_id(&room(), &m1).is_some());
        assert!(!classes(&mut r1).contains(&"EndpointRemoved".to_owned()));
        // A second departure starts a fresh period: the first timer is void.
        s.remove_as(&room(), &o2, &person("o2", true))
            .await
            .expect("leave");
        settle().await;
        tokio::time::advance(Duration::from_secs(9)).await;
        settle().await;
        assert!(s.registry.user_id(&room(), &m1).is_some());
        tokio::time::advance(Duration::from_secs(2)).await;
        settle().await;
        assert!(s.registry.user_id(&room(), &m1).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn an_owner_among_others_leaving_starts_no_grace() {
        let s = signalling(AuthConfig::default());
        let o1 = join(&s, &person("o1", true)).await.expect("join");
        let _o2 = join(&s, &person("o2", true)).await.expect("join");
        let m1 = join(&s, &person("m1", false)).await.expect("join");
        s.remove_as(&room(), &o1, &person("o1", true))
            .await
            .expect("leave");
        assert!(!s.registry.in_grace(&room()));
        tokio::time::advance(Duration::from_secs(3600)).await;
        settle().await;
        assert!(s.registry.user_id(&room(), &m1).is_some());
        // An owner's media expiring counts as leaving too.
        let s = signalling(AuthConfig::default());
        let o1 = join(&s, &person("o1", true)).await.expect("join");
        let m1 = join(&s, &person("m1", false)).await.expect("join");
        s.handle_event(MediaEvent::EndpointExpired {
            conference: room(),
            endpoint: o1,
            reason: "consent-expired",
        });
        assert!(s.registry.in_grace(&room()));
        tokio::time::advance(Duration::from_secs(61)).await;
        settle().await;
        assert!(s.registry.user_id(&room(), &m1).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn moderator_actions_need_an_owner() {
        let s = signalling(AuthConfig::default());
        let o = join(&s, &person("o1", true)).await.expect("join");
        let m1 = join(&s, &person("m1", false)).await.expect("join");
        let m2 = join(&s, &person("m2", false)).await.expect("join");
        let mut r2 = socket(&s, &m2);
        let mute = MuteRequest {
            audio: Some(true),
            video: None,
        };
        let member = person("m1", false);
        assert_eq!(
            s.mute_as(&room(), &m2, &member, mute)
                .await
                .map_err(|e| e.code),
            Err("moderator-required")
        );
        assert_eq!(
            s.remove_as(&room(), &m2, &member).await.map_err(|e| e.code),
            Err("moderator-required")
        );
        assert!(s.media.mutes.lock().expect("lock").is_empty());
        let owner = person("o1", true);
        s.mute_as(&room(), &m2, &owner, mute).await.expect("mute");
        assert_eq!(
            s.media.mutes.lock().expect("lock").clone(),
            vec![(m2.clone(), mute)]
        );
        let notice: Value = serde_json::from_str(&r2.try_recv().expect("notice")).expect("json");
        assert_eq!(
            notice,
            serde_json::json!({"colibriClass": "EndpointMuted", "audio": true})
        );
        assert_eq!(
            s.mute_as(&room(), &EndpointId("nope".into()), &owner, mute)
                .await
                .map_err(|e| e.code),
            Err("not-found")
        );
        s.remove_as(&room(), &m2, &owner).await.expect("kick");
        assert_eq!(classes(&mut r2), ["EndpointRemoved"]);
        assert!(closed(&mut r2));
        // A member may still remove itself, and the owner too.
        s.remove_as(&room(), &m1, &member).await.expect("leave");
        s.remove_as(&room(), &o, &owner).await.expect("leave");
    }

    #[tokio::test(start_paused = true)]
    async fn single_use_jti() {
        let mut with_jti = person("o1", true);
        with_jti.jti = Some("token-1".into());
        let s = signalling(AuthConfig::default());
        assert!(join(&s, &with_jti).await.is_ok());
        assert!(join(&s, &with_jti).await.is_ok(), "off by default");
        let s = signalling(AuthConfig {
            single_use_jti: true,
            ..AuthConfig::default()
        });
        let first = join(&s, &with_jti).await.expect("first use");
        assert_eq!(join(&s, &with_jti).await, Err("jti-in-use"));
        assert!(join(&s, &person("o2", true)).await.is_ok(), "no jti");
        s.remove_as(&room(), &first, &with_jti)
            .await
            .expect("leave");
        assert!(join(&s, &with_jti).await.is_ok(), "free again");
    }

    #[tokio::test(start_paused = true)]
    async fn features_decide_each_endpoints_policy() {
        let s = signalling(AuthConfig::default());
        let mut granted = person("o1", true);
        granted.has_features = true;
        granted
            .features
            .insert("screen-sharing".into(), Value::String("true".into()));
        let mut denied = person("m1", false);
        denied.has_features = true;
        denied
            .features
            .insert("screen-sharing".into(), Value::Bool(false));
        let silent = person("m2", false);
        let a = join(&s, &granted).await.expect("join");
        let b = join(&s, &denied).await.expect("join");
        let c = join(&s, &silent).await.expect("join");
        let p = s.media.policies.lock().expect("lock").clone();
        assert_eq!(
            p[0],
            (
                a,
                EndpointPolicy {
                    screen_sharing: true
                }
            )
        );
        assert_eq!(
            p[1],
            (
                b,
                EndpointPolicy {
                    screen_sharing: false
                }
            )
        );
        assert_eq!(
            p[2],
            (
                c,
                EndpointPolicy {
                    screen_sharing: true
                }
            )
        );
        let s = signalling(AuthConfig {
            features_default: FeaturesDefault::Deny,
            ..AuthConfig::default()
        });
        join(&s, &silent.clone()).await.err();
        let mut owner_silent = silent;
        owner_silent.owner = true;
        join(&s, &owner_silent).await.expect("join");
        let p = s.media.policies.lock().expect("lock").clone();
        assert!(!p[0].1.screen_sharing);
    }

    #[tokio::test(start_paused = true)]
    async fn expiry_warns_then_removes_unless_refreshed() {
        let s = signalling(AuthConfig {
            enforce_expiry: true,
            ..AuthConfig::default()
        });
        let mut owner = person("o1", true);
        owner.expires_at = now_unix() + 600;
        let mut short = person("m1", false);
        short.expires_at = now_unix() + 120;
        let _o = join(&s, &owner).await.expect("join");
        let m = join(&s, &short).await.expect("join");
        let mut rx = socket(&s, &m);
        settle().await;
        tokio::time::advance(Duration::from_secs(61)).await;
        settle().await;
        assert_eq!(classes(&mut rx), ["TokenExpiring"]);
        // Another user's token does not refresh it.
        let mut other = person("m2", false);
        other.expires_at = now_unix() + 900;
        assert_eq!(
            s.refresh_as(&room(), &m, &other).map_err(|e| e.code),
            Err("user-mismatch")
        );
        let mut fresh = short.clone();
        fresh.expires_at = now_unix() + 900;
        s.refresh_as(&room(), &m, &fresh).expect("refresh");
        settle().await;
        tokio::time::advance(Duration::from_secs(120)).await;
        settle().await;
        assert!(s.registry.user_id(&room(), &m).is_some(), "refreshed");
        // Without refresh it goes at exp.
        let m2 = join(&s, &short_for("m3", 100)).await.expect("join");
        let mut rx2 = socket(&s, &m2);
        settle().await;
        tokio::time::advance(Duration::from_secs(101)).await;
        settle().await;
        assert_eq!(classes(&mut rx2), ["TokenExpiring", "EndpointRemoved"]);
        assert!(s.registry.user_id(&room(), &m2).is_none());
    }

    fn short_for(user: &str, secs: u64) -> Identity {
        let mut p = person(user, false);
        p.expires_at = now_unix() + secs;
        p
    }

    #[test]
    fn mute_bodies() {
        assert_eq!(
            parse_mute(br#"{"audio":true,"video":false}"#).ok(),
            Some(MuteRequest {
                audio: Some(true),
                video: Some(false)
            })
        );
        assert_eq!(
            parse_mute(br#"{"video":true}"#).ok(),
            Some(MuteRequest {
                audio: None,
                video: Some(true)
            })
        );
        for bad in [&b"{}"[..], b"", b"[]", br#"{"audio":"yes"}"#, b"nope"] {
            assert!(parse_mute(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn canonical_rooms_in_paths() {
        assert!(valid_canonical_room("café-2"));
        assert!(!valid_canonical_room("a b"));
        assert!(!valid_canonical_room("a/b"));
        assert!(!valid_canonical_room(""));
        assert_eq!(room_path_segment("café"), "caf%C3%A9");
        assert_eq!(room_path_segment("room-1.x_y"), "room-1.x_y");
    }

    #[test]
    fn room_names() {
        assert!(valid_room_name("a"));
        assert!(valid_room_name("Team.Meeting_2-b"));
        assert!(valid_room_name(&"x".repeat(128)));
        assert!(!valid_room_name(&"x".repeat(129)));
        assert!(!valid_room_name(""));
        for bad in ["a b", "a%20b", "ä", "a/b", "a?b", "*"] {
            assert!(!valid_room_name(bad), "{bad}");
        }
    }

    #[test]
    fn headers() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer_token(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert_eq!(bearer_token(&h), Some("abc"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer  abc "),
        );
        assert_eq!(bearer_token(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer_token(&h), None);

        assert!(!is_sdp(&h));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("Application/SDP; charset=utf-8"),
        );
        assert!(is_sdp(&h));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(!is_sdp(&h));
    }
}
