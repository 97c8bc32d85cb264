//! The open-file limit. During a boot storm rackboot holds, at once, a socket per TFTP transfer,
//! a socket per HTTP download and the file being sent: well over a thousand descriptors for a
//! rack. The soft limit a process inherits is often 1,024 (busybox init, systemd services, most
//! shells) while the hard limit is higher; like Go programs and nginx's `worker_rlimit_nofile`,
//! `rackboot serve` raises the soft limit to the hard one at start.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// Below this many descriptors a storm of a few hundred machines can run out (EMFILE: accepts
/// back off, TFTP transfers are refused); `serve` warns.
pub const COMFORTABLE: u64 = 8192;

/// The soft open-file limit in effect (logged at start).
pub fn current() -> Option<u64> {
    getrlimit(Resource::RLIMIT_NOFILE)
        .ok()
        .map(|(soft, _)| soft)
}

/// The soft open-file limit before and after raising it to the hard limit.
pub fn raise_open_files() -> nix::Result<(u64, u64)> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft >= hard {
        return Ok((soft, soft));
    }
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    Ok((soft, hard))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn soft_limit_goes_up_to_the_hard_one() {
        let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        // One below the hard limit: other tests of this process keep all the room they had.
        setrlimit(Resource::RLIMIT_NOFILE, hard - 1, hard).unwrap();
        assert_eq!(raise_open_files().unwrap(), (hard - 1, hard));
        assert_eq!(getrlimit(Resource::RLIMIT_NOFILE).unwrap(), (hard, hard));
        // Already there: nothing to do.
        assert_eq!(raise_open_files().unwrap(), (hard, hard));
    }
}
