//! Time to parse the offer of a meeting participant: the bench's client
//! (`ringbridge-bench scale`'s) publishing audio and video and receiving nine
//! of each, 20 m-lines in all (`cargo bench -p ringbridge-bridge --bench
//! sdp_parse`).

use std::hint::black_box;
use std::time::Instant;

use ringbridge_bridge::proto::client::{ClientConfig, ClientDtls, ClientPeer};
use ringbridge_bridge::proto::sdp::Offer;
use ringbridge_bridge::proto::srtp::SrtpProfile;

fn main() {
    let cfg = ClientConfig {
        dtls: ClientDtls::Auto,
        dtls_mtu: 1200,
        audio: true,
        video: true,
        audio_slots: 9,
        video_slots: 9,
        srtp_profiles: SrtpProfile::BROWSER_OFFER,
    };
    let Ok(peer) = ClientPeer::new(cfg, Instant::now()) else {
        eprintln!("sdp_parse: no client");
        return;
    };
    let offer = peer.offer();
    let rounds = 20_000;
    let start = Instant::now();
    for _ in 0..rounds {
        if Offer::parse(black_box(&offer)).is_err() {
            eprintln!("sdp_parse: the offer does not parse");
            return;
        }
    }
    println!(
        "sdp_parse: {} bytes, {} lines, {:.2} us per parse",
        offer.len(),
        offer.lines().count(),
        start.elapsed().as_secs_f64() * 1e6 / f64::from(rounds)
    );
}
