//! The colibri websocket (jitsi-videobridge's "bridge channel"): the messages the
//! bridge sends, and the task that serves one endpoint's socket.
//!
//! Each entry of `VideoSourcesMap` / `AudioSourcesMap` carries, besides jitsi's
//! `source`, `owner`, `ssrc` (and `videoType`, `mid`), the owner's display name
//! as `ownerName` when its token had a `context.user.name`.
//!
//! Frames are JSON objects with a `colibriClass`. The bridge sends `ServerHello` on
//! open, `VideoSourcesMap` / `AudioSourcesMap` when a receiver's slots change,
//! `EndpointConnectivityStatusChangeEvent` when another endpoint comes or goes, and
//! `DominantSpeakerEndpointChangeEvent` `{"dominantSpeakerEndpoint": id,
//! "previousSpeakers": [ids, most recent first]}` to everyone in the conference when
//! its dominant speaker changes (and the latest one to a socket that opens later), and
//! `ConnectionStats` `{"estimatedDownlinkBandwidth": bps}` to a receiver every 2 s
//! while the bridge has a bandwidth estimate toward it (not kept for a socket
//! that is not open). It
//! relays `EndpointMessage` between the endpoints of a room, with `from` set by the
//! bridge. Everything else a client sends is accepted and ignored, except
//! `SourceVideoTypeMessage` (`{"sourceName": "{id}-v0", "videoType": "desktop"}`):
//! an endpoint without the `screen-sharing` feature that marks one of its own
//! sources as a desktop gets that source refused.
//!
//! Allocation (jitsi-videobridge's `doc/allocation.md`, issue 11): a client's
//! `ReceiverVideoConstraints` (`lastN`, `selectedSources`, `onStageSources`,
//! `defaultConstraints`, `constraints`; the older `selectedEndpoints` /
//! `onStageEndpoints` name each endpoint's `-v0`) and `LastNChangedEvent`
//! (`lastN` alone) go to the media plane; a malformed one is logged, counted
//! (`colibri_bad_receiver_constraints`) and ignored. The bridge sends
//! `ForwardedSources` `{"forwardedSources": [names]}` to a receiver when the
//! video sources it forwards to it change, and `SenderSourceConstraints`
//! `{"sourceName", "maxHeight"}` to a sender when the tallest video any receiver
//! wants of its source changes (0: nobody watches it; -1: no limit); the latest
//! of each reaches a socket that opens later.
//!
//! Token and room rules add these messages from the bridge (issue 5):
//!
//! - `ForwardingRefused` `{"source", "reason", "feature"}`: a source of this
//!   endpoint is not forwarded; `reason` is `screen-sharing-not-granted` or
//!   `one-video-source-only`, `feature` the token feature that would allow it.
//! - `EndpointMuted` `{"audio"?: bool, "video"?: bool}`: a moderator muted (`true`)
//!   or unmuted (`false`) this endpoint's media.
//! - `ConferenceEnding` `{"reason": "owner-left", "inSeconds"}`: the last owner
//!   left; the conference ends after the grace period unless an owner joins.
//! - `TokenExpiring` `{"expiresAt", "inSeconds"}`: with `auth.enforce_expiry`,
//!   60 s before the token's `exp`; send a fresh token to
//!   `PUT /conferences/{room}/endpoints/{id}/token` to stay.
//! - `EndpointRemoved` `{"reason"}`: the last message before the bridge closes
//!   the socket and expires the endpoint; `reason` is `kicked`, `owner-left` or
//!   `token-expired`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tracing::{debug, info};

use crate::media::{ConferenceId, EndpointId, MappedSource, RefusalReason};
use crate::receiver_constraints::ReceiverConstraintsUpdate;
use crate::registry::{Membership, Registry};

/// Largest websocket message (and frame) accepted from a client.
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024;

/// The websocket limits used for colibri sockets.
pub(crate) fn websocket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_SIZE))
        .max_frame_size(Some(MAX_MESSAGE_SIZE))
}

/// `{"colibriClass":"ServerHello","version":...}`, sent first on every socket.
pub(crate) fn server_hello() -> String {
    json!({ "colibriClass": "ServerHello", "version": env!("CARGO_PKG_VERSION") }).to_string()
}

/// `VideoSourcesMap` (when `video`) or `AudioSourcesMap` for the given sources.
///
/// `owner_name` gives the display name (`context.user.name` of the token) of a
/// source's owner, sent as `ownerName` when there is one (a ringbridge
/// addition: jitsi clients learn names from XMPP presence, which a bridge-only
/// deployment does not have).
pub(crate) fn sources_map(
    video: bool,
    sources: &[MappedSource],
    owner_name: impl Fn(&str) -> Option<String>,
) -> String {
    let mapped: Vec<Value> = sources
        .iter()
        .map(|s| {
            let mut m = json!({
                "source": s.source,
                "owner": s.owner,
                "ssrc": s.ssrc,
                "mid": s.mid,
            });
            if video {
                m["videoType"] = Value::String("CAMERA".into());
            }
            if let Some(name) = owner_name(&s.owner) {
                m["ownerName"] = Value::String(name);
            }
            m
        })
        .collect();
    let class = if video {
        "VideoSourcesMap"
    } else {
        "AudioSourcesMap"
    };
    json!({ "colibriClass": class, "mappedSources": mapped }).to_string()
}

/// `EndpointConnectivityStatusChangeEvent`; jitsi sends `active` as a string.
pub(crate) fn connectivity(endpoint: &EndpointId, active: bool) -> String {
    json!({
        "colibriClass": "EndpointConnectivityStatusChangeEvent",
        "endpoint": endpoint.0,
        "active": if active { "true" } else { "false" },
    })
    .to_string()
}

/// `ForwardingRefused`: a source of this endpoint is not forwarded, and why.
pub(crate) fn forwarding_refused(source: &str, reason: RefusalReason) -> String {
    json!({
        "colibriClass": "ForwardingRefused",
        "source": source,
        "reason": reason.code(),
        "feature": "screen-sharing",
    })
    .to_string()
}

/// `EndpointMuted`: what a moderator changed (`true` muted, `false` unmuted).
pub(crate) fn endpoint_muted(audio: Option<bool>, video: Option<bool>) -> String {
    let mut m = json!({ "colibriClass": "EndpointMuted" });
    if let Some(a) = audio {
        m["audio"] = Value::Bool(a);
    }
    if let Some(v) = video {
        m["video"] = Value::Bool(v);
    }
    m.to_string()
}

/// `ConferenceEnding`: the last owner left; the conference ends in `in_seconds`.
pub(crate) fn conference_ending(in_seconds: u64) -> String {
    json!({ "colibriClass": "ConferenceEnding", "reason": "owner-left", "inSeconds": in_seconds })
        .to_string()
}

/// `TokenExpiring`: the endpoint's token expires at `expires_at` (Unix seconds).
pub(crate) fn token_expiring(expires_at: u64, in_seconds: u64) -> String {
    json!({ "colibriClass": "TokenExpiring", "expiresAt": expires_at, "inSeconds": in_seconds })
        .to_string()
}

/// jitsi-videobridge's `DominantSpeakerEndpointChangeEvent`: `dominant` is the
/// conference's dominant speaker now, `previous` the earlier ones still in the
/// conference, most recent first.
pub(crate) fn dominant_speaker(dominant: &EndpointId, previous: &[EndpointId]) -> String {
    json!({
        "colibriClass": "DominantSpeakerEndpointChangeEvent",
        "dominantSpeakerEndpoint": dominant.0,
        "previousSpeakers": previous.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(),
    })
    .to_string()
}

/// jitsi-videobridge's `ConnectionStats`: the bridge's bandwidth estimate
/// toward this endpoint, bits per second.
pub(crate) fn connection_stats(estimated_downlink_bps: u64) -> String {
    json!({
        "colibriClass": "ConnectionStats",
        "estimatedDownlinkBandwidth": estimated_downlink_bps,
    })
    .to_string()
}

/// jitsi-videobridge's `ForwardedSources`: the video sources the receiver gets now.
pub(crate) fn forwarded_sources(sources: &[std::sync::Arc<str>]) -> String {
    json!({ "colibriClass": "ForwardedSources", "forwardedSources": sources }).to_string()
}

/// jitsi-videobridge's `SenderSourceConstraints`: the tallest video any receiver
/// wants of the sender's `source` (0: nobody, -1: no limit).
pub(crate) fn sender_source_constraints(source: &str, max_height: i32) -> String {
    json!({ "colibriClass": "SenderSourceConstraints", "sourceName": source, "maxHeight": max_height })
        .to_string()
}

/// `EndpointRemoved`: the last message before the socket closes.
pub(crate) fn endpoint_removed(reason: &str) -> String {
    json!({ "colibriClass": "EndpointRemoved", "reason": reason }).to_string()
}

/// Something a client's message asks of the control plane beyond the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SocketAction {
    /// The endpoint marked its own source `source` as a desktop, and may not
    /// share screens: stop forwarding it.
    RefuseScreen {
        /// Jitsi source name.
        source: String,
    },
    /// `ReceiverVideoConstraints` (or the older `LastNChangedEvent`): what the
    /// endpoint wants to receive; only the fields the message carried.
    ReceiverConstraints(ReceiverConstraintsUpdate),
}

/// `ReceiverVideoConstraints` and `LastNChangedEvent` messages ignored because
/// a field was malformed (see
/// [`ConstraintsError`](crate::receiver_constraints::ConstraintsError)), since start.
static BAD_RECEIVER_CONSTRAINTS: AtomicU64 = AtomicU64::new(0);

/// How many `ReceiverVideoConstraints` / `LastNChangedEvent` messages were
/// ignored as malformed, since start (the `colibri_bad_receiver_constraints`
/// metric).
pub fn bad_receiver_constraints() -> u64 {
    BAD_RECEIVER_CONSTRAINTS.load(Ordering::Relaxed)
}

/// Reads a receiver's constraints message; a malformed one is logged, counted
/// and ignored whole.
fn receiver_constraints(
    conference: &ConferenceId,
    from: &EndpointId,
    class: &str,
    msg: &Map<String, Value>,
) -> Option<SocketAction> {
    match ReceiverConstraintsUpdate::parse(msg) {
        Ok(mut update) => {
            if class == "LastNChangedEvent" {
                // jvb's older message sets lastN alone.
                update = ReceiverConstraintsUpdate {
                    last_n: update.last_n,
                    ..Default::default()
                };
            }
            Some(SocketAction::ReceiverConstraints(update))
        }
        Err(e) => {
            BAD_RECEIVER_CONSTRAINTS.fetch_add(1, Ordering::Relaxed);
            debug!(%conference, endpoint = %from, class, error = %e, "ignoring malformed receiver constraints");
            None
        }
    }
}

/// Handles one text frame from `from`. Malformed frames are ignored.
pub(crate) fn handle_text(
    registry: &Registry,
    conference: &ConferenceId,
    from: &EndpointId,
    text: &str,
) -> Option<SocketAction> {
    let mut msg: Map<String, Value> = match serde_json::from_str(text) {
        Ok(m) => m,
        Err(e) => {
            debug!(%conference, endpoint = %from, error = %e, "ignoring non-JSON-object colibri frame");
            return None;
        }
    };
    let class = match msg.get("colibriClass") {
        Some(Value::String(c)) => c.clone(),
        _ => {
            debug!(%conference, endpoint = %from, "ignoring colibri frame without colibriClass");
            return None;
        }
    };
    match class.as_str() {
        "EndpointMessage" => {
            let to = match msg.get("to") {
                Some(Value::String(to)) if !to.is_empty() => Some(EndpointId(to.clone())),
                _ => None,
            };
            msg.insert("from".into(), Value::String(from.0.clone()));
            let text = Value::Object(msg).to_string();
            match to {
                Some(to) => {
                    if !registry.send_to(conference, &to, text) {
                        debug!(%conference, endpoint = %from, "EndpointMessage to an endpoint that is not connected");
                    }
                }
                None => registry.broadcast(conference, Some(from), &text),
            }
        }
        "SourceVideoTypeMessage" => {
            let desktop = msg
                .get("videoType")
                .and_then(Value::as_str)
                .is_some_and(|t| t.eq_ignore_ascii_case("desktop"));
            let source = msg.get("sourceName").and_then(Value::as_str)?;
            // Only the endpoint's own sources, and only when it may not share.
            let own = source
                .strip_prefix(from.0.as_str())
                .is_some_and(|rest| rest.starts_with('-'));
            let may_share = registry
                .membership(conference, from)
                .is_some_and(|m| m.screen_sharing);
            if desktop && own && !may_share {
                return Some(SocketAction::RefuseScreen {
                    source: source.to_owned(),
                });
            }
        }
        "ReceiverVideoConstraints" | "LastNChangedEvent" => {
            return receiver_constraints(conference, from, &class, &msg);
        }
        "ClientHello" => debug!(%conference, endpoint = %from, "ClientHello"),
        other => debug!(%conference, endpoint = %from, class = other, "ignoring colibri message"),
    }
    None
}

/// Runs one colibri text frame through [`handle_text`], exactly as a live socket
/// would, from the first of two endpoints of a fresh conference whose sockets are
/// both attached. Every `$FROM` in `text` is first replaced by the sender's
/// endpoint id (a fresh random one), so that a fuzzer can name the sender's own
/// sources. Returns whether the frame asked to refuse a screen share, and how
/// many frames it queued for the other endpoint.
///
/// The narrowest public way into colibri message parsing for the fuzz target
/// (`fuzz/fuzz_targets/colibri.rs`): the registry stays private to this crate.
pub fn handle_frame_for_fuzzing(text: &str) -> (bool, usize) {
    let registry = Registry::default();
    let conference = ConferenceId("fuzz".into());
    // The sender may not share screens, so a desktop `SourceVideoTypeMessage`
    // reaches the refusal path too.
    let member = Membership {
        display_name: Some("a".into()),
        owner: true,
        ..Membership::default()
    };
    let Ok((from, _)) = registry.admit(&conference, member, false) else {
        return (false, 0);
    };
    let (other, _) = registry.reserve(&conference, None, None);
    let _own = registry.attach_socket(&conference, &from);
    let Some((_, mut rx)) = registry.attach_socket(&conference, &other) else {
        return (false, 0);
    };
    // What attaching queued (connectivity of the other endpoint) is not the frame's.
    while rx.try_recv().is_ok() {}
    let text = text.replace("$FROM", &from.0);
    let refused = matches!(
        handle_text(&registry, &conference, &from, &text),
        Some(SocketAction::RefuseScreen { .. })
    );
    let mut queued = 0;
    while rx.try_recv().is_ok() {
        queued += 1;
    }
    (refused, queued)
}

/// Serves one endpoint's colibri socket until either side closes it, or the
/// endpoint leaves (the registry drops the socket's sender).
///
/// `on_action` gets what [`handle_text`] asks for beyond the registry.
pub(crate) async fn run_socket<S, F>(
    ws: WebSocketStream<S>,
    registry: Arc<Registry>,
    conference: ConferenceId,
    endpoint: EndpointId,
    on_action: F,
) where
    S: AsyncRead + AsyncWrite + Unpin,
    F: Fn(SocketAction),
{
    let (mut sink, mut stream) = ws.split();
    let Some((socket_id, mut outgoing)) = registry.attach_socket(&conference, &endpoint) else {
        debug!(%conference, %endpoint, "endpoint left before its websocket opened");
        let _ = sink.send(Message::Close(None)).await;
        return;
    };
    let name = registry.display_name(&conference, &endpoint);
    info!(%conference, %endpoint, name = name.as_deref().unwrap_or(""), "colibri websocket open");
    loop {
        tokio::select! {
            out = outgoing.recv() => match out {
                Some(text) => {
                    if let Err(e) = sink.send(Message::text(text)).await {
                        debug!(%conference, %endpoint, error = %e, "colibri send failed");
                        break;
                    }
                }
                None => {
                    // The endpoint left or was expired, or the bridge is stopping.
                    let _ = sink.send(Message::Close(None)).await;
                    break;
                }
            },
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    if let Some(action) = handle_text(&registry, &conference, &endpoint, text.as_str()) {
                        on_action(action);
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    debug!(%conference, %endpoint, "ignoring binary colibri frame");
                }
                Some(Ok(Message::Close(_))) | None => break,
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    debug!(%conference, %endpoint, error = %e, "colibri websocket error");
                    break;
                }
            },
        }
    }
    registry.detach_socket(&conference, &endpoint, socket_id);
    info!(%conference, %endpoint, "colibri websocket closed");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// jitsi-videobridge's `ReceiverVideoConstraints` becomes an update of the
    /// fields it carries; `LastNChangedEvent` of `lastN` alone; a malformed one
    /// is counted and ignored.
    #[test]
    fn receiver_video_constraints_become_an_update() {
        let registry = Registry::default();
        let (c, e) = (ConferenceId("r".into()), EndpointId("e".into()));
        let action = |text: &str| handle_text(&registry, &c, &e, text);
        let frame = |h: &str| {
            format!(
                r#"{{"colibriClass":"ReceiverVideoConstraints","lastN":3,"defaultConstraints":{{"maxHeight":{h}}}}}"#
            )
        };
        let update = |text: &str| match action(text) {
            Some(SocketAction::ReceiverConstraints(u)) => Some(u),
            _ => None,
        };
        let u = update(&frame("180")).expect("an update");
        assert_eq!((u.last_n, u.default_max_height), (Some(3), Some(180)));
        assert_eq!(
            update(&frame("0")).and_then(|u| u.default_max_height),
            Some(0)
        );
        assert_eq!(
            update(&frame("-1")).and_then(|u| u.default_max_height),
            Some(u16::MAX)
        );
        assert_eq!(
            update(&frame("100000")).and_then(|u| u.default_max_height),
            Some(u16::MAX)
        );
        assert_eq!(
            update(r#"{"colibriClass":"ReceiverVideoConstraints"}"#),
            Some(ReceiverConstraintsUpdate::default())
        );
        let u =
            update(r#"{"colibriClass":"LastNChangedEvent","lastN":1,"selectedSources":["x-v0"]}"#)
                .expect("an update");
        assert_eq!(
            u,
            ReceiverConstraintsUpdate {
                last_n: Some(1),
                ..Default::default()
            }
        );
        let before = bad_receiver_constraints();
        assert_eq!(
            action(r#"{"colibriClass":"ReceiverVideoConstraints","lastN":"x"}"#),
            None
        );
        assert!(bad_receiver_constraints() > before, "counted");
    }

    /// The fuzz target's entry point reaches what a live socket does: a broadcast
    /// reaches the other endpoint once, a desktop source of the sender's own is
    /// refused (it may not share screens), garbage is ignored.
    #[test]
    fn fuzzing_entry_point_relays_refuses_and_ignores() {
        assert_eq!(
            handle_frame_for_fuzzing(r#"{"colibriClass":"EndpointMessage","msgPayload":{}}"#),
            (false, 1)
        );
        assert_eq!(
            handle_frame_for_fuzzing(
                r#"{"colibriClass":"SourceVideoTypeMessage","sourceName":"$FROM-v0","videoType":"desktop"}"#
            ),
            (true, 0)
        );
        assert_eq!(
            handle_frame_for_fuzzing(
                r#"{"colibriClass":"SourceVideoTypeMessage","sourceName":"other-v0","videoType":"desktop"}"#
            ),
            (false, 0)
        );
        assert_eq!(handle_frame_for_fuzzing("{not json"), (false, 0));
    }

    #[test]
    fn message_shapes() {
        let hello: Value = serde_json::from_str(&server_hello()).expect("json");
        assert_eq!(hello["colibriClass"], "ServerHello");
        assert_eq!(hello["version"], env!("CARGO_PKG_VERSION"));

        let src = MappedSource {
            source: "abcd0123-v0".into(),
            owner: "abcd0123".into(),
            ssrc: 1234,
            video: true,
            mid: "1".into(),
        };
        let v: Value =
            serde_json::from_str(&sources_map(true, std::slice::from_ref(&src), |_| None))
                .expect("json");
        assert_eq!(
            v,
            json!({"colibriClass": "VideoSourcesMap", "mappedSources": [
                {"source": "abcd0123-v0", "owner": "abcd0123", "ssrc": 1234, "mid": "1", "videoType": "CAMERA"}
            ]})
        );
        let a: Value = serde_json::from_str(&sources_map(false, &[src], |owner| {
            (owner == "abcd0123").then(|| "Alice".to_owned())
        }))
        .expect("json");
        assert_eq!(a["colibriClass"], "AudioSourcesMap");
        assert!(a["mappedSources"][0].get("videoType").is_none());
        assert_eq!(a["mappedSources"][0]["ownerName"], "Alice");

        let d: Value = serde_json::from_str(&dominant_speaker(
            &EndpointId("e2".into()),
            &[EndpointId("e1".into()), EndpointId("e3".into())],
        ))
        .expect("json");
        assert_eq!(
            d,
            json!({"colibriClass": "DominantSpeakerEndpointChangeEvent",
                   "dominantSpeakerEndpoint": "e2", "previousSpeakers": ["e1", "e3"]})
        );

        let c: Value =
            serde_json::from_str(&connectivity(&EndpointId("e1".into()), false)).expect("json");
        assert_eq!(
            c,
            json!({"colibriClass": "EndpointConnectivityStatusChangeEvent", "endpoint": "e1", "active": "false"})
        );
    }
}
