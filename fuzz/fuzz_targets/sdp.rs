//! The SDP offer of a join (`POST .../offer`): `Offer::parse`, then the answer the
//! bridge writes for it, read back as a description.
#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use ringbridge_bridge::proto::sdp::{
    self, AnswerSection, Direction, LocalTransport, Offer, SlotAnnouncement,
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(offer) = Offer::parse(text) else {
        return;
    };
    let transport = offer.extension_map();
    let sections: Vec<AnswerSection> = offer
        .media
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let slot = m.direction == Direction::RecvOnly;
            let _ = sdp::answer_extensions(&transport, m, slot);
            AnswerSection {
                accepted: i % 3 != 2,
                slot: slot.then(|| SlotAnnouncement {
                    ssrc: 1000 + i as u32,
                    rtx_ssrc: (m.kind == sdp::MediaKind::Video).then_some(2000 + i as u32),
                    stream_id: format!("s{i}"),
                    track_id: format!("t{i}"),
                }),
            }
        })
        .collect();
    let addresses: [IpAddr; 2] = ["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
    let local = LocalTransport {
        ice_ufrag: "bridgeufrag",
        ice_pwd: "bridgepasswordbridgepass",
        fingerprint_sha256: &[0xab; 32],
        addresses: &addresses,
        port: 10_000,
        tcp_port: if offer.media.len() % 3 == 0 { Some(4443) } else { None },
        video_start_bitrate_kbps: if offer.media.len() % 2 == 0 { 1500 } else { 0 },
    };
    let answer = sdp::write_answer(&offer, &sections, &local, 42);
    let _ = Offer::parse_description(&answer);
});
