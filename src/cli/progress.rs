//! Progress of long jobs on stderr: on a terminal an indicatif bar (done of total,
//! rate, ETA), otherwise (logs, CI) a plain line every `HOARD_PROGRESS_SECS` seconds
//! (default 5; 0: at every change). The numbers come from the server: the admin
//! API's `jobs` board (gc, verify), a seed step's answer, a rule's status.

use std::future::Future;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use hoard::client::AdminClient;

/// How often the server's jobs board is asked (every 50 ms when a line is asked
/// for at every change).
const POLL: Duration = Duration::from_millis(500);
const POLL_EVERY_CHANGE: Duration = Duration::from_millis(50);

pub struct Meter {
    label: String,
    bar: Option<ProgressBar>,
    plain_every: Duration,
    last_line: Option<Instant>,
    last_done: Option<u64>,
    started: Instant,
}

impl Meter {
    pub fn new(label: &str) -> Meter {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::new(0);
            let style = ProgressStyle::with_template(
                "{prefix} [{bar:30}] {human_pos}/{human_len} {msg} {per_sec} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            b.set_style(style);
            b.set_prefix(label.to_owned());
            b
        });
        let plain_every = std::env::var("HOARD_PROGRESS_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .map_or(Duration::from_secs(5), Duration::from_secs);
        Meter {
            label: label.to_owned(),
            bar,
            plain_every,
            last_line: None,
            last_done: None,
            started: Instant::now(),
        }
    }

    /// `done` of `total` (0: unknown) `unit` so far.
    pub fn update(&mut self, done: u64, total: u64, unit: &str) {
        if let Some(b) = &self.bar {
            b.set_length(total.max(done));
            b.set_position(done);
            b.set_message(unit.to_owned());
            return;
        }
        let due = self
            .last_line
            .is_none_or(|t| t.elapsed() >= self.plain_every);
        if !due || self.last_done == Some(done) {
            return;
        }
        self.last_line = Some(Instant::now());
        self.last_done = Some(done);
        let secs = self.started.elapsed().as_secs_f64();
        eprintln!("{}", self.line(done, total, unit, secs));
    }

    /// The plain line: "gc: 120/400 segments (30%), 25.0/s, ETA 11s".
    fn line(&self, done: u64, total: u64, unit: &str, secs: f64) -> String {
        let secs = secs.max(0.001);
        let rate = done as f64 / secs;
        if total == 0 {
            return format!("{}: {done} {unit}, {rate:.1}/s", self.label);
        }
        let pct = done.saturating_mul(100) / total.max(1);
        let eta = if rate > 0.0 {
            let left = total.saturating_sub(done) as f64 / rate;
            humantime::format_duration(Duration::from_secs(left.ceil() as u64)).to_string()
        } else {
            "unknown".to_owned()
        };
        format!(
            "{}: {done}/{total} {unit} ({pct}%), {rate:.1}/s, ETA {eta}",
            self.label
        )
    }

    pub fn finish(self) {
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
    }
}

/// Awaits `job`, a request that answers when the server's job `label` ends, and
/// shows that job's progress from the server's jobs board meanwhile.
pub async fn watch_job<T>(client: &AdminClient, label: &str, job: impl Future<Output = T>) -> T {
    let mut meter = Meter::new(label);
    tokio::pin!(job);
    let poll = if meter.plain_every.is_zero() {
        POLL_EVERY_CHANGE
    } else {
        POLL
    };
    let mut tick = tokio::time::interval(poll);
    loop {
        tokio::select! {
            out = &mut job => {
                meter.finish();
                return out;
            }
            _ = tick.tick() => {
                let Ok(jobs) = client.jobs().await else { continue };
                if let Some(j) = jobs.iter().find(|j| j.label == label) {
                    meter.update(j.done, j.total, &j.unit);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plain_line_says_done_of_total_rate_and_eta() {
        let m = Meter {
            label: "gc".into(),
            bar: None,
            plain_every: Duration::ZERO,
            last_line: None,
            last_done: None,
            started: Instant::now(),
        };
        let l = m.line(100, 400, "segments", 10.0);
        assert_eq!(l, "gc: 100/400 segments (25%), 10.0/s, ETA 30s");
        assert_eq!(m.line(5, 0, "keys", 10.0), "gc: 5 keys, 0.5/s");
    }
}
