//! Raw `bpf(2)` plumbing shared by the project's two eBPF programs (the
//! single-port steering program in [`super::steer_bpf`] and the AF_XDP
//! redirect program in [`super::xdp::program`]): the syscall, map create and
//! update, and a tiny assembler for hand-written bytecode.
//!
//! Both programs are a few dozen instructions assembled here and loaded with
//! raw `bpf(2)` calls through `libc`, on purpose: `aya` or libbpf would need a
//! separate BPF object built with a BPF toolchain (clang, or bpf-linker and a
//! nightly compiler), which a fresh machine with only cargo lacks, and their
//! loaders bring nothing these programs need (no BTF, no relocations beyond
//! map fds).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

// bpf(2) commands (include/uapi/linux/bpf.h).
pub(crate) const BPF_MAP_CREATE: libc::c_long = 0;
pub(crate) const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
pub(crate) const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
pub(crate) const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
pub(crate) const BPF_PROG_LOAD: libc::c_long = 5;
pub(crate) const BPF_LINK_CREATE: libc::c_long = 28;
/// `BPF_FUNC_map_lookup_elem`.
pub(crate) const BPF_FUNC_MAP_LOOKUP_ELEM: i32 = 1;
/// `BPF_PSEUDO_MAP_FD`: the source register of a 64-bit immediate load that
/// names a map by fd.
pub(crate) const BPF_PSEUDO_MAP_FD: u8 = 1;

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
    prog_ifindex: u32,
    expected_attach_type: u32,
    rest: [u64; 12],
}

/// `union bpf_attr` for `BPF_LINK_CREATE`.
#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_fd: u32,
    attach_type: u32,
    flags: u32,
    rest: [u64; 12],
}

/// The `bpf(2)` syscall with `attr` as its `union bpf_attr`.
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

/// Creates a map; its fd closes (and the kernel frees it once no program
/// holds it) when the returned fd drops.
pub(crate) fn map_create(
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max: u32,
) -> io::Result<OwnedFd> {
    let mut attr = MapCreateAttr {
        map_type,
        key_size,
        value_size,
        max_entries: max,
        ..Default::default()
    };
    owned_fd(bpf(BPF_MAP_CREATE, &mut attr)?)
}

/// Sets `map[key] = value` (sizes as the map was created with).
pub(crate) fn map_update(map: &OwnedFd, key: &[u8], value: &[u8]) -> io::Result<()> {
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: key.as_ptr() as u64,
        value: value.as_ptr() as u64,
        ..Default::default()
    };
    bpf(BPF_MAP_UPDATE_ELEM, &mut attr).map(|_| ())
}

/// Reads `map[key]` into `value` (sized as the map's values).
pub(crate) fn map_lookup(map: &OwnedFd, key: &[u8], value: &mut [u8]) -> io::Result<()> {
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: key.as_ptr() as u64,
        value: value.as_mut_ptr() as u64,
        ..Default::default()
    };
    bpf(BPF_MAP_LOOKUP_ELEM, &mut attr).map(|_| ())
}

/// Removes `map[key]`.
pub(crate) fn map_delete(map: &OwnedFd, key: &[u8]) -> io::Result<()> {
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: key.as_ptr() as u64,
        ..Default::default()
    };
    bpf(BPF_MAP_DELETE_ELEM, &mut attr).map(|_| ())
}

/// Loads `insns` as a program of `prog_type` (`name`: at most 15 bytes). On
/// refusal the verifier's log goes to `debug` and the error says what failed.
pub(crate) fn prog_load(
    prog_type: u32,
    expected_attach_type: u32,
    name: &str,
    insns: &[Insn],
) -> io::Result<OwnedFd> {
    let license = c"Apache-2.0";
    let mut log = vec![0u8; 64 * 1024];
    let mut attr = ProgLoadAttr {
        prog_type,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        expected_attach_type,
        ..Default::default()
    };
    let n = name.len().min(15);
    attr.prog_name[..n].copy_from_slice(&name.as_bytes()[..n]);
    match bpf(BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => owned_fd(fd),
        Err(e) => {
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let verifier = String::from_utf8_lossy(&log[..end]);
            tracing::debug!(program = name, %verifier, "BPF program refused");
            Err(context(e, &format!("loading the {name} program")))
        }
    }
}

/// `BPF_LINK_CREATE`: attaches `prog` to `target` (an fd, or an ifindex for
/// XDP) with `attach_type` and `flags`; the attachment lasts as long as the
/// returned link fd stays open.
pub(crate) fn link_create(
    prog: &OwnedFd,
    target: u32,
    attach_type: u32,
    flags: u32,
) -> io::Result<OwnedFd> {
    let mut attr = LinkCreateAttr {
        prog_fd: prog.as_raw_fd() as u32,
        target_fd: target,
        attach_type,
        flags,
        ..Default::default()
    };
    owned_fd(bpf(BPF_LINK_CREATE, &mut attr)?)
}

/// An `io::Error` of the same kind with `what` in front of its message.
pub(crate) fn context(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Insn {
    /// Opcode.
    pub code: u8,
    /// Destination register (low nibble) and source register (high nibble).
    pub regs: u8,
    /// Offset (memory access) or jump distance.
    pub off: i16,
    /// Immediate.
    pub imm: i32,
}

// Registers.
pub(crate) const R0: u8 = 0;
pub(crate) const R1: u8 = 1;
pub(crate) const R2: u8 = 2;
pub(crate) const R3: u8 = 3;
pub(crate) const R4: u8 = 4;
pub(crate) const R5: u8 = 5;
pub(crate) const R6: u8 = 6;
pub(crate) const R7: u8 = 7;
pub(crate) const R8: u8 = 8;
pub(crate) const FP: u8 = 10;

// Opcodes used by the programs.
/// `JMP | JEQ | K`.
pub(crate) const JEQ_IMM: u8 = 0x15;
/// `JMP | JNE | K`.
pub(crate) const JNE_IMM: u8 = 0x55;
/// `JMP | JA`.
pub(crate) const JA: u8 = 0x05;
/// `JMP | JGT | X` (unsigned `dst > src`).
pub(crate) const JGT_REG: u8 = 0x2d;
/// `JMP | EXIT`.
pub(crate) const EXIT: u8 = 0x95;
/// `JMP | CALL`.
pub(crate) const CALL: u8 = 0x85;
/// `LDX | MEM | B`, `H`, `W`, `DW`.
pub(crate) const LDX_B: u8 = 0x71;
pub(crate) const LDX_H: u8 = 0x69;
pub(crate) const LDX_W: u8 = 0x61;
pub(crate) const LDX_DW: u8 = 0x79;
/// `ST | MEM | H`, `DW` (store an immediate).
pub(crate) const ST_H: u8 = 0x6a;
pub(crate) const ST_DW: u8 = 0x7a;
/// `STX | MEM | W`, `DW` (store a register).
pub(crate) const STX_W: u8 = 0x63;
pub(crate) const STX_DW: u8 = 0x7b;
/// `ALU64 | AND | K`.
pub(crate) const AND_IMM: u8 = 0x57;
/// `ALU | END | TO_BE` (imm = width): network to host order on a
/// little-endian machine, nothing on a big-endian one.
pub(crate) const BE: u8 = 0xdc;

/// A tiny assembler: instructions, and forward jumps patched when their
/// label is placed.
#[derive(Default)]
pub(crate) struct Asm {
    pub insns: Vec<Insn>,
    /// (instruction index, label) of jumps waiting for their label.
    fixups: Vec<(usize, &'static str)>,
}

impl Asm {
    pub fn op(&mut self, code: u8, dst: u8, src: u8, off: i16, imm: i32) {
        self.insns.push(Insn {
            code,
            regs: dst | (src << 4),
            off,
            imm,
        });
    }
    pub fn mov_reg(&mut self, dst: u8, src: u8) {
        self.op(0xbf, dst, src, 0, 0); // ALU64 | MOV | X
    }
    pub fn mov_imm(&mut self, dst: u8, imm: i32) {
        self.op(0xb7, dst, 0, 0, imm); // ALU64 | MOV | K
    }
    pub fn add_imm(&mut self, dst: u8, imm: i32) {
        self.op(0x07, dst, 0, 0, imm); // ALU64 | ADD | K
    }
    pub fn call(&mut self, helper: i32) {
        self.op(CALL, 0, 0, 0, helper);
    }
    pub fn exit(&mut self) {
        self.op(EXIT, 0, 0, 0, 0);
    }
    pub fn ld_map_fd(&mut self, dst: u8, fd: RawFd) {
        self.op(0x18, dst, BPF_PSEUDO_MAP_FD, 0, fd); // LD | IMM | DW, two slots
        self.op(0, 0, 0, 0, 0);
    }
    /// A jump (`code`: a conditional jump against an immediate, or JA) to
    /// `label`.
    pub fn jump(&mut self, code: u8, dst: u8, imm: i32, label: &'static str) {
        self.fixups.push((self.insns.len(), label));
        self.op(code, dst, 0, 0, imm);
    }
    /// A conditional jump comparing two registers (`code` with `X`) to `label`.
    pub fn jump_reg(&mut self, code: u8, dst: u8, src: u8, label: &'static str) {
        self.fixups.push((self.insns.len(), label));
        self.op(code, dst, src, 0, 0);
    }
    pub fn label(&mut self, label: &'static str) {
        let here = self.insns.len();
        for (at, _) in self.fixups.iter().filter(|(_, l)| *l == label) {
            self.insns[*at].off = (here - at - 1) as i16;
        }
        self.fixups.retain(|(_, l)| *l != label);
    }
    /// The program; every jump must have met its label.
    pub fn finish(self) -> Vec<Insn> {
        debug_assert!(self.fixups.is_empty(), "every jump has its label");
        self.insns
    }
}

/// Every jump of `insns` lands inside the program, forward (a check for
/// tests of the programs).
#[cfg(test)]
pub(crate) fn jumps_land_inside(insns: &[Insn]) -> bool {
    insns.iter().enumerate().all(|(i, insn)| {
        let is_jump = insn.code & 0x07 == 0x05 && !matches!(insn.code, CALL | EXIT);
        if !is_jump {
            return true;
        }
        let target = i as i64 + 1 + i64::from(insn.off);
        target > i as i64 && (target as usize) < insns.len()
    })
}
