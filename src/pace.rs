//! `pace` owns holding work to a rate. Replication's bandwidth limit (bytes), the
//! scrub's read rate (bytes) and the cleaner's share of time while uploads stream in
//! (microseconds of work) all pass through one `Pacer`, governor's GCRA rate
//! limiter: `pass(n)` waits until the units before it, at the rate, would have
//! passed. Up to one second's worth passes at once after a quiet spell; on average
//! the rate is never exceeded. A leaf: it imports nothing of the crate.

use std::num::NonZeroU32;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// The most cells a second governor is asked to count; larger rates count several
/// units per cell.
const MAX_CELLS_PER_SEC: u64 = 1 << 20;

pub struct Pacer {
    /// `None`: no limit.
    limiter: Option<DefaultDirectRateLimiter>,
    units_per_cell: u64,
    cells_per_sec: u32,
}

impl Pacer {
    /// `units_per_sec` units a second; 0 sets no limit.
    pub fn new(units_per_sec: u64) -> Pacer {
        let units_per_cell = units_per_sec.div_ceil(MAX_CELLS_PER_SEC).max(1);
        let cells_per_sec = u32::try_from(units_per_sec / units_per_cell).unwrap_or(u32::MAX);
        let limiter =
            NonZeroU32::new(cells_per_sec).map(|rate| RateLimiter::direct(Quota::per_second(rate)));
        Pacer {
            limiter,
            units_per_cell,
            cells_per_sec,
        }
    }

    /// Waits until `units` more may pass.
    pub async fn pass(&self, units: u64) {
        let Some(limiter) = &self.limiter else {
            return;
        };
        let mut cells = units.div_ceil(self.units_per_cell);
        // A wait of more than the burst (one second's worth) is taken a second at a time.
        while cells > 0 {
            let step = cells.min(u64::from(self.cells_per_sec));
            cells -= step;
            if let Some(n) = u32::try_from(step).ok().and_then(NonZeroU32::new) {
                // `step` is within the burst, so the limiter can always grant it.
                let _ = limiter.until_n_ready(n).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[tokio::test]
    async fn work_beyond_the_first_second_waits_at_the_rate() {
        let pacer = Pacer::new(4 << 20);
        let t0 = Instant::now();
        pacer.pass(4 << 20).await; // the burst
        assert!(t0.elapsed() < Duration::from_millis(200));
        pacer.pass(2 << 20).await; // half a second more
        let took = t0.elapsed();
        assert!(took >= Duration::from_millis(450), "{took:?}");
        assert!(took < Duration::from_secs(3), "{took:?}");
    }

    #[tokio::test]
    async fn no_limit_never_waits() {
        let pacer = Pacer::new(0);
        let t0 = Instant::now();
        pacer.pass(u64::MAX).await;
        assert!(t0.elapsed() < Duration::from_millis(100));
    }
}
