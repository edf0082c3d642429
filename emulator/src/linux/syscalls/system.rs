//! Syscalls about the system and the process's identity and limits: uname, getres[ug]id, capget and capset,
//! prlimit, sysinfo, the memory locks (mlock and its kin), protection keys, prctl, arch_prctl, getrandom.

use super::*;
use crate::linux::{Pid, Tid};

impl<H: Host> LinuxMachine<H> {
    // ---------------------------------------------------------------------------------------------------------
    // Process, identity, limits.

    pub(in crate::linux) fn sys_uname(&mut self, buf: u64) -> SysResult {
        let mut b = [0u8; 390];
        let fields: [&[u8]; 6] = [
            b"Linux",
            b"tandem",
            b"6.1.0-tandem",
            b"#1 SMP PREEMPT_DYNAMIC tandem",
            b"x86_64",
            b"(none)",
        ];
        for (i, f) in fields.iter().enumerate() {
            b[i * 65..i * 65 + f.len()].copy_from_slice(f);
        }
        self.write_mem(buf, &b)?;
        Ok(0)
    }

    pub(in crate::linux) fn sys_getresid(&mut self, a: [u64; 6], id: u64) -> SysResult {
        for &p in &a[..3] {
            self.write_u32(p, id as u32)?;
        }
        Ok(0)
    }

    pub(in crate::linux) fn sys_prlimit(
        &mut self,
        pid: i32,
        resource: u32,
        new: u64,
        old: u64,
    ) -> SysResult {
        if pid != 0 && pid != self.proc.pid.0 {
            return Err(ESRCH);
        }
        const RLIMIT_STACK: u32 = 3;
        const RLIMIT_NOFILE: u32 = 7;
        if resource > 15 {
            return Err(EINVAL);
        }
        let (cur, max) = match resource {
            RLIMIT_STACK => (crate::linux::elf::STACK_SIZE_BYTES, u64::MAX),
            RLIMIT_NOFILE => (
                crate::linux::fd::FDS_MAX as u64,
                crate::linux::fd::FDS_MAX as u64,
            ),
            _ => (u64::MAX, u64::MAX),
        };
        if old != 0 {
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&cur.to_le_bytes());
            b[8..].copy_from_slice(&max.to_le_bytes());
            self.write_mem(old, &b)?;
        }
        // New limits are accepted and not enforced.
        let _ = new;
        Ok(0)
    }

    /// capget(2): the guest runs as an unprivileged user (uid 1000), so its capability sets are empty. An unknown
    /// version is answered with the one the kernel prefers (3), and EINVAL unless `data` is null (the probe libcap
    /// makes); a null `data` asks nothing more (kernel/capability.c).
    pub(in crate::linux) fn sys_capget(&mut self, header: u64, data: u64) -> SysResult {
        let words = match self.capability_words(header)? {
            Some(words) => words,
            None if data == 0 => return Ok(0),
            None => return Err(EINVAL),
        };
        if data == 0 {
            return Ok(0);
        }
        let pid = self.read_u32_guest(header + 4)? as i32;
        if pid < 0 {
            return Err(EINVAL);
        }
        if pid != 0 && self.process_ref(Pid(pid)).is_none() && self.thread_ref(Tid(pid)).is_none() {
            return Err(ESRCH);
        }
        self.write_mem(data, &vec![0u8; 12 * words])?;
        Ok(0)
    }

    /// capset(2): a process sets only its own sets, and an unprivileged one can only keep them empty.
    pub(in crate::linux) fn sys_capset(&mut self, header: u64, data: u64) -> SysResult {
        let words = self.capability_words(header)?.ok_or(EINVAL)?;
        let pid = self.read_u32_guest(header + 4)? as i32;
        if pid != 0 && pid != self.proc.pid.0 {
            return Err(EPERM);
        }
        let sets = self.read_mem(data, 12 * words as u64)?;
        if sets.iter().any(|&b| b != 0) {
            return Err(EPERM);
        }
        Ok(0)
    }

    /// The number of {effective, permitted, inheritable} words a capability header's version asks for; None for
    /// an unknown version, after writing the preferred one into the header.
    fn capability_words(&mut self, header: u64) -> Result<Option<usize>, Errno> {
        const V1: u32 = 0x1998_0330;
        const V2: u32 = 0x2007_1026;
        const V3: u32 = 0x2008_0522;
        match self.read_u32_guest(header)? {
            V1 => Ok(Some(1)),
            V2 | V3 => Ok(Some(2)),
            _ => {
                self.write_u32(header, V3)?;
                Ok(None)
            }
        }
    }

    /// mlock(2), mlock2(2) and munlock(2): nothing is ever paged out here, so locking only checks its range
    /// (rounded out to pages) is mapped, as the kernel does (ENOMEM otherwise). RLIMIT_MEMLOCK is unlimited.
    pub(in crate::linux) fn sys_mlock(&mut self, addr: u64, len: u64, flags: u64) -> SysResult {
        const MLOCK_ONFAULT: u64 = 1;
        if flags & !MLOCK_ONFAULT != 0 {
            return Err(EINVAL);
        }
        let start = addr & !(PAGE_SIZE as u64 - 1);
        let end = addr
            .checked_add(len)
            .and_then(|e| e.checked_next_multiple_of(PAGE_SIZE as u64))
            .ok_or(ENOMEM)?;
        let mut page = start;
        while page < end {
            if !self.machine.cpu.mem.is_mapped(page) {
                return Err(ENOMEM);
            }
            page += PAGE_SIZE as u64;
        }
        Ok(0)
    }

    /// mlockall(2): MCL_CURRENT or MCL_FUTURE, optionally with MCL_ONFAULT.
    pub(in crate::linux) fn sys_mlockall(&mut self, flags: u64) -> SysResult {
        const MCL_CURRENT: u64 = 1;
        const MCL_FUTURE: u64 = 2;
        const MCL_ONFAULT: u64 = 4;
        if flags & !(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) != 0
            || flags & (MCL_CURRENT | MCL_FUTURE) == 0
        {
            return Err(EINVAL);
        }
        Ok(0)
    }

    /// pkey_alloc(2): the emulated CPU has no protection keys (CPUID leaf 7 says no PKU), and Linux on such a
    /// CPU finds a key but cannot set its rights: EINVAL, as for bad arguments (measured on Linux 6.x).
    pub(in crate::linux) fn sys_pkey_alloc(&mut self, _flags: u64, _access: u64) -> SysResult {
        Err(EINVAL)
    }

    /// pkey_mprotect(2) with key -1 is mprotect(2); any other key was never allocated.
    pub(in crate::linux) fn sys_pkey_mprotect(
        &mut self,
        addr: u64,
        len: u64,
        prot: u64,
        pkey: i32,
    ) -> SysResult {
        if pkey != -1 {
            return Err(EINVAL);
        }
        self.sys_mprotect(addr, len, prot)
    }

    pub(in crate::linux) fn sys_sysinfo(&mut self, buf: u64) -> SysResult {
        let mut b = [0u8; 112];
        let uptime = (MONOTONIC_START_NS + self.elapsed_ns()) / 1_000_000_000;
        let total: u64 = 4 << 30;
        let used = self.machine.cpu.mem.mapped_page_count() as u64 * PAGE_SIZE as u64;
        b[0..8].copy_from_slice(&uptime.to_le_bytes());
        b[32..40].copy_from_slice(&total.to_le_bytes());
        b[40..48].copy_from_slice(&total.saturating_sub(used).to_le_bytes());
        b[80..82].copy_from_slice(&1u16.to_le_bytes()); // procs
        b[104..108].copy_from_slice(&1u32.to_le_bytes()); // mem_unit
        self.write_mem(buf, &b)?;
        Ok(0)
    }

    pub(in crate::linux) fn sys_getrandom(&mut self, buf: u64, len: u64) -> SysResult {
        let len = len.min(33_554_431);
        let mut b = vec![0u8; len as usize];
        self.host.fill_random(&mut b);
        self.write_mem(buf, &b)?;
        Ok(len)
    }
}
