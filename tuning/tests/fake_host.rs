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
/// on cores 0 and 2, ondemand governors and no isolated cores.
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
         Max locked memory         8388608              8388608              bytes     \n",
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
    let memlock = finding(&report, "memlock limit");
    assert_eq!(memlock.verdict, Verdict::Off, "{memlock:?}");
    let irq = finding(&report, "NIC IRQ affinity");
    assert_eq!(irq.verdict, Verdict::Off);
    let note = irq.note.as_deref().expect("note names the IRQ");
    assert!(note.contains("25 (enp1s0-TxRx-1) -> 2"), "{note}");
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
    write(
        r,
        "proc/self/limits",
        "Max locked memory         unlimited            unlimited            bytes     \n",
    );
    let host = Host::new(r);
    let profile = Profile::embedded([10000, 20000]).expect("profile");
    apply(&host, &profile, false).expect("apply");
    let report = check(&host, &profile, &[1, 2, 3]);
    assert!(report.is_ok(), "{}", report.render());
    assert!(report.render().contains("all checks passed"));
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
