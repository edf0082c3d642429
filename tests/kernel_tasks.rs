//! The guest kernel end to end: programs of several threads and processes nobody here wrote the runtime of
//! (glibc's and musl's pthreads, Go's scheduler, Rust's std::thread, liblzma's threaded encoder, busybox sh
//! with pipes, command substitution, find -exec, xargs and timeout) run under `tandem run` and natively; stdout
//! and exit status must match byte for byte. Every program prints only what holds under any correct schedule.
//! Also: the chaos scheduler finds a planted race and its seed reproduces it; a deadlock is reported, not a
//! hang; multi-task recordings replay verified.

mod common;
use common::*;
use std::process::Output;

macro_rules! both_libcs {
    ($test:ident, $prog:literal, $args:expr) => {
        mod $test {
            use super::*;
            #[test]
            fn musl() {
                let bin = corpus_bin(concat!($prog, "-musl"));
                same_as_native(concat!($prog, "-musl"), &[], &bin, $args);
            }
            #[test]
            fn glibc() {
                let bin = corpus_bin(concat!($prog, "-glibc"));
                same_as_native(concat!($prog, "-glibc"), &[], &bin, $args);
            }
        }
    };
}

both_libcs!(pthreads_mutex_condvar_barrier_tls, "threads", &["4"]);
both_libcs!(fork_pipes_wait_vfork_execve_sessions, "procs", &[]);
// corpus/tasks/ready.c: poll on two pipes a writer thread feeds, eventfd counting, select with a timeout
// and with data, epoll level- and edge-triggered, epoll_wait timing out.
both_libcs!(poll_select_epoll_and_eventfd, "ready", &[]);
// corpus/tasks/timers.c: sleeps, alarm and pause, a periodic setitimer, a POSIX timer's SIGEV_SIGNAL with its
// value, a periodic timerfd counting expirations, a nanosleep interrupted by SIGALRM with the time left.
both_libcs!(alarm_itimer_posix_timer_and_timerfd, "timers", &[]);

/// Go's runtime sleeps through its network poller (epoll_pwait with timeouts, a pipe to break it): a
/// pipeline of goroutines over channels, time.Sleep, a ticker and a select on time.After.
#[test]
fn go_channels_sleeps_tickers_and_timeouts() {
    same_as_native("go-chan", &[], &corpus_bin("go-chan"), &[]);
}

/// Recordings of programs that wait in poll, select, epoll and timerfd reads and take signals from alarms,
/// itimers and POSIX timers replay verified: timers fire at the same instruction in the replay.
#[test]
fn readiness_and_timer_recordings_replay_verified() {
    let dir = scratch("ready-replay");
    for (program, flags) in [
        ("ready-musl", vec!["--sched", "chaos", "--seed", "3"]),
        ("timers-glibc", vec![]),
        ("go-chan", vec![]),
    ] {
        let trace = dir.join(format!("{program}.trace"));
        records_and_replays_verified(&trace, &flags, &corpus_bin(program), &[]);
    }
}

/// busybox timeout kills a command that outlives it with SIGTERM (the shell sees 143, as natively) after one
/// guest second: the sleep of five never finishes. (busybox's timeout execs the command and kills it from a
/// forked watcher, so the status is the command's own death by SIGTERM.)
#[test]
fn busybox_timeout_kills_a_longer_sleep() {
    let script = "timeout 1 sleep 5; echo status $?";
    let n = native("/bin/busybox", &["sh", "-c", script], &[], b"");
    assert_eq!(text(&n.stdout), "status 143\n");
    let e = emulate(&[], "/bin/busybox", &["sh", "-c", script], b"");
    assert_same("timeout 1 sleep 5", &n, &e);
    let timed = emulate(
        &[],
        "/bin/busybox",
        &[
            "sh",
            "-c",
            "a=$(date +%s); timeout 1 sleep 5; s=$?; b=$(date +%s); echo $s $((b - a))",
        ],
        b"",
    );
    let out = text(&timed.stdout);
    let secs: u64 = out
        .split_whitespace()
        .nth(1)
        .and_then(|w| w.parse().ok())
        .unwrap_or(99);
    assert!(out.starts_with("143 ") && (1..=2).contains(&secs), "{out}");
}

#[test]
fn rust_std_thread_mpsc_barrier_scope_and_a_caught_panic() {
    same_as_native("rust-threads", &[], &corpus_bin("rust-threads"), &[]);
}

#[test]
fn go_hello_and_a_worker_pool_on_gomaxprocs_4() {
    same_as_native("go-hello", &[], &corpus_bin("go-hello"), &[]);
    same_as_native("go-pool", &[], &corpus_bin("go-pool"), &[]);
}

#[test]
fn xz_compresses_with_two_threads_through_liblzma() {
    // 1 MiB of generated text: three blocks of the threaded encoder, both threads busy.
    same_as_native("xzmt", &[], &corpus_bin("xzmt-glibc"), &["1048576"]);
}

/// busybox sh, natively and under tandem, on a script of corpus/tasks/sh (mounted at the same path).
fn busybox_script(script: &str) {
    let dir = repo().join("corpus/tasks/sh");
    let dir = dir.to_str().unwrap();
    let path = format!("{dir}/{script}");
    let n = native("/bin/busybox", &["sh", &path], &[], b"");
    let e = emulate(
        &["--mount", &format!("{dir}:{dir}")],
        "/bin/busybox",
        &["sh", &path],
        b"",
    );
    assert_same(script, &n, &e);
}

/// glibc's system() and popen() start /bin/sh -c: under tandem the shell is Debian's busybox mounted at
/// /bin/sh; natively it is the host's /bin/sh. The commands are plain POSIX, so the output is the same.
#[test]
fn glibc_system_and_popen_run_a_shell() {
    let bin = corpus_bin("popen-glibc");
    let n = native(&bin, &[], &[], b"");
    let e = emulate(&["--mount", "/bin/busybox:/bin/sh"], &bin, &[], b"");
    assert!(
        text(&n.stdout).contains("popen line 3: three"),
        "{}",
        text(&n.stdout)
    );
    assert_same("popen-glibc", &n, &e);
}

#[test]
fn busybox_sh_pipelines_substitution_subshells_and_loops() {
    busybox_script("pipes.sh");
}

#[test]
fn busybox_find_exec_xargs_and_timeout() {
    busybox_script("find.sh");
}

/// The (counter, exit status) a run of the planted race printed.
fn race_outcome(out: &Output) -> (String, Option<i32>) {
    (text(&out.stdout), out.status.code())
}

/// The race of corpus/tasks/race.c (an unprotected counter, a check-then-act): under the fair policy a
/// quantum of ~100,000 instructions lets each thread finish its 1,000 rounds alone, so the race never shows;
/// the chaos policy preempts at random instructions and loses updates within a few seeds, and the failing
/// seed reproduces the same lost count every time.
#[test]
fn the_chaos_scheduler_finds_a_planted_race_and_its_seed_reproduces_it() {
    let race = corpus_bin("race-musl");
    for seed in ["1", "2", "3"] {
        let fair = emulate(&["--seed", seed], &race, &[], b"");
        assert_eq!(
            race_outcome(&fair),
            ("counter 2000 of 2000, winners 1\n".to_string(), Some(0))
        );
    }
    let first_failing = (1..=20u64)
        .map(|seed| {
            let s = seed.to_string();
            (
                seed,
                emulate(&["--sched", "chaos", "--seed", &s], &race, &[], b""),
            )
        })
        .find(|(_, out)| out.status.code() == Some(1))
        .expect("chaos scheduling makes the race show within 20 seeds");
    let (seed, out) = first_failing;
    assert!(
        text(&out.stdout).starts_with("counter ")
            && !text(&out.stdout).contains("2000 of 2000, winners 1"),
        "{}",
        text(&out.stdout)
    );
    let s = seed.to_string();
    for _ in 0..2 {
        let again = emulate(&["--sched", "chaos", "--seed", &s], &race, &[], b"");
        assert_eq!(
            race_outcome(&again),
            race_outcome(&out),
            "seed {seed} reproduces"
        );
    }
}

#[test]
fn a_deadlock_ends_the_run_with_a_report_of_every_task() {
    let out = emulate(&[], &corpus_bin("deadlock-musl"), &[], b"");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(124), "{err}");
    assert_eq!(text(&out.stdout), "both hold their first mutex\n");
    assert!(err.contains("deadlock: every task is blocked"), "{err}");
    assert!(
        err.contains("task 1000 (process 1000) waits in futex_wait"),
        "{err}"
    );
    assert!(
        err.contains("task 1001 (process 1000) waits in futex_wait"),
        "{err}"
    );
}

/// Sleeping when nothing else can run skips virtual time: `sleep 5` takes no host time but five guest seconds.
#[test]
fn a_sleep_advances_the_virtual_clock_by_what_it_asked() {
    let out = emulate(
        &[],
        "/bin/busybox",
        &[
            "sh",
            "-c",
            "a=$(date +%s); sleep 5; b=$(date +%s); echo $((b - a))",
        ],
        b"",
    );
    assert_eq!(text(&out.stdout), "5\n", "{}", text(&out.stderr));
}

/// Same program, seed and policy: the same output, instruction count and final state, run after run.
#[test]
fn multi_task_runs_are_deterministic_under_both_policies() {
    for policy in ["fair", "chaos"] {
        let run = || {
            emulate(
                &["--report-state", "--sched", policy, "--seed", "7"],
                &corpus_bin("threads-glibc"),
                &["4"],
                b"",
            )
        };
        let (a, b) = (run(), run());
        assert_eq!(a.stdout, b.stdout, "{policy}");
        let state = |o: &Output| {
            text(&o.stderr)
                .lines()
                .find(|l| l.starts_with("tandem: icount "))
                .map(str::to_string)
        };
        assert!(state(&a).is_some(), "{}", text(&a.stderr));
        assert_eq!(state(&a), state(&b), "{policy}");
    }
}

/// Recordings of threads and processes replay verified from the trace alone, under the policy they were
/// recorded with.
#[test]
fn multi_task_recordings_replay_verified() {
    let dir = scratch("kernel-replay");
    for (program, args, flags) in [
        (
            "threads-glibc",
            vec!["3"],
            vec!["--sched", "chaos", "--seed", "5"],
        ),
        ("procs-musl", vec![], vec![]),
        ("rust-threads", vec![], vec!["--cpus", "8"]),
    ] {
        let trace = dir.join(format!("{program}.trace"));
        records_and_replays_verified(&trace, &flags, &corpus_bin(program), &args);
    }
}

/// The CPU count by every route a program takes (sysconf, get_nprocs, sched_getaffinity, /proc/cpuinfo,
/// /proc/stat, /sys/devices/system/cpu/online) follows --cpus, and /proc/self/stat and /proc/self/status show
/// the process as getpid, getppid and getpgrp do, with its three threads: the same as a native run on a machine
/// with that many CPUs (this one's count is taken from the native run).
#[test]
fn proc_and_sys_files_agree_with_cpus_and_the_process() {
    for libc in ["musl", "glibc"] {
        let bin = corpus_bin(&format!("ncpu-{libc}"));
        let n = native(&bin, &[], &[], b"");
        let out = text(&n.stdout);
        let affinity = out
            .split("affinity ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .expect("the native run prints its affinity count");
        let e = emulate(&["--cpus", affinity], &bin, &[], b"");
        // A host whose online CPUs differ from its affinity mask (a cpuset) cannot be the oracle for the counts;
        // the emulated guest must then still say `affinity` everywhere.
        let consistent = out.lines().take(5).all(|l| {
            l.split_whitespace()
                .filter_map(|w| w.parse::<u32>().ok())
                .all(|v| v.to_string() == affinity)
        });
        if consistent {
            assert_same(&format!("ncpu-{libc}"), &n, &e);
        } else {
            eprintln!(
                "note: this host's CPU counts disagree among themselves; checking the guest alone"
            );
            let got = text(&e.stdout);
            for l in got.lines().take(5) {
                for v in l.split_whitespace().filter_map(|w| w.parse::<u32>().ok()) {
                    assert_eq!(v.to_string(), affinity, "{got}");
                }
            }
        }
        // And another count than the host's.
        let seven = text(&emulate(&["--cpus", "7"], &bin, &[], b"").stdout);
        assert!(
            seven.starts_with(
                "sysconf online 7 configured 7\nget_nprocs 7 get_nprocs_conf 7 affinity 7\n\
                 cpuinfo processors 7\nstat cpu lines 7\nsys online 7\nstatus Threads 3\n"
            ),
            "{seven}"
        );
    }
}
/// corpus/tasks/sockets.c: a client and an echo server over AF_UNIX stream and datagram, TCP and UDP on the
/// loopback and socketpair, the server in a thread and in a forked child; every mode, both libcs, as natively.
#[test]
fn sockets_client_and_server_in_every_mode_as_natively() {
    for libc in ["musl", "glibc"] {
        let bin = corpus_bin(&format!("sockets-{libc}"));
        for kind in ["unix", "tcp", "udp", "dgram", "pair"] {
            for how in ["thread", "fork"] {
                same_as_native(
                    &format!("sockets-{libc} {kind} {how}"),
                    &[],
                    &bin,
                    &[kind, how],
                );
            }
        }
    }
}

/// corpus/tasks/sockedge.c: message boundaries and truncation, ECONNREFUSED/ENOENT without a listener,
/// EADDRINUSE, EAGAIN and EINPROGRESS when non-blocking, end of file and EPIPE/SIGPIPE after the peer closed,
/// shutdown, poll readiness, options, S_IFSOCK nodes, abstract names and IPv4-mapped peers, as Linux answers.
#[test]
fn socket_edges_answer_as_linux_does() {
    for libc in ["musl", "glibc"] {
        let bin = corpus_bin(&format!("sockedge-{libc}"));
        same_as_native(&format!("sockedge-{libc}"), &[], &bin, &["all"]);
    }
}

/// Ephemeral ports come from the seed: the same on every run with one seed, in Linux's range, and another
/// seed starts elsewhere.
#[test]
fn ephemeral_ports_are_chosen_from_the_seed() {
    let run = |seed: &str| {
        let out = emulate(
            &["--seed", seed],
            &corpus_bin("sockedge-musl"),
            &["port"],
            b"",
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let first = run("3");
    assert_eq!(first, run("3"));
    assert_ne!(first, run("4"));
    let ports: Vec<u32> = first
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(ports.len(), 2, "{first}");
    for p in &ports {
        assert!((32768..=60999).contains(p), "{first}");
    }
    assert_eq!(
        ports[1],
        ports[0] + 1,
        "ports are handed out in order: {first}"
    );
}

/// Recordings of socket programs (threads and processes blocking in accept, recv and connect) replay verified.
#[test]
fn socket_recordings_replay_verified() {
    let dir = scratch("sockets-replay");
    for (program, args) in [
        ("sockets-musl", ["tcp", "fork"]),
        ("sockets-glibc", ["unix", "thread"]),
        ("sockets-musl", ["dgram", "thread"]),
    ] {
        let trace = dir.join(format!("{program}-{}.trace", args[0]));
        records_and_replays_verified(&trace, &[], &corpus_bin(program), &args);
    }
}

/// Real servers and clients nobody here wrote, inside one guest: busybox httpd serving a mounted directory to
/// busybox wget, and busybox nc listening for busybox nc, over TCP on the guest's loopback (the `sleep` that
/// lets each server start is virtual time).
#[test]
fn busybox_httpd_serves_wget_and_nc_talks_to_nc_on_the_loopback() {
    let dir = scratch("httpd-www");
    std::fs::write(dir.join("index.html"), "hello from httpd\n").unwrap();
    let www = dir.to_str().unwrap();
    let script = "busybox httpd -f -p 127.0.0.1:8080 -h /www & sleep 1; \
                  busybox wget -q -O - http://127.0.0.1:8080/index.html; kill $!; \
                  busybox nc -l -p 9000 > /tmp/got & sleep 1; echo 'over nc' | busybox nc 127.0.0.1 9000; \
                  wait; cat /tmp/got";
    let out = emulate(
        &["--mount", &format!("{www}:/www")],
        "/bin/busybox",
        &["sh", "-c", script],
        b"",
    );
    assert_eq!(
        (text(&out.stdout), out.status.code()),
        ("hello from httpd\nover nc\n".to_string(), Some(0)),
        "{}",
        text(&out.stderr)
    );
}
