//! `snapkeep status [--json]`: what the owner asks the morning after — did last night's backup
//! work, when did one last work, when is the next one, and how much is stored. Read-only: it
//! never takes the lock, so it is safe to run while a backup or the agent is running.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::catalog::{Activity, Store, Upload};
use crate::config::Config;
use crate::error::Result;
use crate::schedule;

/// SPEC.md's `status --json` object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusJson {
    pub last_run: Option<LastRun>,
    /// When the last run that ended `ok` finished.
    pub last_success: Option<String>,
    /// The next scheduled run (RFC 3339 with the zone's offset).
    pub next_run: Option<String>,
    pub local: Local,
    /// Drive's side: this database's backups on Drive; null while Drive is off or unreachable.
    pub remote: Option<Remote>,
    /// Backups whose upload failed and is still to be retried.
    pub pending_uploads: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LastRun {
    pub started: String,
    /// Null while the run is in progress, or when it was killed before it could log its end.
    pub finished: Option<String>,
    /// `ok`, `partial`, `failed`, or `unfinished` (a start without an end: running or killed).
    pub status: String,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Local {
    pub count: usize,
    pub bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Remote {
    pub count: usize,
}

fn rfc3339(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).to_rfc3339()
}

/// The last backup run and the end of the last `ok` one, from the activity log. Pure.
/// Only `backup` runs count (the agent's runs are `backup` runs too); rotate, verify, restore
/// and pin also log activity but are not what "last run" means here.
pub fn summarize(activity: &[Activity], tz: Tz) -> (Option<LastRun>, Option<String>) {
    let backups = || activity.iter().filter(|a| a.command == "backup");
    let last_start = backups().rev().find(|a| a.event == "start");
    let last_run = last_start.map(|start| {
        let end = backups()
            .rev()
            .find(|a| a.event == "end" && a.run == start.run);
        LastRun {
            started: rfc3339(start.at, tz),
            finished: end.map(|e| rfc3339(e.at, tz)),
            status: end
                .and_then(|e| e.status.clone())
                .unwrap_or_else(|| "unfinished".into()),
            error: end.and_then(|e| e.error.clone()),
        }
    });
    let last_success = backups()
        .rev()
        .find(|a| a.event == "end" && a.status.as_deref() == Some("ok"))
        .map(|a| rfc3339(a.at, tz));
    (last_run, last_success)
}

/// How many of this database's backups are on Drive; None when Drive is off or cannot be
/// reached right now (status must answer even when Drive does not; the log says why).
fn remote_count(cfg: &Config) -> Option<Remote> {
    // A status answer must not wait out DRIVE_RETRY_TIMEOUT on an unreachable Drive.
    let mut cfg = cfg.clone();
    let dc = cfg.drive.as_mut()?;
    dc.retry_timeout = dc.retry_timeout.min(std::time::Duration::from_secs(10));
    let cfg = &cfg;
    let result = crate::offsite::connect(cfg).and_then(|(drive, _)| {
        crate::offsite::list_remote(&drive, cfg.tz)
            .map_err(|e| crate::error::Error::Other(e.to_string()))
    });
    match result {
        Ok(files) => Some(Remote { count: files.len() }),
        Err(e) => {
            tracing::warn!(error = %e, "could not count the backups on Drive");
            None
        }
    }
}

/// Gather the status at `now`.
pub fn gather(cfg: &Config, now: DateTime<Utc>) -> Result<StatusJson> {
    let store = Store::existing(&cfg.backup_dir);
    let activity = store.activity()?;
    let (last_run, last_success) = summarize(&activity, cfg.tz);
    let entries = store.list(cfg.tz)?;
    Ok(StatusJson {
        last_run,
        last_success,
        next_run: schedule::next_run(now, &cfg.schedule, cfg.tz).map(|t| rfc3339(t, cfg.tz)),
        local: Local {
            count: entries.len(),
            bytes: entries.iter().map(|e| e.bytes).sum(),
        },
        remote: remote_count(cfg),
        pending_uploads: entries
            .iter()
            .filter(|e| e.upload() == Upload::Pending)
            .map(|e| e.file_name())
            .collect(),
    })
}

/// A few readable lines for a human.
pub fn human(s: &StatusJson, cfg: &Config) -> Vec<String> {
    let mut lines = Vec::new();
    lines.push(match &s.last_run {
        None => "last run:      never".into(),
        Some(r) => {
            let mut l = format!("last run:      {} started {}", r.status, r.started);
            if let Some(f) = &r.finished {
                l.push_str(&format!(", finished {f}"));
            }
            if let Some(e) = &r.error {
                l.push_str(&format!("\n               error: {e}"));
            }
            l
        }
    });
    lines.push(format!(
        "last success:  {}",
        s.last_success.as_deref().unwrap_or("never")
    ));
    lines.push(format!(
        "next run:      {} ({}, {})",
        s.next_run.as_deref().unwrap_or("never"),
        cfg.schedule,
        cfg.tz.name()
    ));
    lines.push(format!(
        "local:         {} backup(s), {} in {}",
        s.local.count,
        crate::cli::human_bytes(s.local.bytes),
        cfg.backup_dir.display()
    ));
    lines.push(match (&s.remote, &cfg.drive) {
        (Some(r), _) => format!("remote:        {} backup(s) on Drive", r.count),
        (None, None) => "remote:        Drive is off".into(),
        (None, Some(_)) => "remote:        not counted".into(),
    });
    lines.push(if s.pending_uploads.is_empty() {
        "pending uploads: none".into()
    } else {
        format!("pending uploads: {}", s.pending_uploads.join(", "))
    });
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn ev(min: u32, run: &str, event: &str, command: &str, status: Option<&str>) -> Activity {
        Activity {
            at: Utc.with_ymd_and_hms(2026, 7, 1, 1, min, 0).unwrap(),
            run: run.into(),
            event: event.into(),
            command: command.into(),
            status: status.map(str::to_string),
            error: (status == Some("failed")).then(|| "boom".to_string()),
            backup: None,
            stages_ms: Default::default(),
            deleted: vec![],
        }
    }

    #[test]
    fn empty_log_means_never() {
        assert_eq!(summarize(&[], Tz::UTC), (None, None));
    }

    #[test]
    fn last_run_is_the_last_backup_and_success_the_last_ok_one() {
        let log = vec![
            ev(0, "a", "start", "backup", None),
            ev(1, "a", "end", "backup", Some("ok")),
            ev(2, "b", "start", "backup", None),
            ev(3, "b", "end", "backup", Some("failed")),
            ev(4, "c", "start", "rotate", None),
            ev(5, "c", "end", "rotate", Some("ok")),
        ];
        let (run, success) = summarize(&log, chrono_tz::Europe::Berlin);
        let run = run.unwrap();
        assert_eq!(run.started, "2026-07-01T03:02:00+02:00");
        assert_eq!(run.finished.as_deref(), Some("2026-07-01T03:03:00+02:00"));
        assert_eq!(run.status, "failed");
        assert_eq!(run.error.as_deref(), Some("boom"));
        assert_eq!(success.as_deref(), Some("2026-07-01T03:01:00+02:00"));
    }

    #[test]
    fn a_start_without_an_end_is_unfinished() {
        let log = vec![
            ev(0, "a", "start", "backup", None),
            ev(1, "a", "end", "backup", Some("partial")),
            ev(2, "b", "start", "backup", None),
        ];
        let (run, success) = summarize(&log, Tz::UTC);
        let run = run.unwrap();
        assert_eq!(run.status, "unfinished");
        assert_eq!(run.finished, None);
        assert_eq!(success, None, "partial is not a success");
    }
}
