//! The `tandem` command line: argument parsing and rendering only; the work lives in the library crates.

use clap::{Parser, Subcommand};

mod debug_cmd;
mod faults_cmd;
mod mount_fs;
mod record_cmd;
mod replay_cmd;
mod run_cmd;
mod scenario_cmd;

#[derive(Parser)]
#[command(
    name = "tandem",
    version,
    about = "Deterministic simulation and record-replay for static x86-64 Linux binaries"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Run(run_cmd::RunArgs),
    Record(record_cmd::RecordArgs),
    Replay(replay_cmd::ReplayArgs),
    Debug(debug_cmd::DebugArgs),
    /// Seeded simulation scenarios: run templates over many seeds, show a run's timeline, benchmark.
    Scenario(scenario_cmd::ScenarioArgs),
    /// Memory-fault campaigns: a program under many seeded fault plans, outcomes tabulated per frame class.
    Faults(faults_cmd::FaultsArgs),
}

/// Exit status for a tandem error (bad input, unreadable file): distinct from a guest's own statuses as far as
/// the shell convention allows, and what clap uses for usage errors.
const EXIT_ERROR: u8 = 2;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run_cmd::run(args),
        Command::Record(args) => record_cmd::run(args),
        Command::Replay(args) => replay_cmd::run(args),
        Command::Debug(args) => debug_cmd::run(args),
        Command::Scenario(args) => scenario_cmd::run(args),
        Command::Faults(args) => faults_cmd::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line with the whole cause chain; no backtrace, whatever RUST_BACKTRACE says: these are
            // errors in the user's input, not bugs of ours.
            eprintln!("tandem: error: {e:#}");
            std::process::ExitCode::from(EXIT_ERROR)
        }
    }
}
