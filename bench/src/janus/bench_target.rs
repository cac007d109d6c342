//! `--target janus`: [`JanusTarget`] behind the bench's [`Target`] seam.
//!
//! Each conference of the plan is one VideoRoom room. Each publishing endpoint gets
//! a publisher PeerConnection (one leg, its streams in [`Leg::sends`]); once every
//! publisher is connected, each endpoint that has someone to hear gets one
//! subscriber PeerConnection carrying every other publisher of its conference
//! (Janus 1.x multistream: one leg, no sends). Janus runs in its own network
//! namespace, pinned to [`RunOptions::target_core`]; legs bind on the host end of
//! the veth pair.

use std::net::SocketAddr;
use std::time::Instant;

use ringbridge_bridge::io::udp::bind_udp;
use ringbridge_bridge::proto::client::{ClientConfig, ClientDtls, RtpView};
use ringbridge_bridge::proto::sdp::MediaKind;

use super::{JanusConfig, JanusError, JanusPeer, JanusTarget};
use crate::BenchError;
use crate::target::{Leg, Plan, ProfileChoice, RunOptions, SendStream, Session, Target};

impl From<JanusError> for BenchError {
    fn from(e: JanusError) -> Self {
        match e {
            JanusError::Privileges(_)
            | JanusError::Netns(_)
            | JanusError::NotInstalled(_)
            | JanusError::Process(_) => BenchError::Target(e.to_string()),
            other => BenchError::Connect(other.to_string()),
        }
    }
}

/// Starts Janus for the bench (what `target::start` calls for `--target janus`).
pub fn start(opts: &RunOptions) -> Result<Box<dyn Target>, BenchError> {
    Ok(Box::new(JanusBenchTarget::start(opts)?))
}

/// Janus VideoRoom as a bench [`Target`].
#[derive(Debug)]
pub struct JanusBenchTarget {
    janus: JanusTarget,
}

impl JanusBenchTarget {
    /// Starts Janus in a fresh namespace pinned to `opts.target_core`.
    pub fn start(opts: &RunOptions) -> Result<Self, BenchError> {
        if opts.url.is_some() {
            return Err(BenchError::Config(
                "--url names a running ringbridge; it cannot be combined with --target janus"
                    .into(),
            ));
        }
        let janus = JanusTarget::start(&JanusConfig {
            core: Some(opts.target_core),
            debug_level: 2,
            ..JanusConfig::default()
        })?;
        Ok(Self { janus })
    }

    /// The running Janus.
    pub fn janus(&self) -> &JanusTarget {
        &self.janus
    }

    fn socket(&self) -> Result<std::net::UdpSocket, BenchError> {
        Ok(bind_udp(SocketAddr::new(self.janus.host_addr().into(), 0))?)
    }
}

fn client_cfg(audio: bool, video: bool, profile: ProfileChoice) -> ClientConfig {
    ClientConfig {
        dtls: ClientDtls::Auto,
        dtls_mtu: 1200,
        srtp_profiles: profile.offer(),
        audio,
        video,
        audio_slots: 0,
        video_slots: 0,
    }
}

impl Target for JanusBenchTarget {
    fn name(&self) -> &'static str {
        "janus"
    }

    fn pid(&self) -> Option<u32> {
        Some(self.janus.pid())
    }

    fn io_backend(&self) -> Option<String> {
        None
    }

    fn network(&self) -> &'static str {
        "veth"
    }

    fn netns_name(&self) -> Option<&str> {
        Some(self.janus.netns_name())
    }

    fn connect(&mut self, plan: &Plan, opts: &RunOptions) -> Result<Vec<Leg>, BenchError> {
        let mut rooms = Vec::with_capacity(plan.conferences);
        for c in 0..plan.conferences {
            let publishers = plan
                .all
                .iter()
                .filter(|ep| ep.conference == c && (ep.audio || ep.video))
                .count();
            rooms.push(self.janus.create_room(publishers)?);
        }

        // Publishers first, connected before anyone subscribes ("No such feed").
        let mut legs = Vec::new();
        let mut feeds: Vec<Option<u64>> = vec![None; plan.all.len()];
        for (global, ep) in plan.all.iter().enumerate() {
            if !(ep.audio || ep.video) {
                continue;
            }
            let socket = self.socket()?;
            let (peer, feed, _session) = self.janus.publish_peer(
                rooms[ep.conference],
                client_cfg(ep.audio, ep.video, opts.profile),
                socket.local_addr()?,
            )?;
            feeds[global] = Some(feed);
            let sends = SendStream::published_by(global, ep);
            legs.push(leg(peer, socket, sends, global)?);
        }
        crate::engine::handshake(&mut legs, opts.connect_timeout)?;

        for (global, ep) in plan.all.iter().enumerate() {
            let others: Vec<u64> = plan
                .all
                .iter()
                .zip(&feeds)
                .enumerate()
                .filter(|(g, (other, _))| *g != global && other.conference == ep.conference)
                .filter_map(|(_, (_, feed))| *feed)
                .collect();
            if others.is_empty() {
                continue;
            }
            let socket = self.socket()?;
            let (peer, _session) = self.janus.subscribe_peer(
                rooms[ep.conference],
                &others,
                client_cfg(false, false, opts.profile),
                socket.local_addr()?,
            )?;
            legs.push(leg(peer, socket, Vec::new(), global)?);
        }
        Ok(legs)
    }
}

fn leg(
    peer: JanusPeer,
    socket: std::net::UdpSocket,
    sends: Vec<SendStream>,
    endpoint: usize,
) -> Result<Leg, BenchError> {
    let remote = peer
        .remote_addr()
        .ok_or_else(|| BenchError::Connect("Janus gave no candidate".into()))?;
    Ok(Leg {
        socket,
        remote,
        session: Box::new(JanusLeg { peer, remote }),
        sends,
        endpoint,
    })
}

/// The [`Session`] of a Janus leg: Janus's checks come from its one candidate,
/// `remote`, which is also what they are answered with.
struct JanusLeg {
    peer: JanusPeer,
    remote: SocketAddr,
}

impl Session for JanusLeg {
    fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        self.peer.poll_transmit(now)
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.peer.handle_timeout(now);
    }
    fn is_connected(&self) -> bool {
        self.peer.is_connected()
    }
    fn failure(&self) -> Option<String> {
        self.peer.failure().map(str::to_owned)
    }
    fn write_rtp(
        &mut self,
        kind: MediaKind,
        seq: u16,
        ts: u32,
        marker: bool,
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<usize, String> {
        self.peer
            .client_mut()
            .send_rtp_into(kind, seq, ts, marker, payload, out)
            .map_err(|e| e.to_string())
    }
    fn handle_datagram(&mut self, now: Instant, datagram: &mut [u8]) -> Option<RtpView> {
        self.peer
            .handle_receive_in_place(now, self.remote, datagram)
    }
    fn auth_failures(&self) -> u64 {
        self.peer.srtp_failures() as u64
    }
    fn profile(&self) -> Option<&'static str> {
        self.peer.profile().map(|p| p.name())
    }
}
