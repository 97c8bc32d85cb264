//! A small iPXE script interpreter, sans-IO: enough of iPXE's language to follow what the boot
//! scripts say (labels, `goto`, `&&`/`||`, `set`/`isset`/`iseq`, `${…}` settings, `dhcp`,
//! `chain`, `kernel`, `initrd`, `boot`, `exit`, `sleep`, `reboot`, `sanboot`). Network commands
//! come out as [`Effect`]s; the client performs them and reports back with [`Interp::resume`]
//! (and [`Interp::push_script`] for a chained script). As in iPXE, a line whose final status is a
//! failure ends the script with that status.

use std::collections::HashMap;
use std::time::Duration;

/// What a fetched file is used as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FetchKind {
    /// `chain`: a script to run.
    Script,
    Kernel,
    Initrd,
}

/// Something the client must do before the script can go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// `dhcp [netX]` on the only NIC.
    Dhcp,
    Fetch {
        kind: FetchKind,
        url: String,
    },
    /// `boot` with a kernel loaded: the machine has booted.
    Boot,
    Sleep(Duration),
    /// The outermost script ended (`exit n` or its last line): back to the firmware.
    Exit(i32),
    Reboot,
    /// `sanboot`: boot from a local disk.
    Sanboot,
    Error(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    First,
    And,
    Or,
}

#[derive(Debug, Clone)]
struct Line {
    cmds: Vec<(Op, Vec<String>)>,
}

#[derive(Debug)]
struct Frame {
    lines: Vec<Line>,
    labels: HashMap<String, usize>,
    pc: usize,
    /// Inside a line: index of the next command and the last rc.
    at: Option<(usize, i32)>,
}

const MAX_STEPS: u32 = 100_000;

/// The interpreter: a stack of scripts (each `chain` pushes one).
#[derive(Debug)]
pub struct Interp {
    frames: Vec<Frame>,
    vars: HashMap<String, String>,
    kernel: bool,
    steps: u32,
    /// A script was fetched by `chain` and must be pushed before resuming.
    awaiting_chain: bool,
}

impl Interp {
    /// `vars` are the settings iPXE would have (`uuid`, `net0/mac`, `buildarch`, …).
    pub fn new(script: &str, vars: HashMap<String, String>) -> Interp {
        let mut i = Interp {
            frames: Vec::new(),
            vars,
            kernel: false,
            steps: 0,
            awaiting_chain: false,
        };
        i.frames.push(parse(script));
        i
    }

    pub fn set_var(&mut self, k: &str, v: &str) {
        self.vars.insert(k.to_string(), v.to_string());
    }

    /// Result of the last effect (0 = success).
    pub fn resume(&mut self, rc: i32) {
        self.awaiting_chain = false;
        if let Some(f) = self.frames.last_mut() {
            if let Some((i, _)) = f.at {
                f.at = Some((i, rc));
            }
        }
    }

    /// A `chain` fetched this script: run it; the `chain` command gets its exit code.
    pub fn push_script(&mut self, text: &str) {
        self.awaiting_chain = false;
        self.frames.push(parse(text));
    }

    /// Run until the next effect.
    pub fn run(&mut self) -> Effect {
        loop {
            self.steps += 1;
            if self.steps > MAX_STEPS {
                return Effect::Error("script runs too long".into());
            }
            let depth = self.frames.len();
            let Some(f) = self.frames.last_mut() else {
                return Effect::Exit(0);
            };
            // Start a line, or continue the one in progress.
            let (idx, rc) = match f.at {
                Some(x) => x,
                None => {
                    if f.pc >= f.lines.len() {
                        if let Some(e) = self.pop(0, depth) {
                            return e;
                        }
                        continue;
                    }
                    f.at = Some((0, 0));
                    (0, 0)
                }
            };
            let line = f.lines[f.pc].clone();
            let Some((op, words)) = line.cmds.get(idx) else {
                // iPXE ends a script at the first command line that fails (unless `||` caught it).
                f.at = None;
                f.pc += 1;
                if rc != 0 {
                    if let Some(e) = self.pop(rc, depth) {
                        return e;
                    }
                }
                continue;
            };
            let run_it = match op {
                Op::First => true,
                Op::And => rc == 0,
                Op::Or => rc != 0,
            };
            f.at = Some((idx + 1, rc));
            if !run_it {
                continue;
            }
            let words: Vec<String> = words.iter().map(|w| self.expand(w)).collect();
            match self.exec(&words) {
                Step::Rc(rc) => {
                    if let Some(f) = self.frames.last_mut() {
                        f.at = Some((idx + 1, rc));
                    }
                }
                Step::Jump => {}
                Step::Effect(e) => return e,
            }
        }
    }

    /// The current script exits with `rc`; returns an effect if that ends everything.
    fn pop(&mut self, rc: i32, depth: usize) -> Option<Effect> {
        self.frames.pop();
        if depth <= 1 {
            return Some(Effect::Exit(rc));
        }
        // Back in the caller: its `chain` command finished with `rc`.
        self.resume(rc);
        None
    }

    fn exec(&mut self, w: &[String]) -> Step {
        let Some(cmd) = w.first() else {
            // `foo ||` with nothing after: success.
            return Step::Rc(0);
        };
        let args: Vec<&str> = w[1..]
            .iter()
            .map(String::as_str)
            .filter(|a| !a.starts_with("--") && !matches!(*a, "-a" | "-r" | "-n"))
            .collect();
        let arg = |i: usize| args.get(i).copied().unwrap_or("");
        match cmd.as_str() {
            "echo" | "ifclose" | "ifopen" | "imgfree" | "imgstat" | "prompt" | "ifstat"
            | "route" | "cpuid" | "ntp" | "colour" | "cpair" | "console" => Step::Rc(0),
            "set" => {
                if args.is_empty() {
                    return Step::Rc(1);
                }
                self.vars.insert(arg(0).to_string(), args[1..].join(" "));
                Step::Rc(0)
            }
            "clear" => {
                self.vars.remove(arg(0));
                Step::Rc(0)
            }
            "isset" => Step::Rc(if arg(0).is_empty() { 1 } else { 0 }),
            "iseq" => Step::Rc(if arg(0) == arg(1) { 0 } else { 1 }),
            "goto" => self.goto(arg(0)),
            "exit" => {
                let rc = arg(0).parse().unwrap_or(0);
                let depth = self.frames.len();
                match self.pop(rc, depth) {
                    Some(e) => Step::Effect(e),
                    None => Step::Jump,
                }
            }
            "dhcp" | "ifconf" => {
                // Only net0 exists.
                if !arg(0).is_empty() && arg(0) != "net0" {
                    return Step::Rc(1);
                }
                Step::Effect(Effect::Dhcp)
            }
            "chain" => {
                self.awaiting_chain = true;
                fetch(FetchKind::Script, arg(0))
            }
            "kernel" | "imgselect" => fetch(FetchKind::Kernel, arg(0)),
            "initrd" | "module" | "imgfetch" => fetch(FetchKind::Initrd, arg(0)),
            "boot" | "imgexec" => {
                if self.kernel {
                    Step::Effect(Effect::Boot)
                } else {
                    Step::Rc(1)
                }
            }
            "sleep" => Step::Effect(Effect::Sleep(Duration::from_secs(
                arg(0).parse().unwrap_or(0),
            ))),
            "reboot" | "poweroff" => Step::Effect(Effect::Reboot),
            "sanboot" => Step::Effect(Effect::Sanboot),
            _ => Step::Rc(1),
        }
    }

    /// The client reports a kernel was loaded (so `boot` can succeed).
    pub fn kernel_loaded(&mut self) {
        self.kernel = true;
    }

    /// True while a `chain` fetch is outstanding.
    pub fn awaiting_chain(&self) -> bool {
        self.awaiting_chain
    }

    fn goto(&mut self, label: &str) -> Step {
        let Some(f) = self.frames.last_mut() else {
            return Step::Rc(1);
        };
        match f.labels.get(label) {
            Some(&pc) => {
                f.pc = pc;
                f.at = None;
                Step::Jump
            }
            None => Step::Rc(1),
        }
    }

    /// `${name}` / `${name:type}` expansion; unknown settings are empty.
    fn expand(&self, w: &str) -> String {
        let mut out = String::new();
        let mut rest = w;
        while let Some(i) = rest.find("${") {
            out.push_str(&rest[..i]);
            let after = &rest[i + 2..];
            let Some(j) = after.find('}') else {
                out.push_str(&rest[i..]);
                return out;
            };
            let inner = &after[..j];
            let (name, ty) = match inner.rsplit_once(':') {
                Some((n, t)) => (n, Some(t)),
                None => (inner, None),
            };
            let v = self.vars.get(name).cloned().unwrap_or_default();
            out.push_str(&match ty {
                Some("hexhyp") => v.replace(':', "-"),
                Some("hexraw") => v.replace(':', ""),
                _ => v,
            });
            rest = &after[j + 1..];
        }
        out.push_str(rest);
        out
    }
}

enum Step {
    Rc(i32),
    Jump,
    Effect(Effect),
}

fn fetch(kind: FetchKind, url: &str) -> Step {
    if url.is_empty() {
        return Step::Rc(1);
    }
    Step::Effect(Effect::Fetch {
        kind,
        url: url.to_string(),
    })
}

fn parse(text: &str) -> Frame {
    let mut lines = Vec::new();
    let mut labels = HashMap::new();
    for raw in text.lines() {
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        if let Some(label) = l.strip_prefix(':') {
            labels.insert(label.trim().to_string(), lines.len());
            continue;
        }
        let mut cmds = vec![(Op::First, Vec::new())];
        for tok in l.split_whitespace() {
            match tok {
                "&&" => cmds.push((Op::And, Vec::new())),
                "||" => cmds.push((Op::Or, Vec::new())),
                t => {
                    if let Some((_, words)) = cmds.last_mut() {
                        words.push(t.to_string());
                    }
                }
            }
        }
        lines.push(Line { cmds });
    }
    Frame {
        lines,
        labels,
        pc: 0,
        at: None,
    }
}

#[cfg(test)]
#[path = "tests/script.rs"]
mod tests;
