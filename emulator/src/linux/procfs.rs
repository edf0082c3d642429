//! The files of /proc and /sys that programs read to learn about their machine and themselves: how many CPUs
//! (`--cpus`), how much memory (`--memory-max`), their own pid, state, threads and CPU time. Their contents
//! are made when the file is opened (Linux makes them when read; a program that reads one open file twice sees
//! the first contents again, which no tested program minds), from the guest kernel's state only, so they are a
//! function of the run like everything else the guest sees.
//!
//! What they say, and where it comes from:
//! - /proc/cpuinfo: one entry per CPU, the CPUID model's vendor, family, model, brand and feature flags (the
//!   flags are the CPUID bits, named as Linux names them), so a program that reads it and one that executes
//!   CPUID agree;
//! - /proc/stat: per-CPU time (all of the guest's CPU time on cpu0, where its tasks run one at a time), the
//!   context switches, processes created, tasks running and blocked;
//! - /proc/meminfo: MemTotal is the guest memory limit, MemFree what is not mapped;
//! - /proc/uptime: the virtual clock since boot;
//! - /proc/self/stat, /proc/self/status, /proc/self/comm: the calling process and thread (proc(5) layouts);
//! - /sys/devices/system/cpu/online and possible: `0-N` for N+1 CPUs (glibc's get_nprocs reads it first).

use crate::cpu::cpuid::{cpuid_of, CpuidModel, EXT1_ECX, EXT1_EDX, LEAF1_ECX, LEAF7_EBX};

/// A generated file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum InfoFile {
    CpuInfo,
    Stat,
    MemInfo,
    Uptime,
    SelfStat,
    SelfStatus,
    SelfComm,
    SelfMaps,
    CpusOnline,
    CpusPossible,
}

/// Every generated file by guest path.
pub const INFO_FILES: [(&[u8], InfoFile); 10] = [
    (b"/proc/cpuinfo", InfoFile::CpuInfo),
    (b"/proc/stat", InfoFile::Stat),
    (b"/proc/meminfo", InfoFile::MemInfo),
    (b"/proc/uptime", InfoFile::Uptime),
    (b"/proc/self/stat", InfoFile::SelfStat),
    (b"/proc/self/status", InfoFile::SelfStatus),
    (b"/proc/self/comm", InfoFile::SelfComm),
    (b"/proc/self/maps", InfoFile::SelfMaps),
    (b"/sys/devices/system/cpu/online", InfoFile::CpusOnline),
    (b"/sys/devices/system/cpu/possible", InfoFile::CpusPossible),
];

/// Clock ticks per second of the times in /proc (sysconf(_SC_CLK_TCK); the auxiliary vector's AT_CLKTCK).
pub const CLK_TCK: u64 = 100;

/// What the files show, gathered by the kernel at the open.
#[derive(Clone, Debug, Default)]
pub struct InfoView {
    pub cpus: u32,
    /// The CPUID model the guest's CPU answers with (the flags of /proc/cpuinfo follow it).
    pub cpuid: CpuidModel,
    pub memory_max_bytes: u64,
    pub mapped_bytes: u64,
    /// The virtual clock since boot (CLOCK_MONOTONIC), and the guest's CPU time (every task's instructions).
    pub uptime_ns: u64,
    pub cpu_ns: u64,
    pub context_switches: u64,
    pub processes_created: u64,
    pub tasks_running: u32,
    pub tasks_blocked: u32,
    /// The caller.
    pub pid: i32,
    pub ppid: i32,
    pub pgid: i32,
    pub sid: i32,
    pub comm: Vec<u8>,
    pub threads: u32,
    pub process_cpu_ns: u64,
    pub start_ns: u64,
    pub umask: u32,
    pub uid: u32,
    pub gid: u32,
    pub fd_slots: u32,
    pub sig_pending_thread: u64,
    pub sig_pending_process: u64,
    pub sig_blocked: u64,
    pub sig_ignored: u64,
    pub sig_caught: u64,
    pub brk_start: u64,
    pub brk_current: u64,
    /// The caller's address space in address order (only for /proc/self/maps).
    pub regions: Vec<MapsLine>,
}

/// One line of /proc/self/maps: a run of pages with equal permissions and the same backing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapsLine {
    pub start: u64,
    pub end: u64,
    pub perms: crate::memory::Perms,
    /// The file and the offset of `start` in it, for a file-backed mapping.
    pub file: Option<(u64, super::mapnames::MapFile)>,
}

/// The contents of `file` as `view` shows it.
pub fn render(file: InfoFile, v: &InfoView) -> Vec<u8> {
    assert!(v.cpus >= 1, "a machine has a CPU");
    let text = match file {
        InfoFile::CpuInfo => cpuinfo(v.cpus, v.cpuid),
        InfoFile::Stat => stat(v),
        InfoFile::MemInfo => meminfo(v),
        InfoFile::Uptime => {
            let idle = (v.uptime_ns * v.cpus as u64).saturating_sub(v.cpu_ns);
            format!("{} {}\n", centis(v.uptime_ns), centis(idle))
        }
        InfoFile::SelfStat => self_stat(v),
        InfoFile::SelfStatus => self_status(v),
        InfoFile::SelfComm => format!("{}\n", String::from_utf8_lossy(&v.comm)),
        InfoFile::SelfMaps => self_maps(v),
        InfoFile::CpusOnline | InfoFile::CpusPossible => match v.cpus {
            1 => "0\n".to_string(),
            n => format!("0-{}\n", n - 1),
        },
    };
    text.into_bytes()
}

/// Seconds with two decimals, as /proc/uptime prints them.
fn centis(ns: u64) -> String {
    let c = ns / 10_000_000;
    format!("{}.{:02}", c / 100, c % 100)
}

fn ticks(ns: u64) -> u64 {
    ns / (1_000_000_000 / CLK_TCK)
}

/// The CPUID words /proc/cpuinfo's flags come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Word {
    Leaf1Edx,
    Ext1Edx,
    Leaf1Ecx,
    Ext1Ecx,
    Leaf7Ebx,
}

/// The value of a CPUID word in a model.
fn word(model: CpuidModel, w: Word) -> u32 {
    match w {
        Word::Leaf1Edx => model.leaf1_edx(),
        Word::Ext1Edx => EXT1_EDX,
        Word::Leaf1Ecx => LEAF1_ECX,
        Word::Ext1Ecx => EXT1_ECX,
        Word::Leaf7Ebx => LEAF7_EBX,
    }
}

/// The CPUID feature bits by Linux's flag names, in Linux's order (cpufeatures words 0, 1, 4, 6, 9).
const FLAGS: [(&str, Word, u32); 21] = [
    ("fpu", Word::Leaf1Edx, 0),
    ("tsc", Word::Leaf1Edx, 4),
    ("cx8", Word::Leaf1Edx, 8),
    ("cmov", Word::Leaf1Edx, 15),
    ("clflush", Word::Leaf1Edx, 19),
    ("mmx", Word::Leaf1Edx, 23),
    ("fxsr", Word::Leaf1Edx, 24),
    ("sse", Word::Leaf1Edx, 25),
    ("sse2", Word::Leaf1Edx, 26),
    ("syscall", Word::Ext1Edx, 11),
    ("nx", Word::Ext1Edx, 20),
    ("rdtscp", Word::Ext1Edx, 27),
    ("lm", Word::Ext1Edx, 29),
    ("pni", Word::Leaf1Ecx, 0),
    ("ssse3", Word::Leaf1Ecx, 9),
    ("cx16", Word::Leaf1Ecx, 13),
    ("popcnt", Word::Leaf1Ecx, 23),
    ("rdrand", Word::Leaf1Ecx, 30),
    ("lahf_lm", Word::Ext1Ecx, 0),
    ("abm", Word::Ext1Ecx, 5),
    ("rdseed", Word::Leaf7Ebx, 18),
];

/// The brand string of CPUID leaves 0x80000002-4.
fn brand(model: CpuidModel) -> String {
    let bytes: Vec<u8> = (0x8000_0002..=0x8000_0004u32)
        .flat_map(|leaf| cpuid_of(model, leaf, 0))
        .flat_map(u32::to_le_bytes)
        .take_while(|&b| b != 0)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The flags line of /proc/cpuinfo in a model.
fn flags(model: CpuidModel) -> Vec<&'static str> {
    FLAGS
        .iter()
        .filter(|(_, w, b)| word(model, *w) & (1 << b) != 0)
        .map(|(name, _, _)| *name)
        .collect()
}

fn cpuinfo(cpus: u32, model: CpuidModel) -> String {
    let sig = cpuid_of(model, 1, 0)[0];
    let (family, model_number, stepping) = (
        (sig >> 8) & 0xf,
        ((sig >> 12) & 0xf0) | ((sig >> 4) & 0xf),
        sig & 0xf,
    );
    let flags = flags(model);
    let brand = brand(model);
    let mut out = String::new();
    for n in 0..cpus {
        out += &format!(
            "processor\t: {n}\nvendor_id\t: GenuineIntel\ncpu family\t: {family}\nmodel\t\t: {model_number}\n\
             model name\t: {brand}\nstepping\t: {stepping}\ncpu MHz\t\t: 1000.000\ncache size\t: 8192 KB\n\
             physical id\t: 0\nsiblings\t: {cpus}\ncore id\t\t: {n}\ncpu cores\t: {cpus}\napicid\t\t: {n}\n\
             fpu\t\t: yes\nfpu_exception\t: yes\ncpuid level\t: 13\nwp\t\t: yes\nflags\t\t: {}\n\
             bogomips\t: 2000.00\nclflush size\t: 64\ncache_alignment\t: 64\n\
             address sizes\t: 48 bits physical, 48 bits virtual\npower management:\n\n",
            flags.join(" ")
        );
    }
    out
}

/// /proc/self/maps (proc(5)): one line per run of pages with equal permissions and backing. A file mapping
/// names its file (the program's and the interpreter's segments, and what mmap mapped: the libraries) with its
/// offset, device and inode; the program break is "[heap]" and the stack "[stack]"; the rest is anonymous.
/// Every mapping shows as private ("p"). glibc reads the file for the main thread's stack
/// (pthread_getattr_np); debuggers and sanitizers find the loaded libraries in it.
fn self_maps(v: &InfoView) -> String {
    let heap_end = (v.brk_current + 0xfff) & !0xfff;
    let mut out = String::new();
    for l in &v.regions {
        let (start, end, perms) = (l.start, l.end, l.perms);
        let file_name;
        let name = if let Some((_, f)) = &l.file {
            file_name = String::from_utf8_lossy(&f.path).into_owned();
            file_name.as_str()
        } else if end == super::elf::STACK_TOP {
            "[stack]"
        } else if start >= v.brk_start && end <= heap_end && heap_end > v.brk_start {
            "[heap]"
        } else {
            ""
        };
        let (offset, dev, ino) = l
            .file
            .as_ref()
            .map_or((0, 0, 0), |(o, f)| (*o, f.dev, f.ino));
        // The device as Linux prints it: MAJOR:MINOR of the kernel's encoding (new_decode_dev).
        let (major, minor) = (
            (dev >> 8) & 0xfff | (dev >> 32) & !0xfff,
            dev & 0xff | (dev >> 12) & !0xff,
        );
        let line =
            format!("{start:08x}-{end:08x} {perms}p {offset:08x} {major:02x}:{minor:02x} {ino} ");
        if name.is_empty() {
            out += &format!("{line}\n");
        } else {
            // Linux pads the line to 73 columns before the name (fs/proc/task_mmu.c, show_map_vma).
            out += &format!("{line:<72} {name}\n");
        }
    }
    out
}

fn stat(v: &InfoView) -> String {
    let total_idle = ticks((v.uptime_ns * v.cpus as u64).saturating_sub(v.cpu_ns));
    let busy = ticks(v.cpu_ns);
    let mut out = format!("cpu  {busy} 0 0 {total_idle} 0 0 0 0 0 0\n");
    for n in 0..v.cpus {
        let (user, idle) = if n == 0 {
            (busy, ticks(v.uptime_ns.saturating_sub(v.cpu_ns)))
        } else {
            (0, ticks(v.uptime_ns))
        };
        out += &format!("cpu{n} {user} 0 0 {idle} 0 0 0 0 0 0\n");
    }
    out += &format!(
        "intr 0\nctxt {}\nbtime {}\nprocesses {}\nprocs_running {}\nprocs_blocked 0\nsoftirq 0\n",
        v.context_switches,
        0,
        v.processes_created,
        v.tasks_running.max(1),
    );
    out
}

fn meminfo(v: &InfoView) -> String {
    let kb = |b: u64| b / 1024;
    let free = v.memory_max_bytes.saturating_sub(v.mapped_bytes);
    format!(
        "MemTotal:       {:>8} kB\nMemFree:        {:>8} kB\nMemAvailable:   {:>8} kB\n\
         Buffers:               0 kB\nCached:                0 kB\nSwapCached:            0 kB\n\
         SwapTotal:             0 kB\nSwapFree:              0 kB\n",
        kb(v.memory_max_bytes),
        kb(free),
        kb(free)
    )
}

/// proc(5): /proc/pid/stat, 52 fields.
fn self_stat(v: &InfoView) -> String {
    let comm = String::from_utf8_lossy(&v.comm);
    let utime = ticks(v.process_cpu_ns);
    let start = ticks(v.start_ns);
    let rss_pages = v.mapped_bytes / 4096;
    format!(
        "{pid} ({comm}) R {ppid} {pgid} {sid} 0 -1 4194304 0 0 0 0 {utime} 0 0 0 20 0 {threads} 0 {start} \
         {vsize} {rss_pages} 18446744073709551615 0 0 0 0 0 0 {blocked} {ignored} {caught} 0 0 0 17 0 0 0 0 0 0 \
         0 0 {brk_start} 0 0 0 0 0\n",
        pid = v.pid,
        ppid = v.ppid,
        pgid = v.pgid,
        sid = v.sid,
        threads = v.threads,
        vsize = v.mapped_bytes,
        blocked = v.sig_blocked,
        ignored = v.sig_ignored,
        caught = v.sig_caught,
        brk_start = v.brk_start,
    )
}

/// proc(5): /proc/pid/status, the fields programs commonly read.
fn self_status(v: &InfoView) -> String {
    let kb = |b: u64| b / 1024;
    let list = match v.cpus {
        1 => "0".to_string(),
        n => format!("0-{}", n - 1),
    };
    let mask = if v.cpus >= 64 {
        u64::MAX
    } else {
        (1u64 << v.cpus) - 1
    };
    format!(
        "Name:\t{}\nUmask:\t{:04o}\nState:\tR (running)\nTgid:\t{pid}\nNgid:\t0\nPid:\t{pid}\nPPid:\t{}\n\
         TracerPid:\t0\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nGid:\t{gid}\t{gid}\t{gid}\t{gid}\nFDSize:\t{}\n\
         Groups:\t{gid}\nVmPeak:\t{:>8} kB\nVmSize:\t{:>8} kB\nVmRSS:\t{:>8} kB\nVmData:\t{:>8} kB\n\
         Threads:\t{}\nSigQ:\t0/{}\nSigPnd:\t{:016x}\nShdPnd:\t{:016x}\nSigBlk:\t{:016x}\nSigIgn:\t{:016x}\n\
         SigCgt:\t{:016x}\nCapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n\
         Cpus_allowed:\t{:x}\nCpus_allowed_list:\t{list}\nvoluntary_ctxt_switches:\t0\n\
         nonvoluntary_ctxt_switches:\t0\n",
        String::from_utf8_lossy(&v.comm),
        v.umask,
        v.ppid,
        v.fd_slots,
        kb(v.mapped_bytes),
        kb(v.mapped_bytes),
        kb(v.mapped_bytes),
        kb(v.brk_current.saturating_sub(v.brk_start)),
        v.threads,
        u64::MAX,
        v.sig_pending_thread,
        v.sig_pending_process,
        v.sig_blocked,
        v.sig_ignored,
        v.sig_caught,
        mask,
        pid = v.pid,
        uid = v.uid,
        gid = v.gid,
    )
}

impl<H: super::Host> super::LinuxMachine<H> {
    /// A generated file's contents as the calling thread sees it now, as an open file's data.
    pub(super) fn info_file(&mut self, file: InfoFile) -> super::vfs::SharedFile {
        let bytes = render(file, &self.info_view());
        let attrs = self.vfs.new_attrs(0o444, self.now());
        crate::shared::Shared::new(super::vfs::FileData::new(bytes, attrs))
    }

    fn info_view(&self) -> InfoView {
        use super::signal::bit;
        let pid = self.proc.pid;
        let live_threads = self.threads_of(pid);
        let process_insns = self.proc.insns_dead_threads
            + live_threads
                .iter()
                .filter_map(|&t| self.thread_ref(t))
                .map(|t| t.insns.0)
                .sum::<u64>();
        let (mut ignored, mut caught) = (0u64, 0u64);
        for (sig, action) in self.proc.sigactions.iter().enumerate().skip(1) {
            match action.handler {
                0 => {}
                1 => ignored |= bit(sig as i32),
                _ => caught |= bit(sig as i32),
            }
        }
        let tasks = self.threads.len() as u32 + u32::from(!self.thread_exited);
        let ns = self.config.ns_per_insn;
        InfoView {
            cpus: self.config.cpus,
            cpuid: self.config.cpuid,
            memory_max_bytes: self.config.frames_max as u64 * crate::memory::PAGE_SIZE as u64,
            mapped_bytes: self.machine.cpu.mem.mapped_page_count() as u64
                * crate::memory::PAGE_SIZE as u64,
            uptime_ns: super::syscalls::MONOTONIC_START_NS + self.elapsed_ns(),
            cpu_ns: self.machine.cpu.icount.saturating_mul(ns),
            context_switches: self.stats.context_switches,
            processes_created: self.stats.tasks_created + 1,
            tasks_running: tasks - self.blocked.len() as u32,
            tasks_blocked: self.blocked.len() as u32,
            pid: pid.0,
            ppid: self.proc.ppid.0,
            pgid: self.proc.pgid.0,
            sid: self.proc.sid.0,
            comm: self.thread.name.clone(),
            threads: live_threads.len() as u32,
            process_cpu_ns: process_insns.saturating_mul(ns),
            // Every process is shown as started when the run did (tandem does not keep start times).
            start_ns: super::syscalls::MONOTONIC_START_NS,
            umask: self.proc.umask,
            uid: super::GUEST_UID as u32,
            gid: super::GUEST_GID as u32,
            fd_slots: super::fd::FDS_MAX as u32,
            sig_pending_thread: self.thread.sig.pending,
            sig_pending_process: self.proc.shared_pending,
            sig_blocked: self.thread.sig.blocked,
            sig_ignored: ignored,
            sig_caught: caught,
            brk_start: self.proc.brk_start,
            brk_current: self.proc.brk_current,
            regions: self
                .machine
                .cpu
                .mem
                .regions()
                .into_iter()
                .flat_map(|r| {
                    self.proc.map_names.pieces(r.start, r.end).into_iter().map(
                        move |(start, end, file)| MapsLine {
                            start,
                            end,
                            perms: r.perms,
                            file: file.map(|(o, f)| (o, f.clone())),
                        },
                    )
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every flag /proc/cpuinfo names is a CPUID bit the model sets, and every bit the model sets is named, in
    /// both models.
    #[test]
    fn cpuinfo_flags_are_the_cpuid_bits() {
        for model in [CpuidModel::Format6, CpuidModel::Baseline] {
            let words = [
                Word::Leaf1Edx,
                Word::Ext1Edx,
                Word::Leaf1Ecx,
                Word::Ext1Ecx,
                Word::Leaf7Ebx,
            ];
            let set: u32 = words.iter().map(|&w| word(model, w).count_ones()).sum();
            assert_eq!(
                flags(model).len() as u32,
                set,
                "a CPUID bit without a name in /proc/cpuinfo"
            );
            assert_eq!(cpuid_of(model, 1, 0)[2], word(model, Word::Leaf1Ecx));
            assert_eq!(cpuid_of(model, 1, 0)[3], word(model, Word::Leaf1Edx));
            assert_eq!(cpuid_of(model, 7, 0)[1], word(model, Word::Leaf7Ebx));
            assert_eq!(
                cpuid_of(model, 0x8000_0001, 0)[2..],
                [word(model, Word::Ext1Ecx), word(model, Word::Ext1Edx)]
            );
        }
        assert!(flags(CpuidModel::Baseline).contains(&"mmx"));
        assert!(!flags(CpuidModel::Format6).contains(&"mmx"));
        let text = String::from_utf8(render(
            InfoFile::CpuInfo,
            &InfoView {
                cpus: 3,
                ..Default::default()
            },
        ))
        .unwrap();
        assert_eq!(text.matches("processor\t: ").count(), 3);
        assert!(
            text.contains("model name\t: tandem virtual x86-64 CPU\n"),
            "{text}"
        );
        assert!(text.contains("cpu family\t: 6\nmodel\t\t: 58\n"), "{text}");
        assert!(text.contains(" sse2 ") && !text.contains("avx"), "{text}");
    }

    #[test]
    fn cpu_lists_and_stat_fields() {
        let one = InfoView {
            cpus: 1,
            ..Default::default()
        };
        assert_eq!(render(InfoFile::CpusOnline, &one), b"0\n");
        let v = InfoView {
            cpus: 4,
            pid: 1000,
            ppid: 999,
            pgid: 999,
            sid: 999,
            comm: b"a b)".to_vec(),
            threads: 2,
            process_cpu_ns: 2_500_000_000,
            ..Default::default()
        };
        assert_eq!(render(InfoFile::CpusPossible, &v), b"0-3\n");
        let stat = String::from_utf8(render(InfoFile::SelfStat, &v)).unwrap();
        // The comm may hold spaces and parentheses: readers split after the last ')'.
        let rest: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        assert_eq!(rest.len(), 50, "{stat}");
        assert_eq!(stat.split_whitespace().next(), Some("1000"));
        assert_eq!(
            (rest[0], rest[1], rest[2], rest[3]),
            ("R", "999", "999", "999")
        );
        assert_eq!(rest[11], "250", "utime in ticks: {stat}");
        assert_eq!(rest[17], "2", "num_threads: {stat}");
        let status = String::from_utf8(render(InfoFile::SelfStatus, &v)).unwrap();
        assert!(
            status.contains("\nTgid:\t1000\nNgid:\t0\nPid:\t1000\nPPid:\t999\n"),
            "{status}"
        );
        assert!(
            status.contains("\nCpus_allowed:\tf\nCpus_allowed_list:\t0-3\n"),
            "{status}"
        );
    }
}
