//! The ELF loader: parses an ELF64 x86-64 executable (ET_EXEC, or ET_DYN: static-PIE without PT_INTERP, PIE
//! with it), maps its PT_LOAD segments into guest memory, maps the program interpreter (the dynamic loader named
//! by PT_INTERP) when there is one, and builds the initial process stack (argc, argv, envp, auxv) the way
//! Linux's fs/binfmt_elf.c does, without a vDSO.
//!
//! Key decisions:
//! - Only the ELF header and the program headers are read (a loader needs nothing else), by a small parser here
//!   whose every read is bounds-checked: a malformed or truncated file is a `LoadError` naming the field and the
//!   byte offset, never a panic. A proptest in this file throws mutated and truncated binaries at it; the cases it
//!   found live under corpus/regressions/elf/.
//! - Addresses are what Linux picks with address-space randomisation off: a PIE or static-PIE is loaded at
//!   `PIE_BASE` (ELF_ET_DYN_BASE), the interpreter just below `INTERP_TOP` (the top of the mmap area, where
//!   Linux's first mmap puts it), the stack ends at `STACK_TOP`, brk starts at the page after the program's
//!   highest segment. Randomness (AT_RANDOM) comes from the seed.
//! - A dynamically linked program starts at the interpreter's entry with AT_BASE the interpreter's load address
//!   and AT_PHDR, AT_PHNUM and AT_ENTRY the program's, which is all ld.so needs to map the rest itself through
//!   mmap. The caller reads the interpreter's bytes (through the guest's file system, so that it comes from the
//!   guest's root and is recorded like any file a run reads).
//! - Segments that share a page are merged into one page whose permissions are the union of theirs, as the page
//!   cache would show both segments' bytes there.
//! - Only pages that hold bytes of the file cost a page of host memory at load: the rest of a segment's p_memsz
//!   (bss) shares the one zero frame until the guest writes it, so a large p_memsz costs a page-table entry per
//!   page (about 40 bytes), not 4 KiB. The image must fit in the guest memory limit (`Memory::frames_max`): a
//!   p_memsz beyond it is a load error naming the program header, before anything is mapped.
//! - The initial stack follows Linux's limits (fs/exec.c): each argument or environment string at most
//!   `ARG_STRLEN_MAX` bytes, and strings plus their pointers at most `ARGS_SIZE_BYTES_MAX` (a quarter of the
//!   stack), so argv and envp always fit the stack mapping; more is `E2BIG`'s error, never a failed write.
//!
//! It must not: do IO (the caller passes the file's bytes), or trust any offset, size or count from the file.

use crate::memory::{MapError, Memory, Perms, PAGE_MASK, PAGE_SHIFT, PAGE_SIZE};

/// Where a PIE or static-PIE is loaded (Linux's ELF_ET_DYN_BASE on x86-64 with randomisation off).
pub const PIE_BASE: u64 = 0x5555_5555_4000;
/// The interpreter ends just below this address: the top of the mmap area (`syscalls::MMAP_TOP`), where
/// Linux's mmap of the interpreter lands with randomisation off.
pub const INTERP_TOP: u64 = 0x7fff_f7ff_f000;
/// Longest PT_INTERP path accepted (PATH_MAX).
pub const INTERP_PATH_BYTES_MAX: u64 = 4096;
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
/// Most bytes of argv and envp strings with their pointers (fs/exec.c, bprm_stack_limits: a quarter of the
/// stack rlimit, here of `STACK_SIZE_BYTES`).
pub const ARGS_SIZE_BYTES_MAX: usize = (STACK_SIZE_BYTES / 4) as usize;
/// Most bytes of one argument or environment string, its NUL included (Linux's MAX_ARG_STRLEN, 32 pages).
pub const ARG_STRLEN_MAX: usize = 32 * PAGE_SIZE;

const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;
const EM_X86_64: u16 = 62;
pub const PT_LOAD: u32 = 1;
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
        "an ET_EXEC executable with a PT_DYNAMIC segment but no PT_INTERP: Linux would run it without relocating \
         it; relink it with an interpreter (plain `gcc`) or statically (`gcc -static`)"
    )]
    DynamicWithoutInterpreter,
    #[error("the program interpreter {path}: {reason}")]
    Interpreter { path: String, reason: String },
    #[error("program header {index} at offset {offset:#x}: {reason}")]
    BadSegment {
        index: usize,
        offset: u64,
        reason: String,
    },
    /// A writable volume could not be read from the host (storage/).
    #[error("{0}")]
    Volume(String),
    #[error("the executable has no PT_LOAD segment")]
    NoLoadSegments,
    #[error("entry point {entry:#x} is not inside an executable segment")]
    BadEntry { entry: u64 },
    #[error(
        "{strings} argument and environment strings take {bytes} bytes with their pointers, more than Linux \
         allows ({ARGS_SIZE_BYTES_MAX} bytes, a quarter of the stack: execve would fail with E2BIG)"
    )]
    ArgumentsTooLong { strings: usize, bytes: usize },
    #[error(
        "{what} {index} is {len} bytes, more than Linux allows for one string ({ARG_STRLEN_MAX} bytes with its \
         NUL: execve would fail with E2BIG)"
    )]
    ArgumentTooLong {
        what: &'static str,
        index: usize,
        len: usize,
    },
    #[error("the initial stack does not fit its mapping (writing at {addr:#x})")]
    StackOverflow { addr: u64 },
    #[error(
        "{what} needs {pages} pages ({}), more than the guest memory limit of {frames_max} pages ({}); raise it \
         with --memory-max if the program really needs it",
        size_text(*pages),
        size_text(*frames_max as u64)
    )]
    TooLarge {
        what: String,
        pages: u64,
        frames_max: usize,
    },
    #[error("mapping the image failed: {0}")]
    Map(#[from] MapError),
}

/// A number of pages as a size for messages: "1.5 MiB", "3.0 GiB".
fn size_text(pages: u64) -> String {
    let bytes = pages as f64 * PAGE_SIZE as f64;
    if bytes >= (1u64 << 30) as f64 {
        format!("{:.1} GiB", bytes / (1u64 << 30) as f64)
    } else {
        format!("{:.1} MiB", bytes / (1u64 << 20) as f64)
    }
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
    /// The path in PT_INTERP: the dynamic loader that starts the program (None for a static program).
    pub interpreter: Option<String>,
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
        let mut interpreter = None;
        let mut has_dynamic = false;
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
                    if interpreter.is_some() {
                        return Err(bad("a second PT_INTERP".into()));
                    }
                    interpreter = Some(interpreter_path(data, &header).map_err(bad)?);
                }
                PT_DYNAMIC => has_dynamic = true,
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
        if has_dynamic && e_type == ET_EXEC && interpreter.is_none() {
            return Err(LoadError::DynamicWithoutInterpreter);
        }
        Ok(ElfFile {
            e_type,
            entry,
            phoff,
            phentsize,
            phnum,
            headers,
            interpreter,
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

/// The interpreter's path in a PT_INTERP segment: NUL-terminated (fs/binfmt_elf.c refuses it otherwise), not
/// empty, at most `INTERP_PATH_BYTES_MAX` bytes, valid UTF-8 (no loader is named otherwise).
fn interpreter_path(data: &[u8], h: &ProgramHeader) -> Result<String, String> {
    if h.filesz < 2 || h.filesz > INTERP_PATH_BYTES_MAX {
        return Err(format!(
            "PT_INTERP is {} bytes (a path of 1 to {} bytes with its NUL)",
            h.filesz,
            INTERP_PATH_BYTES_MAX - 1
        ));
    }
    let raw = read_bytes(data, h.offset, h.filesz, "PT_INTERP").map_err(|e| e.to_string())?;
    let (last, path) = raw.split_last().expect("at least 2 bytes");
    if *last != 0 || path.contains(&0) {
        return Err("the PT_INTERP path is not one NUL-terminated string".into());
    }
    String::from_utf8(path.to_vec()).map_err(|_| "the PT_INTERP path is not UTF-8".into())
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
    /// The load bias (0 for ET_EXEC, `PIE_BASE` for a PIE, the load address of an interpreter).
    pub bias: u64,
    pub entry: u64,
    /// The guest address of the program headers (AT_PHDR).
    pub phdr: u64,
    pub phnum: u16,
    /// First byte after the highest segment, page-aligned: the initial program break.
    pub brk_start: u64,
}

/// Maps the PT_LOAD segments of the program `elf` (parsed from `data`) into `mem`: at its addresses, or a
/// (static-)PIE at `PIE_BASE`.
pub fn load_segments(
    elf: &ElfFile,
    data: &[u8],
    mem: &mut Memory,
) -> Result<LoadedImage, LoadError> {
    let bias = if elf.is_pie() { PIE_BASE } else { 0 };
    load_segments_at(elf, data, mem, bias)
}

/// Maps the program interpreter (`data`, the file PT_INTERP names at `path`) so that its image ends at
/// `INTERP_TOP`, as Linux's load_elf_interp maps it with a first mmap. It must be an ET_DYN without an
/// interpreter of its own (Linux refuses a chain of interpreters too).
pub fn load_interpreter(
    data: &[u8],
    path: &str,
    mem: &mut Memory,
) -> Result<LoadedImage, LoadError> {
    let bad = |reason: String| LoadError::Interpreter {
        path: path.to_string(),
        reason,
    };
    let elf = ElfFile::parse(data).map_err(|e| bad(e.to_string()))?;
    if !elf.is_pie() {
        return Err(bad("not a shared object (e_type ET_DYN)".into()));
    }
    if elf.interpreter.is_some() {
        return Err(bad("it names an interpreter of its own".into()));
    }
    let loads = || {
        elf.headers
            .iter()
            .filter(|h| h.p_type == PT_LOAD && h.memsz > 0)
    };
    let lo = loads()
        .map(|h| h.vaddr & !PAGE_MASK)
        .min()
        .ok_or(LoadError::NoLoadSegments);
    let hi = loads()
        .map(|h| {
            h.vaddr
                .checked_add(h.memsz)
                .and_then(|e| e.checked_add(PAGE_MASK))
        })
        .try_fold(0u64, |m, e| e.map(|e| m.max(e & !PAGE_MASK)));
    let (lo, hi) = match (lo, hi) {
        (Ok(lo), Some(hi)) if hi > lo && hi - lo <= IMAGE_SIZE_BYTES_MAX => (lo, hi),
        (Err(e), _) => return Err(bad(e.to_string())),
        _ => return Err(bad("its segments span more than 4 GiB".into())),
    };
    let start = INTERP_TOP - (hi - lo);
    let bias = start.wrapping_sub(lo);
    load_segments_at(&elf, data, mem, bias).map_err(|e| match e {
        e @ (LoadError::TooLarge { .. } | LoadError::Map(_)) => e,
        other => bad(other.to_string()),
    })
}

/// One file-backed page range of a loaded image (`file_ranges`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileRange {
    pub start: u64,
    pub end: u64,
    /// The file offset of `start`.
    pub offset: u64,
    /// Where the segment's file bytes end: the loader zero-fills the rest of the last page.
    pub bytes_end: u64,
}

/// The file-backed page ranges of `elf`'s PT_LOAD segments loaded at `bias`, as Linux's mappings of them show
/// in /proc/self/maps (the pages past a segment's file bytes are anonymous).
pub fn file_ranges(elf: &ElfFile, bias: u64) -> Vec<FileRange> {
    elf.headers
        .iter()
        .filter(|h| h.p_type == PT_LOAD && h.filesz > 0)
        .filter_map(|h| {
            let start = h.vaddr.wrapping_add(bias) & !PAGE_MASK;
            let bytes_end = h.vaddr.wrapping_add(bias).checked_add(h.filesz)?;
            let end = bytes_end.checked_add(PAGE_MASK)? & !PAGE_MASK;
            let offset = h.offset.checked_sub(h.vaddr.wrapping_add(bias) - start)?;
            (start < end).then_some(FileRange {
                start,
                end,
                offset,
                bytes_end,
            })
        })
        .collect()
}

/// Maps the PT_LOAD segments of `elf` (parsed from `data`) into `mem`, each at its p_vaddr plus `bias`.
fn load_segments_at(
    elf: &ElfFile,
    data: &[u8],
    mem: &mut Memory,
    bias: u64,
) -> Result<LoadedImage, LoadError> {
    /// A PT_LOAD segment, checked: its page range, file bytes and permissions.
    struct Segment<'a> {
        start: u64,
        contents: &'a [u8],
        first_page: u64,
        last_page: u64,
        perms: Perms,
    }
    let mut segments: Vec<Segment> = Vec::new();
    let mut total_bytes: u64 = 0;
    let mut end_max = 0u64;
    let mut entry_ok = false;
    let frames_max = mem.frames_max();
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
        let first_page = start & !PAGE_MASK;
        let last_page = (end + PAGE_MASK) & !PAGE_MASK;
        let pages = (last_page - first_page) >> PAGE_SHIFT;
        if pages > frames_max as u64 {
            return Err(LoadError::TooLarge {
                what: format!(
                    "program header {index} at offset {at:#x} (p_memsz {:#x})",
                    h.memsz
                ),
                pages,
                frames_max,
            });
        }
        let perms = segment_perms(h.flags);
        let entry = elf.entry.wrapping_add(bias);
        if perms.contains(Perms::EXEC) && entry >= start && entry < end {
            entry_ok = true;
        }
        end_max = end_max.max(end);
        let contents = read_bytes(data, h.offset, h.filesz, "PT_LOAD contents")
            .map_err(|e| bad(e.to_string()))?;
        segments.push(Segment {
            start,
            contents,
            first_page,
            last_page,
            perms,
        });
    }
    if segments.is_empty() {
        return Err(LoadError::NoLoadSegments);
    }
    let entry = elf.entry.wrapping_add(bias);
    if !entry_ok {
        return Err(LoadError::BadEntry { entry });
    }
    // The page ranges split at every segment boundary; each piece takes the union of the permissions of the
    // segments that cover it (pieces no segment covers are gaps). At most 2 * PHNUM_MAX boundaries, so the
    // quadratic walk is small, and nothing here is per page.
    let mut bounds: Vec<u64> = segments
        .iter()
        .flat_map(|s| [s.first_page, s.last_page])
        .collect();
    bounds.sort_unstable();
    bounds.dedup();
    // Runs of consecutive pages with equal permissions: (start, end, permissions), in address order.
    let mut runs: Vec<(u64, u64, Perms)> = Vec::new();
    for piece in bounds.windows(2) {
        let (lo, hi) = (piece[0], piece[1]);
        let covering = segments
            .iter()
            .filter(|s| s.first_page < hi && s.last_page > lo);
        let mut perms = None;
        for s in covering {
            perms = Some(perms.unwrap_or(Perms::NONE).union(s.perms));
        }
        let Some(perms) = perms else { continue };
        match runs.last_mut() {
            Some(run) if run.1 == lo && run.2 == perms => run.1 = hi,
            _ => runs.push((lo, hi, perms)),
        }
    }
    let pages: u64 = runs.iter().map(|r| (r.1 - r.0) >> PAGE_SHIFT).sum();
    if pages > mem.frames_available() as u64 {
        return Err(LoadError::TooLarge {
            what: "the program's segments".into(),
            pages,
            frames_max,
        });
    }
    // Map each run with the file bytes that fall in it (later segments' bytes over earlier ones', as the pages
    // are filled in program-header order); past the last file byte the pages share the zero frame.
    for &(lo, hi, perms) in &runs {
        let bytes_end = segments
            .iter()
            .filter(|s| !s.contents.is_empty())
            .map(|s| (s.start, s.start + s.contents.len() as u64))
            .filter(|&(start, file_end)| start < hi && file_end > lo)
            .map(|(_, file_end)| file_end.min(hi))
            .max()
            .unwrap_or(lo);
        let mut bytes = vec![0u8; (bytes_end - lo) as usize];
        for s in &segments {
            let file_end = s.start + s.contents.len() as u64;
            let from = s.start.max(lo);
            let to = file_end.min(bytes_end);
            if from < to {
                let src = (from - s.start) as usize..(to - s.start) as usize;
                let dst = (from - lo) as usize..(to - lo) as usize;
                bytes[dst].copy_from_slice(&s.contents[src]);
            }
        }
        mem.map_file_bytes(lo, hi - lo, &bytes, perms)?;
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
    /// AT_BASE: where the interpreter was loaded (0 for a static program).
    pub interp_base: u64,
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
    // fs/exec.c: each string at most MAX_ARG_STRLEN; the strings and the argv and envp pointers together at
    // most a quarter of the stack. Counted before anything is mapped or written, in checked arithmetic.
    for (what, list) in [
        ("argument", inputs.argv),
        ("environment string", inputs.envp),
    ] {
        if let Some((index, s)) = list
            .iter()
            .enumerate()
            .find(|(_, s)| s.len() >= ARG_STRLEN_MAX)
        {
            return Err(LoadError::ArgumentTooLong {
                what,
                index,
                len: s.len() + 1,
            });
        }
    }
    if inputs.execfn.len() >= ARG_STRLEN_MAX {
        return Err(LoadError::ArgumentTooLong {
            what: "program path",
            index: 0,
            len: inputs.execfn.len() + 1,
        });
    }
    let strings = inputs.argv.len() + inputs.envp.len();
    let too_long = |bytes: usize| LoadError::ArgumentsTooLong { strings, bytes };
    // Linux counts at least one argv pointer (bprm_stack_limits: max(argc, 1)).
    let pointers = inputs.argv.len().max(1) + inputs.envp.len();
    let mut total = pointers.saturating_mul(8);
    for s in inputs.argv.iter().chain(inputs.envp.iter()) {
        total = total.saturating_add(s.len() + 1);
        if total > ARGS_SIZE_BYTES_MAX {
            return Err(too_long(total));
        }
    }
    total = total.saturating_add(inputs.execfn.len() + 1);
    if total > ARGS_SIZE_BYTES_MAX {
        return Err(too_long(total));
    }
    let perms = if executable { Perms::RWX } else { Perms::RW };
    mem.map_anonymous(STACK_TOP - STACK_SIZE_BYTES, STACK_SIZE_BYTES, perms)
        .map_err(|e| match e {
            MapError::OutOfFrames { frames_max } => LoadError::TooLarge {
                what: format!("the program with its {} MiB stack", STACK_SIZE_BYTES >> 20),
                pages: (mem.frames_in_use() as u64) + (STACK_SIZE_BYTES >> PAGE_SHIFT),
                frames_max,
            },
            other => LoadError::Map(other),
        })?;
    // Strings and blobs are placed from the top down. The checks above keep everything within a quarter of the
    // mapping plus a few hundred bytes; a write outside it is still an error, not a panic.
    let mut sp = STACK_TOP - 8;
    let overflow = |addr: u64| LoadError::StackOverflow { addr };
    let mut push_bytes = |mem: &mut Memory, bytes: &[u8], nul: bool| -> Result<u64, LoadError> {
        sp = sp
            .checked_sub(bytes.len() as u64 + nul as u64)
            .ok_or(overflow(0))?;
        mem.poke(sp, bytes).map_err(|_| overflow(sp))?;
        if nul {
            mem.poke(sp + bytes.len() as u64, &[0])
                .map_err(|_| overflow(sp))?;
        }
        Ok(sp)
    };
    let execfn = push_bytes(mem, inputs.execfn, true)?;
    let mut envp_addrs = Vec::with_capacity(inputs.envp.len());
    for e in inputs.envp.iter().rev() {
        envp_addrs.push(push_bytes(mem, e, true)?);
    }
    envp_addrs.reverse();
    let mut argv_addrs = Vec::with_capacity(inputs.argv.len());
    for a in inputs.argv.iter().rev() {
        argv_addrs.push(push_bytes(mem, a, true)?);
    }
    argv_addrs.reverse();
    let platform = push_bytes(mem, b"x86_64", true)?;
    let random = push_bytes(mem, &inputs.random, false)?;
    let auxv: [(u64, u64); 18] = [
        (AT_HWCAP, inputs.hwcap),
        (AT_PAGESZ, PAGE_SIZE as u64),
        (AT_CLKTCK, 100),
        (AT_PHDR, image.phdr),
        (AT_PHENT, 56),
        (AT_PHNUM, image.phnum as u64),
        (AT_BASE, inputs.interp_base),
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
    let mut rsp = sp
        .checked_sub(8 * words as u64)
        .ok_or(LoadError::StackOverflow { addr: 0 })?
        & !15;
    let start = rsp;
    let mut put = |mem: &mut Memory, v: u64| -> Result<(), LoadError> {
        mem.poke(rsp, &v.to_le_bytes())
            .map_err(|_| LoadError::StackOverflow { addr: rsp })?;
        rsp += 8;
        Ok(())
    };
    put(mem, argv_addrs.len() as u64)?;
    for a in &argv_addrs {
        put(mem, *a)?;
    }
    put(mem, 0)?;
    for e in &envp_addrs {
        put(mem, *e)?;
    }
    put(mem, 0)?;
    for (k, v) in auxv {
        put(mem, k)?;
        put(mem, v)?;
    }
    put(mem, AT_NULL)?;
    put(mem, 0)?;
    Ok(start)
}

/// The auxiliary vector of the initial stack at `rsp` (argc, argv, NULL, envp, NULL, auxv): its pairs up to and
/// including AT_NULL. None when the stack is not readable as one.
pub fn read_auxv(mem: &Memory, rsp: u64) -> Option<Vec<(u64, u64)>> {
    let word = |at: u64| mem.peek_u64(at).ok();
    let argc = word(rsp)?;
    let mut at = rsp.checked_add(argc.checked_add(2)?.checked_mul(8)?)?;
    while word(at)? != 0 {
        at = at.checked_add(8)?;
    }
    at += 8;
    let mut out = Vec::new();
    loop {
        let (k, v) = (word(at)?, word(at.checked_add(8)?)?);
        out.push((k, v));
        if k == AT_NULL {
            return Some(out);
        }
        if out.len() > 64 {
            return None;
        }
        at = at.checked_add(16)?;
    }
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
            interp_base: 0,
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
        // The only program header made PT_INTERP: its bytes (the ELF header...) are no NUL-terminated path.
        let mut interp = data.clone();
        interp[64..68].copy_from_slice(&PT_INTERP.to_le_bytes());
        let err = ElfFile::parse(&interp).unwrap_err();
        assert!(err.to_string().contains("PT_INTERP"), "{err}");
    }

    /// A copy of `tiny_elf` with a second program header: PT_INTERP naming `path` (with its NUL), its bytes
    /// appended to the file.
    fn with_interp(path: &[u8]) -> Vec<u8> {
        let mut f = tiny_elf(&[0x0f, 0x05]);
        let at = f.len() as u64;
        f.extend_from_slice(path);
        let mut ph = [0u8; 56];
        ph[0..4].copy_from_slice(&PT_INTERP.to_le_bytes());
        ph[4..8].copy_from_slice(&4u32.to_le_bytes());
        ph[8..16].copy_from_slice(&at.to_le_bytes());
        ph[32..40].copy_from_slice(&(path.len() as u64).to_le_bytes());
        let phoff = f.len() as u64;
        let first_header = f[64..120].to_vec();
        f.extend_from_slice(&first_header);
        f.extend_from_slice(&ph);
        f[32..40].copy_from_slice(&phoff.to_le_bytes());
        f[56..58].copy_from_slice(&2u16.to_le_bytes());
        f
    }

    #[test]
    fn pt_interp_is_parsed_and_checked() {
        let elf = ElfFile::parse(&with_interp(b"/lib/ld.so\0")).unwrap();
        assert_eq!(elf.interpreter.as_deref(), Some("/lib/ld.so"));
        assert_eq!(
            ElfFile::parse(&tiny_elf(&[0x90])).unwrap().interpreter,
            None
        );
        for bad in [&b"/lib/ld.so"[..], b"\0", b"/a\0b\0", b"/\xff\0"] {
            let e = ElfFile::parse(&with_interp(bad)).unwrap_err();
            assert!(
                matches!(e, LoadError::BadSegment { index: 1, .. })
                    && e.to_string().contains("PT_INTERP"),
                "{bad:?}: {e}"
            );
        }
        // PT_DYNAMIC in an ET_EXEC without an interpreter is still refused (nothing would relocate it).
        let mut dynamic = with_interp(b"/lib/ld.so\0");
        let second = u64_at(&dynamic, 32) as usize + 56;
        dynamic[second..second + 4].copy_from_slice(&PT_DYNAMIC.to_le_bytes());
        assert_eq!(
            ElfFile::parse(&dynamic),
            Err(LoadError::DynamicWithoutInterpreter)
        );
    }

    /// The interpreter lands just below INTERP_TOP, AT_BASE says where, and the program's own values stay in
    /// AT_PHDR and AT_ENTRY; a static program's AT_BASE is 0.
    #[test]
    fn the_interpreter_is_mapped_below_the_mmap_top_and_named_in_auxv() {
        // An ET_DYN of one page whose segment starts at 0x400000: lands at INTERP_TOP - 0x1000.
        let mut interp = tiny_elf(&[0xeb, 0xfe]);
        interp[16..18].copy_from_slice(&ET_DYN.to_le_bytes());
        let mut mem = Memory::new();
        let program = tiny_elf(&[0x0f, 0x05]);
        let elf = ElfFile::parse(&program).unwrap();
        let image = load_segments(&elf, &program, &mut mem).unwrap();
        let loaded = load_interpreter(&interp, "/lib/ld.so", &mut mem).unwrap();
        assert_eq!(loaded.bias, INTERP_TOP - 0x1000 - 0x40_0000);
        let top = mem.regions().last().unwrap().end;
        assert_eq!(top, INTERP_TOP, "the interpreter ends at INTERP_TOP");
        assert_eq!(
            loaded.entry,
            ElfFile::parse(&interp).unwrap().entry + loaded.bias
        );
        let argv = [b"prog".to_vec()];
        let inputs = StackInputs {
            interp_base: loaded.bias,
            ..stack_inputs(&argv, &[])
        };
        let rsp = build_stack(&mut mem, &image, &inputs, false).unwrap();
        let auxv = auxv_of(&mem, rsp);
        assert_eq!(auxv[&AT_BASE], loaded.bias);
        assert_eq!(auxv[&AT_ENTRY], 0x40_0078);
        assert_eq!(auxv[&AT_PHDR], 0x40_0040);
        // A static executable is no interpreter; neither is a file that is no ELF.
        let e = load_interpreter(&program, "/x", &mut mem).unwrap_err();
        assert!(e.to_string().contains("ET_DYN"), "{e}");
        let e = load_interpreter(b"#!/bin/sh", "/x", &mut mem).unwrap_err();
        assert!(matches!(e, LoadError::Interpreter { .. }), "{e}");
    }

    /// The auxiliary vector of the stack at `rsp`, by key.
    fn auxv_of(mem: &Memory, rsp: u64) -> std::collections::BTreeMap<u64, u64> {
        read_auxv(mem, rsp).unwrap().into_iter().collect()
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

    fn stack_inputs<'a>(argv: &'a [Vec<u8>], envp: &'a [Vec<u8>]) -> StackInputs<'a> {
        StackInputs {
            argv,
            envp,
            execfn: b"prog",
            random: [7; 16],
            interp_base: 0,
            hwcap: 0,
            uid: 0,
            gid: 0,
        }
    }

    fn stack_with(argv: &[Vec<u8>], envp: &[Vec<u8>]) -> Result<u64, LoadError> {
        let data = tiny_elf(&[0x0f, 0x05]);
        let elf = ElfFile::parse(&data).unwrap();
        let mut mem = Memory::new();
        let image = load_segments(&elf, &data, &mut mem).unwrap();
        build_stack(&mut mem, &image, &stack_inputs(argv, envp), false)
    }

    /// A million empty arguments are 1 MB of strings but 8 MB of pointers: Linux refuses them with E2BIG, and so
    /// does the loader, instead of overflowing the stack mapping (it once panicked there, from a trace header).
    #[test]
    fn a_million_empty_arguments_are_e2big_not_a_panic() {
        let argv = vec![Vec::new(); 1_000_000];
        let e = stack_with(&argv, &[]).unwrap_err();
        assert!(
            matches!(
                e,
                LoadError::ArgumentsTooLong {
                    strings: 1_000_000,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("E2BIG"), "{e}");
        // Empty environment strings count the same way.
        let envp = vec![Vec::new(); 300_000];
        assert!(matches!(
            stack_with(&[b"x".to_vec()], &envp),
            Err(LoadError::ArgumentsTooLong { .. })
        ));
        // One string longer than MAX_ARG_STRLEN is refused and named.
        let e = stack_with(&[b"x".to_vec(), vec![b'a'; ARG_STRLEN_MAX]], &[]).unwrap_err();
        assert_eq!(
            e,
            LoadError::ArgumentTooLong {
                what: "argument",
                index: 1,
                len: ARG_STRLEN_MAX + 1
            }
        );
        // Just under the limit everything fits, and argc reads back.
        let n = (ARGS_SIZE_BYTES_MAX - 64) / 9;
        let argv = vec![Vec::new(); n];
        let data = tiny_elf(&[0x0f, 0x05]);
        let elf = ElfFile::parse(&data).unwrap();
        let mut mem = Memory::new();
        let image = load_segments(&elf, &data, &mut mem).unwrap();
        let rsp = build_stack(&mut mem, &image, &stack_inputs(&argv, &[]), false).unwrap();
        assert_eq!(mem.peek_u64(rsp), Ok(n as u64));
    }

    /// Writes the header fields and program headers of `elf` back over `data` (the table at `elf.phoff`,
    /// growing the file if it must), so that structure-level mutations reach the loader with every other byte
    /// intact.
    fn serialize(elf: &ElfFile, data: &[u8]) -> Vec<u8> {
        let mut f = data.to_vec();
        f[16..18].copy_from_slice(&elf.e_type.to_le_bytes());
        f[24..32].copy_from_slice(&elf.entry.to_le_bytes());
        f[32..40].copy_from_slice(&elf.phoff.to_le_bytes());
        f[54..56].copy_from_slice(&elf.phentsize.to_le_bytes());
        f[56..58].copy_from_slice(&elf.phnum.to_le_bytes());
        let Some(table) = usize::try_from(elf.phoff).ok().filter(|&t| t < 1 << 20) else {
            return f;
        };
        for (i, h) in elf.headers.iter().enumerate() {
            let at = table + i * 56;
            if f.len() < at + 56 {
                f.resize(at + 56, 0);
            }
            let ph = &mut f[at..at + 56];
            ph[0..4].copy_from_slice(&h.p_type.to_le_bytes());
            ph[4..8].copy_from_slice(&h.flags.to_le_bytes());
            ph[8..16].copy_from_slice(&h.offset.to_le_bytes());
            ph[16..24].copy_from_slice(&h.vaddr.to_le_bytes());
            ph[32..40].copy_from_slice(&h.filesz.to_le_bytes());
            ph[40..48].copy_from_slice(&h.memsz.to_le_bytes());
            ph[48..56].copy_from_slice(&h.align.to_le_bytes());
        }
        f
    }

    /// Values a field of a mutated header takes: edges, limits and their neighbours, and anything.
    fn field_value() -> impl Strategy<Value = u64> {
        prop_oneof![
            Just(0u64),
            Just(1),
            Just(u64::MAX),
            Just(0x1000),
            Just(PIE_BASE),
            Just(USER_END - 0x1000),
            Just(USER_END),
            Just(IMAGE_SIZE_BYTES_MAX),
            Just(IMAGE_SIZE_BYTES_MAX + 1),
            Just(3 << 30),
            Just((1 << 28) + 5),
            0u64..0x20_0000,
            0x40_0000u64..0x60_0000,
            any::<u64>(),
        ]
    }

    fn corpus_program(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../corpus/bin")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 256,
            failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::Direct(
                "../corpus/regressions/elf-structure.proptest-regressions",
            ))),
            .. ProptestConfig::default()
        })]

        /// The parsed structure of real binaries with fields set to edge values and re-serialized: the loader
        /// gives an image or an error, never a panic, within the memory limit, and an image costs the host
        /// about the file's pages, whatever p_memsz says (bss shares the zero frame).
        #[test]
        fn mutated_program_headers_load_within_the_limits(
            program in 0usize..3,
            edits in proptest::collection::vec((0usize..8, 0usize..8, field_value()), 1..5),
        ) {
            let data = match program {
                0 => tiny_elf(&[0x0f, 0x05, 0xeb, 0xfe]),
                1 => corpus_program("hello-musl"),
                _ => corpus_program("hello-glibc"),
            };
            let mut elf = ElfFile::parse(&data).unwrap();
            for (index, field, value) in edits {
                let n = elf.headers.len();
                match field {
                    0 => elf.entry = value,
                    1 => elf.phnum = (value % 300) as u16,
                    2 => elf.headers[index % n].offset = value,
                    3 => elf.headers[index % n].vaddr = value,
                    4 => elf.headers[index % n].filesz = value,
                    5 => elf.headers[index % n].memsz = value,
                    6 => elf.headers[index % n].flags = value as u32,
                    _ => elf.headers[index % n].p_type = if value % 2 == 0 { PT_LOAD } else { value as u32 },
                }
            }
            let bytes = serialize(&elf, &data);
            let frames_max = 1 << 16;
            let Ok(parsed) = ElfFile::parse(&bytes) else { return Ok(()) };
            let mut mem = Memory::new();
            mem.set_frames_max(frames_max);
            let Ok(image) = load_segments(&parsed, &bytes, &mut mem) else { return Ok(()) };
            prop_assert!(mem.frames_in_use() <= frames_max);
            // Each segment adds at most its file bytes and one partial page at each end.
            let loads = parsed.headers.iter().filter(|h| h.p_type == PT_LOAD).count();
            prop_assert!(mem.resident_frame_count() <= bytes.len() / PAGE_SIZE * loads + 2 * loads + 1);
            let _ = build_stack(&mut mem, &image, &stack_inputs(&[b"prog".to_vec()], &[]), false);
        }
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

        /// Mutated interpreters (an ET_DYN whose header and program header take arbitrary values) load below
        /// INTERP_TOP or are refused, never a panic.
        #[test]
        fn mutated_interpreters_load_below_the_top_or_are_refused(
            wide in proptest::collection::vec((0usize..15, any::<u64>()), 1..4),
            cut in 0usize..200,
        ) {
            let mut data = tiny_elf(&[0xeb, 0xfe]);
            data[16..18].copy_from_slice(&ET_DYN.to_le_bytes());
            for (slot, v) in wide {
                let at = 16 + slot * 8;
                if at + 8 <= data.len() {
                    data[at..at + 8].copy_from_slice(&v.to_le_bytes());
                }
            }
            if cut % 4 == 0 {
                data.truncate(cut);
            }
            let mut mem = Memory::new();
            mem.set_frames_max(1 << 16);
            if let Ok(image) = load_interpreter(&data, "/ld.so", &mut mem) {
                prop_assert!(mem.regions().iter().all(|r| r.end <= INTERP_TOP));
                prop_assert_eq!(image.bias & PAGE_MASK, 0);
            }
        }

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
