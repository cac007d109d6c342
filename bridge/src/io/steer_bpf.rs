//! The `SK_REUSEPORT` steering program of single-port mode: every shard's
//! socket sits in one `SO_REUSEPORT` group on `media.port`, and this program
//! picks the socket for each datagram by its source address and port.
//!
//! Two maps: a `REUSEPORT_SOCKARRAY` (index = shard, value = its socket) and a
//! hash (remote address and port, [`SteerKey`] → shard index) that a shard
//! fills when ICE validates an endpoint's remote address and empties when the
//! endpoint leaves. On a miss (a new endpoint's first checks) the program
//! selects nothing and the kernel picks a socket by hash; the shard that gets
//! a datagram it does not own passes it on (see [`super::single_port`]).
//!
//! The program is 50 hand-assembled instructions loaded with raw `bpf(2)`
//! calls through `libc` (see [`super::bpf`] for why).

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// Most remote addresses the steering hash holds (a validated address per
/// endpoint, usually one; beyond it new endpoints are steered by hand-off).
pub const MAX_STEERED: u32 = 65_536;

/// Bytes of a [`SteerKey`].
pub const KEY_LEN: usize = 20;

/// The hash map's key: the source address as 16 bytes (IPv4 as IPv4-mapped
/// IPv6, `::ffff:a.b.c.d`, which is also how a dual-stack socket reports it),
/// the source port in network byte order, two zero bytes. The program builds
/// the same bytes from the IP and UDP headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SteerKey(pub [u8; KEY_LEN]);

impl SteerKey {
    /// The key of datagrams from `addr`.
    pub fn of(addr: SocketAddr) -> Self {
        let mut k = [0u8; KEY_LEN];
        let ip = match addr {
            SocketAddr::V4(a) => a.ip().to_ipv6_mapped().octets(),
            SocketAddr::V6(a) => a.ip().octets(),
        };
        k[..16].copy_from_slice(&ip);
        k[16..18].copy_from_slice(&addr.port().to_be_bytes());
        Self(k)
    }
}

use super::bpf::{
    Asm, BPF_FUNC_MAP_LOOKUP_ELEM, FP, Insn, JA, JEQ_IMM, JNE_IMM, R0, R1, R2, R3, R4, R5, R6,
    context, map_create, map_delete, map_update, prog_load,
};

// Map and program types, helpers (include/uapi/linux/bpf.h).
const BPF_MAP_TYPE_HASH: u32 = 1;
const BPF_MAP_TYPE_REUSEPORT_SOCKARRAY: u32 = 20;
const BPF_PROG_TYPE_SK_REUSEPORT: u32 = 21;
const BPF_FUNC_SKB_LOAD_BYTES: i32 = 26;
const BPF_FUNC_SKB_LOAD_BYTES_RELATIVE: i32 = 68;
const BPF_FUNC_SK_SELECT_REUSEPORT: i32 = 82;
const BPF_HDR_START_NET: i32 = 1;
const SO_ATTACH_REUSEPORT_EBPF: libc::c_int = 52;
/// `offsetof(struct sk_reuseport_md, eth_protocol)`.
const MD_ETH_PROTOCOL: i16 = 20;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
/// `SK_PASS`: deliver (to the selected socket, or the kernel's pick).
const SK_PASS: i32 = 1;

/// The program: build the [`SteerKey`] of the datagram on the stack at
/// `fp-24`, look it up in `hash`, and select that shard's socket from `socks`.
/// Anything unexpected (another protocol, a failed load, a miss, a shard with
/// no socket) passes with no selection: the kernel's hash decides.
fn program(hash: RawFd, socks: RawFd) -> Vec<Insn> {
    let mut a = Asm::default();
    a.mov_reg(R6, R1); // the context
    // Zero the key (fp-24 .. fp-4) and the slack word after it.
    a.op(0x7a, FP, 0, -24, 0); // ST | MEM | DW
    a.op(0x7a, FP, 0, -16, 0);
    a.op(0x62, FP, 0, -8, 0); // ST | MEM | W
    a.op(0x62, FP, 0, -4, 0);
    a.op(0x61, R2, R6, MD_ETH_PROTOCOL, 0); // LDX | MEM | W: eth_protocol (big-endian u16)
    a.jump(JEQ_IMM, R2, i32::from(ETH_P_IP.to_be()), "v4");
    a.jump(JEQ_IMM, R2, i32::from(ETH_P_IPV6.to_be()), "v6");
    a.jump(JA, 0, 0, "pass");

    // IPv4: ::ffff: then the source address (IP header offset 12).
    a.label("v4");
    a.op(0x6a, FP, 0, -14, 0xffff); // ST | MEM | H: key[10..12]
    a.mov_reg(R1, R6);
    a.mov_imm(R2, 12);
    a.mov_reg(R3, FP);
    a.add_imm(R3, -12); // key[12..16]
    a.mov_imm(R4, 4);
    a.mov_imm(R5, BPF_HDR_START_NET);
    a.call(BPF_FUNC_SKB_LOAD_BYTES_RELATIVE);
    a.jump(JNE_IMM, R0, 0, "pass");
    a.jump(JA, 0, 0, "port");

    // IPv6: the source address (IPv6 header offset 8).
    a.label("v6");
    a.mov_reg(R1, R6);
    a.mov_imm(R2, 8);
    a.mov_reg(R3, FP);
    a.add_imm(R3, -24); // key[0..16]
    a.mov_imm(R4, 16);
    a.mov_imm(R5, BPF_HDR_START_NET);
    a.call(BPF_FUNC_SKB_LOAD_BYTES_RELATIVE);
    a.jump(JNE_IMM, R0, 0, "pass");

    // The source port: the first two bytes of the UDP header, where the
    // context's data starts.
    a.label("port");
    a.mov_reg(R1, R6);
    a.mov_imm(R2, 0);
    a.mov_reg(R3, FP);
    a.add_imm(R3, -8); // key[16..18]
    a.mov_imm(R4, 2);
    a.call(BPF_FUNC_SKB_LOAD_BYTES);
    a.jump(JNE_IMM, R0, 0, "pass");

    // shard = hash[key]
    a.ld_map_fd(R1, hash);
    a.mov_reg(R2, FP);
    a.add_imm(R2, -24);
    a.call(BPF_FUNC_MAP_LOOKUP_ELEM);
    a.jump(JEQ_IMM, R0, 0, "pass");
    a.op(0x61, R2, R0, 0, 0); // LDX | MEM | W: the shard index
    a.op(0x63, FP, R2, -28, 0); // STX | MEM | W: to fp-28

    // bpf_sk_select_reuseport(ctx, socks, &shard, 0); its failure is a miss.
    a.mov_reg(R1, R6);
    a.ld_map_fd(R2, socks);
    a.mov_reg(R3, FP);
    a.add_imm(R3, -28);
    a.mov_imm(R4, 0);
    a.call(BPF_FUNC_SK_SELECT_REUSEPORT);

    a.label("pass");
    a.mov_imm(R0, SK_PASS);
    a.exit();
    a.finish()
}

/// The loaded program and its maps; dropping it closes them (the kernel keeps
/// the program while it stays attached to the socket group).
#[derive(Debug)]
pub struct Steering {
    hash: OwnedFd,
    socks: OwnedFd,
    _prog: OwnedFd,
}

impl Steering {
    /// Loads the program for `sockets` (index = shard; all bound to the same
    /// address and port with `SO_REUSEPORT`) and attaches it to their group.
    /// The error says why it cannot (e.g. `EPERM` without CAP_BPF, or an old
    /// kernel); the caller then steers by hand-off alone.
    pub fn attach(sockets: &[RawFd]) -> io::Result<Self> {
        let n = u32::try_from(sockets.len()).map_err(|_| io::Error::other("too many shards"))?;
        let socks = map_create(BPF_MAP_TYPE_REUSEPORT_SOCKARRAY, 4, 8, n.max(1))
            .map_err(|e| context(e, "creating the REUSEPORT_SOCKARRAY map"))?;
        let hash = map_create(BPF_MAP_TYPE_HASH, KEY_LEN as u32, 4, MAX_STEERED)
            .map_err(|e| context(e, "creating the steering hash map"))?;
        for (i, &fd) in sockets.iter().enumerate() {
            map_update(
                &socks,
                &(i as u32).to_ne_bytes(),
                &(fd as u64).to_ne_bytes(),
            )
            .map_err(|e| context(e, "adding a shard socket to the REUSEPORT_SOCKARRAY"))?;
        }
        let insns = program(hash.as_raw_fd(), socks.as_raw_fd());
        let prog = prog_load(BPF_PROG_TYPE_SK_REUSEPORT, 0, "rb_steering", &insns)?;
        let Some(&first) = sockets.first() else {
            return Err(io::Error::other("no socket to attach to"));
        };
        let prog_fd: libc::c_int = prog.as_raw_fd();
        // SAFETY: a setsockopt with a pointer to a c_int and its size.
        let r = unsafe {
            libc::setsockopt(
                first,
                libc::SOL_SOCKET,
                SO_ATTACH_REUSEPORT_EBPF,
                (&raw const prog_fd).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(context(
                io::Error::last_os_error(),
                "attaching with SO_ATTACH_REUSEPORT_EBPF",
            ));
        }
        Ok(Self {
            hash,
            socks,
            _prog: prog,
        })
    }

    /// Steers datagrams from `addr` to shard `shard`'s socket.
    pub fn insert(&self, addr: SocketAddr, shard: usize) -> io::Result<()> {
        let key = SteerKey::of(addr);
        map_update(&self.hash, &key.0, &(shard as u32).to_ne_bytes())
    }

    /// Stops steering `addr` (the kernel's hash decides again).
    pub fn remove(&self, addr: SocketAddr) {
        let _ = map_delete(&self.hash, &SteerKey::of(addr).0);
    }

    /// The socket array (for diagnostics).
    pub fn sockets_map(&self) -> RawFd {
        self.socks.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv4_source_is_keyed_as_ipv4_mapped_with_the_port_in_network_order() {
        let k = SteerKey::of("192.0.2.7:50001".parse().expect("addr"));
        let mut want = [0u8; KEY_LEN];
        want[10] = 0xff;
        want[11] = 0xff;
        want[12..16].copy_from_slice(&[192, 0, 2, 7]);
        want[16..18].copy_from_slice(&[0xc3, 0x51]); // 50001
        assert_eq!(k.0, want);
        // A dual-stack socket reports the same peer as ::ffff:192.0.2.7.
        let mapped = SteerKey::of("[::ffff:192.0.2.7]:50001".parse().expect("addr"));
        assert_eq!(mapped, k);
    }

    #[test]
    fn an_ipv6_source_is_keyed_by_its_sixteen_bytes() {
        let k = SteerKey::of("[2001:db8::1]:443".parse().expect("addr"));
        assert_eq!(&k.0[..2], &[0x20, 0x01]);
        assert_eq!(k.0[15], 1);
        assert_eq!(&k.0[16..], &[0x01, 0xbb, 0, 0]);
        assert_ne!(k, SteerKey::of("[2001:db8::1]:444".parse().expect("addr")));
    }

    /// The kernel's verifier accepts the program and it attaches to a real
    /// group (skipped, saying so, where BPF is not permitted).
    #[test]
    fn the_kernel_accepts_the_program_for_a_reuseport_group() {
        let sp = super::super::single_port::SinglePort::bind(
            "127.0.0.1".parse().expect("ip"),
            0,
            2,
            false,
        )
        .expect("bind");
        let socks: Vec<_> = (0..2).map(|i| sp.take_socket(i).expect("socket")).collect();
        let fds: Vec<RawFd> = socks.iter().map(AsRawFd::as_raw_fd).collect();
        match Steering::attach(&fds) {
            Ok(s) => {
                let peer: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
                s.insert(peer, 1).expect("map update");
                s.remove(peer);
            }
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                eprintln!("skipped: BPF not permitted here ({e})");
            }
            Err(e) => panic!("the steering program must load: {e}"),
        }
    }

    #[test]
    fn the_program_builds_the_key_where_the_map_lookup_reads_it() {
        let insns = program(7, 8);
        assert!(super::super::bpf::jumps_land_inside(&insns));
        // The lookup's key pointer is fp-24: the start of the key.
        let lookup = insns
            .iter()
            .position(|i| i.code == 0x85 && i.imm == BPF_FUNC_MAP_LOOKUP_ELEM)
            .expect("lookup");
        assert_eq!(insns[lookup - 1].imm, -24);
        // Both maps are referenced by fd.
        let fds: Vec<i32> = insns
            .iter()
            .filter(|i| i.code == 0x18)
            .map(|i| i.imm)
            .collect();
        assert_eq!(fds, [7, 8]);
        assert_eq!(insns.last().map(|i| i.code), Some(0x95));
    }
}
