//! A test case as one genome: the bytes the program reads on stdin and a plan of syscall faults.
//!
//! On disk (AFL++'s layout), a queue or crash entry is the raw stdin bytes, so afl-cmin, afl-showmap-style tools
//! and seed corpora carry over; a genome with faults has them beside it in `NAME.faults`, one per line:
//! `SYSCALL CALL errno ERRNO` or `SYSCALL CALL short BYTES` (`mmap 3 errno ENOMEM`, `read 1 short 1`), the
//! syntax `tandem run --syscall-faults` takes (each line one value of it). A line that does not parse is an
//! error naming the file and the line.

use crate::{syscall_name, syscall_number};
use std::fmt::Write as _;
use tandem_emulator::linux::syscall_faults::{SyscallFault, SyscallFaultAction, FAULTS_MAX};

/// Largest stdin a genome holds (AFL's MAX_FILE).
pub const STDIN_BYTES_MAX: usize = 1 << 20;

/// The errnos a fault plan injects, by name (asm-generic/errno-base.h).
pub const ERRNOS: [(&str, u16); 5] = [
    ("EINTR", 4),
    ("EIO", 5),
    ("ENOMEM", 12),
    ("ENOSPC", 28),
    ("EAGAIN", 11),
];

/// One test case.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Genome {
    pub stdin: Vec<u8>,
    /// Sorted by (syscall, call); at most `FAULTS_MAX`.
    pub faults: Vec<SyscallFault>,
}

/// A fault line that does not parse.
#[derive(Debug, thiserror::Error)]
#[error(
    "line {line}: {message} (expected `SYSCALL CALL errno NAME` or `SYSCALL CALL short BYTES`)"
)]
pub struct FaultParseError {
    pub line: usize,
    pub message: String,
}

impl Genome {
    /// Sorts and deduplicates the fault plan (one fault per call), keeping at most `FAULTS_MAX`.
    pub fn normalise(&mut self) {
        self.faults.sort();
        self.faults.dedup_by_key(|f| (f.nr, f.call));
        self.faults.truncate(FAULTS_MAX);
        self.stdin.truncate(STDIN_BYTES_MAX);
    }

    /// The fault plan as text, one fault a line (empty when there are none).
    pub fn faults_text(&self) -> String {
        let mut out = String::new();
        for f in &self.faults {
            let _ = writeln!(out, "{}", fault_text(f));
        }
        out
    }
}

/// One fault as `SYSCALL CALL errno NAME` or `SYSCALL CALL short BYTES`.
pub fn fault_text(f: &SyscallFault) -> String {
    match f.action {
        SyscallFaultAction::Errno(e) => {
            let name = ERRNOS
                .iter()
                .find(|(_, n)| *n == e)
                .map(|(s, _)| s.to_string())
                .unwrap_or_else(|| e.to_string());
            format!("{} {} errno {name}", syscall_name(f.nr), f.call)
        }
        SyscallFaultAction::Short(n) => format!("{} {} short {n}", syscall_name(f.nr), f.call),
    }
}

/// Parses a fault plan written by `Genome::faults_text` (blank lines and `#` comments allowed).
pub fn parse_faults(text: &str) -> Result<Vec<SyscallFault>, FaultParseError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let err = |message: &str| FaultParseError {
            line: i + 1,
            message: message.to_string(),
        };
        let words: Vec<&str> = line.split_whitespace().collect();
        let [name, call, kind, value] = words[..] else {
            return Err(err("four words expected"));
        };
        let nr = syscall_number(name).ok_or_else(|| err("unknown syscall name"))?;
        let call: u64 = call
            .parse()
            .ok()
            .filter(|&c| c >= 1)
            .ok_or_else(|| err("the call is a number from 1"))?;
        let action = match kind {
            "errno" => {
                let e = ERRNOS
                    .iter()
                    .find(|(s, _)| *s == value)
                    .map(|(_, n)| *n)
                    .or_else(|| value.parse().ok().filter(|&e| e > 0 && e < 4096))
                    .ok_or_else(|| err("unknown errno"))?;
                SyscallFaultAction::Errno(e)
            }
            "short" => SyscallFaultAction::Short(
                value
                    .parse()
                    .ok()
                    .filter(|&n| n >= 1)
                    .ok_or_else(|| err("short takes a byte count from 1"))?,
            ),
            _ => return Err(err("the kind is errno or short")),
        };
        if out.len() >= FAULTS_MAX {
            return Err(err("too many faults"));
        }
        out.push(SyscallFault { nr, call, action });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_text_round_trips() {
        let g = Genome {
            stdin: vec![],
            faults: vec![
                SyscallFault {
                    nr: 0,
                    call: 2,
                    action: SyscallFaultAction::Short(1),
                },
                SyscallFault {
                    nr: 9,
                    call: 3,
                    action: SyscallFaultAction::Errno(12),
                },
            ],
        };
        let text = g.faults_text();
        assert_eq!(text, "read 2 short 1\nmmap 3 errno ENOMEM\n");
        assert_eq!(parse_faults(&text).unwrap(), g.faults);
    }

    #[test]
    fn a_bad_line_is_named() {
        let e = parse_faults("read 1 short 1\nfrobnicate 1 errno EIO\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(parse_faults("read 0 short 1").is_err());
        assert!(parse_faults("read 1 short 0").is_err());
    }
}
