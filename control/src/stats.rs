//! `/colibri/stats`: the media plane's counters in jitsi-videobridge's shape.
//!
//! The media plane keeps cumulative counters; a background task samples them at a
//! fixed interval and the rates are computed from the last two samples. As in jvb,
//! "download" is what the bridge receives and "upload" what it sends.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::media::MediaStats;

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

/// The `/colibri/stats` document.
pub(crate) fn stats_json(stats: &MediaStats, rates: &Rates, now: SystemTime) -> Value {
    json!({
        "conferences": stats.conferences,
        "endpoints": stats.endpoints,
        "participants": stats.endpoints,
        "largest_conference": stats.largest_conference,
        "packet_rate_download": rates.packet_rate_download,
        "packet_rate_upload": rates.packet_rate_upload,
        "bit_rate_download": rates.bit_rate_download,
        "bit_rate_upload": rates.bit_rate_upload,
        "total_packets_received": stats.packets_received,
        "total_packets_sent": stats.packets_sent,
        "total_bytes_received": stats.bytes_received,
        "total_bytes_sent": stats.bytes_sent,
        "stress_level": 0.0,
        "drain": false,
        "graceful_shutdown": false,
        "version": env!("CARGO_PKG_VERSION"),
        "current_timestamp": timestamp(now),
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
    fn timestamps_in_jvb_format() {
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01 00:00:00.000");
        let t = UNIX_EPOCH + Duration::from_millis(1_709_210_096_789);
        assert_eq!(timestamp(t), "2024-02-29 12:34:56.789");
    }
}
