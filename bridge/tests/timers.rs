//! Timers per object: the shard wakes at the earliest deadline of any transport
//! or router (a heap, not a scan), skips entries that went stale, and has
//! nothing to do once its last endpoint is gone. Also the core's typed errors
//! for control operations. Virtual clock, no peers needed.

use std::time::{Duration, Instant};

use ringbridge_bridge::proto::client::ClientPeer;
use ringbridge_bridge::proto::error::CoreError;
use ringbridge_bridge::proto::shard::{REPORT_INTERVAL, ShardConfig, ShardCore};
use ringbridge_bridge::proto::srtp::SrtpProfile;
use ringbridge_bridge::proto::transmit::TxQueue;
use ringbridge_control::media::{
    ConferenceId, EndpointId, EndpointPolicy, JoinRequest, MediaError, MuteRequest,
};

mod support;
use support::net::EVERYTHING;

fn core(now: Instant) -> ShardCore {
    let certificate = dimpl::certificate::generate_self_signed_certificate().expect("cert");
    ShardCore::new(
        ShardConfig {
            advertise: vec!["127.0.0.1".parse().expect("ip")],
            certificate,
            srtp_profiles: SrtpProfile::PREFERRED.to_vec(),
            video_start_bitrate_kbps: 1500,
            index: 0,
            tcp_port: None,
            single_port: None,
            audio_last_n: 0,
            drop_silence: false,
        },
        now,
    )
}

fn join(
    core: &mut ShardCore,
    now: Instant,
    room: &str,
    id: &str,
    port: u16,
) -> Result<String, CoreError> {
    let client = ClientPeer::new(EVERYTHING, now).expect("client");
    core.join(
        now,
        &JoinRequest {
            conference: ConferenceId(room.into()),
            endpoint: EndpointId(id.into()),
            offer_sdp: client.offer(),
        },
        port,
        EndpointPolicy::default(),
    )
}

#[test]
fn the_shard_wakes_for_the_earliest_object_deadline_and_skips_stale_ones() {
    let t0 = Instant::now();
    let mut core = core(t0);
    let mut tx = TxQueue::with_capacity(8);
    assert_eq!(
        core.poll_timeout(),
        None,
        "an empty shard has nothing to do"
    );

    // One endpoint: its first receiver report is its earliest deadline (ICE
    // consent runs for 30 s).
    join(&mut core, t0, "r1", "a", 10_000).expect("join");
    assert_eq!(core.poll_timeout(), Some(t0 + REPORT_INTERVAL));
    // A second one, in another conference, 300 ms later: the first still leads.
    let t1 = t0 + Duration::from_millis(300);
    join(&mut core, t1, "r2", "b", 10_001).expect("join");
    assert_eq!(core.poll_timeout(), Some(t0 + REPORT_INTERVAL));

    // Nothing is due before the deadline; at it, only A runs and B leads.
    core.handle_timeout(t0 + Duration::from_millis(999), &mut tx);
    assert_eq!(core.poll_timeout(), Some(t0 + REPORT_INTERVAL));
    core.handle_timeout(t0 + REPORT_INTERVAL, &mut tx);
    assert_eq!(core.poll_timeout(), Some(t1 + REPORT_INTERVAL));

    // B leaves: its entry is stale. At most one early wake-up finds nothing
    // and the heap then names A's next report.
    core.leave(&ConferenceId("r2".into()), &EndpointId("b".into()))
        .expect("leave");
    if let Some(t) = core
        .poll_timeout()
        .filter(|&t| t < t0 + 2 * REPORT_INTERVAL)
    {
        core.handle_timeout(t, &mut tx);
    }
    assert_eq!(core.poll_timeout(), Some(t0 + 2 * REPORT_INTERVAL));
    assert!(tx.is_empty(), "unconnected endpoints get no reports");

    core.leave(&ConferenceId("r1".into()), &EndpointId("a".into()))
        .expect("leave");
    assert_eq!(core.poll_timeout(), None, "empty again");
    assert_eq!(core.conference_count(), 0);
}

#[test]
fn control_operations_fail_with_typed_core_errors() {
    let t0 = Instant::now();
    let mut core = core(t0);
    join(&mut core, t0, "room", "a", 10_000).expect("join");
    assert_eq!(
        join(&mut core, t0, "room", "b", 10_000),
        Err(CoreError::PortInUse(10_000))
    );
    assert_eq!(
        join(&mut core, t0, "room", "a", 10_001),
        Err(CoreError::DuplicateEndpoint("a".into()))
    );
    let bad = core.join(
        t0,
        &JoinRequest {
            conference: ConferenceId("room".into()),
            endpoint: EndpointId("c".into()),
            offer_sdp: "v=0\r\n".into(),
        },
        10_002,
        EndpointPolicy::default(),
    );
    assert!(matches!(bad, Err(CoreError::BadOffer(_))));
    let (room, nobody) = (ConferenceId("room".into()), EndpointId("nobody".into()));
    assert_eq!(core.leave(&room, &nobody), Err(CoreError::EndpointNotFound));
    assert_eq!(
        core.leave(&ConferenceId("elsewhere".into()), &nobody),
        Err(CoreError::ConferenceNotFound)
    );
    let mute = MuteRequest {
        audio: Some(true),
        video: None,
    };
    assert_eq!(
        core.mute(&room, &nobody, mute),
        Err(CoreError::EndpointNotFound)
    );
    assert_eq!(
        core.refuse_source(
            &room,
            &EndpointId("a".into()),
            "a-v9",
            ringbridge_control::media::RefusalReason::OneVideoSourceOnly
        ),
        Err(CoreError::SourceNotFound)
    );
    // The driver-facing methods say the same in the control plane's terms.
    assert!(matches!(
        core.handle_leave(&room, &nobody),
        Err(MediaError::NotFound)
    ));
    assert_eq!(core.endpoint_count(), 1, "failed joins left nothing behind");
    assert_eq!(core.conference_count(), 1);
}
