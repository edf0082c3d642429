//! The profile file: what `tandem profile -o FILE` writes and `tandem run --profile FILE` enforces.
//!
//! A versioned, line-oriented text format that a person can read, diff and edit:
//!
//! ```text
//! tandem-profile 2
//! # static profile of corpus/bin/service-musl
//! syscall 1 write
//! syscall 231 exit_group
//! paths listed
//! path /data/secret
//! path /data/*
//! phase serving at serve
//! syscall 0 read
//! ```
//!
//! The first line that is not blank or a comment (`#`) names the format and its version. Then one entry a line:
//! `syscall NUMBER [NAME]` or `syscall NAME` (x86-64 numbers; when both are given they must agree, which catches
//! a hand edit that changed one of them). Version 2 adds paths and phases: `paths listed` turns path checking on
//! for the phase (the calls that take a path may name only the listed ones; `path P` lines list them, one a
//! line, the rest of the line verbatim, a final `*` making it a prefix) and `phase serving at SYMBOL` starts the
//! rules of the second phase, which the runtime enforces from the first time the program reaches SYMBOL (the
//! entries before it are the start-up phase's). Version 1 files (syscalls only) are read as before. Unknown
//! keywords, an unknown version and a repeated entry are errors naming the line: a profile that silently allows
//! something else than its author meant is worse than none.

use crate::{syscall_name, syscall_number, SyscallSet};
use std::collections::BTreeSet;
pub use tandem_emulator::linux::syscall_policy::Rules;

/// The first word of a profile file.
pub const MAGIC: &str = "tandem-profile";
/// The version this build writes when a profile has paths or phases (1 otherwise, for older readers).
pub const VERSION: u32 = 2;

/// Why a profile file cannot be read: the line (1-based) and what is wrong there.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {message}")]
pub struct ProfileFileError {
    pub line: usize,
    pub message: String,
}

/// The second phase of a profile: its boundary symbol and its rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Phase {
    pub at: String,
    pub rules: Rules,
}

/// A profile: the system calls (and, when listed, paths) a program may use, in one or two phases.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProfileFile {
    /// The rules of the whole run, or of its start-up phase when `serving` is set.
    pub rules: Rules,
    pub serving: Option<Phase>,
}

impl ProfileFile {
    /// A one-phase profile of syscalls only.
    pub fn of_syscalls(syscalls: SyscallSet) -> ProfileFile {
        ProfileFile {
            rules: Rules {
                syscalls,
                paths: None,
            },
            serving: None,
        }
    }

    /// The file's text; `comment` (one line, or empty) goes under the version line.
    pub fn to_text(&self, comment: &str) -> String {
        let version = if self.serving.is_some() || self.rules.paths.is_some() {
            VERSION
        } else {
            1
        };
        let mut out = format!("{MAGIC} {version}\n");
        if !comment.is_empty() {
            out.push_str(&format!("# {}\n", comment.replace('\n', " ")));
        }
        write_rules(&self.rules, &mut out);
        if let Some(phase) = &self.serving {
            out.push_str(&format!("phase serving at {}\n", phase.at));
            write_rules(&phase.rules, &mut out);
        }
        out
    }

    /// Reads the text of a profile file.
    pub fn parse(text: &str) -> Result<ProfileFile, ProfileFileError> {
        let mut profile = ProfileFile::default();
        let mut version = None;
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fail = |message: String| ProfileFileError {
                line: i + 1,
                message,
            };
            let Some(version) = version else {
                version = Some(version_line(line).map_err(fail)?);
                continue;
            };
            profile.entry(line, version).map_err(fail)?;
        }
        if version.is_none() {
            return Err(ProfileFileError {
                line: 1,
                message: format!("empty: a profile starts with `{MAGIC} {VERSION}`"),
            });
        }
        Ok(profile)
    }

    /// The rules entries go to now: the serving phase's once it has started.
    fn current(&mut self) -> &mut Rules {
        match &mut self.serving {
            Some(phase) => &mut phase.rules,
            None => &mut self.rules,
        }
    }

    fn entry(&mut self, line: &str, version: u32) -> Result<(), String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let needs_2 = |what: &str| {
            if version < 2 {
                Err(format!(
                    "{what} needs `{MAGIC} 2` (this file says version 1)"
                ))
            } else {
                Ok(())
            }
        };
        match words.as_slice() {
            ["syscall", rest @ ..] if !rest.is_empty() && rest.len() <= 2 => {
                let nr = syscall_entry(rest)?;
                if !self.current().syscalls.insert(nr) {
                    return Err(format!("syscall {nr} is listed twice"));
                }
            }
            ["paths", "listed"] => {
                needs_2("`paths listed`")?;
                self.current().paths.get_or_insert_with(BTreeSet::new);
            }
            ["path", ..] => {
                needs_2("`path`")?;
                let path = line["path".len()..].trim_start();
                let paths = self.current().paths.get_or_insert_with(BTreeSet::new);
                if !paths.insert(path.as_bytes().to_vec()) {
                    return Err(format!("path {path} is listed twice"));
                }
            }
            ["phase", "serving", "at", symbol] => {
                needs_2("`phase`")?;
                if self.serving.is_some() {
                    return Err("a profile has at most two phases (one `phase serving at` line)".into());
                }
                self.serving = Some(Phase {
                    at: symbol.to_string(),
                    rules: Rules::default(),
                });
            }
            _ => {
                return Err(format!(
                    "expected `syscall NUMBER NAME`, `syscall NAME`, `paths listed`, `path PATH` or `phase \
                     serving at SYMBOL`, found `{line}`"
                ))
            }
        }
        Ok(())
    }
}

/// The version a profile's first line names (1 or 2).
fn version_line(line: &str) -> Result<u32, String> {
    match line.split_whitespace().collect::<Vec<_>>().as_slice() {
        [MAGIC, v] => match v.parse::<u32>() {
            Ok(n @ 1..=VERSION) => Ok(n),
            _ => Err(format!(
                "format version {v}: this tandem reads versions 1 to {VERSION}"
            )),
        },
        _ => Err(format!(
            "not a tandem profile: the first line must be `{MAGIC} {VERSION}` (write one with tandem profile \
             -o FILE -- PROGRAM)"
        )),
    }
}

fn write_rules(rules: &Rules, out: &mut String) {
    for &nr in &rules.syscalls {
        out.push_str(&format!("syscall {nr} {}\n", syscall_name(nr)));
    }
    if let Some(paths) = &rules.paths {
        out.push_str("paths listed\n");
        for p in paths {
            out.push_str(&format!("path {}\n", String::from_utf8_lossy(p)));
        }
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
        let p = ProfileFile::of_syscalls([0, 1, 60, 231].into());
        let text = p.to_text("static profile of hello");
        assert!(text.starts_with("tandem-profile 1\n# static profile of hello\nsyscall 0 read\n"));
        assert_eq!(ProfileFile::parse(&text), Ok(p));
        let by_name =
            ProfileFile::parse("# hand-written\ntandem-profile 1\nsyscall write\n  syscall 60\n");
        assert_eq!(by_name.unwrap().rules.syscalls, [1, 60].into());
    }

    #[test]
    fn bad_profiles_are_errors_naming_the_line() {
        let err = |text: &str| ProfileFile::parse(text).unwrap_err();
        assert_eq!(err("").line, 1);
        assert!(err("syscall 1 write\n")
            .message
            .contains("not a tandem profile"));
        assert!(err("tandem-profile 3\n").message.contains("version 3"));
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

    #[test]
    fn paths_and_phases_round_trip_in_version_2_and_are_refused_in_version_1() {
        let p = ProfileFile {
            rules: Rules {
                syscalls: [1, 2, 231].into(),
                paths: Some([b"/etc/my file".to_vec(), b"/data/*".to_vec()].into()),
            },
            serving: Some(Phase {
                at: "serve".into(),
                rules: Rules {
                    syscalls: [0, 1].into(),
                    paths: Some(BTreeSet::new()),
                },
            }),
        };
        let text = p.to_text("");
        assert!(text.starts_with("tandem-profile 2\n"), "{text}");
        assert!(text.contains("\npath /etc/my file\n"), "{text}");
        assert_eq!(ProfileFile::parse(&text), Ok(p));
        let e = ProfileFile::parse("tandem-profile 1\nsyscall 1\npath /etc\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.message.contains("needs `tandem-profile 2`"), "{e}");
        let e = ProfileFile::parse("tandem-profile 2\nphase serving at a\nphase serving at b\n")
            .unwrap_err();
        assert_eq!(e.line, 3);
        // Without paths, a profile is still written as version 1.
        let plain = ProfileFile::of_syscalls([1].into()).to_text("");
        assert!(plain.starts_with("tandem-profile 1\n"));
    }
}
