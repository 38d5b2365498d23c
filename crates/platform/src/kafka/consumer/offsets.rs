//! Which offset of a partition may be stored: the end of the contiguous run of finished records.

use std::collections::BTreeSet;

/// The records of one partition taken from its queue and not yet finished, in offset order.
///
/// Records are taken in offset order and finish in any order; an offset is reported for storing
/// only once it and every record taken before it are finished, so a crash redelivers from the
/// first unfinished record and never skips one (vector's `OrderedFinalizer`, arroyo's
/// `run_task_in_threads`).
#[derive(Debug, Default)]
pub(crate) struct OffsetTracker {
    unfinished: BTreeSet<i64>,
    /// One past the highest offset taken.
    next: Option<i64>,
    /// The last offset reported for storing.
    stored: Option<i64>,
}

impl OffsetTracker {
    /// A record was taken from the partition's queue. Offsets arrive in increasing order.
    pub(crate) fn take(&mut self, offset: i64) {
        debug_assert!(
            self.next.is_none_or(|n| offset >= n),
            "offsets arrive in order"
        );
        if self.stored.is_none() && self.next.is_none() {
            // Nothing before the first record taken is ours to store.
            self.stored = Some(offset - 1);
        }
        self.unfinished.insert(offset);
        self.next = Some(offset + 1);
    }

    /// A record is finished; returns the offset to store if the finished run grew.
    pub(crate) fn finish(&mut self, offset: i64) -> Option<i64> {
        self.unfinished.remove(&offset);
        let next = self.next?;
        // Everything taken below the first unfinished record is finished.
        let last_done = self.unfinished.first().copied().unwrap_or(next) - 1;
        if self.stored.is_some_and(|s| s >= last_done) {
            return None;
        }
        self.stored = Some(last_done);
        Some(last_done)
    }

    /// Records taken and not finished.
    pub(crate) fn unfinished(&self) -> usize {
        self.unfinished.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offset_is_stored_only_when_every_earlier_record_is_finished() {
        let mut t = OffsetTracker::default();
        for o in 10..15 {
            t.take(o);
        }
        assert_eq!(t.finish(12), None, "10 and 11 are still running");
        assert_eq!(t.finish(11), None, "10 is still running");
        assert_eq!(t.finish(10), Some(12), "10..=12 are done");
        assert_eq!(t.finish(14), None, "13 is still running");
        assert_eq!(t.finish(13), Some(14));
        assert_eq!(t.unfinished(), 0);
    }

    #[test]
    fn gaps_in_offsets_do_not_hold_the_run_back() {
        // Compaction and transaction markers leave offsets that are never delivered.
        let mut t = OffsetTracker::default();
        t.take(3);
        t.take(7);
        t.take(8);
        assert_eq!(t.finish(7), None);
        assert_eq!(t.finish(3), Some(7));
        assert_eq!(t.finish(8), Some(8));
    }

    #[test]
    fn nothing_below_the_first_record_taken_is_stored() {
        let mut t = OffsetTracker::default();
        t.take(100);
        t.take(101);
        assert_eq!(
            t.finish(101),
            None,
            "the committed position already says 100"
        );
        t.take(102);
        assert_eq!(t.finish(100), Some(101));
        assert_eq!(t.finish(102), Some(102));
    }

    #[test]
    fn an_unfinished_record_holds_back_every_later_one_forever() {
        let mut t = OffsetTracker::default();
        for o in 0..1000 {
            t.take(o);
        }
        for o in 1..1000 {
            assert_eq!(t.finish(o), None, "offset {o} must not be stored past 0");
        }
        assert_eq!(t.unfinished(), 1);
        assert_eq!(t.finish(0), Some(999));
    }
}
