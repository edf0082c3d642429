//! The `tandem` command line: argument parsing and rendering only; the work lives in the library crates.
//!
//! Exit statuses are decided here and in each subcommand, and each subcommand's --help lists its own:
//! - `run`, `record`: the guest's status (0-255; 128+N when a signal N killed it), 124 when --max-insns stopped it
//!   (as timeout(1)), 125 for tandem's own failure.
//! - `replay`: 0 verified, 3 divergence, 4 damaged trace, 125 tandem's own failure.
//! - `debug`: 0, 1 when a command of the script failed, 125 tandem's own failure.
//! - `faults`: 0 when no run was silently corrupted, 1 when some run was, 125 tandem's own failure.
//! - `ft`: the agreed guest's status (as `run`); with --seeds (a campaign) 0 when no run was silently corrupted, 1
//!   when some run was.
//! - `profile`: 0 when the profile was printed, 125 tandem's own failure.
//! - `cdp list`, `cdp restore`: 0, 4 when the journal is damaged and the listing or the point reaches past its
//!   valid part, 125 tandem's own failure.
//! - `crashtest`: 0 when every crash state checked is consistent, 1 when vulnerabilities were found, 125 tandem's
//!   own failure.
//! - `fuzz`: 0 when nothing was found, 1 when crashes or hangs were saved, 125 tandem's own failure.
//! - `diff`: 0 when the two runs behave alike, 1 when they differ, 125 tandem's own failure (a bad trace).
//! - `baseline record`: 0 written, 2 an operation could not run, 125 usage or bad spec; `baseline check`: 0 every
//!   operation behaves as its baseline, 1 some changed, 2 fail-closed (an operation cannot run, the baseline is
//!   missing or tampered with, operations added or removed), 125 usage or bad spec.
//! - `scenario ...`: 0 every run passed, 1 a checker failed, 2 bad input (its statuses predate the others).
//!
//! 125 is tandem's own failure (bad input, unreadable file, usage error, internal error), as env(1) and timeout(1)
//! use it: a guest rarely exits with it, unlike 1 or 2. When the reader of tandem's stdout goes away
//! (`tandem scenario run ... | head -1`), tandem stops quietly with 141, the status a shell shows for a Unix tool
//! killed by SIGPIPE (128 + 13). `run` and `record` print their own report lines to stderr on a best-effort basis: a
//! closed stderr loses those lines, never the guest's status. A Rust panic (101) is a bug.

use clap::{Parser, Subcommand};

mod baseline_cmd;
mod cdp_cmd;
mod crashtest_cmd;
mod debug_cmd;
mod diff_cmd;
mod faults_cmd;
mod install_cmd;

mod ft_cmd;
mod ft_hosts;
mod fuzz_cmd;
mod mount_fs;
mod output;
mod pool_cmd;
mod profile_cmd;
mod record_cmd;
mod replay_cmd;
mod run_cmd;
mod scenario_cmd;

#[derive(Parser)]
#[command(
    name = "tandem",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("TANDEM_COMMIT"), ")"),
    about = "Deterministic simulation and record-replay for static x86-64 Linux binaries",
    after_help = "Exit status: each command's --help lists its own. 125 is tandem's own failure (bad input, \
        unreadable file, usage error) in every command but `scenario` (2); 141 when the reader of tandem's output \
        went away (`| head -1`)."
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Run(run_cmd::RunCommand),
    Record(record_cmd::RecordArgs),
    Replay(replay_cmd::ReplayArgs),
    Debug(debug_cmd::DebugArgs),
    // No doc comments here: they would replace each command's own about and long_about in its --help.
    Scenario(scenario_cmd::ScenarioArgs),
    Faults(faults_cmd::FaultsArgs),
    Completions(install_cmd::CompletionsArgs),
    Man(install_cmd::ManArgs),

    Ft(ft_cmd::FtArgs),
    Profile(profile_cmd::ProfileArgs),
    Cdp(cdp_cmd::CdpArgs),
    Crashtest(crashtest_cmd::CrashtestArgs),
    Fuzz(fuzz_cmd::FuzzArgs),
    Pool(pool_cmd::PoolArgs),
    Diff(diff_cmd::DiffArgs),
    Baseline(baseline_cmd::BaselineArgs),
}

/// Exit status of tandem's own failure: bad input, an unreadable file, a usage error, an internal error. 125 as
/// env(1), timeout(1) and git bisect use it: a status guests rarely give, unlike 1 and 2.
pub const EXIT_TANDEM_FAILURE: i32 = 125;

/// Exit status when the reader of tandem's output went away: a shell's status for a tool killed by SIGPIPE.
pub const EXIT_BROKEN_PIPE: i32 = 141;

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => std::process::exit(output::clap_exit(&e)),
    };
    let result = match cli.command {
        Command::Run(args) => run_cmd::run(args),
        Command::Record(args) => record_cmd::run(args),
        Command::Replay(args) => replay_cmd::run(args),
        Command::Debug(args) => debug_cmd::run(args),
        Command::Scenario(args) => scenario_cmd::run(args),
        Command::Faults(args) => faults_cmd::run(args),
        Command::Completions(args) => install_cmd::completions(args),
        Command::Man(args) => install_cmd::man(args),

        Command::Ft(args) => ft_cmd::run(args),
        Command::Profile(args) => profile_cmd::run(args),
        Command::Cdp(args) => cdp_cmd::run(args),
        Command::Crashtest(args) => crashtest_cmd::run(args),
        Command::Fuzz(args) => fuzz_cmd::run(args),
        Command::Pool(args) => pool_cmd::run(args),
        Command::Diff(args) => diff_cmd::run(args),
        Command::Baseline(args) => baseline_cmd::run(args),
    };
    match result {
        Ok(()) => match output::flush_stdout() {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                std::process::exit(EXIT_BROKEN_PIPE)
            }
            _ => std::process::exit(0),
        },
        Err(e) => std::process::exit(output::error_exit(
            "tandem: error: ",
            &e,
            EXIT_TANDEM_FAILURE,
        )),
    }
}
