//! Issue 13, floods at the media ports, in the sans-IO core: every datagram the
//! shard drops is counted under exactly one reason, and nothing from an address
//! that passed no ICE check reaches any cryptography but STUN's integrity check
//! (no SRTP/SRTCP authentication, no DTLS). Real client peers, virtual clock.

mod support;

use std::net::SocketAddr;

use ringbridge_bridge::proto::sdp::MediaKind;
use ringbridge_bridge::proto::shard::{MAX_DATAGRAM, ShardCounters};
use ringbridge_bridge::proto::stun::{self, BindingRequest, IceRole, IntegrityKey, TransactionId};
use support::net::*;

/// The drop counters of a shard, by the `reason` label `/metrics` gives them.
fn drops(c: &ShardCounters) -> [(&'static str, u64); 14] {
    [
        ("garbage", c.dropped_garbage),
        ("oversized", c.dropped_oversized),
        ("unknown_port", c.dropped_unknown_port),
        ("unknown_source", c.dropped_unknown_source),
        ("stun_integrity", c.dropped_stun_integrity),
        ("stun_username", c.dropped_stun_username),
        ("stun_other", c.dropped_stun_other),
        ("malformed", c.dropped_malformed),
        ("auth", c.dropped_auth),
        ("replay", c.dropped_replay),
        ("unknown_ssrc", c.dropped_unknown_ssrc),
        ("policy", c.dropped_policy),
        ("rtx", c.dropped_rtx),
        ("rtx_padding", c.dropped_rtx_padding),
    ]
}

/// Which drop reasons moved, and by how much, between two readings.
fn moved(before: &ShardCounters, after: &ShardCounters) -> Vec<(&'static str, u64)> {
    drops(before)
        .iter()
        .zip(drops(after).iter())
        .filter(|(b, a)| a.1 != b.1)
        .map(|(b, a)| (a.0, a.1 - b.1))
        .collect()
}

/// `a=<key>:<value>` of an SDP.
fn sdp_attr(sdp: &str, key: &str) -> String {
    let prefix = format!("a={key}:");
    sdp.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no a={key} in\n{sdp}"))
        .trim()
        .to_owned()
}

/// A STUN Binding request with `username`, signed with `pwd`.
fn check(username: &str, pwd: &str) -> Vec<u8> {
    let mut buf = vec![0u8; 256];
    let req = BindingRequest {
        transaction_id: TransactionId([9; 12]),
        username: username.as_bytes(),
        priority: 1,
        role: IceRole::Controlling { tie_breaker: 7 },
        use_candidate: false,
    };
    let n = stun::write_binding_request(&mut buf, &req, &IntegrityKey::new(pwd.as_bytes()))
        .expect("fits");
    buf.truncate(n);
    buf
}

/// Two connected peers; returns the network and the bridge's ICE credentials
/// toward peer 0 (`ufrag:peer-ufrag`, password).
fn two_connected() -> (Net, String, String) {
    let mut net = Net::new();
    net.join("alice", EVERYTHING);
    net.join("bob", EVERYTHING);
    net.connect_all();
    let answer = &net.peers[0].answer;
    let offer = net.peers[0].client.offer();
    let username = format!(
        "{}:{}",
        sdp_attr(answer, "ice-ufrag"),
        sdp_attr(&offer, "ice-ufrag")
    );
    let pwd = sdp_attr(answer, "ice-pwd");
    (net, username, pwd)
}

/// Feeds `datagram` to peer `i`'s port from `from`; returns what it moved and
/// checks that the bridge answered nothing.
fn feed(net: &mut Net, i: usize, from: SocketAddr, datagram: &[u8]) -> Vec<(&'static str, u64)> {
    let port = net.peers[i].port;
    feed_port(net, port, from, datagram)
}

fn feed_port(
    net: &mut Net,
    port: u16,
    from: SocketAddr,
    datagram: &[u8],
) -> Vec<(&'static str, u64)> {
    let before = *net.core.counters();
    let mut d = datagram.to_vec();
    net.core
        .handle_receive(net.now, port, from, &mut d, &mut net.tx);
    assert!(
        net.tx.is_empty(),
        "a dropped datagram is answered by nothing"
    );
    let after = *net.core.counters();
    assert_eq!(after.packets_received, before.packets_received + 1);
    moved(&before, &after)
}

#[test]
fn every_dropped_datagram_is_counted_under_one_reason() {
    let (mut net, username, pwd) = two_connected();
    let alice = net.peers[0].addr;
    let stranger = SocketAddr::from(([127, 0, 0, 1], 55_555));

    // Not STUN, DTLS, RTP or RTCP by its first byte (RFC 7983), or empty.
    assert_eq!(feed(&mut net, 0, alice, &[0x42; 100]), [("garbage", 1)]);
    assert_eq!(feed(&mut net, 0, alice, &[]), [("garbage", 1)]);
    assert_eq!(feed(&mut net, 0, alice, &[200, 1, 2]), [("garbage", 1)]);
    // Larger than any datagram the bridge handles, whatever it looks like.
    let mut big = vec![0u8; MAX_DATAGRAM + 1];
    big[0] = 0x80;
    assert_eq!(feed(&mut net, 0, alice, &big), [("oversized", 1)]);
    // A port nobody owns.
    assert_eq!(
        feed_port(&mut net, 19_999, alice, &[0x80, 96, 0, 1]),
        [("unknown_port", 1)]
    );
    // STUN: a wrong password, a wrong username, a response instead of a
    // request, and bytes that only start like STUN.
    assert_eq!(
        feed(
            &mut net,
            0,
            alice,
            &check(&username, "not-the-password-at-all")
        ),
        [("stun_integrity", 1)]
    );
    assert_eq!(
        feed(&mut net, 0, alice, &check("someone:else", &pwd)),
        [("stun_username", 1)]
    );
    let mut response = vec![0u8; 128];
    let n = stun::write_binding_success(
        &mut response,
        &TransactionId([1; 12]),
        alice,
        &IntegrityKey::new(pwd.as_bytes()),
    )
    .expect("fits");
    assert_eq!(
        feed(&mut net, 0, alice, &response[..n]),
        [("stun_other", 1)]
    );
    assert_eq!(
        feed(&mut net, 0, alice, &[0, 1, 0, 0, 9]),
        [("malformed", 1)]
    );
    // SRTP from an address that passed no check.
    let packet = net.peers[0]
        .client
        .send_rtp(MediaKind::Audio, 7, 960, false, &[1, 2, 3])
        .expect("connected");
    assert_eq!(
        feed(&mut net, 0, stranger, &packet),
        [("unknown_source", 1)]
    );
    // The same packet from Alice goes through once, and is a replay the second time.
    let before = *net.core.counters();
    let mut first = packet.clone();
    net.core
        .handle_receive(net.now, net.peers[0].port, alice, &mut first, &mut net.tx);
    assert!(moved(&before, net.core.counters()).is_empty(), "forwarded");
    assert_eq!(net.tx.len(), 1, "to Bob");
    net.deliver();
    assert_eq!(feed(&mut net, 0, alice, &packet), [("replay", 1)]);
    // A flipped bit fails authentication.
    let mut forged = net.peers[0]
        .client
        .send_rtp(MediaKind::Audio, 8, 1920, false, &[1, 2, 3])
        .expect("connected");
    let last = forged.len() - 1;
    forged[last] ^= 1;
    assert_eq!(feed(&mut net, 0, alice, &forged), [("auth", 1)]);
    // A valid check from Alice still answers: nothing of the above hurt her.
    let before = *net.core.counters();
    let mut ok = check(&username, &pwd);
    net.core
        .handle_receive(net.now, net.peers[0].port, alice, &mut ok, &mut net.tx);
    assert_eq!(net.tx.len(), 1, "a valid check is answered");
    assert!(moved(&before, net.core.counters()).is_empty());
    net.tx.clear();
}

#[test]
fn nothing_from_an_unvalidated_address_reaches_srtp_or_dtls() {
    let (mut net, username, pwd) = two_connected();
    let alice = net.peers[0].addr;
    let stranger = SocketAddr::from(([127, 0, 0, 1], 55_556));
    let dtls_before = (
        net.core.counters().dtls_failures,
        net.core.counters().dtls_successes,
    );

    // SRTP and SRTCP with a broken tag: from Alice they fail authentication
    // (they reach SRTP), from the stranger they stop at the ICE gate.
    let mut rtp = net.peers[0]
        .client
        .send_rtp(MediaKind::Audio, 100, 96_000, false, &[9; 40])
        .expect("connected");
    let last = rtp.len() - 1;
    rtp[last] ^= 0x80;
    let mut pli = [0u8; 12];
    let n = ringbridge_bridge::proto::rtcp::write_pli(&mut pli, 1, 2).expect("fits");
    let mut rtcp = net.peers[0].client.send_rtcp(&pli[..n]).expect("connected");
    let last = rtcp.len() - 1;
    rtcp[last] ^= 0x80;
    for _ in 0..1000 {
        assert_eq!(feed(&mut net, 0, stranger, &rtp), [("unknown_source", 1)]);
        assert_eq!(feed(&mut net, 0, stranger, &rtcp), [("unknown_source", 1)]);
    }
    assert_eq!(net.core.counters().dropped_auth, 0, "no SRTP was tried");
    assert_eq!(feed(&mut net, 0, alice, &rtp), [("auth", 1)]);
    assert_eq!(feed(&mut net, 0, alice, &rtcp), [("auth", 1)]);

    // DTLS records (a ClientHello-looking handshake and an alert) from the
    // stranger: dropped before the DTLS stack sees them, Alice's association
    // untouched.
    let hello = [
        22, 0xFE, 0xFD, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let alert = [21, 0xFE, 0xFD, 0, 1, 0, 0, 0, 0, 0, 9, 0, 2, 2, 40];
    for d in [&hello[..], &alert[..]] {
        assert_eq!(feed(&mut net, 0, stranger, d), [("unknown_source", 1)]);
    }
    let c = net.core.counters();
    assert_eq!((c.dtls_failures, c.dtls_successes), dtls_before);

    // STUN with a bad MESSAGE-INTEGRITY is the one cryptographic check a
    // stranger gets, and it does not make the stranger a validated address.
    assert_eq!(
        feed(
            &mut net,
            0,
            stranger,
            &check(&username, "wrong-password-wrong")
        ),
        [("stun_integrity", 1)]
    );
    assert_eq!(feed(&mut net, 0, stranger, &rtp), [("unknown_source", 1)]);

    // Alice's media still flows to Bob.
    let slot = net.slot_ssrc(1, MediaKind::Audio);
    let before = net.received(1, slot).len();
    net.send(0, MediaKind::Audio, 101, 96_960, &[1, 2]);
    assert_eq!(net.received(1, slot).len(), before + 1);
    // And the stranger, once it passes a real check, is a validated address
    // of Alice's endpoint: its SRTP then reaches SRTP (and fails its tag here).
    let mut ok = check(&username, &pwd);
    net.core
        .handle_receive(net.now, net.peers[0].port, stranger, &mut ok, &mut net.tx);
    net.tx.clear();
    assert_eq!(feed(&mut net, 0, stranger, &rtp), [("auth", 1)]);
}
