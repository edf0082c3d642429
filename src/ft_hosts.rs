//! The hosts behind `tandem ft`: `ReleasingHost`, the live host that also applies the agreed file changes of the
//! guest beneath a directory (--release-files), and `campaign_host`, the in-memory host a campaign's runs share
//! (the mounted files and stdin read once, so that every run of every seed gets the same inputs).
//!
//! The released files are the guest's file output after the replicas agreed on it: a change reaches the
//! directory only when its epoch is released, in the order the guest made the changes.
//!
//! It must not: write outside the release directory (guest paths are normalised, absolute and free of `..`; a
//! path that is not is refused), or follow the host's symbolic links when reading mounts for a campaign.

use anyhow::{bail, Context};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use tandem_emulator::linux::host::MemoryNode;
use tandem_emulator::linux::vfs::Mount;
use tandem_emulator::linux::{FileOutput, Host, MemoryHost};
use tandem_emulator::memory::Fnv;

/// Most files and directories a campaign reads from its mounts, and most bytes in all.
const CAMPAIGN_NODES_MAX: usize = 100_000;
const CAMPAIGN_BYTES_MAX: u64 = 1 << 30;

/// A host that passes everything to `inner` and applies the file changes it is given beneath `dir`.
#[derive(Clone)]
pub(crate) struct ReleasingHost<H: Host> {
    pub(crate) inner: H,
    dir: Option<PathBuf>,
    /// The first change that could not be applied (reported after the run; the guest was answered already).
    pub(crate) failure: Option<String>,
    /// The host files written beneath `dir`.
    pub(crate) files: std::collections::BTreeSet<PathBuf>,
    /// Every file change passed on (path, kind, place, bytes), hashed in order: what a campaign compares with
    /// the fault-free run's, beside stdout.
    pub(crate) file_output_digest: Fnv,
}

impl<H: Host> ReleasingHost<H> {
    pub(crate) fn new(inner: H, dir: Option<PathBuf>) -> ReleasingHost<H> {
        ReleasingHost {
            inner,
            dir,
            failure: None,
            files: std::collections::BTreeSet::new(),
            file_output_digest: Fnv::new(),
        }
    }

    fn apply(&mut self, guest_path: &[u8], change: FileOutput<'_>) -> anyhow::Result<()> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        let shown = String::from_utf8_lossy(guest_path).into_owned();
        let relative = guest_path.strip_prefix(b"/").unwrap_or(guest_path);
        let parts: Vec<&[u8]> = relative.split(|&b| b == b'/').collect();
        if parts
            .iter()
            .any(|p| p.is_empty() || *p == b"." || *p == b"..")
        {
            bail!("guest path {shown} is not a plain absolute path");
        }
        let target = dir.join(Path::new(std::ffi::OsStr::from_bytes(relative)));
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&target)
            .with_context(|| format!("cannot open {} for guest file {shown}", target.display()))?;
        match change {
            FileOutput::Write { offset, bytes } => {
                file.seek(SeekFrom::Start(offset))?;
                file.write_all(bytes)
            }
            FileOutput::Truncate { len } => file.set_len(len),
        }
        .with_context(|| format!("cannot write {} for guest file {shown}", target.display()))?;
        self.files.insert(target);
        Ok(())
    }
}

impl<H: Host> Host for ReleasingHost<H> {
    tandem_emulator::forward_host!(inner: read_stdin, write_stdout, write_stderr, metadata, read_file, read_dir, read_link, fill_random);
    fn file_output(&mut self, path: &[u8], change: FileOutput<'_>) {
        let h = &mut self.file_output_digest;
        h.write_u64(path.len() as u64);
        h.write_bytes(path);
        match change {
            FileOutput::Write { offset, bytes } => {
                h.write_u64(offset);
                h.write_u64(bytes.len() as u64);
                h.write_bytes(bytes);
            }
            FileOutput::Truncate { len } => {
                h.write_u64(u64::MAX);
                h.write_u64(len);
            }
        }
        if self.failure.is_some() {
            return;
        }
        if let Err(e) = self.apply(path, change) {
            self.failure = Some(format!("{e:#}"));
        }
    }
}

/// The in-memory host of a campaign: the files under each mount's host path (read now, without following
/// symbolic links) and `stdin`. Metadata is the normalised kind (as --normalize-metadata shows it).
pub(crate) fn campaign_host(
    mounts: &[Mount],
    stdin: Vec<u8>,
    seed: u64,
) -> anyhow::Result<MemoryHost> {
    let mut host = MemoryHost::new(seed);
    host.stdin = stdin;
    let mut budget = (CAMPAIGN_NODES_MAX, CAMPAIGN_BYTES_MAX);
    for m in mounts {
        add_tree(&mut host, &m.host, &mut budget)?;
    }
    Ok(host)
}

fn add_tree(host: &mut MemoryHost, path: &Path, budget: &mut (usize, u64)) -> anyhow::Result<()> {
    if budget.0 == 0 {
        bail!(
            "the mounts hold more than {CAMPAIGN_NODES_MAX} files and directories; a campaign reads them all \
             into memory, mount less"
        );
    }
    budget.0 -= 1;
    let meta = std::fs::symlink_metadata(path)
        .with_context(|| format!("cannot read mounted path {}", path.display()))?;
    let text = path.to_string_lossy().into_owned();
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(path)?;
        host.files.insert(
            path.to_path_buf(),
            MemoryNode::Symlink(target.as_os_str().as_bytes().to_vec()),
        );
    } else if meta.is_dir() {
        host.files.insert(path.to_path_buf(), MemoryNode::Dir);
        let mut names: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("cannot list mounted directory {text}"))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        names.sort();
        for child in names {
            add_tree(host, &child, budget)?;
        }
    } else if meta.is_file() {
        if meta.len() > budget.1 {
            bail!("the mounts hold more than {CAMPAIGN_BYTES_MAX} bytes; a campaign reads them into memory, mount less");
        }
        budget.1 -= meta.len();
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .with_context(|| format!("cannot read mounted file {text}"))?;
        host.add_file(&text, &bytes);
    }
    Ok(())
}
