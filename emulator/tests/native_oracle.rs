//! The native oracle: integer kernels assembled with iced's code assembler run on this x86-64 host CPU and in
//! tandem from the same registers and memory, and the results must agree.
//!
//! How it runs natively: the code and data pages are mapped at the same guest addresses in this process
//! (`CODE_BASE`, `DATA_BASE`, with MAP_FIXED_NOREPLACE so nothing of the test process is overwritten), so pointers
//! in registers mean the same thing on both sides. A trampoline at `CODE_BASE` saves the callee-saved registers,
//! loads every GPR but rsp and rflags from a `NativeRegs` block, jumps to the snippet at `SNIPPET`, and the snippet
//! jumps to an epilogue that stores them back and returns. In tandem the same snippet ends with HLT instead (a #GP
//! at user level), and runs on tandem's own stack pages; rsp is therefore not compared, and snippets keep the stack
//! balanced and never copy rsp into another register.
//!
//! What is compared: the 15 GPRs other than rsp, the user-visible rflags bits (status flags, DF, NT) and the data
//! pages. Snippets only let architecturally defined flags reach a compared place (a flag-setting instruction whose
//! flags are all defined comes last, or `pushfq` right after one), so the host's vendor-specific undefined flags
//! never decide a result. Inputs are random from a seeded stream; a failure prints the seed and the snippet.
//!
//! The second half walks the hint-NOP space and the CET instructions one encoding at a time (see its section
//! comment). There an encoding may fault: the host's SIGILL/SIGSEGV is caught (`on_native_fault`), the snippet
//! resumes at the epilogue with the registers of the fault, and tandem must raise the matching exception.
//!
//! Safety: running generated code natively is inherently unsafe; each snippet is written so that it only touches
//! its registers, the data pages and a balanced stack, and cannot fault or loop forever (every loop is counted).

mod common;

use common::*;
use iced_x86::code_asm::*;
use rand::Rng;
use rand_chacha::ChaCha20Rng;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, OnceLock};
use tandem_emulator::cpu::{named_stream, Exception, Exit, Machine, Registers};

/// Where the snippet under test starts (the trampoline's prologue is at CODE_BASE, its epilogue at EPILOGUE).
const SNIPPET: u64 = CODE_BASE + 0x800;
const EPILOGUE: u64 = CODE_BASE + 0x400;
/// Offset of rflags in `NativeRegs`.
const RFLAGS_OFFSET: i32 = 16 * 8;
/// Random inputs per kernel.
const RUNS_PER_KERNEL: usize = 48;
/// The rflags bits compared: CF, PF, AF, ZF, SF, OF, DF, NT (and the always-one bits 1 and 9).
const RFLAGS_COMPARED: u64 = 0x8d5 | (1 << 10) | (1 << 14) | 0x202;
/// Instructions a kernel may retire in tandem before the run counts as runaway.
const INSTRUCTIONS_MAX: u64 = 10_000_000;

/// The register block the trampoline loads and stores: 16 GPRs in encoding order (rsp unused), then rflags.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct NativeRegs {
    gpr: [u64; 16],
    rflags: u64,
}

/// The native mappings, made once per process; the mutex serialises the tests that use them.
struct Native {
    lock: Mutex<()>,
}

fn native() -> &'static Native {
    static NATIVE: OnceLock<Native> = OnceLock::new();
    NATIVE.get_or_init(|| {
        for (base, size) in [(CODE_BASE, CODE_SIZE), (DATA_BASE, DATA_SIZE)] {
            // SAFETY: an anonymous private mapping at a fixed address; MAP_FIXED_NOREPLACE fails instead of
            // replacing anything the test process already has there.
            let p = unsafe {
                libc::mmap(
                    base as *mut libc::c_void,
                    size as usize,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                    -1,
                    0,
                )
            };
            assert_eq!(
                p as u64, base,
                "cannot map {base:#x} in the test process (is something else there?)"
            );
        }
        Native {
            lock: Mutex::new(()),
        }
    })
}

fn gpr64(k: usize) -> AsmRegister64 {
    [
        rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15,
    ][k]
}

/// The trampoline's prologue (at CODE_BASE) and epilogue (at EPILOGUE), per the module doc.
fn trampoline() -> (Vec<u8>, Vec<u8>) {
    let mut a = CodeAssembler::new(64).unwrap();
    for r in [rbx, rbp, r12, r13, r14, r15, rdi] {
        a.push(r).unwrap();
    }
    a.mov(rax, qword_ptr(rdi + RFLAGS_OFFSET)).unwrap();
    a.push(rax).unwrap();
    a.popfq().unwrap();
    for k in (0..16).filter(|&k| k != 4 && k != 7) {
        a.mov(gpr64(k), qword_ptr(rdi + (8 * k) as i32)).unwrap();
    }
    a.mov(rdi, qword_ptr(rdi + 56)).unwrap();
    a.jmp(SNIPPET).unwrap();
    let prologue = a.assemble(CODE_BASE).unwrap();

    let mut a = CodeAssembler::new(64).unwrap();
    a.push(rdi).unwrap();
    a.mov(rdi, qword_ptr(rsp + 8)).unwrap();
    for k in (0..16).filter(|&k| k != 4 && k != 7) {
        a.mov(qword_ptr(rdi + (8 * k) as i32), gpr64(k)).unwrap();
    }
    a.pop(rax).unwrap();
    a.mov(qword_ptr(rdi + 56), rax).unwrap();
    a.pushfq().unwrap();
    a.pop(rax).unwrap();
    a.mov(qword_ptr(rdi + RFLAGS_OFFSET), rax).unwrap();
    a.cld().unwrap(); // the SysV ABI wants DF clear on return
    a.pop(rdi).unwrap();
    for r in [r15, r14, r13, r12, rbp, rbx] {
        a.pop(r).unwrap();
    }
    a.ret().unwrap();
    let epilogue = a.assemble(EPILOGUE).unwrap();
    (prologue, epilogue)
}

/// Runs `snippet` (assembled at SNIPPET, ending with a jump to EPILOGUE) on the host CPU.
fn run_native(snippet: &[u8], regs: &NativeRegs, data: &[u8]) -> (NativeRegs, Vec<u8>) {
    let (out, data_after, signal) = run_native_catching(snippet, regs, data);
    assert_eq!(signal, None, "the snippet raised a signal on the host");
    (out, data_after)
}

/// The signal the last native run raised inside the code pages (0: none); written by `on_native_fault`.
static NATIVE_SIGNAL: AtomicI32 = AtomicI32::new(0);

/// The handler of SIGILL, SIGSEGV, SIGBUS, SIGFPE and SIGTRAP while snippets may fault. A fault whose rip lies in
/// the code pages is the snippet's: the signal is noted and the snippet resumes at EPILOGUE, which stores the
/// registers as they were at the fault (the faulting instruction did nothing) and returns normally. A fault
/// anywhere else is not ours: the default action is restored and the instruction re-runs into it, so the test
/// process dies of the signal as it would have without this handler (Rust's own stack-overflow report is lost
/// then, which only this test binary can notice).
extern "C" fn on_native_fault(
    signal: libc::c_int,
    _: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    // SAFETY: the kernel passes a valid ucontext_t for a handler installed with SA_SIGINFO; only plain loads and
    // stores and the async-signal-safe `signal(2)` happen here.
    unsafe {
        let uc = context as *mut libc::ucontext_t;
        let rip = (*uc).uc_mcontext.gregs[libc::REG_RIP as usize] as u64;
        if (CODE_BASE..CODE_BASE + CODE_SIZE).contains(&rip) {
            NATIVE_SIGNAL.store(signal, Ordering::SeqCst);
            (*uc).uc_mcontext.gregs[libc::REG_RIP as usize] = EPILOGUE as i64;
        } else {
            libc::signal(signal, libc::SIG_DFL);
        }
    }
}

/// Installs `on_native_fault` once for the process.
fn catch_native_faults() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        for signal in [
            libc::SIGILL,
            libc::SIGSEGV,
            libc::SIGBUS,
            libc::SIGFPE,
            libc::SIGTRAP,
        ] {
            // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value; the handler has the
            // SA_SIGINFO signature and is async-signal-safe (see its doc).
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_native_fault as *const () as usize;
                action.sa_flags = libc::SA_SIGINFO;
                libc::sigemptyset(&mut action.sa_mask);
                assert_eq!(libc::sigaction(signal, &action, std::ptr::null_mut()), 0);
            }
        }
    });
}

/// Runs `snippet` on the host CPU as `run_native` does, but a signal raised by the snippet (SIGILL for #UD,
/// SIGSEGV for #GP or #PF, ...) is caught: it is returned with the registers as they were at the fault.
fn run_native_catching(
    snippet: &[u8],
    regs: &NativeRegs,
    data: &[u8],
) -> (NativeRegs, Vec<u8>, Option<libc::c_int>) {
    catch_native_faults();
    let n = native();
    let _guard = n.lock.lock().unwrap_or_else(|e| e.into_inner());
    let (prologue, epilogue) = trampoline();
    assert!(prologue.len() < (EPILOGUE - CODE_BASE) as usize);
    assert!(snippet.len() < (CODE_BASE + CODE_SIZE - SNIPPET) as usize);
    // SAFETY: the code pages were mapped by `native()` (CODE_SIZE bytes at CODE_BASE); the mutex guarantees no other
    // thread runs or writes them now. They are made writable, filled, then made executable again.
    unsafe {
        let base = CODE_BASE as *mut u8;
        assert_eq!(
            libc::mprotect(
                base.cast(),
                CODE_SIZE as usize,
                libc::PROT_READ | libc::PROT_WRITE
            ),
            0
        );
        std::ptr::write_bytes(base, 0xcc, CODE_SIZE as usize);
        std::ptr::copy_nonoverlapping(prologue.as_ptr(), base, prologue.len());
        std::ptr::copy_nonoverlapping(
            epilogue.as_ptr(),
            base.add((EPILOGUE - CODE_BASE) as usize),
            epilogue.len(),
        );
        std::ptr::copy_nonoverlapping(
            snippet.as_ptr(),
            base.add((SNIPPET - CODE_BASE) as usize),
            snippet.len(),
        );
        assert_eq!(
            libc::mprotect(
                base.cast(),
                CODE_SIZE as usize,
                libc::PROT_READ | libc::PROT_EXEC
            ),
            0
        );
    }
    assert_eq!(data.len(), DATA_SIZE as usize);
    // SAFETY: the data pages are mapped read-write by `native()` and only used under the mutex.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), DATA_BASE as *mut u8, data.len()) };
    let mut out = *regs;
    // SAFETY: CODE_BASE holds the prologue just written: it follows the SysV ABI (saves and restores the
    // callee-saved registers, returns with a balanced stack and DF clear) and takes a pointer to `NativeRegs`.
    // The snippets of this file touch only registers, the data pages and a balanced stack, and end in EPILOGUE.
    let f: extern "C" fn(*mut NativeRegs) = unsafe { std::mem::transmute(CODE_BASE as usize) };
    NATIVE_SIGNAL.store(0, Ordering::SeqCst);
    f(&mut out);
    let signal = NATIVE_SIGNAL.swap(0, Ordering::SeqCst);
    let mut data_after = vec![0u8; DATA_SIZE as usize];
    // SAFETY: as above, the data pages are ours under the mutex.
    unsafe {
        std::ptr::copy_nonoverlapping(
            DATA_BASE as *const u8,
            data_after.as_mut_ptr(),
            data_after.len(),
        )
    };
    (out, data_after, (signal != 0).then_some(signal))
}

/// Runs the same snippet body (ending in HLT) in tandem.
fn run_tandem(snippet: &[u8], regs: &NativeRegs, data: &[u8]) -> (NativeRegs, Vec<u8>, u64) {
    let mut image = Image::new();
    image.write(SNIPPET, snippet);
    image.data.copy_from_slice(data);
    let mut state = State {
        gpr: regs.gpr,
        rip: SNIPPET,
        rflags: regs.rflags,
        ..State::default()
    };
    state.gpr[4] = STACK_BASE + STACK_SIZE - 0x100;
    let mut m = machine_with(&image, &state);
    let exit = m.run(INSTRUCTIONS_MAX);
    assert_eq!(
        exit,
        Exit::Exception(Exception::GeneralProtection),
        "the kernel should end at its HLT (rip {:#x})",
        m.cpu.regs.rip
    );
    let s = tandem_state(&m);
    let out = NativeRegs {
        gpr: s.gpr,
        rflags: s.rflags,
    };
    (out, tandem_image(&m).data, m.cpu.icount)
}

/// A kernel: a name and the body, written into a code assembler (which starts at SNIPPET).
struct Kernel {
    name: &'static str,
    body: fn(&mut CodeAssembler),
    /// Adjusts random inputs (counts, pointers) so that the body stays in bounds.
    inputs: fn(&mut ChaCha20Rng, &mut NativeRegs, &mut [u8]),
}

fn assemble_kernel(k: &Kernel, native_end: bool) -> Vec<u8> {
    let mut a = CodeAssembler::new(64).unwrap();
    (k.body)(&mut a);
    if native_end {
        a.jmp(EPILOGUE).unwrap();
    } else {
        a.hlt().unwrap();
    }
    a.assemble(SNIPPET).unwrap()
}

fn random_inputs(rng: &mut ChaCha20Rng) -> (NativeRegs, Vec<u8>) {
    let mut regs = NativeRegs::default();
    for g in regs.gpr.iter_mut() {
        *g = match rng.random_range(0..6) {
            0 => [
                0,
                1,
                u64::MAX,
                1 << 63,
                (1 << 63) - 1,
                0xffff_ffff,
                0x8000_0000,
            ][rng.random_range(0..7)],
            1 => rng.random_range(0..256),
            _ => rng.random(),
        };
    }
    // Status flags only: DF is set by the kernels that want it, TF and AC would trap on the host.
    regs.rflags = 0x202 | (rng.random::<u64>() & 0x8d5);
    let mut data = vec![0u8; DATA_SIZE as usize];
    rng.fill(&mut data[..]);
    (regs, data)
}

fn check_kernel(k: &Kernel) {
    let seed = std::env::var("TANDEM_NATIVE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x6e61_7469u64);
    let native_code = assemble_kernel(k, true);
    let tandem_code = assemble_kernel(k, false);
    let mut retired_total = 0u64;
    for run in 0..RUNS_PER_KERNEL {
        let mut rng = named_stream(seed, &format!("native/{}/{run}", k.name));
        let (mut regs, mut data) = random_inputs(&mut rng);
        (k.inputs)(&mut rng, &mut regs, &mut data);
        let (n, ndata) = run_native(&native_code, &regs, &data);
        let (t, tdata, retired) = run_tandem(&tandem_code, &regs, &data);
        retired_total += retired;
        let mut problems = Vec::new();
        for r in (0..16).filter(|&r| r != 4) {
            if n.gpr[r] != t.gpr[r] {
                problems.push(format!(
                    "{}: host {:#x} tandem {:#x}",
                    GPR_NAMES[r], n.gpr[r], t.gpr[r]
                ));
            }
        }
        if (n.rflags ^ t.rflags) & RFLAGS_COMPARED != 0 {
            problems.push(format!(
                "rflags: host {:#x} tandem {:#x}",
                n.rflags, t.rflags
            ));
        }
        if let Some(at) = (0..ndata.len()).find(|&i| ndata[i] != tdata[i]) {
            problems.push(format!(
                "data[{:#x}]: host {:#04x} tandem {:#04x}",
                DATA_BASE + at as u64,
                ndata[at],
                tdata[at]
            ));
        }
        assert!(
            problems.is_empty(),
            "kernel {} run {run} differs from the host CPU (reproduce with TANDEM_NATIVE_SEED={seed} \
             cargo test -p tandem-emulator --test native_oracle {})\n  {}\n  inputs: {:x?}\n  code: {:02x?}",
            k.name,
            k.name,
            problems.join("\n  "),
            regs,
            tandem_code
        );
    }
    assert!(retired_total > 0);
}

// =====================================================================================================================
// Kernels.

/// rsi and rdi point into the data pages with room for `bytes_max` bytes either way; rcx is a count below `count_max`.
fn pointers_and_count(rng: &mut ChaCha20Rng, regs: &mut NativeRegs, count_max: u64) {
    regs.gpr[6] = DATA_BASE + 0x800 + rng.random_range(0..0x400);
    regs.gpr[7] = DATA_BASE + 0x2400 + rng.random_range(0..0x400);
    regs.gpr[1] = rng.random_range(0..count_max);
}

fn no_inputs(_: &mut ChaCha20Rng, _: &mut NativeRegs, _: &mut [u8]) {}

/// Add/adc/sub/sbb/neg chains with every intermediate flag image captured through pushfq into memory.
fn arithmetic_flags(a: &mut CodeAssembler) {
    let ops: [fn(&mut CodeAssembler); 8] = [
        |a| a.add(rax, rbx).unwrap(),
        |a| a.adc(rcx, rdx).unwrap(),
        |a| a.sub(r8d, r9d).unwrap(),
        |a| a.sbb(r10w, r11w).unwrap(),
        |a| a.neg(r12b).unwrap(),
        |a| a.cmp(r13, r14).unwrap(),
        |a| a.add(bpl, 0x7f).unwrap(),
        |a| a.sub(esi, 0x8000_0000u32 as i32).unwrap(),
    ];
    a.mov(rdi, DATA_BASE).unwrap();
    for (k, op) in ops.iter().enumerate() {
        op(a);
        a.pushfq().unwrap();
        a.pop(qword_ptr(rdi + (8 * k) as i32)).unwrap();
    }
    // INC/DEC keep CF; CMC, STC, CLC change only CF.
    a.inc(r15).unwrap();
    a.cmc().unwrap();
    a.dec(eax).unwrap();
    a.pushfq().unwrap();
    a.pop(qword_ptr(rdi + 64)).unwrap();
}

/// Multiplies and divides (no #DE: divisors are forced nonzero and dividends sign- or zero-extended).
fn muldiv(a: &mut CodeAssembler) {
    a.mov(r8, rax).unwrap();
    a.mul(rbx).unwrap(); // rdx:rax = rax * rbx
    a.mov(r9, rdx).unwrap();
    a.mov(r10, rax).unwrap();
    a.mov(rax, r8).unwrap();
    a.imul(rbx).unwrap();
    a.mov(r11, rdx).unwrap();
    a.imul_3(r12, rcx, 0x1234_5678).unwrap();
    a.imul_2(r13d, esi).unwrap();
    a.imul_3(r14w, si, -3).unwrap();
    a.adc(r15, 0).unwrap(); // CF after IMUL is defined
                            // Unsigned divide by a nonzero divisor.
    a.mov(rax, r8).unwrap();
    a.xor(edx, edx).unwrap();
    a.or(rbx, 1).unwrap();
    a.div(rbx).unwrap();
    a.mov(rbp, rdx).unwrap();
    // Signed 32-bit divide; the divisor is odd and positive so that no quotient overflows.
    a.mov(eax, r8d).unwrap();
    a.cdq().unwrap();
    a.and(ecx, 0x7fff_ffff).unwrap();
    a.or(ecx, 3).unwrap();
    a.idiv(ecx).unwrap();
    // 8-bit forms.
    a.mov(eax, esi).unwrap();
    a.and(eax, 0x3fff).unwrap(); // AX / 0x7f stays below 256
    a.mov(dil, 0x7f).unwrap();
    a.div(dil).unwrap();
    a.add(rax, 0).unwrap(); // leave defined flags
}

/// Shifts and rotates by CL and by immediates; results only (flags are partly undefined).
fn shifts(a: &mut CodeAssembler) {
    a.mov(r8, rax).unwrap();
    a.shl(r8, cl).unwrap();
    a.mov(r9, rbx).unwrap();
    a.sar(r9d, cl).unwrap();
    a.mov(r10, rdx).unwrap();
    a.shr(r10w, cl).unwrap();
    a.mov(r11, rsi).unwrap();
    a.rol(r11b, cl).unwrap();
    a.mov(r12, rdi).unwrap();
    a.ror(r12, 13).unwrap();
    a.mov(r13, rax).unwrap();
    a.rcl(r13d, 1).unwrap();
    a.rcr(r13, 7).unwrap();
    a.mov(r14, rbx).unwrap();
    a.shld(r14, rdx, cl).unwrap();
    a.mov(r15, rsi).unwrap();
    a.shrd(r15d, edi, 5).unwrap();
    a.mov(rbp, rax).unwrap();
    a.sar(rbp, 63).unwrap();
    a.bswap(rax).unwrap();
    a.bswap(ebx).unwrap();
    a.add(rax, rbx).unwrap(); // leave defined flags
}

/// Bit instructions whose results and flags are defined for nonzero inputs.
fn bits(a: &mut CodeAssembler) {
    a.or(rax, 1 << 20).unwrap();
    a.bsf(r8, rax).unwrap();
    a.bsr(r9, rax).unwrap();
    a.popcnt(r10, rbx).unwrap();
    a.lzcnt(r11, rcx).unwrap();
    a.tzcnt(r12, rdx).unwrap();
    a.mov(r13, rsi).unwrap();
    a.bt(r13, 17).unwrap();
    a.setc(r14b).unwrap();
    a.bts(r13, rcx).unwrap();
    a.btr(r13d, 3).unwrap();
    a.btc(r13w, dx).unwrap();
    a.setc(r15b).unwrap();
    a.sub(rdi, rsi).unwrap(); // leave defined flags
}

/// String instructions with REP prefixes and counts, forward and backward.
fn strings(a: &mut CodeAssembler) {
    a.push(rcx).unwrap();
    a.push(rsi).unwrap();
    a.push(rdi).unwrap();
    a.rep().movsb().unwrap();
    a.pop(rdi).unwrap();
    a.pop(rsi).unwrap();
    a.pop(rcx).unwrap();
    a.push(rcx).unwrap();
    a.push(rdi).unwrap();
    a.shr(rcx, 3).unwrap();
    a.mov(rax, rbx).unwrap();
    a.rep().stosq().unwrap();
    a.pop(rdi).unwrap();
    a.pop(rcx).unwrap();
    a.repe().cmpsb().unwrap();
    a.mov(r8, rcx).unwrap();
    a.setne(r9b).unwrap();
    // Backwards with DF set.
    a.std().unwrap();
    a.mov(ecx, 9).unwrap();
    a.repne().scasb().unwrap();
    a.lodsw().unwrap();
    a.cld().unwrap();
    a.add(r10, r11).unwrap();
}

fn strings_inputs(rng: &mut ChaCha20Rng, regs: &mut NativeRegs, data: &mut [u8]) {
    pointers_and_count(rng, regs, 600);
    // Make the compared ranges mostly equal so that REPE CMPSB runs a while.
    let (src, dst) = (
        (regs.gpr[6] - DATA_BASE) as usize,
        (regs.gpr[7] - DATA_BASE) as usize,
    );
    for k in 0..0x300 {
        if rng.random_range(0..200) != 0 {
            data[dst + k] = data[src + k];
        }
    }
}

/// A counted loop with calls and memory: sums an array, then bubble-sorts 24 words.
fn loops_and_calls(a: &mut CodeAssembler) {
    let mut sum_loop = a.create_label();
    let mut func = a.create_label();
    let mut done = a.create_label();
    let mut outer = a.create_label();
    let mut inner = a.create_label();
    let mut no_swap = a.create_label();
    a.mov(rsi, DATA_BASE).unwrap();
    a.mov(ecx, 100u32).unwrap();
    a.xor(eax, eax).unwrap();
    a.set_label(&mut sum_loop).unwrap();
    a.call(func).unwrap();
    a.dec(ecx).unwrap();
    a.jnz(sum_loop).unwrap();
    // Bubble sort of 24 qwords at DATA_BASE + 0x1000.
    a.mov(r8d, 24u32).unwrap();
    a.set_label(&mut outer).unwrap();
    a.mov(rdi, DATA_BASE + 0x1000).unwrap();
    a.mov(r9d, 23u32).unwrap();
    a.set_label(&mut inner).unwrap();
    a.mov(r10, qword_ptr(rdi)).unwrap();
    a.mov(r11, qword_ptr(rdi + 8)).unwrap();
    a.cmp(r10, r11).unwrap();
    a.jle(no_swap).unwrap();
    a.mov(qword_ptr(rdi), r11).unwrap();
    a.mov(qword_ptr(rdi + 8), r10).unwrap();
    a.set_label(&mut no_swap).unwrap();
    a.add(rdi, 8).unwrap();
    a.dec(r9d).unwrap();
    a.jnz(inner).unwrap();
    a.dec(r8d).unwrap();
    a.jnz(outer).unwrap();
    a.jmp(done).unwrap();
    a.set_label(&mut func).unwrap();
    a.movzx(edx, word_ptr(rsi + rcx * 2)).unwrap();
    a.add(rax, rdx).unwrap();
    a.xor(qword_ptr(rsi + rcx * 8 + 0x400), rax).unwrap();
    a.ret().unwrap();
    a.set_label(&mut done).unwrap();
    a.cmp(rax, rbx).unwrap();
}

/// Flags through pushfq/popfq: a random image (status flags, DF, NT, IOPL, IF cleared) is loaded and read back.
fn flags_round_trip(a: &mut CodeAssembler) {
    a.push(rbx).unwrap();
    a.popfq().unwrap();
    a.pushfq().unwrap();
    a.pop(r8).unwrap();
    a.cld().unwrap();
    a.stc().unwrap();
    a.cmc().unwrap();
    a.lahf().unwrap();
    a.mov(r9, rax).unwrap();
    a.mov(ah, 0xd5u32).unwrap();
    a.sahf().unwrap();
    a.pushfq().unwrap();
    a.pop(r10).unwrap();
    a.push(rbx).unwrap();
    a.popfq().unwrap(); // leaves the random image (with NT) for the epilogue to compare
}

fn flags_inputs(rng: &mut ChaCha20Rng, regs: &mut NativeRegs, _: &mut [u8]) {
    // CF PF AF ZF SF OF, DF, IOPL (ignored at CPL 3), NT; never TF or AC, which would trap on the host.
    let writable = 0x8d5 | (1 << 10) | (3 << 12) | (1 << 14);
    regs.gpr[3] = (rng.random::<u64>() & writable) | 0x2;
}

fn kernels() -> Vec<Kernel> {
    vec![
        Kernel {
            name: "arithmetic_flags",
            body: arithmetic_flags,
            inputs: no_inputs,
        },
        Kernel {
            name: "muldiv",
            body: muldiv,
            inputs: no_inputs,
        },
        Kernel {
            name: "shifts",
            body: shifts,
            inputs: no_inputs,
        },
        Kernel {
            name: "bits",
            body: bits,
            inputs: no_inputs,
        },
        Kernel {
            name: "strings",
            body: strings,
            inputs: strings_inputs,
        },
        Kernel {
            name: "loops_and_calls",
            body: loops_and_calls,
            inputs: no_inputs,
        },
        Kernel {
            name: "flags_round_trip",
            body: flags_round_trip,
            inputs: flags_inputs,
        },
    ]
}

fn kernel(name: &str) -> Kernel {
    kernels()
        .into_iter()
        .find(|k| k.name == name)
        .expect("kernel")
}

#[test]
fn arithmetic_flags_match_the_host() {
    check_kernel(&kernel("arithmetic_flags"));
}

#[test]
fn muldiv_matches_the_host() {
    check_kernel(&kernel("muldiv"));
}

#[test]
fn shifts_match_the_host() {
    check_kernel(&kernel("shifts"));
}

#[test]
fn bits_match_the_host() {
    check_kernel(&kernel("bits"));
}

#[test]
fn strings_match_the_host() {
    check_kernel(&kernel("strings"));
}

#[test]
fn loops_and_calls_match_the_host() {
    check_kernel(&kernel("loops_and_calls"));
}

#[test]
fn flags_round_trip_matches_the_host() {
    check_kernel(&kernel("flags_round_trip"));
}

/// The oracle itself must be able to tell a difference: a snippet run natively differs from another one in tandem.
#[test]
fn the_oracle_sees_a_difference() {
    let inc = Kernel {
        name: "inc",
        body: |a| a.inc(rax).unwrap(),
        inputs: no_inputs,
    };
    let dec = Kernel {
        name: "dec",
        body: |a| a.dec(rax).unwrap(),
        inputs: no_inputs,
    };
    let regs = NativeRegs {
        rflags: 0x202,
        ..NativeRegs::default()
    };
    let data = vec![0u8; DATA_SIZE as usize];
    let (n, _) = run_native(&assemble_kernel(&inc, true), &regs, &data);
    let (t, _, _) = run_tandem(&assemble_kernel(&dec, false), &regs, &data);
    assert_eq!(n.gpr[0], 1);
    assert_eq!(t.gpr[0], u64::MAX);
}

// =====================================================================================================================
// The hint-NOP space, one encoding at a time.
//
// SDM Vol. 2B, NOP ("0F 1F /0 NOP r/m16/32"), and Vol. 2D, Appendix A, Table A-3 (two-byte opcode map): 0F 0D and
// 0F 18-0F 1F are "NOP Ev" / prefetch group 16, where every ModRM form not assigned to an instruction is a
// reserved NOP ("hint NOP"). Instructions later placed there run as NOPs on processors that predate them: PREFETCHh
// (group 16 /0-/3, Vol. 2B), PREFETCHIT0/1 (0F 18 /7 and /6, Vol. 2B), CLDEMOTE (0F 1C /0, Vol. 2A), the MPX BND*
// forms (0F 1A, 0F 1B, Vol. 2A), ENDBR32/ENDBR64 (F3 0F 1E FB/FA, Vol. 2A) and RDSSPD/RDSSPQ (F3 0F 1E /1 with a
// register operand, Vol. 2B: "a NOP when CET shadow stacks are not enabled and on processors that do not support
// CET"). The other CET instructions live outside the hint space and raise #UD without CET (the "#UD If CR4.CET =
// 0" rows of INCSSP and CLRSSBSY in Vol. 2A, RSTORSSP, SAVEPREVSSP, SETSSBSY, WRSS and WRUSS in Vol. 2B):
// `cet_encodings` lists them. emulator/src/cpu/hint.rs has the same table.
//
// The oracle is this host CPU with CET off for the test process (Linux user space runs without shadow stacks
// unless a binary asks for them; the walk first checks that rdsspq leaves 0 as a NOP does, since a process with
// shadow stacks on would read a non-zero SSP). tandem's CPUID advertises neither SHSTK nor IBT
// (leaf 7 ECX bit 7, EDX bit 20), so the emulated CPU is one without CET.

/// What one encoding did: completed (registers and data compared separately) or raised this signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum HintOutcome {
    Completed,
    Signal(&'static str),
}

fn signal_name(signal: libc::c_int) -> &'static str {
    match signal {
        libc::SIGILL => "SIGILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGTRAP => "SIGTRAP",
        _ => "another signal",
    }
}

/// The signal Linux sends a user-mode process for a tandem exception.
fn exception_signal(e: Exception) -> &'static str {
    match e {
        Exception::InvalidOpcode => "SIGILL",
        Exception::GeneralProtection | Exception::PageFault { .. } => "SIGSEGV",
        Exception::DivideError => "SIGFPE",
        Exception::Breakpoint => "SIGTRAP",
        _ => "another signal",
    }
}

/// The ModRM byte followed by what it asks for: a SIB byte (base rsp, no index) when rm = 100b with a memory
/// operand, and a displacement (disp8 for mod 01b, disp32 for mod 10b and for RIP-relative mod 00b rm 101b).
fn modrm_tail(modrm: u8) -> Vec<u8> {
    let (md, rm) = (modrm >> 6, modrm & 7);
    let mut out = vec![modrm];
    if md != 3 && rm == 4 {
        out.push(0x24);
    }
    match (md, rm) {
        (1, _) => out.push(0x08),
        (2, _) | (0, 5) => out.extend([0x10, 0, 0, 0]),
        _ => {}
    }
    out
}

/// Every encoding of the hint space walked: 0F 0D and 0F 18-0F 1F with each of the 256 ModRM bytes, under no
/// legacy prefix, 66, F2, F3 and the pairs of them in both orders, each with no REX, REX.W, REX.B and REX.WR.
fn hint_space_encodings() -> Vec<Vec<u8>> {
    let legacy: [&[u8]; 8] = [
        &[],
        &[0x66],
        &[0xf2],
        &[0xf3],
        &[0x66, 0xf3],
        &[0xf3, 0x66],
        &[0xf2, 0xf3],
        &[0xf3, 0xf2],
    ];
    let rex: [&[u8]; 4] = [&[], &[0x48], &[0x41], &[0x4c]];
    let mut out = Vec::new();
    for l in legacy {
        for r in rex {
            for opcode in std::iter::once(0x0d).chain(0x18..=0x1f) {
                for modrm in 0..=255u8 {
                    let mut e = [l, r, &[0x0f, opcode]].concat();
                    e.extend(modrm_tail(modrm));
                    out.push(e);
                }
            }
        }
    }
    out
}

/// The CET instructions outside the hint space, in register and memory forms (SDM Vol. 2A/2B pages named in the
/// section comment), and the fences they share 0F AE with, in every r/m form (which the fences ignore).
fn cet_encodings() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for rex in [&[][..], &[0x48], &[0x41], &[0x49]] {
        for modrm in 0xe8..=0xefu8 {
            out.push([&[0xf3][..], rex, &[0x0f, 0xae, modrm]].concat()); // INCSSPD/Q r (F3 0F AE /5)
        }
        for modrm in 0xe8..=0xffu8 {
            out.push([rex, &[0x0f, 0xae, modrm]].concat()); // LFENCE, MFENCE, SFENCE (NP 0F AE /5 /6 /7, mod 11b)
        }
        out.push([&[0xf3][..], rex, &[0x0f, 0xae, 0x30]].concat()); // CLRSSBSY m64 (F3 0F AE /6)
        out.push([rex, &[0x0f, 0x38, 0xf6, 0x00]].concat()); // WRSSD/Q m, r (0F 38 F6)
        out.push([&[0x66][..], rex, &[0x0f, 0x38, 0xf5, 0x00]].concat()); // WRUSSD/Q m, r (66 0F 38 F5)
    }
    out.push(vec![0xf3, 0x0f, 0x01, 0x28]); // RSTORSSP m64 (F3 0F 01 /5)
    out.push(vec![0xf3, 0x0f, 0x01, 0xea]); // SAVEPREVSSP (F3 0F 01 EA)
    out.push(vec![0xf3, 0x0f, 0x01, 0xe8]); // SETSSBSY (F3 0F 01 E8)
    out
}

/// Registers for a hint encoding: every general register points into the data pages (a memory operand built
/// from any of them stays inside memory both sides own, should an encoding touch it), with random low bits so
/// that a register write is visible.
fn hint_inputs(rng: &mut ChaCha20Rng) -> NativeRegs {
    let mut regs = NativeRegs::default();
    for g in regs.gpr.iter_mut() {
        *g = DATA_BASE + 0x1000 + rng.random_range(0..0x800u64);
    }
    regs.rflags = 0x202 | (rng.random::<u64>() & 0x8d5);
    regs
}

/// One tandem machine for a whole walk (building one per encoding would cost more than the walk): each encoding is
/// written at SNIPPET followed by HLT, and runs from fresh registers.
struct TandemHintRunner {
    machine: Machine,
}

impl TandemHintRunner {
    fn new(data: &[u8]) -> TandemHintRunner {
        let mut image = Image::new();
        image.data.copy_from_slice(data);
        TandemHintRunner {
            machine: machine_with(&image, &State::default()),
        }
    }

    /// Runs one encoding: what it did, the registers after and the data pages.
    fn run(&mut self, encoding: &[u8], regs: &NativeRegs) -> (HintOutcome, NativeRegs, Vec<u8>) {
        let m = &mut self.machine;
        let code = [encoding, &[0xf4]].concat();
        m.cpu
            .mem
            .poke(SNIPPET, &code)
            .expect("the code page is mapped");
        let mut state = State {
            gpr: regs.gpr,
            rip: SNIPPET,
            rflags: regs.rflags,
            ..State::default()
        };
        state.gpr[4] = STACK_BASE + STACK_SIZE - 0x100;
        let s = state;
        m.cpu.set_registers(&Registers {
            gpr: s.gpr,
            rip: s.rip,
            rflags: s.rflags,
            fs_base: s.fs_base,
            gs_base: s.gs_base,
            xmm: s.xmm,
            mxcsr: s.mxcsr,
            x87: s.x87,
        });
        let icount = m.cpu.icount;
        let exit = m.run(2);
        let retired = m.cpu.icount - icount;
        let rip = m.cpu.regs.rip;
        let outcome = match exit {
            Exit::Exception(Exception::GeneralProtection)
                if rip == SNIPPET + encoding.len() as u64 && retired == 1 =>
            {
                HintOutcome::Completed
            }
            Exit::Exception(e) if rip == SNIPPET && retired == 0 => {
                HintOutcome::Signal(exception_signal(e))
            }
            other => panic!(
                "{encoding:02x?}: tandem stopped with {other:?} at rip {rip:#x} after {retired} instructions"
            ),
        };
        let r = m.cpu.registers();
        let mut data = vec![0u8; DATA_SIZE as usize];
        m.cpu
            .mem
            .read_bytes(DATA_BASE, &mut data)
            .expect("the data pages are mapped");
        (
            outcome,
            NativeRegs {
                gpr: r.gpr,
                rflags: r.rflags,
            },
            data,
        )
    }
}

fn disassemble(encoding: &[u8]) -> String {
    use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter};
    let mut decoder = Decoder::with_ip(64, encoding, SNIPPET, DecoderOptions::NONE);
    let i = decoder.decode();
    let mut text = String::new();
    IntelFormatter::new().format(&i, &mut text);
    format!("{text} ({:?}, {} bytes)", i.code(), i.len())
}

fn iced_code(encoding: &[u8]) -> String {
    let mut decoder =
        iced_x86::Decoder::with_ip(64, encoding, SNIPPET, iced_x86::DecoderOptions::NONE);
    format!("{:?}", decoder.decode().code())
}

/// Runs every encoding natively and in tandem; returns one line per difference, and per iced `Code` the
/// outcomes the host gave (for the summary a failure prints).
fn walk_hint_encodings(
    encodings: &[Vec<u8>],
    seed: u64,
) -> (
    Vec<String>,
    std::collections::BTreeMap<String, std::collections::BTreeSet<HintOutcome>>,
) {
    let mut problems = Vec::new();
    let mut by_code =
        std::collections::BTreeMap::<String, std::collections::BTreeSet<HintOutcome>>::new();
    let data = vec![0x5au8; DATA_SIZE as usize];
    let mut tandem = TandemHintRunner::new(&data);
    for (k, encoding) in encodings.iter().enumerate() {
        let mut rng = named_stream(seed, &format!("native/hint/{k}"));
        let regs = hint_inputs(&mut rng);
        let mut native_code = encoding.clone();
        let mut a = CodeAssembler::new(64).unwrap();
        a.jmp(EPILOGUE).unwrap();
        native_code.extend(a.assemble(SNIPPET + encoding.len() as u64).unwrap());
        let (n, ndata, signal) = run_native_catching(&native_code, &regs, &data);
        let host = match signal {
            None => HintOutcome::Completed,
            Some(s) => HintOutcome::Signal(signal_name(s)),
        };
        let (outcome, t, tdata) = tandem.run(encoding, &regs);
        let text = disassemble(encoding);
        by_code.entry(iced_code(encoding)).or_default().insert(host);
        let mut what = Vec::new();
        if host != outcome {
            what.push(format!("host {host:?}, tandem {outcome:?}"));
        }
        for r in (0..16).filter(|&r| r != 4) {
            if n.gpr[r] != t.gpr[r] {
                what.push(format!(
                    "{}: host {:#x} tandem {:#x}",
                    GPR_NAMES[r], n.gpr[r], t.gpr[r]
                ));
            }
        }
        if (n.rflags ^ t.rflags) & RFLAGS_COMPARED != 0 {
            what.push(format!(
                "rflags: host {:#x} tandem {:#x}",
                n.rflags, t.rflags
            ));
        }
        if ndata != tdata {
            what.push("the data pages differ".into());
        }
        if !what.is_empty() {
            problems.push(format!("{encoding:02x?} {text}: {}", what.join("; ")));
        }
    }
    (problems, by_code)
}

fn check_hint_walk(encodings: &[Vec<u8>], name: &str) {
    let seed = std::env::var("TANDEM_NATIVE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x6e61_7469u64);
    let (problems, by_code) = walk_hint_encodings(encodings, seed);
    let summary: Vec<String> = by_code
        .iter()
        .map(|(code, outcomes)| format!("{code}: {outcomes:?}"))
        .collect();
    assert!(
        problems.is_empty(),
        "{} of {} encodings differ from the host CPU (reproduce with TANDEM_NATIVE_SEED={seed} cargo test -p \
         tandem-emulator --test native_oracle {name}):\n  {}\nwhat the host did, by iced code:\n  {}",
        problems.len(),
        encodings.len(),
        problems.iter().take(std::env::var("TANDEM_HINT_REPORTS").ok().and_then(|v| v.parse().ok()).unwrap_or(40)).cloned().collect::<Vec<_>>().join("\n  "),
        summary.join("\n  ")
    );
}

#[test]
fn the_hint_nop_space_matches_the_host() {
    // The oracle must be a CPU without shadow stacks in effect: there `xor eax, eax; rdsspq rax` leaves 0.
    let mut a = CodeAssembler::new(64).unwrap();
    a.xor(eax, eax).unwrap();
    a.db(&[0xf3, 0x48, 0x0f, 0x1e, 0xc8]).unwrap();
    a.jmp(EPILOGUE).unwrap();
    let probe = a.assemble(SNIPPET).unwrap();
    let regs = NativeRegs {
        gpr: [0x1234; 16],
        rflags: 0x202,
    };
    let (n, _, signal) = run_native_catching(&probe, &regs, &vec![0; DATA_SIZE as usize]);
    assert_eq!(
        (signal, n.gpr[0]),
        (None, 0),
        "rdsspq must run as a NOP on the host (shadow stacks off for this process) for the host to be the oracle"
    );
    // 0F 0D with a register operand is where vendors part: AMD's CPUs raise #UD (as tandem does, and QEMU), Intel's
    // run it as a NOP. The walk compares those forms only on an AMD host; elsewhere they are left out, and
    // tandem's #UD for them stays held by AMD hosts and by the unicorn-engine suite.
    let amd = host_vendor() == *b"AuthenticAMD";
    let encodings: Vec<Vec<u8>> = hint_space_encodings()
        .into_iter()
        .filter(|e| amd || !is_register_0f0d(e))
        .collect();
    check_hint_walk(&encodings, "the_hint_nop_space_matches_the_host");
}

/// The host CPU's vendor string (CPUID leaf 0: EBX, EDX, ECX).
fn host_vendor() -> [u8; 12] {
    // SAFETY: CPUID exists on every x86-64 CPU and only reads identification registers.
    #[allow(unused_unsafe)]
    let r = unsafe { std::arch::x86_64::__cpuid(0) };
    let mut v = [0u8; 12];
    v[..4].copy_from_slice(&r.ebx.to_le_bytes());
    v[4..8].copy_from_slice(&r.edx.to_le_bytes());
    v[8..].copy_from_slice(&r.ecx.to_le_bytes());
    v
}

/// An encoding of 0F 0D (prefetch group) with a register operand, whatever its prefixes.
fn is_register_0f0d(bytes: &[u8]) -> bool {
    let mut decoder = iced_x86::Decoder::new(64, bytes, iced_x86::DecoderOptions::NONE);
    let insn = decoder.decode();
    let op = insn.op_code();
    op.encoding() == iced_x86::EncodingKind::Legacy
        && op.table() == iced_x86::OpCodeTableKind::T0F
        && op.op_code() == 0x0d
        && insn.op0_kind() == iced_x86::OpKind::Register
}

#[test]
fn cet_instructions_and_fences_match_the_host() {
    check_hint_walk(
        &cet_encodings(),
        "cet_instructions_and_fences_match_the_host",
    );
}
