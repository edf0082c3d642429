//! The dynamic loader's list of loaded objects, read from guest memory as gdbserver reads it
//! (gdbserver/linux-low.cc, qxfer_libraries_svr4): the program's PT_DYNAMIC (found through AT_PHDR and
//! PT_PHDR) holds DT_DEBUG, which the loader points at its `struct r_debug`; r_map heads the chain of
//! `struct link_map` (l_addr, l_name, l_ld, l_next, l_prev). The first entry is the program itself.
//!
//! This is exactly what the loader considers loaded (a library mapped but not yet added is not listed), which
//! is what gdb expects of a library list. Reads never fault the guest: memory is peeked, and a list that is
//! unreadable, cyclic or absurdly long ends where it stops making sense.

use crate::memory::Memory;

const AT_PHDR: u64 = 3;
const AT_PHNUM: u64 = 5;
const PT_DYNAMIC: u32 = 2;
const PT_PHDR: u32 = 6;
const DT_NULL: u64 = 0;
const DT_DEBUG: u64 = 21;
/// Bytes of an Elf64_Phdr.
const PHDR_BYTES: u64 = 56;
/// Most program headers, dynamic entries and link_map entries read (guards against garbage in guest memory).
const PHDRS_MAX: u64 = 256;
const DYNAMIC_MAX: u64 = 1024;
const LINK_MAP_MAX: usize = 4096;
/// Longest l_name read.
const NAME_BYTES_MAX: usize = 4096;

/// One `struct link_map` of the loader's list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkMapEntry {
    /// The address of the entry itself (gdb's `lm`).
    pub lm: u64,
    /// The load bias (l_addr).
    pub l_addr: u64,
    /// The object's dynamic section (l_ld).
    pub l_ld: u64,
    /// Its path as the loader named it (empty for the program).
    pub name: Vec<u8>,
}

/// The loader's list: the program's entry first. None while the loader has not published it yet (a static
/// program, or a dynamic one before ld.so set DT_DEBUG), or when the memory does not hold one.
pub fn read(mem: &Memory, auxv: &[(u64, u64)]) -> Option<Vec<LinkMapEntry>> {
    let r_debug = r_debug_address(mem, auxv)?;
    let mut at = mem.peek_u64(r_debug.checked_add(8)?).ok()?;
    let mut out: Vec<LinkMapEntry> = Vec::new();
    while at != 0 && out.len() < LINK_MAP_MAX {
        if out.iter().any(|e| e.lm == at) {
            break;
        }
        let word = |i: u64| mem.peek_u64(at.wrapping_add(8 * i)).ok();
        let (Some(l_addr), Some(l_name), Some(l_ld), Some(l_next)) =
            (word(0), word(1), word(2), word(3))
        else {
            break;
        };
        out.push(LinkMapEntry {
            lm: at,
            l_addr,
            l_ld,
            name: c_string(mem, l_name),
        });
        at = l_next;
    }
    (!out.is_empty()).then_some(out)
}

/// The address DT_DEBUG holds in the program's dynamic section (0 until the loader sets it: None).
fn r_debug_address(mem: &Memory, auxv: &[(u64, u64)]) -> Option<u64> {
    let value = |key| auxv.iter().find(|&&(k, _)| k == key).map(|&(_, v)| v);
    let (phdr, phnum) = (value(AT_PHDR)?, value(AT_PHNUM)?.min(PHDRS_MAX));
    let header = |i: u64| -> Option<(u32, u64)> {
        let at = phdr.checked_add(i * PHDR_BYTES)?;
        let p_type = mem.peek_u64(at).ok()? as u32;
        Some((p_type, mem.peek_u64(at + 16).ok()?))
    };
    let headers: Vec<(u32, u64)> = (0..phnum).filter_map(header).collect();
    // The bias of a PIE: where the program headers are against where PT_PHDR says they are.
    let bias = headers
        .iter()
        .find(|h| h.0 == PT_PHDR)
        .map_or(0, |h| phdr.wrapping_sub(h.1));
    let dynamic = headers
        .iter()
        .find(|h| h.0 == PT_DYNAMIC)?
        .1
        .wrapping_add(bias);
    (0..DYNAMIC_MAX)
        .map_while(|i| {
            let at = dynamic.checked_add(16 * i)?;
            Some((mem.peek_u64(at).ok()?, mem.peek_u64(at + 8).ok()?))
        })
        .take_while(|&(tag, _)| tag != DT_NULL)
        .find(|&(tag, _)| tag == DT_DEBUG)
        .map(|(_, v)| v)
        .filter(|&v| v != 0)
}

/// The NUL-terminated string at `addr` (empty if unreadable), at most NAME_BYTES_MAX bytes.
fn c_string(mem: &Memory, addr: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut byte = [0u8; 1];
    while out.len() < NAME_BYTES_MAX && addr != 0 {
        if mem.peek(addr + out.len() as u64, &mut byte).is_err() || byte[0] == 0 {
            break;
        }
        out.push(byte[0]);
    }
    out
}
