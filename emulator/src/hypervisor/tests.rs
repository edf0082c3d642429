//! Containment, injection and core-dump tests on the corpus programs (corpus/bin), through the library API.

use super::campaign::{run_campaign, CampaignSpec, Verdict};
use super::containment::{allowed_outcomes, Action, Outcome};
use super::plan::{FaultKind, FaultPlan, PageState};
use super::*;
use crate::linux::abi::{SIGBUS, SIGSEGV};
use crate::linux::MemoryHost;

fn corpus(name: &str) -> Arc<[u8]> {
    let path = format!("{}/../corpus/bin/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .into()
}

fn config(argv: &[&str]) -> LinuxConfig {
    LinuxConfig {
        argv: argv.iter().map(|a| a.as_bytes().to_vec()).collect(),
        ..LinuxConfig::default()
    }
}

fn guest(
    name: &str,
    argv: &[&str],
    spec: &str,
    early_kill: bool,
    seed: u64,
) -> Hypervisor<MemoryHost> {
    let plan = if spec.is_empty() {
        FaultPlan::default()
    } else {
        FaultPlan::parse_spec(spec, "test").unwrap()
    };
    let policy = Policy {
        early_kill,
        ..Policy::default()
    };
    Hypervisor::new(
        config(argv),
        corpus(name),
        MemoryHost::new(0),
        plan,
        policy,
        seed,
    )
    .unwrap()
}

/// The table page the sigbus program recovers: page 1 of its 8-page mmap (the same address for musl and glibc
/// because tandem's mmap placement is deterministic; a layout change makes these tests fail with a clear diff).
const SIGBUS_TABLE_PAGE1: u64 = 0x7fff_f7ff_8000;

fn finished(hv: &mut Hypervisor<MemoryHost>) {
    assert_eq!(hv.run_to_completion(100_000_000), Progress::Finished);
}

#[test]
fn a_ue_fires_at_the_exact_icount() {
    for at in [1u64, 777, 1000] {
        let mut hv = guest(
            "hello-musl",
            &["hello"],
            &format!("mem.ue:icount={at},addr=0x7fffffffe000"),
            false,
            0,
        );
        hv.run(at);
        assert_eq!(hv.guest.icount(), at);
        assert_eq!(
            hv.injections().len(),
            1,
            "fired by the time icount {at} was reached"
        );
        assert_eq!(hv.injections()[0].icount, at);
    }
}

#[test]
fn dirty_page_late_kill_recovered_by_the_guest_handler() {
    let mut base = guest("sigbus-musl", &["sigbus", "20"], "", false, 0);
    finished(&mut base);
    for (name, early) in [
        ("sigbus-musl", false),
        ("sigbus-glibc", false),
        ("sigbus-musl", true),
        ("sigbus-glibc", true),
    ] {
        let spec = format!("mem.ue:icount=300000,addr={SIGBUS_TABLE_PAGE1:#x}");
        let mut hv = guest(name, &["sigbus", "20"], &spec, early, 0);
        finished(&mut hv);
        let reports = hv.reports();
        assert_eq!(reports.len(), 1);
        let r = &reports[0];
        assert_eq!(r.class, Some(PageState::AnonDirty), "{}", r.line());
        assert_eq!(r.vaddrs, vec![SIGBUS_TABLE_PAGE1]);
        assert_eq!(
            r.action,
            if early {
                Action::SigbusNow
            } else {
                Action::SigbusOnTouch
            }
        );
        assert_eq!(
            r.outcome,
            Outcome::Recovered,
            "{name} early={early}: {}",
            r.line()
        );
        assert_eq!(hv.guest.exit_status(), Some(0));
        assert_eq!(
            hv.guest.host.stdout, base.guest.host.stdout,
            "{name}: the handler recomputed the lost page"
        );
        let stderr = String::from_utf8_lossy(&hv.guest.host.stderr).to_string();
        let code = if early { 5 } else { 4 };
        assert!(
            stderr.contains(&format!("recomputed page 1 of the table (si_code {code})")),
            "{stderr}"
        );
        assert_eq!(
            hv.guest.stats().last_fault.map(|f| (f.signo, f.code)),
            Some((SIGBUS, code))
        );
    }
}

#[test]
fn dirty_page_without_handler_kills_on_touch_or_at_once() {
    // hello's top stack page holds argv and envp: dirty, and touched by the C runtime later.
    let mut hv = guest(
        "hello-musl",
        &["hello"],
        "mem.ue:icount=300,addr=0x7fffffffe000",
        false,
        0,
    );
    finished(&mut hv);
    let r = &hv.reports()[0];
    assert_eq!(
        (r.class, r.action, r.outcome),
        (
            Some(PageState::AnonDirty),
            Action::SigbusOnTouch,
            Outcome::Killed
        )
    );
    match hv.guest.termination() {
        Some(Termination::Signaled { signal, icount, .. }) => {
            assert_eq!(*signal, SIGBUS);
            assert!(
                *icount > 300,
                "late kill: killed when touched, after the error"
            );
        }
        t => panic!("expected a SIGBUS kill, got {t:?}"),
    }
    let fault = hv.guest.stats().last_fault.unwrap();
    assert_eq!((fault.signo, fault.code), (SIGBUS, 4));
    assert_eq!(
        fault.addr & !0xfff,
        0x7fffffffe000,
        "si_addr is in the lost page"
    );

    let mut hv = guest(
        "hello-musl",
        &["hello"],
        "mem.ue:icount=300,addr=0x7fffffffe000",
        true,
        0,
    );
    finished(&mut hv);
    assert!(matches!(
        hv.guest.termination(),
        Some(Termination::Signaled {
            signal: SIGBUS,
            icount: 300,
            ..
        })
    ));
    assert_eq!(hv.guest.stats().last_fault.map(|f| f.code), Some(5));
    assert_eq!(hv.reports()[0].outcome, Outcome::Killed);
}

#[test]
fn clean_text_page_is_reread_and_invisible_to_the_guest() {
    let mut base = guest("sigbus-glibc", &["sigbus", "5"], "", false, 0);
    finished(&mut base);
    // The page holding main's loop: executed after the error, so a stale or zero page would crash or change output.
    let mut hv = guest(
        "sigbus-glibc",
        &["sigbus", "5"],
        "mem.ue:icount=120000,addr=0x401000",
        false,
        0,
    );
    finished(&mut hv);
    let r = &hv.reports()[0];
    assert_eq!(
        (r.class, r.action, r.outcome),
        (
            Some(PageState::FileClean),
            Action::Reread,
            Outcome::Recovered
        )
    );
    let poisoned = FrameId(r.frame.unwrap());
    let mem = &hv.guest.machine.cpu.mem;
    assert!(mem.frame_is_poisoned(poisoned));
    assert_ne!(
        mem.frame_of(0x401000),
        Some(poisoned),
        "a fresh frame replaced it"
    );
    assert_eq!(hv.guest.host.stdout, base.guest.host.stdout);
    assert_eq!(
        hv.guest.icount(),
        base.guest.icount(),
        "invisible: not one instruction more"
    );
    assert_eq!(
        hv.guest.state_hash(),
        base.guest.state_hash(),
        "the same final state, bit for bit"
    );
}

#[test]
fn never_written_page_is_zero_filled_and_free_frame_retired() {
    let mut hv = guest(
        "hello-musl",
        &["hello"],
        "mem.ue:icount=100,addr=0x7fffff900000",
        false,
        0,
    );
    hv.run(100);
    let r = &hv.reports()[0];
    assert_eq!(
        (r.class, r.action, r.outcome),
        (
            Some(PageState::AnonZero),
            Action::Zeroed,
            Outcome::Recovered
        )
    );
    let mem = &mut hv.guest.machine.cpu.mem;
    assert_eq!(mem.peek_u64(0x7fffff900000), Ok(0));
    // A free frame: unmap a page, poison its frame, and check the frame is never handed out again.
    let frame = mem.frame_of(0x7fffff800000).unwrap();
    mem.unmap(0x7fffff800000, 4096).unwrap();
    assert_eq!(mem.frame_class(frame), Some(FrameClass::Free));
    hv.inject(FaultKind::Ue, frame, 0, 0, false);
    let r = hv.reports().pop().unwrap();
    assert_eq!(
        (r.class, r.action, r.outcome),
        (Some(PageState::Free), Action::Retired, Outcome::Recovered)
    );
    let mem = &mut hv.guest.machine.cpu.mem;
    mem.map_anonymous(0x1000_0000, 64 * 4096, crate::memory::Perms::RW)
        .unwrap();
    for i in 0..64 {
        assert_ne!(
            mem.frame_of(0x1000_0000 + i * 4096),
            Some(frame),
            "a retired frame was reused"
        );
    }
    finished(&mut hv);
    assert_eq!(hv.guest.exit_status(), Some(0));
}

#[test]
fn a_poisoned_frame_is_never_read_silently() {
    let mut hv = guest(
        "sigbus-musl",
        &["sigbus", "20"],
        &format!("mem.ue:icount=300000,addr={SIGBUS_TABLE_PAGE1:#x}"),
        false,
        0,
    );
    hv.run(300_000);
    let mem = &hv.guest.machine.cpu.mem;
    let frame = mem.frame_of(SIGBUS_TABLE_PAGE1).unwrap();
    assert!(mem.frame_is_poisoned(frame));
    assert!(
        mem.peek_u64(SIGBUS_TABLE_PAGE1).is_err(),
        "peek refuses a poisoned page"
    );
    assert_eq!(
        mem.frame_bytes(frame),
        None,
        "the hypervisor cannot read it either"
    );
    let dump = hv.core_dump().unwrap();
    assert_eq!(
        dump.poisoned_pages,
        vec![SIGBUS_TABLE_PAGE1],
        "the core leaves it out and lists it"
    );
    // A bit flip on a poisoned frame does nothing and says so.
    hv.inject(FaultKind::Flip, frame, 0, 0, false);
    assert_eq!(hv.reports().last().unwrap().action, Action::AlreadyPoisoned);
}

#[test]
fn drawn_faults_depend_on_the_seed_only() {
    let spec = "mem.ue:count=3,within=2000,mem.flip:rate=1e-3";
    let run = |seed| {
        let mut hv = guest("jmp-musl", &["jmp"], spec, false, seed);
        finished(&mut hv);
        (
            hv.injections().to_vec(),
            hv.reports(),
            hv.guest.state_hash(),
        )
    };
    let a = run(1);
    assert_eq!(a, run(1), "same seed, same faults, same run");
    assert_ne!(a.0, run(2).0, "another seed draws other faults");
    assert!(a.0.iter().filter(|i| i.kind == FaultKind::Ue).count() == 3);
    assert!(a.0.iter().any(|i| i.kind == FaultKind::Flip));
}

#[test]
fn outcomes_follow_the_policy_and_poison_only_grows() {
    for seed in 0..12 {
        let mut hv = guest(
            "jmp-musl",
            &["jmp"],
            "mem.ue:count=4,within=4000",
            seed % 2 == 1,
            seed,
        );
        let mut poisoned = 0;
        while hv.run(500) == Progress::BudgetExhausted {
            let now = hv.guest.machine.cpu.mem.poisoned_frames().len();
            assert!(now >= poisoned, "seed {seed}: the poisoned set shrank");
            poisoned = now;
        }
        for r in hv.reports() {
            assert!(
                allowed_outcomes(r.class, r.action).contains(&r.outcome),
                "seed {seed}: {}",
                r.line()
            );
        }
    }
}

#[test]
fn a_stuck_bit_holds_against_every_store() {
    let mut hv = guest("sigbus-musl", &["sigbus", "20"], "", false, 0);
    hv.run(200_000);
    let frame = hv
        .guest
        .machine
        .cpu
        .mem
        .frame_of(SIGBUS_TABLE_PAGE1)
        .unwrap();
    hv.inject(FaultKind::Stuck, frame, 8, 0, true);
    let mem = &mut hv.guest.machine.cpu.mem;
    let before = mem.peek_u64(SIGBUS_TABLE_PAGE1 + 8).unwrap();
    assert_eq!(before & 1, 1);
    // A kernel-side store and a guest store clearing the bit: neither can be read back.
    mem.poke(SIGBUS_TABLE_PAGE1 + 8, &[(before as u8) & !1])
        .unwrap();
    assert_eq!(
        mem.peek_u64(SIGBUS_TABLE_PAGE1 + 8).unwrap() & 1,
        1,
        "forced at once, not later"
    );
    mem.write_u8(SIGBUS_TABLE_PAGE1 + 8, 0).unwrap();
    assert_eq!(mem.read_u8(SIGBUS_TABLE_PAGE1 + 8).unwrap() & 1, 1);
    // The guest keeps running and rewriting its table; the bit stays.
    hv.run(50_000);
    let after = hv
        .guest
        .machine
        .cpu
        .mem
        .peek_u64(SIGBUS_TABLE_PAGE1 + 8)
        .unwrap();
    assert_eq!(after & 1, 1, "the stuck bit held");
}

#[test]
fn a_core_dump_leaves_the_state_unchanged() {
    let mut hv = guest("crash-musl", &["crash"], "", false, 0);
    finished(&mut hv);
    assert!(matches!(
        hv.guest.termination(),
        Some(Termination::Signaled {
            signal: SIGSEGV,
            ..
        })
    ));
    let hash = hv.guest.state_hash();
    let dump = hv.core_dump().unwrap();
    assert_eq!(hv.guest.state_hash(), hash);
    assert_eq!(
        hv.core_dump().unwrap(),
        dump,
        "two dumps of one state are identical"
    );
    assert_eq!(&dump.bytes[..4], b"\x7fELF");
    assert_eq!(
        u16::from_le_bytes([dump.bytes[16], dump.bytes[17]]),
        4,
        "ET_CORE"
    );
    assert!(dump.load_segments >= 4);
    let auxv = hv.guest.auxv_bytes();
    assert!(
        auxv.chunks(16)
            .any(|pair| pair[..8] == elf::AT_PHDR.to_le_bytes()),
        "auxv captured: {auxv:?}"
    );
}

#[test]
fn campaigns_are_identical_at_any_thread_count_cold_and_warm() {
    let spec = |jobs, start| CampaignSpec {
        program: corpus("jmp-musl"),
        config: config(&["jmp"]),
        plan: FaultPlan::parse_spec("mem.ue:count=1,mem.flip:count=1", "test").unwrap(),
        policy: Policy::default(),
        seeds: 0..16,
        jobs,
        instructions_max: None,
        files: None,
        start,
    };
    let one = run_campaign(&spec(1, campaign::Start::Cold)).unwrap();
    let three = run_campaign(&spec(3, campaign::Start::Warm)).unwrap();
    let warm_one = run_campaign(&spec(1, campaign::Start::Warm)).unwrap();
    assert_eq!(one.runs, three.runs);
    assert_eq!(one.runs, warm_one.runs);
    assert_eq!(one.instructions_skipped, 0);
    assert!(
        three.instructions_skipped > 0
            && three.instructions_skipped == warm_one.instructions_skipped,
        "warm runs start from checkpoints: {} and {} instructions skipped",
        three.instructions_skipped,
        warm_one.instructions_skipped
    );
    let render = |r: &campaign::CampaignResult| r.render(&|s| format!("seed {s}"), 3);
    assert_eq!(render(&one), render(&three));
    assert_eq!(one.runs.len(), 16);
    assert!(
        one.containment_violations().is_empty(),
        "{:?}",
        one.containment_violations()
    );
    assert!(one.runs.iter().any(|r| r.verdict != Verdict::Hung));
}

// ---------------------------------------------------------------------------------------------------------------
// Stuck bits against every kind of write a program makes.

/// Where `elf_rwx` loads its one segment: the headers and the code on the first page, then bss.
const RWX_LOAD: u64 = 0x40_0000;
/// The page with the stuck bits, and a source page for the string copies (both bss of `elf_rwx`).
const STUCK_PAGE: u64 = RWX_LOAD + 0x2000;
const SOURCE_PAGE: u64 = RWX_LOAD + 0x3000;
/// The stuck bits of `STUCK_PAGE`: (byte, bit, value). One stuck at 1 and one at 0, so that writing zeros and
/// writing ones are both caught.
const STUCK_BITS: [(u64, u8, bool); 2] = [(8, 0, true), (0x123, 7, false)];

/// An ET_EXEC with one RWX PT_LOAD at `RWX_LOAD`: the ELF header, one program header and `code` in the file,
/// 0x4000 bytes in memory (the rest is bss).
fn elf_rwx(code: &[u8]) -> Vec<u8> {
    let entry = RWX_LOAD + 120;
    let mut f = vec![0u8; 120];
    f[..4].copy_from_slice(b"\x7fELF");
    f[4] = 2; // ELFCLASS64
    f[5] = 1; // little-endian
    f[6] = 1; // EV_CURRENT
    f[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    f[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    f[20..24].copy_from_slice(&1u32.to_le_bytes());
    f[24..32].copy_from_slice(&entry.to_le_bytes());
    f[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
    f[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
    f[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
    f[56..58].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
    let file_bytes = (120 + code.len()) as u64;
    assert!(file_bytes <= 0x2000, "the code must stay below STUCK_PAGE");
    let ph = &mut f[64..120];
    ph[0..4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    ph[4..8].copy_from_slice(&7u32.to_le_bytes()); // RWX
    ph[16..24].copy_from_slice(&RWX_LOAD.to_le_bytes());
    ph[24..32].copy_from_slice(&RWX_LOAD.to_le_bytes());
    ph[32..40].copy_from_slice(&file_bytes.to_le_bytes());
    ph[40..48].copy_from_slice(&0x4000u64.to_le_bytes());
    ph[48..56].copy_from_slice(&0x1000u64.to_le_bytes());
    f.extend_from_slice(code);
    f
}

/// The guest of `stuck_bits_hold_against_string_stores_reads_and_compiled_stores`: it overwrites the stuck page
/// six ways and writes the page to stdout after each, then exits 0.
fn stuck_bit_program() -> Vec<u8> {
    use iced_x86::code_asm::*;
    let mut a = CodeAssembler::new(64).unwrap();
    let dump = |a: &mut CodeAssembler| {
        // write(1, STUCK_PAGE, 4096)
        a.mov(eax, 1u32).unwrap();
        a.mov(edi, 1u32).unwrap();
        a.mov(rsi, STUCK_PAGE).unwrap();
        a.mov(edx, 0x1000u32).unwrap();
        a.syscall().unwrap();
    };
    let fill = |a: &mut CodeAssembler, page: u64, value: u64| {
        a.cld().unwrap();
        a.mov(rdi, page).unwrap();
        a.mov(rax, value).unwrap();
        a.mov(ecx, 0x200u32).unwrap();
        a.rep().stosq().unwrap();
    };
    // 1. REP STOSB of zeros.
    a.cld().unwrap();
    a.mov(rdi, STUCK_PAGE).unwrap();
    a.xor(eax, eax).unwrap();
    a.mov(ecx, 0x1000u32).unwrap();
    a.rep().stosb().unwrap();
    dump(&mut a);
    // 2. REP STOSQ of ones.
    fill(&mut a, STUCK_PAGE, u64::MAX);
    dump(&mut a);
    // 3. REP MOVSB of 80 81 .. 87.
    fill(&mut a, SOURCE_PAGE, 0x8786_8584_8382_8180);
    a.mov(rsi, SOURCE_PAGE).unwrap();
    a.mov(rdi, STUCK_PAGE).unwrap();
    a.mov(ecx, 0x1000u32).unwrap();
    a.rep().movsb().unwrap();
    dump(&mut a);
    // 4. REP MOVSQ of fe.
    fill(&mut a, SOURCE_PAGE, 0xfefe_fefe_fefe_fefe);
    a.mov(rsi, SOURCE_PAGE).unwrap();
    a.mov(rdi, STUCK_PAGE).unwrap();
    a.mov(ecx, 0x200u32).unwrap();
    a.rep().movsq().unwrap();
    dump(&mut a);
    // 5. read(0, STUCK_PAGE, 4096): the kernel side writes the page.
    a.xor(eax, eax).unwrap();
    a.xor(edi, edi).unwrap();
    a.mov(rsi, STUCK_PAGE).unwrap();
    a.mov(edx, 0x1000u32).unwrap();
    a.syscall().unwrap();
    dump(&mut a);
    // 6. A loop of plain stores, hot enough for the block compiler to run it as host code.
    a.mov(rdi, STUCK_PAGE).unwrap();
    a.mov(rax, 0xd4d4_d4d4_d4d4_d4d4u64).unwrap();
    a.mov(ecx, 0x200u32).unwrap();
    let mut top = a.create_label();
    a.set_label(&mut top).unwrap();
    a.mov(qword_ptr(rdi), rax).unwrap();
    a.add(rdi, 8).unwrap();
    a.dec(ecx).unwrap();
    a.jnz(top).unwrap();
    dump(&mut a);
    // exit_group(0)
    a.mov(eax, 231u32).unwrap();
    a.xor(edi, edi).unwrap();
    a.syscall().unwrap();
    a.assemble(RWX_LOAD + 120).unwrap()
}

/// What each of the six dumps must read: the page as written, with the stuck bits forced.
fn stuck_bit_expected(stdin: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let pages: [Vec<u8>; 6] = [
        vec![0; 0x1000],
        vec![0xff; 0x1000],
        (0..0x1000).map(|k| 0x80 + (k % 8) as u8).collect(),
        vec![0xfe; 0x1000],
        stdin.to_vec(),
        vec![0xd4; 0x1000],
    ];
    for mut page in pages {
        for (byte, bit, value) in STUCK_BITS {
            let b = &mut page[byte as usize];
            *b = if value {
                *b | 1 << bit
            } else {
                *b & !(1 << bit)
            };
        }
        out.extend(page);
    }
    out
}

/// The promise of the module doc (stuck bits hold on every write) for the writes a program makes: REP STOSB,
/// REP STOSQ, REP MOVSB and REP MOVSQ (which write whole page spans at once), read(2) filling a buffer, and plain
/// stores compiled by the block compiler, with the compiler on and off.
#[test]
fn stuck_bits_hold_against_string_stores_reads_and_compiled_stores() {
    let program: Arc<[u8]> = elf_rwx(&stuck_bit_program()).into();
    let stdin: Vec<u8> = (0..0x1000u32).map(|k| 0xaa ^ (k as u8 & 0x10)).collect();
    let expected = stuck_bit_expected(&stdin);
    let spec = STUCK_BITS
        .iter()
        .map(|&(byte, bit, value)| {
            format!(
                "mem.stuck:icount=0,addr={:#x},bit={bit},value={}",
                STUCK_PAGE + byte,
                value as u8
            )
        })
        .collect::<Vec<_>>()
        .join(",");
    for jit in [true, false] {
        let mut host = MemoryHost::new(0);
        host.stdin = stdin.clone();
        let mut hv = Hypervisor::new(
            config(&["stuck"]),
            program.clone(),
            host,
            FaultPlan::parse_spec(&spec, "test").unwrap(),
            Policy::default(),
            0,
        )
        .unwrap();
        hv.guest.machine.set_jit(jit);
        finished(&mut hv);
        assert_eq!(hv.guest.exit_status(), Some(0), "jit {jit}");
        assert_eq!(hv.injections().len(), 2);
        let got = &hv.guest.host.stdout;
        assert_eq!(got.len(), expected.len(), "jit {jit}: six pages written");
        for (k, what) in [
            "rep stosb",
            "rep stosq",
            "rep movsb",
            "rep movsq",
            "read(2)",
            "compiled stores",
        ]
        .iter()
        .enumerate()
        {
            let page = k * 0x1000..(k + 1) * 0x1000;
            for (byte, _, _) in STUCK_BITS {
                let at = page.start + byte as usize;
                assert_eq!(
                    got[at], expected[at],
                    "jit {jit}, {what}: byte {byte:#x} of the stuck page reads {:#04x}, the stuck bits say {:#04x}",
                    got[at], expected[at]
                );
            }
            assert!(
                got[page.clone()] == expected[page],
                "jit {jit}, {what}: the rest of the page"
            );
        }
    }
}

/// `f` of the memory of another process than the running one (with its own address space), if there is one.
fn in_other_process<T>(hv: &Hypervisor<MemoryHost>, f: impl FnOnce(&Memory) -> T) -> Option<T> {
    let running = hv.guest.current_pid();
    let here = hv.guest.memory();
    hv.guest
        .threads()
        .into_iter()
        .filter(|t| t.pid != running)
        .filter_map(|t| hv.guest.thread_memory(t.tid))
        .find(|m| !std::ptr::eq(*m, here))
        .map(f)
}

/// An uncorrectable error on a frame a fork's parent and child still share (copy-on-write not broken)
/// poisons it in both, as Linux's memory-failure reaches every process that maps the page; a frame with the
/// same number that one of them has since written (its own copy) is poisoned in that process only.
#[test]
fn an_error_on_a_frame_shared_after_fork_poisons_every_process_mapping_it() {
    let mut hv = guest("procs-musl", &["procs"], "", false, 0);
    // Run until a forked child exists beside the parent.
    let mut chunks = 0;
    while in_other_process(&hv, |_| ()).is_none() {
        assert_eq!(hv.run(1_000), Progress::BudgetExhausted, "procs forks");
        chunks += 1;
        assert!(chunks < 20_000, "no fork");
    }
    let pages = hv.guest.memory().page_entries();
    let mut shared = None;
    let mut own = None;
    for &(_, frame, _) in &pages {
        let elsewhere = hv.guest.with_spaces_sharing_frame(frame, |_| {});
        let in_other = in_other_process(&hv, |m| m.frame_class(frame).is_some()).unwrap();
        if elsewhere > 0 {
            shared.get_or_insert(frame);
        } else if in_other {
            own.get_or_insert(frame);
        }
    }
    let shared = shared.expect("after a fork most frames are shared");
    let own = own.expect("the stack at least has been written since the fork");
    hv.inject(FaultKind::Ue, own, 0, 0, false);
    assert!(hv.guest.memory().frame_is_poisoned(own));
    assert_eq!(
        in_other_process(&hv, |m| m.frame_is_poisoned(own)),
        Some(false),
        "the other process's frame {own:?} is its own copy, another physical frame"
    );
    hv.inject(FaultKind::Ue, shared, 0, 0, false);
    assert!(hv.guest.memory().frame_is_poisoned(shared));
    let mut poisoned_elsewhere = 0;
    hv.guest.with_spaces_sharing_frame(shared, |m| {
        assert!(m.frame_is_poisoned(shared));
        poisoned_elsewhere += 1;
    });
    assert!(poisoned_elsewhere >= 1);
    // The run goes on to its end whatever the poison does to either process: no panic, a termination.
    hv.run_to_completion(200_000_000);
    assert!(hv.guest.termination().is_some());
}

/// With early kill, a lost dirty frame that a forked child still shares with its parent signals both at
/// once: the child, running, dies of SIGBUS BUS_MCEERR_AO there and then, and the parent (the first process)
/// takes its own when it next runs, so the run ends killed by SIGBUS instead of the parent reaping a child
/// and going on.
#[test]
fn early_kill_reaches_every_process_sharing_the_lost_frame() {
    use crate::linux::ids::{Pid, Tid};
    use crate::memory::FrameClass;
    let mut hv = guest("procs-musl", &["procs"], "", true, 0);
    let mut steps = 0;
    let frame = loop {
        assert_eq!(hv.run(100), Progress::BudgetExhausted, "procs forks");
        steps += 1;
        assert!(steps < 200_000, "no forked child ran");
        if hv.guest.current_pid() == Pid(1000) {
            continue;
        }
        let Some(parent) = hv.guest.thread_memory(Tid(1000)) else {
            continue;
        };
        let here = hv.guest.memory();
        if std::ptr::eq(parent, here) {
            continue; // a vfork child borrows its parent's memory
        }
        let shared_dirty = here.page_entries().into_iter().find(|&(_, f, _)| {
            here.frame_class(f) == Some(FrameClass::AnonDirty) && here.shares_frame(f, parent)
        });
        if let Some((_, f, _)) = shared_dirty {
            break f;
        }
    };
    hv.inject(FaultKind::Ue, frame, 0, 0, false);
    assert_eq!(
        hv.reports().last().map(|r| r.action),
        Some(Action::SigbusNow)
    );
    hv.run_to_completion(200_000_000);
    match hv.guest.termination() {
        Some(Termination::Signaled { signal, cause, .. }) => {
            assert_eq!(*signal, SIGBUS, "{cause}")
        }
        other => panic!("the parent must die of the early kill, not {other:?}"),
    }
    // Of the early kill (action optional), not of touching the poisoned page later (action required).
    let info = hv.guest.stats().last_fault.expect("a SIGBUS");
    assert_eq!((info.signo, info.code), (SIGBUS, 5), "BUS_MCEERR_AO");
}
