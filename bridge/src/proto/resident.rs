//! Buffers whose memory is resident from the moment they are allocated.
//!
//! `vec![0u8; n]` asks the allocator for zeroed memory, and for a large `n`
//! that is fresh pages the kernel maps only when each is first written. A
//! queue written from its start up to the length of each batch (the drivers'
//! send queues, 1,024 slots of 1,536 bytes) then takes its resident memory
//! page by page over a run, whenever a batch is longer than any before it: a
//! long run's resident size creeps up with its rarest bursts.
//! [`resident_zeroed`] writes every byte once, so such a buffer's memory is
//! taken in full when it is allocated, and stays what it was.
//!
//! The packet caches keep `vec!`: every slot of a cache's ring is written
//! from its start within its first cycle (one sequence number per slot), and
//! a page holds the starts of three slots, so a cache is resident in full
//! within seconds of its first packet anyway (in a meeting of 8 x 8 on the
//! bench, the 45 MB mapping that holds the 64 caches of 655 KB was 99.5%
//! resident from the first minutes on).

/// A zeroed buffer of `len` bytes whose pages are all resident now.
///
/// The allocation is hidden from the optimiser before it is zeroed again:
/// without that, the second zeroing of memory the allocator returned zeroed
/// is removed, and the pages stay unmapped.
pub fn resident_zeroed(len: usize) -> Vec<u8> {
    let mut buf = std::hint::black_box(vec![0u8; len]);
    buf.fill(0);
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `VmRSS` of this process, KiB.
    fn rss_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    #[test]
    fn a_resident_buffer_is_in_memory_from_its_allocation() {
        const LEN: usize = 256 << 20;
        let before = rss_kib();
        let buf = resident_zeroed(LEN);
        let after = rss_kib();
        assert!(buf.iter().step_by(4096).all(|&b| b == 0));
        // Other tests of this binary allocate and free concurrently, far less
        // than this margin.
        assert!(
            after >= before + (LEN as u64 / 1024) * 3 / 4,
            "resident {before} KiB -> {after} KiB for a {LEN}-byte buffer"
        );
    }

    #[test]
    fn a_plain_zeroed_vec_is_not_resident_until_written() {
        // What `resident_zeroed` exists for: the same allocation through
        // `vec!` alone takes (almost) no resident memory.
        const LEN: usize = 256 << 20;
        let before = rss_kib();
        let buf = std::hint::black_box(vec![0u8; LEN]);
        let after = rss_kib();
        assert_eq!(buf.len(), LEN);
        assert!(
            after < before + (LEN as u64 / 1024) / 4,
            "resident {before} KiB -> {after} KiB"
        );
    }
}
