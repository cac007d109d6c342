//! Issue 5 end to end, against the built `ringbridge` binary: per-endpoint
//! features and moderator mutes with real aiortc clients, owners and members over
//! HTTP, and no secret in the logs of a run full of bad tokens.

use std::time::Duration;

use ringbridge_tests::{
    AiortcClient, Bridge, ClientOutcome, TEST_APP_SECRET, forge_token_room, http_request,
    test_token,
};
use serde_json::{Value, json};

const CLIENT_TIMEOUT: Duration = Duration::from_secs(70);

fn show(c: &ClientOutcome) {
    println!(
        "{}: {}",
        c.label,
        c.json
            .as_ref()
            .map(Value::to_string)
            .unwrap_or_else(|| "<no JSON>".into())
    );
}

fn endpoint_id(c: &ClientOutcome) -> String {
    c.str("location")
        .and_then(|l| l.rsplit('/').next())
        .unwrap_or_default()
        .to_owned()
}

/// Frames decoded on slots of `kind`.
fn frames(c: &ClientOutcome, kind: &str) -> f64 {
    c.json()["slots"]
        .as_array()
        .map(|slots| {
            slots
                .iter()
                .filter(|s| s["kind"] == kind)
                .map(|s| s["frames_total"].as_f64().unwrap_or(0.0))
                .sum()
        })
        .unwrap_or(0.0)
}

fn events(c: &ClientOutcome, class: &str) -> Vec<Value> {
    c.json()["colibri_events"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter(|v| v["colibriClass"] == class)
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_screen_is_forwarded_only_for_the_endpoint_granted_screen_sharing() {
    let bridge = Bridge::start("");
    let url = bridge.public_url();
    // Alice may share her screen; Bob may not. Both publish their video as a
    // screen (a=content:slides).
    let alice_token = test_token(
        "screens",
        "alice",
        true,
        Some(json!({"screen-sharing": true})),
        None,
    );
    let bob_token = test_token(
        "screens",
        "bob",
        false,
        Some(json!({"screen-sharing": "false"})),
        None,
    );
    let alice = AiortcClient::new("alice", &url, "screens", &alice_token)
        .args(["--duration", "6", "--colibri", "--screen"])
        .spawn();
    // Alice opens the room (a member may not): Bob joins after her.
    bridge.wait_participants(1, CLIENT_TIMEOUT);
    let bob = AiortcClient::new("bob", &url, "screens", &bob_token)
        .args(["--duration", "6", "--colibri", "--screen"])
        .spawn();
    let (alice, bob) = (alice.wait(CLIENT_TIMEOUT), bob.wait(CLIENT_TIMEOUT));
    show(&alice);
    show(&bob);
    assert_eq!(alice.http_status(), Some(201), "{}", alice.describe());
    assert_eq!(bob.http_status(), Some(201), "{}", bob.describe());

    // Alice's screen reaches Bob; Bob's does not reach Alice; audio flows both ways.
    assert!(
        frames(&bob, "video") >= 30.0,
        "bob saw alice's screen?\n{}",
        bob.describe()
    );
    assert_eq!(
        frames(&alice, "video"),
        0.0,
        "bob's screen reached alice\n{}",
        alice.describe()
    );
    assert!(frames(&alice, "audio") > 0.0, "{}", alice.describe());
    assert!(frames(&bob, "audio") > 0.0, "{}", bob.describe());

    // Bob was told why, on his colibri websocket; Alice was told nothing.
    let bob_id = endpoint_id(&bob);
    let refused = events(&bob, "ForwardingRefused");
    assert_eq!(
        refused,
        vec![
            json!({"colibriClass": "ForwardingRefused", "source": format!("{bob_id}-v0"),
                     "reason": "screen-sharing-not-granted", "feature": "screen-sharing"})
        ],
        "{}",
        bob.describe()
    );
    assert!(events(&alice, "ForwardingRefused").is_empty());
    // Alice's source map never names Bob's screen.
    let sources = alice.json()["colibri_sources"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        !sources
            .iter()
            .any(|s| s["source"] == format!("{bob_id}-v0").as_str()),
        "{}",
        alice.describe()
    );
}

#[test]
fn a_moderator_mute_stops_forwarding_and_tells_the_muted_endpoint() {
    let bridge = Bridge::start("");
    let url = bridge.public_url();
    let owner_token = test_token("mute", "olga", true, None, None);
    let member_token = test_token("mute", "max", false, None, None);
    // Olga (owner) mutes Max's audio as soon as his sources appear.
    let olga = AiortcClient::new("olga", &url, "mute", &owner_token)
        .args(["--duration", "6", "--colibri", "--moderator-mute", "audio"])
        .spawn();
    bridge.wait_participants(1, CLIENT_TIMEOUT);
    // Max (member) tries the same on Olga, and is refused.
    let max = AiortcClient::new("max", &url, "mute", &member_token)
        .args(["--duration", "6", "--colibri", "--moderator-mute", "video"])
        .spawn();
    let (olga, max) = (olga.wait(CLIENT_TIMEOUT), max.wait(CLIENT_TIMEOUT));
    show(&olga);
    show(&max);
    assert_eq!(
        olga.json()["mute_statuses"],
        json!([204]),
        "{}",
        olga.describe()
    );
    assert_eq!(
        max.json()["mute_statuses"],
        json!([403]),
        "{}",
        max.describe()
    );

    // Max's audio never reached Olga; his video did; Olga's media reached Max.
    assert_eq!(frames(&olga, "audio"), 0.0, "{}", olga.describe());
    assert!(frames(&olga, "video") >= 30.0, "{}", olga.describe());
    assert!(frames(&max, "audio") > 0.0, "{}", max.describe());
    assert!(frames(&max, "video") >= 30.0, "{}", max.describe());
    assert_eq!(
        events(&max, "EndpointMuted"),
        vec![json!({"colibriClass": "EndpointMuted", "audio": true, "video": false})],
        "{}",
        max.describe()
    );
}

#[test]
fn members_cannot_open_rooms_and_logs_keep_secrets() {
    let bridge = Bridge::start("[auth]\nsingle_use_jti = true\n");
    let url = bridge.public_url();
    let post = |room: &str, token: &str| {
        let auth = format!("Bearer {token}");
        http_request(
            bridge.public_addr(),
            "POST",
            &format!("/conferences/{room}/endpoints"),
            &[
                ("Authorization", auth.as_str()),
                ("Content-Type", "application/sdp"),
            ],
            b"v=0\r\n",
        )
        .expect("request")
    };
    let member = bridge.member_token("closed");
    let resp = post("closed", &member);
    assert_eq!(resp.status, 403, "{}", resp.text());
    assert_eq!(
        resp.json().ok().map(|j| j["error"].clone()),
        Some(json!("owner-required"))
    );

    // A run full of bad tokens, and one good join whose pwd must not be logged.
    let good = bridge.token_with(&ringbridge_tests::TokenRequest {
        room: "logs".into(),
        owner: true,
        ..Default::default()
    });
    let mut secrets: Vec<String> = vec![TEST_APP_SECRET.into(), good.clone()];
    for bad in [
        forge_token_room(&good, "*"),
        format!("{good}x"),
        good.replace('.', ""),
        test_token("elsewhere", "u", true, None, None),
        test_token("logs", "u", true, None, Some(json!({"exp": 1}))),
        test_token("logs", "u", true, None, Some(json!({"iss": "evil"}))),
    ] {
        let resp = post("logs", &bad);
        assert!(matches!(resp.status, 401 | 403), "{}", resp.text());
        assert!(!resp.text().contains(&bad));
        secrets.push(bad);
    }
    // A client with a good token: its answer's ICE password and colibri pwd.
    let jti_token = test_token("logs", "o1", true, None, Some(json!({"jti": "once"})));
    let c = AiortcClient::new("owner", &url, "logs", &jti_token)
        .args(["--duration", "2", "--colibri", "--linger", "0"])
        .spawn();
    bridge.wait_participants(1, CLIENT_TIMEOUT);
    // Same jti while the first endpoint lives: refused.
    let replay = post("logs", &jti_token);
    let c = c.wait(CLIENT_TIMEOUT);
    show(&c);
    assert_eq!(c.http_status(), Some(201), "{}", c.describe());
    assert_eq!(replay.status, 403, "{}", replay.text());
    assert_eq!(
        replay.json().ok().map(|j| j["error"].clone()),
        Some(json!("jti-in-use"))
    );
    secrets.push(jti_token);
    // The answer's a=ice-pwd is logged by client.py (--verbose) on stderr: find it.
    for line in c.stderr.lines() {
        if let Some(pwd) = line.trim().strip_prefix("a=ice-pwd:") {
            secrets.push(pwd.trim().to_owned());
        }
    }
    assert!(
        secrets.len() >= 10,
        "the answer's a=ice-pwd was not found in the client's log\n{}",
        c.describe()
    );
    if let Some(link) = c.json().get("colibri_link") {
        assert_eq!(link, &json!(true));
    }
    let log = std::fs::read_to_string(bridge.log_path()).expect("bridge log");
    assert!(
        log.contains("token refused") || log.contains("endpoint joined"),
        "the log captured nothing useful:\n{log}"
    );
    for s in &secrets {
        assert!(s.len() >= 16, "secret too short to search for: {s}");
        assert!(
            !log.contains(s.as_str()),
            "the bridge log contains a secret ({}...):\n{log}",
            &s[..8]
        );
    }
    assert!(
        !log.to_lowercase().contains("pwd="),
        "a colibri pwd in the log:\n{log}"
    );
}
