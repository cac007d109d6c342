//! Forwarded packets carry the header extensions the *receiver* negotiated, with
//! the receiver's ids: the answer negotiates them on slot m-lines (mid, audio
//! level, abs-send-time, transport-wide sequence number), the bridge writes
//! them (the audio level copied from the sender's packet, under the sender's
//! own id), and the payload arrives byte for byte. Real client peers on a
//! virtual clock (see two_peers.rs).

mod support;

use ringbridge_bridge::proto::client::{OPUS_PT, VP8_PT};
use ringbridge_bridge::proto::rtp::RtpHeader;
use ringbridge_bridge::proto::sdp::{MediaKind, Offer};
use support::net::*;

const AUDIO_LEVEL: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";
const MID: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
const ABS_SEND_TIME: &str = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time";
const TWCC: &str = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";

/// Adds these `(id, uri)` extmaps to every m-line (BUNDLE: same ids everywhere).
fn with_extmaps(offer: String, maps: &[(u8, &str)]) -> String {
    edit_offer(&offer, |_, line| {
        let mut out = line.to_owned();
        if line.starts_with("a=rtcp-mux") {
            for (id, uri) in maps {
                out.push_str(&format!("a=extmap:{id} {uri}\r\n"));
            }
        }
        out
    })
}

#[test]
fn forwarded_packets_carry_the_receivers_extension_ids_and_an_identical_payload() {
    let mut net = Net::new();
    // Alice sends the audio level under id 1; Bob negotiated other ids, one of
    // them (transport-cc, 17) only fits the two-byte form.
    let a = net.join_with("alice", EVERYTHING, Default::default(), |o| {
        with_extmaps(o, &[(1, AUDIO_LEVEL), (2, MID)])
    });
    let bob_maps = [(9, MID), (10, AUDIO_LEVEL), (3, ABS_SEND_TIME), (17, TWCC)];
    let b = net.join_with("bob", EVERYTHING, Default::default(), |o| {
        with_extmaps(o, &bob_maps)
    });
    net.connect_all();
    net.peers[b].client.keep_raw_rtp = true;

    let audio_slot = net.slot_ssrc(b, MediaKind::Audio);
    let video_slot = net.slot_ssrc(b, MediaKind::Video);
    let (audio_ssrc, video_ssrc) = (
        net.peers[a].client.audio_ssrc,
        net.peers[a].client.video_ssrc,
    );
    for k in 0..5u16 {
        let level = [0x80 | (k as u8 + 30)];
        let audio = rtp(
            OPUS_PT,
            k,
            960 * u32::from(k),
            audio_ssrc,
            &[(1, &level), (2, b"0")],
            &[0xAA, k as u8, 0xBB],
            0,
        );
        net.send_raw(a, &audio);
        let video = rtp(
            VP8_PT,
            k,
            3000 * u32::from(k),
            video_ssrc,
            &[(2, b"1")],
            &vp8(true, k as u8),
            4,
        );
        net.send_raw(a, &video);
    }
    let raw = net.peers[b].client.received_raw_rtp.clone();
    assert_eq!(raw.len(), 10, "five audio and five video packets");
    let mut twcc = Vec::new();
    for (i, p) in raw.iter().enumerate() {
        let h = RtpHeader::parse(p).expect("parses");
        let k = (i / 2) as u8;
        let slot_mid = net.peers[b]
            .client
            .slots
            .iter()
            .find(|s| s.ssrc == h.ssrc)
            .expect("a slot")
            .mid
            .clone();
        assert_eq!(h.mid(p, 9), Some(slot_mid.as_bytes()), "receiver's mid");
        assert_eq!(h.extension_value(p, 3).map(<[u8]>::len), Some(3));
        let seq = h.extension_value(p, 17).expect("transport-wide seq");
        twcc.push(u16::from_be_bytes([seq[0], seq[1]]));
        assert_eq!(
            h.extension_value(p, 1),
            None,
            "the sender's id is not reused"
        );
        if h.ssrc == audio_slot {
            assert_eq!(h.extension_value(p, 10), Some(&[0x80 | (k + 30)][..]));
            assert_eq!(h.payload(p), Some(&[0xAA, k, 0xBB][..]));
        } else {
            assert_eq!(h.ssrc, video_slot);
            assert_eq!(h.extension_value(p, 10), None, "no audio level on video");
            assert_eq!(h.payload(p), Some(&vp8(true, k)[..]));
            assert_eq!(h.padding_len, 4, "padding kept");
        }
    }
    for w in twcc.windows(2) {
        assert_eq!(
            w[1],
            w[0].wrapping_add(1),
            "one sequence across the transport"
        );
    }
}

#[test]
fn the_answer_negotiates_written_extensions_on_slots_and_read_ones_on_publishers() {
    let mut net = Net::new();
    let maps = [
        (1, AUDIO_LEVEL),
        (2, MID),
        (3, ABS_SEND_TIME),
        (4, TWCC),
        (5, "urn:ietf:params:rtp-hdrext:toffset"),
    ];
    let req = |offer: String| with_extmaps(offer, &maps);
    let mut client =
        ringbridge_bridge::proto::client::ClientPeer::new(EVERYTHING, net.now).expect("client");
    let offer = req(client.offer());
    let answer = net
        .core
        .handle_join(
            net.now,
            &ringbridge_control::media::JoinRequest {
                conference: ringbridge_control::media::ConferenceId("room".into()),
                endpoint: ringbridge_control::media::EndpointId("x".into()),
                offer_sdp: offer,
            },
            10_000,
        )
        .expect("join");
    client.handle_answer(&answer, net.now).expect("answer");
    let parsed = Offer::parse_description(&answer).expect("answer parses");
    // m-lines: 0 audio sendonly, 1 video sendonly, 2 audio slot, 3 video slot.
    let ids = |i: usize| {
        let e = &parsed.media[i].extensions;
        use ringbridge_bridge::proto::rtp_ext::Extension::*;
        (
            e.id(Mid),
            e.id(AudioLevel),
            e.id(AbsSendTime),
            e.id(TransportCc),
        )
    };
    assert_eq!(ids(0), (Some(2), Some(1), None, None), "audio publisher");
    assert_eq!(ids(1), (Some(2), None, None, None), "video publisher");
    assert_eq!(ids(2), (Some(2), Some(1), Some(3), Some(4)), "audio slot");
    assert_eq!(ids(3), (Some(2), None, Some(3), Some(4)), "video slot");
    assert!(
        !answer.contains("toffset"),
        "unknown extensions are not answered"
    );
}
