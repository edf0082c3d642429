//! The block compiler against the interpreter, in lockstep on real programs: the corpus programs (musl and glibc)
//! run twice, with compiled blocks and interpreted only, in chunks of a prime number of instructions, and the
//! registers, rflags and instruction count must agree after every chunk; at the end the whole state hash
//! (memory included) must too. On a difference the test re-runs both up to the chunk and names the first
//! instruction that differs, with its disassembly.

use std::path::PathBuf;
use tandem_emulator::cpu::Registers;
use tandem_emulator::linux::{LinuxConfig, LinuxMachine, MemoryHost, Progress};

fn corpus(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../corpus/bin")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn machine(program: &[u8], name: &str, jit: bool) -> LinuxMachine<MemoryHost> {
    let config = LinuxConfig {
        argv: vec![
            name.as_bytes().to_vec(),
            b"alpha".to_vec(),
            b"beta".to_vec(),
        ],
        ..LinuxConfig::default()
    };
    let mut m = LinuxMachine::new(config, program, MemoryHost::new(7)).expect("loads");
    m.set_jit(jit);
    m
}

fn state(m: &LinuxMachine<MemoryHost>) -> (u64, Registers) {
    (m.icount(), m.registers())
}

/// Runs both machines in chunks of `chunk` until they finish; returns the first chunk end where they differ.
fn first_difference(program: &[u8], name: &str, chunk: u64) -> Option<u64> {
    let mut jit = machine(program, name, true);
    let mut interp = machine(program, name, false);
    loop {
        let a = jit.run(chunk);
        let b = interp.run(chunk);
        if state(&jit) != state(&interp) || a != b {
            return Some(interp.icount());
        }
        if a == Progress::Finished {
            assert_eq!(
                jit.state_hash(),
                interp.state_hash(),
                "{name}: final state hash"
            );
            assert_eq!(
                jit.exit_status(),
                interp.exit_status(),
                "{name}: exit status"
            );
            return None;
        }
    }
}

fn explain(program: &[u8], name: &str, until: u64) -> String {
    // Any run to icount X must reach the same state with or without compiled blocks (blocks run compiled only
    // when they fit): find the first X after which they differ, from fresh machines each time.
    let from = until.saturating_sub(1100);
    for x in from..=until {
        let mut jit = machine(program, name, true);
        let mut interp = machine(program, name, false);
        jit.run(x);
        interp.run(x);
        if state(&jit) == state(&interp) {
            continue;
        }
        let mut before = machine(program, name, false);
        before.run(x - 1);
        let rip = before.rip();
        let (bytes, text) = before.describe_instruction(rip);
        let (a, b) = (state(&jit).1, state(&interp).1);
        let mut diffs = Vec::new();
        for g in 0..16 {
            if a.gpr[g] != b.gpr[g] {
                diffs.push(format!(
                    "gpr{g}: jit {:#x} interp {:#x}",
                    a.gpr[g], b.gpr[g]
                ));
            }
        }
        if a.rflags != b.rflags {
            diffs.push(format!(
                "rflags: jit {:#x} interp {:#x}",
                a.rflags, b.rflags
            ));
        }
        if a.rip != b.rip {
            diffs.push(format!("rip: jit {:#x} interp {:#x}", a.rip, b.rip));
        }
        return format!(
            "{name}: first differing state at icount {x}, after {rip:#x} {bytes:02x?} {text}; jit reached {}\n{}",
            jit.icount(),
            diffs.join("\n")
        );
    }
    format!("{name}: differs by icount {until}, but no single run to a nearby icount shows it")
}

#[test]
fn compiled_blocks_match_the_interpreter_on_the_corpus() {
    let mut failures = Vec::new();
    for prog in [
        "hello", "args", "malloc", "qsort", "sha256", "float", "segv", "jmp", "clock", "rewind",
        "sigbus", "crash",
    ] {
        for libc in ["musl", "glibc"] {
            let name = format!("{prog}-{libc}");
            let program = corpus(&name);
            for chunk in [997, 101] {
                if let Some(at) = first_difference(&program, &name, chunk) {
                    failures.push(explain(&program, &name, at));
                    break;
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
