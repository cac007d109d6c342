//! Datagrams larger than the shard handles, over real sockets with each I/O
//! backend: one that the receive buffer truncates and one that fits the buffer
//! but is over `MAX_DATAGRAM` are both counted as `oversized` (not lost without
//! a trace), and garbage as `garbage`; the shard keeps serving.

mod support;

use std::time::{Duration, Instant};

use ringbridge_bridge::io::Backend;
use ringbridge_bridge::proto::shard::MAX_DATAGRAM;
use support::harness::*;

fn oversized_and_garbage_are_counted(backend: Backend, index: usize, ports: (u16, u16)) {
    let _serial = serial();
    let mut h = Harness::start(backend, index, ports);
    let a = h.join("alice", EVERYTHING);
    let mut truncated = vec![0x80u8; 4000];
    truncated[1] = 96;
    let over = vec![0x80u8; MAX_DATAGRAM + 1];
    h.send_raw(a, &truncated);
    h.send_raw(a, &over);
    h.send_raw(a, &[0x42; 100]);
    let deadline = Instant::now() + Duration::from_secs(5);
    let s = loop {
        h.pump_for(Duration::from_millis(20));
        let s = h.shard.stats.snapshot(0, None);
        if s.dropped_oversized >= 2 && s.dropped_garbage >= 1 || Instant::now() > deadline {
            break s;
        }
    };
    assert_eq!(
        (s.dropped_oversized, s.dropped_garbage, s.dropped_malformed),
        (2, 1, 0),
        "{backend:?}: {s:?}"
    );
    // Alice still connects: nothing of the above stuck the shard.
    h.connect_all();
}

#[test]
fn oversized_and_garbage_are_counted_mmsg() {
    oversized_and_garbage_are_counted(Backend::Mmsg, 40, (24_400, 24_409));
}

#[test]
fn oversized_and_garbage_are_counted_uring() {
    oversized_and_garbage_are_counted(Backend::Uring, 41, (24_410, 24_419));
}
