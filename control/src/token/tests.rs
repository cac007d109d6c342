use std::path::PathBuf;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::*;
use crate::config::{HmacAlgorithm, PublicKeyAlgorithm};

const SECRET: &str = "test-secret-0123456789";
const NOW: u64 = 1_700_000_000;
const RSA_PRIVATE: &str = include_str!("../../tests/keys/rsa-private.pem");
const RSA_PUBLIC: &str = include_str!("../../tests/keys/rsa-public.pem");
const RSA2_PRIVATE: &str = include_str!("../../tests/keys/rsa2-private.pem");
const EC_PRIVATE: &str = include_str!("../../tests/keys/ec-private.pk8.pem");
const EC_PUBLIC: &str = include_str!("../../tests/keys/ec-public.pem");

fn auth() -> AuthConfig {
    AuthConfig {
        app_secret: Some(SECRET.into()),
        domain: "meet.example.com".into(),
        ..AuthConfig::default()
    }
}

fn hs(alg: Algorithm, secret: &str, claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(alg),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}

fn sign(claims: &Value) -> String {
    hs(Algorithm::HS256, SECRET, claims)
}

fn rs(kid: &str, private: &str, claims: &Value) -> String {
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some(kid.into());
    jsonwebtoken::encode(
        &h,
        claims,
        &EncodingKey::from_rsa_pem(private.as_bytes()).expect("rsa key"),
    )
    .expect("sign")
}

fn es(kid: &str, claims: &Value) -> String {
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some(kid.into());
    jsonwebtoken::encode(
        &h,
        claims,
        &EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).expect("ec key"),
    )
    .expect("sign")
}

fn base_claims() -> Value {
    json!({
        "iss": "ringbridge", "aud": "ringbridge", "sub": "meet.example.com",
        "room": "room1", "exp": NOW + 600, "nbf": NOW - 10, "iat": NOW - 10,
        "context": {"user": {"id": "u1", "name": "Ann", "email": "a@example.com",
                              "avatar": "https://x/a.png", "affiliation": "member"},
                    "features": {"recording": true, "screen-sharing": "true"}},
    })
}

fn with(mut v: Value, key: &str, val: Value) -> Value {
    v[key] = val;
    v
}

fn code(r: Result<Identity, TokenError>) -> Result<Identity, &'static str> {
    r.map_err(|e| e.code())
}

fn check(claims: &Value, room: &str) -> Result<Identity, TokenError> {
    verify(&auth(), SECRET, &sign(claims), room, NOW)
}

fn raw_token(header: &str, payload: &str, sig: &str) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload),
        sig
    )
}

/// A temporary key folder holding `files` (name, contents).
fn key_dir(files: &[(String, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "ringbridge-keys-{}-{:x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&dir).expect("mkdir");
    for (name, text) in files {
        std::fs::write(dir.join(name), text).expect("write key");
    }
    dir
}

#[test]
fn valid_token_gives_identity() {
    let id = check(&base_claims(), "room1").expect("valid");
    assert_eq!(id.user_id.as_deref(), Some("u1"));
    assert_eq!(id.name.as_deref(), Some("Ann"));
    assert_eq!(id.email.as_deref(), Some("a@example.com"));
    assert_eq!(id.avatar.as_deref(), Some("https://x/a.png"));
    assert!(!id.owner);
    assert!(id.has_features);
    assert!(id.feature("recording", FeaturesDefault::Deny));
    assert!(id.feature("screen-sharing", FeaturesDefault::Deny));
    assert!(!id.feature("livestreaming", FeaturesDefault::Allow));
    assert_eq!(id.room, "room1");
    assert_eq!(id.expires_at, NOW + 600);
    assert_eq!(id.jti, None);
}

#[test]
fn features_default_applies_only_without_the_claim() {
    let mut c = base_claims();
    c["context"]
        .as_object_mut()
        .expect("context")
        .remove("features");
    let id = check(&c, "room1").expect("valid");
    assert!(!id.has_features);
    assert!(id.feature("screen-sharing", FeaturesDefault::Allow));
    assert!(!id.feature("screen-sharing", FeaturesDefault::Deny));
    let mut c = base_claims();
    c["context"]["features"] = json!({"screen-sharing": false, "recording": "false"});
    let id = check(&c, "room1").expect("valid");
    assert!(!id.feature("screen-sharing", FeaturesDefault::Allow));
    assert!(!id.feature("recording", FeaturesDefault::Allow));
}

#[test]
fn owner_from_affiliation_or_moderator() {
    for aff in ["owner", "moderator", "teacher", "Owner"] {
        let mut c = base_claims();
        c["context"]["user"]["affiliation"] = Value::String(aff.into());
        assert!(check(&c, "room1").expect("valid").owner, "{aff}");
    }
    for aff in ["member", "guest", "owners", ""] {
        let mut c = base_claims();
        c["context"]["user"]["affiliation"] = Value::String(aff.into());
        assert!(!check(&c, "room1").expect("valid").owner, "{aff}");
    }
    let c = with(base_claims(), "moderator", Value::Bool(true));
    assert!(check(&c, "room1").expect("valid").owner);
    let c = with(base_claims(), "moderator", Value::String("true".into()));
    assert!(check(&c, "room1").expect("valid").owner);
    let c = with(base_claims(), "moderator", Value::Bool(false));
    assert!(!check(&c, "room1").expect("valid").owner);
}

#[test]
fn time_claims() {
    let c = with(base_claims(), "exp", (NOW - 31).into());
    assert_eq!(check(&c, "room1"), Err(TokenError::Expired));
    let c = with(base_claims(), "exp", (NOW - 29).into());
    assert!(check(&c, "room1").is_ok());
    let c = with(base_claims(), "nbf", (NOW + 31).into());
    assert_eq!(check(&c, "room1"), Err(TokenError::NotYetValid));
    let c = with(base_claims(), "nbf", (NOW + 29).into());
    assert!(check(&c, "room1").is_ok());
    let c = with(base_claims(), "iat", (NOW + 31).into());
    assert_eq!(check(&c, "room1"), Err(TokenError::NotYetValid));
    let c = with(base_claims(), "iat", (NOW + 29).into());
    assert!(check(&c, "room1").is_ok());
    let mut c = base_claims();
    c.as_object_mut().expect("object").remove("exp");
    assert_eq!(code(check(&c, "room1")).err(), Some("token-malformed"));
    let c = with(base_claims(), "exp", "soon".into());
    assert_eq!(code(check(&c, "room1")).err(), Some("token-malformed"));
    let c = with(base_claims(), "exp", json!(-5));
    assert_eq!(code(check(&c, "room1")).err(), Some("token-malformed"));
}

#[test]
fn max_lifetime() {
    let limited = AuthConfig {
        max_lifetime_s: Some(3600),
        ..auth()
    };
    let c = with(base_claims(), "exp", (NOW - 10 + 3600).into());
    assert!(verify(&limited, SECRET, &sign(&c), "room1", NOW).is_ok());
    let c = with(base_claims(), "exp", (NOW - 10 + 3601).into());
    assert_eq!(
        code(verify(&limited, SECRET, &sign(&c), "room1", NOW)).err(),
        Some("token-malformed")
    );
    // Without iat and nbf, the lifetime counts from now.
    let mut c = with(base_claims(), "exp", (NOW + 4000).into());
    c.as_object_mut().expect("object").remove("iat");
    c.as_object_mut().expect("object").remove("nbf");
    assert!(verify(&limited, SECRET, &sign(&c), "room1", NOW).is_err());
    assert!(check(&c, "room1").is_ok());
}

#[test]
fn issuer_audience_subject() {
    let c = with(base_claims(), "iss", "other".into());
    assert_eq!(check(&c, "room1"), Err(TokenError::BadIssuer));
    let mut c = base_claims();
    c.as_object_mut().expect("object").remove("iss");
    assert_eq!(check(&c, "room1"), Err(TokenError::BadIssuer));
    let c = with(base_claims(), "aud", "other".into());
    assert_eq!(check(&c, "room1"), Err(TokenError::BadAudience));
    let c = with(base_claims(), "aud", json!(["x", "ringbridge"]));
    assert!(check(&c, "room1").is_ok());
    let c = with(base_claims(), "aud", json!(["x", "y"]));
    assert_eq!(check(&c, "room1"), Err(TokenError::BadAudience));
    let c = with(base_claims(), "aud", json!(7));
    assert_eq!(check(&c, "room1"), Err(TokenError::BadAudience));
    let c = with(base_claims(), "sub", "other.example.com".into());
    assert_eq!(check(&c, "room1"), Err(TokenError::BadSubject));
    let c = with(base_claims(), "sub", "*".into());
    assert!(check(&c, "room1").is_ok());
    // A tenant (subdomain) of the domain, case-insensitively.
    let c = with(base_claims(), "sub", "Tenant1.Meet.Example.com".into());
    assert!(check(&c, "room1").is_ok());
    let c = with(base_claims(), "sub", "evilmeet.example.com".into());
    assert_eq!(check(&c, "room1"), Err(TokenError::BadSubject));
    let c = with(base_claims(), "sub", ".meet.example.com".into());
    assert_eq!(check(&c, "room1"), Err(TokenError::BadSubject));
    let c = with(base_claims(), "sub", json!(42));
    assert_eq!(code(check(&c, "room1")).err(), Some("token-malformed"));
    let any = AuthConfig {
        domain: "*".into(),
        ..auth()
    };
    let c = with(base_claims(), "sub", "other.example.com".into());
    assert!(verify(&any, SECRET, &sign(&c), "room1", NOW).is_ok());
}

#[test]
fn rooms_are_canonicalised_on_both_sides() {
    assert_eq!(canonical_room("Room1").as_deref(), Some("room1"));
    assert_eq!(canonical_room("caf%C3%A9").as_deref(), Some("café"));
    // NFKC: the "ﬁ" ligature and fullwidth letters fold.
    assert_eq!(canonical_room("ﬁｌｅ").as_deref(), Some("file"));
    // Combining accent composes.
    assert_eq!(canonical_room("cafe\u{301}").as_deref(), Some("café"));
    assert_eq!(canonical_room("%FF"), None);
    assert_eq!(canonical_room("100%").as_deref(), Some("100%"));

    let c = with(base_claims(), "room", "CAFÉ".into());
    assert!(check(&c, "caf%C3%A9").is_ok());
    assert!(check(&c, "Cafe\u{301}").is_ok());
    assert_eq!(check(&c, "cafe"), Err(TokenError::RoomMismatch));
    assert_eq!(
        check(&base_claims(), "room2"),
        Err(TokenError::RoomMismatch)
    );
    assert_eq!(TokenError::RoomMismatch.status(), StatusCode::FORBIDDEN);
    let c = with(base_claims(), "room", "*".into());
    assert_eq!(check(&c, "anything").expect("valid").room, "*");
    let mut c = base_claims();
    c.as_object_mut().expect("object").remove("room");
    assert_eq!(check(&c, "room1"), Err(TokenError::RoomMismatch));
    let c = with(base_claims(), "room", json!(["room1"]));
    assert_eq!(code(check(&c, "room1")).err(), Some("token-malformed"));
}

#[test]
fn hmac_algorithm_is_fixed_by_configuration() {
    let claims = base_claims();
    for (cfg, alg) in [
        (HmacAlgorithm::HS256, Algorithm::HS256),
        (HmacAlgorithm::HS384, Algorithm::HS384),
        (HmacAlgorithm::HS512, Algorithm::HS512),
    ] {
        let a = AuthConfig {
            app_secret_algorithm: cfg,
            ..auth()
        };
        assert!(verify(&a, SECRET, &hs(alg, SECRET, &claims), "room1", NOW).is_ok());
        for other in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            if other != alg {
                assert_eq!(
                    code(verify(
                        &a,
                        SECRET,
                        &hs(other, SECRET, &claims),
                        "room1",
                        NOW
                    ))
                    .err(),
                    Some("bad-algorithm"),
                    "{cfg:?} vs {other:?}"
                );
            }
        }
    }
}

#[test]
fn previous_secrets_still_verify() {
    let a = AuthConfig {
        previous_app_secrets: vec!["old-secret-0123456789".into()],
        ..auth()
    };
    let old = hs(Algorithm::HS256, "old-secret-0123456789", &base_claims());
    assert!(verify(&a, SECRET, &old, "room1", NOW).is_ok());
    assert_eq!(
        code(verify(&auth(), SECRET, &old, "room1", NOW)).err(),
        Some("bad-signature")
    );
    let empty = AuthConfig {
        previous_app_secrets: vec![String::new()],
        ..auth()
    };
    assert!(TokenVerifier::new(&empty, SECRET).is_err());
}

#[test]
fn public_keys_from_a_directory_by_kid() {
    let dir = key_dir(&[
        (kid_file_name("jitsi/key-1"), RSA_PUBLIC),
        (kid_file_name("broken"), "not a pem"),
    ]);
    let a = AuthConfig {
        public_keys_dir: Some(dir.clone()),
        ..auth()
    };
    let v = TokenVerifier::new(&a, SECRET).expect("keys");
    let claims = base_claims();
    assert!(
        v.verify(&rs("jitsi/key-1", RSA_PRIVATE, &claims), "room1", NOW)
            .is_ok()
    );
    // HMAC tokens keep working next to the public keys.
    assert!(v.verify(&sign(&claims), "room1", NOW).is_ok());
    // Signed by another RSA key.
    assert_eq!(
        code(v.verify(&rs("jitsi/key-1", RSA2_PRIVATE, &claims), "room1", NOW)).err(),
        Some("bad-signature")
    );
    // Unknown kid, and a file that holds no key.
    assert_eq!(
        code(v.verify(&rs("jitsi/key-2", RSA_PRIVATE, &claims), "room1", NOW)).err(),
        Some("unknown-key")
    );
    assert_eq!(
        code(v.verify(&rs("broken", RSA_PRIVATE, &claims), "room1", NOW)).err(),
        Some("unknown-key")
    );
    // HS/RS confusion: an HS256 token "signed" with the public key as secret.
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("jitsi/key-1".into());
    let confused = jsonwebtoken::encode(
        &h,
        &claims,
        &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
    )
    .expect("sign");
    assert_eq!(
        code(v.verify(&confused, "room1", NOW)).err(),
        Some("bad-algorithm")
    );
    // A key added while running is found.
    std::fs::write(dir.join(kid_file_name("late")), RSA_PUBLIC).expect("write");
    assert!(
        v.verify(&rs("late", RSA_PRIVATE, &claims), "room1", NOW)
            .is_ok()
    );
    // Path tricks in kid never reach the file system.
    assert_eq!(
        code(v.verify(&rs("../keys/x", RSA_PRIVATE, &claims), "room1", NOW)).err(),
        Some("token-malformed")
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn es256_directory_and_jwks() {
    let dir = key_dir(&[(kid_file_name("ec-1"), EC_PUBLIC)]);
    let a = AuthConfig {
        public_keys_dir: Some(dir.clone()),
        public_keys_algorithm: PublicKeyAlgorithm::ES256,
        ..auth()
    };
    let v = TokenVerifier::new(&a, SECRET).expect("keys");
    assert!(v.verify(&es("ec-1", &base_claims()), "room1", NOW).is_ok());
    // An RS256 header for an ES256 key.
    assert_eq!(
        code(v.verify(&rs("ec-1", RSA_PRIVATE, &base_claims()), "room1", NOW)).err(),
        Some("bad-algorithm")
    );

    // The same keys as a JWKS file.
    let rsa = DecodingKeyParts::rsa(RSA_PUBLIC);
    let jwks = json!({"keys": [
        {"kty": "RSA", "kid": "rsa-a", "use": "sig", "n": rsa.0, "e": rsa.1},
        {"kty": "RSA", "kid": "rsa-b", "alg": "RS256", "n": rsa.0, "e": rsa.1},
    ]});
    std::fs::write(dir.join("jwks.json"), jwks.to_string()).expect("write");
    let a = AuthConfig {
        jwks_file: Some(dir.join("jwks.json")),
        ..auth()
    };
    let v = TokenVerifier::new(&a, SECRET).expect("jwks");
    assert!(
        v.verify(&rs("rsa-a", RSA_PRIVATE, &base_claims()), "room1", NOW)
            .is_ok()
    );
    assert!(
        v.verify(&rs("rsa-b", RSA_PRIVATE, &base_claims()), "room1", NOW)
            .is_ok()
    );
    assert_eq!(
        code(v.verify(&rs("rsa-c", RSA_PRIVATE, &base_claims()), "room1", NOW)).err(),
        Some("unknown-key")
    );
    // Symmetric keys and keys without kid are refused at start.
    for bad in [
        json!({"keys": [{"kty": "oct", "kid": "s", "k": "c2VjcmV0"}]}),
        json!({"keys": [{"kty": "RSA", "n": rsa.0, "e": rsa.1}]}),
        json!({"keys": [{"kty": "RSA", "kid": "../x", "n": rsa.0, "e": rsa.1}]}),
    ] {
        std::fs::write(dir.join("bad.json"), bad.to_string()).expect("write");
        let a = AuthConfig {
            jwks_file: Some(dir.join("bad.json")),
            ..auth()
        };
        assert!(TokenVerifier::new(&a, SECRET).is_err(), "{bad}");
    }
    let missing = AuthConfig {
        jwks_file: Some(dir.join("missing.json")),
        ..auth()
    };
    assert!(TokenVerifier::new(&missing, SECRET).is_err());
    let _ = std::fs::remove_dir_all(dir);
}

/// RSA public key components (n, e) as base64url, read with openssl-free DER
/// walking: SubjectPublicKeyInfo { alg, BIT STRING { RSAPublicKey { n, e } } }.
struct DecodingKeyParts;

impl DecodingKeyParts {
    fn rsa(pem: &str) -> (String, String) {
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("pem base64");
        // Walk: SEQ { SEQ {...}, BITSTRING { 0x00, SEQ { INT n, INT e } } }
        fn tlv(d: &[u8]) -> (u8, &[u8], &[u8]) {
            let tag = d[0];
            let (len, hdr) = if d[1] & 0x80 == 0 {
                (d[1] as usize, 2)
            } else {
                let n = (d[1] & 0x7f) as usize;
                let mut l = 0usize;
                for b in &d[2..2 + n] {
                    l = (l << 8) | *b as usize;
                }
                (l, 2 + n)
            };
            (tag, &d[hdr..hdr + len], &d[hdr + len..])
        }
        let (_, spki, _) = tlv(&der);
        let (_, _alg, rest) = tlv(spki);
        let (_, bits, _) = tlv(rest);
        let (_, rsa, _) = tlv(&bits[1..]);
        let (_, n, rest) = tlv(rsa);
        let (_, e, _) = tlv(rest);
        let strip = |x: &[u8]| {
            let i = x.iter().position(|&b| b != 0).unwrap_or(x.len());
            URL_SAFE_NO_PAD.encode(&x[i..])
        };
        (strip(n), strip(e))
    }
}

#[test]
fn shape_and_signature() {
    let token = sign(&base_claims());
    assert_eq!(
        code(verify(&auth(), "other-secret", &token, "room1", NOW)).err(),
        Some("bad-signature")
    );
    let parts: Vec<&str> = token.split('.').collect();
    let forged = URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&with(base_claims(), "room", "*".into())).expect("json"));
    let tampered = format!("{}.{}.{}", parts[0], forged, parts[2]);
    assert_eq!(
        code(verify(&auth(), SECRET, &tampered, "room1", NOW)).err(),
        Some("bad-signature")
    );
    let none = raw_token(
        r#"{"alg":"none","typ":"JWT"}"#,
        &base_claims().to_string(),
        "",
    );
    assert_eq!(
        code(verify(&auth(), SECRET, &none, "room1", NOW)).err(),
        Some("bad-algorithm")
    );
    // Duplicate keys in the payload, correctly signed.
    let dup_payload = r#"{"iss":"ringbridge","aud":"ringbridge","sub":"*","room":"room2","room":"room1","exp":1700000600}"#;
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(dup_payload);
    let sig = jsonwebtoken::crypto::sign(
        format!("{header}.{payload}").as_bytes(),
        &EncodingKey::from_secret(SECRET.as_bytes()),
        Algorithm::HS256,
    )
    .expect("sign");
    let dup = format!("{header}.{payload}.{sig}");
    assert_eq!(
        verify(&auth(), SECRET, &dup, "room1", NOW),
        Err(TokenError::Malformed("a JSON object has a duplicate key"))
    );
    let big = with(base_claims(), "pad", "x".repeat(MAX_TOKEN_LEN).into());
    assert_eq!(
        code(verify(&auth(), SECRET, &sign(&big), "room1", NOW)).err(),
        Some("token-malformed")
    );
    for junk in [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "!!.!!.!!",
        "..",
        "e30.e30.e30=",
    ] {
        assert_eq!(
            code(verify(&auth(), SECRET, junk, "room1", NOW)).err(),
            Some("token-malformed"),
            "{junk}"
        );
    }
    // No secret and no public key: nothing can verify.
    assert_eq!(
        code(verify(&auth(), "", &token, "room1", NOW)).err(),
        Some("unknown-key")
    );
}

#[test]
fn random_secrets_differ() {
    let (a, b) = (random_secret(), random_secret());
    assert_ne!(a, b);
    assert_eq!(URL_SAFE_NO_PAD.decode(&a).map(|k| k.len()).ok(), Some(32));
}

#[test]
fn minted_token_round_trips() {
    let req = TokenRequest {
        room: "room1".into(),
        owner: true,
        name: Some("Host".into()),
        ttl: Duration::from_secs(3600),
        now_unix: NOW,
    };
    let token = mint_token(&auth(), SECRET, &req).expect("mint");
    let id = verify(&auth(), SECRET, &token, "room1", NOW + 10).expect("valid");
    assert!(id.owner);
    assert_eq!(id.name.as_deref(), Some("Host"));
    assert_eq!(id.affiliation.as_deref(), Some("owner"));
    assert_eq!(id.expires_at, NOW + 3600);
    assert_eq!(id.user_id.as_deref().map(str::len), Some(16));
    assert!(id.jti.is_some());
    assert_eq!(
        verify(&auth(), SECRET, &token, "room1", NOW + 3600 + 31),
        Err(TokenError::Expired)
    );
    let hs512 = AuthConfig {
        app_secret_algorithm: HmacAlgorithm::HS512,
        ..auth()
    };
    let token = mint_token(&hs512, SECRET, &req).expect("mint");
    assert!(verify(&hs512, SECRET, &token, "room1", NOW).is_ok());
    assert!(matches!(
        mint_token(&auth(), "", &req),
        Err(MintError::EmptySecret)
    ));
}
