//! The guest memory limit (`LinuxConfig::frames_max`): a guest that maps and touches memory in a loop, through
//! mmap, brk or mremap, meets ENOMEM inside the guest at the limit, and the host holds no more than the limit's
//! pages. The loader's side: a p_memsz beyond the limit is a load error naming the program header, and a large
//! bss costs no host page until it is written.
//!
//! The programs are hand-assembled (iced's code assembler) into a one-segment ELF executable, run on `MemoryHost`.

use iced_x86::code_asm::*;
use tandem_emulator::linux::elf::LoadError;
use tandem_emulator::linux::{LinuxConfig, LinuxMachine, MemoryHost, Progress};

const LOAD: u64 = 0x40_0000;
/// The code starts after the ELF header and one program header.
const CODE: u64 = LOAD + 120;
const MIB: u64 = 1 << 20;
const ENOMEM: i64 = -12;

/// An ET_EXEC with one RWX PT_LOAD holding the headers and `code`, `bss_bytes` of zeros after it.
fn elf_with(code: &[u8], bss_bytes: u64) -> Vec<u8> {
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
    ph[40..48].copy_from_slice(&(total + bss_bytes).to_le_bytes());
    ph[48..56].copy_from_slice(&0x1000u64.to_le_bytes());
    f.extend_from_slice(code);
    f
}

fn assemble(f: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> Vec<u8> {
    let mut a = CodeAssembler::new(64).unwrap();
    f(&mut a).unwrap();
    a.assemble(CODE).unwrap()
}

/// Writes one byte to each of the `MIB` bytes of pages from `rdx` on (clobbers rcx and rdx).
fn touch_mib(a: &mut CodeAssembler) -> Result<(), IcedError> {
    let mut touch = a.create_label();
    a.mov(ecx, (MIB / 4096) as u32)?;
    a.set_label(&mut touch)?;
    a.mov(byte_ptr(rdx), 1)?;
    a.add(rdx, 4096)?;
    a.dec(ecx)?;
    a.jnz(touch)?;
    Ok(())
}

/// Exits with status 42 when rax holds -ENOMEM, 1 otherwise; r12 counts the MiB the guest got.
fn exit_42_on_enomem(a: &mut CodeAssembler) -> Result<(), IcedError> {
    let mut other = a.create_label();
    a.cmp(rax, ENOMEM as i32)?;
    a.jne(other)?;
    a.mov(edi, 42u32)?;
    a.mov(eax, 231u32)?;
    a.syscall()?;
    a.set_label(&mut other)?;
    a.mov(edi, 1u32)?;
    a.mov(eax, 231u32)?;
    a.syscall()?;
    Ok(())
}

/// mmap(NULL, 1 MiB, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS) and touch every page, until it fails.
fn mmap_loop() -> Vec<u8> {
    assemble(|a| {
        let mut again = a.create_label();
        let mut failed = a.create_label();
        a.xor(r12d, r12d)?;
        a.set_label(&mut again)?;
        a.xor(edi, edi)?;
        a.mov(esi, MIB as u32)?;
        a.mov(edx, 3u32)?;
        a.mov(r10d, 0x22u32)?;
        a.mov(r8, -1i64)?;
        a.xor(r9d, r9d)?;
        a.mov(eax, 9u32)?;
        a.syscall()?;
        a.cmp(rax, -4095i32)?;
        a.jae(failed)?;
        a.mov(rdx, rax)?;
        touch_mib(a)?;
        a.inc(r12)?;
        a.jmp(again)?;
        a.set_label(&mut failed)?;
        exit_42_on_enomem(a)
    })
}

/// brk up by 1 MiB at a time and touch the new pages, until the break stops moving; then rax = -ENOMEM.
fn brk_loop() -> Vec<u8> {
    assemble(|a| {
        let mut again = a.create_label();
        let mut failed = a.create_label();
        a.xor(r12d, r12d)?;
        a.xor(edi, edi)?;
        a.mov(eax, 12u32)?;
        a.syscall()?;
        a.mov(rbx, rax)?;
        a.set_label(&mut again)?;
        a.lea(rdi, qword_ptr(rbx + MIB as i32))?;
        a.mov(eax, 12u32)?;
        a.syscall()?;
        a.cmp(rax, rdi)?;
        a.jne(failed)?;
        a.mov(rdx, rbx)?;
        touch_mib(a)?;
        a.mov(rbx, rax)?;
        a.inc(r12)?;
        a.jmp(again)?;
        a.set_label(&mut failed)?;
        // brk(2) answers a refusal with the old break; glibc's sbrk turns that into ENOMEM.
        a.mov(rax, ENOMEM)?;
        exit_42_on_enomem(a)
    })
}

/// One page from mmap, then mremap(MREMAP_MAYMOVE) 1 MiB larger each time, touching the new part, until it fails;
/// then the last mapping must still hold what was written (a failed mremap moves nothing).
fn mremap_loop() -> Vec<u8> {
    assemble(|a| {
        let mut again = a.create_label();
        let mut failed = a.create_label();
        let mut lost = a.create_label();
        a.xor(r12d, r12d)?;
        a.xor(edi, edi)?;
        a.mov(esi, 4096u32)?;
        a.mov(edx, 3u32)?;
        a.mov(r10d, 0x22u32)?;
        a.mov(r8, -1i64)?;
        a.xor(r9d, r9d)?;
        a.mov(eax, 9u32)?;
        a.syscall()?;
        a.mov(rbx, rax)?; // the mapping
        a.mov(r13d, 4096u32)?; // its length
        a.mov(byte_ptr(rbx), 0x5a)?;
        a.set_label(&mut again)?;
        a.mov(rdi, rbx)?;
        a.mov(rsi, r13)?;
        a.lea(rdx, qword_ptr(r13 + MIB as i32))?;
        a.mov(r10d, 1u32)?; // MREMAP_MAYMOVE
        a.mov(eax, 25u32)?;
        a.syscall()?;
        a.cmp(rax, -4095i32)?;
        a.jae(failed)?;
        a.mov(rbx, rax)?;
        a.lea(rdx, qword_ptr(rax + r13))?;
        touch_mib(a)?;
        a.add(r13, MIB as i32)?;
        a.inc(r12)?;
        a.jmp(again)?;
        a.set_label(&mut failed)?;
        a.cmp(byte_ptr(rbx), 0x5a)?;
        a.jne(lost)?;
        exit_42_on_enomem(a)?;
        a.set_label(&mut lost)?;
        a.mov(edi, 2u32)?;
        a.mov(eax, 231u32)?;
        a.syscall()?;
        Ok(())
    })
}

fn config(frames_max: usize) -> LinuxConfig {
    LinuxConfig {
        frames_max,
        ..LinuxConfig::default()
    }
}

/// Runs `code` under a limit of `limit_mib` MiB; returns the exit status and the MiB the guest got (r12).
fn run_limited(code: &[u8], limit_mib: u64) -> (Option<i32>, u64, LinuxMachine<MemoryHost>) {
    let frames_max = (limit_mib * MIB / 4096) as usize;
    let mut m =
        LinuxMachine::new(config(frames_max), &elf_with(code, 0), MemoryHost::new(0)).unwrap();
    assert_eq!(m.run(50_000_000), Progress::Finished, "the guest must end");
    let mib = m.registers().gpr[12];
    let mem = m.memory();
    assert!(
        mem.frames_in_use() <= frames_max,
        "{} frames in use under a limit of {frames_max}",
        mem.frames_in_use()
    );
    (m.exit_status(), mib, m)
}

#[test]
fn a_guest_mapping_and_touching_in_a_loop_meets_enomem_at_the_limit() {
    for limit_mib in [32, 64] {
        let (status, mib, m) = run_limited(&mmap_loop(), limit_mib);
        assert_eq!(status, Some(42), "mmap must end in ENOMEM");
        // The refused mmap mapped nothing: less than a MiB is left, but not a page of it was taken.
        let mem = m.memory();
        let frames_max = (limit_mib * MIB / 4096) as usize;
        assert!(
            mem.frames_available() > 0 && mem.frames_available() < 256,
            "{} frames in use of {frames_max} after the refusal",
            mem.frames_in_use()
        );
        // The stack (8 MiB) and the program take their share; everything else went to the guest's mappings.
        assert!(
            mib + 8 < limit_mib && mib + 10 >= limit_mib,
            "{mib} MiB mapped under {limit_mib} MiB"
        );
        // Every page the guest touched is a page of host memory; none beyond the limit.
        let resident = m.memory().resident_frame_count() as u64;
        assert!(
            resident * 4096 <= limit_mib * MIB,
            "{resident} resident frames"
        );
        assert!(resident * 4096 >= mib * MIB, "{resident} resident frames");
    }
}

#[test]
fn brk_stops_at_the_limit_and_keeps_the_old_break() {
    let (status, mib, _) = run_limited(&brk_loop(), 40);
    assert_eq!(status, Some(42));
    assert!((28..32).contains(&mib), "{mib} MiB of heap under 40 MiB");
}

#[test]
fn a_refused_mremap_leaves_the_mapping_where_it_was() {
    let (status, mib, _) = run_limited(&mremap_loop(), 40);
    assert_eq!(status, Some(42), "exit 2 means the old mapping was lost");
    assert!((28..32).contains(&mib), "grew to {mib} MiB under 40 MiB");
}

#[test]
fn a_large_bss_costs_no_host_page_until_written() {
    // 1 GiB of bss under the default limit (4 GiB): mapped, but only the one page with file bytes is resident.
    let code = assemble(|a| {
        a.mov(edi, 7u32)?;
        a.mov(eax, 231u32)?;
        a.syscall()?;
        Ok(())
    });
    let mut m = LinuxMachine::new(
        LinuxConfig::default(),
        &elf_with(&code, 1 << 30),
        MemoryHost::new(0),
    )
    .unwrap();
    let mem = m.memory();
    assert!(mem.mapped_page_count() > (1 << 30) / 4096);
    // The program's page and the few stack pages the loader wrote.
    assert!(
        mem.resident_frame_count() <= 4,
        "{} resident frames",
        mem.resident_frame_count()
    );
    assert_eq!(m.run(1000), Progress::Finished);
    assert_eq!(m.exit_status(), Some(7));
}

#[test]
fn a_segment_beyond_the_limit_is_a_load_error_naming_it() {
    let code = [0x0f, 0x05];
    // 3 GiB of p_memsz under a 1 GiB limit: refused before anything is mapped.
    let e = LinuxMachine::new(
        config((1 << 30) / 4096),
        &elf_with(&code, 3 << 30),
        MemoryHost::new(0),
    )
    .err()
    .expect("a 3 GiB segment under a 1 GiB limit");
    assert!(matches!(e, LoadError::TooLarge { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains("program header 0 at offset 0x40"), "{text}");
    assert!(text.contains("--memory-max"), "{text}");
    // An image that fits but leaves no room for the stack is refused as clearly.
    let e = LinuxMachine::new(config(16), &elf_with(&code, 0), MemoryHost::new(0))
        .err()
        .expect("no room for the stack");
    assert!(e.to_string().contains("stack"), "{e}");
}
