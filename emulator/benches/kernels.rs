//! Speed of the interpreter on integer kernels, in guest instructions per second, beside unicorn-engine on the
//! same code in its JIT mode and with a per-instruction counting hook (what exact instruction counting costs it).
//!
//! The kernels are C compiled freestanding into corpus/kernels/kernels.bin (see corpus/kernels/build.sh): a
//! counted loop, SHA-256 of a buffer, a heap sort, and a rep-movsb copy with a checksum. Each runs from its entry
//! to a return address holding HLT. Before timing, the bench checks that tandem and unicorn end with the same
//! result registers and instruction counts, so the figures compare equal work.
//!
//! Run: `cargo bench -p tandem-emulator --bench kernels`. Criterion reports "elem/s": guest instructions/s.

use criterion::{criterion_group, Criterion, Throughput};
use std::cell::Cell;
use std::rc::Rc;
use tandem_emulator::cpu::{Cpu, CpuConfig, Exception, Exit, Machine, RAX, RDI, RSI, RSP};
use tandem_emulator::memory::{Memory, Perms};
use unicorn_engine::unicorn_const::{Arch, Mode, Prot};
use unicorn_engine::{RegisterX86, Unicorn};

const KERNELS_BIN: &[u8] = include_bytes!("../../corpus/kernels/kernels.bin");
const CODE: u64 = 0x40_0000;
const HALT: u64 = 0x30_0000;
const DATA: u64 = 0x1000_0000;
const DATA_SIZE: u64 = 16 << 20;
const STACK: u64 = 0x7000_0000;
const STACK_SIZE: u64 = 1 << 20;

struct Kernel {
    name: &'static str,
    slot: u64,
    args: [u64; 4],
    /// Bytes placed at DATA before the run.
    data: Vec<u8>,
    /// How many REP instructions the kernel executes: unicorn's code hook fires once more for each (QEMU
    /// re-enters the instruction to find rcx = 0), where tandem counts exactly one per iteration.
    rep_executions: u64,
}

/// xorshift64*: deterministic filler for kernel inputs.
fn filler(len: usize, mut x: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        v.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    v.truncate(len);
    v
}

fn kernels() -> Vec<Kernel> {
    let sha_init: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut sha_data = filler(64 * 1024, 1);
    for w in sha_init {
        sha_data.extend_from_slice(&w.to_le_bytes());
    }
    vec![
        Kernel {
            name: "counted_loop",
            slot: 0,
            args: [3_000_000, 0, 0, 0],
            data: Vec::new(),
            rep_executions: 0,
        },
        Kernel {
            name: "sha256",
            slot: 1,
            args: [DATA, 1024, DATA + 64 * 1024, 0],
            data: sha_data,
            rep_executions: 0,
        },
        Kernel {
            name: "heap_sort",
            slot: 2,
            args: [DATA, 60_000, 0, 0],
            data: filler(60_000 * 4, 2),
            rep_executions: 0,
        },
        Kernel {
            name: "copy",
            slot: 3,
            args: [DATA + (8 << 20), DATA, 256 * 1024, 24],
            data: filler(256 * 1024, 3),
            rep_executions: 24,
        },
    ]
}

fn tandem_machine(k: &Kernel) -> Machine {
    let mut mem = Memory::new();
    mem.map_file_bytes(CODE, 0x1000, KERNELS_BIN, Perms::RX)
        .unwrap();
    mem.map_file_bytes(HALT, 0x1000, &[0xf4], Perms::RX)
        .unwrap();
    mem.map_anonymous(DATA, DATA_SIZE, Perms::RW).unwrap();
    mem.map_anonymous(STACK - STACK_SIZE, STACK_SIZE, Perms::RW)
        .unwrap();
    mem.write_bytes(DATA, &k.data).unwrap();
    let mut cpu = Cpu::new(mem, CpuConfig::default());
    cpu.regs.rip = CODE + 8 * k.slot;
    cpu.regs.gpr[RSP] = STACK - 64;
    cpu.mem.write_u64(cpu.regs.gpr[RSP], HALT).unwrap();
    cpu.regs.gpr[RDI] = k.args[0];
    cpu.regs.gpr[RSI] = k.args[1];
    cpu.regs.gpr[2] = k.args[2];
    cpu.regs.gpr[1] = k.args[3];
    Machine::new(cpu)
}

/// Runs to the HLT at the return address; returns (rax, icount). HLT itself does not retire.
fn run_tandem(k: &Kernel) -> (u64, u64) {
    let mut m = tandem_machine(k);
    let exit = m.run(u64::MAX);
    assert_eq!(
        exit,
        Exit::Exception(Exception::GeneralProtection),
        "{}: stopped early",
        k.name
    );
    assert_eq!(m.cpu.regs.rip, HALT, "{}: did not return", k.name);
    (m.cpu.regs.gpr[RAX], m.cpu.icount)
}

fn unicorn_machine(k: &Kernel) -> Unicorn<'static, ()> {
    let mut uc = Unicorn::new(Arch::X86, Mode::MODE_64).unwrap();
    uc.mem_map(CODE, 0x1000, Prot::READ | Prot::EXEC).unwrap();
    uc.mem_write(CODE, KERNELS_BIN).unwrap();
    uc.mem_map(HALT, 0x1000, Prot::READ | Prot::EXEC).unwrap();
    uc.mem_write(HALT, &[0xf4]).unwrap();
    uc.mem_map(DATA, DATA_SIZE, Prot::READ | Prot::WRITE)
        .unwrap();
    uc.mem_write(DATA, &k.data).unwrap();
    uc.mem_map(STACK - STACK_SIZE, STACK_SIZE, Prot::READ | Prot::WRITE)
        .unwrap();
    uc.mem_write(STACK - 64, &HALT.to_le_bytes()).unwrap();
    uc.reg_write(RegisterX86::RSP, STACK - 64).unwrap();
    uc.reg_write(RegisterX86::RDI, k.args[0]).unwrap();
    uc.reg_write(RegisterX86::RSI, k.args[1]).unwrap();
    uc.reg_write(RegisterX86::RDX, k.args[2]).unwrap();
    uc.reg_write(RegisterX86::RCX, k.args[3]).unwrap();
    uc
}

fn run_unicorn(k: &Kernel, count_hook: bool) -> (u64, u64) {
    let mut uc = unicorn_machine(k);
    let count = Rc::new(Cell::new(0u64));
    if count_hook {
        let c = count.clone();
        uc.add_code_hook(1, 0, move |_, _, _| c.set(c.get() + 1))
            .unwrap();
    }
    uc.emu_start(CODE + 8 * k.slot, HALT, 0, 0).unwrap();
    (uc.reg_read(RegisterX86::RAX).unwrap(), count.get())
}

fn bench(c: &mut Criterion) {
    for k in kernels() {
        let (rax, icount) = run_tandem(&k);
        let (uc_rax, uc_count) = run_unicorn(&k, true);
        assert_eq!(
            rax, uc_rax,
            "{}: tandem and unicorn disagree on the result",
            k.name
        );
        // unicorn stops on reaching HLT without executing it; tandem faults on it: neither retires it.
        assert_eq!(
            icount + k.rep_executions,
            uc_count,
            "{}: instruction counts differ",
            k.name
        );
        eprintln!("{}: {} guest instructions", k.name, icount);

        let mut group = c.benchmark_group(k.name);
        group.throughput(Throughput::Elements(icount));
        group.sample_size(10);
        group.bench_function("tandem", |b| b.iter(|| run_tandem(&k)));
        group.bench_function("unicorn_jit", |b| b.iter(|| run_unicorn(&k, false)));
        group.bench_function("unicorn_count_hook", |b| b.iter(|| run_unicorn(&k, true)));
        group.finish();
    }
}

criterion_group!(benches, bench);

/// `TANDEM_PROFILE_KERNEL=NAME cargo bench -p tandem-emulator --bench kernels` runs that kernel once on tandem
/// and exits, for profilers: under `valgrind --tool=callgrind` the host instructions per guest instruction do not
/// depend on what else the machine is doing, unlike wall time.
fn main() {
    if let Ok(name) = std::env::var("TANDEM_PROFILE_KERNEL") {
        let k = kernels()
            .into_iter()
            .find(|k| k.name == name)
            .expect("unknown kernel name");
        let (_, icount) = run_tandem(&k);
        eprintln!("{name}: {icount} guest instructions");
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
