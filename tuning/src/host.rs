//! `check` and `apply` against a [`Host`].

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;

use crate::profile::{PROFILE, RESERVED_PORTS};
use crate::unit::{self, MemlockGrant};
use crate::{Host, MIN_MEMLOCK, Profile, SYSCTL_FILE, TuneError, Wanted, cpulist};

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// As the profile wants.
    Ok,
    /// Below the profile, or otherwise not as it should be: `check` fails.
    Off,
    /// Could not be read (no such file on this kernel, a VM without cpufreq):
    /// reported, but does not fail `check`.
    Unknown,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Ok => "ok",
            Verdict::Off => "OFF",
            Verdict::Unknown => "unknown",
        })
    }
}

/// One line of `ringbridge tune check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// A sysctl key, or the name of a host check (`cpu governor`, ...).
    pub name: String,
    /// The value found.
    pub current: String,
    /// The value wanted.
    pub wanted: String,
    /// The verdict.
    pub verdict: Verdict,
    /// Why, or what to do, when not obvious.
    pub note: Option<String>,
}

/// Everything `check` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// One finding per sysctl key, then the host checks.
    pub findings: Vec<Finding>,
}

impl Report {
    /// Whether nothing is [`Verdict::Off`].
    pub fn is_ok(&self) -> bool {
        self.findings.iter().all(|f| f.verdict != Verdict::Off)
    }

    /// A table: key, current, wanted, verdict (notes indented below).
    pub fn render(&self) -> String {
        let w_name = self
            .findings
            .iter()
            .map(|f| f.name.len())
            .max()
            .unwrap_or(0);
        let w_cur = self
            .findings
            .iter()
            .map(|f| f.current.len())
            .max()
            .unwrap_or(0)
            .min(40);
        let w_want = self
            .findings
            .iter()
            .map(|f| f.wanted.len())
            .max()
            .unwrap_or(0)
            .min(40);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:w_name$}  {:w_cur$}  {:w_want$}  verdict",
            "key", "current", "wanted"
        );
        for f in &self.findings {
            let _ = writeln!(
                out,
                "{:w_name$}  {:w_cur$}  {:w_want$}  {}",
                f.name, f.current, f.wanted, f.verdict
            );
            if let Some(note) = &f.note {
                let _ = writeln!(out, "    {note}");
            }
        }
        let off = self
            .findings
            .iter()
            .filter(|f| f.verdict == Verdict::Off)
            .count();
        let _ = if off == 0 {
            writeln!(out, "\nall checks passed")
        } else {
            writeln!(out, "\n{off} check(s) off")
        };
        out
    }
}

/// One sysctl that `apply` writes (or would write, with `dry_run`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysctlWrite {
    /// Dotted key.
    pub key: String,
    /// The value before (`None` if it could not be read).
    pub from: Option<String>,
    /// The value written.
    pub to: String,
}

/// What `apply` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    /// The sysctl.d file (inside the host root).
    pub file: PathBuf,
    /// Its contents.
    pub file_text: String,
    /// Keys whose running value was below the profile.
    pub writes: Vec<SysctlWrite>,
    /// Whether nothing was written.
    pub dry_run: bool,
}

fn read_trimmed(host: &Host, key: &str) -> Option<String> {
    fs::read_to_string(host.sysctl_path(key))
        .ok()
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// Whether `current` satisfies `wanted`, and the value to set so that it does
/// (never lower than what is there).
fn evaluate(wanted: &Wanted, current: Option<&str>) -> (Verdict, String) {
    match wanted {
        Wanted::AtLeast(want) => {
            let cur: Option<Vec<u64>> = current.and_then(|c| {
                let v: Result<Vec<u64>, _> = c.split_whitespace().map(str::parse).collect();
                v.ok().filter(|v| v.len() == want.len())
            });
            match cur {
                Some(cur) => {
                    let ok = cur.iter().zip(want).all(|(c, w)| c >= w);
                    let target: Vec<String> = cur
                        .iter()
                        .zip(want)
                        .map(|(c, w)| (*c).max(*w).to_string())
                        .collect();
                    let verdict = if ok { Verdict::Ok } else { Verdict::Off };
                    (verdict, target.join(" "))
                }
                None => {
                    let target: Vec<String> = want.iter().map(u64::to_string).collect();
                    let verdict = if current.is_none() {
                        Verdict::Unknown
                    } else {
                        Verdict::Off
                    };
                    (verdict, target.join(" "))
                }
            }
        }
        Wanted::Ports(first, last) => {
            let range: BTreeSet<u32> = (u32::from(*first)..=u32::from(*last)).collect();
            match current.map(cpulist::parse) {
                Some(Some(mut cur)) => {
                    let ok = range.is_subset(&cur);
                    cur.extend(range);
                    let verdict = if ok { Verdict::Ok } else { Verdict::Off };
                    (verdict, cpulist::format(&cur))
                }
                Some(None) => (Verdict::Off, cpulist::format(&range)),
                None => (Verdict::Unknown, cpulist::format(&range)),
            }
        }
    }
}

fn sysctl_findings(host: &Host, profile: &Profile) -> Vec<Finding> {
    profile
        .settings()
        .iter()
        .map(|s| {
            let current = read_trimmed(host, &s.key);
            let (verdict, _) = evaluate(&s.wanted, current.as_deref());
            Finding {
                name: s.key.clone(),
                current: match current {
                    None => "(missing)".into(),
                    Some(c) if c.is_empty() => "(empty)".into(),
                    Some(c) => c,
                },
                wanted: s.wanted.to_string(),
                verdict,
                note: None,
            }
        })
        .collect()
}

/// The sysctls below the profile on `host`, as log-ready lines
/// (`net.core.rmem_max is 212992, the profile wants >= 33554432`). Keys that
/// cannot be read are left out. For the bridge's start: never fails.
pub fn below_profile(host: &Host, profile: &Profile) -> Vec<String> {
    sysctl_findings(host, profile)
        .into_iter()
        .filter(|f| f.verdict == Verdict::Off)
        .map(|f| {
            format!(
                "{} is {}, the profile wants {}",
                f.name, f.current, f.wanted
            )
        })
        .collect()
}

/// Checks every sysctl of `profile` and the host settings that are not
/// sysctls: CPU frequency governor, isolation of `shard_cores`, the memlock
/// limit, and where NIC interrupts land compared with `shard_cores`.
pub fn check(host: &Host, profile: &Profile, shard_cores: &[usize]) -> Report {
    let mut findings = sysctl_findings(host, profile);
    let cores: BTreeSet<u32> = shard_cores
        .iter()
        .filter_map(|&c| u32::try_from(c).ok())
        .collect();
    findings.push(governor(host, &cores));
    findings.push(isolation(host, &cores));
    findings.push(memlock(host));
    findings.push(irq_affinity(host, &cores));
    Report { findings }
}

fn governor(host: &Host, cores: &BTreeSet<u32>) -> Finding {
    let mut found: Vec<(u32, String)> = Vec::new();
    for &c in cores {
        let path = host.path(&format!(
            "sys/devices/system/cpu/cpu{c}/cpufreq/scaling_governor"
        ));
        if let Ok(g) = fs::read_to_string(path) {
            found.push((c, g.trim().to_owned()));
        }
    }
    let mut finding = Finding {
        name: "cpu governor (shard cores)".into(),
        current: String::new(),
        wanted: "performance".into(),
        verdict: Verdict::Ok,
        note: None,
    };
    if found.is_empty() {
        finding.current = "(no cpufreq)".into();
        finding.verdict = Verdict::Unknown;
        finding.note = Some("no cpufreq on the shard cores: a VM, or a fixed clock".into());
        return finding;
    }
    let distinct: BTreeSet<&str> = found.iter().map(|(_, g)| g.as_str()).collect();
    finding.current = distinct.into_iter().collect::<Vec<_>>().join(",");
    let slow: BTreeSet<u32> = found
        .iter()
        .filter(|(_, g)| g != "performance")
        .map(|(c, _)| *c)
        .collect();
    if !slow.is_empty() {
        finding.verdict = Verdict::Off;
        finding.note = Some(format!(
            "cores {} ramp their clock up only after a burst has started, which adds \
             latency and jitter; set the governor to performance (cpupower frequency-set -g performance)",
            cpulist::format(&slow)
        ));
    }
    finding
}

fn isolation(host: &Host, cores: &BTreeSet<u32>) -> Finding {
    let read = |name: &str| {
        fs::read_to_string(host.path(&format!("sys/devices/system/cpu/{name}")))
            .ok()
            .and_then(|t| cpulist::parse(&t))
    };
    let (isolated, nohz) = (read("isolated"), read("nohz_full"));
    let mut finding = Finding {
        name: "shard cores isolated".into(),
        current: String::new(),
        wanted: format!("isolated or nohz_full contains {}", cpulist::format(cores)),
        verdict: Verdict::Ok,
        note: None,
    };
    if isolated.is_none() && nohz.is_none() {
        finding.current = "(unknown)".into();
        finding.verdict = Verdict::Unknown;
        return finding;
    }
    let mut quiet = isolated.clone().unwrap_or_default();
    quiet.extend(nohz.clone().unwrap_or_default());
    finding.current = format!(
        "isolated={} nohz_full={}",
        isolated.map_or("-".into(), |s| cpulist::format(&s)),
        nohz.map_or("-".into(), |s| cpulist::format(&s))
    );
    let busy: BTreeSet<u32> = cores.difference(&quiet).copied().collect();
    if !busy.is_empty() {
        finding.verdict = Verdict::Off;
        finding.note = Some(format!(
            "cores {} also run other processes, which preempt a shard mid-batch; boot with \
             isolcpus={} (or nohz_full=) and keep other services off them",
            cpulist::format(&busy),
            cpulist::format(cores)
        ));
    }
    finding
}

/// The memlock limit `ringbridge.service` grants (its `LimitMEMLOCK=`, with
/// drop-ins), not the checking shell's.
fn memlock(host: &Host) -> Finding {
    let wanted = format!("infinity or >= {} MiB", MIN_MEMLOCK / (1024 * 1024));
    let mut finding = Finding {
        name: format!("memlock limit ({})", unit::UNIT),
        current: String::new(),
        wanted,
        verdict: Verdict::Unknown,
        note: None,
    };
    let judge = |bytes: Option<u64>| match bytes {
        None => Verdict::Ok,
        Some(n) if n >= MIN_MEMLOCK => Verdict::Ok,
        Some(_) => Verdict::Off,
    };
    let show = |bytes: Option<u64>| match bytes {
        None => "infinity".to_owned(),
        Some(n) => format!("{} KiB", n / 1024),
    };
    let raise = format!(
        "io_uring rings are locked memory on kernels before 5.12; set LimitMEMLOCK=infinity \
         (`systemctl edit {}`)",
        unit::UNIT
    );
    match unit::memlock_grant(host) {
        MemlockGrant::NoUnit => {
            finding.current = "(no unit)".into();
            finding.note = Some(format!(
                "cannot tell: no {} under /{}; a bridge started another way gets the \
                 limit of what starts it (this process has {})",
                unit::UNIT,
                unit::UNIT_DIRS.join(", /"),
                own_memlock(host).unwrap_or_else(|| "an unreadable limit".into())
            ));
        }
        MemlockGrant::Set { value, bytes, file } => {
            finding.current = format!("{} (LimitMEMLOCK={value})", show(bytes));
            finding.verdict = judge(bytes);
            finding.note = Some(if finding.verdict == Verdict::Ok {
                format!("from {}", file.display())
            } else {
                format!("from {}; {raise}", file.display())
            });
        }
        MemlockGrant::Invalid { value, file } => {
            finding.current = format!("LimitMEMLOCK={value}");
            finding.verdict = Verdict::Off;
            finding.note = Some(format!(
                "{} sets a value systemd refuses; {raise}",
                file.display()
            ));
        }
        MemlockGrant::Unset { unit: file } => match unit::default_memlock(host) {
            Some((value, bytes)) => {
                finding.current = format!("{} (DefaultLimitMEMLOCK={value})", show(bytes));
                finding.verdict = judge(bytes);
                finding.note = Some(format!(
                    "{} sets no LimitMEMLOCK=, so systemd's DefaultLimitMEMLOCK applies{}",
                    file.display(),
                    if finding.verdict == Verdict::Ok {
                        String::new()
                    } else {
                        format!("; {raise}")
                    }
                ));
            }
            None => {
                finding.current = "systemd's default (8 MiB)".into();
                finding.verdict = Verdict::Off;
                finding.note = Some(format!(
                    "{} sets no LimitMEMLOCK=, so systemd's default applies (8 MiB since \
                     systemd 253, 64 KiB before); {raise}",
                    file.display()
                ));
            }
        },
    }
    finding
}

/// This process's soft memlock limit, from `<root>/proc/self/limits`.
fn own_memlock(host: &Host) -> Option<String> {
    let text = fs::read_to_string(host.path("proc/self/limits")).ok()?;
    let line = text.lines().find(|l| l.starts_with("Max locked memory"))?;
    let soft = line
        .trim_start_matches("Max locked memory")
        .split_whitespace()
        .next()?;
    Some(match soft.parse::<u64>() {
        Ok(n) => format!("{} KiB", n / 1024),
        Err(_) => soft.to_owned(),
    })
}

/// Interface names under `/sys/class/net` (but `lo`) and the usual names that
/// NIC drivers give their queue interrupts.
fn is_nic_irq(name: &str, interfaces: &[String]) -> bool {
    const DRIVER_PREFIXES: &[&str] = &[
        "mlx4",
        "mlx5_comp",
        "i40e",
        "iavf",
        "ice-",
        "ixgbe",
        "igb",
        "igc",
        "bnxt",
        "ena-",
        "enp",
        "eth",
        "ens",
        "eno",
        "gve",
        "hinic",
        "qede",
        "nfp",
    ];
    let virtio_queue =
        name.starts_with("virtio") && (name.contains("-input") || name.contains("-output"));
    virtio_queue
        || DRIVER_PREFIXES.iter().any(|p| name.starts_with(p))
        || interfaces.iter().any(|i| name.contains(i.as_str()))
}

fn irq_affinity(host: &Host, cores: &BTreeSet<u32>) -> Finding {
    let mut finding = Finding {
        name: "NIC IRQ affinity".into(),
        current: "(no NIC interrupts found)".into(),
        wanted: format!("no NIC IRQ on shard cores {}", cpulist::format(cores)),
        verdict: Verdict::Unknown,
        note: None,
    };
    let Ok(text) = fs::read_to_string(host.path("proc/interrupts")) else {
        return finding;
    };
    let online = online_cpus(host, &text);
    let interfaces: Vec<String> = fs::read_dir(host.path("sys/class/net"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n != "lo")
                .collect()
        })
        .unwrap_or_default();
    let mut nic_irqs: Vec<(u32, String, Option<BTreeSet<u32>>)> = Vec::new();
    for line in text.lines().skip(1) {
        let Some((id, rest)) = line.trim_start().split_once(':') else {
            continue;
        };
        let Ok(id) = id.parse::<u32>() else {
            continue; // NMI, LOC and friends
        };
        // The action names follow the per-CPU counts and the chip/type columns.
        let Some(name) = rest.split_whitespace().last() else {
            continue;
        };
        if !is_nic_irq(name, &interfaces) {
            continue;
        }
        let affinity = fs::read_to_string(host.path(&format!("proc/irq/{id}/smp_affinity_list")))
            .ok()
            .and_then(|t| cpulist::parse(&t));
        nic_irqs.push((id, name.to_owned(), affinity));
    }
    if nic_irqs.is_empty() {
        return finding;
    }
    let mut all = BTreeSet::new();
    let mut on_shards = Vec::new();
    for (id, name, affinity) in &nic_irqs {
        if let Some(a) = affinity {
            all.extend(a.iter().copied());
            if !a.is_disjoint(cores) {
                on_shards.push((*id, name.as_str(), cpulist::format(a)));
            }
        }
    }
    finding.current = format!("{} IRQs on cores {}", nic_irqs.len(), cpulist::format(&all));
    if on_shards.is_empty() {
        finding.verdict = Verdict::Ok;
        return finding;
    }
    finding.verdict = Verdict::Off;
    // Where they should go: every online core that runs no shard.
    let target: BTreeSet<u32> = online.difference(cores).copied().collect();
    let moves = on_shards
        .iter()
        .map(|(id, name, now)| {
            if target.is_empty() {
                format!("{id} ({name}, now on {now})")
            } else {
                format!(
                    "echo {} > /proc/irq/{id}/smp_affinity_list ({name}, now on {now})",
                    cpulist::format(&target)
                )
            }
        })
        .collect::<Vec<_>>()
        .join("; ");
    finding.note = Some(if target.is_empty() {
        format!(
            "interrupts that land on a shard core stall its packet loop, and every core \
             runs a shard: leave one core out of media.cores for interrupts and the control \
             plane. On shard cores: {moves}"
        )
    } else {
        format!(
            "interrupts that land on a shard core stall its packet loop; move them to cores \
             {target} (and keep irqbalance off the shard cores: \
             IRQBALANCE_BANNED_CPULIST={shards}): {moves}",
            target = cpulist::format(&target),
            shards = cpulist::format(cores)
        )
    });
    finding
}

/// The online cores: `sys/devices/system/cpu/online`, else the `CPUn` columns
/// of `/proc/interrupts` (`interrupts`).
fn online_cpus(host: &Host, interrupts: &str) -> BTreeSet<u32> {
    if let Some(set) = fs::read_to_string(host.path("sys/devices/system/cpu/online"))
        .ok()
        .and_then(|t| cpulist::parse(&t))
        .filter(|s| !s.is_empty())
    {
        return set;
    }
    interrupts
        .lines()
        .next()
        .map(|header| {
            header
                .split_whitespace()
                .filter_map(|c| c.strip_prefix("CPU")?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Writes `<root>/etc/sysctl.d/90-ringbridge.conf` and raises every running
/// value that is below the profile (`<root>/proc/sys/...`). Values already
/// above the profile are kept, in the file too, so that the boot-time
/// `sysctl --system` never lowers them. With `dry_run`, reads only.
pub fn apply(host: &Host, profile: &Profile, dry_run: bool) -> Result<ApplyReport, TuneError> {
    let mut writes = Vec::new();
    let mut values = Vec::new();
    for s in profile.settings() {
        let current = read_trimmed(host, &s.key);
        let (verdict, target) = evaluate(&s.wanted, current.as_deref());
        if verdict != Verdict::Ok {
            writes.push(SysctlWrite {
                key: s.key.clone(),
                from: current,
                to: target.clone(),
            });
        }
        values.push((s.key.as_str(), target));
    }
    let file_text = render(&values);
    let file = host.path(SYSCTL_FILE);
    if !dry_run {
        let io = |path: PathBuf| move |source| TuneError::Io { path, source };
        if let Some(dir) = file.parent() {
            fs::create_dir_all(dir).map_err(io(dir.to_path_buf()))?;
        }
        fs::write(&file, &file_text).map_err(io(file.clone()))?;
        for w in &writes {
            let path = host.sysctl_path(&w.key);
            fs::write(&path, format!("{}\n", w.to)).map_err(io(path))?;
        }
    }
    Ok(ApplyReport {
        file,
        file_text,
        writes,
        dry_run,
    })
}

/// The profile text with each active line's value replaced by `values`,
/// keeping every comment (the reasons).
fn render(values: &[(&str, String)]) -> String {
    let mut out = String::from(
        "# Written by `ringbridge tune apply`; rewritten on every apply.\n\
         # Values already above the profile on this host were kept.\n\n",
    );
    for line in PROFILE.lines() {
        let trimmed = line.trim();
        let key = trimmed.split_once('=').map(|(k, _)| k.trim());
        match key {
            Some(k) if !trimmed.starts_with('#') => {
                match values.iter().find(|(key, _)| *key == k) {
                    Some((_, v)) => {
                        let _ = writeln!(out, "{k} = {v}");
                    }
                    None => {
                        let _ = writeln!(out, "{line}");
                    }
                }
            }
            _ => {
                let _ = writeln!(out, "{line}");
            }
        }
    }
    debug_assert!(values.iter().any(|(k, _)| *k == RESERVED_PORTS));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_least_never_lowers() {
        let w = Wanted::AtLeast(vec![10, 20, 30]);
        assert_eq!(
            evaluate(&w, Some("10 25 40")),
            (Verdict::Ok, "10 25 40".into())
        );
        assert_eq!(
            evaluate(&w, Some("5 25 40")),
            (Verdict::Off, "10 25 40".into())
        );
        assert_eq!(
            evaluate(&w, Some("5 25")),
            (Verdict::Off, "10 20 30".into())
        );
        assert_eq!(evaluate(&w, None), (Verdict::Unknown, "10 20 30".into()));
    }

    #[test]
    fn ports_are_merged() {
        let w = Wanted::Ports(10, 20);
        assert_eq!(evaluate(&w, Some("")), (Verdict::Off, "10-20".into()));
        assert_eq!(evaluate(&w, Some("5,8-25")), (Verdict::Ok, "5,8-25".into()));
        assert_eq!(
            evaluate(&w, Some("5,15-30")),
            (Verdict::Off, "5,10-30".into())
        );
        assert_eq!(evaluate(&w, Some("bogus")), (Verdict::Off, "10-20".into()));
    }

    #[test]
    fn nic_irq_names() {
        let ifs = vec!["enp1s0f0".to_owned()];
        assert!(is_nic_irq("enp1s0f0-TxRx-3", &ifs));
        assert!(is_nic_irq("virtio1-input.0", &ifs));
        assert!(is_nic_irq("mlx5_comp4@pci:0000:3b:00.0", &ifs));
        assert!(!is_nic_irq("nvme0q1", &ifs));
        assert!(!is_nic_irq("virtio0-config", &ifs));
        assert!(!is_nic_irq("i8042", &ifs));
    }
}
