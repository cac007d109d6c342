//! `cargo bench -p ringbridge-bench --bench dropped_datagram`
//!
//! CPU cost of one datagram the shard drops, through the sans-IO core
//! (`ShardCore::handle_receive`) of a shard with one joined endpoint: random
//! garbage (dropped on its first byte), an SRTP-looking packet from an address
//! that passed no ICE check (dropped at the ICE gate, before any cryptography),
//! a STUN check with a wrong username, and one with a bad MESSAGE-INTEGRITY
//! (the one cryptographic check a stranger gets: HMAC-SHA1 over the message).
//! No sockets: this is the core's share of a flood, per datagram.

// `criterion_group!` defines an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use ringbridge_bridge::proto::client::{ClientConfig, ClientDtls, ClientPeer};
use ringbridge_bridge::proto::shard::{ShardConfig, ShardCore};
use ringbridge_bridge::proto::srtp::SrtpProfile;
use ringbridge_bridge::proto::stun::{self, BindingRequest, IceRole, IntegrityKey, TransactionId};
use ringbridge_bridge::proto::transmit::TxQueue;
use ringbridge_control::media::{ConferenceId, EndpointId, JoinRequest};

const PORT: u16 = 10_000;

/// A shard with one joined (not yet connected) endpoint on [`PORT`]; returns
/// it with the bridge's `ufrag:peer-ufrag` for that endpoint.
fn shard(now: Instant) -> (ShardCore, String) {
    let certificate = dimpl::certificate::generate_self_signed_certificate().expect("cert");
    let mut core = ShardCore::new(
        ShardConfig {
            advertise: vec!["127.0.0.1".parse().expect("ip")],
            certificate,
            srtp_profiles: SrtpProfile::PREFERRED.to_vec(),
            video_start_bitrate_kbps: 1500,
            index: 0,
            single_port: None,
            audio_last_n: 0,
            drop_silence: false,
            tcp_port: None,
        },
        now,
    );
    let client = ClientPeer::new(
        ClientConfig {
            dtls: ClientDtls::Auto,
            dtls_mtu: 1150,
            srtp_profiles: SrtpProfile::BROWSER_OFFER,
            audio: true,
            video: true,
            audio_slots: 1,
            video_slots: 1,
        },
        now,
    )
    .expect("client");
    let offer = client.offer();
    let answer = core
        .handle_join(
            now,
            &JoinRequest {
                conference: ConferenceId("bench".into()),
                endpoint: EndpointId("a".into()),
                offer_sdp: offer.clone(),
            },
            PORT,
        )
        .expect("join");
    let attr = |sdp: &str, key: &str| {
        let prefix = format!("a={key}:");
        sdp.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .expect("attribute")
            .trim()
            .to_owned()
    };
    let username = format!(
        "{}:{}",
        attr(&answer, "ice-ufrag"),
        attr(&offer, "ice-ufrag")
    );
    (core, username)
}

fn check(username: &str, pwd: &str) -> Vec<u8> {
    let mut buf = vec![0u8; 256];
    let req = BindingRequest {
        transaction_id: TransactionId([3; 12]),
        username: username.as_bytes(),
        priority: 1,
        role: IceRole::Controlling { tie_breaker: 1 },
        use_candidate: false,
    };
    let n = stun::write_binding_request(&mut buf, &req, &IntegrityKey::new(pwd.as_bytes()))
        .expect("fits");
    buf.truncate(n);
    buf
}

fn dropped(c: &mut Criterion) {
    let now = Instant::now();
    let (mut core, username) = shard(now);
    let mut tx = TxQueue::with_capacity(16);
    let stranger = SocketAddr::from(([127, 0, 0, 1], 50_000));
    // 1200 bytes of garbage (first byte 0x42: no protocol the bridge speaks).
    let garbage: Vec<u8> = (0..1200u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8 | 0x40)
        .collect();
    let mut srtp = vec![0u8; 1200];
    srtp[0] = 0x80;
    srtp[1] = 111;
    let cases = [
        ("garbage_1200B", garbage),
        ("srtp_unknown_source_1200B", srtp),
        (
            "stun_wrong_username",
            check("someone:else", "password-password"),
        ),
        (
            "stun_bad_integrity",
            check(&username, "not-the-bridges-password"),
        ),
    ];
    let mut group = c.benchmark_group("dropped_datagram");
    for (name, datagram) in cases {
        let mut buf = datagram.clone();
        let before = *core.counters();
        group.bench_function(name, |b| {
            b.iter(|| {
                buf.copy_from_slice(&datagram);
                core.handle_receive(now, PORT, stranger, black_box(&mut buf), &mut tx);
            })
        });
        let after = core.counters();
        assert!(
            tx.is_empty(),
            "{name}: a dropped datagram is answered by nothing"
        );
        let dropped_total = |c: &ringbridge_bridge::proto::shard::ShardCounters| {
            c.dropped_garbage
                + c.dropped_unknown_source
                + c.dropped_stun_username
                + c.dropped_stun_integrity
        };
        assert_eq!(
            dropped_total(after) - dropped_total(&before),
            after.packets_received - before.packets_received,
            "{name}: every datagram was dropped and counted"
        );
    }
    group.finish();
}

criterion_group!(benches, dropped);
criterion_main!(benches);
