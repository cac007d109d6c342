//! Process plumbing: CPU time from `/proc`, core pinning, a tiny HTTP client.

use std::io;

/// CPU time (user + system, all threads) process `pid` has used, in
/// nanoseconds: the sum of `/proc/<pid>/task/*/schedstat` (nanosecond
/// precision), or `utime + stime` of `/proc/<pid>/stat` (clock ticks) when
/// schedstat is not available. `None` if the process is gone.
pub fn process_cpu_ns(pid: u32) -> Option<u64> {
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        let mut total = 0u64;
        let mut any = false;
        for entry in dir.flatten() {
            if let Ok(s) = std::fs::read_to_string(entry.path().join("schedstat"))
                && let Some(ns) = s
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
            {
                total += ns;
                any = true;
            }
        }
        if any {
            return Some(total);
        }
    }
    stat_cpu_ns(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// CPU time of the calling thread, in nanoseconds (`/proc/thread-self/schedstat`,
/// else `CLOCK_THREAD_CPUTIME_ID`).
pub fn thread_cpu_ns() -> Option<u64> {
    if let Ok(s) = std::fs::read_to_string("/proc/thread-self/schedstat")
        && let Some(ns) = s
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
    {
        return Some(ns);
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec, written by the call only.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return None;
    }
    Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

/// Inode number of the socket behind `fd` (what `/proc/net/udp` lists).
pub fn socket_inode(fd: std::os::fd::RawFd) -> Option<u64> {
    // SAFETY: stat is plain data; fstat writes it for a valid fd, or fails.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    (unsafe { libc::fstat(fd, &mut st) } == 0).then_some(st.st_ino)
}

/// What the kernel holds about a set of UDP sockets (summed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UdpStats {
    /// Datagrams dropped (receive buffer full, mostly): the `drops` column.
    pub drops: u64,
    /// Bytes (buffer memory, not payload) queued unread: the `rx_queue` column.
    pub rx_queue: u64,
}

/// [`UdpStats`] of the UDP sockets with these inodes, from `/proc/net/udp` and
/// `/proc/net/udp6` (this process's network namespace). `None` if neither
/// table can be read.
pub fn udp_socket_stats(inodes: &std::collections::HashSet<u64>) -> Option<UdpStats> {
    let mut total = UdpStats::default();
    let mut any = false;
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        any = true;
        let s = udp_table_stats(&text, inodes);
        total.drops += s.drops;
        total.rx_queue += s.rx_queue;
    }
    any.then_some(total)
}

/// [`UdpStats`] of one `/proc/net/udp` table, summed over `inodes`.
pub fn udp_table_stats(text: &str, inodes: &std::collections::HashSet<u64>) -> UdpStats {
    // sl local rem st tx_queue:rx_queue tr:tm retrnsmt uid timeout inode ref pointer drops
    let mut total = UdpStats::default();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let Some(inode) = f.get(9).and_then(|i| i.parse::<u64>().ok()) else {
            continue;
        };
        if !inodes.contains(&inode) {
            continue;
        }
        total.drops += f.get(12).and_then(|d| d.parse::<u64>().ok()).unwrap_or(0);
        total.rx_queue += f
            .get(4)
            .and_then(|q| q.split(':').nth(1))
            .and_then(|q| u64::from_str_radix(q, 16).ok())
            .unwrap_or(0);
    }
    total
}

/// `utime + stime` of a `/proc/<pid>/stat` line, in nanoseconds.
pub fn stat_cpu_ns(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces: fields count from its ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = u64::try_from(hz).ok().filter(|&h| h > 0).unwrap_or(100);
    Some((utime + stime) * 1_000_000_000 / hz)
}

/// Busy CPU time of the whole machine, all cores, in nanoseconds: the
/// aggregate `cpu` line of `/proc/stat` ([`proc_stat_busy_ns`]). Unlike
/// [`process_cpu_ns`] it counts the softirq work (XDP, veth delivery, the
/// UDP stack of the receiving side) that runs on no process's account.
/// `None` if `/proc/stat` cannot be read.
pub fn machine_busy_ns() -> Option<u64> {
    proc_stat_busy_ns(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// The busy time of `/proc/stat`'s aggregate `cpu` line, in nanoseconds:
/// user, nice, system, irq, softirq and steal; idle and iowait subtracted,
/// and guest and guest_nice left out (the kernel already counts them in
/// user and nice).
pub fn proc_stat_busy_ns(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice]
    let busy = [0usize, 1, 2, 5, 6, 7]
        .iter()
        .map(|&i| f.get(i).copied().unwrap_or(0))
        .sum::<u64>();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = u64::try_from(hz).ok().filter(|&h| h > 0).unwrap_or(100);
    Some(busy * 1_000_000_000 / hz)
}

/// Cores the machine has: the `cpuN` lines of `/proc/stat` (this process
/// may be pinned to fewer). `None` if `/proc/stat` cannot be read.
pub fn machine_cores() -> Option<usize> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let n = stat
        .lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
        .count();
    (n > 0).then_some(n)
}

/// Pins the calling thread to `core`.
pub fn pin_current_thread(core: usize) -> io::Result<()> {
    pin(0, core)
}

/// Pins thread or process `tid` (0: the caller) to `core`. Async-signal-safe,
/// so it may run in a `pre_exec` hook.
pub fn pin(tid: libc::pid_t, core: usize) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET only write inside it and
    // sched_setaffinity reads it for the given size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(core, &mut set);
        if libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Lets the caller run on every core again (undoes [`pin_current_thread`] in a
/// child, from a `pre_exec` hook: async-signal-safe).
pub fn unpin_all() -> io::Result<()> {
    // SAFETY: as in `pin`; CPU_SET ignores bits past the set's size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for cpu in 0..libc::CPU_SETSIZE as usize {
            libc::CPU_SET(cpu, &mut set);
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Pins every thread of process `pid` to `core`.
pub fn pin_process(pid: u32, core: usize) -> io::Result<()> {
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))?.flatten() {
        if let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<libc::pid_t>().ok())
        {
            pin(tid, core)?;
        }
    }
    Ok(())
}

/// Number of cores this process may run on.
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The HTTP client the bench shares with the end-to-end tests.
pub use ringbridge_devsupport::{HttpResponse, http_request};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_line_gives_utime_plus_stime() {
        // pid (comm with spaces) state ppid ... utime=14th stime=15th field.
        let line = "42 (my prog) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0";
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        assert_eq!(stat_cpu_ns(line), Some(300 * 1_000_000_000 / hz));
    }

    #[test]
    fn machine_busy_time_leaves_out_idle_iowait_and_guest() {
        // user nice system idle iowait irq softirq steal guest guest_nice
        let stat = "cpu  100 20 30 5000 40 6 70 8 9 1\ncpu0 50 10 15 2500 20 3 35 4 9 1\n";
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        let busy = 100 + 20 + 30 + 6 + 70 + 8;
        assert_eq!(proc_stat_busy_ns(stat), Some(busy * 1_000_000_000 / hz));
        assert_eq!(proc_stat_busy_ns("cpu0 1 2 3\n"), None);
        assert_eq!(proc_stat_busy_ns("cpu  1 x 3\n"), None);
        assert!(machine_busy_ns().is_some());
        assert!(machine_cores().is_some_and(|n| n >= 1));
    }

    #[test]
    fn own_cpu_time_is_readable_and_grows() {
        let pid = std::process::id();
        let a = process_cpu_ns(pid).expect("own cpu");
        let mut x = 0u64;
        for i in 0..3_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let b = process_cpu_ns(pid).expect("own cpu");
        assert!(b > a, "{a} -> {b}");
    }

    #[test]
    fn udp_drops_are_summed_over_our_sockets_only() {
        let table = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
  1: 0100007F:9C40 00000000:0000 07 00000000:00000100 00:00000000 00000000     0        0 1001 2 0000000000000000 5\n\
  2: 0100007F:9C41 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1002 2 0000000000000000 7\n\
  3: 0100007F:9C42 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1003 2 0000000000000000 11\n";
        let ours: std::collections::HashSet<u64> = [1001, 1003].into_iter().collect();
        assert_eq!(
            udp_table_stats(table, &ours),
            UdpStats {
                drops: 16,
                rx_queue: 256
            }
        );
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let inode = socket_inode(std::os::fd::AsRawFd::as_raw_fd(&sock)).expect("inode");
        let ours: std::collections::HashSet<u64> = [inode].into_iter().collect();
        assert_eq!(udp_socket_stats(&ours), Some(UdpStats::default()));
        assert!(thread_cpu_ns().is_some());
    }
}
