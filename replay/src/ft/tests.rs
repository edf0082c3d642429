//! The world against a single fault-free guest: released output, exit and final state must be the same bytes
//! whatever fault one replica meets, and the mismatch must be blamed on the replica that had it.

use super::*;
use tandem_emulator::hypervisor::plan::FaultPlan;
use tandem_emulator::linux::{LinuxMachine, MemoryHost, Progress};

fn corpus(name: &str) -> Arc<[u8]> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../corpus/bin/");
    std::fs::read(format!("{path}{name}"))
        .expect("corpus binary")
        .into()
}

fn config(name: &str, args: &[&str]) -> LinuxConfig {
    let mut argv = vec![name.as_bytes().to_vec()];
    argv.extend(args.iter().map(|a| a.as_bytes().to_vec()));
    LinuxConfig {
        seed: 3,
        argv,
        ..LinuxConfig::default()
    }
}

/// The fault-free run: stdout, stderr, termination, icount, state hash.
fn single(name: &str, args: &[&str], stdin: &[u8]) -> (Vec<u8>, Vec<u8>, Termination, u64, u64) {
    let mut host = MemoryHost::new(3);
    host.stdin = stdin.to_vec();
    let mut g = LinuxMachine::new(config(name, args), &corpus(name), host).unwrap();
    assert_eq!(g.run(u64::MAX), Progress::Finished);
    (
        g.host.stdout.clone(),
        g.host.stderr.clone(),
        g.termination().unwrap().clone(),
        g.icount(),
        g.state_hash(),
    )
}

fn world(
    name: &str,
    args: &[&str],
    stdin: &[u8],
    epoch_insns: u64,
    faults: Vec<ReplicaFaults>,
) -> World<MemoryHost> {
    let config = FtConfig {
        epoch_insns,
        ..FtConfig::default()
    };
    world_with(name, args, stdin, config, faults)
}

fn world_with(
    name: &str,
    args: &[&str],
    stdin: &[u8],
    config: FtConfig,
    faults: Vec<ReplicaFaults>,
) -> World<MemoryHost> {
    let mut host = MemoryHost::new(3);
    host.stdin = stdin.to_vec();
    World::new(
        config,
        self::config(name, args),
        corpus(name),
        host,
        faults,
        Policy::default(),
    )
    .unwrap()
}

fn plan(spec: &str) -> ReplicaFaults {
    ReplicaFaults {
        plan: FaultPlan::parse_spec(spec, "test").unwrap(),
        fault_seed: 0,
    }
}

/// Runs a world and checks it against the single run; returns it for more checks.
fn same_as_single(
    name: &str,
    args: &[&str],
    stdin: &[u8],
    epoch: u64,
    faults: Vec<ReplicaFaults>,
) -> World<MemoryHost> {
    let (stdout, stderr, termination, icount, hash) = single(name, args, stdin);
    let mut w = world(name, args, stdin, epoch, faults);
    assert_eq!(w.run(), FtEnd::Finished(termination));
    w.with_live(|h| {
        assert_eq!(
            String::from_utf8_lossy(&h.stdout),
            String::from_utf8_lossy(&stdout)
        );
        assert_eq!(h.stderr, stderr);
    });
    assert_eq!(w.icount(), icount);
    assert_eq!(w.state_hash(), hash);
    w
}

#[test]
fn a_fault_free_pair_agrees_every_epoch_and_releases_the_single_runs_output() {
    let w = same_as_single(
        "sigbus-glibc",
        &["20"],
        b"",
        20_000,
        vec![Default::default(); 2],
    );
    let s = w.stats();
    assert!(s.epochs > 3, "{s:?}");
    assert_eq!((s.mismatches, s.resyncs, s.reexecutions), (0, 0, 0));
    let (stdout, ..) = single("sigbus-glibc", &["20"], b"");
    assert_eq!(s.released_bytes, stdout.len() as u64);
    assert!(s.latency_insns_max > 0 && s.latency_insns_max < 20_000);
}

#[test]
fn stdin_is_shipped_to_the_backup_through_the_log() {
    let input = b"one\ntwo\nthree\n".repeat(50);
    let w = same_as_single(
        "rewind-musl",
        &[],
        b"5\n",
        5_000,
        vec![Default::default(); 3],
    );
    assert_eq!(w.stats().mismatches, 0);
    let w = same_as_single(
        "hello-glibc",
        &[],
        &input,
        5_000,
        vec![Default::default(); 2],
    );
    assert_eq!(w.stats().mismatches, 0);
}

/// A flip in the secondary's registers' memory at a time it matters: the backup is wrong, the primary right.
#[test]
fn a_flip_in_the_secondary_is_corrected_from_the_primary() {
    let (.., icount, _) = single("sigbus-glibc", &["20"], b"");
    let spec = format!("mem.flip:count=20,within={icount},class=anon-dirty");
    let w = same_as_single(
        "sha256-musl",
        &["abc"],
        b"",
        10_000,
        vec![Default::default(), plan(&spec)],
    );
    let s = w.stats();
    assert!(s.mismatches > 0, "{s:?}");
    assert_eq!(s.wrong, vec![0, s.mismatches], "{s:?}");
    assert!(s.resyncs > 0 && s.pages_moved > 0, "{s:?}");
}

#[test]
fn a_flip_in_the_primary_is_found_by_re_execution_and_corrected() {
    let (.., icount, _) = single("sigbus-glibc", &["20"], b"");
    let spec = format!("mem.flip:count=20,within={icount},class=anon-dirty");
    let w = same_as_single(
        "sha256-musl",
        &["abc"],
        b"",
        10_000,
        vec![plan(&spec), Default::default()],
    );
    let s = w.stats();
    assert!(s.mismatches > 0, "{s:?}");
    assert_eq!(s.reexecutions, s.mismatches);
    assert_eq!(s.wrong[0], s.mismatches, "{s:?}");
    assert_eq!(w.leader(), 0);
}

#[test]
fn a_triple_outvotes_the_faulty_replica_without_re_execution() {
    let (.., icount, _) = single("sigbus-glibc", &["20"], b"");
    let spec = format!("mem.flip:count=20,within={icount},class=anon-dirty");
    for faulty in 0..3 {
        let mut faults = vec![ReplicaFaults::default(); 3];
        faults[faulty] = plan(&spec);
        let w = same_as_single("sigbus-glibc", &["20"], b"", 10_000, faults);
        let s = w.stats();
        assert!(s.mismatches > 0, "{s:?}");
        assert_eq!(s.wrong[faulty], s.mismatches, "replica {faulty}: {s:?}");
        assert_eq!(s.wrong.iter().sum::<u64>(), s.mismatches, "{s:?}");
    }
}

/// With full comparisons only at mismatches and at the end, a flip in a page the guest does not write again
/// escapes the epoch's digest: it must still be caught (when it reaches output, or at the end) and blamed on the
/// replica that had it, since the re-execution starts from the last verified checkpoint, which it is not in.
#[test]
fn flips_that_no_digest_sees_are_caught_later_and_blamed_right() {
    let (.., icount, _) = single("sigbus-glibc", &["20"], b"");
    let spec = format!("mem.flip:count=20,within={icount},class=anon-dirty");
    for faulty in 0..2 {
        let mut faults = vec![ReplicaFaults::default(); 2];
        faults[faulty] = plan(&spec);
        let (stdout, _, termination, end_icount, hash) = single("sigbus-glibc", &["20"], b"");
        let config = FtConfig {
            epoch_insns: 10_000,
            verify_epochs: u64::MAX,
            ..FtConfig::default()
        };
        let mut w = world_with("sigbus-glibc", &["20"], b"", config, faults);
        assert_eq!(w.run(), FtEnd::Finished(termination));
        w.with_live(|h| assert_eq!(h.stdout, stdout));
        assert_eq!((w.icount(), w.state_hash()), (end_icount, hash));
        let s = w.stats();
        assert!(s.mismatches > 0, "replica {faulty}: {s:?}");
        assert_eq!(s.wrong[faulty], s.mismatches, "replica {faulty}: {s:?}");
        assert_eq!(s.wrong[1 - faulty], 0, "replica {faulty}: {s:?}");
        // Full hashes only where needed: each mismatch and the last epoch.
        assert!(s.verifications <= s.mismatches + 1, "{s:?}");
        assert!(s.verifications < s.epochs / 4, "{s:?}");
    }
}

/// The per-epoch digest sees a flip in a page the guest writes in the same epoch, without a full hash.
#[test]
fn the_epoch_digest_catches_a_flip_in_a_page_written_in_the_epoch() {
    let mut a = world(
        "sha256-musl",
        &["abc"],
        b"",
        10_000,
        vec![Default::default(); 2],
    );
    let digests = |w: &mut World<MemoryHost>| -> Vec<u64> {
        w.replicas
            .iter_mut()
            .map(|r| epoch_digest(&mut r.hv.guest, &mut r.digest))
            .collect()
    };
    for r in a.replicas.iter_mut() {
        r.hv.run(50_000);
    }
    let first = digests(&mut a);
    assert_eq!(first[0], first[1]);
    // Both write the same byte of the stack; replica 1 then has a bit of it flipped.
    for (i, r) in a.replicas.iter_mut().enumerate() {
        let rsp = r.hv.guest.registers().gpr[4];
        let mem = r.hv.guest.memory_mut();
        mem.write_u8(rsp - 64, 0x5a).unwrap();
        if i == 1 {
            let frame = mem.frame_of(rsp - 64).unwrap();
            mem.flip_bit(frame, ((rsp - 64) & 0xfff) as usize, 3);
        }
    }
    let second = digests(&mut a);
    assert_ne!(second[0], second[1]);
    assert_ne!(first[0], second[0], "a write changes the digest");
}

/// Backups on threads of their own, following the primary's log as it grows, give exactly what one thread
/// gives: the same stats (mismatches, blame, pages moved, events) and the same released bytes, fault-free, with a
/// faulty primary, and with a faulty backup, in a pair and a triple.
#[test]
fn replicas_on_threads_give_what_one_thread_gives() {
    let (.., icount, _) = single("sigbus-glibc", &["20"], b"");
    let spec = format!("mem.flip:count=20,within={icount},class=anon-dirty");
    let input = b"one\ntwo\nthree\n".repeat(50);
    for replicas in 2..=3 {
        for faulty in [None, Some(0), Some(replicas - 1)] {
            let mut faults = vec![ReplicaFaults::default(); replicas];
            if let Some(f) = faulty {
                faults[f] = plan(&spec);
            }
            let run = |threads: bool| {
                let config = FtConfig {
                    epoch_insns: 7_000,
                    verify_epochs: 5,
                    threads,
                    ..FtConfig::default()
                };
                let mut w = world_with("sigbus-glibc", &["20"], &input, config, faults.clone());
                let end = w.run();
                let out = w.with_live(|h| (h.stdout.clone(), h.stderr.clone()));
                (end, out, w.stats().clone(), w.icount(), w.state_hash())
            };
            let (one, many) = (run(false), run(true));
            assert_eq!(one, many, "{replicas} replicas, faulty {faulty:?}");
            if faulty.is_some() {
                assert!(one.2.mismatches > 0, "{:?}", one.2);
            }
        }
    }
}

/// The primary running ahead of the comparisons (the default with threads) is rewound when a mismatch is found
/// at an epoch it has already run past, and nothing a user sees changes: with a flip planted in the primary or
/// in a backup, an uncorrectable error that kills the primary (failover), and random flips, in a pair and a
/// triple, the released bytes equal the fault-free run's, and the end, stats, events, first mismatch, final
/// icount and state are those of the replicas run in lockstep on threads and one after another on one thread.
#[test]
fn the_primary_running_ahead_is_rewound_and_changes_nothing() {
    let (stdout, stderr, termination, icount, hash) = single("sigbus-glibc", &["20"], b"");
    let random = format!("mem.flip:count=20,within={icount},class=anon-dirty");
    let planted = [
        "mem.flip:icount=300000,addr=0x7ffff7ff8000,bit=3",
        "mem.flip:icount=300000,addr=0x7fffffffe000,bit=5",
        "mem.ue:icount=300000,addr=0x7fffffffe000",
        random.as_str(),
    ];
    let mut kinds = [0; 2];
    for replicas in 2..=3 {
        for spec in planted {
            for faulty in [0, replicas - 1] {
                let mut faults = vec![ReplicaFaults::default(); replicas];
                faults[faulty] = plan(spec);
                let run = |threads: bool, run_ahead: bool| {
                    let config = FtConfig {
                        epoch_insns: 20_000,
                        verify_epochs: 4,
                        threads,
                        run_ahead,
                        ..FtConfig::default()
                    };
                    let mut w = world_with("sigbus-glibc", &["20"], b"", config, faults.clone());
                    let end = w.run();
                    let out = w.with_live(|h| (h.stdout.clone(), h.stderr.clone()));
                    let mismatch = w.first_mismatch().cloned();
                    let seen = (
                        end,
                        out,
                        w.stats().clone(),
                        w.icount(),
                        w.state_hash(),
                        mismatch,
                    );
                    (seen, w.rewinds())
                };
                let what = format!("{replicas} replicas, {spec} in replica {faulty}");
                let (ahead, rewinds) = run(true, true);
                assert_eq!(ahead.0, FtEnd::Finished(termination.clone()), "{what}");
                assert_eq!(ahead.1, (stdout.clone(), stderr.clone()), "{what}");
                assert_eq!((ahead.3, ahead.4), (icount, hash), "{what}");
                assert!(ahead.2.mismatches > 0, "{what}: {:?}", ahead.2);
                assert!(
                    rewinds.iter().sum::<u64>() > 0,
                    "{what}: the primary was never ahead of a mismatch"
                );
                kinds[0] += rewinds[0];
                kinds[1] += rewinds[1];
                let (lockstep, no_rewinds) = run(true, false);
                assert_eq!(no_rewinds, [0, 0]);
                assert_eq!(ahead, lockstep, "{what}");
                assert_eq!(ahead, run(false, false).0, "{what}");
            }
        }
    }
    // Both ways back were walked: from a snapshot (a mismatch at a periodic full comparison) and by a re-run.
    assert!(kinds[0] > 0 && kinds[1] > 0, "rewinds by kind: {kinds:?}");
}
