//! The block compiler: a hot block of guest x86-64 code becomes host x86-64 code that runs it natively.
//!
//! Why: an interpreter pays a dispatch, operand decoding and lazy-flag bookkeeping for every guest instruction,
//! about 40 host instructions each on mixed code. The guest and host share one instruction set, so most integer
//! instructions can run as themselves with their registers renamed, and the host computes their results and flags
//! exactly as the SDM defines them. That is the only way to come near qemu's speed while counting instructions.
//!
//! How a block is compiled (blocks are the interpreter's own, decoded once, never crossing a 4 KiB page):
//! - Guest registers are cached in eight host registers for the length of the block (evicting the one used
//!   farthest ahead), loaded on first use and written back at every exit.
//! - Each instruction from a whitelist (moves, ALU, shifts and rotates by a constant, IMUL, SETcc, CMOVcc, LEA,
//!   PUSH/POP, and the block-ending branches) is re-encoded with host registers in place of guest ones and, for a
//!   memory operand, a host pointer in place of the guest address. Every other instruction calls its interpreter
//!   handler (`helper`), so a block never needs to stop early, except before a REP string instruction (whose
//!   handler counts its own iterations).
//! - Memory goes through the interpreter's software TLBs, inline: an access whose page is not cached for that kind
//!   of access, or which crosses a page, leaves the block *before* the instruction (a side exit) and the
//!   interpreter runs it. So faults, copy-on-write, dirty tracking, stuck bits, poison and self-modifying code
//!   are all the interpreter's, unchanged: the write TLB never holds a page with decoded code or stuck bits.
//! - Status flags live in the host's rflags between instructions and in `Cpu::jit_flags` at every exit and helper
//!   call. Flags the SDM leaves undefined would come from the host CPU, which would make runs differ between
//!   machines and from the interpreter; a backward liveness pass proves them dead, or the instruction runs through
//!   its handler instead (AF after AND/OR/XOR/TEST is known to be 0 and is cleared on the way out).
//!
//! - Blocks chain: an exit to a block known at compile time (a direct branch, a fall-through) jumps through an
//!   8-byte cell that holds the target's chained entry once it is compiled, or else a stub that returns to the
//!   run loop. The run loop patches cells when a target is compiled and resets them when it is dropped
//!   (self-modifying code), so a chain never enters stale code.
//!
//! Edge coverage (coverage.rs): a block compiled while coverage is on calls `record_edge` at its end, once it
//! retired whole, before it chains or exits, so the map is the interpreter's with chaining kept.
//!
//! Exact counting: a compiled block runs only when the whole block fits in the budget (a chained entry checks
//! `icount_end - icount` first); every exit keeps `icount`, rip and the flags exact, so the state is the
//! interpreter's at every instruction boundary the outside sees.

use super::coverage::{self, Transfer};
use super::{Cpu, Decoded};
use iced_x86::code_asm::*;
use iced_x86::{
    BlockEncoderOptions, Code, ConditionCode, Encoder, FlowControl, Instruction, Mnemonic,
    OpCodeOperandKind, OpKind, Register,
};
use std::mem::offset_of;

// Compiled code reads `Cpu::coverage` as one pointer, null for None (std's guarantee for `Option<Box<T>>`).
const _: () = assert!(std::mem::size_of::<Option<Box<coverage::Coverage>>>() == 8);

/// A compiled block: `(cpu, read TLB, write TLB) -> exit kind`. Compiled code keeps `Cpu::icount`, `Cpu::rip`
/// and `Cpu::jit_flags` exact at every exit, so the caller only reads the kind.
pub(crate) type JitFn = unsafe extern "sysv64" fn(*mut Cpu, *const u8, *const u8) -> u64;

/// The last block run retired whole (compiled blocks chain into each other while the budget lasts).
pub(crate) const EXIT_END: u64 = 0;
/// Left before an instruction that did not run, at rip: the interpreter must run it next.
pub(crate) const EXIT_SIDE: u64 = 1;
/// A handler stopped (`Cpu::jit_stop` says why): a syscall (retired) or an exception (rip on it).
pub(crate) const EXIT_STOP: u64 = 2;
/// A helper retired an instruction that wrote a page holding decoded code.
pub(crate) const EXIT_CODE_WRITE: u64 = 3;
/// The next block, at rip, does not fit in the budget.
pub(crate) const EXIT_NO_FIT: u64 = 4;

// Status flags as iced's `RflagsBits` numbers them.
const F_OF: u8 = 0x01;
const F_AF: u8 = 0x08;
const F_ALL: u8 = 0x3f;

/// AF in rflags.
const RFLAGS_AF: i32 = 0x10;

/// Host registers that cache guest registers (callee- and caller-saved alike: helpers write everything back).
const POOL: [usize; 8] = [5, 6, 7, 8, 9, 10, 14, 15];
/// Fixed: rbx holds the `Cpu`, r12 the read TLB, r13 the write TLB. Scratch: rax, rcx, rdx, r11.
const GP64: [AsmRegister64; 16] = [
    rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15,
];
const GP32: [AsmRegister32; 16] = [
    eax, ecx, edx, ebx, esp, ebp, esi, edi, r8d, r9d, r10d, r11d, r12d, r13d, r14d, r15d,
];

/// Host register `num` (0..15, encoding order) at width `size` bytes. iced numbers each width's registers in
/// encoding order, except that the byte registers put AH..BH before SPL..DIL.
fn sized(num: usize, size: usize) -> Register {
    let n = num as u32;
    match size {
        8 => Register::RAX + n,
        4 => Register::EAX + n,
        2 => Register::AX + n,
        _ if n < 4 => Register::AL + n,
        _ if n < 8 => Register::SPL + (n - 4),
        _ => Register::R8L + (n - 8),
    }
}

/// A guest general-purpose register operand: its number, or `None` for anything else (AH..BH included).
fn guest_gpr(r: Register) -> Option<(usize, usize)> {
    if !r.is_gpr() || matches!(r, Register::AH | Register::CH | Register::DH | Register::BH) {
        return None;
    }
    Some((r.full_register().number(), r.size()))
}

fn gpr_off(g: usize) -> i32 {
    (offset_of!(Cpu, regs.gpr) + 8 * g) as i32
}

// -----------------------------------------------------------------------------------------------------------------
// Executable memory.

/// A region of host memory that holds compiled blocks, filled front to back and emptied all at once.
pub(crate) struct CodeBuffer {
    base: *mut u8,
    cap: usize,
    used: usize,
}

// SAFETY: the buffer is owned by one `Machine` and only touched through it; the pointer is never shared.
unsafe impl Send for CodeBuffer {}

impl CodeBuffer {
    /// 64 MiB of address space, committed by the host kernel only as it is written.
    const CAPACITY: usize = 64 << 20;

    pub(crate) fn new() -> Option<CodeBuffer> {
        // SAFETY: an anonymous private mapping with no address hint has no preconditions; failure is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                Self::CAPACITY,
                libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return None;
        }
        Some(CodeBuffer {
            base: p as *mut u8,
            cap: Self::CAPACITY,
            used: 0,
        })
    }

    /// Where the next block goes.
    fn next_address(&self) -> u64 {
        // 16-byte alignment for the block entries.
        (self.base as u64 + self.used as u64 + 15) & !15
    }

    /// Copies code assembled for `address` (which `next_address` gave) in; `None` when the buffer is full.
    fn install(&mut self, address: u64, code: &[u8]) -> Option<JitFn> {
        let start = (address - self.base as u64) as usize;
        if start + code.len() > self.cap {
            return None;
        }
        // SAFETY: `start + len <= cap`, inside the mapping this buffer owns; nothing else references those bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(code.as_ptr(), self.base.add(start), code.len());
        }
        self.used = start + code.len();
        // SAFETY: the bytes are a complete function assembled for this address with the `JitFn` ABI.
        Some(unsafe { std::mem::transmute::<*mut u8, JitFn>(self.base.add(start)) })
    }

    /// Forgets every compiled block (the caller drops every `JitFn` taken from here first).
    pub(crate) fn reset(&mut self) {
        self.used = 0;
    }

    pub(crate) fn is_full(&self) -> bool {
        self.used + (1 << 20) > self.cap
    }
}

impl Drop for CodeBuffer {
    fn drop(&mut self) {
        // SAFETY: the mapping was made in `new` with this size and is not used after the drop.
        unsafe {
            libc::munmap(self.base as *mut libc::c_void, self.cap);
        }
    }
}

// -----------------------------------------------------------------------------------------------------------------
// The helper: one instruction through its interpreter handler.

/// Runs instruction `k` of a compiled block through its handler. Returns 0 to go on, else the block's exit code.
/// Registers are in `cpu.gpr` (the block wrote them back), the status flags in `cpu.jit_flags`.
unsafe extern "sysv64" fn helper(cpu: *mut Cpu, d: *const Decoded, k: u64) -> u64 {
    // SAFETY: the compiled block passes the `Cpu` it was entered with (exclusively borrowed for the whole run)
    // and a pointer into the block's own instructions, which live as long as the compiled code.
    let (cpu, d) = unsafe { (&mut *cpu, &*d) };
    // Inside a block `icount` is the count at its start; handlers that read it (RDTSC) see this instruction's.
    let base = cpu.icount;
    cpu.icount = base + k;
    cpu.regs.flags.set_status(cpu.jit_flags);
    let result = (d.handler)(cpu, &d.instr);
    cpu.jit_flags = cpu.regs.flags.status();
    match result {
        Ok(()) if cpu.mem.code_writes.is_empty() => {
            cpu.icount = base;
            0
        }
        Ok(()) => {
            cpu.icount = base + k + 1;
            // A control transfer is last in its block and set rip itself (the fall-through was preset): the
            // block retired whole, and this early exit skips its end, where its edge is recorded.
            let transfer = Transfer::of(&d.instr);
            if transfer.is_some() {
                if let Some(c) = &mut cpu.coverage {
                    c.record(transfer, cpu.regs.rip, d.instr.next_ip());
                }
            } else {
                cpu.regs.rip = d.instr.next_ip();
            }
            EXIT_CODE_WRITE
        }
        Err(stop) => {
            if stop.is_syscall() {
                cpu.icount = base + k + 1;
                cpu.regs.rip = d.instr.next_ip();
            } else {
                cpu.regs.rip = d.instr.ip();
            }
            cpu.jit_stop = Some(stop);
            EXIT_STOP
        }
    }
}

/// Records the edge of a compiled block that retired whole and ends in a control transfer (`transfer`, a
/// `Transfer as u8`) to `rip`, `next_ip` following its last instruction: what the run loop records for an
/// interpreted block. Compiled only while coverage is on; does nothing if it was taken away since.
unsafe extern "sysv64" fn record_edge(cpu: *mut Cpu, transfer: u64, rip: u64, next_ip: u64) {
    // SAFETY: the compiled block passes the `Cpu` it was entered with (exclusively borrowed for the whole run).
    let cpu = unsafe { &mut *cpu };
    if let Some(c) = &mut cpu.coverage {
        c.record(Transfer::from_code(transfer), rip, next_ip);
    }
}

// -----------------------------------------------------------------------------------------------------------------
// Analysis.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// Re-encoded with host registers; `mem` when it has a memory operand that is accessed.
    Generic,
    /// LEA: re-encoded with host base and index, or a constant for an absolute operand.
    Lea,
    /// No architectural effect (NOP forms, ENDBR64).
    Skip,
    PushReg,
    PushImm,
    PopReg,
    /// CDQE, CWDE, CDQ, CQO: fixed registers.
    SignExtendAcc,
    Jcc,
    JmpRel,
    CallRel,
    Ret,
    JmpInd,
    CallInd,
    /// Through the interpreter handler.
    Helper,
}

#[derive(Clone, Copy, Debug)]
struct Mem {
    size: u32,
    read: bool,
    write: bool,
}

#[derive(Clone, Copy, Debug)]
struct Plan {
    kind: Kind,
    mem: Option<Mem>,
    /// Flags read, flags surely written, flags that may be written with host-chosen values.
    read: u8,
    kill: u8,
    undefined: u8,
    /// The flags the instruction may write (a superset of `kill`).
    touch: u8,
    /// AND/OR/XOR/TEST: AF is undefined, the interpreter's value is 0.
    logic: bool,
    /// Guest registers it names (operands, address, implicit), as a bit set.
    uses: u16,
}

impl Plan {
    /// Through the interpreter handler, which computes its own flags exactly and needs all of them in (from
    /// `jit_flags`); it reads and writes registers in `Cpu::gpr`, so it names none for the register cache.
    fn helper() -> Plan {
        Plan {
            kind: Kind::Helper,
            mem: None,
            read: F_ALL,
            kill: 0,
            undefined: 0,
            touch: 0,
            logic: false,
            uses: 0,
        }
    }
}

fn is_rep_string(i: &Instruction) -> bool {
    i.is_string_instruction() && (i.has_rep_prefix() || i.has_repe_prefix() || i.has_repne_prefix())
}

fn fixed_operand(k: OpCodeOperandKind) -> Option<usize> {
    match k {
        OpCodeOperandKind::al
        | OpCodeOperandKind::ax
        | OpCodeOperandKind::eax
        | OpCodeOperandKind::rax => Some(0),
        OpCodeOperandKind::cl => Some(1),
        _ => None,
    }
}

fn plan(d: &Decoded, last: bool) -> Plan {
    let i = &d.instr.instr;
    let mut p = Plan {
        kind: Kind::Helper,
        mem: None,
        read: (i.rflags_read() as u8) & F_ALL,
        kill: (i.rflags_modified() as u8) & F_ALL,
        undefined: (i.rflags_undefined() as u8) & F_ALL,
        touch: (i.rflags_modified() as u8) & F_ALL,
        logic: false,
        uses: 0,
    };
    p.kind = classify(i, last, &mut p);
    // Re-encodability is checked up front so a surprise in the encoder means "helper", never a failed block.
    if p.kind == Kind::Helper
        || (p.kind == Kind::Generic && !encodable(&rewrite(i, |g| POOL[g % POOL.len()])))
    {
        return Plan::helper();
    }
    p
}

/// Decides how instruction `i` runs, filling in its memory access, registers and flag adjustments.
fn classify(i: &Instruction, last: bool, p: &mut Plan) -> Kind {
    use Mnemonic as M;
    if i.has_lock_prefix() || i.has_xacquire_prefix() || i.has_xrelease_prefix() {
        return Kind::Helper;
    }
    let flow = i.flow_control();
    let m = i.mnemonic();
    // Registers named by the memory operand.
    let mut uses = 0u16;
    let mut has_mem = false;
    for n in 0..i.op_count() {
        match i.op_kind(n) {
            OpKind::Register => {
                let r = i.op_register(n);
                match guest_gpr(r) {
                    Some((g, _)) => uses |= 1 << g,
                    None => return Kind::Helper,
                }
            }
            OpKind::Memory => {
                has_mem = true;
                if matches!(i.op_code().op_kind(n), OpCodeOperandKind::mem_offs) {
                    return Kind::Helper;
                }
            }
            OpKind::NearBranch64 => {}
            kind if super::is_immediate(kind) => {}
            _ => return Kind::Helper,
        }
    }
    if has_mem {
        let base = i.memory_base();
        let index = i.memory_index();
        // 32-bit addressing and segment overrides other than FS/GS stay with the interpreter.
        if base != Register::None && base != Register::RIP {
            if base.size() != 8 || !base.is_gpr() {
                return Kind::Helper;
            }
            uses |= 1 << base.number();
        }
        if base == Register::EIP {
            return Kind::Helper;
        }
        if index != Register::None {
            if index.size() != 8 || !index.is_gpr() {
                return Kind::Helper;
            }
            uses |= 1 << index.number();
        }
        if !matches!(
            i.memory_segment(),
            Register::DS | Register::SS | Register::ES | Register::CS | Register::FS | Register::GS
        ) {
            return Kind::Helper;
        }
    }
    p.uses = uses;
    let rsp_bit = 1u16 << 4;
    let acc = |size: u32| Mem {
        size,
        read: true,
        write: false,
    };
    match flow {
        FlowControl::Next => {}
        FlowControl::ConditionalBranch if last && i.is_jcc_short_or_near() => return Kind::Jcc,
        FlowControl::UnconditionalBranch
            if last && matches!(i.code(), Code::Jmp_rel8_64 | Code::Jmp_rel32_64) =>
        {
            return Kind::JmpRel
        }
        FlowControl::Call if last && i.code() == Code::Call_rel32_64 => {
            p.uses |= rsp_bit;
            p.mem = Some(Mem {
                size: 8,
                read: false,
                write: true,
            });
            return Kind::CallRel;
        }
        FlowControl::Return if last && i.code() == Code::Retnq => {
            p.uses |= rsp_bit;
            p.mem = Some(acc(8));
            return Kind::Ret;
        }
        FlowControl::IndirectBranch if last && i.code() == Code::Jmp_rm64 => {
            if has_mem {
                p.mem = Some(acc(8));
            }
            return Kind::JmpInd;
        }
        FlowControl::IndirectCall if last && i.code() == Code::Call_rm64 => {
            p.uses |= rsp_bit;
            if has_mem {
                p.mem = Some(acc(8));
            }
            return Kind::CallInd;
        }
        _ => return Kind::Helper,
    }
    match i.code() {
        Code::Push_r64 => {
            p.uses |= rsp_bit;
            p.mem = Some(Mem {
                size: 8,
                read: false,
                write: true,
            });
            return Kind::PushReg;
        }
        Code::Pushq_imm8 | Code::Pushq_imm32 => {
            p.uses |= rsp_bit;
            p.mem = Some(Mem {
                size: 8,
                read: false,
                write: true,
            });
            return Kind::PushImm;
        }
        Code::Pop_r64 => {
            p.uses |= rsp_bit;
            p.mem = Some(acc(8));
            return Kind::PopReg;
        }
        Code::Cdqe | Code::Cwde | Code::Cdq | Code::Cqo => {
            p.uses |= 0b101;
            return Kind::SignExtendAcc;
        }
        _ => {}
    }
    if matches!(m, M::Nop | M::Endbr64) {
        return Kind::Skip;
    }
    if m == M::Lea {
        if i.op0_register().size() < 4 || !matches!(i.memory_base().size(), 0 | 8) {
            return Kind::Helper;
        }
        return Kind::Lea;
    }
    let generic = matches!(
        m,
        M::Mov
            | M::Movzx
            | M::Movsx
            | M::Movsxd
            | M::Add
            | M::Or
            | M::Adc
            | M::Sbb
            | M::And
            | M::Sub
            | M::Xor
            | M::Cmp
            | M::Test
            | M::Inc
            | M::Dec
            | M::Neg
            | M::Not
            | M::Shl
            | M::Sal
            | M::Shr
            | M::Sar
            | M::Rol
            | M::Ror
            | M::Bswap
    ) || (m == M::Imul && i.op_count() >= 2)
        || is_setcc_or_cmov(m)
        || (m == M::Xchg && !has_mem);
    if !generic {
        return Kind::Helper;
    }
    // Fixed registers: the accumulator (pinned to host rax, which also carries memory pointers) and CL.
    for n in 0..i.op_count() {
        if i.op_kind(n) == OpKind::Register {
            if let Some(0) = fixed_operand(i.op_code().op_kind(n)) {
                if has_mem {
                    return Kind::Helper;
                }
            }
        }
    }
    // AND/OR/XOR/TEST and shifts by a non-zero count leave AF undefined; the interpreter (flags.rs) makes it 0.
    let mut af_zero = matches!(m, M::And | M::Or | M::Xor | M::Test);
    if matches!(m, M::Shl | M::Sal | M::Shr | M::Sar | M::Rol | M::Ror) {
        let size = op0_size(i);
        let count = match i.op1_kind() {
            OpKind::Immediate8 => Some(i.immediate8() as u32),
            OpKind::Register => None,
            _ => Some(1),
        };
        match count {
            Some(c) => {
                let c = c & if size == 8 { 63 } else { 31 };
                if c == 0 {
                    // Changes nothing, flags included.
                    p.kill = 0;
                    p.undefined = 0;
                    p.touch = 0;
                } else if c >= size * 8 && size < 4 {
                    // Counts past the width of 8- and 16-bit operands leave CF undefined too.
                    return Kind::Helper;
                } else {
                    if c == 1 {
                        p.undefined &= !F_OF;
                    }
                    af_zero = !matches!(m, M::Rol | M::Ror);
                }
            }
            None => {
                if size < 4 {
                    return Kind::Helper;
                }
                // A count of 0 changes no flag: nothing is surely written, and AF may keep its old value.
                p.kill = 0;
            }
        }
    }
    if af_zero {
        p.logic = true;
        p.undefined &= !F_AF;
    }
    p.kill &= !p.undefined;
    if has_mem {
        let op0_mem = i.op0_kind() == OpKind::Memory;
        let write = op0_mem && !matches!(m, M::Cmp | M::Test);
        let read = !(op0_mem && (m == M::Mov || is_setcc_or_cmov(m)));
        p.mem = Some(Mem {
            size: i.memory_size().size() as u32,
            read,
            write,
        });
    }
    Kind::Generic
}

fn is_setcc_or_cmov(m: Mnemonic) -> bool {
    use Mnemonic as M;
    matches!(
        m,
        M::Seto
            | M::Setno
            | M::Setb
            | M::Setae
            | M::Sete
            | M::Setne
            | M::Setbe
            | M::Seta
            | M::Sets
            | M::Setns
            | M::Setp
            | M::Setnp
            | M::Setl
            | M::Setge
            | M::Setle
            | M::Setg
            | M::Cmovo
            | M::Cmovno
            | M::Cmovb
            | M::Cmovae
            | M::Cmove
            | M::Cmovne
            | M::Cmovbe
            | M::Cmova
            | M::Cmovs
            | M::Cmovns
            | M::Cmovp
            | M::Cmovnp
            | M::Cmovl
            | M::Cmovge
            | M::Cmovle
            | M::Cmovg
    )
}

/// Width in bytes of operand 0 (a register or memory).
fn op0_size(i: &Instruction) -> u32 {
    if i.op0_kind() == OpKind::Register {
        i.op0_register().size() as u32
    } else {
        i.memory_size().size() as u32
    }
}

// -----------------------------------------------------------------------------------------------------------------
// Code generation.

struct Stub {
    label: CodeLabel,
    /// The instruction left to the interpreter: how many retired before it, and its address.
    retired: usize,
    rip: u64,
    /// (guest register, host register) pairs to write back.
    writeback: Vec<(usize, usize)>,
}

/// An exit to a block known at compile time: `jmp [cell]`, the cell holding either the address of `stub` (which
/// stores `target` in rip and returns) or, once that block is compiled, its chained entry.
struct Chain {
    cell: CodeLabel,
    stub: CodeLabel,
    target: u64,
}

/// Where a compiled block's static exits are, for linking (see `Linker`).
pub(crate) struct Link {
    /// Address of the 8-byte cell in the code buffer.
    pub(crate) cell: u64,
    /// Its value while the target is not compiled.
    pub(crate) stub: u64,
    pub(crate) target: u64,
}

/// A compiled block: the function the run loop calls, the entry other blocks chain to, its static exits.
pub(crate) struct Compiled {
    pub(crate) entry: JitFn,
    pub(crate) chain_entry: u64,
    pub(crate) links: Vec<Link>,
}

/// Points cell `link` at `to`.
///
/// # Safety
/// `link.cell` must be a cell of a block in the live code buffer, and no compiled code may be running.
pub(crate) unsafe fn patch(link: &Link, to: u64) {
    // SAFETY: per the contract, an 8-byte cell (of any alignment) inside the buffer's mapping.
    unsafe { std::ptr::write_unaligned(link.cell as *mut u64, to) }
}

struct Translator<'a> {
    a: CodeAssembler,
    insns: &'a [Decoded],
    plans: Vec<Plan>,
    host_of: [Option<usize>; 16],
    guest_of: [Option<usize>; 16],
    dirty: u16,
    /// Status flags (iced numbering) whose guest value the host rflags holds.
    host_valid: u8,
    /// Flags known to be 0 in the guest while the host may hold anything (AF after a logic operation).
    zero: u8,
    /// `Cpu::jit_flags` holds every status flag.
    slot_valid: bool,
    stubs: Vec<Stub>,
    chains: Vec<Chain>,
    epilogue: CodeLabel,
    /// The first guest instruction's code, and the entry from other blocks (checks the budget first).
    body: CodeLabel,
    chain_entry: CodeLabel,
    /// Record the block's edge at its end (`record_edge`).
    coverage: bool,
}

type R<T = ()> = Result<T, IcedError>;

fn q(base: AsmRegister64, off: i32) -> AsmMemoryOperand {
    qword_ptr(base + off)
}

impl<'a> Translator<'a> {
    fn slot() -> i32 {
        offset_of!(Cpu, jit_flags) as i32
    }

    /// Where guest register `g` is next named, from instruction `from` on; a helper forgets every cached
    /// register, so a use after one counts as never.
    fn next_use(&self, g: usize, from: usize) -> usize {
        for k in from..self.plans.len() {
            if self.plans[k].kind == Kind::Helper {
                break;
            }
            if self.plans[k].uses & (1 << g) != 0 {
                return k;
            }
        }
        usize::MAX
    }

    /// The host register caching guest register `g`, loading it when `load`. Registers in `keep` are not evicted.
    fn reg(&mut self, g: usize, load: bool, k: usize, keep: u16) -> R<usize> {
        if let Some(h) = self.host_of[g] {
            return Ok(h);
        }
        let h = match POOL.iter().copied().find(|&h| self.guest_of[h].is_none()) {
            Some(h) => h,
            None => {
                // Evict the cached register used farthest ahead.
                let mut best: Option<(usize, usize)> = None;
                for h in POOL {
                    let owner = self.guest_of[h].expect("pool is full");
                    if keep & (1 << owner) != 0 {
                        continue;
                    }
                    let nu = self.next_use(owner, k + 1);
                    if best.is_none_or(|(_, b)| nu > b) {
                        best = Some((h, nu));
                    }
                }
                let (h, _) = best.expect("an instruction names at most 4 registers");
                self.evict(h)?;
                h
            }
        };
        self.host_of[g] = Some(h);
        self.guest_of[h] = Some(g);
        if load {
            self.a.mov(GP64[h], q(rbx, gpr_off(g)))?;
        }
        Ok(h)
    }

    fn evict(&mut self, h: usize) -> R {
        if let Some(g) = self.guest_of[h].take() {
            if self.dirty & (1 << g) != 0 {
                self.a.mov(q(rbx, gpr_off(g)), GP64[h])?;
                self.dirty &= !(1 << g);
            }
            self.host_of[g] = None;
        }
        Ok(())
    }

    fn writeback_all(&mut self) -> R {
        for g in 0..16 {
            if self.dirty & (1 << g) != 0 {
                let h = self.host_of[g].expect("dirty registers are cached");
                self.a.mov(q(rbx, gpr_off(g)), GP64[h])?;
            }
        }
        self.dirty = 0;
        Ok(())
    }

    fn forget_all(&mut self) {
        self.host_of = [None; 16];
        self.guest_of = [None; 16];
        self.dirty = 0;
    }

    /// Stores the status flags into `jit_flags` if it is stale. May clobber the host flags (when AF needs
    /// clearing), which the state records.
    fn save_flags(&mut self) -> R {
        if self.slot_valid {
            return Ok(());
        }
        self.a.pushfq()?;
        self.a.pop(rax)?;
        if self.zero & F_AF != 0 {
            self.a.and(rax, !RFLAGS_AF)?;
            self.host_valid = 0;
            self.zero = 0;
        }
        self.a.mov(q(rbx, Self::slot()), rax)?;
        self.slot_valid = true;
        Ok(())
    }

    /// Makes the host flags hold the guest's `need` flags (a flag known to be 0 counts: no instruction the
    /// compiler emits reads AF, and `save_flags` clears it).
    fn need_flags(&mut self, need: u8) -> R {
        if need & !(self.host_valid | self.zero) == 0 {
            return Ok(());
        }
        self.save_flags()?;
        self.a.push(q(rbx, Self::slot()))?;
        self.a.popfq()?;
        self.host_valid = F_ALL;
        self.zero = 0;
        Ok(())
    }

    /// A side exit before instruction `k`: writes back what is dirty now and reports `k` retired.
    fn side_exit(&mut self, k: usize) -> R<CodeLabel> {
        let label = self.a.create_label();
        let mut writeback = Vec::new();
        for g in 0..16 {
            if self.dirty & (1 << g) != 0 {
                writeback.push((g, self.host_of[g].expect("dirty registers are cached")));
            }
        }
        let rip = self.insns[k].instr.ip();
        self.stubs.push(Stub {
            label,
            retired: k,
            rip,
            writeback,
        });
        Ok(label)
    }

    /// Guest address (in r11) to host pointer (in rax) through the TLB, or a side exit before instruction `k`.
    fn translate_address(&mut self, k: usize, mem: Mem) -> R {
        self.save_flags()?;
        let exit = self.side_exit(k)?;
        let tlb = if mem.write { r13 } else { r12 };
        self.a.mov(rax, r11)?;
        self.a.shr(rax, 12)?;
        self.a.movzx(ecx, al)?;
        self.a.shl(ecx, 4)?;
        self.a.cmp(qword_ptr(tlb + rcx), rax)?;
        self.a.jne(exit)?;
        if mem.write && mem.read {
            // A writable page is readable in every mapping Linux makes, but check the read entry anyway.
            self.a.cmp(qword_ptr(r12 + rcx), rax)?;
            self.a.jne(exit)?;
        }
        self.a.mov(eax, r11d)?;
        self.a.and(eax, 0xfff)?;
        self.a.cmp(eax, 4096 - mem.size as i32)?;
        self.a.ja(exit)?;
        self.a.add(rax, qword_ptr(tlb + rcx + 8))?;
        self.host_valid = 0;
        self.zero = 0;
        Ok(())
    }

    /// The guest address of `i`'s memory operand into r11 (no flags touched).
    fn effective_address(&mut self, i: &Instruction, k: usize, keep: u16) -> R {
        let base = i.memory_base();
        let index = i.memory_index();
        let disp = i.memory_displacement64();
        if base == Register::RIP || (base == Register::None && index == Register::None) {
            self.a.mov(r11, disp)?;
        } else {
            let mut op: Option<AsmMemoryOperand> = None;
            if base != Register::None {
                let h = self.reg(base.number(), true, k, keep)?;
                op = Some(GP64[h] + 0);
            }
            if index != Register::None {
                let h = self.reg(index.number(), true, k, keep)?;
                let scaled = GP64[h] * i.memory_index_scale();
                op = Some(match op {
                    Some(b) => b + scaled,
                    None => scaled + 0,
                });
            }
            let op = op.expect("base or index") + disp as i64 as i32;
            self.a.lea(r11, op)?;
        }
        match i.memory_segment() {
            Register::FS => {
                self.a
                    .mov(rcx, q(rbx, offset_of!(Cpu, regs.fs_base) as i32))?;
                self.a.lea(r11, r11 + rcx)?;
            }
            Register::GS => {
                self.a
                    .mov(rcx, q(rbx, offset_of!(Cpu, regs.gs_base) as i32))?;
                self.a.lea(r11, r11 + rcx)?;
            }
            _ => {}
        }
        Ok(())
    }

    fn store_rip(&mut self, rip: u64) -> R {
        self.a.mov(rax, rip)?;
        self.a.mov(q(rbx, offset_of!(Cpu, regs.rip) as i32), rax)?;
        Ok(())
    }

    fn exit(&mut self, code: u64) -> R {
        self.a.mov(eax, code as u32)?;
        self.a.jmp(self.epilogue)?;
        Ok(())
    }

    /// icount += n, without touching the flags.
    fn add_icount(&mut self, n: usize) -> R {
        if n > 0 {
            let at = offset_of!(Cpu, icount) as i32;
            self.a.mov(rax, q(rbx, at))?;
            self.a.lea(rax, rax + n as i32)?;
            self.a.mov(q(rbx, at), rax)?;
        }
        Ok(())
    }

    /// With coverage on, records the block's edge to `rip` (None: the rip the last instruction stored) if it
    /// ends in a control transfer. Called once the block retired and wrote back its registers and flags (both
    /// ways clobber the host's scratch registers and rflags). A branch updates the map inline; a call or a
    /// return moves the shadow call stack and calls `record_edge`.
    fn record_edge(&mut self, rip: Option<u64>) -> R {
        let last = &self.insns[self.insns.len() - 1].instr;
        let transfer = Transfer::of(last);
        if !self.coverage || !transfer.is_some() {
            return Ok(());
        }
        if transfer == Transfer::Branch {
            return self.record_branch_inline(rip);
        }
        let next_ip = last.next_ip();
        self.a.mov(rdi, rbx)?;
        self.a.mov(esi, transfer as u32)?;
        match rip {
            Some(rip) => self.a.mov(rdx, rip)?,
            None => self.a.mov(rdx, q(rbx, offset_of!(Cpu, regs.rip) as i32))?,
        }
        self.a.mov(rcx, next_ip)?;
        self.a.mov(rax, record_edge as *const () as u64)?;
        self.a.call(rax)?;
        Ok(())
    }

    /// `Coverage::record` of a `Transfer::Branch` to `rip` (None: the rip the last instruction stored), inline:
    /// `map[location(rip) ^ prev_loc] += 1` (wrapping, as `wrapping_add`), `prev_loc = location(rip) >> 1`. The
    /// location of a direct branch is a constant; an indirect one's is hashed here as `location` does. Nothing is
    /// recorded when coverage was taken away since (`Cpu::coverage` is None: a null `Box`).
    fn record_branch_inline(&mut self, rip: Option<u64>) -> R {
        let mut skip = self.a.create_label();
        self.a.mov(rax, q(rbx, offset_of!(Cpu, coverage) as i32))?;
        self.a.test(rax, rax)?;
        self.a.jz(skip)?;
        match rip {
            Some(rip) => self.a.mov(edx, coverage::location(rip) as u32)?,
            None => {
                self.a.mov(rdx, q(rbx, offset_of!(Cpu, regs.rip) as i32))?;
                self.a.mov(rcx, coverage::LOCATION_MULTIPLIER)?;
                self.a.imul_2(rdx, rcx)?;
                self.a.shr(rdx, coverage::LOCATION_SHIFT)?;
            }
        }
        let prev_loc = word_ptr(rax + coverage::PREV_LOC_OFFSET as i32);
        self.a.movzx(ecx, prev_loc)?;
        self.a.xor(ecx, edx)?;
        self.a
            .mov(r11, q(rax, coverage::MAP_POINTER_OFFSET as i32))?;
        self.a.add(byte_ptr(r11 + rcx), 1)?;
        self.a.shr(edx, 1)?;
        self.a.mov(prev_loc, dx)?;
        self.a.set_label(&mut skip)?;
        Ok(())
    }

    /// Continues at the block at `target` (chained once it is compiled).
    fn chain(&mut self, target: u64) -> R {
        let cell = self.a.create_label();
        let stub = self.a.create_label();
        self.a.jmp(qword_ptr(cell))?;
        self.chains.push(Chain { cell, stub, target });
        Ok(())
    }

    /// Updates the flag state after a native instruction that may write `touch` and surely writes `kill`.
    fn after_flags(&mut self, p: &Plan) {
        if p.touch == 0 {
            return;
        }
        // Flags it may write but not surely: valid only if they were and the instruction keeps them.
        self.host_valid = (self.host_valid & !p.touch)
            | (self.host_valid & !p.undefined & (p.touch & !p.kill))
            | p.kill;
        self.zero &= !p.touch;
        if p.logic {
            self.host_valid &= !F_AF;
            self.zero |= F_AF;
        }
        self.slot_valid = false;
    }

    fn compile_insn(&mut self, k: usize, live_out: u8) -> R {
        let d = &self.insns[k];
        let i = d.instr.instr;
        let p = self.plans[k];
        match p.kind {
            Kind::Skip => Ok(()),
            Kind::Helper => self.emit_helper(k),
            Kind::Generic => self.emit_generic(k, &i, &p, live_out),
            Kind::Lea => self.emit_lea(k, &i),
            Kind::PushReg | Kind::PushImm => {
                let keep = p.uses;
                let rsp_h = self.reg(4, true, k, keep)?;
                let value = if p.kind == Kind::PushReg {
                    Some(self.reg(i.op0_register().number(), true, k, keep)?)
                } else {
                    None
                };
                self.a.lea(r11, GP64[rsp_h] - 8)?;
                self.translate_address(k, p.mem.expect("push writes"))?;
                match value {
                    Some(h) => self.a.mov(qword_ptr(rax), GP64[h])?,
                    None => {
                        self.a.mov(rcx, i.immediate(0))?;
                        self.a.mov(qword_ptr(rax), rcx)?;
                    }
                }
                self.a.lea(GP64[rsp_h], GP64[rsp_h] - 8)?;
                self.dirty |= 1 << 4;
                Ok(())
            }
            Kind::PopReg => {
                let keep = p.uses;
                let rsp_h = self.reg(4, true, k, keep)?;
                let dst = i.op0_register().number();
                self.a.mov(r11, GP64[rsp_h])?;
                self.translate_address(k, p.mem.expect("pop reads"))?;
                self.a.mov(rcx, qword_ptr(rax))?;
                self.a.lea(GP64[rsp_h], GP64[rsp_h] + 8)?;
                self.dirty |= 1 << 4;
                let h = self.reg(dst, false, k, keep)?;
                self.a.mov(GP64[h], rcx)?;
                self.dirty |= 1 << dst;
                Ok(())
            }
            Kind::SignExtendAcc => {
                let ha = self.reg(0, true, k, p.uses)?;
                self.a.mov(rax, GP64[ha])?;
                match i.code() {
                    Code::Cdqe => {
                        self.a.cdqe()?;
                        self.a.mov(GP64[ha], rax)?;
                        self.dirty |= 1;
                    }
                    Code::Cwde => {
                        self.a.cwde()?;
                        self.a.mov(GP64[ha], rax)?;
                        self.dirty |= 1;
                    }
                    _ => {
                        let hd = self.reg(2, true, k, p.uses)?;
                        self.a.mov(rdx, GP64[hd])?;
                        if i.code() == Code::Cdq {
                            self.a.cdq()?;
                        } else {
                            self.a.cqo()?;
                        }
                        self.a.mov(GP64[hd], rdx)?;
                        self.dirty |= 1 << 2;
                    }
                }
                Ok(())
            }
            // The successor is emitted by `emit` (chained exits).
            Kind::Jcc | Kind::JmpRel => Ok(()),
            Kind::CallRel => {
                let rsp_h = self.reg(4, true, k, p.uses)?;
                self.a.lea(r11, GP64[rsp_h] - 8)?;
                self.translate_address(k, p.mem.expect("call writes"))?;
                self.a.mov(rcx, i.next_ip())?;
                self.a.mov(qword_ptr(rax), rcx)?;
                self.a.lea(GP64[rsp_h], GP64[rsp_h] - 8)?;
                self.dirty |= 1 << 4;
                Ok(())
            }
            Kind::Ret => {
                let rsp_h = self.reg(4, true, k, p.uses)?;
                self.a.mov(r11, GP64[rsp_h])?;
                self.translate_address(k, p.mem.expect("ret reads"))?;
                self.a.mov(rdx, qword_ptr(rax))?;
                self.a.lea(GP64[rsp_h], GP64[rsp_h] + 8)?;
                self.dirty |= 1 << 4;
                self.a.mov(q(rbx, offset_of!(Cpu, regs.rip) as i32), rdx)?;
                Ok(())
            }
            Kind::JmpInd | Kind::CallInd => {
                let keep = p.uses;
                if i.op0_kind() == OpKind::Register {
                    let h = self.reg(i.op0_register().number(), true, k, keep)?;
                    self.a.mov(rdx, GP64[h])?;
                } else {
                    self.effective_address(&i, k, keep)?;
                    self.translate_address(k, p.mem.expect("indirect target in memory"))?;
                    self.a.mov(rdx, qword_ptr(rax))?;
                }
                if p.kind == Kind::CallInd {
                    let rsp_h = self.reg(4, true, k, keep)?;
                    self.a.lea(r11, GP64[rsp_h] - 8)?;
                    self.translate_address(
                        k,
                        Mem {
                            size: 8,
                            read: false,
                            write: true,
                        },
                    )?;
                    self.a.mov(rcx, i.next_ip())?;
                    self.a.mov(qword_ptr(rax), rcx)?;
                    self.a.lea(GP64[rsp_h], GP64[rsp_h] - 8)?;
                    self.dirty |= 1 << 4;
                }
                self.a.mov(q(rbx, offset_of!(Cpu, regs.rip) as i32), rdx)?;
                Ok(())
            }
        }
    }

    fn jcc(&mut self, cc: ConditionCode, l: CodeLabel) -> R {
        use ConditionCode as C;
        match cc {
            C::o => self.a.jo(l),
            C::no => self.a.jno(l),
            C::b => self.a.jb(l),
            C::ae => self.a.jae(l),
            C::e => self.a.je(l),
            C::ne => self.a.jne(l),
            C::be => self.a.jbe(l),
            C::a => self.a.ja(l),
            C::s => self.a.js(l),
            C::ns => self.a.jns(l),
            C::p => self.a.jp(l),
            C::np => self.a.jnp(l),
            C::l => self.a.jl(l),
            C::ge => self.a.jge(l),
            C::le => self.a.jle(l),
            _ => self.a.jg(l),
        }
    }

    fn emit_helper(&mut self, k: usize) -> R {
        self.writeback_all()?;
        self.forget_all();
        self.save_flags()?;
        let d = &self.insns[k];
        if k + 1 == self.insns.len() && d.instr.flow_control() != FlowControl::Next {
            // Handlers of control transfers write rip only when they jump; preset the fall-through.
            self.store_rip(d.instr.next_ip())?;
        }
        self.a.mov(rdi, rbx)?;
        self.a.mov(rsi, d as *const Decoded as u64)?;
        self.a.mov(edx, k as u32)?;
        self.a.mov(rax, helper as *const () as u64)?;
        self.a.call(rax)?;
        self.a.test(rax, rax)?;
        self.a.jnz(self.epilogue)?;
        self.host_valid = 0;
        self.zero = 0;
        self.slot_valid = true;
        Ok(())
    }

    fn emit_lea(&mut self, k: usize, i: &Instruction) -> R {
        let dst = i.op0_register();
        let (g, size) = (dst.number(), dst.size());
        let base = i.memory_base();
        let keep = self.plans[k].uses;
        if base == Register::RIP || (base == Register::None && i.memory_index() == Register::None) {
            let h = self.reg(g, false, k, keep)?;
            let v = i.memory_displacement64();
            if size == 8 {
                self.a.mov(GP64[h], v)?;
            } else {
                self.a.mov(GP32[h], v as u32)?;
            }
            self.dirty |= 1 << g;
            return Ok(());
        }
        let mut ni = *i;
        if base != Register::None {
            let h = self.reg(base.number(), true, k, keep)?;
            ni.set_memory_base(sized(h, 8));
        }
        if i.memory_index() != Register::None {
            let h = self.reg(i.memory_index().number(), true, k, keep)?;
            ni.set_memory_index(sized(h, 8));
        }
        let h = self.reg(g, false, k, keep)?;
        ni.set_op0_register(sized(h, size));
        self.a.add_instruction(ni)?;
        self.dirty |= 1 << g;
        Ok(())
    }

    fn emit_generic(&mut self, k: usize, i: &Instruction, p: &Plan, live_out: u8) -> R {
        let keep = p.uses;
        let (reads, writes) = generic_registers(i);
        // Cache every register the instruction names; load those it reads (or keeps part of).
        for g in 0..16 {
            if (reads | writes) & (1 << g) != 0 {
                self.reg(g, reads & (1 << g) != 0, k, keep)?;
            }
        }
        if let Some(mem) = p.mem {
            self.effective_address(i, k, keep)?;
            self.translate_address(k, mem)?;
        }
        let host_of = self.host_of;
        let ni = rewrite(i, |g| host_of[g].expect("cached above"));
        // The pinned accumulator and CL, loaded after the TLB code (which uses rax and rcx).
        let pins = pinned(i);
        for &(scratch, g) in &pins {
            self.a
                .mov(GP64[scratch], GP64[host_of[g].expect("cached above")])?;
        }
        // Flags the instruction reads, and, when it writes any (which makes `jit_flags` stale), the live flags it
        // does not surely write: from here on only the host holds them.
        let keeps = if p.touch != 0 {
            (F_ALL & !p.kill) & live_out
        } else {
            0
        };
        self.need_flags(p.read | keeps)?;
        self.a.add_instruction(ni)?;
        for &(scratch, g) in &pins {
            if writes & (1 << g) != 0 {
                self.a
                    .mov(GP64[host_of[g].expect("cached above")], GP64[scratch])?;
            }
        }
        self.dirty |= writes;
        self.after_flags(p);
        Ok(())
    }
}

/// Guest registers a generic instruction reads (and must have loaded) and writes, as bit sets. A register it
/// only writes whole (32 or 64 bits, no read) need not be loaded.
fn generic_registers(i: &Instruction) -> (u16, u16) {
    use Mnemonic as M;
    let m = i.mnemonic();
    let pure_write = matches!(m, M::Mov | M::Movzx | M::Movsx | M::Movsxd)
        || (m == M::Imul && i.op_count() == 3);
    let writes_op0 = !matches!(m, M::Cmp | M::Test);
    let writes_op1 = m == M::Xchg;
    let (mut reads, mut writes) = (0u16, 0u16);
    for n in 0..i.op_count() {
        match i.op_kind(n) {
            OpKind::Register => {
                let (g, size) = guest_gpr(i.op_register(n)).expect("classified as a GPR");
                if (n == 0 && writes_op0) || (n == 1 && writes_op1) {
                    writes |= 1 << g;
                }
                if !(n == 0 && pure_write && size >= 4) {
                    reads |= 1 << g;
                }
            }
            OpKind::Memory => {
                for r in [i.memory_base(), i.memory_index()] {
                    if r != Register::None && r != Register::RIP {
                        reads |= 1 << r.number();
                    }
                }
            }
            _ => {}
        }
    }
    (reads, writes)
}

/// Operands fixed by the encoding (the accumulator, CL): (host scratch register, guest register).
fn pinned(i: &Instruction) -> Vec<(usize, usize)> {
    let mut v = Vec::new();
    for n in 0..i.op_count() {
        if i.op_kind(n) == OpKind::Register {
            if let Some(scratch) = fixed_operand(i.op_code().op_kind(n)) {
                v.push((scratch, i.op_register(n).full_register().number()));
            }
        }
    }
    v
}

/// The instruction with host registers in place of guest ones (`host` maps a guest register number to a host
/// one; fixed operands go to their scratch registers) and a memory operand of `[rax]`.
fn rewrite(i: &Instruction, host: impl Fn(usize) -> usize) -> Instruction {
    let mut ni = *i;
    for n in 0..i.op_count() {
        if i.op_kind(n) != OpKind::Register {
            continue;
        }
        let r = i.op_register(n);
        let (g, size) = guest_gpr(r).expect("classified as a GPR");
        let h = fixed_operand(i.op_code().op_kind(n)).unwrap_or_else(|| host(g));
        ni.set_op_register(n, sized(h, size));
    }
    if (0..i.op_count()).any(|n| i.op_kind(n) == OpKind::Memory) {
        ni.set_memory_base(Register::RAX);
        ni.set_memory_index(Register::None);
        ni.set_memory_index_scale(1);
        ni.set_memory_displacement64(0);
        ni.set_memory_displ_size(0);
        ni.set_segment_prefix(Register::None);
    }
    ni
}

/// Whether the instruction can be re-encoded for the host at all (checked before committing to it).
fn encodable(i: &Instruction) -> bool {
    let mut e = Encoder::new(64);
    e.encode(i, 0).is_ok()
}

/// Compiles a decoded block. `None` when nothing in it would run natively (then the interpreter keeps it).
/// `coverage`: the block records its edge (`record_edge`).
pub(crate) fn compile(
    insns: &[Decoded],
    buffer: &mut CodeBuffer,
    coverage: bool,
) -> Option<Compiled> {
    let n = insns.len();
    // Stop before a REP string instruction: its handler counts its own iterations.
    let m = insns
        .iter()
        .position(|d| is_rep_string(&d.instr.instr))
        .unwrap_or(n);
    if m == 0 {
        return None;
    }
    let mut plans: Vec<Plan> = (0..m).map(|k| plan(&insns[k], k + 1 == n)).collect();
    // Liveness of the status flags, backwards; every exit and helper needs all of them. An instruction whose
    // undefined flags are live runs through its handler instead (which makes everything before it live).
    let mut live_out = vec![F_ALL; m];
    let mut live = F_ALL;
    for k in (0..m).rev() {
        live_out[k] = live;
        let p = &mut plans[k];
        if p.kind != Kind::Helper && p.undefined & live != 0 {
            *p = Plan::helper();
        }
        live = if p.kind == Kind::Helper || p.mem.is_some() {
            F_ALL
        } else {
            (live & !p.kill) | p.read
        };
    }
    let native = plans
        .iter()
        .filter(|p| !matches!(p.kind, Kind::Helper | Kind::Skip))
        .count();
    if native == 0 {
        return None;
    }
    let mut a = CodeAssembler::new(64).ok()?;
    let epilogue = a.create_label();
    let body = a.create_label();
    let chain_entry = a.create_label();
    let mut t = Translator {
        a,
        insns,
        plans,
        host_of: [None; 16],
        guest_of: [None; 16],
        dirty: 0,
        host_valid: 0,
        zero: 0,
        slot_valid: true,
        stubs: Vec::new(),
        chains: Vec::new(),
        epilogue,
        body,
        chain_entry,
        coverage,
    };
    let chains = emit(&mut t, m, &live_out).ok()?;
    let address = buffer.next_address();
    let result =
        t.a.assemble_options(address, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)
            .ok()?;
    let mut code = result.inner.code_buffer.clone();
    let mut links = Vec::with_capacity(chains.len());
    for c in &chains {
        let cell = result.label_ip(&c.cell).ok()?;
        let stub = result.label_ip(&c.stub).ok()?;
        let at = (cell - address) as usize;
        code[at..at + 8].copy_from_slice(&stub.to_le_bytes());
        links.push(Link {
            cell,
            stub,
            target: c.target,
        });
    }
    let chain_entry = result.label_ip(&t.chain_entry).ok()?;
    let entry = buffer.install(address, &code)?;
    Some(Compiled {
        entry,
        chain_entry,
        links,
    })
}

fn emit(t: &mut Translator<'_>, m: usize, live_out: &[u8]) -> R<Vec<Chain>> {
    let n = t.insns.len();
    for r in [rbx, rbp, r12, r13, r14, r15] {
        t.a.push(r)?;
    }
    t.a.sub(rsp, 8)?;
    t.a.mov(rbx, rdi)?;
    t.a.mov(r12, rsi)?;
    t.a.mov(r13, rdx)?;
    let mut body = t.body;
    t.a.set_label(&mut body)?;
    for (k, &live) in live_out.iter().enumerate().take(m) {
        // A helper's plan was forced to read all flags; the liveness pass treated it as such.
        t.compile_insn(k, live)?;
    }
    if m < n {
        // Before a REP string instruction: the interpreter runs it.
        t.save_flags()?;
        let exit = t.side_exit(m)?;
        t.a.jmp(exit)?;
    } else {
        let last = &t.insns[n - 1].instr;
        let kind = t.plans[n - 1].kind;
        if kind == Kind::Jcc {
            t.save_flags()?;
            t.need_flags(t.plans[n - 1].read)?;
            t.writeback_all()?;
            t.add_icount(n)?;
            let mut taken = t.a.create_label();
            t.jcc(last.condition_code(), taken)?;
            t.record_edge(Some(last.next_ip()))?;
            t.chain(last.next_ip())?;
            t.a.set_label(&mut taken)?;
            t.record_edge(Some(last.near_branch_target()))?;
            t.chain(last.near_branch_target())?;
        } else {
            t.writeback_all()?;
            t.save_flags()?;
            t.add_icount(n)?;
            match kind {
                Kind::JmpRel | Kind::CallRel => {
                    t.record_edge(Some(last.near_branch_target()))?;
                    t.chain(last.near_branch_target())?
                }
                // Returns, indirect branches and helpers for control transfers stored rip themselves.
                _ if last.flow_control() != FlowControl::Next => {
                    t.record_edge(None)?;
                    t.exit(EXIT_END)?
                }
                _ => t.chain(last.next_ip())?,
            }
        }
    }
    // Side exits.
    let stubs = std::mem::take(&mut t.stubs);
    for mut s in stubs {
        t.a.set_label(&mut s.label)?;
        for (g, h) in s.writeback {
            t.a.mov(q(rbx, gpr_off(g)), GP64[h])?;
        }
        t.add_icount(s.retired)?;
        t.store_rip(s.rip)?;
        t.exit(EXIT_SIDE)?;
    }
    // Chained exits, while their target is not compiled.
    let mut chains = std::mem::take(&mut t.chains);
    for c in &mut chains {
        // `set_label` records the position in the label itself: keep that copy for `label_ip`.
        t.a.set_label(&mut c.stub)?;
        t.store_rip(c.target)?;
        t.exit(EXIT_END)?;
    }
    // Entered from another block, which retired, stored its flags and wrote its registers back: check that
    // this one fits in the budget (`icount_end - icount`), else return with rip on it.
    let mut no_fit = t.a.create_label();
    let mut chain_entry = t.chain_entry;
    t.a.set_label(&mut chain_entry)?;
    t.chain_entry = chain_entry;
    t.a.mov(rax, q(rbx, offset_of!(Cpu, icount_end) as i32))?;
    t.a.sub(rax, q(rbx, offset_of!(Cpu, icount) as i32))?;
    t.a.cmp(rax, n as i32)?;
    t.a.jb(no_fit)?;
    t.a.jmp(t.body)?;
    t.a.set_label(&mut no_fit)?;
    t.store_rip(t.insns[0].instr.ip())?;
    t.exit(EXIT_NO_FIT)?;
    let mut epilogue = t.epilogue;
    t.a.set_label(&mut epilogue)?;
    t.a.add(rsp, 8)?;
    for r in [r15, r14, r13, r12, rbp, rbx] {
        t.a.pop(r)?;
    }
    t.a.ret()?;
    // The cells.
    for c in &mut chains {
        t.a.set_label(&mut c.cell)?;
        t.a.dq(&[0])?;
    }
    Ok(chains)
}
