//! `POST` / `DELETE /conferences/{room}/endpoints`: tokens, headers, errors.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ringbridge_control::MediaError;
use serde_json::{Value, json};

use crate::fake::*;

fn is_endpoint_id(s: &str) -> bool {
    s.len() == 8 && s.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f'))
}

#[tokio::test]
async fn join_answers_201_with_sdp_location_and_colibri_link() {
    let h = Harness::start().await;
    let resp = post_offer(h.public, "room1", &token_for("room1"), OFFER).await;
    assert_eq!(resp.status, 201, "{}", resp.text());
    assert_eq!(resp.header("content-type"), Some("application/sdp"));
    assert_eq!(resp.text(), ANSWER);

    let location = resp.header("location").expect("Location");
    let id = location
        .strip_prefix("/conferences/room1/endpoints/")
        .expect("Location shape");
    assert!(is_endpoint_id(id), "{id}");

    let link = resp.header("link").expect("Link");
    let prefix = format!("</colibri-ws/{SERVER_ID}/room1/{id}?pwd=");
    let rest = link.strip_prefix(&prefix).expect("Link shape");
    let pwd = rest
        .strip_suffix(">; rel=\"colibri-ws\"")
        .expect("Link rel");
    // At least 128 bits, URL-safe.
    let raw = URL_SAFE_NO_PAD.decode(pwd).expect("pwd is base64url");
    assert!(raw.len() >= 16);

    let joins = h.media.joins.lock().expect("lock").clone();
    assert_eq!(joins.len(), 1);
    assert_eq!(joins[0].conference.0, "room1");
    assert_eq!(joins[0].endpoint.0, id);
    assert_eq!(joins[0].offer_sdp, OFFER);

    // A second join gets another id and another pwd.
    let resp2 = post_offer(h.public, "room1", &token_for("room1"), OFFER).await;
    assert_eq!(resp2.status, 201);
    assert_ne!(resp2.header("location"), Some(location));
    assert_ne!(resp2.header("link"), Some(link));
    h.shutdown().await.expect("clean shutdown");
}

/// Posts an offer for `room` with `token` and expects an error (no join).
async fn refused(h: &Harness, room: &str, token: &str, status: u16, code: &str) {
    let before = h.media.joins.lock().expect("lock").len();
    let resp = post_offer(h.public, room, token, OFFER).await;
    resp.assert_error(status, code);
    assert!(!resp.text().contains(token), "the token is echoed");
    assert_eq!(h.media.joins.lock().expect("lock").len(), before);
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

#[tokio::test]
async fn token_table() {
    let h = Harness::start().await;
    let base = claims_for("room1");

    // alg none: an unsigned token with the same claims.
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(base.to_string());
    refused(
        &h,
        "room1",
        &format!("{header}.{payload}."),
        401,
        "bad-algorithm",
    )
    .await;

    // Changed payload, original signature.
    let good = sign(&base);
    let parts: Vec<&str> = good.split('.').collect();
    let forged = URL_SAFE_NO_PAD.encode(with(base.clone(), "room", json!("*")).to_string());
    refused(
        &h,
        "room1",
        &format!("{}.{forged}.{}", parts[0], parts[2]),
        401,
        "bad-signature",
    )
    .await;

    let t = now();
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "expired",
            with(base.clone(), "exp", json!(t - 120)),
            401,
            "token-expired",
        ),
        (
            "nbf in the future",
            with(base.clone(), "nbf", json!(t + 120)),
            401,
            "token-not-yet-valid",
        ),
        (
            "wrong iss",
            with(base.clone(), "iss", json!("someone-else")),
            401,
            "bad-issuer",
        ),
        (
            "wrong aud",
            with(base.clone(), "aud", json!("other-app")),
            401,
            "bad-audience",
        ),
        (
            "wrong sub",
            with(base.clone(), "sub", json!("other.example.com")),
            401,
            "bad-subject",
        ),
        (
            "other room",
            with(base.clone(), "room", json!("room2")),
            403,
            "room-mismatch",
        ),
    ];
    for (what, claims, status, code) in cases {
        let before = h.media.joins.lock().expect("lock").len();
        let resp = post_offer(h.public, "room1", &sign(&claims), OFFER).await;
        assert_eq!(resp.status, status, "{what}: {}", resp.text());
        assert_eq!(resp.json()["error"], code, "{what}");
        assert_eq!(h.media.joins.lock().expect("lock").len(), before, "{what}");
    }
    refused(&h, "room1", "not-a-jwt", 401, "token-malformed").await;

    // Valid variants.
    for (what, claims) in [
        ("room *", with(base.clone(), "room", json!("*"))),
        (
            "aud array",
            with(base.clone(), "aud", json!(["x", "ringbridge"])),
        ),
        ("sub *", with(base.clone(), "sub", json!("*"))),
    ] {
        let resp = post_offer(h.public, "room1", &sign(&claims), OFFER).await;
        assert_eq!(resp.status, 201, "{what}: {}", resp.text());
    }
    h.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn token_missing_or_in_query() {
    let h = Harness::start().await;
    let resp = request(
        h.public,
        "POST",
        "/conferences/room1/endpoints",
        &[("Content-Type", "application/sdp")],
        OFFER.as_bytes(),
    )
    .await;
    resp.assert_error(401, "token-missing");

    let resp = request(
        h.public,
        "POST",
        &format!("/conferences/room1/endpoints?jwt={}", token_for("room1")),
        &[("Content-Type", "application/sdp")],
        OFFER.as_bytes(),
    )
    .await;
    assert_eq!(resp.status, 201, "{}", resp.text());

    // The query token is checked as strictly as the header one.
    let resp = request(
        h.public,
        "POST",
        &format!("/conferences/room2/endpoints?jwt={}", token_for("room1")),
        &[("Content-Type", "application/sdp")],
        OFFER.as_bytes(),
    )
    .await;
    resp.assert_error(403, "room-mismatch");
    assert_eq!(h.media.joins.lock().expect("lock").len(), 1);
}

#[tokio::test]
async fn bad_requests() {
    let h = Harness::start().await;
    let auth = format!("Bearer {}", token_for("room1"));
    let post = |ct: &'static str, body: Vec<u8>| {
        let auth = auth.clone();
        async move {
            request(
                h.public,
                "POST",
                "/conferences/room1/endpoints",
                &[("Authorization", &auth), ("Content-Type", ct)],
                &body,
            )
            .await
        }
    };
    post("application/json", OFFER.into())
        .await
        .assert_error(415, "unsupported-media-type");
    post("application/sdp", Vec::new())
        .await
        .assert_error(400, "bad-request");
    // Over the limit: 413, refused on its Content-Length.
    post("application/sdp", vec![b'a'; 64 * 1024 + 1])
        .await
        .assert_error(413, "offer-too-large");
    // Exactly the limit is fine.
    assert_eq!(
        post("application/sdp", vec![b'a'; 64 * 1024]).await.status,
        201
    );

    let star = sign(&with(claims_for("room1"), "room", json!("*")));
    for bad_room in ["a%20b", "a*b", &"x".repeat(129)] {
        post_offer(h.public, bad_room, &star, OFFER)
            .await
            .assert_error(400, "bad-room");
    }

    request(
        h.public,
        "GET",
        "/conferences/room1/endpoints",
        &[("Authorization", &auth)],
        b"",
    )
    .await
    .assert_error(405, "method-not-allowed");
    request(h.public, "GET", "/nothing/here", &[], b"")
        .await
        .assert_error(404, "not-found");
    request(
        h.public,
        "PUT",
        "/conferences/room1/endpoints/abcd0123",
        &[],
        b"",
    )
    .await
    .assert_error(405, "method-not-allowed");
}

#[tokio::test]
async fn media_plane_errors_map_to_codes() {
    let h = Harness::start().await;
    for (err, status, code) in [
        (MediaError::BadOffer("no BUNDLE".into()), 400, "bad-offer"),
        (
            MediaError::Overloaded("no free port".into()),
            503,
            "overloaded",
        ),
        (MediaError::Unavailable, 503, "unavailable"),
    ] {
        *h.media.next_error.lock().expect("lock") = Some(err);
        let resp = post_offer(h.public, "room1", &token_for("room1"), OFFER).await;
        resp.assert_error(status, code);
        assert!(resp.header("location").is_none());
    }
    let resp = post_offer(h.public, "room1", &token_for("room1"), OFFER).await;
    assert_eq!(resp.status, 201);
}

#[tokio::test]
async fn delete_leaves() {
    let h = Harness::start().await;
    let (id, _) = h.join("room1").await;
    let path = format!("/conferences/room1/endpoints/{id}");

    request(h.public, "DELETE", &path, &[], b"")
        .await
        .assert_error(401, "token-missing");
    let other = format!("Bearer {}", token_for("room2"));
    request(h.public, "DELETE", &path, &[("Authorization", &other)], b"")
        .await
        .assert_error(403, "room-mismatch");
    assert!(h.media.leaves.lock().expect("lock").is_empty());

    let auth = format!("Bearer {}", token_for("room1"));
    let resp = request(h.public, "DELETE", &path, &[("Authorization", &auth)], b"").await;
    assert_eq!(resp.status, 204, "{}", resp.text());
    assert!(resp.body.is_empty());
    let leaves = h.media.leaves.lock().expect("lock").clone();
    assert_eq!(leaves.len(), 1);
    assert_eq!(leaves[0].0.0, "room1");
    assert_eq!(leaves[0].1.0, id);

    request(h.public, "DELETE", &path, &[("Authorization", &auth)], b"")
        .await
        .assert_error(404, "not-found");
    request(
        h.public,
        "DELETE",
        "/conferences/room1/endpoints/00000000",
        &[("Authorization", &auth)],
        b"",
    )
    .await
    .assert_error(404, "not-found");
    assert_eq!(h.media.leaves.lock().expect("lock").len(), 1);
}

#[tokio::test]
async fn bind_error_names_the_address() {
    let h = Harness::start().await;
    let mut settings = ringbridge_control::ControlSettings::new(
        SERVER_ID,
        ringbridge_control::PublicConfig {
            listen: h.public,
            ..Default::default()
        },
        ringbridge_control::PrivateConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
        },
        auth(),
        SECRET.into(),
    );
    let (_tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let err = ringbridge_control::bind(settings.clone(), h.media.clone(), rx)
        .await
        .expect_err("address in use");
    assert!(err.to_string().contains(&h.public.to_string()), "{err}");

    settings.public.listen = "127.0.0.1:0".parse().expect("addr");
    settings.app_secret.clear();
    let (_tx, rx) = tokio::sync::mpsc::unbounded_channel();
    assert!(matches!(
        ringbridge_control::bind(settings, h.media.clone(), rx).await,
        Err(ringbridge_control::ControlError::Settings(_))
    ));
}

fn member_token(room: &str, user: &str) -> String {
    let mut claims = claims_for(room);
    claims["context"]["user"] = json!({"id": user, "affiliation": "member"});
    sign(&claims)
}

#[tokio::test]
async fn a_member_may_remove_only_its_own_endpoint() {
    let h = Harness::start().await;
    // An owner opens the room (members cannot).
    h.join("room1").await;
    let mine = member_token("room1", "u-member");
    let resp = post_offer(h.public, "room1", &mine, OFFER).await;
    assert_eq!(resp.status, 201, "{}", resp.text());
    let path = resp.header("location").expect("Location").to_owned();

    let stranger = format!("Bearer {}", member_token("room1", "u-stranger"));
    request(
        h.public,
        "DELETE",
        &path,
        &[("Authorization", &stranger)],
        b"",
    )
    .await
    .assert_error(403, "moderator-required");
    assert!(h.media.leaves.lock().expect("lock").is_empty());

    let own = format!("Bearer {mine}");
    let resp = request(h.public, "DELETE", &path, &[("Authorization", &own)], b"").await;
    assert_eq!(resp.status, 204, "{}", resp.text());
    assert_eq!(h.media.leaves.lock().expect("lock").len(), 1);
}
