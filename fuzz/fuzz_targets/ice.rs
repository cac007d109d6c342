//! The ICE-lite agent's Binding request handling. The first byte picks the mode:
//! even, the rest is the datagram as received; odd, the rest is a STUN header and
//! attributes that the target signs with the agent's password (MESSAGE-INTEGRITY,
//! then FINGERPRINT), so that the fuzzer gets past the integrity check too.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use aws_lc_rs::hmac;
use libfuzzer_sys::fuzz_target;
use ringbridge_bridge::proto::ice::{IceLite, StunOutcome};

const LOCAL_PWD: &str = "bridgepasswordbridgepass";

fn signed(body: &[u8]) -> Vec<u8> {
    let mut m = body.to_vec();
    if m.len() < 20 {
        m.resize(20, 0);
    }
    // Whole attributes only: pad to a multiple of 4.
    while m.len() % 4 != 0 {
        m.push(0);
    }
    let set_len = |m: &mut Vec<u8>, extra: usize| {
        let len = (m.len() - 20 + extra) as u16;
        m[2..4].copy_from_slice(&len.to_be_bytes());
    };
    set_len(&mut m, 24);
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, LOCAL_PWD.as_bytes());
    let tag = hmac::sign(&key, &m);
    m.extend_from_slice(&[0x00, 0x08, 0x00, 0x14]);
    m.extend_from_slice(tag.as_ref());
    set_len(&mut m, 8);
    let crc = crc32fast::hash(&m) ^ 0x5354_554e;
    m.extend_from_slice(&[0x80, 0x28, 0x00, 0x04]);
    m.extend_from_slice(&crc.to_be_bytes());
    m
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let now = Instant::now();
    let mut ice = IceLite::new("bridge".into(), LOCAL_PWD.into(), "peer".into(), now);
    let datagram = if mode & 1 == 1 {
        signed(rest)
    } else {
        rest.to_vec()
    };
    let from = SocketAddr::from(([127, 0, 0, 1], 40_000 + u16::from(mode >> 1)));
    let mut out = [0u8; 1500];
    for i in 0..2u32 {
        let at = now + Duration::from_millis(u64::from(i) * 10);
        if let StunOutcome::Respond(n) = ice.handle_stun(at, from, &datagram, &mut out) {
            assert!(n <= out.len());
        }
    }
    let _ = ice.selected();
    let _ = ice.is_nominated();
    let _ = ice.is_validated(from);
});
