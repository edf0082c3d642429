//! A program's whole image, as the loader would build it: a static executable alone, or a dynamically linked
//! one with its interpreter (ld.so, whose start-up code runs first) and every library of its DT_NEEDED closure,
//! each at a base address of its own, with the GOT slots and symbol pointers bound to the definitions the
//! loader would pick (the first object in load order that defines the symbol: the program, then its libraries
//! breadth first, as ld.so's global scope). Library code is then reachable only through what the program
//! imports (PLT stubs and GOT slots hold the bound addresses, which the analysis follows as calls), through
//! the libraries' init and fini arrays, and through the interpreter's entry.
//!
//! A stripped library (Debian's libc.so.6 and ld.so keep only their dynamic symbols) is read with its detached
//! debug file when `root` holds one where gdb looks for it, by build ID (/usr/lib/debug/.build-id/xx/yyyy.debug,
//! Debian's -dbg packages): its symbol table gives every function's start and every data object's extent, so
//! that a path cannot run from one function into the next and a reference to one stdio vtable does not reach
//! the whole section of them. Without one, the analysis is coarser (more syscalls), never less complete.
//!
//! Libraries are found as the guest's loader finds them (ld.so(8)): DT_RPATH (when there is no DT_RUNPATH),
//! DT_RUNPATH ($ORIGIN expanded), then the trusted directories Debian's ld.so.cache lists for x86-64, all
//! beneath `root` (the host's / for `tandem run`'s default guest root). Symbol versions are not compared: a
//! name binds to its first definition, which can only add code (never lose a definition's syscalls).

use crate::image::{open, Image, ImageError};
use object::elf;
use object::read::elf::{Dyn, ElfFile64, FileHeader};
use object::{
    Endianness, Object, ObjectSymbol, ObjectSymbolTable, RelocationFlags, RelocationTarget,
};
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};

/// Libraries loaded at most (a guard against a cycle of misnamed libraries; real programs need tens).
const LIBRARIES_MAX: usize = 512;
/// Where the first library is placed, and the distance between two (more than any library's extent).
const LIBRARY_BASE: u64 = 0x7f00_0000_0000;
const LIBRARY_STRIDE: u64 = 0x1_0000_0000;
/// Where a position-independent program is placed (Linux's ELF_ET_DYN_BASE for x86-64 is 2/3 of the space).
const PIE_BASE: u64 = 0x5555_5555_4000;
/// The trusted directories of Debian's x86-64 ld.so.cache, in its search order.
const SYSTEM_DIRS: [&str; 6] = [
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
];

/// Why a dynamically linked program cannot be analysed whole.
#[derive(Debug, thiserror::Error)]
pub enum ProgramError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("{path}: {source}")]
    Library { path: PathBuf, source: ImageError },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "library {name} (needed by {by}) was not found beneath {root} (searched its RUNPATH and {})",
        SYSTEM_DIRS.join(", ")
    )]
    NotFound {
        name: String,
        by: String,
        root: PathBuf,
    },
    #[error("more than {LIBRARIES_MAX} libraries")]
    TooMany,
}

/// A program's image and the files it was built from.
pub struct Loaded {
    pub image: Image,
    /// The host paths of the objects loaded with the program (interpreter first).
    pub libraries: Vec<PathBuf>,
    /// The detached debug files whose symbols were read (see the module doc).
    pub debug_files: Vec<PathBuf>,
}

/// The image of the program in `bytes`, with its libraries found beneath `root`.
pub fn load(bytes: &[u8], root: &Path) -> Result<Loaded, ProgramError> {
    let (file, interpreter) = open(bytes)?;
    let Some(interpreter) = interpreter else {
        return Ok(Loaded {
            image: Image::parse(bytes)?,
            libraries: Vec::new(),
            debug_files: Vec::new(),
        });
    };
    let endian = file.endian();
    let main_base = if file.elf_header().e_type(endian) == elf::ET_DYN {
        PIE_BASE
    } else {
        0
    };
    let interpreter_path = beneath(root, &interpreter);
    let mut paths = vec![std::fs::canonicalize(&interpreter_path).unwrap_or(interpreter_path)];
    let mut queue: VecDeque<(String, Vec<String>, String)> = dynamic_entries(&file, bytes)
        .needed
        .into_iter()
        .map(|n| (n, Vec::new(), "the program".to_string()))
        .collect();
    while let Some((name, search, by)) = queue.pop_front() {
        let Some(path) = find_library(root, &name, &search) else {
            return Err(ProgramError::NotFound {
                name,
                by,
                root: root.to_path_buf(),
            });
        };
        // One file under two names (ld.so is both /lib64/ld-linux-x86-64.so.2 and the one in the library
        // directory) is loaded once, as ld.so compares device and inode.
        let path = std::fs::canonicalize(&path).unwrap_or(path);
        if paths.contains(&path) {
            continue;
        }
        if paths.len() > LIBRARIES_MAX {
            return Err(ProgramError::TooMany);
        }
        let lib = read(&path)?;
        let (lib_file, _) = open(&lib).map_err(|source| ProgramError::Library {
            path: path.clone(),
            source,
        })?;
        let entries = dynamic_entries(&lib_file, &lib);
        let origin = path.parent().unwrap_or(Path::new("/"));
        let search: Vec<String> = entries
            .search
            .iter()
            .map(|d| d.replace("$ORIGIN", &origin.to_string_lossy()))
            .collect();
        for needed in entries.needed {
            queue.push_back((needed, search.clone(), path.display().to_string()));
        }
        paths.push(path);
    }
    // Load order for binding: the program, its libraries breadth first, the interpreter last.
    let libraries: Vec<(PathBuf, Vec<u8>)> = paths
        .iter()
        .map(|p| Ok((p.clone(), read(p)?)))
        .collect::<Result<_, ProgramError>>()?;
    let mut image = Image::empty();
    image.add_object(&file, bytes, main_base)?;
    let mut debug_files = Vec::new();
    debug_files.extend(add_debug_symbols(&mut image, root, &file, main_base));
    let mut order: Vec<(&ElfFile64<Endianness>, u64)> = vec![(&file, main_base)];
    let parsed: Vec<(ElfFile64<Endianness>, u64)> = libraries
        .iter()
        .enumerate()
        .map(|(i, (path, data))| {
            let (f, _) = open(data).map_err(|source| ProgramError::Library {
                path: path.clone(),
                source,
            })?;
            Ok((f, LIBRARY_BASE + i as u64 * LIBRARY_STRIDE))
        })
        .collect::<Result<_, ProgramError>>()?;
    for ((f, base), (path, data)) in parsed.iter().zip(&libraries) {
        image
            .add_object(f, data, *base)
            .map_err(|source| ProgramError::Library {
                path: path.clone(),
                source,
            })?;
        debug_files.extend(add_debug_symbols(&mut image, root, f, *base));
    }
    // The interpreter is paths[0]; binding scope puts it after the libraries.
    order.extend(parsed.iter().skip(1).map(|(f, b)| (f, *b)));
    order.push((&parsed[0].0, parsed[0].1));
    bind_symbols(&mut image, &order);
    image.set_entry(file.elf_header().e_entry(endian).wrapping_add(main_base))?;
    let (ld, ld_base) = &parsed[0];
    image.add_root(ld.elf_header().e_entry(ld.endian()).wrapping_add(*ld_base));
    Ok(Loaded {
        image,
        libraries: paths,
        debug_files,
    })
}

/// Adds the symbols of `file`'s detached debug file, found beneath `root` by its build ID, when there is one
/// for this very build (an x86-64 ELF file; the build ID names the build). Returns its host path.
fn add_debug_symbols(
    image: &mut Image,
    root: &Path,
    file: &ElfFile64<Endianness>,
    base: u64,
) -> Option<PathBuf> {
    let id = file.build_id().ok()??;
    if id.len() < 2 {
        return None;
    }
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let path = beneath(
        root,
        &format!("/usr/lib/debug/.build-id/{}/{}.debug", &hex[..2], &hex[2..]),
    );
    let bytes = std::fs::read(&path).ok()?;
    let (debug, _) = open(&bytes).ok()?;
    if debug.build_id().ok()? != Some(id) {
        return None;
    }
    image.add_symbols(&debug, base);
    Some(path)
}

fn read(path: &Path) -> Result<Vec<u8>, ProgramError> {
    std::fs::read(path).map_err(|source| ProgramError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// `path` (absolute in the guest) beneath the host directory `root`.
fn beneath(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// The first file named `name` in the object's search directories, then the system's (a name with a slash
/// is a path itself).
fn find_library(root: &Path, name: &str, search: &[String]) -> Option<PathBuf> {
    if name.contains('/') {
        return Some(beneath(root, name)).filter(|p| p.is_file());
    }
    search
        .iter()
        .map(String::as_str)
        .chain(SYSTEM_DIRS)
        .map(|dir| beneath(root, dir).join(name))
        .find(|p| p.is_file())
}

/// What the dynamic section says about loading: DT_NEEDED names, and the directories to search
/// (DT_RUNPATH, or DT_RPATH when there is no DT_RUNPATH).
#[derive(Default)]
struct DynamicEntries {
    needed: Vec<String>,
    search: Vec<String>,
}

fn dynamic_entries(file: &ElfFile64<Endianness>, bytes: &[u8]) -> DynamicEntries {
    let endian = file.endian();
    let mut out = DynamicEntries::default();
    let sections = file.elf_section_table();
    let Ok(Some((dyns, link))) = sections.dynamic(endian, bytes) else {
        return out;
    };
    let Ok(strings) = sections.strings(endian, bytes, link) else {
        return out;
    };
    let (mut runpath, mut rpath) = (Vec::new(), Vec::new());
    for d in dyns {
        let Ok(value) = d.string(endian, strings) else {
            continue;
        };
        let value = String::from_utf8_lossy(value).into_owned();
        match d.d_tag(endian) as u32 {
            elf::DT_NEEDED => out.needed.push(value),
            elf::DT_RUNPATH => runpath.extend(value.split(':').map(str::to_string)),
            elf::DT_RPATH => rpath.extend(value.split(':').map(str::to_string)),
            _ => {}
        }
    }
    out.search = if runpath.is_empty() { rpath } else { runpath };
    out
}

/// Fills every GOT slot and symbol pointer (R_X86_64_GLOB_DAT, JUMP_SLOT, 64) with the address of the first
/// definition of its symbol in `order`; an IFUNC's resolver is what the loader calls, so it is a root and the
/// slot holds it.
fn bind_symbols(image: &mut Image, order: &[(&ElfFile64<Endianness>, u64)]) {
    let mut definitions: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
    for (file, base) in order {
        for symbol in file.dynamic_symbols() {
            if !symbol.is_definition() || symbol.address() == 0 {
                continue;
            }
            let Ok(name) = symbol.name_bytes() else {
                continue;
            };
            let addr = symbol.address().wrapping_add(*base);
            definitions.entry(name.to_vec()).or_insert(addr);
            if symbol.elf_symbol().st_type() == elf::STT_GNU_IFUNC {
                image.add_root(addr);
            }
        }
    }
    for (file, base) in order {
        let Some(table) = file.dynamic_symbol_table() else {
            continue;
        };
        let Some(relocations) = file.dynamic_relocations() else {
            continue;
        };
        for (offset, relocation) in relocations {
            let RelocationFlags::Elf { r_type } = relocation.flags() else {
                continue;
            };
            let RelocationTarget::Symbol(index) = relocation.target() else {
                continue;
            };
            if !matches!(
                r_type,
                elf::R_X86_64_GLOB_DAT | elf::R_X86_64_JUMP_SLOT | elf::R_X86_64_64
            ) {
                continue;
            }
            let Some(target) = table
                .symbol_by_index(index)
                .ok()
                .and_then(|s| s.name_bytes().ok())
                .and_then(|n| definitions.get(n))
            else {
                continue;
            };
            let addend = if r_type == elf::R_X86_64_64 {
                relocation.addend() as u64
            } else {
                0
            };
            image.add_pointer(offset.wrapping_add(*base), target.wrapping_add(addend));
        }
    }
}
