//! The retention clock's saved state: its reading and the wall clock's at the moment
//! it was saved, in the counters table. The clock itself (how it advances, how far
//! it may catch up after a stop) is `retention`'s; this seam only keeps its state
//! durably.

use super::{COUNTERS, MetaResult, MetaStore, counter};

const C_RETENTION_CLOCK: &str = "retention_clock_ms";
const C_RETENTION_WALL: &str = "retention_wall_ms";

/// A saved reading of the retention clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockReading {
    /// The retention clock, ms since the epoch.
    pub clock_ms: i64,
    /// The wall clock when it was saved, ms since the epoch.
    pub wall_ms: i64,
}

impl MetaStore {
    /// The last saved reading; `None` for a store that never had a retention clock.
    pub async fn retention_clock(&self) -> MetaResult<Option<ClockReading>> {
        self.read(|txn| {
            let t = txn.open_table(COUNTERS)?;
            let clock = counter(&t, C_RETENTION_CLOCK)?;
            let wall = counter(&t, C_RETENTION_WALL)?;
            Ok((clock > 0).then_some(ClockReading {
                clock_ms: clock as i64,
                wall_ms: wall as i64,
            }))
        })
        .await
    }

    /// Saves a reading durably. A reading behind the saved one is ignored: the
    /// saved clock never moves back.
    pub async fn save_retention_clock(&self, r: ClockReading) -> MetaResult<()> {
        self.write(true, move |txn| {
            let mut t = txn.open_table(COUNTERS)?;
            let saved = counter(&t, C_RETENTION_CLOCK)? as i64;
            if r.clock_ms >= saved {
                t.insert(C_RETENTION_CLOCK, r.clock_ms.max(0) as u64)?;
                t.insert(C_RETENTION_WALL, r.wall_ms.max(0) as u64)?;
            }
            Ok(())
        })
        .await
    }
}
