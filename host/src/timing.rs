//! Where a run's wall time goes, step by step: each step's time summed over
//! the run's batches, logged when the run ends on target `godwit::timing`
//! at debug level (`RUST_LOG=godwit::timing=debug`). Always measured (two
//! clock reads a step); used for the profiles in `bench/`.
//!
//! Steps nest: `batch` is the whole of one batch's write, which contains
//! the `db-*` steps and, overlapped with them, the next batch's plugin call
//! (`plugin-ahead`). Several runs in one process (workers) add up.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

#[derive(Clone, Copy, Debug)]
pub enum Step {
    /// `godwit run` from the plugin's load to the outcome.
    Run,
    /// The plugin loaded (compiled, or from the compile cache) and checked.
    Load,
    /// Connected; the database checked; the journal opened.
    Connect,
    /// The database taken for an execute run (lock, session).
    Activate,
    /// The plugin's `begin` (with a resume's replay).
    Begin,
    /// A pass's reader opened: its query sent, its first reply back, and
    /// the count for the progress display.
    Open,
    /// Waiting for the reader's next batch.
    ReadWait,
    /// The plugin's `process`, not overlapped with a commit.
    Plugin,
    /// The plugin's `process` of the next batch, beside this one's write.
    PluginAhead,
    /// One batch written: journal entries, transaction, commit.
    Batch,
    /// The batch's journal entry flushed and, beside it, the guard's or
    /// the before-images' read.
    DbReads,
    /// The writes (with the images checked and journaled beside them).
    DbWrites,
    /// Reading written documents back for their after-images.
    DbAfterRead,
    /// The progress marker's write.
    DbMarker,
    /// The commit.
    DbCommit,
    /// The `Committed` journal entry.
    Committed,
    /// Pacing after a commit (`--max-commit-ms`, replication lag, throttle).
    Pace,
    /// Verification: the passes re-run dry.
    Verify,
    /// The stamp, with the journal's chain checked.
    Stamp,
}

const STEPS: [Step; 19] = [
    Step::Run,
    Step::Load,
    Step::Connect,
    Step::Activate,
    Step::Begin,
    Step::Open,
    Step::ReadWait,
    Step::Plugin,
    Step::PluginAhead,
    Step::Batch,
    Step::DbReads,
    Step::DbWrites,
    Step::DbAfterRead,
    Step::DbMarker,
    Step::DbCommit,
    Step::Committed,
    Step::Pace,
    Step::Verify,
    Step::Stamp,
];

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::Run => "run",
            Step::Load => "load",
            Step::Connect => "connect",
            Step::Activate => "activate",
            Step::Begin => "begin",
            Step::Open => "open",
            Step::ReadWait => "read-wait",
            Step::Plugin => "plugin",
            Step::PluginAhead => "plugin-ahead",
            Step::Batch => "batch",
            Step::DbReads => "db-reads",
            Step::DbWrites => "db-writes",
            Step::DbAfterRead => "db-after-read",
            Step::DbMarker => "db-marker",
            Step::DbCommit => "db-commit",
            Step::Committed => "committed",
            Step::Pace => "pace",
            Step::Verify => "verify",
            Step::Stamp => "stamp",
        }
    }
}

struct Total {
    nanos: AtomicU64,
    count: AtomicU64,
}

static TOTALS: [Total; STEPS.len()] = [const {
    Total {
        nanos: AtomicU64::new(0),
        count: AtomicU64::new(0),
    }
}; STEPS.len()];

/// Adds the time since `since` to `step`.
pub fn record(step: Step, since: Instant) {
    let total = &TOTALS[step as usize];
    total
        .nanos
        .fetch_add(since.elapsed().as_nanos() as u64, Ordering::Relaxed);
    total.count.fetch_add(1, Ordering::Relaxed);
}

/// `f`, its wall time added to `step`.
pub async fn timed<F: Future>(step: Step, f: F) -> F::Output {
    let since = Instant::now();
    let out = f.await;
    record(step, since);
    out
}

/// `f()`, its wall time added to `step`.
pub fn timed_sync<T>(step: Step, f: impl FnOnce() -> T) -> T {
    let since = Instant::now();
    let out = f();
    record(step, since);
    out
}

/// Each step's count, total and mean so far: `(name, count, total_ms)`.
pub fn totals() -> Vec<(&'static str, u64, f64)> {
    STEPS
        .iter()
        .map(|&step| {
            let total = &TOTALS[step as usize];
            let nanos = total.nanos.load(Ordering::Relaxed);
            (step.name(), total.count.load(Ordering::Relaxed), nanos as f64 / 1e6)
        })
        .collect()
}

/// Logs the totals (debug, target `godwit::timing`), one line per step
/// that ran.
pub fn report() {
    if !tracing::enabled!(target: "godwit::timing", tracing::Level::DEBUG) {
        return;
    }
    for (name, count, ms) in totals().into_iter().filter(|(_, count, _)| *count > 0) {
        tracing::debug!(
            target: "godwit::timing",
            "timing: {name:<13} {count:>7} times, {ms:>10.1} ms, {:>8.3} ms each",
            ms / count as f64
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_listed_in_their_order() {
        for (i, step) in STEPS.iter().enumerate() {
            assert_eq!(*step as usize, i, "{step:?}");
        }
    }

    #[test]
    fn a_step_adds_its_time_and_count() {
        let before = totals()[Step::Pace as usize];
        timed_sync(Step::Pace, || std::thread::sleep(std::time::Duration::from_millis(5)));
        let after = totals()[Step::Pace as usize];
        assert_eq!(after.0, "pace");
        assert_eq!(after.1, before.1 + 1);
        assert!(after.2 - before.2 >= 5.0, "{before:?} -> {after:?}");
    }
}
