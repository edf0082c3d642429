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
        self.check_task_target(pid)?;
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

    /// The pid a capability, scheduling or priority call names: negative is EINVAL, 0 is the caller, another
    /// must be a live process or thread (ESRCH).
    fn check_task_target(&self, pid: i32) -> Result<(), Errno> {
        if pid < 0 {
            return Err(EINVAL);
        }
        if pid != 0 && self.process_ref(Pid(pid)).is_none() && self.thread_ref(Tid(pid)).is_none() {
            return Err(ESRCH);
        }
        Ok(())
    }

    /// sched_getscheduler(2): every task is SCHED_OTHER (0) here.
    pub(in crate::linux) fn sys_sched_getscheduler(&mut self, pid: u64) -> SysResult {
        self.check_task_target(pid as i32)?;
        Ok(0)
    }

    /// sched_getparam(2): SCHED_OTHER's static priority, 0.
    pub(in crate::linux) fn sys_sched_getparam(&mut self, pid: u64, param: u64) -> SysResult {
        if param == 0 {
            return Err(EINVAL);
        }
        self.check_task_target(pid as i32)?;
        self.write_u32(param, 0)?;
        Ok(0)
    }

    /// sched_get_priority_max(2) and sched_get_priority_min(2): 1..99 for the real-time policies (FIFO 1, RR 2),
    /// 0 for OTHER, BATCH, IDLE, DEADLINE and EXT (0, 3, 5, 6, 7; EXT since Linux 6.12).
    pub(in crate::linux) fn sys_sched_priority_bound(
        &mut self,
        policy: u64,
        max: bool,
    ) -> SysResult {
        match policy as i32 {
            1 | 2 => Ok(if max { 99 } else { 1 }),
            0 | 3 | 5..=7 => Ok(0),
            _ => Err(EINVAL),
        }
    }

    /// sched_getattr(2): SCHED_OTHER, nice 0, no flags, no utilisation clamps, in as much of `struct sched_attr` as
    /// the caller's size holds (SCHED_ATTR_SIZE_VER0, 48 bytes, up to VER1's 56; larger sizes get 56 and the size
    /// field says so). sched_runtime is 0, where Linux may report its fair scheduler's slice.
    pub(in crate::linux) fn sys_sched_getattr(
        &mut self,
        pid: u64,
        attr: u64,
        size: u64,
        flags: u64,
    ) -> SysResult {
        const VER0: u64 = 48;
        const VER1: u64 = 56;
        if attr == 0 || flags != 0 || !(VER0..=PAGE_SIZE as u64).contains(&size) {
            return Err(EINVAL);
        }
        self.check_task_target(pid as i32)?;
        let len = size.min(VER1);
        let mut b = vec![0u8; len as usize];
        b[0..4].copy_from_slice(&(len as u32).to_le_bytes());
        self.write_mem(attr, &b)?;
        Ok(0)
    }

    /// getpriority(2): the raw syscall answers 20 - nice, and every task's nice value is 0 here.
    pub(in crate::linux) fn sys_getpriority(&mut self, which: u64, who: u64) -> SysResult {
        const PRIO_PROCESS: u64 = 0;
        const PRIO_USER: u64 = 2;
        if which > PRIO_USER {
            return Err(EINVAL);
        }
        if which == PRIO_PROCESS {
            self.check_task_target(who as i32)?;
        }
        Ok(20)
    }

    /// get_mempolicy(2): one NUMA node (0) and the default policy everywhere (MPOL_DEFAULT, 0, whose node mask is
    /// empty); MPOL_F_MEMS_ALLOWED gives the node mask {0}, MPOL_F_ADDR asks about a mapped address (EFAULT
    /// otherwise), with MPOL_F_NODE the node it is on. mm/mempolicy.c, do_get_mempolicy and copy_nodes_to_user.
    pub(in crate::linux) fn sys_get_mempolicy(
        &mut self,
        mode: u64,
        nodemask: u64,
        maxnode: u64,
        addr: u64,
        flags: u64,
    ) -> SysResult {
        const MPOL_F_NODE: u64 = 1;
        const MPOL_F_ADDR: u64 = 2;
        const MPOL_F_MEMS_ALLOWED: u64 = 4;
        if flags & !(MPOL_F_NODE | MPOL_F_ADDR | MPOL_F_MEMS_ALLOWED) != 0 {
            return Err(EINVAL);
        }
        if nodemask != 0 && maxnode < 1 {
            return Err(EINVAL);
        }
        let mut mask_bits = 0u64;
        if flags & MPOL_F_MEMS_ALLOWED != 0 {
            if flags & (MPOL_F_NODE | MPOL_F_ADDR) != 0 {
                return Err(EINVAL);
            }
            mask_bits = 1;
        } else if flags & MPOL_F_ADDR != 0 {
            if !self
                .machine
                .cpu
                .mem
                .is_mapped(addr & !(PAGE_SIZE as u64 - 1))
            {
                return Err(EFAULT);
            }
        } else if flags & MPOL_F_NODE != 0 || addr != 0 {
            // MPOL_F_NODE alone asks for the next interleave node, and there is no interleave policy.
            return Err(EINVAL);
        }
        if mode != 0 {
            self.write_u32(mode, 0)?;
        }
        if nodemask != 0 {
            let bytes = (maxnode - 1).div_ceil(64) * 8;
            if bytes > PAGE_SIZE as u64 {
                return Err(EINVAL);
            }
            let mut b = vec![0u8; bytes as usize];
            if let Some(first) = b.get_mut(0..8) {
                first.copy_from_slice(&mask_bits.to_le_bytes());
            }
            self.write_mem(nodemask, &b)?;
        }
        Ok(0)
    }

    /// set_mempolicy(2) and mbind(2): with one node every policy places memory alike, so a valid mode (DEFAULT
    /// through PREFERRED_MANY, 0..=5, with the mode flags STATIC_NODES, RELATIVE_NODES, NUMA_BALANCING) is
    /// accepted and nothing changes; get_mempolicy keeps answering MPOL_DEFAULT.
    pub(in crate::linux) fn sys_set_mempolicy(&mut self, mode: u64) -> SysResult {
        const MODE_FLAGS: u64 = (1 << 15) | (1 << 14) | (1 << 13);
        if (mode & !MODE_FLAGS) > 5 {
            return Err(EINVAL);
        }
        Ok(0)
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
        if !self.machine.cpu.mem.range_is_mapped(start, end - start) {
            return Err(ENOMEM);
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
