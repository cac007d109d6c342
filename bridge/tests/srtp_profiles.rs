//! SRTP profile negotiation (`media.srtp_profiles`) on a virtual clock, with real
//! DTLS-SRTP client peers: the bridge picks its own preference among what a client
//! offers, AES-CM/HMAC-SHA1 clients work, and a profile the operator left out is
//! refused.

mod support;

use ringbridge_bridge::proto::client::{ClientConfig, ClientDtls};
use ringbridge_bridge::proto::sdp::MediaKind;
use ringbridge_bridge::proto::srtp::SrtpProfile;
use support::net::*;

fn offering(profiles: &'static [SrtpProfile], dtls: ClientDtls) -> ClientConfig {
    ClientConfig {
        dtls,
        srtp_profiles: profiles,
        ..EVERYTHING
    }
}

#[test]
fn browser_offer_gets_aes_128_gcm_the_bridges_preference_over_dtls_12_and_13() {
    // Browsers list AES-256-GCM first; the bridge prefers AES-128-GCM (DESIGN.md).
    assert_eq!(SrtpProfile::BROWSER_OFFER[0], SrtpProfile::AeadAes256Gcm);
    let mut net = Net::new();
    let a = net.join(
        "dtls12",
        offering(SrtpProfile::BROWSER_OFFER, ClientDtls::V12),
    );
    let b = net.join(
        "dtls13",
        offering(SrtpProfile::BROWSER_OFFER, ClientDtls::V13),
    );
    net.connect_all();
    for p in [a, b] {
        assert_eq!(
            net.peers[p].client.profile(),
            Some(SrtpProfile::AeadAes128Gcm),
            "{}",
            net.peers[p].name
        );
    }
}

#[test]
fn operator_order_decides_when_the_client_offers_several() {
    let mut net =
        Net::with_srtp_profiles(&[SrtpProfile::Aes128CmSha1_80, SrtpProfile::AeadAes256Gcm]);
    let a = net.join("v12", offering(SrtpProfile::BROWSER_OFFER, ClientDtls::V12));
    let b = net.join("v13", offering(SrtpProfile::BROWSER_OFFER, ClientDtls::V13));
    let c = net.join(
        "gcm-only",
        offering(
            &[SrtpProfile::AeadAes128Gcm, SrtpProfile::AeadAes256Gcm],
            ClientDtls::Auto,
        ),
    );
    net.connect_all();
    assert_eq!(
        net.peers[a].client.profile(),
        Some(SrtpProfile::Aes128CmSha1_80)
    );
    assert_eq!(
        net.peers[b].client.profile(),
        Some(SrtpProfile::Aes128CmSha1_80)
    );
    assert_eq!(
        net.peers[c].client.profile(),
        Some(SrtpProfile::AeadAes256Gcm)
    );
}

#[test]
fn cm_sha1_client_and_gcm_client_exchange_media_through_one_bridge() {
    // Each packet is decrypted with the sender's profile and re-encrypted with the
    // receiver's: AES-CM + HMAC-SHA1 in, AES-GCM out, and back.
    let mut net = Net::new();
    let cm = net.join(
        "cm",
        offering(&[SrtpProfile::Aes128CmSha1_80], ClientDtls::Auto),
    );
    let gcm = net.join(
        "gcm",
        offering(&[SrtpProfile::AeadAes128Gcm], ClientDtls::Auto),
    );
    net.connect_all();
    assert_eq!(
        net.peers[cm].client.profile(),
        Some(SrtpProfile::Aes128CmSha1_80)
    );
    assert_eq!(
        net.peers[gcm].client.profile(),
        Some(SrtpProfile::AeadAes128Gcm)
    );

    for k in 0..20u16 {
        net.send(
            cm,
            MediaKind::Audio,
            10 + k,
            960 * u32::from(k),
            &[0xC0, k as u8],
        );
        net.send(
            gcm,
            MediaKind::Audio,
            500 + k,
            960 * u32::from(k),
            &[0x6C, k as u8],
        );
    }
    net.send(cm, MediaKind::Video, 1, 3000, &vp8(true, 1));
    net.send(gcm, MediaKind::Video, 1, 3000, &vp8(true, 2));

    let at_gcm = net.received(gcm, net.slot_ssrc(gcm, MediaKind::Audio));
    let at_cm = net.received(cm, net.slot_ssrc(cm, MediaKind::Audio));
    assert_eq!(at_gcm.len(), 20);
    assert_eq!(at_cm.len(), 20);
    assert_eq!(at_gcm[5].2, vec![0xC0, 5]);
    assert_eq!(at_cm[5].2, vec![0x6C, 5]);
    assert_eq!(
        net.received(gcm, net.slot_ssrc(gcm, MediaKind::Video))[0].2,
        vp8(true, 1)
    );
    assert_eq!(
        net.received(cm, net.slot_ssrc(cm, MediaKind::Video))[0].2,
        vp8(true, 2)
    );
    // RTCP both ways too (receiver reports from the bridge).
    net.progress(250);
    assert!(net.peers[cm].client.received_rr > 0);
    assert!(net.peers[gcm].client.received_rr > 0);
    assert_eq!(net.peers[cm].client.srtp_failures, 0);
    assert_eq!(net.peers[gcm].client.srtp_failures, 0);
    assert_eq!(net.core.counters().dropped_auth, 0);
}

#[test]
fn bridge_limited_to_gcm_never_connects_a_cm_sha1_only_client() {
    let mut net = Net::with_srtp_profiles(&[SrtpProfile::AeadAes128Gcm]);
    let cm = net.join(
        "cm",
        offering(&[SrtpProfile::Aes128CmSha1_80], ClientDtls::Auto),
    );
    net.progress(400);
    assert!(!net.peers[cm].client.is_connected());
    assert!(net.peers[cm].client.profile().is_none());
    assert_eq!(net.core.counters().dtls_successes, 0);
    // The handshake itself completes (use_srtp is optional in DTLS), so the bridge
    // fails the association itself, as soon as it sees no keys behind Connected.
    assert_eq!(net.core.counters().dtls_failures, 1);
    assert_eq!(net.core.endpoint_count(), 0, "the endpoint is removed");
}
