//! Answering a receiver's NACK for one slot from the source's [`RtxCache`].
//!
//! The receiver names the packets it misses by the slot's sequence numbers; the slot
//! rewrote the source's numbers by a fixed offset since the current source was mapped
//! ([`SlotRewrite`], the Consumer's state). A lost slot packet is found in the cache by
//! the source's number, rewritten for the slot (its SSRC, payload type, timestamp) and
//! sent on the slot's RTX SSRC with the slot's own RTX sequence counter, or plain on
//! the slot SSRC where the receiver did not negotiate RTX.
//!
//! A receiver that NACKs the same packet again before a retransmission could have
//! reached it is not answered twice: a fixed-size record of the last retransmissions
//! per slot suppresses a resend within one RTT. The record is allocated at the slot's
//! first retransmission (once, [`RECENT_RETRANSMISSIONS`] entries of 24 bytes): a slot
//! that never repairs anything, like every audio slot, costs none of it.

use std::time::{Duration, Instant};

use super::rtx::{RetransmissionFields, RtxError, write_retransmission_with};
use super::rtx_cache::RtxCache;
use crate::proto::rtp::RtpHeader;

/// How many recent retransmissions a responder remembers (direct-mapped by sequence
/// number, so a NACK burst of this many distinct packets is tracked exactly).
pub const RECENT_RETRANSMISSIONS: usize = 128;

/// The shortest suppression window, whatever the RTT estimate says (a loopback RTT of
/// zero must not let a NACK storm through).
pub const MIN_SUPPRESSION: Duration = Duration::from_millis(5);

/// How the slot currently rewrites its source: `slot seq = source seq + seq_offset`,
/// `slot ts = source ts + ts_offset`, both wrapping, valid from `first_slot_seq` on
/// (packets before it came from a previous source and are not in this cache).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotRewrite {
    /// Added to the source's sequence number.
    pub seq_offset: u16,
    /// Added to the source's RTP timestamp.
    pub ts_offset: u32,
    /// The first slot sequence number sent for the current source.
    pub first_slot_seq: u16,
}

/// The slot's RTX stream, when the receiver negotiated RTX (`apt` and a `FID` group).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotRtx {
    /// The RTX payload type the receiver negotiated for the slot's codec.
    pub pt: u8,
    /// The slot's RTX SSRC, announced in the answer's `a=ssrc-group:FID`.
    pub ssrc: u32,
}

/// The slot's outgoing identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotOutput {
    /// The slot's media payload type.
    pub pt: u8,
    /// The slot SSRC.
    pub ssrc: u32,
    /// The RTX stream, if negotiated.
    pub rtx: Option<SlotRtx>,
}

/// What happened to one NACKed sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retransmit {
    /// A retransmission of this many bytes was written to the output buffer.
    Sent(usize),
    /// Already retransmitted to this receiver less than one RTT ago.
    Suppressed,
    /// Not in the cache (too old, never received, or from a previous source).
    Miss,
}

/// Counters of one responder (names of jitsi-videobridge's `NackHandler` and
/// `RetransmissionSender` in the doc comments).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NackResponderStats {
    /// NACK packets received (jvb `numNacksReceived`).
    pub nacks_received: u64,
    /// Sequence numbers asked for (jvb `numNackedPackets`).
    pub nacked_packets: u64,
    /// Found in the cache (retransmitted or suppressed).
    pub cache_hits: u64,
    /// Not found in the cache (jvb `numCacheMisses`).
    pub cache_misses: u64,
    /// Found but not resent: already sent within one RTT.
    pub suppressed: u64,
    /// Retransmissions sent as RTX (jvb `numRetransmittedRtxPackets`).
    pub retransmitted_rtx: u64,
    /// Retransmissions sent plain (jvb `numRetransmittedPlainPackets`).
    pub retransmitted_plain: u64,
}

impl NackResponderStats {
    /// All retransmissions sent (jvb `numRetransmittedPackets`).
    pub fn retransmissions_sent(&self) -> u64 {
        self.retransmitted_rtx + self.retransmitted_plain
    }
}

#[derive(Debug, Clone, Copy)]
struct Recent {
    slot_seq: u16,
    at: Instant,
}

/// Answers one receiver's NACKs for one slot. See the module documentation.
#[derive(Debug, Clone)]
pub struct NackResponder {
    output: SlotOutput,
    rtx_seq: u16,
    /// Direct-mapped by slot sequence number: empty until the first retransmission,
    /// then [`RECENT_RETRANSMISSIONS`] entries for good.
    recent: Vec<Option<Recent>>,
    stats: NackResponderStats,
}

impl NackResponder {
    /// A responder for a slot sending as `output`, whose RTX stream starts at
    /// `first_rtx_seq` (random, as for any RTP stream).
    pub fn new(output: SlotOutput, first_rtx_seq: u16) -> Self {
        NackResponder {
            output,
            rtx_seq: first_rtx_seq,
            recent: Vec::new(),
            stats: NackResponderStats::default(),
        }
    }

    /// The counters.
    pub fn stats(&self) -> NackResponderStats {
        self.stats
    }

    /// Heap bytes the responder holds: none before its first retransmission.
    pub fn allocated_bytes(&self) -> usize {
        self.recent.capacity() * core::mem::size_of::<Option<Recent>>()
    }

    /// The sequence number the next RTX packet will carry.
    pub fn next_rtx_seq(&self) -> u16 {
        self.rtx_seq
    }

    /// The RTX payload type, SSRC and sequence number for a padding-only
    /// packet on the slot's RTX stream (a bandwidth probe), the sequence
    /// number used up; `None` when the slot has no RTX.
    pub fn take_padding(&mut self) -> Option<(u8, u32, u16)> {
        let rtx = self.output.rtx?;
        let seq = self.rtx_seq;
        self.rtx_seq = seq.wrapping_add(1);
        Some((rtx.pt, rtx.ssrc, seq))
    }

    /// Counts one NACK packet from the receiver; then call
    /// [`retransmit`](Self::retransmit) for each of its `lost_sequence_numbers()`.
    pub fn handle_nack(&mut self) {
        self.stats.nacks_received += 1;
    }

    /// Answers the NACKed slot sequence number `slot_seq`: finds the packet in the
    /// source's `cache` through `rewrite`, and writes the slot's retransmission into
    /// `out` unless it was sent less than `rtt` ago. Errors only on a cached packet that
    /// does not parse or an `out` too small (it then counts as a miss).
    pub fn retransmit(
        &mut self,
        now: Instant,
        slot_seq: u16,
        rewrite: &SlotRewrite,
        cache: &RtxCache,
        rtt: Duration,
        out: &mut [u8],
    ) -> Result<Retransmit, RtxError> {
        self.retransmit_renumbered(now, slot_seq, rewrite, cache, rtt, out, &[], |_| true)
    }

    /// [`retransmit`](Self::retransmit), with the retransmission's payload
    /// (the codec's, after the OSN) passed to `renumber` before it counts as
    /// sent: a simulcast slot's VP8 picture ids are rewritten there. When
    /// `renumber` returns false nothing is sent or recorded
    /// ([`RtxError::Renumber`]).
    #[allow(clippy::too_many_arguments)]
    pub fn retransmit_renumbered(
        &mut self,
        now: Instant,
        slot_seq: u16,
        rewrite: &SlotRewrite,
        cache: &RtxCache,
        rtt: Duration,
        out: &mut [u8],
        extensions: &[(u8, &[u8])],
        renumber: impl FnOnce(&mut [u8]) -> bool,
    ) -> Result<Retransmit, RtxError> {
        self.stats.nacked_packets += 1;
        let since_mapped = slot_seq.wrapping_sub(rewrite.first_slot_seq);
        let source_seq = slot_seq.wrapping_sub(rewrite.seq_offset);
        let cached = (since_mapped < 0x8000)
            .then(|| cache.extend(source_seq))
            .flatten()
            .and_then(|ext| cache.get(ext));
        let Some(original) = cached else {
            self.stats.cache_misses += 1;
            return Ok(Retransmit::Miss);
        };
        self.stats.cache_hits += 1;
        let slot = usize::from(slot_seq) % RECENT_RETRANSMISSIONS;
        if let Some(r) = self.recent.get(slot).copied().flatten()
            && r.slot_seq == slot_seq
            && now.saturating_duration_since(r.at) < rtt.max(MIN_SUPPRESSION)
        {
            self.stats.suppressed += 1;
            return Ok(Retransmit::Suppressed);
        }
        let header = RtpHeader::parse(original)?;
        let ts = header.timestamp.wrapping_add(rewrite.ts_offset);
        let fields = match self.output.rtx {
            Some(rtx) => RetransmissionFields {
                pt: rtx.pt,
                seq: self.rtx_seq,
                ts,
                ssrc: rtx.ssrc,
                osn: Some(slot_seq),
            },
            None => RetransmissionFields {
                pt: self.output.pt,
                seq: slot_seq,
                ts,
                ssrc: self.output.ssrc,
                osn: None,
            },
        };
        let n = write_retransmission_with(out, original, &fields, extensions)?;
        // The codec's payload: what follows the header, its extensions and the OSN.
        let payload_at = n - (header.packet_len - header.header_len);
        if !out.get_mut(payload_at..n).is_some_and(renumber) {
            return Err(RtxError::Renumber);
        }
        if self.output.rtx.is_some() {
            self.rtx_seq = self.rtx_seq.wrapping_add(1);
            self.stats.retransmitted_rtx += 1;
        } else {
            self.stats.retransmitted_plain += 1;
        }
        if self.recent.is_empty() {
            // The slot's first retransmission: the record, once.
            self.recent = vec![None; RECENT_RETRANSMISSIONS];
        }
        self.recent[slot] = Some(Recent { slot_seq, at: now });
        Ok(Retransmit::Sent(n))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::rtx::{Unwrapped, unwrap_in_place};
    use super::super::rtx_cache::RtxCacheConfig;
    use super::*;
    use crate::proto::rtcp::{self, NackEntry, RtcpPacket};

    const SOURCE_SSRC: u32 = 0x5000_0000;
    const SLOT: SlotOutput = SlotOutput {
        pt: 100,
        ssrc: 0xA000_0001,
        rtx: Some(SlotRtx {
            pt: 101,
            ssrc: 0xA000_0002,
        }),
    };

    fn source_packet(seq: u16) -> Vec<u8> {
        let mut p = vec![0x80, 96];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&(u32::from(seq) * 3000).to_be_bytes());
        p.extend_from_slice(&SOURCE_SSRC.to_be_bytes());
        p.extend_from_slice(&[0x10, seq as u8, 0xAB, 0xCD]);
        p
    }

    /// A source that sent 65500..=65535, 0..=99 (extended from 65536 + 65500 on) into
    /// its cache.
    fn cache_with_source(t0: Instant) -> RtxCache {
        let mut cache = RtxCache::new(RtxCacheConfig::default());
        let mut u = crate::proto::rtp::SeqUnwrapper::new();
        for k in 0..136u16 {
            let seq = 65500u16.wrapping_add(k);
            cache
                .insert(t0, u.extend(seq), &source_packet(seq))
                .unwrap();
        }
        cache
    }

    #[test]
    fn answers_a_receiver_nack_on_the_slot_rtx_stream() {
        let t0 = Instant::now();
        let cache = cache_with_source(t0);
        // The slot mapped this source from source seq 65510 on, as slot seq 1000.
        let rewrite = SlotRewrite {
            seq_offset: 1000u16.wrapping_sub(65510),
            ts_offset: 77,
            first_slot_seq: 1000,
        };
        let mut r = NackResponder::new(SLOT, 9000);
        // The receiver's NACK for slot packets 1030 and 1031 (source 65540 = 4, 5).
        let mut nack = [0u8; 32];
        let n =
            rtcp::write_nack(&mut nack, 1, SLOT.ssrc, &[NackEntry { pid: 1030, blp: 1 }]).unwrap();
        let Some(Ok(RtcpPacket::Nack(nack))) = rtcp::packets(&nack[..n]).next() else {
            panic!()
        };
        r.handle_nack();
        assert_eq!(
            r.allocated_bytes(),
            0,
            "nothing before the first retransmission"
        );
        let mut out = [0u8; 1500];
        for (i, seq) in nack.lost_sequence_numbers().enumerate() {
            let Retransmit::Sent(len) = r
                .retransmit(
                    t0,
                    seq,
                    &rewrite,
                    &cache,
                    Duration::from_millis(50),
                    &mut out,
                )
                .unwrap()
            else {
                panic!("{seq}")
            };
            let h = RtpHeader::parse(&out[..len]).unwrap();
            assert_eq!(h.ssrc, SLOT.rtx.unwrap().ssrc);
            assert_eq!(h.payload_type, 101);
            assert_eq!(h.sequence_number, 9000 + i as u16);
            let source_seq = seq.wrapping_sub(rewrite.seq_offset);
            assert_eq!(h.timestamp, u32::from(source_seq) * 3000 + 77);
            // The receiver unwraps it into exactly the slot packet it missed.
            let u = unwrap_in_place(&mut out[..len], SLOT.pt, SLOT.ssrc).unwrap();
            let Unwrapped::Original { len, seq: osn } = u else {
                panic!()
            };
            assert_eq!(osn, seq);
            assert_eq!(&out[12..len], &source_packet(source_seq)[12..]);
        }
        let s = r.stats();
        assert_eq!((s.nacks_received, s.nacked_packets), (1, 2));
        assert_eq!(
            (s.cache_hits, s.retransmitted_rtx, s.retransmissions_sent()),
            (2, 2, 2)
        );
        assert_eq!(r.next_rtx_seq(), 9002);
        assert_eq!(r.allocated_bytes(), RECENT_RETRANSMISSIONS * 24);
    }

    #[test]
    fn same_packet_is_not_resent_within_one_rtt() {
        let t0 = Instant::now();
        let cache = cache_with_source(t0);
        let rewrite = SlotRewrite {
            seq_offset: 0,
            ts_offset: 0,
            first_slot_seq: 65500,
        };
        let rtt = Duration::from_millis(80);
        let mut r = NackResponder::new(SLOT, 0);
        let mut out = [0u8; 1500];
        let mut ask = |r: &mut NackResponder, at: Duration, seq: u16| {
            r.retransmit(t0 + at, seq, &rewrite, &cache, rtt, &mut out)
                .unwrap()
        };
        assert!(matches!(
            ask(&mut r, Duration::ZERO, 10),
            Retransmit::Sent(_)
        ));
        assert_eq!(
            ask(&mut r, Duration::from_millis(20), 10),
            Retransmit::Suppressed
        );
        assert_eq!(
            ask(&mut r, Duration::from_millis(79), 10),
            Retransmit::Suppressed
        );
        // Another packet is independent.
        assert!(matches!(
            ask(&mut r, Duration::from_millis(79), 11),
            Retransmit::Sent(_)
        ));
        // One RTT later the receiver's retry is answered again.
        assert!(matches!(
            ask(&mut r, Duration::from_millis(80), 10),
            Retransmit::Sent(_)
        ));
        // 65500 and 92 are 128 apart and share a record slot: never confused.
        assert!(matches!(
            ask(&mut r, Duration::from_millis(81), 65500),
            Retransmit::Sent(_)
        ));
        assert!(matches!(
            ask(&mut r, Duration::from_millis(82), 92),
            Retransmit::Sent(_)
        ));
        assert_eq!(
            ask(&mut r, Duration::from_millis(83), 92),
            Retransmit::Suppressed
        );
        // Beyond what the source sent: a miss.
        assert_eq!(
            ask(&mut r, Duration::from_millis(83), 210),
            Retransmit::Miss
        );
        let s = r.stats();
        assert_eq!(
            (s.suppressed, s.retransmitted_rtx, s.cache_misses),
            (3, 5, 1)
        );
        // A zero RTT still suppresses an immediate duplicate.
        let mut r = NackResponder::new(SLOT, 0);
        let mut out = [0u8; 1500];
        let z = Duration::ZERO;
        assert!(matches!(
            r.retransmit(t0, 20, &rewrite, &cache, z, &mut out).unwrap(),
            Retransmit::Sent(_)
        ));
        assert_eq!(
            r.retransmit(
                t0 + Duration::from_millis(1),
                20,
                &rewrite,
                &cache,
                z,
                &mut out
            )
            .unwrap(),
            Retransmit::Suppressed
        );
    }

    #[test]
    fn misses_are_counted_and_previous_sources_are_not_answered() {
        let t0 = Instant::now();
        let cache = cache_with_source(t0);
        // The current source was mapped from slot seq 500 (source seq 0) on.
        let rewrite = SlotRewrite {
            seq_offset: 500,
            ts_offset: 0,
            first_slot_seq: 500,
        };
        let mut r = NackResponder::new(SLOT, 0);
        let mut out = [0u8; 1500];
        let rtt = Duration::from_millis(50);
        // Slot 499 belonged to the previous source: even though source seq 65535 is
        // cached, it is a different packet.
        assert_eq!(
            r.retransmit(t0, 499, &rewrite, &cache, rtt, &mut out)
                .unwrap(),
            Retransmit::Miss
        );
        // Beyond what the source sent: a miss.
        assert_eq!(
            r.retransmit(t0, 500 + 100, &rewrite, &cache, rtt, &mut out)
                .unwrap(),
            Retransmit::Miss
        );
        assert!(matches!(
            r.retransmit(t0, 500 + 99, &rewrite, &cache, rtt, &mut out)
                .unwrap(),
            Retransmit::Sent(_)
        ));
        let s = r.stats();
        assert_eq!((s.cache_misses, s.cache_hits), (2, 1));
    }

    #[test]
    fn plain_retransmission_without_rtx_uses_slot_numbers() {
        let t0 = Instant::now();
        let cache = cache_with_source(t0);
        let rewrite = SlotRewrite {
            seq_offset: 3,
            ts_offset: 1,
            first_slot_seq: 0,
        };
        let slot = SlotOutput { rtx: None, ..SLOT };
        let mut r = NackResponder::new(slot, 0);
        let mut out = [0u8; 1500];
        let Retransmit::Sent(n) = r
            .retransmit(t0, 13, &rewrite, &cache, Duration::ZERO, &mut out)
            .unwrap()
        else {
            panic!()
        };
        let h = RtpHeader::parse(&out[..n]).unwrap();
        assert_eq!(
            (h.ssrc, h.payload_type, h.sequence_number),
            (slot.ssrc, 100, 13)
        );
        assert_eq!(h.timestamp, 10 * 3000 + 1);
        assert_eq!(&out[12..n], &source_packet(10)[12..]);
        assert_eq!(r.stats().retransmitted_plain, 1);
        // Output buffer too small: an error, nothing counted as sent.
        assert_eq!(
            r.retransmit(t0, 14, &rewrite, &cache, Duration::ZERO, &mut out[..10]),
            Err(RtxError::BufferTooSmall)
        );
        assert_eq!(r.stats().retransmissions_sent(), 1);
    }
}
