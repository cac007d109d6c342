//! DTLS-SRTP driving (RFC 5763/5764) around `dimpl`'s sans-IO engine.
//!
//! The bridge is always the DTLS server (`a=setup:passive`). Version is auto-sensed
//! from the ClientHello (DTLS 1.2 or 1.3; dimpl reassembles ClientHellos split across
//! records, as Chrome's and Firefox's ML-KEM key shares need). The peer's leaf
//! certificate must hash to the offer's `a=fingerprint`, else the handshake is
//! treated as failed and no keys are released.

use std::sync::Arc;
use std::time::Instant;

use dimpl::{Dtls, DtlsCertificate, Output, ProtocolVersion};

use super::sdp::Fingerprint;
use super::srtp::SrtpProfile;

/// Why a DTLS association failed. Every variant is fatal for the endpoint.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DtlsError {
    /// The engine reported a fatal error (bad record, handshake failure, timeout).
    #[error("dtls: {0}")]
    Engine(String),
    /// The peer certificate does not match the offer's fingerprint.
    #[error("peer certificate does not match a=fingerprint")]
    FingerprintMismatch,
    /// The negotiated SRTP profile is one the bridge cannot run.
    #[error("unsupported SRTP profile {0}")]
    UnsupportedProfile(String),
    /// The handshake finished without DTLS-SRTP: the client offered none of the
    /// profiles in `media.srtp_profiles` (or no `use_srtp` at all).
    #[error("no SRTP profile in common with the client (see media.srtp_profiles)")]
    NoCommonSrtpProfile,
}

/// Keys released by a completed, verified handshake.
#[derive(Debug)]
pub struct SrtpKeys {
    /// Negotiated SRTP protection profile.
    pub profile: SrtpProfile,
    /// Exported keying material (client key | server key | client salt | server salt).
    pub material: Vec<u8>,
    /// Negotiated DTLS version, `"1.2"` or `"1.3"`.
    pub version: &'static str,
}

/// What [`DtlsTransport::poll_output`] produced.
#[derive(Debug)]
pub enum DtlsOutput<'a> {
    /// A record to send to the peer.
    Packet(&'a [u8]),
    /// Handshake done and the peer certificate verified: start SRTP.
    Connected(SrtpKeys),
    /// Nothing more now; call [`DtlsTransport::handle_timeout`] at this instant.
    Timeout(Instant),
    /// An internal event was handled; poll again.
    Continue,
}

/// The server side of one DTLS-SRTP association.
pub struct DtlsTransport {
    dtls: Dtls,
    expected: Fingerprint,
    cert_ok: bool,
    keys: Option<(SrtpProfile, Vec<u8>)>,
    keys_released: bool,
    connected: bool,
    failed: bool,
}

impl std::fmt::Debug for DtlsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DtlsTransport")
            .field("cert_ok", &self.cert_ok)
            .field("connected", &self.connected)
            .field("failed", &self.failed)
            .finish()
    }
}

/// Builds the dimpl configuration the bridge uses for every association: the SRTP
/// profiles it accepts, in its order of preference (an empty list means
/// [`SrtpProfile::PREFERRED`]).
pub fn server_config(srtp_profiles: &[SrtpProfile]) -> Arc<dimpl::Config> {
    let profiles = if srtp_profiles.is_empty() {
        SrtpProfile::PREFERRED
    } else {
        srtp_profiles
    };
    // Otherwise dimpl's defaults are right for WebRTC: client certificate required (we
    // verify it against the fingerprint), MTU 1150. With a non-empty profile list the
    // builder has nothing left to refuse. The crypto is dimpl's aws-lc-rs provider but
    // for the private key, parsed once per certificate instead of at every join
    // (super::dtls_key).
    //
    // No cookie exchange (HelloVerifyRequest in 1.2, a HelloRetryRequest with a cookie
    // in 1.3): a cookie proves that the ClientHello's source address can receive, and
    // here no datagram reaches DTLS from an address that has not passed an ICE check
    // signed with the ICE password of the endpoint's own offer (`Transport::handle_dtls`
    // drops it and counts `dropped_unknown_source`). The round trip it cost every join
    // proved nothing more: one more flight each way, a second ClientHello to parse and
    // the transcript rebuilt around the retry. libdatachannel's DTLS server sends none
    // for the same reason (its issue 711: ICE gives the same protection).
    Arc::new(
        dimpl::Config::builder()
            .use_server_cookie(false)
            .srtp_profiles(&to_dimpl(profiles))
            .with_crypto_provider(super::dtls_key::provider())
            .build()
            .unwrap_or_default(),
    )
}

/// dimpl's names for a list of SRTP profiles, in the same order.
pub fn to_dimpl(profiles: &[SrtpProfile]) -> Vec<dimpl::SrtpProfile> {
    profiles
        .iter()
        .map(|p| match p {
            SrtpProfile::Aes128CmSha1_80 => dimpl::SrtpProfile::AES128_CM_SHA1_80,
            SrtpProfile::AeadAes128Gcm => dimpl::SrtpProfile::AEAD_AES_128_GCM,
            SrtpProfile::AeadAes256Gcm => dimpl::SrtpProfile::AEAD_AES_256_GCM,
        })
        .collect()
}

/// Our profile for dimpl's, if we implement it.
pub fn from_dimpl(profile: dimpl::SrtpProfile) -> Option<SrtpProfile> {
    match profile {
        dimpl::SrtpProfile::AES128_CM_SHA1_80 => Some(SrtpProfile::Aes128CmSha1_80),
        dimpl::SrtpProfile::AEAD_AES_128_GCM => Some(SrtpProfile::AeadAes128Gcm),
        dimpl::SrtpProfile::AEAD_AES_256_GCM => Some(SrtpProfile::AeadAes256Gcm),
        _ => None,
    }
}

impl DtlsTransport {
    /// Starts a passive (server) association that auto-senses DTLS 1.2 or 1.3.
    pub fn new(
        config: Arc<dimpl::Config>,
        certificate: DtlsCertificate,
        expected: Fingerprint,
        now: Instant,
    ) -> Self {
        let mut dtls = Dtls::new_auto(config, certificate, now);
        dtls.set_active(false);
        Self {
            dtls,
            expected,
            cert_ok: false,
            keys: None,
            keys_released: false,
            connected: false,
            failed: false,
        }
    }

    /// Whether the handshake completed and the peer was verified.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Feeds one received DTLS datagram.
    pub fn handle_packet(&mut self, now: Instant, datagram: &[u8]) -> Result<(), DtlsError> {
        if self.failed {
            return Err(DtlsError::Engine("association already failed".into()));
        }
        let dtls = &mut self.dtls;
        let result = contain(|| {
            dtls.handle_timeout(now)
                .and_then(|()| dtls.handle_packet(datagram))
        });
        match result {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(self.fail(e)),
            None => Err(self.panicked()),
        }
    }

    fn panicked(&mut self) -> DtlsError {
        self.failed = true;
        DtlsError::Engine("the DTLS engine panicked on this peer's input".into())
    }

    /// Drives retransmissions and handshake timeouts.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsError> {
        if self.failed {
            return Ok(());
        }
        let dtls = &mut self.dtls;
        match contain(|| dtls.handle_timeout(now)) {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(self.fail(e)),
            None => Err(self.panicked()),
        }
    }

    fn fail(&mut self, e: dimpl::Error) -> DtlsError {
        self.failed = true;
        DtlsError::Engine(e.to_string())
    }

    /// Pulls the next output into `buf` (1500 bytes is always enough).
    ///
    /// Call until it returns [`DtlsOutput::Timeout`]; [`DtlsOutput::Continue`]
    /// means an internal event was consumed and there may be more.
    pub fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> Result<DtlsOutput<'a>, DtlsError> {
        if self.failed {
            return Err(DtlsError::Engine("association failed".into()));
        }
        if self.connected
            && self.cert_ok
            && let Some((profile, material)) = self.keys.take()
        {
            self.keys_released = true;
            let version = match self.dtls.protocol_version() {
                Some(v) if v == ProtocolVersion::DTLS1_3 => "1.3",
                _ => "1.2",
            };
            return Ok(DtlsOutput::Connected(SrtpKeys {
                profile,
                material,
                version,
            }));
        }
        let dtls = &mut self.dtls;
        let Some(output) = contain(move || dtls.poll_output(buf)) else {
            return Err(self.panicked());
        };
        match output {
            Output::Packet(p) => Ok(DtlsOutput::Packet(p)),
            // dimpl queues the keying material right behind Connected; once its queue
            // is drained, a connected association without keys has no SRTP.
            Output::Timeout(_) if self.connected && !self.keys_released && self.keys.is_none() => {
                self.failed = true;
                Err(DtlsError::NoCommonSrtpProfile)
            }
            Output::Timeout(t) => Ok(DtlsOutput::Timeout(t)),
            Output::BufferTooSmall { needed } => {
                self.failed = true;
                Err(DtlsError::Engine(format!(
                    "output buffer too small ({needed} bytes needed)"
                )))
            }
            Output::Connected => {
                self.connected = true;
                if !self.cert_ok {
                    self.failed = true;
                    return Err(DtlsError::FingerprintMismatch);
                }
                Ok(DtlsOutput::Continue)
            }
            Output::PeerCert(der) => {
                self.cert_ok = fingerprint_matches(&self.expected, der);
                if !self.cert_ok {
                    self.failed = true;
                    return Err(DtlsError::FingerprintMismatch);
                }
                Ok(DtlsOutput::Continue)
            }
            Output::KeyingMaterial(km, profile) => {
                let Some(profile) = from_dimpl(profile) else {
                    self.failed = true;
                    return Err(DtlsError::UnsupportedProfile(format!("{profile:?}")));
                };
                self.keys = Some((profile, km.to_vec()));
                Ok(DtlsOutput::Continue)
            }
            _ => Ok(DtlsOutput::Continue),
        }
    }
}

/// Runs `f`, turning a panic inside the DTLS engine into `None`.
///
/// dimpl is young; a panic on one peer's bytes must cost that endpoint, not the
/// shard thread and every conference on it. Only DTLS datagrams (a handful per
/// endpoint) pass through here, never media.
fn contain<T>(f: impl FnOnce() -> T) -> Option<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).ok()
}

/// Whether the DER certificate hashes to `expected` with its algorithm.
pub fn fingerprint_matches(expected: &Fingerprint, der: &[u8]) -> bool {
    use aws_lc_rs::digest;
    let alg = match expected.algorithm.as_str() {
        "sha-1" => &digest::SHA1_FOR_LEGACY_USE_ONLY,
        "sha-256" => &digest::SHA256,
        "sha-384" => &digest::SHA384,
        "sha-512" => &digest::SHA512,
        _ => return false,
    };
    let got = digest::digest(alg, der);
    aws_lc_rs::constant_time::verify_slices_are_equal(got.as_ref(), &expected.value).is_ok()
}

/// SHA-256 fingerprint of a DER certificate, for our own `a=fingerprint`.
pub fn sha256_fingerprint(der: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der)
        .as_ref()
        .to_vec()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// The datagrams the server sends in answer to a client's first flight
    /// (its ClientHello), for a client of `version`.
    fn server_answer_to_first_client_hello(version: ProtocolVersion) -> Vec<Vec<u8>> {
        let now = Instant::now();
        let client_cert = dimpl::certificate::generate_self_signed_certificate().unwrap();
        let server_cert = dimpl::certificate::generate_self_signed_certificate().unwrap();
        let expected = Fingerprint {
            algorithm: "sha-256".into(),
            value: sha256_fingerprint(&client_cert.certificate),
        };
        let mut server = DtlsTransport::new(server_config(&[]), server_cert, expected, now);
        let client_config = Arc::new(dimpl::Config::builder().build().unwrap());
        let mut client = if version == ProtocolVersion::DTLS1_3 {
            Dtls::new_13(client_config, client_cert, now)
        } else {
            Dtls::new_12(client_config, client_cert, now)
        };
        client.set_active(true);
        client.handle_timeout(now).unwrap();
        let mut buf = vec![0u8; 2048];
        let mut hello = Vec::new();
        while let Output::Packet(p) = client.poll_output(&mut buf) {
            hello.push(p.to_vec());
        }
        assert!(!hello.is_empty(), "the client sent no ClientHello");
        for datagram in &hello {
            server.handle_packet(now, datagram).unwrap();
        }
        let mut answer = Vec::new();
        while let Ok(DtlsOutput::Packet(p)) = server.poll_output(&mut buf) {
            answer.push(p.to_vec());
        }
        answer
    }

    #[test]
    fn a_dtls13_client_hello_gets_the_server_hello_without_a_cookie_round_trip() {
        let answer = server_answer_to_first_client_hello(ProtocolVersion::DTLS1_3);
        // The first record is a ServerHello (after the 13-byte record header,
        // 12 bytes of handshake header and 2 of legacy_version comes its
        // random); a HelloRetryRequest is a ServerHello whose random is this
        // constant, SHA-256 of "HelloRetryRequest" (RFC 8446 section 4.1.3).
        const HRR_RANDOM: [u8; 32] = [
            0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65,
            0xb8, 0x91, 0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2,
            0xc8, 0xa8, 0x33, 0x9c,
        ];
        let first = answer.first().expect("the server answered nothing");
        assert_eq!(first.get(13), Some(&2), "not a ServerHello");
        let random = first.get(27..59).expect("a ServerHello is longer");
        assert_ne!(
            random, HRR_RANDOM,
            "the server asked for a cookie (HelloRetryRequest)"
        );
    }

    #[test]
    fn a_dtls12_client_hello_gets_the_server_hello_without_a_hello_verify_request() {
        let answer = server_answer_to_first_client_hello(ProtocolVersion::DTLS1_2);
        // The first record's handshake type (after the 13-byte record header):
        // 3 is HelloVerifyRequest, 2 ServerHello (RFC 6347 section 4.3.2).
        let first_type = answer.first().and_then(|d| d.get(13)).copied();
        assert_eq!(first_type, Some(2), "the server's first handshake message");
    }
}
