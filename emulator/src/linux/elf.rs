//! The static ELF loader: parses an ELF64 x86-64 executable (ET_EXEC, or ET_DYN without PT_INTERP: static-PIE),
//! maps its PT_LOAD segments into guest memory and builds the initial process stack (argc, argv, envp, auxv) the
//! way Linux's fs/binfmt_elf.c does, without a vDSO.
//!
//! Key decisions:
//! - Only the ELF header and the program headers are read (a loader needs nothing else), by a small parser here
//!   whose every read is bounds-checked: a malformed or truncated file is a `LoadError` naming the field and the
//!   byte offset, never a panic. A proptest in this file throws mutated and truncated binaries at it; the cases it
//!   found live under corpus/regressions/elf/.
//! - Addresses are what Linux picks with address-space randomisation off: a static-PIE is loaded at
//!   `PIE_BASE` (ELF_ET_DYN_BASE), the stack ends at `STACK_TOP`, brk starts at the page after the highest
//!   segment. Randomness (AT_RANDOM) comes from the seed.
//! - Segments that share a page are merged into one page whose permissions are the union of theirs, as the page
//!   cache would show both segments' bytes there.
//!
//! It must not: do IO (the caller passes the file's bytes), or trust any offset, size or count from the file.

use crate::memory::{MapError, Memory, Perms, PAGE_MASK, PAGE_SIZE};
use std::collections::BTreeMap;

/// Where a static-PIE is loaded (Linux's ELF_ET_DYN_BASE on x86-64 with randomisation off).
pub const PIE_BASE: u64 = 0x5555_5555_4000;
/// One past the highest stack address (Linux's STACK_TOP with randomisation off).
pub const STACK_TOP: u64 = 0x7fff_ffff_f000;
/// Size of the stack mapping.
pub const STACK_SIZE_BYTES: u64 = 8 << 20;
/// The highest user address plus one; segments must lie below it.
pub const USER_END: u64 = 0x7fff_ffff_f000;
/// Largest total size of the loaded segments (a guard against absurd p_memsz values).
pub const IMAGE_SIZE_BYTES_MAX: u64 = 1 << 32;
/// Most program headers accepted.
pub const PHNUM_MAX: u16 = 256;
/// Most bytes of argv and envp strings (Linux's limit is a quarter of the stack rlimit).
pub const ARGS_SIZE_BYTES_MAX: usize = 2 << 20;

const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;
const EM_X86_64: u16 = 62;
const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const PT_PHDR: u32 = 6;
const PT_TLS: u32 = 7;
const PT_GNU_STACK: u32 = 0x6474_e551;

// Auxiliary vector keys (include/uapi/linux/auxvec.h).
pub const AT_NULL: u64 = 0;
pub const AT_PHDR: u64 = 3;
pub const AT_PHENT: u64 = 4;
pub const AT_PHNUM: u64 = 5;
pub const AT_PAGESZ: u64 = 6;
pub const AT_BASE: u64 = 7;
pub const AT_FLAGS: u64 = 8;
pub const AT_ENTRY: u64 = 9;
pub const AT_UID: u64 = 11;
pub const AT_EUID: u64 = 12;
pub const AT_GID: u64 = 13;
pub const AT_EGID: u64 = 14;
pub const AT_PLATFORM: u64 = 15;
pub const AT_HWCAP: u64 = 16;
pub const AT_CLKTCK: u64 = 17;
pub const AT_SECURE: u64 = 23;
pub const AT_RANDOM: u64 = 25;
pub const AT_HWCAP2: u64 = 26;
pub const AT_EXECFN: u64 = 31;

/// Why an executable cannot be loaded. Offsets are byte offsets into the file.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LoadError {
    #[error("not an ELF file (the first 4 bytes are not \\x7fELF)")]
    NotElf,
    #[error("file is truncated: {what} at offset {offset:#x} needs {needed} bytes, the file has {file_size}")]
    Truncated {
        what: &'static str,
        offset: u64,
        needed: u64,
        file_size: u64,
    },
    #[error("unsupported ELF: {0}")]
    Unsupported(String),
    #[error(
        "dynamically linked executable (interpreter {interpreter}): tandem runs static binaries only; \
         rebuild with `gcc -static` or `musl-gcc -static` (static-PIE: `-static-pie`)"
    )]
    Dynamic { interpreter: String },
    #[error("program header {index} at offset {offset:#x}: {reason}")]
    BadSegment {
        index: usize,
        offset: u64,
        reason: String,
    },
    #[error("the executable has no PT_LOAD segment")]
    NoLoadSegments,
    #[error("entry point {entry:#x} is not inside an executable segment")]
    BadEntry { entry: u64 },
    #[error("argument and environment strings exceed {ARGS_SIZE_BYTES_MAX} bytes")]
    ArgumentsTooLong,
    #[error("mapping the image failed: {0}")]
    Map(#[from] MapError),
}

/// One program header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProgramHeader {
    pub p_type: u32,
    pub flags: u32,
    pub offset: u64,
    pub vaddr: u64,
    pub filesz: u64,
    pub memsz: u64,
    pub align: u64,
}

/// The parts of an ELF file the loader uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElfFile {
    pub e_type: u16,
    pub entry: u64,
    pub phoff: u64,
    pub phentsize: u16,
    pub phnum: u16,
    pub headers: Vec<ProgramHeader>,
}

fn read_bytes<'a>(
    data: &'a [u8],
    offset: u64,
    len: u64,
    what: &'static str,
) -> Result<&'a [u8], LoadError> {
    let truncated = || LoadError::Truncated {
        what,
        offset,
        needed: len,
        file_size: data.len() as u64,
    };
    let end = offset.checked_add(len).ok_or_else(truncated)?;
    if end > data.len() as u64 {
        return Err(truncated());
    }
    Ok(&data[offset as usize..end as usize])
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

impl ElfFile {
    /// Parses and validates the ELF header and program headers (ELF-64 Object File Format, version 1.5).
    pub fn parse(data: &[u8]) -> Result<ElfFile, LoadError> {
        if data.len() < 4 || &data[..4] != b"\x7fELF" {
            return Err(LoadError::NotElf);
        }
        let h = read_bytes(data, 0, 64, "ELF header")?;
        if h[4] != 2 {
            return Err(LoadError::Unsupported(format!(
                "EI_CLASS {} (tandem runs 64-bit executables only)",
                h[4]
            )));
        }
        if h[5] != 1 {
            return Err(LoadError::Unsupported(format!(
                "EI_DATA {} (x86-64 executables are little-endian)",
                h[5]
            )));
        }
        let e_type = u16_at(h, 16);
        let machine = u16_at(h, 18);
        if machine != EM_X86_64 {
            return Err(LoadError::Unsupported(format!(
                "e_machine {machine} (tandem runs x86-64 executables, e_machine 62)"
            )));
        }
        if e_type != ET_EXEC && e_type != ET_DYN {
            return Err(LoadError::Unsupported(format!(
                "e_type {e_type} (an executable is ET_EXEC 2 or ET_DYN 3)"
            )));
        }
        let entry = u64_at(h, 24);
        let phoff = u64_at(h, 32);
        let phentsize = u16_at(h, 54);
        let phnum = u16_at(h, 56);
        if phentsize != 56 {
            return Err(LoadError::Unsupported(format!(
                "e_phentsize {phentsize} at offset 0x36 (ELF64 program headers are 56 bytes)"
            )));
        }
        if phnum == 0 || phnum > PHNUM_MAX {
            return Err(LoadError::Unsupported(format!(
                "e_phnum {phnum} at offset 0x38 (expected 1 to {PHNUM_MAX})"
            )));
        }
        let table = read_bytes(data, phoff, phnum as u64 * 56, "program header table")?;
        let mut headers = Vec::with_capacity(phnum as usize);
        for (index, ph) in table.chunks_exact(56).enumerate() {
            let header = ProgramHeader {
                p_type: u32_at(ph, 0),
                flags: u32_at(ph, 4),
                offset: u64_at(ph, 8),
                vaddr: u64_at(ph, 16),
                filesz: u64_at(ph, 32),
                memsz: u64_at(ph, 40),
                align: u64_at(ph, 48),
            };
            let at = phoff + index as u64 * 56;
            let bad = |reason: String| LoadError::BadSegment {
                index,
                offset: at,
                reason,
            };
            match header.p_type {
                PT_INTERP => {
                    let raw = read_bytes(data, header.offset, header.filesz.min(4096), "PT_INTERP")
                        .unwrap_or(b"?");
                    let name = raw.split(|&b| b == 0).next().unwrap_or(b"?");
                    return Err(LoadError::Dynamic {
                        interpreter: String::from_utf8_lossy(name).into_owned(),
                    });
                }
                PT_DYNAMIC if e_type == ET_EXEC => {
                    return Err(LoadError::Dynamic {
                        interpreter: "none, but it has a PT_DYNAMIC segment".into(),
                    })
                }
                PT_LOAD => {
                    if header.filesz > header.memsz {
                        return Err(bad(format!(
                            "p_filesz {:#x} exceeds p_memsz {:#x}",
                            header.filesz, header.memsz
                        )));
                    }
                    if header.memsz > IMAGE_SIZE_BYTES_MAX {
                        return Err(bad(format!("p_memsz {:#x} is too large", header.memsz)));
                    }
                    if (header.vaddr & PAGE_MASK) != (header.offset & PAGE_MASK) {
                        return Err(bad(format!(
                            "p_vaddr {:#x} and p_offset {:#x} differ modulo the page size",
                            header.vaddr, header.offset
                        )));
                    }
                    read_bytes(data, header.offset, header.filesz, "PT_LOAD contents")
                        .map_err(|e| bad(e.to_string()))?;
                }
                _ => {}
            }
            headers.push(header);
        }
        Ok(ElfFile {
            e_type,
            entry,
            phoff,
            phentsize,
            phnum,
            headers,
        })
    }

    pub fn is_pie(&self) -> bool {
        self.e_type == ET_DYN
    }

    pub fn tls(&self) -> Option<&ProgramHeader> {
        self.headers.iter().find(|h| h.p_type == PT_TLS)
    }

    /// Whether PT_GNU_STACK asks for an executable stack.
    pub fn executable_stack(&self) -> bool {
        self.headers
            .iter()
            .find(|h| h.p_type == PT_GNU_STACK)
            .is_some_and(|h| h.flags & 1 != 0)
    }
}

fn segment_perms(flags: u32) -> Perms {
    let mut p = Perms::NONE;
    if flags & 4 != 0 {
        p = p.union(Perms::READ);
    }
    if flags & 2 != 0 {
        p = p.union(Perms::WRITE);
    }
    if flags & 1 != 0 {
        p = p.union(Perms::EXEC);
    }
    p
}

/// What the loader placed in memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedImage {
    /// The load bias (0 for ET_EXEC, `PIE_BASE` for a static-PIE).
    pub bias: u64,
    pub entry: u64,
    /// The guest address of the program headers (AT_PHDR).
    pub phdr: u64,
    pub phnum: u16,
    /// First byte after the highest segment, page-aligned: the initial program break.
    pub brk_start: u64,
}

/// Maps the PT_LOAD segments of `elf` (parsed from `data`) into `mem`.
pub fn load_segments(
    elf: &ElfFile,
    data: &[u8],
    mem: &mut Memory,
) -> Result<LoadedImage, LoadError> {
    let bias = if elf.is_pie() { PIE_BASE } else { 0 };
    // Page-granular image: virtual page number -> (bytes, permissions).
    let mut pages: BTreeMap<u64, (Box<[u8; PAGE_SIZE]>, Perms)> = BTreeMap::new();
    let mut total_bytes: u64 = 0;
    let mut end_max = 0u64;
    let mut entry_ok = false;
    for (index, h) in elf.headers.iter().enumerate() {
        if h.p_type != PT_LOAD || h.memsz == 0 {
            continue;
        }
        let at = elf.phoff + index as u64 * 56;
        let bad = |reason: String| LoadError::BadSegment {
            index,
            offset: at,
            reason,
        };
        let start = h
            .vaddr
            .checked_add(bias)
            .ok_or_else(|| bad(format!("p_vaddr {:#x} overflows", h.vaddr)))?;
        let end = start
            .checked_add(h.memsz)
            .filter(|&e| e <= USER_END)
            .ok_or_else(|| {
                bad(format!(
                    "segment {:#x}+{:#x} lies outside user space",
                    start, h.memsz
                ))
            })?;
        if start < PAGE_SIZE as u64 {
            return Err(bad(format!("segment at {start:#x} maps page zero")));
        }
        total_bytes += h.memsz;
        if total_bytes > IMAGE_SIZE_BYTES_MAX {
            return Err(bad("the segments add up to more than 4 GiB".into()));
        }
        let perms = segment_perms(h.flags);
        let entry = elf.entry.wrapping_add(bias);
        if perms.contains(Perms::EXEC) && entry >= start && entry < end {
            entry_ok = true;
        }
        end_max = end_max.max(end);
        let contents = read_bytes(data, h.offset, h.filesz, "PT_LOAD contents")
            .map_err(|e| bad(e.to_string()))?;
        let first_page = start & !PAGE_MASK;
        let last_page = (end + PAGE_MASK) & !PAGE_MASK;
        let mut page = first_page;
        while page < last_page {
            let slot = pages
                .entry(page)
                .or_insert_with(|| (Box::new([0u8; PAGE_SIZE]), Perms::NONE));
            slot.1 = slot.1.union(perms);
            // Copy the part of the segment's file bytes that falls in this page.
            let lo = page.max(start);
            let hi = (page + PAGE_SIZE as u64).min(start + h.filesz);
            if lo < hi {
                let src = (lo - start) as usize..(hi - start) as usize;
                let dst = (lo - page) as usize..(hi - page) as usize;
                slot.0[dst].copy_from_slice(&contents[src]);
            }
            page += PAGE_SIZE as u64;
        }
    }
    if pages.is_empty() {
        return Err(LoadError::NoLoadSegments);
    }
    let entry = elf.entry.wrapping_add(bias);
    if !entry_ok {
        return Err(LoadError::BadEntry { entry });
    }
    // Map runs of consecutive pages with equal permissions in one call each.
    let mut run: Vec<u8> = Vec::new();
    let mut run_start = 0u64;
    let mut run_perms = Perms::NONE;
    let mut next = u64::MAX;
    for (&addr, (bytes, perms)) in &pages {
        if addr != next || *perms != run_perms {
            if !run.is_empty() {
                mem.map_file_bytes(run_start, run.len() as u64, &run, run_perms)?;
            }
            run.clear();
            run_start = addr;
            run_perms = *perms;
        }
        run.extend_from_slice(&bytes[..]);
        next = addr + PAGE_SIZE as u64;
    }
    if !run.is_empty() {
        mem.map_file_bytes(run_start, run.len() as u64, &run, run_perms)?;
    }
    // AT_PHDR: PT_PHDR if present, else the loaded segment that contains the program header table.
    let phdr = elf
        .headers
        .iter()
        .find(|h| h.p_type == PT_PHDR)
        .map(|h| h.vaddr.wrapping_add(bias))
        .or_else(|| {
            elf.headers
                .iter()
                .find(|h| {
                    h.p_type == PT_LOAD && elf.phoff >= h.offset && elf.phoff - h.offset < h.filesz
                })
                .map(|h| {
                    h.vaddr
                        .wrapping_add(elf.phoff - h.offset)
                        .wrapping_add(bias)
                })
        })
        .unwrap_or(0);
    Ok(LoadedImage {
        bias,
        entry,
        phdr,
        phnum: elf.phnum,
        brk_start: (end_max + PAGE_MASK) & !PAGE_MASK,
    })
}

/// What goes on the initial stack besides the image's own values.
pub struct StackInputs<'a> {
    pub argv: &'a [Vec<u8>],
    pub envp: &'a [Vec<u8>],
    /// AT_EXECFN: the path the program was started as.
    pub execfn: &'a [u8],
    /// AT_RANDOM's 16 bytes (from the seed).
    pub random: [u8; 16],
    pub hwcap: u64,
    pub uid: u64,
    pub gid: u64,
}

/// Maps the stack and writes argc, argv, envp and auxv as Linux does (fs/binfmt_elf.c, create_elf_tables).
/// Returns the initial rsp (16-byte aligned, pointing at argc).
pub fn build_stack(
    mem: &mut Memory,
    image: &LoadedImage,
    inputs: &StackInputs,
    executable: bool,
) -> Result<u64, LoadError> {
    let strings_len: usize = inputs
        .argv
        .iter()
        .chain(inputs.envp.iter())
        .map(|s| s.len() + 1)
        .sum::<usize>()
        + inputs.execfn.len()
        + 1;
    if strings_len > ARGS_SIZE_BYTES_MAX {
        return Err(LoadError::ArgumentsTooLong);
    }
    let perms = if executable { Perms::RWX } else { Perms::RW };
    mem.map_anonymous(STACK_TOP - STACK_SIZE_BYTES, STACK_SIZE_BYTES, perms)?;
    // Strings and blobs are placed from the top down.
    let mut sp = STACK_TOP - 8;
    let mut push_bytes = |mem: &mut Memory, bytes: &[u8], nul: bool| -> u64 {
        sp -= bytes.len() as u64 + nul as u64;
        // The range was just mapped and checked against ARGS_SIZE_BYTES_MAX, far below the stack size.
        mem.poke(sp, bytes).expect("stack is mapped");
        if nul {
            mem.poke(sp + bytes.len() as u64, &[0])
                .expect("stack is mapped");
        }
        sp
    };
    let execfn = push_bytes(mem, inputs.execfn, true);
    let mut envp_addrs = Vec::with_capacity(inputs.envp.len());
    for e in inputs.envp.iter().rev() {
        envp_addrs.push(push_bytes(mem, e, true));
    }
    envp_addrs.reverse();
    let mut argv_addrs = Vec::with_capacity(inputs.argv.len());
    for a in inputs.argv.iter().rev() {
        argv_addrs.push(push_bytes(mem, a, true));
    }
    argv_addrs.reverse();
    let platform = push_bytes(mem, b"x86_64", true);
    let random = push_bytes(mem, &inputs.random, false);
    let auxv: [(u64, u64); 18] = [
        (AT_HWCAP, inputs.hwcap),
        (AT_PAGESZ, PAGE_SIZE as u64),
        (AT_CLKTCK, 100),
        (AT_PHDR, image.phdr),
        (AT_PHENT, 56),
        (AT_PHNUM, image.phnum as u64),
        (AT_BASE, 0),
        (AT_FLAGS, 0),
        (AT_ENTRY, image.entry),
        (AT_UID, inputs.uid),
        (AT_EUID, inputs.uid),
        (AT_GID, inputs.gid),
        (AT_EGID, inputs.gid),
        (AT_SECURE, 0),
        (AT_RANDOM, random),
        (AT_HWCAP2, 0),
        (AT_EXECFN, execfn),
        (AT_PLATFORM, platform),
    ];
    let words = 1 + argv_addrs.len() + 1 + envp_addrs.len() + 1 + 2 * (auxv.len() + 1);
    let mut rsp = (sp - 8 * words as u64) & !15;
    let start = rsp;
    let mut put = |mem: &mut Memory, v: u64| {
        mem.poke(rsp, &v.to_le_bytes()).expect("stack is mapped");
        rsp += 8;
    };
    put(mem, argv_addrs.len() as u64);
    for a in &argv_addrs {
        put(mem, *a);
    }
    put(mem, 0);
    for e in &envp_addrs {
        put(mem, *e);
    }
    put(mem, 0);
    for (k, v) in auxv {
        put(mem, k);
        put(mem, v);
    }
    put(mem, AT_NULL);
    put(mem, 0);
    Ok(start)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A minimal valid ET_EXEC: one RX PT_LOAD at 0x400000 holding the headers and `code`.
    pub(crate) fn tiny_elf(code: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 64 + 56];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = 1;
        f[6] = 1;
        f[16..18].copy_from_slice(&ET_EXEC.to_le_bytes());
        f[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
        f[20..24].copy_from_slice(&1u32.to_le_bytes());
        f[24..32].copy_from_slice(&(0x40_0000u64 + 120).to_le_bytes());
        f[32..40].copy_from_slice(&64u64.to_le_bytes());
        f[52..54].copy_from_slice(&64u16.to_le_bytes());
        f[54..56].copy_from_slice(&56u16.to_le_bytes());
        f[56..58].copy_from_slice(&1u16.to_le_bytes());
        let total = (120 + code.len()) as u64;
        let ph = &mut f[64..120];
        ph[0..4].copy_from_slice(&PT_LOAD.to_le_bytes());
        ph[4..8].copy_from_slice(&5u32.to_le_bytes());
        ph[16..24].copy_from_slice(&0x40_0000u64.to_le_bytes());
        ph[24..32].copy_from_slice(&0x40_0000u64.to_le_bytes());
        ph[32..40].copy_from_slice(&total.to_le_bytes());
        ph[40..48].copy_from_slice(&total.to_le_bytes());
        ph[48..56].copy_from_slice(&0x1000u64.to_le_bytes());
        f.extend_from_slice(code);
        f
    }

    fn load(data: &[u8]) -> Result<u64, LoadError> {
        let elf = ElfFile::parse(data)?;
        let mut mem = Memory::new();
        mem.set_frames_max(1 << 16);
        let image = load_segments(&elf, data, &mut mem)?;
        let inputs = StackInputs {
            argv: &[b"prog".to_vec()],
            envp: &[],
            execfn: b"prog",
            random: [7; 16],
            hwcap: 0,
            uid: 0,
            gid: 0,
        };
        build_stack(&mut mem, &image, &inputs, false)
    }

    #[test]
    fn tiny_elf_loads_and_the_stack_is_aligned() {
        let data = tiny_elf(&[0x0f, 0x05]);
        let elf = ElfFile::parse(&data).unwrap();
        let mut mem = Memory::new();
        let image = load_segments(&elf, &data, &mut mem).unwrap();
        assert_eq!(image.entry, 0x40_0078);
        assert_eq!(image.phdr, 0x40_0040);
        assert_eq!(image.brk_start, 0x40_1000);
        let mut b = [0u8; 2];
        mem.peek(0x40_0078, &mut b).unwrap();
        assert_eq!(b, [0x0f, 0x05]);
        let rsp = load(&data).unwrap();
        assert_eq!(rsp % 16, 0);
    }

    #[test]
    fn errors_name_the_problem() {
        assert_eq!(ElfFile::parse(b"#!/bin/sh"), Err(LoadError::NotElf));
        let data = tiny_elf(&[0x90]);
        assert!(matches!(
            ElfFile::parse(&data[..40]),
            Err(LoadError::Truncated {
                what: "ELF header",
                ..
            })
        ));
        assert!(matches!(
            ElfFile::parse(&data[..100]),
            Err(LoadError::Truncated {
                what: "program header table",
                ..
            })
        ));
        let mut interp = data.clone();
        interp[64..68].copy_from_slice(&PT_INTERP.to_le_bytes());
        let err = ElfFile::parse(&interp).unwrap_err();
        assert!(err.to_string().contains("-static"), "{err}");
    }

    /// Replays every file kept under corpus/regressions/elf/ (inputs that once made the loader misbehave).
    #[test]
    fn regression_inputs_never_panic() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/regressions/elf");
        let mut count = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let data = std::fs::read(entry.unwrap().path()).unwrap();
            let _ = load(&data);
            count += 1;
        }
        assert!(count > 0, "no regression inputs in {}", dir.display());
    }

    proptest! {
        // Failing cases are kept beside the corpus, as the style asks (relative to the crate directory).
        #![proptest_config(ProptestConfig {
            cases: 512,
            failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::Direct(
                "../corpus/regressions/elf-loader.proptest-regressions",
            ))),
            .. ProptestConfig::default()
        })]

        /// Mutating bytes of a valid executable (and truncating it) gives an error or a loaded image, never a panic.
        #[test]
        fn mutated_elf_never_panics(
            edits in proptest::collection::vec((0usize..200, any::<u8>()), 0..8),
            wide in proptest::collection::vec((0usize..25, any::<u64>()), 0..3),
            cut in 0usize..200,
        ) {
            let mut data = tiny_elf(&[0x0f, 0x05, 0xeb, 0xfe]);
            for (at, v) in edits {
                if at < data.len() {
                    data[at] = v;
                }
            }
            // Whole 8-byte fields (offsets, sizes, addresses) get arbitrary values.
            for (slot, v) in wide {
                let at = slot * 8;
                if at + 8 <= data.len() {
                    data[at..at + 8].copy_from_slice(&v.to_le_bytes());
                }
            }
            if cut < data.len() && cut % 3 == 0 {
                data.truncate(cut);
            }
            let _ = load(&data);
        }
    }
}
