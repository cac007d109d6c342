//! ICE-lite (RFC 8445 sec. 2.5) for one endpoint, with consent freshness (RFC 7675).
//!
//! The bridge never sends checks: it answers the client's Binding requests when
//! they carry our ufrag and a valid MESSAGE-INTEGRITY under our password, and
//! follows the client's nomination. Both regular nomination (USE-CANDIDATE on a
//! later check) and aggressive nomination (USE-CANDIDATE on every check) work the
//! same way here: the last address that sent USE-CANDIDATE is the selected one, and
//! before any nomination the first address that passed a check is used.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::stun;

/// How long an endpoint lives without a valid consent check (RFC 7675: 30 s).
pub const CONSENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Most candidate addresses remembered as validated for one endpoint.
const MAX_VALIDATED: usize = 8;

/// Most shards a local ufrag can name (two hex digits).
pub const MAX_SHARDS: usize = 256;

/// A local ufrag for an endpoint of shard `shard`: the shard index as two
/// lowercase hex digits, then `random` (the random part, kept at its length).
///
/// A STUN check that reaches a socket or connection no shard owns yet (ICE-TCP,
/// single-port UDP) names its shard this way ([`shard_of_username`]), so no
/// table shared between shards is needed. Shard indices wrap at [`MAX_SHARDS`].
pub fn local_ufrag(shard: usize, random: &str) -> String {
    format!("{:02x}{random}", shard % MAX_SHARDS)
}

/// The shard index encoded in a STUN USERNAME addressed to this bridge
/// ("<local ufrag>:<remote ufrag>", the local ufrag starting with two hex digits),
/// or None when it has no such prefix.
pub fn shard_of_username(username: &[u8]) -> Option<usize> {
    let colon = username.iter().position(|&b| b == b':')?;
    // RFC 8839: a ufrag has at least 4 ice-chars.
    if colon < 4 {
        return None;
    }
    let digit = |b: u8| match b {
        b'0'..=b'9' => Some(usize::from(b - b'0')),
        b'a'..=b'f' => Some(usize::from(b - b'a' + 10)),
        _ => None,
    };
    let hi = digit(*username.first()?)?;
    let lo = digit(*username.get(1)?)?;
    Some(hi * 16 + lo)
}

/// Outcome of one STUN datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StunOutcome {
    /// A response of this many bytes was written; send it back to the source.
    Respond(usize),
    /// The datagram was dropped (not a request for us, or failed integrity).
    Dropped(DropReason),
}

/// Why a STUN datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Not parseable as STUN.
    Malformed,
    /// Not a Binding request (responses and indications are ignored).
    NotARequest,
    /// USERNAME missing or not `ourufrag:theirufrag`.
    WrongUsername,
    /// MESSAGE-INTEGRITY or FINGERPRINT missing or wrong.
    BadIntegrity,
    /// The response did not fit the output buffer.
    NoRoom,
}

/// ICE-lite state of one endpoint.
pub struct IceLite {
    local_ufrag: String,
    local_pwd: String,
    key: stun::IntegrityKey,
    remote_ufrag: String,
    validated: Vec<SocketAddr>,
    selected: Option<SocketAddr>,
    nominated: bool,
    last_consent: Instant,
}

impl std::fmt::Debug for IceLite {
    // The password is a secret: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IceLite")
            .field("local_ufrag", &self.local_ufrag)
            .field("remote_ufrag", &self.remote_ufrag)
            .field("selected", &self.selected)
            .field("nominated", &self.nominated)
            .finish_non_exhaustive()
    }
}

impl IceLite {
    /// New agent with our credentials and the peer's ufrag from the offer.
    pub fn new(local_ufrag: String, local_pwd: String, remote_ufrag: String, now: Instant) -> Self {
        Self {
            key: stun::IntegrityKey::new(local_pwd.as_bytes()),
            local_ufrag,
            local_pwd,
            remote_ufrag,
            validated: Vec::with_capacity(MAX_VALIDATED),
            selected: None,
            nominated: false,
            last_consent: now,
        }
    }

    /// Our username fragment.
    pub fn local_ufrag(&self) -> &str {
        &self.local_ufrag
    }

    /// Our password.
    pub fn local_pwd(&self) -> &str {
        &self.local_pwd
    }

    /// The address media goes to, once a check has passed.
    pub fn selected(&self) -> Option<SocketAddr> {
        self.selected
    }

    /// Whether the client nominated a pair (USE-CANDIDATE seen).
    pub fn is_nominated(&self) -> bool {
        self.nominated
    }

    /// Whether `from` passed a connectivity check (so its DTLS and SRTP are accepted).
    pub fn is_validated(&self, from: SocketAddr) -> bool {
        self.validated.contains(&from)
    }

    /// When consent runs out unless another check arrives.
    pub fn consent_deadline(&self) -> Instant {
        self.last_consent + CONSENT_TIMEOUT
    }

    /// Handles one STUN datagram from `from`, writing any response into `out`.
    pub fn handle_stun(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
        out: &mut [u8],
    ) -> StunOutcome {
        let Ok(msg) = stun::Message::parse(datagram) else {
            return StunOutcome::Dropped(DropReason::Malformed);
        };
        if !msg.is_binding_request() {
            return StunOutcome::Dropped(DropReason::NotARequest);
        }
        if !self.username_matches(msg.username()) {
            return StunOutcome::Dropped(DropReason::WrongUsername);
        }
        if !msg.verify_fingerprint() || !msg.verify_integrity(&self.key) {
            return StunOutcome::Dropped(DropReason::BadIntegrity);
        }

        self.last_consent = now;
        if !self.validated.contains(&from) {
            if self.validated.len() == MAX_VALIDATED {
                self.validated.remove(0);
            }
            self.validated.push(from);
        }
        if msg.use_candidate() {
            self.selected = Some(from);
            self.nominated = true;
        } else if self.selected.is_none() {
            self.selected = Some(from);
        }

        match stun::write_binding_success(out, &msg.transaction_id(), from, &self.key) {
            Ok(n) => StunOutcome::Respond(n),
            Err(_) => StunOutcome::Dropped(DropReason::NoRoom),
        }
    }

    fn username_matches(&self, username: Option<&[u8]>) -> bool {
        // USERNAME of a check sent to us is "our-ufrag:their-ufrag".
        let Some(u) = username else { return false };
        let l = self.local_ufrag.as_bytes();
        let r = self.remote_ufrag.as_bytes();
        u.len() == l.len() + 1 + r.len() && u.starts_with(l) && u[l.len()] == b':' && u.ends_with(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::stun::{BindingRequest, IceRole, IntegrityKey, TransactionId};

    const LOCAL_PWD: &str = "bridgepassword0123456789";

    fn agent(now: Instant) -> IceLite {
        IceLite::new("brdg".into(), LOCAL_PWD.into(), "clnt".into(), now)
    }

    fn check(username: &str, pwd: &str, use_candidate: bool) -> Vec<u8> {
        let mut buf = vec![0u8; 256];
        let req = BindingRequest {
            transaction_id: TransactionId([7; 12]),
            username: username.as_bytes(),
            priority: 100,
            role: IceRole::Controlling { tie_breaker: 1 },
            use_candidate,
        };
        let n = stun::write_binding_request(&mut buf, &req, &IntegrityKey::new(pwd.as_bytes()))
            .expect("request fits");
        buf.truncate(n);
        buf
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn answers_a_valid_check_with_integrity_and_the_mapped_address() {
        let t0 = Instant::now();
        let mut ice = agent(t0);
        let mut out = [0u8; 256];
        let req = check("brdg:clnt", LOCAL_PWD, false);
        let StunOutcome::Respond(n) = ice.handle_stun(t0, addr(5000), &req, &mut out) else {
            panic!("valid check must be answered");
        };
        let resp = stun::Message::parse(&out[..n]).expect("response parses");
        assert_eq!(resp.message_type(), stun::MessageType::BINDING_SUCCESS);
        assert_eq!(resp.transaction_id(), TransactionId([7; 12]));
        assert_eq!(resp.xor_mapped_address(), Some(addr(5000)));
        assert!(resp.verify_integrity(&IntegrityKey::new(LOCAL_PWD.as_bytes())));
        assert!(resp.verify_fingerprint());
        assert!(ice.is_validated(addr(5000)));
    }

    #[test]
    fn refuses_checks_with_wrong_credentials() {
        let t0 = Instant::now();
        let mut ice = agent(t0);
        let mut out = [0u8; 256];
        let cases = [
            (
                check("brdg:other", LOCAL_PWD, true),
                DropReason::WrongUsername,
            ),
            (
                check("other:clnt", LOCAL_PWD, true),
                DropReason::WrongUsername,
            ),
            (
                check("brdg:clnt", "wrong-password-0123456789", true),
                DropReason::BadIntegrity,
            ),
            (vec![0, 1, 0, 0], DropReason::Malformed),
        ];
        for (req, reason) in cases {
            assert_eq!(
                ice.handle_stun(t0, addr(5000), &req, &mut out),
                StunOutcome::Dropped(reason)
            );
        }
        assert!(!ice.is_validated(addr(5000)));
        assert_eq!(ice.selected(), None);
    }

    #[test]
    fn regular_nomination_switches_to_the_nominated_pair() {
        let t0 = Instant::now();
        let mut ice = agent(t0);
        let mut out = [0u8; 256];
        // Checks without USE-CANDIDATE validate pairs; the first one carries media
        // until the controlling side nominates.
        let plain = check("brdg:clnt", LOCAL_PWD, false);
        ice.handle_stun(t0, addr(5000), &plain, &mut out);
        ice.handle_stun(t0, addr(6000), &plain, &mut out);
        assert_eq!(ice.selected(), Some(addr(5000)));
        assert!(!ice.is_nominated());
        // The nomination repeats the check on the chosen pair with USE-CANDIDATE.
        let nominate = check("brdg:clnt", LOCAL_PWD, true);
        ice.handle_stun(t0, addr(6000), &nominate, &mut out);
        assert_eq!(ice.selected(), Some(addr(6000)));
        assert!(ice.is_nominated());
        // A later plain check (consent) does not move the nominated pair.
        ice.handle_stun(t0, addr(5000), &plain, &mut out);
        assert_eq!(ice.selected(), Some(addr(6000)));
    }

    #[test]
    fn aggressive_nomination_selects_on_the_first_check() {
        let t0 = Instant::now();
        let mut ice = agent(t0);
        let mut out = [0u8; 256];
        ice.handle_stun(
            t0,
            addr(7000),
            &check("brdg:clnt", LOCAL_PWD, true),
            &mut out,
        );
        assert_eq!(ice.selected(), Some(addr(7000)));
        assert!(ice.is_nominated());
    }

    #[test]
    fn each_valid_check_refreshes_consent_and_failed_ones_do_not() {
        let t0 = Instant::now();
        let mut ice = agent(t0);
        let mut out = [0u8; 256];
        assert_eq!(ice.consent_deadline(), t0 + CONSENT_TIMEOUT);
        let t1 = t0 + Duration::from_secs(20);
        ice.handle_stun(
            t1,
            addr(5000),
            &check("brdg:clnt", "bad-password-000000000000", false),
            &mut out,
        );
        assert_eq!(ice.consent_deadline(), t0 + CONSENT_TIMEOUT);
        ice.handle_stun(
            t1,
            addr(5000),
            &check("brdg:clnt", LOCAL_PWD, false),
            &mut out,
        );
        assert_eq!(ice.consent_deadline(), t1 + CONSENT_TIMEOUT);
    }

    #[test]
    fn the_shard_index_is_read_back_from_the_username_of_a_check() {
        for shard in [0, 1, 9, 10, 15, 16, 200, 255] {
            let ufrag = local_ufrag(shard, "AbCd1234");
            assert_eq!(ufrag.len(), 10, "{ufrag}");
            let username = format!("{ufrag}:clnt");
            assert_eq!(shard_of_username(username.as_bytes()), Some(shard));
        }
        assert_eq!(local_ufrag(256 + 3, "AbCd1234"), local_ufrag(3, "AbCd1234"));
    }

    #[test]
    fn usernames_without_a_shard_prefix_name_no_shard() {
        for u in [
            &b""[..],
            b"0a",
            b"0abc",         // no ':' (not "<ours>:<theirs>")
            b"0ab:clnt",     // local part shorter than 4 chars
            b"0Abcdef:clnt", // uppercase is not ours
            b"g0bcdef:clnt",
            b":0abcdef",
            b"\xff\xfe12345:x",
        ] {
            assert_eq!(
                shard_of_username(u),
                None,
                "{:?}",
                String::from_utf8_lossy(u)
            );
        }
        assert_eq!(shard_of_username(b"ff12:"), Some(255));
    }

    #[test]
    fn debug_output_never_shows_the_password() {
        let ice = agent(Instant::now());
        assert!(!format!("{ice:?}").contains(LOCAL_PWD));
    }
}
