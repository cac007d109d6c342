//! `check` and `apply` against a fake `/proc`, `/sys` and `/etc` tree in a
//! temporary folder: the machine running the tests is never read or changed.

use std::fs;
use std::path::{Path, PathBuf};

use ringbridge_tuning::{Host, Profile, SYSCTL_FILE, Verdict, apply, below_profile, check};

struct FakeRoot(PathBuf);

impl Drop for FakeRoot {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    fs::write(p, text).expect("write");
}

/// A 4-core host with stock kernel values, a NIC whose queue interrupts land
/// on cores 0 and 2, ondemand governors, no isolated cores, and a
/// ringbridge.service that grants 8 MiB of locked memory (while the shell
/// checking has it unlimited).
fn stock_host(name: &str) -> FakeRoot {
    let root = std::env::temp_dir().join(format!(
        "ringbridge-tuning-{name}-{}-{:?}",
        std::process::id(),
        std::time::SystemTime::now()
    ));
    let _ = fs::remove_dir_all(&root);
    let sysctls = [
        ("net/core/rmem_max", "212992"),
        ("net/core/wmem_max", "212992"),
        ("net/core/rmem_default", "212992"),
        ("net/core/wmem_default", "212992"),
        ("net/core/netdev_max_backlog", "1000"),
        // Big-RAM default above the profile in the last two fields.
        ("net/ipv4/udp_mem", "190000\t600000\t2000000"),
        ("net/ipv4/udp_rmem_min", "4096"),
        ("net/ipv4/ip_local_reserved_ports", "8080"),
    ];
    for (k, v) in sysctls {
        write(&root, &format!("proc/sys/{k}"), &format!("{v}\n"));
    }
    for c in 0..4 {
        write(
            &root,
            &format!("sys/devices/system/cpu/cpu{c}/cpufreq/scaling_governor"),
            "ondemand\n",
        );
    }
    write(&root, "sys/devices/system/cpu/isolated", "\n");
    write(
        &root,
        "proc/self/limits",
        "Limit                     Soft Limit           Hard Limit           Units     \n\
         Max open files            1024                 524288               files     \n\
         Max locked memory         unlimited            unlimited            bytes     \n",
    );
    write(
        &root,
        "lib/systemd/system/ringbridge.service",
        "[Unit]\nDescription=x\n[Service]\nLimitMEMLOCK=8M\nExecStart=/usr/bin/ringbridge run\n",
    );
    write(
        &root,
        "proc/interrupts",
        "           CPU0       CPU1       CPU2       CPU3       \n  \
           1:          9          0          0          0   IO-APIC   1-edge      i8042\n \
          24:       1000          0          0          0   PCI-MSI 524288-edge      enp1s0-TxRx-0\n \
          25:          0          0       2000          0   PCI-MSI 524289-edge      enp1s0-TxRx-1\n \
          26:          0          0          0          5   PCI-MSI 1048576-edge      nvme0q1\n\
         NMI:          0          0          0          0   Non-maskable interrupts\n",
    );
    write(&root, "proc/irq/1/smp_affinity_list", "0-3\n");
    write(&root, "proc/irq/24/smp_affinity_list", "0\n");
    write(&root, "proc/irq/25/smp_affinity_list", "2\n");
    write(&root, "proc/irq/26/smp_affinity_list", "3\n");
    fs::create_dir_all(root.join("sys/class/net/enp1s0")).expect("mkdir");
    fs::create_dir_all(root.join("sys/class/net/lo")).expect("mkdir");
    FakeRoot(root)
}

const MEMLOCK: &str = "memlock limit (ringbridge.service)";

fn finding<'a>(r: &'a ringbridge_tuning::Report, name: &str) -> &'a ringbridge_tuning::Finding {
    r.findings
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no finding {name}: {r:?}"))
}

#[test]
fn stock_host_is_reported_off_everywhere() {
    let root = stock_host("stock");
    let host = Host::new(&root.0);
    let profile = Profile::embedded([10000, 20000]).expect("profile");
    let report = check(&host, &profile, &[1, 2, 3]);
    assert!(!report.is_ok());
    let rmem = finding(&report, "net.core.rmem_max");
    assert_eq!(rmem.current, "212992");
    assert_eq!(rmem.wanted, ">= 33554432");
    assert_eq!(rmem.verdict, Verdict::Off);
    assert_eq!(finding(&report, "net.ipv4.udp_mem").verdict, Verdict::Off);
    assert_eq!(
        finding(&report, "net.ipv4.ip_local_reserved_ports").verdict,
        Verdict::Off
    );
    assert_eq!(
        finding(&report, "cpu governor (shard cores)").verdict,
        Verdict::Off
    );
    assert_eq!(
        finding(&report, "shard cores isolated").verdict,
        Verdict::Off
    );
    // The unit's 8 MiB, not the checking shell's unlimited.
    let memlock = finding(&report, MEMLOCK);
    assert_eq!(memlock.verdict, Verdict::Off, "{memlock:?}");
    assert!(memlock.current.contains("LimitMEMLOCK=8M"), "{memlock:?}");
    let irq = finding(&report, "NIC IRQ affinity");
    assert_eq!(irq.verdict, Verdict::Off);
    let note = irq.note.as_deref().expect("note names the IRQ");
    // The advice moves IRQ 25 to the core without a shard (0), not to where it is (2).
    assert!(
        note.contains("echo 0 > /proc/irq/25/smp_affinity_list (enp1s0-TxRx-1, now on 2)"),
        "{note}"
    );
    assert!(note.contains("move them to cores 0"), "{note}");
    assert!(
        !note.contains("24"),
        "IRQ 24 is on core 0, not a shard core: {note}"
    );
    assert!(!note.contains("nvme"), "{note}");

    let text = report.render();
    assert!(text.contains("net.core.rmem_max"), "{text}");
    assert!(text.contains("OFF"), "{text}");

    let warnings = below_profile(&host, &profile);
    assert_eq!(warnings.len(), 8, "{warnings:?}");
    assert!(warnings[0].contains("net.core.rmem_max is 212992"));
}

#[test]
fn tuned_host_passes() {
    let root = stock_host("tuned");
    let r = &root.0;
    for c in 0..4 {
        write(
            r,
            &format!("sys/devices/system/cpu/cpu{c}/cpufreq/scaling_governor"),
            "performance\n",
        );
    }
    write(r, "sys/devices/system/cpu/isolated", "2-3\n");
    write(r, "sys/devices/system/cpu/nohz_full", "1\n");
    write(r, "proc/irq/25/smp_affinity_list", "0\n");
    // A drop-in raises the unit's limit, as `systemctl edit` writes it.
    write(
        r,
        "etc/systemd/system/ringbridge.service.d/override.conf",
        "[Service]\nLimitMEMLOCK=infinity\n",
    );
    let host = Host::new(r);
    let profile = Profile::embedded([10000, 20000]).expect("profile");
    apply(&host, &profile, false).expect("apply");
    let report = check(&host, &profile, &[1, 2, 3]);
    assert!(report.is_ok(), "{}", report.render());
    assert!(report.render().contains("all checks passed"));
}

#[test]
fn memlock_is_what_the_unit_grants_not_the_shell() {
    let root = stock_host("memlock");
    let r = &root.0;
    let host = Host::new(r);
    let profile = Profile::embedded([10000, 20000]).expect("profile");
    let memlock = |host: &Host| finding(&check(host, &profile, &[1]), MEMLOCK).clone();

    // An empty assignment in a drop-in resets the unit's 8M: systemd's
    // DefaultLimitMEMLOCK applies, from system.conf when it sets one.
    write(
        r,
        "etc/systemd/system/ringbridge.service.d/10-reset.conf",
        "[Service]\nLimitMEMLOCK=\n",
    );
    let m = memlock(&host);
    assert_eq!(m.verdict, Verdict::Off, "{m:?}");
    assert!(m.current.contains("systemd's default"), "{m:?}");
    write(
        r,
        "etc/systemd/system.conf",
        "[Manager]\nDefaultLimitMEMLOCK=128M\n",
    );
    let m = memlock(&host);
    assert_eq!(m.verdict, Verdict::Ok, "{m:?}");
    assert!(m.current.contains("DefaultLimitMEMLOCK=128M"), "{m:?}");

    // A later drop-in wins; /etc's copy of a drop-in replaces /lib's.
    write(
        r,
        "lib/systemd/system/ringbridge.service.d/20-low.conf",
        "[Service]\nLimitMEMLOCK=64K\n",
    );
    assert_eq!(memlock(&host).verdict, Verdict::Off);
    write(
        r,
        "etc/systemd/system/ringbridge.service.d/20-low.conf",
        "[Service]\nLimitMEMLOCK=64M:infinity\n",
    );
    let m = memlock(&host);
    assert_eq!(m.verdict, Verdict::Ok, "{m:?}");
    assert!(
        m.note.as_deref().is_some_and(|n| n.contains("etc/systemd")),
        "{m:?}"
    );

    // No unit at all: it cannot tell, and says so.
    fs::remove_dir_all(r.join("lib/systemd")).expect("rm");
    fs::remove_dir_all(r.join("etc/systemd")).expect("rm");
    let m = memlock(&host);
    assert_eq!(m.verdict, Verdict::Unknown, "{m:?}");
    let note = m.note.expect("a note");
    assert!(note.starts_with("cannot tell"), "{note}");
}

#[test]
fn the_shipped_unit_grants_enough_memlock() {
    let root = stock_host("shipped");
    let unit = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd/ringbridge.service"),
    )
    .expect("systemd/ringbridge.service");
    write(&root.0, "lib/systemd/system/ringbridge.service", &unit);
    let profile = Profile::embedded([10000, 20000]).expect("profile");
    let report = check(&Host::new(&root.0), &profile, &[1]);
    assert_eq!(finding(&report, MEMLOCK).verdict, Verdict::Ok);
}

#[test]
fn irq_advice_says_when_no_core_is_left() {
    let root = stock_host("allcores");
    let profile = Profile::embedded([10000, 20000]).expect("profile");
    let report = check(&Host::new(&root.0), &profile, &[0, 1, 2, 3]);
    let note = finding(&report, "NIC IRQ affinity")
        .note
        .clone()
        .expect("a note");
    assert!(note.contains("leave one core out of media.cores"), "{note}");
    assert!(!note.contains("echo"), "{note}");
}

#[test]
fn apply_raises_what_is_low_and_keeps_what_is_high() {
    let root = stock_host("apply");
    let host = Host::new(&root.0);
    let profile = Profile::embedded([10000, 20000]).expect("profile");

    // Dry run: reports, writes nothing.
    let dry = apply(&host, &profile, true).expect("dry run");
    assert!(dry.dry_run);
    assert_eq!(dry.writes.len(), 8);
    assert!(!root.0.join(SYSCTL_FILE).exists());
    assert_eq!(
        fs::read_to_string(root.0.join("proc/sys/net/core/rmem_max")).expect("read"),
        "212992\n"
    );

    let done = apply(&host, &profile, false).expect("apply");
    assert_eq!(done.file, root.0.join(SYSCTL_FILE));
    let file = fs::read_to_string(&done.file).expect("sysctl.d file");
    assert!(file.contains("net.core.rmem_max = 33554432\n"), "{file}");
    // udp_mem: each field the larger of the host's and the profile's.
    assert!(
        file.contains("net.ipv4.udp_mem = 262144 600000 2000000\n"),
        "{file}"
    );
    assert!(
        file.contains("net.ipv4.ip_local_reserved_ports = 8080,10000-20000\n"),
        "{file}"
    );
    // The reasons are kept, and busy polling stays opt-in.
    assert!(file.contains("# Largest receive buffer"), "{file}");
    assert!(file.contains("# net.core.busy_poll = 50"), "{file}");
    let read = |k: &str| fs::read_to_string(root.0.join("proc/sys").join(k)).expect("read");
    assert_eq!(read("net/core/rmem_max"), "33554432\n");
    assert_eq!(read("net/core/netdev_max_backlog"), "65536\n");
    assert_eq!(read("net/ipv4/udp_mem"), "262144 600000 2000000\n");
    assert_eq!(
        read("net/ipv4/ip_local_reserved_ports"),
        "8080,10000-20000\n"
    );

    // A second apply has nothing left to raise.
    let again = apply(&host, &profile, false).expect("apply again");
    assert!(again.writes.is_empty(), "{:?}", again.writes);
    assert!(below_profile(&host, &profile).is_empty());
}

#[test]
fn a_bare_tree_is_unknown_not_off_and_apply_fails_cleanly() {
    let root = stock_host("bare");
    fs::remove_dir_all(root.0.join("proc")).expect("rm proc");
    fs::remove_dir_all(root.0.join("sys")).expect("rm sys");
    fs::remove_dir_all(root.0.join("lib")).expect("rm lib");
    let host = Host::new(&root.0);
    let profile = Profile::embedded([10000, 20000]).expect("profile");
    let report = check(&host, &profile, &[1]);
    assert!(report.is_ok(), "{}", report.render());
    assert!(
        report
            .findings
            .iter()
            .all(|f| f.verdict == Verdict::Unknown)
    );
    // No /proc/sys to write to: an error naming the file, not a panic.
    let err = apply(&host, &profile, false).expect_err("no proc/sys");
    assert!(
        err.to_string().contains("proc/sys/net/core/rmem_max"),
        "{err}"
    );
}
