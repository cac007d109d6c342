//! SDP offer parsing and answer writing (RFC 8866, RFC 8829 shapes).
//!
//! Only what a bridge needs: per m-line kind, mid, direction, codecs (Opus; VP8, H264, VP9, AV1)
//! and their RTX payload types, header extension ids (mid, rid, repaired rid, audio
//! level, abs-send-time, transport-wide-cc), announced SSRCs with their FID (RTX)
//! pairs, the send RIDs of simulcast or the SSRCs of an `a=ssrc-group:SIM`, and the
//! transport attributes (ICE credentials, DTLS fingerprint and setup role), which
//! may sit at session or media level. Parsing never panics; any input we cannot use
//! yields an [`SdpError`] whose text is safe to show to the client.

use std::fmt::Write as _;
use std::net::IpAddr;

use super::rtp_ext::{Extension, ExtensionMap, ExtensionSet};

/// Why an offer was refused. The message is meant for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SdpError {
    /// A required attribute is missing.
    #[error("offer has no {0}")]
    Missing(&'static str),
    /// A line or attribute is malformed.
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// What could not be read.
        what: &'static str,
        /// A short excerpt of the problem.
        detail: String,
    },
    /// The offer asks for something the bridge does not support.
    #[error("unsupported: {0}")]
    Unsupported(String),
}

/// Media kind of an m-line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    /// `m=audio`.
    Audio,
    /// `m=video`.
    Video,
    /// Anything else (`m=application`, ...); always rejected in the answer.
    Other,
}

/// Direction attribute of an m-line, from the offerer's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `a=sendrecv` (also the default when none is given).
    SendRecv,
    /// `a=sendonly`: the offerer publishes on this m-line.
    SendOnly,
    /// `a=recvonly`: the offerer wants to receive on this m-line (a slot).
    RecvOnly,
    /// `a=inactive`.
    Inactive,
}

impl Direction {
    /// Whether the offerer sends media on this m-line.
    pub fn offerer_sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether the offerer receives media on this m-line.
    pub fn offerer_receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    /// The direction the answerer (the bridge) puts in its answer.
    pub fn reversed(self) -> Direction {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            d => d,
        }
    }

    fn as_attr(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }
}

/// The codec the bridge forwards on an m-line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codec {
    /// The payload type the offerer chose for it.
    pub pt: u8,
    /// Encoding name as offered (`opus`, `VP8`).
    pub name: String,
    /// RTP clock rate.
    pub clock_rate: u32,
    /// Channels (audio only).
    pub channels: Option<u8>,
    /// `a=fmtp` parameters, verbatim.
    pub fmtp: Option<String>,
}

impl Codec {
    /// Appends the codec's `a=rtpmap` line and, if it has parameters, `a=fmtp`.
    pub fn write_rtpmap(&self, s: &mut String) {
        self.write_rtpmap_line(s);
        if let Some(f) = &self.fmtp {
            let _ = write!(s, "a=fmtp:{} {f}\r\n", self.pt);
        }
    }

    /// Appends the codec's `a=rtpmap` line and `a=fmtp` with `fmtp` as parameters.
    pub fn write_rtpmap_with_fmtp(&self, s: &mut String, fmtp: &str) {
        self.write_rtpmap_line(s);
        let _ = write!(s, "a=fmtp:{} {fmtp}\r\n", self.pt);
    }

    fn write_rtpmap_line(&self, s: &mut String) {
        let _ = write!(s, "a=rtpmap:{} {}/{}", self.pt, self.name, self.clock_rate);
        if let Some(ch) = self.channels {
            let _ = write!(s, "/{ch}");
        }
        s.push_str("\r\n");
    }
}

/// The `a=fmtp` parameters of the bridge's Opus answer: in-band FEC on
/// (`useinbandfec=1`, so a publisher protects its audio against loss) with 10 ms
/// packets allowed (`minptime=10`); `usedtx` and `stereo` are echoed as offered.
pub fn opus_answer_fmtp(offered: Option<&str>) -> String {
    let mut out = String::from("minptime=10;useinbandfec=1");
    for param in offered.unwrap_or_default().split(';') {
        let param = param.trim();
        let Some((key, value)) = param.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if (key.eq_ignore_ascii_case("usedtx") || key.eq_ignore_ascii_case("stereo"))
            && matches!(value.trim(), "0" | "1")
        {
            let _ = write!(out, ";{}={}", key.to_ascii_lowercase(), value.trim());
        }
    }
    out
}

/// One m-line of an offer.
#[derive(Debug, Clone)]
pub struct MediaSection {
    /// Kind of media.
    pub kind: MediaKind,
    /// The m-line's `a=mid`.
    pub mid: String,
    /// Offerer's direction.
    pub direction: Direction,
    /// Protocol token of the m-line (`UDP/TLS/RTP/SAVPF`).
    pub protocol: String,
    /// Format list of the m-line, verbatim (for rejected m-lines).
    pub formats: String,
    /// The supported codec (Opus for audio; VP8, else H264 mode 1, VP9, AV1
    /// for video), if offered.
    pub codec: Option<Codec>,
    /// SSRCs the offerer announces (`a=ssrc`), excluding those only in FID groups as repair streams.
    pub ssrcs: Vec<u32>,
    /// `a=extmap` id of `urn:ietf:params:rtp-hdrext:sdes:mid`.
    pub mid_ext_id: Option<u8>,
    /// `a=extmap` id of `urn:ietf:params:rtp-hdrext:ssrc-audio-level`.
    pub audio_level_ext_id: Option<u8>,
    /// `a=extmap` ids of every extension the bridge knows (one-byte and two-byte
    /// ids alike).
    pub extensions: ExtensionMap,
    /// The RTX payload type (`a=rtpmap:N rtx/...` with `a=fmtp:N apt=` the codec's).
    pub rtx_pt: Option<u8>,
    /// Audio only: the RED (RFC 2198) payload type carrying the codec
    /// (`a=rtpmap:N red/48000/2` with `a=fmtp:N P/P`, P the Opus payload type).
    pub red_pt: Option<u8>,
    /// `a=ssrc-group:FID media repair` pairs: the RTX SSRC of each media SSRC.
    pub rtx_ssrcs: Vec<(u32, u32)>,
    /// The RIDs the offerer sends (`a=rid:X send`), in `a=simulcast:send` order
    /// when that is given.
    pub rids: Vec<String>,
    /// SSRC simulcast (`a=ssrc-group:SIM s0 s1 s2`, no RIDs): the media SSRCs
    /// of the layers, smallest first as Chrome lists them; empty otherwise.
    pub sim_ssrcs: Vec<u32>,
    /// Whether `a=rtcp-mux` is present.
    pub rtcp_mux: bool,
    /// `a=content:` value (`main`, `slides`), if any.
    pub content: Option<String>,
    /// `a=rtcp-fb:<codec> transport-cc` is offered.
    pub transport_cc: bool,
    /// `a=rtcp-fb:<codec> goog-remb` is offered.
    pub goog_remb: bool,
}

/// DTLS fingerprint of the offerer's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// Hash function name, lowercase (`sha-256`).
    pub algorithm: String,
    /// Digest bytes.
    pub value: Vec<u8>,
}

/// The parts of an offer the bridge uses.
#[derive(Debug, Clone)]
pub struct Offer {
    /// Offerer's ICE username fragment.
    pub ice_ufrag: String,
    /// Offerer's ICE password.
    pub ice_pwd: String,
    /// Offerer's certificate fingerprint.
    pub fingerprint: Fingerprint,
    /// Offerer's `a=setup` (`actpass`, `active`, `passive`).
    pub setup: String,
    /// Every m-line, in order.
    pub media: Vec<MediaSection>,
    /// UDP host candidates (address and port) from `a=candidate` lines.
    pub candidates: Vec<std::net::SocketAddr>,
}

/// Maximum number of m-lines accepted in one offer.
pub const MAX_MEDIA_SECTIONS: usize = 64;

impl Offer {
    /// Parses an SDP offer. The offerer must not be `a=setup:passive` (the bridge is
    /// always the DTLS server).
    pub fn parse(sdp: &str) -> Result<Offer, SdpError> {
        let offer = Self::parse_description(sdp)?;
        if offer.setup == "passive" {
            return Err(SdpError::Unsupported(
                "a=setup:passive (the bridge is always DTLS server)".into(),
            ));
        }
        Ok(offer)
    }

    /// Parses any session description with the same rules but no role check
    /// (the client side uses it to read the bridge's answer).
    pub fn parse_description(sdp: &str) -> Result<Offer, SdpError> {
        let mut session = TransportAttrs::default();
        // Sized from the m= lines up front: the tuples are large and a browser's
        // offer has one m-line per track and slot (20 for a 10-person meeting).
        let m_lines = sdp.matches("\nm=").count().min(MAX_MEDIA_SECTIONS);
        let mut media: Vec<(MediaSection, TransportAttrs<'_>, Vec<RawCodec<'_>>, Extra)> =
            Vec::with_capacity(m_lines);
        let mut saw_version = false;
        // The last `a=fingerprint` parsed, as written: the same line on the
        // next m-line is not decoded again.
        let mut last_fingerprint: Option<(&str, RawFingerprint)> = None;

        for line in sdp_lines(sdp) {
            if line.is_empty() {
                continue;
            }
            let Some((key, value)) = split_at_byte(line, b'=') else {
                return Err(malformed("line", line));
            };
            match key {
                "v" => saw_version = true,
                "m" => {
                    if media.len() >= MAX_MEDIA_SECTIONS {
                        return Err(SdpError::Unsupported(format!(
                            "more than {MAX_MEDIA_SECTIONS} m-lines"
                        )));
                    }
                    media.push((
                        parse_m_line(value)?,
                        TransportAttrs::default(),
                        vec![],
                        Extra::default(),
                    ));
                }
                "a" => {
                    // A flag such as `rtcp-mux` has no value.
                    let (name, arg) = split_at_byte(value, b':').unwrap_or((value, ""));
                    match media.last_mut() {
                        None => session.apply(name, arg, &mut last_fingerprint)?,
                        Some((section, transport, codecs, extra)) => {
                            transport.apply(name, arg, &mut last_fingerprint)?;
                            apply_media_attr(section, codecs, extra, name, arg)?;
                        }
                    }
                }
                _ => {}
            }
        }
        if !saw_version {
            return Err(SdpError::Missing("v= line"));
        }
        if media.is_empty() {
            return Err(SdpError::Missing("m-line"));
        }

        let mut out = Vec::with_capacity(media.len());
        let mut transport = session.clone();
        for (mut section, attrs, codecs, extra) in media {
            transport.merge_from(&attrs);
            section.codec = pick_codec(section.kind, &codecs);
            section.rtx_pt = section.codec.as_ref().and_then(|c| pick_rtx(&codecs, c.pt));
            section.red_pt = section
                .codec
                .as_ref()
                .filter(|_| section.kind == MediaKind::Audio)
                .and_then(|c| pick_red(&codecs, c.pt));
            section.ssrcs.retain(|s| !extra.repair.contains(s));
            section.rids = extra.order_rids();
            section.rtx_ssrcs = extra.fid;
            // RID simulcast wins when both are offered; a SIM group whose SSRCs
            // are not announced sources (or are repair streams) is ignored.
            if section.rids.is_empty()
                && extra.sim.len() >= 2
                && extra.sim.iter().all(|s| section.ssrcs.contains(s))
            {
                section.sim_ssrcs = extra.sim;
            }
            if let Some(pt) = section.codec.as_ref().map(|c| c.pt) {
                let names = |l: &[Option<u8>]| l.iter().any(|p| p.is_none_or(|p| p == pt));
                section.transport_cc = names(&extra.transport_cc);
                section.goog_remb = names(&extra.goog_remb);
            }
            if section.mid.is_empty() {
                return Err(SdpError::Missing("a=mid on every m-line"));
            }
            out.push(section);
        }
        let ice_ufrag = transport
            .ice_ufrag
            .ok_or(SdpError::Missing("a=ice-ufrag"))?
            .to_owned();
        let ice_pwd = transport
            .ice_pwd
            .ok_or(SdpError::Missing("a=ice-pwd"))?
            .to_owned();
        let fingerprint = transport
            .fingerprint
            .ok_or(SdpError::Missing("a=fingerprint"))?
            .to_fingerprint();
        let setup = transport
            .setup
            .map_or_else(|| "actpass".into(), str::to_ascii_lowercase);
        if !(4..=256).contains(&ice_ufrag.len()) || !(22..=256).contains(&ice_pwd.len()) {
            return Err(malformed("ICE credentials", "length out of range"));
        }
        let any_usable = out.iter().any(|m| {
            m.kind != MediaKind::Other && m.codec.is_some() && m.direction != Direction::Inactive
        });
        if !any_usable {
            return Err(SdpError::Unsupported(
                "no audio m-line with Opus or video m-line with VP8, H264 (packetization-mode=1), VP9 or AV1".into(),
            ));
        }
        for m in &out {
            if m.kind != MediaKind::Other && m.codec.is_some() && !m.rtcp_mux {
                return Err(SdpError::Unsupported(format!(
                    "m-line {} without a=rtcp-mux",
                    m.mid
                )));
            }
        }
        Ok(Offer {
            ice_ufrag,
            ice_pwd,
            fingerprint,
            setup,
            media: out,
            candidates: transport.candidates,
        })
    }
}

impl Offer {
    /// The transport's extension ids: with BUNDLE one id names one URI on every
    /// m-line, so the first m-line naming an extension (or using an id) wins.
    pub fn extension_map(&self) -> ExtensionMap {
        let mut map = ExtensionMap::default();
        for m in &self.media {
            map.merge(&m.extensions);
        }
        map
    }
}

/// The extensions the answer negotiates on m-line `m` (`slot`: the bridge sends
/// on it), given the transport's map from [`Offer::extension_map`]; only those
/// the offer has on this m-line with the transport-wide id.
///
/// - Where the offerer sends (publisher m-lines, `sendrecv` included): the ones
///   the bridge reads, mid and audio level, and for video rid and repaired-rid
///   (they tell simulcast layers and RTX streams apart); the transport-wide
///   sequence number where `a=rtcp-fb:<codec> transport-cc` is offered (the bridge
///   sends transport-cc feedback), else abs-send-time where `goog-remb` is offered
///   (the bridge sends REMB from a receive-side estimate).
/// - On `recvonly` slot m-lines: what the bridge writes on forwarded packets: mid,
///   audio level (audio), abs-send-time and the transport-wide sequence number.
pub fn answer_extensions(transport: &ExtensionMap, m: &MediaSection, slot: bool) -> ExtensionSet {
    let mut set = ExtensionSet::EMPTY;
    let mut want = |e: Extension| {
        if m.extensions.id(e).is_some() && m.extensions.id(e) == transport.id(e) {
            set.insert(e);
        }
    };
    if m.direction.offerer_sends() {
        want(Extension::Mid);
        match m.kind {
            MediaKind::Audio => want(Extension::AudioLevel),
            MediaKind::Video => {
                want(Extension::Rid);
                want(Extension::RepairedRid);
            }
            MediaKind::Other => {}
        }
        if m.transport_cc && m.extensions.id(Extension::TransportCc).is_some() {
            want(Extension::TransportCc);
        } else if m.goog_remb {
            want(Extension::AbsSendTime);
        }
    } else if slot {
        want(Extension::Mid);
        if m.kind == MediaKind::Audio {
            want(Extension::AudioLevel);
        }
        want(Extension::AbsSendTime);
        want(Extension::TransportCc);
    }
    set
}

/// Which bandwidth feedback the bridge sends a publisher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SendSideFeedback {
    /// None negotiated.
    #[default]
    None,
    /// Transport-wide congestion control feedback (transport-cc).
    Twcc,
    /// REMB from a receive-side estimate over abs-send-time.
    Remb,
}

/// What the answer to `offer` negotiates for the publisher's bandwidth estimation:
/// transport-cc where any publishing m-line gets it, else REMB where one gets
/// abs-send-time with `goog-remb`.
pub fn send_side_feedback(offer: &Offer) -> SendSideFeedback {
    let transport = offer.extension_map();
    let sets = || {
        offer
            .media
            .iter()
            .filter(|m| m.direction.offerer_sends() && m.codec.is_some())
            .map(|m| answer_extensions(&transport, m, false))
    };
    if sets().any(|e| e.contains(Extension::TransportCc)) {
        SendSideFeedback::Twcc
    } else if sets().any(|e| e.contains(Extension::AbsSendTime)) {
        SendSideFeedback::Remb
    } else {
        SendSideFeedback::None
    }
}

/// The bridge's side of the transport, written into an answer.
#[derive(Debug, Clone)]
pub struct LocalTransport<'a> {
    /// Bridge ICE username fragment.
    pub ice_ufrag: &'a str,
    /// Bridge ICE password.
    pub ice_pwd: &'a str,
    /// SHA-256 fingerprint of the bridge's DTLS certificate.
    pub fingerprint_sha256: &'a [u8],
    /// Addresses put into host candidates.
    pub addresses: &'a [IpAddr],
    /// The endpoint's UDP port.
    pub port: u16,
    /// The ICE-TCP port (`media.tcp_port`): a passive TCP candidate per address
    /// on it (RFC 6544), below the UDP ones; `None` for none.
    pub tcp_port: Option<u16>,
    /// `x-google-start-bitrate` (kbit/s) on the VP8 `a=fmtp` of m-lines the
    /// offerer publishes on; 0 writes none.
    pub video_start_bitrate_kbps: u32,
}

/// What the bridge puts on one answered m-line.
#[derive(Debug, Clone)]
pub struct AnswerSection {
    /// Whether the m-line is accepted (else port 0).
    pub accepted: bool,
    /// For accepted slot m-lines (the bridge sends): the slot SSRC and msid.
    pub slot: Option<SlotAnnouncement>,
}

/// The `a=ssrc` and `a=msid` of a receive slot.
#[derive(Debug, Clone)]
pub struct SlotAnnouncement {
    /// The fixed SSRC of the slot.
    pub ssrc: u32,
    /// The slot's RTX SSRC (video with RTX negotiated): `a=ssrc-group:FID`.
    pub rtx_ssrc: Option<u32>,
    /// `a=msid` stream id.
    pub stream_id: String,
    /// `a=msid` track id.
    pub track_id: String,
}

/// Writes the SDP answer for `offer`. `sections` has one entry per offered m-line.
pub fn write_answer(
    offer: &Offer,
    sections: &[AnswerSection],
    local: &LocalTransport<'_>,
    session_id: u64,
) -> String {
    let mut s = String::with_capacity(1024 + 768 * offer.media.len());
    let first_ip = local
        .addresses
        .first()
        .copied()
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let ip_kind = |ip: &IpAddr| if ip.is_ipv4() { "IP4" } else { "IP6" };
    let _ = write!(
        s,
        "v=0\r\no=- {session_id} 2 IN {} {first_ip}\r\ns=-\r\nt=0 0\r\na=ice-lite\r\n",
        ip_kind(&first_ip)
    );
    let bundled: Vec<&str> = offer
        .media
        .iter()
        .zip(sections)
        // Only m-lines answered below: an accepted one without a codec is written
        // as rejected (port 0), and a rejected m-line cannot be in the bundle.
        .filter(|(m, a)| a.accepted && m.codec.is_some())
        .map(|(m, _)| m.mid.as_str())
        .collect();
    if !bundled.is_empty() {
        let _ = write!(s, "a=group:BUNDLE {}\r\n", bundled.join(" "));
    }
    s.push_str("a=msid-semantic: WMS *\r\n");
    // The lines every accepted m-line repeats (connection, transport, and the
    // candidates below), formatted once.
    let c_line = format!("c=IN {} {first_ip}\r\n", ip_kind(&first_ip));
    let transport_lines = format!(
        "a=ice-ufrag:{}\r\na=ice-pwd:{}\r\na=fingerprint:sha-256 {}\r\na=setup:passive\r\n",
        local.ice_ufrag,
        local.ice_pwd,
        format_fingerprint(local.fingerprint_sha256)
    );
    let candidate_lines = candidate_lines(local);
    let transport_extensions = offer.extension_map();
    let mut candidates_written = false;
    for (m, a) in offer.media.iter().zip(sections) {
        let kind = match m.kind {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
            MediaKind::Other => "application",
        };
        let codec = m.codec.as_ref().filter(|_| a.accepted);
        let Some(codec) = codec else {
            // Rejected m-line: port 0, formats echoed, only the mid kept.
            let _ = write!(
                s,
                "m={kind} 0 {} {}\r\nc=IN IP4 0.0.0.0\r\na=mid:{}\r\na=inactive\r\n",
                m.protocol, m.formats, m.mid
            );
            continue;
        };
        // RTX (RFC 4588) is kept for video with the offer's payload type.
        let rtx_pt = m.rtx_pt.filter(|_| m.kind == MediaKind::Video);
        // RED first where offered: the answer's order is the order Chrome picks
        // its send codec from, so it sends Opus with redundancy (see codec::red).
        let red_pt = m.red_pt.filter(|_| m.kind == MediaKind::Audio);
        let _ = write!(s, "m={kind} {port} UDP/TLS/RTP/SAVPF", port = local.port);
        if let Some(red) = red_pt {
            let _ = write!(s, " {red}");
        }
        let _ = write!(s, " {}", codec.pt);
        if let Some(rtx) = rtx_pt {
            let _ = write!(s, " {rtx}");
        }
        s.push_str("\r\n");
        s.push_str(&c_line);
        s.push_str(&transport_lines);
        let _ = write!(s, "a=mid:{}\r\n", m.mid);
        // A slot is an m-line the bridge sends on. On a `sendrecv` m-line (how
        // `addTrack` publishes) the offerer sends too, so the answer stays
        // `sendrecv`: answering `sendonly` there silences the publisher.
        let direction = match (&a.slot, m.direction) {
            (Some(_), Direction::SendRecv) => Direction::SendRecv,
            (Some(_), _) => Direction::SendOnly,
            (None, d) => d.reversed(),
        };
        let _ = write!(s, "a={}\r\na=rtcp-mux\r\n", direction.as_attr());
        if m.kind == MediaKind::Audio {
            if let Some(red) = red_pt {
                let _ = write!(
                    s,
                    "a=rtpmap:{red} red/48000/2\r\na=fmtp:{red} {pt}/{pt}\r\n",
                    pt = codec.pt
                );
            }
            codec.write_rtpmap_with_fmtp(&mut s, &opus_answer_fmtp(codec.fmtp.as_deref()));
        } else if m.direction.offerer_sends() && local.video_start_bitrate_kbps > 0 {
            // Chrome starts its bandwidth estimate at 300 kbit/s and picks the first
            // resolution from it (480x270 for a 720p camera), then steps up one
            // resolution every few seconds. A start value from the answer (as
            // mediasoup's `videoGoogleStartBitrate` and Jitsi's `startBitrate` do)
            // lets it open at the resolution the link is expected to carry; its
            // probes and the TWCC feedback correct the estimate within a second
            // where the link is weaker.
            let start = format!("x-google-start-bitrate={}", local.video_start_bitrate_kbps);
            let fmtp = match codec.fmtp.as_deref().map(str::trim) {
                Some(f) if !f.is_empty() => format!("{f};{start}"),
                _ => start,
            };
            codec.write_rtpmap_with_fmtp(&mut s, &fmtp);
        } else {
            codec.write_rtpmap(&mut s);
        }
        if m.kind == MediaKind::Video {
            let _ = write!(
                s,
                "a=rtcp-fb:{pt} nack\r\na=rtcp-fb:{pt} nack pli\r\na=rtcp-fb:{pt} ccm fir\r\n",
                pt = codec.pt
            );
            if let Some(rtx) = rtx_pt {
                let _ = write!(
                    s,
                    "a=rtpmap:{rtx} rtx/{rate}\r\na=fmtp:{rtx} apt={pt}\r\n",
                    rate = codec.clock_rate,
                    pt = codec.pt
                );
            }
        }
        let extensions = answer_extensions(&transport_extensions, m, a.slot.is_some());
        if m.direction.offerer_sends() {
            // Feedback for the publisher's bandwidth estimation (see answer_extensions).
            if extensions.contains(Extension::TransportCc) {
                let _ = write!(s, "a=rtcp-fb:{} transport-cc\r\n", codec.pt);
            } else if extensions.contains(Extension::AbsSendTime) {
                let _ = write!(s, "a=rtcp-fb:{} goog-remb\r\n", codec.pt);
            }
        } else if a.slot.is_some() && m.transport_cc && extensions.contains(Extension::TransportCc)
        {
            // What the bridge sends on this slot carries transport-wide sequence
            // numbers; with transport-cc negotiated here the receiver (Chrome)
            // answers with feedback, which drives the bridge's estimate toward it
            // (quality::bwe).
            let _ = write!(s, "a=rtcp-fb:{} transport-cc\r\n", codec.pt);
        }
        for e in Extension::ALL {
            if extensions.contains(e)
                && let Some(id) = m.extensions.id(e)
            {
                let _ = write!(s, "a=extmap:{id} {}\r\n", e.uri());
            }
        }
        // Simulcast in (RFC 8853): receive every layer the offerer sends, so a
        // browser publishes all its encodings and the bridge picks one per
        // receiver (quality::simulcast). Needs the rid extension to tell them apart.
        if m.kind == MediaKind::Video
            && m.direction.offerer_sends()
            && !m.rids.is_empty()
            && extensions.contains(Extension::Rid)
        {
            for rid in &m.rids {
                let _ = write!(s, "a=rid:{rid} recv\r\n");
            }
            let _ = write!(s, "a=simulcast:recv {}\r\n", m.rids.join(";"));
        }
        if let Some(slot) = &a.slot {
            let _ = write!(
                s,
                "a=msid:{sid} {tid}\r\na=ssrc:{ssrc} cname:ringbridge\r\na=ssrc:{ssrc} msid:{sid} {tid}\r\n",
                sid = slot.stream_id,
                tid = slot.track_id,
                ssrc = slot.ssrc
            );
            if let Some(rtx) = slot.rtx_ssrc {
                let _ = write!(
                    s,
                    "a=ssrc:{rtx} cname:ringbridge\r\na=ssrc:{rtx} msid:{sid} {tid}\r\na=ssrc-group:FID {ssrc} {rtx}\r\n",
                    sid = slot.stream_id,
                    tid = slot.track_id,
                    ssrc = slot.ssrc
                );
            }
        }
        // With BUNDLE every m-line shares one transport; candidates go on each
        // accepted m-line so non-bundling parsers still find them.
        s.push_str(&candidate_lines);
        candidates_written = true;
    }
    debug_assert!(candidates_written || bundled.is_empty());
    s
}

/// The bridge's candidate lines (UDP host candidates, then passive TCP ones) and
/// `a=end-of-candidates`.
fn candidate_lines(local: &LocalTransport<'_>) -> String {
    let mut s = String::with_capacity(128 * local.addresses.len() + 32);
    for (i, ip) in local.addresses.iter().enumerate() {
        let _ = write!(
            s,
            "a=candidate:{} 1 udp {} {ip} {} typ host\r\n",
            i + 1,
            2_130_706_431u32.saturating_sub(i as u32),
            local.port
        );
    }
    if let Some(tcp_port) = local.tcp_port {
        for (i, ip) in local.addresses.iter().enumerate() {
            let _ = write!(
                s,
                "a=candidate:tcp{} 1 tcp {} {ip} {tcp_port} typ host tcptype passive\r\n",
                i + 1,
                tcp_passive_priority(i)
            );
        }
    }
    s.push_str("a=end-of-candidates\r\n");
    s
}

/// Type preference of a host TCP candidate: below UDP host candidates (126), so
/// that a client uses TCP only where UDP fails (RFC 6544 section 4.2 leaves the
/// value to the agent; 90 is libwebrtc's `kPreferenceHostTcp`).
const TCP_HOST_TYPE_PREFERENCE: u32 = 90;

/// RFC 6544 section 4.2's direction preference of a passive host candidate.
const TCP_PASSIVE_DIRECTION_PREFERENCE: u32 = 4;

/// Priority (RFC 8445 section 5.1.2.1 with RFC 6544 section 4.2's local
/// preference) of the passive TCP candidate on the `i`-th advertised address:
/// `2^24 * type_pref + 2^8 * (2^13 * direction_pref + other_pref) + (256 - component)`.
pub fn tcp_passive_priority(i: usize) -> u32 {
    let other = 8191u32.saturating_sub(u32::try_from(i).unwrap_or(8191));
    let local = (TCP_PASSIVE_DIRECTION_PREFERENCE << 13) + other;
    (TCP_HOST_TYPE_PREFERENCE << 24) + (local << 8) + (256 - 1)
}

/// Formats a digest as colon-separated uppercase hex (`AB:CD:...`).
pub fn format_fingerprint(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        let _ = write!(s, "{b:02X}");
    }
    s
}

/// The transport attributes of the session or of one m-line, borrowed from the
/// SDP text: a browser repeats them on every m-line, and only the first of each
/// is kept (see [`TransportAttrs::merge_from`]), so nothing is copied until the
/// end.
#[derive(Debug, Clone, Default)]
struct TransportAttrs<'a> {
    candidates: Vec<std::net::SocketAddr>,
    ice_ufrag: Option<&'a str>,
    ice_pwd: Option<&'a str>,
    fingerprint: Option<RawFingerprint>,
    /// As written; lowercased when the offer is built.
    setup: Option<&'a str>,
}

impl<'a> TransportAttrs<'a> {
    fn apply(
        &mut self,
        name: &str,
        arg: &'a str,
        last_fingerprint: &mut Option<(&'a str, RawFingerprint)>,
    ) -> Result<(), SdpError> {
        match name {
            "ice-ufrag" => self.ice_ufrag = Some(arg.trim()),
            "ice-pwd" => self.ice_pwd = Some(arg.trim()),
            "setup" => self.setup = Some(arg.trim()),
            "fingerprint" => {
                // Offers may carry several (aiortc: sha-256, sha-384, sha-512). The
                // first one with a hash we know is used; unknown hashes are skipped
                // as long as one usable fingerprint remains.
                let parsed = match last_fingerprint {
                    Some((raw, fp)) if *raw == arg => Ok(*fp),
                    _ => parse_fingerprint(arg),
                };
                if let Ok(fp) = parsed {
                    *last_fingerprint = Some((arg, fp));
                }
                match parsed {
                    Ok(fp) if self.fingerprint.is_none() => self.fingerprint = Some(fp),
                    Ok(_) | Err(SdpError::Unsupported(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            "candidate" => {
                // foundation component transport priority address port typ type ...
                let f: Vec<&str> = arg.split_whitespace().collect();
                if f.len() >= 8
                    && f[2].eq_ignore_ascii_case("udp")
                    && f[1] == "1"
                    && let (Ok(ip), Ok(port)) = (f[4].parse::<IpAddr>(), f[5].parse::<u16>())
                    && self.candidates.len() < 16
                {
                    self.candidates.push(std::net::SocketAddr::new(ip, port));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn merge_from(&mut self, other: &TransportAttrs<'a>) {
        // With BUNDLE the first m-line's transport wins; later ones only fill gaps.
        if self.ice_ufrag.is_none() {
            self.ice_ufrag = other.ice_ufrag;
        }
        if self.ice_pwd.is_none() {
            self.ice_pwd = other.ice_pwd;
        }
        if self.fingerprint.is_none() {
            self.fingerprint = other.fingerprint;
        }
        if self.setup.is_none() {
            self.setup = other.setup;
        }
        for c in &other.candidates {
            if !self.candidates.contains(c) && self.candidates.len() < 16 {
                self.candidates.push(*c);
            }
        }
    }
}

/// An `a=rtpmap` (and its `a=fmtp`) borrowed from the SDP text: a browser's
/// video m-line lists about twenty codecs, and only the one chosen is copied.
#[derive(Debug, Clone)]
struct RawCodec<'a> {
    pt: u8,
    name: &'a str,
    clock_rate: u32,
    channels: Option<u8>,
    fmtp: Option<&'a str>,
}

/// The lines of an SDP text without their `\r\n` (or `\n`) ends, by a plain
/// byte loop: `str::lines` and `split_once` search with `memchr`, whose set-up
/// per call dominates on lines of 20-40 bytes (36% of parsing a 20 m-line
/// offer, `benches/sdp_parse.rs`).
fn sdp_lines(sdp: &str) -> impl Iterator<Item = &str> + '_ {
    let mut rest = sdp;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = rest.bytes().position(|b| b == b'\n').unwrap_or(rest.len());
        // `\n` is ASCII: both ends are char boundaries.
        let line = rest.get(..end).unwrap_or_default();
        rest = rest.get(end + 1..).unwrap_or_default();
        Some(line.strip_suffix('\r').unwrap_or(line))
    })
}

/// `s` split around its first `sep` (an ASCII byte), like `str::split_once`
/// but by a byte loop, for the same reason as [`sdp_lines`]: the separators
/// of `<type>=<value>` and `a=<name>:<value>` come within the first bytes.
fn split_at_byte(s: &str, sep: u8) -> Option<(&str, &str)> {
    let i = s.bytes().position(|b| b == sep)?;
    // `sep` is ASCII: both ends are char boundaries.
    Some((s.get(..i)?, s.get(i + 1..)?))
}

fn malformed(what: &'static str, detail: &str) -> SdpError {
    let detail: String = detail.chars().take(80).collect();
    SdpError::Malformed { what, detail }
}

fn parse_m_line(value: &str) -> Result<MediaSection, SdpError> {
    let mut parts = value.split_whitespace();
    let kind = match parts.next() {
        Some("audio") => MediaKind::Audio,
        Some("video") => MediaKind::Video,
        Some(_) => MediaKind::Other,
        None => return Err(malformed("m-line", value)),
    };
    let _port = parts.next().ok_or_else(|| malformed("m-line", value))?;
    let protocol = parts
        .next()
        .ok_or_else(|| malformed("m-line", value))?
        .to_owned();
    let mut formats = String::with_capacity(value.len());
    for f in parts {
        if !formats.is_empty() {
            formats.push(' ');
        }
        formats.push_str(f);
    }
    Ok(MediaSection {
        kind,
        mid: String::new(),
        direction: Direction::SendRecv,
        protocol,
        formats,
        codec: None,
        ssrcs: Vec::new(),
        mid_ext_id: None,
        audio_level_ext_id: None,
        extensions: ExtensionMap::default(),
        rtx_pt: None,
        red_pt: None,
        rtx_ssrcs: Vec::new(),
        rids: Vec::new(),
        sim_ssrcs: Vec::new(),
        rtcp_mux: false,
        content: None,
        transport_cc: false,
        goog_remb: false,
    })
}

fn apply_media_attr<'a>(
    section: &mut MediaSection,
    codecs: &mut Vec<RawCodec<'a>>,
    extra: &mut Extra,
    name: &str,
    arg: &'a str,
) -> Result<(), SdpError> {
    match name {
        "mid" => {
            let mid = arg.trim();
            if mid.is_empty() || mid.len() > 32 || !mid.chars().all(|c| c.is_ascii_graphic()) {
                return Err(malformed("a=mid", arg));
            }
            section.mid = mid.to_owned();
        }
        "sendrecv" => section.direction = Direction::SendRecv,
        "sendonly" => section.direction = Direction::SendOnly,
        "recvonly" => section.direction = Direction::RecvOnly,
        "inactive" => section.direction = Direction::Inactive,
        "rtcp-mux" => section.rtcp_mux = true,
        "content" => section.content = Some(arg.trim().to_owned()),
        "rtpmap" => {
            let (pt, rest) = arg
                .split_once(' ')
                .ok_or_else(|| malformed("a=rtpmap", arg))?;
            let pt: u8 = pt.trim().parse().map_err(|_| malformed("a=rtpmap", arg))?;
            let mut enc = rest.trim().split('/');
            let name = enc.next().unwrap_or_default();
            let clock_rate = enc
                .next()
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| malformed("a=rtpmap", arg))?;
            let channels = enc.next().and_then(|c| c.parse().ok());
            if pt >= 128 {
                return Err(malformed("a=rtpmap", arg));
            }
            codecs.push(RawCodec {
                pt,
                name,
                clock_rate,
                channels,
                fmtp: None,
            });
        }
        "fmtp" => {
            if let Some((pt, params)) = arg.split_once(' ')
                && let Ok(pt) = pt.trim().parse::<u8>()
                && let Some(c) = codecs.iter_mut().find(|c| c.pt == pt)
            {
                c.fmtp = Some(params.trim());
            }
        }
        "rtcp-fb" => {
            let mut it = arg.split_whitespace();
            let pt = match it.next() {
                Some("*") => Some(None),
                Some(pt) => pt.parse::<u8>().ok().map(Some),
                None => None,
            };
            if let Some(pt) = pt {
                let list = match it.next() {
                    Some("transport-cc") => Some(&mut extra.transport_cc),
                    Some("goog-remb") => Some(&mut extra.goog_remb),
                    _ => None,
                };
                if let Some(list) = list
                    && list.len() < 16
                {
                    list.push(pt);
                }
            }
        }
        "extmap" => {
            let mut it = arg.split_whitespace();
            let id = it.next().unwrap_or_default();
            let id = id.split('/').next().unwrap_or_default();
            let uri = it.next().unwrap_or_default();
            if let Ok(id) = id.parse::<u8>()
                && id != 0
                && id != 15
            {
                if let Some(e) = Extension::from_uri(uri) {
                    section.extensions.set(e, id);
                }
                if !(1..=14).contains(&id) {
                    // These two fields keep their one-byte meaning; the map above
                    // has the two-byte ids too.
                    return Ok(());
                }
                match uri {
                    "urn:ietf:params:rtp-hdrext:sdes:mid" => section.mid_ext_id = Some(id),
                    "urn:ietf:params:rtp-hdrext:ssrc-audio-level" => {
                        section.audio_level_ext_id = Some(id)
                    }
                    _ => {}
                }
            }
        }
        "rid" => {
            // a=rid:<id> send|recv [params] (RFC 8851)
            let mut it = arg.split_whitespace();
            if let (Some(rid), Some("send")) = (it.next(), it.next())
                && valid_rid(rid)
                && extra.rids.len() < MAX_RIDS
                && !extra.rids.iter().any(|r| r == rid)
            {
                extra.rids.push(rid.to_owned());
            }
        }
        "simulcast" => {
            // a=simulcast:send r0;r1;~r2 [recv ...] (RFC 8853); alternatives after
            // a comma are left out, paused ones (~) kept in order.
            let mut it = arg.split_whitespace();
            while let Some(dir) = it.next() {
                let list = it.next().unwrap_or_default();
                if dir == "send" {
                    extra.simulcast = list
                        .split(';')
                        .filter_map(|alt| alt.split(',').next())
                        .map(|r| r.trim_start_matches('~'))
                        .filter(|r| valid_rid(r))
                        .take(MAX_RIDS)
                        .map(str::to_owned)
                        .collect();
                }
            }
        }
        "ssrc" => {
            let ssrc = arg
                .split_whitespace()
                .next()
                .and_then(|s| s.parse::<u32>().ok())
                .ok_or_else(|| malformed("a=ssrc", arg))?;
            if !section.ssrcs.contains(&ssrc) {
                if section.ssrcs.len() >= 16 {
                    return Err(SdpError::Unsupported(
                        "more than 16 SSRCs on one m-line".into(),
                    ));
                }
                section.ssrcs.push(ssrc);
            }
        }
        "ssrc-group" => {
            let mut it = arg.split_whitespace();
            let sem = it.next();
            if sem == Some("SIM") {
                // a=ssrc-group:SIM s0 s1 s2: SSRC simulcast, layers in order
                // (the first group only; at most MAX_RIDS layers).
                if extra.sim.is_empty() {
                    for s in it.take(MAX_RIDS) {
                        if let Ok(s) = s.parse::<u32>()
                            && !extra.sim.contains(&s)
                        {
                            extra.sim.push(s);
                        }
                    }
                }
            } else if let Some(sem) = sem
                && (sem == "FID" || sem == "FEC-FR")
            {
                // The first SSRC is the media stream; the others repair it.
                let primary = it.next().and_then(|s| s.parse::<u32>().ok());
                for s in it {
                    if let Ok(s) = s.parse::<u32>()
                        && extra.repair.len() < 16
                    {
                        extra.repair.push(s);
                        if sem == "FID"
                            && let Some(primary) = primary
                        {
                            extra.fid.push((primary, s));
                        }
                    }
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// A parsed `a=fingerprint` held without allocating (a browser repeats it on
/// every m-line; a copy equal to the one before is not decoded again); see
/// [`RawFingerprint::to_fingerprint`].
#[derive(Debug, Clone, Copy)]
struct RawFingerprint {
    /// Lowercase hash name, one of those [`parse_fingerprint`] knows.
    algorithm: &'static str,
    len: usize,
    value: [u8; 64],
}

impl RawFingerprint {
    fn to_fingerprint(self) -> Fingerprint {
        Fingerprint {
            algorithm: self.algorithm.to_owned(),
            value: self.value.get(..self.len).unwrap_or_default().to_vec(),
        }
    }
}

fn parse_fingerprint(arg: &str) -> Result<RawFingerprint, SdpError> {
    let (alg, hex) = arg
        .trim()
        .split_once(' ')
        .ok_or_else(|| malformed("a=fingerprint", arg))?;
    let mut value = [0u8; 64];
    let mut len = 0;
    // Two hex digits per byte, `:` between them; decoded by hand, as a
    // browser repeats the fingerprint on every m-line.
    let digit = |c: u8| char::from(c).to_digit(16);
    for pair in hex.trim().as_bytes().split(|&b| b == b':') {
        let b = match pair {
            [hi, lo] => digit(*hi).zip(digit(*lo)).map(|(h, l)| (h << 4 | l) as u8),
            _ => None,
        };
        let (Some(b), Some(slot)) = (b, value.get_mut(len)) else {
            return Err(malformed("a=fingerprint", arg));
        };
        *slot = b;
        len += 1;
    }
    let (algorithm, expected) = match alg {
        a if a.eq_ignore_ascii_case("sha-1") => ("sha-1", 20),
        a if a.eq_ignore_ascii_case("sha-256") => ("sha-256", 32),
        a if a.eq_ignore_ascii_case("sha-384") => ("sha-384", 48),
        a if a.eq_ignore_ascii_case("sha-512") => ("sha-512", 64),
        _ => {
            return Err(SdpError::Unsupported(format!(
                "fingerprint hash {}",
                alg.to_ascii_lowercase()
                    .chars()
                    .take(16)
                    .collect::<String>()
            )));
        }
    };
    if len != expected {
        return Err(malformed("a=fingerprint", "digest length does not match"));
    }
    Ok(RawFingerprint {
        algorithm,
        len,
        value,
    })
}

/// Most RIDs kept per m-line (simulcast uses 3).
const MAX_RIDS: usize = 8;

/// RFC 8851 `rid-id`, capped at 16 characters.
fn valid_rid(rid: &str) -> bool {
    (1..=16).contains(&rid.len())
        && rid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Per-m-line parse state that is not a [`MediaSection`] field as such.
#[derive(Debug, Default)]
struct Extra {
    /// SSRCs named as repair streams (FID and FEC-FR).
    repair: Vec<u32>,
    /// FID (media, RTX) pairs.
    fid: Vec<(u32, u32)>,
    /// `a=rid:X send`, in order.
    rids: Vec<String>,
    /// `a=simulcast:send` order.
    simulcast: Vec<String>,
    /// `a=ssrc-group:SIM` SSRCs, in order.
    sim: Vec<u32>,
    /// `a=rtcp-fb:<pt> transport-cc` payload types (`None` for `*`).
    transport_cc: Vec<Option<u8>>,
    /// `a=rtcp-fb:<pt> goog-remb` payload types (`None` for `*`).
    goog_remb: Vec<Option<u8>>,
}

impl Extra {
    /// The send RIDs, in simulcast order where `a=simulcast` names them.
    fn order_rids(&self) -> Vec<String> {
        if self.simulcast.is_empty() {
            return self.rids.clone();
        }
        self.simulcast
            .iter()
            .filter(|r| self.rids.contains(r))
            .cloned()
            .collect()
    }
}

/// The RTX payload type whose `apt` is `pt` (RFC 4588 `a=fmtp:N apt=pt`).
fn pick_rtx(codecs: &[RawCodec<'_>], pt: u8) -> Option<u8> {
    codecs
        .iter()
        .filter(|c| c.name.eq_ignore_ascii_case("rtx"))
        .find(|c| {
            c.fmtp.is_some_and(|f| {
                f.split(';').any(|p| {
                    p.trim()
                        .strip_prefix("apt=")
                        .and_then(|v| v.trim().parse::<u8>().ok())
                        == Some(pt)
                })
            })
        })
        .map(|c| c.pt)
}

/// The RED payload type whose blocks are all `pt` (`a=fmtp:63 111/111`).
fn pick_red(codecs: &[RawCodec<'_>], pt: u8) -> Option<u8> {
    codecs
        .iter()
        .filter(|c| c.name.eq_ignore_ascii_case("red") && c.clock_rate == 48_000)
        .find(|c| {
            c.fmtp.is_some_and(|f| {
                f.trim()
                    .split('/')
                    .all(|b| b.trim().parse::<u8>().ok() == Some(pt))
            })
        })
        .map(|c| c.pt)
}

/// The codec the bridge takes on an m-line: Opus for audio; for video VP8
/// where offered (every browser offers it, and it is the one codec every
/// receiver can decode), else H264 in packetization mode 1 (the first such
/// payload type, its `profile-level-id` echoed in the answer), else VP9, else
/// AV1. A receiver's slot can only be fed a source of its own codec.
fn pick_codec(kind: MediaKind, codecs: &[RawCodec<'_>]) -> Option<Codec> {
    fn named<'a>(name: &'static str, rate: u32) -> impl Fn(&&RawCodec<'a>) -> bool {
        move |c| c.name.eq_ignore_ascii_case(name) && c.clock_rate == rate
    }
    let found = match kind {
        MediaKind::Audio => codecs.iter().find(named("opus", 48_000)),
        MediaKind::Video => codecs
            .iter()
            .find(named("vp8", 90_000))
            .or_else(|| {
                codecs
                    .iter()
                    .filter(named("h264", 90_000))
                    .find(|c| h264_packetization_mode(c.fmtp) == 1)
            })
            .or_else(|| codecs.iter().find(named("vp9", 90_000)))
            .or_else(|| codecs.iter().find(named("av1", 90_000))),
        MediaKind::Other => None,
    };
    found.map(|c| Codec {
        pt: c.pt,
        name: c.name.to_owned(),
        clock_rate: c.clock_rate,
        channels: c.channels,
        fmtp: c.fmtp.map(str::to_owned),
    })
}

/// An H264 `a=fmtp`'s `packetization-mode` (RFC 6184 section 8.1; 0 when absent).
fn h264_packetization_mode(fmtp: Option<&str>) -> u8 {
    fmtp.unwrap_or_default()
        .split(';')
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("packetization-mode"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const AIORTC_LIKE_OFFER: &str = "v=0\r\n\
o=- 3912345 3912345 IN IP4 0.0.0.0\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0 1 2 3\r\n\
a=msid-semantic:WMS *\r\n\
m=audio 50000 UDP/TLS/RTP/SAVPF 96 0\r\n\
c=IN IP4 127.0.0.1\r\n\
a=sendonly\r\n\
a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
a=extmap:2 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
a=mid:0\r\n\
a=msid:s1 a1\r\n\
a=rtcp-mux\r\n\
a=ssrc:1111 cname:x\r\n\
a=rtpmap:96 opus/48000/2\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=ice-ufrag:abcd\r\n\
a=ice-pwd:0123456789012345678901\r\n\
a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\n\
a=setup:actpass\r\n\
m=video 50000 UDP/TLS/RTP/SAVPF 97 98\r\n\
c=IN IP4 127.0.0.1\r\n\
a=sendonly\r\n\
a=mid:1\r\n\
a=rtcp-mux\r\n\
a=ssrc-group:FID 2222 3333\r\n\
a=ssrc:2222 cname:x\r\n\
a=ssrc:3333 cname:x\r\n\
a=rtpmap:97 VP8/90000\r\n\
a=rtcp-fb:97 nack pli\r\n\
a=rtpmap:98 rtx/90000\r\n\
a=fmtp:98 apt=97\r\n\
m=audio 50000 UDP/TLS/RTP/SAVPF 96\r\n\
a=recvonly\r\n\
a=mid:2\r\n\
a=rtcp-mux\r\n\
a=rtpmap:96 opus/48000/2\r\n\
m=video 50000 UDP/TLS/RTP/SAVPF 100\r\n\
a=recvonly\r\n\
a=mid:3\r\n\
a=rtcp-mux\r\n\
a=rtpmap:100 VP8/90000\r\n\
m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n\
a=mid:4\r\n";

    #[test]
    fn parses_publisher_and_slot_m_lines() {
        let offer = Offer::parse(AIORTC_LIKE_OFFER).expect("offer parses");
        assert_eq!(offer.ice_ufrag, "abcd");
        assert_eq!(offer.fingerprint.algorithm, "sha-256");
        assert_eq!(offer.fingerprint.value.len(), 32);
        assert_eq!(offer.media.len(), 5);
        let a = &offer.media[0];
        assert_eq!(a.kind, MediaKind::Audio);
        assert_eq!(a.direction, Direction::SendOnly);
        assert_eq!(a.codec.as_ref().map(|c| c.pt), Some(96));
        assert_eq!(a.ssrcs, vec![1111]);
        assert_eq!(a.mid_ext_id, Some(1));
        assert_eq!(a.audio_level_ext_id, Some(2));
        let v = &offer.media[1];
        assert_eq!(
            v.ssrcs,
            vec![2222],
            "the RTX ssrc of the FID group is not a source"
        );
        assert_eq!(v.codec.as_ref().map(|c| c.pt), Some(97));
        assert_eq!(offer.media[3].direction, Direction::RecvOnly);
        assert_eq!(offer.media[3].codec.as_ref().map(|c| c.pt), Some(100));
        assert_eq!(offer.media[4].kind, MediaKind::Other);
    }

    /// Found by the `sdp` fuzz target: an accepted m-line without a usable codec
    /// is written as rejected, and used to stay in `a=group:BUNDLE` (tripping the
    /// debug assertion that every bundled m-line has candidates).
    #[test]
    fn answer_bundles_only_the_m_lines_it_answers() {
        let offer = Offer::parse(AIORTC_LIKE_OFFER).expect("offer parses");
        let mut offer = offer;
        for m in &mut offer.media {
            m.codec = None;
        }
        let sections: Vec<AnswerSection> = offer
            .media
            .iter()
            .map(|_| AnswerSection {
                accepted: true,
                slot: None,
            })
            .collect();
        let local = LocalTransport {
            ice_ufrag: "u",
            ice_pwd: "p",
            fingerprint_sha256: &[0; 32],
            addresses: &[IpAddr::from([127, 0, 0, 1])],
            port: 10_000,
            tcp_port: None,
            video_start_bitrate_kbps: 0,
        };
        let answer = write_answer(&offer, &sections, &local, 1);
        assert!(!answer.contains("a=group:BUNDLE"), "{answer}");
        assert_eq!(
            answer.matches(" 0 UDP/TLS/RTP/SAVPF").count(),
            4,
            "{answer}"
        );
    }

    #[test]
    fn answer_is_ice_lite_bundled_with_slots_and_candidates() {
        let offer = Offer::parse(AIORTC_LIKE_OFFER).expect("offer parses");
        let sections: Vec<AnswerSection> = offer
            .media
            .iter()
            .map(|m| AnswerSection {
                accepted: m.kind != MediaKind::Other,
                slot: (m.direction == Direction::RecvOnly).then(|| SlotAnnouncement {
                    rtx_ssrc: None,
                    ssrc: 42,
                    stream_id: "s".into(),
                    track_id: format!("t{}", m.mid),
                }),
            })
            .collect();
        let fp = [0xABu8; 32];
        let addrs = [IpAddr::from([127, 0, 0, 1])];
        let local = LocalTransport {
            ice_ufrag: "bridgeufrag",
            ice_pwd: "bridgepassword0123456789",
            fingerprint_sha256: &fp,
            addresses: &addrs,
            port: 10_000,
            tcp_port: None,
            video_start_bitrate_kbps: 0,
        };
        let answer = write_answer(&offer, &sections, &local, 7);
        assert!(answer.contains("a=ice-lite\r\n"));
        assert!(answer.contains("a=group:BUNDLE 0 1 2 3\r\n"));
        assert!(answer.contains("a=candidate:1 1 udp 2130706431 127.0.0.1 10000 typ host\r\n"));
        assert!(answer.contains("a=setup:passive\r\n"));
        assert!(answer.contains("m=application 0 UDP/DTLS/SCTP webrtc-datachannel\r\n"));
        assert_eq!(answer.matches("a=ssrc:42 cname:ringbridge").count(), 2);
        assert_eq!(answer.matches("a=recvonly").count(), 2);
        assert_eq!(answer.matches("a=sendonly").count(), 2);
        // The answer is itself parseable SDP with our credentials.
        let back = Offer::parse(&answer.replace("a=setup:passive", "a=setup:active"))
            .expect("answer parses");
        assert_eq!(back.ice_ufrag, "bridgeufrag");
        assert_eq!(back.fingerprint.value, fp.to_vec());
        assert_eq!(
            back.candidates,
            vec!["127.0.0.1:10000".parse().expect("addr")]
        );
        assert_eq!(
            Offer::parse_description(&answer).map(|a| a.setup),
            Ok("passive".into())
        );
    }

    #[test]
    fn answer_has_a_passive_tcp_candidate_per_address_below_the_udp_ones() {
        let offer = Offer::parse(AIORTC_LIKE_OFFER).expect("offer parses");
        let sections: Vec<AnswerSection> = offer
            .media
            .iter()
            .map(|m| AnswerSection {
                accepted: m.kind != MediaKind::Other,
                slot: None,
            })
            .collect();
        let addrs = [
            IpAddr::from([203, 0, 113, 7]),
            "2001:db8::7".parse().expect("v6"),
        ];
        let mut local = LocalTransport {
            ice_ufrag: "bridgeufrag",
            ice_pwd: "bridgepassword0123456789",
            fingerprint_sha256: &[0xAB; 32],
            addresses: &addrs,
            port: 10_000,
            tcp_port: Some(4443),
            video_start_bitrate_kbps: 0,
        };
        let answer = write_answer(&offer, &sections, &local, 7);
        // RFC 6544 4.2: 2^24 * 90 + 2^8 * (2^13 * 4 + 8191 - i) + 255.
        assert_eq!(tcp_passive_priority(0), 1_520_435_199);
        assert_eq!(tcp_passive_priority(1), 1_520_434_943);
        let lines: Vec<&str> = answer
            .lines()
            .filter(|l| l.starts_with("a=candidate:"))
            .collect();
        let per_m_line = [
            "a=candidate:1 1 udp 2130706431 203.0.113.7 10000 typ host",
            "a=candidate:2 1 udp 2130706430 2001:db8::7 10000 typ host",
            "a=candidate:tcp1 1 tcp 1520435199 203.0.113.7 4443 typ host tcptype passive",
            "a=candidate:tcp2 1 tcp 1520434943 2001:db8::7 4443 typ host tcptype passive",
        ];
        assert_eq!(lines.len(), 4 * 4, "{answer}");
        assert_eq!(&lines[..4], &per_m_line[..]);
        let priority = |l: &str| -> u32 {
            l.split(' ')
                .nth(3)
                .and_then(|p| p.parse().ok())
                .expect("priority")
        };
        assert!(priority(per_m_line[2]) < priority(per_m_line[1]));
        // The answer still parses; the offer parser keeps only UDP candidates.
        let back = Offer::parse(&answer.replace("a=setup:passive", "a=setup:active"))
            .expect("answer parses");
        assert_eq!(back.candidates.len(), 2);
        assert!(back.candidates.iter().all(|c| c.port() == 10_000));
        local.tcp_port = None;
        let answer = write_answer(&offer, &sections, &local, 7);
        assert!(!answer.contains(" tcp "), "{answer}");
    }

    #[test]
    fn add_track_sendrecv_m_lines_are_answered_sendrecv_with_slot_and_extensions() {
        // How `pc.addTrack()` publishes: both m-lines sendrecv, Opus with FEC offered.
        let offer_sdp = AIORTC_LIKE_OFFER
            .replace("a=sendonly\r\n", "a=sendrecv\r\n")
            .replace(
                "a=rtpmap:96 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\n",
                "a=rtpmap:96 opus/48000/2\r\na=fmtp:96 minptime=10;useinbandfec=1;stereo=1;usedtx=0;x=y\r\na=rtpmap:0 PCMU/8000\r\n",
            );
        let offer = Offer::parse(&offer_sdp).expect("offer parses");
        assert_eq!(offer.media[0].direction, Direction::SendRecv);
        let sections: Vec<AnswerSection> = offer
            .media
            .iter()
            .map(|m| AnswerSection {
                accepted: m.kind != MediaKind::Other,
                slot: (m.kind != MediaKind::Other && m.direction.offerer_receives()).then(|| {
                    SlotAnnouncement {
                        rtx_ssrc: None,
                        ssrc: 42,
                        stream_id: "s".into(),
                        track_id: format!("t{}", m.mid),
                    }
                }),
            })
            .collect();
        let fp = [0xABu8; 32];
        let addrs = [IpAddr::from([127, 0, 0, 1])];
        let local = LocalTransport {
            ice_ufrag: "bridgeufrag",
            ice_pwd: "bridgepassword0123456789",
            fingerprint_sha256: &fp,
            addresses: &addrs,
            port: 10_000,
            tcp_port: None,
            video_start_bitrate_kbps: 0,
        };
        let answer = write_answer(&offer, &sections, &local, 7);
        let back = Offer::parse_description(&answer).expect("answer parses");
        assert_eq!(back.media[0].direction, Direction::SendRecv);
        assert_eq!(back.media[1].direction, Direction::SendRecv);
        assert_eq!(back.media[2].direction, Direction::SendOnly);
        assert_eq!(back.media[3].direction, Direction::SendOnly);
        // The publisher keeps its mid and audio-level extensions on sendrecv lines.
        assert_eq!(back.media[0].mid_ext_id, Some(1));
        assert_eq!(back.media[0].audio_level_ext_id, Some(2));
        // Opus: in-band FEC on, usedtx and stereo echoed, unknown parameters not.
        let fmtp = back.media[0].codec.as_ref().and_then(|c| c.fmtp.clone());
        assert_eq!(
            fmtp.as_deref(),
            Some("minptime=10;useinbandfec=1;stereo=1;usedtx=0")
        );
        // Every slot line (sendrecv ones too) announces its SSRC.
        assert_eq!(answer.matches("a=ssrc:42 cname:ringbridge").count(), 4);
    }

    #[test]
    fn rtx_payload_type_fid_pairs_and_simulcast_rids_are_parsed() {
        let offer = Offer::parse(AIORTC_LIKE_OFFER).expect("offer parses");
        let v = &offer.media[1];
        assert_eq!(v.rtx_pt, Some(98), "a=fmtp:98 apt=97 names VP8's RTX");
        assert_eq!(v.rtx_ssrcs, vec![(2222, 3333)]);
        assert_eq!(offer.media[0].rtx_pt, None);

        let simulcast = AIORTC_LIKE_OFFER.replace(
            "a=ssrc-group:FID 2222 3333\r\na=ssrc:2222 cname:x\r\na=ssrc:3333 cname:x\r\n",
            "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id\r\n\
             a=extmap:5 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id\r\n\
             a=extmap:16 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
             a=rid:f send\r\na=rid:h send\r\na=rid:q send\r\na=rid:z recv\r\n\
             a=rid:bad!rid send\r\na=simulcast:send q;h,x;~f\r\n",
        );
        let offer = Offer::parse(&simulcast).expect("offer parses");
        let v = &offer.media[1];
        assert_eq!(v.rids, vec!["q", "h", "f"], "simulcast order, send only");
        assert!(v.ssrcs.is_empty());
        assert_eq!(v.extensions.id(Extension::Rid), Some(4));
        assert_eq!(v.extensions.id(Extension::RepairedRid), Some(5));
        assert_eq!(
            v.extensions.id(Extension::Mid),
            Some(16),
            "two-byte id kept"
        );
        assert_eq!(v.mid_ext_id, None, "the one-byte field stays one-byte");
    }

    /// Chrome's SSRC simulcast (munged offers, as Jitsi's clients used to send
    /// it): a SIM group of three media SSRCs, each with an FID group for its RTX.
    #[test]
    fn ssrc_sim_group_maps_ssrcs_to_layers_with_their_rtx_pairs() {
        let sim = AIORTC_LIKE_OFFER.replace(
            "a=ssrc-group:FID 2222 3333\r\na=ssrc:2222 cname:x\r\na=ssrc:3333 cname:x\r\n",
            "a=ssrc-group:SIM 10 20 30\r\n\
             a=ssrc-group:FID 10 11\r\na=ssrc-group:FID 20 21\r\na=ssrc-group:FID 30 31\r\n\
             a=ssrc:10 cname:x\r\na=ssrc:11 cname:x\r\na=ssrc:20 cname:x\r\n\
             a=ssrc:21 cname:x\r\na=ssrc:30 cname:x\r\na=ssrc:31 cname:x\r\n",
        );
        let offer = Offer::parse(&sim).expect("offer parses");
        let v = &offer.media[1];
        assert_eq!(v.sim_ssrcs, vec![10, 20, 30], "layers 0..2 in group order");
        assert_eq!(v.ssrcs, vec![10, 20, 30], "the RTX SSRCs are not sources");
        assert_eq!(v.rtx_ssrcs, vec![(10, 11), (20, 21), (30, 31)]);
        assert!(v.rids.is_empty());
        assert!(offer.media[0].sim_ssrcs.is_empty());

        // A SIM group naming an SSRC that is not announced, or a single SSRC,
        // is not simulcast.
        for bad in ["a=ssrc-group:SIM 10 20 99\r\n", "a=ssrc-group:SIM 10\r\n"] {
            let offer = Offer::parse(&sim.replace("a=ssrc-group:SIM 10 20 30\r\n", bad))
                .expect("offer parses");
            assert!(offer.media[1].sim_ssrcs.is_empty(), "{bad}");
        }
        // RIDs offered as well: RID simulcast wins.
        let both = sim.replace(
            "a=ssrc-group:SIM",
            "a=rid:q send\r\na=rid:h send\r\na=ssrc-group:SIM",
        );
        let offer = Offer::parse(&both).expect("offer parses");
        assert_eq!(offer.media[1].rids, vec!["q", "h"]);
        assert!(offer.media[1].sim_ssrcs.is_empty());
    }

    /// Chrome's video codec list, reordered: VP8 stays preferred wherever it
    /// is offered; without it H264 in packetization mode 1 (mode 0 is never
    /// taken), then VP9, then AV1; the answer echoes the chosen fmtp.
    #[test]
    fn video_codec_preference_vp8_then_h264_mode_1_then_vp9_then_av1() {
        let list = |codecs: &[(&str, &str)]| {
            let mut m = String::new();
            for (i, (name, fmtp)) in codecs.iter().enumerate() {
                let pt = 100 + i;
                m.push_str(&format!("a=rtpmap:{pt} {name}/90000\r\n"));
                if !fmtp.is_empty() {
                    m.push_str(&format!("a=fmtp:{pt} {fmtp}\r\n"));
                }
            }
            let offer = AIORTC_LIKE_OFFER.replace("a=rtpmap:97 VP8/90000\r\n", &m);
            let offer = Offer::parse(&offer).expect("offer parses");
            offer.media[1].codec.clone().map(|c| (c.name, c.pt, c.fmtp))
        };
        const PM1: &str = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f";
        const PM0: &str = "level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f";
        let all = [
            ("AV1", ""),
            ("VP9", "profile-id=0"),
            ("H264", PM1),
            ("VP8", ""),
        ];
        assert_eq!(list(&all), Some(("VP8".into(), 103, None)));
        assert_eq!(
            list(&all[..3]),
            Some(("H264".into(), 102, Some(PM1.into()))),
            "H264 before VP9 and AV1, whatever their order"
        );
        assert_eq!(
            list(&[
                ("H264", PM0),
                ("H264", "profile-level-id=640c1f;packetization-mode=1")
            ]),
            Some((
                "H264".into(),
                101,
                Some("profile-level-id=640c1f;packetization-mode=1".into())
            )),
            "mode 0 skipped for the mode 1 payload type"
        );
        assert_eq!(
            list(&[("H264", PM0), ("VP9", "")]).map(|c| c.0),
            Some("VP9".into())
        );
        assert_eq!(list(&[("AV1", "")]).map(|c| c.1), Some(100));
        assert_eq!(list(&[("H264", PM0), ("H265", "")]), None);
    }

    #[test]
    fn answered_extensions_keep_one_id_per_uri_across_the_bundle() {
        // The audio publisher line says mid is 1; a slot line that calls mid 7
        // breaks BUNDLE's one-id-one-URI rule there, so mid is not answered on it.
        let offer_sdp = AIORTC_LIKE_OFFER.replace(
            "a=recvonly\r\na=mid:2\r\n",
            "a=recvonly\r\na=mid:2\r\na=extmap:7 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
             a=extmap:3 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\n",
        );
        let offer = Offer::parse(&offer_sdp).expect("offer parses");
        let map = offer.extension_map();
        assert_eq!(map.id(Extension::Mid), Some(1));
        assert_eq!(map.id(Extension::AbsSendTime), Some(3));
        let slot = answer_extensions(&map, &offer.media[2], true);
        assert!(!slot.contains(Extension::Mid));
        assert!(slot.contains(Extension::AbsSendTime));
        let publisher = answer_extensions(&map, &offer.media[0], false);
        assert!(publisher.contains(Extension::Mid) && publisher.contains(Extension::AudioLevel));
        assert!(!publisher.contains(Extension::AbsSendTime));
    }

    #[test]
    fn publishing_video_lines_get_the_configured_start_bitrate_and_slots_do_not() {
        let offer = Offer::parse(AIORTC_LIKE_OFFER).expect("offer parses");
        let sections: Vec<AnswerSection> = offer
            .media
            .iter()
            .map(|m| AnswerSection {
                accepted: m.kind != MediaKind::Other,
                slot: None,
            })
            .collect();
        let fp = [0xABu8; 32];
        let addrs = [IpAddr::from([127, 0, 0, 1])];
        let mut local = LocalTransport {
            ice_ufrag: "bridgeufrag",
            ice_pwd: "bridgepassword0123456789",
            fingerprint_sha256: &fp,
            addresses: &addrs,
            port: 10_000,
            tcp_port: None,
            video_start_bitrate_kbps: 1500,
        };
        let answer = Offer::parse_description(&write_answer(&offer, &sections, &local, 7))
            .expect("answer parses");
        let fmtp = |i: usize| answer.media[i].codec.as_ref().and_then(|c| c.fmtp.clone());
        // m-line 1 publishes VP8, m-line 3 is a recvonly slot.
        assert_eq!(fmtp(1).as_deref(), Some("x-google-start-bitrate=1500"));
        assert_eq!(fmtp(3), None);
        local.video_start_bitrate_kbps = 0;
        let answer = Offer::parse_description(&write_answer(&offer, &sections, &local, 7))
            .expect("answer parses");
        assert_eq!(
            answer.media[1].codec.as_ref().and_then(|c| c.fmtp.clone()),
            None
        );
    }

    #[test]
    fn slots_negotiate_transport_cc_where_the_receiver_offers_it() {
        const TWCC: &str = "a=extmap:5 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n";
        // Both recvonly slots offer the extension; only the video one offers
        // the feedback, as a receiver that wants no audio feedback would.
        let offer_sdp = AIORTC_LIKE_OFFER
            .replace(
                "a=recvonly\r\na=mid:2\r\n",
                &format!("a=recvonly\r\na=mid:2\r\n{TWCC}"),
            )
            .replace(
                "a=recvonly\r\na=mid:3\r\n",
                &format!("a=recvonly\r\na=mid:3\r\n{TWCC}a=rtcp-fb:100 transport-cc\r\n"),
            );
        let offer = Offer::parse(&offer_sdp).expect("offer parses");
        let sections: Vec<AnswerSection> = offer
            .media
            .iter()
            .map(|m| AnswerSection {
                accepted: m.kind != MediaKind::Other,
                slot: (m.direction == Direction::RecvOnly).then(|| SlotAnnouncement {
                    rtx_ssrc: None,
                    ssrc: 42,
                    stream_id: "s".into(),
                    track_id: format!("t{}", m.mid),
                }),
            })
            .collect();
        let fp = [0xABu8; 32];
        let addrs = [IpAddr::from([127, 0, 0, 1])];
        let local = LocalTransport {
            ice_ufrag: "bridgeufrag",
            ice_pwd: "bridgepassword0123456789",
            fingerprint_sha256: &fp,
            addresses: &addrs,
            port: 10_000,
            tcp_port: None,
            video_start_bitrate_kbps: 0,
        };
        let answer = write_answer(&offer, &sections, &local, 7);
        let section = |mid: &str| {
            let start = answer.find(&format!("a=mid:{mid}\r\n")).expect("m-line");
            let rest = &answer[start..];
            rest[..rest.find("m=").unwrap_or(rest.len())].to_owned()
        };
        let video = section("3");
        assert!(video.contains("a=rtcp-fb:100 transport-cc\r\n"), "{video}");
        assert!(video.contains(TWCC), "{video}");
        let audio = section("2");
        assert!(audio.contains(TWCC), "{audio}");
        assert!(!audio.contains("rtcp-fb:96 transport-cc"), "{audio}");
    }

    #[test]
    fn opus_answer_enables_fec_even_when_the_offer_has_no_fmtp() {
        assert_eq!(opus_answer_fmtp(None), "minptime=10;useinbandfec=1");
        assert_eq!(
            opus_answer_fmtp(Some("usedtx=1; stereo=2")),
            "minptime=10;useinbandfec=1;usedtx=1"
        );
    }

    #[test]
    fn refuses_offers_it_cannot_serve() {
        assert_eq!(Offer::parse("").err(), Some(SdpError::Missing("v= line")));
        let no_fp = AIORTC_LIKE_OFFER.replace("a=fingerprint:", "a=x-fingerprint:");
        assert_eq!(
            Offer::parse(&no_fp).err(),
            Some(SdpError::Missing("a=fingerprint"))
        );
        let no_mux = AIORTC_LIKE_OFFER.replacen("a=rtcp-mux\r\n", "", 1);
        assert!(matches!(
            Offer::parse(&no_mux),
            Err(SdpError::Unsupported(_))
        ));
        // H264 without packetization-mode=1 (mode 0 by default) is not taken.
        let h264 = AIORTC_LIKE_OFFER
            .replace("opus/48000", "G722/8000")
            .replace("VP8/90000", "H264/90000");
        assert!(matches!(Offer::parse(&h264), Err(SdpError::Unsupported(_))));
        let bad_fp = AIORTC_LIKE_OFFER.replace("sha-256 00:11", "sha-256 0:11");
        assert!(matches!(
            Offer::parse(&bad_fp),
            Err(SdpError::Malformed { .. })
        ));
        let md5_only = AIORTC_LIKE_OFFER.replace("a=fingerprint:sha-256", "a=fingerprint:md5");
        assert_eq!(
            Offer::parse(&md5_only).err(),
            Some(SdpError::Missing("a=fingerprint"))
        );
        let passive = AIORTC_LIKE_OFFER.replace("a=setup:actpass", "a=setup:passive");
        assert!(matches!(
            Offer::parse(&passive),
            Err(SdpError::Unsupported(_))
        ));
    }

    #[test]
    fn first_known_fingerprint_wins_and_unknown_hashes_are_skipped() {
        let fp256 = "a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\n";
        let several = AIORTC_LIKE_OFFER.replace(
            fp256,
            &format!("a=fingerprint:md5 00:11\r\n{fp256}a=fingerprint:sha-1 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33\r\n"),
        );
        let offer = Offer::parse(&several).expect("parses");
        assert_eq!(offer.fingerprint.algorithm, "sha-256");
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x1234_5678_u64;
        for _ in 0..2000 {
            let mut s = String::new();
            for _ in 0..(seed % 300) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let pool =
                    b"v=ma:0123456789 /\r\nudio ssrc-group:FID rtpmap fingerprint sha-256 AB:";
                s.push(pool[(seed % pool.len() as u64) as usize] as char);
            }
            let _ = Offer::parse(&s);
        }
    }
}
