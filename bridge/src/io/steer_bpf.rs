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
//! calls through `libc`, on purpose: `aya` (or libbpf) would need a separate
//! BPF object built with a BPF toolchain (bpf-linker, a nightly compiler) for a
//! program this small, and their loaders bring nothing it needs (no BTF, no
//! relocations beyond two map fds).

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

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

// bpf(2) commands, map and program types, helpers (include/uapi/linux/bpf.h).
const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_MAP_TYPE_HASH: u32 = 1;
const BPF_MAP_TYPE_REUSEPORT_SOCKARRAY: u32 = 20;
const BPF_PROG_TYPE_SK_REUSEPORT: u32 = 21;
const BPF_FUNC_MAP_LOOKUP_ELEM: i32 = 1;
const BPF_FUNC_SKB_LOAD_BYTES: i32 = 26;
const BPF_FUNC_SKB_LOAD_BYTES_RELATIVE: i32 = 68;
const BPF_FUNC_SK_SELECT_REUSEPORT: i32 = 82;
const BPF_HDR_START_NET: i32 = 1;
const BPF_PSEUDO_MAP_FD: u8 = 1;
const SO_ATTACH_REUSEPORT_EBPF: libc::c_int = 52;
/// `offsetof(struct sk_reuseport_md, eth_protocol)`.
const MD_ETH_PROTOCOL: i16 = 20;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
/// `SK_PASS`: deliver (to the selected socket, or the kernel's pick).
const SK_PASS: i32 = 1;

/// `union bpf_attr` for `BPF_MAP_CREATE` (the fields used, then zeroes).
#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    rest: [u32; 27],
}

/// `union bpf_attr` for the `BPF_MAP_*_ELEM` commands.
#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
    rest: [u64; 12],
}

/// `union bpf_attr` for `BPF_PROG_LOAD`.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    rest: [u64; 12],
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a #[repr(C)] prefix of `union bpf_attr` for `cmd`,
    // zero past the fields set, and its size is passed; the pointers inside it
    // (keys, values, instructions, license, log) point to live memory of the
    // caller for the duration of the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            (attr as *mut T).cast::<libc::c_void>(),
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn owned_fd(fd: libc::c_long) -> io::Result<OwnedFd> {
    let fd = RawFd::try_from(fd).map_err(|_| io::Error::other("bpf returned a bad fd"))?;
    // SAFETY: the kernel just returned `fd`, a new descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn map_create(map_type: u32, key_size: u32, value_size: u32, max: u32) -> io::Result<OwnedFd> {
    let mut attr = MapCreateAttr {
        map_type,
        key_size,
        value_size,
        max_entries: max,
        ..Default::default()
    };
    owned_fd(bpf(BPF_MAP_CREATE, &mut attr)?)
}

fn map_update(map: &OwnedFd, key: &[u8], value: &[u8]) -> io::Result<()> {
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: key.as_ptr() as u64,
        value: value.as_ptr() as u64,
        ..Default::default()
    };
    bpf(BPF_MAP_UPDATE_ELEM, &mut attr).map(|_| ())
}

fn map_delete(map: &OwnedFd, key: &[u8]) -> io::Result<()> {
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: key.as_ptr() as u64,
        ..Default::default()
    };
    bpf(BPF_MAP_DELETE_ELEM, &mut attr).map(|_| ())
}

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

// Registers.
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;
const R6: u8 = 6;
const FP: u8 = 10;

/// A tiny assembler: instructions, and forward jumps patched when their
/// label is placed.
#[derive(Default)]
struct Asm {
    insns: Vec<Insn>,
    /// (instruction index, label) of jumps waiting for their label.
    fixups: Vec<(usize, &'static str)>,
}

impl Asm {
    fn op(&mut self, code: u8, dst: u8, src: u8, off: i16, imm: i32) {
        self.insns.push(Insn {
            code,
            regs: dst | (src << 4),
            off,
            imm,
        });
    }
    fn mov_reg(&mut self, dst: u8, src: u8) {
        self.op(0xbf, dst, src, 0, 0); // ALU64 | MOV | X
    }
    fn mov_imm(&mut self, dst: u8, imm: i32) {
        self.op(0xb7, dst, 0, 0, imm); // ALU64 | MOV | K
    }
    fn add_imm(&mut self, dst: u8, imm: i32) {
        self.op(0x07, dst, 0, 0, imm); // ALU64 | ADD | K
    }
    fn call(&mut self, helper: i32) {
        self.op(0x85, 0, 0, 0, helper);
    }
    fn ld_map_fd(&mut self, dst: u8, fd: RawFd) {
        self.op(0x18, dst, BPF_PSEUDO_MAP_FD, 0, fd); // LD | IMM | DW, two slots
        self.op(0, 0, 0, 0, 0);
    }
    /// A jump (`code`: JEQ/JNE with an immediate, or JA) to `label`.
    fn jump(&mut self, code: u8, dst: u8, imm: i32, label: &'static str) {
        self.fixups.push((self.insns.len(), label));
        self.op(code, dst, 0, 0, imm);
    }
    fn label(&mut self, label: &'static str) {
        let here = self.insns.len();
        for (at, _) in self.fixups.iter().filter(|(_, l)| *l == label) {
            self.insns[*at].off = (here - at - 1) as i16;
        }
        self.fixups.retain(|(_, l)| *l != label);
    }
}

const JEQ_IMM: u8 = 0x15;
const JNE_IMM: u8 = 0x55;
const JA: u8 = 0x05;

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
    a.op(0x95, 0, 0, 0, 0); // EXIT
    debug_assert!(a.fixups.is_empty(), "every jump has its label");
    a.insns
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
        let license = c"Apache-2.0";
        let mut log = vec![0u8; 16 * 1024];
        let mut attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_SK_REUSEPORT,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level: 1,
            log_size: log.len() as u32,
            log_buf: log.as_mut_ptr() as u64,
            ..Default::default()
        };
        attr.prog_name[..11].copy_from_slice(b"rb_steering");
        let prog = match bpf(BPF_PROG_LOAD, &mut attr) {
            Ok(fd) => owned_fd(fd)?,
            Err(e) => {
                let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                let verifier = String::from_utf8_lossy(&log[..end]);
                tracing::debug!(%verifier, "steering program refused");
                return Err(context(e, "loading the SK_REUSEPORT program"));
            }
        };
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

fn context(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
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
        // Every jump lands inside the program.
        for (i, insn) in insns.iter().enumerate() {
            if matches!(insn.code, JEQ_IMM | JNE_IMM | JA) {
                let target = i as i64 + 1 + i64::from(insn.off);
                assert!(target > i as i64 && (target as usize) < insns.len(), "{i}");
            }
        }
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
