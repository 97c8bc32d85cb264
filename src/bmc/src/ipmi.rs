//! IPMI v2.0 over LAN driver: a tokio UDP shell around the sans-IO RMCP+ client
//! (`rackboot-ipmi`). One session per call, closed at the end (BMCs expire idle sessions and
//! have few session slots).

use crate::{Bmc, BmcError, BmcFuture, BmcUrl, Credentials, PowerAction, PowerState, PxeBoot};
use rackboot_ipmi::{
    BootFlags, ChassisControl, Client, ClientConfig, Command, IpmiError, Response,
};
use ring::rand::SecureRandom;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

pub struct Ipmi {
    authority: String,
    cfg: ClientConfig,
}

impl Ipmi {
    pub fn new(url: &BmcUrl, creds: Credentials) -> Result<Self, BmcError> {
        let mut cfg = ClientConfig::new(creds.username.clone(), creds.password.clone());
        cfg.timeout = Duration::from_secs(1);
        cfg.retries = 3;
        Client::new(cfg.clone(), rng()).map_err(|e| BmcError::Refused(e.to_string()))?;
        Ok(Self {
            authority: url.authority(),
            cfg,
        })
    }

    async fn session(&self, commands: &[Command]) -> Result<Vec<Response>, BmcError> {
        let sock = UdpSocket::bind(if self.authority.starts_with('[') {
            "[::]:0"
        } else {
            "0.0.0.0:0"
        })
        .await
        .map_err(|e| BmcError::Transport(e.to_string()))?;
        sock.connect(&self.authority)
            .await
            .map_err(|e| BmcError::Transport(format!("{}: {e}", self.authority)))?;
        let mut client = Client::new(self.cfg.clone(), rng()).map_err(map_err)?;
        let mut out = Vec::with_capacity(commands.len());
        let mut result = Ok(());
        for c in commands {
            match drive(&mut client, &sock, c.clone()).await {
                Ok(r) => out.push(r),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        // Always try to free the BMC's session slot.
        if client.session_suite().is_some() {
            let _ = drive(&mut client, &sock, Command::CloseSession).await;
        }
        result.map(|()| out).map_err(map_err)
    }

    async fn one(&self, c: Command) -> Result<Response, BmcError> {
        self.session(std::slice::from_ref(&c))
            .await?
            .pop()
            .ok_or_else(|| BmcError::Protocol("no reply".into()))
    }
}

fn rng() -> rackboot_ipmi::RandomSource {
    let sr = ring::rand::SystemRandom::new();
    Box::new(move |buf: &mut [u8]| {
        let _ = sr.fill(buf);
    })
}

fn map_err(e: IpmiError) -> BmcError {
    match e {
        IpmiError::AuthFailed(_) => BmcError::Auth,
        IpmiError::Timeout { .. } => BmcError::Timeout(Duration::from_secs(4)),
        IpmiError::Completion { code, meaning } => {
            BmcError::Refused(format!("completion code {code:#04x} ({meaning})"))
        }
        other => BmcError::Protocol(other.to_string()),
    }
}

async fn drive(client: &mut Client, sock: &UdpSocket, cmd: Command) -> Result<Response, IpmiError> {
    client.start(cmd, Instant::now())?;
    let mut buf = [0u8; 1024];
    loop {
        while let Some(d) = client.poll_transmit() {
            // A send error (ICMP unreachable) surfaces as a timeout through the retries.
            let _ = sock.send(&d).await;
        }
        if let Some(r) = client.poll_result() {
            return r;
        }
        let Some(deadline) = client.poll_timeout() else {
            return Err(IpmiError::BadReply(
                "client has neither a deadline nor a result",
            ));
        };
        tokio::select! {
            r = sock.recv(&mut buf) => match r {
                Ok(n) => client.handle_datagram(&buf[..n], Instant::now()),
                Err(_) => tokio::time::sleep_until(deadline.into()).await,
            },
            _ = tokio::time::sleep_until(deadline.into()) => client.handle_timeout(Instant::now()),
        }
    }
}

impl Bmc for Ipmi {
    fn power_state(&self) -> BmcFuture<'_, PowerState> {
        Box::pin(async move {
            match self.one(Command::GetChassisStatus).await? {
                Response::ChassisStatus(s) => Ok(if s.power_on {
                    PowerState::On
                } else {
                    PowerState::Off
                }),
                other => Err(BmcError::Protocol(format!("unexpected reply {other:?}"))),
            }
        })
    }

    fn power(&self, action: PowerAction) -> BmcFuture<'_, ()> {
        let ctl = match action {
            PowerAction::On => ChassisControl::PowerUp,
            PowerAction::Off => ChassisControl::PowerDown,
            PowerAction::Cycle => ChassisControl::PowerCycle,
            PowerAction::Reset => ChassisControl::HardReset,
            PowerAction::Soft => ChassisControl::SoftShutdown,
        };
        Box::pin(async move { self.one(Command::ChassisControl(ctl)).await.map(|_| ()) })
    }

    fn set_pxe_boot(&self, how: PxeBoot) -> BmcFuture<'_, ()> {
        let mut flags = BootFlags::pxe_once(how.efi);
        flags.persistent = how.persistent;
        Box::pin(async move { self.one(Command::SetBootFlags(flags)).await.map(|_| ()) })
    }

    fn describe(&self) -> String {
        format!("ipmi {}", self.authority)
    }
}
