//! The lookup budget of one plugin call: how many `find`s it has made, how
//! many bytes they moved, and how much of the call's deadline they used.
//! Pure bookkeeping (no clock, no database), so that the bounds are tested
//! on their own; [`super::sandbox::State`] applies it to every lookup.

use std::time::Duration;

/// Most lookups one call (`begin`, one `process` - that is, one batch - or
/// `finish`) may make. The plugins we know make one per batch (or page a
/// reference collection with `find_all` in `begin`: 10,000 pages of 1,000
/// documents is ten million documents, more than the byte bound lets through
/// anyway); a plugin that looks up once per document of a batch of 1,000
/// stays at a tenth of it.
pub const MAX_LOOKUPS_PER_CALL: u32 = 10_000;

/// Most bytes the lookups of one call may move, counted as they are
/// journaled: collection names, filters, projections and every document
/// returned. Twice what one lookup may return: a reference map of a few
/// million small documents, loaded in `begin`, fits; a plugin that loops on
/// lookups cannot grow the journal (or the host's memory, which holds a
/// call's lookups until they are journaled) past it.
pub const MAX_LOOKUP_BYTES_PER_CALL: usize = 128 << 20;

/// Why a call may not go on looking up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exceeded {
    /// The call already made [`MAX_LOOKUPS_PER_CALL`] lookups.
    Count,
    /// The call's lookups moved more than [`MAX_LOOKUP_BYTES_PER_CALL`] bytes.
    Bytes { bytes: usize },
    /// Nothing is left of the call's deadline.
    Time,
}

/// What one admitted lookup may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    /// What remains of the call's deadline: the server is asked to stop
    /// there (`maxTimeMS`) and the host stops waiting there.
    pub max_time: Duration,
    /// Most bytes the answer may have: what remains of the call's byte
    /// budget, and never more than one lookup may return.
    pub max_bytes: usize,
}

/// The lookups of the current call; reset when a call starts.
#[derive(Debug, Clone, Default)]
pub struct LookupBudget {
    call_timeout: Duration,
    lookups: u32,
    bytes: usize,
    in_lookups: Duration,
}

impl LookupBudget {
    /// A fresh budget for a call that may last `call_timeout`.
    pub fn for_call(call_timeout: Duration) -> Self {
        LookupBudget {
            call_timeout,
            ..LookupBudget::default()
        }
    }

    pub fn call_timeout(&self) -> Duration {
        self.call_timeout
    }

    /// Lookups made so far in this call (the refused one included).
    pub fn lookups(&self) -> u32 {
        self.lookups
    }

    /// Time the call has spent waiting for lookups.
    pub fn in_lookups(&self) -> Duration {
        self.in_lookups
    }

    /// Admits one more lookup whose request (collection, filter, projection)
    /// is `request_bytes` long, `elapsed` into the call; `per_lookup` is the
    /// most bytes one lookup may return.
    pub fn admit(&mut self, request_bytes: usize, elapsed: Duration, per_lookup: usize) -> Result<Allowance, Exceeded> {
        self.lookups = self.lookups.saturating_add(1);
        if self.lookups > MAX_LOOKUPS_PER_CALL {
            return Err(Exceeded::Count);
        }
        self.bytes = self.bytes.saturating_add(request_bytes);
        if self.bytes > MAX_LOOKUP_BYTES_PER_CALL {
            return Err(Exceeded::Bytes { bytes: self.bytes });
        }
        let max_time = self.call_timeout.saturating_sub(elapsed);
        // Less than a millisecond cannot be asked of the server (`maxTimeMS: 0`
        // means "no limit"): that is no time left.
        if max_time < Duration::from_millis(1) {
            return Err(Exceeded::Time);
        }
        Ok(Allowance {
            max_time,
            max_bytes: per_lookup.min(MAX_LOOKUP_BYTES_PER_CALL - self.bytes),
        })
    }

    /// Books an admitted lookup's answer of `answer_bytes`, which took `took`.
    pub fn settle(&mut self, took: Duration, answer_bytes: usize) -> Result<(), Exceeded> {
        self.in_lookups += took;
        self.bytes = self.bytes.saturating_add(answer_bytes);
        if self.bytes > MAX_LOOKUP_BYTES_PER_CALL {
            return Err(Exceeded::Bytes { bytes: self.bytes });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);
    const PER_LOOKUP: usize = 64 << 20;

    #[test]
    fn the_lookup_past_the_count_bound_is_refused_and_the_budget_resets_per_call() {
        let mut budget = LookupBudget::for_call(60 * SEC);
        for _ in 0..MAX_LOOKUPS_PER_CALL {
            budget.admit(10, SEC, PER_LOOKUP).unwrap();
            budget.settle(Duration::ZERO, 5).unwrap();
        }
        assert_eq!(budget.admit(10, SEC, PER_LOOKUP), Err(Exceeded::Count));
        assert_eq!(budget.lookups(), MAX_LOOKUPS_PER_CALL + 1);
        let mut next_call = LookupBudget::for_call(60 * SEC);
        assert!(next_call.admit(10, SEC, PER_LOOKUP).is_ok());
    }

    #[test]
    fn requests_and_answers_count_towards_the_byte_bound() {
        let mut budget = LookupBudget::for_call(60 * SEC);
        let first = budget.admit(1_000, SEC, PER_LOOKUP).unwrap();
        assert_eq!(
            first.max_bytes, PER_LOOKUP,
            "one lookup never gets more than its own cap"
        );
        budget.settle(SEC, PER_LOOKUP).unwrap();
        let second = budget.admit(1_000, SEC, PER_LOOKUP).unwrap();
        assert_eq!(
            second.max_bytes,
            MAX_LOOKUP_BYTES_PER_CALL - PER_LOOKUP - 2_000,
            "the second lookup gets what is left of the call's bytes"
        );
        assert_eq!(
            budget.settle(SEC, second.max_bytes + 1),
            Err(Exceeded::Bytes {
                bytes: MAX_LOOKUP_BYTES_PER_CALL + 1
            })
        );
    }

    #[test]
    fn a_request_alone_can_exhaust_the_byte_bound() {
        let mut budget = LookupBudget::for_call(60 * SEC);
        for _ in 0..8 {
            budget.admit(16 << 20, SEC, PER_LOOKUP).unwrap();
        }
        assert_eq!(
            budget.admit(1, SEC, PER_LOOKUP),
            Err(Exceeded::Bytes {
                bytes: MAX_LOOKUP_BYTES_PER_CALL + 1
            })
        );
    }

    #[test]
    fn a_lookup_gets_what_remains_of_the_call_deadline() {
        let mut budget = LookupBudget::for_call(2 * SEC);
        let allowance = budget.admit(10, Duration::from_millis(500), PER_LOOKUP).unwrap();
        assert_eq!(allowance.max_time, Duration::from_millis(1_500));
        budget.settle(Duration::from_millis(1_200), 0).unwrap();
        budget.settle(Duration::from_millis(300), 0).unwrap();
        assert_eq!(budget.in_lookups(), Duration::from_millis(1_500));
        assert_eq!(
            budget.admit(10, Duration::from_micros(1_999_500), PER_LOOKUP),
            Err(Exceeded::Time),
            "under a millisecond left is no time left (maxTimeMS 0 would mean no limit)"
        );
        assert_eq!(budget.admit(10, 3 * SEC, PER_LOOKUP), Err(Exceeded::Time));
    }
}
