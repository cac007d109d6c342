//! Single-port mode over real UDP sockets on 127.0.0.1: two shards share one
//! port (`SO_REUSEPORT`), two conferences live on different shards, and real
//! client peers (ICE, DTLS, SRTP) of both connect to that one address and
//! exchange audio. Every scenario runs on both io backends.
//!
//! With the eBPF steering program, the first checks of a new endpoint may land
//! on the other shard and be handed off, but once ICE has validated the
//! endpoint's address every datagram reaches its owner directly: the hand-off
//! counter stops growing while media flows. Without the program (the fallback
//! where BPF is not permitted), media still arrives, through hand-offs.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ringbridge_bridge::io::{
    Backend, ShardCommand, ShardEventReceiver, ShardHandle, ShardSpec, SinglePort, event_channel,
    spawn_shard, udp,
};
use ringbridge_bridge::proto::client::{ClientConfig, ClientDtls, ClientPeer};
use ringbridge_bridge::proto::sdp::MediaKind;
use ringbridge_bridge::proto::shard::{RemoteChange, ShardConfig, ShardCore, SharedReceive};
use ringbridge_bridge::proto::srtp::SrtpProfile;
use ringbridge_bridge::proto::stun::{self, BindingRequest, IceRole, IntegrityKey, TransactionId};
use ringbridge_bridge::proto::transmit::TxQueue;
use ringbridge_control::media::{ConferenceId, EndpointId, JoinRequest, MediaEvent};

/// One test at a time: each starts two shard threads on a two-core machine.
static SERIAL: Mutex<()> = Mutex::new(());

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const SHARDS: usize = 2;
const PER_CONFERENCE: usize = 5;
const AUDIO_PACKETS: usize = 20;

/// Publishes audio, receives up to four others' audio.
const AUDIO: ClientConfig = ClientConfig {
    dtls: ClientDtls::Auto,
    dtls_mtu: 1150,
    srtp_profiles: SrtpProfile::BROWSER_OFFER,
    audio: true,
    video: false,
    audio_slots: PER_CONFERENCE - 1,
    video_slots: 0,
};

struct Client {
    peer: ClientPeer,
    sock: UdpSocket,
    bridge: SocketAddr,
}

struct Bridge {
    port: Arc<SinglePort>,
    shards: Vec<ShardHandle>,
    events: ShardEventReceiver,
    connected: usize,
    clients: Vec<Client>,
    buf: Vec<u8>,
}

impl Bridge {
    fn start(backend: Backend, steer: bool) -> Self {
        let port = SinglePort::bind(LOCALHOST, 0, SHARDS, steer).expect("shared port");
        let (events_tx, events) = event_channel();
        let certificate =
            dimpl::certificate::generate_self_signed_certificate().expect("certificate");
        let shards = (0..SHARDS)
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
                        audio_last_n: 0,
                        drop_silence: false,
                        tcp_port: None,
                    },
                    single_port: Some(port.clone()),
                };
                spawn_shard(spec, backend, events_tx.clone()).expect("shard starts")
            })
            .collect();
        Self {
            port,
            shards,
            events,
            connected: 0,
            clients: Vec::new(),
            buf: vec![0; 65_536],
        }
    }

    /// Joins a client to `conference` on shard `shard`.
    fn join(&mut self, shard: usize, conference: &str, name: &str) {
        let now = Instant::now();
        let mut peer = ClientPeer::new(AUDIO, now).expect("client");
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.shards[shard]
            .send(ShardCommand::Join {
                req: JoinRequest {
                    conference: ConferenceId(conference.into()),
                    endpoint: EndpointId(name.into()),
                    offer_sdp: peer.offer(),
                },
                policy: Default::default(),
                reply,
            })
            .expect("command queued");
        let answer = answer
            .blocking_recv()
            .expect("shard replies")
            .expect("join accepted");
        assert!(
            answer
                .answer_sdp
                .contains(&format!("a=ice-ufrag:{shard:02x}")),
            "the local ufrag names the shard"
        );
        peer.handle_answer(&answer.answer_sdp, now).expect("answer");
        let bridge = peer.remote_addr().expect("candidate");
        assert_eq!(
            bridge,
            SocketAddr::new(LOCALHOST, self.port.port()),
            "every endpoint is told the one shared port"
        );
        let sock = udp::bind_udp(SocketAddr::new(LOCALHOST, 0)).expect("client socket");
        self.clients.push(Client { peer, sock, bridge });
    }

    fn pump(&mut self) {
        let now = Instant::now();
        for c in &mut self.clients {
            while let Some(d) = c.peer.poll_transmit(now) {
                let _ = c.sock.send_to(&d, c.bridge);
            }
            while let Ok((n, from)) = c.sock.recv_from(&mut self.buf) {
                assert_eq!(from, c.bridge, "replies come from the shared port");
                c.peer.handle_receive(now, &self.buf[..n]);
            }
            c.peer.handle_timeout(now);
        }
        while let Ok(ev) = self.events.try_recv() {
            if matches!(ev, MediaEvent::EndpointConnected { .. }) {
                self.connected += 1;
            }
        }
    }

    fn pump_until(&mut self, limit: Duration, done: impl Fn(&Self) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            self.pump();
            if done(self) {
                return true;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        false
    }

    /// Every client sends `AUDIO_PACKETS` audio packets, paced.
    fn send_audio(&mut self, round: usize) {
        for k in 0..AUDIO_PACKETS {
            for c in &mut self.clients {
                let seq = (round * AUDIO_PACKETS + k) as u16;
                let d = c
                    .peer
                    .send_rtp(
                        MediaKind::Audio,
                        seq,
                        960 * u32::from(seq),
                        false,
                        &[0xA0; 160],
                    )
                    .expect("audio");
                c.sock.send_to(&d, c.bridge).expect("send");
            }
            self.pump();
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn audio_received(&self) -> Vec<usize> {
        self.clients
            .iter()
            .map(|c| c.peer.received_rtp.len())
            .collect()
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        for s in &self.shards {
            let _ = s.send(ShardCommand::Shutdown);
        }
    }
}

/// Two conferences, one per shard, five clients each on the one port; all
/// connect, then everyone speaks, twice. Returns the bridge and the hand-offs
/// counted (after connecting, after the first round, after the second).
fn two_conferences_on_one_port(backend: Backend, steer: bool) -> (Bridge, [u64; 3]) {
    let mut b = Bridge::start(backend, steer);
    for shard in 0..SHARDS {
        for k in 0..PER_CONFERENCE {
            b.join(shard, &format!("room{shard}"), &format!("p{shard}-{k}"));
        }
    }
    let n = b.clients.len();
    let ok = b.pump_until(Duration::from_secs(10), |b| {
        b.connected == n && b.clients.iter().all(|c| c.peer.is_connected())
    });
    let states: Vec<_> = b
        .clients
        .iter()
        .map(|c| (c.peer.is_connected(), c.peer.failure().map(str::to_owned)))
        .collect();
    assert!(
        ok,
        "every client connects through the shared port: {states:?}"
    );
    let connected = b.port.handoffs();

    b.send_audio(0);
    // Each receiver hears the four others of its conference.
    let want = (PER_CONFERENCE - 1) * AUDIO_PACKETS;
    let all = b.pump_until(Duration::from_secs(5), |b| {
        b.audio_received().iter().all(|&r| r >= want)
    });
    assert!(
        all,
        "every client gets its conference's audio: {:?} (want {want} each)",
        b.audio_received()
    );
    let first = b.port.handoffs();
    b.send_audio(1);
    let all = b.pump_until(Duration::from_secs(5), |b| {
        b.audio_received().iter().all(|&r| r >= 2 * want)
    });
    assert!(all, "second round: {:?}", b.audio_received());
    let second = b.port.handoffs();
    assert_eq!(b.port.handoffs_dropped(), 0, "no hand-off was lost");
    // The shards publish what they handed off (`single_port_handoffs`).
    let published = |b: &Bridge| -> u64 {
        b.shards
            .iter()
            .map(|s| s.stats.snapshot(s.index, None).single_port_handoffs)
            .sum()
    };
    let seen = b.pump_until(Duration::from_secs(2), |b| published(b) == second);
    assert!(seen, "published {} of {second} hand-offs", published(&b));
    (b, [connected, first, second])
}

fn steered(backend: Backend) {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let probe = SinglePort::bind(LOCALHOST, 0, SHARDS, true).expect("bind");
    if !probe.steered() {
        eprintln!("skipped: the eBPF steering program cannot be loaded here (see the log)");
        return;
    }
    drop(probe);
    let (b, [connected, first, second]) = two_conferences_on_one_port(backend, true);
    eprintln!("handoffs {connected} {first} {second}");
    assert!(b.port.steered());
    // Ten clients' first checks land on either socket by the kernel's hash:
    // some reach the other shard and are handed off (all ten landing right
    // has a probability of 2^-10).
    assert!(connected > 0, "first checks are handed to their owner");
    assert_eq!(
        (first, second),
        (connected, connected),
        "once ICE validated an address, the kernel steers its datagrams to the owner"
    );
}

fn unsteered(backend: Backend) {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let (b, [connected, first, second]) = two_conferences_on_one_port(backend, false);
    assert!(!b.port.steered());
    assert!(
        first > connected && second > first,
        "without the program, datagrams that land on the other shard keep being handed off: \
         {connected} {first} {second}"
    );
}

#[test]
fn steered_shards_share_one_port_uring() {
    steered(Backend::Uring);
}

#[test]
fn steered_shards_share_one_port_mmsg() {
    steered(Backend::Mmsg);
}

#[test]
fn without_steering_media_still_arrives_by_hand_off_uring() {
    unsteered(Backend::Uring);
}

#[test]
fn without_steering_media_still_arrives_by_hand_off_mmsg() {
    unsteered(Backend::Mmsg);
}

/// The shard core alone (no sockets, one `now`): on the shared port a check is
/// matched by the ufrag in its USERNAME, a check for another shard's ufrag is
/// named for hand-off (and refused once handed off, never passed on again),
/// anything else from an unknown address is left to the driver, and the
/// validated address is reported when it passes and when its endpoint leaves.
#[test]
fn the_core_demultiplexes_the_shared_port_by_ufrag_then_address() {
    let now = Instant::now();
    let certificate = dimpl::certificate::generate_self_signed_certificate().expect("cert");
    let mut core = ShardCore::new(
        ShardConfig {
            advertise: vec![LOCALHOST],
            certificate,
            srtp_profiles: SrtpProfile::PREFERRED.to_vec(),
            video_start_bitrate_kbps: 0,
            index: 1,
            single_port: Some(10_000),
            audio_last_n: 0,
            drop_silence: false,
            tcp_port: None,
        },
        now,
    );
    let mut tx = TxQueue::with_capacity(16);
    let mut client = ClientPeer::new(AUDIO, now).expect("client");
    let req = JoinRequest {
        conference: ConferenceId("room".into()),
        endpoint: EndpointId("alice".into()),
        offer_sdp: client.offer(),
    };
    let answer = core.handle_join(now, &req, 7).expect("join");
    assert!(answer.contains("a=ice-ufrag:01"), "shard 1's ufrag");
    client.handle_answer(&answer, now).expect("answer");
    assert_eq!(
        client.remote_addr(),
        Some(SocketAddr::new(LOCALHOST, 10_000)),
        "the candidate names the shared port, not the endpoint's key"
    );
    let alice = SocketAddr::from(([127, 0, 0, 1], 40_001));
    let stranger = SocketAddr::from(([127, 0, 0, 1], 40_002));

    // Before any check, alice's DTLS is from an unknown address.
    let mut dtls = [22u8, 0xfe, 0xfd, 0, 0];
    assert_eq!(
        core.handle_shared_receive(now, now, alice, &mut dtls, &mut tx, false),
        SharedReceive::UnknownSource
    );

    let mut check = client.poll_transmit(now).expect("a check");
    assert_eq!(check.first(), Some(&0), "STUN first");
    assert_eq!(
        core.handle_shared_receive(now, now, alice, &mut check, &mut tx, false),
        SharedReceive::Handled
    );
    assert_eq!(
        core.poll_remote_change(),
        Some(RemoteChange::Validated(alice))
    );
    assert_eq!(core.poll_remote_change(), None);
    let (t, _) = tx.iter().next().expect("the check is answered");
    assert_eq!((t.from_port, t.to), (10_000, alice));
    tx.clear();
    // Now alice's address alone finds her endpoint: a repeated check is no
    // new validation.
    let mut again = client.poll_transmit(now + Duration::from_millis(600));
    if let Some(d) = again.as_mut().filter(|d| d.first() == Some(&0)) {
        core.handle_shared_receive(now, now, alice, d, &mut tx, false);
        assert_eq!(core.poll_remote_change(), None);
    }

    // A check for shard 0's endpoint, from a stranger: named for hand-off.
    let mut other = vec![0u8; 256];
    let n = stun::write_binding_request(
        &mut other,
        &BindingRequest {
            transaction_id: TransactionId([3; 12]),
            username: b"00abcdefgh:clnt",
            priority: 1,
            role: IceRole::Controlling { tie_breaker: 1 },
            use_candidate: true,
        },
        &IntegrityKey::new(b"whatever-password-123456"),
    )
    .expect("fits");
    other.truncate(n);
    assert_eq!(
        core.handle_shared_receive(now, now, stranger, &mut other.clone(), &mut tx, false),
        SharedReceive::OtherShard(0)
    );
    // Handed off to us anyway (a stale steering entry): refused, never bounced.
    let refused = core.counters().stun_refused;
    assert_eq!(
        core.handle_shared_receive(now, now, stranger, &mut other, &mut tx, true),
        SharedReceive::Handled
    );
    assert_eq!(core.counters().stun_refused, refused + 1);
    assert_eq!(core.poll_remote_change(), None);

    // Alice leaves: her address is reported gone.
    core.handle_leave(&ConferenceId("room".into()), &EndpointId("alice".into()))
        .expect("leave");
    assert_eq!(core.poll_remote_change(), Some(RemoteChange::Gone(alice)));
    assert_eq!(core.poll_released_port(), Some(7));
    let mut check = [0u8; 0];
    assert_eq!(
        core.handle_shared_receive(now, now, alice, &mut check, &mut tx, false),
        SharedReceive::UnknownSource
    );
}
