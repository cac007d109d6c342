//! The public listener: joining and leaving conferences (WHIP-shaped), and the
//! colibri websocket upgrade.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tracing::{debug, info, warn};

use crate::colibri;
use crate::error::ApiError;
use crate::http::{Body, Handler, query_param, response, segments};
use crate::media::{ConferenceId, EndpointId, JoinRequest, MediaError, MediaPlane};
use crate::registry::{Registry, SocketRefusal};
use crate::token::{Identity, TokenError, TokenVerifier};

/// Largest SDP offer accepted.
pub const MAX_OFFER_SIZE: usize = 64 * 1024;

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
}

impl<M: MediaPlane> Handler for Signalling<M> {
    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_owned();
        let segs = segments(&path);
        let result = match segs.as_slice() {
            ["conferences", room, "endpoints"] => match *req.method() {
                Method::POST => self.join(room, req).await,
                _ => Err(ApiError::method_not_allowed()),
            },
            ["conferences", room, "endpoints", endpoint] => match *req.method() {
                Method::DELETE => self.leave(room, endpoint, &req).await,
                _ => Err(ApiError::method_not_allowed()),
            },
            ["colibri-ws", server_id, room, endpoint] => match *req.method() {
                Method::GET => self.upgrade(server_id, room, endpoint, req),
                _ => Err(ApiError::method_not_allowed()),
            },
            _ => Err(ApiError::not_found("no such path")),
        };
        result.unwrap_or_else(ApiError::into_response)
    }
}

impl<M: MediaPlane> Signalling<M> {
    fn check_room(room: &str) -> Result<ConferenceId, ApiError> {
        if valid_room_name(room) {
            Ok(ConferenceId(room.to_owned()))
        } else {
            Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad-room",
                "room names are 1 to 128 characters of A-Z a-z 0-9 . _ -",
            ))
        }
    }

    fn authorize<B>(&self, req: &Request<B>, room: &ConferenceId) -> Result<Identity, ApiError> {
        let token = bearer_token(req.headers())
            .or_else(|| query_param(req.uri().query(), "jwt").filter(|t| !t.is_empty()))
            .ok_or(TokenError::Missing)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.verifier
            .verify(token, &room.0, now)
            .inspect_err(|e| debug!(conference = %room, code = e.code(), "token refused"))
            .map_err(ApiError::from)
    }

    async fn join(&self, room: &str, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
        let conference = Self::check_room(room)?;
        let identity = self.authorize(&req, &conference)?;
        if !is_sdp(req.headers()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "the offer must be sent as Content-Type: application/sdp",
            ));
        }
        let body = Limited::new(req.into_body(), MAX_OFFER_SIZE)
            .collect()
            .await
            .map_err(|_| {
                ApiError::bad_request(format!(
                    "the offer is missing or larger than {MAX_OFFER_SIZE} bytes"
                ))
            })?
            .to_bytes();
        if body.is_empty() {
            return Err(ApiError::bad_request("the offer is empty"));
        }
        let offer_sdp = String::from_utf8(body.to_vec())
            .map_err(|_| ApiError::bad_request("the offer is not UTF-8"))?;

        // Registered before the media plane hears of it, so that events about
        // the new endpoint (its first sources map) are never lost.
        let (endpoint, pwd) =
            self.registry
                .reserve(&conference, identity.name.clone(), identity.user_id.clone());
        let join = JoinRequest {
            conference: conference.clone(),
            endpoint: endpoint.clone(),
            offer_sdp,
        };
        let answer = match self.media.join(join).await {
            Ok(answer) => answer,
            Err(e) => {
                self.registry.remove(&conference, &endpoint, false);
                info!(%conference, %endpoint, error = %e, "join refused by the media plane");
                return Err(media_error(e));
            }
        };
        info!(%conference, %endpoint, owner = identity.owner, "endpoint joined");

        let mut resp = response(
            StatusCode::CREATED,
            Some("application/sdp"),
            answer.answer_sdp,
        );
        let location = format!("/conferences/{conference}/endpoints/{endpoint}");
        let link = format!(
            "</colibri-ws/{}/{conference}/{endpoint}?pwd={pwd}>; rel=\"colibri-ws\"",
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
        &self,
        room: &str,
        endpoint: &str,
        req: &Request<B>,
    ) -> Result<Response<Body>, ApiError> {
        let conference = Self::check_room(room)?;
        let identity = self.authorize(req, &conference)?;
        let endpoint = EndpointId(endpoint.to_owned());
        let Some(joined_as) = self.registry.user_id(&conference, &endpoint) else {
            return Err(ApiError::not_found("no such endpoint in this conference"));
        };
        // Leaving is for the endpoint's own user; removing someone else is a
        // moderator action, for owners only.
        let same_user = matches!((&joined_as, &identity.user_id), (Some(a), Some(b)) if a == b);
        if !same_user && !identity.owner {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "moderator-required",
                "only the endpoint's own user or an owner may remove it",
            ));
        }
        if !self.registry.remove(&conference, &endpoint, true) {
            return Err(ApiError::not_found("no such endpoint in this conference"));
        }
        match self.media.leave(conference.clone(), endpoint.clone()).await {
            Ok(()) | Err(MediaError::NotFound) => {}
            Err(e) => {
                warn!(%conference, %endpoint, error = %e, "media plane failed to remove endpoint")
            }
        }
        info!(%conference, %endpoint, "endpoint left");
        Ok(response(StatusCode::NO_CONTENT, None, ""))
    }

    fn upgrade(
        &self,
        server_id: &str,
        room: &str,
        endpoint: &str,
        mut req: Request<Incoming>,
    ) -> Result<Response<Body>, ApiError> {
        if server_id != self.server_id || !valid_room_name(room) {
            return Err(ApiError::not_found("no such colibri websocket"));
        }
        let conference = ConferenceId(room.to_owned());
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
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    let ws = WebSocketStream::from_raw_socket(
                        TokioIo::new(upgraded),
                        Role::Server,
                        Some(colibri::websocket_config()),
                    )
                    .await;
                    colibri::run_socket(ws, registry, conference, endpoint).await;
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
