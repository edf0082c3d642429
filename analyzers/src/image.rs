//! The analysed program's image: its loadable segments as the loader maps them, its entry point, its function
//! symbols, the pointers its data holds (aligned words, and the addends of relative relocations) and the data
//! objects they sit in, read from the ELF file.
//!
//! Data objects are what makes a pointer in data count: a pointer is followed only when code (or another
//! followed pointer) refers to the object holding it. An object is a sized symbol (STT_OBJECT with st_size) when
//! one covers the address; otherwise the address up to the next symbol or the end of its section (so a
//! `__start_SECTION` reference covers the whole section, and a stripped binary's reference covers the rest of
//! its section: coarse, never too small). Without section headers, the rest of the segment.

use object::elf;
use object::read::elf::{ElfFile64, FileHeader, ProgramHeader, SectionHeader};
use object::{Endianness, Object, ObjectSection, ObjectSymbol, SectionFlags, SymbolKind};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

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
    /// A name of each function symbol (the first one the symbol tables give), for explanations.
    names: BTreeMap<u64, String>,
    /// Sized data symbols: start -> end (exclusive).
    objects: BTreeMap<u64, u64>,
    /// Data sections named like C identifiers (`__libc_IO_vtables`, `__libc_atexit`): start -> end. The
    /// linker gives them `__start_` and `__stop_` symbols, and code walks them whole from their start.
    named_sections: BTreeMap<u64, u64>,
    /// Where a data object without a sized symbol ends: every symbol's address in data, and the starts and
    /// ends of the data sections.
    boundaries: BTreeSet<u64>,
    /// Pointer-sized words of data that hold an address of code or file-backed data: where -> value.
    pointers: BTreeMap<u64, u64>,
    /// Code that runs without being called by the program: the entry point, the init/fini arrays' entries,
    /// `.init` and `.fini`, the IFUNC resolvers of R_X86_64_IRELATIVE relocations (static glibc runs them all).
    roots: BTreeSet<u64>,
}

/// An ELF file checked to be an x86-64 program or library, with its interpreter (PT_INTERP) if it names one.
pub(crate) fn open(
    bytes: &[u8],
) -> Result<(ElfFile64<'_, Endianness>, Option<String>), ImageError> {
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
    let mut interpreter = None;
    for ph in file.elf_program_headers() {
        if ph.p_type(endian) == elf::PT_INTERP {
            let data = ph
                .data(endian, bytes)
                .map_err(|_| ImageError::Parse("PT_INTERP outside the file".into()))?;
            let name = String::from_utf8_lossy(data.split(|&b| b == 0).next().unwrap_or(&[]));
            interpreter = Some(name.into_owned());
        }
    }
    Ok((file, interpreter))
}

impl Image {
    /// Parses an ELF64 x86-64 executable (ET_EXEC, or ET_DYN without an interpreter: static-PIE), at its link
    /// addresses. Any malformation is an error, never a panic. A dynamically linked program is
    /// `program::load`'s (its libraries are part of its image).
    pub fn parse(bytes: &[u8]) -> Result<Image, ImageError> {
        let (file, interpreter) = open(bytes)?;
        if let Some(name) = interpreter {
            return Err(ImageError::Dynamic(name));
        }
        let mut image = Image::empty();
        image.add_object(&file, bytes, 0)?;
        image.set_entry(file.elf_header().e_entry(file.endian()))?;
        Ok(image)
    }

    pub(crate) fn empty() -> Image {
        Image {
            entry: 0,
            segments: Vec::new(),
            functions: BTreeSet::new(),
            names: BTreeMap::new(),
            objects: BTreeMap::new(),
            named_sections: BTreeMap::new(),
            boundaries: BTreeSet::new(),
            pointers: BTreeMap::new(),
            roots: BTreeSet::new(),
        }
    }

    /// Makes `entry` the program's entry point (a root); it must be code.
    pub(crate) fn set_entry(&mut self, entry: u64) -> Result<(), ImageError> {
        if !self.is_code(entry) {
            return Err(ImageError::Entry(entry));
        }
        self.entry = entry;
        self.roots.insert(entry);
        Ok(())
    }

    /// Adds one ELF object loaded `base` bytes above its link addresses: its segments, function symbols (the
    /// symbol table and the dynamic one), data layout, pointers and roots.
    pub(crate) fn add_object(
        &mut self,
        file: &ElfFile64<Endianness>,
        bytes: &[u8],
        base: u64,
    ) -> Result<(), ImageError> {
        let endian = file.endian();
        for ph in file.elf_program_headers() {
            if ph.p_type(endian) != elf::PT_LOAD {
                continue;
            }
            let data = ph
                .data(endian, bytes)
                .map_err(|_| ImageError::Parse("segment outside the file".into()))?;
            self.segments.push(Segment {
                vaddr: ph.p_vaddr(endian).wrapping_add(base),
                bytes: data.to_vec(),
                executable: ph.p_flags(endian) & elf::PF_X != 0,
            });
        }
        self.read_data_layout(file, base);
        self.add_symbols(file, base);
        self.read_pointers(file, bytes, base);
        self.read_roots(file, base);
        Ok(())
    }

    /// The data sections' boundaries and named sections (symbols add theirs: `add_symbols`). Each GOT slot is an
    /// object of its own (code loads one slot at a time).
    fn read_data_layout(&mut self, file: &ElfFile64<Endianness>, base: u64) {
        for section in file.sections() {
            if !self.is_data_section(&section) {
                continue;
            }
            let start = section.address().wrapping_add(base);
            let end = start.saturating_add(section.size());
            self.boundaries.insert(start);
            self.boundaries.insert(end);
            if matches!(section.name(), Ok(".got" | ".got.plt")) {
                self.boundaries.extend((start..end).step_by(8));
            }
            let c_identifier = section.name().is_ok_and(|n| {
                !n.is_empty()
                    && !n.starts_with(|c: char| c.is_ascii_digit())
                    && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            });
            if c_identifier {
                self.named_sections.insert(start, end);
            }
        }
    }

    /// The symbols of `file` (its symbol table and dynamic one), `base` bytes above their link addresses:
    /// function starts and names, data objects and boundaries. `file` is the object itself, or its detached
    /// debug file (program.rs), whose symbol table a stripped library lacks.
    pub(crate) fn add_symbols(&mut self, file: &ElfFile64<Endianness>, base: u64) {
        for s in file.symbols().chain(file.dynamic_symbols()) {
            if s.address() == 0 {
                continue;
            }
            let addr = s.address().wrapping_add(base);
            if s.kind() == SymbolKind::Text && self.is_code(addr) {
                self.functions.insert(addr);
            }
            // Names for explanations: functions, and the untyped labels assembly leaves (musl's `_start`).
            let named = matches!(s.kind(), SymbolKind::Text | SymbolKind::Unknown)
                && s.name().is_ok_and(|n| !n.is_empty() && !n.starts_with('.'));
            if named && self.is_code(addr) {
                let name = s.name().unwrap_or_default().to_string();
                self.names.entry(addr).or_insert(name);
            }
            if !self.is_data(addr) {
                continue;
            }
            self.boundaries.insert(addr);
            if s.kind() == SymbolKind::Data && s.size() > 0 {
                let end = addr.saturating_add(s.size());
                let old = self.objects.entry(addr).or_insert(end);
                *old = (*old).max(end);
            }
        }
    }

    fn is_data_section(&self, section: &object::read::elf::ElfSection64<Endianness>) -> bool {
        let SectionFlags::Elf { sh_flags } = section.flags() else {
            return false;
        };
        sh_flags & u64::from(elf::SHF_ALLOC) != 0
            && sh_flags & u64::from(elf::SHF_EXECINSTR) == 0
            && section.address() != 0
    }

    /// Every aligned word of a non-executable segment holding an address of code or data (of an object at its
    /// link addresses: a loaded library's words are not relocated yet), and the addends of R_X86_64_RELATIVE /
    /// IRELATIVE relocations (a PIE's or library's pointers) at their offsets.
    fn read_pointers(&mut self, file: &ElfFile64<Endianness>, bytes: &[u8], base: u64) {
        if base == 0 {
            let mut words = Vec::new();
            for s in self.segments.iter().filter(|s| !s.executable) {
                let skip = (8 - s.vaddr % 8) % 8;
                let data = s.bytes.get(skip as usize..).unwrap_or(&[]);
                for (i, word) in data.chunks_exact(8).enumerate() {
                    let value = u64::from_le_bytes(word.try_into().expect("8-byte chunk"));
                    words.push((s.vaddr + skip + 8 * i as u64, value));
                }
            }
            for (at, value) in words {
                self.add_pointer(at, value);
            }
        }
        for offset in relr_offsets(file, bytes) {
            // SHT_RELR: the word in the file is the link-time address (an implicit addend).
            let at = offset.wrapping_add(base);
            if let Some(word) = self.read(at, 8) {
                let value = u64::from_le_bytes(word.try_into().expect("8 bytes"));
                self.add_pointer(at, value.wrapping_add(base));
            }
        }
        for (offset, kind, addend) in relative_relocations(file, bytes) {
            let value = addend.wrapping_add(base);
            self.add_pointer(offset.wrapping_add(base), value);
            if kind == elf::R_X86_64_IRELATIVE && self.is_code(value) {
                self.roots.insert(value);
            }
        }
    }

    /// Records that the word at `at` holds `value`, when `value` is an address of code or data.
    pub(crate) fn add_pointer(&mut self, at: u64, value: u64) {
        if self.is_code(value) || self.is_data(value) {
            self.pointers.insert(at, value);
        }
    }

    /// Adds code that runs without a call from the program (an IFUNC resolver the loader calls).
    pub(crate) fn add_root(&mut self, addr: u64) {
        if self.is_code(addr) {
            self.roots.insert(addr);
        }
    }

    /// The init/fini arrays' entries, `.init` and `.fini`.
    fn read_roots(&mut self, file: &ElfFile64<Endianness>, base: u64) {
        let endian = file.endian();
        for section in file.sections() {
            let kind = section.elf_section_header().sh_type(endian);
            let start = section.address().wrapping_add(base);
            let range = start..start.saturating_add(section.size());
            if matches!(
                kind,
                elf::SHT_INIT_ARRAY | elf::SHT_FINI_ARRAY | elf::SHT_PREINIT_ARRAY
            ) {
                let entries: Vec<u64> = self
                    .pointers
                    .range(range)
                    .map(|(_, v)| *v)
                    .filter(|&v| self.is_code(v))
                    .collect();
                self.roots.extend(entries);
            } else if matches!(section.name(), Ok(".init" | ".fini")) && self.is_code(start) {
                self.roots.insert(start);
            }
        }
    }

    /// The code that runs without a call from the program (see `roots`).
    pub fn roots(&self) -> &BTreeSet<u64> {
        &self.roots
    }

    /// Whether `addr` is in the file-backed part of a non-executable segment (where pointers can be read).
    pub fn is_data(&self, addr: u64) -> bool {
        self.segments.iter().any(|s| {
            !s.executable
                && addr
                    .checked_sub(s.vaddr)
                    .is_some_and(|o| o < s.bytes.len() as u64)
        })
    }

    /// The data object holding `addr` (see the module doc), or None when `addr` is not file-backed data.
    pub fn object_at(&self, addr: u64) -> Option<Range<u64>> {
        let segment = self.segments.iter().find(|s| {
            !s.executable
                && addr
                    .checked_sub(s.vaddr)
                    .is_some_and(|o| o < s.bytes.len() as u64)
        })?;
        let segment_end = segment.vaddr + segment.bytes.len() as u64;
        if let Some(&end) = self.named_sections.get(&addr) {
            return Some(addr..end.min(segment_end));
        }
        if let Some((&start, &end)) = self.objects.range(..=addr).next_back() {
            if addr < end {
                return Some(start..end);
            }
        }
        let end = self
            .boundaries
            .range(addr + 1..)
            .next()
            .copied()
            .unwrap_or(segment_end)
            .min(segment_end);
        Some(addr..end)
    }

    /// The pointers held in `range` (where, value), in address order.
    pub fn pointers_in(&self, range: Range<u64>) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.pointers.range(range).map(|(&at, &v)| (at, v))
    }

    /// The pointer held at `addr`, if the file's data (or a relocation) puts one there.
    pub fn pointer_at(&self, addr: u64) -> Option<u64> {
        self.pointers.get(&addr).copied()
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

    /// `addr` for a person: `0x401000 <main+0x12>` after the function symbol at or below it, or the bare
    /// address in a stripped file.
    pub fn describe(&self, addr: u64) -> String {
        match self.names.range(..=addr).next_back() {
            Some((&start, name)) if addr == start => format!("{addr:#x} <{name}>"),
            // Not past the start of another function (a stripped one's bytes are not its neighbour's).
            Some((&start, name)) if self.functions.range(start + 1..=addr).next().is_none() => {
                format!("{addr:#x} <{name}+{:#x}>", addr - start)
            }
            _ => format!("{addr:#x}"),
        }
    }

    /// Adds a function symbol (tests build images without symbol tables).
    #[cfg(test)]
    pub(crate) fn add_function(&mut self, addr: u64, name: &str) {
        self.functions.insert(addr);
        self.names.insert(addr, name.to_string());
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
}

/// (offset, type, addend) of every R_X86_64_RELATIVE and R_X86_64_IRELATIVE relocation in the SHT_RELA sections:
/// a static-PIE's pointers before relocation, and the IFUNC resolvers glibc runs at start-up.
fn relative_relocations(file: &ElfFile64<Endianness>, bytes: &[u8]) -> Vec<(u64, u32, u64)> {
    let endian = file.endian();
    let mut out = Vec::new();
    for section in file.elf_section_table().iter() {
        if section.sh_type(endian) != elf::SHT_RELA {
            continue;
        }
        let Ok(data) = section.data(endian, bytes) else {
            continue;
        };
        for rela in data.chunks_exact(24) {
            let word = |i: usize| u64::from_le_bytes(rela[i..i + 8].try_into().expect("8 bytes"));
            let kind = (word(8) & 0xffff_ffff) as u32;
            if kind == elf::R_X86_64_RELATIVE || kind == elf::R_X86_64_IRELATIVE {
                out.push((word(0), kind, word(16)));
            }
        }
    }
    out
}

/// The offsets that the packed relative relocations of the SHT_RELR sections (DT_RELR, glibc 2.36's libraries)
/// relocate: an even entry is an address, an odd one a bitmap of the 63 words after the last address.
fn relr_offsets(file: &ElfFile64<Endianness>, bytes: &[u8]) -> Vec<u64> {
    let endian = file.endian();
    let mut out = Vec::new();
    for section in file.elf_section_table().iter() {
        if section.sh_type(endian) != elf::SHT_RELR {
            continue;
        }
        let Ok(data) = section.data(endian, bytes) else {
            continue;
        };
        let mut next = 0u64;
        for entry in data.chunks_exact(8) {
            let entry = u64::from_le_bytes(entry.try_into().expect("8 bytes"));
            if entry & 1 == 0 {
                out.push(entry);
                next = entry.wrapping_add(8);
            } else {
                for bit in 1..64 {
                    if entry >> bit & 1 != 0 {
                        out.push(next.wrapping_add(8 * (bit - 1)));
                    }
                }
                next = next.wrapping_add(8 * 63);
            }
        }
    }
    out
}
