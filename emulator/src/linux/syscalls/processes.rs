//! Syscalls of processes: fork and vfork (and clone without CLONE_THREAD), execve, wait4 and waitid, process
//! groups and sessions; and what happens when a process ends (a zombie for its parent, SIGCHLD, orphans).
//!
//! Follows fork(2), vfork(2), execve(2), wait4(2), waitid(2), setpgid(2), setsid(2), and kernel/exit.c.
//!
//! Decisions worth knowing:
//! - A forked child's address space is a copy-on-write copy of its parent's (`Memory::fork`), with its own
//!   block cache; its descriptors share the parent's open file descriptions (offsets and all), as in Linux.
//! - vfork (CLONE_VM | CLONE_VFORK) lends the parent's address space to the child and blocks the parent until
//!   the child execs or exits, which is all Linux promises. CLONE_VM without CLONE_VFORK or CLONE_THREAD (a
//!   second process in one address space) is not supported: EINVAL.
//! - The first process is the run: when it ends, the run ends, whatever other processes still live (as when a
//!   container's init ends). Orphans are adopted by an init outside the guest (ppid 1), which reaps them.
//! - execve runs ELF executables, static or dynamically linked (the interpreter PT_INTERP names is read
//!   through the guest's file system, ENOENT when it is missing), and `#!` scripts (up to 4 interpreters deep).

use super::tasks::{CLONE_CHILD_CLEARTID, CLONE_CHILD_SETTID, CLONE_PARENT, CLONE_PARENT_SETTID};
use super::tasks::{CLONE_SETTLS, CLONE_VFORK, CLONE_VM};
use super::Outcome;
use crate::cpu::{named_stream, Cpu, CpuConfig, Machine, RAX, RSP};
use crate::linux::abi::*;
use crate::linux::fd::{FdTable, FileKind};
use crate::linux::ids::{Pid, Tid};
use crate::linux::kernel::Wait;
use crate::linux::signal::{SigAction, SigInfo, CLD_EXITED, CLD_KILLED, SIG_IGN};
use crate::linux::task::{Process, Thread, Zombie};
use crate::linux::vfs::{self, GuestPath, Vfs};
use crate::linux::{elf, Host, LinuxMachine, Termination, GUEST_GID, GUEST_UID};
use crate::memory::Memory;
use rand::RngCore;

/// The pid orphans are adopted by: an init outside the guest.
const INIT_PID: Pid = Pid(1);
/// Most `#!` interpreters followed by one execve (Linux: BINPRM_MAX_RECURSION).
const INTERPRETERS_MAX: usize = 4;
/// Longest `#!` line read (Linux: BINPRM_BUF_SIZE).
const SHEBANG_BYTES_MAX: usize = 256;

const WNOHANG: u64 = 1;
const WEXITED: u64 = 4;
const WNOWAIT: u64 = 0x0100_0000;
const P_ALL: u64 = 0;
const P_PID: u64 = 1;
const P_PGID: u64 = 2;

/// A program ready to run in a new address space.
pub(in crate::linux) struct LoadedProgram {
    pub machine: Machine,
    pub brk_start: u64,
    /// The auxiliary vector on its initial stack.
    pub auxv: Vec<(u64, u64)>,
    /// The file-backed ranges of the program and of its interpreter (`elf::file_ranges`), to be named.
    pub program_ranges: Vec<elf::FileRange>,
    pub interpreter_ranges: Vec<elf::FileRange>,
}

/// Loads an ELF executable into a fresh address space with its initial stack: what the first process and every
/// execve start from, with its argv, envp and AT_EXECFN. A dynamically linked program comes with the interpreter
/// its PT_INTERP names (`read_interpreter`); it then starts at the interpreter's entry.
pub(in crate::linux) fn load_program(
    program: &[u8],
    interpreter: Option<&Interpreter>,
    (argv, envp, execfn): (&[Vec<u8>], &[Vec<u8>], &[u8]),
    cpu_config: CpuConfig,
    frames_max: usize,
    random_stream: &str,
) -> Result<LoadedProgram, elf::LoadError> {
    let file = elf::ElfFile::parse(program)?;
    let mut mem = Memory::new();
    mem.set_frames_max(frames_max);
    let image = elf::load_segments(&file, program, &mut mem)?;
    assert_eq!(
        file.interpreter.is_some(),
        interpreter.is_some(),
        "the caller reads the interpreter a program names"
    );
    let interp = match interpreter {
        Some(i) => Some(elf::load_interpreter(&i.bytes, &i.path, &mut mem)?),
        None => None,
    };
    let mut random = [0u8; 16];
    named_stream(cpu_config.seed, random_stream).fill_bytes(&mut random);
    let inputs = elf::StackInputs {
        argv,
        envp,
        execfn,
        random,
        interp_base: interp.as_ref().map_or(0, |i| i.bias),
        hwcap: cpu_config.cpuid.leaf1_edx() as u64,
        uid: GUEST_UID,
        gid: GUEST_GID,
    };
    let rsp = elf::build_stack(&mut mem, &image, &inputs, file.executable_stack())?;
    let program_ranges = elf::file_ranges(&file, image.bias);
    let interpreter_ranges = match (interpreter, &interp) {
        (Some(i), Some(loaded)) => elf::ElfFile::parse(&i.bytes)
            .map(|f| elf::file_ranges(&f, loaded.bias))
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    let auxv = elf::read_auxv(&mem, rsp).expect("the stack just built holds an auxiliary vector");
    let mut cpu = Cpu::new(mem, cpu_config);
    cpu.regs.rip = interp.as_ref().map_or(image.entry, |i| i.entry);
    cpu.regs.gpr[RSP] = rsp;
    Ok(LoadedProgram {
        machine: Machine::new(cpu),
        brk_start: image.brk_start,
        auxv,
        program_ranges,
        interpreter_ranges,
    })
}

/// The bytes of the executable file at `path` (resolved from `base`, links followed) and its canonical guest
/// path: a regular file with an execute bit, read through the guest's file system (so through the guest's root
/// and mounts, and recorded in traces like every file a run reads).
pub(in crate::linux) fn executable_file(
    vfs: &mut Vfs,
    host: &mut dyn Host,
    base: &GuestPath,
    path: &[u8],
) -> Result<(Vec<u8>, std::sync::Arc<Vec<u8>>), Errno> {
    let r = vfs.resolve(host, base, path, true)?;
    let node = r.node.ok_or(ENOENT)?;
    if node.is_dir() {
        return Err(EACCES);
    }
    let st = vfs.stat(&r.path, &node);
    if st.mode & 0o111 == 0 || st.mode & S_IFMT != S_IFREG {
        return Err(EACCES);
    }
    let file = vfs.contents(host, &node)?;
    let bytes = file.borrow().bytes.clone();
    Ok((r.path.text(), bytes))
}

/// A program interpreter (the dynamic loader), read from the guest's file system.
pub(in crate::linux) struct Interpreter {
    /// The path PT_INTERP names.
    pub path: String,
    /// Its canonical guest path (links followed): what /proc/self/maps names.
    pub canonical: Vec<u8>,
    pub bytes: std::sync::Arc<Vec<u8>>,
}

/// The interpreter a program's PT_INTERP names, read from the guest's file system. None for a static program
/// (or bytes that are no ELF file, which the loader then refuses).
pub(in crate::linux) fn read_interpreter(
    vfs: &mut Vfs,
    host: &mut dyn Host,
    program: &[u8],
) -> Result<Option<Interpreter>, elf::LoadError> {
    let Some(path) = elf::ElfFile::parse(program)
        .ok()
        .and_then(|f| f.interpreter)
    else {
        return Ok(None);
    };
    let root = vfs.root();
    match executable_file(vfs, host, &root, path.as_bytes()) {
        Ok((canonical, bytes)) => Ok(Some(Interpreter {
            path,
            canonical,
            bytes,
        })),
        Err(e) => Err(elf::LoadError::Interpreter {
            reason: format!(
                "cannot be read from the guest's file system (errno {}); run with --root DIR for a \
                 system root that has it",
                e.0
            ),
            path,
        }),
    }
}

/// The wait status word of a process that ended (wait(2)'s WIFEXITED/WIFSIGNALED encoding).
fn wait_status(how: &Termination) -> u32 {
    match how {
        Termination::Exited { code } => ((*code as u32) & 0xff) << 8,
        Termination::Signaled { signal, .. } => *signal as u32 & 0x7f,
        Termination::Deadlock { .. } => SIGKILL as u32,
    }
}

impl<H: Host> LinuxMachine<H> {
    /// The syscalls of this family; None for any other number.
    pub(in crate::linux) fn dispatch_processes(&mut self, nr: u64, a: [u64; 6]) -> Option<Outcome> {
        let r = match nr {
            57 => return Some(self.fork_process(0, SIGCHLD as u64, 0, 0, 0, 0)),
            58 => {
                return Some(self.fork_process(CLONE_VM | CLONE_VFORK, SIGCHLD as u64, 0, 0, 0, 0))
            }
            59 => return Some(self.sys_execve(a[0], a[1], a[2])),
            61 => self.sys_wait4(a[0] as i32, a[1], a[2], a[3]),
            109 => self.sys_setpgid(a[0] as i32, a[1] as i32),
            111 => Ok(self.proc.pgid.0 as u64), // getpgrp
            112 => self.sys_setsid(),
            121 => self.sys_getpgid(a[0] as i32),
            124 => self.sys_getsid(a[0] as i32),
            247 => self.sys_waitid(a[0], a[1] as i32, a[2], a[3], a[4]),
            322 => return Some(self.sys_execveat(a[0] as i32, a[1], a[2], a[3], a[4])),
            _ => return None,
        };
        Some(Outcome::Return(r))
    }

    // ---------------------------------------------------------------------------------------------------------
    // fork and vfork.

    /// A new process: fork (a copy-on-write address space) or vfork (the parent's, lent until the child execs
    /// or exits; the parent waits).
    pub(in crate::linux) fn fork_process(
        &mut self,
        flags: u64,
        exit_signal: u64,
        stack: u64,
        parent_tid: u64,
        child_tid: u64,
        tls: u64,
    ) -> Outcome {
        let vfork = flags & CLONE_VFORK != 0;
        if flags & CLONE_VM != 0 && !vfork {
            return Outcome::Return(Err(EINVAL));
        }
        if self.threads.len() + self.procs.len() + 2 >= super::tasks::TASKS_MAX {
            return Outcome::Return(Err(EAGAIN));
        }
        let pid = Pid(self.allocate_tid().0);
        let space = if vfork {
            self.proc.space
        } else {
            let space = self.space_next;
            self.space_next += 1;
            let mem = self.machine.cpu.mem.fork();
            let mut config = self.machine.cpu.config.clone();
            config.rdrand_stream = format!("cpu.rdrand.{}", pid.0);
            let mut machine = Machine::new(Cpu::new(mem, config));
            machine.set_jit(self.machine.jit_enabled());
            self.spaces.insert(space, machine);
            space
        };
        let child = self.forked_process(pid, space, flags, exit_signal, vfork);
        let mut t = Thread::new(pid.leader(), pid, self.thread.name.clone());
        t.regs = self.machine.cpu.regs.clone();
        t.regs.gpr[RAX] = 0;
        if stack != 0 {
            t.regs.gpr[RSP] = stack;
        }
        if flags & CLONE_SETTLS != 0 {
            t.regs.fs_base = tls;
        }
        t.sig.blocked = self.thread.sig.blocked;
        t.sig.altstack_sp = self.thread.sig.altstack_sp;
        t.sig.altstack_size = self.thread.sig.altstack_size;
        t.sig.altstack_flags = self.thread.sig.altstack_flags;
        if flags & CLONE_CHILD_CLEARTID != 0 {
            t.clear_child_tid = child_tid;
        }
        if flags & CLONE_PARENT_SETTID != 0 {
            if let Err(e) = self.write_u32(parent_tid, pid.0 as u32) {
                return Outcome::Return(Err(e));
            }
        }
        if flags & CLONE_CHILD_SETTID != 0 {
            let bytes = (pid.0 as u32).to_le_bytes();
            let mem = match self.spaces.get_mut(&space) {
                Some(m) => &mut m.cpu.mem,
                None => &mut self.machine.cpu.mem,
            };
            let _ = mem.write_bytes(child_tid, &bytes);
        }
        self.procs.insert(pid, child);
        self.threads.insert(t.tid, t);
        self.sched.add(pid.leader());
        self.stats.tasks_created += 1;
        if vfork {
            return Outcome::Block(Wait::Vfork { child: pid }, None);
        }
        Outcome::Return(Ok(pid.0 as u64))
    }

    /// The kernel-side copy of the running process for a child.
    pub(in crate::linux) fn forked_process(
        &self,
        pid: Pid,
        space: u32,
        flags: u64,
        exit_signal: u64,
        vfork: bool,
    ) -> Process {
        let p = &self.proc;
        Process {
            pid,
            ppid: if flags & CLONE_PARENT != 0 {
                p.ppid
            } else {
                p.pid
            },
            pgid: p.pgid,
            sid: p.sid,
            fds: p.fds.fork_copy(pid),
            cwd: p.cwd.clone(),
            umask: p.umask,
            brk_start: p.brk_start,
            brk_current: p.brk_current,
            sigactions: p.sigactions,
            shared_pending: 0,
            shared_info: Default::default(),
            shared_maps: p.shared_maps.clone(),
            map_names: p.map_names.clone(),
            // fork(2): the child's timers and alarm are not inherited.
            timers: Default::default(),
            space,
            exited: false,
            exit_signal: (exit_signal & 0xff) as i32,
            vfork_parent: vfork.then_some(self.thread.tid),
            exe_path: p.exe_path.clone(),
            exe: p.exe.clone(),
            auxv: p.auxv.clone(),
            insns_dead_threads: 0,
        }
    }

    // ---------------------------------------------------------------------------------------------------------
    // The end of a process.

    /// The running process (not the first) has ended: it becomes a zombie for its parent, which gets SIGCHLD;
    /// its children are orphans; a vfork parent resumes.
    pub(in crate::linux) fn process_exited(&mut self, how: Termination) {
        let pid = self.proc.pid;
        self.release_vfork_parent();
        self.adopt_orphans_of(pid);
        let status = wait_status(&how);
        let parent = self.proc.ppid;
        let parent_reaps = self.process_ref(parent).is_some_and(|p| {
            let a = p.sigactions[SIGCHLD as usize];
            // SIGCHLD ignored or SA_NOCLDWAIT: the child is reaped at once (wait(2), NOTES).
            a.handler != SIG_IGN && a.flags & 0x2 == 0
        });
        if parent_reaps {
            self.death_seq += 1;
            self.zombies.insert(
                pid,
                Zombie {
                    pid,
                    ppid: parent,
                    pgid: self.proc.pgid,
                    status,
                    insns: self.proc.insns_dead_threads + self.thread.insns.0,
                    death_seq: self.death_seq,
                },
            );
        }
        // Linux's do_notify_parent sends the exit signal only if it is a valid one: legacy clone takes any low
        // byte of its flags as the exit signal, 65 to 255 included.
        let exit_signal_valid =
            (1..=crate::linux::abi::NSIG as i32).contains(&self.proc.exit_signal);
        if exit_signal_valid && self.process_ref(parent).is_some() {
            let (code, value) = match &how {
                Termination::Exited { code } => (CLD_EXITED, (*code & 0xff) as u64),
                Termination::Signaled { signal, .. } => (CLD_KILLED, *signal as u64),
                Termination::Deadlock { .. } => (CLD_KILLED, SIGKILL as u64),
            };
            let mut info = SigInfo::from_process(self.proc.exit_signal, code, pid.0);
            info.value = value;
            let _ = self.send_to_process(parent, info);
        }
        self.bump_generation();
    }

    /// A vfork child has exec'd or exited: its parent resumes, with the child's pid as vfork's result.
    pub(in crate::linux) fn release_vfork_parent(&mut self) {
        if let Some(parent) = self.proc.vfork_parent.take() {
            self.wake(parent, Some(self.proc.pid.0 as u64));
        }
    }

    /// The children of `pid` are adopted by the init outside the guest; its zombies are reaped by it.
    pub(in crate::linux) fn adopt_orphans_of(&mut self, pid: Pid) {
        for p in self.procs.values_mut() {
            if p.ppid == pid {
                p.ppid = INIT_PID;
            }
        }
        self.zombies.retain(|_, z| z.ppid != pid);
    }

    // ---------------------------------------------------------------------------------------------------------
    // wait4 and waitid.

    /// Whether `pid` (wait4's argument) selects the child `child` in process group `pgid`.
    pub(in crate::linux) fn selects(&self, pid: i32, child: Pid, pgid: Pid) -> bool {
        match pid {
            -1 => true,
            0 => pgid == self.proc.pgid,
            p if p > 0 => child.0 == p,
            p => pgid.0 == -p,
        }
    }

    /// The zombie child that `pid` selects and that died first, if any; and whether any child (dead or alive)
    /// matches at all.
    pub(in crate::linux) fn find_zombie(&self, pid: i32) -> (Option<Pid>, bool) {
        let me = self.proc.pid;
        let zombie = self
            .zombies
            .values()
            .filter(|z| z.ppid == me && self.selects(pid, z.pid, z.pgid))
            .min_by_key(|z| z.death_seq)
            .map(|z| z.pid);
        let live = self
            .procs
            .values()
            .any(|p| p.ppid == me && self.selects(pid, p.pid, p.pgid));
        (zombie, zombie.is_some() || live)
    }

    pub(in crate::linux) fn sys_wait4(
        &mut self,
        pid: i32,
        status: u64,
        options: u64,
        rusage: u64,
    ) -> Result<u64, Errno> {
        if pid == i32::MIN {
            return Err(ESRCH);
        }
        let (zombie, any) = self.find_zombie(pid);
        let Some(z) = zombie else {
            if !any {
                return Err(ECHILD);
            }
            if options & WNOHANG != 0 {
                return Ok(0);
            }
            return Err(self.would_block(None));
        };
        let zombie = self.zombies.remove(&z).expect("found above");
        if status != 0 {
            self.write_u32(status, zombie.status)?;
        }
        if rusage != 0 {
            self.write_rusage(rusage, zombie.insns)?;
        }
        Ok(z.0 as u64)
    }

    /// struct rusage with the user time of `insns` instructions (everything else zero).
    pub(in crate::linux) fn write_rusage(&mut self, addr: u64, insns: u64) -> Result<(), Errno> {
        let mut b = [0u8; 144];
        let ns = insns.saturating_mul(self.config.ns_per_insn);
        b[0..8].copy_from_slice(&(ns / 1_000_000_000).to_le_bytes());
        b[8..16].copy_from_slice(&(ns % 1_000_000_000 / 1000).to_le_bytes());
        self.write_mem(addr, &b)
    }

    pub(in crate::linux) fn sys_waitid(
        &mut self,
        idtype: u64,
        id: i32,
        infop: u64,
        options: u64,
        rusage: u64,
    ) -> Result<u64, Errno> {
        let pid = match idtype {
            P_ALL => -1,
            P_PID if id > 0 => id,
            P_PGID if id >= 0 => {
                if id == 0 {
                    0
                } else {
                    -id
                }
            }
            _ => return Err(EINVAL),
        };
        if options & WEXITED == 0 {
            return Err(EINVAL);
        }
        let (zombie, any) = self.find_zombie(pid);
        let Some(z) = zombie else {
            if !any {
                return Err(ECHILD);
            }
            if options & WNOHANG != 0 {
                if infop != 0 {
                    self.write_mem(infop, &[0u8; 128])?;
                }
                return Ok(0);
            }
            return Err(self.would_block(None));
        };
        let zombie = if options & WNOWAIT != 0 {
            self.zombies[&z].clone()
        } else {
            self.zombies.remove(&z).expect("found above")
        };
        if infop != 0 {
            let (code, value) = if zombie.status & 0x7f == 0 {
                (CLD_EXITED, (zombie.status >> 8) & 0xff)
            } else {
                (CLD_KILLED, zombie.status & 0x7f)
            };
            let mut b = [0u8; 128];
            b[0..4].copy_from_slice(&SIGCHLD.to_le_bytes());
            b[8..12].copy_from_slice(&code.to_le_bytes());
            b[16..20].copy_from_slice(&zombie.pid.0.to_le_bytes());
            b[20..24].copy_from_slice(&(GUEST_UID as u32).to_le_bytes());
            b[24..28].copy_from_slice(&value.to_le_bytes());
            self.write_mem(infop, &b)?;
        }
        if rusage != 0 {
            self.write_rusage(rusage, zombie.insns)?;
        }
        Ok(0)
    }

    // ---------------------------------------------------------------------------------------------------------
    // Process groups and sessions.

    pub(in crate::linux) fn sys_setpgid(&mut self, pid: i32, pgid: i32) -> Result<u64, Errno> {
        if pgid < 0 {
            return Err(EINVAL);
        }
        let me = self.proc.pid;
        let target = if pid == 0 { me } else { Pid(pid) };
        let (target_sid, target_ppid) = match self.process_ref(target) {
            Some(p) => (p.sid, p.ppid),
            None => return Err(ESRCH),
        };
        if target != me && target_ppid != me {
            return Err(ESRCH);
        }
        if target_sid != self.proc.sid || target_sid == target {
            // Another session's process, or a session leader.
            return Err(EPERM);
        }
        let pgid = if pgid == 0 { target } else { Pid(pgid) };
        if pgid != target
            && !self.process_ids().into_iter().any(|p| {
                self.process_ref(p)
                    .is_some_and(|q| q.pgid == pgid && q.sid == self.proc.sid)
            })
        {
            return Err(EPERM);
        }
        self.process_mut(target).expect("found above").pgid = pgid;
        Ok(0)
    }

    pub(in crate::linux) fn sys_setsid(&mut self) -> Result<u64, Errno> {
        let me = self.proc.pid;
        // A process group leader cannot make a session (setsid(2) EPERM).
        if self
            .process_ids()
            .into_iter()
            .any(|p| self.process_ref(p).is_some_and(|q| q.pgid == me))
        {
            return Err(EPERM);
        }
        self.proc.sid = me;
        self.proc.pgid = me;
        Ok(me.0 as u64)
    }

    pub(in crate::linux) fn sys_getpgid(&mut self, pid: i32) -> Result<u64, Errno> {
        let target = if pid == 0 { self.proc.pid } else { Pid(pid) };
        self.process_ref(target)
            .map(|p| p.pgid.0 as u64)
            .ok_or(ESRCH)
    }

    pub(in crate::linux) fn sys_getsid(&mut self, pid: i32) -> Result<u64, Errno> {
        let target = if pid == 0 { self.proc.pid } else { Pid(pid) };
        self.process_ref(target)
            .map(|p| p.sid.0 as u64)
            .ok_or(ESRCH)
    }

    // ---------------------------------------------------------------------------------------------------------
    // execve.

    pub(in crate::linux) fn sys_execveat(
        &mut self,
        dirfd: i32,
        path: u64,
        argv: u64,
        envp: u64,
        flags: u64,
    ) -> Outcome {
        const AT_SYMLINK_NOFOLLOW: u64 = 0x100;
        let at_empty_path = u64::from(AT_EMPTY_PATH);
        let path = (|| {
            if flags & !(at_empty_path | AT_SYMLINK_NOFOLLOW) != 0 {
                return Err(EINVAL);
            }
            let path = self.read_cstring(path, vfs::PATH_BYTES_MAX)?;
            let path = match (path.is_empty(), path.first() == Some(&b'/')) {
                // fexecve(3): the file the descriptor is open on.
                (true, _) if flags & at_empty_path != 0 => self.fd_file_path(dirfd)?,
                (true, _) => return Err(ENOENT),
                (false, true) if flags & AT_SYMLINK_NOFOLLOW == 0 => path,
                _ => {
                    let r = self.resolve_at(dirfd, &path, flags & AT_SYMLINK_NOFOLLOW == 0)?;
                    if matches!(r.node, Some(vfs::Node::Symlink { .. })) {
                        return Err(ELOOP);
                    }
                    r.path.text()
                }
            };
            Ok(path)
        })();
        self.exec_from_guest(path, argv, envp)
    }

    /// execve's and execveat's common end: reads argv and envp from the guest and replaces the program with the
    /// one at `path` (or fails with `path`'s error).
    fn exec_from_guest(&mut self, path: Result<Vec<u8>, Errno>, argv: u64, envp: u64) -> Outcome {
        let r = path.and_then(|path| {
            let argv = self.read_string_array(argv)?;
            let envp = self.read_string_array(envp)?;
            self.exec(path, argv, envp)
        });
        match r {
            Ok(()) => Outcome::NoReturn,
            Err(e) => Outcome::Return(Err(e)),
        }
    }

    /// The guest path of the regular file descriptor `fd` is open on (EACCES for anything else, as execveat
    /// of a directory or a pipe fails).
    fn fd_file_path(&self, fd: i32) -> Result<Vec<u8>, Errno> {
        let desc = self.proc.fds.get(fd)?;
        let d = desc.borrow();
        match &d.kind {
            FileKind::Regular { path, .. } => Ok(path.text()),
            _ => Err(EACCES),
        }
    }

    /// A NULL-terminated array of string pointers (argv, envp), bounded as Linux bounds them.
    pub(in crate::linux) fn read_string_array(&mut self, addr: u64) -> Result<Vec<Vec<u8>>, Errno> {
        const STRINGS_MAX: usize = 0x7fff_ffff / 8;
        const BYTES_MAX: usize = 2 << 20;
        let mut out = Vec::new();
        let mut total = 0usize;
        if addr == 0 {
            return Ok(out);
        }
        loop {
            let ptr = self.read_u64(addr.wrapping_add(8 * out.len() as u64))?;
            if ptr == 0 {
                return Ok(out);
            }
            let s = self.read_cstring(ptr, 128 << 10)?;
            total += s.len() + 1;
            if total > BYTES_MAX || out.len() >= STRINGS_MAX {
                return Err(E2BIG);
            }
            out.push(s);
        }
    }

    pub(in crate::linux) fn sys_execve(&mut self, path: u64, argv: u64, envp: u64) -> Outcome {
        let path = self.read_path(path);
        self.exec_from_guest(path, argv, envp)
    }

    /// The bytes of an executable at a guest path and the absolute guest path they came from, following `#!`
    /// lines. `argv` is rewritten the way binfmt_script does.
    pub(in crate::linux) fn resolve_executable(
        &mut self,
        mut path: Vec<u8>,
        argv: &mut Vec<Vec<u8>>,
    ) -> Result<(Vec<u8>, std::sync::Arc<Vec<u8>>), Errno> {
        for _ in 0..=INTERPRETERS_MAX {
            let (abs, bytes) = self.executable_bytes(&path)?;
            if !bytes.starts_with(b"#!") {
                return Ok((abs, bytes));
            }
            let line_end = bytes
                .iter()
                .take(SHEBANG_BYTES_MAX)
                .position(|&b| b == b'\n')
                .unwrap_or(bytes.len().min(SHEBANG_BYTES_MAX));
            let line = &bytes[2..line_end];
            let line: Vec<u8> = line
                .iter()
                .copied()
                .skip_while(|b| *b == b' ' || *b == b'\t')
                .collect();
            let mut parts = line.splitn(2, |b| *b == b' ' || *b == b'\t');
            let interp = parts.next().unwrap_or_default().to_vec();
            if interp.is_empty() {
                return Err(ENOEXEC);
            }
            let arg: Option<Vec<u8>> = parts
                .next()
                .map(|a| a.trim_ascii().to_vec())
                .filter(|a| !a.is_empty());
            // binfmt_script: argv becomes interpreter [arg] path original-argv[1..].
            let mut new_argv = vec![interp.clone()];
            new_argv.extend(arg);
            new_argv.push(path.clone());
            new_argv.extend(argv.iter().skip(1).cloned());
            *argv = new_argv;
            path = interp;
        }
        Err(ELOOP)
    }

    /// The contents of the file at a guest path, if it may be executed.
    pub(in crate::linux) fn executable_bytes(
        &mut self,
        path: &[u8],
    ) -> Result<(Vec<u8>, std::sync::Arc<Vec<u8>>), Errno> {
        if path == b"/proc/self/exe" {
            return Ok((self.proc.exe_path.clone(), self.proc.exe.clone()));
        }
        let base = if path.first() == Some(&b'/') {
            self.vfs.root()
        } else {
            self.dir_of(AT_FDCWD)?
        };
        executable_file(&mut self.vfs, &mut self.host, &base, path)
    }

    /// Replaces the running process's program (execve(2)): a new address space, the other threads gone,
    /// handled signals reset, close-on-exec descriptors closed.
    pub(in crate::linux) fn exec(
        &mut self,
        path: Vec<u8>,
        mut argv: Vec<Vec<u8>>,
        envp: Vec<Vec<u8>>,
    ) -> Result<(), Errno> {
        let (exe_path, bytes) = self.resolve_executable(path.clone(), &mut argv)?;
        if elf::ElfFile::parse(&bytes).is_err() {
            return Err(ENOEXEC);
        }
        // Linux opens the interpreter before the point of no return: a missing one is execve's ENOENT.
        let interpreter =
            read_interpreter(&mut self.vfs, &mut self.host, &bytes).map_err(|_| ENOENT)?;
        self.exec_count += 1;
        let mut config = self.machine.cpu.config.clone();
        config.rdrand_stream = format!("cpu.rdrand.{}.{}", self.proc.pid.0, self.exec_count);
        let stream = format!("linux.at_random.{}.{}", self.proc.pid.0, self.exec_count);
        let loaded = load_program(
            &bytes,
            interpreter.as_ref(),
            (&argv, &envp, &path),
            config,
            self.config.frames_max,
            &stream,
        )
        .map_err(|e| match e {
            elf::LoadError::ArgumentsTooLong { .. } | elf::LoadError::ArgumentTooLong { .. } => {
                E2BIG
            }
            elf::LoadError::TooLarge { .. } | elf::LoadError::Map(_) => ENOMEM,
            _ => ENOEXEC,
        })?;
        self.end_other_threads();
        let icount = self.icount();
        let jit = self.machine.jit_enabled();
        let mut machine = loaded.machine;
        machine.set_jit(jit);
        machine.cpu.icount = icount;
        let mut old = std::mem::replace(&mut self.machine, machine);
        self.machine.set_coverage(old.set_coverage(None));
        if self.proc.vfork_parent.is_some() {
            // The parent's address space goes back to it; the child has its own from now on.
            self.spaces.insert(self.proc.space, old);
        }
        // A new key for the new address space, as for a fork's: a key names one address space for its whole
        // life (memory digests and futex keys rely on it).
        self.proc.space = self.space_next;
        self.space_next += 1;
        self.release_vfork_parent();
        self.write_back_all_maps();
        let p = &mut self.proc;
        p.brk_start = loaded.brk_start;
        p.brk_current = loaded.brk_start;
        p.shared_maps.clear();
        p.map_names = Default::default();
        p.timers.exec();
        p.fds.close_on_exec();
        for a in p.sigactions.iter_mut() {
            if a.handler != SIG_IGN {
                *a = SigAction::default();
            }
        }
        p.exe_path = exe_path.clone();
        p.exe = bytes;
        p.auxv = loaded.auxv.into();
        self.name_image(
            &loaded.program_ranges,
            &loaded.interpreter_ranges,
            interpreter.as_ref(),
        );
        self.vfs.exe_path = exe_path.clone();
        let t = &mut self.thread;
        t.sig.altstack_sp = 0;
        t.sig.altstack_size = 0;
        t.sig.altstack_flags = crate::linux::signal::SS_DISABLE;
        t.clear_child_tid = 0;
        t.robust_list = (0, 0);
        t.name = exe_path
            .rsplit(|&b| b == b'/')
            .next()
            .map(|n| n[..n.len().min(15)].to_vec())
            .unwrap_or_default();
        self.stats.execs += 1;
        Ok(())
    }

    /// execve: every other thread of the process ends (the exec'ing thread takes the leader's tid in Linux;
    /// here it keeps its own, which glibc and musl do not look at).
    pub(in crate::linux) fn end_other_threads(&mut self) {
        let pid = self.proc.pid;
        let others: Vec<Tid> = self
            .threads
            .values()
            .filter(|t| t.pid == pid)
            .map(|t| t.tid)
            .collect();
        for tid in others {
            self.forget_task(tid);
            if let Some(t) = self.threads.remove(&tid) {
                self.proc.insns_dead_threads += t.insns.0;
            }
        }
    }
}

impl FdTable {
    /// The child's table after fork: the same open file descriptions, shared (offsets and status flags).
    /// The child's table after fork: the same open file descriptions, shared (offsets and status flags); the
    /// child holds none of its parent's POSIX locks.
    pub fn fork_copy(&self, child: Pid) -> FdTable {
        FdTable {
            fds: self.fds.clone(),
            owner: child,
        }
    }

    /// Closes every close-on-exec descriptor (execve).
    pub fn close_on_exec(&mut self) {
        let doomed: Vec<i32> = self
            .fds
            .iter()
            .filter(|(_, e)| e.cloexec)
            .map(|(fd, _)| *fd)
            .collect();
        for fd in doomed {
            let _ = self.close(fd);
        }
    }
}
