//! Totals of the quality mechanisms, for `/metrics` and `/colibri/stats`: each object
//! keeps its own counters (`*Stats` in its module); a shard sums them into one
//! [`QualityStats`] when asked. Names are ours in snake_case; the doc comments give
//! jitsi-videobridge's name where it has one.

use super::keyframe::KeyframeStats;
use super::nack::NackGeneratorStats;
use super::nack_responder::NackResponderStats;
use super::remb::RembStats;
use super::rtx_cache::RtxCache;
use super::sender_report::SenderReportStats;
use super::twcc::TwccStats;

/// Quality counters summed over many objects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QualityStats {
    /// NACK packets received from receivers (jvb `NackHandler.numNacksReceived`).
    pub nacks_received: u64,
    /// Packets receivers asked for (jvb `RetransmissionSender.numRetransmissionsRequested`).
    pub retransmissions_requested: u64,
    /// Retransmissions sent to receivers, RTX or plain (jvb `numRetransmittedPackets`).
    pub retransmissions_sent: u64,
    /// Asked-for packets not resent because they were sent within one RTT.
    pub retransmissions_suppressed: u64,
    /// Asked-for packets found in a packet cache.
    pub cache_hits: u64,
    /// Asked-for packets not in the cache (jvb `NackHandler.numCacheMisses`).
    pub cache_misses: u64,
    /// Memory held by packet caches, in bytes.
    pub cache_memory_bytes: u64,
    /// NACK packets sent to publishers.
    pub nacks_sent: u64,
    /// Packets from publishers found missing.
    pub packets_missing: u64,
    /// Missing packets that arrived after a NACK.
    pub packets_recovered: u64,
    /// Missing packets given up (each gap turned into a keyframe request).
    pub packets_given_up: u64,
    /// PLIs and FIRs from receivers (jvb `numPlisReceived` + `numFirsReceived`).
    pub keyframe_requests_received: u64,
    /// Keyframe requests sent to publishers (jvb `numPlisForwarded` +
    /// `numFirsForwarded` + `numPlisGenerated`).
    pub keyframe_requests_sent: u64,
    /// Keyframe requests dropped by throttling (jvb `numPlisDropped` + `numFirsDropped`).
    pub keyframe_requests_throttled: u64,
    /// Transport-cc feedback packets sent (jvb `num_tcc_packets_sent`).
    pub twcc_feedback_sent: u64,
    /// REMB packets sent.
    pub remb_sent: u64,
    /// Sender reports sent for slots.
    pub sender_reports_sent: u64,
}

impl QualityStats {
    /// Adds one slot's NACK answering.
    pub fn add_nack_responder(&mut self, s: &NackResponderStats) {
        self.nacks_received += s.nacks_received;
        self.retransmissions_requested += s.nacked_packets;
        self.retransmissions_sent += s.retransmissions_sent();
        self.retransmissions_suppressed += s.suppressed;
        self.cache_hits += s.cache_hits;
        self.cache_misses += s.cache_misses;
    }

    /// Adds one source's packet cache.
    pub fn add_rtx_cache(&mut self, cache: &RtxCache) {
        self.cache_memory_bytes += cache.memory_bytes() as u64;
    }

    /// Adds one source's NACK generation.
    pub fn add_nack_generator(&mut self, s: &NackGeneratorStats) {
        self.nacks_sent += s.nacks_sent;
        self.packets_missing += s.missing;
        self.packets_recovered += s.recovered;
        self.packets_given_up += s.given_up;
    }

    /// Adds one source's keyframe requests.
    pub fn add_keyframes(&mut self, s: &KeyframeStats) {
        self.keyframe_requests_received += s.received;
        self.keyframe_requests_sent += s.sent;
        self.keyframe_requests_throttled += s.source_throttled + s.receiver_throttled;
    }

    /// Adds one transport's TWCC feedback.
    pub fn add_twcc(&mut self, s: &TwccStats) {
        self.twcc_feedback_sent += s.feedback_sent;
    }

    /// Adds one transport's REMB estimator.
    pub fn add_remb(&mut self, s: &RembStats) {
        self.remb_sent += s.remb_sent;
    }

    /// Adds one slot's sender reports.
    pub fn add_sender_reports(&mut self, s: &SenderReportStats) {
        self.sender_reports_sent += s.sent;
    }
}

#[cfg(test)]
mod tests {
    use super::super::rtx_cache::RtxCacheConfig;
    use super::*;

    #[test]
    fn sums_module_counters() {
        let mut q = QualityStats::default();
        let responder = NackResponderStats {
            nacks_received: 2,
            nacked_packets: 10,
            cache_hits: 8,
            cache_misses: 2,
            suppressed: 1,
            retransmitted_rtx: 6,
            retransmitted_plain: 1,
        };
        q.add_nack_responder(&responder);
        q.add_nack_responder(&responder);
        q.add_keyframes(&KeyframeStats {
            received: 5,
            sent: 2,
            source_throttled: 2,
            receiver_throttled: 1,
            slot_switches: 1,
            generated: 0,
        });
        let cache = RtxCache::new(RtxCacheConfig::default());
        q.add_rtx_cache(&cache);
        assert_eq!(q.nacks_received, 4);
        assert_eq!(q.retransmissions_requested, 20);
        assert_eq!(q.retransmissions_sent, 14);
        assert_eq!(
            (q.cache_hits, q.cache_misses, q.retransmissions_suppressed),
            (16, 4, 2)
        );
        assert_eq!(q.keyframe_requests_throttled, 3);
        assert_eq!(q.cache_memory_bytes, cache.memory_bytes() as u64);
    }
}
