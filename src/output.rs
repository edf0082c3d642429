//! Printing without panics: tandem's stdout and stderr may be closed pipes (`tandem ... | head -1`).
//!
//! `println!` panics when its write fails ("failed printing to stdout"), and Rust ignores SIGPIPE, so every write of
//! tandem's own output goes through `std::io::Write` and its error is returned. An error whose cause is a broken pipe
//! ends tandem quietly with `EXIT_BROKEN_PIPE` (141, the status a shell shows for a Unix tool killed by SIGPIPE);
//! SIGPIPE itself stays ignored, so a recording whose reader went away still finishes its trace, and a gdb that
//! disconnects does not kill the server. Lines that only inform (warnings, the gdb server's address) go through
//! `note!`, which drops them when stderr is gone.

use std::io::Write;

/// Writes one line to stderr; when stderr is a broken pipe the line is lost, and nothing else happens.
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}
pub(crate) use note;

/// A writer for report lines that must not decide the exit status (`run`, `record` and `replay` on stderr): a
/// failed write is dropped, so the status stays the guest's or the verification's.
pub struct Lossy<W: Write>(pub W);

impl<W: Write> Write for Lossy<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let _ = self.0.write_all(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        let _ = self.0.flush();
        Ok(())
    }
}

/// True when the error, or any cause in its chain, is a write to a closed pipe.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Reports an error on stderr as one line (the whole cause chain, no backtrace whatever RUST_BACKTRACE says: these
/// are errors in the user's input, not bugs of ours) and gives the exit status: `status`, or `EXIT_BROKEN_PIPE`
/// without a word when the error is a closed pipe.
pub fn error_exit(prefix: &str, error: &anyhow::Error, status: i32) -> i32 {
    if is_broken_pipe(error) {
        return crate::EXIT_BROKEN_PIPE;
    }
    let _ = writeln!(std::io::stderr(), "{prefix}{error:#}");
    status
}

/// Flushes stdout before a normal exit, so that a closed pipe is seen here rather than lost at exit.
pub fn flush_stdout() -> std::io::Result<()> {
    std::io::stdout().flush()
}

/// The exit status of a clap error, after printing it: 0 for --help and --version (141 if their reader went away),
/// `EXIT_TANDEM_FAILURE` for a usage error, or 2 under `tandem scenario`, whose statuses predate the others.
pub fn clap_exit(error: &clap::Error) -> i32 {
    use clap::error::ErrorKind;
    let printed = error.print();
    match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => match printed {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => crate::EXIT_BROKEN_PIPE,
            _ => 0,
        },
        _ if std::env::args_os().nth(1).is_some_and(|a| a == "scenario") => {
            crate::scenario_cmd::EXIT_BAD_INPUT
        }
        _ => crate::EXIT_TANDEM_FAILURE,
    }
}
