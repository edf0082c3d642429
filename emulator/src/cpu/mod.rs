//! The x86-64 CPU, 64-bit mode, user level: architectural state, operand access, the block cache and the run loop.
//!
//! Key decisions:
//! - Instructions are decoded by iced-x86 into basic blocks cached by guest address. A block ends at a control
//!   transfer, after `BLOCK_INSNS_MAX` instructions, or at the end of its 4 KiB page (an instruction that straddles
//!   two pages ends its block and marks both pages). Writing to a page that holds cached code drops that page's
//!   blocks before the next instruction runs, so self-modifying code works.
//! - Each instruction runs through a handler taken from a table indexed by `iced_x86::Code` (dispatch.rs); handlers
//!   live in one file per SDM instruction group. An instruction without a handler is a guest #UD.
//! - Exact counting: `Machine::run(budget)` retires exactly `budget` instructions unless the guest stops first.
//!   Each iteration of a REP-prefixed string instruction counts as one retired instruction (a REP instruction with a
//!   count of zero counts as one); when the budget ends mid-way, rip stays on the string instruction with rcx and
//!   the pointers showing the iterations done, exactly as after an interrupt on hardware (SDM Vol. 1, 7.3.9.2).
//! - Exceptions are precise: a handler reads and checks everything before it writes, so a faulting instruction
//!   leaves the state as it was (rip on the instruction, icount not advanced).

pub mod coverage;
pub mod cpuid;
mod dispatch;
pub mod flags;
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod jit;

mod alu;
mod bit;
mod control;
mod hint;
mod muldiv;
mod probe;
mod shift;
mod sse;
mod stack;
mod string;
mod system;
mod transfer;
pub mod x87;

use iced_x86::{
    Code, Decoder, DecoderError, DecoderOptions, FlowControl, Formatter, Instruction,
    IntelFormatter, OpKind, Register,
};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;

use crate::memory::{Access, FrameId, Memory, MemoryFault, PAGE_MASK, PAGE_SHIFT, PAGE_SIZE};
pub use dispatch::implemented_codes;
use flags::Flags;
pub use x87::X87;

/// General-purpose register numbers, in the SDM's encoding order.
pub const RAX: usize = 0;
pub const RCX: usize = 1;
pub const RDX: usize = 2;
pub const RBX: usize = 3;
pub const RSP: usize = 4;
pub const RBP: usize = 5;
pub const RSI: usize = 6;
pub const RDI: usize = 7;

/// The SDM's names of the 64-bit general-purpose registers, in encoding order.
pub const GPR_NAMES: [&str; 16] = [
    "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13",
    "r14", "r15",
];

/// Longest basic block, in instructions.
pub const BLOCK_INSNS_MAX: usize = 256;

/// MXCSR after reset: all exceptions masked, round to nearest (SDM Vol. 1, 10.2.3.1).
pub const MXCSR_DEFAULT: u32 = 0x1f80;

/// A guest exception: the CPU's answer to an instruction it cannot complete. A value, never a panic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exception {
    /// #DE: division by zero or a quotient too large.
    DivideError,
    /// #UD: an undefined or unimplemented instruction (also UD2).
    InvalidOpcode,
    /// #GP(0): a privileged instruction, a misaligned SSE operand, a non-canonical address.
    GeneralProtection,
    /// #PF.
    PageFault {
        addr: u64,
        access: Access,
        present: bool,
    },
    /// #MC: an access to a poisoned frame.
    MachineCheck { addr: u64, frame: FrameId },
    /// #BP: INT3.
    Breakpoint,
    /// #MF: an unmasked x87 floating-point exception.
    X87FloatingPoint,
    /// #XM: an unmasked SIMD floating-point exception.
    SimdFloatingPoint,
}

impl From<MemoryFault> for Exception {
    fn from(f: MemoryFault) -> Self {
        match f {
            MemoryFault::PageFault {
                addr,
                access,
                present,
            } => Exception::PageFault {
                addr,
                access,
                present,
            },
            MemoryFault::MachineCheck { addr, frame } => Exception::MachineCheck { addr, frame },
        }
    }
}

impl std::fmt::Display for Exception {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exception::DivideError => write!(f, "#DE divide error"),
            Exception::InvalidOpcode => write!(f, "#UD invalid or unimplemented instruction"),
            Exception::GeneralProtection => write!(f, "#GP general protection"),
            Exception::PageFault {
                addr,
                access,
                present,
            } => write!(
                f,
                "#PF page fault: {} at {addr:#x} ({})",
                match access {
                    Access::Read => "read",
                    Access::Write => "write",
                    Access::Execute => "execute",
                },
                if *present { "protection" } else { "not mapped" }
            ),
            Exception::MachineCheck { addr, frame } => {
                write!(
                    f,
                    "#MC machine check: poisoned frame {} at {addr:#x}",
                    frame.0
                )
            }
            Exception::Breakpoint => write!(f, "#BP breakpoint"),
            Exception::X87FloatingPoint => write!(f, "#MF x87 floating-point error"),
            Exception::SimdFloatingPoint => write!(f, "#XM SIMD floating-point exception"),
        }
    }
}

/// Operand kinds for handlers specialised at translation time (`Cpu::read_k`, `dispatch::Chooser`).
pub(crate) const OPK_REG: u8 = 0;
pub(crate) const OPK_MEM: u8 = 1;
pub(crate) const OPK_IMM: u8 = 2;

/// Operand `n`'s register through iced's fixed-position accessors: with `n` a constant this is one load, where
/// `Instruction::op_register(n)` is a bounds-checked lookup.
#[inline(always)]
pub(crate) fn op_reg(i: &Instruction, n: u32) -> Register {
    match n {
        0 => i.op0_register(),
        1 => i.op1_register(),
        2 => i.op2_register(),
        3 => i.op3_register(),
        _ => i.op4_register(),
    }
}

/// Operand `n`'s kind through iced's fixed-position accessors (see `op_reg`).
#[inline(always)]
pub(crate) fn op_kind_of(i: &Instruction, n: u32) -> OpKind {
    match n {
        0 => i.op0_kind(),
        1 => i.op1_kind(),
        2 => i.op2_kind(),
        3 => i.op3_kind(),
        _ => i.op4_kind(),
    }
}

/// The kind of operand `n` as one of `OPK_REG`, `OPK_MEM`, `OPK_IMM`.
#[inline]
pub(crate) fn op_shape(i: &Instruction, n: u32) -> u8 {
    match i.op_kind(n) {
        OpKind::Register => OPK_REG,
        OpKind::Memory => OPK_MEM,
        _ => OPK_IMM,
    }
}

/// Why a handler stopped the instruction stream: SYSCALL retired, or an exception.
///
/// Packed into two words (a non-zero code and an address) so that a handler's `Result<(), Stop>` comes back in
/// two registers instead of through memory: that return is on the path of every instruction. The code holds
/// the kind in bits 0..8; for #PF the access kind in bits 8..16 and `present` in bit 16; for #MC the frame in
/// bits 32..64. `addr` is the faulting address of #PF and #MC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stop {
    code: std::num::NonZeroU64,
    addr: u64,
}

const STOP_SYSCALL: u64 = 1;
const STOP_DIVIDE_ERROR: u64 = 2;
const STOP_INVALID_OPCODE: u64 = 3;
const STOP_GENERAL_PROTECTION: u64 = 4;
const STOP_PAGE_FAULT: u64 = 5;
const STOP_MACHINE_CHECK: u64 = 6;
const STOP_BREAKPOINT: u64 = 7;
const STOP_X87_FLOATING_POINT: u64 = 8;
const STOP_SIMD_FLOATING_POINT: u64 = 9;

impl Stop {
    /// SYSCALL retired; the OS layer takes over.
    pub(crate) const SYSCALL: Stop = Stop::pack(STOP_SYSCALL, 0);

    #[inline(always)]
    const fn pack(code: u64, addr: u64) -> Stop {
        match std::num::NonZeroU64::new(code) {
            Some(code) => Stop { code, addr },
            None => panic!("stop codes are non-zero"),
        }
    }

    #[inline]
    pub(crate) const fn exception(e: Exception) -> Stop {
        match e {
            Exception::DivideError => Stop::pack(STOP_DIVIDE_ERROR, 0),
            Exception::InvalidOpcode => Stop::pack(STOP_INVALID_OPCODE, 0),
            Exception::GeneralProtection => Stop::pack(STOP_GENERAL_PROTECTION, 0),
            Exception::PageFault {
                addr,
                access,
                present,
            } => {
                let access = match access {
                    Access::Read => 0,
                    Access::Write => 1,
                    Access::Execute => 2,
                };
                Stop::pack(STOP_PAGE_FAULT | access << 8 | (present as u64) << 16, addr)
            }
            Exception::MachineCheck { addr, frame } => {
                Stop::pack(STOP_MACHINE_CHECK | (frame.0 as u64) << 32, addr)
            }
            Exception::Breakpoint => Stop::pack(STOP_BREAKPOINT, 0),
            Exception::X87FloatingPoint => Stop::pack(STOP_X87_FLOATING_POINT, 0),
            Exception::SimdFloatingPoint => Stop::pack(STOP_SIMD_FLOATING_POINT, 0),
        }
    }

    #[inline(always)]
    pub(crate) fn is_syscall(self) -> bool {
        self.code.get() == STOP_SYSCALL
    }

    /// What `Machine::run` returns for this stop.
    pub(crate) fn to_exit(self) -> Exit {
        match self.to_exception() {
            None => Exit::Syscall,
            Some(e) => Exit::Exception(e),
        }
    }

    /// The exception this stop carries (`None` for SYSCALL).
    pub(crate) fn to_exception(self) -> Option<Exception> {
        let code = self.code.get();
        Some(match code & 0xff {
            STOP_DIVIDE_ERROR => Exception::DivideError,
            STOP_INVALID_OPCODE => Exception::InvalidOpcode,
            STOP_GENERAL_PROTECTION => Exception::GeneralProtection,
            STOP_PAGE_FAULT => Exception::PageFault {
                addr: self.addr,
                access: match (code >> 8) & 0xff {
                    0 => Access::Read,
                    1 => Access::Write,
                    _ => Access::Execute,
                },
                present: (code >> 16) & 1 != 0,
            },
            STOP_MACHINE_CHECK => Exception::MachineCheck {
                addr: self.addr,
                frame: FrameId((code >> 32) as u32),
            },
            STOP_BREAKPOINT => Exception::Breakpoint,
            STOP_X87_FLOATING_POINT => Exception::X87FloatingPoint,
            STOP_SIMD_FLOATING_POINT => Exception::SimdFloatingPoint,
            _ => return None,
        })
    }
}

impl From<MemoryFault> for Stop {
    #[inline]
    fn from(f: MemoryFault) -> Self {
        Stop::exception(f.into())
    }
}

impl From<Exception> for Stop {
    #[inline]
    fn from(e: Exception) -> Self {
        Stop::exception(e)
    }
}

pub(crate) type Handler = fn(&mut Cpu, &Insn) -> Result<(), Stop>;

/// Why `Machine::run` returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Exactly the requested number of instructions retired.
    BudgetExhausted,
    /// A SYSCALL instruction retired; rip is after it, the syscall number is in rax.
    Syscall,
    /// An instruction raised an exception; rip is on it and it did not retire.
    Exception(Exception),
}

/// The `rdrand` stream of the first address space of a run.
pub const RDRAND_STREAM: &str = "cpu.rdrand";

/// Fixed configuration of the CPU model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuConfig {
    /// Seed of the `rdrand` stream.
    pub seed: u64,
    /// Name of the `rdrand` stream (each address space of a guest draws from its own).
    pub rdrand_stream: String,
    /// Time-stamp counter ticks per retired instruction (RDTSC reads `icount * tsc_per_insn`).
    pub tsc_per_insn: u64,
    /// What CPUID answers.
    pub cpuid: cpuid::CpuidModel,
}

impl Default for CpuConfig {
    fn default() -> Self {
        CpuConfig {
            seed: 0,
            rdrand_stream: RDRAND_STREAM.to_string(),
            tsc_per_insn: 1,
            cpuid: cpuid::CpuidModel::default(),
        }
    }
}

/// Derives a named random stream from a root seed: the determinism contract's "one root seed, one stream per
/// consumer". The key is the seed's bytes followed by FNV-1a of the name, so streams of different names are
/// independent and extra draws in one never shift another.
pub fn named_stream(seed: u64, name: &str) -> ChaCha20Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    let mut h = crate::memory::Fnv::new();
    h.write_bytes(name.as_bytes());
    key[8..16].copy_from_slice(&h.finish().to_le_bytes());
    key[16..24].copy_from_slice(&(name.len() as u64).to_le_bytes());
    ChaCha20Rng::from_seed(key)
}

/// The architectural register state of one thread: what a context switch saves and restores, what a snapshot
/// and a core dump copy. A plain value, apart from the engine that runs it (`Cpu`, which holds the running
/// thread's `CpuState` in `regs` beside the memory, block cache and counters that the threads of an address space
/// share), so that switching threads is a swap of this value.
#[derive(Clone, Debug)]
pub struct CpuState {
    pub gpr: [u64; 16],
    pub rip: u64,
    pub flags: Flags,
    pub fs_base: u64,
    pub gs_base: u64,
    pub xmm: [u128; 16],
    pub mxcsr: u32,
    pub x87: X87,
}

impl Default for CpuState {
    /// The state after reset as Linux hands it to a new program (SDM Vol. 3A, 9.1.1; the ABI's initial MXCSR and
    /// x87 control word).
    fn default() -> Self {
        CpuState {
            gpr: [0; 16],
            rip: 0,
            flags: Flags::default(),
            fs_base: 0,
            gs_base: 0,
            xmm: [0; 16],
            mxcsr: MXCSR_DEFAULT,
            x87: X87::default(),
        }
    }
}

impl CpuState {
    /// The registers in their canonical form (rflags computed): what a debugger or a core dump shows of a
    /// thread, running or not.
    pub fn registers(&self) -> Registers {
        Registers {
            gpr: self.gpr,
            rip: self.rip,
            rflags: self.flags.rflags(),
            fs_base: self.fs_base,
            gs_base: self.gs_base,
            xmm: self.xmm,
            mxcsr: self.mxcsr,
            x87: self.x87.clone(),
        }
    }

    /// Loads the registers from their canonical form (every rflags bit from `r`).
    pub fn set_registers(&mut self, r: &Registers) {
        self.gpr = r.gpr;
        self.rip = r.rip;
        self.flags.set_rflags(r.rflags, !0);
        self.fs_base = r.fs_base;
        self.gs_base = r.gs_base;
        self.xmm = r.xmm;
        self.mxcsr = r.mxcsr;
        self.x87 = r.x87.clone();
    }
}

/// The engine of one address space: the running thread's registers, the memory they run on, and the
/// instruction counters.
pub struct Cpu {
    /// The registers of the thread now running on this address space.
    pub regs: CpuState,
    /// Retired instructions since the machine started.
    pub icount: u64,
    pub mem: Memory,
    pub config: CpuConfig,
    /// The icount at which the current `run` must stop (REP string instructions read it).
    pub(crate) icount_end: u64,
    pub(crate) rdrand: ChaCha20Rng,
    /// The status flags while compiled code runs (see jit.rs): read at every exit and helper call.
    pub(crate) jit_flags: u64,
    /// Why a helper called from compiled code stopped.
    pub(crate) jit_stop: Option<Stop>,
    /// Edge coverage and comparison constants, collected while set (coverage.rs). Here rather than in
    /// `Machine` so that compiled code, which has only the `Cpu`, records its blocks' edges itself
    /// (`jit::record_edge`) and compiled blocks keep chaining while coverage is on.
    pub(crate) coverage: Option<Box<coverage::Coverage>>,
}

/// A copy of the CPU registers (not memory), for checkpoints and divergence reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registers {
    pub gpr: [u64; 16],
    pub rip: u64,
    pub rflags: u64,
    pub fs_base: u64,
    pub gs_base: u64,
    pub xmm: [u128; 16],
    pub mxcsr: u32,
    pub x87: X87,
}

const K_NONE: u8 = 0;
const K_GPR8: u8 = 1;
const K_GPR8_HIGH: u8 = 2;
const K_GPR16: u8 = 3;
const K_GPR32: u8 = 4;
const K_GPR64: u8 = 5;
const K_XMM: u8 = 6;

#[derive(Clone, Copy)]
struct RegInfo {
    kind: u8,
    index: u8,
}

/// Register kind and index by `iced_x86::Register` number (a unit test checks this against iced's own tables).
const REG_INFO: [RegInfo; 256] = {
    let mut t = [RegInfo {
        kind: K_NONE,
        index: 0,
    }; 256];
    let mut i = 0;
    while i < 16 {
        t[Register::RAX as usize + i] = RegInfo {
            kind: K_GPR64,
            index: i as u8,
        };
        t[Register::EAX as usize + i] = RegInfo {
            kind: K_GPR32,
            index: i as u8,
        };
        t[Register::AX as usize + i] = RegInfo {
            kind: K_GPR16,
            index: i as u8,
        };
        t[Register::XMM0 as usize + i] = RegInfo {
            kind: K_XMM,
            index: i as u8,
        };
        i += 1;
    }
    // AL, CL, DL, BL; AH, CH, DH, BH; SPL, BPL, SIL, DIL; R8L..R15L.
    let mut j = 0;
    while j < 4 {
        t[Register::AL as usize + j] = RegInfo {
            kind: K_GPR8,
            index: j as u8,
        };
        t[Register::AH as usize + j] = RegInfo {
            kind: K_GPR8_HIGH,
            index: j as u8,
        };
        t[Register::SPL as usize + j] = RegInfo {
            kind: K_GPR8,
            index: (j + 4) as u8,
        };
        j += 1;
    }
    let mut k = 0;
    while k < 8 {
        t[Register::R8L as usize + k] = RegInfo {
            kind: K_GPR8,
            index: (k + 8) as u8,
        };
        k += 1;
    }
    t
};

impl Cpu {
    pub fn new(mem: Memory, config: CpuConfig) -> Cpu {
        let rdrand = named_stream(config.seed, &config.rdrand_stream);
        Cpu {
            regs: CpuState::default(),
            icount: 0,
            mem,
            config,
            icount_end: u64::MAX,
            rdrand,
            jit_flags: 0,
            jit_stop: None,
            coverage: None,
        }
    }

    pub fn rflags(&self) -> u64 {
        self.regs.flags.rflags()
    }

    pub fn registers(&self) -> Registers {
        self.regs.registers()
    }

    pub fn set_registers(&mut self, r: &Registers) {
        self.regs.set_registers(r);
    }

    /// A digest of registers and memory, stable across platforms: the "final state hash" of a run.
    pub fn state_hash(&self) -> u64 {
        let mut h = self.registers_fnv();
        h.write_u64(self.mem.digest());
        h.finish()
    }

    /// A digest of what `state_hash` covers except memory (registers and icount), for callers that digest
    /// memory incrementally themselves (fault-tolerant replicas).
    pub fn registers_hash(&self) -> u64 {
        self.registers_fnv().finish()
    }

    fn registers_fnv(&self) -> crate::memory::Fnv {
        let mut h = crate::memory::Fnv::new();
        for g in self.regs.gpr {
            h.write_u64(g);
        }
        for v in [
            self.regs.rip,
            self.rflags(),
            self.regs.fs_base,
            self.regs.gs_base,
            self.regs.mxcsr as u64,
            self.icount,
        ] {
            h.write_u64(v);
        }
        for x in self.regs.xmm {
            h.write_u64(x as u64);
            h.write_u64((x >> 64) as u64);
        }
        self.regs.x87.hash_into(&mut h);
        h
    }

    // -------------------------------------------------------------------------------------------------------------
    // Registers by iced name.

    #[inline(always)]
    pub fn read_reg(&self, r: Register) -> u64 {
        let info = REG_INFO[r as usize];
        let v = self.regs.gpr[(info.index & 15) as usize];
        match info.kind {
            K_GPR64 => v,
            K_GPR32 => v as u32 as u64,
            K_GPR16 => v as u16 as u64,
            K_GPR8 => v as u8 as u64,
            K_GPR8_HIGH => (v >> 8) as u8 as u64,
            K_XMM => self.regs.xmm[(info.index & 15) as usize] as u64,
            _ => 0,
        }
    }

    /// Writes a general-purpose register with the SDM's width rules: a 32-bit write zero-extends into the whole
    /// register, 8- and 16-bit writes leave the other bits alone.
    #[inline(always)]
    pub fn write_reg(&mut self, r: Register, v: u64) {
        let info = REG_INFO[r as usize];
        let g = &mut self.regs.gpr[(info.index & 15) as usize];
        match info.kind {
            K_GPR64 => *g = v,
            K_GPR32 => *g = v as u32 as u64,
            K_GPR16 => *g = (*g & !0xffff) | (v & 0xffff),
            K_GPR8 => *g = (*g & !0xff) | (v & 0xff),
            K_GPR8_HIGH => *g = (*g & !0xff00) | ((v & 0xff) << 8),
            _ => {}
        }
    }

    /// Reads a general-purpose register whose width the caller knows (`size` is a constant in every handler, so
    /// this folds to one load; only 8-bit reads check for AH..BH).
    #[inline(always)]
    pub fn read_gpr_sized(&self, r: Register, size: u8) -> u64 {
        let info = REG_INFO[r as usize];
        let v = self.regs.gpr[(info.index & 15) as usize];
        match size {
            8 => v,
            4 => v as u32 as u64,
            2 => v as u16 as u64,
            _ => {
                if info.kind == K_GPR8_HIGH {
                    (v >> 8) as u8 as u64
                } else {
                    v as u8 as u64
                }
            }
        }
    }

    /// Writes a general-purpose register whose width the caller knows, with the SDM's width rules.
    #[inline(always)]
    pub fn write_gpr_sized(&mut self, r: Register, size: u8, v: u64) {
        let info = REG_INFO[r as usize];
        let g = &mut self.regs.gpr[(info.index & 15) as usize];
        match size {
            8 => *g = v,
            4 => *g = v as u32 as u64,
            2 => *g = (*g & !0xffff) | (v & 0xffff),
            _ => {
                if info.kind == K_GPR8_HIGH {
                    *g = (*g & !0xff00) | ((v & 0xff) << 8)
                } else {
                    *g = (*g & !0xff) | (v & 0xff)
                }
            }
        }
    }

    /// The XMM register number of an iced register (XMM0..XMM15).
    #[inline(always)]
    pub fn xmm_index(r: Register) -> usize {
        (REG_INFO[r as usize].index & 15) as usize
    }

    // -------------------------------------------------------------------------------------------------------------
    // Operands.

    /// The effective (linear) address of the instruction's memory operand: the offset (`ea_offset`) plus the FS
    /// or GS base.
    #[inline(always)]
    pub(crate) fn ea(&self, i: &Insn) -> u64 {
        let a = self.ea_offset(i);
        match i.ea_seg {
            SEG_NONE => a,
            SEG_FS => a.wrapping_add(self.regs.fs_base),
            _ => a.wrapping_add(self.regs.gs_base),
        }
    }

    /// The offset part of the memory operand: base + index * scale + displacement, truncated to 32 bits under an
    /// address-size prefix. RIP-relative operands come from iced already resolved against the instruction's
    /// address. LEA stores exactly this. Branch-free over the facts `Insn::new` precomputed.
    #[inline(always)]
    pub(crate) fn ea_offset(&self, i: &Insn) -> u64 {
        let base = self.regs.gpr[(i.ea_base & 15) as usize] & i.ea_base_mask;
        let index =
            (self.regs.gpr[(i.ea_index & 15) as usize] & i.ea_index_mask) << (i.ea_scale_shift & 3);
        i.instr
            .memory_displacement64()
            .wrapping_add(base)
            .wrapping_add(index)
            & i.ea_addr_mask
    }

    /// Reads operand `n`'s register, of a width the caller knows (`size` is a constant in every handler).
    #[inline(always)]
    pub(crate) fn read_reg_k(&self, i: &Insn, n: u32, size: u8) -> u64 {
        let v = self.regs.gpr[(i.reg[(n & 3) as usize] & 15) as usize];
        match size {
            8 => v,
            4 => v as u32 as u64,
            2 => v as u16 as u64,
            _ => {
                if i.reg_high8 & (1 << n) != 0 {
                    (v >> 8) as u8 as u64
                } else {
                    v as u8 as u64
                }
            }
        }
    }

    /// Writes operand `n`'s register, of a width the caller knows, with the SDM's width rules.
    #[inline(always)]
    pub(crate) fn write_reg_k(&mut self, i: &Insn, n: u32, size: u8, v: u64) {
        let g = &mut self.regs.gpr[(i.reg[(n & 3) as usize] & 15) as usize];
        match size {
            8 => *g = v,
            4 => *g = v as u32 as u64,
            2 => *g = (*g & !0xffff) | (v & 0xffff),
            _ => {
                if i.reg_high8 & (1 << n) != 0 {
                    *g = (*g & !0xff00) | ((v & 0xff) << 8)
                } else {
                    *g = (*g & !0xff) | (v & 0xff)
                }
            }
        }
    }

    /// Reads operand `n` as an unsigned value of `size` bytes. Immediates come sign-extended by iced to the
    /// operand size and are truncated to it here.
    #[inline(always)]
    pub(crate) fn read_op(&mut self, i: &Insn, n: u32, size: u8) -> Result<u64, MemoryFault> {
        match op_kind_of(i, n) {
            OpKind::Register => Ok(self.read_reg(op_reg(i, n))),
            OpKind::Memory => {
                let a = self.ea(i);
                self.mem.read_sized(a, size as u32)
            }
            OpKind::Immediate8_2nd => Ok(i.immediate8_2nd() as u64),
            _ => Ok(i.immediate(n) & flags::mask(size)),
        }
    }

    /// Reads operand `n` whose kind the caller knows: `K` is `OPK_REG`, `OPK_MEM` or `OPK_IMM` (see `op_shape`).
    /// An `OPK_IMM` operand is the instruction's first immediate.
    #[inline(always)]
    pub(crate) fn read_k<const K: u8>(
        &mut self,
        i: &Insn,
        n: u32,
        size: u8,
    ) -> Result<u64, MemoryFault> {
        match K {
            OPK_REG => Ok(self.read_reg_k(i, n, size)),
            OPK_MEM => {
                let a = self.ea(i);
                self.mem.read_sized(a, size as u32)
            }
            _ => Ok(i.imm & flags::mask(size)),
        }
    }

    /// Writes operand `n` whose kind the caller knows (`OPK_REG` or `OPK_MEM`).
    #[inline(always)]
    pub(crate) fn write_k<const K: u8>(
        &mut self,
        i: &Insn,
        n: u32,
        size: u8,
        v: u64,
    ) -> Result<(), MemoryFault> {
        if K == OPK_REG {
            self.write_reg_k(i, n, size, v);
            Ok(())
        } else {
            let a = self.ea(i);
            self.mem.write_sized(a, size as u32, v)
        }
    }

    /// Writes operand `n` (a register or memory).
    #[inline(always)]
    pub(crate) fn write_op(
        &mut self,
        i: &Insn,
        n: u32,
        size: u8,
        v: u64,
    ) -> Result<(), MemoryFault> {
        match op_kind_of(i, n) {
            OpKind::Register => {
                self.write_reg(op_reg(i, n), v);
                Ok(())
            }
            _ => {
                let a = self.ea(i);
                self.mem.write_sized(a, size as u32, v)
            }
        }
    }

    // -------------------------------------------------------------------------------------------------------------
    // Stack.

    #[inline(always)]
    pub(crate) fn push64(&mut self, v: u64) -> Result<(), MemoryFault> {
        let sp = self.regs.gpr[RSP].wrapping_sub(8);
        self.mem.write_u64(sp, v)?;
        self.regs.gpr[RSP] = sp;
        Ok(())
    }

    #[inline(always)]
    pub(crate) fn pop64(&mut self) -> Result<u64, MemoryFault> {
        let v = self.mem.read_u64(self.regs.gpr[RSP])?;
        self.regs.gpr[RSP] = self.regs.gpr[RSP].wrapping_add(8);
        Ok(v)
    }
}

/// A decoded instruction with facts about its operands worked out once, at translation time, so that handlers do
/// not re-derive them from iced's generic accessors each time the instruction runs. Dereferences to the iced
/// `Instruction` for everything else.
pub(crate) struct Insn {
    pub(crate) instr: Instruction,
    /// The value of the first immediate operand as iced gives it (`Instruction::immediate`: sign-extended to 64
    /// bits where the encoding sign-extends); zero when there is none.
    pub(crate) imm: u64,
    /// Memory operand: all ones when it has a base register (other than RIP/EIP, whose target iced folds into
    /// the displacement), else zero.
    pub(crate) ea_base_mask: u64,
    /// All ones when the memory operand has an index register, else zero.
    pub(crate) ea_index_mask: u64,
    /// 0xffff_ffff under a 32-bit address size (a 32-bit base or index, or EIP-relative), else all ones. The
    /// truncation after the full-width sum gives the same result as adding 32-bit registers, modulo 2^32.
    pub(crate) ea_addr_mask: u64,
    /// General-purpose register numbers (0..15) of the base and index registers.
    pub(crate) ea_base: u8,
    pub(crate) ea_index: u8,
    /// log2 of the index scale.
    pub(crate) ea_scale_shift: u8,
    /// Segment base added to the offset: `SEG_NONE`, `SEG_FS` or `SEG_GS`.
    pub(crate) ea_seg: u8,
    /// General-purpose register number (0..15) of operands 0..3 that are registers.
    pub(crate) reg: [u8; 4],
    /// Bit n set when operand n is AH, CH, DH or BH.
    pub(crate) reg_high8: u8,
}

pub(crate) const SEG_NONE: u8 = 0;
pub(crate) const SEG_FS: u8 = 1;
pub(crate) const SEG_GS: u8 = 2;

impl std::ops::Deref for Insn {
    type Target = Instruction;
    #[inline(always)]
    fn deref(&self) -> &Instruction {
        &self.instr
    }
}

/// Whether an operand is an immediate (of any width or sign extension).
pub(crate) fn is_immediate(kind: OpKind) -> bool {
    matches!(
        kind,
        OpKind::Immediate8
            | OpKind::Immediate16
            | OpKind::Immediate32
            | OpKind::Immediate64
            | OpKind::Immediate8to16
            | OpKind::Immediate8to32
            | OpKind::Immediate8to64
            | OpKind::Immediate32to64
    )
}

impl Insn {
    pub(crate) fn new(instr: Instruction) -> Insn {
        let mut insn = Insn {
            instr,
            imm: 0,
            ea_base_mask: 0,
            ea_index_mask: 0,
            ea_addr_mask: u64::MAX,
            ea_base: 0,
            ea_index: 0,
            ea_scale_shift: 0,
            ea_seg: SEG_NONE,
            reg: [0; 4],
            reg_high8: 0,
        };
        let mut imm_found = false;
        for n in 0..instr.op_count().min(4) {
            match instr.op_kind(n) {
                OpKind::Register => {
                    let info = REG_INFO[instr.op_register(n) as usize];
                    insn.reg[n as usize] = info.index & 15;
                    if info.kind == K_GPR8_HIGH {
                        insn.reg_high8 |= 1 << n;
                    }
                }
                kind if is_immediate(kind) && !imm_found => {
                    insn.imm = instr.immediate(n);
                    imm_found = true;
                }
                _ => {}
            }
        }
        let base = instr.memory_base();
        if base != Register::None {
            let info = REG_INFO[base as usize];
            match info.kind {
                K_GPR64 | K_GPR32 => {
                    insn.ea_base_mask = u64::MAX;
                    insn.ea_base = info.index & 15;
                    if info.kind == K_GPR32 {
                        insn.ea_addr_mask = 0xffff_ffff;
                    }
                }
                _ => {
                    if base == Register::EIP {
                        insn.ea_addr_mask = 0xffff_ffff;
                    }
                }
            }
        }
        let index = instr.memory_index();
        if index != Register::None {
            let info = REG_INFO[index as usize];
            insn.ea_index_mask = u64::MAX;
            insn.ea_index = info.index & 15;
            if info.kind == K_GPR32 {
                insn.ea_addr_mask = 0xffff_ffff;
            }
            insn.ea_scale_shift = instr.memory_index_scale().trailing_zeros() as u8;
        }
        insn.ea_seg = match instr.memory_segment() {
            Register::FS => SEG_FS,
            Register::GS => SEG_GS,
            _ => SEG_NONE,
        };
        insn
    }
}

/// One decoded instruction and its handler.
pub(crate) struct Decoded {
    instr: Insn,
    handler: Handler,
}

struct Block {
    insns: Box<[Decoded]>,
    jit: JitState,
    /// How the block ends: in a control transfer (an edge when it retires: coverage.rs), and which kind.
    transfer: coverage::Transfer,
}

/// Whether a block has been compiled to host code (jit.rs).
#[derive(Clone, Copy)]
enum JitState {
    /// Not yet: how many times the block ran whole.
    Cold(u32),
    /// The function the run loop calls and the address other compiled blocks chain to.
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    Compiled(jit::JitFn, u64),
    /// Nothing in it runs natively.
    Never,
}

/// What the run loop does after offering a block to the compiled-code path.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
enum JitOutcome {
    /// The block is not compiled: interpret it.
    Interpret,
    /// Compiled code ran one or more blocks; go on at rip.
    Done,
    /// Compiled code left an instruction to the interpreter, at rip: interpret the next block.
    Side,
    /// The run ends.
    Exit(Exit),
}

/// Runs of a block before it is compiled: compiling costs about as much as interpreting a few thousand
/// instructions, so only blocks that run again and again are worth it.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
const JIT_THRESHOLD: u32 = 32;

/// Entries of the direct-mapped jump cache in front of `slot_by_rip`.
const JUMP_CACHE_ENTRIES: usize = 4096;

#[derive(Clone, Copy)]
struct JumpCacheEntry {
    /// Block start address; `u64::MAX` when empty (never a block start: a block needs at least one byte).
    rip: u64,
    slot: u32,
}

/// Decoded blocks in a slab, their slot by start address, and which blocks each page holds (for invalidation).
struct BlockCache {
    /// Recently run blocks by start address: one compare instead of a hash lookup on the common path.
    jump_cache: Box<[JumpCacheEntry; JUMP_CACHE_ENTRIES]>,
    slab: Vec<Block>,
    free_slots: Vec<u32>,
    /// Lookup only, never iterated: its order cannot reach an output.
    slot_by_rip: FxHashMap<u64, u32>,
    by_page: BTreeMap<u64, Vec<u64>>,
}

impl Default for BlockCache {
    fn default() -> Self {
        BlockCache {
            jump_cache: Box::new(
                [JumpCacheEntry {
                    rip: u64::MAX,
                    slot: 0,
                }; JUMP_CACHE_ENTRIES],
            ),
            slab: Vec::new(),
            free_slots: Vec::new(),
            slot_by_rip: FxHashMap::default(),
            by_page: BTreeMap::new(),
        }
    }
}

#[inline(always)]
fn jump_cache_index(rip: u64) -> usize {
    ((rip ^ (rip >> 12)) as usize) & (JUMP_CACHE_ENTRIES - 1)
}

impl BlockCache {
    #[inline(always)]
    fn lookup(&mut self, rip: u64) -> Option<u32> {
        let e = &mut self.jump_cache[jump_cache_index(rip)];
        if e.rip == rip {
            return Some(e.slot);
        }
        let slot = *self.slot_by_rip.get(&rip)?;
        *e = JumpCacheEntry { rip, slot };
        Some(slot)
    }

    fn insert(&mut self, rip: u64, block: Block) -> u32 {
        let slot = match self.free_slots.pop() {
            Some(s) => {
                self.slab[s as usize] = block;
                s
            }
            None => {
                self.slab.push(block);
                (self.slab.len() - 1) as u32
            }
        };
        self.slot_by_rip.insert(rip, slot);
        slot
    }

    /// Drops the blocks that hold code of page `vpn`; returns their start addresses.
    fn invalidate_page(&mut self, vpn: u64) -> Vec<u64> {
        let mut dropped = Vec::new();
        if let Some(starts) = self.by_page.remove(&vpn) {
            for s in starts {
                dropped.push(s);
                if let Some(slot) = self.slot_by_rip.remove(&s) {
                    let e = &mut self.jump_cache[jump_cache_index(s)];
                    if e.rip == s {
                        e.rip = u64::MAX;
                    }
                    self.slab[slot as usize].insns = Box::new([]);
                    self.slab[slot as usize].jit = JitState::Never;
                    self.slab[slot as usize].transfer = coverage::Transfer::None;
                    self.free_slots.push(slot);
                }
            }
        }
        dropped
    }
}

/// Counters of the block cache, for --stats and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub blocks_translated: u64,
    pub pages_invalidated: u64,
}

/// A CPU with its block cache: the unit that runs guest code.
pub struct Machine {
    pub cpu: Cpu,
    cache: BlockCache,
    pub cache_stats: CacheStats,
    /// Run hot blocks as compiled host code (on by default where the host is x86-64 Linux).
    jit_enabled: bool,
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    jit_code: Option<jit::CodeBuffer>,
    /// Static exits of compiled blocks by target address. Lookup only, never iterated into an output.
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    jit_links: FxHashMap<u64, Vec<jit::Link>>,
    /// `cache_stats.pages_invalidated` when the cache was last emptied or kept across a restore: unchanged
    /// means no cached code page was written or unmapped since.
    invalidated_at_restore: u64,
}

impl Machine {
    pub fn new(cpu: Cpu) -> Machine {
        Machine {
            cpu,
            cache: BlockCache::default(),
            cache_stats: CacheStats::default(),
            jit_enabled: cfg!(all(target_arch = "x86_64", target_os = "linux")),
            #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
            jit_code: None,
            #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
            jit_links: FxHashMap::default(),
            invalidated_at_restore: 0,
        }
    }

    /// The frame under each page that holds cached blocks, in page order: a restore that leaves every one of
    /// them in place (and no code page was written since the last restore) may keep the cache.
    pub(crate) fn code_page_frames(&self) -> Vec<(u64, Option<FrameId>)> {
        self.cache
            .by_page
            .keys()
            .map(|&vpn| (vpn, self.cpu.mem.frame_of(vpn << PAGE_SHIFT)))
            .collect()
    }

    /// No cached code page was written or unmapped since the cache was last emptied or kept.
    pub(crate) fn code_unchanged_since_restore(&self) -> bool {
        self.cache_stats.pages_invalidated == self.invalidated_at_restore
    }

    /// Keeps the cached and compiled blocks across a restore of memory that left the same frames under every
    /// code page (`code_page_frames` equal before and after): the pages are marked as code again, so that a
    /// write to one drops its blocks as before.
    pub(crate) fn keep_code_after_restore(&mut self) {
        self.cpu.mem.code_writes.clear();
        for &vpn in self.cache.by_page.keys() {
            self.cpu.mem.mark_code_page(vpn << PAGE_SHIFT);
        }
        self.invalidated_at_restore = self.cache_stats.pages_invalidated;
    }

    /// Starts (Some) or stops (None) collecting edge coverage; returns what was collected so far. Starting or
    /// stopping drops the code cache: compiled blocks record their edges only when compiled with coverage on.
    pub fn set_coverage(
        &mut self,
        coverage: Option<Box<coverage::Coverage>>,
    ) -> Option<Box<coverage::Coverage>> {
        if coverage.is_some() != self.cpu.coverage.is_some() {
            self.flush_code_cache();
        }
        std::mem::replace(&mut self.cpu.coverage, coverage)
    }

    /// The coverage being collected, if any.
    pub fn coverage(&self) -> Option<&coverage::Coverage> {
        self.cpu.coverage.as_deref()
    }

    pub fn coverage_mut(&mut self) -> Option<&mut coverage::Coverage> {
        self.cpu.coverage.as_deref_mut()
    }

    /// Turns the block compiler on or off. Results are identical either way (tests hold it to that); off, every
    /// instruction is interpreted.
    pub fn set_jit(&mut self, on: bool) {
        self.jit_enabled = on && cfg!(all(target_arch = "x86_64", target_os = "linux"));
    }

    pub fn jit_enabled(&self) -> bool {
        self.jit_enabled
    }

    /// Drops every cached block (after the OS layer replaced memory wholesale, such as a checkpoint restore).
    pub fn flush_code_cache(&mut self) {
        self.cache = BlockCache::default();
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        if let Some(code) = &mut self.jit_code {
            code.reset();
        }
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        self.jit_links.clear();
        self.cpu.mem.code_writes.clear();
        self.invalidated_at_restore = self.cache_stats.pages_invalidated;
    }

    /// The cached blocks by start address with how many times each ran whole, counted up to the compile
    /// threshold (a compiled block counts as the threshold): the hot blocks of a usage profile
    /// (replay/src/pools). Blocks the compiler refuses are left out. In address order.
    pub fn hot_blocks(&self) -> Vec<(u64, u32)> {
        let mut out: Vec<(u64, u32)> = self
            .cache
            .slab
            .iter()
            .filter_map(|b| {
                let rip = b.insns.first()?.instr.ip();
                match b.jit {
                    JitState::Cold(n) => Some((rip, n)),
                    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
                    JitState::Compiled(..) => Some((rip, JIT_THRESHOLD)),
                    JitState::Never => None,
                }
            })
            .collect();
        out.sort_unstable();
        out
    }

    /// Decodes and compiles the blocks that start at `rips` now, ahead of their first run, instead of after
    /// they ran whole 32 times: a warm instance's warmup. Changes nothing observable (compiled blocks are held
    /// to the interpreter bit for bit); an address whose page is not mapped or not executable is skipped, as is
    /// everything when the block compiler is off. Returns the blocks compiled.
    pub fn precompile(&mut self, rips: &[u64]) -> usize {
        let mut compiled = 0;
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        for &rip in rips {
            if !self.jit_enabled {
                break;
            }
            let slot = match self.cache.lookup(rip) {
                Some(slot) => slot,
                None => match self.translate(rip) {
                    Ok(slot) => slot,
                    Err(_) => continue,
                },
            };
            if matches!(self.cache.slab[slot as usize].jit, JitState::Cold(_))
                && self.compile(slot).is_some()
            {
                compiled += 1;
            }
        }
        let _ = rips;
        compiled
    }

    fn apply_code_writes(&mut self) {
        while let Some(vpn) = self.cpu.mem.code_writes.pop() {
            let dropped = self.cache.invalidate_page(vpn);
            self.cache_stats.pages_invalidated += 1;
            // Compiled blocks that chained to a dropped block exit to the run loop again.
            #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
            for rip in dropped {
                if let Some(incoming) = self.jit_links.get(&rip) {
                    for link in incoming {
                        // SAFETY: cells of blocks in the live buffer; no compiled code is running.
                        unsafe { jit::patch(link, link.stub) };
                    }
                }
            }
            #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
            let _ = dropped;
        }
    }

    /// Decodes the block starting at `rip` into the cache and returns its slot.
    fn translate(&mut self, rip: u64) -> Result<u32, Exception> {
        let page_end = (rip | PAGE_MASK).wrapping_add(1);
        let in_page = if page_end == 0 {
            (PAGE_SIZE as u64 - (rip & PAGE_MASK)) as usize
        } else {
            (page_end - rip) as usize
        };
        let mut buf = [0u8; PAGE_SIZE + 15];
        self.cpu.mem.fetch_bytes(rip, &mut buf[..in_page])?;
        // Up to 14 more bytes from the next page, for an instruction that straddles the boundary.
        let extra = if page_end != 0
            && self
                .cpu
                .mem
                .fetch_bytes(page_end, &mut buf[in_page..in_page + 14])
                .is_ok()
        {
            14
        } else {
            0
        };
        let mut decoder = Decoder::with_ip(64, &buf[..in_page + extra], rip, DecoderOptions::NONE);
        let mut insns: Vec<Decoded> = Vec::new();
        let mut straddles = false;
        while insns.len() < BLOCK_INSNS_MAX && decoder.can_decode() {
            let mut instr = Instruction::default();
            decoder.decode_out(&mut instr);
            if instr.ip() >= page_end && page_end != 0 {
                break;
            }
            let error = decoder.last_error();
            if error != DecoderError::None {
                if !insns.is_empty() {
                    break;
                }
                if error == DecoderError::NoMoreBytes && extra == 0 && page_end != 0 {
                    // The instruction runs into a page that cannot be fetched.
                    return Err(Exception::PageFault {
                        addr: page_end,
                        access: Access::Execute,
                        present: self.cpu.mem.is_mapped(page_end),
                    });
                }
                insns.push(Decoded {
                    instr: Insn::new(undecodable_at(rip)),
                    handler: dispatch::invalid_opcode,
                });
                break;
            }
            let instr = Insn::new(instr);
            let handler = dispatch::handler_for(&instr);
            // A REP string instruction ends its block: the budget may stop it mid-way with rip on itself.
            let ends_block = instr.flow_control() != FlowControl::Next
                || (instr.is_string_instruction()
                    && (instr.has_rep_prefix()
                        || instr.has_repe_prefix()
                        || instr.has_repne_prefix()));
            if instr.next_ip() > page_end && page_end != 0 {
                straddles = true;
            }
            insns.push(Decoded { instr, handler });
            if ends_block || straddles {
                break;
            }
        }
        if insns.is_empty() {
            // can_decode() was false at once: not reachable with in_page >= 1, but never panic on it.
            insns.push(Decoded {
                instr: Insn::new(undecodable_at(rip)),
                handler: dispatch::invalid_opcode,
            });
        }
        let vpn = rip >> PAGE_SHIFT;
        self.cpu.mem.mark_code_page(rip);
        self.cache.by_page.entry(vpn).or_default().push(rip);
        if straddles {
            self.cpu.mem.mark_code_page(page_end);
            self.cache
                .by_page
                .entry(page_end >> PAGE_SHIFT)
                .or_default()
                .push(rip);
        }
        self.cache_stats.blocks_translated += 1;
        if let Some(c) = &mut self.cpu.coverage {
            for d in &insns {
                c.note_comparison(&d.instr);
            }
        }
        let transfer = insns.last().map_or(coverage::Transfer::None, |d| {
            coverage::Transfer::of(&d.instr)
        });
        Ok(self.cache.insert(
            rip,
            Block {
                insns: insns.into_boxed_slice(),
                jit: JitState::Cold(0),
                transfer,
            },
        ))
    }

    /// Runs until exactly `budget` more instructions have retired, a SYSCALL retires, or an exception is raised.
    pub fn run(&mut self, budget: u64) -> Exit {
        let end = self.cpu.icount.saturating_add(budget);
        self.cpu.icount_end = end;
        self.apply_code_writes();
        // Set after compiled code left an instruction to the interpreter (it would leave it again).
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        let mut interpret_next = false;
        loop {
            if self.cpu.icount >= end {
                return Exit::BudgetExhausted;
            }
            let rip = self.cpu.regs.rip;
            let slot = match self.cache.lookup(rip) {
                Some(slot) => slot,
                None => match self.translate(rip) {
                    Ok(slot) => slot,
                    Err(e) => return Exit::Exception(e),
                },
            };
            let remaining = end - self.cpu.icount;
            #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
            if self.jit_enabled
                && !std::mem::take(&mut interpret_next)
                && (self.cache.slab[slot as usize].insns.len() as u64) <= remaining
            {
                match self.run_compiled(slot) {
                    JitOutcome::Interpret => {}
                    JitOutcome::Done => continue,
                    JitOutcome::Side => {
                        interpret_next = true;
                        continue;
                    }
                    JitOutcome::Exit(exit) => return exit,
                }
            }
            let block = &self.cache.slab[slot as usize];
            let cpu = &mut self.cpu;
            let mut stop = None;
            // The whole block fits in the budget: no budget check per instruction. Otherwise run only the
            // instructions that fit. A REP string instruction ends its block, so one that the budget stops
            // mid-way (rip back on itself) is always the last instruction run here.
            let fits = (block.insns.len() as u64) <= remaining;
            let count = if fits {
                block.insns.len()
            } else {
                remaining as usize
            };
            // rip is stored once per block, not per instruction: handlers never read it (a branch, CALL or an
            // unfinished REP instruction writes it, and only the last instruction of a block can be one of
            // those), so presetting it to the fall-through of the last instruction run is exact. The paths that
            // leave early (exception, SYSCALL, a write to cached code) set it themselves.
            let insns = &block.insns[..count];
            cpu.regs.rip = insns[count - 1].instr.next_ip();
            let mut k = 0;
            while k < count {
                let d = &insns[k];
                if let Err(s) = (d.handler)(cpu, &d.instr) {
                    if s.is_syscall() {
                        cpu.icount += 1;
                        cpu.regs.rip = d.instr.next_ip();
                    } else {
                        cpu.regs.rip = d.instr.ip();
                    }
                    stop = Some(s);
                    break;
                }
                cpu.icount += 1;
                k += 1;
                if !cpu.mem.code_writes.is_empty() {
                    if k < count {
                        cpu.regs.rip = d.instr.next_ip();
                    }
                    break;
                }
            }
            // The block ran whole and ended in a control transfer: an edge (coverage.rs).
            if stop.is_none() && k == block.insns.len() && block.transfer.is_some() {
                if let Some(c) = &mut self.cpu.coverage {
                    let last = &block.insns[k - 1].instr;
                    c.record(block.transfer, self.cpu.regs.rip, last.next_ip());
                }
            }
            if !self.cpu.mem.code_writes.is_empty() {
                self.apply_code_writes();
            }
            if let Some(s) = stop {
                return s.to_exit();
            }
        }
    }

    /// Runs block `slot` as compiled code if it is compiled (compiling it once it is hot).
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    fn run_compiled(&mut self, slot: u32) -> JitOutcome {
        let f = match self.cache.slab[slot as usize].jit {
            JitState::Compiled(f, _) => f,
            JitState::Never => return JitOutcome::Interpret,
            JitState::Cold(n) if n < JIT_THRESHOLD => {
                self.cache.slab[slot as usize].jit = JitState::Cold(n + 1);
                return JitOutcome::Interpret;
            }
            JitState::Cold(_) => match self.compile(slot) {
                Some(f) => f,
                None => return JitOutcome::Interpret,
            },
        };
        let cpu = &mut self.cpu;
        cpu.jit_flags = cpu.regs.flags.status();
        let (read_tlb, write_tlb) = cpu.mem.tlb_pointers();
        // SAFETY: `f` was compiled from a block of this cache for the `JitFn` ABI; it and the blocks it chains to
        // touch only this `Cpu` (through the pointer, while `cpu` is not otherwise used), its TLBs and the
        // instructions of live blocks (links to a dropped block are undone when it is dropped).
        let kind = unsafe { f(cpu as *mut Cpu, read_tlb, write_tlb) };
        cpu.regs.flags.set_status(cpu.jit_flags);
        if !self.cpu.mem.code_writes.is_empty() {
            self.apply_code_writes();
        }
        match kind {
            jit::EXIT_SIDE => JitOutcome::Side,
            jit::EXIT_STOP => {
                let s = self
                    .cpu
                    .jit_stop
                    .take()
                    .expect("a helper stop leaves its reason");
                JitOutcome::Exit(s.to_exit())
            }
            _ => JitOutcome::Done,
        }
    }

    /// Compiles block `slot` and links it with the compiled blocks it jumps to and that jump to it.
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    fn compile(&mut self, slot: u32) -> Option<jit::JitFn> {
        let code = match &mut self.jit_code {
            Some(code) => code,
            None => match jit::CodeBuffer::new() {
                Some(code) => self.jit_code.insert(code),
                None => {
                    // No executable memory on this host: interpret everything.
                    self.jit_enabled = false;
                    return None;
                }
            },
        };
        if code.is_full() {
            code.reset();
            self.jit_links.clear();
            for b in &mut self.cache.slab {
                b.jit = JitState::Cold(0);
            }
        }
        let block = &mut self.cache.slab[slot as usize];
        let Some(c) = jit::compile(&block.insns, code, self.cpu.coverage.is_some()) else {
            block.jit = JitState::Never;
            return None;
        };
        block.jit = JitState::Compiled(c.entry, c.chain_entry);
        let rip = block.insns[0].instr.ip();
        for link in c.links {
            if let Some(target) = self.cache.lookup(link.target) {
                if let JitState::Compiled(_, entry) = self.cache.slab[target as usize].jit {
                    // SAFETY: the cell is in the block just installed; no compiled code is running.
                    unsafe { jit::patch(&link, entry) };
                }
            }
            self.jit_links.entry(link.target).or_default().push(link);
        }
        if let Some(incoming) = self.jit_links.get(&rip) {
            for link in incoming {
                // SAFETY: cells of blocks in the live buffer (reset clears the table); nothing is running.
                unsafe { jit::patch(link, c.chain_entry) };
            }
        }
        Some(c.entry)
    }

    /// Executes one instruction (or one iteration of a REP string instruction).
    pub fn step(&mut self) -> Exit {
        self.run(1)
    }

    /// The bytes and Intel-syntax disassembly of the instruction at `addr`, for reports (#UD, debugger).
    pub fn describe_instruction(&self, addr: u64) -> (Vec<u8>, String) {
        describe_instruction(&self.cpu.mem, addr)
    }
}

/// A placeholder instruction for bytes that do not decode: it raises #UD with rip on `rip`.
fn undecodable_at(rip: u64) -> Instruction {
    let mut ud = Instruction::default();
    // iced derives ip() from next_ip() - len(): set both so that ip() is `rip`.
    ud.set_len(1);
    ud.set_next_ip(rip.wrapping_add(1));
    ud
}

/// The bytes and Intel-syntax disassembly of the instruction at `addr` (read without permission checks).
pub fn describe_instruction(mem: &Memory, addr: u64) -> (Vec<u8>, String) {
    let (buf, n) = instruction_bytes(mem, addr);
    let mut decoder = Decoder::with_ip(64, &buf[..n], addr, DecoderOptions::NONE);
    let instr = decoder.decode();
    if instr.is_invalid() {
        return (buf[..n.min(4)].to_vec(), "(bad)".to_string());
    }
    let mut text = String::new();
    IntelFormatter::new().format(&instr, &mut text);
    (buf[..instr.len()].to_vec(), text)
}

/// The bytes and disassembly of the instruction at `addr` if it is a valid x86-64 instruction the emulator does
/// not implement (its #UD is tandem's, not the program's); None for one it implements or bytes that do not decode.
pub fn unimplemented_at(mem: &Memory, addr: u64) -> Option<(Vec<u8>, String)> {
    let (buf, n) = instruction_bytes(mem, addr);
    let instr = Decoder::with_ip(64, &buf[..n], addr, DecoderOptions::NONE).decode();
    if instr.is_invalid() || is_implemented(instr.code()) {
        return None;
    }
    Some(describe_instruction(mem, addr))
}

/// Up to 15 bytes at `addr` (an instruction's longest), as many as are mapped, read without permission checks.
fn instruction_bytes(mem: &Memory, addr: u64) -> ([u8; 15], usize) {
    let mut buf = [0u8; 15];
    let mut n = 0;
    while n < 15
        && mem
            .peek(addr.wrapping_add(n as u64), &mut buf[n..n + 1])
            .is_ok()
    {
        n += 1;
    }
    (buf, n)
}

/// Whether the emulator implements `code` (a handler other than #UD is registered).
pub fn is_implemented(code: Code) -> bool {
    dispatch::is_implemented(code)
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Assembles instructions with iced's encoder and runs them on a fresh machine.
    use super::*;
    use crate::memory::Perms;
    use iced_x86::code_asm::CodeAssembler;

    pub const CODE: u64 = 0x40_0000;
    pub const DATA: u64 = 0x60_0000;
    pub const STACK_TOP: u64 = 0x80_0000;

    pub fn machine_with(code: &[u8]) -> Machine {
        let mut mem = Memory::new();
        mem.map_file_bytes(CODE, 0x10000, code, Perms::RX).unwrap();
        mem.map_anonymous(DATA, 0x10000, Perms::RW).unwrap();
        mem.map_anonymous(STACK_TOP - 0x10000, 0x10000, Perms::RW)
            .unwrap();
        let mut cpu = Cpu::new(mem, CpuConfig::default());
        cpu.regs.rip = CODE;
        cpu.regs.gpr[RSP] = STACK_TOP - 0x100;
        Machine::new(cpu)
    }

    pub fn assemble(f: impl FnOnce(&mut CodeAssembler)) -> Vec<u8> {
        let mut a = CodeAssembler::new(64).unwrap();
        f(&mut a);
        a.assemble(CODE).unwrap()
    }

    /// Assembles `f` followed by `hlt`, runs it after `setup` and returns the machine stopped at the `hlt`.
    pub fn run(f: impl FnOnce(&mut CodeAssembler), setup: impl FnOnce(&mut Cpu)) -> Machine {
        let code = assemble(|a| {
            f(a);
            a.hlt().unwrap();
        });
        run_to_hlt(&code, setup)
    }

    /// Runs the code until it executes `hlt` (a #GP at user level), returning the machine.
    pub fn run_to_hlt(code: &[u8], setup: impl FnOnce(&mut Cpu)) -> Machine {
        let mut m = machine_with(code);
        setup(&mut m.cpu);
        let exit = m.run(1_000_000);
        assert_eq!(
            exit,
            Exit::Exception(Exception::GeneralProtection),
            "program should stop at hlt"
        );
        m
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;
    use iced_x86::code_asm::*;

    #[test]
    fn stop_packs_every_exception_losslessly() {
        let all = [
            Exception::DivideError,
            Exception::InvalidOpcode,
            Exception::GeneralProtection,
            Exception::PageFault {
                addr: u64::MAX,
                access: Access::Execute,
                present: true,
            },
            Exception::PageFault {
                addr: 0x1234,
                access: Access::Write,
                present: false,
            },
            Exception::PageFault {
                addr: 0,
                access: Access::Read,
                present: true,
            },
            Exception::MachineCheck {
                addr: 0xdead_beef_f00d,
                frame: FrameId(u32::MAX),
            },
            Exception::Breakpoint,
            Exception::X87FloatingPoint,
            Exception::SimdFloatingPoint,
        ];
        for e in all {
            assert_eq!(Stop::exception(e).to_exception(), Some(e));
            assert!(!Stop::exception(e).is_syscall());
        }
        assert!(Stop::SYSCALL.is_syscall());
        assert_eq!(Stop::SYSCALL.to_exception(), None);
        assert_eq!(std::mem::size_of::<Result<(), Stop>>(), 16);
    }

    #[test]
    fn register_table_matches_iced() {
        for r in Register::values() {
            let info = REG_INFO[r as usize];
            if r.is_gpr() {
                let full = r.full_register();
                assert_eq!(info.index as usize, full.number(), "{r:?}");
                let expected = match r.size() {
                    8 => K_GPR64,
                    4 => K_GPR32,
                    2 => K_GPR16,
                    _ if matches!(r, Register::AH | Register::CH | Register::DH | Register::BH) => {
                        K_GPR8_HIGH
                    }
                    _ => K_GPR8,
                };
                assert_eq!(info.kind, expected, "{r:?}");
            }
        }
    }

    #[test]
    fn partial_register_writes_follow_the_sdm() {
        let code = assemble(|a| {
            a.mov(rax, -1i64).unwrap();
            a.mov(eax, 0x1234_5678u32).unwrap(); // zero-extends
            a.mov(rbx, -1i64).unwrap();
            a.mov(bx, 0x1111u32).unwrap(); // keeps the rest
            a.mov(rcx, -1i64).unwrap();
            a.mov(ch, 0x22u32).unwrap();
            a.hlt().unwrap();
        });
        let m = run_to_hlt(&code, |_| {});
        assert_eq!(m.cpu.regs.gpr[RAX], 0x1234_5678);
        assert_eq!(m.cpu.regs.gpr[RBX], 0xffff_ffff_ffff_1111);
        assert_eq!(m.cpu.regs.gpr[RCX], 0xffff_ffff_ffff_22ff);
    }

    #[test]
    fn unimplemented_instruction_is_ud_with_rip_on_it() {
        // VZEROUPPER (AVX) is outside the CPU model.
        let code = assemble(|a| {
            a.nop().unwrap();
            a.vzeroupper().unwrap();
        });
        let mut m = machine_with(&code);
        assert_eq!(m.run(10), Exit::Exception(Exception::InvalidOpcode));
        assert_eq!(m.cpu.regs.rip, CODE + 1);
        assert_eq!(m.cpu.icount, 1);
        let (bytes, text) = m.describe_instruction(m.cpu.regs.rip);
        assert_eq!(bytes, vec![0xc5, 0xf8, 0x77]);
        assert_eq!(text, "vzeroupper");
    }

    #[test]
    fn garbage_bytes_are_ud_not_a_panic() {
        let mut m = machine_with(&[0x06]);
        assert_eq!(m.run(10), Exit::Exception(Exception::InvalidOpcode));
        assert_eq!(m.cpu.regs.rip, CODE);
    }

    #[test]
    fn executing_unmapped_memory_is_an_execute_page_fault() {
        let code = assemble(|a| {
            a.mov(rax, 0x1234_0000u64).unwrap();
            a.jmp(rax).unwrap();
        });
        let mut m = machine_with(&code);
        assert_eq!(
            m.run(10),
            Exit::Exception(Exception::PageFault {
                addr: 0x1234_0000,
                access: Access::Execute,
                present: false
            })
        );
        assert_eq!(m.cpu.icount, 2);
    }

    #[test]
    fn self_modifying_code_sees_its_own_writes() {
        // Overwrite the imm32 of a later `mov eax, imm32` after the block containing it was decoded.
        let code = assemble(|a| {
            let mut target = a.create_label();
            a.lea(rbx, ptr(target)).unwrap();
            a.mov(eax, 1u32).unwrap();
            a.set_label(&mut target).unwrap();
            a.mov(ecx, 0u32).unwrap(); // b9 00 00 00 00
            a.hlt().unwrap();
        });
        let mut m = machine_with(&code);
        m.cpu
            .mem
            .protect(CODE, 0x1000, crate::memory::Perms::RWX)
            .unwrap();
        assert_eq!(m.run(10), Exit::Exception(Exception::GeneralProtection));
        assert_eq!(m.cpu.regs.gpr[RCX], 0);
        // Patch the immediate through guest memory and run the same code again.
        let target = m.cpu.regs.gpr[RBX];
        m.cpu.mem.write_u32(target + 1, 0xabcd).unwrap();
        m.cpu.regs.rip = CODE;
        assert_eq!(m.run(10), Exit::Exception(Exception::GeneralProtection));
        assert_eq!(m.cpu.regs.gpr[RCX], 0xabcd);
        assert!(m.cache_stats.pages_invalidated >= 1);
    }

    #[test]
    fn store_into_the_running_block_takes_effect_on_the_next_instruction() {
        // mov byte [rip+x], 0x90 turns the following `int3` into a nop.
        let code = assemble(|a| {
            let mut patch = a.create_label();
            a.mov(byte_ptr(patch), 0x90u32).unwrap();
            a.set_label(&mut patch).unwrap();
            a.int3().unwrap();
            a.hlt().unwrap();
        });
        let mut m = machine_with(&code);
        m.cpu
            .mem
            .protect(CODE, 0x1000, crate::memory::Perms::RWX)
            .unwrap();
        assert_eq!(m.run(10), Exit::Exception(Exception::GeneralProtection));
        assert_eq!(
            m.cpu.icount, 2,
            "mov and the patched nop retire; hlt faults"
        );
    }
}
