//! The descriptor links of the guest's /proc and /dev (/proc/self/fd, /dev/fd, /dev/stdin, /dev/stdout,
//! /dev/stderr), /dev/shm, the standard streams' identity and the extended-attribute calls, each checked
//! against the same Debian program run natively where Linux's answer does not depend on the machine.

mod common;
use common::*;

/// Runs `program args` natively and under tandem with the same stdin; stdout and exit status must agree.
fn agree(name: &str, program: &str, args: &[&str], stdin: &[u8]) -> std::process::Output {
    same_as_native_given(name, &[], program, args, stdin)
}

/// Programs that name their standard streams by path read and write them as Linux gives them.
#[test]
fn standard_streams_open_by_their_dev_names() {
    let input = b"banana\napple\ncherry\n";
    agree("cat /dev/stdin", "/bin/cat", &["/dev/stdin"], input);
    agree(
        "sha256sum /dev/stdin",
        "/usr/bin/sha256sum",
        &["/dev/stdin"],
        input,
    );
    agree("cat /dev/fd/0", "/bin/cat", &["/dev/fd/0"], input);
    agree(
        "cat /proc/self/fd/0",
        "/bin/cat",
        &["/proc/self/fd/0"],
        input,
    );
    // Writing through the links is checked against the man pages, not natively: the test machines' kernel
    // drops what is written to /dev/stdout when stdout is a pipe (`echo x > /dev/stdout | cat` prints nothing
    // there), as the test harness's stdout is.
    let e = emulate(&[], "/usr/bin/tee", &["/dev/stderr"], input);
    assert_eq!(e.status.code(), Some(0), "{}", text(&e.stderr));
    assert_eq!((&e.stdout[..], &e.stderr[..]), (&input[..], &input[..]));
    let e = emulate(&[], "/bin/dd", &["of=/dev/stdout", "status=none"], input);
    assert_eq!(e.status.code(), Some(0), "{}", text(&e.stderr));
    assert_eq!(e.stdout, input);
}

/// cmp does not print a difference when its output is /dev/null (it compares the stat of stdout with
/// /dev/null's, rdev included): the guest's stdout must not look like /dev/null.
#[test]
fn stdout_is_not_dev_null() {
    let dir = scratch("dev-fd-cmp");
    std::fs::write(dir.join("a"), "one\ntwo\n").unwrap();
    std::fs::write(dir.join("b"), "one\nTwo\n").unwrap();
    let a = dir.join("a").display().to_string();
    let b = dir.join("b").display().to_string();
    let e = agree("cmp", "/usr/bin/cmp", &[&a, &b], b"");
    assert!(
        text(&e.stdout).contains("differ: char 5, line 2"),
        "{}",
        text(&e.stdout)
    );
}

/// /proc/self/fd lists the caller's descriptors and readlink names what each holds: a file's path, a pipe,
/// the directory being listed.
#[test]
fn proc_self_fd_lists_and_names_descriptors() {
    let script = "\
import os, sys
before = set(os.listdir('/proc/self/fd'))
f = open('/etc/passwd', 'rb')
r, w = os.pipe()
after = set(os.listdir('/proc/self/fd'))
# Only what this script opened: a native run also holds what the test harness let it inherit.
print(sorted(after - before, key=int), before >= {'0', '1', '2'})
print(os.readlink('/proc/self/fd/%d' % f.fileno()))
print(os.readlink('/proc/self/fd/%d' % r).split(':')[0], os.readlink('/dev/fd/%d' % w).split(':')[0])
print(os.path.samefile('/proc/self/fd/%d' % f.fileno(), '/etc/passwd'))
print(os.lstat('/proc/self/fd/%d' % w).st_mode & 0o777, os.lstat('/proc/self/fd/%d' % r).st_mode & 0o777)
os.write(os.open('/proc/self/fd/%d' % w, os.O_WRONLY), b'through the link')
print(os.read(r, 100))
try:
    os.stat('/proc/self/fd/99')
except OSError as e:
    print('closed:', e.errno)
print(open('/dev/fd/%d' % f.fileno(), 'rb').read() == open('/etc/passwd', 'rb').read())
";
    agree("/proc/self/fd", "/usr/bin/python3", &["-c", script], b"");
}

/// POSIX semaphores and shared memory live in /dev/shm: multiprocessing's locks need it.
#[test]
fn dev_shm_holds_posix_semaphores() {
    let script = "\
import multiprocessing as mp
lock = mp.Lock()
with lock:
    print('locked')
q = mp.SimpleQueue()
p = mp.Process(target=q.put, args=(42,))
p.start(); p.join()
print(q.get(), p.exitcode)
";
    agree("/dev/shm", "/usr/bin/python3", &["-c", script], b"");
}

/// Names cannot be created in procfs (ENOENT, even for root); the error is the same as Linux's.
#[test]
fn proc_refuses_new_names() {
    let n = native("/usr/bin/touch", &["/proc/tandem-x"], &[], b"");
    let e = emulate(&[], "/usr/bin/touch", &["/proc/tandem-x"], b"");
    assert_eq!(n.status.code(), Some(1));
    assert_eq!(e.status.code(), n.status.code());
    assert_eq!(text(&e.stderr), text(&n.stderr));
    let e = emulate(&[], "/bin/mkdir", &["/dev/tandem-x"], b"");
    assert!(
        text(&e.stderr).contains("Permission denied"),
        "{}",
        text(&e.stderr)
    );
}

/// The guest's file systems support no extended attributes: every xattr call finds its file first (ENOENT for
/// a missing one), then answers EOPNOTSUPP, which ls and cp take as "nothing to show" (an ENOSYS made ls print
/// "Function not implemented" for every file).
#[test]
fn xattr_calls_answer_not_supported() {
    let script = "\
import os, errno
for call in (lambda: os.listxattr('/etc/passwd'),
             lambda: os.getxattr('/etc/passwd', 'user.x'),
             lambda: os.getxattr('/etc/passwd', 'user.x', follow_symlinks=False),
             lambda: os.setxattr('/tmp', 'user.x', b'1'),
             lambda: os.removexattr('/tmp', 'user.x'),
             lambda: os.listxattr(0),
             lambda: os.listxattr('/no/such/file')):
    try:
        call(); print('ok')
    except OSError as e:
        print(errno.errorcode[e.errno])
";
    let e = emulate(&[], "/usr/bin/python3", &["-c", script], b"");
    assert_eq!(e.status.code(), Some(0), "{}", text(&e.stderr));
    let expected = "ENOTSUP\n".repeat(6) + "ENOENT\n";
    assert_eq!(text(&e.stdout), expected);
    let ls = emulate(&[], "/bin/ls", &["-l", "/etc/passwd"], b"");
    assert_eq!(ls.status.code(), Some(0), "{}", text(&ls.stderr));
    assert!(
        !text(&ls.stderr).contains("not implemented"),
        "{}",
        text(&ls.stderr)
    );
}
