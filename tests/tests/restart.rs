//! Issue 13 item 5: a bridge killed with SIGKILL and started again with the same
//! configuration takes a client's new join within 1 s of being started (the
//! client retries its POST, as the room page does after a failed join).

use std::time::{Duration, Instant};

use ringbridge_tests::{Bridge, http_request, inert_offer};

/// The target: a join answered 201 within this long of the restart.
const WITHIN: Duration = Duration::from_secs(1);

fn join(bridge: &Bridge, room: &str) -> u16 {
    let token = bridge.token(room);
    let auth = format!("Bearer {token}");
    http_request(
        bridge.public_addr(),
        "POST",
        &format!("/conferences/{room}/endpoints"),
        &[
            ("Content-Type", "application/sdp"),
            ("Authorization", &auth),
        ],
        inert_offer().as_bytes(),
    )
    .map_or(0, |r| r.status)
}

#[test]
fn a_bridge_killed_and_started_again_takes_a_new_join_within_1s() {
    let mut bridge = Bridge::start("");
    assert_eq!(join(&bridge, "before"), 201);
    // Tokens are minted by the binary: make the one for after the restart now,
    // so the measured time is the bridge's alone.
    let token = bridge.token("after");
    let auth = format!("Bearer {token}");
    bridge.kill_and_restart();
    let started = Instant::now();
    let mut tries = 0;
    let took = loop {
        tries += 1;
        let status = http_request(
            bridge.public_addr(),
            "POST",
            "/conferences/after/endpoints",
            &[
                ("Content-Type", "application/sdp"),
                ("Authorization", &auth),
            ],
            inert_offer().as_bytes(),
        )
        .map_or(0, |r| r.status);
        if status == 201 {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no join accepted 30 s after the restart (last status {status}); log:\n{}",
            bridge.log_tail()
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    eprintln!("restart: first join accepted {took:?} after the start ({tries} tries)");
    assert!(
        took <= WITHIN,
        "first join accepted {took:?} after the restart"
    );
}
