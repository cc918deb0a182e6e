//! Where a sync request's time goes, phase by phase, and the document cache's counters, as
//! `GET /metrics` (Prometheus text format) for the person running the server and for the
//! storm benchmark's per-phase breakdown.
//!
//! The figures are counters only (times summed over requests, counts of pushes and changes):
//! nothing in them names a device, a person or a resident.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::storage::doc_cache::DocCacheStats;

/// One step of a sync request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Looking up the device's token.
    Auth,
    /// Reading and decoding the request body.
    Decode,
    /// Reading the pushed documents' stored state (one read transaction).
    Read,
    /// The Automerge work (load, apply, judge, project, snapshot), on the blocking pool.
    Merge,
    /// Waiting for the write lock (in-process) and the counter row (across processes).
    LockWait,
    /// The write transaction under the lock, commit included.
    Commit,
    /// Reading what the device pulls.
    Pull,
    /// Encoding the answer.
    Encode,
}

impl Phase {
    /// Every phase, in request order.
    pub const ALL: [Phase; 8] = [
        Phase::Auth,
        Phase::Decode,
        Phase::Read,
        Phase::Merge,
        Phase::LockWait,
        Phase::Commit,
        Phase::Pull,
        Phase::Encode,
    ];

    /// The phase's label in `/metrics`.
    pub fn label(self) -> &'static str {
        match self {
            Phase::Auth => "auth",
            Phase::Decode => "decode",
            Phase::Read => "read",
            Phase::Merge => "merge",
            Phase::LockWait => "lock_wait",
            Phase::Commit => "commit",
            Phase::Pull => "pull",
            Phase::Encode => "encode",
        }
    }
}

/// Time and count per phase, and the pushes and changes merged (shared by every request).
#[derive(Debug, Default)]
pub struct Phases {
    nanos: [AtomicU64; Phase::ALL.len()],
    counts: [AtomicU64; Phase::ALL.len()],
    pushes: AtomicU64,
    changes: AtomicU64,
}

impl Phases {
    /// Adds `took` to `phase`.
    pub fn record(&self, phase: Phase, took: Duration) {
        let i = phase as usize;
        self.nanos[i].fetch_add(
            u64::try_from(took.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.counts[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Starts timing `phase`; the time is added when the guard is dropped.
    pub fn time(&self, phase: Phase) -> PhaseTimer<'_> {
        PhaseTimer {
            phases: self,
            phase,
            started: Instant::now(),
        }
    }

    /// Counts one merged push and the changes it stored.
    pub fn merged(&self, changes: usize) {
        self.pushes.fetch_add(1, Ordering::Relaxed);
        self.changes
            .fetch_add(u64::try_from(changes).unwrap_or(0), Ordering::Relaxed);
    }

    /// Seconds spent in `phase` so far.
    pub fn seconds(&self, phase: Phase) -> f64 {
        self.nanos[phase as usize].load(Ordering::Relaxed) as f64 / 1e9
    }

    /// The whole set as Prometheus text, with the cache's counters.
    pub fn render(&self, cache: DocCacheStats) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP gridsync_phase_seconds_total Time spent in each phase of sync requests, summed over requests.\n\
             # TYPE gridsync_phase_seconds_total counter\n",
        );
        for p in Phase::ALL {
            let _ = writeln!(
                out,
                "gridsync_phase_seconds_total{{phase=\"{}\"}} {:.6}",
                p.label(),
                self.seconds(p)
            );
        }
        out.push_str(
            "# HELP gridsync_phase_count_total Times each phase ran.\n\
             # TYPE gridsync_phase_count_total counter\n",
        );
        for p in Phase::ALL {
            let _ = writeln!(
                out,
                "gridsync_phase_count_total{{phase=\"{}\"}} {}",
                p.label(),
                self.counts[p as usize].load(Ordering::Relaxed)
            );
        }
        let counter = |out: &mut String, name: &str, help: &str, kind: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        counter(
            &mut out,
            "gridsync_merged_pushes_total",
            "Document pushes merged (stored or refused).",
            "counter",
            self.pushes.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "gridsync_merged_changes_total",
            "Changes stored by merges.",
            "counter",
            self.changes.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "gridsync_doc_cache_hits_total",
            "Merges that found their document decoded in the cache.",
            "counter",
            cache.hits,
        );
        counter(
            &mut out,
            "gridsync_doc_cache_misses_total",
            "Merges of a stored document that read and decoded it.",
            "counter",
            cache.misses,
        );
        counter(
            &mut out,
            "gridsync_doc_cache_docs",
            "Documents in the cache.",
            "gauge",
            cache.docs as u64,
        );
        counter(
            &mut out,
            "gridsync_doc_cache_bytes",
            "Estimated memory the cache holds.",
            "gauge",
            cache.bytes as u64,
        );
        out
    }
}

/// Times one phase (see [`Phases::time`]).
pub struct PhaseTimer<'a> {
    phases: &'a Phases,
    phase: Phase,
    started: Instant,
}

impl Drop for PhaseTimer<'_> {
    fn drop(&mut self) {
        self.phases.record(self.phase, self.started.elapsed());
    }
}

/// Reads one sample from `/metrics` text: `name` with an optional `phase` label.
pub fn sample(text: &str, name: &str, phase: Option<&str>) -> Option<f64> {
    let key = match phase {
        Some(p) => format!("{name}{{phase=\"{p}\"}}"),
        None => name.to_owned(),
    };
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(key.as_str())?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_add_up_and_render_as_prometheus_text() {
        let p = Phases::default();
        p.record(Phase::Merge, Duration::from_millis(1500));
        {
            let _t = p.time(Phase::Commit);
        }
        p.merged(3);
        p.merged(2);
        let text = p.render(DocCacheStats {
            hits: 4,
            misses: 1,
            docs: 2,
            bytes: 900,
        });
        assert_eq!(
            sample(&text, "gridsync_phase_seconds_total", Some("merge")),
            Some(1.5)
        );
        assert_eq!(
            sample(&text, "gridsync_phase_count_total", Some("commit")),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, "gridsync_merged_changes_total", None),
            Some(5.0)
        );
        assert_eq!(
            sample(&text, "gridsync_merged_pushes_total", None),
            Some(2.0)
        );
        assert_eq!(
            sample(&text, "gridsync_doc_cache_hits_total", None),
            Some(4.0)
        );
        assert_eq!(sample(&text, "gridsync_no_such", None), None);
    }
}
