//! Timers as quinn-proto keeps them: every object owns a small [`TimerTable`] of
//! named deadlines and says when it next needs time; the shard keeps one
//! [`TimerHeap`] of (deadline, object) entries, so finding the next deadline never
//! scans every object.
//!
//! The heap holds at most one *live* entry per object: the deadline the shard last
//! scheduled for it ([`Scheduled`]). An object whose deadline moved later keeps
//! its earlier entry (it fires, finds nothing due and is rescheduled); one whose
//! deadline moved earlier gets a new entry, and the old one goes stale. Stale
//! entries (the object is gone, which the generational key tells, or its
//! scheduled deadline differs) are skipped when they reach the top.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// A named timer of one kind of object: an index into its [`TimerTable`].
pub trait TimerName: Copy {
    /// Number of distinct timers.
    const COUNT: usize;
    /// This timer's index, below [`TimerName::COUNT`].
    fn index(self) -> usize;
    /// The timer at `index`.
    fn from_index(index: usize) -> Self;
}

/// The deadlines of one object, one per [`TimerName`]; `N` must be `T::COUNT`.
#[derive(Debug, Clone, Copy)]
pub struct TimerTable<T, const N: usize> {
    deadlines: [Option<Instant>; N],
    _names: std::marker::PhantomData<T>,
}

impl<T: TimerName, const N: usize> Default for TimerTable<T, N> {
    fn default() -> Self {
        Self {
            deadlines: [None; N],
            _names: std::marker::PhantomData,
        }
    }
}

impl<T: TimerName, const N: usize> TimerTable<T, N> {
    /// Arms `timer` for `at`, replacing any earlier setting.
    pub fn set(&mut self, timer: T, at: Instant) {
        if let Some(d) = self.deadlines.get_mut(timer.index()) {
            *d = Some(at);
        }
    }

    /// Arms `timer` for `at` unless it is already armed earlier.
    pub fn set_earliest(&mut self, timer: T, at: Instant) {
        if let Some(d) = self.deadlines.get_mut(timer.index()) {
            *d = Some(d.map_or(at, |t| t.min(at)));
        }
    }

    /// Disarms `timer`.
    pub fn stop(&mut self, timer: T) {
        if let Some(d) = self.deadlines.get_mut(timer.index()) {
            *d = None;
        }
    }

    /// When `timer` fires, if armed.
    pub fn get(&self, timer: T) -> Option<Instant> {
        self.deadlines.get(timer.index()).copied().flatten()
    }

    /// Whether `timer` is armed and due at `now`.
    pub fn is_expired(&self, timer: T, now: Instant) -> bool {
        self.get(timer).is_some_and(|t| now >= t)
    }

    /// Disarms and returns the first timer due at `now`, if any.
    pub fn take_expired(&mut self, now: Instant) -> Option<T> {
        let i = self
            .deadlines
            .iter()
            .position(|d| d.is_some_and(|t| now >= t))?;
        self.deadlines[i] = None;
        Some(T::from_index(i))
    }

    /// The earliest armed deadline.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }
}

/// What the shard last scheduled for one object (kept on the object).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scheduled(pub Option<Instant>);

impl Scheduled {
    /// Whether an object whose next deadline is `next` needs a new heap entry;
    /// records `next` as scheduled when it does.
    pub fn update(&mut self, next: Option<Instant>) -> Option<Instant> {
        let next = next?;
        if self.0.is_some_and(|t| t <= next) {
            return None;
        }
        self.0 = Some(next);
        Some(next)
    }

    /// Whether a heap entry for `at` is this object's live one; clears it if so
    /// (the object is about to be handled and rescheduled).
    pub fn fire(&mut self, at: Instant) -> bool {
        if self.0 == Some(at) {
            self.0 = None;
            true
        } else {
            false
        }
    }
}

/// Min-heap of (deadline, object) for a whole shard.
#[derive(Debug)]
pub struct TimerHeap<K: Ord + Copy> {
    heap: BinaryHeap<Reverse<(Instant, K)>>,
}

impl<K: Ord + Copy> Default for TimerHeap<K> {
    fn default() -> Self {
        Self {
            heap: BinaryHeap::new(),
        }
    }
}

impl<K: Ord + Copy> TimerHeap<K> {
    /// Adds an entry.
    pub fn push(&mut self, at: Instant, key: K) {
        self.heap.push(Reverse((at, key)));
    }

    /// The earliest deadline (possibly of a stale entry).
    pub fn peek(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((t, _))| *t)
    }

    /// Removes and returns the earliest entry if it is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, K)> {
        if self.peek()? > now {
            return None;
        }
        self.heap.pop().map(|Reverse(e)| e)
    }

    /// Removes the top entry (a stale one, say).
    pub fn pop(&mut self) -> Option<(Instant, K)> {
        self.heap.pop().map(|Reverse(e)| e)
    }

    /// The earliest entry, without removing it.
    pub fn peek_entry(&self) -> Option<(Instant, K)> {
        self.heap.peek().map(|Reverse(e)| *e)
    }

    /// Number of entries, stale ones included.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Drops every entry.
    pub fn clear(&mut self) {
        self.heap.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum T {
        A,
        B,
    }
    impl TimerName for T {
        const COUNT: usize = 2;
        fn index(self) -> usize {
            self as usize
        }
        fn from_index(i: usize) -> Self {
            if i == 0 { T::A } else { T::B }
        }
    }

    #[test]
    fn table_reports_earliest_and_takes_expired_once() {
        let t0 = Instant::now();
        let mut t: TimerTable<T, 2> = TimerTable::default();
        assert_eq!(t.next_timeout(), None);
        t.set(T::B, t0 + Duration::from_secs(2));
        t.set(T::A, t0 + Duration::from_secs(5));
        t.set_earliest(T::A, t0 + Duration::from_secs(1));
        t.set_earliest(T::A, t0 + Duration::from_secs(9));
        assert_eq!(t.next_timeout(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(t.take_expired(t0), None);
        assert_eq!(t.take_expired(t0 + Duration::from_secs(3)), Some(T::A));
        assert_eq!(t.take_expired(t0 + Duration::from_secs(3)), Some(T::B));
        assert_eq!(t.take_expired(t0 + Duration::from_secs(3)), None);
        assert_eq!(t.next_timeout(), None);
    }

    #[test]
    fn scheduled_pushes_only_earlier_deadlines_and_recognises_stale_entries() {
        let t0 = Instant::now();
        let (t1, t2) = (t0 + Duration::from_secs(1), t0 + Duration::from_secs(2));
        let mut s = Scheduled::default();
        assert_eq!(s.update(None), None);
        assert_eq!(s.update(Some(t2)), Some(t2));
        assert_eq!(s.update(Some(t2)), None, "already scheduled");
        assert_eq!(s.update(Some(t0 + Duration::from_secs(3))), None, "later");
        assert_eq!(s.update(Some(t1)), Some(t1), "earlier: new entry");
        assert!(!s.fire(t2), "the t2 entry is stale now");
        assert!(s.fire(t1));
        assert_eq!(s.update(Some(t2)), Some(t2), "rescheduled after firing");
    }

    #[test]
    fn heap_pops_in_deadline_order_only_when_due() {
        let t0 = Instant::now();
        let mut h = TimerHeap::default();
        h.push(t0 + Duration::from_secs(3), 3u32);
        h.push(t0 + Duration::from_secs(1), 1);
        h.push(t0 + Duration::from_secs(2), 2);
        assert_eq!(h.peek(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(h.pop_due(t0), None);
        let due: Vec<u32> = std::iter::from_fn(|| h.pop_due(t0 + Duration::from_secs(2)))
            .map(|(_, k)| k)
            .collect();
        assert_eq!(due, vec![1, 2]);
        assert_eq!(h.len(), 1);
    }
}
