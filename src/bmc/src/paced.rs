//! Pacing and verification around any [`Bmc`]: one command in flight per BMC, a minimum interval
//! between commands, a timeout per command, and power on/off verified by polling the state.

use crate::{Bmc, BmcError, PowerAction, PowerState, PxeBoot};
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

#[derive(Clone, Debug)]
pub struct PacingConfig {
    /// Least time between two commands to the same BMC.
    pub min_interval: Duration,
    /// Bound on one command (the drivers also retry inside it).
    pub command_timeout: Duration,
    /// How long power on/off may take to show in the power state.
    pub verify_timeout: Duration,
    /// Interval between power-state reads while verifying.
    pub verify_poll: Duration,
}

impl Default for PacingConfig {
    fn default() -> Self {
        Self {
            min_interval: Duration::from_millis(500),
            command_timeout: Duration::from_secs(30),
            verify_timeout: Duration::from_secs(60),
            verify_poll: Duration::from_secs(2),
        }
    }
}

pub struct Paced {
    inner: Box<dyn Bmc>,
    /// When the last command finished; the lock is what keeps one command in flight.
    last: Mutex<Option<Instant>>,
    cfg: PacingConfig,
}

impl Paced {
    pub fn new(inner: Box<dyn Bmc>, cfg: PacingConfig) -> Self {
        Self {
            inner,
            last: Mutex::new(None),
            cfg,
        }
    }

    pub fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn paced<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, BmcError>>,
    ) -> Result<T, BmcError> {
        let mut last = self.last.lock().await;
        if let Some(t) = *last {
            tokio::time::sleep_until(t + self.cfg.min_interval).await;
        }
        let r = tokio::time::timeout(self.cfg.command_timeout, f).await;
        *last = Some(Instant::now());
        r.unwrap_or(Err(BmcError::Timeout(self.cfg.command_timeout)))
    }

    pub async fn power_state(&self) -> Result<PowerState, BmcError> {
        self.paced(self.inner.power_state()).await
    }

    pub async fn set_pxe_boot(&self, how: PxeBoot) -> Result<(), BmcError> {
        self.paced(self.inner.set_pxe_boot(how)).await
    }

    /// Send a power action and wait until the BMC reports the state it leads to: on after
    /// on, cycle and reset; off after off. Returns the state seen last. A soft off is sent and
    /// the state reported, not awaited (the OS may take minutes, or ignore it).
    ///
    /// - A cycle or reset of a machine that is off powers it on instead: many BMCs do nothing
    ///   for those on an off chassis (IPMI allows it; iLO refuses with a 400).
    /// - A command the BMC refuses because it is already done (iDRAC answers a second On with
    ///   409 "already powered on") succeeds when the state shows the wanted one.
    /// - A failed state read while verifying (a BMC busy right after a power change answers
    ///   503 or "node busy") is read again at the next poll, until `verify_timeout`.
    ///
    /// Verification only reads the state, except once: if the state has not changed by half
    /// of `verify_timeout`, the command is sent a second time (a cycle or reset as an On). A
    /// BMC still applying a reset can drop a power command it accepted (sushy-emulator ignores
    /// an Off while it believes the machine is already off with a restart pending, then
    /// completes the restart; real BMCs refuse power commands during a reset). One re-send
    /// late enough does not postpone a change that is merely slow.
    pub async fn power(&self, action: PowerAction) -> Result<PowerState, BmcError> {
        let (send, want) = match action {
            PowerAction::On => (action, PowerState::On),
            PowerAction::Off => (action, PowerState::Off),
            PowerAction::Soft => {
                self.paced(self.inner.power(action)).await?;
                return self.power_state().await;
            }
            PowerAction::Cycle | PowerAction::Reset => match self.power_state().await {
                Ok(PowerState::Off) => {
                    tracing::info!(bmc = %self.describe(), ?action, "machine is off: powering it on instead");
                    (PowerAction::On, PowerState::On)
                }
                _ => (action, PowerState::On),
            },
        };
        match self.send_verified(action, send, want).await {
            // No restart among the BMC's reset types (some offer only On/ForceOff or the
            // power button): off, then on.
            Err(BmcError::Unsupported(why))
                if matches!(send, PowerAction::Cycle | PowerAction::Reset) =>
            {
                tracing::info!(bmc = %self.describe(), ?action, %why, "no restart: powering off, then on");
                self.send_verified(action, PowerAction::Off, PowerState::Off)
                    .await?;
                self.send_verified(action, PowerAction::On, PowerState::On)
                    .await
            }
            r => r,
        }
    }

    /// Send `send` (for `action`) and wait until the state is `want` (see [`Paced::power`]).
    async fn send_verified(
        &self,
        action: PowerAction,
        send: PowerAction,
        want: PowerState,
    ) -> Result<PowerState, BmcError> {
        if let Err(e) = self.paced(self.inner.power(send)).await {
            // Only an On or Off can have been "already done"; a refused cycle was not.
            let settles = matches!(send, PowerAction::On | PowerAction::Off)
                && matches!(e, BmcError::Refused(_));
            return match self.power_state().await {
                Ok(state) if settles && state == want => {
                    tracing::info!(bmc = %self.describe(), ?action, error = %e, "BMC refused the command, but the machine is already {state:?}");
                    Ok(state)
                }
                _ => Err(e),
            };
        }
        let started = Instant::now();
        let mut resent = false;
        let mut last: Result<PowerState, BmcError> = Err(BmcError::Timeout(Duration::ZERO));
        loop {
            last = match self.power_state().await {
                Ok(state) if state == want => return Ok(state),
                Ok(state) => Ok(state),
                Err(e) => {
                    tracing::debug!(bmc = %self.describe(), error = %e, "power state unreadable while verifying; reading again");
                    // Keep the last state seen, if any: it says more than the read error.
                    match last {
                        Ok(state) => Ok(state),
                        Err(_) => Err(e),
                    }
                }
            };
            if !resent && started.elapsed() >= self.cfg.verify_timeout / 2 {
                resent = true;
                let again = match send {
                    PowerAction::Cycle | PowerAction::Reset => PowerAction::On,
                    other => other,
                };
                tracing::info!(bmc = %self.describe(), ?action, state = ?last.as_ref().ok(), "power state unchanged: sending {again:?}");
                if let Err(e) = self.paced(self.inner.power(again)).await {
                    tracing::info!(bmc = %self.describe(), error = %e, "power command sent again: refused");
                }
                continue;
            }
            if started.elapsed() >= self.cfg.verify_timeout {
                return match last {
                    Ok(state) => Err(BmcError::NotApplied {
                        action,
                        state,
                        waited: started.elapsed(),
                    }),
                    Err(e) => Err(e),
                };
            }
            tokio::time::sleep(self.cfg.verify_poll).await;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::BmcFuture;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::{Arc, Mutex as StdMutex};

    /// A BMC that takes 100 ms per command, applies power changes after `apply_after` state
    /// reads (or never), and records concurrency and command times.
    struct FakeBmc {
        state: StdMutex<PowerState>,
        pending: StdMutex<Option<(PowerState, u32)>>,
        apply_after: Option<u32>,
        in_flight: AtomicU32,
        max_in_flight: AtomicU32,
        starts: StdMutex<Vec<Instant>>,
        /// Power commands received.
        powers: AtomicU32,
        /// The next this many power commands are accepted and dropped.
        drop_commands: AtomicU32,
        /// The next this many power commands are refused (an error, nothing done).
        refuse_commands: AtomicU32,
        /// The next this many state reads fail.
        fail_reads: AtomicU32,
        /// Every power command received, in order.
        actions: StdMutex<Vec<PowerAction>>,
        /// Cycle and reset are not offered (a Redfish BMC listing no restart type).
        no_restart: std::sync::atomic::AtomicBool,
    }

    impl FakeBmc {
        fn new(apply_after: Option<u32>) -> Arc<Self> {
            Arc::new(Self {
                state: StdMutex::new(PowerState::Off),
                pending: StdMutex::new(None),
                apply_after,
                in_flight: AtomicU32::new(0),
                max_in_flight: AtomicU32::new(0),
                starts: StdMutex::new(Vec::new()),
                powers: AtomicU32::new(0),
                drop_commands: AtomicU32::new(0),
                refuse_commands: AtomicU32::new(0),
                fail_reads: AtomicU32::new(0),
                actions: StdMutex::new(Vec::new()),
                no_restart: Default::default(),
            })
        }
        async fn enter(&self) {
            self.starts.lock().unwrap().push(Instant::now());
            let n = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_in_flight.fetch_max(n, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
    }

    impl Bmc for Arc<FakeBmc> {
        fn power_state(&self) -> BmcFuture<'_, PowerState> {
            Box::pin(async move {
                self.enter().await;
                if take_one(&self.fail_reads) {
                    return Err(BmcError::Refused("503 busy".into()));
                }
                let mut p = self.pending.lock().unwrap();
                if let Some((s, n)) = *p {
                    if n == 0 {
                        *self.state.lock().unwrap() = s;
                        *p = None;
                    } else {
                        *p = Some((s, n - 1));
                    }
                }
                Ok(*self.state.lock().unwrap())
            })
        }
        fn power(&self, action: PowerAction) -> BmcFuture<'_, ()> {
            Box::pin(async move {
                self.enter().await;
                self.powers.fetch_add(1, Ordering::SeqCst);
                self.actions.lock().unwrap().push(action);
                if matches!(action, PowerAction::Cycle | PowerAction::Reset)
                    && self.no_restart.load(Ordering::SeqCst)
                {
                    return Err(BmcError::Unsupported(format!("power {action:?}")));
                }
                if take_one(&self.refuse_commands) {
                    return Err(BmcError::Refused("409 conflict".into()));
                }
                let now = *self.state.lock().unwrap();
                let target = match action {
                    PowerAction::On => PowerState::On,
                    // Like many BMCs: a cycle or reset of an off chassis does nothing.
                    PowerAction::Cycle | PowerAction::Reset => now,
                    _ => PowerState::Off,
                };
                let dropped = take_one(&self.drop_commands);
                if let (Some(n), false) = (self.apply_after, dropped) {
                    *self.pending.lock().unwrap() = Some((target, n));
                }
                Ok(())
            })
        }
        fn set_pxe_boot(&self, _: PxeBoot) -> BmcFuture<'_, ()> {
            Box::pin(async move {
                self.enter().await;
                Ok(())
            })
        }
        fn describe(&self) -> String {
            "fake".into()
        }
    }

    fn take_one(n: &AtomicU32) -> bool {
        n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    fn cfg() -> PacingConfig {
        PacingConfig {
            min_interval: Duration::from_millis(300),
            command_timeout: Duration::from_secs(5),
            verify_timeout: Duration::from_secs(10),
            verify_poll: Duration::from_secs(1),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn one_command_in_flight_with_the_minimum_interval() {
        let fake = FakeBmc::new(Some(0));
        let paced = Arc::new(Paced::new(Box::new(fake.clone()), cfg()));
        let tasks: Vec<_> = (0..6)
            .map(|i| {
                let p = paced.clone();
                tokio::spawn(async move {
                    if i % 2 == 0 {
                        p.power_state().await.map(|_| ())
                    } else {
                        p.set_pxe_boot(PxeBoot::default()).await
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(fake.max_in_flight.load(Ordering::SeqCst), 1);
        let starts = fake.starts.lock().unwrap().clone();
        for w in starts.windows(2) {
            // 100 ms command + 300 ms interval.
            assert!(
                w[1] - w[0] >= Duration::from_millis(400),
                "{:?}",
                w[1] - w[0]
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn power_on_is_verified_even_when_slow() {
        let fake = FakeBmc::new(Some(3));
        let paced = Paced::new(Box::new(fake.clone()), cfg());
        assert_eq!(paced.power(PowerAction::On).await.unwrap(), PowerState::On);
    }

    /// Verification only reads the state: the command is sent once while the change may
    /// still be on its way. A BMC like sushy-emulator's fake driver restarts its (random, up
    /// to 11 s) delay on every new command, so re-sends while verifying would postpone the
    /// change again and again.
    #[tokio::test(start_paused = true)]
    async fn verification_polls_without_sending_the_command_again() {
        let fake = FakeBmc::new(Some(6));
        *fake.state.lock().unwrap() = PowerState::On;
        let cfg = PacingConfig {
            verify_timeout: Duration::from_secs(40),
            ..cfg()
        };
        let paced = Paced::new(Box::new(fake.clone()), cfg);
        assert_eq!(
            paced.power(PowerAction::Off).await.unwrap(),
            PowerState::Off
        );
        assert_eq!(fake.powers.load(Ordering::SeqCst), 1);
        // 1 command + 7 state reads (the change shows on the 7th).
        assert_eq!(fake.starts.lock().unwrap().len(), 8);
    }

    /// A command the BMC accepted and dropped (busy with a reset) is sent once more when the
    /// state has not changed by half the verification time.
    #[tokio::test(start_paused = true)]
    async fn a_dropped_command_is_sent_again_once() {
        let fake = FakeBmc::new(Some(0));
        fake.drop_commands.store(1, Ordering::SeqCst);
        *fake.state.lock().unwrap() = PowerState::On;
        let paced = Paced::new(Box::new(fake.clone()), cfg());
        assert_eq!(
            paced.power(PowerAction::Off).await.unwrap(),
            PowerState::Off
        );
        assert_eq!(fake.powers.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn cycle_or_reset_of_an_off_machine_powers_it_on() {
        for action in [PowerAction::Cycle, PowerAction::Reset] {
            let fake = FakeBmc::new(Some(1));
            let paced = Paced::new(Box::new(fake.clone()), cfg());
            assert_eq!(paced.power(action).await.unwrap(), PowerState::On);
            assert_eq!(*fake.actions.lock().unwrap(), [PowerAction::On]);
        }
        // A machine that is on gets the cycle itself.
        let fake = FakeBmc::new(Some(0));
        *fake.state.lock().unwrap() = PowerState::On;
        let paced = Paced::new(Box::new(fake.clone()), cfg());
        assert_eq!(
            paced.power(PowerAction::Cycle).await.unwrap(),
            PowerState::On
        );
        assert_eq!(*fake.actions.lock().unwrap(), [PowerAction::Cycle]);
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_restart_type_a_cycle_is_off_then_on() {
        let fake = FakeBmc::new(Some(1));
        *fake.state.lock().unwrap() = PowerState::On;
        fake.no_restart.store(true, Ordering::SeqCst);
        let paced = Paced::new(Box::new(fake.clone()), cfg());
        assert_eq!(
            paced.power(PowerAction::Reset).await.unwrap(),
            PowerState::On
        );
        assert_eq!(
            *fake.actions.lock().unwrap(),
            [PowerAction::Reset, PowerAction::Off, PowerAction::On]
        );
        // A refused (not unsupported) cycle of a machine that is on is an error, not "done".
        let fake = FakeBmc::new(Some(0));
        *fake.state.lock().unwrap() = PowerState::On;
        fake.refuse_commands.store(1, Ordering::SeqCst);
        let paced = Paced::new(Box::new(fake.clone()), cfg());
        assert!(matches!(
            paced.power(PowerAction::Cycle).await,
            Err(BmcError::Refused(_))
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_command_is_fine_when_the_state_is_already_right() {
        let fake = FakeBmc::new(Some(0));
        *fake.state.lock().unwrap() = PowerState::On;
        fake.refuse_commands.store(1, Ordering::SeqCst);
        let paced = Paced::new(Box::new(fake.clone()), cfg());
        assert_eq!(paced.power(PowerAction::On).await.unwrap(), PowerState::On);
        // Refused while the state is not the wanted one: the refusal is the answer.
        fake.refuse_commands.store(1, Ordering::SeqCst);
        match paced.power(PowerAction::Off).await {
            Err(BmcError::Refused(why)) => assert!(why.contains("409"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn failed_state_reads_while_verifying_are_read_again() {
        let fake = FakeBmc::new(Some(3));
        fake.fail_reads.store(2, Ordering::SeqCst);
        let paced = Paced::new(Box::new(fake.clone()), cfg());
        assert_eq!(paced.power(PowerAction::On).await.unwrap(), PowerState::On);
        assert_eq!(fake.powers.load(Ordering::SeqCst), 1);
        // Reads that never succeed end with the read error, not a made-up state.
        let fake = FakeBmc::new(None);
        fake.fail_reads.store(u32::MAX, Ordering::SeqCst);
        let paced = Paced::new(Box::new(fake.clone()), cfg());
        match paced.power(PowerAction::On).await {
            Err(BmcError::Refused(why)) => assert!(why.contains("503"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_bmc_that_accepts_and_does_nothing_is_reported() {
        let fake = FakeBmc::new(None);
        let paced = Paced::new(Box::new(fake.clone()), cfg());
        match paced.power(PowerAction::On).await {
            Err(BmcError::NotApplied {
                action: PowerAction::On,
                state: PowerState::Off,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
    }
}
