//! RTCP termination (the bridge is an RTCP endpoint toward each peer, as mediasoup
//! and jitsi-videobridge are): receiver reports from the transport's own receive
//! statistics, sender reports absorbed into them, keyframe requests written
//! and NACKs written toward publishers; keyframe requests, NACKs, sender
//! reports and report blocks read from peers and handed to the router.
//! Transport-cc feedback from a peer (as a receiver) feeds the transport's
//! send-side estimator; REMB from a peer ends here.

use std::time::{Duration, Instant};

use super::super::quality::nack::NackGenerator;
use super::super::quality::twcc::{FMT_TWCC, TwccFeedback};
use super::super::rtcp::{self, ReportBlock};
use super::super::shard::ShardCounters;
use super::super::transmit::TxQueue;
use super::{Transport, TransportState};

/// Feedback from a peer about one of the bridge's slots.
#[derive(Debug, Clone, Copy)]
pub enum PeerFeedback<'a> {
    /// A PLI or FIR naming this slot SSRC.
    Keyframe(u32),
    /// A generic NACK.
    Nack(rtcp::Nack<'a>),
    /// A sender report's sender information (a publisher's source clock).
    SenderReport(rtcp::SenderInfo),
    /// A report block of a receiver or sender report (a slot's RTT).
    ReportBlock(ReportBlock),
}

/// Most report blocks in one receiver report the bridge sends.
const MAX_BLOCKS: usize = 8;

/// `d` in 1/65536 s, the unit of DLSR.
pub fn q16(d: Duration) -> u64 {
    (d.as_nanos() * 65_536 / 1_000_000_000) as u64
}

impl Transport {
    /// Sends a receiver report for every media SSRC with news (none before the
    /// first packet).
    pub(super) fn send_receiver_report(&mut self, since_epoch: Duration, tx: &mut TxQueue) {
        let mut blocks = [ReportBlock::default(); MAX_BLOCKS];
        let n = self.demux.poll_report_blocks(q16(since_epoch), &mut blocks);
        if n == 0 {
            return;
        }
        self.send_rtcp(tx, |out, sender| {
            rtcp::write_receiver_report(out, sender, &blocks[..n]).ok()
        });
    }

    /// Sends a PLI for `media_ssrc` to this endpoint (a publisher).
    pub fn send_pli(&mut self, media_ssrc: u32, tx: &mut TxQueue) -> bool {
        self.state == TransportState::Connected
            && self
                .send_rtcp(tx, |out, sender| {
                    rtcp::write_pli(out, sender, media_ssrc).ok()
                })
                .is_some()
    }

    /// Sends an RTCP generic NACK for what `nack` has due at `now` about the
    /// publisher's `media_ssrc`. Returns whether one was sent.
    pub fn send_nack(
        &mut self,
        now: std::time::Instant,
        nack: &mut NackGenerator,
        media_ssrc: u32,
        tx: &mut TxQueue,
    ) -> bool {
        self.state == TransportState::Connected
            && self
                .send_rtcp(tx, |out, sender| {
                    nack.write_nack(now, out, sender, media_ssrc)
                        .ok()
                        .filter(|&n| n > 0)
                })
                .is_some()
    }

    /// Reads an unprotected compound RTCP packet from the peer: sender reports go
    /// into the receive statistics; every keyframe request (PLI, FIR) and NACK is
    /// handed to `feedback` (they name one of the bridge's slot SSRCs);
    /// transport-cc feedback goes to the send-side estimator (at `now`).
    /// Anything else is terminated here.
    pub fn handle_rtcp<'a>(
        &mut self,
        now: Instant,
        since_epoch: Duration,
        compound: &'a [u8],
        counters: &mut ShardCounters,
        mut feedback: impl FnMut(PeerFeedback<'a>),
    ) {
        for packet in rtcp::RtcpIter::new(compound) {
            let Ok(packet) = packet else {
                counters.dropped_malformed += 1;
                break;
            };
            match packet {
                rtcp::RtcpPacket::SenderReport(sr) => {
                    self.demux.handle_sender_report(
                        sr.sender_ssrc(),
                        sr.info.ntp_timestamp,
                        q16(since_epoch),
                    );
                    feedback(PeerFeedback::SenderReport(sr.info));
                    sr.report_blocks()
                        .for_each(|b| feedback(PeerFeedback::ReportBlock(b)));
                }
                rtcp::RtcpPacket::ReceiverReport(rr) => rr
                    .report_blocks()
                    .for_each(|b| feedback(PeerFeedback::ReportBlock(b))),
                rtcp::RtcpPacket::Pli(pli) => feedback(PeerFeedback::Keyframe(pli.media_ssrc)),
                rtcp::RtcpPacket::Fir(fir) => fir
                    .media_ssrcs()
                    .for_each(|ssrc| feedback(PeerFeedback::Keyframe(ssrc))),
                rtcp::RtcpPacket::Nack(nack) => feedback(PeerFeedback::Nack(nack)),
                rtcp::RtcpPacket::Unknown(u)
                    if (u.packet_type, u.count) == (rtcp::pt::RTPFB, FMT_TWCC) =>
                {
                    match TwccFeedback::parse(u.body) {
                        Ok(fb) => {
                            if let Some(bwe) = self.bwe.as_deref_mut() {
                                bwe.handle_feedback(now, &fb);
                                counters.twcc_feedback_received += 1;
                            }
                        }
                        Err(_) => counters.dropped_malformed += 1,
                    }
                }
                // REMB ends here.
                _ => {}
            }
        }
    }
}
