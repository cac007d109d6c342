//! What a receiver's video allocation may spend while a queue stands on its
//! path: the estimate, less what drains the queue within [`DRAIN_WITHIN`].
//!
//! Why: the delay-based estimate after an overuse is 0.85 x what arrives,
//! which leaves 15% of the link to drain whatever queue the overuse built.
//! Behind a 1 Mbit/s `tbf` (200 ms latency, 16 KB burst: 330 ms of queue)
//! that is 2 s for a full queue, and the allocation does not even spend all
//! of the estimate on video (audio and retransmissions come on top). Measured
//! with Chromium: after the capped page's switch down, its link stood at
//! 250-320 ms of queue for 1.5 s, with 20-35% lost from each feedback, and
//! one stream froze 2 s while its frames and their retransmissions waited in
//! it. A queue that stands is lost time for every packet in it, key frames of
//! the layer switched to first of all.
//!
//! So while the link is congested (losing, or the queue growing past 100 ms:
//! [`SendSideBwe::congested`](super::SendSideBwe::congested)) and the
//! feedback shows at least [`DRAIN_FROM`] of queue, the budget is the
//! estimate less the backlog (the queue's delay times the rate that arrives
//! through it) spread over [`DRAIN_WITHIN`]. A delay that stands without
//! loss is left alone: a longer route reads the same, and no rate drains
//! it. As the queue drains the
//! budget comes back; the allocation's upgrade hold
//! ([`UpgradeHold`](super::super::upgrade_hold::UpgradeHold)) keeps it from
//! climbing back before the rise has lasted. Pure: no clock, no state.

use std::time::Duration;

/// The least queue that lowers the budget: the queue past which a link
/// counts as congested ([`super::CONGESTED_QUEUE`]). An idle path reads
/// 0-10 ms, and uncapped Chromium pages on a busy 2-core machine 0-14 ms.
pub const DRAIN_FROM: Duration = super::CONGESTED_QUEUE;

/// How soon the budget means a queue to be gone.
pub const DRAIN_WITHIN: Duration = Duration::from_millis(500);

/// The most of the estimate the drain takes: half. The allocation keeps a
/// receiver's watched sources on their smallest layers while those add up to
/// at most twice its budget
/// ([`KEEP_THROUGH_DIP`](super::super::allocation::KEEP_THROUGH_DIP)), so a
/// budget under half the estimate suspends sources the link carries. Measured
/// with Chromium: a drain to 57 kbit/s off a 667 kbit/s estimate (301 ms of
/// queue at 1 Mbit/s) suspended one of the capped page's two 180p streams for
/// 5 s.
pub const DRAIN_AT_MOST: f64 = 0.5;

/// The budget when the estimate is `estimate_bps`, the queue toward the
/// receiver holds `queue`, and `arriving_bps` arrives through it (the
/// acknowledged bitrate; `None`: not known yet, the estimate stands). Never
/// below [`DRAIN_AT_MOST`] of the estimate nor `floor_bps`, nor above the
/// estimate.
pub fn drain_budget(
    estimate_bps: u64,
    queue: Duration,
    arriving_bps: Option<u64>,
    floor_bps: u64,
) -> u64 {
    let Some(arriving) = arriving_bps else {
        return estimate_bps;
    };
    if queue < DRAIN_FROM {
        return estimate_bps;
    }
    let backlog_bits = arriving as f64 * queue.as_secs_f64();
    let drain_bps = (backlog_bits / DRAIN_WITHIN.as_secs_f64()) as u64;
    let least = ((estimate_bps as f64 * (1.0 - DRAIN_AT_MOST)) as u64).max(floor_bps);
    estimate_bps
        .saturating_sub(drain_bps)
        .max(least.min(estimate_bps))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn without_a_standing_queue_the_budget_is_the_estimate() {
        assert_eq!(
            drain_budget(850_000, MS(0), Some(1_000_000), 30_000),
            850_000
        );
        assert_eq!(
            drain_budget(850_000, MS(49), Some(1_000_000), 30_000),
            850_000
        );
        assert_eq!(drain_budget(850_000, MS(300), None, 30_000), 850_000);
    }

    #[test]
    fn a_standing_queue_leaves_room_to_drain_it_within_half_a_second() {
        // 1 Mbit/s arriving through 100 ms of queue: 100 kbit to drain in
        // 500 ms takes 200 kbit/s off an 850 kbit/s estimate.
        assert_eq!(
            drain_budget(850_000, MS(100), Some(1_000_000), 30_000),
            650_000
        );
        // A 50 ms queue on the same link: 100 kbit/s.
        assert_eq!(
            drain_budget(850_000, MS(50), Some(1_000_000), 30_000),
            750_000
        );
    }

    #[test]
    fn the_drain_takes_at_most_half_the_estimate_and_keeps_to_the_floor() {
        // A full token bucket's 300 ms would take 600 kbit/s: half of 850.
        assert_eq!(
            drain_budget(850_000, MS(300), Some(1_000_000), 30_000),
            425_000
        );
        assert_eq!(
            drain_budget(40_000, MS(330), Some(1_000_000), 30_000),
            30_000
        );
        assert_eq!(
            drain_budget(20_000, MS(330), Some(1_000_000), 30_000),
            20_000
        );
    }
}
