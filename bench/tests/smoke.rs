//! The bench binary end to end: against the release `ringbridge` (real
//! signalling, ICE, DTLS, SRTP) and against the null forwarder, a short
//! `meeting` of 3 endpoints must deliver every packet and write a complete report.

use std::process::Command;
use std::sync::Mutex;

use ringbridge_devsupport::ringbridge_bin;
use serde_json::Value;

/// The two runs would fight over the machine's two cores: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Bench namespaces (`rbbench-*`) on this machine.
fn bench_namespaces() -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("rbbench-"))
        .map(str::to_owned)
        .collect()
}

/// Whether `--netns` can work here (root and `ip`).
fn netns_possible() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    root && Command::new("ip")
        .args(["netns", "list"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// One run of the bench binary: its stdout, its JSON report and its plot.
struct BenchRun {
    stdout: String,
    report: Value,
    svg: Option<String>,
}

/// Runs `ringbridge-bench ARGS --quiet --json FILE [--plot FILE] --bridge-bin BIN`,
/// one run at a time, in a temporary folder named after `label`; checks that it
/// succeeded and left no network namespace behind.
fn bench(label: &str, args: &[&str], plot: bool) -> BenchRun {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let namespaces_before = bench_namespaces();
    let dir = std::env::temp_dir().join(format!("ringbridge-bench-{label}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let json = dir.join("report.json");
    let plot_file = dir.join("plot.svg");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringbridge-bench"));
    cmd.args(args).arg("--quiet").arg("--json").arg(&json);
    if plot {
        cmd.arg("--plot").arg(&plot_file);
    }
    let out = cmd
        .arg("--bridge-bin")
        .arg(ringbridge_bin())
        .output()
        .expect("bench runs");
    assert_eq!(
        bench_namespaces(),
        namespaces_before,
        "the run left a namespace behind"
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bench failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let svg = plot.then(|| std::fs::read_to_string(&plot_file).expect("plot written"));
    let report = serde_json::from_str(&std::fs::read_to_string(&json).expect("json written"))
        .expect("report is JSON");
    let _ = std::fs::remove_dir_all(&dir);
    BenchRun {
        stdout,
        report,
        svg,
    }
}

fn run_bench(target: &str) -> Value {
    run_bench_on(target, false)
}

fn run_bench_on(target: &str, netns: bool) -> Value {
    run_bench_with(target, netns, "gcm")
}

fn run_bench_with(target: &str, netns: bool, profile: &str) -> Value {
    run_bench_args(target, netns, profile, &[])
}

fn run_bench_args(target: &str, netns: bool, profile: &str, extra: &[&str]) -> Value {
    let mut args = vec!["run", "--target", target, "--shape", "meeting"];
    args.extend(["--endpoints", "3", "--duration", "2", "--warmup", "1"]);
    args.extend(["--profile", profile]);
    args.extend(extra);
    if netns {
        args.push("--netns");
    }
    let label = format!("smoke-{target}-{netns}-{profile}-{}", extra.join(""));
    let run = bench(&label, &args, true);
    let stdout = &run.stdout;
    assert!(stdout.contains("egress pps"), "no table:\n{stdout}");
    let svg = run.svg.unwrap_or_default();
    assert!(svg.starts_with("<svg") && svg.contains("<polyline"));
    let v = run.report;
    for key in [
        "shape",
        "profile",
        "endpoints",
        "duration_s",
        "egress_pps",
        "ingress_pps",
        "loss_ratio",
        "latency_us",
        "bridge_cpu_ns_per_egress_packet",
        "efficiency_vs_null",
        "ratio_vs_janus",
        "io_backend",
    ] {
        assert!(v.get(key).is_some(), "report lacks {key}: {v}");
    }
    assert_eq!(v["shape"], "meeting");
    assert_eq!(v["profile"], profile);
    assert_eq!(v["endpoints"], 3);
    assert_eq!(v["loss_ratio"].as_f64(), Some(0.0), "{v}");
    assert!(v["egress_pps"].as_f64().is_some_and(|p| p > 0.0), "{v}");
    // Each of 3 senders reaches 2 receivers: egress is twice ingress.
    let (egress, ingress) = (
        v["egress_pps"].as_f64().unwrap_or(0.0),
        v["ingress_pps"].as_f64().unwrap_or(0.0),
    );
    assert!(
        (egress / ingress - 2.0).abs() < 0.1,
        "egress {egress} ingress {ingress}"
    );
    assert!(
        v["latency_us"]["p50"].as_f64().is_some_and(|p| p > 0.0),
        "{v}"
    );
    assert!(v["latency_us"]["p99"].as_f64().is_some());
    assert!(v["latency_us"]["p999"].as_f64().is_some());
    assert!(
        v["bridge_cpu_ns_per_egress_packet"]
            .as_f64()
            .is_some_and(|c| c > 0.0),
        "{v}"
    );
    assert_eq!(v["ratio_vs_janus"], Value::Null);
    let checks = &v["targets"][0]["checks"];
    assert_eq!(checks["corrupt"], 0);
    assert_eq!(checks["seq_gaps"], 0);
    assert_eq!(checks["auth_failures"], 0);
    assert_eq!(checks["header_mismatches"], 0, "{v}");
    let network = if netns { "veth" } else { "loopback" };
    assert_eq!(v["network"], network, "{v}");
    assert_eq!(v["targets"][0]["network"], network, "{v}");
    assert_eq!(v["generator_socket_drops"], 0, "{v}");
    assert!(
        v["generator_cpu_util"]
            .as_f64()
            .is_some_and(|u| u > 0.0 && u < 0.95),
        "{v}"
    );
    v
}

#[test]
fn meeting_of_three_through_ringbridge_loses_nothing() {
    let v = run_bench("ringbridge");
    assert_eq!(v["target"], "ringbridge");
    assert_eq!(v["single_port"], false, "a port per endpoint by default");
    // The bench offers exactly the profile asked for (gcm: AES-128-GCM).
    assert_eq!(v["negotiated_profile"], "SRTP_AEAD_AES_128_GCM", "{v}");
    assert!(
        matches!(v["io_backend"].as_str(), Some("uring" | "mmsg")),
        "{v}"
    );
    // `run` verifies every packet by default: each delivery was decrypted.
    let checks = &v["targets"][0]["checks"];
    assert_eq!(checks["verify_every"], 1, "{v}");
    assert!(
        checks["verified"].as_u64() >= checks["delivered"].as_u64(),
        "{v}"
    );
    assert_eq!(checks["unattributed"], 0, "{v}");
}

/// `--verify-every 8`: a sample of the packets is decrypted and checked,
/// the rest are accounted from their headers, and the meeting still loses
/// nothing (the loss, latency and continuity checks of `run_bench_args`).
#[test]
fn meeting_of_three_verified_by_sample_loses_nothing() {
    let v = run_bench_args("ringbridge", false, "gcm", &["--verify-every", "8"]);
    let checks = &v["targets"][0]["checks"];
    assert_eq!(checks["verify_every"], 8, "{v}");
    let verified = checks["verified"].as_u64().unwrap_or(0);
    let delivered = checks["delivered"].as_u64().unwrap_or(0);
    assert!(
        verified > 0 && verified * 3 < delivered,
        "a sample, not every packet: {v}"
    );
}

/// `--media-port`: ringbridge in single-port mode (every endpoint on one UDP
/// port) delivers the same meeting, and the report says which mode ran.
#[test]
fn meeting_of_three_through_ringbridge_on_one_port_loses_nothing() {
    let port = (40_000 + std::process::id() % 20_000).to_string();
    let v = run_bench_args("ringbridge", false, "gcm", &["--media-port", &port]);
    assert_eq!(v["single_port"], true, "{v}");
    assert_eq!(v["media_port"].as_u64(), port.parse::<u64>().ok(), "{v}");
}

#[test]
fn meeting_of_three_with_cm_sha1_negotiates_aes_cm_and_loses_nothing() {
    let v = run_bench_with("ringbridge", false, "cm-sha1");
    assert_eq!(
        v["negotiated_profile"], "SRTP_AES128_CM_HMAC_SHA1_80",
        "{v}"
    );
}

#[test]
fn meeting_of_three_through_the_null_forwarder_loses_nothing() {
    let v = run_bench("null");
    assert_eq!(v["target"], "null");
    assert_eq!(v["negotiated_profile"], Value::Null);
}

#[test]
fn meeting_of_three_through_ringbridge_on_veth_loses_nothing() {
    if !netns_possible() {
        eprintln!("skipped: --netns needs root and `ip`");
        return;
    }
    let v = run_bench_on("ringbridge", true);
    assert_eq!(v["target"], "ringbridge");
}

#[test]
fn meeting_of_three_through_the_null_forwarder_on_veth_loses_nothing() {
    if !netns_possible() {
        eprintln!("skipped: --netns needs root and `ip`");
        return;
    }
    let v = run_bench_on("null", true);
    assert_eq!(v["target"], "null");
}

/// Regression: at high fan-out the io_uring driver flushes sends in the middle of
/// a batch of completions, and it once waited there for send completions it had
/// already reaped, stalling the shard for good (livestream 1 -> 400 lost
/// everything after a few seconds). 400 receivers make batches flush
/// mid-way; the run must lose nothing, well past the first seconds.
#[test]
fn livestream_to_400_receivers_over_io_uring_loses_nothing() {
    let args = [
        "run",
        "--shape",
        "livestream",
        "--endpoints",
        "401",
        "--duration",
        "2",
        "--warmup",
        "4",
        "--io",
        "uring",
    ];
    // A generator that could not keep up (a loaded machine: the smoke tests run
    // two at a time on two cores) measures itself, not the bridge: run again once.
    let kept_up = |v: &serde_json::Value| {
        v["targets"][0]["generator"]["held_rate"] == true
            && v["targets"][0]["generator"]["kept_up_receiving"] == true
    };
    let mut run = bench("fanout", &args, false);
    if !kept_up(&run.report) {
        eprintln!("the generator did not keep up; measuring again");
        run = bench("fanout", &args, false);
    }
    let (stdout, v) = (&run.stdout, &run.report);
    assert_eq!(v["io_backend"], "uring", "{v}");
    assert!(
        v["egress_pps"].as_f64().is_some_and(|p| p > 60_000.0),
        "{v}"
    );
    let loss = v["loss_ratio"].as_f64().unwrap_or(1.0);
    if kept_up(v) {
        assert_eq!(loss, 0.0, "{stdout}\n{v}");
    } else {
        // Still overloaded: the regression (a stalled shard loses everything
        // after the first seconds, most of the run) must not be there.
        eprintln!("the generator did not keep up twice: loss {loss} not asserted to be 0");
        assert!(
            loss < 0.25,
            "a stall, not an overloaded generator: {stdout}\n{v}"
        );
    }
}

/// `compare` with no network flag puts all three targets behind the same kind of veth
/// pair, alternates them for 3 rounds, and reports both ratios (or why not).
#[test]
fn compare_puts_ringbridge_null_and_janus_behind_veth_by_default() {
    if !netns_possible() || !std::path::Path::new("/usr/bin/janus").exists() {
        eprintln!("skipped: compare needs root, `ip` and Janus");
        return;
    }
    let run = bench(
        "compare",
        &[
            "compare",
            "--shape",
            "meeting",
            "--endpoints",
            "3",
            "--duration",
            "1",
            "--warmup",
            "1",
            "--rounds",
            "3",
        ],
        false,
    );
    let v = &run.report;
    assert_eq!(v["network"], "veth", "{v}");
    let targets = v["targets"].as_array().cloned().unwrap_or_default();
    let names: Vec<_> = targets.iter().map(|t| t["target"].clone()).collect();
    assert_eq!(names, ["ringbridge", "null", "janus"], "{v}");
    for t in &targets {
        assert_eq!(t["network"], "veth", "{t}");
        assert_eq!(t["rounds"], 3, "{t}");
    }
    assert_eq!(v["loss_ratio"].as_f64(), Some(0.0), "{v}");
    // A ratio is a positive number, or withheld with a reason.
    let withheld = v["ratios_withheld"].as_array().cloned().unwrap_or_default();
    for key in ["efficiency_vs_null", "ratio_vs_janus"] {
        assert!(
            v[key].as_f64().is_some_and(|r| r > 0.0) || !withheld.is_empty(),
            "{key}: {v}"
        );
    }
}

/// Whether `nft` (package nftables) is there, for `--loss`.
fn nft_available() -> bool {
    Command::new("nft")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `--loss 5` drops 5% of the media datagrams each way inside ringbridge's
/// namespace, and the report measures it. Expected: the bench's senders answer
/// no NACK, so a forwarded packet is delivered only if it survives the input
/// rule (sender -> bridge) and then the output rule (bridge -> receiver), each
/// an independent 95%: loss = 1 - 0.95² = 9.75%. With about 1,200 deliveries a
/// second (3 senders × ~205 packets/s × 2 receivers) for 3 s, and one hop-1
/// drop costing both receivers, the standard deviation is under 1%; 5..15% is
/// several deviations each side, and excludes both "no loss" and "dropped on
/// one hop only twice as often". When the bridge repairs loss (issue 10's NACK
/// toward senders), this bound must move: the bench's senders still do not
/// retransmit, so only the second hop could be repaired.
#[test]
fn meeting_of_three_on_veth_with_loss_5_measures_the_injected_loss() {
    if !netns_possible() || !nft_available() {
        eprintln!("skipped: --loss needs root, `ip` and `nft`");
        return;
    }
    let run = bench(
        "loss",
        &[
            "run",
            "--target",
            "ringbridge",
            "--shape",
            "meeting",
            "--endpoints",
            "3",
            "--duration",
            "3",
            "--warmup",
            "1",
            "--netns",
            "--loss",
            "5",
        ],
        false,
    );
    let (stdout, v) = (&run.stdout, &run.report);
    assert_eq!(v["loss_injected_percent"], 5, "{v}");
    assert!(stdout.contains("loss injected: 5%"), "{stdout}");
    let loss = v["loss_ratio"].as_f64().unwrap_or(0.0);
    eprintln!(
        "--loss 5: measured loss_ratio {:.2}% (expected 9.75%)",
        loss * 100.0
    );
    assert!(
        (0.05..=0.15).contains(&loss),
        "--loss 5 each way: measured loss {:.2}%, expected about 9.75%\n{stdout}",
        loss * 100.0
    );
    assert_eq!(v["targets"][0]["checks"]["corrupt"], 0, "{v}");
    // The window starts once every slot delivered: a keyframe lost at the
    // start is a late open in the warm-up, not loss in the window.
    assert_eq!(v["targets"][0]["checks"]["slots_missing"], 0, "{v}");
}

/// `knee` runs the shape at growing loads with a fresh bridge per step and
/// reports each step and the highest one carried. On a shared machine the
/// generator may be what fails first, so what is checked is that the report
/// is consistent with its own steps: the knee is the highest passing step,
/// and the bound names what failed above it.
#[test]
fn knee_reports_every_step_and_the_highest_one_carried() {
    let run = bench(
        "knee",
        &[
            "knee",
            "--target",
            "ringbridge",
            "--shape",
            "meeting",
            "--endpoints",
            "3",
            "--start",
            "1",
            "--max-conferences",
            "2",
            "--duration",
            "1",
            "--warmup",
            "0.5",
        ],
        false,
    );
    let v = &run.report;
    let steps = v["steps"].as_array().expect("steps");
    assert!(!steps.is_empty(), "{v}");
    assert_eq!(steps[0]["conferences"], 1, "{v}");
    for st in steps {
        let c = st["conferences"].as_u64().expect("conferences");
        assert!((1..=2).contains(&c), "{v}");
        assert!(st["egress_pps"].as_f64().unwrap_or(0.0) > 0.0, "{v}");
        let passed = st["passed"].as_bool().expect("passed");
        let clean = st["loss_ratio"].as_f64() == Some(0.0) && st["generator_ok"] == true;
        assert_eq!(
            passed, clean,
            "a step passes exactly when loss-free and kept up: {v}"
        );
    }
    let best = steps
        .iter()
        .filter(|s| s["passed"] == true)
        .filter_map(|s| s["conferences"].as_u64())
        .max();
    assert_eq!(v["knee"]["conferences"].as_u64(), best, "{v}");
    let last = steps.last().expect("a step");
    match v["bound"].as_str() {
        Some("max") => assert_eq!(best, Some(2), "{v}"),
        Some("generator") => assert_eq!(last["generator_ok"], false, "{v}"),
        Some("target") => assert!(steps.iter().any(|s| s["passed"] == false), "{v}"),
        other => panic!("bound {other:?}: {v}"),
    }
    assert!(run.stdout.contains("knee search"), "{}", run.stdout);
    // knee verifies a sample of what it receives by default.
    assert_eq!(v["verify_every"], 16, "{v}");
    assert!(steps.iter().all(|s| s["integrity_failures"] == 0), "{v}");
}

/// Ctrl-C in the middle of a run behind veth: the bench stops within a
/// second, exits 130 saying it was interrupted, and its bridge and namespace
/// are gone (killed by the default action, a run left both behind).
#[test]
fn ctrl_c_during_a_run_stops_the_bridge_and_removes_its_namespace() {
    if !netns_possible() {
        eprintln!("skipped: --netns needs root and `ip`");
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let before = bench_namespaces();
    let child = Command::new(env!("CARGO_BIN_EXE_ringbridge-bench"))
        .args([
            "run",
            "--target",
            "ringbridge",
            "--shape",
            "meeting",
            "--endpoints",
            "3",
            "--duration",
            "60",
            "--netns",
            "--quiet",
            "--bridge-bin",
        ])
        .arg(ringbridge_bin())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("bench starts");
    // Until its namespace exists and the bridge in it answers (media flows
    // soon after), at most 30 s.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mine = loop {
        let now: Vec<String> = bench_namespaces()
            .into_iter()
            .filter(|n| !before.contains(n))
            .collect();
        if !now.is_empty() || std::time::Instant::now() > deadline {
            break now;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(!mine.is_empty(), "the run made no namespace within 30 s");
    std::thread::sleep(std::time::Duration::from_secs(3));
    let pid = i32::try_from(child.id()).expect("pid");
    // SAFETY: kill(2) on our own child's pid; it has not been waited for.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let sent = std::time::Instant::now();
    let out = child.wait_with_output().expect("bench exits");
    let took = sent.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(
        took < std::time::Duration::from_secs(5),
        "stopped after {took:?}"
    );
    let left: Vec<String> = bench_namespaces()
        .into_iter()
        .filter(|n| mine.contains(n))
        .collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
    // The bridge ran as `ringbridge run --config
    // /tmp/ringbridge-bench-<bench pid>-<tag>/ringbridge.toml`.
    let ps = Command::new("ps")
        .args(["-eo", "args"])
        .output()
        .expect("ps");
    let ps = String::from_utf8_lossy(&ps.stdout);
    let config = format!("ringbridge-bench-{pid}-");
    assert!(
        !ps.lines()
            .any(|l| l.contains(" run --config ") && l.contains(&config)),
        "the run's bridge still runs:\n{ps}"
    );
}

/// `--loss` without `--netns` has nowhere to drop datagrams: refused, saying so.
#[test]
fn loss_without_netns_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_ringbridge-bench"))
        .args(["run", "--target", "null", "--loss", "5", "--quiet"])
        .output()
        .expect("bench runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "accepted --loss without --netns: {stderr}"
    );
    assert!(
        stderr.contains("--loss") && stderr.contains("--netns"),
        "{stderr}"
    );
}
