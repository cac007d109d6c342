//! Behaviour tests of the whole module: round trips, tampering, replay, rollover, SSRC
//! limits, malformed input, and interop with the `webrtc-srtp` crate.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use webrtc_srtp::context::Context as RefContext;
use webrtc_srtp::protection_profile::ProtectionProfile as RefProfile;

use super::{SrtpContext, SrtpError, SrtpProfile, contexts_from_keying_material};

const PROFILES: [SrtpProfile; 3] = [
    SrtpProfile::Aes128CmSha1_80,
    SrtpProfile::AeadAes128Gcm,
    SrtpProfile::AeadAes256Gcm,
];

/// Decodes hex, ignoring nothing: test input must be clean.
pub(super) fn hex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

fn random_keys(rng: &mut StdRng, profile: SrtpProfile) -> (Vec<u8>, Vec<u8>) {
    let mut key = vec![0u8; profile.key_len()];
    let mut salt = vec![0u8; profile.salt_len()];
    rng.fill(&mut key[..]);
    rng.fill(&mut salt[..]);
    (key, salt)
}

fn pair(rng: &mut StdRng, profile: SrtpProfile) -> (SrtpContext, SrtpContext) {
    let (key, salt) = random_keys(rng, profile);
    (
        SrtpContext::new(profile, &key, &salt).unwrap(),
        SrtpContext::new(profile, &key, &salt).unwrap(),
    )
}

/// A random RTP packet with 0-3 CSRCs, maybe a header extension and maybe padding.
/// `generic_ext` uses an extension profile that is not RFC 8285's (0xBEDE, 0x100X),
/// which every parser keeps as opaque bytes; webrtc-rs re-parses RFC 8285 extensions
/// and would trip over random contents.
fn random_rtp(rng: &mut StdRng, ssrc: u32, seq: u16, generic_ext: bool) -> Vec<u8> {
    let csrcs = rng.random_range(0..=3u8);
    let ext = rng.random_bool(0.5);
    let mut p = vec![
        0x80 | csrcs | if ext { 0x10 } else { 0 },
        rng.random_range(96..=127),
    ];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&rng.random::<u32>().to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    for _ in 0..csrcs {
        p.extend_from_slice(&rng.random::<u32>().to_be_bytes());
    }
    if ext {
        let words = rng.random_range(0..=4u16);
        let profile: u16 = if generic_ext { 0x4321 } else { 0xbede };
        p.extend_from_slice(&profile.to_be_bytes());
        p.extend_from_slice(&words.to_be_bytes());
        for _ in 0..words {
            p.extend_from_slice(&rng.random::<u32>().to_be_bytes());
        }
    }
    let payload_len = rng.random_range(1..=1200);
    let start = p.len();
    p.resize(start + payload_len, 0);
    rng.fill(&mut p[start..]);
    p
}

/// A random compound-looking RTCP packet: sender SSRC, then random 32-bit words.
fn random_rtcp(rng: &mut StdRng, ssrc: u32) -> Vec<u8> {
    let words = rng.random_range(1..=60u16);
    let mut p = vec![
        0x80 | rng.random_range(0..=31u8),
        rng.random_range(200..=206),
    ];
    p.extend_from_slice(&words.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    for _ in 0..words {
        p.extend_from_slice(&rng.random::<u32>().to_be_bytes());
    }
    p
}

/// Copies `plain` into a buffer with exactly `room` spare bytes.
fn with_room(plain: &[u8], room: usize) -> Vec<u8> {
    let mut buf = plain.to_vec();
    buf.resize(plain.len() + room, 0xee);
    buf
}

fn protect_rtp(ctx: &mut SrtpContext, plain: &[u8]) -> Vec<u8> {
    let mut buf = with_room(plain, ctx.profile().rtp_overhead());
    let n = ctx.protect_rtp(&mut buf, plain.len()).unwrap();
    assert_eq!(n, buf.len());
    buf
}

fn protect_rtcp(ctx: &mut SrtpContext, plain: &[u8]) -> Vec<u8> {
    let mut buf = with_room(plain, ctx.profile().rtcp_overhead());
    let n = ctx.protect_rtcp(&mut buf, plain.len()).unwrap();
    assert_eq!(n, buf.len());
    buf
}

fn unprotect_rtp(ctx: &mut SrtpContext, packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
    let mut buf = packet.to_vec();
    let n = ctx.unprotect_rtp(&mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

fn unprotect_rtcp(ctx: &mut SrtpContext, packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
    let mut buf = packet.to_vec();
    let n = ctx.unprotect_rtcp(&mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

#[test]
fn profile_lengths() {
    let cm = SrtpProfile::Aes128CmSha1_80;
    assert_eq!(
        (cm.key_len(), cm.salt_len(), cm.auth_key_len()),
        (16, 14, 20)
    );
    assert_eq!((cm.rtp_overhead(), cm.rtcp_overhead()), (10, 14));
    assert_eq!(cm.keying_material_len(), 60);
    let g128 = SrtpProfile::AeadAes128Gcm;
    assert_eq!(
        (g128.key_len(), g128.salt_len(), g128.auth_key_len()),
        (16, 12, 0)
    );
    assert_eq!((g128.rtp_overhead(), g128.rtcp_overhead()), (16, 20));
    assert_eq!(g128.keying_material_len(), 56);
    let g256 = SrtpProfile::AeadAes256Gcm;
    assert_eq!((g256.key_len(), g256.salt_len()), (32, 12));
    assert_eq!(g256.keying_material_len(), 88);
    for p in PROFILES {
        assert_eq!(SrtpProfile::from_dtls_id(p.dtls_id()), Some(p));
    }
    assert_eq!(SrtpProfile::from_dtls_id(0x0002), None);
}

#[test]
fn bad_key_lengths_are_refused() {
    for p in PROFILES {
        let key = vec![0u8; p.key_len()];
        let salt = vec![0u8; p.salt_len()];
        assert!(SrtpContext::new(p, &key, &salt).is_ok());
        assert_eq!(
            SrtpContext::new(p, &key[1..], &salt).err(),
            Some(SrtpError::BadKeyLength)
        );
        assert_eq!(
            SrtpContext::new(p, &key, &[0u8; 13]).err(),
            Some(SrtpError::BadKeyLength)
        );
        let material = vec![0u8; p.keying_material_len() - 1];
        assert_eq!(
            contexts_from_keying_material(p, &material, false).err(),
            Some(SrtpError::BadKeyLength)
        );
    }
}

#[test]
fn round_trip_random_packets() {
    let mut rng = StdRng::seed_from_u64(1);
    for profile in PROFILES {
        let (mut tx, mut rx) = pair(&mut rng, profile);
        let ssrcs: Vec<u32> = (0..5).map(|_| rng.random()).collect();
        let mut seqs: Vec<u16> = ssrcs.iter().map(|_| rng.random()).collect();
        for i in 0..600 {
            let s = i % ssrcs.len();
            seqs[s] = seqs[s].wrapping_add(1);
            let mut plain = random_rtp(&mut rng, ssrcs[s], seqs[s], false);
            if rng.random_bool(0.2) {
                plain[0] |= 0x20; // padding bit: part of the encrypted payload
            }
            let protected = protect_rtp(&mut tx, &plain);
            assert_ne!(protected[..plain.len()], plain[..], "payload was encrypted");
            assert_eq!(unprotect_rtp(&mut rx, &protected), Ok(plain));

            let plain = random_rtcp(&mut rng, ssrcs[s]);
            let protected = protect_rtcp(&mut tx, &plain);
            assert_eq!(unprotect_rtcp(&mut rx, &protected), Ok(plain));
        }
    }
}

#[test]
fn empty_payload_round_trips() {
    let mut rng = StdRng::seed_from_u64(2);
    for profile in PROFILES {
        let (mut tx, mut rx) = pair(&mut rng, profile);
        let plain = hex("80600001000000000000abcd");
        let protected = protect_rtp(&mut tx, &plain);
        assert_eq!(unprotect_rtp(&mut rx, &protected), Ok(plain));
        let plain = hex("80c900010000abcd");
        let protected = protect_rtcp(&mut tx, &plain);
        assert_eq!(unprotect_rtcp(&mut rx, &protected), Ok(plain));
    }
}

#[test]
fn tampering_with_any_byte_fails_and_changes_nothing() {
    let mut rng = StdRng::seed_from_u64(3);
    for profile in PROFILES {
        let (mut tx, mut rx) = pair(&mut rng, profile);
        let plain = random_rtp(&mut rng, 0x1234, 777, false);
        let header_len = plain.len() - 1; // generous: header bytes may also parse badly
        let protected = protect_rtp(&mut tx, &plain);
        for pos in 0..protected.len() {
            for bit in [0x01, 0x80] {
                let mut forged = protected.clone();
                forged[pos] ^= bit;
                let err = unprotect_rtp(&mut rx, &forged).unwrap_err();
                assert!(
                    err == SrtpError::AuthFailed
                        || (pos < header_len && err == SrtpError::Malformed),
                    "{profile:?} byte {pos}: {err:?}"
                );
            }
        }
        // Truncated packets fail too.
        for len in 0..protected.len() {
            assert!(unprotect_rtp(&mut rx, &protected[..len]).is_err());
        }
        // Nothing of the forgeries was remembered.
        assert_eq!(rx.rtp_roc(0x1234), None);
        assert_eq!(unprotect_rtp(&mut rx, &protected), Ok(plain));

        let plain = random_rtcp(&mut rng, 0x1234);
        let protected = protect_rtcp(&mut tx, &plain);
        for pos in 0..protected.len() {
            let mut forged = protected.clone();
            forged[pos] ^= 0x41;
            let err = unprotect_rtcp(&mut rx, &forged).unwrap_err();
            assert!(
                err == SrtpError::AuthFailed || (pos == 0 && err == SrtpError::Malformed),
                "{profile:?} RTCP byte {pos}: {err:?}"
            );
        }
        for len in 0..protected.len() {
            assert!(unprotect_rtcp(&mut rx, &protected[..len]).is_err());
        }
        assert_eq!(unprotect_rtcp(&mut rx, &protected), Ok(plain));
    }
}

#[test]
fn replays_are_rejected() {
    let mut rng = StdRng::seed_from_u64(4);
    for profile in PROFILES {
        let (mut tx, mut rx) = pair(&mut rng, profile);
        let packets: Vec<Vec<u8>> = (0..300u16)
            .map(|seq| protect_rtp(&mut tx, &random_rtp(&mut rng, 9, seq + 1000, false)))
            .collect();
        // Deliver the newest first, then the rest in reverse: only 127 older fit the window.
        assert!(unprotect_rtp(&mut rx, &packets[299]).is_ok());
        assert_eq!(
            unprotect_rtp(&mut rx, &packets[299]),
            Err(SrtpError::Replay)
        );
        for (i, p) in packets.iter().enumerate().take(299).rev() {
            let r = unprotect_rtp(&mut rx, p);
            if i >= 299 - 127 {
                assert!(r.is_ok(), "{i}: {r:?}");
                assert_eq!(unprotect_rtp(&mut rx, p), Err(SrtpError::Replay));
            } else {
                assert_eq!(r, Err(SrtpError::Replay), "{i}");
            }
        }

        let rtcp: Vec<Vec<u8>> = (0..5)
            .map(|_| protect_rtcp(&mut tx, &random_rtcp(&mut rng, 9)))
            .collect();
        for p in &rtcp {
            assert!(unprotect_rtcp(&mut rx, p).is_ok());
        }
        for p in &rtcp {
            assert_eq!(unprotect_rtcp(&mut rx, p), Err(SrtpError::Replay));
        }
    }
}

#[test]
fn forged_packet_far_ahead_does_not_move_the_window() {
    let mut rng = StdRng::seed_from_u64(5);
    for profile in PROFILES {
        let (mut tx, mut rx) = pair(&mut rng, profile);
        let first = protect_rtp(&mut tx, &random_rtp(&mut rng, 9, 100, false));
        let second = protect_rtp(&mut tx, &random_rtp(&mut rng, 9, 101, false));
        assert!(unprotect_rtp(&mut rx, &first).is_ok());
        let mut forged = protect_rtp(&mut tx, &random_rtp(&mut rng, 9, 20_000, false));
        let last = forged.len() - 1;
        forged[last] ^= 1;
        assert_eq!(unprotect_rtp(&mut rx, &forged), Err(SrtpError::AuthFailed));
        assert!(unprotect_rtp(&mut rx, &second).is_ok());
        assert_eq!(rx.rtp_roc(9), Some(0));
    }
}

#[test]
fn sequence_rollover_increments_roc() {
    let mut rng = StdRng::seed_from_u64(6);
    for profile in PROFILES {
        let (mut tx, mut rx) = pair(&mut rng, profile);
        let mut held = Vec::new();
        for i in 0..(3 * 65536 + 100u32) {
            let seq = (65000 + i) as u16;
            // Small fixed packets: this loop protects ~200k of them per profile.
            let mut plain = hex("80600000000000000000002a0102030405060708");
            plain[2..4].copy_from_slice(&seq.to_be_bytes());
            let protected = protect_rtp(&mut tx, &plain);
            // Hold back a packet just before each wrap and deliver it after the wrap:
            // the receiver must pick the previous ROC for it.
            if seq == 65534 {
                held.push((plain, protected));
                continue;
            }
            if i % 97 == 0 || !(5..=65530).contains(&seq) {
                assert_eq!(unprotect_rtp(&mut rx, &protected), Ok(plain), "seq {seq}");
            }
            if seq == 3 {
                let (plain, protected) = held.pop().unwrap();
                assert_eq!(unprotect_rtp(&mut rx, &protected), Ok(plain));
            }
        }
        assert_eq!(tx.rtp_roc(42), Some(3));
        assert_eq!(rx.rtp_roc(42), Some(3));
    }
}

/// The receiver starts a stream at ROC 0 with its first packet (RFC 3711 3.3.1), so a
/// sequence number far above that one would need ROC -1: too old, and not even
/// authenticated. The sender refuses to go there as well.
#[test]
fn packets_from_before_the_first_roc_are_rejected() {
    let mut rng = StdRng::seed_from_u64(7);
    let (mut tx, mut rx) = pair(&mut rng, SrtpProfile::AeadAes128Gcm);
    let first = protect_rtp(&mut tx, &random_rtp(&mut rng, 1, 10, false));
    assert!(unprotect_rtp(&mut rx, &first).is_ok());
    let mut early = random_rtp(&mut rng, 1, 65000, false);
    early.extend_from_slice(&[0; 16]);
    assert_eq!(unprotect_rtp(&mut rx, &early), Err(SrtpError::Replay));
    let plain = random_rtp(&mut rng, 1, 65000, false);
    let mut buf = with_room(&plain, 16);
    assert_eq!(
        tx.protect_rtp(&mut buf, plain.len()),
        Err(SrtpError::Replay)
    );
    // A sender whose first packet wraps right away is followed by the receiver.
    let (mut tx, mut rx) = pair(&mut rng, SrtpProfile::AeadAes128Gcm);
    for seq in [65534u16, 65535, 0, 1] {
        let plain = random_rtp(&mut rng, 1, seq, false);
        let protected = protect_rtp(&mut tx, &plain);
        assert_eq!(unprotect_rtp(&mut rx, &protected), Ok(plain));
    }
    assert_eq!(rx.rtp_roc(1), Some(1));
}

#[test]
fn ssrc_tables_are_bounded_and_forgeries_take_no_slot() {
    let mut rng = StdRng::seed_from_u64(8);
    for profile in PROFILES {
        let (mut tx, mut rx) = pair(&mut rng, profile);
        let mut rtp = Vec::new();
        let mut rtcp = Vec::new();
        for ssrc in 0..super::MAX_SSRCS as u32 {
            rtp.push(protect_rtp(&mut tx, &random_rtp(&mut rng, ssrc, 1, false)));
            rtcp.push(protect_rtcp(&mut tx, &random_rtcp(&mut rng, ssrc)));
        }
        let plain = random_rtp(&mut rng, 1000, 1, false);
        let mut buf = with_room(&plain, profile.rtp_overhead());
        assert_eq!(
            tx.protect_rtp(&mut buf, plain.len()),
            Err(SrtpError::TooManySsrcs)
        );
        let plain = random_rtcp(&mut rng, 1000);
        let mut buf = with_room(&plain, profile.rtcp_overhead());
        assert_eq!(
            tx.protect_rtcp(&mut buf, plain.len()),
            Err(SrtpError::TooManySsrcs)
        );

        for ssrc in 5000..5100 {
            let mut forged = random_rtp(&mut rng, ssrc, 1, false);
            forged.extend_from_slice(&[0; 16]);
            assert_eq!(unprotect_rtp(&mut rx, &forged), Err(SrtpError::AuthFailed));
            let mut forged = random_rtcp(&mut rng, ssrc);
            forged.extend_from_slice(&[0x80, 0, 0, 1]);
            forged.extend_from_slice(&[0; 16]);
            assert_eq!(unprotect_rtcp(&mut rx, &forged), Err(SrtpError::AuthFailed));
        }
        for p in &rtp {
            assert!(unprotect_rtp(&mut rx, p).is_ok());
        }
        for p in &rtcp {
            assert!(unprotect_rtcp(&mut rx, p).is_ok());
        }
        let mut forged = random_rtp(&mut rng, 5000, 1, false);
        forged.extend_from_slice(&[0; 16]);
        assert_eq!(
            unprotect_rtp(&mut rx, &forged),
            Err(SrtpError::TooManySsrcs)
        );
    }
}

#[test]
fn caller_buffer_errors() {
    let mut rng = StdRng::seed_from_u64(9);
    for profile in PROFILES {
        let (mut tx, _) = pair(&mut rng, profile);
        let plain = random_rtp(&mut rng, 1, 1, false);
        let mut buf = with_room(&plain, profile.rtp_overhead() - 1);
        assert_eq!(
            tx.protect_rtp(&mut buf, plain.len()),
            Err(SrtpError::BufferTooSmall)
        );
        let too_long = buf.len() + 1;
        assert_eq!(
            tx.protect_rtp(&mut buf, too_long),
            Err(SrtpError::BufferTooSmall)
        );
        let plain = random_rtcp(&mut rng, 1);
        let mut buf = with_room(&plain, profile.rtcp_overhead() - 1);
        assert_eq!(
            tx.protect_rtcp(&mut buf, plain.len()),
            Err(SrtpError::BufferTooSmall)
        );
        let mut short = [0x80u8; 7];
        assert_eq!(tx.protect_rtcp(&mut short, 7), Err(SrtpError::TooShort));
        let mut bad = [0u8; 40];
        assert_eq!(tx.protect_rtp(&mut bad, 20), Err(SrtpError::Malformed));
        // Failed protects leave the sender's state alone.
        assert_eq!(tx.rtp_roc(1), None);
    }
}

#[test]
fn garbage_never_panics() {
    let mut rng = StdRng::seed_from_u64(10);
    for profile in PROFILES {
        let (mut tx, mut rx) = pair(&mut rng, profile);
        for _ in 0..20_000 {
            let len = rng.random_range(0..80);
            let mut buf = vec![0u8; len];
            rng.fill(&mut buf[..]);
            if rng.random_bool(0.7) && len > 0 {
                buf[0] = (buf[0] & 0x3f) | 0x80;
            }
            assert!(rx.unprotect_rtp(&mut buf.clone()).is_err());
            assert!(rx.unprotect_rtcp(&mut buf.clone()).is_err());
            let mut room = buf.clone();
            room.resize(len + 20, 0);
            let _ = tx.protect_rtp(&mut room.clone(), len);
            let _ = tx.protect_rtcp(&mut room, len);
        }
    }
}

/// SRTCP with the E flag clear (RFC 3711 3.4) and the AES-CM profile: authenticated,
/// not decrypted. (The AES-GCM case is RFC 7714 section 17.3, tested in `cipher`.)
#[test]
fn unencrypted_srtcp_with_aes_cm() {
    use aws_lc_rs::hmac;

    let mut rng = StdRng::seed_from_u64(11);
    let profile = SrtpProfile::Aes128CmSha1_80;
    let (key, salt) = random_keys(&mut rng, profile);
    let kdf = super::kdf::Kdf::new(&key, &salt).unwrap();
    let mut auth = [0u8; 20];
    kdf.derive(super::kdf::LABEL_RTCP_AUTH, &mut auth).unwrap();
    let plain = random_rtcp(&mut rng, 77);
    let mut packet = plain.clone();
    packet.extend_from_slice(&5u32.to_be_bytes());
    let tag = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &auth),
        &packet,
    );
    packet.extend_from_slice(&tag.as_ref()[..10]);
    let mut rx = SrtpContext::new(profile, &key, &salt).unwrap();
    assert_eq!(unprotect_rtcp(&mut rx, &packet), Ok(plain));
    assert_eq!(unprotect_rtcp(&mut rx, &packet), Err(SrtpError::Replay));
}

#[test]
fn keying_material_is_split_per_rfc5764() {
    let mut rng = StdRng::seed_from_u64(12);
    for profile in PROFILES {
        let mut material = vec![0u8; profile.keying_material_len()];
        rng.fill(&mut material[..]);
        let (k, s) = (profile.key_len(), profile.salt_len());
        let client_key = &material[..k];
        let client_salt = &material[2 * k..2 * k + s];

        let (mut client_out, mut client_in) =
            contexts_from_keying_material(profile, &material, true).unwrap();
        let (mut server_out, mut server_in) =
            contexts_from_keying_material(profile, &material, false).unwrap();
        let mut by_hand = SrtpContext::new(profile, client_key, client_salt).unwrap();

        let plain = random_rtp(&mut rng, 5, 5, false);
        let from_client = protect_rtp(&mut client_out, &plain);
        assert_eq!(protect_rtp(&mut by_hand, &plain), from_client);
        assert_eq!(
            unprotect_rtp(&mut client_in, &from_client),
            Err(SrtpError::AuthFailed)
        );
        assert_eq!(
            unprotect_rtp(&mut server_in, &from_client),
            Ok(plain.clone())
        );
        let from_server = protect_rtp(&mut server_out, &plain);
        assert_eq!(unprotect_rtp(&mut client_in, &from_server), Ok(plain));
    }
}

fn reference(profile: SrtpProfile, key: &[u8], salt: &[u8]) -> RefContext {
    let p = match profile {
        SrtpProfile::Aes128CmSha1_80 => RefProfile::Aes128CmHmacSha1_80,
        SrtpProfile::AeadAes128Gcm => RefProfile::AeadAes128Gcm,
        SrtpProfile::AeadAes256Gcm => RefProfile::AeadAes256Gcm,
    };
    RefContext::new(key, salt, p, None, None).unwrap()
}

/// Ours and webrtc-srtp 0.17 interoperate both ways for RTP, with sequence numbers
/// crossing 65535 twice, several SSRCs, CSRCs and header extensions; the SRTP bytes
/// are identical since both sides compute the same ROC.
#[test]
fn rtp_interop_with_webrtc_srtp() {
    let mut rng = StdRng::seed_from_u64(13);
    for profile in PROFILES {
        let (key, salt) = random_keys(&mut rng, profile);
        let mut ours_tx = SrtpContext::new(profile, &key, &salt).unwrap();
        let mut ours_rx = SrtpContext::new(profile, &key, &salt).unwrap();
        let mut ref_tx = reference(profile, &key, &salt);
        let mut ref_rx = reference(profile, &key, &salt);
        let ssrcs = [0x1111_1111u32, 0xdead_beef, 7];
        let mut seqs = [65_300u16, 65_500, 0];
        for i in 0..900 {
            let s = i % ssrcs.len();
            let step = rng.random_range(1..=1000u16);
            seqs[s] = seqs[s].wrapping_add(step);
            let plain = random_rtp(&mut rng, ssrcs[s], seqs[s], true);

            let ours = protect_rtp(&mut ours_tx, &plain);
            let theirs = ref_tx.encrypt_rtp(&plain).unwrap();
            assert_eq!(&theirs[..], &ours[..], "{profile:?} packet {i}");
            assert_eq!(&ref_rx.decrypt_rtp(&ours).unwrap()[..], &plain[..]);
            assert_eq!(unprotect_rtp(&mut ours_rx, &theirs), Ok(plain));
        }
        assert!(ours_rx.rtp_roc(7).unwrap() >= 2);
    }
}

/// Ours and webrtc-srtp 0.17 interoperate both ways for SRTCP.
#[test]
fn rtcp_interop_with_webrtc_srtp() {
    let mut rng = StdRng::seed_from_u64(14);
    for profile in PROFILES {
        let (key, salt) = random_keys(&mut rng, profile);
        let mut ours_tx = SrtpContext::new(profile, &key, &salt).unwrap();
        let mut ours_rx = SrtpContext::new(profile, &key, &salt).unwrap();
        let mut ref_tx = reference(profile, &key, &salt);
        let mut ref_rx = reference(profile, &key, &salt);
        for i in 0..600u32 {
            let plain = random_rtcp(&mut rng, [1, 2, 0xffff_ffff][i as usize % 3]);
            let ours = protect_rtcp(&mut ours_tx, &plain);
            assert_eq!(&ref_rx.decrypt_rtcp(&ours).unwrap()[..], &plain[..]);
            let theirs = ref_tx.encrypt_rtcp(&plain).unwrap();
            assert_eq!(theirs.len(), ours.len());
            assert_eq!(unprotect_rtcp(&mut ours_rx, &theirs), Ok(plain));
        }
    }
}

/// Micro benchmark, release mode only:
/// `cargo test --release -- --ignored --nocapture bench_`.
#[test]
#[ignore = "timing, run by hand in release mode"]
fn bench_protect_unprotect_1200() {
    const N: u32 = 200_000;
    let mut rng = StdRng::seed_from_u64(15);
    for profile in PROFILES {
        let (mut tx, mut rx) = pair(&mut rng, profile);
        let mut plain = vec![0u8; 1200];
        rng.fill(&mut plain[..]);
        plain[..12].copy_from_slice(&hex("806f000000000000cafebabe"));
        let mut buf = vec![0u8; 1200 + profile.rtp_overhead()];
        let mut rtcp = vec![0u8; 1200];
        rng.fill(&mut rtcp[..]);
        rtcp[..8].copy_from_slice(&hex("80c9012bcafebabe"));
        let mut rtcp_buf = vec![0u8; 1200 + profile.rtcp_overhead()];

        let start = std::time::Instant::now();
        for i in 0..N {
            buf[..1200].copy_from_slice(&plain);
            buf[2..4].copy_from_slice(&(i as u16).to_be_bytes());
            let n = tx.protect_rtp(&mut buf, 1200).unwrap();
            let m = rx.unprotect_rtp(&mut buf[..n]).unwrap();
            assert_eq!(m, 1200);
        }
        let rtp_ns = start.elapsed().as_nanos() as f64 / f64::from(N);

        let start = std::time::Instant::now();
        for _ in 0..N {
            rtcp_buf[..1200].copy_from_slice(&rtcp);
            let n = tx.protect_rtcp(&mut rtcp_buf, 1200).unwrap();
            let m = rx.unprotect_rtcp(&mut rtcp_buf[..n]).unwrap();
            assert_eq!(m, 1200);
        }
        let rtcp_ns = start.elapsed().as_nanos() as f64 / f64::from(N);
        println!(
            "{profile:?}: protect+unprotect 1200 B: RTP {rtp_ns:.0} ns/packet, RTCP {rtcp_ns:.0} ns/packet"
        );
    }
}

/// Contexts move to the shard that owns the endpoint.
#[test]
fn context_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<SrtpContext>();
}
