//! `rackboot machines …`: a small client of the admin API.

use crate::args::{BootModeArg, ClientArgs, MachinesCmd, Output, ProfilesCmd};
use anyhow::{Context, Result};
use serde_json::{json, Value};

pub struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    pub fn new(a: &ClientArgs) -> Result<Self> {
        let token = match (&a.token, &a.token_file) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(f)) => Some(
                std::fs::read_to_string(f)
                    .with_context(|| format!("cannot read token file {}", f.display()))?
                    .trim()
                    .to_string(),
            ),
            (None, None) => std::fs::read_to_string(a.data_dir.join("admin-token"))
                .ok()
                .map(|t| t.trim().to_string()),
        };
        let agent = ureq::AgentBuilder::new()
            .timeout(std::time::Duration::from_secs(30))
            .build();
        Ok(Self {
            base: a.server.trim_end_matches('/').to_string(),
            token,
            agent,
        })
    }

    /// A call whose success reply has no body (204).
    fn call_empty(&self, method: &str, path: &str) -> Result<()> {
        let url = format!("{}{}", self.base, path);
        let mut req = self.agent.request(method, &url);
        if let Some(t) = &self.token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        match req.call() {
            Ok(_) => Ok(()),
            Err(e) => Err(Self::refusal(e, &self.base)),
        }
    }

    fn refusal(e: ureq::Error, base: &str) -> anyhow::Error {
        match e {
            ureq::Error::Status(code, r) => {
                let msg = r
                    .into_json::<Value>()
                    .ok()
                    .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
                    .unwrap_or_default();
                anyhow::anyhow!("server refused ({code}): {msg}")
            }
            other => anyhow::anyhow!(other)
                .context(format!("cannot reach the rackboot server at {base}")),
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        let url = format!("{}{}", self.base, path);
        let mut req = self.agent.request(method, &url);
        if let Some(t) = &self.token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        let resp = match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        };
        match resp {
            Ok(r) => Ok(r.into_json().context("server sent invalid JSON")?),
            Err(e) => Err(Self::refusal(e, &self.base)),
        }
    }
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn lifecycle(c: &Client, machine: &str, action: &str, body: Value) -> Result<Value> {
    c.call(
        "POST",
        &format!("/api/v1/machines/{}/{action}", enc(machine)),
        Some(body),
    )
}

/// Run a `machines` subcommand; returns the process exit code.
pub fn machines(args: &ClientArgs, cmd: MachinesCmd) -> Result<i32> {
    let c = Client::new(args)?;
    let out = match cmd {
        MachinesCmd::List { watch: true } => loop {
            let v = c.call("GET", "/api/v1/machines", None)?;
            // Clear the screen and redraw (plain ANSI; no terminal library needed).
            print!("\x1b[2J\x1b[H");
            print(args.output, &v);
            std::thread::sleep(std::time::Duration::from_secs(2));
        },
        MachinesCmd::List { watch: false } => c.call("GET", "/api/v1/machines", None)?,
        MachinesCmd::Show { machine } => {
            c.call("GET", &format!("/api/v1/machines/{}", enc(&machine)), None)?
        }
        MachinesCmd::Remove { machine } => c.call(
            "DELETE",
            &format!("/api/v1/machines/{}", enc(&machine)),
            None,
        )?,
        MachinesCmd::Add {
            name,
            macs,
            uuid,
            bmc_url,
            bmc_user,
            bmc_password_file,
            bmc_insecure_tls,
        } => {
            let bmc = match bmc_url {
                Some(url) => {
                    let password = match bmc_password_file {
                        Some(f) => Some(
                            std::fs::read_to_string(&f)
                                .with_context(|| {
                                    format!("cannot read BMC password file {}", f.display())
                                })?
                                .trim_end_matches(['\n', '\r'])
                                .to_string(),
                        ),
                        None => None,
                    };
                    json!({"url": url, "username": bmc_user, "password": password, "insecure_tls": bmc_insecure_tls})
                }
                None => Value::Null,
            };
            let mut body = json!({"name": name, "macs": macs, "uuid": uuid});
            if !bmc.is_null() {
                body["bmc"] = bmc;
            }
            c.call("POST", "/api/v1/machines", Some(body))?
        }
        MachinesCmd::Boot {
            machine,
            mode,
            profile,
            url,
            disk_method,
            reason,
        } => {
            let body = match mode {
                BootModeArg::Agent => json!({"mode": "agent"}),
                BootModeArg::Profile => {
                    json!({"mode": "profile", "profile": profile.context("--profile is required with `profile`")?})
                }
                BootModeArg::Chain => {
                    json!({"mode": "chain", "url": url.context("--url is required with `chain`")?})
                }
                BootModeArg::Disk => json!({"mode": "disk", "method": disk_method}),
                BootModeArg::Cordon => json!({"mode": "cordoned", "reason": reason}),
            };
            c.call(
                "PUT",
                &format!("/api/v1/machines/{}/boot", enc(&machine)),
                Some(body),
            )?
        }
        MachinesCmd::Accept { machine } => lifecycle(&c, &machine, "accept", json!({}))?,
        MachinesCmd::Reject { machine } => lifecycle(&c, &machine, "reject", json!({}))?,
        MachinesCmd::Provision { machine, profile } => {
            lifecycle(&c, &machine, "provision", json!({"profile": profile}))?
        }
        MachinesCmd::Release { machine } => lifecycle(&c, &machine, "release", json!({}))?,
        MachinesCmd::Wipe { machine, full } => {
            lifecycle(&c, &machine, "wipe", json!({"full": full}))?
        }
        MachinesCmd::Cordon { machine, reason } => {
            lifecycle(&c, &machine, "cordon", json!({"reason": reason}))?
        }
        MachinesCmd::Uncordon { machine } => lifecycle(&c, &machine, "uncordon", json!({}))?,
    };
    print(args.output, &out);
    Ok(0)
}

/// `rackboot power ACTION MACHINE`: through the server and the machine's stored BMC.
pub fn power(args: &ClientArgs, action: &str, machine: &str, pxe: bool, efi: bool) -> Result<i32> {
    let c = Client::new(args)?;
    let body = json!({"action": action, "pxe": pxe, "efi": efi});
    let v = c.call(
        "POST",
        &format!("/api/v1/machines/{}/power", enc(machine)),
        Some(body),
    )?;
    if args.output != Output::Table {
        print(args.output, &v);
    } else {
        let power = v.get("power").and_then(Value::as_str).unwrap_or("unknown");
        let id = v.get("machine").and_then(Value::as_str).unwrap_or(machine);
        println!("{id}: power {action}: power is {power}");
    }
    Ok(0)
}

/// Run a `profiles` subcommand; returns the process exit code.
pub fn profiles(args: &ClientArgs, cmd: ProfilesCmd) -> Result<i32> {
    let c = Client::new(args)?;
    let out = match cmd {
        ProfilesCmd::List => c.call("GET", "/api/v1/profiles", None)?,
        ProfilesCmd::Remove { name } => {
            c.call_empty("DELETE", &format!("/api/v1/profiles/{}", enc(&name)))?;
            println!("removed profile {name}");
            return Ok(0);
        }
        ProfilesCmd::Set {
            name,
            kernel,
            initrds,
            cmdline,
            script_file,
        } => {
            let script = match script_file {
                Some(f) => Some(
                    std::fs::read_to_string(&f)
                        .with_context(|| format!("cannot read {}", f.display()))?,
                ),
                None => None,
            };
            let body = json!({"name": name, "kernel": kernel, "initrds": initrds, "cmdline": cmdline, "script": script});
            c.call(
                "PUT",
                &format!("/api/v1/profiles/{}", enc(&name)),
                Some(body),
            )?
        }
    };
    if args.output != Output::Table {
        print(args.output, &out);
    } else {
        for p in out.as_array().cloned().unwrap_or_else(|| vec![out.clone()]) {
            let s = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("-").to_string();
            let what = if p.get("script").is_some_and(|v| !v.is_null()) {
                "script".to_string()
            } else {
                s("kernel")
            };
            println!("{:<20} {what}  {}", s("name"), s("cmdline"));
        }
    }
    Ok(0)
}

/// YAML for a JSON value (block style; strings always quoted, so no YAML type surprises).
pub fn yaml(v: &Value, indent: usize, out: &mut String) {
    let pad = "  ".repeat(indent);
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, val) in m {
                match val {
                    Value::Object(o) if !o.is_empty() => {
                        out.push_str(&format!("{pad}{k}:\n"));
                        yaml(val, indent + 1, out);
                    }
                    Value::Array(a) if !a.is_empty() => {
                        out.push_str(&format!("{pad}{k}:\n"));
                        yaml(val, indent + 1, out);
                    }
                    scalar => out.push_str(&format!("{pad}{k}: {}\n", yaml_scalar(scalar))),
                }
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for item in a {
                match item {
                    Value::Object(o) if !o.is_empty() => {
                        let mut inner = String::new();
                        yaml(item, indent + 1, &mut inner);
                        let trimmed = inner.trim_start();
                        out.push_str(&format!("{pad}- {trimmed}"));
                    }
                    Value::Array(_) => {
                        out.push_str(&format!("{pad}-\n"));
                        yaml(item, indent + 1, out);
                    }
                    scalar => out.push_str(&format!("{pad}- {}\n", yaml_scalar(scalar))),
                }
            }
        }
        scalar => out.push_str(&format!("{pad}{}\n", yaml_scalar(scalar))),
    }
}

fn yaml_scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => serde_json::to_string(s).unwrap_or_default(),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

fn print(output: Output, v: &Value) {
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
        return;
    }
    if output == Output::Yaml {
        let mut s = String::new();
        yaml(v, 0, &mut s);
        print!("{s}");
        return;
    }
    let rows: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    let cols = ["ID", "NAME", "MACS", "STATE", "POWER", "BMC"];
    let table: Vec<[String; 6]> = rows
        .iter()
        .map(|m| {
            let s = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("-").to_string();
            let macs = m.get("macs").and_then(Value::as_array).map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(",")
            });
            let bmc = m
                .get("bmc")
                .and_then(|b| b.get("url"))
                .and_then(Value::as_str)
                .unwrap_or("-")
                .to_string();
            [
                s("id"),
                s("name"),
                macs.unwrap_or_default(),
                s("state"),
                s("power"),
                bmc,
            ]
        })
        .collect();
    let mut widths = cols.map(str::len);
    for r in &table {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    println!("{}", line(cols.to_vec()));
    for r in &table {
        println!("{}", line(r.iter().map(String::as_str).collect()));
    }
}
