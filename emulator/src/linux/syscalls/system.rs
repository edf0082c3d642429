//! Syscalls about the system and the process's identity and limits: uname, getres[ug]id, prlimit, sysinfo,
//! prctl, arch_prctl, getrandom.

use super::*;

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
