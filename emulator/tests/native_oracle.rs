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
//! Safety: running generated code natively is inherently unsafe; each snippet is written so that it only touches
//! its registers, the data pages and a balanced stack, and cannot fault or loop forever (every loop is counted).

mod common;

use common::*;
use iced_x86::code_asm::*;
use rand::Rng;
use rand_chacha::ChaCha20Rng;
use std::sync::{Mutex, OnceLock};
use tandem_emulator::cpu::{named_stream, Exception, Exit};

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
    f(&mut out);
    let mut data_after = vec![0u8; DATA_SIZE as usize];
    // SAFETY: as above, the data pages are ours under the mutex.
    unsafe {
        std::ptr::copy_nonoverlapping(
            DATA_BASE as *const u8,
            data_after.as_mut_ptr(),
            data_after.len(),
        )
    };
    (out, data_after)
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
