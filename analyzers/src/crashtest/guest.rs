//! The guests of a crash-consistency search: the workload, run once with an observer of its volume's
//! operations, and the checker, a guest program run on each crash state.
//!
//! The checker sees the crash state as its volumes, at the workload's guest paths, read through a `FileSource`
//! made from the state's images (nothing is written to the host), and reads on stdin what the workload had
//! printed by the crash: the acknowledgements it must find. Its exit status is the verdict (0: the state is
//! consistent), its stdout the summary vulnerabilities are deduplicated by, its stderr the detail.
//!
//! It must not: touch host files (the caller's `FileSource` does, for mounts).

use super::{Recording, Step, Verdict};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tandem_emulator::linux::abi::{Errno, EINVAL, EISDIR, ENOENT, ENOTDIR};
use tandem_emulator::linux::host::{FileSource, HostKind, HostMetadata, SharedFiles};
use tandem_emulator::linux::{Host, LinuxConfig, LinuxMachine, MemoryHost, Progress};
use tandem_emulator::storage::{CompletedIo, IoObserver, IoOp, TreeNode, VolumeImage};

/// The host path a checker's volume is read from: not a real directory, the crash state's image answers it.
pub const STATE_HOST_ROOT: &str = "/tandem-crash-state";

/// Most bytes of a checker's stderr kept in a verdict's detail.
const DETAIL_BYTES_MAX: usize = 4096;

/// A guest to run: its program, configuration, the files its mounts and volumes read, and its budget.
#[derive(Clone)]
pub struct GuestRun {
    pub program: Arc<Vec<u8>>,
    pub config: LinuxConfig,
    /// What the mounts (and, for the workload, the volume's host directory) read; None: nothing.
    pub files: Option<SharedFiles>,
    pub instructions_max: u64,
    pub jit: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    #[error("cannot start the {what}: {message}")]
    Load { what: &'static str, message: String },
    #[error("the workload needs at least one --volume")]
    NoVolume,
}

/// A host that counts the stdout bytes written, for the observer to read at each operation.
struct CountingHost {
    inner: MemoryHost,
    stdout_bytes: Arc<AtomicUsize>,
}

impl Host for CountingHost {
    tandem_emulator::forward_host!(inner: read_stdin, write_stderr, metadata, read_file, read_dir, read_link, fill_random);
    fn write_stdout(&mut self, bytes: &[u8]) -> Result<(), Errno> {
        self.inner.write_stdout(bytes)?;
        self.stdout_bytes
            .store(self.inner.stdout.len(), Ordering::Relaxed);
        Ok(())
    }
}

/// What the observer keeps, shared with the caller after the run.
#[derive(Default)]
struct Observed {
    bases: Vec<VolumeImage>,
    steps: Vec<Step>,
}

/// The observer of the workload's volumes: their base images and every operation with the stdout count then.
struct Recorder {
    observed: Arc<Mutex<Observed>>,
    stdout_bytes: Arc<AtomicUsize>,
}

impl Recorder {
    fn observed(&self) -> std::sync::MutexGuard<'_, Observed> {
        self.observed.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl IoObserver for Recorder {
    fn volume_base(&mut self, volume: u32, _guest_root: &[u8], image: &VolumeImage) {
        let mut observed = self.observed();
        let at = volume as usize;
        if observed.bases.len() <= at {
            observed.bases.resize(at + 1, VolumeImage::default());
        }
        observed.bases[at] = image.clone();
    }
    fn completed(&mut self, io: &CompletedIo) {
        if matches!(io.op, IoOp::Mark { .. }) {
            return;
        }
        let stdout_bytes = self.stdout_bytes.load(Ordering::Relaxed);
        self.observed().steps.push(Step {
            volume: io.volume,
            icount: io.icount,
            tid: io.tid,
            op: io.op.clone(),
            stdout_bytes,
        });
    }
}

fn host_of(seed: u64, files: &Option<SharedFiles>) -> MemoryHost {
    match files {
        Some(files) => MemoryHost::with_files(seed, files.clone()),
        None => MemoryHost::new(seed),
    }
}

/// Runs the workload once and keeps what the search needs.
pub fn record_workload(run: &GuestRun) -> Result<Recording, GuestError> {
    if run.config.volumes.is_empty() {
        return Err(GuestError::NoVolume);
    }
    let stdout_bytes = Arc::new(AtomicUsize::new(0));
    let host = CountingHost {
        inner: host_of(run.config.seed, &run.files),
        stdout_bytes: stdout_bytes.clone(),
    };
    let mut guest = LinuxMachine::new(run.config.clone(), &run.program, host).map_err(|e| {
        GuestError::Load {
            what: "workload",
            message: e.to_string(),
        }
    })?;
    guest.set_jit(run.jit);
    let observed = Arc::new(Mutex::new(Observed::default()));
    guest.set_io_observer(Box::new(Recorder {
        observed: observed.clone(),
        stdout_bytes,
    }));
    let progress = guest.run(run.instructions_max);
    drop(guest.take_io_observer());
    let mut observed = std::mem::take(&mut *observed.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(Recording {
        bases: std::mem::take(&mut observed.bases),
        steps: observed.steps,
        exit_status: match progress {
            Progress::Finished => guest.exit_status(),
            Progress::BudgetExhausted => None,
        },
        icount: guest.icount(),
        stdout: std::mem::take(&mut guest.host.inner.stdout),
        stderr: std::mem::take(&mut guest.host.inner.stderr),
    })
}

/// One crashed volume as a tree.
struct StateTree {
    tree: std::collections::BTreeMap<Vec<u8>, TreeNode>,
    root_mode: u32,
}

/// A crash state as host directory trees, volume N at `STATE_HOST_ROOT/N`, everything else from `rest`.
struct StateFiles {
    volumes: Vec<StateTree>,
    rest: Option<SharedFiles>,
}

/// The host directory a checker's volume `index` is read from.
fn state_root(index: usize) -> PathBuf {
    Path::new(STATE_HOST_ROOT).join(index.to_string())
}

impl StateFiles {
    /// The volume and the relative path of a host path inside the state ("" for a volume's root), or None
    /// outside it.
    fn locate(&self, path: &Path) -> Option<(&StateTree, Vec<u8>)> {
        use std::os::unix::ffi::OsStrExt;
        let rest = path.strip_prefix(STATE_HOST_ROOT).ok()?;
        let mut parts = rest.components();
        let index: usize = parts.next()?.as_os_str().to_str()?.parse().ok()?;
        let volume = self.volumes.get(index)?;
        Some((volume, parts.as_path().as_os_str().as_bytes().to_vec()))
    }
}

impl FileSource for StateFiles {
    fn metadata(&self, path: &Path) -> Result<HostMetadata, Errno> {
        let Some((state, rel)) = self.locate(path) else {
            return self
                .rest
                .as_ref()
                .map_or(Err(ENOENT), |r| r.0.metadata(path));
        };
        let (kind, size_bytes, mode) = match state.tree.get(&rel) {
            _ if rel.is_empty() => (HostKind::Dir, 4096, state.root_mode),
            Some(TreeNode::File { bytes, mode }) => (HostKind::File, bytes.len() as u64, *mode),
            Some(TreeNode::Dir { mode }) => (HostKind::Dir, 4096, *mode),
            Some(TreeNode::Symlink { target }) => (HostKind::Symlink, target.len() as u64, 0o777),
            None => return Err(ENOENT),
        };
        Ok(HostMetadata {
            kind,
            size_bytes,
            mode,
            stat: None,
        })
    }
    fn read_file(&self, path: &Path) -> Result<Arc<Vec<u8>>, Errno> {
        let Some((state, rel)) = self.locate(path) else {
            return self
                .rest
                .as_ref()
                .map_or(Err(ENOENT), |r| r.0.read_file(path));
        };
        match state.tree.get(&rel) {
            Some(TreeNode::File { bytes, .. }) => Ok(bytes.clone()),
            Some(_) => Err(EISDIR),
            None if rel.is_empty() => Err(EISDIR),
            None => Err(ENOENT),
        }
    }
    fn read_dir(&self, path: &Path) -> Result<Vec<Vec<u8>>, Errno> {
        let Some((state, rel)) = self.locate(path) else {
            return self
                .rest
                .as_ref()
                .map_or(Err(ENOENT), |r| r.0.read_dir(path));
        };
        if !rel.is_empty() && !matches!(state.tree.get(&rel), Some(TreeNode::Dir { .. })) {
            return Err(ENOTDIR);
        }
        let prefix = if rel.is_empty() {
            Vec::new()
        } else {
            [rel.as_slice(), b"/"].concat()
        };
        Ok(state
            .tree
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| &k[prefix.len()..])
            .filter(|name| !name.contains(&b'/'))
            .map(<[u8]>::to_vec)
            .collect())
    }
    fn read_link(&self, path: &Path) -> Result<Vec<u8>, Errno> {
        let Some((state, rel)) = self.locate(path) else {
            return self
                .rest
                .as_ref()
                .map_or(Err(ENOENT), |r| r.0.read_link(path));
        };
        match state.tree.get(&rel) {
            Some(TreeNode::Symlink { target }) => Ok(target.clone()),
            _ => Err(EINVAL),
        }
    }
}

/// The checker: a guest program run on each crash state, with the state as its volume (the workload's guest
/// path, `config.volumes[0].guest`) and the acknowledged output on stdin.
pub struct GuestChecker {
    pub run: GuestRun,
}

impl GuestChecker {
    /// A checker running `run`'s program; its volumes' host paths are replaced by the state's.
    pub fn new(mut run: GuestRun) -> GuestChecker {
        for (i, v) in run.config.volumes.iter_mut().enumerate() {
            v.host = state_root(i);
            v.content = None;
        }
        GuestChecker { run }
    }
}

/// Text of guest output for a report: lossy UTF-8, trailing whitespace trimmed, bounded.
fn text(bytes: &[u8], bytes_max: usize) -> String {
    let cut = &bytes[..bytes.len().min(bytes_max)];
    String::from_utf8_lossy(cut).trim_end().to_string()
}

impl super::Checker for GuestChecker {
    fn check(&self, images: &[VolumeImage], acked: &[u8]) -> Verdict {
        let files = StateFiles {
            volumes: images
                .iter()
                .map(|image| StateTree {
                    tree: image.tree(),
                    root_mode: image.root_mode,
                })
                .collect(),
            rest: self.run.files.clone(),
        };
        let mut host = MemoryHost::with_files(self.run.config.seed, SharedFiles(Arc::new(files)));
        host.stdin = acked.to_vec();
        let mut guest = match LinuxMachine::new(self.run.config.clone(), &self.run.program, host) {
            Ok(g) => g,
            Err(e) => {
                return Verdict {
                    consistent: false,
                    summary: format!("the checker could not start: {e}"),
                    detail: String::new(),
                }
            }
        };
        guest.set_jit(self.run.jit);
        let progress = guest.run(self.run.instructions_max);
        let stdout = text(&guest.host.stdout, DETAIL_BYTES_MAX);
        let mut detail = text(&guest.host.stderr, DETAIL_BYTES_MAX);
        let (consistent, status) = match (progress, guest.termination()) {
            (Progress::Finished, Some(t)) => {
                // Where a signal struck (rip, icount) differs from state to state: detail, not identity.
                if let Some(d) = t.diagnostic() {
                    detail = format!("{detail}\n{d}").trim_start().to_string();
                }
                (t.exit_status() == 0, t.exit_status().to_string())
            }
            _ => (
                false,
                format!(
                    "none: the checker did not finish within {} instructions",
                    self.run.instructions_max
                ),
            ),
        };
        Verdict {
            consistent,
            summary: format!("exit {status}: {stdout}"),
            detail,
        }
    }
}
