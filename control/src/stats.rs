//! `/colibri/stats`: the media plane's counters in jitsi-videobridge's shape.
//!
//! The media plane keeps cumulative counters; a background task samples them at a
//! fixed interval and the rates are computed from the last two samples. As in jvb,
//! "download" is what the bridge receives and "upload" what it sends.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::media::MediaStats;
use crate::process::ProcessStats;
use crate::ratelimit::RateLimitView;
use crate::registry::{CONFERENCE_SIZE_BUCKETS, Totals};

/// Rates computed from two samples of [`MediaStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rates {
    /// Packets per second received by the bridge.
    pub packet_rate_download: u64,
    /// Packets per second sent by the bridge.
    pub packet_rate_upload: u64,
    /// kbit/s received by the bridge.
    pub bit_rate_download: u64,
    /// kbit/s sent by the bridge.
    pub bit_rate_upload: u64,
}

impl Rates {
    /// Rates between two samples taken `elapsed` apart. Counters that went
    /// backwards (a media plane restart) count as zero.
    pub fn between(prev: &MediaStats, cur: &MediaStats, elapsed: Duration) -> Rates {
        let secs = elapsed.as_secs_f64();
        if secs <= 0.0 {
            return Rates::default();
        }
        let per_sec = |a: u64, b: u64| (b.saturating_sub(a) as f64 / secs).round() as u64;
        let kbps =
            |a: u64, b: u64| (b.saturating_sub(a) as f64 * 8.0 / 1000.0 / secs).round() as u64;
        Rates {
            packet_rate_download: per_sec(prev.packets_received, cur.packets_received),
            packet_rate_upload: per_sec(prev.packets_sent, cur.packets_sent),
            bit_rate_download: kbps(prev.bytes_received, cur.bytes_received),
            bit_rate_upload: kbps(prev.bytes_sent, cur.bytes_sent),
        }
    }
}

/// The last sample and the rates derived from it.
#[derive(Default)]
pub(crate) struct Sampler {
    state: Mutex<SamplerState>,
}

#[derive(Default)]
struct SamplerState {
    last: Option<(Instant, MediaStats)>,
    rates: Rates,
}

impl Sampler {
    /// Records a sample taken at `at`.
    pub(crate) fn record(&self, at: Instant, stats: MediaStats) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((t0, prev)) = &st.last {
            st.rates = Rates::between(prev, &stats, at.saturating_duration_since(*t0));
        }
        st.last = Some((at, stats));
    }

    /// The latest rates (zero until two samples exist).
    pub(crate) fn rates(&self) -> Rates {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).rates
    }
}

/// What the control plane itself knows, beside the media plane's counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ControlView {
    /// Drain is on: new conferences are refused.
    pub(crate) drain: bool,
    /// A graceful shutdown is under way: every join is refused.
    pub(crate) graceful_shutdown: bool,
    /// Joins that opened a room that had no endpoint, since start.
    pub(crate) conferences_created: u64,
    /// `load.max_packet_rate`.
    pub(crate) max_packet_rate: u64,
    /// The media plane's [`MediaPlane::health`](crate::media::MediaPlane::health) is `Ok`.
    pub(crate) healthy: bool,
    /// Conferences completed, their lifetimes, endpoints admitted (the registry's).
    pub(crate) totals: Totals,
    /// Live conferences by endpoint count (jvb's `conference_sizes`).
    pub(crate) conference_sizes: [u64; CONFERENCE_SIZE_BUCKETS],
    /// Joins refused since start, by error code, in code order.
    pub(crate) joins_refused: Vec<(&'static str, u64)>,
    /// The public listener's rate limits: requests refused, addresses tracked.
    pub(crate) rate_limits: RateLimitView,
    /// The process's own resource use (`None` without procfs).
    pub(crate) process: Option<ProcessStats>,
}

/// jitsi-videobridge's `stress_level`: the packet rate (received plus sent)
/// over the rate at which the bridge counts as fully loaded. Above 1.0 means
/// overloaded; 0.0 when `max_packet_rate` is 0.
pub(crate) fn stress_level(rates: &Rates, max_packet_rate: u64) -> f64 {
    if max_packet_rate == 0 {
        return 0.0;
    }
    let rate = rates
        .packet_rate_download
        .saturating_add(rates.packet_rate_upload);
    rate as f64 / max_packet_rate as f64
}

/// The `/colibri/stats` document.
///
/// `endpoints_sending_audio` and `endpoints_sending_video` count endpoints whose
/// audio (video) reached the bridge within the last 3 seconds; `inactive_conferences`
/// counts conferences where nobody's did, and `inactive_endpoints` their endpoints
/// (jitsi-videobridge's meaning of both).
///
/// jvb keys for what ringbridge does not have or measure yet carry jvb's own
/// "nothing measured" value, so that scripts doing arithmetic on them keep
/// working: `rtt_aggregate`, `jitter_aggregate`, `loss_rate_download` and
/// `loss_rate_upload` are `0` (the media plane does not aggregate RTT, jitter
/// or loss yet), `octo_endpoints` and `octo_conferences` are `0` (no Octo
/// relays: every endpoint is local), `region` and `relay_id` are `null` (jvb
/// leaves them out when no relay region is configured).
pub(crate) fn stats_json(
    stats: &MediaStats,
    rates: &Rates,
    now: SystemTime,
    view: &ControlView,
) -> Value {
    let mut doc = json!({
        "conferences": stats.conferences,
        "endpoints": stats.endpoints,
        "participants": stats.endpoints,
        "largest_conference": stats.largest_conference,
        "total_conferences_created": view.conferences_created,
        "inactive_conferences": stats.shard_sum(|s| s.inactive_conferences),
        "inactive_endpoints": stats.shard_sum(|s| s.inactive_endpoints),
        "endpoints_sending_audio": stats.shard_sum(|s| s.endpoints_sending_audio),
        "endpoints_sending_video": stats.shard_sum(|s| s.endpoints_sending_video),
        "healthy": view.healthy,
        "packet_rate_download": rates.packet_rate_download,
        "packet_rate_upload": rates.packet_rate_upload,
        "bit_rate_download": rates.bit_rate_download,
        "bit_rate_upload": rates.bit_rate_upload,
        "total_packets_received": stats.packets_received,
        "total_packets_sent": stats.packets_sent,
        "total_bytes_received": stats.bytes_received,
        "total_bytes_sent": stats.bytes_sent,
        "stress_level": stress_level(rates, view.max_packet_rate),
        "drain": view.drain,
        "graceful_shutdown": view.graceful_shutdown,
        "version": env!("CARGO_PKG_VERSION"),
        "current_timestamp": timestamp(now),
        "io_backend": stats.io_backend,
        "gso": stats.gso,
        "shards": stats.shards.len(),
        "shard_cores": stats.shards.iter().map(|s| s.core).collect::<Vec<_>>(),
    });
    if let (Value::Object(doc), Value::Object(more)) = (&mut doc, jvb_lifetime_keys(stats, view)) {
        doc.extend(more);
    }
    doc
}

/// jvb's conference lifetime, ICE, quality, thread and Octo keys.
fn jvb_lifetime_keys(stats: &MediaStats, view: &ControlView) -> Value {
    json!({
        "total_conferences_completed": view.totals.conferences_completed,
        "total_conference_seconds": view.totals.conference_seconds,
        "total_participants": view.totals.participants,
        "conference_sizes": view.conference_sizes,
        "total_ice_succeeded": stats.shard_sum(|s| s.ice_successes),
        "total_ice_failed": stats.shard_sum(|s| s.ice_failures),
        "total_rtx_received": stats.shard_sum(|s| s.rtx_received),
        "total_nacks_received": stats.shard_sum(|s| s.nacks_received),
        "total_retransmissions_requested": stats.shard_sum(|s| s.retransmissions_requested),
        "total_retransmissions_sent": stats.shard_sum(|s| s.retransmissions_sent),
        "total_retransmissions_suppressed": stats.shard_sum(|s| s.retransmissions_suppressed),
        "total_retransmissions_held": stats.shard_sum(|s| s.retransmissions_held),
        "total_cache_hits": stats.shard_sum(|s| s.cache_hits),
        "total_cache_misses": stats.shard_sum(|s| s.cache_misses),
        "total_nacks_sent": stats.shard_sum(|s| s.nacks_sent),
        "total_keyframe_requests_received": stats.shard_sum(|s| s.keyframe_requests_received),
        "total_keyframe_requests_sent": stats.shard_sum(|s| s.keyframe_requests_sent),
        "total_keyframe_requests_throttled": stats.shard_sum(|s| s.keyframe_requests_throttled),
        "total_twcc_feedback_sent": stats.shard_sum(|s| s.twcc_feedback_sent),
        "total_remb_sent": stats.shard_sum(|s| s.remb_sent),
        "total_twcc_feedback_received": stats.shard_sum(|s| s.twcc_feedback_received),
        "total_probe_packets_sent": stats.shard_sum(|s| s.probe_packets_sent),
        "total_sender_reports_sent": stats.shard_sum(|s| s.sender_reports_sent),
        "total_send_backlogged": stats.shard_sum(|s| s.send_backlogged),
        "total_dominant_speaker_changes": stats.shard_sum(|s| s.dominant_speaker_changes),
        "rtx_cache_memory_bytes": stats.shard_sum(|s| s.cache_memory_bytes),
        "rtt_aggregate": 0.0,
        "jitter_aggregate": 0.0,
        "loss_rate_download": 0.0,
        "loss_rate_upload": 0.0,
        "threads": view.process.map(|p| p.threads),
        "octo_endpoints": 0,
        "octo_conferences": 0,
        "region": Value::Null,
        "relay_id": Value::Null,
    })
}

/// jvb's `current_timestamp` format, in UTC: `2024-01-31 12:34:56.789`.
pub(crate) fn timestamp(now: SystemTime) -> String {
    let d = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{day:02} {:02}:{:02}:{:02}.{:03}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day); Howard Hinnant's algorithm.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::ShardSnapshot;

    #[test]
    fn rates_from_two_samples() {
        let a = MediaStats {
            packets_received: 1000,
            packets_sent: 3000,
            bytes_received: 1_000_000,
            bytes_sent: 5_000_000,
            ..MediaStats::default()
        };
        let b = MediaStats {
            packets_received: 1500,
            packets_sent: 4000,
            bytes_received: 1_250_000,
            bytes_sent: 5_500_000,
            ..MediaStats::default()
        };
        let r = Rates::between(&a, &b, Duration::from_secs(2));
        assert_eq!(
            r,
            Rates {
                packet_rate_download: 250,
                packet_rate_upload: 500,
                bit_rate_download: 1000,
                bit_rate_upload: 2000,
            }
        );
        // A restart (counters going down) does not produce huge numbers.
        assert_eq!(
            Rates::between(&b, &a, Duration::from_secs(1)),
            Rates::default()
        );
        assert_eq!(Rates::between(&a, &b, Duration::ZERO), Rates::default());
    }

    #[test]
    fn sampler_uses_last_two_samples() {
        let s = Sampler::default();
        let t0 = Instant::now();
        s.record(t0, MediaStats::default());
        assert_eq!(s.rates(), Rates::default());
        let b = MediaStats {
            packets_received: 100,
            ..MediaStats::default()
        };
        s.record(t0 + Duration::from_secs(1), b.clone());
        assert_eq!(s.rates().packet_rate_download, 100);
        s.record(t0 + Duration::from_secs(2), b);
        assert_eq!(s.rates().packet_rate_download, 0);
    }

    #[test]
    fn stress_is_packet_rate_over_the_maximum() {
        let r = Rates {
            packet_rate_download: 10_000,
            packet_rate_upload: 15_000,
            ..Rates::default()
        };
        assert_eq!(stress_level(&r, 50_000), 0.5);
        assert_eq!(stress_level(&r, 0), 0.0);
        assert_eq!(stress_level(&Rates::default(), 50_000), 0.0);
    }

    #[test]
    fn stats_document_has_the_jvb_keys() {
        let mut conference_sizes = [0; CONFERENCE_SIZE_BUCKETS];
        conference_sizes[3] = 2;
        let view = ControlView {
            drain: true,
            graceful_shutdown: false,
            conferences_created: 4,
            max_packet_rate: 1000,
            healthy: true,
            totals: Totals {
                conferences_completed: 2,
                conference_seconds: 125,
                participants: 9,
            },
            conference_sizes,
            joins_refused: Vec::new(),
            rate_limits: RateLimitView::default(),
            process: Some(ProcessStats {
                threads: 5,
                ..ProcessStats::default()
            }),
        };
        let rates = Rates {
            packet_rate_download: 500,
            ..Rates::default()
        };
        let media = MediaStats {
            shards: vec![
                ShardSnapshot {
                    inactive_conferences: 1,
                    inactive_endpoints: 1,
                    ice_successes: 3,
                    ice_failures: 1,
                    nacks_sent: 4,
                    ..ShardSnapshot::default()
                },
                ShardSnapshot {
                    index: 1,
                    inactive_conferences: 1,
                    inactive_endpoints: 3,
                    ice_successes: 4,
                    nacks_sent: 5,
                    ..ShardSnapshot::default()
                },
            ],
            ..MediaStats::default()
        };
        let doc = stats_json(&media, &rates, UNIX_EPOCH, &view);
        for key in [
            "conferences",
            "endpoints",
            "participants",
            "largest_conference",
            "total_conferences_created",
            "total_packets_received",
            "total_packets_sent",
            "inactive_conferences",
            "inactive_endpoints",
            "endpoints_sending_audio",
            "endpoints_sending_video",
            "healthy",
            "current_timestamp",
            "stress_level",
            "drain",
            "graceful_shutdown",
            "packet_rate_download",
            "packet_rate_upload",
            "bit_rate_download",
            "bit_rate_upload",
            "version",
            "total_conferences_completed",
            "total_conference_seconds",
            "total_participants",
            "conference_sizes",
            "total_ice_succeeded",
            "total_ice_failed",
            "rtt_aggregate",
            "jitter_aggregate",
            "loss_rate_download",
            "loss_rate_upload",
            "threads",
            "region",
            "relay_id",
            "octo_endpoints",
            "octo_conferences",
        ] {
            assert!(doc.get(key).is_some(), "missing {key}: {doc}");
        }
        assert_eq!(doc["total_conferences_completed"], 2);
        assert_eq!(doc["total_conference_seconds"], 125);
        assert_eq!(doc["total_participants"], 9);
        let sizes = doc["conference_sizes"].as_array().expect("an array");
        assert_eq!(sizes.len(), 22);
        assert_eq!(sizes[3], 2);
        assert_eq!(doc["total_ice_succeeded"], 7);
        assert_eq!(doc["total_ice_failed"], 1);
        assert_eq!(doc["total_nacks_sent"], 9, "summed over shards");
        for key in [
            "total_nacks_received",
            "total_retransmissions_sent",
            "total_cache_hits",
            "total_cache_misses",
            "total_keyframe_requests_received",
            "total_keyframe_requests_sent",
            "total_twcc_feedback_sent",
            "total_remb_sent",
            "total_twcc_feedback_received",
            "rtx_cache_memory_bytes",
        ] {
            assert!(doc.get(key).is_some(), "missing {key}");
        }
        assert_eq!(doc["threads"], 5);
        // jq '.participants - .octo_endpoints' must work, as on jvb.
        assert!(doc["octo_endpoints"].is_u64());
        assert!(doc["relay_id"].is_null() && doc["region"].is_null());
        assert!(doc["loss_rate_download"].is_f64() && doc["rtt_aggregate"].is_f64());
        assert_eq!(doc["stress_level"], 0.5);
        assert_eq!(doc["drain"], true);
        assert_eq!(doc["total_conferences_created"], 4);
        assert_eq!(doc["inactive_conferences"], 2);
        assert_eq!(doc["inactive_endpoints"], 4);
        assert_eq!(doc["healthy"], true);
    }

    #[test]
    fn timestamps_in_jvb_format() {
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01 00:00:00.000");
        let t = UNIX_EPOCH + Duration::from_millis(1_709_210_096_789);
        assert_eq!(timestamp(t), "2024-02-29 12:34:56.789");
    }
}
