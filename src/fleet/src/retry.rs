//! Firmware-like retransmission timing: wait 4, 8, 16, 32 s between tries, then give up
//! (PXE 2.1 and EDK2's DHCP/MTFTP; iPXE's own back-off is similar in total).

use std::time::Duration;

/// Waits after each transmission, in order.
pub const FIRMWARE_TIMEOUTS: [Duration; 4] = [
    Duration::from_secs(4),
    Duration::from_secs(8),
    Duration::from_secs(16),
    Duration::from_secs(32),
];

/// Where we are in the schedule: the deadline of the current try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    try_no: usize,
    deadline: Duration,
    /// Transmissions repeated after a timeout, over the whole run (kept across `reset`).
    retries: u32,
}

impl Backoff {
    /// First try sent at `now`.
    pub fn firmware(now: Duration) -> Backoff {
        Backoff {
            try_no: 0,
            deadline: now + FIRMWARE_TIMEOUTS[0],
            retries: 0,
        }
    }

    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// The current try timed out at `now`: true = send again (deadline moved), false = give up.
    pub fn next(&mut self, now: Duration) -> bool {
        self.try_no += 1;
        match FIRMWARE_TIMEOUTS.get(self.try_no) {
            Some(wait) => {
                self.deadline = now + *wait;
                self.retries += 1;
                true
            }
            None => false,
        }
    }

    /// Progress was made: start the schedule over from `now`.
    pub fn reset(&mut self, now: Duration) {
        *self = Backoff {
            retries: self.retries,
            ..Backoff::firmware(now)
        };
    }

    /// Transmissions repeated after a timeout so far (a lost request or reply each).
    pub fn retries(&self) -> u32 {
        self.retries
    }
}
