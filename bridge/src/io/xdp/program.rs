//! The XDP program that sends the bridge's media datagrams to its AF_XDP
//! sockets and everything else to the kernel.
//!
//! It redirects a frame to the XSK bound to the queue it arrived on (an
//! `XSKMAP` indexed by rx queue; an XSK only takes frames from its own
//! queue) only when it is IPv4 (no options, not a
//! fragment) or IPv6 (UDP as the first next header) carrying UDP, its
//! destination address is one of the bridge's (a hash of 16-byte addresses,
//! IPv4 as IPv4-mapped IPv6) and its destination port is inside the range
//! of the shard whose XSK is bound to that queue (an array map by queue, so
//! ranges change without reloading; a datagram for another shard's port
//! goes to the kernel, which hands it to that shard's socket). ARP,
//! ICMP, TCP (the control plane), other UDP, IPv4 with options, fragments,
//! VLAN-tagged frames and IPv6 with extension headers all get `XDP_PASS`, as
//! does a frame for a queue with no socket (`bpf_redirect_map`'s default
//! action).
//!
//! The program is hand-assembled bytecode loaded with raw `bpf(2)` (see
//! [`crate::io::bpf`]): it builds with cargo alone on a fresh machine, where a
//! C program would need clang (and libbpf or libxdp to load it) and an `aya`
//! program a nightly compiler with bpf-linker. It is attached with
//! `BPF_LINK_CREATE` (kernel 5.9+), so closing the link detaches it even if
//! the process dies, and no bpffs is needed.

use std::io;
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use crate::io::bpf::{
    AND_IMM, Asm, BE, BPF_FUNC_MAP_LOOKUP_ELEM, FP, Insn, JA, JEQ_IMM, JGT_REG, JNE_IMM, LDX_B,
    LDX_DW, LDX_H, LDX_W, R0, R1, R2, R3, R4, R5, R6, R7, R8, ST_DW, ST_H, STX_DW, STX_W, context,
    link_create, map_create, map_delete, map_lookup, map_update, prog_load,
};

const BPF_MAP_TYPE_HASH: u32 = 1;
const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
/// `BPF_XDP`, the attach type of an XDP link.
const BPF_XDP: u32 = 37;
const BPF_FUNC_REDIRECT_MAP: i32 = 51;
/// `XDP_FLAGS_SKB_MODE` (generic XDP) and `XDP_FLAGS_DRV_MODE` (native).
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
const XDP_PASS: i32 = 2;

/// `struct xdp_md` offsets.
const MD_DATA: i16 = 0;
const MD_DATA_END: i16 = 4;
const MD_RX_QUEUE_INDEX: i16 = 16;

/// Most addresses the bridge's address map holds.
pub const MAX_ADDRESSES: u32 = 64;

/// Where the program runs: in the driver (native) or on the kernel's
/// generic path after the socket buffer is built (slower, works anywhere).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMode {
    /// `XDP_FLAGS_DRV_MODE`.
    Native,
    /// `XDP_FLAGS_SKB_MODE`.
    Generic,
}

impl AttachMode {
    /// `"native"` or `"generic"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Generic => "generic",
        }
    }
}

/// Which modes [`XdpProgram::attach`] may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeChoice {
    /// Native only.
    Native,
    /// Generic only.
    Generic,
    /// Native, else generic.
    NativeThenGeneric,
}

/// The map key of an address: 16 bytes, IPv4 as IPv4-mapped IPv6 (the
/// program builds the same bytes from the IP header).
pub fn address_key(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

/// The program as loaded and attached to one interface, with its maps.
/// Dropping it closes the link, which detaches the program.
#[derive(Debug)]
pub struct XdpProgram {
    xsks: OwnedFd,
    addrs: OwnedFd,
    ports: OwnedFd,
    _prog: OwnedFd,
    _link: OwnedFd,
    mode: AttachMode,
    ifindex: u32,
    queues: u32,
}

impl XdpProgram {
    /// Loads the program for rx queues `0..ports.len()`, queue `q`
    /// redirecting the media ports `ports[q]` (the ports of the shard whose
    /// XSK is bound to it; a datagram for another shard's port is passed to
    /// the kernel, whose socket of that shard gets it), and attaches it to
    /// interface `ifindex`. No address is in its map yet (see
    /// [`Self::add_address`]), so until then it passes everything.
    pub fn attach(
        ifindex: u32,
        ports: &[RangeInclusive<u16>],
        choice: ModeChoice,
    ) -> io::Result<Self> {
        let queues = u32::try_from(ports.len())
            .ok()
            .filter(|&q| q > 0)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no queue"))?;
        let xsks = map_create(BPF_MAP_TYPE_XSKMAP, 4, 4, queues.max(1))
            .map_err(|e| context(e, "creating the XSKMAP"))?;
        let addrs = map_create(BPF_MAP_TYPE_HASH, 16, 4, MAX_ADDRESSES)
            .map_err(|e| context(e, "creating the address map"))?;
        let port_map = map_create(BPF_MAP_TYPE_ARRAY, 4, 8, queues)
            .map_err(|e| context(e, "creating the port range map"))?;
        let insns = program(xsks.as_raw_fd(), addrs.as_raw_fd(), port_map.as_raw_fd());
        let prog = prog_load(BPF_PROG_TYPE_XDP, BPF_XDP, "rb_xdp_media", &insns)?;
        let modes: &[AttachMode] = match choice {
            ModeChoice::Native => &[AttachMode::Native],
            ModeChoice::Generic => &[AttachMode::Generic],
            ModeChoice::NativeThenGeneric => &[AttachMode::Native, AttachMode::Generic],
        };
        let mut last = io::Error::other("no attach mode");
        for &mode in modes {
            let flags = match mode {
                AttachMode::Native => XDP_FLAGS_DRV_MODE,
                AttachMode::Generic => XDP_FLAGS_SKB_MODE,
            };
            match link_create(&prog, ifindex, BPF_XDP, flags) {
                Ok(link) => {
                    let p = Self {
                        xsks,
                        addrs,
                        ports: port_map,
                        _prog: prog,
                        _link: link,
                        mode,
                        ifindex,
                        queues,
                    };
                    for (q, range) in (0..).zip(ports) {
                        p.set_ports(q, range.clone())?;
                    }
                    return Ok(p);
                }
                Err(e) => {
                    last = context(e, &format!("attaching in {} mode", mode.as_str()));
                    tracing::debug!(ifindex, error = %last, "XDP attach failed");
                }
            }
        }
        Err(last)
    }

    /// The mode the program runs in.
    pub fn mode(&self) -> AttachMode {
        self.mode
    }

    /// The interface it is attached to.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Sets the media port range (inclusive) redirected from rx queue `queue`.
    pub fn set_ports(&self, queue: u32, ports: RangeInclusive<u16>) -> io::Result<()> {
        let mut v = [0u8; 8];
        v[..4].copy_from_slice(&u32::from(*ports.start()).to_ne_bytes());
        v[4..].copy_from_slice(&u32::from(*ports.end()).to_ne_bytes());
        map_update(&self.ports, &queue.to_ne_bytes(), &v)
            .map_err(|e| context(e, "setting the port range"))
    }

    /// The media port range the program redirects from rx queue `queue`
    /// (read back from its map).
    pub fn ports(&self, queue: u32) -> io::Result<RangeInclusive<u16>> {
        let mut v = [0u8; 8];
        map_lookup(&self.ports, &queue.to_ne_bytes(), &mut v)?;
        let lo = u32::from_ne_bytes([v[0], v[1], v[2], v[3]]);
        let hi = u32::from_ne_bytes([v[4], v[5], v[6], v[7]]);
        Ok(lo as u16..=hi as u16)
    }

    /// Redirects media datagrams for `ip`.
    pub fn add_address(&self, ip: IpAddr) -> io::Result<()> {
        map_update(&self.addrs, &address_key(ip), &1u32.to_ne_bytes())
            .map_err(|e| context(e, "adding a bridge address"))
    }

    /// Stops redirecting datagrams for `ip`.
    pub fn remove_address(&self, ip: IpAddr) {
        let _ = map_delete(&self.addrs, &address_key(ip));
    }

    /// Sends rx queue `queue`'s media datagrams to the XSK `fd` (bound to that
    /// queue of this interface).
    pub fn set_socket(&self, queue: u32, fd: RawFd) -> io::Result<()> {
        if queue >= self.queues {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("queue {queue} beyond the {} the XSKMAP holds", self.queues),
            ));
        }
        map_update(&self.xsks, &queue.to_ne_bytes(), &(fd as u32).to_ne_bytes())
            .map_err(|e| context(e, "adding an XSK to the XSKMAP"))
    }

    /// Queue `queue`'s datagrams go to the kernel again.
    pub fn clear_socket(&self, queue: u32) {
        let _ = map_delete(&self.xsks, &queue.to_ne_bytes());
    }
}

/// A big-endian 16-bit field as the program's `LDX_H` reads it (native order).
fn wire16(be: u16) -> i32 {
    i32::from(u16::from_ne_bytes(be.to_be_bytes()))
}

// Frame offsets: Ethernet (14), then IPv4 (20, no options) or IPv6 (40), UDP.
const ETH_TYPE: i16 = 12;
const V4_VIHL: i16 = 14;
const V4_FRAG: i16 = 20;
const V4_PROTO: i16 = 23;
const V4_DST: i16 = 30;
const V4_DPORT: i16 = 36;
const V4_END: i32 = 42;
const V6_NEXT: i16 = 20;
const V6_DST: i16 = 38;
const V6_DPORT: i16 = 56;
const V6_END: i32 = 62;
const IPPROTO_UDP: i32 = 17;

/// The program. Registers: r6 the context, r7 the destination port (host
/// order), r8 the rx queue; the address key is built at fp-16.
fn program(xsks: RawFd, addrs: RawFd, ports: RawFd) -> Vec<Insn> {
    let mut a = Asm::default();
    a.mov_reg(R6, R1);
    a.op(LDX_W, R8, R6, MD_RX_QUEUE_INDEX, 0);
    a.op(LDX_W, R2, R6, MD_DATA, 0);
    a.op(LDX_W, R3, R6, MD_DATA_END, 0);
    a.op(ST_DW, FP, 0, -16, 0);
    a.op(ST_DW, FP, 0, -8, 0);
    // At least Ethernet + IPv4 + UDP.
    a.mov_reg(R4, R2);
    a.add_imm(R4, V4_END);
    a.jump_reg(JGT_REG, R4, R3, "pass");
    a.op(LDX_H, R5, R2, ETH_TYPE, 0);
    a.jump(JEQ_IMM, R5, wire16(0x0800), "v4");
    a.jump(JEQ_IMM, R5, wire16(0x86dd), "v6");
    a.jump(JA, 0, 0, "pass");

    a.label("v4");
    a.op(LDX_B, R5, R2, V4_VIHL, 0);
    a.jump(JNE_IMM, R5, 0x45, "pass");
    a.op(LDX_B, R5, R2, V4_PROTO, 0);
    a.jump(JNE_IMM, R5, IPPROTO_UDP, "pass");
    a.op(LDX_H, R5, R2, V4_FRAG, 0);
    a.op(AND_IMM, R5, 0, 0, wire16(0x3fff)); // MF and the fragment offset
    a.jump(JNE_IMM, R5, 0, "pass");
    a.op(ST_H, FP, 0, -6, 0xffff); // ::ffff:
    a.op(LDX_W, R5, R2, V4_DST, 0);
    a.op(STX_W, FP, R5, -4, 0);
    a.op(LDX_H, R7, R2, V4_DPORT, 0);
    a.jump(JA, 0, 0, "udp");

    a.label("v6");
    a.mov_reg(R4, R2);
    a.add_imm(R4, V6_END);
    a.jump_reg(JGT_REG, R4, R3, "pass");
    a.op(LDX_B, R5, R2, V6_NEXT, 0);
    a.jump(JNE_IMM, R5, IPPROTO_UDP, "pass");
    a.op(LDX_DW, R5, R2, V6_DST, 0);
    a.op(STX_DW, FP, R5, -16, 0);
    a.op(LDX_DW, R5, R2, V6_DST + 8, 0);
    a.op(STX_DW, FP, R5, -8, 0);
    a.op(LDX_H, R7, R2, V6_DPORT, 0);

    a.label("udp");
    a.op(BE, R7, 0, 0, 16);
    // The rx queue's port range: ports[queue] = (min, max).
    a.op(STX_W, FP, R8, -20, 0);
    a.ld_map_fd(R1, ports);
    a.mov_reg(R2, FP);
    a.add_imm(R2, -20);
    a.call(BPF_FUNC_MAP_LOOKUP_ELEM);
    a.jump(JEQ_IMM, R0, 0, "pass");
    a.op(LDX_W, R1, R0, 0, 0);
    a.jump_reg(JGT_REG, R1, R7, "pass"); // min > port
    a.op(LDX_W, R1, R0, 4, 0);
    a.jump_reg(JGT_REG, R7, R1, "pass"); // port > max
    // One of the bridge's addresses?
    a.ld_map_fd(R1, addrs);
    a.mov_reg(R2, FP);
    a.add_imm(R2, -16);
    a.call(BPF_FUNC_MAP_LOOKUP_ELEM);
    a.jump(JEQ_IMM, R0, 0, "pass");
    // bpf_redirect_map(xsks, rx_queue, XDP_PASS): a queue with no socket passes.
    a.ld_map_fd(R1, xsks);
    a.mov_reg(R2, R8);
    a.mov_imm(R3, XDP_PASS);
    a.call(BPF_FUNC_REDIRECT_MAP);
    a.exit();

    a.label("pass");
    a.mov_imm(R0, XDP_PASS);
    a.exit();
    a.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_jumps_inside_itself_and_names_its_three_maps() {
        let insns = program(7, 8, 9);
        assert!(crate::io::bpf::jumps_land_inside(&insns));
        let fds: Vec<i32> = insns
            .iter()
            .filter(|i| i.code == 0x18)
            .map(|i| i.imm)
            .collect();
        assert_eq!(fds, [9, 8, 7]);
        assert_eq!(insns.last().map(|i| i.code), Some(crate::io::bpf::EXIT));
    }

    #[test]
    fn ipv4_addresses_are_keyed_as_ipv4_mapped() {
        let k = address_key("10.79.0.1".parse().expect("ip"));
        assert_eq!(&k[10..], &[0xff, 0xff, 10, 79, 0, 1]);
        assert!(k[..10].iter().all(|&b| b == 0));
        let k6 = address_key("2001:db8::5".parse().expect("ip"));
        assert_eq!(k6[0..2], [0x20, 0x01]);
        assert_eq!(k6[15], 5);
    }
}
