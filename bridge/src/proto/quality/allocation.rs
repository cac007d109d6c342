//! Bandwidth allocation for one receiver, after jitsi-videobridge's
//! `doc/allocation.md`: which layer of each video source the receiver gets
//! (or none), given its [`ReceiverConstraints`], the conference's sources in
//! speech order, each source's layers and the receiver's bandwidth estimate.
//!
//! Three phases, run whole on every call ([`allocate`]; pure, no clock, no I/O):
//!
//! 1. **Prioritise.** On-stage sources first (in the receiver's order), then
//!    selected ones, then the rest in the order given (dominant speaker, then
//!    previous speakers, then join order). Sources with no active layer go last.
//! 2. **LastN.** Going down that order, sources get their `maxHeight`
//!    constraint until `lastN` of them have a non-zero one; every later
//!    source's *effective* constraint is 0. The effective constraints are what
//!    senders are told ([`SourceResult::effective_max_height`]), so layers
//!    nobody watches can be suspended.
//! 3. **Allocate.** Each source's candidate layers are its active layers that
//!    fit its effective constraint (the smallest one when none fits: the
//!    constraint is soft, except 0), without layers of at least
//!    [`PREFERRED_HEIGHT`] below [`PREFERRED_FRAME_RATE`] when their frame rate
//!    is known. Then, while anything improves, each source in order improves
//!    by one layer if the remaining estimate pays for it; an on-stage source
//!    goes straight to its preferred layer (the tallest up to 360p), and until
//!    it has, the sources after it wait.
//!
//! Layer bitrates are measured ones; a layer not yet measured (0 bps) costs
//! nothing, so a new source starts at once, but a taller layer costs at least
//! twice the one below it (a layer just resumed measures next to nothing).

use ringbridge_control::receiver_constraints::{ReceiverConstraints, UNLIMITED};

/// The height an on-stage source is given at once (jvb's
/// `onstage-preferred-height-px`, default 360).
pub const PREFERRED_HEIGHT: u16 = 360;

/// Layers at least [`PREFERRED_HEIGHT`] tall are considered only at this frame
/// rate or more, when it is known (jvb's `onstage-preferred-framerate`).
pub const PREFERRED_FRAME_RATE: f32 = 30.0;

/// A taller layer is taken to cost at least this many times the layer below
/// it, whatever it measured (a layer just resumed measures next to nothing;
/// Chrome's layers are about 3x apart: 150k, 500k, 1.5M and more).
const TALLER_LAYER_FACTOR: u64 = 2;

/// Constraints at or under this height do not use the preferred layer rule
/// (jvb: a thumbnail has no "preferred" layer).
const THUMBNAIL_HEIGHT: u16 = 180;

/// One layer of a source, as the allocator sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LayerInput {
    /// Lines per frame, once a key frame told.
    pub height: Option<u16>,
    /// Frames per second, when known.
    pub frame_rate: Option<f32>,
    /// Measured bitrate in bits per second (0: not measured yet).
    pub bitrate_bps: u64,
    /// Whether the layer arrives now.
    pub active: bool,
}

/// One video source of the conference.
#[derive(Debug, Clone, Copy)]
pub struct SourceInput<'a> {
    /// Jitsi source name (`{endpointId}-v0`).
    pub name: &'a str,
    /// Its layers, by layer index (a source without simulcast has one).
    pub layers: &'a [LayerInput],
    /// Whether the receiver is being sent it now (its last allocation
    /// forwarded it): then a fall of the estimate moves it to its smallest
    /// layer but does not stop it (see [`allocate`]).
    pub forwarded: bool,
}

/// What one source gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceResult {
    /// The layer forwarded (its index), `None`: not forwarded.
    pub layer: Option<u8>,
    /// The layer that would be forwarded with unlimited bandwidth.
    pub ideal_layer: Option<u8>,
    /// The receiver's constraint after lastN (0: outside lastN or off).
    pub effective_max_height: u16,
}

/// One receiver's allocation; `sources` is index-aligned with the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// Per input source.
    pub sources: Vec<SourceResult>,
    /// Input indices in priority order.
    pub order: Vec<usize>,
    /// Sum of the chosen layers' bitrates.
    pub target_bps: u64,
    /// Sum of the ideal layers' bitrates.
    pub ideal_bps: u64,
}

impl Allocation {
    /// Input indices of the forwarded sources, in priority order.
    pub fn forwarded(&self) -> impl Iterator<Item = usize> + '_ {
        self.order
            .iter()
            .copied()
            .filter(|&i| self.sources.get(i).is_some_and(|s| s.layer.is_some()))
    }
}

/// A candidate layer of one source.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    index: u8,
    bitrate: u64,
}

/// A source while the loop runs.
#[derive(Debug)]
struct Working {
    input: usize,
    on_stage: bool,
    /// Candidates, smallest first.
    layers: Vec<Candidate>,
    /// Index into `layers` of the preferred layer.
    preferred: Option<usize>,
    /// Index into `layers` of the target, `None` before the first.
    target: Option<usize>,
    /// The receiver's first source with video (highest priority).
    first: bool,
    /// Forwarded now and still within lastN and its constraint.
    keep: bool,
}

impl Working {
    fn bitrate(&self) -> u64 {
        self.target
            .and_then(|t| self.layers.get(t))
            .map_or(0, |c| c.bitrate)
    }

    fn reached_preferred(&self) -> bool {
        match (self.target, self.preferred) {
            (Some(t), Some(p)) => t >= p,
            (_, None) => true,
            (None, Some(_)) => false,
        }
    }

    /// One improve step with `remaining` bps left; returns what it cost.
    fn improve(&mut self, remaining: u64) -> u64 {
        let before = self.bitrate();
        let budget = remaining.saturating_add(before);
        if self.layers.is_empty() {
            return 0;
        }
        if self.target.is_none() && self.on_stage && self.preferred.is_some() {
            // Greedy up to the preferred layer.
            for (i, c) in self.layers.iter().enumerate() {
                if Some(i) > self.preferred || c.bitrate > budget {
                    break;
                }
                self.target = Some(i);
            }
        } else if self.target.is_none() && (self.layers.len() == 1 || self.first || self.keep) {
            // A source with one layer has nothing smaller to fall back to, and
            // the receiver's first source nothing to give way to: both get
            // their smallest layer whatever the estimate (jvb's oversending
            // for its top source). Suspending them would also starve the
            // estimator of the feedback it needs to grow. So does a source
            // the receiver is watching now: a dip of the estimate moves it to
            // its smallest layer, not off (jvb suspends it; measured with
            // Chromium behind a 1 Mbit/s cap: the estimate dipped below two
            // 180p streams at the onset and one was suspended for 5-15 s, a
            // frozen picture, while the link carried both). Only lastN and
            // the receiver's constraints stop a watched source.
            self.target = Some(0);
        } else {
            let next = self.target.map_or(0, |t| t + 1);
            if self.layers.get(next).is_some_and(|c| c.bitrate <= budget) {
                self.target = Some(next);
            }
        }
        if let Some(t) = self.target {
            // A taller layer that costs no more than the target is taken at once.
            let cur = self.layers.get(t).map_or(0, |c| c.bitrate);
            if let Some(better) = (t + 1..self.layers.len())
                .rev()
                .find(|&i| self.layers.get(i).is_some_and(|c| c.bitrate <= cur))
            {
                self.target = Some(better);
            }
        }
        self.bitrate().saturating_sub(before)
    }
}

fn sending(source: &SourceInput<'_>) -> bool {
    source.layers.iter().any(|l| l.active)
}

/// Phase 1: input indices in priority order.
fn prioritize(constraints: &ReceiverConstraints, sources: &[SourceInput<'_>]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..sources.len()).collect();
    let on_stage = constraints.on_stage_sources.len();
    order.sort_by_key(|&i| {
        let Some(s) = sources.get(i) else {
            return (true, usize::MAX, i);
        };
        let name = s.name;
        let class = if let Some(r) = constraints.on_stage_sources.iter().position(|x| x == name) {
            r
        } else if let Some(r) = constraints.selected_rank(name) {
            on_stage + r
        } else {
            usize::MAX
        };
        (!sending(s), class, i)
    });
    order
}

/// Candidate layers of one source under `max_height`, smallest first, and the
/// preferred one's place among them.
fn candidates(layers: &[LayerInput], max_height: u16) -> (Vec<Candidate>, Option<usize>) {
    if max_height == 0 {
        return (Vec::new(), None);
    }
    let mut active: Vec<(u8, &LayerInput)> = layers
        .iter()
        .enumerate()
        .filter(|(_, l)| l.active)
        .filter_map(|(i, l)| Some((u8::try_from(i).ok()?, l)))
        .collect();
    // Size order: the height where known, else the layer's place in the offer.
    active.sort_by_key(|&(i, l)| (l.height.unwrap_or(0), i));
    let fits = |l: &LayerInput| match l.height {
        Some(h) => h <= max_height,
        None => max_height == UNLIMITED,
    };
    let max_fps = active
        .iter()
        .filter_map(|(_, l)| l.frame_rate)
        .fold(None, |m: Option<f32>, f| Some(m.map_or(f, |m| m.max(f))));
    let wanted_fps = max_fps.map_or(PREFERRED_FRAME_RATE, |m| m.min(PREFERRED_FRAME_RATE));
    let fast_enough = |l: &LayerInput| {
        l.height.is_none_or(|h| h < PREFERRED_HEIGHT)
            || l.frame_rate.is_none_or(|f| f >= wanted_fps)
    };
    let mut chosen: Vec<(u8, &LayerInput)> = active
        .iter()
        .copied()
        .filter(|(_, l)| fits(l) && fast_enough(l))
        .collect();
    if chosen.is_empty()
        && let Some(&smallest) = active.first()
    {
        chosen.push(smallest);
    }
    let preferred = if max_height > THUMBNAIL_HEIGHT {
        let min_h = chosen
            .first()
            .and_then(|(_, l)| l.height)
            .unwrap_or(0)
            .max(PREFERRED_HEIGHT);
        chosen
            .iter()
            .rposition(|(_, l)| l.height.unwrap_or(0) <= min_h)
    } else {
        chosen.len().checked_sub(1)
    };
    // A taller layer costs at least [`TALLER_LAYER_FACTOR`] times what the
    // layer below it costs: a top layer its sender just resumed (Chromium
    // pauses it under CPU load) reads a few kbit/s for a moment, and allocated
    // at that price it was sent to a receiver behind a 1 Mbit/s cap at 1.5
    // Mbit/s (measured in the capped browser test: 720p chosen at 9 kbit/s
    // with a 160 kbit/s estimate).
    let mut below: u64 = 0;
    let out = chosen
        .iter()
        .map(|&(index, l)| {
            below = l.bitrate_bps.max(below.saturating_mul(TALLER_LAYER_FACTOR));
            Candidate {
                index,
                bitrate: below,
            }
        })
        .collect();
    (out, preferred)
}

/// How far below its sources' smallest layers an estimate may dip while the
/// receiver's watched sources are kept on them: their sum may be this many
/// times the estimate (a Chromium receiver behind a 1 Mbit/s cap dipped to
/// 207-470 kbit/s under two 180p streams of ~150 kbit/s at the cap's onset).
pub const KEEP_THROUGH_DIP: u64 = 2;

/// Allocates `estimate_bps` (`None`: unlimited) among `sources` (in speech
/// order) for a receiver with `constraints`.
pub fn allocate(
    constraints: &ReceiverConstraints,
    sources: &[SourceInput<'_>],
    estimate_bps: Option<u64>,
) -> Allocation {
    let order = prioritize(constraints, sources);
    let last_n = constraints.last_n.unwrap_or(usize::MAX);
    let mut results = vec![
        SourceResult {
            layer: None,
            ideal_layer: None,
            effective_max_height: 0,
        };
        sources.len()
    ];
    let mut with_video = 0usize;
    let mut working: Vec<Working> = Vec::with_capacity(sources.len());
    for &i in &order {
        let (Some(source), Some(result)) = (sources.get(i), results.get_mut(i)) else {
            continue;
        };
        let effective = if with_video >= last_n {
            0
        } else {
            constraints.max_height(source.name)
        };
        if effective != 0 && sending(source) {
            with_video += 1;
        }
        result.effective_max_height = effective;
        let (layers, preferred) = candidates(source.layers, effective);
        result.ideal_layer = layers.last().map(|c| c.index);
        working.push(Working {
            input: i,
            on_stage: constraints.on_stage(source.name),
            layers,
            preferred,
            target: None,
            first: false,
            keep: source.forwarded && effective != 0,
        });
    }

    if let Some(w) = working.iter_mut().find(|w| !w.layers.is_empty()) {
        w.first = true;
    }
    // Watched sources are kept through a dip of the estimate, not through a
    // link that cannot carry them: in priority order, their smallest layers
    // may add up to KEEP_THROUGH_DIP times the estimate; the sources after
    // the first that does not fit are suspended as before (twenty 180p
    // streams are not pushed at a 500 kbit/s link).
    let mut keep_budget = estimate_bps.map_or(u64::MAX, |e| e.saturating_mul(KEEP_THROUGH_DIP));
    let mut over = false;
    for w in working.iter_mut().filter(|w| w.keep) {
        let smallest = w.layers.first().map_or(0, |c| c.bitrate);
        over |= smallest > keep_budget;
        if over {
            w.keep = false;
        } else {
            keep_budget -= smallest;
        }
    }
    let mut remaining = estimate_bps.unwrap_or(u64::MAX);
    loop {
        let mut improved = false;
        for w in working.iter_mut() {
            let before = w.target;
            remaining = remaining.saturating_sub(w.improve(remaining));
            improved |= w.target != before;
            if w.on_stage && !w.reached_preferred() {
                break;
            }
        }
        if !improved {
            break;
        }
    }

    let (mut target_bps, mut ideal_bps) = (0u64, 0u64);
    for w in &working {
        target_bps = target_bps.saturating_add(w.bitrate());
        ideal_bps = ideal_bps.saturating_add(w.layers.last().map_or(0, |c| c.bitrate));
        if let Some(r) = results.get_mut(w.input) {
            r.layer = w.target.and_then(|t| w.layers.get(t)).map(|c| c.index);
        }
    }
    Allocation {
        sources: results,
        order,
        target_bps,
        ideal_bps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: u64 = 1000;

    /// Chrome's three layers at 30 fps: 180p 150k, 360p 500k, 720p 1.5M.
    const SIMULCAST: [LayerInput; 3] = [
        layer(180, 150 * K),
        layer(360, 500 * K),
        layer(720, 1500 * K),
    ];

    const fn layer(height: u16, bitrate_bps: u64) -> LayerInput {
        LayerInput {
            height: Some(height),
            frame_rate: Some(30.0),
            bitrate_bps,
            active: true,
        }
    }

    fn sources<'a>(names: &[&'a str], layers: &'a [LayerInput]) -> Vec<SourceInput<'a>> {
        names
            .iter()
            .map(|&name| SourceInput {
                name,
                layers,
                forwarded: false,
            })
            .collect()
    }

    fn layers_of(a: &Allocation) -> Vec<Option<u8>> {
        a.sources.iter().map(|s| s.layer).collect()
    }

    fn names<'a>(a: &Allocation, s: &[SourceInput<'a>]) -> Vec<&'a str> {
        a.forwarded()
            .filter_map(|i| s.get(i).map(|s| s.name))
            .collect()
    }

    #[test]
    fn unlimited_estimate_and_no_constraint_give_everyone_the_top_layer() {
        let s = sources(&["a-v0", "b-v0", "c-v0"], &SIMULCAST);
        let a = allocate(&ReceiverConstraints::default(), &s, None);
        assert_eq!(layers_of(&a), [Some(2); 3]);
        assert_eq!(a.target_bps, 4500 * K);
        assert_eq!(a.ideal_bps, 4500 * K);
        assert!(
            a.sources
                .iter()
                .all(|r| r.effective_max_height == UNLIMITED)
        );
    }

    #[test]
    fn estimate_of_500k_keeps_everyone_on_low_layers() {
        let s = sources(&["a-v0", "b-v0", "c-v0"], &SIMULCAST);
        let a = allocate(&ReceiverConstraints::default(), &s, Some(500 * K));
        assert_eq!(layers_of(&a), [Some(0); 3]);
        assert_eq!(a.target_bps, 450 * K);
        assert_eq!(a.ideal_bps, 4500 * K, "ideal is what it would take");
    }

    #[test]
    fn an_estimate_below_every_layer_still_forwards_the_first_source_smallest() {
        let s = sources(&["a-v0", "b-v0", "c-v0"], &SIMULCAST);
        let a = allocate(&ReceiverConstraints::default(), &s, Some(100 * K));
        assert_eq!(layers_of(&a), [Some(0), None, None]);
    }

    #[test]
    fn a_source_forwarded_now_drops_to_its_smallest_layer_but_is_not_stopped_by_a_low_estimate() {
        // The capped browser test's onset: two 180p streams (150 kbit/s
        // each) watched, the estimate dips to 160 kbit/s.
        let mut s = sources(&["a-v0", "b-v0", "c-v0"], &SIMULCAST);
        s[0].forwarded = true;
        s[1].forwarded = true;
        let a = allocate(&ReceiverConstraints::default(), &s, Some(160 * K));
        assert_eq!(layers_of(&a), [Some(0), Some(0), None], "c is not started");
        // lastN 1 still stops the second.
        let c = ReceiverConstraints {
            last_n: Some(1),
            ..Default::default()
        };
        assert_eq!(
            layers_of(&allocate(&c, &s, Some(160 * K))),
            [Some(0), None, None]
        );
        // A dip below half the two streams keeps only the first source.
        let a = allocate(&ReceiverConstraints::default(), &s, Some(100 * K));
        assert_eq!(layers_of(&a), [Some(0), None, None]);
    }

    #[test]
    fn watched_sources_are_kept_through_a_dip_but_not_beyond_twice_the_estimate() {
        // Twenty watched sources, a link of 500 kbit/s: only as many smallest
        // layers as add up to twice the estimate stay, in priority order.
        let names: Vec<String> = (0..20).map(|i| format!("s{i}-v0")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut s = sources(&refs, &SIMULCAST);
        for x in &mut s {
            x.forwarded = true;
        }
        let smallest = SIMULCAST[0].bitrate_bps;
        let a = allocate(&ReceiverConstraints::default(), &s, Some(500 * K));
        let kept = layers_of(&a).iter().filter(|l| l.is_some()).count();
        assert_eq!(
            kept as u64,
            (2 * 500 * K / smallest).max(1),
            "{:?}",
            layers_of(&a)
        );
        assert!(layers_of(&a)[..kept].iter().all(|l| *l == Some(0)));
        assert!(layers_of(&a)[kept..].iter().all(Option::is_none));
    }

    #[test]
    fn a_single_layer_source_is_forwarded_whatever_the_estimate() {
        const ONE: [LayerInput; 1] = [layer(720, 1600 * K)];
        let s = sources(&["a-v0", "b-v0"], &ONE);
        let a = allocate(&ReceiverConstraints::default(), &s, Some(300 * K));
        assert_eq!(layers_of(&a), [Some(0), Some(0)]);
    }

    #[test]
    fn sources_improve_one_layer_at_a_time_in_speech_order() {
        let s = sources(&["a-v0", "b-v0", "c-v0"], &SIMULCAST);
        // 450k for three 180p, then 350k more takes only the first speaker to 360p.
        let a = allocate(&ReceiverConstraints::default(), &s, Some(900 * K));
        assert_eq!(layers_of(&a), [Some(1), Some(0), Some(0)]);
        // Too little for all three: the last speaker is the one left out.
        let a = allocate(&ReceiverConstraints::default(), &s, Some(310 * K));
        assert_eq!(layers_of(&a), [Some(0), Some(0), None]);
    }

    #[test]
    fn on_stage_source_gets_360p_before_others_improve() {
        let s = sources(&["a-v0", "b-v0", "c-v0"], &SIMULCAST);
        let c = ReceiverConstraints {
            on_stage_sources: vec!["b-v0".into()],
            ..Default::default()
        };
        let a = allocate(&c, &s, Some(900 * K));
        assert_eq!(layers_of(&a), [Some(0), Some(1), Some(0)]);
        assert_eq!(a.order, [1, 0, 2], "on stage first");
        // When even the on-stage source's 360p does not fit, nobody else gets a
        // thumbnail before it: it takes 180p, and the others wait.
        let a = allocate(&c, &s, Some(400 * K));
        assert_eq!(layers_of(&a), [None, Some(0), None]);
        // With enough, it climbs on to 720p one step at a time like the others.
        let a = allocate(&c, &s, Some(2000 * K));
        assert_eq!(layers_of(&a), [Some(0), Some(2), Some(0)]);
    }

    #[test]
    fn last_n_2_forwards_only_the_two_most_recent_speakers() {
        // Speech order: d spoke last, then b; a and c before.
        let s = sources(&["d-v0", "b-v0", "a-v0", "c-v0"], &SIMULCAST);
        let c = ReceiverConstraints {
            last_n: Some(2),
            ..Default::default()
        };
        let a = allocate(&c, &s, None);
        assert_eq!(names(&a, &s), ["d-v0", "b-v0"]);
        let effective: Vec<u16> = a.sources.iter().map(|r| r.effective_max_height).collect();
        assert_eq!(effective, [UNLIMITED, UNLIMITED, 0, 0]);
        let none = ReceiverConstraints {
            last_n: Some(0),
            ..Default::default()
        };
        assert_eq!(allocate(&none, &s, None).forwarded().count(), 0);
    }

    #[test]
    fn selected_source_is_forwarded_even_when_not_a_speaker() {
        let s = sources(&["a-v0", "b-v0", "c-v0"], &SIMULCAST);
        let c = ReceiverConstraints {
            last_n: Some(1),
            selected_sources: vec!["c-v0".into()],
            ..Default::default()
        };
        let a = allocate(&c, &s, None);
        assert_eq!(names(&a, &s), ["c-v0"]);
    }

    #[test]
    fn max_height_180_caps_a_source() {
        let s = sources(&["a-v0", "b-v0"], &SIMULCAST);
        let c = ReceiverConstraints {
            constraints: vec![("a-v0".into(), 180)],
            ..Default::default()
        };
        let a = allocate(&c, &s, None);
        assert_eq!(layers_of(&a), [Some(0), Some(2)]);
        assert_eq!(a.sources[0].effective_max_height, 180);
        assert_eq!(a.sources[0].ideal_layer, Some(0));
        // The default applies to every source not named.
        let c = ReceiverConstraints {
            default_max_height: 360,
            ..c
        };
        assert_eq!(layers_of(&allocate(&c, &s, None)), [Some(0), Some(1)]);
    }

    #[test]
    fn max_height_0_turns_a_source_off_and_leaves_its_last_n_place_to_the_next() {
        let s = sources(&["a-v0", "b-v0", "c-v0"], &SIMULCAST);
        let c = ReceiverConstraints {
            last_n: Some(1),
            constraints: vec![("a-v0".into(), 0)],
            ..Default::default()
        };
        let a = allocate(&c, &s, None);
        assert_eq!(names(&a, &s), ["b-v0"]);
    }

    #[test]
    fn a_single_tall_stream_is_forwarded_under_a_small_constraint() {
        // No simulcast: one 720p layer, and the receiver asks for 180p. The
        // constraint is soft: the smallest layer there is, is sent.
        let single = [layer(720, 1200 * K)];
        let s = sources(&["a-v0"], &single);
        let c = ReceiverConstraints {
            default_max_height: 180,
            ..Default::default()
        };
        assert_eq!(layers_of(&allocate(&c, &s, None)), [Some(0)]);
        // Even when the estimate cannot pay for it: it has nothing smaller,
        // and suspending it would starve the estimator of feedback.
        assert_eq!(layers_of(&allocate(&c, &s, Some(600 * K))), [Some(0)]);
    }

    #[test]
    fn stopped_layers_and_slow_tall_layers_are_not_chosen() {
        let mut l = SIMULCAST;
        l[2].active = false;
        let s = sources(&["a-v0"], &l);
        assert_eq!(
            layers_of(&allocate(&ReceiverConstraints::default(), &s, None)),
            [Some(1)]
        );
        // 720p at 7.5 fps while 180p runs at 30: left out.
        let mut l = SIMULCAST;
        l[2].frame_rate = Some(7.5);
        let s = sources(&["a-v0"], &l);
        assert_eq!(
            layers_of(&allocate(&ReceiverConstraints::default(), &s, None)),
            [Some(1)]
        );
        // A source sending nothing gets nothing, and goes last.
        let quiet = [LayerInput::default(); 3];
        let s = vec![
            SourceInput {
                name: "q-v0",
                layers: &quiet,
                forwarded: false,
            },
            SourceInput {
                name: "a-v0",
                layers: &SIMULCAST,
                forwarded: false,
            },
        ];
        let a = allocate(&ReceiverConstraints::default(), &s, None);
        assert_eq!(a.order, [1, 0]);
        assert_eq!(layers_of(&a), [None, Some(2)]);
    }

    #[test]
    fn unmeasured_layers_cost_nothing_and_unknown_heights_only_fit_no_constraint() {
        let fresh = [LayerInput {
            active: true,
            ..Default::default()
        }; 3];
        let s = sources(&["a-v0"], &fresh);
        assert_eq!(
            layers_of(&allocate(&ReceiverConstraints::default(), &s, Some(0))),
            [Some(2)],
            "the last in the offer is the tallest"
        );
        let c = ReceiverConstraints {
            default_max_height: 360,
            ..Default::default()
        };
        assert_eq!(layers_of(&allocate(&c, &s, None)), [Some(0)]);
    }

    #[test]
    fn a_tall_layer_that_measures_less_than_the_one_below_costs_twice_as_much() {
        // 720p just resumed by its sender: 9 kbit/s measured so far.
        const RESUMED: [LayerInput; 3] =
            [layer(180, 150 * K), layer(360, 500 * K), layer(720, 9 * K)];
        let s = sources(&["a-v0", "b-v0"], &RESUMED);
        // Two 360p fill 1 Mbit/s: nothing is left for a 720p.
        let a = allocate(&ReceiverConstraints::default(), &s, Some(1000 * K));
        assert_eq!(layers_of(&a), [Some(1), Some(1)]);
        assert_eq!(a.target_bps, 1000 * K);
        assert_eq!(a.ideal_bps, 2000 * K, "the 720p taken at 2 x 500k");
    }
}
