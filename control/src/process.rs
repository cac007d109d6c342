//! The bridge process's own resource use, read from `/proc/self` at each
//! scrape: CPU time, memory, open file descriptors and threads, for the
//! standard Prometheus `process_*` metrics and jvb's `threads` stat.

use std::fs;

/// One reading of `/proc/self`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct ProcessStats {
    /// User plus system CPU time of every thread, in seconds.
    pub(crate) cpu_seconds: f64,
    /// Resident set size, in bytes.
    pub(crate) resident_bytes: u64,
    /// Virtual memory size, in bytes.
    pub(crate) virtual_bytes: u64,
    /// Threads of the process.
    pub(crate) threads: u64,
    /// Open file descriptors (sockets included).
    pub(crate) open_fds: u64,
    /// The soft limit on open file descriptors (`None`: unlimited or unreadable).
    pub(crate) max_fds: Option<u64>,
    /// When the process started, in seconds since the Unix epoch (`None`
    /// when `/proc/stat` has no `btime`).
    pub(crate) start_time_seconds: Option<f64>,
}

impl ProcessStats {
    /// Reads `/proc/self`; `None` where there is no procfs.
    pub(crate) fn read() -> Option<ProcessStats> {
        let stat = fs::read_to_string("/proc/self/stat").ok()?;
        let status = fs::read_to_string("/proc/self/status").ok()?;
        let limits = fs::read_to_string("/proc/self/limits").ok();
        let boot = fs::read_to_string("/proc/stat").ok();
        let open_fds = fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
        Self::parse(
            &stat,
            &status,
            limits.as_deref(),
            boot.as_deref(),
            open_fds,
            clock_ticks(),
        )
    }

    /// Parses the texts of `/proc/self/stat`, `/proc/self/status`,
    /// `/proc/self/limits` and `/proc/stat`; `clk_tck` is `sysconf(_SC_CLK_TCK)`.
    fn parse(
        stat: &str,
        status: &str,
        limits: Option<&str>,
        proc_stat: Option<&str>,
        open_fds: u64,
        clk_tck: u64,
    ) -> Option<ProcessStats> {
        // The command name (field 2) is in parentheses and may hold spaces or
        // parentheses itself: the fields that follow start after the last ')'.
        let rest = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // fields[0] is field 3 (state), so field n is fields[n - 3].
        let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
        let ticks = clk_tck.max(1) as f64;
        let cpu_seconds = (field(14)? + field(15)?) as f64 / ticks;
        let kib = |name: &str| -> Option<u64> {
            let line = status.lines().find(|l| l.starts_with(name))?;
            line[name.len()..].split_whitespace().next()?.parse().ok()
        };
        let resident_bytes = kib("VmRSS:").unwrap_or(0) * 1024;
        let threads = kib("Threads:").or_else(|| field(20)).unwrap_or(0);
        let virtual_bytes = field(23).unwrap_or(0);
        let max_fds = limits.and_then(|l| {
            let line = l.lines().find(|l| l.starts_with("Max open files"))?;
            line["Max open files".len()..]
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        });
        let btime: Option<u64> = proc_stat.and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime "))
                .and_then(|v| v.trim().parse().ok())
        });
        let start_time_seconds = match (btime, field(22)) {
            (Some(b), Some(start)) => Some(b as f64 + start as f64 / ticks),
            _ => None,
        };
        Some(ProcessStats {
            cpu_seconds,
            resident_bytes,
            virtual_bytes,
            threads,
            open_fds,
            max_fds,
            start_time_seconds,
        })
    }
}

/// Clock ticks per second, the unit of `/proc/self/stat`'s CPU times.
fn clock_ticks() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(n).ok().filter(|&n| n > 0).unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (ring bridge) (x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                        250 50 0 0 20 0 7 0 12345 104857600 2560 18446744073709551615";
    const STATUS: &str =
        "Name:\tringbridge\nVmSize:\t  102400 kB\nVmRSS:\t   10240 kB\nThreads:\t7\n";
    const LIMITS: &str = "Limit                     Soft Limit           Hard Limit           Units\n\
                          Max open files            1048576              1048576              files\n";

    #[test]
    fn parses_proc_self() {
        let p = ProcessStats::parse(
            STAT,
            STATUS,
            Some(LIMITS),
            Some("cpu  1 2 3\nbtime 1700000000\n"),
            12,
            100,
        )
        .expect("parses");
        // utime 250 + stime 50 ticks at 100 Hz.
        assert_eq!(p.cpu_seconds, 3.0);
        assert_eq!(p.resident_bytes, 10240 * 1024);
        assert_eq!(p.virtual_bytes, 104_857_600);
        assert_eq!(p.threads, 7);
        assert_eq!(p.open_fds, 12);
        assert_eq!(p.max_fds, Some(1_048_576));
        assert_eq!(p.start_time_seconds, Some(1_700_000_000.0 + 123.45));
    }

    #[test]
    fn unlimited_fds_and_no_btime() {
        let limits = "Max open files            unlimited            unlimited            files\n";
        let p = ProcessStats::parse(STAT, STATUS, Some(limits), None, 3, 100).expect("parses");
        assert_eq!(p.max_fds, None);
        assert_eq!(p.start_time_seconds, None);
        assert!(ProcessStats::parse("garbage", STATUS, None, None, 0, 100).is_none());
    }

    #[test]
    fn reads_this_process() {
        let p = ProcessStats::read().expect("Linux has /proc/self");
        assert!(p.threads >= 1);
        assert!(p.open_fds >= 1);
        assert!(p.resident_bytes > 0);
    }
}
