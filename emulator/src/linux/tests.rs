//! Unit tests of the process layer on small hand-assembled programs, run against `MemoryHost` (the corpus programs
//! are tested end to end in tests/run_corpus.rs). Each program is wrapped in a one-segment ELF executable.

use super::*;
use iced_x86::code_asm::*;

const LOAD: u64 = 0x40_0000;
/// The code starts after the ELF header and one program header.
const CODE: u64 = LOAD + 120;

/// An ET_EXEC with one RWX PT_LOAD holding the headers and `code` (so programs can keep data beside their code).
fn elf_with(code: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 120];
    f[..4].copy_from_slice(b"\x7fELF");
    f[4] = 2;
    f[5] = 1;
    f[6] = 1;
    f[16..18].copy_from_slice(&2u16.to_le_bytes());
    f[18..20].copy_from_slice(&62u16.to_le_bytes());
    f[20..24].copy_from_slice(&1u32.to_le_bytes());
    f[24..32].copy_from_slice(&CODE.to_le_bytes());
    f[32..40].copy_from_slice(&64u64.to_le_bytes());
    f[52..54].copy_from_slice(&64u16.to_le_bytes());
    f[54..56].copy_from_slice(&56u16.to_le_bytes());
    f[56..58].copy_from_slice(&1u16.to_le_bytes());
    let total = (120 + code.len()) as u64;
    let ph = &mut f[64..120];
    ph[0..4].copy_from_slice(&1u32.to_le_bytes());
    ph[4..8].copy_from_slice(&7u32.to_le_bytes());
    ph[16..24].copy_from_slice(&LOAD.to_le_bytes());
    ph[24..32].copy_from_slice(&LOAD.to_le_bytes());
    ph[32..40].copy_from_slice(&total.to_le_bytes());
    ph[40..48].copy_from_slice(&total.to_le_bytes());
    ph[48..56].copy_from_slice(&0x1000u64.to_le_bytes());
    f.extend_from_slice(code);
    f
}

fn assemble(f: impl FnOnce(&mut CodeAssembler)) -> Vec<u8> {
    let mut a = CodeAssembler::new(64).unwrap();
    f(&mut a);
    a.assemble(CODE).unwrap()
}

fn sys(a: &mut CodeAssembler, nr: u32) {
    a.mov(eax, nr).unwrap();
    a.syscall().unwrap();
}

fn exit_with_rdi(a: &mut CodeAssembler) {
    sys(a, 231);
}

fn run_with(config: LinuxConfig, host: MemoryHost, code: &[u8]) -> LinuxMachine<MemoryHost> {
    let mut m = LinuxMachine::new(config, &elf_with(code), host).unwrap();
    assert_eq!(
        m.run(10_000_000),
        Progress::Finished,
        "program should finish"
    );
    m
}

fn run(code: &[u8]) -> LinuxMachine<MemoryHost> {
    run_with(LinuxConfig::default(), MemoryHost::new(0), code)
}

#[test]
fn write_and_exit_group() {
    let code = assemble(|a| {
        let mut msg = a.create_label();
        a.mov(edi, 1u32).unwrap();
        a.lea(rsi, ptr(msg)).unwrap();
        a.mov(edx, 3u32).unwrap();
        sys(a, 1);
        a.mov(edi, 7u32).unwrap();
        exit_with_rdi(a);
        a.set_label(&mut msg).unwrap();
        a.db(b"hi\n").unwrap();
    });
    let m = run(&code);
    assert_eq!(m.host.stdout, b"hi\n");
    assert_eq!(m.exit_status(), Some(7));
    assert_eq!(m.icount(), 8);
    assert_eq!(m.stats().syscalls.get("write"), Some(&1));
    assert_eq!(m.stats().syscalls.get("exit_group"), Some(&1));
}

#[test]
fn argc_argv_and_auxv_are_on_the_stack() {
    // exit(argc * 16 + strlen-free check: argv[1][0])
    let code = assemble(|a| {
        a.mov(rax, qword_ptr(rsp)).unwrap(); // argc
        a.mov(rbx, qword_ptr(rsp + 16)).unwrap(); // argv[1]
        a.movzx(edi, byte_ptr(rbx)).unwrap();
        a.add(rdi, rax).unwrap();
        exit_with_rdi(a);
    });
    let config = LinuxConfig {
        argv: vec![b"prog".to_vec(), b"A".to_vec(), b"b".to_vec()],
        envp: vec![b"K=V".to_vec()],
        ..LinuxConfig::default()
    };
    let m = run_with(config, MemoryHost::new(0), &code);
    assert_eq!(m.exit_status(), Some(b'A' as i32 + 3));
}

#[test]
fn unknown_syscall_is_enosys_and_reported_and_strict_makes_it_fatal() {
    let code = assemble(|a| {
        sys(a, 169); // reboot
        a.mov(rdi, rax).unwrap();
        a.neg(rdi).unwrap();
        exit_with_rdi(a);
    });
    let m = run(&code);
    assert_eq!(m.exit_status(), Some(38), "-ENOSYS comes back in rax");
    assert_eq!(m.stats().unknown_syscalls.get(&169), Some(&1));
    let strict = LinuxConfig {
        strict: true,
        ..LinuxConfig::default()
    };
    let m = run_with(strict, MemoryHost::new(0), &code);
    assert_eq!(m.exit_status(), Some(128 + SIGSYS));
    let line = m.termination().unwrap().diagnostic().unwrap();
    assert!(line.contains("reboot (number 169)"), "{line}");
}

#[test]
fn a_fault_without_handler_kills_with_128_plus_signal() {
    let code = assemble(|a| {
        a.xor(eax, eax).unwrap();
        a.mov(byte_ptr(rax + 16), 1u32).unwrap();
    });
    let m = run(&code);
    assert_eq!(m.exit_status(), Some(139));
    let line = m.termination().unwrap().diagnostic().unwrap();
    assert!(
        line.starts_with("guest killed by SIGSEGV (signal 11) at rip 0x40007a, icount 1"),
        "{line}"
    );
    // An unimplemented instruction names its bytes and disassembly.
    let m = run(&[0x0f, 0x0b]);
    assert_eq!(m.exit_status(), Some(132));
    let line = m.termination().unwrap().diagnostic().unwrap();
    assert!(line.contains("0f 0b (ud2)"), "{line}");
}

#[test]
fn sigsegv_handler_gets_siginfo_recovers_and_sigreturn_restores_registers() {
    let code = assemble(|a| {
        let mut handler = a.create_label();
        let mut restorer = a.create_label();
        let mut fail = a.create_label();
        // rt_sigaction(SIGSEGV, act on the stack, NULL, 8)
        a.sub(rsp, 64).unwrap();
        a.lea(rax, ptr(handler)).unwrap();
        a.mov(qword_ptr(rsp), rax).unwrap();
        a.mov(qword_ptr(rsp + 8), 0x0400_0004i32).unwrap(); // SA_RESTORER | SA_SIGINFO
        a.lea(rax, ptr(restorer)).unwrap();
        a.mov(qword_ptr(rsp + 16), rax).unwrap();
        a.mov(qword_ptr(rsp + 24), 0i32).unwrap();
        a.mov(edi, 11u32).unwrap();
        a.mov(rsi, rsp).unwrap();
        a.xor(edx, edx).unwrap();
        a.mov(r10d, 8u32).unwrap();
        sys(a, 13);
        // r14 = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        a.xor(edi, edi).unwrap();
        a.mov(esi, 4096u32).unwrap();
        a.mov(edx, 1u32).unwrap();
        a.mov(r10d, 0x22u32).unwrap();
        a.mov(r8, -1i64).unwrap();
        a.xor(r9d, r9d).unwrap();
        sys(a, 9);
        a.mov(r14, rax).unwrap();
        a.mov(r15, 0x1234_5678u64).unwrap();
        // The faulting store.
        a.mov(byte_ptr(r14 + 100), 42u32).unwrap();
        // After recovery: r15 survived the handler (restored by sigreturn), si_addr and si_code were recorded.
        a.mov(rax, 0x1234_5678u64).unwrap();
        a.cmp(r15, rax).unwrap();
        a.jne(fail).unwrap();
        a.lea(rax, qword_ptr(r14 + 100)).unwrap();
        a.cmp(qword_ptr(r14 + 8), rax).unwrap();
        a.jne(fail).unwrap();
        a.cmp(dword_ptr(r14 + 16), 2u32).unwrap(); // SEGV_ACCERR
        a.jne(fail).unwrap();
        a.movzx(edi, byte_ptr(r14 + 100)).unwrap();
        exit_with_rdi(a);
        a.set_label(&mut fail).unwrap();
        a.mov(edi, 1u32).unwrap();
        exit_with_rdi(a);

        // handler(sig, info, uc): mprotect(r14, 4096, RW), record si_addr and si_code, clobber r15.
        a.set_label(&mut handler).unwrap();
        a.mov(rbx, rsi).unwrap();
        a.mov(rdi, r14).unwrap();
        a.mov(esi, 4096u32).unwrap();
        a.mov(edx, 3u32).unwrap();
        sys(a, 10);
        a.mov(rax, qword_ptr(rbx + 16)).unwrap();
        a.mov(qword_ptr(r14 + 8), rax).unwrap();
        a.mov(eax, dword_ptr(rbx + 8)).unwrap();
        a.mov(dword_ptr(r14 + 16), eax).unwrap();
        a.xor(r15d, r15d).unwrap();
        a.ret().unwrap();
        a.set_label(&mut restorer).unwrap();
        sys(a, 15);
    });
    let m = run(&code);
    assert_eq!(m.exit_status(), Some(42));
    assert_eq!(m.stats().signals_delivered, 1);
    assert_eq!(m.stats().syscalls.get("rt_sigreturn"), Some(&1));
}

#[test]
fn files_on_a_mount_are_read_and_escapes_fail() {
    let code = assemble(|a| {
        let mut good = a.create_label();
        let mut escape = a.create_label();
        // fd = open("/data/sub/../in.txt", O_RDONLY); n = read(fd, rsp-256, 64); write(1, rsp-256, n)
        a.lea(rdi, ptr(good)).unwrap();
        a.xor(esi, esi).unwrap();
        sys(a, 2);
        a.mov(rdi, rax).unwrap();
        a.lea(rsi, qword_ptr(rsp - 256)).unwrap();
        a.mov(edx, 64u32).unwrap();
        sys(a, 0);
        a.mov(rdx, rax).unwrap();
        a.mov(edi, 1u32).unwrap();
        a.lea(rsi, qword_ptr(rsp - 256)).unwrap();
        sys(a, 1);
        // exit(-open("/data/../../srv/secret", O_RDONLY))
        a.lea(rdi, ptr(escape)).unwrap();
        a.xor(esi, esi).unwrap();
        sys(a, 2);
        a.mov(rdi, rax).unwrap();
        a.neg(rdi).unwrap();
        exit_with_rdi(a);
        a.set_label(&mut good).unwrap();
        a.db(b"/data/sub/../in.txt\0").unwrap();
        a.set_label(&mut escape).unwrap();
        a.db(b"/data/../../srv/secret\0").unwrap();
    });
    let mut host = MemoryHost::new(0);
    host.add_file("/srv/data/in.txt", b"mounted contents\n");
    host.add_file("/srv/data/sub/x", b"");
    host.add_file("/srv/secret", b"do not read");
    let config = LinuxConfig {
        mounts: vec![vfs::Mount {
            guest: vec![b"data".to_vec()],
            host: "/srv/data".into(),
        }],
        ..LinuxConfig::default()
    };
    let m = run_with(config, host, &code);
    assert_eq!(m.host.stdout, b"mounted contents\n");
    assert_eq!(m.exit_status(), Some(2), "ENOENT");
}

/// clock_gettime, nanosleep(1 s), clock_gettime, getrandom(16); writes the 48 bytes to stdout.
fn time_and_random_program() -> Vec<u8> {
    assemble(|a| {
        let mut one_second = a.create_label();
        a.sub(rsp, 64).unwrap();
        a.xor(edi, edi).unwrap();
        a.mov(rsi, rsp).unwrap();
        sys(a, 228);
        a.lea(rdi, ptr(one_second)).unwrap();
        a.xor(esi, esi).unwrap();
        sys(a, 35);
        a.xor(edi, edi).unwrap();
        a.lea(rsi, qword_ptr(rsp + 16)).unwrap();
        sys(a, 228);
        a.lea(rdi, qword_ptr(rsp + 32)).unwrap();
        a.mov(esi, 16u32).unwrap();
        a.xor(edx, edx).unwrap();
        sys(a, 318);
        a.mov(edi, 1u32).unwrap();
        a.mov(rsi, rsp).unwrap();
        a.mov(edx, 48u32).unwrap();
        sys(a, 1);
        a.xor(edi, edi).unwrap();
        exit_with_rdi(a);
        a.set_label(&mut one_second).unwrap();
        a.dq(&[1, 0]).unwrap();
    })
}

#[test]
fn time_is_virtual_and_sleeping_advances_it() {
    let m = run(&time_and_random_program());
    let out = &m.host.stdout;
    let ns = |at: usize| {
        let s = u64::from_le_bytes(out[at..at + 8].try_into().unwrap());
        let n = u64::from_le_bytes(out[at + 8..at + 16].try_into().unwrap());
        s * 1_000_000_000 + n
    };
    let (t0, t1) = (ns(0), ns(16));
    // Four instructions before the first clock_gettime retires... the count is exact: 5 retired (sub, xor, mov,
    // mov, syscall) at 1 ns each.
    assert_eq!(t0, EPOCH_NS_DEFAULT + 5);
    assert!(
        t1 - t0 >= 1_000_000_000 && t1 - t0 < 1_000_001_000,
        "{t0} {t1}"
    );
}

#[test]
fn getrandom_is_a_function_of_the_seed() {
    let random = |seed: u64| {
        let config = LinuxConfig {
            seed,
            ..LinuxConfig::default()
        };
        let m = run_with(config, MemoryHost::new(seed), &time_and_random_program());
        (m.host.stdout[32..48].to_vec(), m.state_hash())
    };
    let (a, ha) = random(1);
    let (b, hb) = random(1);
    let (c, hc) = random(2);
    assert_eq!((&a, ha), (&b, hb));
    assert_ne!(a, c);
    assert_ne!(ha, hc);
}

#[test]
fn brk_grows_the_heap() {
    let code = assemble(|a| {
        a.xor(edi, edi).unwrap();
        sys(a, 12);
        a.mov(rbx, rax).unwrap();
        a.lea(rdi, qword_ptr(rax + 0x10000)).unwrap();
        sys(a, 12);
        a.mov(byte_ptr(rbx + 0xff00), 5u32).unwrap();
        a.movzx(edi, byte_ptr(rbx + 0xff00)).unwrap();
        exit_with_rdi(a);
    });
    assert_eq!(run(&code).exit_status(), Some(5));
}

#[test]
fn fxsave_round_trips() {
    let mut m = LinuxMachine::new(
        LinuxConfig::default(),
        &elf_with(&[0x90]),
        MemoryHost::new(0),
    )
    .unwrap();
    let cpu = &mut m.machine.cpu;
    cpu.regs.xmm[3] = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210;
    cpu.regs.mxcsr = 0x1f80 | 0x6000;
    cpu.regs.x87.top = 6;
    cpu.regs.x87.regs[6] = crate::cpu::x87::F80 {
        significand: 1 << 63,
        sign_exponent: 0x3fff,
    };
    cpu.regs.x87.tag = 0xcfff; // R6 valid, others empty
    let image = signal::fxsave(cpu);
    let before = cpu.registers();
    cpu.regs.xmm[3] = 0;
    cpu.regs.x87 = crate::cpu::X87::default();
    cpu.regs.mxcsr = 0;
    signal::fxrstor(cpu, &image);
    assert_eq!(cpu.registers(), before);
}

/// `mkdir d; chdir d` `levels` times from /tmp, then exit(getcwd's length).
fn nested_dirs_program(levels: u32) -> Vec<u8> {
    assemble(|a| {
        let mut d = a.create_label();
        let mut tmp = a.create_label();
        let mut top = a.create_label();
        a.lea(rdi, ptr(tmp)).unwrap();
        sys(a, 80); // chdir("/tmp")
        a.mov(r12d, levels).unwrap();
        a.set_label(&mut top).unwrap();
        a.lea(rdi, ptr(d)).unwrap();
        a.mov(esi, 0o755u32).unwrap();
        sys(a, 83); // mkdir("d", 0755)
        a.lea(rdi, ptr(d)).unwrap();
        sys(a, 80); // chdir("d")
        a.dec(r12d).unwrap();
        a.jnz(top).unwrap();
        // getcwd(rsp - 4096, 4096): /tmp plus 2 bytes a level fit only for shallow nests.
        a.lea(rdi, qword_ptr(rsp - 4096)).unwrap();
        a.mov(esi, 4096u32).unwrap();
        sys(a, 79);
        a.mov(rdi, rax).unwrap();
        exit_with_rdi(a);
        a.set_label(&mut d).unwrap();
        a.db(b"d\0").unwrap();
        a.set_label(&mut tmp).unwrap();
        a.db(b"/tmp\0").unwrap();
    })
}

#[test]
fn nested_directories_cost_memory_linear_in_their_depth() {
    // Each level keeps its one-byte name and an id, not the text of its whole path: 16,000 levels used to
    // hold 256 MB of path text (and took time quadratic in the depth to resolve).
    let levels = 16_000u64;
    let m = run(&nested_dirs_program(levels as u32));
    assert_eq!(
        m.exit_status(),
        Some((-(ENAMETOOLONG.0)) & 0xff),
        "getcwd of a path past PATH_MAX"
    );
    let bytes = m.vfs.name_bytes() as u64;
    assert!(
        bytes < levels * 8,
        "{bytes} bytes of names for {levels} levels: not linear"
    );
    assert_eq!(m.proc.cwd.depth(), levels as usize + 1);
    assert_eq!(m.stats().syscalls.get("mkdir"), Some(&levels));
    // A shallow nest still knows its path.
    let m = run(&nested_dirs_program(3));
    assert_eq!(m.exit_status(), Some("/tmp/d/d/d\0".len() as i32));
}

#[test]
fn alarm_answers_the_time_left_and_cpu_time_itimers_are_enosys_with_a_reason() {
    let code = assemble(|a| {
        a.mov(edi, 5u32).unwrap();
        sys(a, 37); // alarm(5): no alarm before, 0
        a.mov(rbx, rax).unwrap();
        a.mov(edi, 1u32).unwrap();
        a.lea(rsi, qword_ptr(rsp - 64)).unwrap();
        a.xor(edx, edx).unwrap();
        sys(a, 38); // setitimer(ITIMER_VIRTUAL, ...)
        a.sub(rbx, rax).unwrap();
        a.xor(edi, edi).unwrap();
        sys(a, 37); // alarm(0): 5 seconds were left
        a.imul_3(rax, rax, 10).unwrap();
        a.add(rbx, rax).unwrap();
        a.mov(rdi, rbx).unwrap();
        exit_with_rdi(a);
    });
    let m = run(&code);
    assert_eq!(m.exit_status(), Some(5 * 10 + ENOSYS.0));
    assert_eq!(m.stats().unknown_syscalls.get(&37), None);
    assert_eq!(m.stats().unknown_syscalls.get(&38), Some(&1));
    assert!(m.stats().unsupported[&38].contains("ITIMER_VIRTUAL"));
}

/// Installs `handler` (a label) for `sig`, with the sigaction struct built on the stack.
fn handle_signal(a: &mut CodeAssembler, sig: u32, handler: CodeLabel) {
    a.xor(eax, eax).unwrap();
    a.push(rax).unwrap(); // sa_mask
    a.push(rax).unwrap(); // sa_restorer
    a.push(rax).unwrap(); // sa_flags
    a.lea(rax, ptr(handler)).unwrap();
    a.push(rax).unwrap(); // sa_handler
    a.mov(edi, sig).unwrap();
    a.mov(rsi, rsp).unwrap();
    a.xor(edx, edx).unwrap();
    a.mov(r10d, 8u32).unwrap();
    sys(a, 13);
    a.add(rsp, 32).unwrap();
}

/// A program that blocks SIGUSR1, installs a handler that exits 42, sends itself SIGUSR1 (pending, blocked),
/// then runs `wait`, which unblocks it for the time it waits; exit 1 if `wait` returns.
fn pending_signal_then(wait: impl FnOnce(&mut CodeAssembler)) -> Vec<u8> {
    assemble(|a| {
        let mut handler = a.create_label();
        a.mov(rax, 1u64 << (SIGUSR1 - 1)).unwrap();
        a.push(rax).unwrap();
        a.xor(edi, edi).unwrap(); // SIG_BLOCK
        a.mov(rsi, rsp).unwrap();
        a.xor(edx, edx).unwrap();
        a.mov(r10d, 8u32).unwrap();
        sys(a, 14);
        handle_signal(a, SIGUSR1 as u32, handler);
        sys(a, 39);
        a.mov(edi, eax).unwrap();
        a.mov(esi, SIGUSR1 as u32).unwrap();
        sys(a, 62);
        a.xor(eax, eax).unwrap();
        a.push(rax).unwrap(); // the empty mask the wait installs, at rsp
        wait(a);
        a.mov(edi, 1u32).unwrap();
        exit_with_rdi(a);
        a.set_label(&mut handler).unwrap();
        a.mov(edi, 42u32).unwrap();
        exit_with_rdi(a);
    })
}

#[test]
fn sigsuspend_with_a_signal_already_pending_runs_its_handler_at_once() {
    let code = pending_signal_then(|a| {
        a.mov(rdi, rsp).unwrap();
        a.mov(esi, 8u32).unwrap();
        sys(a, 130);
    });
    let m = run(&code);
    assert_eq!(m.exit_status(), Some(42), "{:?}", m.termination());
}

#[test]
fn ppoll_and_pselect_with_a_mask_that_lets_a_pending_signal_through_are_interrupted() {
    // ppoll(NULL, 0, NULL, &empty, 8): no descriptors, no timeout; only the signal ends it.
    let code = pending_signal_then(|a| {
        a.xor(edi, edi).unwrap();
        a.xor(esi, esi).unwrap();
        a.xor(edx, edx).unwrap();
        a.mov(r10, rsp).unwrap();
        a.mov(r8d, 8u32).unwrap();
        sys(a, 271);
    });
    assert_eq!(run(&code).exit_status(), Some(42));
    // pselect6(0, NULL, NULL, NULL, NULL, &{&empty, 8}).
    let code = pending_signal_then(|a| {
        a.mov(rax, rsp).unwrap();
        a.push(8).unwrap();
        a.push(rax).unwrap();
        a.xor(edi, edi).unwrap();
        a.xor(esi, esi).unwrap();
        a.xor(edx, edx).unwrap();
        a.xor(r10d, r10d).unwrap();
        a.xor(r8d, r8d).unwrap();
        a.mov(r9, rsp).unwrap();
        sys(a, 270);
    });
    assert_eq!(run(&code).exit_status(), Some(42));
}

#[test]
fn alarm_skips_the_clock_while_everything_waits_and_its_signal_ends_pause() {
    let code = assemble(|a| {
        let mut handler = a.create_label();
        handle_signal(a, SIGALRM as u32, handler);
        a.mov(edi, 5u32).unwrap();
        sys(a, 37); // alarm(5)
        sys(a, 34); // pause
        a.mov(edi, 1u32).unwrap();
        exit_with_rdi(a);
        a.set_label(&mut handler).unwrap();
        a.mov(edi, 42u32).unwrap();
        exit_with_rdi(a);
    });
    let m = run(&code);
    assert_eq!(m.exit_status(), Some(42));
    let elapsed = m.elapsed_ns();
    assert!(
        (5_000_000_000..5_000_100_000).contains(&elapsed),
        "five guest seconds passed, and barely more: {elapsed}"
    );
}

#[test]
fn a_periodic_timer_whose_signal_is_blocked_does_not_keep_a_waiting_guest_alive() {
    // Block SIGALRM, setitimer(ITIMER_REAL, 1 ms periodic), pause: nothing can ever end the pause.
    let code = assemble(|a| {
        a.mov(rax, 1u64 << (SIGALRM - 1)).unwrap();
        a.push(rax).unwrap();
        a.xor(edi, edi).unwrap();
        a.mov(rsi, rsp).unwrap();
        a.xor(edx, edx).unwrap();
        a.mov(r10d, 8u32).unwrap();
        sys(a, 14);
        for v in [0u64, 1000, 0, 1000] {
            a.mov(rax, v).unwrap();
            a.push(rax).unwrap();
        }
        a.xor(edi, edi).unwrap();
        a.mov(rsi, rsp).unwrap();
        a.xor(edx, edx).unwrap();
        sys(a, 38);
        sys(a, 34);
        a.mov(edi, 1u32).unwrap();
        exit_with_rdi(a);
    });
    let m = run(&code);
    assert_eq!(
        m.exit_status(),
        Some(EXIT_DEADLOCK),
        "{:?}",
        m.termination()
    );
    let line = m.termination().unwrap().diagnostic().unwrap();
    assert!(line.contains("timers are armed"), "{line}");
}
