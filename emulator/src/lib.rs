//! tandem-emulator: a deterministic x86-64 user-mode emulator.
//!
//! It owns the CPU (an interpreter over instructions decoded by iced-x86 that compiles hot blocks to host code),
//! guest memory (4 KiB pages over copy-on-write frames) and the Linux user-mode ABI (module `linux`). It does no IO of its own: everything from outside
//! comes through the host interface of the layer above, so the same inputs always give the same run.
//!
//! Architecture invariant: this crate depends on no other crate of the workspace, reads no host clock and no
//! unseeded randomness, and no guest input can make it panic (a broken guest is a guest exception, a value).

pub mod cpu;
pub mod hypervisor;
pub mod linux;
pub mod memory;
pub mod shared;
pub mod storage;
