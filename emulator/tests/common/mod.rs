//! Shared helpers of the oracle suites (differential_unicorn, native_oracle, exact_counting): a fixed guest memory
//! layout, a register snapshot that both oracles and tandem can load and store, and state formatting for mismatch
//! reports.
//!
//! Every suite builds its machines through `machine_with`, so the layout below is the one place that says where
//! code, data and stack live. Addresses are below 2 GiB so that absolute disp32 and 32-bit address-size memory
//! operands can reach them.

#![allow(dead_code)] // Each test binary uses a different subset.

use tandem_emulator::cpu::{Cpu, CpuConfig, Exit, Machine, Registers, X87};
use tandem_emulator::memory::{Memory, Perms};

/// Code: two pages, so that an instruction can straddle a page boundary.
pub const CODE_BASE: u64 = 0x10_0000;
pub const CODE_SIZE: u64 = 0x2000;
/// Data: four read-write pages, for memory operands (page-crossing ones straddle an inner boundary).
pub const DATA_BASE: u64 = 0x20_0000;
pub const DATA_SIZE: u64 = 0x4000;
/// Stack: two read-write pages; rsp starts inside them.
pub const STACK_BASE: u64 = 0x30_0000;
pub const STACK_SIZE: u64 = 0x2000;
/// One read-only page, for writes that must fault. The page after it is unmapped.
pub const RO_BASE: u64 = 0x40_0000;
pub const RO_SIZE: u64 = 0x1000;

/// Which regions a test machine maps, with their permissions and initial bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    pub code: Vec<u8>,
    pub data: Vec<u8>,
    pub stack: Vec<u8>,
    pub ro: Vec<u8>,
}

impl Image {
    /// Code filled with INT3 (so that running past the instruction under test is visible), zeroed data.
    pub fn new() -> Image {
        Image {
            code: vec![0xcc; CODE_SIZE as usize],
            data: vec![0; DATA_SIZE as usize],
            stack: vec![0; STACK_SIZE as usize],
            ro: vec![0; RO_SIZE as usize],
        }
    }

    /// The regions as (address, bytes, writable), in address order.
    pub fn regions(&self) -> [(u64, &[u8], Perms); 4] {
        [
            (CODE_BASE, &self.code, Perms::RX),
            (DATA_BASE, &self.data, Perms::RW),
            (STACK_BASE, &self.stack, Perms::RW),
            (RO_BASE, &self.ro, Perms::READ),
        ]
    }

    /// The byte at guest address `addr`, if it lies in a region.
    pub fn byte_mut(&mut self, addr: u64) -> Option<&mut u8> {
        for (base, bytes) in [
            (CODE_BASE, &mut self.code),
            (DATA_BASE, &mut self.data),
            (STACK_BASE, &mut self.stack),
            (RO_BASE, &mut self.ro),
        ] {
            if addr >= base && addr < base + bytes.len() as u64 {
                return Some(&mut bytes[(addr - base) as usize]);
            }
        }
        None
    }

    /// Writes `bytes` at `addr`; bytes that fall outside every region are dropped.
    pub fn write(&mut self, addr: u64, bytes: &[u8]) {
        for (k, &b) in bytes.iter().enumerate() {
            if let Some(slot) = self.byte_mut(addr.wrapping_add(k as u64)) {
                *slot = b;
            }
        }
    }
}

impl Default for Image {
    fn default() -> Self {
        Image::new()
    }
}

/// The register state the oracles compare: what unicorn and the host CPU can both load and store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    /// In the SDM's encoding order: rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8..r15.
    pub gpr: [u64; 16],
    pub rip: u64,
    pub rflags: u64,
    pub xmm: [u128; 16],
    pub mxcsr: u32,
    pub fs_base: u64,
    pub gs_base: u64,
    /// The x87 stack and its control, status and tag words (last_ip/last_dp/last_opcode are not compared).
    pub x87: X87,
}

impl Default for State {
    fn default() -> Self {
        State {
            gpr: [0; 16],
            rip: CODE_BASE,
            rflags: 0x202,
            xmm: [0; 16],
            mxcsr: 0x1f80,
            fs_base: 0,
            gs_base: 0,
            x87: X87::default(),
        }
    }
}

/// A tandem machine holding `image` with the registers of `state`.
pub fn machine_with(image: &Image, state: &State) -> Machine {
    let mut mem = Memory::new();
    for (base, bytes, perms) in image.regions() {
        if perms == Perms::RX {
            mem.map_file_bytes(base, bytes.len() as u64, bytes, perms)
                .expect("map code");
        } else {
            mem.map_anonymous(base, bytes.len() as u64, perms)
                .expect("map region");
            mem.poke(base, bytes).expect("fill region");
        }
    }
    let mut cpu = Cpu::new(mem, CpuConfig::default());
    cpu.set_registers(&Registers {
        gpr: state.gpr,
        rip: state.rip,
        rflags: state.rflags,
        fs_base: state.fs_base,
        gs_base: state.gs_base,
        xmm: state.xmm,
        mxcsr: state.mxcsr,
        x87: state.x87.clone(),
    });
    Machine::new(cpu)
}

/// The registers of a tandem machine as a `State`.
pub fn tandem_state(m: &Machine) -> State {
    let r = m.cpu.registers();
    State {
        gpr: r.gpr,
        rip: r.rip,
        rflags: r.rflags,
        xmm: r.xmm,
        mxcsr: r.mxcsr,
        fs_base: r.fs_base,
        gs_base: r.gs_base,
        x87: r.x87,
    }
}

/// The bytes of every region of `m`, read without permission checks, in the order of `Image::regions`.
pub fn tandem_image(m: &Machine) -> Image {
    let mut image = Image::new();
    for (base, bytes) in [
        (CODE_BASE, &mut image.code),
        (DATA_BASE, &mut image.data),
        (STACK_BASE, &mut image.stack),
        (RO_BASE, &mut image.ro),
    ] {
        m.cpu.mem.peek(base, bytes).expect("region is mapped");
    }
    image
}

/// Runs `m` one instruction at a time until `count` instructions retired or it stops; returns the last exit.
pub fn step_n(m: &mut Machine, count: u64) -> Exit {
    let mut exit = Exit::BudgetExhausted;
    for _ in 0..count {
        exit = m.step();
        if exit != Exit::BudgetExhausted {
            break;
        }
    }
    exit
}

/// The SDM's names of the 64-bit registers in encoding order.
pub const GPR_NAMES: [&str; 16] = [
    "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13",
    "r14", "r15",
];

/// One line per register that differs between `a` and `b` (rflags under `rflags_mask`), for mismatch reports.
pub fn state_diff(a: &State, b: &State, rflags_mask: u64) -> Vec<String> {
    let mut out = Vec::new();
    for (k, name) in GPR_NAMES.iter().enumerate() {
        if a.gpr[k] != b.gpr[k] {
            out.push(format!(
                "{name:>6}: {:#018x} vs {:#018x}",
                a.gpr[k], b.gpr[k]
            ));
        }
    }
    if a.rip != b.rip {
        out.push(format!("   rip: {:#018x} vs {:#018x}", a.rip, b.rip));
    }
    if (a.rflags ^ b.rflags) & rflags_mask != 0 {
        out.push(format!(
            "rflags: {:#x} vs {:#x} (compared bits {:#x}, differing {:#x})",
            a.rflags,
            b.rflags,
            rflags_mask,
            (a.rflags ^ b.rflags) & rflags_mask
        ));
    }
    for k in 0..16 {
        if a.xmm[k] != b.xmm[k] {
            out.push(format!(
                "{:>6}: {:#034x} vs {:#034x}",
                format!("xmm{k}"),
                a.xmm[k],
                b.xmm[k]
            ));
        }
    }
    if a.mxcsr != b.mxcsr {
        out.push(format!(" mxcsr: {:#x} vs {:#x}", a.mxcsr, b.mxcsr));
    }
    let (x, y) = (&a.x87, &b.x87);
    for k in 0..8 {
        if x.regs[k] != y.regs[k] {
            out.push(format!(
                "    r{k}: {:04x}:{:016x} vs {:04x}:{:016x} (x87 physical register)",
                x.regs[k].sign_exponent,
                x.regs[k].significand,
                y.regs[k].sign_exponent,
                y.regs[k].significand
            ));
        }
    }
    if x.status_word() != y.status_word() {
        out.push(format!(
            "  fpsw: {:#06x} vs {:#06x}",
            x.status_word(),
            y.status_word()
        ));
    }
    if x.control != y.control {
        out.push(format!("  fpcw: {:#06x} vs {:#06x}", x.control, y.control));
    }
    if x.tag != y.tag {
        out.push(format!(" fptag: {:#06x} vs {:#06x}", x.tag, y.tag));
    }
    out
}

/// One line per differing byte run between two images, at most `lines_max` lines.
pub fn image_diff(a: &Image, b: &Image, lines_max: usize) -> Vec<String> {
    let mut out = Vec::new();
    let regions_a = a.regions();
    let regions_b = b.regions();
    for ((base, x, _), (_, y, _)) in regions_a.iter().zip(regions_b.iter()) {
        for k in 0..x.len() {
            if x[k] != y[k] && out.len() < lines_max {
                out.push(format!(
                    "  mem[{:#x}]: {:#04x} vs {:#04x}",
                    base + k as u64,
                    x[k],
                    y[k]
                ));
            }
        }
    }
    out
}

/// Renders the general registers, rip, rflags and MXCSR (the XMM registers are in the differences).
pub fn format_state_short(s: &State) -> String {
    let mut out = String::new();
    for (name, value) in GPR_NAMES.iter().zip(s.gpr) {
        out.push_str(&format!("{name}={value:#x} "));
    }
    out.push_str(&format!(
        "rip={:#x} rflags={:#x} mxcsr={:#x}",
        s.rip, s.rflags, s.mxcsr
    ));
    out
}

/// Renders a full state, for the "both states" part of a mismatch report.
pub fn format_state(s: &State) -> String {
    let mut out = String::new();
    for (name, value) in GPR_NAMES.iter().zip(s.gpr) {
        out.push_str(&format!("{name}={value:#x} "));
    }
    out.push_str(&format!(
        "\n    rip={:#x} rflags={:#x} mxcsr={:#x} fs_base={:#x} gs_base={:#x}",
        s.rip, s.rflags, s.mxcsr, s.fs_base, s.gs_base
    ));
    for k in 0..16 {
        if k % 4 == 0 {
            out.push_str("\n   ");
        }
        out.push_str(&format!(" xmm{k}={:#x}", s.xmm[k]));
    }
    out
}
