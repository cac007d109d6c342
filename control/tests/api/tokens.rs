//! Issue 5: a table of bad tokens, each refused with its status and stable code;
//! RS256/ES256 keys from a folder and a JWKS file; owners, members, moderator
//! actions over HTTP.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ringbridge_control::AuthConfig;
use ringbridge_control::token::kid_file_name;
use serde_json::{Value, json};

use crate::fake::*;

const RSA_PRIVATE: &str = include_str!("../keys/rsa-private.pem");
const RSA_PUBLIC: &str = include_str!("../keys/rsa-public.pem");
const RSA2_PRIVATE: &str = include_str!("../keys/rsa2-private.pem");
const EC_PRIVATE: &str = include_str!("../keys/ec-private.pk8.pem");
const EC_PUBLIC: &str = include_str!("../keys/ec-public.pem");
const RSA_KID: &str = "jitsi/rsa-1";
const EC_KID: &str = "ec-1";

fn b64(s: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(s)
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn without(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().expect("object").remove(key);
    claims
}

fn hs(alg: Algorithm, secret: &[u8], claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, &EncodingKey::from_secret(secret))
        .expect("sign")
}

fn with_kid(alg: Algorithm, kid: &str, key: &EncodingKey, claims: &Value) -> String {
    let mut h = Header::new(alg);
    h.kid = Some(kid.into());
    jsonwebtoken::encode(&h, claims, key).expect("sign")
}

fn rsa(kid: &str, claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).expect("rsa");
    with_kid(Algorithm::RS256, kid, &key, claims)
}

/// Signs raw header and payload text with the test secret (HS256), so that the
/// JSON can be anything (duplicate keys).
fn sign_raw(header: &str, payload: &str) -> String {
    let (h, p) = (b64(header), b64(payload));
    let sig = jsonwebtoken::crypto::sign(
        format!("{h}.{p}").as_bytes(),
        &EncodingKey::from_secret(SECRET.as_bytes()),
        Algorithm::HS256,
    )
    .expect("sign");
    format!("{h}.{p}.{sig}")
}

/// A folder with the RSA key (by kid), the EC key, and a JWKS file.
fn key_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "ringbridge-api-keys-{}-{:x}",
        std::process::id(),
        rand_u64()
    ));
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join(kid_file_name(RSA_KID)), RSA_PUBLIC).expect("write");
    std::fs::write(dir.join(kid_file_name(EC_KID)), EC_PUBLIC).expect("write");
    dir
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish()
}

fn auth_with_keys(dir: &std::path::Path) -> AuthConfig {
    AuthConfig {
        public_keys_dir: Some(dir.to_owned()),
        ..auth()
    }
}

#[tokio::test]
async fn table_of_bad_tokens() {
    let dir = key_dir();
    // Dozens of joins in a row from one address: the per-address join limit
    // (tests/api/abuse.rs) is not what this table is about.
    let h = Harness::start_configured(Duration::from_secs(1), auth_with_keys(&dir), |s| {
        s.public.join_rate_limit = 0;
    })
    .await;
    let base = claims_for("room1");
    let t = now();
    let good = sign(&base);
    let parts: Vec<&str> = good.split('.').collect();
    let payload = b64(base.to_string());
    let other_rsa = EncodingKey::from_rsa_pem(RSA2_PRIVATE.as_bytes()).expect("rsa2");
    let ec = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).expect("ec");
    let big = with(base.clone(), "pad", json!("x".repeat(9000)));
    let dup_room = r#"{"iss":"ringbridge","aud":"ringbridge","sub":"meet.example.com","room":"other","room":"room1","exp":EXP,"context":{"user":{"id":"u","affiliation":"owner"}}}"#
        .replace("EXP", &(t + 600).to_string());
    let dup_nested = r#"{"iss":"ringbridge","aud":"ringbridge","sub":"meet.example.com","room":"room1","exp":EXP,"context":{"user":{"id":"u","affiliation":"member","affiliation":"owner"}}}"#
        .replace("EXP", &(t + 600).to_string());

    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "alg none",
            format!("{}.{payload}.", b64(r#"{"alg":"none","typ":"JWT"}"#)),
            401,
            "bad-algorithm",
        ),
        (
            "alg None with a signature",
            format!("{}.{payload}.{}", b64(r#"{"alg":"None"}"#), parts[2]),
            401,
            "bad-algorithm",
        ),
        (
            "HS512 when HS256 is configured",
            hs(Algorithm::HS512, SECRET.as_bytes(), &base),
            401,
            "bad-algorithm",
        ),
        (
            "RS256 header, no kid",
            format!(
                "{}.{}.{}",
                b64(r#"{"alg":"RS256","typ":"JWT"}"#),
                parts[1],
                parts[2]
            ),
            401,
            "bad-algorithm",
        ),
        (
            "HS/RS confusion: HS256 signed with the RSA public key",
            with_kid(
                Algorithm::HS256,
                RSA_KID,
                &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
                &base,
            ),
            401,
            "bad-algorithm",
        ),
        (
            "ES256 header on the RSA kid",
            with_kid(Algorithm::ES256, RSA_KID, &ec, &base),
            401,
            "bad-algorithm",
        ),
        (
            "RSA kid, signed by another RSA key",
            with_kid(Algorithm::RS256, RSA_KID, &other_rsa, &base),
            401,
            "bad-signature",
        ),
        (
            "unknown kid",
            rsa("jitsi/nobody", &base),
            401,
            "unknown-key",
        ),
        (
            "kid with ../",
            rsa("../../etc/passwd", &base),
            401,
            "token-malformed",
        ),
        (
            "kid too long",
            rsa(&"k".repeat(129), &base),
            401,
            "token-malformed",
        ),
        (
            "kid not a string",
            format!(
                "{}.{}.{}",
                b64(r#"{"alg":"HS256","kid":7}"#),
                parts[1],
                parts[2]
            ),
            401,
            "token-malformed",
        ),
        (
            "wrong secret",
            hs(Algorithm::HS256, b"another-secret-entirely", &base),
            401,
            "bad-signature",
        ),
        (
            "changed payload",
            format!(
                "{}.{}.{}",
                parts[0],
                b64(with(base.clone(), "room", json!("*")).to_string()),
                parts[2]
            ),
            401,
            "bad-signature",
        ),
        (
            "changed header",
            format!(
                "{}.{}.{}",
                b64(r#"{"alg":"HS256","typ":"JWT","x":1}"#),
                parts[1],
                parts[2]
            ),
            401,
            "bad-signature",
        ),
        (
            "changed signature",
            // The last character of the 43-character signature carries 4 bits (its
            // 2 low bits are padding): swap it for another with zero padding bits, so
            // that the decoded signature really differs (a constant 'A' left the
            // token unchanged once in 16 runs).
            format!(
                "{}.{}.{}{}",
                parts[0],
                parts[1],
                &parts[2][..parts[2].len() - 1],
                if parts[2].ends_with('A') { 'E' } else { 'A' }
            ),
            401,
            "bad-signature",
        ),
        (
            "empty signature",
            format!("{}.{}.", parts[0], parts[1]),
            401,
            "bad-signature",
        ),
        ("oversized (> 8 KiB)", sign(&big), 401, "token-malformed"),
        (
            "two segments",
            format!("{}.{}", parts[0], parts[1]),
            401,
            "token-malformed",
        ),
        (
            "four segments",
            format!("{good}.{}", parts[2]),
            401,
            "token-malformed",
        ),
        ("one segment", "abcdef".to_owned(), 401, "token-malformed"),
        (
            "bad base64 in the payload",
            format!("{}.{}*.{}", parts[0], parts[1], parts[2]),
            401,
            "token-malformed",
        ),
        (
            "padded base64",
            format!("{}.{}=.{}", parts[0], parts[1], parts[2]),
            401,
            "token-malformed",
        ),
        (
            "header not JSON",
            format!("{}.{}.{}", b64("not json"), parts[1], parts[2]),
            401,
            "token-malformed",
        ),
        (
            "payload a JSON array",
            sign_raw(r#"{"alg":"HS256"}"#, "[1,2]"),
            401,
            "token-malformed",
        ),
        (
            "duplicate room key",
            sign_raw(r#"{"alg":"HS256","typ":"JWT"}"#, &dup_room),
            401,
            "token-malformed",
        ),
        (
            "duplicate nested key",
            sign_raw(r#"{"alg":"HS256","typ":"JWT"}"#, &dup_nested),
            401,
            "token-malformed",
        ),
        (
            "duplicate alg in the header",
            sign_raw(r#"{"alg":"none","alg":"HS256"}"#, &base.to_string()),
            401,
            "token-malformed",
        ),
        (
            "crit header",
            sign_raw(r#"{"alg":"HS256","crit":["exp"]}"#, &base.to_string()),
            401,
            "token-malformed",
        ),
        (
            "expired",
            sign(&with(base.clone(), "exp", json!(t - 120))),
            401,
            "token-expired",
        ),
        (
            "no exp",
            sign(&without(base.clone(), "exp")),
            401,
            "token-malformed",
        ),
        (
            "exp a string",
            sign(&with(base.clone(), "exp", json!("tomorrow"))),
            401,
            "token-malformed",
        ),
        (
            "nbf in the future",
            sign(&with(base.clone(), "nbf", json!(t + 120))),
            401,
            "token-not-yet-valid",
        ),
        (
            "iat in the future",
            sign(&with(base.clone(), "iat", json!(t + 120))),
            401,
            "token-not-yet-valid",
        ),
        (
            "wrong iss",
            sign(&with(base.clone(), "iss", json!("someone-else"))),
            401,
            "bad-issuer",
        ),
        (
            "no iss",
            sign(&without(base.clone(), "iss")),
            401,
            "bad-issuer",
        ),
        (
            "wrong aud",
            sign(&with(base.clone(), "aud", json!("other-app"))),
            401,
            "bad-audience",
        ),
        (
            "aud array without ours",
            sign(&with(base.clone(), "aud", json!(["a", "b"]))),
            401,
            "bad-audience",
        ),
        (
            "wrong sub",
            sign(&with(base.clone(), "sub", json!("other.example.com"))),
            401,
            "bad-subject",
        ),
        (
            "sub a suffix but no tenant",
            sign(&with(base.clone(), "sub", json!("evilmeet.example.com"))),
            401,
            "bad-subject",
        ),
        (
            "non-string sub",
            sign(&with(base.clone(), "sub", json!(["meet.example.com"]))),
            401,
            "token-malformed",
        ),
        (
            "no sub",
            sign(&without(base.clone(), "sub")),
            401,
            "bad-subject",
        ),
        (
            "other room",
            sign(&with(base.clone(), "room", json!("room2"))),
            403,
            "room-mismatch",
        ),
        (
            "no room",
            sign(&without(base.clone(), "room")),
            403,
            "room-mismatch",
        ),
        (
            "room a number",
            sign(&with(base.clone(), "room", json!(1))),
            401,
            "token-malformed",
        ),
        (
            "jti not a string",
            sign(&with(base.clone(), "jti", json!(5))),
            401,
            "token-malformed",
        ),
    ];
    assert!(cases.len() >= 30);
    for (what, token, status, code) in &cases {
        let before = h.media.joins.lock().expect("lock").len();
        let resp = post_offer(h.public, "room1", token, OFFER).await;
        assert_eq!(resp.status, *status, "{what}: {}", resp.text());
        assert_eq!(resp.json()["error"], *code, "{what}: {}", resp.text());
        if token.len() > 8 {
            assert!(
                !resp.text().contains(token.as_str()),
                "{what}: token echoed"
            );
        }
        assert_eq!(
            h.media.joins.lock().expect("lock").len(),
            before,
            "{what}: joined"
        );
    }

    // And what must pass: RS256 by kid from the folder, ES256 needs its own
    // folder algorithm (below), HMAC next to them, rooms canonicalised, tenants.
    for (what, token, room) in [
        ("RS256 by kid", rsa(RSA_KID, &base), "room1"),
        ("HS256", sign(&base), "room1"),
        (
            "room in other case",
            sign(&with(base.clone(), "room", json!("ROOM1"))),
            "Room1",
        ),
        (
            "percent-encoded room",
            sign(&with(base.clone(), "room", json!("café"))),
            "caf%C3%A9",
        ),
        (
            "tenant sub",
            sign(&with(base.clone(), "sub", json!("acme.meet.example.com"))),
            "room1",
        ),
        (
            "room *",
            sign(&with(base.clone(), "room", json!("*"))),
            "room1",
        ),
    ] {
        let resp = post_offer(h.public, room, &token, OFFER).await;
        assert_eq!(resp.status, 201, "{what}: {}", resp.text());
    }
    let resp = post_offer(
        h.public,
        "caf%C3%A9",
        &sign(&with(base.clone(), "room", json!("CAFÉ"))),
        OFFER,
    )
    .await;
    assert_eq!(
        resp.header("location")
            .map(|l| l.starts_with("/conferences/caf%C3%A9/endpoints/")),
        Some(true),
        "{:?}",
        resp.header("location")
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn es256_keys_and_jwks() {
    let dir = key_dir();
    let ec = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).expect("ec");
    let base = claims_for("room1");
    let h = Harness::start_auth(
        Duration::from_secs(1),
        AuthConfig {
            public_keys_dir: Some(dir.clone()),
            public_keys_algorithm: ringbridge_control::config::PublicKeyAlgorithm::ES256,
            ..auth()
        },
    )
    .await;
    let resp = post_offer(
        h.public,
        "room1",
        &with_kid(Algorithm::ES256, EC_KID, &ec, &base),
        OFFER,
    )
    .await;
    assert_eq!(resp.status, 201, "{}", resp.text());
    // The RSA file under this folder is read as ES256 and does not parse: unknown.
    post_offer(h.public, "room1", &rsa(RSA_KID, &base), OFFER)
        .await
        .assert_error(401, "unknown-key");

    // A JWKS file that does not load stops the control plane from starting.
    std::fs::write(dir.join("bad.json"), "{\"keys\": 5}").expect("write");
    let settings = ringbridge_control::ControlSettings::new(
        SERVER_ID,
        ringbridge_control::PublicConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            ..Default::default()
        },
        ringbridge_control::PrivateConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
        },
        AuthConfig {
            jwks_file: Some(dir.join("bad.json")),
            ..auth()
        },
        SECRET.into(),
    );
    let (_tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let err = ringbridge_control::bind(settings, h.media.clone(), rx)
        .await
        .expect_err("bad jwks refused");
    assert!(err.to_string().contains("jwks_file"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

fn member_token(room: &str, user: &str) -> String {
    let mut c = claims_for(room);
    c["context"]["user"]["id"] = json!(user);
    c["context"]["user"]["affiliation"] = json!("member");
    sign(&c)
}

fn owner_token(room: &str, user: &str) -> String {
    let mut c = claims_for(room);
    c["context"]["user"]["id"] = json!(user);
    sign(&c)
}

async fn join_as(h: &Harness, room: &str, token: &str) -> (String, String) {
    let resp = post_offer(h.public, room, token, OFFER).await;
    assert_eq!(resp.status, 201, "{}", resp.text());
    let id = resp
        .header("location")
        .and_then(|l| l.rsplit('/').next())
        .expect("location")
        .to_owned();
    let link = resp.header("link").expect("link");
    let path = link
        .strip_prefix('<')
        .and_then(|l| l.split_once('>'))
        .map(|(p, _)| p.to_owned())
        .expect("link path");
    (id, path)
}

#[tokio::test]
async fn owners_members_and_moderator_actions_over_http() {
    let h = Harness::start().await;
    // A member cannot open a room.
    post_offer(h.public, "r1", &member_token("r1", "m1"), OFFER)
        .await
        .assert_error(403, "owner-required");
    let (owner, _) = join_as(&h, "r1", &owner_token("r1", "o1")).await;
    let (m1, _) = join_as(&h, "r1", &member_token("r1", "m1")).await;
    let (m2, p2) = join_as(&h, "r1", &member_token("r1", "m2")).await;
    let mut w2 = open(&h, &p2).await;

    let mute = |who: &str, token: String, body: &'static str| {
        let path = format!("/conferences/r1/endpoints/{who}/mute");
        async move {
            let auth = format!("Bearer {token}");
            request(
                h.public,
                "POST",
                &path,
                &[
                    ("Authorization", &auth),
                    ("Content-Type", "application/json"),
                ],
                body.as_bytes(),
            )
            .await
        }
    };
    // A member may neither mute nor kick another endpoint.
    mute(
        &m2,
        member_token("r1", "m1"),
        r#"{"audio":true,"video":true}"#,
    )
    .await
    .assert_error(403, "moderator-required");
    let kick = |who: &str, token: String| {
        let path = format!("/conferences/r1/endpoints/{who}");
        async move {
            let auth = format!("Bearer {token}");
            request(h.public, "DELETE", &path, &[("Authorization", &auth)], b"").await
        }
    };
    kick(&m2, member_token("r1", "m1"))
        .await
        .assert_error(403, "moderator-required");
    assert!(h.media.mutes.lock().expect("lock").is_empty());
    // The owner may.
    mute(&m2, owner_token("r1", "o1"), r#"{"audio":true}"#)
        .await
        .assert_error_or(204);
    let muted = next_json(&mut w2).await;
    assert_eq!(
        muted,
        json!({"colibriClass": "EndpointMuted", "audio": true})
    );
    assert_eq!(h.media.mutes.lock().expect("lock").len(), 1);
    mute(&m2, owner_token("r1", "o1"), r#"{"audio":"yes"}"#)
        .await
        .assert_error(400, "bad-request");
    // Another room's owner is not this room's owner.
    mute(&m2, owner_token("r2", "o9"), r#"{"audio":true}"#)
        .await
        .assert_error(403, "room-mismatch");
    kick(&m2, owner_token("r1", "o1"))
        .await
        .assert_error_or(204);
    let removed = next_json(&mut w2).await;
    assert_eq!(
        removed,
        json!({"colibriClass": "EndpointRemoved", "reason": "kicked"})
    );
    // Members may leave on their own.
    kick(&m1, member_token("r1", "m1"))
        .await
        .assert_error_or(204);
    kick(&owner, owner_token("r1", "o1"))
        .await
        .assert_error_or(204);
    let leaves = h.media.leaves.lock().expect("lock").len();
    assert_eq!(leaves, 3);

    // Token refresh: same user only.
    let (m3, _) = join_as(&h, "r1", &owner_token("r1", "o3")).await;
    let put = |token: String| {
        let path = format!("/conferences/r1/endpoints/{m3}/token");
        async move {
            let auth = format!("Bearer {token}");
            request(h.public, "PUT", &path, &[("Authorization", &auth)], b"").await
        }
    };
    put(owner_token("r1", "o3")).await.assert_error_or(204);
    put(owner_token("r1", "someone-else"))
        .await
        .assert_error(403, "user-mismatch");
    put("garbage".into())
        .await
        .assert_error(401, "token-malformed");
}
