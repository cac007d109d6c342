//! An incoming source: one SSRC of one endpoint's publishing m-line.

use std::time::{Duration, Instant};

use ringbridge_control::media::RefusalReason;

use super::super::rtcp::{ReceiveStats, ReportBlock};
use super::super::rtp::SeqUnwrapper;
use super::super::sdp::MediaKind;

/// One source an endpoint publishes, and who consumes it.
#[derive(Debug)]
pub struct Producer {
    /// The publisher's m-line.
    pub mid: String,
    /// Audio or video.
    pub kind: MediaKind,
    /// The SSRC, from `a=ssrc` or learned from the first packet carrying the mid.
    pub ssrc: Option<u32>,
    /// Payload type the publisher uses for the codec.
    pub pt: u8,
    /// RTP clock rate.
    pub clock_rate: u32,
    /// Jitsi source name: `{endpoint}-a0`, `{endpoint}-v0`, ...
    pub source_name: String,
    /// Receive slots currently fed by this producer: (receiver endpoint index, slot index).
    pub consumers: Vec<(usize, usize)>,
    /// When a keyframe was last requested from the publisher.
    pub last_keyframe_request: Option<Instant>,
    /// Packets received.
    pub packets: u64,
    /// When the last packet arrived, on the shard's media clock.
    pub last_packet: Option<Duration>,
    /// The m-line is marked as a screen (`a=content:slides`).
    pub screen: bool,
    /// Muted by a moderator: packets are dropped, not forwarded.
    pub muted: bool,
    /// Refused by the endpoint's policy: never mapped onto a slot, never forwarded.
    pub refused: Option<RefusalReason>,
    seq: SeqUnwrapper,
    stats: Option<ReceiveStats>,
}

/// `d` in 1/65536 s, the unit of DLSR.
fn q16(d: Duration) -> u64 {
    (d.as_nanos() * 65_536 / 1_000_000_000) as u64
}

impl Producer {
    /// A producer with no consumers yet.
    pub fn new(
        mid: String,
        kind: MediaKind,
        ssrc: Option<u32>,
        pt: u8,
        clock_rate: u32,
        source_name: String,
    ) -> Self {
        Self {
            mid,
            kind,
            ssrc,
            pt,
            clock_rate,
            source_name,
            consumers: Vec::with_capacity(16),
            last_keyframe_request: None,
            packets: 0,
            last_packet: None,
            screen: false,
            muted: false,
            refused: None,
            seq: SeqUnwrapper::new(),
            stats: None,
        }
    }

    /// Whether packets of this producer may be forwarded now.
    pub fn forwarding(&self) -> bool {
        !self.muted && self.refused.is_none()
    }

    /// Records a received packet; `since_epoch` is its arrival on the shard's clock.
    pub fn handle_packet(&mut self, ssrc: u32, seq: u16, ts: u32, since_epoch: Duration) {
        self.packets += 1;
        self.last_packet = Some(since_epoch);
        let ext = self.seq.extend(seq);
        let arrival = (since_epoch.as_micros() * u128::from(self.clock_rate) / 1_000_000) as u64;
        self.stats
            .get_or_insert_with(|| ReceiveStats::new(ssrc))
            .handle_packet(ext, ts, arrival);
    }

    /// Records a sender report from this source.
    pub fn handle_sender_report(&mut self, ntp_timestamp: u64, since_epoch: Duration) {
        if let Some(stats) = self.stats.as_mut() {
            stats.handle_sender_report(ntp_timestamp, q16(since_epoch));
        }
    }

    /// The report block for the next receiver report (`None` before any packet).
    pub fn poll_report_block(&mut self, since_epoch: Duration) -> Option<ReportBlock> {
        self.stats.as_mut()?.poll_report_block(q16(since_epoch))
    }
}
