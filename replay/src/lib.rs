//! tandem-replay: the trace format, record and replay, checkpoints and reverse execution, the replay
//! debugger and its GDB remote-protocol server.
//!
//! Architecture invariant: a replay reads nothing from outside but the trace. The recorded run's inputs
//! (program, mounted files as they were read, stdin, live clock and entropy when asked for) are all in it, so a
//! trace replays on another machine, and a replay that differs from its recording is reported at the first
//! checkpoint that shows it and narrowed by re-execution (replay.rs).
//!
//! Layout: cdp/ (the CDP journal of completed guest I/O and point-in-time recovery), trace.rs (the format, writer and reader), sink.rs (where a recording's chunks go: a writer on a
//! thread of its own), hosts.rs (the recording and replaying hosts),
//! digest.rs (register files and the incremental memory digest), record.rs, replay.rs and
//! memory_divergence.rs (which pages differ, who wrote them), timeline.rs
//! (checkpoints, seeking), debugger.rs (the command-line debugger) and gdb.rs (its GDB remote-protocol front end);
//! pools/ (warm snapshots, usage profiles, pools of warmed instances).

pub mod cdp;
pub mod debugger;
pub mod digest;
pub mod ft;
pub mod gdb;
pub mod hosts;
pub mod memory_divergence;
pub mod pools;
pub mod record;
pub mod replay;
pub mod sink;
pub mod symbols;
pub mod timeline;
pub mod trace;
pub mod trace_faults;

/// The version written into every trace header.
pub const EMULATOR_VERSION: &str = env!("CARGO_PKG_VERSION");
