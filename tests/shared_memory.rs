//! Memory shared between guest processes: MAP_SHARED|MAP_ANONYMOUS memory inherited across fork, POSIX
//! semaphores in /dev/shm, and futexes in shared memory woken from another process. Each program is Debian's
//! python3 running the same script natively and under tandem; the outputs must be equal.

mod common;
use common::*;

fn agree(name: &str, script: &str) {
    same_as_native(name, &[], "/usr/bin/python3", &["-c", script]);
}

/// Two children store into shared anonymous memory the parent mapped before forking; the parent sees every
/// store (before, each process kept a private copy and the parent printed zeros).
#[test]
fn shared_anonymous_memory_is_shared_across_fork() {
    let script = "\
import mmap, os, struct
m = mmap.mmap(-1, 8192, flags=mmap.MAP_SHARED)
pids = []
for k in range(2):
    pid = os.fork()
    if pid == 0:
        for i in range(5000):
            m[k*8:k*8+8] = struct.pack('q', i + 1)
        m[4096 + k] = 0x41 + k
        os._exit(0)
    pids.append(pid)
for p in pids:
    os.waitpid(p, 0)
print(struct.unpack('qq', m[:16]), m[4096:4098])
";
    agree("MAP_SHARED|MAP_ANONYMOUS", script);
}

/// A counter behind a process-shared lock, incremented by four processes: lost updates or a lock that is not
/// one lock across processes give a smaller total; a futex wake that does not reach the other process hangs.
#[test]
fn a_shared_counter_under_a_shared_lock_loses_no_update() {
    let script = "\
import multiprocessing as mp
def work(v, lock):
    for _ in range(300):
        with lock:
            v.value += 1
if __name__ == '__main__':
    v = mp.Value('i', 0, lock=False)
    lock = mp.Lock()
    ps = [mp.Process(target=work, args=(v, lock)) for _ in range(4)]
    for p in ps: p.start()
    for p in ps: p.join()
    print(v.value, [p.exitcode for p in ps])
";
    agree("shared counter", script);
}

/// Process pools: semaphores in /dev/shm, queues over pipes, futexes in shared memory.
#[test]
fn process_pools_run_as_natively() {
    agree(
        "multiprocessing.Pool",
        "import multiprocessing as m; print(m.Pool(2).map(abs, [-1, -2, -3]))",
    );
    agree(
        "ProcessPoolExecutor",
        "import concurrent.futures as c; print(list(c.ProcessPoolExecutor(2).map(abs, [-1, -2])))",
    );
}
