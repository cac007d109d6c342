//! A per-source packet cache for answering NACKs: a ring of plain
//! (decrypted) RTP packets indexed by extended sequence number.
//!
//! All memory is taken at the first packet ([`RtxCache::insert`], once): one byte arena
//! of `capacity * max_packet_len` bytes and one small entry per slot; a source that never
//! sends (a join without media yet, an audio-only participant's unused camera) costs
//! none of it, and nothing is allocated after the first packet. A packet lives in slot `ext_seq % capacity` until a
//! packet `capacity` sequence numbers later takes its place, so the cache holds the last
//! `capacity` sequence numbers whatever the packet sizes, and a lookup is exact: the slot
//! must hold that very extended sequence number, never one a cycle earlier.

use std::time::{Duration, Instant};

/// Sizing of an [`RtxCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtxCacheConfig {
    /// The highest bitrate the source is expected to send, in bits per second; with
    /// `mean_packet_len` it gives the packet rate the ring must hold for `min_duration`.
    /// Default: 2,500,000 (a 720p camera).
    pub max_bitrate_bps: u64,
    /// The packet size used to turn `max_bitrate_bps` into a packet rate. Default: 1000.
    pub mean_packet_len: usize,
    /// How long a packet stays at least, at `max_bitrate_bps`. Default: 1 s.
    pub min_duration: Duration,
    /// The fewest packets the ring holds, whatever the bitrate. Default: 512.
    pub min_packets: usize,
    /// The largest packet stored (header included); longer ones are refused and counted.
    /// Default: 1280 (browsers keep RTP packets under 1200 bytes plus SRTP overhead).
    pub max_packet_len: usize,
}

impl Default for RtxCacheConfig {
    fn default() -> Self {
        RtxCacheConfig {
            max_bitrate_bps: 2_500_000,
            mean_packet_len: 1000,
            min_duration: Duration::from_secs(1),
            min_packets: 512,
            max_packet_len: 1280,
        }
    }
}

impl RtxCacheConfig {
    /// The number of packets a cache with this configuration holds: `min_packets`, or the
    /// packets `max_bitrate_bps` sends in `min_duration`, whichever is more.
    pub fn capacity(&self) -> usize {
        let bits_per_packet = 8 * self.mean_packet_len.max(1) as u128;
        let per_duration = (u128::from(self.max_bitrate_bps) * self.min_duration.as_micros())
            .div_ceil(bits_per_packet * 1_000_000);
        let per_duration = usize::try_from(per_duration).unwrap_or(usize::MAX);
        // A ring of at least one slot; an absurd configuration is capped, not honoured.
        per_duration.max(self.min_packets).clamp(1, 1 << 16)
    }
}

/// Why a packet was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RtxCacheError {
    /// Longer than [`RtxCacheConfig::max_packet_len`].
    #[error("packet of {0} bytes exceeds the cache's slot size")]
    TooLarge(usize),
    /// Its slot already holds a newer packet: it is older than the ring.
    #[error("packet older than the cache")]
    TooOld,
}

/// Counters of one cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RtxCacheStats {
    /// Packets stored (jitsi-videobridge's packet cache `numInserts`).
    pub inserted: u64,
    /// Packets refused because they exceed the slot size.
    pub too_large: u64,
    /// Packets refused because they are older than the ring.
    pub too_old: u64,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    ext_seq: u64,
    len: u16,
    at: Instant,
}

/// The packet cache of one video source. See the module documentation.
#[derive(Debug)]
pub struct RtxCache {
    /// `capacity * slot_len` bytes from the first packet on; empty before.
    arena: Vec<u8>,
    /// `capacity` entries from the first packet on; empty before.
    entries: Vec<Option<Entry>>,
    capacity: usize,
    slot_len: usize,
    highest: Option<u64>,
    stats: RtxCacheStats,
}

impl RtxCache {
    /// A cache sized by `config`; its memory is allocated at the first packet.
    pub fn new(config: RtxCacheConfig) -> Self {
        let capacity = config.capacity();
        let slot_len = config.max_packet_len.clamp(12, usize::from(u16::MAX));
        RtxCache {
            arena: Vec::new(),
            entries: Vec::new(),
            capacity,
            slot_len,
            highest: None,
            stats: RtxCacheStats::default(),
        }
    }

    /// How many sequence numbers the ring spans.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The memory the cache holds once it stored a packet, in bytes (its bound: fixed
    /// from the first packet on).
    pub fn memory_bytes(&self) -> usize {
        core::mem::size_of::<Self>()
            + self.capacity * self.slot_len
            + self.capacity * core::mem::size_of::<Option<Entry>>()
    }

    /// The memory the cache holds now, in bytes: [`memory_bytes`](Self::memory_bytes)
    /// from the first packet on, only the struct before.
    pub fn allocated_bytes(&self) -> usize {
        core::mem::size_of::<Self>()
            + self.arena.len()
            + self.entries.len() * core::mem::size_of::<Option<Entry>>()
    }

    /// The counters.
    pub fn stats(&self) -> RtxCacheStats {
        self.stats
    }

    /// The highest extended sequence number stored so far.
    pub fn highest(&self) -> Option<u64> {
        self.highest
    }

    fn index(&self, ext_seq: u64) -> usize {
        // The remainder is below `capacity` (at least 1), a usize.
        (ext_seq % self.capacity as u64) as usize
    }

    /// Stores the plain RTP packet `packet` whose extended sequence number is `ext_seq`
    /// (from [`super::super::rtp::SeqUnwrapper`]), received at `now`. A packet already
    /// stored under the same number is replaced.
    pub fn insert(
        &mut self,
        now: Instant,
        ext_seq: u64,
        packet: &[u8],
    ) -> Result<(), RtxCacheError> {
        if packet.len() > self.slot_len {
            self.stats.too_large += 1;
            return Err(RtxCacheError::TooLarge(packet.len()));
        }
        if self.entries.is_empty() {
            // The first packet: the whole ring, once.
            self.arena = vec![0u8; self.capacity * self.slot_len];
            self.entries = vec![None; self.capacity];
        }
        let i = self.index(ext_seq);
        if let Some(e) = &self.entries[i]
            && e.ext_seq > ext_seq
        {
            self.stats.too_old += 1;
            return Err(RtxCacheError::TooOld);
        }
        let start = i * self.slot_len;
        self.arena[start..start + packet.len()].copy_from_slice(packet);
        self.entries[i] = Some(Entry {
            ext_seq,
            // At most `slot_len`, itself at most u16::MAX.
            len: packet.len() as u16,
            at: now,
        });
        self.highest = Some(self.highest.map_or(ext_seq, |h| h.max(ext_seq)));
        self.stats.inserted += 1;
        Ok(())
    }

    /// The packet stored under exactly `ext_seq`, if it is still in the ring.
    pub fn get(&self, ext_seq: u64) -> Option<&[u8]> {
        self.get_with_time(ext_seq).map(|(p, _)| p)
    }

    /// The packet stored under exactly `ext_seq` and when it was inserted.
    pub fn get_with_time(&self, ext_seq: u64) -> Option<(&[u8], Instant)> {
        let i = self.index(ext_seq);
        let e = self
            .entries
            .get(i)?
            .as_ref()
            .filter(|e| e.ext_seq == ext_seq)?;
        let start = i * self.slot_len;
        Some((&self.arena[start..start + usize::from(e.len)], e.at))
    }

    /// The extended sequence number nearest to the highest stored one whose low 16 bits
    /// are `seq` (how a NACK's 16-bit number is looked up); `None` while empty.
    pub fn extend(&self, seq: u16) -> Option<u64> {
        let h = self.highest?;
        let back = (h as u16).wrapping_sub(seq);
        if back < 0x8000 {
            h.checked_sub(u64::from(back))
        } else {
            Some(h + u64::from(seq.wrapping_sub(h as u16)))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn packet(seq: u64, len: usize) -> Vec<u8> {
        let mut p = vec![0u8; len];
        p[0] = 0x80;
        p[2..4].copy_from_slice(&(seq as u16).to_be_bytes());
        for (i, b) in p.iter_mut().enumerate().skip(12) {
            *b = (seq as usize + i) as u8;
        }
        p
    }

    #[test]
    fn default_config_holds_one_second_or_512_packets() {
        let c = RtxCacheConfig::default();
        assert_eq!(c.max_bitrate_bps, 2_500_000);
        assert_eq!(c.mean_packet_len, 1000);
        assert_eq!(c.min_duration, Duration::from_secs(1));
        assert_eq!(c.min_packets, 512);
        assert_eq!(c.max_packet_len, 1280);
        // 2.5 Mbit/s of 1000-byte packets is 313 a second: the 512 floor wins.
        assert_eq!(c.capacity(), 512);
        // 8 Mbit/s is 1000 packets a second: the bitrate wins.
        let big = RtxCacheConfig {
            max_bitrate_bps: 8_000_000,
            ..c
        };
        assert_eq!(big.capacity(), 1000);
        let long = RtxCacheConfig {
            max_bitrate_bps: 8_000_000,
            min_duration: Duration::from_millis(1500),
            ..c
        };
        assert_eq!(long.capacity(), 1500);
    }

    #[test]
    fn memory_is_taken_at_the_first_packet_then_bounded_and_fixed() {
        let mut cache = RtxCache::new(RtxCacheConfig::default());
        let before = cache.memory_bytes();
        assert!(before >= 512 * 1280, "{before}");
        assert!(before < 512 * 1280 + 512 * 64 + 1024, "{before}");
        // Nothing before a packet, and a lookup in the empty cache is a miss.
        assert!(cache.allocated_bytes() < 256, "{}", cache.allocated_bytes());
        assert_eq!(cache.get(3), None);
        assert_eq!(cache.capacity(), 512);
        let now = Instant::now();
        cache.insert(now, 3, &packet(3, 100)).unwrap();
        assert_eq!(cache.allocated_bytes(), before);
        assert_eq!(cache.get(3), Some(&packet(3, 100)[..]));
        for s in 0..5000u64 {
            cache.insert(now, 70_000 + s, &packet(s, 1200)).unwrap();
        }
        assert_eq!(cache.memory_bytes(), before);
        assert_eq!(cache.allocated_bytes(), before);
    }

    #[test]
    fn stores_and_returns_exact_packets_until_overwritten() {
        let mut cache = RtxCache::new(RtxCacheConfig::default());
        let t0 = Instant::now();
        let base = 65_536 + 65_000; // crosses a 16-bit wrap below
        for i in 0..600u64 {
            let t = t0 + Duration::from_millis(i);
            cache
                .insert(t, base + i, &packet(base + i, 100 + (i as usize % 900)))
                .unwrap();
        }
        assert_eq!(cache.highest(), Some(base + 599));
        // The last 512 are there, byte for byte.
        for i in 88..600u64 {
            let (p, at) = cache.get_with_time(base + i).unwrap();
            assert_eq!(p, &packet(base + i, 100 + (i as usize % 900))[..], "{i}");
            assert_eq!(at, t0 + Duration::from_millis(i));
        }
        // The first 88 were overwritten by the packets 512 later: never returned for them.
        for i in 0..88u64 {
            assert_eq!(cache.get(base + i), None, "{i}");
        }
        // Exact match: the same slot one cycle later or earlier is a miss.
        assert_eq!(cache.get(base + 599 + 512), None);
        assert_eq!(cache.get(base + 599 - 512), None);
        // A packet older than the ring is refused and does not evict the newer one.
        assert_eq!(
            cache.insert(t0, base + 87, &packet(base + 87, 100)),
            Err(RtxCacheError::TooOld)
        );
        assert!(cache.get(base + 599).is_some());
        // A late packet still inside the ring fills its slot (a gap refilled by RTX).
        let mut c2 = RtxCache::new(RtxCacheConfig::default());
        c2.insert(t0, 1000, &packet(1000, 50)).unwrap();
        c2.insert(t0, 1002, &packet(1002, 50)).unwrap();
        assert_eq!(c2.get(1001), None);
        c2.insert(t0, 1001, &packet(1001, 50)).unwrap();
        assert_eq!(c2.get(1001), Some(&packet(1001, 50)[..]));
        assert_eq!(c2.stats().inserted, 3);
    }

    #[test]
    fn oversized_packets_are_refused_and_counted() {
        let mut cache = RtxCache::new(RtxCacheConfig::default());
        let now = Instant::now();
        assert_eq!(
            cache.insert(now, 1, &packet(1, 1281)),
            Err(RtxCacheError::TooLarge(1281))
        );
        assert_eq!(cache.get(1), None);
        assert_eq!(cache.stats().too_large, 1);
        cache.insert(now, 1, &packet(1, 1280)).unwrap();
        assert_eq!(cache.get(1).map(<[u8]>::len), Some(1280));
    }

    #[test]
    fn extends_nack_sequence_numbers_around_the_highest() {
        let mut cache = RtxCache::new(RtxCacheConfig::default());
        assert_eq!(cache.extend(5), None);
        let now = Instant::now();
        // Highest 0x1_0003 (just past a wrap).
        cache.insert(now, 0x1_0003, &packet(3, 20)).unwrap();
        assert_eq!(cache.extend(3), Some(0x1_0003));
        assert_eq!(cache.extend(0xFFFE), Some(0xFFFE));
        assert_eq!(cache.extend(10), Some(0x1_000A));
        // Near the start of the extended space nothing underflows.
        let mut c = RtxCache::new(RtxCacheConfig::default());
        c.insert(now, 2, &packet(2, 20)).unwrap();
        assert_eq!(c.extend(0xFFF0), None);
    }
}
