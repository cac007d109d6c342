//! DTLS-SRTP on one transport (RFC 5763/5764): the handshake driven to its keys,
//! then SRTP/SRTCP unprotect of what the peer sends and protect of what the
//! bridge sends it, written straight into the send queue.

use std::net::SocketAddr;
use std::time::Instant;

use super::super::dtls::DtlsOutput;
use super::super::rtp_ext::Extension;
use super::super::shard::ShardCounters;
use super::super::srtp::{self, SrtpContext, SrtpError};
use super::super::transmit::TxQueue;
use super::{SendContext, Transport, TransportFailure, TransportState, TransportTimer};

/// The SRTP contexts of a connected transport.
#[derive(Debug)]
pub(super) struct SrtpPair {
    pub(super) outbound: SrtpContext,
    pub(super) inbound: SrtpContext,
}

impl Transport {
    /// A DTLS datagram from `from`. `Ok(true)` when the handshake completed now.
    pub fn handle_dtls(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
        tx: &mut TxQueue,
        scratch: &mut [u8],
        counters: &mut ShardCounters,
    ) -> Result<bool, TransportFailure> {
        if !self.ice.is_validated(from) {
            counters.dropped_unknown_source += 1;
            return Ok(false);
        }
        if let Err(e) = self.dtls.handle_packet(now, datagram) {
            tracing::info!(port = self.port, error = %e, "dtls failed");
            counters.dtls_failures += 1;
            return Err(TransportFailure::DtlsFailed);
        }
        self.drain_dtls(tx, scratch, counters)
    }

    /// Sends what DTLS has to send and picks up a completed handshake.
    pub(super) fn drain_dtls(
        &mut self,
        tx: &mut TxQueue,
        scratch: &mut [u8],
        counters: &mut ShardCounters,
    ) -> Result<bool, TransportFailure> {
        let mut connected = false;
        let failed = loop {
            match self.dtls.poll_output(scratch) {
                Ok(DtlsOutput::Packet(p)) => {
                    if let Some(to) = self.ice.selected() {
                        tx.push(self.send_port, to, p);
                    }
                }
                Ok(DtlsOutput::Continue) => {}
                Ok(DtlsOutput::Timeout(t)) => {
                    self.timers.set(TransportTimer::Dtls, t);
                    break None;
                }
                Ok(DtlsOutput::Connected(keys)) => {
                    match srtp::contexts_from_keying_material(keys.profile, &keys.material, false) {
                        Ok((outbound, inbound)) => {
                            self.srtp = Some(SrtpPair { outbound, inbound });
                            self.state = TransportState::Connected;
                            self.negotiated = Some((keys.profile.name(), keys.version));
                            counters.dtls_successes += 1;
                            connected = true;
                        }
                        Err(e) => break Some(e.to_string()),
                    }
                }
                Err(e) => break Some(e.to_string()),
            }
        };
        if let Some(error) = failed {
            tracing::info!(port = self.port, %error, "dtls failed");
            counters.dtls_failures += 1;
            return Err(TransportFailure::DtlsFailed);
        }
        Ok(connected)
    }

    /// Checks the source and unprotects an SRTP packet in place; its length, or
    /// `None` (dropped and counted).
    pub fn unprotect_rtp(
        &mut self,
        from: SocketAddr,
        datagram: &mut [u8],
        counters: &mut ShardCounters,
    ) -> Option<usize> {
        let srtp = self.gate(from, counters)?;
        srtp.inbound
            .unprotect_rtp(datagram)
            .map_err(|e| count_srtp_error(&e, counters))
            .ok()
    }

    /// As [`Transport::unprotect_rtp`], for SRTCP.
    pub fn unprotect_rtcp(
        &mut self,
        from: SocketAddr,
        datagram: &mut [u8],
        counters: &mut ShardCounters,
    ) -> Option<usize> {
        let srtp = self.gate(from, counters)?;
        srtp.inbound
            .unprotect_rtcp(datagram)
            .map_err(|e| count_srtp_error(&e, counters))
            .ok()
    }

    /// Writes one RTP packet for this endpoint with `write` straight into `tx`,
    /// protects it and queues it. `write` gets the transport's extension ids and
    /// the transport-wide sequence number, and returns the packet's length.
    /// `carries_twcc`: the slot negotiated the transport-wide sequence number,
    /// so `write` puts it in; only then is the number used up, and recorded with
    /// `now` and the packet's size for the receiver's transport-cc feedback (a
    /// number not sent would read as a loss there).
    pub fn send_rtp<F>(
        &mut self,
        now: Instant,
        tx: &mut TxQueue,
        carries_twcc: bool,
        write: F,
    ) -> Option<usize>
    where
        F: FnOnce(&mut [u8], SendContext<'_>) -> Option<usize>,
    {
        self.send_rtp_counted(now, tx, carries_twcc, false, write)
    }

    /// As [`Transport::send_rtp`] for a padding-only packet (a bandwidth
    /// probe): recorded for the feedback but not counted as media.
    pub fn send_padding_rtp<F>(
        &mut self,
        now: Instant,
        tx: &mut TxQueue,
        carries_twcc: bool,
        write: F,
    ) -> Option<usize>
    where
        F: FnOnce(&mut [u8], SendContext<'_>) -> Option<usize>,
    {
        self.send_rtp_counted(now, tx, carries_twcc, true, write)
    }

    fn send_rtp_counted<F>(
        &mut self,
        now: Instant,
        tx: &mut TxQueue,
        carries_twcc: bool,
        padding: bool,
        write: F,
    ) -> Option<usize>
    where
        F: FnOnce(&mut [u8], SendContext<'_>) -> Option<usize>,
    {
        let tracked = carries_twcc && self.extensions.id(Extension::TransportCc).is_some();
        let to = self.media_target()?;
        let srtp = self.srtp.as_mut()?;
        let seq = self.twcc_seq;
        let ctx = SendContext {
            extensions: &self.extensions,
            twcc_seq: seq,
        };
        let sent = tx.push_with(self.send_port, to, |out| {
            let n = write(out, ctx)?;
            srtp.outbound.protect_rtp(out, n).ok()
        });
        if let Some(len) = sent.filter(|_| tracked) {
            self.twcc_seq = seq.wrapping_add(1);
            if let Some(bwe) = self.bwe.as_deref_mut() {
                if padding {
                    bwe.on_padding_sent(now, seq, len);
                } else {
                    bwe.on_packet_sent(now, seq, len);
                }
            }
        }
        sent
    }

    /// Writes one RTCP packet for this endpoint with `write`, protects and queues it.
    pub fn send_rtcp<F>(&mut self, tx: &mut TxQueue, write: F) -> Option<usize>
    where
        F: FnOnce(&mut [u8], u32) -> Option<usize>,
    {
        let to = self.media_target()?;
        let srtp = self.srtp.as_mut()?;
        let sender = self.rtcp_ssrc;
        tx.push_with(self.send_port, to, |out| {
            let n = write(out, sender)?;
            srtp.outbound.protect_rtcp(out, n).ok()
        })
    }
}

fn count_srtp_error(e: &SrtpError, counters: &mut ShardCounters) {
    match e {
        SrtpError::Replay => counters.dropped_replay += 1,
        SrtpError::AuthFailed => counters.dropped_auth += 1,
        _ => counters.dropped_malformed += 1,
    }
}
