//! A shard core and real client peers (ICE, DTLS, SRTP) on a virtual clock: no
//! sockets, no sleeps. Shared by `two_peers.rs` and `policy.rs`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ringbridge_bridge::proto::client::{ClientConfig, ClientDtls, ClientPeer};
use ringbridge_bridge::proto::sdp::MediaKind;
use ringbridge_bridge::proto::shard::{ShardConfig, ShardCore};
use ringbridge_bridge::proto::srtp::SrtpProfile;
use ringbridge_bridge::proto::transmit::TxQueue;
use ringbridge_control::media::{
    ConferenceId, EndpointId, EndpointPolicy, JoinRequest, MediaEvent,
};

pub const STEP: Duration = Duration::from_millis(5);

pub struct Peer {
    pub name: &'static str,
    pub client: ClientPeer,
    pub addr: SocketAddr,
    pub port: u16,
    pub joined: bool,
    /// DTLS datagrams the client sent before the bridge's first DTLS reply.
    pub first_flight: usize,
    pub got_dtls: bool,
    /// The bridge's SDP answer.
    pub answer: String,
}

pub struct Net {
    pub core: ShardCore,
    pub tx: TxQueue,
    pub now: Instant,
    pub peers: Vec<Peer>,
    pub events: Vec<MediaEvent>,
}

pub const EVERYTHING: ClientConfig = ClientConfig {
    dtls: ClientDtls::Auto,
    dtls_mtu: 1150,
    srtp_profiles: SrtpProfile::BROWSER_OFFER,
    audio: true,
    video: true,
    audio_slots: 1,
    video_slots: 1,
};

/// Video only: one camera published, one video slot.
pub const VIDEO_ONLY: ClientConfig = ClientConfig {
    audio: false,
    video: true,
    audio_slots: 0,
    video_slots: 1,
    ..EVERYTHING
};

impl Net {
    pub fn new() -> Self {
        Self::with_srtp_profiles(SrtpProfile::PREFERRED)
    }

    /// A shard that accepts these SRTP profiles, in this order (`media.srtp_profiles`).
    pub fn with_srtp_profiles(profiles: &[SrtpProfile]) -> Self {
        Self::with_config(profiles, 0, false)
    }

    /// A shard that drops silent audio runs (`media.drop_silence = true`).
    pub fn dropping_silence() -> Self {
        Self::with_config(SrtpProfile::PREFERRED, 0, true)
    }

    /// A shard that forwards audio from the `n` loudest speakers only (`media.audio_last_n`).
    pub fn with_audio_last_n(n: u32) -> Self {
        Self::with_config(SrtpProfile::PREFERRED, n, false)
    }

    fn with_config(profiles: &[SrtpProfile], audio_last_n: u32, drop_silence: bool) -> Self {
        let certificate =
            dimpl::certificate::generate_self_signed_certificate().expect("certificate");
        let now = Instant::now();
        Self {
            core: ShardCore::new(
                ShardConfig {
                    advertise: vec!["127.0.0.1".parse().expect("ip")],
                    certificate,
                    srtp_profiles: profiles.to_vec(),
                    video_start_bitrate_kbps: 1500,
                    index: 0,
                    tcp_port: None,
                    single_port: None,
                    audio_last_n,
                    drop_silence,
                },
                now,
            ),
            tx: TxQueue::with_capacity(64),
            now,
            peers: Vec::new(),
            events: Vec::new(),
        }
    }

    pub fn join(&mut self, name: &'static str, cfg: ClientConfig) -> usize {
        self.join_with(name, cfg, EndpointPolicy::default(), |offer| offer)
    }

    pub fn join_with(
        &mut self,
        name: &'static str,
        cfg: ClientConfig,
        policy: EndpointPolicy,
        edit: impl FnOnce(String) -> String,
    ) -> usize {
        let client = ClientPeer::new(cfg, self.now).expect("client");
        self.join_client("room", name, client, policy, edit)
    }

    /// Joins an already built client (its SSRCs may have been set) to
    /// `conference`.
    pub fn join_client(
        &mut self,
        conference: &str,
        name: &'static str,
        mut client: ClientPeer,
        policy: EndpointPolicy,
        edit: impl FnOnce(String) -> String,
    ) -> usize {
        let i = self.peers.len();
        let port = 10_000 + i as u16;
        let req = JoinRequest {
            conference: ConferenceId(conference.into()),
            endpoint: EndpointId(name.into()),
            offer_sdp: edit(client.offer()),
        };
        let answer = self
            .core
            .handle_join_with_policy(self.now, &req, port, policy)
            .expect("join");
        client.handle_answer(&answer, self.now).expect("answer");
        let answer = answer.to_string();
        self.peers.push(Peer {
            name,
            client,
            addr: SocketAddr::from(([127, 0, 0, 1], 40_000 + i as u16)),
            port,
            joined: true,
            first_flight: 0,
            got_dtls: false,
            answer,
        });
        i
    }

    /// Runs the network for `steps` virtual 5 ms steps.
    pub fn progress(&mut self, steps: usize) {
        for _ in 0..steps {
            self.step();
        }
    }

    pub fn step(&mut self) {
        let now = self.now;
        for p in &mut self.peers {
            if !p.joined {
                continue;
            }
            while let Some(mut d) = p.client.poll_transmit(now) {
                if !p.got_dtls && (20..64).contains(&d[0]) {
                    p.first_flight += 1;
                }
                self.core
                    .handle_receive(now, p.port, p.addr, &mut d, &mut self.tx);
            }
        }
        if self.core.poll_timeout().is_some_and(|t| now >= t) {
            self.core.handle_timeout(now, &mut self.tx);
        }
        self.deliver();
        for p in &mut self.peers {
            p.client.handle_timeout(now);
        }
        while let Some(ev) = self.core.poll_event() {
            self.events.push(ev);
        }
        self.now += STEP;
    }

    pub fn deliver(&mut self) {
        let now = self.now;
        for (t, data) in self.tx.iter() {
            if let Some(p) = self
                .peers
                .iter_mut()
                .find(|p| p.joined && p.addr == t.to && p.port == t.from_port)
            {
                p.got_dtls |= (20..64).contains(&data[0]);
                p.client.handle_receive(now, data);
            }
        }
        self.tx.clear();
    }

    /// Sends one RTP packet from peer `i` straight into the core.
    pub fn send(&mut self, i: usize, kind: MediaKind, seq: u16, ts: u32, payload: &[u8]) {
        let p = &mut self.peers[i];
        let mut d = p
            .client
            .send_rtp(kind, seq, ts, false, payload)
            .expect("connected");
        self.core
            .handle_receive(self.now, p.port, p.addr, &mut d, &mut self.tx);
        self.deliver();
    }

    /// Protects an RTP packet built whole by the test (see [`rtp`]) as peer `i`
    /// and sends it into the core.
    pub fn send_raw(&mut self, i: usize, packet: &[u8]) {
        let p = &mut self.peers[i];
        let mut d = p.client.protect_rtp(packet).expect("connected");
        self.core
            .handle_receive(self.now, p.port, p.addr, &mut d, &mut self.tx);
        self.deliver();
    }

    /// [`send_raw`](Self::send_raw) for a packet the driver read in a batch
    /// at `self.now` but whose kernel stamp says it arrived at `arrival`.
    #[allow(dead_code)]
    pub fn send_raw_arrived(&mut self, i: usize, packet: &[u8], arrival: Instant) {
        let p = &mut self.peers[i];
        let mut d = p.client.protect_rtp(packet).expect("connected");
        self.core
            .handle_receive_at(self.now, arrival, p.port, p.addr, &mut d, &mut self.tx);
        self.deliver();
    }

    /// Protects an RTCP compound packet as peer `i` and sends it into the core.
    pub fn send_rtcp(&mut self, i: usize, packet: &[u8]) {
        let p = &mut self.peers[i];
        let mut d = p.client.send_rtcp(packet).expect("connected");
        self.core
            .handle_receive(self.now, p.port, p.addr, &mut d, &mut self.tx);
        self.deliver();
    }

    pub fn connect_all(&mut self) {
        for _ in 0..1000 {
            // The client finishes first (it has the server's Finished); the bridge
            // connects when the client's last flight arrives.
            let bridge_done = self.core.counters().dtls_successes as usize == self.peers.len();
            if bridge_done && self.peers.iter().all(|p| p.client.is_connected()) {
                return;
            }
            self.step();
        }
        let states: Vec<_> = self
            .peers
            .iter()
            .map(|p| {
                (
                    p.name,
                    p.client.is_connected(),
                    p.client.failure().map(str::to_owned),
                )
            })
            .collect();
        panic!("peers did not connect: {states:?}");
    }

    pub fn slot_ssrc(&self, i: usize, kind: MediaKind) -> u32 {
        self.peers[i]
            .client
            .slots
            .iter()
            .find(|s| s.kind == kind)
            .expect("slot")
            .ssrc
    }

    pub fn received(&self, i: usize, ssrc: u32) -> Vec<(u16, u32, Vec<u8>)> {
        self.peers[i]
            .client
            .received_rtp
            .iter()
            .filter(|r| r.ssrc == ssrc)
            .map(|r| (r.seq, r.ts, r.payload.clone()))
            .collect()
    }
}

/// A VP8 payload: descriptor (S=1, PID=0) and a frame tag; keyframes carry the
/// start code.
pub fn vp8(keyframe: bool, n: u8) -> Vec<u8> {
    if keyframe {
        vec![0x10, 0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a, n]
    } else {
        vec![0x10, 0x01, 0x00, 0x00, n, n, n]
    }
}

/// An RTP packet: header, an RFC 8285 extension block of `exts` (one-byte form),
/// `payload`, and `padding` bytes of padding (the last one the count).
pub fn rtp(
    pt: u8,
    seq: u16,
    ts: u32,
    ssrc: u32,
    exts: &[(u8, &[u8])],
    payload: &[u8],
    padding: u8,
) -> Vec<u8> {
    let mut block = Vec::new();
    for (id, v) in exts {
        block.push((id << 4) | (v.len() as u8 - 1));
        block.extend_from_slice(v);
    }
    while block.len() % 4 != 0 {
        block.push(0);
    }
    let mut p = vec![
        0x80 | if padding > 0 { 0x20 } else { 0 } | if exts.is_empty() { 0 } else { 0x10 },
        pt,
    ];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    if !exts.is_empty() {
        p.extend_from_slice(&[0xBE, 0xDE]);
        p.extend_from_slice(&((block.len() / 4) as u16).to_be_bytes());
        p.extend_from_slice(&block);
    }
    p.extend_from_slice(payload);
    if padding > 0 {
        p.extend(std::iter::repeat_n(0, usize::from(padding) - 1));
        p.push(padding);
    }
    p
}

/// Edits an offer line by line: `f` gets the kind of the current m-section
/// ("" before the first m-line, else "audio"/"video") and the line, and returns
/// what replaces it (the line itself to keep it, "" to drop it).
pub fn edit_offer(offer: &str, mut f: impl FnMut(&str, &str) -> String) -> String {
    let mut kind = String::new();
    let mut out = String::new();
    for line in offer.split_inclusive("\r\n") {
        if let Some(m) = line.strip_prefix("m=") {
            kind = m.split(' ').next().unwrap_or_default().to_owned();
        }
        out.push_str(&f(&kind, line));
    }
    out
}
