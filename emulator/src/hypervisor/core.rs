//! ELF core files of a guest, in the layout Linux's fs/binfmt_elf.c writes and gdb reads.
//!
//! ET_CORE for EM_X86_64; one PT_NOTE segment, then one PT_LOAD per mapping, page-aligned in the file. Notes named
//! "CORE": NT_PRSTATUS (signal, tid, the 27 registers in user_regs_struct order), NT_PRPSINFO, NT_SIGINFO,
//! NT_AUXV, NT_FILE (every file-backed mapping: the program, the loader, the libraries) and NT_PRFPREG (the
//! 512-byte FXSAVE area); then an NT_PRSTATUS and an NT_PRFPREG for each other thread of the process (`LinuxMachine::core_threads`: the
//! crashing thread first, as Linux writes it), so gdb's `info threads` and `thread apply all bt` read them. Poisoned pages
//! are left out of the PT_LOADs (a mapping is split around them; gdb then reports them unreadable, which is the
//! truth) and listed in a note named "TANDEM" of type `NT_TANDEM_POISONED_PAGES` (their page addresses).
//! Pages without read permission are dumped with p_filesz 0, as Linux does.
//!
//! The header and program headers are written by object's ELF writer (object::write::elf::Writer); the note
//! payloads are the kernel's structures (include/uapi/linux/elfcore.h, arch/x86/include/asm/user_64.h), laid out
//! here byte by byte.
//!
//! Taking a dump reads the guest through `&self` only: it cannot change the guest's state (a test checks the
//! state hash).

use super::Hypervisor;
use crate::cpu::{RAX, RBP, RBX, RCX, RDI, RDX, RSI, RSP};
use crate::linux::abi::SIGBUS;
use crate::linux::{
    fxsave_registers, CoreThread, Host, SigInfo, Termination, GUEST_GID, GUEST_PID, GUEST_PPID,
    GUEST_UID,
};
use crate::memory::{Perms, PAGE_SIZE};
use object::elf;
use object::write::elf::{FileHeader, ProgramHeader, Writer};

pub const NT_PRSTATUS: u32 = 1;
pub const NT_PRFPREG: u32 = 2;
pub const NT_PRPSINFO: u32 = 3;
pub const NT_AUXV: u32 = 6;
pub const NT_SIGINFO: u32 = 0x5349_4749;
pub const NT_FILE: u32 = 0x4649_4c45;
/// tandem's own note ("TANDEM"): the page addresses of poisoned pages left out of the dump.
pub const NT_TANDEM_POISONED_PAGES: u32 = 0x504f_4953; // "POIS"

/// Why a core could not be written.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("the ELF writer failed: {0}")]
    Writer(#[from] object::write::Error),
}

/// A core file and what was left out of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoreDump {
    pub bytes: Vec<u8>,
    /// Page addresses of mapped pages whose frame is poisoned: not in any PT_LOAD.
    pub poisoned_pages: Vec<u64>,
    pub load_segments: usize,
}

fn note(out: &mut Vec<u8>, name: &str, kind: u32, desc: &[u8]) {
    let name_bytes = name.len() + 1;
    out.extend_from_slice(&(name_bytes as u32).to_le_bytes());
    out.extend_from_slice(&(desc.len() as u32).to_le_bytes());
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    while out.len() % 4 != 0 {
        out.push(0);
    }
    out.extend_from_slice(desc);
    while out.len() % 4 != 0 {
        out.push(0);
    }
}

fn put<const N: usize>(buf: &mut [u8], at: usize, bytes: [u8; N]) {
    buf[at..at + N].copy_from_slice(&bytes);
}

/// NT_PRSTATUS of one thread: struct elf_prstatus, 336 bytes on x86-64 (the signal, the ids, the 27
/// registers in user_regs_struct order). Every thread carries the signal that caused the dump, as Linux's.
fn prstatus(t: &CoreThread, info: &SigInfo) -> Vec<u8> {
    let mut prstatus = vec![0u8; 336];
    put(&mut prstatus, 0, info.signo.to_le_bytes());
    put(&mut prstatus, 4, info.code.to_le_bytes());
    put(&mut prstatus, 12, (info.signo as i16).to_le_bytes());
    put(&mut prstatus, 16, t.signals.pending.to_le_bytes());
    put(&mut prstatus, 24, t.signals.blocked.to_le_bytes());
    put(&mut prstatus, 32, t.tid.0.to_le_bytes());
    let ppid = if t.pid.0 == GUEST_PID { GUEST_PPID } else { 0 };
    put(&mut prstatus, 36, ppid.to_le_bytes());
    put(&mut prstatus, 40, t.pid.0.to_le_bytes());
    put(&mut prstatus, 44, t.pid.0.to_le_bytes());
    let r = &t.regs;
    let g = &r.gpr;
    // user_regs_struct (arch/x86/include/asm/user_64.h).
    let regs: [u64; 27] = [
        g[15],
        g[14],
        g[13],
        g[12],
        g[RBP],
        g[RBX],
        g[11],
        g[10],
        g[9],
        g[8],
        g[RAX],
        g[RCX],
        g[RDX],
        g[RSI],
        g[RDI],
        u64::MAX, // orig_rax: not in a syscall
        r.rip,
        0x33,
        r.rflags,
        g[RSP],
        0x2b,
        r.fs_base,
        r.gs_base,
        0,
        0,
        0,
        0,
    ];
    for (i, v) in regs.iter().enumerate() {
        put(&mut prstatus, 112 + 8 * i, v.to_le_bytes());
    }
    put(&mut prstatus, 328, 1i32.to_le_bytes()); // pr_fpvalid
    prstatus
}

/// One PT_LOAD: a run of pages with equal permissions and no poisoned page.
struct Load {
    start: u64,
    pages: Vec<Option<[u8; PAGE_SIZE]>>,
    perms: Perms,
}

impl<H: Host> Hypervisor<H> {
    /// The signal a core reports and its siginfo: the killing signal, or 0 for a dump on request.
    fn core_siginfo(&self) -> SigInfo {
        let signo = match self.guest.termination() {
            Some(Termination::Signaled { signal, .. }) => *signal,
            _ => 0,
        };
        match self.guest.stats().last_fault {
            Some(info) if info.signo == signo && signo != 0 => info,
            _ => SigInfo {
                signo,
                code: 0,
                addr: (GUEST_PID as u32 as u64) | (GUEST_UID << 32),
                value: 0,
            },
        }
    }

    /// Writes an ELF core of the guest as it is now.
    pub fn core_dump(&self) -> Result<CoreDump, CoreError> {
        let mem = self.guest.memory();

        let info = self.core_siginfo();

        let threads = self.guest.core_threads();
        debug_assert!(!threads.is_empty(), "the running thread is always there");

        // NT_PRPSINFO: struct elf_prpsinfo, 136 bytes.
        let mut prpsinfo = vec![0u8; 136];
        prpsinfo[1] = b'R';
        put(&mut prpsinfo, 16, (GUEST_UID as u32).to_le_bytes());
        put(&mut prpsinfo, 20, (GUEST_GID as u32).to_le_bytes());
        put(&mut prpsinfo, 24, GUEST_PID.to_le_bytes());
        put(&mut prpsinfo, 28, GUEST_PPID.to_le_bytes());
        put(&mut prpsinfo, 32, GUEST_PID.to_le_bytes());
        put(&mut prpsinfo, 36, GUEST_PID.to_le_bytes());
        let config = self.guest.config();
        // pr_fname: the running program's name (the new one after an execve). FIXME: pr_psargs is still the
        // first program's argv; the kernel does not keep an exec'd program's arguments.
        let exe = self.guest.exe_path();
        let fname = exe.rsplit(|&b| b == b'/').next().unwrap_or(exe);
        let n = fname.len().min(15);
        prpsinfo[40..40 + n].copy_from_slice(&fname[..n]);
        let psargs: Vec<u8> = config.argv.join(&b' ');
        let n = psargs.len().min(79);
        prpsinfo[56..56 + n].copy_from_slice(&psargs[..n]);

        // NT_SIGINFO: the 128-byte siginfo_t.
        let mut siginfo = vec![0u8; 128];
        put(&mut siginfo, 0, info.signo.to_le_bytes());
        put(&mut siginfo, 8, info.code.to_le_bytes());
        put(&mut siginfo, 16, info.addr.to_le_bytes());
        if info.signo == SIGBUS && (info.code == 4 || info.code == 5) {
            put(&mut siginfo, 24, 12i16.to_le_bytes());
        }

        // NT_AUXV: the running process's, so after an execve the new program's (as /proc/PID/auxv).
        let auxv = self.guest.auxv_bytes();

        // NT_FILE: every file-backed mapping (start, end, offset in pages), then the names, as
        // fs/binfmt_elf.c's fill_files_note writes them: gdb finds the program and the shared libraries there.
        let page = PAGE_SIZE as u64;
        let files = self.guest.mapped_files();
        let mut nt_file = Vec::new();
        nt_file.extend_from_slice(&(files.len() as u64).to_le_bytes());
        nt_file.extend_from_slice(&page.to_le_bytes());
        for f in &files {
            for v in [f.start, f.end, f.offset / page] {
                nt_file.extend_from_slice(&v.to_le_bytes());
            }
        }
        for f in &files {
            nt_file.extend_from_slice(&f.path);
            nt_file.push(0);
        }

        // Memory: runs of readable, unpoisoned pages with equal permissions.
        let mut loads: Vec<Load> = Vec::new();
        let mut poisoned_pages = Vec::new();
        for region in mem.regions() {
            let mut addr = region.start;
            let mut current: Option<Load> = None;
            while addr < region.end {
                let frame = mem.frame_of(addr);
                let poisoned = frame.is_some_and(|f| mem.frame_is_poisoned(f));
                if poisoned {
                    poisoned_pages.push(addr);
                    if let Some(l) = current.take() {
                        loads.push(l);
                    }
                } else {
                    let bytes = if region.perms.contains(Perms::READ) {
                        frame.and_then(|f| mem.frame_bytes(f)).copied()
                    } else {
                        None
                    };
                    current
                        .get_or_insert_with(|| Load {
                            start: addr,
                            pages: Vec::new(),
                            perms: region.perms,
                        })
                        .pages
                        .push(bytes);
                }
                addr += page;
            }
            if let Some(l) = current.take() {
                loads.push(l);
            }
        }

        // As fs/binfmt_elf.c writes them: the dumping thread's NT_PRSTATUS, the process notes, its NT_PRFPREG;
        // then each other thread's NT_PRSTATUS and NT_PRFPREG.
        let mut notes = Vec::new();
        for (i, t) in threads.iter().enumerate() {
            note(&mut notes, "CORE", NT_PRSTATUS, &prstatus(t, &info));
            if i == 0 {
                note(&mut notes, "CORE", NT_PRPSINFO, &prpsinfo);
                note(&mut notes, "CORE", NT_SIGINFO, &siginfo);
                note(&mut notes, "CORE", NT_AUXV, &auxv);
                note(&mut notes, "CORE", NT_FILE, &nt_file);
            }
            note(&mut notes, "CORE", NT_PRFPREG, &fxsave_registers(&t.regs));
        }
        if !poisoned_pages.is_empty() {
            let list: Vec<u8> = poisoned_pages
                .iter()
                .flat_map(|a| a.to_le_bytes())
                .collect();
            note(&mut notes, "TANDEM", NT_TANDEM_POISONED_PAGES, &list);
        }

        let mut bytes = Vec::new();
        let mut w = Writer::new(object::Endianness::Little, true, &mut bytes);
        w.reserve_file_header();
        w.reserve_program_headers(1 + loads.len() as u32);
        let notes_offset = w.reserve(notes.len() as u64, 4);
        let file_size = |l: &Load| {
            if l.perms.contains(Perms::READ) {
                l.pages.len() as u64 * page
            } else {
                0
            }
        };
        let load_offsets: Vec<u64> = loads
            .iter()
            .map(|l| match file_size(l) {
                0 => 0,
                size => w.reserve(size, page),
            })
            .collect();
        w.write_file_header(&FileHeader {
            os_abi: elf::ELFOSABI_NONE,
            abi_version: 0,
            e_type: elf::ET_CORE,
            e_machine: elf::EM_X86_64,
            e_entry: 0,
            e_flags: elf::FileFlags(0),
        })?;
        w.write_align_program_headers();
        w.write_program_header(&ProgramHeader {
            p_type: elf::PT_NOTE,
            p_flags: elf::ProgramFlags(0),
            p_offset: notes_offset,
            p_vaddr: 0,
            p_paddr: 0,
            p_filesz: notes.len() as u64,
            p_memsz: 0,
            p_align: 4,
        });
        for (l, &offset) in loads.iter().zip(&load_offsets) {
            let mut flags = 0u32;
            if l.perms.contains(Perms::READ) {
                flags |= elf::PF_R.0;
            }
            if l.perms.contains(Perms::WRITE) {
                flags |= elf::PF_W.0;
            }
            if l.perms.contains(Perms::EXEC) {
                flags |= elf::PF_X.0;
            }
            w.write_program_header(&ProgramHeader {
                p_type: elf::PT_LOAD,
                p_flags: elf::ProgramFlags(flags),
                p_offset: offset,
                p_vaddr: l.start,
                p_paddr: 0,
                p_filesz: file_size(l),
                p_memsz: l.pages.len() as u64 * page,
                p_align: page,
            });
        }
        w.pad_until(notes_offset);
        w.write(&notes);
        let zero = [0u8; PAGE_SIZE];
        for (l, &offset) in loads.iter().zip(&load_offsets) {
            if file_size(l) == 0 {
                continue;
            }
            w.pad_until(offset);
            for p in &l.pages {
                w.write(p.as_ref().unwrap_or(&zero));
            }
        }
        Ok(CoreDump {
            bytes,
            poisoned_pages,
            load_segments: loads.len(),
        })
    }
}
