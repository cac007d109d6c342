//! Compound RTCP as the bridge reads it after SRTCP: every packet type it knows
//! (SR, RR, SDES, BYE, generic NACK, PLI, FIR, REMB) and the transport-wide
//! congestion control feedback (RTPFB FMT 15) parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringbridge_bridge::proto::quality::twcc::{FMT_TWCC, TwccFeedback};
use ringbridge_bridge::proto::rtcp::{self, RtcpPacket};

fn twcc(body: &[u8]) {
    if let Ok(fb) = TwccFeedback::parse(body) {
        let _ = fb.reference_time_us();
        for p in fb.packets().take(1 << 16) {
            let _ = p;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = rtcp::is_rtcp(data);
    // The TWCC parser on its own, as if `data` were an FMT 15 body.
    twcc(data);
    for packet in rtcp::packets(data).take(256) {
        let Ok(packet) = packet else {
            continue;
        };
        match packet {
            RtcpPacket::SenderReport(sr) => {
                let _ = (sr.sender_ssrc(), sr.ntp_middle());
                let _ = sr.report_blocks().count();
            }
            RtcpPacket::ReceiverReport(rr) => {
                let _ = rr.report_blocks().count();
            }
            RtcpPacket::Bye(bye) => {
                let _ = bye.ssrcs().count();
            }
            RtcpPacket::Nack(nack) => {
                for e in nack.entries() {
                    let _ = e.sequence_numbers().count();
                }
                let _ = nack.lost_sequence_numbers().take(1 << 16).count();
            }
            RtcpPacket::Fir(fir) => {
                let _ = fir.media_ssrcs().count();
                let _ = fir.entries().count();
            }
            RtcpPacket::Remb(remb) => {
                let _ = remb.ssrcs().count();
            }
            RtcpPacket::Unknown(u) => {
                if u.packet_type == rtcp::pt::RTPFB && u.count == FMT_TWCC {
                    twcc(u.body);
                }
            }
            _ => {}
        }
    }
});
