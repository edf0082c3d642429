//! Syscalls of the address space: mmap, munmap, mprotect, mremap and brk, following mmap(2), mremap(2) and
//! brk(2). Every mapped page counts against the guest memory limit, checked before anything changes.

use super::*;
use crate::linux::mapnames::{FileBytes, MapFile};

impl<H: Host> LinuxMachine<H> {
    // ---------------------------------------------------------------------------------------------------------
    // Memory.

    /// The highest free range of `len` bytes below MMAP_TOP.
    pub(in crate::linux) fn find_free(&self, len: u64) -> Option<u64> {
        let mut end = MMAP_TOP;
        for r in self.machine.cpu.mem.regions().iter().rev() {
            if r.start >= end {
                continue;
            }
            if r.end <= end && end - r.end >= len {
                return Some(end - len);
            }
            end = end.min(r.start);
        }
        (end >= MMAP_MIN + len).then(|| end - len)
    }

    pub(in crate::linux) fn sys_mmap(
        &mut self,
        addr: u64,
        len: u64,
        prot: u64,
        flags: u64,
        fd: i32,
        offset: u64,
    ) -> SysResult {
        // Every mapped page holds a frame, so a mapping beyond the guest memory limit (`Memory::frames_max`) is
        // ENOMEM here, checked before anything changes, never a failure when the guest touches it later.
        let len = match page_up(len) {
            Some(0) | None => return Err(EINVAL),
            Some(l) if l > crate::linux::elf::IMAGE_SIZE_BYTES_MAX => return Err(ENOMEM),
            Some(l) => l,
        };
        if offset & PAGE_MASK != 0 {
            return Err(EINVAL);
        }
        let fixed = flags & (MAP_FIXED | MAP_FIXED_NOREPLACE) != 0;
        let mem = &self.machine.cpu.mem;
        let target = if fixed {
            if addr & PAGE_MASK != 0
                || addr
                    .checked_add(len)
                    .is_none_or(|e| e > crate::linux::elf::USER_END)
            {
                return Err(EINVAL);
            }
            if flags & MAP_FIXED_NOREPLACE != 0 && !mem.range_is_free(addr, len) {
                return Err(EEXIST);
            }
            addr
        } else if addr != 0
            && addr & PAGE_MASK == 0
            && addr >= MMAP_MIN
            && addr.checked_add(len).is_some_and(|e| e <= MMAP_TOP)
            && mem.range_is_free(addr, len)
        {
            addr
        } else {
            self.find_free(len).ok_or(ENOMEM)?
        };
        let perms = perms_of(prot);
        if flags & MAP_ANONYMOUS != 0 {
            self.machine
                .cpu
                .mem
                .map_anonymous(target, len, perms)
                .map_err(|_| ENOMEM)?;
            self.forget_shared_maps(target, len);
            self.proc.map_names.forget(target, target + len);
            if flags & MAP_SHARED != 0 {
                // Shared anonymous memory (shmem): a nameless file the mapping is kept coherent with, which a
                // fork's child maps too, so parent and child see each other's stores (files.rs).
                let now = self.now();
                let attrs = vfs::Attrs {
                    mode: 0o600,
                    uid: GUEST_UID as u32,
                    gid: GUEST_GID as u32,
                    atime: now,
                    mtime: now,
                    ctime: now,
                    // Unique among the run's shared objects (one syscall per instruction count), and far from
                    // the overlay's inode numbers: the futex key of its words.
                    ino: 1 << 63 | self.icount(),
                };
                let file = Shared::new(vfs::FileData::new(vec![0; len as usize], attrs));
                self.proc.shared_maps.push(crate::linux::files::SharedMap {
                    start: target,
                    len,
                    file,
                    offset: 0,
                    writable: true,
                    // As Linux names shmem mappings ("/dev/zero (deleted)"): on no volume.
                    path: self.vfs.path_of(b"/dev/zero"),
                });
            }
            return Ok(target);
        }
        let desc = self.proc.fds.get(fd)?;
        let mut shared = None;
        let mut name: Option<(vfs::GuestPath, crate::linux::vfs::SharedFile)> = None;
        let bytes = match &desc.borrow().kind {
            FileKind::Regular { data, path } => {
                name = Some((path.clone(), data.clone()));
                let d = desc.borrow();
                // A file mapping needs read access, and a shared writable one write access (mmap(2) EACCES).
                if !d.readable() {
                    return Err(EACCES);
                }
                if flags & MAP_SHARED != 0 {
                    if perms.contains(Perms::WRITE) && (!d.writable() || d.flags & O_APPEND != 0) {
                        return Err(EACCES);
                    }
                    shared = Some((data.clone(), d.writable()));
                }
                let data = data.borrow();
                let start = (offset as usize).min(data.bytes.len());
                let end = start.saturating_add(len as usize).min(data.bytes.len());
                data.bytes[start..end].to_vec()
            }
            FileKind::Device(Device::Zero) => Vec::new(),
            _ => return Err(EACCES),
        };
        self.machine
            .cpu
            .mem
            .map_file_bytes(target, len, &bytes, perms)
            .map_err(|_| ENOMEM)?;
        self.forget_shared_maps(target, len);
        let path = name.as_ref().map(|(p, _)| p.clone());
        match name {
            Some((path, data)) => {
                // What fstat of the descriptor shows (also for a file unlinked since it was opened).
                let contents = Some(FileBytes(data.borrow().bytes.clone()));
                let st = self.vfs.stat(&path, &vfs::Node::MemoryFile(data));
                let file = MapFile {
                    path: path.text(),
                    dev: st.dev,
                    ino: st.ino,
                    contents,
                };
                self.proc.map_names.name(target, target + len, offset, file);
            }
            None => self.proc.map_names.forget(target, target + len),
        }
        // Shared: stores reach the file and file changes reach the pages (files.rs).
        if let (Some((file, writable)), Some(path)) = (shared, path) {
            self.proc.shared_maps.push(crate::linux::files::SharedMap {
                start: target,
                len,
                file,
                offset,
                writable,
                path,
            });
        }
        Ok(target)
    }

    /// Names the segments of a program just loaded and of its interpreter (canonical guest paths), with the
    /// bytes they were loaded from. Device and inode come from what the file system already knows
    /// (`Vfs::stat_known`; 0 otherwise): a lookup here would be a host call that traces recorded before did not
    /// make.
    pub(in crate::linux) fn name_image(
        &mut self,
        program: &[elf::FileRange],
        interpreter_ranges: &[elf::FileRange],
        interpreter: Option<&super::processes::Interpreter>,
    ) {
        let exe = (self.proc.exe_path.clone(), self.proc.exe.clone());
        let mut images = vec![(program, exe)];
        if let Some(i) = interpreter {
            images.push((interpreter_ranges, (i.canonical.clone(), i.bytes.clone())));
        }
        for (ranges, (path, bytes)) in images {
            let guest = self.vfs.path_of(&path);
            let (dev, ino) = self
                .vfs
                .stat_known(&guest)
                .map_or((0, 0), |st| (st.dev, st.ino));
            let file = MapFile {
                path,
                dev,
                ino,
                contents: Some(FileBytes(bytes)),
            };
            for r in ranges {
                self.proc
                    .map_names
                    .name_bytes(r.start, r.end, r.offset, r.bytes_end, file.clone());
            }
        }
    }

    /// mremap moved or resized [old, old + old_len) to [new, new + new_len) (lengths as the guest gave them).
    pub(in crate::linux) fn map_names_moved(
        &mut self,
        old: u64,
        old_len: u64,
        new: u64,
        new_len: u64,
    ) {
        let (Some(old_len), Some(new_len)) = (page_up(old_len), page_up(new_len)) else {
            return;
        };
        if new == old {
            // Shrunk in place (the cut pages are unmapped) or grown with anonymous pages.
            if new_len < old_len {
                self.proc.map_names.forget(old + new_len, old + old_len);
            }
            return;
        }
        self.proc.map_names.moved(old, old_len, new);
    }

    pub(in crate::linux) fn sys_munmap(&mut self, addr: u64, len: u64) -> SysResult {
        let len = page_up(len).ok_or(EINVAL)?;
        if addr & PAGE_MASK != 0 || len == 0 {
            return Err(EINVAL);
        }
        self.machine.cpu.mem.unmap(addr, len).map_err(|_| EINVAL)?;
        self.forget_shared_maps(addr, len);
        self.proc.map_names.forget(addr, addr + len);
        Ok(0)
    }

    pub(in crate::linux) fn sys_mprotect(&mut self, addr: u64, len: u64, prot: u64) -> SysResult {
        let len = page_up(len).ok_or(ENOMEM)?;
        if addr & PAGE_MASK != 0 {
            return Err(EINVAL);
        }
        if len == 0 {
            return Ok(0);
        }
        self.check_shared_protect(addr, len, perms_of(prot))?;
        match self.machine.cpu.mem.protect(addr, len, perms_of(prot)) {
            Ok(true) => Ok(0),
            Ok(false) => Err(ENOMEM),
            Err(_) => Err(EINVAL),
        }
    }

    pub(in crate::linux) fn sys_mremap(
        &mut self,
        old: u64,
        old_len: u64,
        new_len: u64,
        flags: u64,
        new_addr: u64,
    ) -> SysResult {
        let old_len = page_up(old_len).ok_or(EINVAL)?;
        let new_len = match page_up(new_len) {
            Some(0) | None => return Err(EINVAL),
            Some(l) if l > crate::linux::elf::IMAGE_SIZE_BYTES_MAX => return Err(ENOMEM),
            Some(l) => l,
        };
        if old & PAGE_MASK != 0 || flags & MREMAP_FIXED != 0 {
            let _ = new_addr;
            return Err(EINVAL);
        }
        let mem = &mut self.machine.cpu.mem;
        let perms = mem.perms(old).ok_or(EFAULT)?;
        if (0..old_len / PAGE_SIZE as u64).any(|i| !mem.is_mapped(old + i * PAGE_SIZE as u64)) {
            return Err(EFAULT);
        }
        if new_len <= old_len {
            if new_len < old_len {
                mem.unmap(old + new_len, old_len - new_len)
                    .map_err(|_| EINVAL)?;
            }
            return Ok(old);
        }
        let grow = new_len - old_len;
        if old.checked_add(new_len).is_some_and(|e| e <= MMAP_TOP)
            && mem.range_is_free(old + old_len, grow)
        {
            mem.map_anonymous(old + old_len, grow, perms)
                .map_err(|_| ENOMEM)?;
            return Ok(old);
        }
        if flags & MREMAP_MAYMOVE == 0 {
            return Err(ENOMEM);
        }
        let target = self.find_free(new_len).ok_or(ENOMEM)?;
        let mem = &mut self.machine.cpu.mem;
        // The grown part must fit the memory limit before the old pages move: a failure leaves them in place.
        if grow / PAGE_SIZE as u64 > mem.frames_available() as u64 {
            return Err(ENOMEM);
        }
        mem.remap(old, target, old_len).map_err(|_| ENOMEM)?;
        mem.map_anonymous(target + old_len, grow, perms)
            .map_err(|_| ENOMEM)?;
        Ok(target)
    }

    pub(in crate::linux) fn sys_brk(&mut self, addr: u64) -> u64 {
        if addr < self.proc.brk_start || addr > self.proc.brk_start + BRK_BYTES_MAX {
            return self.proc.brk_current;
        }
        let old_end = page_up(self.proc.brk_current).unwrap_or(self.proc.brk_current);
        let new_end = page_up(addr).unwrap_or(addr);
        let mem = &mut self.machine.cpu.mem;
        if new_end > old_end {
            if !mem.range_is_free(old_end, new_end - old_end)
                || mem
                    .map_anonymous(old_end, new_end - old_end, Perms::RW)
                    .is_err()
            {
                return self.proc.brk_current;
            }
        } else if new_end < old_end && mem.unmap(new_end, old_end - new_end).is_err() {
            return self.proc.brk_current;
        }
        self.proc.brk_current = addr;
        addr
    }

    /// prctl(2): the thread name and the flags a lone process may ask about; anything else is EINVAL.
    pub(in crate::linux) fn sys_prctl(&mut self, option: u64, arg: u64) -> SysResult {
        const PR_SET_PDEATHSIG: u64 = 1;
        const PR_GET_DUMPABLE: u64 = 3;
        const PR_SET_DUMPABLE: u64 = 4;
        const PR_SET_NAME: u64 = 15;
        const PR_GET_NAME: u64 = 16;
        match option {
            PR_SET_PDEATHSIG | PR_SET_DUMPABLE => Ok(0),
            PR_GET_DUMPABLE => Ok(1),
            PR_SET_NAME => {
                let name = self.read_cstring(arg, 16)?;
                self.thread.name = name[..name.len().min(15)].to_vec();
                Ok(0)
            }
            PR_GET_NAME => {
                let mut b = [0u8; 16];
                b[..self.thread.name.len()].copy_from_slice(&self.thread.name);
                self.write_mem(arg, &b)?;
                Ok(0)
            }
            _ => Err(EINVAL),
        }
    }

    pub(in crate::linux) fn sys_arch_prctl(&mut self, code: u64, addr: u64) -> SysResult {
        const ARCH_SET_GS: u64 = 0x1001;
        const ARCH_SET_FS: u64 = 0x1002;
        const ARCH_GET_FS: u64 = 0x1003;
        const ARCH_GET_GS: u64 = 0x1004;
        match code {
            ARCH_SET_FS => self.machine.cpu.regs.fs_base = addr,
            ARCH_SET_GS => self.machine.cpu.regs.gs_base = addr,
            ARCH_GET_FS => self.write_u64(addr, self.machine.cpu.regs.fs_base)?,
            ARCH_GET_GS => self.write_u64(addr, self.machine.cpu.regs.gs_base)?,
            _ => return Err(EINVAL),
        }
        Ok(0)
    }
}
