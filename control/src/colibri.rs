//! The colibri websocket (jitsi-videobridge's "bridge channel"): the messages the
//! bridge sends, and the task that serves one endpoint's socket.
//!
//! Frames are JSON objects with a `colibriClass`. The bridge sends `ServerHello` on
//! open, `VideoSourcesMap` / `AudioSourcesMap` when a receiver's slots change, and
//! `EndpointConnectivityStatusChangeEvent` when another endpoint comes or goes. It
//! relays `EndpointMessage` between the endpoints of a room, with `from` set by the
//! bridge. Everything else a client sends is accepted and ignored.

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tracing::{debug, info};

use crate::media::{ConferenceId, EndpointId, MappedSource};
use crate::registry::Registry;

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
pub(crate) fn sources_map(video: bool, sources: &[MappedSource]) -> String {
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

/// Handles one text frame from `from`. Malformed frames are ignored.
pub(crate) fn handle_text(
    registry: &Registry,
    conference: &ConferenceId,
    from: &EndpointId,
    text: &str,
) {
    let mut msg: Map<String, Value> = match serde_json::from_str(text) {
        Ok(m) => m,
        Err(e) => {
            debug!(%conference, endpoint = %from, error = %e, "ignoring non-JSON-object colibri frame");
            return;
        }
    };
    let class = match msg.get("colibriClass") {
        Some(Value::String(c)) => c.clone(),
        _ => {
            debug!(%conference, endpoint = %from, "ignoring colibri frame without colibriClass");
            return;
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
        "ClientHello" => debug!(%conference, endpoint = %from, "ClientHello"),
        other => debug!(%conference, endpoint = %from, class = other, "ignoring colibri message"),
    }
}

/// Serves one endpoint's colibri socket until either side closes it, or the
/// endpoint leaves (the registry drops the socket's sender).
pub(crate) async fn run_socket<S>(
    ws: WebSocketStream<S>,
    registry: Arc<Registry>,
    conference: ConferenceId,
    endpoint: EndpointId,
) where
    S: AsyncRead + AsyncWrite + Unpin,
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
                    handle_text(&registry, &conference, &endpoint, text.as_str());
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
            serde_json::from_str(&sources_map(true, std::slice::from_ref(&src))).expect("json");
        assert_eq!(
            v,
            json!({"colibriClass": "VideoSourcesMap", "mappedSources": [
                {"source": "abcd0123-v0", "owner": "abcd0123", "ssrc": 1234, "mid": "1", "videoType": "CAMERA"}
            ]})
        );
        let a: Value = serde_json::from_str(&sources_map(false, &[src])).expect("json");
        assert_eq!(a["colibriClass"], "AudioSourcesMap");
        assert!(a["mappedSources"][0].get("videoType").is_none());

        let c: Value =
            serde_json::from_str(&connectivity(&EndpointId("e1".into()), false)).expect("json");
        assert_eq!(
            c,
            json!({"colibriClass": "EndpointConnectivityStatusChangeEvent", "endpoint": "e1", "active": "false"})
        );
    }
}
