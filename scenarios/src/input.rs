//! Reading input files with a bound: every file tandem reads whole (a program, a trace, a debugger script, a
//! template and the templates it `use`s, a scenario fault plan, a memory-fault file) is read by `read_input`.
//!
//! Why: reading a file "to its end" has no end for /dev/zero, a FIFO or a growing file, and an input of the wrong
//! kind (a disk image given as a template) would cost the host its memory before the parser could refuse it. Each
//! kind has a named maximum; a regular file larger than it is refused from its metadata without reading, and any
//! other file (a pipe, a character device, /dev/stdin) is read up to one byte past the maximum and then refused.
//! The error names the file and the maximum: "FILE is larger than N bytes".
//!
//! It lives in this crate because this is the one library crate that reads files of its own (a template names the
//! templates it uses); the command line uses the same function for everything else, so there is one rule.

use std::io::Read;
use std::path::Path;

/// The kinds of input file, each with its own maximum size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputKind {
    /// A static ELF program (`tandem run`, `record`, `faults`).
    Program,
    /// A trace written by `tandem record`; it embeds the program, stdin and every file the run read.
    Trace,
    /// The commands of `tandem debug` (-x FILE or stdin).
    DebuggerScript,
    /// A workflow template, or a template it `use`s.
    Template,
    /// A scenario fault plan (`tandem scenario run --plan`).
    Plan,
    /// A memory-fault plan (`--faults-file`).
    FaultsFile,
    /// A list of seeds (`tandem scenario run --seeds @FILE`).
    Seeds,
    /// A JSON report of `tandem scenario run` (`tandem scenario merge`).
    Report,
    /// A usage profile of a warm pool (`tandem pool --profile`).
    Profile,
    /// The operations of a service (`tandem baseline SPEC`), and the stdin files they name.
    BaselineSpec,
    /// A baseline written by `tandem baseline record`, or its key file (`--key-file`).
    Baseline,
    /// A container profile (`tandem run --profile`, written by `tandem profile -o`).
    SyscallProfile,
}

/// Largest program: a static busybox is about 2 MB and glibc programs a few MB; 256 MiB leaves room for any real one.
pub const PROGRAM_BYTES_MAX: u64 = 256 << 20;
/// Largest trace: a trace holds the program and every file and stdin byte the run read.
pub const TRACE_BYTES_MAX: u64 = 4 << 30;
/// Largest debugger script: `tandem debug` runs at most 100,000 commands.
pub const DEBUGGER_SCRIPT_BYTES_MAX: u64 = 4 << 20;
/// Largest template: at most 10,000 steps after `use` expansion, each a few lines.
pub const TEMPLATE_BYTES_MAX: u64 = 4 << 20;
/// Largest scenario fault plan.
pub const PLAN_BYTES_MAX: u64 = 16 << 20;
/// Largest memory-fault file.
pub const FAULTS_FILE_BYTES_MAX: u64 = 4 << 20;
/// Largest seeds file: 100 million seeds of up to 20 digits.
pub const SEEDS_FILE_BYTES_MAX: u64 = 2 << 30;
/// Largest scenario report: a few hundred bytes per seed.
pub const REPORT_BYTES_MAX: u64 = 4 << 30;
/// Largest usage profile: its block and page lines are bounded by 2^20 each, about 30 bytes a line.
pub const PROFILE_BYTES_MAX: u64 = 64 << 20;
/// Largest baseline spec or stdin file of an operation.
pub const BASELINE_SPEC_BYTES_MAX: u64 = 64 << 20;
/// Largest baseline: a million calls of about a hundred bytes each, and the operations' bounded outputs.
pub const BASELINE_BYTES_MAX: u64 = 1 << 30;

impl InputKind {
    /// The kind as the error messages name it.
    pub fn name(self) -> &'static str {
        match self {
            InputKind::Program => "program",
            InputKind::Trace => "trace",
            InputKind::DebuggerScript => "debugger script",
            InputKind::Template => "template",
            InputKind::Plan => "fault plan",
            InputKind::FaultsFile => "faults file",
            InputKind::Seeds => "seeds file",
            InputKind::Report => "scenario report",
            InputKind::Profile => "usage profile",
            InputKind::BaselineSpec => "baseline spec",
            InputKind::Baseline => "baseline",
            InputKind::SyscallProfile => "container profile",
        }
    }

    pub fn bytes_max(self) -> u64 {
        match self {
            InputKind::Program => PROGRAM_BYTES_MAX,
            InputKind::Trace => TRACE_BYTES_MAX,
            InputKind::DebuggerScript => DEBUGGER_SCRIPT_BYTES_MAX,
            InputKind::Template => TEMPLATE_BYTES_MAX,
            InputKind::Plan => PLAN_BYTES_MAX,
            InputKind::FaultsFile => FAULTS_FILE_BYTES_MAX,
            InputKind::Seeds => SEEDS_FILE_BYTES_MAX,
            InputKind::Report => REPORT_BYTES_MAX,
            InputKind::Profile => PROFILE_BYTES_MAX,
            InputKind::BaselineSpec => BASELINE_SPEC_BYTES_MAX,
            InputKind::Baseline => BASELINE_BYTES_MAX,
            InputKind::SyscallProfile => PROFILE_BYTES_MAX,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The io error is in the message, not a `source`, so that a cause chain prints it once.
    #[error("cannot read the {} {path}: {error}", kind.name())]
    Read {
        kind: InputKind,
        path: String,
        error: std::io::Error,
    },
    #[error("the {} {path} is larger than {bytes_max} bytes, the most tandem reads for a {}", kind.name(), kind.name())]
    TooLarge {
        kind: InputKind,
        path: String,
        bytes_max: u64,
    },
    #[error("the {} {path} is not UTF-8 text (byte {offset})", kind.name())]
    NotText {
        kind: InputKind,
        path: String,
        offset: usize,
    },
}

/// Reads a whole input file of `kind`, refusing one larger than the kind's maximum (see the module doc).
pub fn read_input(path: &Path, kind: InputKind) -> Result<Vec<u8>, InputError> {
    let name = path.display().to_string();
    let read_error = |error| InputError::Read {
        kind,
        path: name.clone(),
        error,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let metadata = file.metadata().map_err(read_error)?;
    let bytes_max = kind.bytes_max();
    if metadata.is_file() && metadata.len() > bytes_max {
        return Err(InputError::TooLarge {
            kind,
            path: name,
            bytes_max,
        });
    }
    let expected = if metadata.is_file() {
        metadata.len()
    } else {
        0
    };
    read_bounded(file, &name, kind, expected)
}

/// Reads a stream (stdin, a pipe) to its end as an input of `kind`, named `name` in errors, up to the kind's maximum.
pub fn read_input_from(
    reader: impl Read,
    name: &str,
    kind: InputKind,
) -> Result<Vec<u8>, InputError> {
    read_bounded(reader, name, kind, 0)
}

/// `read_input` for text inputs (templates, plans, scripts, fault files): the bytes must be UTF-8.
pub fn read_input_text(path: &Path, kind: InputKind) -> Result<String, InputError> {
    let bytes = read_input(path, kind)?;
    String::from_utf8(bytes).map_err(|e| InputError::NotText {
        kind,
        path: path.display().to_string(),
        offset: e.utf8_error().valid_up_to(),
    })
}

fn read_bounded(
    reader: impl Read,
    name: &str,
    kind: InputKind,
    expected_bytes: u64,
) -> Result<Vec<u8>, InputError> {
    let bytes_max = kind.bytes_max();
    // A regular file's length is known (and already checked); a stream grows the buffer as it goes.
    let mut bytes = Vec::with_capacity(expected_bytes.min(bytes_max) as usize);
    reader
        .take(bytes_max + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| InputError::Read {
            kind,
            path: name.to_string(),
            error,
        })?;
    if bytes.len() as u64 > bytes_max {
        return Err(InputError::TooLarge {
            kind,
            path: name.to_string(),
            bytes_max,
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(test: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("tandem-input-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_regular_file_over_the_maximum_is_refused_without_reading_it() {
        let dir = scratch("sparse");
        let path = dir.join("huge.trace");
        // Sparse: its length is past the maximum but it costs no disk, and reading it would cost 4 GiB.
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(TRACE_BYTES_MAX + 1).unwrap();
        let error = read_input(&path, InputKind::Trace).unwrap_err().to_string();
        assert_eq!(
            error,
            format!(
                "the trace {} is larger than 4294967296 bytes, the most tandem reads for a trace",
                path.display()
            )
        );
        file.set_len(10).unwrap();
        assert_eq!(read_input(&path, InputKind::Trace).unwrap(), vec![0; 10]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_endless_device_is_read_to_the_maximum_and_refused() {
        let error = read_input(Path::new("/dev/zero"), InputKind::Template)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("/dev/zero is larger than 4194304 bytes"),
            "{error}"
        );
        // A stream exactly at the maximum is accepted, one byte more is not.
        let max = TEMPLATE_BYTES_MAX as usize;
        let exact = read_input_from(&vec![b'#'; max][..], "stdin", InputKind::Template).unwrap();
        assert_eq!(exact.len(), max);
        let over = read_input_from(&vec![b'#'; max + 1][..], "stdin", InputKind::Template);
        assert!(matches!(over, Err(InputError::TooLarge { .. })));
    }

    #[test]
    fn missing_directory_and_binary_inputs_name_the_file() {
        let error = read_input(Path::new("/nonexistent/p"), InputKind::Program)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("cannot read the program /nonexistent/p: "),
            "{error}"
        );
        let error = read_input(Path::new("/"), InputKind::Plan)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("cannot read the fault plan /: "),
            "{error}"
        );
        let dir = scratch("binary");
        let path = dir.join("t.toml");
        std::fs::write(&path, b"name = \"\xff\"").unwrap();
        let error = read_input_text(&path, InputKind::Template)
            .unwrap_err()
            .to_string();
        assert!(
            error.ends_with("t.toml is not UTF-8 text (byte 8)"),
            "{error}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
