//! Scenarios: what the operator of a virtual rack does, one step a line, run against the rack's
//! admin API so the demo moves on its own and the e2e suite drives the same steps.
//!
//! ```text
//! # comments and blank lines are ignored; MACHINES is `all` or names (r1-u01 r1-u03)
//! accept MACHINES
//! provision MACHINES PROFILE
//! release MACHINES
//! wait MACHINES STATE[/POWER] [TIMEOUT_SECS]     e.g. wait all available/off 600
//! console MACHINES TEXT... [within SECS]         serial console shows TEXT ({uuid} {name} {mac})
//! sleep SECS
//! ```
//!
//! `wait` fails early when a machine lands in `error` (unless that is what it waits for).
//! `console` only looks at what the console printed since the last action on that machine.

use crate::admin::AdminError;
use crate::rack::Rack;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    All,
    Named(Vec<String>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Accept(Target),
    Provision(Target, String),
    Release(Target),
    Wait {
        target: Target,
        state: String,
        power: Option<String>,
        timeout: Duration,
    },
    Console {
        target: Target,
        text: String,
        timeout: Duration,
    },
    Sleep(Duration),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scenario {
    /// (line number, step)
    pub steps: Vec<(usize, Step)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("scenario line {line}: {message}")]
    Parse { line: usize, message: String },
    #[error("scenario line {line}: no machine named {name:?} in this rack")]
    UnknownMachine { line: usize, name: String },
    #[error("scenario line {line}: {source}")]
    Api {
        line: usize,
        #[source]
        source: AdminError,
    },
    #[error("scenario line {line}: {machine} went to error: {reason}")]
    MachineError {
        line: usize,
        machine: String,
        reason: String,
    },
    #[error("scenario line {line}: timed out after {secs} s: {detail}")]
    Timeout {
        line: usize,
        secs: u64,
        detail: String,
    },
    #[error("stopped")]
    Stopped,
}

const STATES: &[&str] = &[
    "registered",
    "discovered",
    "wiping",
    "available",
    "provisioning",
    "provisioned",
    "releasing",
    "cordoned",
    "rejected",
    "error",
];

fn secs(line: usize, s: &str) -> Result<Duration, ScenarioError> {
    s.parse::<u64>()
        .ok()
        .filter(|n| *n <= 86_400)
        .map(Duration::from_secs)
        .ok_or_else(|| ScenarioError::Parse {
            line,
            message: format!("{s:?} is not a number of seconds (0..=86400)"),
        })
}

fn target(words: &[&str]) -> Target {
    if words == ["all"] {
        Target::All
    } else {
        Target::Named(words.iter().map(|w| w.to_string()).collect())
    }
}

impl Scenario {
    pub fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        let mut steps = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let l = raw.split('#').next().unwrap_or("").trim();
            if l.is_empty() {
                continue;
            }
            let words: Vec<&str> = l.split_whitespace().collect();
            let err = |message: &str| ScenarioError::Parse {
                line,
                message: format!("{message}: {l:?}"),
            };
            let (verb, args) = (words[0], &words[1..]);
            let step = match verb {
                "accept" | "release" if !args.is_empty() => {
                    if verb == "accept" {
                        Step::Accept(target(args))
                    } else {
                        Step::Release(target(args))
                    }
                }
                "provision" if args.len() >= 2 => {
                    let (machines, profile) = args.split_at(args.len() - 1);
                    Step::Provision(target(machines), profile[0].to_string())
                }
                "wait" if args.len() >= 2 => {
                    let (args, timeout) = match args.last().map(|a| a.parse::<u64>()) {
                        Some(Ok(_)) => (&args[..args.len() - 1], secs(line, args[args.len() - 1])?),
                        _ => (args, Duration::from_secs(600)),
                    };
                    let Some((state_word, machines)) = args.split_last() else {
                        return Err(err("wait needs machines and a state"));
                    };
                    if machines.is_empty() {
                        return Err(err("wait needs machines and a state"));
                    }
                    let (state, power) = match state_word.split_once('/') {
                        Some((s, p)) => (s, Some(p)),
                        None => (*state_word, None),
                    };
                    if !STATES.contains(&state) {
                        return Err(err(&format!("unknown state {state:?}")));
                    }
                    if power.is_some_and(|p| !["on", "off", "unknown"].contains(&p)) {
                        return Err(err("power is on, off or unknown"));
                    }
                    Step::Wait {
                        target: target(machines),
                        state: state.to_string(),
                        power: power.map(str::to_string),
                        timeout,
                    }
                }
                "console" if args.len() >= 2 => {
                    let (args, timeout) = match args {
                        [rest @ .., "within", n] => (rest, secs(line, n)?),
                        _ => (args, Duration::from_secs(300)),
                    };
                    let Some((machine, text)) = args.split_first() else {
                        return Err(err("console needs a machine and a text"));
                    };
                    if text.is_empty() {
                        return Err(err("console needs a machine and a text"));
                    }
                    Step::Console {
                        target: target(&[machine]),
                        text: text.join(" "),
                        timeout,
                    }
                }
                "sleep" if args.len() == 1 => Step::Sleep(secs(line, args[0])?),
                _ => return Err(err("unknown or incomplete step")),
            };
            steps.push((line, step));
        }
        Ok(Scenario { steps })
    }

    /// The demo `make run` plays on a rack of `n` servers: accept every machine (each is
    /// PXE-booted into the agent, inspected, wiped and parked), provision the first and (if
    /// there is one) the Redfish-managed third with the demo profile, then release the first.
    pub fn demo(n: usize) -> Scenario {
        let mut s = String::from("accept all\nwait all available/off 900\nprovision r1-u01 demo\n");
        if n >= 3 {
            s.push_str("provision r1-u03 demo\nwait r1-u03 provisioned 600\n");
        }
        s.push_str("wait r1-u01 provisioned 600\nsleep 30\nrelease r1-u01\nwait r1-u01 available/off 900\n");
        // The text above always parses.
        Scenario::parse(&s).unwrap_or(Scenario { steps: vec![] })
    }
}

/// Runs a scenario against a rack, printing progress (state changes of the machines a step
/// waits for) through `log`, and giving up when `stop` says so.
pub struct Runner<'a> {
    rack: &'a Rack,
    stop: &'a dyn Fn() -> bool,
    log: &'a mut dyn FnMut(&str),
    /// Console length per machine at its last action: `console` looks only at what follows.
    console_mark: HashMap<String, usize>,
    seen: HashMap<String, String>,
}

impl<'a> Runner<'a> {
    pub fn new(rack: &'a Rack, stop: &'a dyn Fn() -> bool, log: &'a mut dyn FnMut(&str)) -> Self {
        Self {
            rack,
            stop,
            log,
            console_mark: HashMap::new(),
            seen: HashMap::new(),
        }
    }

    pub fn run(&mut self, scenario: &Scenario) -> Result<(), ScenarioError> {
        for (line, step) in &scenario.steps {
            if (self.stop)() {
                return Err(ScenarioError::Stopped);
            }
            self.step(*line, step)?;
        }
        Ok(())
    }

    fn names(&self, line: usize, t: &Target) -> Result<Vec<String>, ScenarioError> {
        match t {
            Target::All => Ok(self.rack.servers.iter().map(|s| s.name.clone()).collect()),
            Target::Named(names) => {
                for n in names {
                    if self.rack.server(n).is_none() {
                        return Err(ScenarioError::UnknownMachine {
                            line,
                            name: n.clone(),
                        });
                    }
                }
                Ok(names.clone())
            }
        }
    }

    fn act(
        &mut self,
        line: usize,
        t: &Target,
        action: &str,
        body: Value,
    ) -> Result<(), ScenarioError> {
        for name in self.names(line, t)? {
            if let Some(s) = self.rack.server(&name) {
                self.console_mark.insert(name.clone(), s.console().len());
            }
            let m = self
                .rack
                .admin
                .post(&format!("/api/v1/machines/{name}/{action}"), &body)
                .map_err(|source| ScenarioError::Api { line, source })?;
            let state = m["state"].as_str().unwrap_or("?");
            (self.log)(&format!("{name}: {action} → {state}"));
            self.seen.insert(name, state.to_string());
        }
        Ok(())
    }

    fn step(&mut self, line: usize, step: &Step) -> Result<(), ScenarioError> {
        match step {
            Step::Accept(t) => self.act(line, t, "accept", json!({})),
            Step::Release(t) => self.act(line, t, "release", json!({})),
            Step::Provision(t, profile) => {
                self.act(line, t, "provision", json!({ "profile": profile }))
            }
            Step::Sleep(d) => {
                let end = Instant::now() + *d;
                while Instant::now() < end {
                    if (self.stop)() {
                        return Err(ScenarioError::Stopped);
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                Ok(())
            }
            Step::Wait {
                target,
                state,
                power,
                timeout,
            } => self.wait(line, target, state, power.as_deref(), *timeout),
            Step::Console {
                target,
                text,
                timeout,
            } => self.console(line, target, text, *timeout),
        }
    }

    fn wait(
        &mut self,
        line: usize,
        t: &Target,
        state: &str,
        power: Option<&str>,
        timeout: Duration,
    ) -> Result<(), ScenarioError> {
        let names = self.names(line, t)?;
        let start = Instant::now();
        loop {
            let mut pending = Vec::new();
            for name in &names {
                let m = self
                    .rack
                    .machine(name)
                    .map_err(|source| ScenarioError::Api { line, source })?;
                let now_state = m["state"].as_str().unwrap_or("?").to_string();
                let now_power = m["power"].as_str().unwrap_or("?").to_string();
                let shown = format!("{now_state}/{now_power}");
                if self.seen.get(name) != Some(&shown) {
                    (self.log)(&format!(
                        "{name}: {shown}  (+{} s)",
                        start.elapsed().as_secs()
                    ));
                    self.seen.insert(name.clone(), shown.clone());
                }
                if now_state == "error" && state != "error" {
                    let reason = m["state_reason"]
                        .as_str()
                        .unwrap_or("no reason given")
                        .to_string();
                    return Err(ScenarioError::MachineError {
                        line,
                        machine: name.clone(),
                        reason,
                    });
                }
                if now_state != state || power.is_some_and(|p| p != now_power) {
                    pending.push(format!("{name} is {shown}"));
                }
            }
            if pending.is_empty() {
                return Ok(());
            }
            if start.elapsed() > timeout {
                return Err(ScenarioError::Timeout {
                    line,
                    secs: timeout.as_secs(),
                    detail: format!(
                        "waiting for {state}{}: {}",
                        power.map(|p| format!("/{p}")).unwrap_or_default(),
                        pending.join(", ")
                    ),
                });
            }
            for _ in 0..5 {
                if (self.stop)() {
                    return Err(ScenarioError::Stopped);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }

    fn console(
        &mut self,
        line: usize,
        t: &Target,
        text: &str,
        timeout: Duration,
    ) -> Result<(), ScenarioError> {
        let start = Instant::now();
        for name in self.names(line, t)? {
            let Some(s) = self.rack.server(&name) else {
                continue;
            };
            let needle = text
                .replace("{uuid}", &s.uuid)
                .replace("{name}", &s.name)
                .replace("{mac}", &s.mac);
            let mark = self.console_mark.get(&name).copied().unwrap_or(0);
            loop {
                let c = s.console();
                if c.get(mark..).is_some_and(|tail| tail.contains(&needle)) {
                    (self.log)(&format!("{name}: console shows {needle:?}"));
                    break;
                }
                if start.elapsed() > timeout {
                    return Err(ScenarioError::Timeout {
                        line,
                        secs: timeout.as_secs(),
                        detail: format!("{name}'s console never showed {needle:?}"),
                    });
                }
                if (self.stop)() {
                    return Err(ScenarioError::Stopped);
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_step() {
        let s = Scenario::parse(
            "# demo\naccept all\n\nwait r1-u01 r1-u02 available/off 300\nprovision r1-u01 demo\n\
             console r1-u01 demo.machine={uuid} within 90\nsleep 5\nrelease r1-u02\nwait all error\n",
        )
        .unwrap();
        let steps: Vec<&Step> = s.steps.iter().map(|(_, s)| s).collect();
        assert_eq!(steps[0], &Step::Accept(Target::All));
        assert_eq!(
            steps[1],
            &Step::Wait {
                target: Target::Named(vec!["r1-u01".into(), "r1-u02".into()]),
                state: "available".into(),
                power: Some("off".into()),
                timeout: Duration::from_secs(300)
            }
        );
        assert_eq!(
            steps[2],
            &Step::Provision(Target::Named(vec!["r1-u01".into()]), "demo".into())
        );
        assert_eq!(
            steps[3],
            &Step::Console {
                target: Target::Named(vec!["r1-u01".into()]),
                text: "demo.machine={uuid}".into(),
                timeout: Duration::from_secs(90)
            }
        );
        assert_eq!(steps[4], &Step::Sleep(Duration::from_secs(5)));
        assert_eq!(
            steps[6],
            &Step::Wait {
                target: Target::All,
                state: "error".into(),
                power: None,
                timeout: Duration::from_secs(600)
            }
        );
        assert_eq!(
            s.steps[1].0, 4,
            "line numbers count blank and comment lines"
        );
    }

    #[test]
    fn rejects_bad_lines_with_their_number() {
        for (text, line) in [
            ("accept", 1),
            ("accept all\nfly r1-u01", 2),
            ("wait all", 1),
            ("wait all sleeping", 1),
            ("wait all available/maybe", 1),
            ("sleep soon", 1),
            ("sleep 99999999", 1),
            ("provision r1-u01", 1),
            ("console r1-u01", 1),
        ] {
            match Scenario::parse(text) {
                Err(ScenarioError::Parse { line: l, .. }) => assert_eq!(l, line, "{text}"),
                other => panic!("{text:?} parsed: {other:?}"),
            }
        }
    }

    #[test]
    fn the_demo_parses_for_every_size() {
        for n in 1..=6 {
            let d = Scenario::demo(n);
            assert!(d.steps.len() >= 6, "{n}: {d:?}");
            let provisions = d
                .steps
                .iter()
                .filter(|(_, s)| matches!(s, Step::Provision(..)))
                .count();
            assert_eq!(provisions, if n >= 3 { 2 } else { 1 });
        }
    }
}
