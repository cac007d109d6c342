//! Temporal layer selection on one slot: a VP8 source with temporal layers
//! (Chrome's L1T3: TL0 at 7.5 fps, TL1 doubling it to 15, TL2 to 30) can be
//! thinned per receiver by forwarding only the frames up to a temporal layer.
//!
//! A slot's [`TemporalFilter`] has a target (the highest temporal layer the
//! allocator wants; `None` for all) and a current layer (what it forwards now).
//! Going down happens at the next frame start, any time: a frame of a higher
//! layer is never a reference for a lower one. Going up waits for a frame with
//! the layer sync bit (RFC 7741 Y: it references only TL0, so the decoder has
//! everything it needs) of a layer above the current one, or for a key frame.
//! The current layer changes only at a frame start, so a frame is forwarded or
//! dropped whole.
//!
//! The router closes the receiver's sequence numbers over every dropped packet
//! and its VP8 picture ids over every dropped picture (as mediasoup's VP8
//! encoding context does), so the receiver sees one continuous stream.

/// What a slot does with one packet, temporally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemporalDecision {
    /// Forward it.
    Forward,
    /// Drop it; `picture_start` when it starts a picture (its picture id is
    /// then taken out of the receiver's numbering).
    Drop {
        /// The packet starts the dropped picture.
        picture_start: bool,
    },
}

/// One slot's temporal layer state. Default: every layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemporalFilter {
    /// Highest temporal layer wanted (`u8::MAX`: all).
    target: u8,
    /// Highest temporal layer forwarded now (`u8::MAX`: all).
    current: u8,
}

impl Default for TemporalFilter {
    fn default() -> Self {
        Self {
            target: u8::MAX,
            current: u8::MAX,
        }
    }
}

impl TemporalFilter {
    /// Sets the highest temporal layer to forward; `None` for all of them.
    /// Takes effect at the next frame start (down) or layer sync point (up).
    pub fn set_target(&mut self, target: Option<u8>) {
        self.target = target.unwrap_or(u8::MAX);
    }

    /// The highest temporal layer wanted; `None` for all.
    pub fn target(&self) -> Option<u8> {
        (self.target != u8::MAX).then_some(self.target)
    }

    /// The highest temporal layer forwarded now; `None` for all.
    pub fn current(&self) -> Option<u8> {
        (self.current != u8::MAX).then_some(self.current)
    }

    /// Decides for a packet of temporal layer `tid` (`None`: the packet does
    /// not say, and is forwarded); `layer_sync` is its Y bit, `keyframe` and
    /// `frame_start` whether it starts a key frame or any frame.
    pub fn decide(
        &mut self,
        tid: Option<u8>,
        layer_sync: bool,
        keyframe: bool,
        frame_start: bool,
    ) -> TemporalDecision {
        let Some(tid) = tid else {
            return TemporalDecision::Forward;
        };
        if frame_start {
            if keyframe || self.target < self.current {
                // A key frame references nothing; lower layers never reference
                // higher ones.
                self.current = self.target;
            } else if self.target > self.current
                && layer_sync
                && tid > self.current
                && tid <= self.target
            {
                self.current = tid;
            }
        }
        if tid <= self.current {
            TemporalDecision::Forward
        } else {
            TemporalDecision::Drop {
                picture_start: frame_start,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Chrome's L1T3 pattern: TID 0, 2, 1, 2, repeating.
    const L1T3: [u8; 4] = [0, 2, 1, 2];

    fn forwarded(f: &mut TemporalFilter, tid: u8, sync: bool) -> bool {
        f.decide(Some(tid), sync, false, true) == TemporalDecision::Forward
    }

    #[test]
    fn by_default_every_layer_is_forwarded() {
        let mut f = TemporalFilter::default();
        for tid in L1T3.iter().cycle().take(8) {
            assert!(forwarded(&mut f, *tid, false));
        }
        assert_eq!(f.target(), None);
        // No temporal information: always forwarded.
        f.set_target(Some(0));
        assert_eq!(
            f.decide(None, false, false, true),
            TemporalDecision::Forward
        );
    }

    #[test]
    fn going_down_happens_at_the_next_frame_start() {
        let mut f = TemporalFilter::default();
        assert!(forwarded(&mut f, 2, false));
        // 15 fps: TL0 and TL1 only, from the next frame on.
        f.set_target(Some(1));
        // A continuation packet of the TL2 frame in flight is still sent.
        assert_eq!(
            f.decide(Some(2), false, false, false),
            TemporalDecision::Forward,
            "the current layer changes at frame starts only"
        );
        let got: Vec<bool> = [0, 2, 1, 2, 0]
            .iter()
            .map(|&t| forwarded(&mut f, t, false))
            .collect();
        assert_eq!(got, [true, false, true, false, true]);
        assert_eq!(f.current(), Some(1));
        // A dropped picture's later packets are dropped too, not as starts.
        assert_eq!(
            f.decide(Some(2), false, false, false),
            TemporalDecision::Drop {
                picture_start: false
            }
        );
        // 7.5 fps.
        f.set_target(Some(0));
        assert!(!forwarded(&mut f, 1, false));
        assert!(forwarded(&mut f, 0, false));
    }

    #[test]
    fn going_up_waits_for_a_layer_sync_frame_or_a_key_frame() {
        let mut f = TemporalFilter::default();
        f.set_target(Some(0));
        assert!(forwarded(&mut f, 0, false));
        f.set_target(None);
        // TL1 and TL2 frames without Y: they may reference frames never sent.
        assert!(!forwarded(&mut f, 2, false));
        assert!(!forwarded(&mut f, 1, false));
        assert!(forwarded(&mut f, 0, false));
        // A TL2 frame with Y references only TL0: up to TL2 (and so TL1 too).
        assert!(forwarded(&mut f, 2, true));
        assert_eq!(f.current(), Some(2));
        assert!(forwarded(&mut f, 1, false));

        // A target of 1: a TL2 sync frame does not go past it.
        let mut f = TemporalFilter::default();
        f.set_target(Some(0));
        assert!(forwarded(&mut f, 0, false));
        f.set_target(Some(1));
        assert!(!forwarded(&mut f, 2, true));
        assert!(forwarded(&mut f, 1, true));
        assert_eq!(f.current(), Some(1));
        assert!(!forwarded(&mut f, 2, true), "above the target");

        // A key frame takes the whole target at once.
        let mut f = TemporalFilter::default();
        f.set_target(Some(0));
        assert!(forwarded(&mut f, 0, false));
        f.set_target(Some(2));
        assert_eq!(
            f.decide(Some(0), false, true, true),
            TemporalDecision::Forward
        );
        assert_eq!(f.current(), Some(2));
        assert!(forwarded(&mut f, 2, false));
    }
}
