//! The JWT of a join and its claims. The first byte picks the mode: even, the rest
//! is the token as a client sends it; odd, the rest is `header JSON 0xFF claims
//! JSON` (or only the claims, under an HS256 header) that the target signs with
//! the configured secret, so that the claim checks see arbitrary JSON too.
#![no_main]

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use ringbridge_control::config::{AuthConfig, FeaturesDefault};
use ringbridge_control::token::{self, TokenVerifier};

const SECRET: &str = "fuzz-secret-0123456789";
const NOW: u64 = 1_700_000_000;

fn signed(rest: &[u8]) -> String {
    let (header, claims) = match rest.iter().position(|&b| b == 0xff) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (&br#"{"alg":"HS256","typ":"JWT"}"#[..], rest),
    };
    let mut t = URL_SAFE_NO_PAD.encode(header);
    t.push('.');
    t.push_str(&URL_SAFE_NO_PAD.encode(claims));
    let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET.as_bytes());
    let tag = hmac::sign(&key, t.as_bytes());
    t.push('.');
    t.push_str(&URL_SAFE_NO_PAD.encode(tag.as_ref()));
    t
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let token = if mode & 1 == 1 {
        signed(rest)
    } else {
        match std::str::from_utf8(rest) {
            Ok(t) => t.to_owned(),
            Err(_) => return,
        }
    };
    let auth = AuthConfig {
        app_secret: Some(SECRET.into()),
        domain: if mode & 2 == 0 {
            "*".into()
        } else {
            "meet.example.com".into()
        },
        ..AuthConfig::default()
    };
    let Ok(verifier) = TokenVerifier::new(&auth, SECRET) else {
        return;
    };
    let room = if mode & 4 == 0 { "room1" } else { "Ｒoom1" };
    let _ = token::canonical_room(&token);
    if let Ok(id) = verifier.verify(&token, room, NOW) {
        let _ = id.feature("screen-sharing", FeaturesDefault::Allow);
    }
});
