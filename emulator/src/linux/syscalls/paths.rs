//! Syscalls on paths: open, stat and statx, getdents, access, readlink, the working directory, mkdir,
//! unlink, rename, symlink and truncate, over the guest's file system (vfs.rs), following their man pages
//! (section 2).

use super::*;
use crate::linux::FileOutput;

impl<H: Host> LinuxMachine<H> {
    // ---------------------------------------------------------------------------------------------------------
    // Paths.

    /// The directory a *at() call resolves relative paths against.
    pub(in crate::linux) fn dir_of(&self, dirfd: i32) -> Result<GuestPath, Errno> {
        if dirfd == AT_FDCWD {
            return Ok(self.proc.cwd.clone());
        }
        let desc = self.proc.fds.get(dirfd)?;
        let d = desc.borrow();
        match &d.kind {
            FileKind::Dir { path } => Ok(path.clone()),
            _ => Err(ENOTDIR),
        }
    }

    pub(in crate::linux) fn resolve_at(
        &mut self,
        dirfd: i32,
        path: &[u8],
        follow: bool,
    ) -> Result<Resolved, Errno> {
        let base = if path.first() == Some(&b'/') {
            self.vfs.root()
        } else {
            self.dir_of(dirfd)?
        };
        let fds = &self.proc.fds;
        let link = |fd: i32| match fds.get(fd) {
            Err(_) => vfs::FdLink::Closed,
            Ok(desc) => match desc.borrow().path() {
                Some(path) => vfs::FdLink::Path(path.clone()),
                None => vfs::FdLink::Anonymous,
            },
        };
        self.vfs
            .resolve_with_fds(&mut self.host, &base, path, follow, &link)
    }

    /// The extended-attribute calls (setxattr(2), getxattr(2), listxattr(2), removexattr(2) and their l- and
    /// f- forms, numbers 188-199): the guest's file systems keep no extended attributes and support none, so
    /// once the path or descriptor is found each answers EOPNOTSUPP, as a file system mounted without xattr
    /// support does (ls and cp take that as "no ACLs, no labels").
    pub(in crate::linux) fn sys_xattr(&mut self, nr: u64, target: u64) -> SysResult {
        assert!((188..=199).contains(&nr), "xattr call number {nr}");
        match (nr - 188) % 3 {
            2 => {
                self.proc.fds.get(target as i32)?;
            }
            form => {
                let path = self.read_path(target)?;
                let r = self.resolve_at(AT_FDCWD, &path, form == 0)?;
                r.node.ok_or(ENOENT)?;
            }
        }
        Err(EOPNOTSUPP)
    }

    /// open(2) of /proc/self/fd/N for a descriptor without a path: a new descriptor for the same open
    /// description when the description allows the access asked for (a standard stream, a pipe, a device). Linux
    /// opens the object anew; with one description per stream here, sharing it is the nearest. A socket is
    /// ENXIO, as on Linux; the anonymous inodes (eventfd, timerfd, epoll) likewise here.
    fn reopen_fd(&mut self, fd: i32, flags: u32) -> SysResult {
        let desc = self.proc.fds.get(fd)?;
        {
            let d = desc.borrow();
            let reopenable = matches!(
                d.kind,
                FileKind::Stdin
                    | FileKind::Stdout
                    | FileKind::Stderr
                    | FileKind::PipeRead(_)
                    | FileKind::PipeWrite(_)
                    | FileKind::Device(_)
            );
            if !reopenable {
                return Err(ENXIO);
            }
            let wants_read = flags & O_ACCMODE != O_WRONLY;
            let wants_write = flags & O_ACCMODE != O_RDONLY;
            if (wants_read && !d.readable()) || (wants_write && !d.writable()) {
                return Err(EACCES);
            }
        }
        let n = self.proc.fds.insert(desc, flags & O_CLOEXEC != 0)?;
        Ok(n as u64)
    }

    /// What readlink shows for /proc/self/fd/N: the path of a file or directory, else the kind of object
    /// (fs/proc/fd.c and the pseudo file systems' d_dname: "pipe:[INO]", "socket:[INO]", "anon_inode:[eventfd]").
    fn fd_link_text(&mut self, fd: i32) -> Result<Vec<u8>, Errno> {
        let ino = self.stat_fd(fd)?.ino;
        let desc = self.proc.fds.get(fd)?;
        let d = desc.borrow();
        Ok(match &d.kind {
            FileKind::Regular { path, .. } | FileKind::Dir { path } => path.text(),
            FileKind::Stdin | FileKind::Stdout | FileKind::Stderr => b"/dev/tty".to_vec(),
            FileKind::Device(vfs::Device::Null) => b"/dev/null".to_vec(),
            FileKind::Device(vfs::Device::Zero) => b"/dev/zero".to_vec(),
            FileKind::Device(vfs::Device::Random) => b"/dev/urandom".to_vec(),
            FileKind::Device(vfs::Device::Mark) => crate::storage::MARK_DEVICE_PATH.to_vec(),
            FileKind::PipeRead(_) | FileKind::PipeWrite(_) => format!("pipe:[{ino}]").into_bytes(),
            FileKind::Socket(_) => format!("socket:[{ino}]").into_bytes(),
            FileKind::EventFd(_) => b"anon_inode:[eventfd]".to_vec(),
            FileKind::TimerFd(_) => b"anon_inode:[timerfd]".to_vec(),
            FileKind::Epoll(_) => b"anon_inode:[eventpoll]".to_vec(),
        })
    }

    pub(in crate::linux) fn sys_openat(
        &mut self,
        dirfd: i32,
        path: u64,
        flags: u32,
        mode: u32,
    ) -> SysResult {
        let path = self.read_path(path)?;
        let r = self.resolve_at(dirfd, &path, flags & O_NOFOLLOW == 0)?;
        let cloexec = flags & O_CLOEXEC != 0;
        let wants_write = flags & O_ACCMODE != O_RDONLY;
        let now = self.now();
        let node = match r.node {
            Some(_) if flags & O_CREAT != 0 && flags & O_EXCL != 0 => return Err(EEXIST),
            Some(n) => n,
            None if flags & O_CREAT != 0 => {
                self.check_parent_dir(&r.path)?;
                let attrs = self.vfs.new_attrs(mode & !self.proc.umask, now);
                let f = Shared::new(FileData::new(Vec::new(), attrs));
                self.vfs.put_file(&r.path, f.clone());
                self.volume_name_op(&r.path, |path| IoOp::Create {
                    path,
                    file: attrs.ino,
                    mode: attrs.mode,
                });
                Node::MemoryFile(f)
            }
            None => return Err(ENOENT),
        };
        let kind = match node {
            Node::Dir(_) => {
                if wants_write {
                    return Err(EISDIR);
                }
                FileKind::Dir { path: r.path }
            }
            _ if flags & O_DIRECTORY != 0 => return Err(ENOTDIR),
            Node::Fd(fd) => return self.reopen_fd(fd, flags),
            Node::Symlink { .. } => return Err(ELOOP),
            // open(2): "ENXIO: The file is a UNIX domain socket."
            Node::Socket(_) => return Err(ENXIO),
            Node::Device(d) => FileKind::Device(d),
            Node::Info(_) if wants_write || flags & O_TRUNC != 0 => return Err(EACCES),
            Node::Info(file) => FileKind::Regular {
                data: self.info_file(file),
                path: r.path,
            },
            Node::MemoryFile(_) | Node::HostFile { .. } => {
                let data = if wants_write || flags & O_TRUNC != 0 {
                    // Copy a host file up into the overlay on its first opening for writing.
                    let data = self.vfs.copy_up(&mut self.host, &r.path, &node)?;
                    if flags & O_TRUNC != 0 {
                        let old_len = {
                            let mut f = data.borrow_mut();
                            let old_len = f.bytes.len() as u64;
                            Arc::make_mut(&mut f.bytes).clear();
                            f.attrs.mtime = now;
                            f.attrs.ctime = now;
                            old_len
                        };
                        self.file_changed(&data, 0, old_len);
                        self.volume_data_op(&r.path, &data, |file| IoOp::Truncate {
                            file,
                            size_bytes: 0,
                        });
                        let change = FileOutput::Truncate { len: 0 };
                        self.host.file_output(&r.path.text(), change);
                    }
                    data
                } else {
                    self.vfs.contents(&mut self.host, &node)?
                };
                FileKind::Regular { data, path: r.path }
            }
        };
        // O_DSYNC (part of O_SYNC) and O_DIRECT are kept: they decide when a write is durable (storage/disk.rs),
        // and F_GETFL shows them as Linux does.
        let kept = O_ACCMODE | O_APPEND | O_NONBLOCK | O_SYNC | O_DIRECT;
        let desc = OpenFile::new(kind, flags & kept);
        self.proc.fds.insert(desc, cloexec).map(|fd| fd as u64)
    }

    pub(in crate::linux) fn check_parent_dir(&mut self, path: &GuestPath) -> Result<(), Errno> {
        let dir = path.parent();
        match self.vfs.lookup(&mut self.host, &dir) {
            Some(n) if n.is_dir() => vfs::may_create_in(&dir),
            Some(_) => Err(ENOTDIR),
            None => Err(ENOENT),
        }
    }

    /// What a stat-like call shows: of a path, or of the descriptor itself with AT_EMPTY_PATH.
    pub(in crate::linux) fn stat_of(
        &mut self,
        dirfd: i32,
        path_addr: u64,
        flags: u32,
    ) -> Result<vfs::Stat, Errno> {
        let path = if path_addr == 0 {
            Vec::new()
        } else {
            self.read_cstring(path_addr, vfs::PATH_BYTES_MAX)?
        };
        if path.is_empty() {
            if flags & AT_EMPTY_PATH == 0 {
                return Err(ENOENT);
            }
            return self.stat_fd(dirfd);
        }
        let follow = flags & AT_SYMLINK_NOFOLLOW == 0;
        let r = self.resolve_at(dirfd, &path, follow)?;
        match r.node.ok_or(ENOENT)? {
            Node::Fd(fd) if follow => self.stat_fd(fd),
            Node::Fd(fd) => {
                // The link's permissions are the descriptor's access (fs/proc/fd.c): r-x, -wx or rwx.
                let node = Node::Fd(fd);
                let mut st = self.vfs.stat(&r.path, &node);
                let desc = self.proc.fds.get(fd)?;
                let d = desc.borrow();
                st.mode = S_IFLNK
                    | if d.readable() { 0o500 } else { 0 }
                    | if d.writable() { 0o300 } else { 0 };
                Ok(st)
            }
            node => Ok(self.vfs.stat(&r.path, &node)),
        }
    }

    /// What fstat shows for descriptor `fd` (or the working directory for AT_FDCWD).
    pub(in crate::linux) fn stat_fd(&mut self, fd: i32) -> Result<vfs::Stat, Errno> {
        if fd != AT_FDCWD {
            let desc = self.proc.fds.get(fd)?;
            let epoch = Timespec::from_ns(self.config.epoch_ns);
            // Standard streams and pipes: a character device or a FIFO with a fixed identity. The streams are
            // /dev/tty's node (5:0), not /dev/null's: cmp and others skip writing to an output that is /dev/null.
            let fixed = |ino: u64, mode: u32, rdev: u64| vfs::Stat {
                dev: GUEST_DEV,
                ino,
                mode,
                nlink: 1,
                uid: GUEST_UID as u32,
                gid: GUEST_GID as u32,
                rdev,
                size_bytes: 0,
                blksize: 4096,
                blocks: 0,
                atime: epoch,
                mtime: epoch,
                ctime: epoch,
            };
            let special = match &desc.borrow().kind {
                FileKind::Stdin | FileKind::Stdout | FileKind::Stderr => {
                    Some(fixed(vfs::inode_of(b"/dev/tty"), S_IFCHR | 0o666, 0x500))
                }
                FileKind::PipeRead(_) | FileKind::PipeWrite(_) => {
                    Some(fixed(0x9999 + fd as u64, S_IFIFO | 0o600, 0))
                }
                // sockfs: S_IFSOCK | 0777.
                FileKind::Socket(_) => Some(fixed(0x5_0000 + fd as u64, S_IFSOCK | 0o777, 0)),
                // anon_inodefs: mode 0600 and no file type.
                FileKind::EventFd(_) | FileKind::TimerFd(_) | FileKind::Epoll(_) => {
                    Some(fixed(0x6_0000 + fd as u64, 0o600, 0))
                }
                _ => None,
            };
            if let Some(st) = special {
                return Ok(st);
            }
        }
        let (p, node) = self.fd_target(fd)?;
        Ok(self.vfs.stat(&p, &node))
    }

    /// The path and node behind a descriptor of a file, a directory or a device (or the working directory).
    pub(in crate::linux) fn fd_target(&mut self, fd: i32) -> Result<(GuestPath, Node), Errno> {
        if fd == AT_FDCWD {
            let cwd = self.proc.cwd.clone();
            let node = self.vfs.lookup(&mut self.host, &cwd).ok_or(ENOENT)?;
            return Ok((cwd, node));
        }
        let desc = self.proc.fds.get(fd)?;
        let d = desc.borrow();
        match &d.kind {
            FileKind::Regular { data, path } => Ok((path.clone(), Node::MemoryFile(data.clone()))),
            FileKind::Dir { path } => {
                let path = path.clone();
                drop(d);
                // A directory removed while open still answers, with the attributes of an empty one.
                let node = self
                    .vfs
                    .lookup(&mut self.host, &path)
                    .filter(|n| n.is_dir())
                    .unwrap_or(Node::Dir(vfs::Origin::Synthetic));
                Ok((path, node))
            }
            FileKind::Device(dev) => Ok((self.vfs.path_of(b"/dev/null"), Node::Device(*dev))),
            _ => Err(EBADF),
        }
    }

    /// statfs(2): the file system of a path, as `statfs_of` describes it.
    pub(in crate::linux) fn sys_statfs(&mut self, path: u64, buf: u64) -> SysResult {
        let path = self.read_path(path)?;
        let r = self.resolve_at(AT_FDCWD, &path, true)?;
        if r.node.is_none() {
            return Err(ENOENT);
        }
        self.write_mem(buf, &statfs_of(&r.path))?;
        Ok(0)
    }

    /// fstatfs(2): the file system of a descriptor's file (pipes and sockets are on one of their own).
    pub(in crate::linux) fn sys_fstatfs(&mut self, fd: i32, buf: u64) -> SysResult {
        let path = match self.fd_target(fd) {
            Ok((path, _)) => path,
            Err(_) => {
                self.proc.fds.get(fd)?;
                self.vfs.path_of(b"/proc")
            }
        };
        self.write_mem(buf, &statfs_of(&path))?;
        Ok(0)
    }

    pub(in crate::linux) fn sys_fstatat(
        &mut self,
        dirfd: i32,
        path: u64,
        buf: u64,
        flags: u32,
    ) -> SysResult {
        let st = self.stat_of(dirfd, path, flags)?;
        let mut b = [0u8; 144];
        let put =
            |b: &mut [u8; 144], at: usize, v: u64| b[at..at + 8].copy_from_slice(&v.to_le_bytes());
        put(&mut b, 0, st.dev);
        put(&mut b, 8, st.ino);
        put(&mut b, 16, st.nlink);
        b[24..28].copy_from_slice(&st.mode.to_le_bytes());
        b[28..32].copy_from_slice(&st.uid.to_le_bytes());
        b[32..36].copy_from_slice(&st.gid.to_le_bytes());
        put(&mut b, 40, st.rdev);
        put(&mut b, 48, st.size_bytes);
        put(&mut b, 56, st.blksize);
        put(&mut b, 64, st.blocks);
        for (at, t) in [(72, st.atime), (88, st.mtime), (104, st.ctime)] {
            put(&mut b, at, t.sec as u64);
            put(&mut b, at + 8, t.nsec as u64);
        }
        self.write_mem(buf, &b)?;
        Ok(0)
    }

    pub(in crate::linux) fn sys_statx(
        &mut self,
        dirfd: i32,
        path: u64,
        flags: u32,
        buf: u64,
    ) -> SysResult {
        let st = self.stat_of(dirfd, path, flags)?;
        let mut b = [0u8; 256];
        // The kernel's encoding of dev_t (MAJOR/MINOR in include/linux/kdev_t.h, new_decode_dev).
        let major = |d: u64| ((d >> 8) & 0xfff) as u32 | ((d >> 32) as u32 & !0xfff);
        let minor = |d: u64| (d & 0xff) as u32 | ((d >> 12) as u32 & !0xff);
        b[0..4].copy_from_slice(&0x7ffu32.to_le_bytes()); // STATX_BASIC_STATS
        b[4..8].copy_from_slice(&(st.blksize as u32).to_le_bytes());
        b[16..20].copy_from_slice(&(st.nlink as u32).to_le_bytes());
        b[20..24].copy_from_slice(&st.uid.to_le_bytes());
        b[24..28].copy_from_slice(&st.gid.to_le_bytes());
        b[28..30].copy_from_slice(&(st.mode as u16).to_le_bytes());
        b[32..40].copy_from_slice(&st.ino.to_le_bytes());
        b[40..48].copy_from_slice(&st.size_bytes.to_le_bytes());
        b[48..56].copy_from_slice(&st.blocks.to_le_bytes());
        // atime, btime (not in the mask; the ctime is given), ctime, mtime.
        for (at, t) in [
            (64usize, st.atime),
            (80, st.ctime),
            (96, st.ctime),
            (112, st.mtime),
        ] {
            b[at..at + 8].copy_from_slice(&t.sec.to_le_bytes());
            b[at + 8..at + 12].copy_from_slice(&t.nsec.to_le_bytes());
        }
        b[128..132].copy_from_slice(&major(st.rdev).to_le_bytes());
        b[132..136].copy_from_slice(&minor(st.rdev).to_le_bytes());
        b[136..140].copy_from_slice(&major(st.dev).to_le_bytes());
        b[140..144].copy_from_slice(&minor(st.dev).to_le_bytes());
        self.write_mem(buf, &b)?;
        Ok(0)
    }

    /// A directory entry's name, inode number and d_type, as getdents64 writes them.
    fn dirent_of(&mut self, dir: &GuestPath, entry: vfs::DirEntry) -> (Vec<u8>, u64, u8) {
        let ino_of = |vfs: &mut vfs::Vfs, host: &mut H, p: &GuestPath| {
            vfs.lookup(host, p).map_or(0, |n| vfs.stat(p, &n).ino)
        };
        match entry {
            vfs::DirEntry::Dot => (b".".to_vec(), ino_of(&mut self.vfs, &mut self.host, dir), 4),
            vfs::DirEntry::DotDot => {
                let parent = dir.parent();
                (
                    b"..".to_vec(),
                    ino_of(&mut self.vfs, &mut self.host, &parent),
                    4,
                )
            }
            vfs::DirEntry::Named(name, node) => {
                let child = self.vfs.child(dir, &name);
                let d_type = match node {
                    Node::Dir(_) => 4,
                    Node::Symlink { .. } | Node::Fd(_) => 10,
                    Node::Device(_) => 2,
                    Node::Socket(_) => 12,
                    _ => 8,
                };
                let ino = self.vfs.stat(&child, &node).ino;
                (name, ino, d_type)
            }
        }
    }

    pub(in crate::linux) fn sys_getdents64(&mut self, fd: i32, buf: u64, len: u64) -> SysResult {
        let desc = self.proc.fds.get(fd)?;
        let path = match &desc.borrow().kind {
            FileKind::Dir { path } => path.clone(),
            _ => return Err(ENOTDIR),
        };
        let start = desc.borrow().offset as usize;
        let listed = if self.vfs.is_fd_dir(&path) {
            let fds: Vec<i32> = self.proc.fds.open_fds().collect();
            let mut entries = vec![vfs::DirEntry::Dot, vfs::DirEntry::DotDot];
            entries.extend(
                fds.into_iter()
                    .map(|fd| vfs::DirEntry::Named(fd.to_string().into_bytes(), Node::Fd(fd))),
            );
            entries
        } else {
            self.vfs.listing(&mut self.host, &path)?
        };
        let total = listed.len();
        let mut out = Vec::new();
        let mut index = start;
        for entry in listed.into_iter().skip(start) {
            let (name, ino, d_type) = self.dirent_of(&path, entry);
            let reclen = (19 + name.len() + 1).div_ceil(8) * 8;
            if out.len() + reclen > len as usize {
                break;
            }
            let mut rec = vec![0u8; reclen];
            rec[0..8].copy_from_slice(&ino.to_le_bytes());
            rec[8..16].copy_from_slice(&((index + 1) as u64).to_le_bytes());
            rec[16..18].copy_from_slice(&(reclen as u16).to_le_bytes());
            rec[18] = d_type;
            rec[19..19 + name.len()].copy_from_slice(&name);
            out.extend_from_slice(&rec);
            index += 1;
        }
        if out.is_empty() && index < total {
            return Err(EINVAL);
        }
        self.write_mem(buf, &out)?;
        desc.borrow_mut().offset = index as u64;
        Ok(out.len() as u64)
    }

    pub(in crate::linux) fn sys_faccessat(
        &mut self,
        dirfd: i32,
        path: u64,
        mode: u32,
    ) -> SysResult {
        let path = self.read_path(path)?;
        let r = self.resolve_at(dirfd, &path, true)?;
        let node = r.node.ok_or(ENOENT)?;
        // X_OK on a regular file needs an execute bit.
        if mode & 1 != 0 {
            let st = self.vfs.stat(&r.path, &node);
            if st.mode & S_IFMT != S_IFDIR && st.mode & 0o111 == 0 {
                return Err(EACCES);
            }
        }
        Ok(0)
    }

    pub(in crate::linux) fn sys_readlinkat(
        &mut self,
        dirfd: i32,
        path: u64,
        buf: u64,
        len: u64,
    ) -> SysResult {
        let path = self.read_path(path)?;
        let r = self.resolve_at(dirfd, &path, false)?;
        let target = match r.node {
            Some(Node::Symlink { target, .. }) => target,
            Some(Node::Fd(fd)) => self.fd_link_text(fd)?,
            Some(_) => return Err(EINVAL),
            None => return Err(ENOENT),
        };
        let n = target.len().min(len as usize);
        self.write_mem(buf, &target[..n])?;
        Ok(n as u64)
    }

    pub(in crate::linux) fn sys_getcwd(&mut self, buf: u64, len: u64) -> SysResult {
        let mut text = self.proc.cwd.text();
        text.push(0);
        // The kernel builds the path in one page (fs/d_path.c).
        if text.len() > vfs::PATH_BYTES_MAX {
            return Err(ENAMETOOLONG);
        }
        if text.len() as u64 > len {
            return Err(ERANGE);
        }
        self.write_mem(buf, &text)?;
        Ok(text.len() as u64)
    }

    pub(in crate::linux) fn sys_chdir(&mut self, path: u64) -> SysResult {
        let path = self.read_path(path)?;
        let r = self.resolve_at(AT_FDCWD, &path, true)?;
        match r.node {
            Some(n) if n.is_dir() => {
                self.proc.cwd = r.path;
                Ok(0)
            }
            Some(_) => Err(ENOTDIR),
            None => Err(ENOENT),
        }
    }

    pub(in crate::linux) fn sys_fchdir(&mut self, fd: i32) -> SysResult {
        self.proc.cwd = self.dir_of(fd)?;
        Ok(0)
    }

    pub(in crate::linux) fn sys_mkdirat(&mut self, dirfd: i32, path: u64, mode: u32) -> SysResult {
        let path = self.read_path(path)?;
        let r = self.resolve_at(dirfd, &path, false)?;
        if r.node.is_some() || r.path.is_root() {
            return Err(EEXIST);
        }
        self.check_parent_dir(&r.path)?;
        let attrs = self.vfs.new_attrs(mode & !self.proc.umask, self.now());
        self.vfs.make_dir(&r.path, attrs);
        self.volume_name_op(&r.path, |path| IoOp::Mkdir {
            path,
            mode: attrs.mode,
        });
        Ok(0)
    }

    pub(in crate::linux) fn sys_unlinkat(
        &mut self,
        dirfd: i32,
        path: u64,
        flags: u32,
    ) -> SysResult {
        let path = self.read_path(path)?;
        let r = self.resolve_at(dirfd, &path, false)?;
        let node = r.node.ok_or(ENOENT)?;
        if flags & AT_REMOVEDIR != 0 {
            if !node.is_dir() {
                return Err(ENOTDIR);
            }
            if r.path.is_root() {
                return Err(EINVAL);
            }
            if !self.vfs.list_dir(&mut self.host, &r.path)?.is_empty() {
                return Err(ENOTEMPTY);
            }
        } else if node.is_dir() {
            return Err(EISDIR);
        }
        if self.vfs.is_volume_root(&r.path) {
            return Err(EBUSY);
        }
        let now = self.now();
        self.vfs.remove(&r.path, now);
        self.volume_name_op(&r.path, |path| IoOp::Remove { path });
        Ok(0)
    }

    pub(in crate::linux) fn sys_renameat(
        &mut self,
        olddir: i32,
        old: u64,
        newdir: i32,
        new: u64,
    ) -> SysResult {
        let old = self.read_path(old)?;
        let new = self.read_path(new)?;
        let from = self.resolve_at(olddir, &old, false)?;
        let to = self.resolve_at(newdir, &new, false)?;
        let Some(from_node) = &from.node else {
            return Err(ENOENT);
        };
        if from.path == to.path {
            return Ok(0);
        }
        self.same_volume(&from.path, &to.path)?;
        // Two names of one file: rename does nothing (rename(2)).
        if let (Node::MemoryFile(a), Some(Node::MemoryFile(b))) = (from_node, &to.node) {
            if Shared::ptr_eq(a, b) {
                return Ok(0);
            }
        }
        self.check_parent_dir(&to.path)?;
        if let Some(existing) = &to.node {
            // A directory replaces only an empty directory, and anything else only a non-directory.
            match (from_node.is_dir(), existing.is_dir()) {
                (true, false) => return Err(ENOTDIR),
                (false, true) => return Err(EISDIR),
                _ => {}
            }
            if existing.is_dir() && !self.vfs.list_dir(&mut self.host, &to.path)?.is_empty() {
                return Err(ENOTEMPTY);
            }
        }
        let now = self.now();
        self.vfs.rename(&mut self.host, &from.path, &to.path, now)?;
        if let (Some((volume, from)), Some((_, to))) =
            (self.vfs.volume_of(&from.path), self.vfs.volume_of(&to.path))
        {
            self.io_completed(volume, IoOp::Rename { from, to });
        }
        Ok(0)
    }

    pub(in crate::linux) fn sys_symlinkat(
        &mut self,
        target: u64,
        dirfd: i32,
        path: u64,
    ) -> SysResult {
        let target = self.read_path(target)?;
        let path = self.read_path(path)?;
        let r = self.resolve_at(dirfd, &path, false)?;
        if r.node.is_some() {
            return Err(EEXIST);
        }
        self.check_parent_dir(&r.path)?;
        let attrs = self.vfs.new_attrs(0o777, self.now());
        self.vfs.make_symlink(&r.path, target.clone(), attrs);
        self.volume_name_op(&r.path, |path| IoOp::Symlink { path, target });
        Ok(0)
    }

    pub(in crate::linux) fn truncate_data(
        &mut self,
        path: &GuestPath,
        data: &vfs::SharedFile,
        len: i64,
    ) -> SysResult {
        if len < 0 || len as u64 > crate::linux::elf::IMAGE_SIZE_BYTES_MAX {
            return Err(EINVAL);
        }
        let now = self.now();
        let old_len = {
            let mut f = data.borrow_mut();
            let old_len = f.bytes.len() as u64;
            Arc::make_mut(&mut f.bytes).resize(len as usize, 0);
            f.attrs.mtime = now;
            f.attrs.ctime = now;
            old_len
        };
        let new_len = len as u64;
        self.file_changed(data, old_len.min(new_len), old_len.max(new_len));
        self.volume_data_op(path, data, |file| IoOp::Truncate {
            file,
            size_bytes: new_len,
        });
        let change = FileOutput::Truncate { len: new_len };
        self.host.file_output(&path.text(), change);
        Ok(0)
    }

    pub(in crate::linux) fn sys_ftruncate(&mut self, fd: i32, len: i64) -> SysResult {
        let desc = self.proc.fds.get(fd)?;
        let d = desc.borrow();
        if !d.writable() {
            return Err(EINVAL);
        }
        let (data, path) = match &d.kind {
            FileKind::Regular { data, path } => (data.clone(), path.clone()),
            _ => return Err(EINVAL),
        };
        drop(d);
        self.truncate_data(&path, &data, len)
    }

    pub(in crate::linux) fn sys_truncate_path(&mut self, path: u64, len: i64) -> SysResult {
        let path = self.read_path(path)?;
        let r = self.resolve_at(AT_FDCWD, &path, true)?;
        let node = r.node.ok_or(ENOENT)?;
        if node.is_dir() {
            return Err(EISDIR);
        }
        let data = self.vfs.copy_up(&mut self.host, &r.path, &node)?;
        self.truncate_data(&r.path, &data, len)
    }
}

/// struct statfs (x86-64, 120 bytes) of the file system a guest path is on. Fixed answers, so that nothing of the
/// host's disks reaches the guest: /proc and /sys are procfs and sysfs, /dev and /tmp tmpfs, everything else
/// (mounts, the root, the overlay) one ext4 file system of 4 KiB blocks, 16 GiB, half free.
fn statfs_of(path: &GuestPath) -> [u8; 120] {
    const PROC_SUPER_MAGIC: u64 = 0x9fa0;
    const SYSFS_MAGIC: u64 = 0x6265_6572;
    const TMPFS_MAGIC: u64 = 0x0102_1994;
    const EXT4_SUPER_MAGIC: u64 = 0xef53;
    let first = path.components().into_iter().next().unwrap_or_default();
    let f_type = match first.as_slice() {
        b"proc" => PROC_SUPER_MAGIC,
        b"sys" => SYSFS_MAGIC,
        b"dev" | b"tmp" => TMPFS_MAGIC,
        _ => EXT4_SUPER_MAGIC,
    };
    let block_bytes = 4096u64;
    let blocks = (16u64 << 30) / block_bytes;
    let files = 1u64 << 20;
    let fields: [u64; 11] = [
        f_type,
        block_bytes,
        blocks,
        blocks / 2,
        blocks / 2,
        files,
        files / 2,
        GUEST_DEV,
        vfs::NAME_BYTES_MAX as u64,
        block_bytes,
        0x20, // ST_RELATIME (f_flags); 4 spare words follow
    ];
    let mut out = [0u8; 120];
    for (i, v) in fields.iter().enumerate() {
        out[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
    }
    out
}
