//! The debugger's symbol tables: the program's (from the ELF the trace embeds, at the load bias of a PIE) and
//! those of every shared object the guest has mapped (the dynamic loader, the libraries), read from the
//! files' bytes as they were mapped (`LinuxMachine::mapped_files`: in a replay, the files the trace embedded),
//! at the bias their mappings show. `.symtab` and `.dynsym` both count (a Debian library keeps only the
//! latter: what `nm -D` lists).
//!
//! An indirect function (glibc's strlen) resolves to the implementation its resolver chose, read from the
//! slots the loader filled (as gdb's elf_gnu_ifunc_resolve_by_got does), once they are filled.
//!
//! Precedence: the program's names first, then the objects' in the order they were first seen (address order
//! of the mappings at each refresh), so a name defined twice resolves as it did before, whatever is mapped
//! later. Tables only grow: an object unmapped later keeps its symbols (a breakpoint set from them stays).

use std::collections::{BTreeMap, BTreeSet};
use tandem_emulator::linux::elf::{ElfFile, PIE_BASE, PT_LOAD};
use tandem_emulator::linux::MappedFile;
use tandem_emulator::memory::Memory;

const PAGE_MASK: u64 = 0xfff;

/// R_X86_64_IRELATIVE: the slot gets what the resolver at the addend returns.
const R_X86_64_IRELATIVE: u32 = 37;

/// A GNU indirect function (STT_GNU_IFUNC, `i` in `nm -D`): the symbol's value is a resolver that the loader
/// runs to choose the implementation (glibc's strlen, memcpy, ...), and stores its answer in the object's
/// IRELATIVE slots. A breakpoint on the name belongs on the implementation, as gdb puts it.
#[derive(Clone, Debug)]
struct Ifunc {
    resolver: u64,
    /// The GOT slots IRELATIVE relocations with the resolver as addend fill.
    slots: Vec<u64>,
    /// The object's image [lo, hi): the implementation is in it.
    image: (u64, u64),
}

/// What a name resolves to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolved {
    At(u64),
    /// An indirect function whose implementation the loader has not chosen yet (its slots are not relocated).
    NotYetChosen,
    Unknown,
}

#[derive(Default)]
pub struct Symbols {
    /// Symbol name -> address (indirect functions are in `ifuncs`).
    by_name: BTreeMap<String, u64>,
    ifuncs: BTreeMap<String, Ifunc>,
    /// Function start -> (name, size in bytes; 0 when unknown).
    by_address: BTreeMap<u64, (String, u64)>,
    /// The mappings already looked at: (guest path, start address) of each object's first page.
    seen: BTreeSet<(Vec<u8>, u64)>,
}

impl Symbols {
    /// The program's symbols (a PIE at `PIE_BASE`, where the loader puts it).
    pub fn of_program(program: &[u8]) -> Symbols {
        let bias = ElfFile::parse(program)
            .ok()
            .filter(|elf| elf.is_pie())
            .map_or(0, |_| PIE_BASE);
        let mut s = Symbols::default();
        s.add_object(program, bias, true);
        s
    }

    /// Where `name` is in `mem` (an indirect function's implementation read from the slots its resolver
    /// filled).
    pub fn resolve(&self, name: &str, mem: &Memory) -> Resolved {
        if let Some(&a) = self.by_name.get(name) {
            return Resolved::At(a);
        }
        let Some(f) = self.ifuncs.get(name) else {
            return Resolved::Unknown;
        };
        f.slots
            .iter()
            .filter_map(|&slot| mem.peek_u64(slot).ok())
            .find(|&v| v != f.resolver && v >= f.image.0 && v < f.image.1)
            .map_or(Resolved::NotYetChosen, Resolved::At)
    }

    /// The function that contains `addr`: (its start, name, size).
    pub fn function_at(&self, addr: u64) -> Option<(u64, &str, u64)> {
        let (&start, (name, size)) = self.by_address.range(..=addr).next_back()?;
        let inside = addr - start < (*size).max(1) || (*size == 0 && addr - start < 0x100);
        inside.then_some((start, name.as_str(), *size))
    }

    /// Adds the symbols of the mapped objects not seen yet; true when any were added.
    pub fn add_mapped(&mut self, files: &[MappedFile]) -> bool {
        let mut added = false;
        // An object's first page (file offset 0) is mapped where its ELF header is: one look per object.
        for f in files.iter().filter(|f| f.offset == 0) {
            let Some(contents) = &f.contents else {
                continue;
            };
            if !self.seen.insert((f.path.clone(), f.start)) {
                continue;
            }
            if let Some(bias) = load_bias(contents, f) {
                self.add_object(contents, bias, false);
                added = true;
            }
        }
        added
    }

    /// Adds the defined function and data symbols of the ELF `bytes` loaded at `bias` (names already known
    /// keep their address). A shared object's local symbols (an unstripped loader's own strlen) name addresses
    /// but are not found by name, as in gdb a global definition wins.
    fn add_object(&mut self, bytes: &[u8], bias: u64, locals: bool) {
        use object::read::elf::ElfFile64;
        use object::{Object, ObjectSymbol, RelocationFlags, SymbolKind};
        let Ok(file) = ElfFile64::<object::Endianness>::parse(bytes) else {
            return;
        };
        let mut irelative: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for (offset, r) in file.dynamic_relocations().into_iter().flatten() {
            if r.flags()
                == (RelocationFlags::Elf {
                    r_type: R_X86_64_IRELATIVE,
                })
            {
                let slots = irelative.entry(r.addend() as u64).or_default();
                slots.push(offset.wrapping_add(bias));
            }
        }
        let image = image_span(bytes, bias);
        for sym in file.symbols().chain(file.dynamic_symbols()) {
            let Ok(name) = sym.name() else { continue };
            let ifunc = sym.elf_symbol().st_type() == object::elf::STT_GNU_IFUNC;
            // object's is_definition counts functions and objects only; an indirect function defined in a
            // section is a definition too.
            let defined = sym.is_definition() || (ifunc && sym.section_index().is_some());
            if name.is_empty()
                || sym.address() == 0
                || !defined
                || !matches!(sym.kind(), SymbolKind::Text | SymbolKind::Data)
                || name.starts_with('.')
            {
                continue;
            }
            let address = sym.address().wrapping_add(bias);
            let known = self.by_name.contains_key(name)
                || self.ifuncs.contains_key(name)
                || !(locals || sym.is_global());
            if ifunc {
                if !known {
                    let slots = irelative.get(&sym.address()).cloned().unwrap_or_default();
                    let ifunc = Ifunc {
                        resolver: address,
                        slots,
                        image,
                    };
                    self.ifuncs.insert(name.to_string(), ifunc);
                }
            } else if !known {
                self.by_name.insert(name.to_string(), address);
            }
            if sym.kind() == SymbolKind::Text {
                self.by_address
                    .entry(address)
                    .or_insert((name.to_string(), sym.size()));
            }
        }
    }
}

/// [lo, hi) of the PT_LOAD segments of `bytes` loaded at `bias`.
fn image_span(bytes: &[u8], bias: u64) -> (u64, u64) {
    let Ok(elf) = ElfFile::parse(bytes) else {
        return (0, 0);
    };
    let loads = || elf.headers.iter().filter(|h| h.p_type == PT_LOAD);
    let lo = loads().map(|h| h.vaddr).min().unwrap_or(0);
    let hi = loads()
        .map(|h| h.vaddr.saturating_add(h.memsz))
        .max()
        .unwrap_or(0);
    (lo.wrapping_add(bias), hi.wrapping_add(bias))
}

/// The load bias of the ELF object `bytes` that the mapping `f` shows part of: the PT_LOAD segment whose file
/// page `f` starts at is at `f.start` (None if no segment starts at that file page, or the bytes are no ELF).
fn load_bias(bytes: &[u8], f: &MappedFile) -> Option<u64> {
    let elf = ElfFile::parse(bytes).ok()?;
    let h = elf
        .headers
        .iter()
        .find(|h| h.p_type == PT_LOAD && h.offset & !PAGE_MASK == f.offset)?;
    Some(f.start.wrapping_sub(h.vaddr & !PAGE_MASK))
}
