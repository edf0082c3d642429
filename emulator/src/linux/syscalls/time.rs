//! Syscalls that read the clock: clock_gettime, clock_getres, gettimeofday, time, times, getrusage. Time is
//! virtual (see `LinuxMachine::elapsed_ns`); the sleeps, which block, are in tasks.rs.

use super::*;

impl<H: Host> LinuxMachine<H> {
    // ---------------------------------------------------------------------------------------------------------
    // Time.

    pub(in crate::linux) fn clock_ns(&mut self, clock: i32) -> Result<u64, Errno> {
        let elapsed = self.elapsed_ns();
        let v = match clock {
            0 | 8 | 11 => self.config.epoch_ns.saturating_add(elapsed), // REALTIME, REALTIME_ALARM, TAI
            1 | 4 | 5 | 6 | 7 | 9 => MONOTONIC_START_NS.saturating_add(elapsed), // MONOTONIC and friends
            2 | 3 => self
                .machine
                .cpu
                .icount
                .saturating_mul(self.config.ns_per_insn), // CPU time
            _ => return Err(EINVAL),
        };
        Ok(self.host.clock_ns(v))
    }

    pub(in crate::linux) fn sys_clock_gettime(&mut self, clock: i32, ts: u64) -> SysResult {
        let ns = self.clock_ns(clock)?;
        self.write_timespec(ts, ns)?;
        Ok(0)
    }

    pub(in crate::linux) fn sys_clock_getres(&mut self, ts: u64) -> SysResult {
        if ts != 0 {
            self.write_timespec(ts, 1)?;
        }
        Ok(0)
    }

    pub(in crate::linux) fn sys_gettimeofday(&mut self, tv: u64) -> SysResult {
        if tv != 0 {
            let ns = self.clock_ns(0)?;
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&(ns / 1_000_000_000).to_le_bytes());
            b[8..].copy_from_slice(&(ns % 1_000_000_000 / 1000).to_le_bytes());
            self.write_mem(tv, &b)?;
        }
        Ok(0)
    }

    pub(in crate::linux) fn sys_time(&mut self, out: u64) -> SysResult {
        let secs = self.clock_ns(0)? / 1_000_000_000;
        if out != 0 {
            self.write_u64(out, secs)?;
        }
        Ok(secs)
    }

    pub(in crate::linux) fn sys_times(&mut self, buf: u64) -> SysResult {
        let ticks = self.elapsed_ns() / 10_000_000;
        if buf != 0 {
            let cpu_ticks = self
                .machine
                .cpu
                .icount
                .saturating_mul(self.config.ns_per_insn)
                / 10_000_000;
            let mut b = [0u8; 32];
            b[..8].copy_from_slice(&cpu_ticks.to_le_bytes());
            self.write_mem(buf, &b)?;
        }
        Ok(ticks)
    }

    pub(in crate::linux) fn sys_getrusage(&mut self, buf: u64) -> SysResult {
        let ns = self
            .machine
            .cpu
            .icount
            .saturating_mul(self.config.ns_per_insn);
        let mut b = [0u8; 144];
        b[..8].copy_from_slice(&(ns / 1_000_000_000).to_le_bytes());
        b[8..16].copy_from_slice(&(ns % 1_000_000_000 / 1000).to_le_bytes());
        let rss_kib = self.machine.cpu.mem.mapped_page_count() as u64 * 4;
        b[32..40].copy_from_slice(&rss_kib.to_le_bytes());
        self.write_mem(buf, &b)?;
        Ok(0)
    }
}
