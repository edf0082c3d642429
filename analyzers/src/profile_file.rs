//! The profile file: what `tandem profile -o FILE` writes and `tandem run --profile FILE` enforces.
//!
//! A versioned, line-oriented text format that a person can read, diff and edit:
//!
//! ```text
//! tandem-profile 1
//! # static profile of corpus/bin/hello-musl
//! syscall 1 write
//! syscall 231 exit_group
//! ```
//!
//! The first line that is not blank or a comment (`#`) names the format and its version. Then one entry a line:
//! `syscall NUMBER [NAME]` or `syscall NAME` (x86-64 numbers; when both are given they must agree, which catches
//! a hand edit that changed one of them). Unknown keywords, a version other than 1 and a repeated entry are
//! errors naming the line: a profile that silently allows something else than its author meant is worse than
//! none.

use crate::{syscall_name, syscall_number, SyscallSet};

/// The first word of a profile file.
pub const MAGIC: &str = "tandem-profile";
/// The version this build writes and reads.
pub const VERSION: u32 = 1;

/// Why a profile file cannot be read: the line (1-based) and what is wrong there.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {message}")]
pub struct ProfileFileError {
    pub line: usize,
    pub message: String,
}

/// A profile: the system calls a program may make.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProfileFile {
    pub syscalls: SyscallSet,
}

impl ProfileFile {
    /// The file's text; `comment` (one line, or empty) goes under the version line.
    pub fn to_text(&self, comment: &str) -> String {
        let mut out = format!("{MAGIC} {VERSION}\n");
        if !comment.is_empty() {
            out.push_str(&format!("# {}\n", comment.replace('\n', " ")));
        }
        for &nr in &self.syscalls {
            out.push_str(&format!("syscall {nr} {}\n", syscall_name(nr)));
        }
        out
    }

    /// Reads the text of a profile file.
    pub fn parse(text: &str) -> Result<ProfileFile, ProfileFileError> {
        let mut profile = ProfileFile::default();
        let mut versioned = false;
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fail = |message: String| ProfileFileError {
                line: i + 1,
                message,
            };
            let words: Vec<&str> = line.split_whitespace().collect();
            if !versioned {
                match words.as_slice() {
                    [MAGIC, v] if v.parse() == Ok(VERSION) => versioned = true,
                    [MAGIC, v] => {
                        return Err(fail(format!(
                            "format version {v}: this tandem reads version {VERSION}"
                        )))
                    }
                    _ => {
                        return Err(fail(format!(
                            "not a tandem profile: the first line must be `{MAGIC} {VERSION}` (write one \
                             with tandem profile -o FILE -- PROGRAM)"
                        )))
                    }
                }
                continue;
            }
            match words.as_slice() {
                ["syscall", rest @ ..] if !rest.is_empty() && rest.len() <= 2 => {
                    let nr = syscall_entry(rest).map_err(fail)?;
                    if !profile.syscalls.insert(nr) {
                        return Err(fail(format!("syscall {nr} is listed twice")));
                    }
                }
                _ => {
                    return Err(fail(format!(
                        "expected `syscall NUMBER NAME` or `syscall NAME`, found `{line}`"
                    )))
                }
            }
        }
        if !versioned {
            return Err(ProfileFileError {
                line: 1,
                message: format!("empty: a profile starts with `{MAGIC} {VERSION}`"),
            });
        }
        Ok(profile)
    }
}

/// The number of a `syscall` entry's words: NUMBER, NAME, or NUMBER NAME (agreeing).
fn syscall_entry(words: &[&str]) -> Result<u64, String> {
    let by_name = |name: &str| {
        syscall_number(name).ok_or_else(|| format!("no x86-64 syscall is named `{name}`"))
    };
    match *words {
        [one] => match one.parse::<u64>() {
            Ok(nr) => Ok(nr),
            Err(_) => by_name(one),
        },
        [number, name] => {
            let nr: u64 = number
                .parse()
                .map_err(|_| format!("`{number}` is not a syscall number"))?;
            if syscall_name(nr) != name {
                return Err(format!(
                    "syscall {nr} is {}, not {name}: fix the number or the name",
                    syscall_name(nr)
                ));
            }
            Ok(nr)
        }
        _ => Err("expected `syscall NUMBER NAME`".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_round_trips_through_its_text() {
        let p = ProfileFile {
            syscalls: [0, 1, 60, 231].into(),
        };
        let text = p.to_text("static profile of hello");
        assert!(text.starts_with("tandem-profile 1\n# static profile of hello\nsyscall 0 read\n"));
        assert_eq!(ProfileFile::parse(&text), Ok(p));
        let by_name =
            ProfileFile::parse("# hand-written\ntandem-profile 1\nsyscall write\n  syscall 60\n");
        assert_eq!(by_name.unwrap().syscalls, [1, 60].into());
    }

    #[test]
    fn bad_profiles_are_errors_naming_the_line() {
        let err = |text: &str| ProfileFile::parse(text).unwrap_err();
        assert_eq!(err("").line, 1);
        assert!(err("syscall 1 write\n")
            .message
            .contains("not a tandem profile"));
        assert!(err("tandem-profile 2\n").message.contains("version 2"));
        let e = err("tandem-profile 1\nsyscall 1 write\nsyscall 2 write\n");
        assert_eq!(e.line, 3);
        assert!(e.message.contains("syscall 2 is open"), "{e}");
        assert_eq!(err("tandem-profile 1\nsyscall 1\nsyscall write\n").line, 3);
        assert!(err("tandem-profile 1\nsyscall frobnicate\n")
            .message
            .contains("frobnicate"));
        assert!(err("tandem-profile 1\nallow everything\n")
            .message
            .contains("expected"));
    }
}
