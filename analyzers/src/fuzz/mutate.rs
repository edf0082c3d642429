//! Mutators over the whole genome: AFL's havoc (stacked random byte edits: bit flips, interesting values,
//! arithmetic, block deletion, duplication and overwrite), splicing of two corpus entries, tokens from the
//! comparison constants the emulator saw (CMPLOG-style, cpu/coverage.rs), and structural edits of the fault plan
//! aimed at the syscalls the parent run made (add a fault at one of its calls, move one, drop one).
//!
//! Every choice is drawn from the caller's ChaCha stream, so a mutation is a function of the stream's state.

use super::genome::{Genome, ERRNOS, STDIN_BYTES_MAX};
use rand::Rng;
use rand_chacha::ChaCha20Rng;
use tandem_emulator::linux::syscall_faults::{SyscallFault, SyscallFaultAction, FAULTS_MAX};

/// AFL's interesting values.
const INTERESTING_8: [i8; 9] = [-128, -1, 0, 1, 16, 32, 64, 100, 127];
const INTERESTING_16: [i16; 10] = [-32768, -129, 128, 255, 256, 512, 1000, 1024, 4096, 32767];
const INTERESTING_32: [i32; 8] = [
    -2147483648,
    -100663046,
    -32769,
    32768,
    65535,
    65536,
    100663045,
    2147483647,
];
/// Largest block havoc inserts or deletes.
const HAVOC_BLOCK_BYTES_MAX: usize = 64;
/// Most stacked edits of one havoc round (AFL's HAVOC_STACK_POW2 = 7).
const HAVOC_STACK_POW2: u32 = 7;
const ARITH_MAX: u8 = 35;

/// What the mutator may draw on besides the parent.
pub struct Context<'a> {
    /// Comparison constants (value, size in bytes).
    pub dictionary: &'a [(u64, u8)],
    /// Another corpus entry to splice with.
    pub other: Option<&'a Genome>,
    /// The parent run's calls per syscall number.
    pub syscall_calls: &'a [(u64, u64)],
}

/// The operator that made a child, for queue names (`op:havoc`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operator {
    Havoc,
    Dictionary,
    Splice,
    Fault,
}

impl Operator {
    pub fn name(self) -> &'static str {
        match self {
            Operator::Havoc => "havoc",
            Operator::Dictionary => "dict",
            Operator::Splice => "splice",
            Operator::Fault => "fault",
        }
    }
}

/// A child of `parent`.
pub fn mutate(parent: &Genome, ctx: &Context, rng: &mut ChaCha20Rng) -> (Genome, Operator) {
    let mut child = parent.clone();
    let pick = rng.random_range(0..100u32);
    let op = if pick < 12 && !ctx.syscall_calls.is_empty() {
        mutate_faults(&mut child, ctx.syscall_calls, rng);
        Operator::Fault
    } else if pick < 22 && !ctx.dictionary.is_empty() && !child.stdin.is_empty() {
        // One token alone, not buried under stacked edits (AFL's dictionary stage, drawn instead of walked).
        put_token(&mut child.stdin, ctx.dictionary, rng);
        Operator::Dictionary
    } else if pick < 34 && ctx.other.is_some_and(|o| !o.stdin.is_empty()) {
        if let Some(other) = ctx.other {
            splice(&mut child.stdin, &other.stdin, rng);
        }
        havoc(&mut child.stdin, ctx.dictionary, rng);
        Operator::Splice
    } else {
        havoc(&mut child.stdin, ctx.dictionary, rng);
        Operator::Havoc
    };
    child.normalise();
    (child, op)
}

/// AFL's splice: the first part of `data` up to a random point, the rest from `other`.
fn splice(data: &mut Vec<u8>, other: &[u8], rng: &mut ChaCha20Rng) {
    let shared = data.len().min(other.len());
    if shared < 2 {
        return;
    }
    let at = rng.random_range(1..shared);
    data.truncate(at);
    data.extend_from_slice(&other[at..]);
}

/// AFL's havoc: 2 to 128 stacked random edits.
pub fn havoc(data: &mut Vec<u8>, dictionary: &[(u64, u8)], rng: &mut ChaCha20Rng) {
    let stack = 1usize << rng.random_range(1..=HAVOC_STACK_POW2);
    for _ in 0..stack {
        havoc_one(data, dictionary, rng);
    }
    data.truncate(STDIN_BYTES_MAX);
}

fn havoc_one(data: &mut Vec<u8>, dictionary: &[(u64, u8)], rng: &mut ChaCha20Rng) {
    if data.is_empty() {
        let n = rng.random_range(1..=8);
        data.extend((0..n).map(|_| rng.random::<u8>()));
        return;
    }
    let len = data.len();
    match rng.random_range(0..14u32) {
        0 => {
            let bit = rng.random_range(0..len * 8);
            data[bit / 8] ^= 0x80 >> (bit % 8);
        }
        1 => data[rng.random_range(0..len)] = INTERESTING_8[rng.random_range(0..9)] as u8,
        2 if len >= 2 => {
            let v = INTERESTING_16[rng.random_range(0..10)] as u16;
            let bytes = swap_maybe16(v, rng).to_le_bytes();
            put(data, rng, &bytes);
        }
        3 if len >= 4 => {
            let v = INTERESTING_32[rng.random_range(0..8)] as u32;
            let bytes = swap_maybe32(v, rng).to_le_bytes();
            put(data, rng, &bytes);
        }
        4 => {
            let i = rng.random_range(0..len);
            data[i] = data[i].wrapping_add(rng.random_range(1..=ARITH_MAX));
        }
        5 => {
            let i = rng.random_range(0..len);
            data[i] = data[i].wrapping_sub(rng.random_range(1..=ARITH_MAX));
        }
        6 => data[rng.random_range(0..len)] ^= rng.random_range(1..=255u8),
        7 | 8 if len >= 2 => {
            // Delete a block (twice as likely as inserting: keeps inputs small, as AFL does).
            let n = rng.random_range(1..=len.min(HAVOC_BLOCK_BYTES_MAX).min(len - 1));
            let at = rng.random_range(0..=len - n);
            data.drain(at..at + n);
        }
        9 => {
            // Insert a copy of a block, or a run of one byte.
            let n = rng.random_range(1..=len.min(HAVOC_BLOCK_BYTES_MAX));
            let from = rng.random_range(0..=len - n);
            let block: Vec<u8> = if rng.random_bool(0.75) {
                data[from..from + n].to_vec()
            } else {
                vec![rng.random(); n]
            };
            let at = rng.random_range(0..=len);
            data.splice(at..at, block);
        }
        10 => {
            // Overwrite with a block from elsewhere.
            let n = rng.random_range(1..=len.min(HAVOC_BLOCK_BYTES_MAX));
            let from = rng.random_range(0..=len - n);
            let to = rng.random_range(0..=len - n);
            data.copy_within(from..from + n, to);
        }
        11..=13 if !dictionary.is_empty() => put_token(data, dictionary, rng),
        _ => {
            let i = rng.random_range(0..len);
            data[i] = rng.random();
        }
    }
}

/// A comparison constant, in either byte order, over the input at a random place or inserted.
fn put_token(data: &mut Vec<u8>, dictionary: &[(u64, u8)], rng: &mut ChaCha20Rng) {
    let (value, size) = dictionary[rng.random_range(0..dictionary.len())];
    let bytes = &value.to_le_bytes()[..size.clamp(1, 8) as usize];
    let token: Vec<u8> = if rng.random_bool(0.75) {
        bytes.to_vec()
    } else {
        bytes.iter().rev().copied().collect()
    };
    if rng.random_bool(0.7) && token.len() <= data.len() {
        put(data, rng, &token);
    } else {
        let at = rng.random_range(0..=data.len());
        data.splice(at..at, token);
    }
}

/// Overwrites `bytes.len()` bytes at a random place (`data` is at least that long).
fn put(data: &mut [u8], rng: &mut ChaCha20Rng, bytes: &[u8]) {
    let at = rng.random_range(0..=data.len() - bytes.len());
    data[at..at + bytes.len()].copy_from_slice(bytes);
}

fn swap_maybe16(v: u16, rng: &mut ChaCha20Rng) -> u16 {
    if rng.random_bool(0.5) {
        v.swap_bytes()
    } else {
        v
    }
}

fn swap_maybe32(v: u32, rng: &mut ChaCha20Rng) -> u32 {
    if rng.random_bool(0.5) {
        v.swap_bytes()
    } else {
        v
    }
}

/// The faults a real kernel gives each syscall the fuzzer fails (their man pages' ERRORS), by number: memory
/// (mmap, brk, mremap: ENOMEM), transfers (read, write, pread64, pwrite64: a short count, EINTR, EIO; writes
/// also ENOSPC; readv, writev: the errnos), opening (open, openat: ENOMEM, EINTR), close (EINTR, EIO), and
/// fsync, fdatasync (EIO, ENOSPC). Other syscalls are never failed: their failure would be no real machine's
/// (arch_prctl, set_tid_address), and findings made of it would be noise.
const FAULTABLE: [(u64, &[Fault]); 15] = {
    use Fault::*;
    [
        (0, &[Short, Eintr, Eio]),
        (1, &[Short, Eintr, Eio, Enospc]),
        (2, &[Enomem, Eintr]),
        (3, &[Eintr, Eio]),
        (9, &[Enomem]),
        (12, &[Enomem]),
        (17, &[Short, Eintr, Eio]),
        (18, &[Short, Eintr, Eio, Enospc]),
        (19, &[Eintr, Eio]),
        (20, &[Eintr, Eio, Enospc]),
        (25, &[Enomem]),
        (74, &[Eio, Enospc]),
        (75, &[Eio, Enospc]),
        (257, &[Enomem, Eintr]),
        (7, &[Eintr]), // poll
    ]
};

#[derive(Clone, Copy)]
enum Fault {
    Short,
    Eintr,
    Eio,
    Enomem,
    Enospc,
}

/// Whether the fuzzer fails syscall `nr` at all.
pub fn is_faultable(nr: u64) -> bool {
    FAULTABLE.iter().any(|(n, _)| *n == nr)
}

/// One structural edit of the fault plan: add a fault at a call the parent made (most often), move a fault to
/// another call of its syscall, or drop one. Only syscalls in `FAULTABLE` are failed.
pub fn mutate_faults(g: &mut Genome, syscall_calls: &[(u64, u64)], rng: &mut ChaCha20Rng) {
    let choice = rng.random_range(0..10u32);
    if choice < 2 && !g.faults.is_empty() {
        let i = rng.random_range(0..g.faults.len());
        g.faults.remove(i);
        return;
    }
    if choice < 4 && !g.faults.is_empty() {
        let i = rng.random_range(0..g.faults.len());
        let calls = syscall_calls
            .iter()
            .find(|(nr, _)| *nr == g.faults[i].nr)
            .map_or(1, |(_, n)| *n)
            .max(1);
        g.faults[i].call = rng.random_range(1..=calls);
        return;
    }
    let faultable: Vec<(u64, u64)> = syscall_calls
        .iter()
        .copied()
        .filter(|(nr, _)| is_faultable(*nr))
        .collect();
    if g.faults.len() >= FAULTS_MAX || faultable.is_empty() {
        return;
    }
    let (nr, calls) = faultable[rng.random_range(0..faultable.len())];
    let call = rng.random_range(1..=calls.max(1));
    g.faults.push(SyscallFault {
        nr,
        call,
        action: fault_for(nr, rng),
    });
}

/// A fault a real kernel could give `nr` (one of `FAULTABLE`'s).
fn fault_for(nr: u64, rng: &mut ChaCha20Rng) -> SyscallFaultAction {
    let kinds = FAULTABLE
        .iter()
        .find(|(n, _)| *n == nr)
        .map_or(&[Fault::Eio][..], |(_, f)| f);
    let errno = |name: &str| {
        ERRNOS
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(5, |(_, e)| *e)
    };
    match kinds[rng.random_range(0..kinds.len())] {
        Fault::Short => SyscallFaultAction::Short(rng.random_range(1..=16)),
        Fault::Eintr => SyscallFaultAction::Errno(errno("EINTR")),
        Fault::Eio => SyscallFaultAction::Errno(errno("EIO")),
        Fault::Enomem => SyscallFaultAction::Errno(errno("ENOMEM")),
        Fault::Enospc => SyscallFaultAction::Errno(errno("ENOSPC")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn the_same_stream_gives_the_same_children() {
        let parent = Genome {
            stdin: b"hello world".to_vec(),
            faults: vec![],
        };
        let dict = [(0xdead_beef, 4)];
        let other = Genome {
            stdin: b"another input".to_vec(),
            faults: vec![],
        };
        let ctx = Context {
            dictionary: &dict,
            other: Some(&other),
            syscall_calls: &[(0, 3), (9, 2)],
        };
        let children = |seed| {
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            (0..200)
                .map(|_| mutate(&parent, &ctx, &mut rng).0)
                .collect::<Vec<_>>()
        };
        let a = children(1);
        assert_eq!(a, children(1));
        assert_ne!(a, children(2));
        assert!(a.iter().any(|g| !g.faults.is_empty()));
        assert!(a.iter().any(|g| g
            .stdin
            .windows(4)
            .any(|w| w == 0xdead_beefu32.to_le_bytes())));
        assert!(a.iter().all(|g| g.faults.iter().all(|f| f.call >= 1)));
    }
}
