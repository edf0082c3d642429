//! Rust std::thread with std::sync::mpsc, Arc<Mutex>, a Barrier, scoped threads and a panic caught at join.
//! The output is the same under every correct schedule.
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::thread;

fn main() {
    let (tx, rx) = mpsc::channel();
    let mut handles = Vec::new();
    for id in 0..4u64 {
        let tx = tx.clone();
        handles.push(thread::spawn(move || {
            let mut sum = 0u64;
            for i in 0..10_000u64 {
                sum = sum.wrapping_add(i * (id + 1));
            }
            tx.send((id, sum)).unwrap();
            id * 10
        }));
    }
    drop(tx);
    let mut results: Vec<(u64, u64)> = rx.iter().collect();
    results.sort();
    for (id, sum) in &results {
        println!("worker {id}: {sum}");
    }
    let joined: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    println!("join values: {joined}");

    let counter = Arc::new(Mutex::new(0u64));
    let barrier = Arc::new(Barrier::new(3));
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let counter = Arc::clone(&counter);
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                for _ in 0..1000 {
                    *counter.lock().unwrap() += 1;
                }
                barrier.wait();
                *counter.lock().unwrap()
            })
        })
        .collect();
    let seen: Vec<u64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    println!("counter {} (every thread saw it complete after the barrier: {})", *counter.lock().unwrap(), seen.iter().all(|&v| v == 3000));

    let mut data = vec![1u64; 1000];
    thread::scope(|s| {
        for chunk in data.chunks_mut(250) {
            s.spawn(move || chunk.iter_mut().for_each(|x| *x *= 3));
        }
    });
    println!("scoped sum {}", data.iter().sum::<u64>());

    // The default hook prints the thread id, which differs between runs; print a fixed line instead.
    std::panic::set_hook(Box::new(|_| eprintln!("a thread panicked")));
    let r = thread::spawn(|| {
        if std::env::args().count() < 100 {
            panic!("on purpose");
        }
    })
    .join();
    println!("panicking thread joined with an error: {}", r.is_err());
}
