//! Receive demux on m-lines whose offer announces no SSRC (the bridge learns it
//! from the MID header extension): a repair (RTX) or padding packet that happens
//! to arrive before the first media packet must not take the producer's place.
//! Real client peers on a virtual clock (see two_peers.rs).

mod support;

use ringbridge_bridge::proto::client::VP8_PT;
use ringbridge_bridge::proto::sdp::MediaKind;
use support::net::*;

/// Payload type the edited offer gives VP8's RTX (`a=fmtp:97 apt=96`).
const RTX_PT: u8 = 97;
/// The MID extension id of the edited offer.
const MID_ID: u8 = 4;
/// The mid of the client's video m-line (audio is "0").
const VIDEO_MID: &[u8] = b"1";
/// The RTX SSRC the publisher uses (never announced).
const RTX_SSRC: u32 = 0x0BAD_F00D;

/// The client's offer with no `a=ssrc` on its publishing m-lines, the MID
/// extension on every m-line (BUNDLE) and RTX offered for VP8.
fn without_ssrcs(offer: String) -> String {
    edit_offer(&offer, |kind, line| {
        if line.starts_with("a=ssrc:") {
            return String::new();
        }
        let mut out = line.to_owned();
        if line.starts_with("a=rtcp-mux") {
            out.push_str(&format!(
                "a=extmap:{MID_ID} urn:ietf:params:rtp-hdrext:sdes:mid\r\n"
            ));
            if kind == "video" {
                out.push_str(&format!(
                    "a=rtpmap:{RTX_PT} rtx/90000\r\na=fmtp:{RTX_PT} apt={VP8_PT}\r\n"
                ));
            }
        }
        out
    })
}

/// Alice publishes (offer without SSRCs), Bob receives; both connected.
fn publisher_without_ssrcs() -> (Net, usize, usize, u32) {
    let mut net = Net::new();
    let a = net.join_with("alice", EVERYTHING, Default::default(), without_ssrcs);
    let b = net.join("bob", EVERYTHING);
    net.connect_all();
    let media_ssrc = net.peers[a].client.video_ssrc;
    (net, a, b, media_ssrc)
}

/// Sends 20 VP8 packets (a keyframe first) on the media SSRC, each with the
/// MID; how many reached Bob's video slot.
fn twenty_media_packets(net: &mut Net, a: usize, b: usize, media_ssrc: u32) -> usize {
    for k in 0..20u16 {
        let p = rtp(
            VP8_PT,
            100 + k,
            3000 * u32::from(k),
            media_ssrc,
            &[(MID_ID, VIDEO_MID)],
            &vp8(k == 0, k as u8),
            0,
        );
        net.send_raw(a, &p);
    }
    net.received(b, net.slot_ssrc(b, MediaKind::Video)).len()
}

#[test]
fn media_first_binds_the_learned_ssrc_and_forwards_everything() {
    let (mut net, a, b, media_ssrc) = publisher_without_ssrcs();
    assert_eq!(twenty_media_packets(&mut net, a, b, media_ssrc), 20);
}

#[test]
fn rtx_packet_first_does_not_bind_the_producer_to_the_rtx_ssrc() {
    let (mut net, a, b, media_ssrc) = publisher_without_ssrcs();
    // An RTX packet (RFC 4588: original sequence number, then the payload)
    // arrives before any media, carrying the MID as browsers send it.
    let mut repair = vec![0, 99];
    repair.extend_from_slice(&vp8(false, 9));
    net.send_raw(
        a,
        &rtp(RTX_PT, 7, 0, RTX_SSRC, &[(MID_ID, VIDEO_MID)], &repair, 0),
    );
    assert_eq!(twenty_media_packets(&mut net, a, b, media_ssrc), 20);
    // The first repair packet, before any media SSRC was bound, had nothing to
    // restore and was dropped. Now the repair stream is recognised even without
    // the MID, unwrapped (OSN 99) and forwarded as the original: never on an
    // SSRC of its own.
    net.send_raw(a, &rtp(RTX_PT, 8, 0, RTX_SSRC, &[], &repair, 0));
    assert_eq!(net.core.counters().dropped_rtx, 1);
    assert_eq!(net.core.counters().rtx_received, 1);
    let slot = net.slot_ssrc(b, MediaKind::Video);
    let got = net.received(b, slot);
    assert_eq!(got.len(), 21);
    assert_eq!(got[20].0, got[0].0.wrapping_sub(1), "seq 99 restored");
    assert_eq!(got[20].2, vp8(false, 9), "the OSN is gone from the payload");
    assert!(
        net.peers[b]
            .client
            .received_rtp
            .iter()
            .all(|r| r.ssrc == slot)
    );
}

#[test]
fn padding_probe_first_does_not_bind_the_producer_either() {
    // Padding-only packets (bandwidth probes) on a stream the bridge has not
    // seen yet: with the RTX payload type, or with the media payload type on an
    // SSRC that is not the media's.
    for (pt, ssrc) in [(RTX_PT, RTX_SSRC), (VP8_PT, RTX_SSRC ^ 1)] {
        let (mut net, a, b, media_ssrc) = publisher_without_ssrcs();
        net.send_raw(a, &rtp(pt, 1, 0, ssrc, &[(MID_ID, VIDEO_MID)], &[], 200));
        assert_eq!(
            twenty_media_packets(&mut net, a, b, media_ssrc),
            20,
            "padding-only packet with payload type {pt} first"
        );
    }
}

#[test]
fn rtx_ssrc_from_a_fid_group_is_known_before_any_packet() {
    // With a=ssrc and a FID group in the offer, the RTX SSRC is in the table
    // from the start: its packets are told apart even without any extension.
    let mut net = Net::new();
    let a = net.join_with("alice", EVERYTHING, Default::default(), |offer| {
        edit_offer(&offer, |kind, line| {
            let mut out = line.to_owned();
            if kind == "video" && line.starts_with("a=ssrc:") {
                let media: u32 = line["a=ssrc:".len()..]
                    .split(' ')
                    .next()
                    .and_then(|s| s.parse().ok())
                    .expect("ssrc");
                out = format!(
                    "a=rtpmap:{RTX_PT} rtx/90000\r\na=fmtp:{RTX_PT} apt={VP8_PT}\r\n\
                     a=ssrc-group:FID {media} {RTX_SSRC}\r\n{line}a=ssrc:{RTX_SSRC} cname:client\r\n"
                );
            }
            out
        })
    });
    let b = net.join("bob", EVERYTHING);
    net.connect_all();
    let mut repair = vec![0, 1];
    repair.extend_from_slice(&vp8(true, 1));
    net.send_raw(a, &rtp(RTX_PT, 1, 0, RTX_SSRC, &[], &repair, 0));
    assert_eq!(net.core.counters().rtx_received, 1);
    assert_eq!(net.core.counters().dropped_unknown_ssrc, 0);
    net.send(a, MediaKind::Video, 2, 3000, &vp8(false, 2));
    let got = net.received(b, net.slot_ssrc(b, MediaKind::Video));
    assert_eq!(got.len(), 2, "the unwrapped keyframe (seq 1) and seq 2");
    assert_eq!(got[1].0, got[0].0.wrapping_add(1));
    assert_eq!(got[0].2, vp8(true, 1));
}
