//! The whole shard: arbitrary datagrams into `ShardCore::handle_receive` on the
//! port of a joined endpoint, whatever the first byte says (STUN, DTLS, RTP,
//! RTCP, or nothing the demultiplexer knows).
//!
//! Per run: a fresh shard with two endpoints joined to one conference (real
//! offers from `ClientPeer`, answered by the shard). If bit 0 of the first byte
//! is set, both clients first complete ICE and DTLS on a virtual clock, so that
//! RTP and RTCP which the fuzzer hands to the first client are SRTP-protected
//! with the real keys and reach the router after decryption. The rest of the
//! input is a list of operations: a tag byte, a little-endian u16 length, then
//! that many bytes (the operation's data):
//!
//! - tag % 6 == 0: the data as a datagram from the first client's address;
//! - 1: the same from an address the shard has never seen;
//! - 2: the data as an RTP packet, SRTP-protected by the first client;
//! - 3: the data as a compound RTCP packet, SRTCP-protected by the first client;
//! - 4: advance the clock by data[0] × 10 ms and run the shard's timers;
//! - 5: the data as a datagram on a port with no endpoint, or the second's.
//!
//! Whatever the shard sends is delivered to the clients.
#![no_main]

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use dimpl::DtlsCertificate;
use libfuzzer_sys::fuzz_target;
use ringbridge_bridge::proto::client::{ClientConfig, ClientDtls, ClientPeer};
use ringbridge_bridge::proto::shard::{ShardConfig, ShardCore};
use ringbridge_bridge::proto::srtp::SrtpProfile;
use ringbridge_bridge::proto::transmit::TxQueue;
use ringbridge_control::media::{ConferenceId, EndpointId, JoinRequest};

const CLIENT: ClientConfig = ClientConfig {
    dtls: ClientDtls::Auto,
    dtls_mtu: 1150,
    srtp_profiles: SrtpProfile::BROWSER_OFFER,
    audio: true,
    video: true,
    audio_slots: 1,
    video_slots: 1,
};
const PORTS: [u16; 2] = [10_000, 10_001];
/// Fixed SSRCs, so that the fuzzer (and the seeds) can address the producers.
const AUDIO_SSRC: [u32; 2] = [0x0000_1111, 0x0000_3333];
const VIDEO_SSRC: [u32; 2] = [0x0000_2222, 0x0000_4444];

fn certificate() -> DtlsCertificate {
    static CERT: OnceLock<DtlsCertificate> = OnceLock::new();
    CERT.get_or_init(|| {
        dimpl::certificate::generate_self_signed_certificate().expect("certificate")
    })
    .clone()
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 40_000 + i as u16))
}

struct Net {
    core: ShardCore,
    tx: TxQueue,
    now: Instant,
    clients: Vec<ClientPeer>,
}

impl Net {
    fn new() -> Option<Net> {
        let now = Instant::now();
        let core = ShardCore::new(
            ShardConfig {
                advertise: vec!["127.0.0.1".parse().ok()?],
                certificate: certificate(),
                srtp_profiles: SrtpProfile::PREFERRED.to_vec(),
                video_start_bitrate_kbps: 1500,
                index: 0,
                tcp_port: None,
                single_port: None,
                audio_last_n: 0,
                drop_silence: false,
            },
            now,
        );
        let mut net = Net {
            core,
            tx: TxQueue::with_capacity(64),
            now,
            clients: Vec::new(),
        };
        for i in 0..2 {
            let mut client = ClientPeer::new(CLIENT, now).ok()?;
            client.audio_ssrc = AUDIO_SSRC[i];
            client.video_ssrc = VIDEO_SSRC[i];
            let req = JoinRequest {
                conference: ConferenceId("fuzz".into()),
                endpoint: EndpointId(format!("e{i}")),
                offer_sdp: client.offer(),
            };
            let answer = net.core.handle_join(now, &req, PORTS[i]).ok()?;
            client.handle_answer(&answer, now).ok()?;
            net.clients.push(client);
        }
        Some(net)
    }

    fn receive(&mut self, port: u16, from: SocketAddr, datagram: &mut [u8]) {
        self.core
            .handle_receive(self.now, port, from, datagram, &mut self.tx);
        self.deliver();
    }

    fn deliver(&mut self) {
        for (t, data) in self.tx.iter() {
            for (i, c) in self.clients.iter_mut().enumerate() {
                if t.to == addr(i) && t.from_port == PORTS[i] {
                    c.handle_receive(self.now, data);
                }
            }
        }
        self.tx.clear();
        while self.core.poll_event().is_some() {}
        while self.core.poll_released_port().is_some() {}
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        if self.core.poll_timeout().is_some_and(|t| self.now >= t) {
            self.core.handle_timeout(self.now, &mut self.tx);
        }
        self.deliver();
        for c in &mut self.clients {
            c.handle_timeout(self.now);
        }
    }

    fn connect(&mut self) {
        for _ in 0..400 {
            if self.clients.iter().all(ClientPeer::is_connected)
                && self.core.counters().dtls_successes == 2
            {
                return;
            }
            let now = self.now;
            for i in 0..self.clients.len() {
                while let Some(mut d) = self.clients[i].poll_transmit(now) {
                    self.core
                        .handle_receive(now, PORTS[i], addr(i), &mut d, &mut self.tx);
                }
            }
            self.advance(Duration::from_millis(5));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut ops)) = data.split_first() else {
        return;
    };
    let Some(mut net) = Net::new() else {
        return;
    };
    if mode & 1 == 1 {
        net.connect();
    }
    while let [tag, l0, l1, rest @ ..] = ops {
        let len = usize::from(u16::from_le_bytes([*l0, *l1])).min(rest.len());
        let (op, tail) = rest.split_at(len);
        ops = tail;
        match tag % 6 {
            0 => net.receive(PORTS[0], addr(0), &mut op.to_vec()),
            1 => net.receive(PORTS[0], addr(7), &mut op.to_vec()),
            2 => {
                if let Ok(mut d) = net.clients[0].protect_rtp(op) {
                    net.receive(PORTS[0], addr(0), &mut d);
                }
            }
            3 => {
                if let Ok(mut d) = net.clients[0].send_rtcp(op) {
                    net.receive(PORTS[0], addr(0), &mut d);
                }
            }
            4 => {
                let steps = op.first().copied().unwrap_or(1);
                net.advance(Duration::from_millis(10) * u32::from(steps));
            }
            _ => {
                let port = if op.first().is_some_and(|b| b & 1 == 1) {
                    PORTS[1]
                } else {
                    PORTS[1] + 1
                };
                net.receive(port, addr(1), &mut op.to_vec());
            }
        }
    }
});
