//! `cargo bench -p ringbridge-bridge --bench shard_forwarding`
//!
//! CPU nanoseconds per forwarded egress datagram of one shard thread, for each
//! I/O backend with UDP GSO on and off: one sender, four receivers (fan-out 4),
//! 1200-byte VP8 packets in frames of 3, over real sockets on 127.0.0.1, with
//! full ICE/DTLS/SRTP clients. The shard's CPU time comes from
//! `/proc/self/task/<tid>/schedstat`. Each configuration runs `ROUNDS` times,
//! interleaved, and the median is reported. Set `RINGBRIDGE_MEASURE_PACKETS` to
//! change the packet count (default 50 001).

#[path = "../tests/support/harness.rs"]
mod harness;

use harness::*;
use ringbridge_bridge::io::Backend;

const ROUNDS: usize = 3;

fn main() {
    // `cargo test --benches` runs bench binaries with `--bench` absent; keep that quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let packets: usize = std::env::var("RINGBRIDGE_MEASURE_PACKETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 3_001 } else { 50_001 });
    let rounds = if quick { 1 } else { ROUNDS };
    let configs = [
        (Backend::Uring, true),
        (Backend::Uring, false),
        (Backend::Mmsg, true),
        (Backend::Mmsg, false),
    ];
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); configs.len()];
    let _serial = serial();
    println!(
        "\n{packets} x 1200-byte video packets (frames of 3), fan-out 4, loopback, {rounds} round(s)"
    );
    for round in 0..rounds {
        for (k, &(backend, gso_on)) in configs.iter().enumerate() {
            let _env = GsoEnv::set(!gso_on);
            let index = 30 + round * configs.len() + k;
            let base = 23_300 + (index as u16 % 60) * 10;
            let m = measure(backend, index, (base, base + 9), packets);
            assert!(m.egress > 0, "{} forwarded nothing", backend.name());
            results[k].push(m.cpu_ns as f64 / m.egress as f64);
        }
    }
    println!(
        "{:<8} {:<5} {:>14} {:>30}",
        "backend", "gso", "median ns/pkt", "all rounds"
    );
    for (k, &(backend, gso_on)) in configs.iter().enumerate() {
        let mut v = results[k].clone();
        v.sort_by(f64::total_cmp);
        let median = v[v.len() / 2];
        let gso = if gso_on { "on" } else { "off" };
        let all: Vec<String> = results[k].iter().map(|x| format!("{x:.0}")).collect();
        println!(
            "{:<8} {:<5} {:>14.0} {:>30}",
            backend.name(),
            gso,
            median,
            all.join(" ")
        );
    }
}
