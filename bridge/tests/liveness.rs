//! Health follows the shard threads: a shard whose loop stops turning makes the
//! media plane unhealthy (which fails `/about/health` and starves the systemd
//! watchdog).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use ringbridge_bridge::io::{Backend, ShardCommand, ShardSpec, event_channel, spawn_shard};
use ringbridge_bridge::plane::ShardedMediaPlane;
use ringbridge_bridge::proto::shard::ShardConfig;
use ringbridge_bridge::proto::srtp::SrtpProfile;
use ringbridge_control::media::MediaPlane;

#[test]
fn a_stopped_shard_makes_the_media_plane_unhealthy() {
    let certificate = dimpl::certificate::generate_self_signed_certificate().expect("cert");
    let (events, _rx) = event_channel();
    let localhost: IpAddr = "127.0.0.1".parse().expect("ip");
    let shard = spawn_shard(
        ShardSpec {
            index: 0,
            core: None,
            ports: (24_200, 24_209),
            bind: localhost,
            core_config: ShardConfig {
                advertise: vec![localhost],
                certificate,
                srtp_profiles: SrtpProfile::PREFERRED.to_vec(),
                video_start_bitrate_kbps: 1500,
                index: 0,
                tcp_port: None,
                single_port: None,
                audio_last_n: 0,
                drop_silence: false,
            },
            single_port: None,
        },
        Backend::Mmsg,
        events,
    )
    .expect("shard starts");
    let stopper = shard.clone();
    let plane = ShardedMediaPlane::new(vec![shard]).with_stall_after(Duration::from_millis(600));

    // Healthy while the loop turns (it wakes at least every 200 ms).
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        assert_eq!(plane.health(), Ok(()));
        std::thread::sleep(Duration::from_millis(100));
    }

    stopper
        .send(ShardCommand::Shutdown)
        .expect("shutdown queued");
    let deadline = Instant::now() + Duration::from_secs(5);
    let reason = loop {
        if let Err(reason) = plane.health() {
            break reason;
        }
        assert!(
            Instant::now() < deadline,
            "a stopped shard must turn unhealthy"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(reason.contains("[0]"), "names the shard: {reason}");
}
