//! Usage profiles: what runs of a program did after its warm point (blocks that ran hot, pages written, host files
//! read), kept in a small text file from which a pool chooses each new instance's warmup (pool.rs).
//!
//! The format, version 1 (one record per line, fields separated by one space, `#` starts a comment line):
//!
//! ```text
//! tandem-usage-profile 1
//! program <BLAKE3 of the program's bytes, 64 hex digits>
//! warm-at <the --warm-at point the runs started from>
//! runs <number of runs merged into this profile>
//! block <start address, 0x hex> <runs of the block, summed over the runs, each counted up to 32>
//! page <page address, 0x hex, 4 KiB aligned>
//! file <absolute host path, as the guest's reads reached the host>
//! ```
//!
//! The header lines come first, in that order; then any number of block, page and file lines (at most
//! `BLOCKS_MAX`, `PAGES_MAX` and `FILES_MAX` of each), written sorted. A profile is an input like any other: the
//! CLI reads it with a bound on its size (`InputKind::Profile`), and a malformed one is an error naming the line.
//! A profile of another program (a different BLAKE3) is refused rather than half applied.
//!
//! Invariant: `parse(render(p)) == p` (`tests::round_trip`); merging is commutative (sums and unions), so a
//! profile of many runs does not depend on their order or on the thread count that ran them.

use super::PoolError;
use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::path::PathBuf;

/// The version written in the first line; bumped on any change of the lines' meaning.
pub const PROFILE_VERSION: u32 = 1;
const MAGIC: &str = "tandem-usage-profile";
/// Most block, page and file lines one profile holds.
pub const BLOCKS_MAX: usize = 1 << 20;
pub const PAGES_MAX: usize = 1 << 20;
pub const FILES_MAX: usize = 1 << 16;
/// Longest path of a file line, in bytes (Linux's PATH_MAX).
const PATH_BYTES_MAX: usize = 4096;

/// What runs of one program did after its warm point.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UsageProfile {
    /// BLAKE3 of the program's bytes, hex.
    pub program: String,
    pub warm_at: String,
    pub runs: u64,
    /// Block start -> runs of the block, summed over the runs (each run counts a block up to the compile
    /// threshold, 32).
    pub blocks: BTreeMap<u64, u64>,
    /// Pages written or newly mapped after the warm point (page addresses).
    pub pages: BTreeSet<u64>,
    /// Host files the runs read.
    pub files: BTreeSet<PathBuf>,
}

/// BLAKE3 of a program's bytes, as a profile names it.
pub fn program_digest(program: &[u8]) -> String {
    blake3::hash(program).to_hex().to_string()
}

impl UsageProfile {
    /// An empty profile of `program` for runs from `warm_at`.
    pub fn new(program: &[u8], warm_at: &str) -> UsageProfile {
        UsageProfile {
            program: program_digest(program),
            warm_at: warm_at.to_string(),
            ..UsageProfile::default()
        }
    }

    /// Adds one run: its blocks with their counts, the pages it wrote, the files it read.
    pub fn add_run(
        &mut self,
        blocks: &[(u64, u32)],
        pages: impl IntoIterator<Item = u64>,
        files: impl IntoIterator<Item = PathBuf>,
    ) {
        self.runs += 1;
        for &(rip, n) in blocks {
            if n > 0 && (self.blocks.len() < BLOCKS_MAX || self.blocks.contains_key(&rip)) {
                *self.blocks.entry(rip).or_insert(0) += n as u64;
            }
        }
        for p in pages {
            if self.pages.len() < PAGES_MAX {
                self.pages.insert(p);
            }
        }
        for f in files {
            if self.files.len() < FILES_MAX {
                self.files.insert(f);
            }
        }
    }

    /// Refuses a profile made from another program.
    pub fn check_program(&self, program: &[u8]) -> Result<(), PoolError> {
        let digest = program_digest(program);
        if self.program != digest {
            return Err(PoolError::Profile {
                line: 2,
                message: format!(
                    "it was made from another program (BLAKE3 {}, this one is {digest}); record it again",
                    self.program
                ),
            });
        }
        Ok(())
    }

    /// The profile as text (see the module doc).
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut out = format!(
            "{MAGIC} {PROFILE_VERSION}\nprogram {}\nwarm-at {}\nruns {}\n",
            self.program, self.warm_at, self.runs
        );
        for (rip, n) in &self.blocks {
            let _ = writeln!(out, "block {rip:#x} {n}");
        }
        for p in &self.pages {
            let _ = writeln!(out, "page {p:#x}");
        }
        for f in &self.files {
            let _ = writeln!(out, "file {}", f.display());
        }
        out
    }

    /// Parses a profile's text; errors name the line (1-based).
    pub fn parse(text: &str) -> Result<UsageProfile, PoolError> {
        let err = |line: usize, message: String| PoolError::Profile { line, message };
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l))
            .filter(|(_, l)| !l.starts_with('#') && !l.trim().is_empty());
        let mut header = |key: &str| -> Result<(usize, String), PoolError> {
            match lines.next() {
                Some((n, l)) => match l.split_once(' ') {
                    Some((k, v)) if k == key => Ok((n, v.to_string())),
                    _ => Err(err(n, format!("expected `{key} ...`, found {l:?}"))),
                },
                None => Err(err(0, format!("the file ends before its `{key}` line"))),
            }
        };
        let (n, version) = header(MAGIC)?;
        if version != PROFILE_VERSION.to_string() {
            return Err(err(
                n,
                format!("version {version:?}; this tandem reads version {PROFILE_VERSION}"),
            ));
        }
        let (n, program) = header("program")?;
        if program.len() != 64 || !program.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err(n, "the program digest is not 64 hex digits".into()));
        }
        let (_, warm_at) = header("warm-at")?;
        let (n, runs) = header("runs")?;
        let runs = runs
            .parse()
            .map_err(|_| err(n, format!("runs {runs:?} is not a number")))?;
        let mut p = UsageProfile {
            program,
            warm_at,
            runs,
            ..UsageProfile::default()
        };
        for (n, line) in lines {
            p.parse_record(line).map_err(|m| err(n, m))?;
        }
        Ok(p)
    }

    fn parse_record(&mut self, line: &str) -> Result<(), String> {
        let (kind, rest) = line.split_once(' ').unwrap_or((line, ""));
        match kind {
            "block" => {
                let (addr, count) = rest
                    .split_once(' ')
                    .ok_or("expected `block 0xADDRESS COUNT`")?;
                let count: u64 = count
                    .parse()
                    .map_err(|_| format!("block count {count:?} is not a number"))?;
                if self.blocks.len() >= BLOCKS_MAX {
                    return Err(format!("more than {BLOCKS_MAX} block lines"));
                }
                self.blocks.insert(hex(addr)?, count);
            }
            "page" => {
                let addr = hex(rest)?;
                if addr % 4096 != 0 {
                    return Err(format!("page {rest} is not 4 KiB aligned"));
                }
                if self.pages.len() >= PAGES_MAX {
                    return Err(format!("more than {PAGES_MAX} page lines"));
                }
                self.pages.insert(addr);
            }
            "file" => {
                if !rest.starts_with('/') || rest.len() > PATH_BYTES_MAX {
                    return Err(format!(
                        "file {rest:?}: expected an absolute path of at most {PATH_BYTES_MAX} bytes"
                    ));
                }
                if self.files.len() >= FILES_MAX {
                    return Err(format!("more than {FILES_MAX} file lines"));
                }
                self.files.insert(PathBuf::from(rest));
            }
            other => return Err(format!("unknown record {other:?} (block, page or file)")),
        }
        Ok(())
    }
}

fn hex(text: &str) -> Result<u64, String> {
    text.strip_prefix("0x")
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .ok_or_else(|| format!("{text:?} is not a 0x hex address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> UsageProfile {
        let mut p = UsageProfile::new(b"program bytes", "main");
        p.add_run(
            &[(0x401000, 32), (0x401020, 3), (0x401040, 0)],
            [0x7fff_f000, 0x4c6000],
            [PathBuf::from("/etc/passwd")],
        );
        p.add_run(&[(0x401000, 32)], [0x4c6000], []);
        p
    }

    #[test]
    fn round_trip() {
        let p = sample();
        assert_eq!(p.runs, 2);
        assert_eq!(p.blocks.get(&0x401000), Some(&64));
        assert!(
            !p.blocks.contains_key(&0x401040),
            "a block that never ran whole is not kept"
        );
        assert_eq!(UsageProfile::parse(&p.render()).unwrap(), p);
    }

    #[test]
    fn malformed_profiles_name_the_line() {
        let good = sample().render();
        let cases = [
            (
                good.replace("tandem-usage-profile 1", "tandem-usage-profile 9"),
                1,
                "version",
            ),
            (
                good.replace("block 0x401020 3", "block 0x401020 x"),
                6,
                "not a number",
            ),
            (good.replace("page 0x4c6000", "page 0x4c6001"), 7, "aligned"),
            (good.replace("file /etc/passwd", "file etc"), 9, "absolute"),
            (format!("{good}frobnicate 1\n"), 10, "unknown record"),
            (String::new(), 0, "ends before"),
        ];
        for (text, line, what) in cases {
            match UsageProfile::parse(&text) {
                Err(PoolError::Profile { line: l, message }) => {
                    assert_eq!(l, line, "{message}");
                    assert!(message.contains(what), "{message}");
                }
                other => panic!("{text:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn a_profile_of_another_program_is_refused() {
        let p = sample();
        assert!(p.check_program(b"program bytes").is_ok());
        let e = p.check_program(b"other").unwrap_err().to_string();
        assert!(e.contains("another program"), "{e}");
    }
}
