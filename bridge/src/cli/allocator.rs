//! The process's heap allocator: mimalloc instead of glibc's malloc.
//!
//! A join allocates a few hundred small objects (the parsed offer, the
//! endpoint's transport, producers and consumers, the DTLS handshake's buffers,
//! the control plane's HTTP and colibri messages). Under glibc's malloc the
//! allocator took 18.8% of the bridge's CPU in a `ringbridge-bench scale` join
//! storm (`perf record`, 3,000 joins: `_int_malloc`, `malloc_consolidate`,
//! `sysmalloc`, `_int_realloc` and the page faults under them).
//!
//! Built with `no_thp`: mimalloc would otherwise ask for transparent huge pages
//! on its arenas (`MADV_HUGEPAGE`, which this kernel's `madvise` mode honours),
//! and an idle bridge was resident at 27-29 MB against 13-14 MB with glibc,
//! each endpoint costing 65-71 KiB instead of 52-56 KiB. The process keeps
//! 4 KiB pages (`MI_NO_THP`: mimalloc no longer asks for huge ones).
//! Only the binary installs it: the library's tests count allocations with
//! their own global allocators.

/// The process's allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(test)]
mod tests {
    /// `AnonHugePages` of this process, KiB.
    fn anon_huge_pages_kib() -> u64 {
        std::fs::read_to_string("/proc/self/smaps_rollup")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("AnonHugePages:"))
                    .and_then(|v| v.split_whitespace().next()?.parse().ok())
            })
            .unwrap_or(0)
    }

    #[test]
    fn the_heap_is_not_backed_by_huge_pages() {
        // 16 MiB of small blocks, touched, as the endpoints of a join storm
        // are: with mimalloc's default (`MADV_HUGEPAGE` on its arenas) and
        // this kernel's `madvise` mode they land on 2 MiB pages.
        let blocks: Vec<Box<[u8; 4096]>> = (0..4096).map(|_| Box::new([7u8; 4096])).collect();
        assert!(blocks.iter().all(|b| b[4095] == 7));
        assert_eq!(
            anon_huge_pages_kib(),
            0,
            "the heap is on transparent huge pages"
        );
    }
}
