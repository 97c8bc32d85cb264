//! The checked script templates of the boot modes the server hands out (see
//! [`rackboot_ipxe::Template`]): a boot storm's thousand `boot.ipxe` requests check the agent's
//! kernel, initrds and command line once, not once each.

use rackboot_ipxe::{BootMode, RenderError, Template};
use std::sync::{Arc, Mutex};

/// Modes remembered at a time (the agent, and a few operator profiles).
const SLOTS: usize = 16;

/// A mode, the appliance address it was checked for, and the outcome.
#[derive(Debug)]
pub struct Slot {
    mode: BootMode,
    appliance: String,
    pub template: Result<Template, RenderError>,
}

/// The last [`SLOTS`] modes with kernels and initrds.
#[derive(Debug, Default)]
pub struct Templates {
    slots: Mutex<(Vec<Arc<Slot>>, usize)>,
}

impl Templates {
    /// The template for `mode` at `appliance`: remembered for agent and profile modes, made
    /// afresh for the others (a chain URL or a cordon reason is per machine, and cheap).
    pub fn get(&self, mode: &BootMode, appliance: &str) -> Arc<Slot> {
        let made = |mode: &BootMode| {
            Arc::new(Slot {
                mode: mode.clone(),
                appliance: appliance.to_string(),
                template: Template::new(mode, appliance),
            })
        };
        if !matches!(mode, BootMode::Agent { .. } | BootMode::Profile { .. }) {
            return made(mode);
        }
        let mut guard = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let (slots, next) = &mut *guard;
        if let Some(s) = slots
            .iter()
            .find(|s| s.mode == *mode && s.appliance == appliance)
        {
            return s.clone();
        }
        let slot = made(mode);
        if slots.len() < SLOTS {
            slots.push(slot.clone());
        } else if let Some(old) = slots.get_mut(*next % SLOTS) {
            *old = slot.clone();
            *next = next.wrapping_add(1);
        }
        slot
    }

    #[cfg(test)]
    fn kept(&self) -> usize {
        self.slots.lock().map(|g| g.0.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(cmdline: &str) -> BootMode {
        BootMode::Agent {
            kernel: "agent/vmlinuz".into(),
            initrds: vec!["agent/initramfs.cpio.gz".into()],
            cmdline: cmdline.into(),
        }
    }

    #[test]
    fn a_mode_is_checked_once_until_it_changes() {
        let t = Templates::default();
        let a = t.get(&agent("console=ttyS0"), "10.0.0.1:50042");
        let b = t.get(&agent("console=ttyS0"), "10.0.0.1:50042");
        assert!(Arc::ptr_eq(&a, &b));
        // Omni's join arguments arrive: a new command line, a new template.
        let c = t.get(&agent("console=ttyS0 siderolink.api=x"), "10.0.0.1:50042");
        assert!(!Arc::ptr_eq(&a, &c));
        // Another address: URLs differ.
        let d = t.get(&agent("console=ttyS0"), "10.0.0.2:50042");
        assert!(!Arc::ptr_eq(&a, &d));
        assert_eq!(t.kept(), 3);
    }

    #[test]
    fn a_broken_mode_stays_broken_and_per_machine_modes_are_not_kept() {
        let t = Templates::default();
        assert!(t.get(&agent("a ; b"), "10.0.0.1:50042").template.is_err());
        for i in 0..40 {
            let chain = BootMode::Chain {
                url: format!("http://h/{i}"),
            };
            assert!(t.get(&chain, "10.0.0.1:50042").template.is_ok());
        }
        assert_eq!(t.kept(), 1);
    }

    #[test]
    fn at_most_slots_modes_are_kept() {
        let t = Templates::default();
        for i in 0..(SLOTS + 5) {
            let _ = t.get(&agent(&format!("n={i}")), "10.0.0.1:50042");
        }
        assert_eq!(t.kept(), SLOTS);
        // The newest is there.
        let last = agent(&format!("n={}", SLOTS + 4));
        let a = t.get(&last, "10.0.0.1:50042");
        assert!(Arc::ptr_eq(&a, &t.get(&last, "10.0.0.1:50042")));
    }
}
