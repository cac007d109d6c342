//! The null forwarder: the least a forwarder can do with the same fan-out.
//! One UDP socket, `recvmmsg` a batch, `sendmmsg` every datagram to every other
//! member of its sender's group, unchanged (no ICE, no crypto, no rewriting).
//! Its CPU nanoseconds per egress packet are the floor a real bridge is
//! compared with (`efficiency_vs_null`).
//!
//! Simulcast (`meeting-simulcast`): the forwarder models a bridge whose
//! receivers all take the top layer. Its clients tag a simulcast layer in the
//! low two bits of the SSRC (1, 2, 3 for layers 0, 1, 2; 0 for every other
//! stream); the forwarder reads every datagram and forwards only those whose tag
//! is 0 or 3, so both targets take in three layers and send out one.
//!
//! Registration: a client sends `RBNFJ` + group (u32, big-endian) from the
//! socket it will use; the forwarder adds the address to the group and answers
//! `RBNFA`. Datagrams from addresses it does not know are dropped.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::Rng;
use ringbridge_bridge::io::udp;
use ringbridge_bridge::proto::client::RtpView;
use ringbridge_bridge::proto::rtp::RtpHeader;
use ringbridge_bridge::proto::sdp::MediaKind;

use crate::BenchError;
use crate::mmsg::Batch;
use crate::shape::Plan;
use crate::target::{Leg, RunOptions, SendStream, Session, Target};

/// Registration request prefix (followed by the group id).
pub const JOIN: &[u8; 5] = b"RBNFJ";
/// Registration answer.
pub const ACK: &[u8; 5] = b"RBNFA";

/// Runs the forwarder on `listen` until killed. Prints `listening on ADDR` on
/// stdout once bound.
pub fn serve(listen: SocketAddr) -> Result<(), BenchError> {
    let sock = udp::bind_udp(listen)?;
    println!("listening on {}", sock.local_addr()?);
    let fd = sock.as_raw_fd();
    let mut groups: HashMap<u32, Vec<SocketAddr>> = HashMap::new();
    let mut member_of: HashMap<SocketAddr, u32> = HashMap::new();
    let mut inb = Batch::new(64);
    let mut out = Batch::new(1024);
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        let got = inb.recv(fd)?;
        if got == 0 {
            // SAFETY: one valid pollfd, for the call only.
            unsafe { libc::poll(&mut pfd, 1, 1000) };
            continue;
        }
        let mut queued = 0;
        for i in 0..got {
            let Some(from) = inb.name(i) else { continue };
            let d = &inb.bufs[i][..inb.lens[i]];
            if d.len() == 9 && d.starts_with(JOIN) {
                let group = u32::from_be_bytes([d[5], d[6], d[7], d[8]]);
                if member_of.insert(from, group).is_none() {
                    groups.entry(group).or_default().push(from);
                }
                let _ = sock.send_to(ACK, from);
                continue;
            }
            let Some(members) = member_of.get(&from).and_then(|g| groups.get(g)) else {
                continue;
            };
            if d.len() >= 12 && matches!(d[11] & 0x03, 1 | 2) {
                // A lower simulcast layer: nobody is sent it.
                continue;
            }
            for to in members.iter().filter(|&&to| to != from) {
                if queued == out.capacity() {
                    let _ = out.send(fd, queued);
                    queued = 0;
                }
                out.bufs[queued][..d.len()].copy_from_slice(d);
                out.lens[queued] = d.len();
                out.set_name(queued, to);
                queued += 1;
            }
        }
        if queued > 0 {
            let _ = out.send(fd, queued);
        }
    }
}

/// A null forwarder child process, pinned to the target core.
#[derive(Debug)]
pub struct NullTarget {
    child: Child,
    addr: SocketAddr,
    /// Where legs bind: loopback, or the host end of the veth pair.
    local_ip: std::net::IpAddr,
    /// Dropped after the child is killed (fields drop after `Drop::drop`).
    netns: Option<crate::netns::Netns>,
}

impl NullTarget {
    /// Starts `<this binary> null-forwarder --listen 127.0.0.1:0` pinned to
    /// `opts.target_core`, and reads the address it bound. With `opts.netns`:
    /// `ip netns exec NS taskset -c CORE <this binary> null-forwarder --listen
    /// <namespace address>:0` (both exec, so the child is the forwarder).
    pub fn start(opts: &RunOptions) -> Result<Self, BenchError> {
        let exe = std::env::current_exe()?;
        let core = opts.target_core;
        let netns = if opts.netns {
            Some(crate::netns::Netns::create()?)
        } else {
            None
        };
        let (listen, local_ip): (std::net::IpAddr, std::net::IpAddr) = match &netns {
            Some(ns) => (ns.inner_addr().into(), ns.host_addr().into()),
            None => (
                std::net::Ipv4Addr::LOCALHOST.into(),
                std::net::Ipv4Addr::LOCALHOST.into(),
            ),
        };
        let mut cmd = match &netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args([
                    "netns",
                    "exec",
                    ns.name(),
                    "taskset",
                    "-c",
                    &core.to_string(),
                ])
                .arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        cmd.arg("null-forwarder")
            .arg("--listen")
            .arg(SocketAddr::new(listen, 0).to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // SAFETY: the hook only calls sched_setaffinity, which is
        // async-signal-safe, and allocates nothing.
        unsafe {
            cmd.pre_exec(move || crate::sys::pin(0, core));
        }
        let child = cmd.spawn()?;
        let mut target = Self {
            child,
            addr: SocketAddr::new(listen, 0),
            local_ip,
            netns,
        };
        // From here on, `target`'s Drop kills the child and removes the namespace.
        let stdout = target
            .child
            .stdout
            .take()
            .ok_or_else(|| BenchError::Target("null forwarder has no stdout".into()))?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        target.addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| BenchError::Target(format!("null forwarder said {line:?}")))?;
        Ok(target)
    }
}

impl Drop for NullTarget {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Target for NullTarget {
    fn name(&self) -> &'static str {
        "null"
    }
    fn pid(&self) -> Option<u32> {
        Some(self.child.id())
    }
    fn io_backend(&self) -> Option<String> {
        Some("mmsg".into())
    }
    fn network(&self) -> &'static str {
        if self.netns.is_some() {
            "veth"
        } else {
            "loopback"
        }
    }
    fn netns_name(&self) -> Option<&str> {
        self.netns.as_ref().map(crate::netns::Netns::name)
    }
    fn connect(&mut self, plan: &Plan, _opts: &RunOptions) -> Result<Vec<Leg>, BenchError> {
        let mut legs = Vec::with_capacity(plan.all.len());
        for (global, ep) in plan.all.iter().enumerate() {
            let socket = udp::bind_udp(SocketAddr::new(self.local_ip, 0))?;
            let sends = SendStream::published_by(global, ep);
            legs.push(Leg {
                socket,
                remote: self.addr,
                session: Box::new(PlainSession::new(ep.conference as u32)),
                sends,
                endpoint: global,
            });
        }
        Ok(legs)
    }
}

/// Plain RTP over the null forwarder: registration instead of ICE and DTLS.
#[derive(Debug)]
pub struct PlainSession {
    group: u32,
    acked: bool,
    next_join: Option<Instant>,
    audio_ssrc: u32,
    video_ssrc: u32,
}

impl PlainSession {
    /// A session that joins `group`.
    pub fn new(group: u32) -> Self {
        let mut rng = rand::rng();
        Self {
            group,
            acked: false,
            next_join: None,
            // Low two bits clear: the simulcast layer tag (see the module doc).
            audio_ssrc: rng.random::<u32>() & !0x03,
            video_ssrc: rng.random::<u32>() & !0x03,
        }
    }
}

impl Session for PlainSession {
    fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.acked || self.next_join.is_some_and(|t| now < t) {
            return None;
        }
        self.next_join = Some(now + Duration::from_millis(50));
        let mut d = JOIN.to_vec();
        d.extend_from_slice(&self.group.to_be_bytes());
        Some(d)
    }
    fn handle_timeout(&mut self, _now: Instant) {}
    fn is_connected(&self) -> bool {
        self.acked
    }
    fn failure(&self) -> Option<String> {
        None
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
        let len = 12 + payload.len();
        let packet = out.get_mut(..len).ok_or("buffer too small")?;
        let (pt, ssrc) = match kind {
            MediaKind::Audio => (111, self.audio_ssrc),
            _ => (96, self.video_ssrc),
        };
        packet[0] = 0x80;
        packet[1] = (u8::from(marker) << 7) | pt;
        packet[2..4].copy_from_slice(&seq.to_be_bytes());
        packet[4..8].copy_from_slice(&ts.to_be_bytes());
        packet[8..12].copy_from_slice(&ssrc.to_be_bytes());
        packet[12..].copy_from_slice(payload);
        Ok(len)
    }
    fn write_rtp_layer(
        &mut self,
        layer: u8,
        seq: u16,
        ts: u32,
        marker: bool,
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<usize, String> {
        if layer > 2 {
            return Err(format!("no simulcast layer {layer}"));
        }
        let video = self.video_ssrc;
        self.video_ssrc = (video & !0x03) | u32::from(layer + 1);
        let r = self.write_rtp(MediaKind::Video, seq, ts, marker, payload, out);
        self.video_ssrc = video;
        r
    }
    fn handle_datagram(&mut self, _now: Instant, datagram: &mut [u8]) -> Option<RtpView> {
        if datagram == ACK {
            self.acked = true;
            return None;
        }
        let h = RtpHeader::parse(datagram).ok()?;
        Some(RtpView {
            ssrc: h.ssrc,
            pt: h.payload_type,
            seq: h.sequence_number,
            ts: h.timestamp,
            marker: h.marker,
            payload: h.payload_range(),
        })
    }
    fn auth_failures(&self) -> u64 {
        0
    }
    fn profile(&self) -> Option<&'static str> {
        None
    }
}
