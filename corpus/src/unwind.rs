//! Panics and catches them with `std::panic::catch_unwind`, the way test harnesses and thread pools do: each
//! unwind runs libgcc's unwinder (and its `rdsspq`) through frames with destructors. The panic hook is replaced so
//! that stderr holds only what this program prints. The exit status is the number of panics caught.

use std::panic;

struct Noisy(&'static str);

impl Drop for Noisy {
    fn drop(&mut self) {
        println!("drop {}", self.0);
    }
}

#[inline(never)]
fn depth(n: u32) -> u32 {
    let _guard = Noisy(if n % 2 == 1 { "odd frame" } else { "even frame" });
    if n == 0 {
        panic!("from the bottom");
    }
    depth(n - 1) + 1
}

fn main() {
    panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a non-string payload".to_string());
        eprintln!("panic hook: {message}");
    }));
    let mut caught = 0;
    let r = panic::catch_unwind(|| depth(4));
    if let Err(e) = r {
        println!("caught: {}", e.downcast_ref::<&str>().unwrap_or(&"?"));
        caught += 1;
    }
    let r = panic::catch_unwind(|| {
        let v: Vec<u32> = (0..3).collect();
        let index = v.len() + std::env::args().count() + 4;
        v[index]
    });
    if let Err(e) = r {
        println!("caught an index panic: {}", e.downcast_ref::<String>().map_or("?", |s| s.as_str()));
        caught += 1;
    }
    let r = panic::catch_unwind(|| {
        let inner = panic::catch_unwind(|| panic::panic_any(7u64));
        let payload = inner.expect_err("the inner closure panicked");
        println!("inner caught {}", payload.downcast_ref::<u64>().copied().unwrap_or(0));
        panic::resume_unwind(payload);
    });
    if let Err(e) = r {
        println!("resumed payload {}", e.downcast_ref::<u64>().copied().unwrap_or(0));
        caught += 2;
    }
    for i in 0..50u32 {
        if panic::catch_unwind(move || if i % 5 == 0 { panic!("loop {i}") }).is_err() {
            caught += 1;
        }
    }
    println!("{caught} panics caught");
    std::process::exit(caught);
}
