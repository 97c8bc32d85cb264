//! glibc malloc settings for the server process.
//!
//! glibc gives each thread that allocates an arena of its own, up to eight per core. The server
//! runs many threads (the runtime's workers, up to 32 threaded TFTP transfers, the DHCP worker,
//! the store's flusher), and in a boot storm each arena keeps the pages its threads once used:
//! the storm's resident memory is the sum of every arena's own peak. One arena per core is as
//! many as there are threads running at once, so a thread seldom waits for an arena's lock.
//! Measured on 2 cores in 1,000-machine storms (`bench/fleet.sh`, 5 storms each, taking
//! turns): peak RSS 25.7–28.0 MiB with 2 arenas, 28.5–30.4 MiB with glibc's 16, the same
//! server CPU; one arena gave 25.7 MiB but about 15 % more server CPU (lock waits).
//!
//! An operator's `MALLOC_ARENA_MAX` in the environment wins: glibc reads it itself, and
//! [`limit_arenas`] then leaves the setting alone. On other C libraries this does nothing.
//!
//! glibc gives freed memory back to the kernel only from the top of a heap; pages of free
//! chunks between live ones stay resident. [`spawn_trimmer`] releases them while the process
//! is busy (see [`trim()`]).

mod trim;
pub use trim::{spawn_trimmer, trim, TRIM_EVERY};

/// Arenas for the server when the environment does not say: one per core, at most 8.
pub fn server_arenas() -> i32 {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8) as i32)
}

/// What [`limit_arenas`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arenas {
    /// The limit is set.
    Limited(i32),
    /// `MALLOC_ARENA_MAX` is in the environment: glibc follows it.
    FromEnvironment,
    /// glibc refused the setting, or the C library is not glibc.
    Unchanged,
}

/// Limit glibc's malloc to `n` arenas, unless `MALLOC_ARENA_MAX` is set. Call it first in
/// `main`, before any thread starts (a thread's arena is chosen at its first allocation).
pub fn limit_arenas(n: i32) -> Arenas {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return Arenas::FromEnvironment;
    }
    if n <= 0 {
        // glibc ignores these without saying so.
        return Arenas::Unchanged;
    }
    set_arena_max(n)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn set_arena_max(n: i32) -> Arenas {
    // SAFETY: mallopt takes two integers and only changes the allocator's tunables; glibc
    // serialises it against allocations. M_ARENA_MAX with a positive value is a documented
    // parameter (mallopt(3)); it returns 1 on success and 0 on error.
    let ok = unsafe { libc::mallopt(libc::M_ARENA_MAX, n) };
    if ok == 1 {
        Arenas::Limited(n)
    } else {
        Arenas::Unchanged
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_arena_max(_n: i32) -> Arenas {
    Arenas::Unchanged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_takes_a_positive_limit() {
        if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
            assert_eq!(limit_arenas(1), Arenas::FromEnvironment);
            return;
        }
        let n = server_arenas();
        assert!((1..=8).contains(&n));
        assert_eq!(limit_arenas(n), Arenas::Limited(n));
        // Threads allocate as before.
        let sums: Vec<usize> = (0..4)
            .map(|i| std::thread::spawn(move || vec![i; 1 << 16].iter().sum::<usize>()))
            .map(|h| h.join().unwrap_or(0))
            .collect();
        assert_eq!(sums, vec![0, 1 << 16, 2 << 16, 3 << 16]);
        assert_eq!(limit_arenas(0), Arenas::Unchanged, "0 is no limit");
    }
}
