//! Opus with redundancy (RED, RFC 2198), as Chrome sends it when the answer
//! lists `red/48000/2` first: the bridge answers RED where it is offered, takes
//! a publisher's RED packets as its audio, forwards them unchanged to receivers
//! that negotiated RED and only the primary encoding, under the Opus payload
//! type, to receivers that did not. Real client peers on a virtual clock.

mod support;

use ringbridge_bridge::proto::client::{ClientConfig, OPUS_PT};
use ringbridge_bridge::proto::rtp::RtpHeader;
use support::net::*;

const RED_PT: u8 = 63;

const AUDIO_ONLY: ClientConfig = ClientConfig {
    audio: true,
    video: false,
    audio_slots: 2,
    video_slots: 0,
    ..EVERYTHING
};

/// Offers RED carrying Opus on the audio m-line, as Chrome does
/// (`m=audio ... 111 63`, `a=rtpmap:63 red/48000/2`, `a=fmtp:63 111/111`).
fn with_red(offer: String) -> String {
    edit_offer(&offer, |kind, line| {
        if kind == "audio" && line.starts_with("m=audio") {
            format!("{} {RED_PT}\r\n", line.trim_end())
        } else if kind == "audio" && line.starts_with(&format!("a=rtpmap:{OPUS_PT} ")) {
            format!(
                "{line}a=rtpmap:{RED_PT} red/48000/2\r\na=fmtp:{RED_PT} {OPUS_PT}/{OPUS_PT}\r\n"
            )
        } else {
            line.to_owned()
        }
    })
}

/// A RED payload: one redundant block (the previous frame) and the primary.
fn red_payload(previous: &[u8], primary: &[u8]) -> Vec<u8> {
    let v = (960u32 << 10) | previous.len() as u32;
    let b = v.to_be_bytes();
    let mut p = vec![0x80 | OPUS_PT, b[1], b[2], b[3], OPUS_PT];
    p.extend_from_slice(previous);
    p.extend_from_slice(primary);
    p
}

/// The audio m-line of an answer.
fn audio_m_line(answer: &str) -> &str {
    answer
        .lines()
        .find(|l| l.starts_with("m=audio"))
        .expect("an audio m-line")
}

#[test]
fn the_answer_lists_red_first_only_where_it_is_offered() {
    let mut net = Net::new();
    let a = net.join_with("alice", AUDIO_ONLY, Default::default(), with_red);
    let c = net.join("carol", AUDIO_ONLY);
    let with = &net.peers[a].answer;
    assert!(
        audio_m_line(with).ends_with(&format!("SAVPF {RED_PT} {OPUS_PT}")),
        "RED first, then Opus: {with}"
    );
    assert!(with.contains(&format!("a=rtpmap:{RED_PT} red/48000/2\r\n")));
    assert!(with.contains(&format!("a=fmtp:{RED_PT} {OPUS_PT}/{OPUS_PT}\r\n")));
    let without = &net.peers[c].answer;
    assert!(audio_m_line(without).ends_with(&format!("SAVPF {OPUS_PT}")));
    assert!(!without.contains("red/48000"), "{without}");
}

#[test]
fn red_without_opus_blocks_is_not_answered() {
    let mut net = Net::new();
    // RED of another payload type: not Opus with redundancy.
    let a = net.join_with("alice", AUDIO_ONLY, Default::default(), |o| {
        with_red(o).replace(&format!("{OPUS_PT}/{OPUS_PT}"), "0/0")
    });
    assert!(!net.peers[a].answer.contains("red/48000"));
}

#[test]
fn red_reaches_red_receivers_unchanged_and_others_as_plain_opus() {
    let mut net = Net::new();
    let a = net.join_with("alice", AUDIO_ONLY, Default::default(), with_red);
    let b = net.join_with("bob", AUDIO_ONLY, Default::default(), with_red);
    let c = net.join("carol", AUDIO_ONLY);
    net.connect_all();
    net.peers[b].client.keep_raw_rtp = true;
    net.peers[c].client.keep_raw_rtp = true;
    let ssrc = net.peers[a].client.audio_ssrc;

    let frames: Vec<Vec<u8>> = (0..6u8).map(|k| vec![0xF0 | k, k, k]).collect();
    let mut sent = Vec::new();
    for k in 1..6usize {
        let payload = red_payload(&frames[k - 1], &frames[k]);
        let packet = rtp(RED_PT, k as u16, 960 * k as u32, ssrc, &[], &payload, 0);
        net.send_raw(a, &packet);
        sent.push(payload);
    }
    // A plain Opus packet on the same SSRC (Chrome switches when RED is off).
    net.send_raw(a, &rtp(OPUS_PT, 6, 960 * 6, ssrc, &[], &[0xAB, 0xCD], 0));
    // A RED packet whose block headers run past the payload.
    net.send_raw(
        a,
        &rtp(
            RED_PT,
            7,
            960 * 7,
            ssrc,
            &[],
            &[0x80 | OPUS_PT, 0, 0x03, 0xFF],
            0,
        ),
    );

    let audio = |i: usize| -> Vec<(u8, Vec<u8>)> {
        net.peers[i]
            .client
            .received_raw_rtp
            .iter()
            .map(|p| {
                let h = RtpHeader::parse(p).expect("parses");
                (h.payload_type, h.payload(p).expect("payload").to_vec())
            })
            .collect()
    };

    let at_bob = audio(b);
    assert_eq!(at_bob.len(), 7, "every packet reaches the RED receiver");
    for (k, payload) in sent.iter().enumerate() {
        assert_eq!(at_bob[k], (RED_PT, payload.clone()), "packet {k} unchanged");
    }
    assert_eq!(at_bob[5], (OPUS_PT, vec![0xAB, 0xCD]));
    assert_eq!(at_bob[6].0, RED_PT, "RED is opaque to RED receivers");

    let at_carol = audio(c);
    assert_eq!(
        at_carol.len(),
        6,
        "the unreadable RED packet is not forwarded"
    );
    for k in 1..6usize {
        assert_eq!(
            at_carol[k - 1],
            (OPUS_PT, frames[k].clone()),
            "packet {k}: the primary encoding alone, as Opus"
        );
    }
    assert_eq!(at_carol[5], (OPUS_PT, vec![0xAB, 0xCD]));
}
