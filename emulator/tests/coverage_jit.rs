//! Edge coverage (cpu/coverage.rs) is a function of the guest's path alone: the same corpus programs, run with
//! compiled blocks (which chain and record their own edges) and interpreted only, and each in budget slices of
//! a prime number of instructions (so blocks are entered part-way), give identical maps and shadow call stacks; a different input gives a different map; coverage changes
//! nothing the run does (instruction count and state hash equal to a run without it).

mod common;

use common::*;
use iced_x86::code_asm::*;
use iced_x86::BlockEncoderOptions;
use std::path::PathBuf;
use tandem_emulator::cpu::coverage::Coverage;
use tandem_emulator::cpu::{Exception, Exit};
use tandem_emulator::linux::{LinuxConfig, LinuxMachine, MemoryHost, Progress};

fn corpus(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../corpus/bin")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A run's coverage map and its shadow call stack at the end.
type MapAndStack = (Vec<u8>, Vec<u64>);

/// Runs `name` with `stdin` in slices of `slice` instructions; returns the map and the shadow call stack at the
/// end (if collected), icount and state hash.
fn run(
    name: &str,
    args: &[&str],
    stdin: &[u8],
    jit: bool,
    slice: u64,
    coverage: bool,
) -> (Option<MapAndStack>, u64, u64) {
    let mut argv = vec![name.as_bytes().to_vec()];
    argv.extend(args.iter().map(|a| a.as_bytes().to_vec()));
    let config = LinuxConfig {
        argv,
        ..LinuxConfig::default()
    };
    let mut host = MemoryHost::new(3);
    host.stdin = stdin.to_vec();
    let mut m = LinuxMachine::new(config, &corpus(name), host).expect("loads");
    m.set_jit(jit);
    if coverage {
        m.set_coverage(Some(Box::new(Coverage::new())));
    }
    let mut slices = 0u64;
    while m.run(slice) != Progress::Finished {
        slices += 1;
        assert!(slices < 1 << 24, "{name} did not finish");
    }
    let map = m
        .set_coverage(None)
        .map(|c| (c.map().to_vec(), c.call_stack().collect()));
    (map, m.icount(), m.state_hash())
}

fn edges(map: &[u8]) -> usize {
    map.iter().filter(|&&c| c != 0).count()
}

#[test]
fn jit_and_interpreter_maps_are_identical() {
    let cases: [(&str, &[&str], &[u8]); 5] = [
        ("sha256-musl", &[], b""),
        ("qsort-musl", &[], b""),
        ("malloc-glibc", &[], b""),
        (
            "fuzz-messages-musl",
            &[],
            b"HELO\0\0\0\0AUTH\x39\x05\0\0DATA",
        ),
        ("fuzz-checksum-musl", &[], b"X\x02\xa5\x01\xa4"),
    ];
    for (name, args, stdin) in cases {
        let (reference, icount, hash) = run(name, args, stdin, false, u64::MAX, true);
        let (reference, stack) = reference.unwrap();
        assert!(!stack.is_empty(), "{name}: exit is called from inside main");
        assert!(
            edges(&reference) > 20,
            "{name}: {} edges",
            edges(&reference)
        );
        for (jit, slice) in [(true, u64::MAX), (true, 997), (false, 997), (true, 1)] {
            if slice == 1 && icount > 2_000_000 {
                continue;
            }
            let (map, i, h) = run(name, args, stdin, jit, slice, true);
            let (map, s) = map.unwrap();
            assert_eq!(
                s, stack,
                "{name}: jit {jit}, slices of {slice}: call stacks"
            );
            let differing = map.iter().zip(&reference).filter(|(a, b)| a != b).count();
            assert_eq!(
                differing, 0,
                "{name}: jit {jit}, slices of {slice}: {differing} map bytes differ from the interpreter's"
            );
            assert_eq!(
                (i, h),
                (icount, hash),
                "{name}: jit {jit}, slices of {slice}"
            );
        }
        let (none, i, h) = run(name, args, stdin, true, u64::MAX, false);
        assert!(none.is_none());
        assert_eq!((i, h), (icount, hash), "{name}: coverage changed the run");
    }
}

#[test]
fn another_path_gives_another_map() {
    let (a, ..) = run(
        "fuzz-messages-musl",
        &[],
        b"HELO\0\0\0\0",
        true,
        u64::MAX,
        true,
    );
    let (b, ..) = run(
        "fuzz-messages-musl",
        &[],
        b"HELO\0\0\0\0AUTH\x39\x05\0\0",
        true,
        u64::MAX,
        true,
    );
    let (a, b) = (a.unwrap().0, b.unwrap().0);
    assert!(
        a.iter().zip(&b).any(|(x, y)| *x == 0 && *y != 0),
        "the AUTH message reaches an edge the HELO message alone does not"
    );
}

#[test]
fn comparison_constants_reach_the_dictionary() {
    let config = LinuxConfig {
        argv: vec![b"fuzz-magic-musl".to_vec()],
        ..LinuxConfig::default()
    };
    let mut host = MemoryHost::new(3);
    host.stdin = b"FZ\0\0\0\0".to_vec();
    let mut m = LinuxMachine::new(config, &corpus("fuzz-magic-musl"), host).expect("loads");
    m.set_coverage(Some(Box::new(Coverage::new())));
    assert_eq!(m.run(u64::MAX), Progress::Finished);
    let c = m.coverage().unwrap();
    assert!(
        c.dictionary().contains(&(0x5eed_f00d, 4)),
        "the magic compared against is in the dictionary: {:x?}",
        c.dictionary()
    );
}

/// A hand-made loop program on a bare machine (tests/common's layout): per round a direct CALL and RET, a
/// direct conditional branch back (the block chains to itself), an indirect JMP and a direct JMP, `rounds`
/// times, then `hlt`. Returns the code and the starts of the blocks the loop runs.
fn loop_program(rounds: u32) -> (Vec<u8>, Vec<u64>) {
    let mut a = CodeAssembler::new(64).unwrap();
    let (mut top, mut after_call, mut func) =
        (a.create_label(), a.create_label(), a.create_label());
    let (mut inner, mut back, mut done) = (a.create_label(), a.create_label(), a.create_label());
    a.mov(ebx, rounds).unwrap();
    a.mov(ecx, rounds).unwrap();
    a.lea(r8, ptr(back)).unwrap();
    a.set_label(&mut top).unwrap();
    a.call(func).unwrap();
    a.set_label(&mut after_call).unwrap();
    a.dec(ebx).unwrap();
    a.jnz(top).unwrap();
    a.set_label(&mut inner).unwrap();
    a.add(edx, 1).unwrap();
    a.jmp(r8).unwrap();
    a.set_label(&mut back).unwrap();
    a.dec(ecx).unwrap();
    a.jnz(inner).unwrap();
    a.jmp(done).unwrap();
    a.set_label(&mut func).unwrap();
    a.add(eax, 1).unwrap();
    a.ret().unwrap();
    a.set_label(&mut done).unwrap();
    a.hlt().unwrap();
    let r = a
        .assemble_options(
            CODE_BASE,
            BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS,
        )
        .unwrap();
    let starts = [top, after_call, func, inner, back]
        .iter()
        .map(|l| r.label_ip(l).unwrap())
        .collect();
    (r.inner.code_buffer, starts)
}

/// Runs the loop program to its `hlt` with coverage, in slices of `slice` instructions, its loop blocks
/// compiled before the first run when `jit`. Returns the map and the registers.
fn run_loop(rounds: u32, jit: bool, slice: u64) -> (Vec<u8>, [u64; 16]) {
    let (code, starts) = loop_program(rounds);
    let mut image = Image::new();
    image.write(CODE_BASE, &code);
    let mut state = State::default();
    state.gpr[4] = STACK_BASE + STACK_SIZE - 0x100;
    let mut m = machine_with(&image, &state);
    m.set_jit(jit);
    m.set_coverage(Some(Box::new(Coverage::new())));
    if jit {
        assert_eq!(
            m.precompile(&starts),
            starts.len(),
            "every loop block compiles"
        );
    }
    let mut slices = 0u64;
    loop {
        match m.run(slice) {
            Exit::BudgetExhausted => slices += 1,
            Exit::Exception(Exception::GeneralProtection) => break,
            other => panic!("rounds {rounds}: stopped by {other:?}"),
        }
        assert!(slices < 1 << 24, "rounds {rounds}: the loop did not end");
    }
    let map = m.set_coverage(None).unwrap().map().to_vec();
    (map, m.cpu.registers().gpr)
}

#[test]
fn compiled_branches_count_and_wrap_like_the_interpreter() {
    // 300 rounds: every loop edge is hit 299 or 300 times, so its 8-bit counter has wrapped once.
    let rounds = 300;
    let (reference, regs) = run_loop(rounds, false, u64::MAX);
    assert_eq!(
        edges(&reference),
        9,
        "the loop's edges: {:?}",
        reference.iter().filter(|&&c| c != 0).collect::<Vec<_>>()
    );
    assert!(
        reference.contains(&((rounds - 1) as u8)) && reference.contains(&(rounds as u8)),
        "the loop edges' counters wrapped: {:?}",
        reference.iter().filter(|&&c| c != 0).collect::<Vec<_>>()
    );
    for slice in [u64::MAX, 997, 7] {
        let (map, r) = run_loop(rounds, true, slice);
        assert_eq!(r, regs, "compiled, slices of {slice}: registers");
        let differing: Vec<usize> = (0..map.len()).filter(|&k| map[k] != reference[k]).collect();
        assert!(
            differing.is_empty(),
            "compiled, slices of {slice}: map bytes {differing:?} differ from the interpreter's"
        );
    }
    // 256 more rounds add 256 to every loop counter: the same map, compiled and interpreted; one more does not.
    for jit in [false, true] {
        assert_eq!(
            run_loop(rounds + 256, jit, u64::MAX).0,
            reference,
            "jit {jit}: +256 rounds"
        );
        assert_ne!(
            run_loop(rounds + 1, jit, u64::MAX).0,
            reference,
            "jit {jit}: +1 round"
        );
    }
}
