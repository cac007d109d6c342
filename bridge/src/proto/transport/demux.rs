//! Receive demultiplexing of one transport: SSRC -> (producer, rid, is RTX).
//!
//! The table is filled from the offer (`a=ssrc` media SSRCs, `a=ssrc-group:FID`
//! repair SSRCs) and learned from packets of unknown SSRCs that carry the MID
//! (RFC 8843), RID or repaired RID (RFC 8852) header extensions. Learning is
//! careful about what it binds: a packet is taken as RTX when it carries a
//! repaired RID or the m-line's RTX payload type, and as media only with the
//! codec's payload type and a non-empty payload; anything else (padding-only
//! probes, other payload types) binds nothing. Once bound, an SSRC keeps its role.
//!
//! Per packet: one scan of a short array of `u32`s (a transport has a handful of
//! SSRCs), no hashing, no strings. Per media SSRC the table also keeps the
//! receive statistics the transport's receiver reports are made of.

use super::super::quality::seen::{Seen, SeenWindow};
use super::super::router::ProducerKey;
use super::super::rtcp::{ReceiveStats, ReportBlock};
use super::super::rtp::{RtpHeader, SeqUnwrapper};
use super::super::rtp_ext::{Extension, ExtensionMap};

/// Most SSRCs one transport tracks (learned and announced together).
pub const MAX_SSRCS: usize = 32;

/// One publishing m-line of the transport, as the demux needs it.
#[derive(Debug, Clone)]
pub struct ReceiveRoute {
    /// The m-line's mid.
    pub mid: String,
    /// The producer fed by this m-line.
    pub producer: ProducerKey,
    /// The codec's payload type.
    pub pt: u8,
    /// The RTX payload type, if offered.
    pub rtx_pt: Option<u8>,
    /// The RED payload type carrying the codec (audio), if offered.
    pub red_pt: Option<u8>,
    /// RTP clock rate of the codec.
    pub clock_rate: u32,
    /// The send RIDs (simulcast), in order; a learned SSRC records its index here.
    pub rids: Vec<String>,
    /// Media SSRCs were announced in the offer: none is learned for this m-line.
    pub announced: bool,
}

/// What the table knows of one SSRC.
#[derive(Debug, Clone)]
pub struct SsrcEntry {
    /// The SSRC.
    pub ssrc: u32,
    /// Index of its [`ReceiveRoute`].
    pub route: usize,
    /// The producer it feeds.
    pub producer: ProducerKey,
    /// Index of its RID in the route's `rids`, for simulcast layers.
    pub rid: Option<u8>,
    /// A repair (RTX) stream rather than media.
    pub rtx: bool,
    seq: SeqUnwrapper,
    stats: Option<ReceiveStats>,
    seen: SeenWindow,
}

/// How a received RTP packet was classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Demuxed {
    /// Media of `producer`: entry `entry` of the table.
    Media {
        /// The producer.
        producer: ProducerKey,
        /// Its table entry (for [`Demux::record`]).
        entry: usize,
    },
    /// A packet of a known RTX stream of `producer`.
    Rtx {
        /// The repaired producer.
        producer: ProducerKey,
    },
    /// An SSRC the table does not know and could not learn.
    Unknown,
}

/// The SSRC table of one transport.
#[derive(Debug, Clone, Default)]
pub struct Demux {
    routes: Vec<ReceiveRoute>,
    ssrcs: Vec<SsrcEntry>,
    mid_id: Option<u8>,
    rid_id: Option<u8>,
    repaired_rid_id: Option<u8>,
}

impl Demux {
    /// A table for a transport with these extension ids.
    pub fn new(extensions: &ExtensionMap) -> Self {
        Self {
            routes: Vec::new(),
            ssrcs: Vec::with_capacity(8),
            mid_id: extensions.id(Extension::Mid),
            rid_id: extensions.id(Extension::Rid),
            repaired_rid_id: extensions.id(Extension::RepairedRid),
        }
    }

    /// Adds a publishing m-line with the SSRCs its offer announced: `media`
    /// (`a=ssrc` less repair streams) and `rtx` (FID media/repair pairs).
    pub fn add_route(&mut self, route: ReceiveRoute, media: &[u32], rtx: &[(u32, u32)]) {
        self.add_simulcast_route(route, media, rtx, &[]);
    }

    /// [`add_route`](Self::add_route) for SSRC simulcast (`a=ssrc-group:SIM`):
    /// the media SSRC at index `i` of `sim` is layer `i` (its entry's `rid`),
    /// and the RTX SSRC an FID group pairs with it repairs that layer.
    pub fn add_simulcast_route(
        &mut self,
        mut route: ReceiveRoute,
        media: &[u32],
        rtx: &[(u32, u32)],
        sim: &[u32],
    ) {
        let index = self.routes.len();
        let producer = route.producer;
        route.announced = !media.is_empty();
        self.routes.push(route);
        let layer = |ssrc: u32| {
            sim.iter()
                .position(|&s| s == ssrc)
                .and_then(|i| u8::try_from(i).ok())
        };
        for &ssrc in media {
            self.insert(ssrc, index, producer, layer(ssrc), false);
        }
        for &(primary, repair) in rtx {
            if media.contains(&primary) {
                self.insert(repair, index, producer, layer(primary), true);
            }
        }
    }

    fn insert(
        &mut self,
        ssrc: u32,
        route: usize,
        producer: ProducerKey,
        rid: Option<u8>,
        rtx: bool,
    ) {
        if self.ssrcs.len() >= MAX_SSRCS || self.ssrcs.iter().any(|e| e.ssrc == ssrc) {
            return;
        }
        self.ssrcs.push(SsrcEntry {
            ssrc,
            route,
            producer,
            rid,
            rtx,
            seq: SeqUnwrapper::new(),
            stats: None,
            seen: SeenWindow::new(),
        });
    }

    /// The publishing m-lines.
    pub fn routes(&self) -> &[ReceiveRoute] {
        &self.routes
    }

    /// Every known SSRC.
    pub fn entries(&self) -> &[SsrcEntry] {
        &self.ssrcs
    }

    /// The media SSRCs of `producer` (what a keyframe request names).
    pub fn media_ssrcs(&self, producer: ProducerKey) -> impl Iterator<Item = u32> + '_ {
        self.ssrcs
            .iter()
            .filter(move |e| e.producer == producer && !e.rtx)
            .map(|e| e.ssrc)
    }

    /// Classifies a received packet, learning its SSRC if the table can.
    pub fn classify(&mut self, header: &RtpHeader, packet: &[u8]) -> Demuxed {
        let entry = match self.ssrcs.iter().position(|e| e.ssrc == header.ssrc) {
            Some(i) => i,
            None => match self.learn(header, packet) {
                Some(i) => i,
                None => return Demuxed::Unknown,
            },
        };
        let e = &self.ssrcs[entry];
        if e.rtx {
            Demuxed::Rtx {
                producer: e.producer,
            }
        } else {
            Demuxed::Media {
                producer: e.producer,
                entry,
            }
        }
    }

    /// The media entry a known RTX SSRC repairs: the media SSRC of the same
    /// m-line and RID (the FID group's primary). Returns its entry index and SSRC.
    pub fn rtx_media(&self, rtx_ssrc: u32) -> Option<(usize, u32)> {
        let r = self.ssrcs.iter().find(|e| e.ssrc == rtx_ssrc && e.rtx)?;
        self.ssrcs
            .iter()
            .position(|e| !e.rtx && e.route == r.route && e.rid == r.rid)
            .map(|i| (i, self.ssrcs[i].ssrc))
    }

    /// The payload type entry `entry`'s m-line negotiated for its codec.
    pub fn media_pt(&self, entry: usize) -> Option<u8> {
        let e = self.ssrcs.get(entry)?;
        self.routes.get(e.route).map(|r| r.pt)
    }

    /// Records a forwarded media packet of entry `entry` for the receiver
    /// reports; `arrival` is its arrival in 1/`clock_rate` s.
    pub fn record(&mut self, entry: usize, header: &RtpHeader, since_epoch: std::time::Duration) {
        let Some(e) = self.ssrcs.get_mut(entry) else {
            return;
        };
        let clock_rate = self.routes.get(e.route).map_or(90_000, |r| r.clock_rate);
        let ext = e.seq.extend(header.sequence_number);
        e.seen.insert(header.sequence_number);
        let arrival = (since_epoch.as_micros() * u128::from(clock_rate) / 1_000_000) as u64;
        e.stats
            .get_or_insert_with(|| ReceiveStats::new(header.ssrc))
            .handle_packet(ext, header.timestamp, arrival);
    }

    /// Whether media packet `seq` of entry `entry` arrived before (as itself
    /// or as a retransmission marked with [`Demux::mark_seen`]).
    pub fn seen(&self, entry: usize, seq: u16) -> Seen {
        self.ssrcs
            .get(entry)
            .map_or(Seen::No, |e| e.seen.contains(seq))
    }

    /// Marks media packet `seq` of entry `entry` as arrived (a retransmission
    /// that filled a hole: it stays out of the receive statistics).
    pub fn mark_seen(&mut self, entry: usize, seq: u16) {
        if let Some(e) = self.ssrcs.get_mut(entry) {
            e.seen.insert(seq);
        }
    }

    /// Records a sender report of `ssrc`; `arrival_q16` in 1/65536 s.
    pub fn handle_sender_report(&mut self, ssrc: u32, ntp_timestamp: u64, arrival_q16: u64) {
        if let Some(stats) = self
            .ssrcs
            .iter_mut()
            .find(|e| e.ssrc == ssrc)
            .and_then(|e| e.stats.as_mut())
        {
            stats.handle_sender_report(ntp_timestamp, arrival_q16);
        }
    }

    /// Report blocks for the next receiver report, at most `blocks.len()`; returns
    /// how many were written.
    pub fn poll_report_blocks(&mut self, now_q16: u64, blocks: &mut [ReportBlock]) -> usize {
        let mut n = 0;
        for stats in self.ssrcs.iter_mut().filter_map(|e| e.stats.as_mut()) {
            if n == blocks.len() {
                break;
            }
            if let Some(block) = stats.poll_report_block(now_q16) {
                blocks[n] = block;
                n += 1;
            }
        }
        n
    }

    /// Binds an unknown SSRC from its header extensions, if they say enough.
    fn learn(&mut self, header: &RtpHeader, packet: &[u8]) -> Option<usize> {
        let ext = |id: Option<u8>| id.and_then(|id| header.extension_value(packet, id));
        let mid = ext(self.mid_id).filter(|m| !m.is_empty())?;
        let route = self.routes.iter().position(|r| r.mid.as_bytes() == mid)?;
        let r = &self.routes[route];
        let repaired = ext(self.repaired_rid_id).filter(|v| !v.is_empty());
        let rid = ext(self.rid_id).filter(|v| !v.is_empty());
        let rtx = repaired.is_some() || r.rtx_pt == Some(header.payload_type);
        let rid_index = repaired
            .or(rid)
            .and_then(|v| r.rids.iter().position(|x| x.as_bytes() == v))
            .and_then(|i| u8::try_from(i).ok());
        if !rtx {
            // Only a real media packet of the negotiated codec binds the media
            // SSRC: a padding-only probe or another payload type could be a
            // repair stream whose payload type this table does not know.
            let codec_pt = header.payload_type == r.pt || Some(header.payload_type) == r.red_pt;
            if !codec_pt || header.payload_range().is_empty() {
                return None;
            }
            if r.announced {
                return None;
            }
            let layers = r.rids.len().max(1);
            let bound = self
                .ssrcs
                .iter()
                .filter(|e| e.route == route && !e.rtx)
                .count();
            let same_rid = self
                .ssrcs
                .iter()
                .any(|e| e.route == route && !e.rtx && e.rid == rid_index);
            if bound >= layers || (!r.rids.is_empty() && (rid_index.is_none() || same_rid)) {
                return None;
            }
        }
        let producer = r.producer;
        self.insert(header.ssrc, route, producer, rid_index, rtx);
        self.ssrcs.iter().position(|e| e.ssrc == header.ssrc)
    }
}

#[cfg(test)]
mod tests {
    use slotmap::SlotMap;

    use super::*;

    fn rtp(pt: u8, ssrc: u32, exts: &[(u8, &[u8])], payload: &[u8], padding: u8) -> Vec<u8> {
        let mut block = [0u8; 64];
        let n = crate::proto::rtp_ext::write_extension_block(&mut block, exts).expect("ext");
        let mut p = vec![0x80 | if n > 0 { 0x10 } else { 0 }, pt, 0, 1, 0, 0, 0, 9];
        if padding > 0 {
            p[0] |= 0x20;
        }
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&block[..n]);
        p.extend_from_slice(payload);
        if padding > 0 {
            p.extend(std::iter::repeat_n(0, usize::from(padding) - 1));
            p.push(padding);
        }
        p
    }

    fn table(rids: &[&str]) -> (Demux, ProducerKey) {
        let mut keys: SlotMap<ProducerKey, ()> = SlotMap::with_key();
        let producer = keys.insert(());
        let mut map = ExtensionMap::default();
        map.set(Extension::Mid, 1);
        map.set(Extension::Rid, 2);
        map.set(Extension::RepairedRid, 3);
        let mut d = Demux::new(&map);
        d.add_route(
            ReceiveRoute {
                mid: "1".into(),
                producer,
                pt: 96,
                red_pt: None,
                rtx_pt: Some(97),
                clock_rate: 90_000,
                rids: rids.iter().map(|r| (*r).to_owned()).collect(),
                announced: false,
            },
            &[],
            &[],
        );
        (d, producer)
    }

    fn classify(d: &mut Demux, p: &[u8]) -> Demuxed {
        let h = RtpHeader::parse(p).expect("rtp");
        d.classify(&h, p)
    }

    #[test]
    fn rtx_or_padding_first_never_binds_the_media_ssrc() {
        let (mut d, producer) = table(&[]);
        // Padding-only probe with the media payload type: binds nothing.
        assert_eq!(
            classify(&mut d, &rtp(96, 50, &[(1, b"1")], &[], 4)),
            Demuxed::Unknown
        );
        // RTX payload type: bound as RTX.
        assert_eq!(
            classify(&mut d, &rtp(97, 51, &[(1, b"1")], &[0, 1, 2], 0)),
            Demuxed::Rtx { producer }
        );
        // The media then binds its own SSRC, and later packets need no MID.
        assert!(matches!(
            classify(&mut d, &rtp(96, 52, &[(1, b"1")], &[0x10], 0)),
            Demuxed::Media { producer: p, .. } if p == producer
        ));
        assert!(matches!(
            classify(&mut d, &rtp(96, 52, &[], &[0x10], 0)),
            Demuxed::Media { .. }
        ));
        assert_eq!(
            classify(&mut d, &rtp(97, 51, &[], &[0], 0)),
            Demuxed::Rtx { producer }
        );
        // Without simulcast a second media SSRC for the same m-line is refused.
        assert_eq!(
            classify(&mut d, &rtp(96, 53, &[(1, b"1")], &[1], 0)),
            Demuxed::Unknown
        );
        // Unknown mid, or no mid: nothing learned.
        assert_eq!(
            classify(&mut d, &rtp(96, 54, &[(1, b"9")], &[1], 0)),
            Demuxed::Unknown
        );
        assert_eq!(
            classify(&mut d, &rtp(96, 55, &[], &[1], 0)),
            Demuxed::Unknown
        );
        assert_eq!(d.media_ssrcs(producer).collect::<Vec<_>>(), vec![52]);
    }

    #[test]
    fn simulcast_layers_bind_by_rid_and_repairs_by_repaired_rid() {
        let (mut d, producer) = table(&["q", "h", "f"]);
        for (ssrc, rid) in [(10u32, &b"q"[..]), (11, b"h"), (12, b"f")] {
            assert!(matches!(
                classify(&mut d, &rtp(96, ssrc, &[(1, b"1"), (2, rid)], &[0x10], 0)),
                Demuxed::Media { .. }
            ));
        }
        // Repaired RID marks RTX whatever the payload type.
        assert_eq!(
            classify(&mut d, &rtp(96, 20, &[(1, b"1"), (3, b"h")], &[0, 1], 0)),
            Demuxed::Rtx { producer }
        );
        // A fourth layer, a repeated rid and an unknown rid are not bound.
        assert_eq!(
            classify(&mut d, &rtp(96, 13, &[(1, b"1"), (2, b"q")], &[1], 0)),
            Demuxed::Unknown
        );
        assert_eq!(
            classify(&mut d, &rtp(96, 14, &[(1, b"1"), (2, b"x")], &[1], 0)),
            Demuxed::Unknown
        );
        let rids: Vec<_> = d.entries().iter().map(|e| (e.ssrc, e.rid, e.rtx)).collect();
        assert_eq!(
            rids,
            vec![
                (10, Some(0), false),
                (11, Some(1), false),
                (12, Some(2), false),
                (20, Some(1), true)
            ]
        );
    }

    #[test]
    fn announced_ssrcs_and_fid_groups_fill_the_table() {
        let mut keys: SlotMap<ProducerKey, ()> = SlotMap::with_key();
        let producer = keys.insert(());
        let mut d = Demux::new(&ExtensionMap::default());
        d.add_route(
            ReceiveRoute {
                mid: "0".into(),
                producer,
                pt: 96,
                red_pt: None,
                rtx_pt: Some(97),
                clock_rate: 90_000,
                rids: vec![],
                announced: true,
            },
            &[1000],
            &[(1000, 1001), (4444, 4445)],
        );
        assert!(matches!(
            classify(&mut d, &rtp(96, 1000, &[], &[1], 0)),
            Demuxed::Media { .. }
        ));
        assert_eq!(
            classify(&mut d, &rtp(97, 1001, &[], &[1], 0)),
            Demuxed::Rtx { producer }
        );
        assert_eq!(
            classify(&mut d, &rtp(96, 4445, &[], &[1], 0)),
            Demuxed::Unknown
        );
    }

    #[test]
    fn ssrc_sim_group_binds_layers_and_their_rtx_streams() {
        let mut keys: SlotMap<ProducerKey, ()> = SlotMap::with_key();
        let producer = keys.insert(());
        let mut d = Demux::new(&ExtensionMap::default());
        d.add_simulcast_route(
            ReceiveRoute {
                mid: "0".into(),
                producer,
                pt: 96,
                red_pt: None,
                rtx_pt: Some(97),
                clock_rate: 90_000,
                rids: vec![],
                announced: false,
            },
            &[10, 20, 30],
            &[(10, 11), (20, 21), (30, 31)],
            &[10, 20, 30],
        );
        let layers: Vec<_> = d.entries().iter().map(|e| (e.ssrc, e.rid, e.rtx)).collect();
        assert_eq!(
            layers,
            [
                (10, Some(0), false),
                (20, Some(1), false),
                (30, Some(2), false),
                (11, Some(0), true),
                (21, Some(1), true),
                (31, Some(2), true),
            ]
        );
        // An RTX packet of layer 1 is restored onto layer 1's media SSRC.
        assert_eq!(d.rtx_media(21).map(|(_, s)| s), Some(20));
        assert_eq!(
            classify(&mut d, &rtp(97, 31, &[], &[0, 1, 2], 0)),
            Demuxed::Rtx { producer }
        );
    }
}
