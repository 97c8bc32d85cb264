//! Giving the pages of freed memory back to the kernel while the server is busy.
//!
//! In a boot storm the heap holds short-lived buffers (transfers, connections, DHCP packets)
//! between long-lived records (the inventory), so free chunks end up spread over the arenas,
//! and glibc's `free` returns memory to the kernel only from the top of a heap. Measured on 2
//! cores in 1,000-machine storms (`bench/fleet.sh`, glibc's `malloc_trim(0)` every 100 ms from
//! a preloaded library): peak RSS 24.2–26.3 MiB against 26.1–28.4 MiB without, 7 storms each;
//! each trim took 0.2–0.4 ms.

use std::time::Duration;

/// How often the trimmer looks at the process: it trims when the process used CPU since its
/// last look (an idle server's heap does not change, so it is left alone).
pub const TRIM_EVERY: Duration = Duration::from_millis(100);

/// CPU time the process must have used since the last look for a trim to be worth it.
const BUSY: Duration = Duration::from_millis(1);

/// Release the free pages of every arena to the kernel (glibc's `malloc_trim(0)`). Returns
/// whether glibc released anything. Does nothing on other C libraries.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn trim() -> bool {
    // SAFETY: malloc_trim takes an integer (the top padding to keep) and only returns free
    // pages of the allocator's own heaps to the kernel (madvise); it takes each arena's lock,
    // so it is safe to call while other threads allocate (malloc_trim(3)).
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn trim() -> bool {
    false
}

/// The process's CPU time so far (through the C library: also right under valgrind, which
/// rustix's own vDSO lookup is not).
fn cpu_time() -> Duration {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_PROCESS_CPUTIME_ID) {
        Ok(t) => Duration::new(
            u64::try_from(t.tv_sec()).unwrap_or(0),
            u32::try_from(t.tv_nsec()).unwrap_or(0),
        ),
        Err(_) => Duration::ZERO,
    }
}

/// Whether the process used at least [`BUSY`] of CPU between two looks.
fn busy(before: Duration, now: Duration) -> bool {
    now.saturating_sub(before) >= BUSY
}

/// Start a thread that trims the heap every `every` while the process is busy. The thread
/// allocates nothing and runs until the process exits.
pub fn spawn_trimmer(every: Duration) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("malloc-trim".into())
        .stack_size(64 << 10)
        .spawn(move || {
            let mut last = cpu_time();
            loop {
                std::thread::sleep(every);
                if busy(last, cpu_time()) {
                    trim();
                }
                // After the trim: its own CPU time does not make the next look busy.
                last = cpu_time();
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_needs_a_millisecond_of_cpu() {
        let t = Duration::from_secs(5);
        assert!(!busy(t, t));
        assert!(!busy(t, t + Duration::from_micros(999)));
        assert!(busy(t, t + BUSY));
        // A clock that went backwards is not busy (and does not panic).
        assert!(!busy(t, t - BUSY));
    }

    #[test]
    fn cpu_time_advances_with_work() {
        let before = cpu_time();
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(20) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        assert!(cpu_time() > before);
    }

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn trim_releases_freed_pages() {
        // Many small blocks, all but every 64th freed: the free chunks between the kept ones
        // span whole pages that only a trim gives back.
        let mut blocks: Vec<Vec<u8>> = (0..20_000).map(|i| vec![(i % 251) as u8; 1000]).collect();
        let mut i = 0;
        blocks.retain(|_| {
            i += 1;
            (i - 1) % 64 == 0
        });
        assert!(trim(), "glibc released nothing");
        assert_eq!(blocks.len(), 313);
        assert!(blocks
            .iter()
            .enumerate()
            .all(|(k, b)| b[999] == (k * 64 % 251) as u8));
    }
}
