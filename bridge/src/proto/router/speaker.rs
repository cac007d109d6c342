//! Audio levels in a router: each accepted audio packet's RFC 6464 level feeds
//! its endpoint's [`SpeakerActivity`] and the conference's [`DominantSpeaker`]
//! (decided on the router's `DominantSpeaker` timer, every 300 ms while levels
//! arrive; a change goes to the control plane as
//! [`MediaEvent::DominantSpeakerChanged`]), and long runs of silence are not
//! forwarded.
//!
//! Silence (level 127, what a muted or silent microphone sends) is forwarded for
//! the first [`SILENCE_FORWARDED`] packets of a run, so that receivers' decoders
//! see the change to silence, then dropped and counted (`dropped_silence`) until
//! a packet with sound comes, as jitsi-videobridge does. Audio without the level
//! extension is forwarded as it comes.
//!
//! With `media.audio_last_n` = N > 0, audio is forwarded only from the N
//! loudest speakers of the conference and from its dominant speaker
//! ([`loudest_rank`]; counted as `dropped_audio_last_n`). Ranking costs a pass
//! over the conference's endpoints per audio packet, so it is off by default.

use std::time::Instant;

use ringbridge_control::media::MediaEvent;

use slotmap::SlotMap;

use super::super::quality::dominant_speaker::{DominantSpeaker, loudest_rank};
use super::super::rtp::AudioLevel;
use super::super::shard::ShardCounters;
use super::super::timer::{TimerName, TimerTable};
use super::{Endpoint, EndpointKey, Producer, Router, RouterIo, RouterTimer};

/// Packets of a run of silence that are still forwarded (60 ms of 20 ms packets).
pub const SILENCE_FORWARDED: u32 = 3;

/// Records one accepted audio packet's level from `sender` (publishing through
/// `producer`) at `now`; arms the decision timer when decisions start. Returns
/// whether the packet is forwarded (false: silence past the first few packets,
/// when `drop_silence`).
#[allow(clippy::too_many_arguments)] // the router's split borrows, one per field
pub(super) fn handle_level(
    sender: &mut Endpoint,
    producer: &mut Producer,
    speakers: &mut DominantSpeaker<EndpointKey>,
    timers: &mut TimerTable<RouterTimer, { RouterTimer::COUNT }>,
    counters: &mut ShardCounters,
    now: Instant,
    level: AudioLevel,
    drop_silence: bool,
) -> bool {
    sender.speaker.handle_level(now, level.level);
    if let Some(at) = speakers.handle_level(now) {
        timers.set(RouterTimer::DominantSpeaker, at);
    }
    if !level.is_silence() {
        producer.silent_run = 0;
        return true;
    }
    producer.silent_run = producer.silent_run.saturating_add(1);
    if drop_silence && producer.silent_run > SILENCE_FORWARDED {
        counters.dropped_silence += 1;
        return false;
    }
    true
}

/// Whether `key`'s audio is forwarded under loudest-N (`last_n` > 0): it is the
/// dominant speaker or ranks below `last_n` by energy. Always with `last_n` 0.
pub(super) fn among_loudest(
    key: EndpointKey,
    endpoints: &SlotMap<EndpointKey, Endpoint>,
    members: &[EndpointKey],
    speakers: &DominantSpeaker<EndpointKey>,
    last_n: usize,
    now: Instant,
) -> bool {
    if last_n == 0 || speakers.dominant() == Some(key) {
        return true;
    }
    let all = members
        .iter()
        .filter_map(|&k| endpoints.get(k).map(|ep| (k, &ep.speaker)));
    loudest_rank(key, now, all) < last_n
}

impl Router {
    /// The conference's dominant speaker, once one was named (for tests and
    /// diagnostics).
    pub fn dominant_speaker(&self) -> Option<EndpointKey> {
        self.speakers.dominant()
    }

    /// The `DominantSpeaker` timer: decides, and reports a change.
    pub(super) fn decide_speaker(&mut self, io: &mut RouterIo<'_>) {
        let Router {
            speakers,
            endpoints,
            members,
            timers,
            id,
            ..
        } = self;
        let active = members
            .iter()
            .filter_map(|&k| endpoints.get(k).map(|ep| (k, &ep.speaker)));
        let changed = speakers.handle_timeout(io.now, active);
        match speakers.poll_timeout() {
            Some(at) => timers.set(RouterTimer::DominantSpeaker, at),
            None => timers.stop(RouterTimer::DominantSpeaker),
        }
        let Some(key) = changed else {
            return;
        };
        let Some(dominant) = endpoints.get(key).map(|ep| ep.id.clone()) else {
            return;
        };
        let previous = speakers
            .previous()
            .iter()
            .filter_map(|&k| endpoints.get(k).map(|ep| ep.id.clone()))
            .collect();
        tracing::debug!(conference = %id, endpoint = %dominant, "dominant speaker");
        io.counters.dominant_speaker_changes += 1;
        io.events.push_back(MediaEvent::DominantSpeakerChanged {
            conference: id.clone(),
            dominant,
            previous,
        });
        // The speech order changed: so may every receiver's allocation.
        self.reallocate_all(io);
    }
}
