//! Warm snapshots: a guest run to a chosen point (a symbol, an instruction count, or just before its first read of
//! stdin) and kept as a `LinuxSnapshot`, from which any number of instances start, copy-on-write, instead of loading
//! the ELF and running the program's startup again.
//!
//! Randomness of clones (`Seeding`). With `Seeding::Own { clone }` (the default of `tandem run --warm-at` and
//! `tandem pool`), an instance draws from streams of its own from the warm point on: getrandom(2) and /dev/urandom
//! from "linux.getrandom/clone/N", RDRAND from "cpu.rdrand/clone/N/space/I". What clones of one snapshot share,
//! because it was already drawn or is part of the state when the snapshot was taken:
//! - the 16 AT_RANDOM bytes (and what libc derived from them: the stack protector canary, the pointer guard);
//! - every random value the program drew before the warm point and keeps in memory (hash seeds, malloc's);
//! - the scheduler's stream ("linux.sched"), the socket layer's ephemeral ports and the fault stream: these
//!   are not values a program reads as randomness, and keeping them keeps the clones' schedules alike;
//! - a program image executed after the warm point (execve) gets AT_RANDOM and RDRAND streams keyed by the root
//!   seed and the exec count, as in a cold run, so clones that exec share those too.
//!
//! With `Seeding::Shared` (`--no-reseed`) an instance continues exactly as the run that made the snapshot would
//! have: same output, instruction count and state hash as a cold run (tests/warm_pools.rs).
//!
//! Invariants: the snapshot is taken at an instruction boundary; for `first-read-of-stdin` the boundary is
//! just before the SYSCALL instruction of the first read of stdin, so nothing of stdin is in the snapshot and
//! every instance reads its own. Finding that instruction takes a probe run that reads no stdin, writes no output
//! and draws entropy from a copy of the host's stream (it takes the same path: nothing it skipped was read yet).

use super::PoolError;
use std::collections::BTreeSet;
use tandem_emulator::linux::abi::Errno;
use tandem_emulator::linux::{
    Host, LinuxConfig, LinuxMachine, LinuxSnapshot, MemoryHost, Progress, SeededEntropy,
};

/// Where a warm snapshot is taken (`--warm-at`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WarmPoint {
    /// The first time the program's running thread reaches this ELF symbol of the program (at the PIE's load
    /// bias for a position-independent program).
    Symbol(String),
    /// After exactly this many instructions.
    Icount(u64),
    /// Just before the SYSCALL instruction of the program's first read of stdin.
    FirstReadOfStdin,
}

impl WarmPoint {
    /// `first-read-of-stdin`, a number (decimal or 0x hex: an instruction count) or a symbol name.
    pub fn parse(text: &str) -> Result<WarmPoint, PoolError> {
        let t = text.trim();
        if t == "first-read-of-stdin" {
            return Ok(WarmPoint::FirstReadOfStdin);
        }
        let number = match t.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).ok(),
            None => t.parse().ok(),
        };
        if let Some(n) = number {
            return Ok(WarmPoint::Icount(n));
        }
        let symbol_like = t
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.$@".contains(&b));
        if t.is_empty() || !symbol_like || t.as_bytes()[0].is_ascii_digit() {
            return Err(PoolError::BadPoint { text: text.into() });
        }
        Ok(WarmPoint::Symbol(t.to_string()))
    }

    /// The point as `--warm-at` takes it.
    pub fn text(&self) -> String {
        match self {
            WarmPoint::Symbol(s) => s.clone(),
            WarmPoint::Icount(n) => n.to_string(),
            WarmPoint::FirstReadOfStdin => "first-read-of-stdin".into(),
        }
    }
}

/// A warm point resolved for one program: where the run stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WarmTarget {
    /// After exactly this many instructions.
    Icount(u64),
    /// When the running thread's rip is first this address.
    Address(u64),
}

/// A host whose entropy stream a warm snapshot can keep and a clone can replace.
pub trait EntropyHost: Host {
    /// The stream at its current position.
    fn entropy(&self) -> SeededEntropy;
    fn set_entropy(&mut self, entropy: SeededEntropy);
}

impl EntropyHost for MemoryHost {
    fn entropy(&self) -> SeededEntropy {
        MemoryHost::entropy(self).clone()
    }
    fn set_entropy(&mut self, entropy: SeededEntropy) {
        MemoryHost::set_entropy(self, entropy);
    }
}

/// How an instance's randomness relates to its snapshot's (see the module doc for what clones share).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seeding {
    /// The instance continues the snapshot's streams: it runs exactly as the run that made the snapshot would.
    Shared,
    /// The instance draws from streams of its own, keyed by the root seed and `clone`.
    Own { clone: u64 },
}

/// A guest at its warm point and everything an instance needs to start from it.
pub struct WarmImage {
    config: LinuxConfig,
    snapshot: LinuxSnapshot,
    /// The host's entropy stream at the warm point (a `Seeding::Shared` instance continues it).
    entropy: SeededEntropy,
    point: WarmPoint,
}

impl WarmImage {
    /// Takes the snapshot of `guest` where it stands.
    pub fn take<H: EntropyHost>(guest: &mut LinuxMachine<H>, point: WarmPoint) -> WarmImage {
        WarmImage {
            config: guest.config().clone(),
            snapshot: guest.snapshot(),
            entropy: guest.host.entropy(),
            point,
        }
    }

    /// The instruction count of the warm point.
    pub fn icount(&self) -> u64 {
        self.snapshot.icount()
    }

    pub fn point(&self) -> &WarmPoint {
        &self.point
    }

    /// The bytes the image holds besides the guest frames it shares copy-on-write.
    pub fn fixed_bytes(&self) -> usize {
        self.snapshot.fixed_bytes()
    }

    /// A new guest at the warm point talking to `host`: no ELF is loaded and no startup instruction is run.
    pub fn instance<H: EntropyHost>(&self, mut host: H, seeding: Seeding) -> LinuxMachine<H> {
        match seeding {
            Seeding::Shared => host.set_entropy(self.entropy.clone()),
            Seeding::Own { clone } => {
                host.set_entropy(SeededEntropy::for_clone(self.config.seed, clone))
            }
        }
        let mut guest = LinuxMachine::from_snapshot(self.config.clone(), &self.snapshot, host);
        if let Seeding::Own { clone } = seeding {
            guest.reseed_clone(clone);
        }
        guest
    }
}

/// Resolves `point` for `program`: a symbol to its address, `first-read-of-stdin` to an instruction count found
/// by a probe run (see the module doc) that reads files through `host` and nothing else of it.
pub fn locate<H: EntropyHost>(
    point: &WarmPoint,
    config: &LinuxConfig,
    program: &[u8],
    host: &mut H,
    instructions_max: u64,
) -> Result<WarmTarget, PoolError> {
    match point {
        WarmPoint::Icount(n) => Ok(WarmTarget::Icount(*n)),
        WarmPoint::Symbol(name) => symbol_address(program, name)
            .map(WarmTarget::Address)
            .ok_or_else(|| PoolError::NoSymbol { name: name.clone() }),
        WarmPoint::FirstReadOfStdin => {
            let entropy = host.entropy();
            let probe = ProbeHost {
                inner: host,
                entropy,
                syscall_icount: 0,
                stdin_read_at: None,
            };
            let mut guest = LinuxMachine::new(config.clone(), program, probe)
                .map_err(|e| PoolError::Load(e.to_string()))?;
            while guest.host.stdin_read_at.is_none() {
                let left = instructions_max.saturating_sub(guest.icount());
                if left == 0 {
                    return Err(PoolError::NotReached {
                        point: point.text(),
                        instructions_max,
                    });
                }
                if guest.run(left) == Progress::Finished && guest.host.stdin_read_at.is_none() {
                    return Err(PoolError::Ended {
                        point: point.text(),
                        icount: guest.icount(),
                    });
                }
            }
            let at = guest.host.stdin_read_at.unwrap_or(0);
            // The SYSCALL instruction itself is counted in `at`: stop before it.
            Ok(WarmTarget::Icount(at.saturating_sub(1)))
        }
    }
}

/// Runs `guest` to `target` (at most `instructions_max` instructions in all).
pub fn run_to<H: Host>(
    guest: &mut LinuxMachine<H>,
    target: WarmTarget,
    point: &WarmPoint,
    instructions_max: u64,
) -> Result<(), PoolError> {
    let ended = |guest: &LinuxMachine<H>| PoolError::Ended {
        point: point.text(),
        icount: guest.icount(),
    };
    match target {
        WarmTarget::Icount(n) => {
            if n > instructions_max {
                return Err(PoolError::NotReached {
                    point: point.text(),
                    instructions_max,
                });
            }
            while guest.icount() < n {
                if guest.run_to_completion(n) == Progress::Finished {
                    return Err(ended(guest));
                }
            }
            Ok(())
        }
        WarmTarget::Address(addr) => {
            let stops: BTreeSet<u64> = [addr].into();
            while guest.rip() != addr {
                if guest.icount() >= instructions_max {
                    return Err(PoolError::NotReached {
                        point: point.text(),
                        instructions_max,
                    });
                }
                let n = guest.instructions_until(&stops).max(1);
                let n = n.min(instructions_max - guest.icount());
                if guest.run(n) == Progress::Finished {
                    return Err(ended(guest));
                }
            }
            Ok(())
        }
    }
}

/// The address of an ELF symbol of the program (function or object), at the load bias of a PIE.
pub fn symbol_address(program: &[u8], name: &str) -> Option<u64> {
    use object::{Object, ObjectSymbol};
    let bias = tandem_emulator::linux::elf::ElfFile::parse(program)
        .ok()
        .filter(|elf| elf.is_pie())
        .map_or(0, |_| tandem_emulator::linux::elf::PIE_BASE);
    let file = object::File::parse(program).ok()?;
    let found = file
        .symbols()
        .find(|s| s.name() == Ok(name) && s.address() != 0)?;
    Some(found.address().wrapping_add(bias))
}

/// The host of a `first-read-of-stdin` probe: files from the real host, no stdin (its first read is noted and
/// answered with end of file), output dropped, entropy from a copy of the real host's stream.
struct ProbeHost<'a, H: Host> {
    inner: &'a mut H,
    entropy: SeededEntropy,
    /// The icount of the syscall being handled (the SYSCALL instruction counted).
    syscall_icount: u64,
    stdin_read_at: Option<u64>,
}

impl<H: Host> Host for ProbeHost<'_, H> {
    tandem_emulator::forward_host!(inner: metadata, read_file, read_dir, read_link);
    fn read_stdin(&mut self, _buf: &mut [u8]) -> Result<usize, Errno> {
        self.stdin_read_at.get_or_insert(self.syscall_icount);
        Ok(0)
    }
    fn write_stdout(&mut self, _bytes: &[u8]) -> Result<(), Errno> {
        Ok(())
    }
    fn write_stderr(&mut self, _bytes: &[u8]) -> Result<(), Errno> {
        Ok(())
    }
    fn fill_random(&mut self, out: &mut [u8]) {
        self.entropy.fill(out);
    }
    fn syscall_entry(&mut self, icount: u64, _tid: i32, _number: u64) {
        self.syscall_icount = icount;
    }
    fn pause_requested(&self) -> bool {
        self.stdin_read_at.is_some()
    }
}
