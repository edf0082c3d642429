//! tandem-scenarios: the scenario engine.
//!
//! What: a deterministic discrete-event simulation kernel (`kernel`), fault plans (`plan`), workflow templates
//! (`template`), scenario models with their checkers (`models`), the multi-seed runner (`runner`) and its reports
//! (`report`: text, JSON, JUnit, merging shards).
//! Why: so that a distributed protocol's failure modes are explored across thousands of seeds, each failure reproduces
//! from one command line, and a green run proves the dangerous states were reached (coverage properties).
//! Key decision: one run is a pure, single-threaded function of (template, fault plan, seed): virtual time, one totally
//! ordered event queue, named ChaCha streams. Parallelism is across seeds only, so results are byte-identical at any
//! thread count. This crate does no IO except reading templates and plans (through `input`, which bounds every input file
//! tandem reads, the command line's included) and writing what the runner is asked to write.

pub mod input;
pub mod kernel;
pub mod models;
pub mod picture;
pub mod plan;
pub mod report;
pub mod rng;
pub mod runner;
pub mod template;
pub mod timeline;

pub use models::RunReport;
pub use plan::{plan_for_seed, FaultPlan};
pub use template::{load, Template, TemplateError};
