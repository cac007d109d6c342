//! Video codecs besides VP8: a publisher that offers H264 (packetization mode
//! 1), VP9 or AV1 without VP8 gets it answered, and receivers whose slot
//! negotiated the same codec get its stream from its next key frame on (the
//! key frame read from inside the payload: an IDR or SPS, VP9's P/B bits and
//! uncompressed header, AV1's N bit). H264 RID simulcast switches layers at
//! IDRs as VP8 does at key frames. A slot of another codec is never fed the
//! source. Real client peers on a virtual clock (see two_peers.rs).

mod support;

use ringbridge_bridge::proto::client::VP8_PT;
use ringbridge_bridge::proto::rtp::RtpHeader;
use ringbridge_bridge::proto::sdp::MediaKind;
use ringbridge_control::media::{ConferenceId, EndpointId};
use support::net::*;

const MID: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
const RID: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";
const H264_FMTP: &str = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f";

/// The client's offer with its video codec (payload type 96) renamed to
/// `codec`, with `fmtp`, and the mid extension on every m-line.
fn with_codec(offer: &str, codec: &str, fmtp: &str) -> String {
    edit_offer(offer, |_, line| {
        if line.starts_with("a=rtpmap:96 VP8/90000") {
            let mut out = format!("a=rtpmap:96 {codec}/90000\r\n");
            if !fmtp.is_empty() {
                out.push_str(&format!("a=fmtp:96 {fmtp}\r\n"));
            }
            return out;
        }
        if line.starts_with("a=rtcp-mux") {
            return format!("{line}a=extmap:1 {MID}\r\n");
        }
        line.to_owned()
    })
}

/// An edit of a client's offer.
type OfferEdit = fn(String) -> String;

fn h264(offer: String) -> String {
    with_codec(&offer, "H264", H264_FMTP)
}

/// Alice publishes and bob receives, each offer edited by its function.
fn call(alice: OfferEdit, bob: OfferEdit) -> (Net, usize, usize) {
    let mut net = Net::new();
    let a = net.join_with("alice", VIDEO_ONLY, Default::default(), alice);
    let b = net.join_with("bob", VIDEO_ONLY, Default::default(), bob);
    net.connect_all();
    net.peers[b].client.keep_raw_rtp = true;
    (net, a, b)
}

/// The payloads of the video packets bob got, in order.
fn bob_got(net: &Net, b: usize) -> Vec<Vec<u8>> {
    let slot = net.slot_ssrc(b, MediaKind::Video);
    net.received(b, slot).into_iter().map(|r| r.2).collect()
}

/// A baseline SPS of a 720x404 stream (profile 66, level 3.0, cropped; from a
/// real encoder, the test SPS of videojs/mux.js) with its NAL header 0x67.
const SPS: [u8; 24] = [
    0x67, 66, 192, 30, 217, 0, 180, 53, 249, 225, 0, 0, 3, 0, 1, 0, 0, 3, 0, 60, 15, 22, 46, 72,
];

/// An H264 key frame's first packet as Chrome sends it: STAP-A of SPS, PPS and
/// the IDR slice's start; `tag` ends it.
fn h264_idr(tag: u8) -> Vec<u8> {
    let mut p = vec![0x78, 0x00, SPS.len() as u8];
    p.extend_from_slice(&SPS);
    p.extend_from_slice(&[0x00, 0x04, 0x68, 0xce, 0x3c, 0x80]);
    p.extend_from_slice(&[0x00, 0x03, 0x65, 0xb8, tag]);
    p
}

/// An H264 non-IDR slice (single NAL unit, first_mb_in_slice 0).
fn h264_delta(tag: u8) -> Vec<u8> {
    vec![0x41, 0x9a, tag]
}

#[test]
fn an_h264_mode_1_offer_is_answered_with_its_profile_and_forwarded_from_an_idr() {
    let (mut net, a, b) = call(h264, h264);
    let answer = &net.peers[a].answer;
    assert!(answer.contains("a=rtpmap:96 H264/90000\r\n"), "{answer}");
    assert!(answer.contains("profile-level-id=42e01f"), "{answer}");
    assert!(answer.contains("packetization-mode=1"), "{answer}");
    // Delta slices before the first IDR: bob's slot waits.
    net.send(a, MediaKind::Video, 1, 0, &h264_delta(1));
    assert!(bob_got(&net, b).is_empty());
    net.send(a, MediaKind::Video, 2, 3000, &h264_idr(2));
    // FU-A fragments of the next picture: start, end.
    net.send(a, MediaKind::Video, 3, 6000, &[0x5c, 0x81, 0x9a, 3]);
    net.send(a, MediaKind::Video, 4, 6000, &[0x5c, 0x41, 4]);
    assert_eq!(
        bob_got(&net, b),
        [h264_idr(2), vec![0x5c, 0x81, 0x9a, 3], vec![0x5c, 0x41, 4]],
        "from the IDR on, payloads untouched"
    );
}

#[test]
fn an_h264_source_is_not_mapped_onto_a_vp8_slot() {
    let (mut net, a, b) = call(h264, |o| with_codec(&o, "VP8", ""));
    net.send(a, MediaKind::Video, 1, 0, &h264_idr(1));
    net.send(a, MediaKind::Video, 2, 3000, &h264_delta(2));
    assert!(bob_got(&net, b).is_empty(), "a VP8 decoder never gets H264");
}

/// H264 RID simulcast: three layers q, h, f (rid extension id 2).
fn h264_simulcast(offer: String) -> String {
    let mut sending = false;
    let offer = h264(offer);
    edit_offer(&offer, |kind, line| {
        if line.starts_with("a=sendonly") || line.starts_with("a=recvonly") {
            sending = line.starts_with("a=sendonly");
        }
        if kind == "video" && sending && line.starts_with("a=ssrc") {
            return String::new();
        }
        if kind == "video" && sending && line.starts_with("a=rtcp-mux") {
            return format!(
                "{line}a=extmap:2 {RID}\r\na=rid:q send\r\na=rid:h send\r\na=rid:f send\r\na=simulcast:send q;h;f\r\n"
            );
        }
        line.to_owned()
    })
}

#[test]
fn h264_rid_simulcast_switches_layers_at_an_idr_of_the_wanted_layer() {
    let (mut net, a, b) = call(h264_simulcast, h264);
    assert!(net.peers[a].answer.contains("a=simulcast:recv q;h;f\r\n"));
    let mut seq = [100u16, 200, 300];
    let mut send = |net: &mut Net, layer: usize, idr: bool| {
        let (rid, ssrc) = [("q", 0x1000u32), ("h", 0x2000), ("f", 0x3000)][layer];
        let tag = layer as u8;
        let payload = if idr { h264_idr(tag) } else { h264_delta(tag) };
        let s = seq[layer];
        seq[layer] += 1;
        let p = rtp(
            VP8_PT, // payload type 96, H264 here
            s,
            3000 * u32::from(s),
            ssrc,
            &[(1, b"0"), (2, rid.as_bytes())],
            &payload,
            0,
        );
        net.send_raw(a, &p);
    };
    let layers = |net: &Net| -> Vec<u8> {
        net.peers[b]
            .client
            .received_raw_rtp
            .iter()
            .filter_map(|p| RtpHeader::parse(p).ok()?.payload(p)?.last().copied())
            .collect()
    };
    for l in 0..3 {
        send(&mut net, l, true);
    }
    net.progress(6);
    for l in 0..3 {
        send(&mut net, l, false);
    }
    net.progress(6);
    // Unconstrained: the climb q, h, f at their IDRs, then f alone.
    assert_eq!(layers(&net), [0, 1, 2, 2]);
    // A 180-line constraint (the SPS says 404 lines): down to the smallest
    // layer, at its next IDR only.
    net.core
        .set_max_height(&ConferenceId("room".into()), &EndpointId("bob".into()), 180)
        .expect("bob is in the room");
    for l in 0..3 {
        send(&mut net, l, false);
    }
    net.progress(6);
    send(&mut net, 0, true);
    send(&mut net, 2, false);
    send(&mut net, 0, false);
    net.progress(6);
    assert_eq!(layers(&net), [0, 1, 2, 2, 2, 0, 0]);
    let got = &net.peers[b].client.received_raw_rtp;
    let seqs: Vec<u16> = got
        .iter()
        .filter_map(|p| Some(RtpHeader::parse(p).ok()?.sequence_number))
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)),
        "sequence numbers continue across the switches: {seqs:?}"
    );
}

#[test]
fn vp9_and_av1_publishers_are_answered_and_forwarded_from_their_key_frames() {
    // VP9: B set, P set (inter), then a key frame start (B, P clear) with a
    // profile 0 uncompressed header (frame_marker 2, KEY_FRAME, sync code).
    let vp9_inter = vec![0xC8, 0x05, 0x86, 0x00];
    let vp9_key = vec![0x08, 0x82, 0x49, 0x83, 0x42, 0x20, 0x4F, 0xF0, 0x2C, 0xF0];
    // AV1: W=1 frame OBU (0x30) without N; then N set with a sequence header
    // OBU (0x08) of a 1280x720 stream.
    let av1_delta = vec![0x10, 0x30, 0x00];
    let av1_key = vec![0x18, 0x08, 0x00, 0x00, 0x00, 0x42, 0xA6, 0x7F, 0xD9, 0xE0];
    let cases: [(OfferEdit, &str, Vec<u8>, Vec<u8>); 2] = [
        (
            |o| with_codec(&o, "VP9", "profile-id=0"),
            "VP9",
            vp9_inter,
            vp9_key,
        ),
        (|o| with_codec(&o, "AV1", ""), "AV1", av1_delta, av1_key),
    ];
    for (edit, name, delta, key) in cases {
        let (mut net, a, b) = call(edit, edit);
        let answer = &net.peers[a].answer;
        assert!(
            answer.contains(&format!("a=rtpmap:96 {name}/90000\r\n")),
            "{answer}"
        );
        net.send(a, MediaKind::Video, 1, 0, &delta);
        net.send(a, MediaKind::Video, 2, 3000, &key);
        net.send(a, MediaKind::Video, 3, 6000, &delta);
        assert_eq!(bob_got(&net, b), [key.clone(), delta.clone()], "{name}");
    }
}
