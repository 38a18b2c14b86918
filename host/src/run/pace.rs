//! Pacing on the database's health, as gh-ost's `--max-lag-millis` taught
//! operators to expect: after a batch whose commit took longer than
//! `--max-commit-ms`, the run waits before the next one (as long as the
//! commit overran, doubling while commits stay slow, at most 10 s); while
//! the replica set reports a secondary lagging by more than `--max-lag-ms`,
//! it waits for it to catch up. `--max-docs-per-sec` is a fixed rate on
//! top of this.

use super::{Observer, StopSignal};
use crate::db::Db;
use serde::Serialize;
use std::time::Duration;

/// The longest single wait after a slow commit.
const MAX_WAIT: Duration = Duration::from_secs(10);
/// How often replication lag is read (it costs a command).
const LAG_EVERY: Duration = Duration::from_millis(500);

/// What pacing did in this process, for the summary and `--json`.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Pacing {
    /// Waits after a commit slower than `--max-commit-ms`.
    pub slow_commits: u64,
    /// Waits for replication lag above `--max-lag-ms`.
    pub lag_waits: u64,
    /// Time spent waiting, in ms.
    pub waited_ms: u64,
    /// The slowest batch commit, in ms.
    pub slowest_commit_ms: u64,
    /// The highest replication lag read, in ms (`None`: not read, or the
    /// server reports none - a standalone server, a one-member set).
    pub highest_lag_ms: Option<u64>,
}

pub struct Pacer {
    max_commit: Option<Duration>,
    max_lag: Option<Duration>,
    /// The wait after the last slow commit (the next one doubles it).
    wait: Duration,
    last_lag_read: Option<tokio::time::Instant>,
    pub figures: Pacing,
}

impl Pacer {
    pub fn new(max_commit: Option<Duration>, max_lag: Option<Duration>) -> Self {
        Pacer {
            max_commit,
            max_lag,
            wait: Duration::ZERO,
            last_lag_read: None,
            figures: Pacing::default(),
        }
    }

    /// After a batch committed in `took`: waits if the database is slow.
    pub async fn after_commit(&mut self, db: &Db, took: Duration, stop: &StopSignal, observer: &dyn Observer) {
        // Without a target there is nothing to pace, nor figures to report.
        if self.max_commit.is_none() && self.max_lag.is_none() {
            return;
        }
        self.figures.slowest_commit_ms = self.figures.slowest_commit_ms.max(took.as_millis() as u64);
        if let Some(max) = self.max_commit {
            self.wait = next_wait(took, max, self.wait);
            if !self.wait.is_zero() {
                self.figures.slow_commits += 1;
                observer.health(&format!(
                    "commit {} ms > --max-commit-ms {}: waiting {} ms",
                    took.as_millis(),
                    max.as_millis(),
                    self.wait.as_millis()
                ));
                self.sleep(self.wait, stop).await;
                observer.health("");
            }
        }
        let Some(max_lag) = self.max_lag else { return };
        loop {
            if self.last_lag_read.is_some_and(|at| at.elapsed() < LAG_EVERY) || stop.requested() {
                return;
            }
            self.last_lag_read = Some(tokio::time::Instant::now());
            let lag = match db.replication_lag().await {
                Ok(lag) => lag,
                Err(e) => {
                    tracing::debug!("reading replication lag: {e}");
                    None
                }
            };
            let Some(lag) = lag else { return };
            let ms = lag.as_millis() as u64;
            self.figures.highest_lag_ms = Some(self.figures.highest_lag_ms.unwrap_or(0).max(ms));
            if lag <= max_lag {
                observer.health("");
                return;
            }
            self.figures.lag_waits += 1;
            observer.health(&format!(
                "replication lag {ms} ms > --max-lag-ms {}: waiting",
                max_lag.as_millis()
            ));
            self.sleep(LAG_EVERY, stop).await;
        }
    }

    async fn sleep(&mut self, wait: Duration, stop: &StopSignal) {
        let due = tokio::time::Instant::now() + wait;
        while !stop.requested() && tokio::time::Instant::now() < due {
            tokio::time::sleep_until(due.min(tokio::time::Instant::now() + Duration::from_millis(50))).await;
        }
        self.figures.waited_ms += wait.as_millis() as u64;
    }
}

/// The wait after a commit that took `took` against a target of `max`:
/// none when within it; else as long as it overran, or twice the previous
/// wait while commits stay slow, at most [`MAX_WAIT`].
pub fn next_wait(took: Duration, max: Duration, previous: Duration) -> Duration {
    if took <= max {
        return Duration::ZERO;
    }
    (took - max).max(previous * 2).min(MAX_WAIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_commit_waits_as_long_as_it_overran_then_doubling_up_to_ten_seconds() {
        let ms = Duration::from_millis;
        assert_eq!(next_wait(ms(150), ms(200), ms(0)), ms(0));
        assert_eq!(next_wait(ms(340), ms(200), ms(0)), ms(140));
        assert_eq!(next_wait(ms(210), ms(200), ms(140)), ms(280));
        assert_eq!(next_wait(ms(210), ms(200), ms(8000)), MAX_WAIT);
        // A commit within the target ends the streak.
        assert_eq!(next_wait(ms(200), ms(200), ms(8000)), ms(0));
    }
}
