//! The analysed program's image: its loadable segments as the loader maps them, its entry point, its function
//! symbols and the code addresses its data holds (pointers and relocation addends), read from the ELF file.

use object::elf;
use object::read::elf::{ElfFile64, FileHeader, ProgramHeader, SectionHeader};
use object::{Endianness, Object, ObjectSymbol, SymbolKind};
use std::collections::BTreeSet;

/// Why a file cannot be analysed.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("not an ELF64 file: {0}")]
    Parse(String),
    #[error("not an x86-64 program (e_machine {0})")]
    Machine(u16),
    #[error("not an executable (e_type {0}): the analysis starts at a program's entry point")]
    Type(u16),
    #[error(
        "dynamically linked (PT_INTERP {0}): the libraries it loads are not analysed yet, so a profile of the \
         executable alone would miss their system calls"
    )]
    Dynamic(String),
    #[error("the entry point {0:#x} is not in an executable segment")]
    Entry(u64),
}

/// One loadable segment: its bytes as in the file (the zero-filled rest of `p_memsz` is not code, and data
/// there holds no pointers until the program writes them).
#[derive(Clone, Debug)]
pub struct Segment {
    pub vaddr: u64,
    pub bytes: Vec<u8>,
    pub executable: bool,
}

/// What the analysis needs of an ELF executable.
#[derive(Clone, Debug)]
pub struct Image {
    pub entry: u64,
    segments: Vec<Segment>,
    /// Start addresses of the function symbols (STT_FUNC), when the file has a symbol table.
    functions: BTreeSet<u64>,
}

impl Image {
    /// Parses an ELF64 x86-64 executable (ET_EXEC, or ET_DYN without an interpreter: static-PIE), at its link
    /// addresses. Any malformation is an error, never a panic.
    pub fn parse(bytes: &[u8]) -> Result<Image, ImageError> {
        let file =
            ElfFile64::<Endianness>::parse(bytes).map_err(|e| ImageError::Parse(e.to_string()))?;
        let endian = file.endian();
        let header = file.elf_header();
        let machine = header.e_machine(endian);
        if machine != elf::EM_X86_64 {
            return Err(ImageError::Machine(machine));
        }
        let kind = header.e_type(endian);
        if kind != elf::ET_EXEC && kind != elf::ET_DYN {
            return Err(ImageError::Type(kind));
        }
        let mut segments = Vec::new();
        for ph in file.elf_program_headers() {
            let data = ph
                .data(endian, bytes)
                .map_err(|_| ImageError::Parse("segment outside the file".into()))?;
            match ph.p_type(endian) {
                elf::PT_INTERP => {
                    let name =
                        String::from_utf8_lossy(data.split(|&b| b == 0).next().unwrap_or(&[]));
                    return Err(ImageError::Dynamic(name.into_owned()));
                }
                elf::PT_LOAD => segments.push(Segment {
                    vaddr: ph.p_vaddr(endian),
                    bytes: data.to_vec(),
                    executable: ph.p_flags(endian) & elf::PF_X != 0,
                }),
                _ => {}
            }
        }
        let functions = file
            .symbols()
            .filter(|s| s.kind() == SymbolKind::Text && s.address() != 0)
            .map(|s| s.address())
            .collect();
        let image = Image {
            entry: header.e_entry(endian),
            segments,
            functions,
        };
        if !image.is_code(image.entry) {
            return Err(ImageError::Entry(image.entry));
        }
        Ok(image)
    }

    /// The bytes of the executable segment holding `addr`, from `addr` to the segment's end.
    pub fn code_at(&self, addr: u64) -> Option<&[u8]> {
        self.segments.iter().filter(|s| s.executable).find_map(|s| {
            Some(
                &s.bytes[usize::try_from(addr.checked_sub(s.vaddr)?)
                    .ok()
                    .filter(|&o| o < s.bytes.len())?..],
            )
        })
    }

    /// Whether `addr` is in the file-backed part of an executable segment.
    pub fn is_code(&self, addr: u64) -> bool {
        self.code_at(addr).is_some()
    }

    /// Whether `addr` starts a function symbol (an entry the call graph treats as a function of its own).
    pub fn is_function_start(&self, addr: u64) -> bool {
        self.functions.contains(&addr)
    }

    /// Where the function at `entry` can extend to: up to the next function symbol (switch-table targets stay
    /// inside their function), or anywhere without symbols.
    pub fn function_range(&self, entry: u64) -> std::ops::Range<u64> {
        let end = self
            .functions
            .range(entry + 1..)
            .next()
            .copied()
            .unwrap_or(u64::MAX);
        entry..end
    }

    /// Whether the file had function symbols at all.
    pub fn has_symbols(&self) -> bool {
        !self.functions.is_empty()
    }

    /// `len` bytes at `addr` of any loadable segment (file-backed part).
    pub fn read(&self, addr: u64, len: usize) -> Option<&[u8]> {
        self.segments.iter().find_map(|s| {
            let off = usize::try_from(addr.checked_sub(s.vaddr)?).ok()?;
            s.bytes.get(off..off.checked_add(len)?)
        })
    }

    /// Code addresses held by data: every aligned 8-byte word of a non-executable segment that points into
    /// code (function-pointer tables, init/fini arrays, absolute jump tables). Relocated pointers of a
    /// static-PIE are `relocation_targets`.
    pub fn data_code_pointers(&self) -> BTreeSet<u64> {
        let mut out = BTreeSet::new();
        for s in self.segments.iter().filter(|s| !s.executable) {
            let skip = ((8 - s.vaddr % 8) % 8) as usize;
            for word in s.bytes.get(skip..).unwrap_or(&[]).chunks_exact(8) {
                let value = u64::from_le_bytes(word.try_into().expect("8-byte chunk"));
                if self.is_code(value) {
                    out.insert(value);
                }
            }
        }
        out
    }
}

/// Code addresses named by the addends of R_X86_64_RELATIVE and R_X86_64_IRELATIVE relocations in every
/// SHT_RELA section: a static-PIE's pointers before relocation, and the IFUNC resolvers glibc runs at start-up.
pub fn relocation_targets(bytes: &[u8], image: &Image) -> BTreeSet<u64> {
    let mut out = BTreeSet::new();
    let Ok(file) = ElfFile64::<Endianness>::parse(bytes) else {
        return out;
    };
    let endian = file.endian();
    for section in file.elf_section_table().iter() {
        if section.sh_type(endian) != elf::SHT_RELA {
            continue;
        }
        let Ok(data) = section.data(endian, bytes) else {
            continue;
        };
        for rela in data.chunks_exact(24) {
            let info = u64::from_le_bytes(rela[8..16].try_into().expect("8 bytes"));
            let addend = u64::from_le_bytes(rela[16..24].try_into().expect("8 bytes"));
            let kind = (info & 0xffff_ffff) as u32;
            if (kind == elf::R_X86_64_RELATIVE || kind == elf::R_X86_64_IRELATIVE)
                && image.is_code(addend)
            {
                out.insert(addend);
            }
        }
    }
    out
}
