//! The colibri websocket, end to end with a real websocket client.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use ringbridge_control::{
    ConferenceId, EndpointId, MappedSource, MediaEvent, ReceiverConstraintsUpdate,
};
use serde_json::json;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::fake::*;

const QUIET: Duration = Duration::from_millis(300);

fn http_status(err: WsError) -> u16 {
    match err {
        WsError::Http(resp) => resp.status().as_u16(),
        other => panic!("expected an HTTP refusal, got {other}"),
    }
}

#[tokio::test]
async fn server_hello_on_open() {
    let h = Harness::start().await;
    let (_, path) = h.join("room1").await;
    let mut ws = ws_connect(h.public, &path).await.expect("opens");
    let hello = next_json(&mut ws).await;
    assert_eq!(
        hello,
        json!({"colibriClass": "ServerHello", "version": env!("CARGO_PKG_VERSION")})
    );
    // ClientHello is accepted without an answer, and without closing the socket.
    send_json(&mut ws, &json!({"colibriClass": "ClientHello"})).await;
    assert_silent(&mut ws, QUIET).await;
    h.shutdown().await.expect("clean shutdown");
    // Shutdown closes the socket.
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(end.is_ok(), "socket still open after shutdown");
}

#[tokio::test]
async fn refusals() {
    let h = Harness::start().await;
    let (id, path) = h.join("room1").await;
    let (base, pwd) = path.split_once("?pwd=").expect("pwd in link");

    let wrong = format!("{base}?pwd={}", "A".repeat(pwd.len()));
    assert_eq!(
        http_status(ws_connect(h.public, &wrong).await.expect_err("refused")),
        401
    );
    assert_eq!(
        http_status(ws_connect(h.public, base).await.expect_err("refused")),
        401
    );

    let other_server = path.replace(SERVER_ID, "other-bridge");
    assert_eq!(
        http_status(
            ws_connect(h.public, &other_server)
                .await
                .expect_err("refused")
        ),
        404
    );
    let unknown = path.replace(&id, "00000000");
    assert_eq!(
        http_status(ws_connect(h.public, &unknown).await.expect_err("refused")),
        404
    );
    let other_room = path.replace("/room1/", "/room2/");
    assert_eq!(
        http_status(
            ws_connect(h.public, &other_room)
                .await
                .expect_err("refused")
        ),
        404
    );

    // The error body is JSON with the stable code, without the pwd.
    let resp = request(h.public, "GET", &wrong, &[], b"").await;
    resp.assert_error(401, "bad-pwd");
    assert!(!resp.text().contains(pwd));

    // The right pwd still works.
    open(&h, &path).await;
}

#[tokio::test]
async fn endpoint_messages_broadcast_and_unicast_with_from_set_by_bridge() {
    let h = Harness::start().await;
    let (a, pa) = h.join("room1").await;
    let (b, pb) = h.join("room1").await;
    let (c, pc) = h.join("room1").await;
    let (_, pother) = h.join("room2").await;
    let mut wa = open(&h, &pa).await;
    let mut wb = open(&h, &pb).await;
    let mut wc = open(&h, &pc).await;
    let mut wother = open(&h, &pother).await;

    // Broadcast: `to` empty; a forged `from` is overwritten.
    send_json(
        &mut wa,
        &json!({"colibriClass": "EndpointMessage", "to": "", "from": "mallory",
                "msgPayload": {"type": "chat", "text": "hi"}}),
    )
    .await;
    let expected = json!({"colibriClass": "EndpointMessage", "to": "", "from": a,
                          "msgPayload": {"type": "chat", "text": "hi"}});
    assert_eq!(next_json(&mut wb).await, expected);
    assert_eq!(next_json(&mut wc).await, expected);

    // Broadcast without `to` at all.
    send_json(
        &mut wb,
        &json!({"colibriClass": "EndpointMessage", "msgPayload": 7}),
    )
    .await;
    let got = next_json(&mut wa).await;
    assert_eq!(
        got,
        json!({"colibriClass": "EndpointMessage", "from": b, "msgPayload": 7})
    );
    assert_eq!(next_json(&mut wc).await["from"], b.as_str());

    // Unicast.
    send_json(
        &mut wc,
        &json!({"colibriClass": "EndpointMessage", "to": a, "msgPayload": {"x": 1}}),
    )
    .await;
    let got = next_json(&mut wa).await;
    assert_eq!(got["from"], c.as_str());
    assert_eq!(got["to"], a.as_str());
    assert_eq!(got["msgPayload"], json!({"x": 1}));

    // Nobody else got the unicast, the sender got no echo, the other room got nothing.
    assert_silent(&mut wb, QUIET).await;
    assert_silent(&mut wc, Duration::from_millis(50)).await;
    assert_silent(&mut wother, Duration::from_millis(50)).await;
    // An earlier broadcast was not echoed to its sender either.
    assert_silent(&mut wa, Duration::from_millis(50)).await;
}

#[tokio::test]
async fn malformed_frames_are_ignored() {
    let h = Harness::start().await;
    let (a, pa) = h.join("room1").await;
    let (_, pb) = h.join("room1").await;
    let mut wa = open(&h, &pa).await;
    let mut wb = open(&h, &pb).await;
    for junk in ["not json", "[1,2]", "{\"colibriClass\": 5}", "{}", "\"x\""] {
        wa.send(Message::text(junk)).await.expect("send");
    }
    wa.send(Message::binary(vec![0u8, 1, 2]))
        .await
        .expect("send");
    send_json(
        &mut wa,
        &json!({"colibriClass": "ReceiverVideoConstraints", "lastN": 3}),
    )
    .await;
    send_json(
        &mut wa,
        &json!({"colibriClass": "LastNChangedEvent", "lastN": 1}),
    )
    .await;
    // Still alive and relaying.
    send_json(
        &mut wa,
        &json!({"colibriClass": "EndpointMessage", "to": "", "msgPayload": 1}),
    )
    .await;
    assert_eq!(next_json(&mut wb).await["from"], a.as_str());
}

#[tokio::test]
async fn oversized_frames_close_only_that_socket() {
    let h = Harness::start().await;
    let (_, pa) = h.join("room1").await;
    let (_, pb) = h.join("room1").await;
    let mut wa = open(&h, &pa).await;
    let mut wb = open(&h, &pb).await;
    let big = json!({"colibriClass": "EndpointMessage", "msgPayload": "x".repeat(70 * 1024)});
    let _ = wa.send(Message::text(big.to_string())).await;
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match wa.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "oversized message did not close the socket");
    assert_silent(&mut wb, QUIET).await;
    // The endpoint itself may reconnect.
    open(&h, &pa).await;
}

fn source(owner: &str, video: bool, ssrc: u32, mid: &str) -> MappedSource {
    MappedSource {
        source: format!("{owner}-{}0", if video { "v" } else { "a" }).into(),
        owner: owner.into(),
        ssrc,
        video,
        mid: mid.into(),
    }
}

#[tokio::test]
async fn sources_maps_after_event_and_queued_before_connect() {
    let h = Harness::start().await;
    let (a, pa) = h.join("room1").await;
    let (b, pb) = h.join("room1").await;

    // Queued: b's map changes before b's socket exists.
    h.event(MediaEvent::SourcesMapChanged {
        conference: ConferenceId("room1".into()),
        receiver: EndpointId(b.clone()),
        sources: vec![source(&a, true, 1001, "1"), source(&a, false, 2001, "0")],
    });
    // An older map for b, replaced below: only the latest may be delivered.
    h.event(MediaEvent::SourcesMapChanged {
        conference: ConferenceId("room1".into()),
        receiver: EndpointId(b.clone()),
        sources: vec![source(&a, true, 1002, "1"), source(&a, false, 2002, "0")],
    });
    let mut wa = open(&h, &pa).await;
    // Give the event task time to apply both events before b connects.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut wb = open(&h, &pb).await;
    let video = next_json(&mut wb).await;
    assert_eq!(
        video,
        json!({"colibriClass": "VideoSourcesMap", "mappedSources": [
            {"source": format!("{a}-v0"), "owner": a, "ssrc": 1002, "mid": "1", "videoType": "CAMERA",
             "ownerName": "Test User"}
        ]})
    );
    let audio = next_json(&mut wb).await;
    assert_eq!(
        audio,
        json!({"colibriClass": "AudioSourcesMap", "mappedSources": [
            {"source": format!("{a}-a0"), "owner": a, "ssrc": 2002, "mid": "0", "ownerName": "Test User"}
        ]})
    );
    assert_silent(&mut wb, QUIET).await;

    // Live: a's map arrives on a's open socket.
    h.event(MediaEvent::SourcesMapChanged {
        conference: ConferenceId("room1".into()),
        receiver: EndpointId(a.clone()),
        sources: vec![source(&b, true, 3000, "2")],
    });
    let video = next_json(&mut wa).await;
    assert_eq!(video["colibriClass"], "VideoSourcesMap");
    assert_eq!(video["mappedSources"][0]["ssrc"], 3000);
    assert_eq!(video["mappedSources"][0]["owner"], b.as_str());
    let audio = next_json(&mut wa).await;
    assert_eq!(
        audio,
        json!({"colibriClass": "AudioSourcesMap", "mappedSources": []})
    );
    // Only the changed map is sent again.
    h.event(MediaEvent::SourcesMapChanged {
        conference: ConferenceId("room1".into()),
        receiver: EndpointId(a.clone()),
        sources: vec![source(&b, true, 3001, "2")],
    });
    assert_eq!(next_json(&mut wa).await["mappedSources"][0]["ssrc"], 3001);
    assert_silent(&mut wa, QUIET).await;
    // b got none of a's maps.
    assert_silent(&mut wb, Duration::from_millis(50)).await;
}

#[tokio::test]
async fn dominant_speaker_reaches_every_socket_of_the_room_and_later_ones() {
    let h = Harness::start().await;
    let (a, pa) = h.join("room1").await;
    let (b, pb) = h.join("room1").await;
    let (_c, pc) = h.join("room1").await;
    let (_, po) = h.join("other").await;
    let mut wa = open(&h, &pa).await;
    let mut wb = open(&h, &pb).await;
    let mut wo = open(&h, &po).await;
    h.event(MediaEvent::DominantSpeakerChanged {
        conference: ConferenceId("room1".into()),
        dominant: EndpointId(b.clone()),
        previous: vec![EndpointId(a.clone())],
    });
    let expected = json!({"colibriClass": "DominantSpeakerEndpointChangeEvent",
                          "dominantSpeakerEndpoint": b, "previousSpeakers": [a]});
    // Everyone in the room, the speaker too (jitsi clients expect it).
    assert_eq!(next_json(&mut wa).await, expected);
    assert_eq!(next_json(&mut wb).await, expected);
    // A socket opened later gets the conference's current speaker.
    let mut wc = open(&h, &pc).await;
    assert_eq!(next_json(&mut wc).await, expected);
    // Another room hears nothing.
    assert_silent(&mut wo, QUIET).await;
}

#[tokio::test]
async fn connection_stats_reach_only_their_receiver() {
    let h = Harness::start().await;
    let (a, pa) = h.join("room1").await;
    let (_b, pb) = h.join("room1").await;
    let mut wa = open(&h, &pa).await;
    let mut wb = open(&h, &pb).await;
    h.event(MediaEvent::ConnectionStats {
        conference: ConferenceId("room1".into()),
        endpoint: EndpointId(a.clone()),
        estimated_downlink_bps: 1_234_567,
    });
    assert_eq!(
        next_json(&mut wa).await,
        json!({"colibriClass": "ConnectionStats", "estimatedDownlinkBandwidth": 1_234_567})
    );
    assert_silent(&mut wb, QUIET).await;
}

#[tokio::test]
async fn connectivity_status_on_connect_leave_and_expiry() {
    let h = Harness::start().await;
    let (a, pa) = h.join("room1").await;
    let (b, pb) = h.join("room1").await;
    let (c, pc) = h.join("room1").await;
    let mut wa = open(&h, &pa).await;
    let mut wb = open(&h, &pb).await;

    h.event(MediaEvent::EndpointConnected {
        conference: ConferenceId("room1".into()),
        endpoint: EndpointId(a.clone()),
    });
    let status = next_json(&mut wb).await;
    assert_eq!(
        status,
        json!({"colibriClass": "EndpointConnectivityStatusChangeEvent", "endpoint": a, "active": "true"})
    );
    assert_silent(&mut wa, QUIET).await;

    // A socket opened later learns who already has media.
    let mut wc = open(&h, &pc).await;
    let status = next_json(&mut wc).await;
    assert_eq!(status["endpoint"], a.as_str());
    assert_eq!(status["active"], "true");

    // Leaving (DELETE) tells the others.
    let auth = format!("Bearer {}", token_for("room1"));
    let resp = request(
        h.public,
        "DELETE",
        &format!("/conferences/room1/endpoints/{c}"),
        &[("Authorization", &auth)],
        b"",
    )
    .await;
    assert_eq!(resp.status, 204);
    for ws in [&mut wa, &mut wb] {
        let status = next_json(ws).await;
        assert_eq!(status["endpoint"], c.as_str());
        assert_eq!(status["active"], "false");
    }

    // Expiry by the media plane: b's socket closes, a is told, b is gone.
    h.event(MediaEvent::EndpointExpired {
        conference: ConferenceId("room1".into()),
        endpoint: EndpointId(b.clone()),
        reason: "consent-expired",
    });
    let status = next_json(&mut wa).await;
    assert_eq!(
        status,
        json!({"colibriClass": "EndpointConnectivityStatusChangeEvent", "endpoint": b, "active": "false"})
    );
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match wb.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "expired endpoint's socket still open");
    assert_eq!(
        http_status(ws_connect(h.public, &pb).await.expect_err("gone")),
        404
    );
    let resp = request(
        h.public,
        "DELETE",
        &format!("/conferences/room1/endpoints/{b}"),
        &[("Authorization", &auth)],
        b"",
    )
    .await;
    resp.assert_error(404, "not-found");
}

#[tokio::test]
async fn receiver_video_constraints_reach_the_media_plane_and_bad_ones_do_not() {
    let h = Harness::start().await;
    let (a, pa) = h.join("room1").await;
    let mut wa = open(&h, &pa).await;
    send_json(
        &mut wa,
        &json!({"colibriClass": "ReceiverVideoConstraints", "lastN": "many"}),
    )
    .await;
    send_json(
        &mut wa,
        &json!({"colibriClass": "ReceiverVideoConstraints", "lastN": 2,
                "selectedSources": ["x-v0"], "onStageSources": ["y-v0"],
                "defaultConstraints": {"maxHeight": 180},
                "constraints": {"y-v0": {"maxHeight": 720}}}),
    )
    .await;
    send_json(
        &mut wa,
        &json!({"colibriClass": "LastNChangedEvent", "lastN": 1}),
    )
    .await;
    let got = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let got = h.media.constraints.lock().expect("lock").clone();
            if got.len() >= 2 {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("constraints reach the media plane");
    let want = vec![
        (
            EndpointId(a.clone()),
            ReceiverConstraintsUpdate {
                last_n: Some(2),
                selected_sources: Some(vec!["x-v0".into()]),
                on_stage_sources: Some(vec!["y-v0".into()]),
                default_max_height: Some(180),
                constraints: Some(vec![("y-v0".into(), 720)]),
            },
        ),
        (
            EndpointId(a.clone()),
            ReceiverConstraintsUpdate {
                last_n: Some(1),
                ..Default::default()
            },
        ),
    ];
    assert_eq!(
        got, want,
        "the malformed one is dropped, the others in order"
    );
}

#[tokio::test]
async fn forwarded_sources_and_sender_constraints_reach_their_endpoint_only() {
    let h = Harness::start().await;
    let (a, pa) = h.join("room1").await;
    let (b, pb) = h.join("room1").await;
    let mut wa = open(&h, &pa).await;
    let mut wb = open(&h, &pb).await;
    h.event(MediaEvent::ForwardedSourcesChanged {
        conference: ConferenceId("room1".into()),
        receiver: EndpointId(a.clone()),
        sources: vec![format!("{b}-v0").into()],
    });
    assert_eq!(
        next_json(&mut wa).await,
        json!({"colibriClass": "ForwardedSources", "forwardedSources": [format!("{b}-v0")]})
    );
    h.event(MediaEvent::SenderSourceConstraints {
        conference: ConferenceId("room1".into()),
        sender: EndpointId(b.clone()),
        source: format!("{b}-v0"),
        max_height: 180,
    });
    assert_eq!(
        next_json(&mut wb).await,
        json!({"colibriClass": "SenderSourceConstraints", "sourceName": format!("{b}-v0"), "maxHeight": 180})
    );
    assert_silent(&mut wa, QUIET).await;

    // Before its socket opens an endpoint's latest ones are kept, older ones
    // replaced: a socket opened later gets only the latest.
    let (c, pc) = h.join("room1").await;
    for sources in [
        vec![format!("{a}-v0").into()],
        vec![format!("{b}-v0").into()],
    ] {
        h.event(MediaEvent::ForwardedSourcesChanged {
            conference: ConferenceId("room1".into()),
            receiver: EndpointId(c.clone()),
            sources,
        });
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut wc = open(&h, &pc).await;
    assert_eq!(
        next_json(&mut wc).await,
        json!({"colibriClass": "ForwardedSources", "forwardedSources": [format!("{b}-v0")]})
    );
    assert_silent(&mut wc, QUIET).await;
}
