//! `tandem run`: runs a static x86-64 Linux program under the emulator, deterministically.
//!
//! This file parses the flags, implements the live host (the real stdin, stdout, stderr and the files under
//! --mount; the guest's clock and entropy stay virtual and seeded) and renders the reports. The work is in
//! `tandem_emulator::linux`. The only host clock read is for the MIPS figure of --stats, which is a report about
//! the emulator, not an input of the guest.

use crate::mount_fs::MountRoots;
use crate::output::Lossy;
use anyhow::{bail, Context};
use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use tandem_analyzers::profile_file::{Phase, ProfileFile};
use tandem_emulator::hypervisor::plan::FaultPlan;
use tandem_emulator::hypervisor::{Hypervisor, Policy};
use tandem_emulator::linux::abi::{Errno, EIO};
use tandem_emulator::linux::abi::{SIGABRT, SIGBUS, SIGFPE, SIGILL, SIGSEGV};
use tandem_emulator::linux::syscall_faults::SyscallFaults;
use tandem_emulator::linux::syscall_policy::{DenyAction, SyscallPolicy};
use tandem_emulator::linux::sysnames::syscall_name;
use tandem_emulator::linux::vfs::{split, Mount};
use tandem_emulator::linux::{
    Host, HostMetadata, LinuxConfig, LinuxMachine, Progress, SchedPolicy, SeededEntropy,
    Termination,
};
use tandem_emulator::storage::VolumeSpec;
use tandem_replay::pools::{locate, run_to, Seeding, WarmImage, WarmPoint};
use tandem_scenarios::input::{read_input, read_input_text, InputKind};

/// Exit status of a run stopped by --max-insns (the convention of timeout(1)).
pub const EXIT_INSTRUCTION_LIMIT: i32 = 124;

#[derive(clap::Args, Debug)]
#[command(
    about = "Run an x86-64 Linux program deterministically",
    long_about = "Run an x86-64 Linux program (static or dynamically linked, musl or glibc) under the emulator. \
        A dynamically linked program is started by its loader from the guest's root (--root, by default the \
        host's / read-only).\n\n\
        The run is a function of its inputs: the program, its arguments, the --env variables (the host's \
        environment is not passed), the mounted files, stdin and the seed. Guest time starts at 2024-01-01 \
        and advances with the instruction count; getrandom and AT_RANDOM come from the seed.\n\n\
        Options go before the program; everything after it (or after `--`) is the program's arguments.",
    after_help = "Exit status:\n  \
        0-255  the guest's own exit status\n  \
        128+N  the guest was killed by signal N (a diagnostic line on stderr), e.g. 139 for SIGSEGV\n  \
        124    --max-insns stopped the guest before it finished (as timeout(1))\n  \
        125    tandem's own failure: bad input, unreadable program, usage error\n\n\
        Examples:\n  \
        tandem run -- corpus/bin/hello-musl\n  \
        tandem run --seed 7 --stats --mount /tmp/in:/data -- /bin/busybox sha256sum /data/file\n  \
        echo hi | tandem run --env LANG=C -- /bin/busybox tr a-z A-Z"
)]
pub struct RunArgs {
    /// Root seed of every random stream of the run (AT_RANDOM, getrandom, RDRAND). Example: --seed 42
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub(crate) seed: u64,

    /// Stop cleanly after N instructions if the guest has not finished (exit status 124). Example: --max-insns 1000000
    #[arg(long, value_name = "N")]
    pub(crate) max_insns: Option<u64>,

    /// Mount a host file or directory read-only at GUEST (default: the same path); guest writes go to an
    /// in-memory overlay. Repeatable. Example: --mount ./data:/data
    #[arg(long = "mount", value_name = "HOST[:GUEST]")]
    pub(crate) mounts: Vec<String>,

    /// The guest's root file system: a host directory shown read-only at / (writes go to the in-memory
    /// overlay), where a dynamically linked program's loader finds itself, /etc/ld.so.cache and the libraries.
    /// The guest's /dev, /proc and /sys stay its own; the root's /tmp is shown like the rest of it (a program
    /// may live there), and guest writes to it stay in the overlay. Default: the host's / for a dynamically linked
    /// program, none for a static one. Every file read through it is recorded in traces, like mounted files.
    /// --mount adds mounts on top of it. Example: --root /srv/debian-chroot
    #[arg(long, value_name = "DIR")]
    pub(crate) root: Option<PathBuf>,

    /// Show mounted files with fixed owners (the guest's uid and gid, 1000), times (2024-01-01), inode numbers
    /// (a hash of the guest path) and block counts, so that `ls -l`, `stat`, `tar` and `du` print the same on
    /// any machine. Without it (the default) the guest sees the host's real metadata, as Linux would show it;
    /// either way the metadata is an input of the run and is recorded in traces. Example: --normalize-metadata
    #[arg(long)]
    pub(crate) normalize_metadata: bool,

    /// Set an environment variable of the guest (the host's environment is not passed). Repeatable.
    /// Example: --env LANG=C
    #[arg(long = "env", value_name = "K=V")]
    pub(crate) env: Vec<String>,

    /// Make an unknown syscall fatal (the run ends as if by SIGSYS) instead of returning -ENOSYS. Example: --strict
    #[arg(long)]
    pub(crate) strict: bool,

    /// Print the instruction count, MIPS, a syscall histogram and unknown syscalls to stderr at the end.
    /// Example: --stats
    #[arg(long)]
    pub(crate) stats: bool,

    /// How the guest's threads and processes share the one emulated CPU: `fair` (round robin, a quantum of
    /// about 100,000 instructions drawn from the seed; `fair:N` sets N) or `chaos` (PCT-style random priorities
    /// with change points every ~20,000 instructions, `chaos:N` sets N: makes rare interleavings likely, to
    /// find races). Either way the schedule is a function of the seed: the same seed gives the same run. An
    /// input of the run (recorded in traces). Example: --sched chaos
    #[arg(long, value_name = "POLICY", default_value = "fair", value_parser = parse_sched)]
    pub(crate) sched: SchedPolicy,

    /// CPUs the guest is told it has (sched_getaffinity, sysconf(_SC_NPROCESSORS_ONLN), /proc/cpuinfo), 1 to
    /// 64: programs size their thread pools from it. The guest's tasks still run one at a time. An input of
    /// the run (recorded in traces). Example: --cpus 8
    #[arg(long, value_name = "N", default_value_t = tandem_emulator::linux::CPUS_DEFAULT,
          value_parser = clap::value_parser!(u32).range(1..=tandem_emulator::linux::CPUS_MAX as i64))]
    pub(crate) cpus: u32,

    /// Print every syscall the guest makes to stderr as it happens, as strace would: `[TID] ICOUNT
    /// name(arguments) = result` (an error as -ERRNO; "? (blocked)" for an attempt that waits and is made
    /// again when woken). Changes nothing in the run. Example: --strace
    #[arg(long)]
    pub(crate) strace: bool,

    /// Memory faults to inject: comma-separated items, `mem.KIND:KEY=VALUE` starting each fault (KIND: ue for an
    /// uncorrectable error, flip, stuck); keys icount, addr, frame, byte, bit, value (explicit faults) or rate,
    /// count, within, class (faults drawn from --fault-seed). Every fault gets a `memory-error` line on stderr.
    /// Example: --faults 'mem.ue:icount=50000,addr=0x4c6000,mem.flip:rate=1e-6'
    #[arg(long, value_name = "SPEC")]
    pub(crate) faults: Option<String>,

    /// Read the fault plan from a TOML file ([[event]] and [[random]] tables with the keys of --faults and
    /// kind = "ue" | "flip" | "stuck"). Example: --faults-file plan.toml
    #[arg(long, value_name = "FILE", conflicts_with = "faults")]
    pub(crate) faults_file: Option<PathBuf>,

    /// Seed of the "faults.mem" stream that draws faults (default: --seed). Example: --fault-seed 17
    #[arg(long, value_name = "N")]
    pub(crate) fault_seed: Option<u64>,

    /// Make the Nth call of a syscall fail with an errno, or move fewer bytes (read, write, pread64, pwrite64),
    /// without running it, as a kernel under memory pressure, a full disk or a failing device would: `SYSCALL
    /// CALL errno NAME` (NAME: EINTR, EIO, ENOMEM, ENOSPC, EAGAIN or a number) or `SYSCALL CALL short BYTES`,
    /// the lines of a `tandem fuzz` finding's .faults file. Calls count from 1, per syscall, from the start.
    /// Repeatable, or `;`-separated. An input of the run (recorded in traces). Example: --syscall-faults
    /// 'write 1 errno EIO' --syscall-faults 'mmap 3 errno ENOMEM'
    #[arg(long = "syscall-faults", value_name = "FAULT")]
    pub(crate) syscall_faults: Vec<String>,

    /// Early kill: send SIGBUS BUS_MCEERR_AO as soon as a dirty page is lost, instead of BUS_MCEERR_AR when the
    /// guest touches it (Linux's vm.memory_failure_early_kill). Example: --early-kill
    #[arg(long)]
    pub(crate) early_kill: bool,

    /// Write an ELF core file of the guest to FILE: at the crash if a signal whose default action dumps core
    /// (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT) kills it, else of the final state. Example: --core /tmp/guest.core
    #[arg(long, value_name = "FILE")]
    core: Option<PathBuf>,

    /// Guest memory limit, with K, M or G (powers of 1024). Every mapped page counts; mmap, brk and mremap
    /// beyond it fail with ENOMEM inside the guest, and a program whose image does not fit is refused. An input
    /// of the run (recorded in traces). Example: --memory-max 512M
    #[arg(long, value_name = "SIZE", default_value = "4G", value_parser = parse_memory_size)]
    pub(crate) memory_max: usize,

    /// Give the guest a writable volume at GUEST whose initial content is read from the host directory HOST
    /// (which is never written). The guest's writes go to a page cache over a simulated disk with Linux's
    /// persistence rules; rename and link across a volume's boundary fail with EXDEV, as between file systems.
    /// Repeatable. Example: --volume ./data:/data
    #[arg(long = "volume", value_name = "HOST:GUEST")]
    pub(crate) volumes: Vec<String>,

    /// Write the final content of a volume, as the guest sees it, to DIR (a new or empty host directory); the
    /// first --export is the first --volume's, and so on. Example: --export /tmp/after
    #[arg(long = "export", value_name = "DIR")]
    pub(crate) exports: Vec<PathBuf>,

    /// Journal every completed operation on the volumes (writes, fsyncs, renames, truncates, unlinks...) with
    /// its icount, guest time and task into FILE, for `tandem cdp list` and `tandem cdp restore`. A write of
    /// NAME to /dev/tandem-mark in the guest records a mark. Example: --cdp-journal run.cdp
    #[arg(long, value_name = "FILE")]
    pub(crate) cdp_journal: Option<PathBuf>,

    /// Keep only the operations of the last N instructions in the journal; older ones are folded into its base
    /// images (compaction). Example: --cdp-window-insns 100000000
    #[arg(long, value_name = "N", requires = "cdp_journal")]
    pub(crate) cdp_window_insns: Option<u64>,

    /// Bound the journal's operations to SIZE bytes (K, M, G): the oldest half is folded into the base images
    /// when they grow past it. Example: --cdp-size-max 64M
    #[arg(long, value_name = "SIZE", requires = "cdp_journal", value_parser = parse_byte_size)]
    pub(crate) cdp_size_max: Option<u64>,

    /// Print the instruction count and the final state hash to stderr (deterministic, for tests).
    #[arg(long, hide = true)]
    pub(crate) report_state: bool,

    /// Interpret every instruction instead of compiling hot blocks to host code. Results are identical either
    /// way (same output, instruction count and state hash); this is for comparing speed and for suspicion.
    /// Example: --no-jit
    #[arg(long)]
    pub(crate) no_jit: bool,

    /// Collect edge coverage as `tandem fuzz` does (changes nothing in the run; for measuring its cost, see
    /// BENCHMARKS.md).
    #[arg(long, hide = true)]
    pub(crate) coverage: bool,

    /// Start the program from a warm snapshot taken at POINT: an ELF symbol of the program (main), an instruction
    /// count (250000) or first-read-of-stdin (just before its first read of stdin). The run up to the point is
    /// made once, snapshotted, and the program goes on in a new guest restored from it; from there on it draws
    /// random values of its own (see --no-reseed and `tandem pool`). Example: --warm-at main
    #[arg(long, value_name = "POINT")]
    pub(crate) warm_at: Option<String>,

    /// With --warm-at: the restored guest keeps the snapshot's entropy streams, so the run is the cold run bit
    /// for bit (same output, instruction count and state hash). Without it, the guest is re-seeded from the
    /// warm point on (getrandom, /dev/urandom and RDRAND draw from streams of clone --clone); AT_RANDOM and
    /// every value drawn before the point stay shared. Example: --warm-at main --no-reseed
    #[arg(long, requires = "warm_at")]
    pub(crate) no_reseed: bool,

    /// With --warm-at: which clone of the snapshot this run is (it keys the re-seeded entropy streams), 0 by
    /// default. Example: --warm-at 100000 --clone 3
    #[arg(long, value_name = "N", default_value_t = 0, requires = "warm_at")]
    pub(crate) clone: u64,

    /// The program to run (a host path; a name without a slash is looked up on PATH) and its arguments.
    /// Example: -- corpus/bin/args-musl one two
    ///
    /// Options of tandem go before it: an unknown option there is a usage error, never taken for the program.
    #[arg(required = true, trailing_var_arg = true, value_name = "PROGRAM ARGS")]
    pub(crate) command: Vec<OsString>,
}

// `tandem run`: the options it shares with record and pool (`RunArgs`, whose about text is the command's), and
// the container profile it enforces (pool has a --profile of its own, a usage profile, so this one is not among
// the shared options). A plain comment: a doc comment here would replace the command's about text.
#[derive(clap::Args, Debug)]
pub struct RunCommand {
    /// Enforce a container profile written by `tandem profile -o FILE`: a syscall it does not list gets the
    /// --profile-action answer, reported on stderr with the thread, rip, icount and syscall. Example:
    /// --profile hello.profile
    #[arg(long, value_name = "FILE")]
    profile: Option<PathBuf>,

    /// What a syscall the profile denies gets, as seccomp answers it: `eperm` (fails with EPERM, Docker's
    /// default), `enosys` (fails with ENOSYS, as an unknown call) or `kill` (the process is killed by SIGSYS,
    /// SECCOMP_RET_KILL_PROCESS: exit status 159). Example: --profile-action kill
    #[arg(long, value_name = "ACTION", default_value = "eperm", requires = "profile",
          value_parser = ["eperm", "enosys", "kill"])]
    profile_action: String,

    #[command(flatten)]
    run: RunArgs,
}

/// The policy `--profile FILE --profile-action ACTION` asks for, and the serving phase's boundary and rules
/// when the profile has two phases.
fn read_syscall_policy(
    path: &Path,
    action: &str,
) -> anyhow::Result<(SyscallPolicy, Option<Phase>)> {
    let text = read_input_text(path, InputKind::SyscallProfile)?;
    let profile =
        ProfileFile::parse(&text).with_context(|| format!("--profile {}", path.display()))?;
    let action = match action {
        "eperm" => DenyAction::Errno(1),
        "enosys" => DenyAction::Errno(38),
        _ => DenyAction::Kill,
    };
    Ok((
        SyscallPolicy::with_rules(profile.rules, action),
        profile.serving,
    ))
}

/// The address of the serving phase's boundary symbol in `program`.
fn serving_boundary(program: &[u8], phase: &Phase, path: &Path) -> anyhow::Result<u64> {
    tandem_replay::pools::warm::symbol_address(program, &phase.at).with_context(|| {
        format!(
            "--profile: the phase boundary `{}` is not a symbol of {} (a stripped binary has none: make the \
             profile with --phase-at at a symbol it has)",
            phase.at,
            path.display()
        )
    })
}

/// Runs the guest under its start-up rules until it first reaches the serving phase's symbol, then installs the
/// serving rules (the denials so far kept). Returns the run's progress when it ended (or ran out of its budget)
/// before the boundary. Stops are exact: the guest is run up to the address as `--warm-at SYMBOL` runs it.
fn run_to_serving_phase<H: Host>(
    hv: &mut Hypervisor<H>,
    (at, phase): (u64, Phase),
    instructions_max: u64,
    err: &mut impl Write,
) -> anyhow::Result<Option<Progress>> {
    let stops: std::collections::BTreeSet<u64> = [at].into();
    while hv.guest.rip() != at {
        let left = instructions_max.saturating_sub(hv.guest.icount());
        if left == 0 {
            return Ok(Some(Progress::BudgetExhausted));
        }
        let n = hv.guest.instructions_until(&stops).clamp(1, left);
        if hv.run(n) == Progress::Finished {
            return Ok(Some(Progress::Finished));
        }
    }
    if let Some(mut policy) = hv.guest.set_syscall_policy(None) {
        policy.set_rules(phase.rules);
        hv.guest.set_syscall_policy(Some(policy));
    }
    writeln!(
        err,
        "tandem: profile phase `serving` from {} ({at:#x}) at icount {}",
        phase.at,
        hv.guest.icount()
    )?;
    Ok(None)
}

/// One stderr line per call the enforced profile denied (the kill itself is the termination's diagnostic).
fn report_denials(policy: &SyscallPolicy, err: &mut impl Write) -> std::io::Result<()> {
    let answer = match policy.action() {
        DenyAction::Errno(1) => "answered -EPERM".to_string(),
        DenyAction::Errno(38) => "answered -ENOSYS".to_string(),
        DenyAction::Errno(e) => format!("answered -{e}"),
        DenyAction::Kill => "process killed by SIGSYS".to_string(),
    };
    for d in policy.denials() {
        let (what, answer) = match (&d.path, policy.action()) {
            (Some(p), DenyAction::Errno(_)) => (
                format!(" the path {}", String::from_utf8_lossy(p)),
                "answered -EACCES".to_string(),
            ),
            (Some(p), _) => (
                format!(" the path {}", String::from_utf8_lossy(p)),
                answer.clone(),
            ),
            (None, _) => (String::new(), answer.clone()),
        };
        writeln!(
            err,
            "tandem: profile denied {} (number {}){what} to tid {} at rip {:#x}, icount {}: {answer}",
            syscall_name(d.nr),
            d.nr,
            d.tid,
            d.rip,
            d.icount
        )?;
    }
    let unlisted = policy.denied_count() - policy.denials().len() as u64;
    if unlisted > 0 {
        writeln!(
            err,
            "tandem: ... and {unlisted} more calls denied by the profile"
        )?;
    }
    Ok(())
}

/// The live host: real stdio and read-only access to the mounted host files, each opened beneath its mount's
/// root without following links (mount_fs.rs).
pub(crate) struct LiveHost {
    stdout: std::io::Stdout,
    stderr: std::io::Stderr,
    stdin: std::io::Stdin,
    entropy: SeededEntropy,
    mounts: MountRoots,
}

fn errno_of(e: &std::io::Error) -> Errno {
    e.raw_os_error().map(Errno).unwrap_or(EIO)
}

/// `--sched`: a scheduling policy (`SchedPolicy::parse`).
pub(crate) fn parse_sched(s: &str) -> Result<SchedPolicy, String> {
    SchedPolicy::parse(s)
}

impl Host for LiveHost {
    fn trace(&mut self, line: &str) {
        crate::output::note!("tandem: strace: {line}");
    }
    fn read_stdin(&mut self, buf: &mut [u8]) -> Result<usize, Errno> {
        self.stdin.lock().read(buf).map_err(|e| errno_of(&e))
    }
    fn write_stdout(&mut self, bytes: &[u8]) -> Result<(), Errno> {
        self.stdout.write_all(bytes).map_err(|e| errno_of(&e))
    }
    fn write_stderr(&mut self, bytes: &[u8]) -> Result<(), Errno> {
        let _ = self.stdout.flush();
        self.stderr.write_all(bytes).map_err(|e| errno_of(&e))
    }
    fn metadata(&mut self, path: &Path) -> Result<HostMetadata, Errno> {
        self.mounts.metadata(path)
    }
    fn read_file(&mut self, path: &Path) -> Result<std::sync::Arc<Vec<u8>>, Errno> {
        self.mounts.read_file(path)
    }
    fn read_dir(&mut self, path: &Path) -> Result<Vec<Vec<u8>>, Errno> {
        self.mounts.read_dir(path)
    }
    fn read_link(&mut self, path: &Path) -> Result<Vec<u8>, Errno> {
        self.mounts.read_link(path)
    }
    fn fill_random(&mut self, out: &mut [u8]) {
        self.entropy.fill(out);
    }
}

impl tandem_replay::pools::EntropyHost for LiveHost {
    fn entropy(&self) -> SeededEntropy {
        self.entropy.clone()
    }
    fn set_entropy(&mut self, entropy: SeededEntropy) {
        self.entropy = entropy;
    }
}

impl LiveHost {
    /// The real stdio; entropy from the seed; the mounts' roots opened now and held for the run.
    pub(crate) fn new(
        seed: u64,
        mounts: &[Mount],
        normalize_metadata: bool,
    ) -> anyhow::Result<LiveHost> {
        Ok(LiveHost {
            stdout: std::io::stdout(),
            stderr: std::io::stderr(),
            stdin: std::io::stdin(),
            entropy: SeededEntropy::new(seed),
            mounts: MountRoots::open(mounts, normalize_metadata)?,
        })
    }
}

/// What the live host may read: the mounts, and each volume's host directory (read once, at the start).
pub(crate) fn host_mounts(mounts: &[Mount], volumes: &[VolumeSpec]) -> Vec<Mount> {
    let mut all = mounts.to_vec();
    all.extend(volumes.iter().map(|v| Mount {
        guest: v.guest.clone(),
        host: v.host.clone(),
    }));
    all
}

/// Parses `HOST[:GUEST]` into a mount of the host path (made absolute) at a guest path.
pub(crate) fn parse_mount(spec: &str) -> anyhow::Result<Mount> {
    let (host, guest) = match spec.split_once(':') {
        Some((h, g)) => (h, Some(g)),
        None => (spec, None),
    };
    let host = std::fs::canonicalize(host)
        .with_context(|| format!("--mount {spec}: host path {host} cannot be mounted"))?;
    let guest = match guest {
        Some(g) if g.starts_with('/') => g.to_string(),
        Some(g) => bail!("--mount {spec}: the guest path {g:?} must be absolute, such as /data"),
        None => host.to_string_lossy().into_owned(),
    };
    Ok(Mount {
        guest: split(guest.as_bytes()).into_iter().collect(),
        host,
    })
}

/// Parses `HOST:GUEST` into a volume: an existing host directory (made absolute) and an absolute guest path.
pub(crate) fn parse_volume(spec: &str) -> anyhow::Result<VolumeSpec> {
    let Some((host, guest)) = spec.split_once(':') else {
        bail!("--volume {spec}: expected HOST:GUEST, such as --volume ./data:/data");
    };
    let host = std::fs::canonicalize(host)
        .with_context(|| format!("--volume {spec}: host directory {host} cannot be used"))?;
    if !host.is_dir() {
        bail!("--volume {spec}: {} is not a directory", host.display());
    }
    if !guest.starts_with('/') || split(guest.as_bytes()).is_empty() {
        bail!(
            "--volume {spec}: the guest path {guest:?} must be absolute and not /, such as /data"
        );
    }
    Ok(VolumeSpec {
        host,
        guest: split(guest.as_bytes()).into_iter().collect(),
        content: None,
    })
}

/// The volumes of a run, checked: no two at the same or nested guest paths, no mount inside one, as many
/// --export as volumes at most, and no export directory inside a volume's host directory (the input is never
/// written).
/// Reports each planned syscall fault that never fired (its call was never made): a plan that did nothing
/// must not pass for one that was survived. Removes the plan from the guest.
pub(crate) fn report_unfired_syscall_faults<H: tandem_emulator::linux::Host>(
    guest: &mut tandem_emulator::linux::LinuxMachine<H>,
    err: &mut impl Write,
) -> std::io::Result<()> {
    let Some(faults) = guest.set_syscall_faults(None) else {
        return Ok(());
    };
    for f in faults.planned().filter(|f| !faults.fired().contains(f)) {
        writeln!(
            err,
            "tandem: --syscall-faults '{}' never fired: the run made fewer {} calls",
            tandem_analyzers::fuzz::genome::fault_text(&f),
            syscall_name(f.nr)
        )?;
    }
    Ok(())
}

/// Installs the --syscall-faults plan in a guest about to start (none when it is empty).
pub(crate) fn install_syscall_faults<H: tandem_emulator::linux::Host>(
    guest: &mut tandem_emulator::linux::LinuxMachine<H>,
    plan: &[tandem_emulator::linux::syscall_faults::SyscallFault],
) {
    if !plan.is_empty() {
        guest.set_syscall_faults(Some(SyscallFaults::new(plan)));
    }
}

/// The --syscall-faults plan: each value a fault, or several separated by `;`.
pub(crate) fn syscall_fault_plan(
    args: &RunArgs,
) -> anyhow::Result<Vec<tandem_emulator::linux::syscall_faults::SyscallFault>> {
    let text = args.syscall_faults.join(";").replace(';', "\n");
    let plan = tandem_analyzers::fuzz::genome::parse_faults(&text).map_err(|e| {
        let spec = text.lines().nth(e.line - 1).unwrap_or_default();
        anyhow::anyhow!(
            "--syscall-faults '{spec}': {} (expected `SYSCALL CALL errno NAME` or `SYSCALL CALL short BYTES`)",
            e.message
        )
    })?;
    Ok(plan)
}

pub(crate) fn guest_volumes(args: &RunArgs, mounts: &[Mount]) -> anyhow::Result<Vec<VolumeSpec>> {
    let volumes: Vec<VolumeSpec> = args
        .volumes
        .iter()
        .map(|v| parse_volume(v))
        .collect::<anyhow::Result<_>>()?;
    let nested = |a: &[Vec<u8>], b: &[Vec<u8>]| a.starts_with(b) || b.starts_with(a);
    for (i, v) in volumes.iter().enumerate() {
        if volumes[..i].iter().any(|w| nested(&v.guest, &w.guest)) {
            bail!(
                "--volume {}: overlaps another volume's guest path",
                args.volumes[i]
            );
        }
        if mounts
            .iter()
            .any(|m| !m.guest.is_empty() && m.guest.starts_with(&v.guest))
        {
            bail!(
                "--volume {}: a --mount lies inside it; mount elsewhere",
                args.volumes[i]
            );
        }
    }
    if args.exports.len() > volumes.len() {
        bail!(
            "--export given {} times for {} volumes: each --export is the volume of the same position",
            args.exports.len(),
            volumes.len()
        );
    }
    for dir in &args.exports {
        let at = std::path::absolute(dir).unwrap_or_else(|_| dir.clone());
        if let Some(v) = volumes.iter().find(|v| at.starts_with(&v.host)) {
            bail!(
                "--export {}: inside the volume's host directory {}, which is never written; export elsewhere",
                dir.display(),
                v.host.display()
            );
        }
    }
    Ok(volumes)
}

/// After the run: ends the journal, then writes each exported volume. Lines for the user go to `err`.
pub(crate) fn finish_volumes<H: Host>(
    guest: &mut tandem_emulator::linux::LinuxMachine<H>,
    exports: &[PathBuf],
    err: &mut impl Write,
) -> anyhow::Result<()> {
    if let Some(mut observer) = guest.take_io_observer() {
        match observer.finish() {
            Ok(line) if !line.is_empty() => writeln!(err, "tandem: {line}")?,
            Ok(_) => {}
            Err(e) => bail!("--cdp-journal: {e}"),
        }
    }
    export_volumes(guest, exports)
}

/// Writes volume i, as the guest sees it now, to `exports[i]` (`--export`).
pub(crate) fn export_volumes<H: Host>(
    guest: &mut tandem_emulator::linux::LinuxMachine<H>,
    exports: &[PathBuf],
) -> anyhow::Result<()> {
    for (i, dir) in exports.iter().enumerate() {
        let mut image = guest.volume_image(i as u32);
        image.collect_orphans();
        tandem_replay::cdp::materialize(&image, dir)
            .with_context(|| format!("--export {}: cannot write the volume", dir.display()))?;
    }
    Ok(())
}

/// Installs the CDP journal of --cdp-journal, if given.
pub(crate) fn install_journal<H: Host>(
    guest: &mut tandem_emulator::linux::LinuxMachine<H>,
    args: &RunArgs,
) -> anyhow::Result<()> {
    let Some(path) = &args.cdp_journal else {
        return Ok(());
    };
    if guest.volume_count() == 0 {
        bail!(
            "--cdp-journal {}: the guest has no --volume to protect",
            path.display()
        );
    }
    let retention = tandem_replay::cdp::Retention {
        window_insns: args.cdp_window_insns,
        size_bytes_max: args.cdp_size_max,
    };
    let writer = tandem_replay::cdp::JournalWriter::create(path, retention)
        .with_context(|| format!("--cdp-journal {}: cannot create", path.display()))?;
    guest.set_io_observer(Box::new(writer));
    Ok(())
}

/// Parses a byte count with an optional K, M or G suffix (powers of 1024).
pub(crate) fn parse_byte_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (digits, shift) = match t.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&t[..t.len() - 1], 10),
        Some('M') => (&t[..t.len() - 1], 20),
        Some('G') => (&t[..t.len() - 1], 30),
        _ => (t, 0),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("{text:?}: expected a size such as 64M"))
}

/// The mounts of a run: the guest's root (`--root`, or the host's / for a dynamically linked program), then
/// each --mount.
pub(crate) fn guest_mounts(args: &RunArgs, program: &[u8]) -> anyhow::Result<Vec<Mount>> {
    guest_mounts_of(args.root.as_ref(), &args.mounts, program)
}

/// `guest_mounts` of a root (`--root`) and mount specifications (`--mount`).
pub(crate) fn guest_mounts_of(
    root: Option<&PathBuf>,
    mount_specs: &[String],
    program: &[u8],
) -> anyhow::Result<Vec<Mount>> {
    let dynamic = tandem_emulator::linux::elf::ElfFile::parse(program)
        .is_ok_and(|elf| elf.interpreter.is_some());
    let root = match root {
        Some(dir) => Some(dir.clone()),
        None if dynamic => Some(PathBuf::from("/")),
        None => None,
    };
    let mut mounts = Vec::new();
    if let Some(dir) = root {
        let host = std::fs::canonicalize(&dir).with_context(|| {
            format!(
                "--root {}: cannot be used as the guest's root",
                dir.display()
            )
        })?;
        if !host.is_dir() {
            bail!("--root {}: not a directory", dir.display());
        }
        mounts.push(Mount {
            guest: Vec::new(),
            host,
        });
    }
    for m in mount_specs {
        mounts.push(parse_mount(m)?);
    }
    Ok(mounts)
}

/// The host file of the program named on the command line: a name without a slash is looked up in the
/// directories of the host's PATH (or /usr/local/bin, /usr/bin, /bin without one), as a shell does
/// (`tandem run -- ls`); anything else is a path.
pub(crate) fn program_path(name: &std::ffi::OsStr) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    if name.as_bytes().contains(&b'/') {
        return PathBuf::from(name);
    }
    // execvp's default search path when PATH is unset (glibc: confstr(_CS_PATH) with /usr/local/bin first).
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Longest `#!` line Linux reads (BINPRM_BUF_SIZE), and how many interpreters it follows (BINPRM_MAX_RECURSION).
const SHEBANG_BYTES_MAX: usize = 256;
const INTERPRETERS_MAX: usize = 4;

/// The command line of a program that is a script (`#!INTERPRETER [ARG]`), as Linux's binfmt_script runs it:
/// INTERPRETER [ARG] SCRIPT ARGS..., SCRIPT being the path the program was found at (`tandem run -- ldd /bin/ls`
/// runs `/bin/bash /usr/bin/ldd /bin/ls`). The interpreter is a path in the guest's root (`root`, by default
/// the host's /). Any other program's command line is returned unchanged; a file that cannot be read, or is not a
/// regular file, is left to the loader.
pub(crate) fn script_command(
    command: &[OsString],
    root: Option<&Path>,
) -> anyhow::Result<Vec<OsString>> {
    assert!(!command.is_empty(), "clap requires the program");
    let mut command = command.to_vec();
    for _ in 0..=INTERPRETERS_MAX {
        let program = program_path(&command[0]);
        // Only a regular file is looked at: reading the head of a pipe (`tandem run -- /dev/stdin`) would take
        // it from the loader.
        if !std::fs::metadata(&program).is_ok_and(|m| m.is_file()) {
            return Ok(command);
        }
        let mut head = Vec::with_capacity(SHEBANG_BYTES_MAX);
        let read = std::fs::File::open(&program)
            .and_then(|f| f.take(SHEBANG_BYTES_MAX as u64).read_to_end(&mut head));
        if read.is_err() || !head.starts_with(b"#!") {
            return Ok(command);
        }
        let line = head[2..].split(|&b| b == b'\n').next().unwrap_or_default();
        let line = line.trim_ascii();
        let mut parts = line.splitn(2, |b| *b == b' ' || *b == b'\t');
        let interpreter = parts.next().unwrap_or_default();
        if interpreter.is_empty() {
            bail!("{}: its #! line names no interpreter", program.display());
        }
        let arg = parts
            .next()
            .map(|a| a.trim_ascii())
            .filter(|a| !a.is_empty());
        let interpreter = std::ffi::OsStr::from_bytes(interpreter);
        let on_host = match root {
            Some(dir) if interpreter.as_bytes().starts_with(b"/") => dir.join(
                Path::new(interpreter)
                    .strip_prefix("/")
                    .unwrap_or(Path::new(interpreter)),
            ),
            _ => PathBuf::from(interpreter),
        };
        let script = guest_path_in_root(&program, root);
        let mut next = vec![on_host.into_os_string()];
        next.extend(arg.map(|a| std::ffi::OsStr::from_bytes(a).to_os_string()));
        next.push(script);
        next.extend(command.drain(1..));
        command = next;
    }
    bail!(
        "{}: more than {INTERPRETERS_MAX} #! interpreters in a row (Linux answers ELOOP)",
        command[0].to_string_lossy()
    )
}

/// A host path as the guest names it when `root` is the guest's root: the path beneath the root, if it is
/// there; else the path as given.
fn guest_path_in_root(path: &Path, root: Option<&Path>) -> OsString {
    let beneath = root.and_then(|dir| {
        let dir = std::fs::canonicalize(dir).ok()?;
        let canon = std::fs::canonicalize(path).ok()?;
        canon
            .strip_prefix(&dir)
            .ok()
            .map(|rest| Path::new("/").join(rest))
    });
    beneath
        .unwrap_or_else(|| path.to_path_buf())
        .into_os_string()
}

/// The guest's working directory: with a root (`--root`, or the default root of a dynamic program), the host's
/// working directory seen through the mounts, so that `tandem run -- ls` lists what `ls` would; else /.
/// An input of the run like the others (traces record it).
pub(crate) fn guest_cwd(mounts: &[Mount]) -> Vec<u8> {
    let has_root = mounts.iter().any(|m| m.guest.is_empty());
    match std::env::current_dir() {
        Ok(dir) if has_root => {
            let guest = exe_guest_path(&dir, mounts);
            if guest.first() == Some(&b'/') {
                guest
            } else {
                b"/".to_vec()
            }
        }
        _ => b"/".to_vec(),
    }
}

/// Parses --memory-max: a byte count with an optional K, M or G suffix (powers of 1024), a whole number of pages
/// from one page to `Memory::FRAMES_MAX_LIMIT` pages; gives the limit in pages (frames).
pub(crate) fn parse_memory_size(text: &str) -> Result<usize, String> {
    use tandem_emulator::memory::{Memory, PAGE_SIZE};
    let t = text.trim();
    let (digits, unit) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&t[..i], c.to_ascii_uppercase()),
        _ => (t, 'B'),
    };
    let shift = match unit {
        'B' => 0,
        'K' => 10,
        'M' => 20,
        'G' => 30,
        'T' => 40,
        _ => return Err(format!("{text:?}: the unit is K, M, G or T, such as 512M")),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?}: expected a size such as 512M or 4G"))?;
    let bytes = n
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))?;
    let pages = bytes / PAGE_SIZE as u64;
    let limit = Memory::FRAMES_MAX_LIMIT as u64;
    if bytes % PAGE_SIZE as u64 != 0 || pages == 0 || pages > limit {
        return Err(format!(
            "{text:?}: the limit is a whole number of 4 KiB pages, from 4K to {} GiB",
            limit >> 18
        ));
    }
    Ok(pages as usize)
}

/// The guest path of the program: where a mount shows it (the innermost), else the path as given.
pub(crate) fn exe_guest_path(program: &Path, mounts: &[Mount]) -> Vec<u8> {
    if let Ok(canon) = std::fs::canonicalize(program) {
        let mut by_depth: Vec<&Mount> = mounts.iter().collect();
        by_depth.sort_by_key(|m| std::cmp::Reverse(m.host.as_os_str().len()));
        for m in by_depth {
            if let Ok(rest) = canon.strip_prefix(&m.host) {
                let mut p: Vec<Vec<u8>> = m.guest.clone();
                p.extend(rest.iter().map(|c| c.as_bytes().to_vec()));
                return tandem_emulator::linux::vfs::join(&p);
            }
        }
    }
    program.as_os_str().as_bytes().to_vec()
}

pub fn run(command: RunCommand) -> anyhow::Result<()> {
    let (syscall_policy, serving) = match &command.profile {
        Some(path) => {
            let (policy, serving) = read_syscall_policy(path, &command.profile_action)?;
            (Some(policy), serving)
        }
        None => (None, None),
    };
    let mut args = command.run;
    args.command = script_command(&args.command, args.root.as_deref())?;
    if syscall_policy.is_some() && args.warm_at.is_some() {
        bail!("--profile cannot be combined with --warm-at: the calls before the warm point would not be checked");
    }
    let program = program_path(&args.command[0]);
    let bytes = read_input(&program, InputKind::Program)?;
    let serving = match serving {
        Some(phase) => Some((serving_boundary(&bytes, &phase, &program)?, phase)),
        None => None,
    };
    let mounts = guest_mounts(&args, &bytes)?;
    for e in &args.env {
        if !e.contains('=') {
            bail!("--env {e}: expected K=V, such as --env LANG=C");
        }
    }
    let volumes = guest_volumes(&args, &mounts)?;
    let config = LinuxConfig {
        seed: args.seed,
        argv: args.command.iter().map(|a| a.as_bytes().to_vec()).collect(),
        envp: args.env.iter().map(|e| e.as_bytes().to_vec()).collect(),
        exe_path: exe_guest_path(&program, &mounts),
        cwd: guest_cwd(&mounts),
        mounts,
        volumes,
        strict: args.strict,
        frames_max: args.memory_max,
        trace_syscalls: args.strace,
        sched: args.sched,
        cpus: args.cpus,
        ..LinuxConfig::default()
    };
    let plan = read_fault_plan(args.faults.as_deref(), args.faults_file.as_deref())?;
    let syscall_faults = syscall_fault_plan(&args)?;
    if args.warm_at.is_some() && !syscall_faults.is_empty() {
        bail!("--warm-at cannot be combined with --syscall-faults: calls are counted from the program's start");
    }
    if plan.missing_horizon() {
        bail!(
            "--faults: a count= fault needs within=ICOUNT in tandem run, such as \
             mem.ue:count=1,within=1000000 (tandem faults fills it with the fault-free run's length)"
        );
    }
    let policy = Policy {
        early_kill: args.early_kill,
        ..Policy::default()
    };
    let host = LiveHost::new(
        args.seed,
        &host_mounts(&config.mounts, &config.volumes),
        args.normalize_metadata,
    )?;
    let fault_seed = args.fault_seed.unwrap_or(args.seed);
    let mut hv = match &args.warm_at {
        Some(point) => {
            if !plan.describe().is_empty() {
                bail!("--warm-at cannot be combined with --faults: a fault before the warm point would be lost");
            }
            let seeding = if args.no_reseed {
                Seeding::Shared
            } else {
                Seeding::Own { clone: args.clone }
            };
            let warm = WarmStart {
                point,
                seeding,
                instructions_max: args.max_insns.unwrap_or(u64::MAX),
                jit: !args.no_jit,
            };
            let guest = warm_start(config, &bytes, host, &warm)
                .with_context(|| format!("--warm-at {point}: {}", program.display()))?;
            Hypervisor::with_guest(guest, bytes.into(), plan, policy, fault_seed)
        }
        None => Hypervisor::new(config, bytes.into(), host, plan, policy, fault_seed),
    }
    .with_context(|| format!("cannot load {}", program.display()))?;
    hv.guest.set_jit(!args.no_jit);
    hv.guest.set_syscall_policy(syscall_policy);
    install_syscall_faults(&mut hv.guest, &syscall_faults);
    install_journal(&mut hv.guest, &args)?;
    if args.coverage {
        hv.guest.set_coverage(Some(Box::new(
            tandem_emulator::cpu::coverage::Coverage::new(),
        )));
    }

    // A report about the emulator's speed, not an input of the guest.
    #[allow(clippy::disallowed_methods)]
    let started = std::time::Instant::now();
    let instructions_max = args.max_insns.unwrap_or(u64::MAX);
    let ended_before = match serving {
        Some(serving) => run_to_serving_phase(
            &mut hv,
            serving,
            instructions_max,
            &mut Lossy(std::io::stderr().lock()),
        )?,
        None => None,
    };
    let progress = match ended_before {
        Some(progress) => progress,
        None => hv.run_to_completion(instructions_max),
    };
    let seconds = started.elapsed().as_secs_f64();
    let guest = &mut hv.guest;
    let _ = guest.host.stdout.flush();

    // Report lines are best-effort: a closed stderr must not turn the guest's status into tandem's.
    let mut err = Lossy(std::io::stderr().lock());
    let status = match progress {
        Progress::Finished => {
            let t = guest
                .termination()
                .expect("a finished guest has a termination");
            if let Some(line) = t.diagnostic() {
                writeln!(err, "tandem: {line}")?;
            }
            t.exit_status()
        }
        Progress::BudgetExhausted => {
            writeln!(
                err,
                "tandem: stopped after {} instructions (--max-insns); the guest had not finished",
                guest.icount()
            )?;
            EXIT_INSTRUCTION_LIMIT
        }
    };
    for report in hv.reports() {
        writeln!(err, "tandem: {}", report.line())?;
    }
    if let Some(policy) = hv.guest.syscall_policy() {
        report_denials(policy, &mut err)?;
    }
    report_unfired_syscall_faults(&mut hv.guest, &mut err)?;
    finish_volumes(&mut hv.guest, &args.exports, &mut err)?;
    if let Some(path) = &args.core {
        write_core(&hv, path, &mut err)?;
    }
    let guest = &hv.guest;
    let stats = guest.stats();
    if !stats.unknown_syscalls.is_empty() {
        let list: Vec<String> = stats
            .unknown_syscalls
            .iter()
            .map(|(nr, n)| format!("{} (number {nr}) x{n}", syscall_name(*nr)))
            .collect();
        writeln!(
            err,
            "tandem: unknown syscalls answered -ENOSYS: {}",
            list.join(", ")
        )?;
    }
    for why in stats.unsupported.values() {
        writeln!(err, "tandem: warning: {why}")?;
    }
    if !stats.unimplemented_instructions.is_empty() {
        let list: Vec<String> = stats
            .unimplemented_instructions
            .iter()
            .map(|(what, n)| format!("{what} x{n}"))
            .collect();
        writeln!(
            err,
            "tandem: instructions tandem does not implement raised #UD, and the guest handled its SIGILL: {}",
            list.join(", ")
        )?;
    }
    if args.stats {
        let icount = guest.icount();
        writeln!(
            err,
            "tandem: {icount} instructions in {seconds:.3} s, {:.1} MIPS",
            icount as f64 / seconds.max(1e-9) / 1e6
        )?;
        writeln!(err, "tandem: syscalls:")?;
        for (name, n) in &stats.syscalls {
            writeln!(err, "tandem:   {name:<20} {n}")?;
        }
        writeln!(
            err,
            "tandem: signals delivered: {}",
            stats.signals_delivered
        )?;
        writeln!(
            err,
            "tandem: tasks created: {}, programs executed: {}, context switches: {}",
            stats.tasks_created, stats.execs, stats.context_switches
        )?;
        let plan = hv.plan().describe();
        if !plan.is_empty() {
            writeln!(
                err,
                "tandem: fault plan ({}, fault seed {}):",
                if hv.policy().early_kill {
                    "early kill"
                } else {
                    "late kill"
                },
                args.fault_seed.unwrap_or(args.seed)
            )?;
            for line in plan {
                writeln!(err, "tandem:   {line}")?;
            }
            writeln!(err, "tandem: faults injected: {}", hv.injections().len())?;
        }
    }
    if args.report_state {
        writeln!(
            err,
            "tandem: icount {} state_hash {:#018x}",
            guest.icount(),
            guest.state_hash()
        )?;
    }
    err.flush()?;
    std::process::exit(status);
}

/// How `tandem run --warm-at` (and `tandem pool`) start a guest warm.
pub(crate) struct WarmStart<'a> {
    pub(crate) point: &'a str,
    pub(crate) seeding: Seeding,
    pub(crate) instructions_max: u64,
    pub(crate) jit: bool,
}

/// Runs the program to the warm point on `host`, snapshots it there and gives a new guest restored from the
/// snapshot, with `host` (and the output the run wrote so far on it).
pub(crate) fn warm_start<H: tandem_replay::pools::EntropyHost>(
    config: LinuxConfig,
    program: &[u8],
    host: H,
    warm: &WarmStart,
) -> anyhow::Result<LinuxMachine<H>> {
    let (image, host) = warm_image(config, program, host, warm)?;
    Ok(image.instance(host, warm.seeding))
}

/// The warm image of the program at `warm.point`, and the host it ran on.
pub(crate) fn warm_image<H: tandem_replay::pools::EntropyHost>(
    config: LinuxConfig,
    program: &[u8],
    mut host: H,
    warm: &WarmStart,
) -> anyhow::Result<(WarmImage, H)> {
    let point = WarmPoint::parse(warm.point)?;
    let target = locate(&point, &config, program, &mut host, warm.instructions_max)?;
    let mut guest = LinuxMachine::new(config, program, host)?;
    guest.set_jit(warm.jit);
    run_to(&mut guest, target, &point, warm.instructions_max)?;
    let image = WarmImage::take(&mut guest, point);
    Ok((image, guest.host))
}

/// The fault plan of --faults or --faults-file (empty without either).
pub fn read_fault_plan(spec: Option<&str>, file: Option<&Path>) -> anyhow::Result<FaultPlan> {
    if let Some(spec) = spec {
        return Ok(FaultPlan::parse_spec(spec, "--faults")?);
    }
    let Some(path) = file else {
        return Ok(FaultPlan::default());
    };
    let text = read_input_text(path, InputKind::FaultsFile).context("--faults-file")?;
    Ok(FaultPlan::parse_toml(&text, &path.display().to_string())?)
}

/// Signals whose default action dumps core (signal(7)).
fn dumps_core(signal: i32) -> bool {
    matches!(signal, SIGSEGV | SIGBUS | SIGILL | SIGFPE | SIGABRT)
}

fn write_core<H: Host>(
    hv: &Hypervisor<H>,
    path: &Path,
    err: &mut impl Write,
) -> anyhow::Result<()> {
    let dump = hv.core_dump().context("cannot build the core file")?;
    std::fs::write(path, &dump.bytes)
        .with_context(|| format!("--core: cannot write {}", path.display()))?;
    let why = match hv.guest.termination() {
        Some(Termination::Signaled { signal, .. }) if dumps_core(*signal) => "at the crash",
        _ => "on request",
    };
    writeln!(
        err,
        "tandem: core written to {} {why}: {} bytes, {} memory segments, {} poisoned pages left out",
        path.display(),
        dump.bytes.len(),
        dump.load_segments,
        dump.poisoned_pages.len()
    )?;
    Ok(())
}
