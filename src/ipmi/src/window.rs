//! Inbound session sequence number acceptance (replay / reorder window).

/// Sliding acceptance window for inbound session sequence numbers: up to `WINDOW - 1` behind the
/// highest seen (each at most once) and up to `WINDOW` ahead.
#[derive(Debug, Clone, Default)]
pub(crate) struct SeqWindow {
    highest: u32,
    seen: u32,
}

const WINDOW: u32 = 16;

impl SeqWindow {
    pub(crate) fn accept(&mut self, seq: u32) -> bool {
        if seq == 0 {
            return false;
        }
        if self.highest == 0 {
            self.highest = seq;
            self.seen = 1;
            return true;
        }
        if seq > self.highest {
            let d = seq - self.highest;
            if d > WINDOW {
                return false;
            }
            self.seen = if d >= 32 { 0 } else { self.seen << d } | 1;
            self.highest = seq;
            return true;
        }
        let d = self.highest - seq;
        if d >= WINDOW || self.seen & (1 << d) != 0 {
            return false;
        }
        self.seen |= 1 << d;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_accepts_forward_rejects_replay_and_far() {
        let mut w = SeqWindow::default();
        assert!(!w.accept(0));
        assert!(w.accept(5));
        assert!(!w.accept(5));
        assert!(w.accept(7));
        assert!(w.accept(6));
        assert!(!w.accept(6));
        assert!(!w.accept(7 + WINDOW + 1));
        assert!(w.accept(7 + WINDOW));
        assert!(!w.accept(7));
        assert!(w.accept(7 + WINDOW - 3));
    }
}
