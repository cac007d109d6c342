//! Dominant speaker and silence through a shard core: real client peers on a
//! virtual clock (see two_peers.rs) send audio with RFC 6464 levels; the
//! conference's dominant speaker follows who talks, each change reaches the
//! control plane as one `DominantSpeakerChanged` event (which it sends to every
//! endpoint, the third one included), and runs of silence stop being forwarded
//! after their first packets while audio without levels passes as before.

mod support;

use ringbridge_bridge::proto::client::{ClientConfig, OPUS_PT};
use ringbridge_bridge::proto::router::speaker::SILENCE_FORWARDED;
use ringbridge_bridge::proto::sdp::MediaKind;
use ringbridge_control::media::{EndpointId, MediaEvent};
use support::net::*;

const AUDIO_LEVEL: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";
const MID: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";

/// Three participants: everyone receives both others' audio.
const THREE: ClientConfig = ClientConfig {
    audio_slots: 2,
    video_slots: 2,
    ..EVERYTHING
};

/// A live microphone in a quiet room (-70 dBov), and silence (-127 dBov).
const NOISE: u8 = 70;
const SILENCE: u8 = 127;

/// Speech at -20 to -26 dBov with a breath at the noise floor every 400 ms.
fn talk(t: u64) -> u8 {
    if t % 400 < 20 {
        NOISE
    } else {
        20 + ((t / 20) % 4) as u8 * 2
    }
}

fn with_levels(offer: String) -> String {
    edit_offer(&offer, |_, line| {
        let mut out = line.to_owned();
        if line.starts_with("a=rtcp-mux") {
            out.push_str(&format!("a=extmap:1 {AUDIO_LEVEL}\r\na=extmap:2 {MID}\r\n"));
        }
        out
    })
}

/// A conference of alice, bob and carol, connected, all offering audio levels.
fn three() -> Net {
    three_on(Net::new())
}

fn three_on(mut net: Net) -> Net {
    for name in ["alice", "bob", "carol"] {
        net.join_with(name, THREE, Default::default(), with_levels);
    }
    net.connect_all();
    net
}

/// Per-peer audio sequence numbers.
struct Audio {
    seq: [u16; 3],
}

impl Audio {
    /// Sends 20 ms audio packets for `ms`: `level(t_ms, peer)` gives each peer's
    /// packet level (`None`: no packet), the clock moving 20 ms per packet.
    fn run(&mut self, net: &mut Net, ms: u64, level: impl Fn(u64, usize) -> Option<u8>) {
        for t in (0..ms).step_by(20) {
            for i in 0..3 {
                if let Some(l) = level(t, i) {
                    self.send(net, i, Some(l));
                }
            }
            net.progress(4);
        }
    }

    /// One audio packet from peer `i`, with the level extension when `level`.
    fn send(&mut self, net: &mut Net, i: usize, level: Option<u8>) {
        let seq = self.seq[i];
        self.seq[i] = seq.wrapping_add(1);
        let ssrc = net.peers[i].client.audio_ssrc;
        let byte = level.map(|l| [l]);
        let mut exts: Vec<(u8, &[u8])> = vec![(2, b"0")];
        if let Some(b) = &byte {
            exts.push((1, b));
        }
        let p = rtp(
            OPUS_PT,
            seq,
            960 * u32::from(seq),
            ssrc,
            &exts,
            &[0xF8, 0xFF, 0xFE],
            0,
        );
        net.send_raw(i, &p);
    }
}

/// The dominant speaker events so far: (new speaker, previous speakers).
fn speaker_events(net: &Net) -> Vec<(String, Vec<String>)> {
    net.events
        .iter()
        .filter_map(|e| match e {
            MediaEvent::DominantSpeakerChanged {
                conference,
                dominant,
                previous,
            } => {
                assert_eq!(conference.0, "room");
                Some((
                    dominant.0.clone(),
                    previous.iter().map(|e: &EndpointId| e.0.clone()).collect(),
                ))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn two_talkers_in_turn_yield_one_event_each_for_the_conference() {
    let mut net = three();
    let mut audio = Audio { seq: [0; 3] };
    // Alice talks for 2 s; bob's microphone is live but quiet; carol only
    // listens (sends no audio).
    audio.run(&mut net, 2000, |t, i| match i {
        0 => Some(talk(t)),
        1 => Some(NOISE),
        _ => None,
    });
    assert_eq!(speaker_events(&net), [("alice".into(), vec![])]);
    // Then bob talks and alice is quiet: bob within about a second.
    let bob_starts = net.events.len();
    let start = net.now;
    let mut switched_after = None;
    for step in 0..150u64 {
        let t = step * 20;
        audio.send(&mut net, 0, Some(NOISE));
        audio.send(&mut net, 1, Some(talk(t)));
        net.progress(4);
        if switched_after.is_none() && net.events.len() > bob_starts {
            switched_after = Some(net.now.duration_since(start));
        }
    }
    let after = switched_after.expect("a change to bob");
    assert!(
        after.as_millis() <= 1300,
        "bob named {} ms after he started",
        after.as_millis()
    );
    assert_eq!(
        speaker_events(&net),
        [
            ("alice".into(), vec![]),
            ("bob".into(), vec!["alice".to_owned()])
        ]
    );
    assert_eq!(net.core.counters().dominant_speaker_changes, 2);
    let router = net
        .core
        .router(&ringbridge_control::media::ConferenceId("room".into()))
        .expect("router");
    let dominant = router.dominant_speaker().expect("a speaker");
    assert_eq!(
        router.endpoint(dominant).map(|e| e.id().0.as_str()),
        Some("bob")
    );
    // Silence from everyone keeps bob.
    audio.run(&mut net, 3000, |_, i| (i < 2).then_some(SILENCE));
    assert_eq!(speaker_events(&net).len(), 2);
}

#[test]
fn a_dominant_speaker_who_leaves_is_followed_by_the_one_still_talking() {
    let mut net = three();
    let mut audio = Audio { seq: [0; 3] };
    audio.run(&mut net, 2000, |t, i| match i {
        0 => Some(talk(t)),
        1 => Some(NOISE),
        _ => None,
    });
    // Alice keeps talking and so does bob, now: alice stays while she talks.
    audio.run(&mut net, 1500, |t, i| (i < 2).then(|| talk(t + 200)));
    assert_eq!(speaker_events(&net).len(), 1);
    // Alice leaves: bob, who talks on, is named.
    net.core
        .handle_leave(
            &ringbridge_control::media::ConferenceId("room".into()),
            &EndpointId("alice".into()),
        )
        .expect("leave");
    net.peers[0].joined = false;
    audio.run(&mut net, 1000, |t, i| (i == 1).then(|| talk(t)));
    assert_eq!(
        speaker_events(&net),
        [("alice".into(), vec![]), ("bob".into(), vec![])],
        "the one who left is not among the previous speakers"
    );
}

#[test]
fn silence_is_forwarded_for_a_few_packets_then_dropped_and_audio_without_levels_passes() {
    let mut net = three_on(Net::dropping_silence());
    let mut audio = Audio { seq: [0; 3] };
    let bob_slot_of = |net: &Net| {
        // Bob's audio slot that carries alice: the first one that got packets.
        let ssrcs: Vec<u32> = net.peers[1]
            .client
            .slots
            .iter()
            .filter(|s| s.kind == MediaKind::Audio)
            .map(|s| s.ssrc)
            .collect();
        ssrcs
            .into_iter()
            .find(|&s| !net.received(1, s).is_empty())
            .expect("alice's audio reached bob")
    };
    // Sound, then 20 packets of silence, then sound again.
    for _ in 0..5 {
        audio.send(&mut net, 0, Some(30));
    }
    let slot = bob_slot_of(&net);
    for _ in 0..20 {
        audio.send(&mut net, 0, Some(SILENCE));
    }
    for _ in 0..5 {
        audio.send(&mut net, 0, Some(30));
    }
    let got = net.received(1, slot);
    assert_eq!(
        got.len(),
        5 + SILENCE_FORWARDED as usize + 5,
        "the first {SILENCE_FORWARDED} packets of silence pass"
    );
    assert_eq!(
        net.core.counters().dropped_silence,
        20 - u64::from(SILENCE_FORWARDED),
        "each dropped packet counted once, whatever the receivers"
    );
    // The silence passed is the start of the run, and sound passes again; the
    // receiver's sequence numbers close over the dropped run (as after DTX), so
    // its jitter buffer sees a pause, not a loss: the timestamps show the jump.
    let seqs: Vec<u16> = got.iter().map(|(seq, _, _)| *seq).collect();
    let first = seqs[0];
    let expected: Vec<u16> = (0..10 + SILENCE_FORWARDED as u16)
        .map(|k| first.wrapping_add(k))
        .collect();
    assert_eq!(seqs, expected);
    let ts: Vec<u32> = got.iter().map(|(_, ts, _)| *ts).collect();
    let resumed = 5 + SILENCE_FORWARDED as usize;
    assert_eq!(
        ts[resumed].wrapping_sub(ts[resumed - 1]),
        960 * (1 + 20 - SILENCE_FORWARDED),
        "the timestamp jumps over the dropped packets"
    );
    // Audio without the level extension is forwarded as it comes.
    let before = net.received(1, slot).len();
    for _ in 0..10 {
        audio.send(&mut net, 0, None);
    }
    assert_eq!(net.received(1, slot).len(), before + 10);
}

/// The audio packets peer `to` received from its slots, per slot SSRC.
fn audio_received(net: &Net, to: usize) -> Vec<(u32, usize)> {
    net.peers[to]
        .client
        .slots
        .iter()
        .filter(|s| s.kind == MediaKind::Audio)
        .map(|s| (s.ssrc, net.received(to, s.ssrc).len()))
        .collect()
}

#[test]
fn with_audio_last_n_only_the_loudest_speakers_audio_is_forwarded() {
    let mut net = three_on(Net::with_audio_last_n(1));
    let mut audio = Audio { seq: [0; 3] };
    // Alice talks; bob talks too but quieter, carol listens.
    audio.run(&mut net, 2000, |t, i| match i {
        0 => Some(talk(t)),
        1 => Some(if t % 400 < 20 { NOISE } else { 45 }),
        _ => None,
    });
    // Carol gets alice's audio and almost none of bob's (at most his first
    // packets, before alice's energy rose above his).
    let got = audio_received(&net, 2);
    let alice = got.iter().map(|&(_, n)| n).max().unwrap_or(0);
    let bob = got.iter().map(|&(_, n)| n).min().unwrap_or(0);
    assert!(alice >= 95, "alice's audio reaches carol: {got:?}");
    assert!(bob <= 5, "bob's quieter audio does not: {got:?}");
    assert!(net.core.counters().dropped_audio_last_n >= 90);
    // Bob gets alice's; alice gets none of bob's while she is louder.
    let to_alice = audio_received(&net, 0);
    assert!(to_alice.iter().all(|&(_, n)| n <= 5), "{to_alice:?}");
    // Alice stops: 150 ms later she no longer outranks bob, whose 50 packets
    // of the next second are forwarded but for those first few.
    let before: usize = audio_received(&net, 2).iter().map(|&(_, n)| n).sum();
    audio.run(&mut net, 1000, |_, i| (i == 1).then_some(45));
    let after: usize = audio_received(&net, 2).iter().map(|&(_, n)| n).sum();
    assert!(
        (40..=50).contains(&(after - before)),
        "bob forwarded once alone: {before} -> {after}"
    );
}
