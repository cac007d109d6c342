//! Ethernet + IPv4/IPv6 + UDP framing for the AF_XDP path, where the bridge
//! builds and reads the headers the kernel's UDP stack would otherwise.
//!
//! Sending writes the payload first at [`payload_offset`] of a TX frame (so
//! the core can write each receiver's copy straight into it) and then the
//! headers in front of it with [`write_headers`], checksums included (the
//! IPv4 header checksum, RFC 791; the UDP checksum over the pseudo-header,
//! RFC 768 and RFC 8200 section 8.1, where it is mandatory). Receiving parses
//! a frame with [`parse_udp`]; anything that is not a well-formed UDP
//! datagram is an error, to be counted and dropped.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;

/// Ethernet header bytes (no VLAN tag).
pub const ETH_LEN: usize = 14;
/// IPv4 header bytes (no options).
pub const IPV4_LEN: usize = 20;
/// IPv6 header bytes.
pub const IPV6_LEN: usize = 40;
/// UDP header bytes.
pub const UDP_LEN: usize = 8;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const IPPROTO_UDP: u8 = 17;
/// TTL / hop limit of the datagrams the bridge sends (Linux's default).
pub const DEFAULT_TTL: u8 = 64;

/// Why a frame is not a UDP datagram the bridge can take, or a datagram
/// cannot be framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Shorter than its headers, or than its length fields say.
    #[error("frame truncated")]
    Truncated,
    /// Neither IPv4 nor IPv6 (or a VLAN tag).
    #[error("not IPv4 or IPv6")]
    NotIp,
    /// IP, but not UDP (or IPv6 with extension headers).
    #[error("not UDP")]
    NotUdp,
    /// An IPv4 fragment.
    #[error("IPv4 fragment")]
    Fragment,
    /// A length field that contradicts the frame.
    #[error("bad length field")]
    BadLength,
    /// Source and destination of different IP versions.
    #[error("address families differ")]
    MixedFamilies,
    /// The frame buffer cannot hold the headers and payload.
    #[error("payload does not fit the frame")]
    TooLong,
}

/// A UDP datagram found in a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpFrame {
    /// Source MAC address.
    pub src_mac: [u8; 6],
    /// Destination MAC address.
    pub dst_mac: [u8; 6],
    /// Source address and port.
    pub src: SocketAddr,
    /// Destination address and port.
    pub dst: SocketAddr,
    /// Where the UDP payload is in the frame.
    pub payload: Range<usize>,
}

fn be16(b: &[u8], at: usize) -> Result<u16, FrameError> {
    b.get(at..at + 2)
        .map(|s| u16::from_be_bytes([s[0], s[1]]))
        .ok_or(FrameError::Truncated)
}

fn arr<const N: usize>(b: &[u8], at: usize) -> Result<[u8; N], FrameError> {
    b.get(at..at + N)
        .and_then(|s| s.try_into().ok())
        .ok_or(FrameError::Truncated)
}

/// Parses an Ethernet frame carrying a UDP datagram (IPv4 with or without
/// options, not fragmented; IPv6 with UDP as the first next header). The
/// payload range is the UDP length's, so Ethernet padding is left out.
pub fn parse_udp(f: &[u8]) -> Result<UdpFrame, FrameError> {
    let dst_mac = arr::<6>(f, 0)?;
    let src_mac = arr::<6>(f, 6)?;
    let (src_ip, dst_ip, udp, ip_end): (IpAddr, IpAddr, usize, usize) = match be16(f, 12)? {
        ETHERTYPE_IPV4 => {
            let vihl = *f.get(ETH_LEN).ok_or(FrameError::Truncated)?;
            let ihl = usize::from(vihl & 0x0f) * 4;
            if vihl >> 4 != 4 || ihl < IPV4_LEN {
                return Err(FrameError::NotIp);
            }
            let total = usize::from(be16(f, ETH_LEN + 2)?);
            if total < ihl || ETH_LEN + total > f.len() {
                return Err(FrameError::BadLength);
            }
            if be16(f, ETH_LEN + 6)? & 0x3fff != 0 {
                return Err(FrameError::Fragment);
            }
            if f.get(ETH_LEN + 9) != Some(&IPPROTO_UDP) {
                return Err(FrameError::NotUdp);
            }
            let s = Ipv4Addr::from(arr::<4>(f, ETH_LEN + 12)?);
            let d = Ipv4Addr::from(arr::<4>(f, ETH_LEN + 16)?);
            (s.into(), d.into(), ETH_LEN + ihl, ETH_LEN + total)
        }
        ETHERTYPE_IPV6 => {
            if f.get(ETH_LEN).map(|b| b >> 4) != Some(6) {
                return Err(FrameError::NotIp);
            }
            let payload_len = usize::from(be16(f, ETH_LEN + 4)?);
            if ETH_LEN + IPV6_LEN + payload_len > f.len() {
                return Err(FrameError::BadLength);
            }
            if f.get(ETH_LEN + 6) != Some(&IPPROTO_UDP) {
                return Err(FrameError::NotUdp);
            }
            let s = Ipv6Addr::from(arr::<16>(f, ETH_LEN + 8)?);
            let d = Ipv6Addr::from(arr::<16>(f, ETH_LEN + 24)?);
            (
                s.into(),
                d.into(),
                ETH_LEN + IPV6_LEN,
                ETH_LEN + IPV6_LEN + payload_len,
            )
        }
        _ => return Err(FrameError::NotIp),
    };
    let sport = be16(f, udp)?;
    let dport = be16(f, udp + 2)?;
    let ulen = usize::from(be16(f, udp + 4)?);
    if ulen < UDP_LEN || udp + ulen > ip_end {
        return Err(FrameError::BadLength);
    }
    Ok(UdpFrame {
        src_mac,
        dst_mac,
        src: SocketAddr::new(src_ip, sport),
        dst: SocketAddr::new(dst_ip, dport),
        payload: udp + UDP_LEN..udp + ulen,
    })
}

/// Where the payload of a datagram to `dst` starts in a frame.
pub fn payload_offset(dst: &SocketAddr) -> usize {
    ETH_LEN
        + UDP_LEN
        + match dst {
            SocketAddr::V4(_) => IPV4_LEN,
            SocketAddr::V6(_) => IPV6_LEN,
        }
}

/// What a datagram's headers say beyond its addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Path {
    /// Our interface's MAC address.
    pub src_mac: [u8; 6],
    /// The next hop's MAC address (the destination's, or its gateway's).
    pub dst_mac: [u8; 6],
    /// Our address and port.
    pub src: SocketAddr,
    /// The destination's.
    pub dst: SocketAddr,
}

/// Writes the Ethernet, IP and UDP headers in front of the `payload_len`
/// bytes already at [`payload_offset`] of `frame`, with checksums; returns
/// the frame's length. IPv4 datagrams are sent with don't-fragment set and
/// IP ID 0 (RFC 6864: an atomic datagram's ID has no meaning).
pub fn write_headers(
    frame: &mut [u8],
    path: &Path,
    payload_len: usize,
    ttl: u8,
) -> Result<usize, FrameError> {
    let off = payload_offset(&path.dst);
    let total = off.checked_add(payload_len).ok_or(FrameError::TooLong)?;
    if total > frame.len() {
        return Err(FrameError::TooLong);
    }
    let udp_len = u16::try_from(UDP_LEN + payload_len).map_err(|_| FrameError::TooLong)?;
    let f = &mut frame[..total];
    f[0..6].copy_from_slice(&path.dst_mac);
    f[6..12].copy_from_slice(&path.src_mac);
    let udp = off - UDP_LEN;
    // The pseudo-header's sum (addresses, protocol, UDP length).
    let pseudo = match (path.src, path.dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            f[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
            let ip = &mut f[ETH_LEN..ETH_LEN + IPV4_LEN];
            let ip_len =
                u16::try_from(IPV4_LEN + usize::from(udp_len)).map_err(|_| FrameError::TooLong)?;
            ip[0] = 0x45;
            ip[1] = 0; // DSCP/ECN
            ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
            ip[4..6].copy_from_slice(&[0, 0]); // ID
            ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes()); // DF
            ip[8] = ttl;
            ip[9] = IPPROTO_UDP;
            ip[10..12].copy_from_slice(&[0, 0]);
            ip[12..16].copy_from_slice(&s.ip().octets());
            ip[16..20].copy_from_slice(&d.ip().octets());
            let c = fold(sum(ip, 0));
            ip[10..12].copy_from_slice(&(!c).to_be_bytes());
            let mut p = sum(&s.ip().octets(), 0);
            p = sum(&d.ip().octets(), p);
            p + u32::from(IPPROTO_UDP) + u32::from(udp_len)
        }
        (SocketAddr::V6(s), SocketAddr::V6(d)) => {
            f[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
            let ip = &mut f[ETH_LEN..ETH_LEN + IPV6_LEN];
            ip[0..4].copy_from_slice(&0x6000_0000u32.to_be_bytes());
            ip[4..6].copy_from_slice(&udp_len.to_be_bytes());
            ip[6] = IPPROTO_UDP;
            ip[7] = ttl;
            ip[8..24].copy_from_slice(&s.ip().octets());
            ip[24..40].copy_from_slice(&d.ip().octets());
            let mut p = sum(&s.ip().octets(), 0);
            p = sum(&d.ip().octets(), p);
            p + u32::from(IPPROTO_UDP) + u32::from(udp_len)
        }
        _ => return Err(FrameError::MixedFamilies),
    };
    let h = &mut f[udp..udp + UDP_LEN];
    h[0..2].copy_from_slice(&path.src.port().to_be_bytes());
    h[2..4].copy_from_slice(&path.dst.port().to_be_bytes());
    h[4..6].copy_from_slice(&udp_len.to_be_bytes());
    h[6..8].copy_from_slice(&[0, 0]);
    let c = !fold(sum(&f[udp..], pseudo));
    // RFC 768: a computed zero is sent as all ones (zero means "none").
    let c = if c == 0 { 0xffff } else { c };
    f[udp + 6..udp + 8].copy_from_slice(&c.to_be_bytes());
    Ok(total)
}

/// Adds `b` as big-endian 16-bit words (an odd last byte padded with zero)
/// to the running one's-complement sum `acc` (RFC 1071), unfolded.
fn sum(b: &[u8], mut acc: u32) -> u32 {
    let mut chunks = b.chunks_exact(2);
    for c in &mut chunks {
        acc = acc.wrapping_add(u32::from(u16::from_be_bytes([c[0], c[1]])));
        // Fold early enough that a 64 KiB datagram cannot overflow.
        if acc >= 0x8000_0000 {
            acc = (acc & 0xffff) + (acc >> 16);
        }
    }
    if let [last] = chunks.remainder() {
        acc = acc.wrapping_add(u32::from(*last) << 8);
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Whether a UDP datagram's checksum (IPv4 header and UDP, or UDP over
/// IPv6) verifies; a zero IPv4 UDP checksum means none was sent and passes.
pub fn checksums_ok(f: &[u8]) -> Result<bool, FrameError> {
    let d = parse_udp(f)?;
    let udp = d.payload.start - UDP_LEN;
    let seg = f.get(udp..d.payload.end).ok_or(FrameError::Truncated)?;
    let ulen = u32::try_from(seg.len()).map_err(|_| FrameError::BadLength)?;
    let pseudo = match (d.src.ip(), d.dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(dst)) => {
            let ihl = usize::from(f[ETH_LEN] & 0x0f) * 4;
            let ip = f.get(ETH_LEN..ETH_LEN + ihl).ok_or(FrameError::Truncated)?;
            if fold(sum(ip, 0)) != 0xffff {
                return Ok(false);
            }
            if be16(seg, 6)? == 0 {
                return Ok(true);
            }
            sum(&dst.octets(), sum(&s.octets(), 0)) + u32::from(IPPROTO_UDP) + ulen
        }
        (IpAddr::V6(s), IpAddr::V6(dst)) => {
            sum(&dst.octets(), sum(&s.octets(), 0)) + u32::from(IPPROTO_UDP) + ulen
        }
        _ => return Err(FrameError::MixedFamilies),
    };
    Ok(fold(sum(seg, pseudo)) == 0xffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
    const B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

    /// RFC 1071 section 3's example: the words 0001 f203 f4f5 f6f7 sum to
    /// ddf2 (one's complement, folded).
    #[test]
    fn the_rfc_1071_example_sums_to_ddf2() {
        let b = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&b, 0)), 0xddf2);
    }

    /// A well-known IPv4 header (from the Wikipedia/RFC 1071 walk-through)
    /// whose checksum is b861.
    #[test]
    fn a_known_ipv4_header_checksums_to_b861() {
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(!fold(sum(&h, 0)), 0xb861);
    }

    fn build(path: &Path, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 1514];
        let off = payload_offset(&path.dst);
        f[off..off + payload.len()].copy_from_slice(payload);
        let n = write_headers(&mut f, path, payload.len(), DEFAULT_TTL).expect("fits");
        f.truncate(n);
        f
    }

    #[test]
    fn an_ipv4_datagram_built_here_parses_back_and_its_checksums_verify() {
        let path = Path {
            src_mac: A,
            dst_mac: B,
            src: "10.79.0.1:10000".parse().expect("addr"),
            dst: "10.79.0.2:40000".parse().expect("addr"),
        };
        let f = build(&path, b"hello, odd length");
        assert_eq!(f.len(), 42 + 17);
        let p = parse_udp(&f).expect("parses");
        assert_eq!(
            (p.src, p.dst, p.src_mac, p.dst_mac),
            (path.src, path.dst, A, B)
        );
        assert_eq!(&f[p.payload], b"hello, odd length");
        assert!(checksums_ok(&f).expect("udp"));
        // Flip a payload bit: the UDP checksum catches it.
        let mut bad = f.clone();
        bad[50] ^= 1;
        assert!(!checksums_ok(&bad).expect("udp"));
        // And a header bit: the IPv4 checksum does.
        let mut bad = f;
        bad[ETH_LEN + 8] ^= 1; // TTL
        assert!(!checksums_ok(&bad).expect("udp"));
    }

    #[test]
    fn an_ipv6_datagram_built_here_parses_back_and_its_checksum_verifies() {
        let path = Path {
            src_mac: A,
            dst_mac: B,
            src: "[fd79::1]:10000".parse().expect("addr"),
            dst: "[fd79::2]:40000".parse().expect("addr"),
        };
        let f = build(&path, &[0xab; 100]);
        assert_eq!(f.len(), 62 + 100);
        let p = parse_udp(&f).expect("parses");
        assert_eq!((p.src, p.dst), (path.src, path.dst));
        assert!(checksums_ok(&f).expect("udp"));
        let mut bad = f;
        bad[ETH_LEN + 8] ^= 0x80; // the source address
        assert!(!checksums_ok(&bad).expect("udp"));
    }

    #[test]
    fn malformed_frames_are_errors_not_panics() {
        let path = Path {
            src_mac: A,
            dst_mac: B,
            src: "10.79.0.1:1".parse().expect("addr"),
            dst: "10.79.0.2:2".parse().expect("addr"),
        };
        let f = build(&path, b"x");
        for n in 0..f.len() {
            assert!(parse_udp(&f[..n]).is_err(), "truncated to {n}");
        }
        let mut frag = f.clone();
        frag[ETH_LEN + 6] |= 0x20; // MF
        assert_eq!(parse_udp(&frag), Err(FrameError::Fragment));
        let mut tcp = f.clone();
        tcp[ETH_LEN + 9] = 6;
        assert_eq!(parse_udp(&tcp), Err(FrameError::NotUdp));
        let mut arp = f.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(parse_udp(&arp), Err(FrameError::NotIp));
        let mut long = f;
        long[ETH_LEN + UDP_LEN + IPV4_LEN - 4] = 0xff; // UDP length high byte
        assert_eq!(parse_udp(&long), Err(FrameError::BadLength));
        let mixed = Path {
            dst: "[fd79::2]:2".parse().expect("addr"),
            ..path
        };
        assert_eq!(
            write_headers(&mut [0u8; 100], &mixed, 1, 64),
            Err(FrameError::MixedFamilies)
        );
        assert_eq!(
            write_headers(&mut [0u8; 50], &path, 9, 64),
            Err(FrameError::TooLong)
        );
    }
}
