//! Syscalls that move bytes through descriptors (read, write, their vectored and positioned forms) and that
//! manage descriptors (dup, fcntl, pipe, ioctl), following read(2), write(2), pipe(7), fcntl(2) and
//! ioctl_tty(2). Reads and writes of eventfds and timerfds are ready.rs's and timers.rs's. A read of an empty pipe and a write to a full one block (`would_block`).

use super::*;
use crate::linux::FileOutput;

impl<H: Host> LinuxMachine<H> {
    // ---------------------------------------------------------------------------------------------------------
    // Files: reading and writing.

    pub(in crate::linux) fn read_desc(
        &mut self,
        fd: i32,
        len: usize,
        offset: Option<u64>,
    ) -> Result<Vec<u8>, Errno> {
        let desc = self.proc.fds.get(fd)?;
        let mut d = desc.borrow_mut();
        if !d.readable() {
            return Err(EBADF);
        }
        if let FileKind::Socket(s) = &d.kind {
            let (s, nonblock) = (s.clone(), d.flags & O_NONBLOCK != 0);
            drop(d);
            if offset.is_some() {
                return Err(ESPIPE);
            }
            return self.socket_read(&s, nonblock, len);
        }
        match &d.kind {
            FileKind::EventFd(_) | FileKind::TimerFd(_) if offset.is_some() => return Err(ESPIPE),
            FileKind::EventFd(_) => {
                drop(d);
                return self.eventfd_read(&desc, len);
            }
            FileKind::TimerFd(_) => {
                drop(d);
                return self.timerfd_read(&desc, len);
            }
            FileKind::Epoll(_) => return Err(EINVAL),
            _ => {}
        }
        let pos = offset.unwrap_or(d.offset);
        let out = match &d.kind {
            FileKind::Stdin => {
                if offset.is_some() {
                    return Err(ESPIPE);
                }
                let mut buf = vec![0u8; len.min(1 << 20)];
                let n = self.host.read_stdin(&mut buf)?;
                buf.truncate(n);
                return Ok(buf);
            }
            FileKind::Stdout | FileKind::Stderr => return Err(EBADF),
            FileKind::Regular { data, .. } => {
                let data = data.borrow();
                let start = (pos as usize).min(data.bytes.len());
                let end = start.saturating_add(len).min(data.bytes.len());
                data.bytes[start..end].to_vec()
            }
            FileKind::Dir { .. } => return Err(EISDIR),
            FileKind::Device(Device::Null | Device::Mark) => Vec::new(),
            FileKind::Device(Device::Zero) => vec![0u8; len.min(1 << 20)],
            FileKind::Device(Device::Random) => {
                let mut b = vec![0u8; len.min(1 << 20)];
                self.host.fill_random(&mut b);
                b
            }
            FileKind::PipeRead(p) => {
                if offset.is_some() {
                    return Err(ESPIPE);
                }
                let mut p = p.borrow_mut();
                if p.buf.is_empty() {
                    // Empty: the end of file once no writer is left; otherwise wait for one to write.
                    return if p.writers == 0 {
                        Ok(Vec::new())
                    } else if d.flags & O_NONBLOCK != 0 {
                        Err(EAGAIN)
                    } else {
                        Err(self.would_block(None))
                    };
                }
                return Ok(p.take(len));
            }
            FileKind::PipeWrite(_) => return Err(EBADF),
            FileKind::Socket(_) => unreachable!("sockets are read above"),
            FileKind::EventFd(_) | FileKind::TimerFd(_) | FileKind::Epoll(_) => {
                unreachable!("read above")
            }
        };
        if offset.is_none() {
            d.offset = pos + out.len() as u64;
        }
        Ok(out)
    }

    pub(in crate::linux) fn write_desc(
        &mut self,
        fd: i32,
        bytes: &[u8],
        offset: Option<u64>,
    ) -> SysResult {
        let desc = self.proc.fds.get(fd)?;
        let now = self.now();
        let mut d = desc.borrow_mut();
        if !d.writable() {
            return Err(EBADF);
        }
        if let FileKind::Socket(s) = &d.kind {
            let (s, nonblock) = (s.clone(), d.flags & O_NONBLOCK != 0);
            drop(d);
            if offset.is_some() {
                return Err(ESPIPE);
            }
            return self.socket_send(&s, nonblock, bytes, 0, None);
        }
        match &d.kind {
            FileKind::EventFd(_) if offset.is_some() => return Err(ESPIPE),
            FileKind::EventFd(_) => {
                drop(d);
                return self.eventfd_write(&desc, bytes);
            }
            FileKind::TimerFd(_) | FileKind::Epoll(_) => return Err(EINVAL),
            _ => {}
        }
        match &d.kind {
            FileKind::Stdout => self.host.write_stdout(bytes)?,
            FileKind::Stderr => self.host.write_stderr(bytes)?,
            FileKind::Stdin | FileKind::Dir { .. } | FileKind::PipeRead(_) => return Err(EBADF),
            FileKind::Socket(_) => unreachable!("sockets are written above"),
            FileKind::EventFd(_) | FileKind::TimerFd(_) | FileKind::Epoll(_) => {
                unreachable!("written above")
            }
            FileKind::Device(Device::Mark) => {
                drop(d);
                self.mark_written(bytes);
            }
            FileKind::Device(_) => {}
            FileKind::PipeWrite(p) => {
                let mut p = p.borrow_mut();
                if p.readers == 0 {
                    // Delivered when the syscall returns, after rax holds -EPIPE.
                    self.thread.sig.pending |= bit(SIGPIPE);
                    return Err(EPIPE);
                }
                // pipe(7): a write of at most PIPE_BUF bytes is atomic (all or, when it does not fit, wait);
                // a larger one takes what fits and returns that count. Full: wait, or EAGAIN when non-blocking.
                let space = PIPE_BYTES_MAX.saturating_sub(p.buf.len());
                let fits = if bytes.len() <= PIPE_BUF {
                    if space >= bytes.len() {
                        bytes.len()
                    } else {
                        0
                    }
                } else {
                    space.min(bytes.len())
                };
                if fits == 0 {
                    return Err(if d.flags & O_NONBLOCK != 0 {
                        EAGAIN
                    } else {
                        self.would_block(None)
                    });
                }
                p.push(&bytes[..fits]);
                return Ok(fits as u64);
            }
            FileKind::Regular { data, path } => {
                let (data, path_text) = (data.clone(), path.text());
                let mut f = data.borrow_mut();
                let pos = if d.flags & O_APPEND != 0 {
                    f.bytes.len() as u64
                } else {
                    offset.unwrap_or(d.offset)
                };
                let end = pos.checked_add(bytes.len() as u64).ok_or(EFBIG)?;
                if end > crate::linux::elf::IMAGE_SIZE_BYTES_MAX {
                    return Err(EFBIG);
                }
                let bytes_mut = Arc::make_mut(&mut f.bytes);
                if bytes_mut.len() < end as usize {
                    bytes_mut.resize(end as usize, 0);
                }
                bytes_mut[pos as usize..end as usize].copy_from_slice(bytes);
                f.attrs.mtime = now;
                f.attrs.ctime = now;
                drop(f);
                if offset.is_none() {
                    d.offset = end;
                }
                let (path, durable) = (d.path().cloned(), d.flags & (O_DSYNC | O_DIRECT) != 0);
                drop(d);
                self.file_changed(&data, pos, end);
                if let Some(path) = path {
                    self.volume_data_op(&path, &data, |file| IoOp::Write {
                        file,
                        offset: pos,
                        data: bytes.to_vec(),
                        durable,
                    });
                }
                let change = FileOutput::Write { offset: pos, bytes };
                self.host.file_output(&path_text, change);
            }
        }
        Ok(bytes.len() as u64)
    }

    pub(in crate::linux) fn sys_read(
        &mut self,
        fd: i32,
        buf: u64,
        len: u64,
        offset: Option<u64>,
    ) -> SysResult {
        let len = len.min(RW_BYTES_MAX);
        // A bad buffer is found after the input was consumed (the bytes are lost, as with a partial fault on Linux).
        let data = self.read_desc(fd, len as usize, offset)?;
        self.write_mem(buf, &data)?;
        Ok(data.len() as u64)
    }

    pub(in crate::linux) fn sys_write(
        &mut self,
        fd: i32,
        buf: u64,
        len: u64,
        offset: Option<u64>,
    ) -> SysResult {
        let data = self.read_mem(buf, len.min(RW_BYTES_MAX))?;
        self.write_desc(fd, &data, offset)
    }

    pub(in crate::linux) fn read_iovecs(
        &mut self,
        iov: u64,
        count: u64,
    ) -> Result<Vec<(u64, u64)>, Errno> {
        if count > IOV_MAX {
            return Err(EINVAL);
        }
        let raw = self.read_mem(iov, count * 16)?;
        Ok(raw
            .chunks_exact(16)
            .map(|c| {
                (
                    u64::from_le_bytes(c[..8].try_into().unwrap()),
                    u64::from_le_bytes(c[8..].try_into().unwrap()),
                )
            })
            .collect())
    }

    pub(in crate::linux) fn sys_readv(
        &mut self,
        fd: i32,
        iov: u64,
        count: u64,
        offset: Option<u64>,
    ) -> SysResult {
        let vecs = self.read_iovecs(iov, count)?;
        let mut total = 0u64;
        for (base, len) in vecs {
            if len == 0 {
                continue;
            }
            let data = match self.read_desc(
                fd,
                len.min(RW_BYTES_MAX) as usize,
                offset.map(|o| o + total),
            ) {
                Ok(data) => data,
                // What was read so far is returned; the error (an empty pipe, say) waits for the next call.
                Err(_) if total > 0 => break,
                Err(e) => return Err(e),
            };
            self.write_mem(base, &data)?;
            total += data.len() as u64;
            if (data.len() as u64) < len {
                break;
            }
        }
        Ok(total)
    }

    pub(in crate::linux) fn sys_writev(
        &mut self,
        fd: i32,
        iov: u64,
        count: u64,
        offset: Option<u64>,
    ) -> SysResult {
        let vecs = self.read_iovecs(iov, count)?;
        let mut all = Vec::new();
        for (base, len) in vecs {
            all.extend_from_slice(&self.read_mem(base, len.min(RW_BYTES_MAX))?);
        }
        self.write_desc(fd, &all, offset)
    }

    pub(in crate::linux) fn sys_lseek(&mut self, fd: i32, off: i64, whence: u32) -> SysResult {
        let desc = self.proc.fds.get(fd)?;
        let mut d = desc.borrow_mut();
        let size = match &d.kind {
            FileKind::Regular { data, .. } => data.borrow().bytes.len() as i64,
            FileKind::Dir { .. } | FileKind::Device(_) => 0,
            _ => return Err(ESPIPE),
        };
        let base = match whence {
            0 => 0,
            1 => d.offset as i64,
            2 => size,
            _ => return Err(EINVAL),
        };
        let new = base.checked_add(off).filter(|&n| n >= 0).ok_or(EINVAL)?;
        d.offset = new as u64;
        Ok(new as u64)
    }

    // ---------------------------------------------------------------------------------------------------------
    // Descriptors.

    pub(in crate::linux) fn sys_dup(
        &mut self,
        fd: i32,
        min: i32,
        cloexec: Option<bool>,
    ) -> SysResult {
        let desc = self.proc.fds.get(fd)?;
        self.proc
            .fds
            .insert_from(min, desc, cloexec.unwrap_or(false))
            .map(|n| n as u64)
    }

    pub(in crate::linux) fn sys_dup2(
        &mut self,
        old: i32,
        new: i32,
        flags: u32,
        same_ok: bool,
    ) -> SysResult {
        let desc = self.proc.fds.get(old)?;
        if old == new {
            return if same_ok { Ok(new as u64) } else { Err(EINVAL) };
        }
        self.proc
            .fds
            .insert_at(new, desc, flags & O_CLOEXEC != 0)
            .map(|n| n as u64)
    }

    pub(in crate::linux) fn sys_fcntl(&mut self, fd: i32, cmd: u32, arg: u64) -> SysResult {
        const F_DUPFD: u32 = 0;
        const F_GETFD: u32 = 1;
        const F_SETFD: u32 = 2;
        const F_GETFL: u32 = 3;
        const F_SETFL: u32 = 4;
        const F_DUPFD_CLOEXEC: u32 = 1030;
        match cmd {
            F_DUPFD => self.sys_dup(fd, arg as i32, Some(false)),
            F_DUPFD_CLOEXEC => self.sys_dup(fd, arg as i32, Some(true)),
            F_GETFD => Ok(self.proc.fds.entry_mut(fd)?.cloexec as u64),
            F_SETFD => {
                self.proc.fds.entry_mut(fd)?.cloexec = arg & 1 != 0;
                Ok(0)
            }
            F_GETFL => Ok(self.proc.fds.get(fd)?.borrow().flags as u64),
            F_SETFL => {
                let desc = self.proc.fds.get(fd)?;
                let mut d = desc.borrow_mut();
                d.flags = (d.flags & O_ACCMODE) | (arg as u32 & (O_APPEND | O_NONBLOCK));
                Ok(0)
            }
            // Record locks, POSIX and OFD (locks.rs).
            cmd if super::locks::is_lock_command(cmd) => self.sys_fcntl_lock(fd, cmd, arg),
            _ => Err(EINVAL),
        }
    }

    pub(in crate::linux) fn sys_pipe2(&mut self, fds: u64, flags: u32) -> SysResult {
        let pipe = Shared::new(Pipe::default());
        let cloexec = flags & O_CLOEXEC != 0;
        let r = self.proc.fds.insert(
            OpenFile::new(FileKind::PipeRead(pipe.clone()), O_RDONLY),
            cloexec,
        )?;
        let w = match self
            .proc
            .fds
            .insert(OpenFile::new(FileKind::PipeWrite(pipe), O_WRONLY), cloexec)
        {
            Ok(w) => w,
            Err(e) => {
                let _ = self.proc.fds.close(r);
                return Err(e);
            }
        };
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&r.to_le_bytes());
        b[4..].copy_from_slice(&w.to_le_bytes());
        if let Err(e) = self.write_mem(fds, &b) {
            let _ = self.proc.fds.close(r);
            let _ = self.proc.fds.close(w);
            return Err(e);
        }
        Ok(0)
    }

    pub(in crate::linux) fn sys_ioctl(&mut self, fd: i32, request: u64, arg: u64) -> SysResult {
        const TCGETS: u64 = 0x5401;
        const TIOCGWINSZ: u64 = 0x5413;
        const TIOCGPGRP: u64 = 0x540f;
        let desc = self.proc.fds.get(fd)?;
        let socket = match &desc.borrow().kind {
            FileKind::Socket(s) => Some(s.clone()),
            _ => None,
        };
        if let Some(s) = socket {
            return self.socket_ioctl(&s, &desc, request, arg);
        }
        let is_tty = self.config.stdout_is_terminal
            && matches!(
                desc.borrow().kind,
                FileKind::Stdin | FileKind::Stdout | FileKind::Stderr
            );
        if !is_tty {
            return Err(ENOTTY);
        }
        match request {
            TCGETS => {
                // A cooked terminal: ICRNL | IXON, OPOST | ONLCR, B38400 | CS8 | CREAD, ISIG | ICANON | ECHO...
                let mut t = [0u8; 60];
                t[0..4].copy_from_slice(&0x500u32.to_le_bytes());
                t[4..8].copy_from_slice(&0x5u32.to_le_bytes());
                t[8..12].copy_from_slice(&0xbfu32.to_le_bytes());
                t[12..16].copy_from_slice(&0x8a3bu32.to_le_bytes());
                self.write_mem(arg, &t)?;
                Ok(0)
            }
            TIOCGWINSZ => {
                let mut w = [0u8; 8];
                w[0..2].copy_from_slice(&24u16.to_le_bytes());
                w[2..4].copy_from_slice(&80u16.to_le_bytes());
                self.write_mem(arg, &w)?;
                Ok(0)
            }
            TIOCGPGRP => {
                self.write_u32(arg, self.proc.pgid.0 as u32)?;
                Ok(0)
            }
            _ => Err(ENOTTY),
        }
    }
}
