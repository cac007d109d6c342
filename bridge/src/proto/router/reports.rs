//! Sender reports for every slot (RFC 3550 section 6.4.1) on the source's NTP
//! clock, and the RTT the receivers' report blocks give back.

use std::time::{Duration, Instant};

use super::super::quality::sender_report::{NtpClock, SourceClock};
use super::super::rtcp::{ReportBlock, SenderInfo};
use super::{EndpointKey, Router, RouterIo, RouterTimer};

/// How often each slot sends a sender report.
pub const SENDER_REPORT_INTERVAL: Duration = Duration::from_secs(1);

impl Router {
    /// A publisher's (endpoint `key`) sender report: the clock of the source
    /// whose media SSRC it names.
    pub(super) fn handle_source_clock(
        &mut self,
        key: EndpointKey,
        info: &SenderInfo,
        now: Instant,
    ) {
        let Some(ep) = self.endpoints.get(key) else {
            return;
        };
        let Some(pk) = ep
            .transport
            .demux
            .entries()
            .iter()
            .find(|e| e.ssrc == info.ssrc && !e.rtx)
            .map(|e| e.producer)
        else {
            return;
        };
        if let Some(p) = self.producers.get_mut(pk) {
            p.clock = Some(SourceClock::from_sender_report(info, now, p.clock_rate));
        }
    }

    /// A report block from endpoint `key`: the RTT of the slot it names, which
    /// is also the RTT of the sources the endpoint publishes.
    pub(super) fn handle_report_block(
        &mut self,
        key: EndpointKey,
        block: &ReportBlock,
        now: Instant,
    ) {
        let Some(ep) = self.endpoints.get(key) else {
            return;
        };
        let Router {
            consumers,
            producers,
            ..
        } = self;
        let slot = ep
            .consumers
            .iter()
            .copied()
            .find(|&ck| consumers.get(ck).is_some_and(|c| c.ssrc == block.ssrc));
        let rtt = slot.and_then(|ck| consumers.get_mut(ck)).and_then(|c| {
            let rtt = c.reports.handle_report_block(now, block)?;
            c.rtt = Some(rtt);
            Some(rtt)
        });
        // The path is the endpoint's one transport: its sources' NACKs are
        // retried about once per this RTT too.
        if let Some(rtt) = rtt {
            for &pk in &ep.producers {
                if let Some(repair) = producers.get_mut(pk).and_then(|p| p.repair.as_deref_mut()) {
                    for layer in repair.layers_mut() {
                        layer.nack.set_rtt(rtt);
                    }
                }
            }
        }
    }

    /// The `SenderReports` timer: an SR for every slot that sent media, on its
    /// current source's clock (the bridge's own before the source sent an SR).
    pub(super) fn send_sender_reports(&mut self, io: &mut RouterIo<'_>) {
        let now = io.now;
        // The bridge's clock: the shard's media clock, as the receiver reports
        // the transports send use it (the core reads no wall clock).
        let bridge = NtpClock::new(now.checked_sub(io.since_epoch).unwrap_or(now), 0);
        let Router {
            endpoints,
            producers,
            consumers,
            timers,
            ..
        } = self;
        for (_, c) in consumers.iter_mut() {
            let Some(receiver) = endpoints.get_mut(c.receiver) else {
                continue;
            };
            // Before the first packet of a new source the offset is not known:
            // the bridge's clock until then.
            let rewrite = c.slot_rewrite();
            let source = rewrite
                .and(c.source())
                .and_then(|pk| producers.get(pk))
                .and_then(|p| p.clock);
            let ts_offset = rewrite.map_or(0, |r| r.ts_offset);
            let reports = &mut c.reports;
            let sent = receiver.transport.send_rtcp(io.tx, |out, _| {
                reports
                    .write_sender_report(now, source.as_ref(), ts_offset, &bridge, out)
                    .ok()
                    .filter(|&n| n > 0)
            });
            if sent.is_some() {
                io.counters.sender_reports_sent += 1;
            }
        }
        if !consumers.is_empty() {
            timers.set(RouterTimer::SenderReports, now + SENDER_REPORT_INTERVAL);
        }
    }
}
