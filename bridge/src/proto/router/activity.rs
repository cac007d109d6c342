//! Who sends media in a conference: an endpoint counts as sending audio (video)
//! while its last accepted audio (video) packet is less than [`SENDING_WINDOW`]
//! old. Kept event-driven: a packet that opens a window recounts the router, and
//! the router's `Activity` timer recounts when the earliest window closes.

use std::time::{Duration, Instant};

use super::super::sdp::MediaKind;
use super::{Endpoint, Router, RouterIo, RouterTimer};

/// An endpoint counts as sending audio (video) while its audio (video) arrived
/// within this window (`endpoints_sending_audio` / `_video` in `/colibri/stats`).
pub const SENDING_WINDOW: Duration = Duration::from_secs(3);

/// A router's counts of sending endpoints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouterActivity {
    /// Endpoints sending audio.
    pub audio: u64,
    /// Endpoints sending video.
    pub video: u64,
    /// Endpoints sending either.
    pub sending: u64,
}

/// Records a packet of `kind` from `ep` at `now`; whether it opened a window
/// (the router must recount).
pub(super) fn note_packet(ep: &mut Endpoint, kind: MediaKind, now: Instant) -> bool {
    let until = match kind {
        MediaKind::Audio => &mut ep.audio_until,
        MediaKind::Video => &mut ep.video_until,
        MediaKind::Other => return false,
    };
    let opened = until.is_none_or(|t| now >= t);
    *until = Some(now + SENDING_WINDOW);
    opened
}

impl Router {
    /// Recounts who sends and arms the `Activity` timer for the earliest window
    /// that is still open; flags `io` when the counts changed.
    pub(super) fn recount_activity(&mut self, io: &mut RouterIo<'_>) {
        let now = io.now;
        let open = |t: Option<Instant>| t.is_some_and(|t| now < t);
        let mut counts = RouterActivity::default();
        let mut next: Option<Instant> = None;
        for ep in self.members.iter().filter_map(|&k| self.endpoints.get(k)) {
            let (audio, video) = (open(ep.audio_until), open(ep.video_until));
            counts.audio += u64::from(audio);
            counts.video += u64::from(video);
            counts.sending += u64::from(audio || video);
            for t in [ep.audio_until, ep.video_until].into_iter().flatten() {
                if now < t {
                    next = Some(next.map_or(t, |n| n.min(t)));
                }
            }
        }
        match next {
            Some(t) => self.timers.set(RouterTimer::Activity, t),
            None => self.timers.stop(RouterTimer::Activity),
        }
        if counts != self.activity {
            self.activity = counts;
            io.activity_changed = true;
        }
    }
}
