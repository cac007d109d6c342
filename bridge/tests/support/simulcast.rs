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
