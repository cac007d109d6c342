//! Placement: a new conference goes to the least loaded shard, and every endpoint
//! of a conference stays on the conference's shard; each shard owns its own slice
//! of the port range.

use std::net::IpAddr;

use ringbridge_bridge::io::{Backend, ShardSpec, event_channel, spawn_shard};
use ringbridge_bridge::plane::ShardedMediaPlane;
use ringbridge_bridge::proto::client::{ClientConfig, ClientDtls, ClientPeer};
use ringbridge_bridge::proto::shard::ShardConfig;
use ringbridge_bridge::proto::srtp::SrtpProfile;
use ringbridge_control::media::{ConferenceId, EndpointId, JoinRequest, MediaPlane};

fn offer() -> String {
    let cfg = ClientConfig {
        dtls: ClientDtls::Auto,
        dtls_mtu: 1150,
        srtp_profiles: SrtpProfile::BROWSER_OFFER,
        audio: true,
        video: true,
        audio_slots: 1,
        video_slots: 1,
    };
    ClientPeer::new(cfg, std::time::Instant::now())
        .expect("client")
        .offer()
}

fn answer_port(sdp: &str) -> u16 {
    sdp.lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .expect("answer has an audio port")
}

#[test]
fn a_new_conference_lands_on_the_less_loaded_shard() {
    let certificate = dimpl::certificate::generate_self_signed_certificate().expect("cert");
    let (events, _rx) = event_channel();
    let localhost: IpAddr = "127.0.0.1".parse().expect("ip");
    let ranges = [(24_000, 24_049), (24_050, 24_099)];
    let shards: Vec<_> = ranges
        .iter()
        .enumerate()
        .map(|(i, &ports)| {
            spawn_shard(
                ShardSpec {
                    index: i,
                    core: None,
                    ports,
                    bind: localhost,
                    core_config: ShardConfig {
                        advertise: vec![localhost],
                        certificate: certificate.clone(),
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
                events.clone(),
            )
            .expect("shard starts")
        })
        .collect();
    let plane = ShardedMediaPlane::new(shards);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let join = |room: &str, ep: &str| {
        rt.block_on(plane.join(JoinRequest {
            conference: ConferenceId(room.into()),
            endpoint: EndpointId(ep.into()),
            offer_sdp: offer(),
        }))
        .expect("join")
        .answer_sdp
    };
    let shard_of_port = |port: u16| {
        ranges
            .iter()
            .position(|&(lo, hi)| (lo..=hi).contains(&port))
            .expect("port inside a shard's range")
    };
    let wait_for_load = |want: [u64; 2]| {
        for _ in 0..200 {
            let s = plane.stats();
            if s.shards.iter().map(|s| s.endpoints).collect::<Vec<_>>() == want {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!(
            "shard loads never became {want:?}: {:?}",
            plane.stats().shards
        );
    };

    // Conference A: three endpoints, all on A's shard.
    let a: Vec<u16> = ["a1", "a2", "a3"]
        .iter()
        .map(|ep| answer_port(&join("room-a", ep)))
        .collect();
    let shard_a = shard_of_port(a[0]);
    assert!(a.iter().all(|&p| shard_of_port(p) == shard_a), "{a:?}");
    let mut load = [0, 0];
    load[shard_a] = 3;
    wait_for_load(load);

    // Conference B is new: it goes to the other, empty shard, and stays there.
    let b1 = answer_port(&join("room-b", "b1"));
    assert_ne!(
        shard_of_port(b1),
        shard_a,
        "room-b must land on the less loaded shard"
    );
    let b2 = answer_port(&join("room-b", "b2"));
    assert_eq!(shard_of_port(b2), shard_of_port(b1));
    load[shard_of_port(b1)] = 2;
    wait_for_load(load);

    // C: shard loads are 3 and 2, so the B shard again.
    let c1 = answer_port(&join("room-c", "c1"));
    assert_eq!(shard_of_port(c1), shard_of_port(b1));
    plane.shutdown();
}
