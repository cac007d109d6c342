//! What the simulcast scenario tests (`simulcast.rs`, `allocation.rs`,
//! `downlink_estimate.rs`) publish: Chrome's RID simulcast offer and VP8
//! payloads tagged with their layer.
#![allow(dead_code)]

use super::net::edit_offer;

/// The mid header extension (id 1 in these offers).
pub const MID: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
/// The rtp-stream-id (RID) header extension (id 2 in these offers).
pub const RID: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";

/// Chrome's simulcast offer on the publishing video m-line (RIDs q, h, f, the
/// rid extension, no `a=ssrc`: the SSRCs are learned from the mid and rid
/// extensions), and the mid extension on every m-line.
pub fn simulcast_offer(offer: String) -> String {
    let mut sending = false;
    edit_offer(&offer, |kind, line| {
        if line.starts_with("a=sendonly") || line.starts_with("a=recvonly") {
            sending = line.starts_with("a=sendonly");
        }
        if kind == "video" && sending && line.starts_with("a=ssrc") {
            return String::new();
        }
        if line.starts_with("a=rtcp-mux") {
            return if kind == "video" && sending {
                format!(
                    "{line}a=extmap:1 {MID}\r\na=extmap:2 {RID}\r\na=rid:q send\r\na=rid:h send\r\na=rid:f send\r\na=simulcast:send q;h;f\r\n"
                )
            } else {
                format!("{line}a=extmap:1 {MID}\r\n")
            };
        }
        line.to_owned()
    })
}

/// Adds the mid extension (id 1) a receiver needs on every m-line.
pub fn with_mid(offer: String) -> String {
    edit_offer(&offer, |_, line| {
        if line.starts_with("a=rtcp-mux") {
            format!("{line}a=extmap:1 {MID}\r\n")
        } else {
            line.to_owned()
        }
    })
}

/// A VP8 payload with a 15-bit picture id, tagged in its last byte (layer,
/// publisher); a key frame carries its size.
pub fn vp8_tagged(picture_id: u16, keyframe: bool, height: u16, tag: u8) -> Vec<u8> {
    vp8_sized(picture_id, keyframe, height, tag, 0)
}

/// [`vp8_tagged`] padded to `size` bytes (when it is shorter).
pub fn vp8_sized(picture_id: u16, keyframe: bool, height: u16, tag: u8, size: usize) -> Vec<u8> {
    let mut p = vec![0x90, 0x80, 0x80 | (picture_id >> 8) as u8, picture_id as u8];
    if keyframe {
        p.extend_from_slice(&[0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a]);
        p.extend_from_slice(&(height * 16 / 9).to_le_bytes());
        p.extend_from_slice(&height.to_le_bytes());
    } else {
        p.extend_from_slice(&[0x01, 0x00, 0x00]);
    }
    if p.len() + 1 < size {
        p.resize(size - 1, 0x55);
    }
    p.push(tag);
    p
}

/// The RTX payload type [`with_video_rtx`] gives VP8 (`apt` = the client's VP8).
pub const RTX_PT: u8 = 97;

/// Offers RTX for VP8 on every video m-line (`a=rtpmap:97 rtx/90000`,
/// `a=fmtp:97 apt=96`), as Chrome does.
pub fn with_video_rtx(offer: String) -> String {
    use ringbridge_bridge::proto::client::VP8_PT;
    edit_offer(&offer, |kind, line| {
        if kind != "video" {
            return line.to_owned();
        }
        if line.starts_with("m=video") {
            return line.replace(
                &format!(" {VP8_PT}\r\n"),
                &format!(" {VP8_PT} {RTX_PT}\r\n"),
            );
        }
        if line.starts_with(&format!("a=rtpmap:{VP8_PT} ")) {
            return format!(
                "{line}a=rtpmap:{RTX_PT} rtx/90000\r\na=fmtp:{RTX_PT} apt={VP8_PT}\r\n"
            );
        }
        line.to_owned()
    })
}

/// SSRC simulcast with RTX, as Chrome sends it with a munged offer: on the
/// publishing video m-line an `a=ssrc-group:SIM` of the `(media, rtx)` pairs'
/// media SSRCs (smallest layer first) and an FID group pairing each with its
/// RTX SSRC; RTX on every video m-line and the mid extension on every m-line.
pub fn ssrc_simulcast_rtx_offer(offer: String, layers: &[(u32, u32)]) -> String {
    let offer = with_mid(with_video_rtx(offer));
    edit_offer(&offer, |kind, line| {
        if kind == "video" && line.starts_with("a=ssrc:") {
            let media: Vec<String> = layers.iter().map(|l| l.0.to_string()).collect();
            let mut out = format!("a=ssrc-group:SIM {}\r\n", media.join(" "));
            for &(media, rtx) in layers {
                out.push_str(&format!(
                    "a=ssrc-group:FID {media} {rtx}\r\na=ssrc:{media} cname:client\r\n\
                     a=ssrc:{rtx} cname:client\r\n"
                ));
            }
            return out;
        }
        if line.starts_with("a=ssrc-group:") {
            return String::new();
        }
        line.to_owned()
    })
}

/// `media` (a plain RTP packet) as an RTX packet (RFC 4588: the original
/// sequence number, then the payload) on `rtx_ssrc`, numbered `rtx_seq`.
pub fn as_rtx(media: &[u8], rtx_ssrc: u32, rtx_seq: u16) -> Vec<u8> {
    use ringbridge_bridge::proto::rtp::RtpHeader;
    let header = RtpHeader::parse(media).expect("rtp");
    let payload = header.payload(media).expect("payload");
    let mut osn = header.sequence_number.to_be_bytes().to_vec();
    osn.extend_from_slice(payload);
    super::net::rtp(RTX_PT, rtx_seq, header.timestamp, rtx_ssrc, &[], &osn, 0)
}

/// The RTX SSRC an answer pairs with `slot` in `a=ssrc-group:FID`.
pub fn fid_of(answer: &str, slot: u32) -> Option<u32> {
    answer.lines().find_map(|l| {
        let mut it = l.strip_prefix("a=ssrc-group:FID ")?.split_whitespace();
        let primary: u32 = it.next()?.parse().ok()?;
        (primary == slot).then(|| it.next()?.parse().ok()).flatten()
    })
}
