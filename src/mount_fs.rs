//! The live host's access to mounted files: every host path is opened beneath a descriptor of its mount's root,
//! held open for the run, without following any symbolic link.
//!
//! Why: the guest's file system (tandem_emulator::linux::vfs) resolves guest paths itself and only forms host paths
//! whose every directory it saw to be a real directory, but a host process can change the tree between two guest
//! calls: swap a mounted directory for a link to a directory outside the mount (renameat2 RENAME_EXCHANGE), and a
//! plain open of the same host path would follow the link out of the mount. Opened here, the walk stays beneath
//! the root: openat2(2) with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS (which implies RESOLVE_NO_MAGICLINKS) from
//! the root's descriptor, or, where openat2 is missing (ENOSYS, before Linux 5.6, or refused by a seccomp filter),
//! one component at a time with O_NOFOLLOW. The guest then gets an error (ELOOP, ENOTDIR, EXDEV) instead of a
//! file from outside. No link needs following here: the guest's own links are read with `read_link` and
//! resolved in the guest's name space.
//!
//! It also gives the metadata of host paths in full (stat(2)), optionally normalised (`--normalize-metadata`).

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tandem_emulator::linux::abi::{Errno, EACCES, EFBIG, EINVAL, EIO, ENOTDIR};
use tandem_emulator::linux::vfs::{inode_of, join, Mount};
use tandem_emulator::linux::{HostKind, HostMetadata, HostStat, Timespec};

/// Largest mounted file the guest may read whole (the size a guest file may reach, elf::IMAGE_SIZE_BYTES_MAX).
const FILE_BYTES_MAX: u64 = 1 << 32;

/// struct open_how of openat2(2) (libc's is non-exhaustive, so it cannot be built outside libc).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// A mount's root, opened once for the run.
struct Root {
    host: PathBuf,
    guest: Vec<Vec<u8>>,
    /// O_PATH descriptor of a directory root; a readable descriptor of a file root.
    fd: OwnedFd,
    is_dir: bool,
}

/// How components are walked beneath a root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Walk {
    /// openat2 with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS, falling back to `Components` on ENOSYS or EPERM.
    Openat2,
    /// openat with O_NOFOLLOW, one component at a time.
    Components,
}

/// The mount roots of a run.
pub(crate) struct MountRoots {
    roots: Vec<Root>,
    walk: Walk,
    normalize: bool,
}

fn last_errno() -> Errno {
    Errno(
        std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(EIO.0),
    )
}

fn cstring(bytes: &[u8]) -> Result<CString, Errno> {
    CString::new(bytes).map_err(|_| EINVAL)
}

/// openat(2) of one name; the descriptor is owned.
fn openat(dir: i32, name: &[u8], flags: i32) -> Result<OwnedFd, Errno> {
    let name = cstring(name)?;
    // SAFETY: `name` is a valid NUL-terminated string that outlives the call; openat does not keep it.
    let fd = unsafe { libc::openat(dir, name.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(last_errno());
    }
    // SAFETY: `fd` was just returned by openat and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn fstat(fd: i32) -> Result<libc::stat, Errno> {
    // SAFETY: an all-zero `struct stat` is a valid value; fstat writes into it and keeps no pointer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid, writable `struct stat` for the duration of the call.
    if unsafe { libc::fstat(fd, &mut st) } < 0 {
        return Err(last_errno());
    }
    Ok(st)
}

impl MountRoots {
    /// Opens every mount's root (already made absolute and canonical by `parse_mount`).
    pub(crate) fn open(mounts: &[Mount], normalize: bool) -> anyhow::Result<MountRoots> {
        let mut roots = Vec::new();
        for m in mounts {
            let path = cstring(m.host.as_os_str().as_bytes()).map_err(|_| {
                anyhow::anyhow!(
                    "--mount {}: the host path holds a NUL byte",
                    m.host.display()
                )
            })?;
            // SAFETY: `path` is a valid NUL-terminated string; open keeps no pointer to it.
            let raw = unsafe {
                libc::open(
                    path.as_ptr(),
                    libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                )
            };
            if raw < 0 {
                anyhow::bail!(
                    "--mount: cannot open the host path {}: {}",
                    m.host.display(),
                    std::io::Error::last_os_error()
                );
            }
            // SAFETY: `raw` was just returned by open and nothing else owns it.
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            let st = fstat(fd.as_raw_fd()).map_err(|e| {
                anyhow::anyhow!("--mount: cannot stat {}: errno {}", m.host.display(), e.0)
            })?;
            let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
            let fd = if is_dir {
                fd
            } else {
                // A mounted file is read through a descriptor of its own, opened now.
                // SAFETY: as above.
                let raw = unsafe {
                    libc::open(
                        path.as_ptr(),
                        libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC,
                    )
                };
                if raw < 0 {
                    anyhow::bail!(
                        "--mount: cannot open the host file {}: {}",
                        m.host.display(),
                        std::io::Error::last_os_error()
                    );
                }
                // SAFETY: `raw` was just returned by open and nothing else owns it.
                unsafe { OwnedFd::from_raw_fd(raw) }
            };
            roots.push(Root {
                host: m.host.clone(),
                guest: m.guest.clone(),
                fd,
                is_dir,
            });
        }
        // Longest host path first, so that a path is opened beneath the innermost root that holds it.
        roots.sort_by_key(|r| std::cmp::Reverse(r.host.as_os_str().len()));
        Ok(MountRoots {
            roots,
            walk: Walk::Openat2,
            normalize,
        })
    }

    /// Forces the component-by-component walk (for tests of the fallback).
    #[cfg(test)]
    pub(crate) fn with_walk(mut self, walk: Walk) -> MountRoots {
        self.walk = walk;
        self
    }

    /// The root that holds `path` and the names below it. A path under no root, or with "." or ".." in it, is
    /// refused (the guest's file system never forms one).
    fn locate(&self, path: &Path) -> Result<(usize, Vec<Vec<u8>>), Errno> {
        for (i, r) in self.roots.iter().enumerate() {
            if let Ok(rest) = path.strip_prefix(&r.host) {
                let names: Vec<Vec<u8>> = rest
                    .as_os_str()
                    .as_bytes()
                    .split(|&b| b == b'/')
                    .filter(|c| !c.is_empty())
                    .map(|c| c.to_vec())
                    .collect();
                if names.iter().any(|c| c == b"." || c == b"..") {
                    return Err(EACCES);
                }
                if !r.is_dir && !names.is_empty() {
                    return Err(ENOTDIR);
                }
                return Ok((i, names));
            }
        }
        Err(EACCES)
    }

    /// Opens `names` beneath root `root` with `flags` (O_NOFOLLOW is always added: a final link is opened as the
    /// link itself with O_PATH, and refused otherwise).
    fn open_beneath(
        &mut self,
        root: usize,
        names: &[Vec<u8>],
        flags: i32,
    ) -> Result<OwnedFd, Errno> {
        let dir = self.roots[root].fd.as_raw_fd();
        let flags = flags | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        if self.walk == Walk::Openat2 {
            let rel = if names.is_empty() {
                b".".to_vec()
            } else {
                names.join(&b'/')
            };
            let rel = cstring(&rel)?;
            let how = OpenHow {
                flags: flags as u64,
                mode: 0,
                resolve: libc::RESOLVE_BENEATH
                    | libc::RESOLVE_NO_SYMLINKS
                    | libc::RESOLVE_NO_MAGICLINKS,
            };
            // SAFETY: `rel` and `how` are valid for the duration of the call and the size passed is `how`'s.
            let fd = unsafe {
                libc::syscall(
                    libc::SYS_openat2,
                    dir,
                    rel.as_ptr(),
                    &how as *const OpenHow,
                    std::mem::size_of::<OpenHow>(),
                )
            };
            if fd >= 0 {
                // SAFETY: `fd` was just returned by openat2 and nothing else owns it.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) });
            }
            let e = last_errno();
            if e.0 != libc::ENOSYS && e.0 != libc::EPERM {
                return Err(e);
            }
            // No openat2 here (or a filter refuses it): walk the components instead, from now on.
            self.walk = Walk::Components;
        }
        let Some((last, dirs)) = names.split_last() else {
            return openat(dir, b".", flags);
        };
        let mut cur: Option<OwnedFd> = None;
        for name in dirs {
            let at = cur.as_ref().map_or(dir, |f| f.as_raw_fd());
            cur = Some(openat(
                at,
                name,
                libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW,
            )?);
        }
        openat(cur.as_ref().map_or(dir, |f| f.as_raw_fd()), last, flags)
    }

    /// lstat(2) of a host path beneath its mount, as the guest's file system wants it.
    pub(crate) fn metadata(&mut self, path: &Path) -> Result<HostMetadata, Errno> {
        let (root, names) = self.locate(path)?;
        let st = if names.is_empty() {
            fstat(self.roots[root].fd.as_raw_fd())?
        } else {
            let fd = self.open_beneath(root, &names, libc::O_PATH)?;
            fstat(fd.as_raw_fd())?
        };
        let kind = match st.st_mode & libc::S_IFMT {
            libc::S_IFREG => HostKind::File,
            libc::S_IFDIR => HostKind::Dir,
            libc::S_IFLNK => HostKind::Symlink,
            _ => HostKind::Other,
        };
        let time = |sec: i64, nsec: i64| Timespec {
            sec,
            nsec: nsec.clamp(0, 999_999_999) as u32,
        };
        let md = HostMetadata {
            kind,
            size_bytes: st.st_size.max(0) as u64,
            mode: st.st_mode & 0o7777,
            stat: Some(HostStat {
                uid: st.st_uid,
                gid: st.st_gid,
                nlink: st.st_nlink,
                atime: time(st.st_atime, st.st_atime_nsec),
                mtime: time(st.st_mtime, st.st_mtime_nsec),
                ctime: time(st.st_ctime, st.st_ctime_nsec),
                blocks: st.st_blocks.max(0) as u64,
                blksize: st.st_blksize.max(0) as u64,
                ino: st.st_ino,
                dev: st.st_dev,
            }),
        };
        if !self.normalize {
            return Ok(md);
        }
        // The inode number a normalised file shows is a hash of its guest path, as synthetic nodes have.
        let mut guest = self.roots[root].guest.clone();
        guest.extend(names);
        Ok(md.normalized(inode_of(&join(&guest))))
    }

    /// The whole contents of a regular host file beneath its mount.
    pub(crate) fn read_file(&mut self, path: &Path) -> Result<Arc<Vec<u8>>, Errno> {
        let (root, names) = self.locate(path)?;
        let owned;
        let fd = if names.is_empty() {
            self.roots[root].fd.as_raw_fd()
        } else {
            // O_NONBLOCK: a FIFO swapped in on the host must not block the run.
            owned = self.open_beneath(root, &names, libc::O_RDONLY | libc::O_NONBLOCK)?;
            owned.as_raw_fd()
        };
        let st = fstat(fd)?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(EINVAL);
        }
        if st.st_size as u64 > FILE_BYTES_MAX {
            return Err(EFBIG);
        }
        let mut out = Vec::with_capacity(st.st_size.max(0) as usize);
        let mut buf = vec![0u8; 1 << 16];
        loop {
            // SAFETY: `buf` is valid for `buf.len()` bytes of writing; pread keeps no pointer.
            let n = unsafe {
                libc::pread(
                    fd,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    out.len() as libc::off_t,
                )
            };
            if n < 0 {
                let e = last_errno();
                if e.0 == libc::EINTR {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n as usize]);
            if out.len() as u64 > FILE_BYTES_MAX {
                return Err(EFBIG);
            }
        }
        Ok(Arc::new(out))
    }

    /// The names in a host directory beneath its mount, "." and ".." among them, in the host's order (what
    /// getdents gives natively), or sorted without "." and ".." when the metadata is normalised.
    pub(crate) fn read_dir(&mut self, path: &Path) -> Result<Vec<Vec<u8>>, Errno> {
        let (root, names) = self.locate(path)?;
        if !self.roots[root].is_dir {
            return Err(ENOTDIR);
        }
        let fd = self.open_beneath(root, &names, libc::O_RDONLY | libc::O_DIRECTORY)?;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            // SAFETY: `buf` is valid for `buf.len()` bytes of writing; getdents64 keeps no pointer.
            let n = unsafe {
                libc::syscall(
                    libc::SYS_getdents64,
                    fd.as_raw_fd(),
                    buf.as_mut_ptr(),
                    buf.len(),
                )
            };
            if n < 0 {
                return Err(last_errno());
            }
            if n == 0 {
                break;
            }
            // struct linux_dirent64: d_ino u64, d_off i64, d_reclen u16, d_type u8, d_name (NUL-terminated).
            let mut at = 0usize;
            while at + 19 <= n as usize {
                let reclen = u16::from_ne_bytes([buf[at + 16], buf[at + 17]]) as usize;
                if reclen < 19 || at + reclen > n as usize {
                    return Err(EIO);
                }
                let name = &buf[at + 19..at + reclen];
                let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
                out.push(name.to_vec());
                at += reclen;
            }
        }
        if self.normalize {
            // The host's order depends on its file system (ext4's is a hash with a per-volume seed). Sorted,
            // without "." and "..", which the guest then sees first.
            out.retain(|n| n != b"." && n != b"..");
            out.sort();
        }
        Ok(out)
    }

    /// The target of a host symbolic link beneath its mount.
    pub(crate) fn read_link(&mut self, path: &Path) -> Result<Vec<u8>, Errno> {
        let (root, names) = self.locate(path)?;
        if names.is_empty() {
            return Err(EINVAL);
        }
        let fd = self.open_beneath(root, &names, libc::O_PATH)?;
        let mut buf = vec![0u8; 4096];
        let empty = cstring(b"")?;
        // SAFETY: `empty` and `buf` are valid for the call; readlinkat with an empty path reads the link that the
        // O_PATH descriptor refers to.
        let n = unsafe {
            libc::readlinkat(
                fd.as_raw_fd(),
                empty.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n < 0 {
            return Err(last_errno());
        }
        buf.truncate(n as usize);
        Ok(buf)
    }
}

/// The mounts as the files of a fault campaign's runs (`FileSource`): every thread reads through the same roots,
/// one at a time. The files must not change during the campaign (as for `tandem record` of a reproduce line).
pub(crate) struct SharedMountRoots(std::sync::Mutex<MountRoots>);

impl SharedMountRoots {
    pub(crate) fn open(mounts: &[Mount]) -> anyhow::Result<SharedMountRoots> {
        Ok(SharedMountRoots(std::sync::Mutex::new(MountRoots::open(
            mounts, false,
        )?)))
    }

    fn roots(&self) -> std::sync::MutexGuard<'_, MountRoots> {
        // A thread that panicked while reading left no half-made state behind (each call opens and reads anew).
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl tandem_emulator::linux::host::FileSource for SharedMountRoots {
    fn metadata(&self, path: &Path) -> Result<HostMetadata, Errno> {
        self.roots().metadata(path)
    }
    fn read_file(&self, path: &Path) -> Result<Arc<Vec<u8>>, Errno> {
        self.roots().read_file(path)
    }
    fn read_dir(&self, path: &Path) -> Result<Vec<Vec<u8>>, Errno> {
        self.roots().read_dir(path)
    }
    fn read_link(&self, path: &Path) -> Result<Vec<u8>, Errno> {
        self.roots().read_link(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_emulator::linux::abi::{ELOOP, ENOENT};
    use tandem_emulator::linux::vfs::split;

    /// A scratch tree: m/sub/file.txt ("inside"), m/sub/link -> file.txt, m/inner -> sub, outside/file.txt.
    fn tree(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("tandem-mount-fs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("m/sub")).unwrap();
        std::fs::create_dir_all(dir.join("outside")).unwrap();
        std::fs::write(dir.join("m/sub/file.txt"), b"inside\n").unwrap();
        std::fs::write(dir.join("outside/file.txt"), b"secret\n").unwrap();
        std::os::unix::fs::symlink("file.txt", dir.join("m/sub/link")).unwrap();
        std::os::unix::fs::symlink("sub", dir.join("m/inner")).unwrap();
        dir
    }

    fn roots(dir: &Path, walk: Walk) -> MountRoots {
        let m = Mount {
            guest: split(b"/data").into(),
            host: std::fs::canonicalize(dir.join("m")).unwrap(),
        };
        MountRoots::open(&[m], false).unwrap().with_walk(walk)
    }

    /// Swaps m/sub for a link to ../outside (what a racing host process does with renameat2).
    fn exchange(dir: &Path) {
        std::os::unix::fs::symlink(dir.join("outside"), dir.join("swap")).unwrap();
        let a = CString::new(dir.join("m/sub").as_os_str().as_bytes()).unwrap();
        let b = CString::new(dir.join("swap").as_os_str().as_bytes()).unwrap();
        // SAFETY: both paths are valid NUL-terminated strings for the duration of the call.
        let r = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                a.as_ptr(),
                libc::AT_FDCWD,
                b.as_ptr(),
                libc::RENAME_EXCHANGE,
            )
        };
        assert_eq!(r, 0, "renameat2: {}", std::io::Error::last_os_error());
    }

    fn walks_stay_beneath(walk: Walk) {
        let dir = tree(&format!("{walk:?}"));
        let mut r = roots(&dir, walk);
        let host = std::fs::canonicalize(dir.join("m")).unwrap();
        let file = host.join("sub/file.txt");
        assert_eq!(*r.read_file(&file).unwrap(), b"inside\n");
        let md = r.metadata(&host.join("sub/link")).unwrap();
        assert_eq!(
            md.kind,
            HostKind::Symlink,
            "a final link is reported, not followed"
        );
        assert_eq!(r.read_link(&host.join("sub/link")).unwrap(), b"file.txt");
        let mut names = r.read_dir(&host.join("sub")).unwrap();
        names.sort();
        assert_eq!(
            names,
            [&b"."[..], b"..", b"file.txt", b"link"].map(|n| n.to_vec()),
            "the host's names, \".\" and \"..\" among them"
        );
        assert_eq!(r.metadata(&host).unwrap().kind, HostKind::Dir);
        // Links inside the mount are the guest's to follow, never the host's.
        assert_eq!(
            r.read_file(&host.join("inner/file.txt")),
            Err(if walk == Walk::Openat2 {
                ELOOP
            } else {
                ENOTDIR
            })
        );
        assert_eq!(r.read_file(&host.join("sub/link")), Err(ELOOP));
        assert_eq!(r.metadata(&host.join("sub/missing")), Err(ENOENT));
        assert_eq!(r.read_file(&host.join("../outside/file.txt")), Err(EACCES));
        exchange(&dir);
        // Now m/sub is a link to the outside directory: nothing through it is reachable.
        for result in [
            r.read_file(&file).map(|b| b.to_vec()),
            r.read_dir(&host.join("sub")).map(|n| n.concat()),
            r.metadata(&file).map(|_| Vec::new()),
            r.read_link(&host.join("sub/link")),
        ] {
            let e = result.expect_err("a path through the swapped directory must fail");
            assert!([ELOOP, ENOTDIR].contains(&e), "{e:?}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn openat2_stays_beneath_the_mount_root() {
        walks_stay_beneath(Walk::Openat2);
    }

    #[test]
    fn the_component_walk_stays_beneath_the_mount_root() {
        walks_stay_beneath(Walk::Components);
    }

    #[test]
    fn normalised_metadata_is_the_same_on_any_machine() {
        let dir = tree("normalize");
        let m = Mount {
            guest: split(b"/data").into(),
            host: std::fs::canonicalize(dir.join("m")).unwrap(),
        };
        let mut r = MountRoots::open(std::slice::from_ref(&m), true).unwrap();
        let md = r.metadata(&m.host.join("sub/file.txt")).unwrap();
        let s = md.stat.unwrap();
        assert_eq!((s.uid, s.gid, s.blocks, s.nlink), (1000, 1000, 8, 1));
        assert_eq!(
            s.mtime,
            Timespec {
                sec: 1_704_067_200,
                nsec: 0
            }
        );
        assert_eq!(s.ino, inode_of(b"/data/sub/file.txt"));
        assert_eq!(md.size_bytes, 7);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
