//! Warm pools: instances that start from a warm snapshot instead of from the ELF, warmed with operations chosen from
//! what earlier runs of the program used, and available only once their warmup finished.
//!
//! Why: tandem makes thousands of guest instances (campaign seeds, fuzz executions, replicas, scenario nodes), and
//! each used to load the ELF, run the program's startup and interpret every block 32 times before compiling it.
//! A warm image (warm.rs) skips the startup: it is a copy-on-write `LinuxSnapshot` taken at a chosen point
//! (`--warm-at SYMBOL|ICOUNT|first-read-of-stdin`), and each instance is re-seeded so clones do not share
//! random values (warm.rs says exactly which values they do share). A usage profile (profile.rs: hot blocks,
//! pages written, files read; a versioned text file) chooses each instance's warmup (pool.rs). Fault campaigns
//! start each run from the fault-free run's checkpoint before its first fault
//! (tandem_emulator::hypervisor::campaign, `Start::Warm`).
//!
//! It must not change a run: with `Seeding::Shared` an instance's run equals a cold run bit for bit (output,
//! instruction count, state hash), warmup included (tests/warm_pools.rs).

pub mod pool;
pub mod profile;
pub mod warm;

pub use pool::{touched_pages, Instance, Pool, UsageHost, Warming, WarmupDone, WarmupPlan};
pub use profile::UsageProfile;
pub use warm::{
    locate, run_to, symbol_address, EntropyHost, Seeding, WarmImage, WarmPoint, WarmTarget,
};

/// Errors of warm points, images and profiles.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error(
        "warm point {text:?}: expected a symbol such as main, an instruction count such as 100000, \
         or first-read-of-stdin"
    )]
    BadPoint { text: String },
    #[error(
        "warm point {name}: the program has no such symbol (stripped?); give an instruction count or \
         first-read-of-stdin instead"
    )]
    NoSymbol { name: String },
    #[error(
        "warm point {point}: the program ended after {icount} instructions without reaching it"
    )]
    Ended { point: String, icount: u64 },
    #[error(
        "warm point {point}: not reached within {instructions_max} instructions; raise --max-insns"
    )]
    NotReached {
        point: String,
        instructions_max: u64,
    },
    #[error("cannot load the program: {0}")]
    Load(String),
    #[error("line {line}: {message}")]
    Profile { line: usize, message: String },
}
