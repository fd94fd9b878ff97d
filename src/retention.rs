//! `retention` owns the retention clock: the time Object Lock judges expiry by.
//!
//! An attacker with root on the host can move the wall clock forward to expire every
//! lock. So expiry is not judged by the wall clock but by this clock, kept in the
//! metadata (`meta/retention.rs`):
//!
//! - A new store's clock starts at the wall clock. From then on it advances by
//!   monotonic time while hoard runs, never by the wall clock: moving the wall clock
//!   forward or back while hoard runs changes nothing.
//! - While hoard is stopped the clock stands still, so downtime only delays expiry.
//!   After a start it may catch up with the wall clock by the distance it was behind
//!   at that start, but at most `catch_up_per_day_secs` per day of running
//!   (default one hour per day; at most 24 hours per day). A wall clock moved ahead
//!   by a year before a start therefore takes at most an hour a day off the locks.
//! - It never moves back: its reading is saved every `SAVE_EVERY` and at shutdown,
//!   and a start resumes from the saved reading (a crash loses at most the last
//!   interval's advance, which delays expiry and never hastens it).
//!
//! Its reading and its distance from the wall clock are in `hoard stats` and the
//! metrics; a distance over an hour is logged as a warning.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::meta::{ClockReading, MetaStore};

/// How often the clock's reading is saved while hoard runs.
pub const SAVE_EVERY: Duration = Duration::from_secs(30);
/// A distance from the wall clock beyond this is worth a warning.
pub const WARN_DISTANCE_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;

/// `[retention]` in the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSettings {
    /// How far the retention clock may catch up with the wall clock per day of
    /// running, after it fell behind while hoard was stopped; at most 86400.
    pub catch_up_per_day_secs: u64,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            catch_up_per_day_secs: 3600,
        }
    }
}

/// Where the clock reads time from: the system, or a test's own.
pub trait TimeSource: Send + Sync {
    /// The wall clock, ms since the epoch.
    fn wall_ms(&self) -> i64;
    /// Monotonic time since some fixed point.
    fn monotonic(&self) -> Duration;
}

/// The system's wall and monotonic clocks.
pub struct SystemClocks {
    origin: Instant,
}

impl Default for SystemClocks {
    fn default() -> Self {
        SystemClocks {
            origin: Instant::now(),
        }
    }
}

impl TimeSource for SystemClocks {
    fn wall_ms(&self) -> i64 {
        crate::meta::now_ms()
    }
    fn monotonic(&self) -> Duration {
        self.origin.elapsed()
    }
}

pub struct RetentionClock {
    source: Arc<dyn TimeSource>,
    /// The clock's reading at start.
    base_ms: i64,
    /// `source.monotonic()` at start.
    started: Duration,
    /// How far behind the wall clock the clock was at start: all it may catch up.
    behind_at_start_ms: i64,
    catch_up_per_day_ms: i64,
}

impl RetentionClock {
    /// Resumes from the saved reading (`None`: a new clock at the wall clock).
    pub fn resume(
        saved: Option<ClockReading>,
        settings: &RetentionSettings,
        source: Arc<dyn TimeSource>,
    ) -> RetentionClock {
        let wall = source.wall_ms();
        let base_ms = saved.map_or(wall, |r| r.clock_ms);
        let clock = RetentionClock {
            started: source.monotonic(),
            source,
            base_ms,
            behind_at_start_ms: (wall - base_ms).max(0),
            catch_up_per_day_ms: (settings.catch_up_per_day_secs.min(86_400) * 1000) as i64,
        };
        clock.warn_if_far();
        clock
    }

    /// Opens the store's clock and saves its first reading.
    pub async fn open(
        meta: &MetaStore,
        settings: &RetentionSettings,
        source: Arc<dyn TimeSource>,
    ) -> Result<RetentionClock, crate::meta::MetaError> {
        let clock = RetentionClock::resume(meta.retention_clock().await?, settings, source);
        meta.save_retention_clock(clock.reading()).await?;
        Ok(clock)
    }

    /// The clock now, ms since the epoch.
    pub fn now_ms(&self) -> i64 {
        let ran = self.source.monotonic().saturating_sub(self.started);
        let ran_ms = i64::try_from(ran.as_millis()).unwrap_or(i64::MAX / 4);
        let catch_up =
            (i128::from(ran_ms) * i128::from(self.catch_up_per_day_ms) / i128::from(DAY_MS)) as i64;
        self.base_ms + ran_ms + catch_up.min(self.behind_at_start_ms)
    }

    /// How far the wall clock is ahead of this one, ms (negative: behind).
    pub fn distance_ms(&self) -> i64 {
        self.source.wall_ms() - self.now_ms()
    }

    pub fn reading(&self) -> ClockReading {
        ClockReading {
            clock_ms: self.now_ms(),
            wall_ms: self.source.wall_ms(),
        }
    }

    fn warn_if_far(&self) {
        let distance = self.distance_ms();
        if distance.abs() > WARN_DISTANCE_MS {
            tracing::warn!(
                distance_secs = distance / 1000,
                "the retention clock and the wall clock are more than an hour apart; Object Lock expiry follows the retention clock"
            );
        }
    }

    /// Saves the reading every `SAVE_EVERY` until the task is dropped; warns at
    /// most hourly while the wall clock is far from this one.
    pub async fn keep_saved(self: Arc<Self>, meta: MetaStore) {
        let mut ticks = tokio::time::interval(SAVE_EVERY);
        let mut last_warning = Instant::now();
        loop {
            ticks.tick().await;
            if let Err(e) = meta.save_retention_clock(self.reading()).await {
                tracing::warn!(error = %e, "could not save the retention clock");
            }
            if last_warning.elapsed() >= Duration::from_secs(3600) {
                self.warn_if_far();
                last_warning = Instant::now();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A test's own time: the wall clock and the monotonic clock move only when told.
    #[derive(Default)]
    struct Manual {
        wall_ms: Mutex<i64>,
        mono: Mutex<Duration>,
    }

    impl Manual {
        fn at(wall_ms: i64) -> Arc<Manual> {
            let m = Manual::default();
            *m.wall_ms.lock().unwrap() = wall_ms;
            Arc::new(m)
        }
        /// Time passes: both clocks move.
        fn pass(&self, d: Duration) {
            *self.mono.lock().unwrap() += d;
            *self.wall_ms.lock().unwrap() += d.as_millis() as i64;
        }
        /// Someone sets the wall clock.
        fn set_wall(&self, ms: i64) {
            *self.wall_ms.lock().unwrap() = ms;
        }
    }

    impl TimeSource for Manual {
        fn wall_ms(&self) -> i64 {
            *self.wall_ms.lock().unwrap()
        }
        fn monotonic(&self) -> Duration {
            *self.mono.lock().unwrap()
        }
    }

    const T0: i64 = 1_800_000_000_000;
    const HOUR: Duration = Duration::from_secs(3600);
    const YEAR_MS: i64 = 365 * DAY_MS;

    fn defaults() -> RetentionSettings {
        RetentionSettings::default()
    }

    #[test]
    fn a_wall_clock_moved_while_running_changes_nothing() {
        let time = Manual::at(T0);
        let clock = RetentionClock::resume(None, &defaults(), time.clone());
        assert_eq!(clock.now_ms(), T0);
        time.pass(HOUR);
        assert_eq!(clock.now_ms(), T0 + 3_600_000);
        time.set_wall(T0 + YEAR_MS);
        time.pass(HOUR);
        assert_eq!(clock.now_ms(), T0 + 7_200_000, "the year ahead counted");
        time.set_wall(T0 - YEAR_MS);
        time.pass(HOUR);
        assert_eq!(clock.now_ms(), T0 + 10_800_000, "the year back counted");
    }

    #[test]
    fn after_a_restart_the_catch_up_is_bounded_per_day_of_running() {
        let time = Manual::at(T0);
        let saved = ClockReading {
            clock_ms: T0,
            wall_ms: T0,
        };
        // Stopped, and the wall clock moved a year ahead before the start.
        time.set_wall(T0 + YEAR_MS);
        let clock = RetentionClock::resume(Some(saved), &defaults(), time.clone());
        assert_eq!(clock.now_ms(), T0, "it jumped at start");
        time.pass(Duration::from_secs(86_400));
        // One day of running: one day plus at most one hour of catch-up.
        assert_eq!(clock.now_ms(), T0 + DAY_MS + 3_600_000);
        assert!(clock.distance_ms() > YEAR_MS - 2 * DAY_MS);
    }

    #[test]
    fn catch_up_never_passes_the_wall_clock_of_the_start() {
        let time = Manual::at(T0);
        let saved = ClockReading {
            clock_ms: T0 - 1_800_000,
            wall_ms: T0 - 1_800_000,
        };
        // Half an hour of downtime, with the wall clock right.
        let clock = RetentionClock::resume(Some(saved), &defaults(), time.clone());
        time.pass(Duration::from_secs(30 * 86_400));
        assert_eq!(clock.now_ms(), T0 + 30 * DAY_MS, "caught up exactly");
        assert_eq!(clock.distance_ms(), 0);
    }

    #[test]
    fn a_wall_clock_set_back_never_moves_the_clock_back() {
        let time = Manual::at(T0 - YEAR_MS);
        let saved = ClockReading {
            clock_ms: T0,
            wall_ms: T0,
        };
        let clock = RetentionClock::resume(Some(saved), &defaults(), time.clone());
        assert_eq!(clock.now_ms(), T0);
        time.pass(HOUR);
        assert_eq!(clock.now_ms(), T0 + 3_600_000);
    }

    #[test]
    fn no_catch_up_when_turned_off_and_never_more_than_a_day_per_day() {
        let saved = ClockReading {
            clock_ms: T0,
            wall_ms: T0,
        };
        let time = Manual::at(T0 + YEAR_MS);
        let off = RetentionSettings {
            catch_up_per_day_secs: 0,
        };
        let clock = RetentionClock::resume(Some(saved), &off, time.clone());
        time.pass(HOUR);
        assert_eq!(clock.now_ms(), T0 + 3_600_000);
        let time = Manual::at(T0 + YEAR_MS);
        let too_much = RetentionSettings {
            catch_up_per_day_secs: 10 * 86_400,
        };
        let clock = RetentionClock::resume(Some(saved), &too_much, time.clone());
        time.pass(HOUR);
        assert_eq!(clock.now_ms(), T0 + 2 * 3_600_000, "held to a day per day");
    }
}
