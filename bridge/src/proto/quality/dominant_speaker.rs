//! Dominant speaker identification from RFC 6464 audio levels, after Volfin and
//! Cohen, "Dominant speaker identification for multipoint videoconferencing"
//! (Computer Speech & Language, 2013), in the form jitsi uses it
//! (jitsi-utils' `DominantSpeakerIdentification`, read as a reference).
//!
//! Each speaker keeps the last [`HISTORY`] levels it sent (one per audio packet,
//! 20 ms each: one second). A level is turned into loudness (`127 - level`, so
//! silence is 0) and, above the speaker's own noise floor, into a count of
//! "active sub-bands" out of 13 (the paper works on the spectrum; with one level
//! per packet, the level range is cut into 13 steps instead). From that history
//! come three speech activity scores, over three time scales:
//!
//! - immediate: the sub-bands of the latest level (13 possible);
//! - medium: of the latest 5 levels (100 ms), how many have more than 7 active
//!   sub-bands;
//! - long: of the latest 10 such 100 ms blocks (1 s), how many are fully active.
//!
//! Each score is the log-likelihood of that count under a binomial model of
//! speech against an exponential model of noise (the paper's equation with
//! p = 0.5 and lambda 0.78, 24 and 47), floored at a small positive value.
//!
//! Every [`DECISION_INTERVAL`] the dominant speaker is challenged: another
//! speaker takes over only when the log of its score over the dominant's
//! exceeds 3 (immediate), 2 (medium) **and** 0 (long) at once; of several
//! challengers the one with the highest medium ratio wins. So a speaker who
//! stops is replaced within about a second by one who talks on, a burst shorter
//! than a fully active 100 ms block never switches, and silence changes nothing.
//!
//! Two choices differ from jitsi's code, both about the start: jitsi names an
//! arbitrary first speaker as soon as anyone sent a level (even silence); here
//! a speaker is only named once its scores rise above the floor (it made some
//! sound in the last second), and the first one named is the one with the best
//! (long, medium, immediate) scores. A speaker that stops sending has a silent
//! level pushed for every [`LEVEL_IDLE_TIMEOUT`] without one, as in jitsi, but
//! computed when needed instead of by a 40 ms timer.
//!
//! [`loudest_rank`] ranks speakers by their smoothed energy above their noise
//! floor, for forwarding only the loudest N (jitsi's "loudest" list: a speaker
//! silent for [`LOUDEST_EXPIRY`] drops out).
//!
//! Sans-IO and allocation-free after construction: a [`SpeakerActivity`] is a
//! fixed ring of levels (the router keeps one per endpoint), and
//! [`DominantSpeaker`] holds the decision state of one conference.

use std::time::{Duration, Instant};

/// How often the dominant speaker is decided.
pub const DECISION_INTERVAL: Duration = Duration::from_millis(300);

/// A speaker that sent no level for this long has a silent level pushed, once
/// per such interval (a stopped or DTX stream counts as silence).
pub const LEVEL_IDLE_TIMEOUT: Duration = Duration::from_millis(40);

/// Decisions stop when no speaker sent a level for this long (the last dominant
/// speaker stays); the next level starts them again.
pub const DECISIONS_IDLE_AFTER: Duration = Duration::from_secs(15);

/// Most earlier dominant speakers remembered for `previousSpeakers`.
pub const MAX_PREVIOUS_SPEAKERS: usize = 10;

/// A speaker whose latest level is older than this is not among the loudest
/// (see [`loudest_rank`]).
pub const LOUDEST_EXPIRY: Duration = Duration::from_millis(150);

/// Levels per medium block (100 ms of 20 ms packets).
const N2: usize = 5;
/// Medium blocks per long interval.
const N3: usize = 10;
/// Levels kept per speaker: one long interval.
pub const HISTORY: usize = N2 * N3;

/// Sub-bands of the immediate interval.
const N1: u32 = 13;
/// Loudness steps per sub-band: the 0..=127 range cut into 13.
const SUBBAND: u8 = 127u8.div_ceil(N1 as u8);
/// A level with more active sub-bands than this makes a medium block count.
const MEDIUM_THRESHOLD: u8 = 7;
/// A medium block with more active levels than this makes the long count.
const LONG_THRESHOLD: u8 = 4;

/// The thresholds of the log score ratios (immediate, medium, long).
const C1: f64 = 3.0;
const C2: f64 = 2.0;
const C3: f64 = 0.0;

/// The floor of a speech activity score (positive: it is divided by, and its
/// log is taken).
const MIN_SCORE: f64 = 1e-10;

/// Levels watched before the noise floor may rise (15 s of 20 ms packets).
const MIN_LEVEL_WINDOW: u16 = 750;

/// The three speech activity scores of a speaker at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpeechScores {
    /// Over the latest level.
    pub immediate: f64,
    /// Over the latest 100 ms.
    pub medium: f64,
    /// Over the latest second.
    pub long: f64,
}

impl SpeechScores {
    fn all(self) -> [f64; 3] {
        [self.immediate, self.medium, self.long]
    }

    /// Whether any score is above the floor (the speaker made some sound lately).
    pub fn any_activity(self) -> bool {
        self.all().iter().any(|&s| s > MIN_SCORE)
    }
}

/// `n` choose `k`, exactly (n is at most 13 here).
fn binomial(n: u32, k: u32) -> u64 {
    let k = k.min(n);
    let k = k.min(n - k);
    (0..k).fold(1u64, |acc, i| acc * u64::from(n - i) / u64::from(i + 1))
}

/// The paper's speech activity score of `v` active units out of `n`: the log
/// likelihood ratio of a binomial speech model (probability `p`) against an
/// exponential noise model (rate `lambda`), floored at [`MIN_SCORE`].
fn activity_score(v: u32, n: u32, p: f64, lambda: f64) -> f64 {
    let v = v.min(n);
    let score =
        (binomial(n, v) as f64).ln() + f64::from(v) * p.ln() + f64::from(n - v) * (1.0 - p).ln()
            - lambda.ln()
            + lambda * f64::from(v);
    score.max(MIN_SCORE)
}

/// The recent audio levels of one speaker (one endpoint's audio), kept for
/// [`DominantSpeaker`]. Fixed size; nothing is allocated per level.
#[derive(Debug, Clone)]
pub struct SpeakerActivity {
    /// Loudness (`127 - level`: 0 silence, 127 loudest), a ring; `head` is the
    /// slot of the latest.
    loudness: [u8; HISTORY],
    head: usize,
    /// When the latest real level arrived.
    last_level: Option<Instant>,
    /// Silent levels pushed for idle time up to here (from `last_level`).
    idle_filled: Option<Instant>,
    /// The speaker's noise floor: the lowest non-zero loudness (0: not known).
    min_level: u8,
    /// The lowest loudness of the current window, to raise a stale floor.
    next_min_level: u8,
    next_min_window: u16,
    /// Smoothed loudness above the noise floor (half the latest, half the
    /// previous energy), for ranking the loudest speakers.
    energy: u8,
}

impl Default for SpeakerActivity {
    fn default() -> Self {
        Self::new()
    }
}

impl SpeakerActivity {
    /// A speaker that sent nothing yet.
    pub fn new() -> Self {
        Self {
            loudness: [0; HISTORY],
            head: 0,
            last_level: None,
            idle_filled: None,
            min_level: 0,
            next_min_level: 0,
            next_min_window: 0,
            energy: 0,
        }
    }

    /// The speaker's energy: its loudness above its noise floor (0 at or below
    /// it), smoothed exponentially over its levels (half each).
    pub fn energy(&self) -> u8 {
        self.energy
    }

    /// When the latest level arrived (`None`: never; such a speaker does not
    /// take part in decisions).
    pub fn last_level(&self) -> Option<Instant> {
        self.last_level
    }

    /// One audio packet's RFC 6464 level at `now` (`dbov`: 0 loudest, 127
    /// silence; larger values are taken as 127).
    pub fn handle_level(&mut self, now: Instant, dbov: u8) {
        if self.last_level.is_some_and(|t| now < t) {
            return; // late: the clock never goes back, a reordered call does
        }
        let idle = self.pending_idle(now);
        for _ in 0..idle {
            self.push(0);
        }
        let loudness = 127 - dbov.min(127);
        self.push(loudness);
        self.update_min_level(loudness);
        let above = u16::from(loudness) >= u16::from(self.min_level) + u16::from(SUBBAND);
        let cooked = if above { u16::from(loudness) } else { 0 };
        // Rounded to the nearest; the mean of two u8 values fits.
        self.energy = (cooked + u16::from(self.energy)).div_ceil(2) as u8;
        self.last_level = Some(now);
        self.idle_filled = Some(now);
    }

    /// The silent levels due for idle time up to `now` (at most [`HISTORY`]).
    fn pending_idle(&self, now: Instant) -> usize {
        let Some(from) = self.idle_filled else {
            return 0;
        };
        let idle = now.saturating_duration_since(from);
        let n = idle.as_nanos() / LEVEL_IDLE_TIMEOUT.as_nanos();
        usize::try_from(n).unwrap_or(HISTORY).min(HISTORY)
    }

    fn push(&mut self, loudness: u8) {
        self.head = (self.head + 1) % HISTORY;
        self.loudness[self.head] = loudness;
    }

    /// The noise floor follows the quietest non-silent level; a floor that has
    /// not been seen for [`MIN_LEVEL_WINDOW`] levels rises, slowly (geometric
    /// mean of the old floor and the window's minimum).
    fn update_min_level(&mut self, loudness: u8) {
        if loudness == 0 {
            return;
        }
        if self.min_level == 0 || loudness < self.min_level {
            self.min_level = loudness;
            self.next_min_level = 0;
            self.next_min_window = 0;
            return;
        }
        if self.next_min_level == 0 || loudness < self.next_min_level {
            self.next_min_level = loudness;
        }
        self.next_min_window += 1;
        if self.next_min_window >= MIN_LEVEL_WINDOW {
            let raised = (f64::from(self.min_level) * f64::from(self.next_min_level)).sqrt();
            // Between two u8 values: fits.
            self.min_level = raised.clamp(0.0, 127.0) as u8;
            self.next_min_level = 0;
            self.next_min_window = 0;
        }
    }

    /// The loudness `age` levels back (0: the latest), with `idle` silent levels
    /// that are due but not pushed yet in front.
    fn loudness_at(&self, age: usize, idle: usize) -> u8 {
        if age < idle {
            return 0;
        }
        let back = age - idle;
        self.loudness[(self.head + HISTORY - back % HISTORY) % HISTORY]
    }

    /// Active sub-bands (0..=12) of the level `age` back: loudness at or below
    /// the speaker's noise floor (plus one sub-band) counts as none.
    fn subbands(&self, age: usize, idle: usize) -> u8 {
        let l = self.loudness_at(age, idle);
        if u16::from(l) < u16::from(self.min_level) + u16::from(SUBBAND) {
            0
        } else {
            l / SUBBAND
        }
    }

    /// The speaker's three scores at `now` (silent levels due for idle time
    /// count, without being stored).
    pub fn scores(&self, now: Instant) -> SpeechScores {
        let idle = self.pending_idle(now);
        let immediate = self.subbands(0, idle);
        let mut mediums = [0u8; N3];
        for (block, m) in mediums.iter_mut().enumerate() {
            *m = (0..N2)
                .filter(|i| self.subbands(block * N2 + i, idle) > MEDIUM_THRESHOLD)
                .count() as u8;
        }
        let long = mediums.iter().filter(|&&m| m > LONG_THRESHOLD).count() as u32;
        SpeechScores {
            immediate: activity_score(u32::from(immediate), N1, 0.5, 0.78),
            medium: activity_score(u32::from(mediums[0]), N2 as u32, 0.5, 24.0),
            long: activity_score(long, N3 as u32, 0.5, 47.0),
        }
    }
}

/// Where speaker `who` ranks among `speakers` by [`SpeakerActivity::energy`]
/// at `now`: how many others sent a level within [`LOUDEST_EXPIRY`] with at
/// least its energy (0: the loudest). Loudest-N audio forwards the speakers
/// ranked below N (jitsi's "loudest" list, ties ranked ahead of `who`).
pub fn loudest_rank<'a, K: Eq, I>(who: K, now: Instant, speakers: I) -> usize
where
    I: Iterator<Item = (K, &'a SpeakerActivity)> + Clone,
{
    let Some(own) = speakers
        .clone()
        .find(|(k, _)| *k == who)
        .map(|(_, a)| a.energy())
    else {
        return 0;
    };
    speakers
        .filter(|(k, a)| {
            *k != who
                && a.last_level()
                    .is_some_and(|t| now.saturating_duration_since(t) <= LOUDEST_EXPIRY)
                && a.energy() >= own
        })
        .count()
}

/// The dominant speaker of one conference, decided every
/// [`DECISION_INTERVAL`] from the speakers' [`SpeakerActivity`]. `K` names a
/// speaker (the router uses its endpoint keys).
#[derive(Debug, Clone)]
pub struct DominantSpeaker<K> {
    dominant: Option<K>,
    /// Earlier dominant speakers, most recent first, without the current one.
    previous: Vec<K>,
    next_decision: Option<Instant>,
    last_level: Option<Instant>,
    changes: u64,
}

impl<K: Copy + Eq> Default for DominantSpeaker<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Copy + Eq> DominantSpeaker<K> {
    /// No dominant speaker yet, no decision scheduled.
    pub fn new() -> Self {
        Self {
            dominant: None,
            previous: Vec::with_capacity(MAX_PREVIOUS_SPEAKERS),
            next_decision: None,
            last_level: None,
            changes: 0,
        }
    }

    /// The current dominant speaker.
    pub fn dominant(&self) -> Option<K> {
        self.dominant
    }

    /// Earlier dominant speakers, most recent first (at most
    /// [`MAX_PREVIOUS_SPEAKERS`]; never the current one).
    pub fn previous(&self) -> &[K] {
        &self.previous
    }

    /// How many times the dominant speaker changed.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// A speaker sent a level at `now` (after [`SpeakerActivity::handle_level`]):
    /// starts the decisions if they were stopped. Returns the new decision time
    /// when it changed (the caller's timer).
    pub fn handle_level(&mut self, now: Instant) -> Option<Instant> {
        self.last_level = Some(now);
        if self.next_decision.is_some() {
            return None;
        }
        let at = now + DECISION_INTERVAL;
        self.next_decision = Some(at);
        Some(at)
    }

    /// When [`DominantSpeaker::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_decision
    }

    /// A speaker left: it is forgotten (the next decision names someone else
    /// when the dominant one left).
    pub fn remove(&mut self, key: K) {
        if self.dominant == Some(key) {
            self.dominant = None;
        }
        self.previous.retain(|&k| k != key);
    }

    /// Decides, when due, over `speakers` (every speaker of the conference with
    /// its activity, in a stable order; those that never sent a level are
    /// skipped). Returns the new dominant speaker when it changed.
    pub fn handle_timeout<'a, I>(&mut self, now: Instant, speakers: I) -> Option<K>
    where
        I: Iterator<Item = (K, &'a SpeakerActivity)> + Clone,
    {
        let due = self.next_decision?;
        if now < due {
            return None;
        }
        let idle = self
            .last_level
            .is_none_or(|t| now.saturating_duration_since(t) >= DECISIONS_IDLE_AFTER);
        self.next_decision = (!idle).then(|| now + DECISION_INTERVAL);
        let winner = self.decide(now, speakers)?;
        if self.dominant == Some(winner) {
            return None;
        }
        if let Some(old) = self.dominant.replace(winner) {
            self.previous.retain(|&k| k != old && k != winner);
            self.previous.truncate(MAX_PREVIOUS_SPEAKERS - 1);
            self.previous.insert(0, old);
        } else {
            self.previous.retain(|&k| k != winner);
        }
        self.changes += 1;
        Some(winner)
    }

    /// The dominant speaker by the rules of the module documentation.
    fn decide<'a, I>(&self, now: Instant, speakers: I) -> Option<K>
    where
        I: Iterator<Item = (K, &'a SpeakerActivity)> + Clone,
    {
        let speakers = speakers.filter(|(_, a)| a.last_level().is_some());
        let current = self
            .dominant
            .and_then(|d| speakers.clone().find(|&(k, _)| k == d))
            .map(|(k, a)| (k, a.scores(now)));
        let (dominant, d_scores) = match current {
            Some(c) => c,
            None => {
                // Nobody dominates: name the most active speaker that made any
                // sound lately, then let the others challenge it as usual.
                let mut best: Option<(K, SpeechScores)> = None;
                for (k, a) in speakers.clone() {
                    let s = a.scores(now);
                    let better = best.is_none_or(|(_, b)| {
                        (s.long, s.medium, s.immediate) > (b.long, b.medium, b.immediate)
                    });
                    if s.any_activity() && better {
                        best = Some((k, s));
                    }
                }
                best?
            }
        };
        let mut winner = dominant;
        let mut best_c2 = C2;
        for (k, a) in speakers {
            if k == dominant {
                continue;
            }
            let s = a.scores(now);
            let c1 = (s.immediate / d_scores.immediate).ln();
            let c2 = (s.medium / d_scores.medium).ln();
            let c3 = (s.long / d_scores.long).ln();
            if c1 > C1 && c2 > C2 && c3 > C3 && c2 > best_c2 {
                best_c2 = c2;
                winner = k;
            }
        }
        Some(winner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PACKET: Duration = Duration::from_millis(20);
    /// A live microphone in a quiet room (-70 dBov): the speaker's noise floor.
    const NOISE: u8 = 70;
    /// A muted microphone, or digital silence (-127 dBov).
    const MUTED: u8 = 127;

    /// Speech at -20 to -26 dBov, with a breath at the noise floor every 400 ms.
    fn talk(t: u64) -> u8 {
        if t % 400 < 20 {
            NOISE
        } else {
            20 + ((t / 20) % 4) as u8 * 2
        }
    }

    /// A conference of three speakers on a virtual clock: every 20 ms each
    /// speaker's script gives its packet's level (or no packet), and decisions
    /// run when due.
    struct Room {
        now: Instant,
        speakers: [SpeakerActivity; 3],
        ds: DominantSpeaker<usize>,
        /// Every change: (ms since start, new dominant speaker).
        changes: Vec<(u64, usize)>,
        start: Instant,
    }

    impl Room {
        fn new() -> Self {
            let now = Instant::now();
            Self {
                now,
                speakers: [
                    SpeakerActivity::new(),
                    SpeakerActivity::new(),
                    SpeakerActivity::new(),
                ],
                ds: DominantSpeaker::new(),
                changes: Vec::new(),
                start: now,
            }
        }

        fn ms(&self) -> u64 {
            self.now.duration_since(self.start).as_millis() as u64
        }

        /// Runs for `ms`; `levels(t_ms, speaker)` gives each packet's level, `t_ms`
        /// counted from the start of this run.
        fn run(&mut self, ms: u64, levels: impl Fn(u64, usize) -> Option<u8>) {
            let end = self.now + Duration::from_millis(ms);
            let begin = self.ms();
            while self.now < end {
                let t = self.ms() - begin;
                for (i, s) in self.speakers.iter_mut().enumerate() {
                    if let Some(level) = levels(t, i) {
                        s.handle_level(self.now, level);
                        self.ds.handle_level(self.now);
                    }
                }
                if self.ds.poll_timeout().is_some_and(|at| self.now >= at) {
                    let speakers = self.speakers.iter().enumerate();
                    if let Some(k) = self.ds.handle_timeout(self.now, speakers) {
                        let ms = self.ms();
                        self.changes.push((ms, k));
                    }
                }
                self.now += PACKET;
            }
        }

        /// `who` talks, the others' microphones are live but quiet.
        fn talker(who: usize) -> impl Fn(u64, usize) -> Option<u8> {
            move |t, i| Some(if i == who { talk(t) } else { NOISE })
        }
    }

    #[test]
    fn scores_follow_the_paper_and_stay_positive() {
        assert_eq!(binomial(13, 0), 1);
        assert_eq!(binomial(13, 12), 13);
        assert_eq!(binomial(10, 5), 252);
        assert_eq!(SUBBAND, 10);
        // Nothing active: the floor; everything active: large and positive.
        assert_eq!(activity_score(0, 10, 0.5, 47.0), MIN_SCORE);
        let full = activity_score(10, 10, 0.5, 47.0);
        assert!((full - (10.0 * 47.0 - 10.0 * 2f64.ln() - 47f64.ln())).abs() < 1e-9);
        // Monotonic in the active count over the medium and long intervals
        // (not quite over the immediate one, where lambda is small: 12 of 13
        // sub-bands scores below 11, by the binomial term).
        assert!(activity_score(12, 13, 0.5, 0.78) < activity_score(11, 13, 0.5, 0.78));
        for (n, lambda) in [(5u32, 24.0), (10, 47.0)] {
            for v in 1..n {
                assert!(activity_score(v + 1, n, 0.5, lambda) >= activity_score(v, n, 0.5, lambda));
            }
        }
    }

    #[test]
    fn levels_below_the_noise_floor_are_not_activity() {
        let now = Instant::now();
        let mut s = SpeakerActivity::new();
        assert!(!s.scores(now).any_activity());
        s.handle_level(now, NOISE);
        assert!(!s.scores(now).any_activity(), "the floor itself");
        s.handle_level(now + PACKET, 20);
        assert!(
            s.scores(now + PACKET).immediate > MIN_SCORE,
            "speech above it"
        );
        // 40 ms without a packet counts as one silent level.
        assert_eq!(s.scores(now + 3 * PACKET).immediate, MIN_SCORE);
    }

    #[test]
    fn one_talker_is_named_at_the_first_decision_and_decisions_run_every_300ms() {
        let mut room = Room::new();
        room.run(100, Room::talker(0));
        let first = room
            .ds
            .poll_timeout()
            .expect("scheduled by the first level");
        assert_eq!(first, room.start + DECISION_INTERVAL);
        room.run(300, Room::talker(0));
        assert_eq!(room.changes, [(300, 0)]);
        assert_eq!(room.ds.dominant(), Some(0));
        assert!(room.ds.previous().is_empty());
        assert_eq!(
            room.ds.poll_timeout(),
            Some(room.start + 2 * DECISION_INTERVAL)
        );
    }

    #[test]
    fn silence_names_nobody() {
        let mut room = Room::new();
        room.run(2000, |_, i| Some(if i == 0 { MUTED } else { NOISE }));
        assert!(room.changes.is_empty());
        assert_eq!(room.ds.dominant(), None);
    }

    #[test]
    fn the_dominant_speaker_follows_a_then_b() {
        let mut room = Room::new();
        // A talks for 3 s while B and C are quiet.
        room.run(3000, Room::talker(0));
        assert_eq!(room.changes, [(300, 0)]);
        // Then A is quiet and B talks: B within about a second.
        let b_starts = room.ms();
        room.run(3000, Room::talker(1));
        assert_eq!(room.changes.len(), 2, "{:?}", room.changes);
        let (at, who) = room.changes[1];
        assert_eq!(who, 1);
        let after = at - b_starts;
        assert!(after <= 1200, "switched to B {after} ms after B started");
        assert!(
            after >= 300,
            "not before B's talk outweighs A's last second"
        );
        assert_eq!(room.ds.previous(), [0]);
        assert_eq!(room.ds.changes(), 2);
    }

    #[test]
    fn a_speaker_who_mutes_or_stops_sending_is_replaced_too() {
        for stop in [Some(MUTED), None] {
            let mut room = Room::new();
            room.run(2000, Room::talker(0));
            assert_eq!(room.ds.dominant(), Some(0));
            // A mutes (level 127), or its stream stops altogether (DTX, or a
            // dropped microphone): idle time counts as silence.
            let b_starts = room.ms();
            room.run(3000, |t, i| match i {
                0 => stop,
                1 => Some(talk(t)),
                _ => Some(NOISE),
            });
            let (at, who) = *room.changes.last().expect("a change");
            assert_eq!(who, 1, "{stop:?}");
            assert!(at - b_starts <= 1200, "{stop:?}: {:?}", room.changes);
        }
    }

    #[test]
    fn short_noise_bursts_do_not_switch() {
        let mut room = Room::new();
        room.run(2000, Room::talker(0));
        assert_eq!(room.changes, [(300, 0)]);
        // A keeps talking with a 200 ms pause every second; B coughs 60 ms (3
        // packets, -10 dBov) every 500 ms, half of them into A's pauses; C clicks.
        room.run(10_000, |t, i| {
            let phase = t % 1000;
            Some(match i {
                0 if phase < 800 => talk(t),
                1 if t % 500 >= 850 - 500 && t % 500 < 910 - 500 => 10,
                2 if t % 700 == 0 => 0,
                _ => NOISE,
            })
        });
        assert_eq!(room.changes, [(300, 0)], "no switch on bursts");
        // Even with A quiet, B's bursts never make a fully active 100 ms block.
        room.run(5000, |t, i| {
            Some(if i == 1 && t % 500 < 60 { 10 } else { NOISE })
        });
        assert_eq!(room.changes, [(300, 0)]);
        // A word of 300 ms does.
        room.run(1000, |t, i| {
            Some(if i == 1 && t < 300 { talk(t) } else { NOISE })
        });
        assert_eq!(room.ds.dominant(), Some(1), "{:?}", room.changes);
    }

    #[test]
    fn silence_keeps_the_last_speaker() {
        let mut room = Room::new();
        room.run(2000, Room::talker(1));
        assert_eq!(room.ds.dominant(), Some(1));
        room.run(5000, |_, i| Some(if i == 0 { MUTED } else { NOISE }));
        assert_eq!(room.ds.dominant(), Some(1));
        assert_eq!(room.changes.len(), 1);
        // Nobody sends at all: decisions stop after a while, B stays.
        room.run(20_000, |_, _| None);
        assert_eq!(room.ds.poll_timeout(), None, "decisions stopped when idle");
        assert_eq!(room.ds.dominant(), Some(1));
        // The next level starts them again.
        room.run(1500, Room::talker(2));
        assert!(room.ds.poll_timeout().is_some());
        assert_eq!(room.ds.dominant(), Some(2));
        assert_eq!(room.ds.previous(), [1]);
    }

    #[test]
    fn steady_background_noise_is_not_speech() {
        let mut room = Room::new();
        room.run(2000, Room::talker(0));
        // A pauses; B has a fan at a steady -50 dBov: its own noise floor.
        room.run(5000, |_, i| Some(if i == 1 { 50 } else { NOISE }));
        assert_eq!(room.ds.dominant(), Some(0));
        assert_eq!(room.changes.len(), 1);
    }

    #[test]
    fn of_two_challengers_the_stronger_wins() {
        let mut room = Room::new();
        room.run(2000, Room::talker(0));
        // A stops; B talks steadily, C only in the first 60 ms of every 100 ms.
        room.run(3000, |t, i| {
            Some(match i {
                1 => talk(t),
                2 if t % 100 < 60 => talk(t),
                _ => NOISE,
            })
        });
        assert_eq!(room.ds.dominant(), Some(1), "{:?}", room.changes);
        assert_eq!(room.changes.len(), 2, "{:?}", room.changes);
    }

    #[test]
    fn a_dominant_speaker_who_leaves_is_replaced_and_forgotten() {
        let mut room = Room::new();
        room.run(2000, Room::talker(0));
        room.run(3000, Room::talker(1));
        assert_eq!(room.ds.previous(), [0]);
        room.ds.remove(0);
        assert!(room.ds.previous().is_empty());
        // B leaves: its activity goes with it.
        room.ds.remove(1);
        room.speakers[1] = SpeakerActivity::new();
        assert_eq!(room.ds.dominant(), None);
        let before = room.changes.len();
        room.run(1000, |t, i| match i {
            1 => None,
            2 => Some(talk(t)),
            _ => Some(NOISE),
        });
        assert_eq!(room.ds.dominant(), Some(2));
        assert_eq!(room.changes.len(), before + 1, "{:?}", room.changes);
    }

    #[test]
    fn the_loudest_rank_follows_smoothed_energy_above_each_noise_floor() {
        let mut room = Room::new();
        // Everyone's floor at -70 dBov; then A talks at -20, B at -40, C quiet.
        room.run(200, |_, _| Some(NOISE));
        room.run(200, |_, i| Some([20, 40, NOISE][i]));
        let now = room.now;
        let rank =
            |room: &Room, who: usize| loudest_rank(who, now, room.speakers.iter().enumerate());
        assert!(room.speakers[0].energy() > room.speakers[1].energy());
        assert_eq!(room.speakers[2].energy(), 0, "at its floor: no energy");
        assert_eq!([rank(&room, 0), rank(&room, 1), rank(&room, 2)], [0, 1, 2]);
        // A stops sending: after 150 ms it no longer outranks anyone.
        room.run(200, |_, i| (i > 0).then_some([20, 40, NOISE][i]));
        let now = room.now;
        assert_eq!(loudest_rank(1, now, room.speakers.iter().enumerate()), 0);
        assert_eq!(
            loudest_rank(7, now, room.speakers.iter().enumerate()),
            0,
            "unknown"
        );
    }

    #[test]
    fn the_previous_speakers_are_bounded_and_most_recent_first() {
        let mut ds = DominantSpeaker::<usize>::new();
        let mut speakers: Vec<SpeakerActivity> = (0..MAX_PREVIOUS_SPEAKERS + 3)
            .map(|_| SpeakerActivity::new())
            .collect();
        let start = Instant::now();
        let mut now = start;
        for turn in 0..speakers.len() {
            for _ in 0..150 {
                let t = now.duration_since(start).as_millis() as u64;
                for (i, s) in speakers.iter_mut().enumerate() {
                    s.handle_level(now, if i == turn { talk(t) } else { NOISE });
                }
                ds.handle_level(now);
                if ds.poll_timeout().is_some_and(|at| now >= at) {
                    ds.handle_timeout(now, speakers.iter().enumerate());
                }
                now += PACKET;
            }
            assert_eq!(ds.dominant(), Some(turn));
        }
        let expected: Vec<usize> = (2..speakers.len() - 1).rev().collect();
        assert_eq!(ds.previous(), expected);
        assert_eq!(ds.previous().len(), MAX_PREVIOUS_SPEAKERS);
    }
}
