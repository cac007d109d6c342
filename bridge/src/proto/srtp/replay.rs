//! Sliding replay window (RFC 3711 section 3.3.2), one per SSRC and direction.

use super::SrtpError;

/// Packets this far behind the highest accepted index are still accepted once.
pub(super) const REPLAY_WINDOW: u64 = 128;

/// The highest accepted index and which of the 127 indices below it were accepted.
///
/// The all-zero value is "nothing accepted yet": its bit 0 (index 0) is clear, so the
/// first packet, whatever its index, passes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct ReplayWindow {
    highest: u64,
    /// Bit `n` set: index `highest - n` was accepted.
    seen: u128,
}

impl ReplayWindow {
    /// The empty window, usable in `const fn`s.
    pub(super) const fn default_const() -> Self {
        Self {
            highest: 0,
            seen: 0,
        }
    }

    /// The highest accepted index (0 before any).
    pub(super) fn highest(&self) -> u64 {
        self.highest
    }

    /// Whether `index` may be accepted. Does not change the window: call
    /// [`accept`](Self::accept) once the packet has been authenticated.
    pub(super) fn check(&self, index: u64) -> Result<(), SrtpError> {
        let Some(behind) = self.highest.checked_sub(index) else {
            return Ok(());
        };
        if behind >= REPLAY_WINDOW || (self.seen >> behind) & 1 == 1 {
            return Err(SrtpError::Replay);
        }
        Ok(())
    }

    /// Records `index` as accepted, moving the window forward if it is the new highest.
    pub(super) fn accept(&mut self, index: u64) {
        match index.checked_sub(self.highest) {
            Some(0) => self.seen |= 1,
            Some(ahead) => {
                self.seen = if ahead >= REPLAY_WINDOW {
                    0
                } else {
                    self.seen << ahead
                };
                self.seen |= 1;
                self.highest = index;
            }
            None => {
                let behind = self.highest - index;
                if behind < REPLAY_WINDOW {
                    self.seen |= 1 << behind;
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn first_packet_passes_whatever_its_index() {
        for first in [0, 1, 500, u64::from(u32::MAX) << 16] {
            let mut w = ReplayWindow::default();
            assert_eq!(w.check(first), Ok(()));
            w.accept(first);
            assert_eq!(w.check(first), Err(SrtpError::Replay));
        }
    }

    #[test]
    fn window_accepts_reordering_and_rejects_duplicates_and_old() {
        let mut w = ReplayWindow::default();
        w.accept(1000);
        for i in 1000 - 127..1000 {
            assert_eq!(w.check(i), Ok(()), "{i}");
        }
        assert_eq!(w.check(1000 - 128), Err(SrtpError::Replay));
        w.accept(990);
        assert_eq!(w.check(990), Err(SrtpError::Replay));
        w.accept(1100);
        assert_eq!(w.check(990), Err(SrtpError::Replay));
        assert_eq!(w.check(1000), Err(SrtpError::Replay));
        assert_eq!(w.check(999), Ok(()));
        assert_eq!(w.check(1100 - 128), Err(SrtpError::Replay));
        // A jump larger than the window forgets everything below.
        w.accept(5000);
        assert_eq!(w.check(4999), Ok(()));
        assert_eq!(w.check(1100), Err(SrtpError::Replay));
        assert_eq!(w.highest(), 5000);
    }

    #[test]
    fn check_does_not_change_the_window() {
        let mut w = ReplayWindow::default();
        w.accept(10);
        let before = w;
        assert_eq!(w.check(11), Ok(()));
        assert_eq!(w.check(9), Ok(()));
        assert_eq!(w, before);
    }
}
