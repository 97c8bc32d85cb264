//! The `rackboot` command: `serve`, `check-config`, and clients of a running server.

mod args;
mod bmc;
mod client;
mod serve;

use args::{Cli, Command};
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Completions { shell } => {
            use clap::CommandFactory;
            use std::io::Write;
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "rackboot", &mut buf);
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = std::io::stdout().write_all(&buf);
            Ok(0)
        }
        Command::Version => {
            println!("rackboot {}", env!("CARGO_PKG_VERSION"));
            Ok(0)
        }
        Command::CheckConfig { file } => Ok(serve::check_config(&file)),
        Command::Serve(a) => serve::serve(*a),
        Command::Machines { client, action } => client::machines(&client, action),
        Command::Profiles { client, action } => client::profiles(&client, action),
        Command::Power {
            client,
            action,
            machine,
            pxe,
            efi,
        } => client::power(&client, &action, &machine, pxe, efi),
        Command::Bmc(a) => bmc::run(*a),
    };
    match code {
        Ok(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
        Err(e) => {
            eprintln!("rackboot: {e:#}");
            ExitCode::from(1)
        }
    }
}
