//! Who is sending, as the shard counts it for `/colibri/stats`
//! (`endpoints_sending_*`, and jitsi-videobridge's `inactive_conferences` /
//! `inactive_endpoints`), on a virtual clock with real client peers.

mod support;

use ringbridge_bridge::proto::sdp::MediaKind;
use ringbridge_bridge::proto::shard::Activity;
use support::net::*;

/// 5 ms steps: 3.5 s, past the 3 s sending window.
const PAST_WINDOW: usize = 700;

#[test]
fn a_conference_is_inactive_until_someone_sends_and_again_once_they_stop() {
    let mut net = Net::new();
    let a = net.join("alice", EVERYTHING);
    let _b = net.join("bob", EVERYTHING);
    net.connect_all();
    net.progress(30);
    assert_eq!(
        net.core.activity(),
        Activity {
            audio: 0,
            video: 0,
            inactive_conferences: 1,
            inactive_endpoints: 2,
        },
        "connected, but nobody sends"
    );

    net.send(a, MediaKind::Audio, 1, 960, &[1]);
    net.progress(30);
    assert_eq!(
        net.core.activity(),
        Activity {
            audio: 1,
            video: 0,
            inactive_conferences: 0,
            inactive_endpoints: 0,
        },
        "one endpoint's audio makes the whole conference active"
    );

    net.progress(PAST_WINDOW);
    assert_eq!(net.core.activity().audio, 0);
    assert_eq!(net.core.activity().inactive_conferences, 1);
    assert_eq!(net.core.activity().inactive_endpoints, 2);
}
