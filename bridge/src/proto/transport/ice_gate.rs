//! The ICE-lite gate (RFC 8445 section 2.5, consent RFC 7675): STUN checks are
//! answered, and only an address that passed one may send anything else.

use std::net::SocketAddr;
use std::time::Instant;

use super::super::ice::{DropReason, StunOutcome};
use super::super::shard::ShardCounters;
use super::super::transmit::TxQueue;
use super::Transport;
use super::dtls_srtp::SrtpPair;

impl Transport {
    /// A STUN datagram from `from`: answered into `tx`, or refused and counted.
    pub fn handle_stun(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
        tx: &mut TxQueue,
        counters: &mut ShardCounters,
    ) {
        let mut outcome = None;
        let was_checked = self.ice.selected().is_some();
        let ice = &mut self.ice;
        tx.push_with(self.send_port, from, |out| {
            match ice.handle_stun(now, from, datagram, out) {
                StunOutcome::Respond(n) => Some(n),
                StunOutcome::Dropped(reason) => {
                    outcome = Some(reason);
                    None
                }
            }
        });
        if let Some(reason) = outcome {
            counters.stun_refused += 1;
            match reason {
                DropReason::Malformed => counters.dropped_malformed += 1,
                DropReason::WrongUsername => counters.dropped_stun_username += 1,
                DropReason::BadIntegrity => counters.dropped_stun_integrity += 1,
                DropReason::NotARequest | DropReason::NoRoom => counters.dropped_stun_other += 1,
            }
            tracing::debug!(port = self.port, ?reason, %from, "stun dropped");
        } else if !was_checked && self.ice.selected().is_some() {
            counters.ice_successes += 1;
        }
    }

    /// The ICE gate: only a validated address of a keyed transport gets through.
    pub(super) fn gate(
        &mut self,
        from: SocketAddr,
        counters: &mut ShardCounters,
    ) -> Option<&mut SrtpPair> {
        if !self.ice.is_validated(from) {
            counters.dropped_unknown_source += 1;
            return None;
        }
        let Some(srtp) = self.srtp.as_mut() else {
            counters.dropped_unknown_source += 1;
            return None;
        };
        Some(srtp)
    }
}
