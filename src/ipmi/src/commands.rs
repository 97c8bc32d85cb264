//! Typed IPMI commands: request builders and reply parsers for Get Device ID, Get Chassis
//! Status, Chassis Control and the System Boot Options boot flags (parameter 5).

use crate::error::{completion_meaning, IpmiError};
use crate::wire::netfn;

/// A raw IPMI request (LUN 0, to the BMC at 0x20).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpmiRequest {
    pub netfn: u8,
    pub cmd: u8,
    pub data: Vec<u8>,
}

/// Chassis Control (Chassis 0x02) actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChassisControl {
    PowerDown = 0,
    PowerUp = 1,
    PowerCycle = 2,
    HardReset = 3,
    PulseDiagnosticInterrupt = 4,
    /// ACPI soft shutdown.
    SoftShutdown = 5,
}

/// Boot device selector (boot flags data 2, bits 5:2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootDevice {
    NoOverride,
    Pxe,
    Disk,
    DiskSafeMode,
    DiagnosticPartition,
    Cdrom,
    BiosSetup,
    /// Any other selector value (4 bits).
    Other(u8),
}

impl BootDevice {
    /// The 4-bit selector.
    pub fn selector(self) -> u8 {
        match self {
            BootDevice::NoOverride => 0,
            BootDevice::Pxe => 1,
            BootDevice::Disk => 2,
            BootDevice::DiskSafeMode => 3,
            BootDevice::DiagnosticPartition => 4,
            BootDevice::Cdrom => 5,
            BootDevice::BiosSetup => 6,
            BootDevice::Other(v) => v & 0x0f,
        }
    }
    /// From a 4-bit selector.
    pub fn from_selector(v: u8) -> BootDevice {
        match v & 0x0f {
            0 => BootDevice::NoOverride,
            1 => BootDevice::Pxe,
            2 => BootDevice::Disk,
            3 => BootDevice::DiskSafeMode,
            4 => BootDevice::DiagnosticPartition,
            5 => BootDevice::Cdrom,
            6 => BootDevice::BiosSetup,
            o => BootDevice::Other(o),
        }
    }
}

/// System boot options parameter 5 (boot flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootFlags {
    /// Data 1 bit 7: the flags are valid (the BIOS honours them).
    pub valid: bool,
    /// Data 1 bit 6: applies to all future boots (else: next boot only).
    pub persistent: bool,
    /// Data 1 bit 5: EFI boot (else legacy PC-compatible).
    pub efi: bool,
    pub device: BootDevice,
}

impl BootFlags {
    /// Force PXE on the next boot only (what `ipmitool chassis bootdev pxe [options=efiboot]` writes).
    pub fn pxe_once(efi: bool) -> BootFlags {
        BootFlags {
            valid: true,
            persistent: false,
            efi,
            device: BootDevice::Pxe,
        }
    }
    /// The 5 data bytes of parameter 5.
    pub fn to_bytes(self) -> [u8; 5] {
        let d1 =
            u8::from(self.valid) << 7 | u8::from(self.persistent) << 6 | u8::from(self.efi) << 5;
        [d1, self.device.selector() << 2, 0, 0, 0]
    }
    /// Parse the data bytes of parameter 5 (at least 2 bytes).
    pub fn from_bytes(d: &[u8]) -> Result<BootFlags, IpmiError> {
        let (d1, d2) = match d {
            [a, b, ..] => (*a, *b),
            _ => return Err(IpmiError::BadReply("boot flags shorter than 2 bytes")),
        };
        Ok(BootFlags {
            valid: d1 & 0x80 != 0,
            persistent: d1 & 0x40 != 0,
            efi: d1 & 0x20 != 0,
            device: BootDevice::from_selector(d2 >> 2),
        })
    }
}

/// Get Device ID reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceId {
    pub device_id: u8,
    pub device_revision: u8,
    pub provides_sdrs: bool,
    /// false while the device is in firmware update / self-initialisation.
    pub device_available: bool,
    pub firmware_major: u8,
    /// BCD-encoded minor firmware revision as sent (e.g. 0x09 = .09).
    pub firmware_minor_bcd: u8,
    /// IPMI version, BCD (0x02 = 2.0, 0x51 = 1.5), as (major, minor).
    pub ipmi_version: (u8, u8),
    pub additional_support: u8,
    pub manufacturer_id: u32,
    pub product_id: u16,
    pub aux_firmware: Option<[u8; 4]>,
}

impl DeviceId {
    pub fn parse(d: &[u8]) -> Result<DeviceId, IpmiError> {
        if d.len() < 11 {
            return Err(IpmiError::BadReply(
                "Get Device ID reply shorter than 11 bytes",
            ));
        }
        Ok(DeviceId {
            device_id: d[0],
            device_revision: d[1] & 0x0f,
            provides_sdrs: d[1] & 0x80 != 0,
            device_available: d[2] & 0x80 == 0,
            firmware_major: d[2] & 0x7f,
            firmware_minor_bcd: d[3],
            ipmi_version: (d[4] & 0x0f, d[4] >> 4),
            additional_support: d[5],
            manufacturer_id: u32::from_le_bytes([d[6], d[7], d[8] & 0x0f, 0]),
            product_id: u16::from_le_bytes([d[9], d[10]]),
            aux_firmware: d.get(11..15).map(|a| [a[0], a[1], a[2], a[3]]),
        })
    }
}

/// Get Chassis Status reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChassisStatus {
    pub power_on: bool,
    pub power_overload: bool,
    pub interlock: bool,
    pub main_power_fault: bool,
    pub power_control_fault: bool,
    /// 0 = stay off, 1 = restore previous, 2 = always on, 3 = unknown.
    pub restore_policy: u8,
    /// Last power event byte (raw bits).
    pub last_power_event: u8,
    pub intrusion: bool,
    pub front_panel_lockout: bool,
    pub drive_fault: bool,
    pub cooling_fault: bool,
}

impl ChassisStatus {
    pub fn parse(d: &[u8]) -> Result<ChassisStatus, IpmiError> {
        if d.len() < 3 {
            return Err(IpmiError::BadReply(
                "Get Chassis Status reply shorter than 3 bytes",
            ));
        }
        Ok(ChassisStatus {
            power_on: d[0] & 0x01 != 0,
            power_overload: d[0] & 0x02 != 0,
            interlock: d[0] & 0x04 != 0,
            main_power_fault: d[0] & 0x08 != 0,
            power_control_fault: d[0] & 0x10 != 0,
            restore_policy: (d[0] >> 5) & 0x03,
            last_power_event: d[1],
            intrusion: d[2] & 0x01 != 0,
            front_panel_lockout: d[2] & 0x02 != 0,
            drive_fault: d[2] & 0x04 != 0,
            cooling_fault: d[2] & 0x08 != 0,
        })
    }
}

/// A high-level command. Some expand to several IPMI requests (see [`Command::SetBootFlags`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// App 0x01.
    GetDeviceId,
    /// Chassis 0x01.
    GetChassisStatus,
    /// Chassis 0x02.
    ChassisControl(ChassisControl),
    /// Chassis 0x08 with ipmitool's sequence: parameter 0 "set in progress", parameter 4
    /// "boot info acknowledge" (01 01), parameter 5 = flags, parameter 0 "commit write",
    /// parameter 0 "set complete". Only the parameter 5 write must succeed.
    SetBootFlags(BootFlags),
    /// Chassis 0x09, parameter 5.
    GetBootFlags,
    /// Any request; the reply data (after the completion code) comes back as [`Response::Raw`].
    Raw(IpmiRequest),
    /// App 0x3C for the current session (a no-op when no session is open).
    CloseSession,
}

/// A successful command result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    DeviceId(DeviceId),
    ChassisStatus(ChassisStatus),
    BootFlags(BootFlags),
    /// The command succeeded and returns no data (Chassis Control, Set Boot Flags).
    Done,
    Raw(Vec<u8>),
    SessionClosed,
}

/// How a step's failure is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StepKind {
    /// Its reply is the command's result; a failure aborts the command.
    Primary,
    /// Errors (completion codes) are ignored; skipped after a failure.
    Tolerant,
    /// Runs even after a failure; errors ignored.
    Cleanup,
}

/// One IPMI request of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Step {
    pub req: IpmiRequest,
    pub kind: StepKind,
}

fn step(netfn: u8, cmd: u8, data: &[u8], kind: StepKind) -> Step {
    Step {
        req: IpmiRequest {
            netfn,
            cmd,
            data: data.to_vec(),
        },
        kind,
    }
}

/// Set System Boot Options (Chassis 0x08): parameter selector then data.
fn set_boot_option(param: u8, data: &[u8], kind: StepKind) -> Step {
    let mut d = vec![param & 0x7f];
    d.extend_from_slice(data);
    step(netfn::CHASSIS, 0x08, &d, kind)
}

impl Command {
    /// Human-readable name (for errors).
    pub fn name(&self) -> &'static str {
        match self {
            Command::GetDeviceId => "Get Device ID",
            Command::GetChassisStatus => "Get Chassis Status",
            Command::ChassisControl(_) => "Chassis Control",
            Command::SetBootFlags(_) => "Set System Boot Options",
            Command::GetBootFlags => "Get System Boot Options",
            Command::Raw(_) => "IPMI request",
            Command::CloseSession => "Close Session",
        }
    }

    /// The IPMI requests this command sends, in order (Close Session is built by the client).
    pub(crate) fn steps(&self) -> Vec<Step> {
        use StepKind::*;
        match self {
            Command::GetDeviceId => vec![step(netfn::APP, 0x01, &[], Primary)],
            Command::GetChassisStatus => vec![step(netfn::CHASSIS, 0x01, &[], Primary)],
            Command::ChassisControl(c) => vec![step(netfn::CHASSIS, 0x02, &[*c as u8], Primary)],
            Command::SetBootFlags(f) => vec![
                set_boot_option(0, &[0x01], Tolerant),
                set_boot_option(4, &[0x01, 0x01], Tolerant),
                set_boot_option(5, &f.to_bytes(), Primary),
                set_boot_option(0, &[0x02], Tolerant),
                set_boot_option(0, &[0x00], Cleanup),
            ],
            Command::GetBootFlags => vec![step(netfn::CHASSIS, 0x09, &[5, 0, 0], Primary)],
            Command::Raw(r) => vec![Step {
                req: r.clone(),
                kind: Primary,
            }],
            Command::CloseSession => Vec::new(),
        }
    }

    /// Parse the primary step's reply data (completion code already checked to be 0).
    pub(crate) fn parse(&self, data: &[u8]) -> Result<Response, IpmiError> {
        match self {
            Command::GetDeviceId => DeviceId::parse(data).map(Response::DeviceId),
            Command::GetChassisStatus => ChassisStatus::parse(data).map(Response::ChassisStatus),
            Command::ChassisControl(_) | Command::SetBootFlags(_) => Ok(Response::Done),
            Command::GetBootFlags => {
                // parameter version, parameter valid / selector, data...
                match data {
                    [_, sel, rest @ ..] if sel & 0x7f == 5 => {
                        BootFlags::from_bytes(rest).map(Response::BootFlags)
                    }
                    _ => Err(IpmiError::BadReply(
                        "Get System Boot Options: not parameter 5",
                    )),
                }
            }
            Command::Raw(_) => Ok(Response::Raw(data.to_vec())),
            Command::CloseSession => Ok(Response::SessionClosed),
        }
    }
}

/// The error for a non-zero completion code.
pub fn completion_error(code: u8) -> IpmiError {
    IpmiError::Completion {
        code,
        meaning: completion_meaning(code),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_flags_match_ipmitool_bytes() {
        assert_eq!(BootFlags::pxe_once(false).to_bytes(), [0x80, 0x04, 0, 0, 0]);
        assert_eq!(BootFlags::pxe_once(true).to_bytes(), [0xa0, 0x04, 0, 0, 0]);
        let persistent = BootFlags {
            persistent: true,
            ..BootFlags::pxe_once(false)
        };
        assert_eq!(persistent.to_bytes(), [0xc0, 0x04, 0, 0, 0]);
        // ipmi_sim's default, as `ipmitool chassis bootparam get 5` printed it: 0008000000.
        let f = BootFlags::from_bytes(&[0x00, 0x08, 0, 0, 0]).expect("parse");
        assert!(!f.valid && !f.efi && !f.persistent);
        assert_eq!(f.device, BootDevice::Disk);
    }

    #[test]
    fn chassis_status_and_device_id_parse() {
        let s = ChassisStatus::parse(&[0x21, 0x10, 0x00]).expect("parse");
        assert!(s.power_on && s.restore_policy == 1 && !s.intrusion);
        assert!(ChassisStatus::parse(&[1]).is_err());
        let d = DeviceId::parse(&[
            0x23, 0x89, 0x08, 0x09, 0x02, 0x9f, 0x91, 0x12, 0x00, 0x02, 0x0f,
        ])
        .expect("parse");
        assert_eq!(d.manufacturer_id, 0x1291);
        assert_eq!(d.product_id, 0x0f02);
        assert_eq!(d.ipmi_version, (2, 0));
        assert!(d.provides_sdrs);
        assert!(DeviceId::parse(&[0; 10]).is_err());
    }
}
