//! ICE-TCP (RFC 6544, RFC 4571 framing) through a real shard driver and the
//! real listener on 127.0.0.1: a client whose every datagram goes over one TCP
//! connection (framed by this file, not by the bridge's code) does ICE, DTLS
//! and SRTP with a shard whose index is not 0, and exchanges media with a UDP
//! client of the same conference, per-endpoint ports and single-port mode.
//! Every such scenario runs on both backends.
//!
//! Holds the driver tests' lock: a shard per test, two cores.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;

use std::time::{Duration, Instant};

use ringbridge_bridge::io::{
    Backend, ShardCommand, ShardHandle, ShardSpec, SinglePort, TcpListenerHandle, event_channel,
    spawn_shard, spawn_tcp_listener,
};
use ringbridge_bridge::proto::client::ClientPeer;
use ringbridge_bridge::proto::sdp::MediaKind;
use ringbridge_control::media::{ConferenceId, EndpointId, JoinRequest, MediaEvent};
use support::harness::*;

/// The shard index: not 0, so routing by the ufrag's prefix is exercised.
const SHARD: usize = 5;

/// A harness on `backend` with an ICE-TCP listener, a UDP client "udp" and a
/// TCP client "tcp" in one conference, all connected.
fn connected(backend: Backend) -> (Harness, TcpClient, TcpListenerHandle) {
    let tcp_port = free_tcp_port();
    let mut h = Harness::start_full(
        backend,
        SHARD,
        (41_200, 41_209),
        LOCALHOST,
        event_channel(),
        Some(tcp_port),
    );
    let listener = spawn_tcp_listener(SocketAddr::new(LOCALHOST, tcp_port), vec![h.shard.clone()])
        .expect("listener");
    h.join("udp", EVERYTHING);

    let now = Instant::now();
    let mut peer = ClientPeer::new(EVERYTHING, now).expect("client");
    let (reply, answer) = tokio::sync::oneshot::channel();
    h.shard
        .send(ShardCommand::Join {
            req: JoinRequest {
                conference: ConferenceId("room".into()),
                endpoint: EndpointId("tcp".into()),
                offer_sdp: peer.offer(),
            },
            policy: Default::default(),
            reply,
        })
        .expect("queued");
    let answer = answer.blocking_recv().expect("reply").expect("joined");
    let candidate = format!("1 tcp 1520435199 127.0.0.1 {tcp_port} typ host tcptype passive\r\n");
    assert!(
        answer.answer_sdp.contains(&candidate),
        "the answer offers the passive TCP candidate: {}",
        answer.answer_sdp
    );
    let ufrag = answer
        .answer_sdp
        .lines()
        .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
        .expect("ufrag");
    assert!(ufrag.starts_with(&format!("{SHARD:02x}")), "{ufrag}");
    peer.handle_answer(&answer.answer_sdp, now).expect("answer");
    let stream = TcpStream::connect(listener.local_addr).expect("connect");
    stream.set_nonblocking(true).expect("nonblocking");
    stream.set_nodelay(true).expect("nodelay");
    let mut tcp = TcpClient {
        peer,
        stream,
        inbox: Vec::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        h.pump();
        tcp.pump();
        let events = h
            .seen
            .iter()
            .filter(|e| matches!(e, MediaEvent::EndpointConnected { .. }))
            .count();
        if tcp.peer.is_connected() && h.clients[0].peer.is_connected() && events == 2 {
            return (h, tcp, listener);
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    panic!(
        "the ICE-TCP client did not connect: tcp {:?} udp {:?}; listener: accepted {} handed off {} refused {}",
        (tcp.peer.is_connected(), tcp.peer.failure()),
        (
            h.clients[0].peer.is_connected(),
            h.clients[0].peer.failure()
        ),
        listener.stats.accepted(),
        listener.stats.handed_off(),
        listener.stats.refused()
    );
}

fn media_flows_both_ways_between_a_tcp_and_a_udp_client(backend: Backend) {
    let _serial = serial();
    let (mut h, mut tcp, _) = connected(backend);
    exchange(&mut h, &mut tcp);
    let snap = h.shard.stats.snapshot(SHARD, None);
    assert_eq!(snap.tcp_connections_adopted, 1);
    assert_eq!(snap.tcp_connections_active, 1);
    assert!(snap.tcp_frames_received >= N as u64, "{snap:?}");
    assert!(snap.tcp_frames_sent >= N as u64, "{snap:?}");
    assert_eq!(snap.tcp_frames_dropped, 0);

    // Closing the connection is seen and counted.
    drop(tcp);
    let closed = h.pump_until(Duration::from_secs(5), |h| {
        h.shard.stats.snapshot(SHARD, None).tcp_connections_active == 0
    });
    let snap = h.shard.stats.snapshot(SHARD, None);
    assert!(
        closed,
        "the closed connection is still counted active: {snap:?}"
    );
    assert_eq!(snap.tcp_connections_closed, 1);
}

/// Datagrams exchanged each way by [`exchange`].
const N: usize = 100;

/// The TCP client sends video to UDP client 0 of the harness, which sends
/// audio back; each gets every packet.
fn exchange(h: &mut Harness, tcp: &mut TcpClient) {
    for k in 0..N {
        // TCP -> UDP: video packets of a browser's size.
        let d = tcp
            .peer
            .send_rtp(
                MediaKind::Video,
                500 + k as u16,
                3000 * k as u32,
                true,
                &vp8(k == 0, k as u8, VIDEO_PAYLOAD),
            )
            .expect("video");
        tcp.send(&d);
        // UDP -> TCP: audio.
        let d = h.clients[0]
            .peer
            .send_rtp(
                MediaKind::Audio,
                900 + k as u16,
                960 * k as u32,
                false,
                &[0xA0; 160],
            )
            .expect("audio");
        h.send_raw(0, &d);
        h.pump();
        tcp.pump();
    }
    let udp_video = h.slot_ssrc(0, MediaKind::Video);
    let tcp_audio = tcp
        .peer
        .slots
        .iter()
        .find(|s| s.kind == MediaKind::Audio)
        .expect("slot")
        .ssrc;
    let done = |h: &Harness, tcp: &TcpClient| {
        h.received(0, udp_video).len() >= N
            && tcp
                .peer
                .received_rtp
                .iter()
                .filter(|r| r.ssrc == tcp_audio)
                .count()
                >= N
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done(h, tcp) && Instant::now() < deadline {
        h.pump();
        tcp.pump();
        std::thread::sleep(Duration::from_micros(200));
    }
    let video = h.received(0, udp_video);
    let audio: Vec<_> = tcp
        .peer
        .received_rtp
        .iter()
        .filter(|r| r.ssrc == tcp_audio)
        .map(|r| r.payload.len())
        .collect();
    assert_eq!(
        video.len(),
        N,
        "video from the TCP client reached the UDP client"
    );
    assert!(video.iter().all(|&(_, _, len)| len == VIDEO_PAYLOAD));
    assert_eq!(
        audio.len(),
        N,
        "audio from the UDP client reached the TCP client"
    );
    assert!(audio.iter().all(|&len| len == 160));
}

#[test]
fn media_flows_both_ways_between_a_tcp_and_a_udp_client_mmsg() {
    media_flows_both_ways_between_a_tcp_and_a_udp_client(Backend::Mmsg);
}

#[test]
fn media_flows_both_ways_between_a_tcp_and_a_udp_client_uring() {
    if let Err(why) = ringbridge_bridge::io::probe_uring() {
        eprintln!("SKIPPED (io_uring unavailable: {why})");
        return;
    }
    media_flows_both_ways_between_a_tcp_and_a_udp_client(Backend::Uring);
}

/// A frame longer than the limit closes the connection; the endpoint's other
/// transports are untouched.
#[test]
fn an_oversized_frame_closes_the_connection() {
    let _serial = serial();
    let (h, mut tcp, _) = connected(Backend::Mmsg);
    tcp.stream.write_all(&[0xff, 0xff, 1, 2, 3]).expect("write");
    tcp.stream.set_nonblocking(false).expect("blocking");
    tcp.stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut buf = [0u8; 4096];
    let closed = loop {
        match tcp.stream.read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    assert!(
        closed,
        "the bridge kept a connection that sent an oversized frame"
    );
    // The stats are published at the end of the loop turn that closed it.
    let deadline = Instant::now() + Duration::from_secs(2);
    while h.shard.stats.snapshot(SHARD, None).tcp_connections_closed == 0
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    let snap = h.shard.stats.snapshot(SHARD, None);
    assert_eq!(snap.tcp_connections_closed, 1, "{snap:?}");
    assert_eq!(snap.tcp_connections_active, 0, "{snap:?}");
}

/// The listener hands nothing to a shard unless the first frame is a STUN
/// check whose USERNAME names one; garbage is closed and counted.
#[test]
fn a_first_frame_that_is_not_a_check_for_us_is_refused() {
    let _serial = serial();
    let (h, _tcp, listener) = connected(Backend::Mmsg);
    // Not STUN; an empty frame; a length over the limit; a check whose
    // USERNAME names no shard (its ufrag lacks the hex prefix).
    let mut check = vec![0u8; 256];
    let n = ringbridge_bridge::proto::stun::write_binding_request(
        &mut check,
        &ringbridge_bridge::proto::stun::BindingRequest {
            transaction_id: ringbridge_bridge::proto::stun::TransactionId([1; 12]),
            username: b"zzzzzz:clnt",
            priority: 1,
            role: ringbridge_bridge::proto::stun::IceRole::Controlling { tie_breaker: 1 },
            use_candidate: false,
        },
        &ringbridge_bridge::proto::stun::IntegrityKey::new(b"password-password-pass"),
    )
    .expect("check");
    let mut framed_check = (n as u16).to_be_bytes().to_vec();
    framed_check.extend_from_slice(&check[..n]);
    let firsts: [&[u8]; 4] = [b"\x00\x04abcd", b"\x00\x00", b"\x10\x00", &framed_check];
    for first in firsts {
        let mut s = TcpStream::connect(listener.local_addr).expect("connect");
        s.write_all(first).expect("write");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut buf = [0u8; 16];
        let closed = match s.read(&mut buf) {
            Ok(0) => true,
            Err(e) => e.kind() == ErrorKind::ConnectionReset,
            Ok(_) => false,
        };
        assert!(closed, "the listener kept a connection that sent {first:?}");
    }
    // The listener closes a refused connection and then counts it: the
    // client may see the close first.
    let deadline = Instant::now() + Duration::from_secs(5);
    while listener.stats.refused() < 4 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(listener.stats.refused(), 4);
    assert_eq!(listener.stats.handed_off(), 1);
    let snap = h.shard.stats.snapshot(SHARD, None);
    assert_eq!(
        snap.tcp_connections_adopted, 1,
        "only the real client got through"
    );
}

/// Issue 15 item 2, sans-IO: the answer carries one UDP candidate per
/// `media.advertise` address on the endpoint's port and one passive TCP
/// candidate per address on `media.tcp_port` (whatever the bind address), and
/// the local ufrag names the shard, which finds the endpoint's port from a
/// check's USERNAME.
#[test]
fn advertised_addresses_become_udp_and_tcp_candidates_and_the_ufrag_names_the_shard() {
    use ringbridge_bridge::proto::ice::shard_of_username;
    use ringbridge_bridge::proto::shard::{ShardConfig, ShardCore};
    use ringbridge_bridge::proto::srtp::SrtpProfile;

    let now = Instant::now();
    let advertise: Vec<std::net::IpAddr> = vec![
        "203.0.113.7".parse().expect("v4"),
        "2001:db8::7".parse().expect("v6"),
    ];
    let mut core = ShardCore::new(
        ShardConfig {
            advertise: advertise.clone(),
            certificate: dimpl::certificate::generate_self_signed_certificate().expect("cert"),
            srtp_profiles: SrtpProfile::PREFERRED.to_vec(),
            video_start_bitrate_kbps: 1500,
            index: 0x2a,
            tcp_port: Some(4443),
            audio_last_n: 0,
            drop_silence: false,
            single_port: None,
        },
        now,
    );
    let peer = ClientPeer::new(EVERYTHING, now).expect("client");
    let req = JoinRequest {
        conference: ConferenceId("room".into()),
        endpoint: EndpointId("e".into()),
        offer_sdp: peer.offer(),
    };
    let answer = core.handle_join(now, &req, 10_007).expect("joined");
    let candidates: Vec<&str> = answer
        .lines()
        .filter_map(|l| l.strip_prefix("a=candidate:"))
        .collect();
    for (i, ip) in advertise.iter().enumerate() {
        let udp = format!("{} 1 udp {} {ip} 10007 typ host", i + 1, 2_130_706_431 - i);
        let tcp = format!("tcp{} 1 tcp ", i + 1);
        assert!(
            candidates.contains(&udp.as_str()),
            "{udp} missing: {answer}"
        );
        assert!(
            candidates.iter().any(|c| c.starts_with(&tcp)
                && c.ends_with(&format!("{ip} 4443 typ host tcptype passive"))),
            "TCP candidate on {ip} missing: {answer}"
        );
    }
    assert_eq!(candidates.len() % 4, 0, "two UDP and two TCP per m-line");
    let ufrag = answer
        .lines()
        .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
        .expect("ufrag");
    let username = format!("{ufrag}:clnt");
    assert_eq!(shard_of_username(username.as_bytes()), Some(0x2a));
    assert_eq!(core.port_of_username(username.as_bytes()), Some(10_007));
    assert_eq!(core.port_of_username(b"2aNOSUCH0:clnt"), None);
}

/// Fan-out 4 over ICE-TCP at full rate (the bench's scenario, short): every
/// datagram the shard forwards reaches its TCP receiver intact and in whole
/// frames; what a full backlog drops (a receiver slower than the blast, here
/// a test thread on a busy host) is counted, not lost silently.
#[test]
fn a_sender_fans_out_to_four_tcp_receivers_in_whole_frames_and_counts_drops() {
    let _serial = serial();
    let m = measure_tcp(Backend::Mmsg, 7, (41_210, 41_219), 301, 256);
    // The UDP sender's socket may lose a datagram on a busy host; what the
    // shard got it must forward four times, and all of it must arrive.
    assert!(
        m.ingress >= 290,
        "{} of 300 packets reached the shard",
        m.ingress
    );
    assert_eq!(
        m.egress + m.dropped,
        4 * m.ingress,
        "each forwarded to four receivers, or counted as dropped"
    );
    assert!(
        m.dropped <= m.egress,
        "most got through: {} dropped",
        m.dropped
    );
    assert_eq!(
        m.delivered, m.egress,
        "what was sent was read off the connections"
    );
}

/// When its endpoint leaves, the bridge closes the endpoint's ICE-TCP
/// connection (its port is released) and counts it.
#[test]
fn leaving_closes_the_endpoints_tcp_connection() {
    let _serial = serial();
    let (h, mut tcp, _) = connected(Backend::Mmsg);
    let (reply, done) = tokio::sync::oneshot::channel();
    h.shard
        .send(ShardCommand::Leave {
            conference: ConferenceId("room".into()),
            endpoint: EndpointId("tcp".into()),
            reply,
        })
        .expect("queued");
    done.blocking_recv().expect("reply").expect("left");
    tcp.stream.set_nonblocking(false).expect("blocking");
    tcp.stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut buf = [0u8; 4096];
    let closed = loop {
        match tcp.stream.read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => continue,
            Err(e) => break e.kind() == ErrorKind::ConnectionReset,
        }
    };
    assert!(closed, "the connection of an endpoint that left stays open");
    let deadline = Instant::now() + Duration::from_secs(2);
    while h.shard.stats.snapshot(SHARD, None).tcp_connections_active != 0
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    let snap = h.shard.stats.snapshot(SHARD, None);
    assert_eq!(
        (snap.tcp_connections_active, snap.tcp_connections_closed),
        (0, 1)
    );
}

/// ICE-TCP in single-port mode: two shards share one UDP port; the TCP
/// connection of an endpoint of shard 1 reaches shard 1 (its ufrag's prefix),
/// the core knows it by the endpoint's key while its datagrams leave from the
/// shared port, and media flows both ways with a UDP client on the shared port.
fn tcp_in_single_port_mode(backend: Backend) {
    use ringbridge_bridge::proto::shard::ShardConfig;
    use ringbridge_bridge::proto::srtp::SrtpProfile;

    let _serial = serial();
    let port = SinglePort::bind(LOCALHOST, 0, 2, false).expect("shared port");
    let tcp_port = free_tcp_port();
    let (events_tx, events) = event_channel();
    let certificate = dimpl::certificate::generate_self_signed_certificate().expect("cert");
    let shards: Vec<ShardHandle> = (0..2)
        .map(|index| {
            let spec = ShardSpec {
                index,
                core: None,
                ports: (0, 0),
                bind: LOCALHOST,
                core_config: ShardConfig {
                    advertise: vec![LOCALHOST],
                    certificate: certificate.clone(),
                    srtp_profiles: SrtpProfile::PREFERRED.to_vec(),
                    video_start_bitrate_kbps: 0,
                    index,
                    single_port: Some(port.port()),
                    tcp_port: Some(tcp_port),
                    audio_last_n: 0,
                    drop_silence: false,
                },
                single_port: Some(port.clone()),
            };
            spawn_shard(spec, backend, events_tx.clone()).expect("shard")
        })
        .collect();
    let listener =
        spawn_tcp_listener(SocketAddr::new(LOCALHOST, tcp_port), shards.clone()).expect("listener");
    let mut h = Harness {
        shard: shards[1].clone(),
        bridge_ip: LOCALHOST,
        events,
        seen: Vec::new(),
        clients: Vec::new(),
        buf: vec![0; 65_536],
    };
    h.join("udp", EVERYTHING);
    assert_eq!(
        h.clients[0].bridge.port(),
        port.port(),
        "UDP goes to the shared port"
    );
    let mut tcp = h.join_tcp("tcp", EVERYTHING, listener.local_addr);
    let connected = |h: &Harness, tcp: &TcpClient| {
        tcp.peer.is_connected()
            && h.clients[0].peer.is_connected()
            && h.seen
                .iter()
                .filter(|e| matches!(e, MediaEvent::EndpointConnected { .. }))
                .count()
                == 2
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !connected(&h, &tcp) && Instant::now() < deadline {
        h.pump();
        tcp.pump();
        std::thread::sleep(Duration::from_micros(200));
    }
    assert!(
        connected(&h, &tcp),
        "the ICE-TCP client did not connect in single-port mode"
    );
    exchange(&mut h, &mut tcp);
    let snap = shards[1].stats.snapshot(1, None);
    assert_eq!(snap.tcp_connections_adopted, 1, "{snap:?}");
    assert_eq!(shards[0].stats.snapshot(0, None).tcp_connections_adopted, 0);
    let _ = shards[0].send(ShardCommand::Shutdown);
}

#[test]
fn single_port_mode_serves_ice_tcp_on_the_owning_shard_mmsg() {
    tcp_in_single_port_mode(Backend::Mmsg);
}

#[test]
fn single_port_mode_serves_ice_tcp_on_the_owning_shard_uring() {
    if let Err(why) = ringbridge_bridge::io::probe_uring() {
        eprintln!("SKIPPED (io_uring unavailable: {why})");
        return;
    }
    tcp_in_single_port_mode(Backend::Uring);
}
