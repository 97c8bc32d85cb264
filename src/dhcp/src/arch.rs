//! The boot-file table: client system architecture (DHCP option 93, IANA
//! "Processor Architecture Types" registry, not RFC 4578's short list) → boot file.
//!
//! This is the ONE place that maps an architecture to what it boots. It is a
//! plain `static` slice so documentation and tests can print it (see
//! [`BOOT_TABLE`] and the `Display` impl of [`ArchRow`]).
//!
//! Rows whose `file` is `None` are architectures we recognise by name but have
//! no default binary for (EFI IA32, ARM32 EFI, x86 UEFI HTTP): a client of that
//! kind is ignored as `UnknownArch` unless the operator configures a per-arch
//! override (`ProxyConfig::with_file_override`). We do not ship 32-bit iPXE
//! builds, so guessing a file name there would only produce a TFTP "file not
//! found" late in the boot instead of a clear metric now.
//!
//! Clients already running iPXE never use this table: they get the boot script
//! URL (chainload loop breaking, see the crate docs).

use std::fmt;

/// Boot file as written in the table, before the advertise address is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableFile {
    /// Path relative to the TFTP root. Sent with option 66 and the `sname`
    /// header set to the advertise address.
    Tftp(&'static str),
    /// Path on the appliance's HTTP server. Sent as
    /// `http://<advertise>:<http_port><path>`, with no option 66 / `sname`.
    Http(&'static str),
}

/// One row of [`BOOT_TABLE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchRow {
    /// Option 93 values this row covers.
    pub codes: &'static [u16],
    /// Human-readable IANA name.
    pub name: &'static str,
    /// Default boot file, or `None` when the architecture needs an override.
    pub file: Option<TableFile>,
}

/// The declarative arch → boot file table.
pub static BOOT_TABLE: &[ArchRow] = &[
    ArchRow {
        codes: &[0],
        name: "x86 BIOS",
        file: Some(TableFile::Tftp("undionly.kpxe")),
    },
    ArchRow {
        codes: &[6],
        name: "EFI IA32",
        file: None,
    },
    ArchRow {
        codes: &[7, 9],
        name: "EFI x86-64 / EFI BC",
        file: Some(TableFile::Tftp("ipxe.efi")),
    },
    ArchRow {
        codes: &[10],
        name: "ARM32 EFI",
        file: None,
    },
    ArchRow {
        codes: &[11],
        name: "ARM64 EFI",
        file: Some(TableFile::Tftp("arm64/ipxe.efi")),
    },
    ArchRow {
        codes: &[15],
        name: "x86 UEFI HTTP",
        file: None,
    },
    ArchRow {
        codes: &[16],
        name: "x86-64 UEFI HTTP",
        file: Some(TableFile::Http("/tftp/x86_64/ipxe.efi")),
    },
    ArchRow {
        codes: &[19],
        name: "ARM64 UEFI HTTP",
        file: Some(TableFile::Http("/tftp/arm64/ipxe.efi")),
    },
    ArchRow {
        codes: &[22],
        name: "ARM64 U-Boot",
        file: Some(TableFile::Tftp("arm64/ipxe.efi")),
    },
    ArchRow {
        codes: &[24],
        name: "ARM64 U-Boot HTTP",
        file: Some(TableFile::Http("/tftp/arm64/ipxe.efi")),
    },
];

/// HTTP path of the iPXE boot script that already-iPXE clients receive.
pub const IPXE_SCRIPT_PATH: &str = "/ipxe/init.ipxe";

/// The table row covering `arch`, if any.
pub fn row_for(arch: u16) -> Option<&'static ArchRow> {
    BOOT_TABLE.iter().find(|row| row.codes.contains(&arch))
}

/// IANA name of `arch` when it is in the table.
pub fn arch_name(arch: u16) -> Option<&'static str> {
    row_for(arch).map(|row| row.name)
}

impl fmt::Display for TableFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TableFile::Tftp(path) => write!(f, "tftp {path}"),
            TableFile::Http(path) => write!(f, "http://<advertise>:<http_port>{path} (HTTPClient)"),
        }
    }
}

impl fmt::Display for ArchRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let codes: Vec<String> = self.codes.iter().map(u16::to_string).collect();
        write!(f, "{:<6} {:<20} ", codes.join(","), self.name)?;
        match &self.file {
            Some(file) => write!(f, "{file}"),
            None => f.write_str("(ignored as UnknownArch unless overridden)"),
        }
    }
}
