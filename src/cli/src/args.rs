//! Command-line shape. Every `serve` flag is also a `RACKBOOT_*` variable and a config-file key
//! (the key is named in each flag's help); precedence: flag > env > file > default.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "rackboot",
    version,
    about = "Network-boot appliance for one rack segment"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run every service (ProxyDHCP, TFTP, boot HTTP, admin API).
    Serve(Box<ServeArgs>),
    /// Check a config file: exit 0, or 1 listing every problem with its key and line.
    CheckConfig { file: PathBuf },
    /// Machines in a running server's inventory.
    Machines {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        action: MachinesCmd,
    },
    /// Boot profiles (kernel + initrds + cmdline, or an iPXE script).
    Profiles {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        action: ProfilesCmd,
    },
    /// Power a machine through its stored BMC (via the running server).
    Power {
        #[command(flatten)]
        client: ClientArgs,
        #[arg(value_parser = ["on", "off", "cycle", "reset", "soft", "status"])]
        action: String,
        machine: String,
        /// Set PXE as the next boot device first (with on/cycle/reset).
        #[arg(long)]
        pxe: bool,
        /// With --pxe: UEFI PXE.
        #[arg(long)]
        efi: bool,
    },
    /// Talk to one BMC directly, without a server (an ipmitool/redfishtool replacement).
    Bmc(Box<BmcArgs>),
    /// Print the version.
    Version,
    /// Shell completions: `rackboot completions bash > /etc/bash_completion.d/rackboot`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// TOML config file.
    #[arg(long, env = "RACKBOOT_CONFIG")]
    pub config: Option<PathBuf>,
    /// State directory [key: data_dir].
    #[arg(long, env = "RACKBOOT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Provisioning NIC [key: interface].
    #[arg(long, env = "RACKBOOT_INTERFACE")]
    pub interface: Option<String>,
    /// Address the segment reaches us at [key: advertise_addr].
    #[arg(long, env = "RACKBOOT_ADVERTISE_ADDR")]
    pub advertise_addr: Option<String>,
    /// Boot assets directory [key: assets_dir].
    #[arg(long, env = "RACKBOOT_ASSETS_DIR")]
    pub assets_dir: Option<PathBuf>,
    /// Boot HTTP listen address [key: http.listen].
    #[arg(long, env = "RACKBOOT_BOOT_HTTP_LISTEN")]
    pub boot_http_listen: Option<String>,
    /// Admin listen address [key: admin.listen].
    #[arg(long, env = "RACKBOOT_ADMIN_LISTEN")]
    pub admin_listen: Option<String>,
    /// Admin token file [key: admin.token_file].
    #[arg(long, env = "RACKBOOT_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// TFTP listen address, or `off` [key: tftp.listen].
    #[arg(long, env = "RACKBOOT_TFTP_LISTEN")]
    pub tftp_listen: Option<String>,
    /// Serve TFTP transfers from the listening port [key: tftp.single_port].
    #[arg(long, env = "RACKBOOT_TFTP_SINGLE_PORT")]
    pub tftp_single_port: Option<bool>,
    /// `proxy` or `off` [key: dhcp.mode].
    #[arg(long, env = "RACKBOOT_DHCP_MODE")]
    pub dhcp_mode: Option<String>,
    /// DHCP port [key: dhcp.port].
    #[arg(long, env = "RACKBOOT_DHCP_PORT")]
    pub dhcp_port: Option<u16>,
    /// PXE (ProxyDHCP phase two) port [key: dhcp.pxe_port].
    #[arg(long, env = "RACKBOOT_PXE_PORT")]
    pub pxe_port: Option<u16>,
    /// `standalone` or `omni` [key: mode].
    #[arg(long, env = "RACKBOOT_MODE")]
    pub mode: Option<String>,
    /// Omni endpoint URL [key: omni.endpoint].
    #[arg(long, env = "RACKBOOT_OMNI_ENDPOINT")]
    pub omni_endpoint: Option<String>,
    /// Omni service account key file [key: omni.key_file].
    #[arg(long, env = "RACKBOOT_OMNI_KEY_FILE")]
    pub omni_key_file: Option<PathBuf>,
    /// Infrastructure provider id [key: omni.provider_id].
    #[arg(long, env = "RACKBOOT_PROVIDER_ID")]
    pub provider_id: Option<String>,
    /// Extra CA certificates (PEM) for Omni's TLS [key: omni.ca_file].
    #[arg(long, env = "RACKBOOT_OMNI_CA_FILE")]
    pub omni_ca_file: Option<PathBuf>,
    /// Do not verify Omni's TLS certificate (lab only) [key: omni.insecure_skip_verify].
    #[arg(long, env = "RACKBOOT_OMNI_INSECURE_SKIP_VERIFY")]
    pub omni_insecure_skip_verify: Option<bool>,
    /// Image Factory base URL [key: omni.image_factory_url].
    #[arg(long, env = "RACKBOOT_IMAGE_FACTORY_URL")]
    pub image_factory_url: Option<String>,
    /// Image Factory PXE base URL [key: omni.image_factory_pxe_url].
    #[arg(long, env = "RACKBOOT_IMAGE_FACTORY_PXE_URL")]
    pub image_factory_pxe_url: Option<String>,
    /// Talos install boots: `chain` (to the factory) or `cache` (served by rackboot)
    /// [key: omni.install_boot].
    #[arg(long, env = "RACKBOOT_OMNI_INSTALL_BOOT")]
    pub omni_install_boot: Option<String>,
    /// The discovery/wipe agent in Omni mode: `rackboot` or `talos` (Talos agent mode with the
    /// metal-agent extension) [key: omni.agent].
    #[arg(long, env = "RACKBOOT_OMNI_AGENT")]
    pub omni_agent: Option<String>,
    /// Talos version of the agent-mode boot [key: omni.agent_talos_version].
    #[arg(long, env = "RACKBOOT_OMNI_AGENT_TALOS_VERSION")]
    pub omni_agent_talos_version: Option<String>,
    /// `human` or `json` [key: log.format].
    #[arg(long, env = "RACKBOOT_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Log filter, e.g. `info` or `rackboot_server=debug` [key: log.level].
    #[arg(long, env = "RACKBOOT_LOG_LEVEL")]
    pub log_level: Option<String>,
}

#[derive(Args, Debug)]
pub struct ClientArgs {
    /// Admin API of the running server.
    #[arg(
        long,
        env = "RACKBOOT_SERVER",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub server: String,
    /// Admin token.
    #[arg(long, env = "RACKBOOT_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// File holding the admin token (default: <data-dir>/admin-token when readable).
    #[arg(long, env = "RACKBOOT_TOKEN_FILE", global = true)]
    pub token_file: Option<PathBuf>,
    /// Where to look for the default token file.
    #[arg(long, env = "RACKBOOT_DATA_DIR", global = true, default_value = rackboot_config::DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table, global = true)]
    pub output: Output,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
    Yaml,
}

#[derive(Subcommand, Debug)]
pub enum MachinesCmd {
    List {
        /// Redraw every 2 seconds until interrupted.
        #[arg(long)]
        watch: bool,
    },
    Show {
        machine: String,
    },
    Add {
        #[arg(long)]
        name: Option<String>,
        /// A MAC address (repeat for several NICs).
        #[arg(long = "mac")]
        macs: Vec<String>,
        #[arg(long)]
        uuid: Option<String>,
        #[arg(long)]
        bmc_url: Option<String>,
        #[arg(long)]
        bmc_user: Option<String>,
        /// File holding the BMC password (never pass it on the command line).
        #[arg(long)]
        bmc_password_file: Option<PathBuf>,
        #[arg(long)]
        bmc_insecure_tls: bool,
    },
    Remove {
        machine: String,
    },
    /// Set what the machine's boot script serves.
    Boot {
        machine: String,
        #[arg(value_enum)]
        mode: BootModeArg,
        /// With `profile`: the profile name.
        #[arg(long)]
        profile: Option<String>,
        /// With `chain`: the iPXE URL to chain to.
        #[arg(long)]
        url: Option<String>,
        /// With `disk`: exit | http404 | sanboot.
        #[arg(long, default_value = "exit")]
        disk_method: String,
        /// With `cordon`: why.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Accept a discovered machine: it is wiped, then parked powered off as available.
    Accept {
        machine: String,
    },
    /// Reject a machine: it boots from disk and is left alone.
    Reject {
        machine: String,
    },
    /// Provision an available machine with a boot profile (PXE-once + power on).
    Provision {
        machine: String,
        #[arg(long)]
        profile: String,
    },
    /// Release a provisioned machine: it is wiped and parked again.
    Release {
        machine: String,
    },
    /// Wipe an accepted machine's disks again.
    Wipe {
        machine: String,
        /// Zero the whole disks instead of signatures and the first/last MiB.
        #[arg(long)]
        full: bool,
    },
    /// Serve nothing to the machine (HTTP 404) and leave its power alone.
    Cordon {
        machine: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    Uncordon {
        machine: String,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootModeArg {
    Agent,
    Profile,
    Chain,
    Disk,
    Cordon,
}

#[derive(Subcommand, Debug)]
pub enum ProfilesCmd {
    List,
    /// Create or replace a profile.
    Set {
        name: String,
        /// Kernel: an http(s) URL or a path under the assets dir.
        #[arg(long)]
        kernel: Option<String>,
        /// An initrd (repeat for several).
        #[arg(long = "initrd")]
        initrds: Vec<String>,
        /// Kernel command line; may use ${uuid}, ${mac}, ${appliance}, ${machine}.
        #[arg(long, default_value = "")]
        cmdline: String,
        /// A file holding a raw iPXE script (instead of --kernel).
        #[arg(long)]
        script_file: Option<PathBuf>,
    },
    Remove {
        name: String,
    },
}

#[derive(Args, Debug)]
pub struct BmcArgs {
    /// ipmi://[USER[:PASS]@]HOST[:PORT], redfish://… (HTTPS) or redfish+http://…
    #[arg(long, env = "RACKBOOT_BMC_URL", hide_env_values = true)]
    pub url: String,
    /// Username (instead of the one in the URL).
    #[arg(long)]
    pub user: Option<String>,
    /// File holding the password (instead of the one in the URL).
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    /// Redfish over HTTPS: do not verify the BMC's certificate (self-signed BMCs).
    #[arg(long)]
    pub insecure_tls: bool,
    /// Redfish over HTTPS: PEM file of CA certificates to trust.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Redfish: leave BootSourceOverrideMode out of the PXE override.
    #[arg(long)]
    pub no_boot_mode: bool,
    /// How long power on/off may take to show (seconds).
    #[arg(long, default_value_t = 60)]
    pub verify_timeout: u64,
    #[command(subcommand)]
    pub action: BmcCmd,
}

#[derive(Subcommand, Debug)]
pub enum BmcCmd {
    /// Power: status, on, off, cycle, reset or soft.
    Power {
        #[arg(value_parser = ["status", "on", "off", "cycle", "reset", "soft"])]
        action: String,
    },
    /// Boot device override for the next boot (or every boot with --persistent).
    Bootdev {
        #[arg(value_parser = ["pxe"])]
        device: String,
        /// UEFI boot (EFI bit / BootSourceOverrideMode UEFI).
        #[arg(long)]
        efi: bool,
        #[arg(long)]
        persistent: bool,
    },
}
