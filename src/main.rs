//! The `tandem` command line: argument parsing and rendering only; the work lives in the library crates.

use clap::{Parser, Subcommand};

mod debug_cmd;
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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run_cmd::run(args),
        Command::Record(args) => record_cmd::run(args),
        Command::Replay(args) => replay_cmd::run(args),
        Command::Debug(args) => debug_cmd::run(args),
        Command::Scenario(args) => scenario_cmd::run(args),
    }
}
