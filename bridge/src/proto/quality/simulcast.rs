//! Simulcast layer selection: a publisher sends one video source as several
//! encodings (RIDs, RFC 8853: Chrome's `q`, `h`, `f` at a quarter, half and full
//! size), and each receiver's slot carries exactly one of them at a time.
//!
//! [`SimulcastLayers`] is the source's side: which layers arrive (a layer that
//! sent nothing for [`LAYER_TIMEOUT`] counts as stopped: Chrome suspends its top
//! layers when its own estimate falls) and how tall each is (learned from its
//! key frames). [`LayerSwitch`] is a slot's side: the layer it forwards and the
//! one it wants. A switch happens only at a key frame of the wanted layer, so
//! the receiver's decoder never sees a frame that references one it never got;
//! until then the slot keeps forwarding its current layer (or nothing, at the
//! start). The router asks the publisher for a key frame while a switch waits.
//!
//! Which layer a slot wants is the receiver's allocation's
//! ([`allocation`](super::allocation), applied by `router/allocate.rs`);
//! [`SimulcastLayers::best`] is the constraint-only choice (the tallest layer
//! that fits `maxHeight`, else the smallest).

use std::time::{Duration, Instant};

/// Most layers a source has (simulcast uses 3; the offer parser keeps at most 4).
pub const MAX_LAYERS: usize = 4;

/// A layer that sent nothing for this long counts as stopped.
pub const LAYER_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, Default)]
struct Layer {
    last_at: Option<Instant>,
    height: Option<u16>,
}

/// The layers of one simulcast source, in the offer's `a=simulcast` order.
#[derive(Debug, Clone)]
pub struct SimulcastLayers {
    layers: [Layer; MAX_LAYERS],
    count: u8,
}

impl SimulcastLayers {
    /// A source with `count` layers (at most [`MAX_LAYERS`]).
    pub fn new(count: usize) -> Self {
        Self {
            layers: [Layer::default(); MAX_LAYERS],
            count: count.min(MAX_LAYERS) as u8,
        }
    }

    /// How many layers the source has.
    pub fn count(&self) -> usize {
        usize::from(self.count)
    }

    /// Records a packet of `layer` at `now`; `keyframe_size` is a key frame's
    /// width and height where the packet carries them.
    pub fn note_packet(&mut self, layer: u8, now: Instant, keyframe_size: Option<(u16, u16)>) {
        if layer >= self.count {
            return;
        }
        let Some(l) = self.layers.get_mut(usize::from(layer)) else {
            return;
        };
        l.last_at = Some(now);
        if let Some((_, h)) = keyframe_size {
            l.height = Some(h);
        }
    }

    /// The height of `layer`, once a key frame of it told.
    pub fn height(&self, layer: u8) -> Option<u16> {
        self.layers.get(usize::from(layer)).and_then(|l| l.height)
    }

    fn active(&self, layer: u8, now: Instant) -> bool {
        self.layers
            .get(usize::from(layer))
            .and_then(|l| l.last_at)
            .is_some_and(|t| now.saturating_duration_since(t) < LAYER_TIMEOUT)
    }

    /// Size order of `layer`: its height where known, else its place in the
    /// offer (which lists Chrome's layers smallest first).
    fn rank(&self, layer: u8) -> (u16, u8) {
        (self.height(layer).unwrap_or(0), layer)
    }

    /// The layer a receiver that takes at most `max_height` lines should get:
    /// the tallest active layer that fits, else the smallest active one; `None`
    /// when no layer arrives. A layer of unknown height fits only when no
    /// constraint is set.
    pub fn best(&self, now: Instant, max_height: u16) -> Option<u8> {
        let active = (0..self.count).filter(|&l| self.active(l, now));
        let fits = |l: &u8| match self.height(*l) {
            Some(h) => h <= max_height,
            None => max_height == u16::MAX,
        };
        active
            .clone()
            .filter(fits)
            .max_by_key(|&l| self.rank(l))
            .or_else(|| active.min_by_key(|&l| self.rank(l)))
    }
}

/// What a slot does with one packet of a simulcast source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerDecision {
    /// Forward it: it is of the layer the slot carries.
    Forward,
    /// Forward it as the first packet of a new layer: the slot's numbering
    /// re-bases here (a source switch, for the slot's rewriting).
    Switch,
    /// Drop it: another layer, or the wanted layer before its key frame.
    Drop,
}

/// One slot's layer state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerSwitch {
    current: Option<u8>,
    target: Option<u8>,
}

impl LayerSwitch {
    /// The layer being forwarded.
    pub fn current(&self) -> Option<u8> {
        self.current
    }

    /// The layer wanted.
    pub fn target(&self) -> Option<u8> {
        self.target
    }

    /// Sets the wanted layer; returns whether a switch now waits for a key frame
    /// of it (so the router should ask for one).
    pub fn set_target(&mut self, target: Option<u8>) -> bool {
        let changed = self.target != target;
        self.target = target;
        changed && self.pending()
    }

    /// A switch waits for a key frame of the wanted layer.
    pub fn pending(&self) -> bool {
        self.target.is_some() && self.target != self.current
    }

    /// Stops forwarding the current layer before the wanted one's key frame
    /// (the slot forwards nothing until then), for a switch down on a
    /// congested link (dropping what it is sent, or queueing it past 100 ms):
    /// there the current layer's frames are lost or late anyway, and
    /// forwarding them keeps the bottleneck's queue full for the key frame
    /// the switch waits for.
    pub fn drop_current(&mut self) {
        if self.pending() {
            self.current = None;
        }
    }

    /// Forgets the current layer (the slot changed source).
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// Decides for a packet of `layer`, which starts a key frame or not.
    pub fn decide(&mut self, layer: u8, keyframe_start: bool) -> LayerDecision {
        if self.pending() && self.target == Some(layer) && keyframe_start {
            self.current = Some(layer);
            return LayerDecision::Switch;
        }
        if self.current == Some(layer) {
            LayerDecision::Forward
        } else {
            LayerDecision::Drop
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: u16 = u16::MAX;

    fn three_layers(now: Instant) -> SimulcastLayers {
        let mut s = SimulcastLayers::new(3);
        for (l, h) in [(0u8, 180u16), (1, 360), (2, 720)] {
            s.note_packet(l, now, Some((h * 16 / 9, h)));
        }
        s
    }

    #[test]
    fn a_dropped_current_layer_is_not_forwarded_while_the_switch_waits() {
        let mut sw = LayerSwitch::default();
        sw.set_target(Some(2));
        assert_eq!(sw.decide(2, true), LayerDecision::Switch);
        assert!(sw.set_target(Some(0)));
        assert_eq!(
            sw.decide(2, false),
            LayerDecision::Forward,
            "kept by default"
        );
        sw.drop_current();
        assert_eq!(sw.decide(2, false), LayerDecision::Drop);
        assert_eq!(sw.decide(0, false), LayerDecision::Drop);
        assert_eq!(sw.decide(0, true), LayerDecision::Switch);
        assert_eq!(sw.decide(0, false), LayerDecision::Forward);
        // Nothing pending: nothing dropped.
        sw.drop_current();
        assert_eq!(sw.decide(0, false), LayerDecision::Forward);
    }

    #[test]
    fn the_tallest_layer_that_fits_the_constraint_is_chosen() {
        let t0 = Instant::now();
        let s = three_layers(t0);
        assert_eq!(s.best(t0, NONE), Some(2));
        assert_eq!(s.best(t0, 720), Some(2));
        assert_eq!(s.best(t0, 719), Some(1));
        assert_eq!(s.best(t0, 180), Some(0));
        // Nothing fits: the smallest.
        assert_eq!(s.best(t0, 90), Some(0));
    }

    #[test]
    fn a_stopped_layer_is_left_for_the_next_tallest_and_taken_back_when_it_returns() {
        let t0 = Instant::now();
        let mut s = three_layers(t0);
        let t1 = t0 + Duration::from_millis(900);
        s.note_packet(0, t1, None);
        s.note_packet(1, t1, None);
        // Layer 2 last sent at t0: stopped after LAYER_TIMEOUT.
        assert_eq!(s.best(t1, NONE), Some(2));
        assert_eq!(s.best(t0 + LAYER_TIMEOUT, NONE), Some(1));
        let t2 = t0 + Duration::from_millis(1500);
        s.note_packet(2, t2, None);
        assert_eq!(s.best(t2, NONE), Some(2));
        // Nothing at all for a second: no layer.
        assert_eq!(s.best(t2 + LAYER_TIMEOUT, NONE), None);
    }

    #[test]
    fn before_any_key_frame_the_offer_order_ranks_the_layers() {
        let t0 = Instant::now();
        let mut s = SimulcastLayers::new(3);
        for l in 0..3 {
            s.note_packet(l, t0, None);
        }
        assert_eq!(
            s.best(t0, NONE),
            Some(2),
            "last in a=simulcast is the tallest"
        );
        assert_eq!(
            s.best(t0, 360),
            Some(0),
            "unknown heights do not fit a constraint"
        );
        // A layer out of range is ignored.
        s.note_packet(7, t0, Some((1, 1)));
        assert_eq!(s.height(7), None);
    }

    #[test]
    fn heights_learned_from_key_frames_override_the_offer_order() {
        let t0 = Instant::now();
        let mut s = SimulcastLayers::new(3);
        // An offer that lists the full-size layer first (f;h;q).
        for (l, h) in [(0u8, 720u16), (1, 360), (2, 180)] {
            s.note_packet(l, t0, Some((h, h)));
        }
        assert_eq!(s.best(t0, NONE), Some(0));
        assert_eq!(s.best(t0, 400), Some(1));
    }

    #[test]
    fn a_slot_switches_only_at_a_key_frame_of_the_wanted_layer() {
        let mut sw = LayerSwitch::default();
        assert!(
            sw.set_target(Some(2)),
            "the first layer waits for a key frame"
        );
        assert_eq!(sw.decide(2, false), LayerDecision::Drop);
        assert_eq!(
            sw.decide(1, true),
            LayerDecision::Drop,
            "another layer's key frame"
        );
        assert_eq!(sw.decide(2, true), LayerDecision::Switch);
        assert_eq!(sw.decide(2, false), LayerDecision::Forward);
        assert!(!sw.pending());

        // Down to layer 0: layer 2 keeps flowing until layer 0's key frame.
        assert!(sw.set_target(Some(0)));
        assert!(!sw.set_target(Some(0)), "asked once per change");
        assert_eq!(sw.decide(2, false), LayerDecision::Forward);
        assert_eq!(sw.decide(0, false), LayerDecision::Drop);
        assert_eq!(sw.decide(0, true), LayerDecision::Switch);
        assert_eq!(sw.decide(2, true), LayerDecision::Drop);
        assert_eq!(sw.current(), Some(0));

        // Back to the current layer while nothing is pending: no request.
        assert!(!sw.set_target(Some(0)));
        sw.reset();
        assert_eq!(sw.current(), None);
        assert_eq!(sw.target(), None);
    }
}
