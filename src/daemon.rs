//! `snapkeep run`: the long-running agent. It backs up on `BACKUP_SCHEDULE`, catches up once
//! on a run missed while it was down, never overlaps runs, survives failed runs, and stops
//! cleanly on SIGTERM/SIGINT.
//!
//! Scheduling is our own loop around the pure [`schedule::next_run`], not tokio-cron-scheduler:
//! that crate captures the zone's UTC offset once when a job is created, so a 03:00 job drifts
//! to 02:00 or 04:00 after a DST change, and it wants six fields and ANDs the day fields.
//! Asking `next_run` afresh after every run keeps 03:00 local at 03:00 local all year.
//!
//! The loop sleeps in slices of at most [`MAX_SLICE`] and re-reads the wall clock after each.
//! Timers run on the monotonic clock, which stops while the machine is suspended and does not
//! follow clock changes; re-reading the wall clock every minute means a resume or a clock step
//! is noticed within a minute. Idle means one wake-up a minute and nothing else.
//!
//! What "no duplicate, no lost run" means here (decided by the pure [`Planner`]):
//! - a suspend or a forward clock step past one or more scheduled times runs ONE backup when it
//!   is noticed, not one per missed time;
//! - a slot fires at most once: scheduling continues from the last slot that fired (or the end
//!   of the run, if that is later), so a small backward step (NTP) does not fire it again;
//! - a backward step of more than [`BACKWARD_TOLERANCE`] means the clock was wrong (a machine
//!   booted without a real-time clock, then corrected): scheduling restarts from the corrected
//!   clock, so runs are not lost for as long as the clock had been ahead.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::cancel::Cancel;
use crate::catalog::Store;
use crate::config::Config;
use crate::error::{Error, ExitStatus, Result};
use crate::job::{self, BackupOptions, Report, Status};
use crate::names::Kind;
use crate::schedule::{self, Schedule};

/// The longest the agent sleeps before looking at the wall clock again.
pub const MAX_SLICE: Duration = Duration::from_secs(60);

/// How far the wall clock may step backwards before the agent concludes it was wrong and
/// schedules from the corrected time (see the module documentation).
pub const BACKWARD_TOLERANCE: TimeDelta = TimeDelta::hours(1);

/// Whether a scheduled run was missed while the agent was not running: the last scheduled time
/// at or before `now` passed with no backup made since. At most one catch-up run follows,
/// however many scheduled times were missed. With no backup at all, a first one is due now.
pub fn catch_up_due(
    now: DateTime<Utc>,
    last_success: Option<DateTime<Utc>>,
    schedule: &Schedule,
    tz: Tz,
) -> bool {
    match schedule::last_run(now, schedule, tz) {
        None => false,
        Some(slot) => last_success.is_none_or(|done| done < slot),
    }
}

/// When the last backup was made, for the catch-up decision: the end of the last `backup` run
/// that left a backup (status `ok`, or `partial`: the local backup is safe, only the upload,
/// rotation or notification failed), or the creation of the newest backup or legacy backup
/// in the directory, whichever is later. The directory counts too so that an activity log lost
/// or started fresh beside existing backups does not cause a needless run.
pub fn last_backup_made(store: &Store, tz: Tz) -> Result<Option<DateTime<Utc>>> {
    let from_log = store
        .activity()?
        .into_iter()
        .filter(|a| {
            a.command == "backup"
                && a.event == "end"
                && matches!(a.status.as_deref(), Some("ok") | Some("partial"))
        })
        .map(|a| a.at)
        .max();
    let from_dir = store
        .list(tz)?
        .into_iter()
        .filter(|e| matches!(e.name.kind, Kind::Backup | Kind::Legacy))
        .map(|e| e.created(tz))
        .max();
    Ok(from_log.max(from_dir))
}

/// What the loop should do after reading the wall clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Back up now, for the scheduled time `slot`.
    Run { slot: DateTime<Utc> },
    /// Nothing is due: sleep this long (at most [`MAX_SLICE`]), then ask again.
    Sleep { wait: Duration, next: DateTime<Utc> },
    /// The schedule never fires again.
    Never,
}

/// The scheduling decisions, with the clock passed in: pure and tested without waiting.
#[derive(Debug, Clone)]
pub struct Planner {
    schedule: Schedule,
    tz: Tz,
    /// Scheduled times at or before this instant are done (or were deliberately skipped).
    floor: DateTime<Utc>,
}

impl Planner {
    /// Start at `now`: times at or before it are the catch-up decision's business.
    pub fn new(schedule: Schedule, tz: Tz, now: DateTime<Utc>) -> Self {
        Planner {
            schedule,
            tz,
            floor: now,
        }
    }

    pub fn floor(&self) -> DateTime<Utc> {
        self.floor
    }

    /// Whether `now` is so far before the last run that the clock must have been wrong; the
    /// next [`Planner::poll`] then schedules from `now`.
    pub fn clock_went_back(&self, now: DateTime<Utc>) -> bool {
        now + BACKWARD_TOLERANCE < self.floor
    }

    /// Read the clock: run, or sleep until the next scheduled time (in slices).
    pub fn poll(&mut self, now: DateTime<Utc>) -> Action {
        if self.clock_went_back(now) {
            self.floor = now;
        }
        match schedule::next_run(self.floor, &self.schedule, self.tz) {
            None => Action::Never,
            Some(slot) if slot <= now => Action::Run { slot },
            Some(next) => Action::Sleep {
                wait: (next - now).to_std().unwrap_or_default().min(MAX_SLICE),
                next,
            },
        }
    }

    /// A run for `slot` ended (whatever its outcome, or skipped) at `finished`. Times that
    /// passed while it ran are covered by it: runs never queue up behind each other.
    pub fn ran(&mut self, slot: DateTime<Utc>, finished: DateTime<Utc>) {
        self.floor = self.floor.max(slot).max(finished);
    }
}

/// SIGTERM or SIGINT, whichever comes first.
struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    fn install() -> Result<Signals> {
        let err = |e: std::io::Error| Error::Other(format!("cannot install signal handlers: {e}"));
        Ok(Signals {
            term: signal(SignalKind::terminate()).map_err(err)?,
            int: signal(SignalKind::interrupt()).map_err(err)?,
        })
    }

    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

fn local(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).to_rfc3339()
}

/// Log a run's outcome with fields; a failed run is an error in the log, never for the agent.
fn log_outcome(outcome: std::result::Result<Result<Report>, tokio::task::JoinError>) {
    match outcome {
        Ok(Ok(r)) => {
            let backup = r.backup.as_ref().map(|b| b.name.as_str()).unwrap_or("-");
            let bytes = r.backup.as_ref().map(|b| b.bytes).unwrap_or(0);
            let deleted = r.rotation.deleted.len();
            let error = r.error.as_deref().unwrap_or("");
            match r.status {
                Status::Ok => tracing::info!(
                    status = "ok",
                    backup,
                    bytes,
                    deleted,
                    duration_ms = r.duration_ms,
                    "scheduled backup finished"
                ),
                Status::Partial => tracing::warn!(
                    status = "partial",
                    backup,
                    bytes,
                    deleted,
                    duration_ms = r.duration_ms,
                    error,
                    "scheduled backup is safe locally, but not everything worked"
                ),
                Status::Failed => tracing::error!(
                    status = "failed",
                    duration_ms = r.duration_ms,
                    error,
                    "scheduled backup failed; the agent keeps running"
                ),
            }
        }
        Ok(Err(Error::Locked(dir))) => tracing::warn!(
            backup_dir = %dir.display(),
            "scheduled backup skipped: another snapkeep run (a manual backup?) holds the lock"
        ),
        Ok(Err(e)) => tracing::error!(
            error = %e,
            "scheduled backup could not start; the agent keeps running"
        ),
        Err(e) => tracing::error!(
            error = %e,
            "scheduled backup crashed; the agent keeps running"
        ),
    }
}

/// One backup on a blocking thread. If a stop is requested meanwhile, the backup gets
/// SHUTDOWN_GRACE to finish, then is cancelled (it cleans up like any failure) and awaited.
/// A second signal during the grace period cancels at once. Returns whether to stop.
async fn run_one(
    cfg: &Arc<Config>,
    signals: &mut Signals,
    reason: &'static str,
    slot: DateTime<Utc>,
) -> bool {
    let cancel = Cancel::new();
    tracing::info!(reason, slot = %local(slot, cfg.tz), "backup starting");
    let mut task = {
        let (cfg, cancel) = (cfg.clone(), cancel.clone());
        tokio::task::spawn_blocking(move || {
            job::run_backup(&cfg, BackupOptions::default(), &cancel)
        })
    };
    let sig = tokio::select! {
        outcome = &mut task => {
            log_outcome(outcome);
            return false;
        }
        sig = signals.recv() => sig,
    };
    let grace = cfg.shutdown_grace;
    tracing::info!(
        signal = sig,
        grace_s = grace.as_secs(),
        "stop requested: letting the running backup finish"
    );
    let outcome = tokio::select! {
        outcome = &mut task => outcome,
        _ = tokio::time::sleep(grace) => {
            tracing::warn!(grace_s = grace.as_secs(), "grace period over: aborting the running backup");
            cancel.cancel();
            (&mut task).await
        }
        sig = signals.recv() => {
            tracing::warn!(signal = sig, "second stop request: aborting the running backup");
            cancel.cancel();
            (&mut task).await
        }
    };
    log_outcome(outcome);
    true
}

/// The agent. Returns only on a stop request (exit 0) or when it cannot schedule at all.
pub async fn run(cfg: Config) -> Result<ExitStatus> {
    cfg.database()?;
    let cfg = Arc::new(cfg);
    let mut signals = Signals::install()?;
    tracing::info!(
        schedule = %cfg.schedule,
        tz = cfg.tz.name(),
        backup_dir = %cfg.backup_dir.display(),
        shutdown_grace_s = cfg.shutdown_grace.as_secs(),
        pid = std::process::id(),
        "snapkeep agent started"
    );

    let now = Utc::now();
    let mut planner = Planner::new(cfg.schedule.clone(), cfg.tz, now);
    let last = match last_backup_made(&Store::existing(&cfg.backup_dir), cfg.tz) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the backup history; assuming no backup was made");
            None
        }
    };
    if catch_up_due(now, last, &cfg.schedule, cfg.tz) {
        let slot = schedule::last_run(now, &cfg.schedule, cfg.tz).unwrap_or(now);
        tracing::info!(
            missed = %local(slot, cfg.tz),
            last_backup = %last.map(|t| local(t, cfg.tz)).unwrap_or_else(|| "never".into()),
            "a scheduled run was missed: running once now"
        );
        if run_one(&cfg, &mut signals, "catch-up", slot).await {
            return Ok(stopped());
        }
        planner.ran(slot, Utc::now());
    }

    let mut announced = None;
    loop {
        let now = Utc::now();
        if planner.clock_went_back(now) {
            tracing::warn!(
                last_run = %local(planner.floor(), cfg.tz), now = %local(now, cfg.tz),
                "the wall clock went back by more than an hour: scheduling from the corrected time"
            );
        }
        match planner.poll(now) {
            Action::Never => {
                tracing::error!(schedule = %cfg.schedule, "the schedule never fires again");
                return Err(Error::Other(format!(
                    "BACKUP_SCHEDULE {:?} never fires again",
                    cfg.schedule.to_string()
                )));
            }
            Action::Run { slot } => {
                let stop = run_one(&cfg, &mut signals, "scheduled", slot).await;
                planner.ran(slot, Utc::now());
                if stop {
                    return Ok(stopped());
                }
            }
            Action::Sleep { wait, next } => {
                if announced != Some(next) {
                    tracing::info!(next_run = %local(next, cfg.tz), "idle until the next run");
                    announced = Some(next);
                }
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    sig = signals.recv() => {
                        tracing::info!(signal = sig, "stop requested while idle");
                        return Ok(stopped());
                    }
                }
            }
        }
    }
}

fn stopped() -> ExitStatus {
    tracing::info!("snapkeep agent stopped");
    ExitStatus::Ok
}

/// `snapkeep run`: a single-threaded runtime is plenty for one timer and two signals (backups
/// run on the blocking pool), and keeps the idle agent small.
pub fn main(cfg: Config) -> Result<ExitStatus> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Other(format!("cannot start the runtime: {e}")))?;
    let status = rt.block_on(run(cfg));
    // A backup still running here was cancelled and awaited; nothing is left to wait for.
    rt.shutdown_timeout(Duration::from_secs(1));
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use chrono_tz::Europe::Berlin;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    fn berlin(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Berlin
            .with_ymd_and_hms(y, mo, d, h, mi, 0)
            .earliest()
            .unwrap()
            .with_timezone(&Utc)
    }

    fn daily3() -> Schedule {
        "0 3 * * *".parse().unwrap()
    }

    #[rstest::rstest]
    // No backup ever: the first one is due at once.
    #[case::never_backed_up(berlin(2026, 7, 1, 12, 0), None, true)]
    // Today's 03:00 passed and the last backup is from yesterday's run.
    #[case::missed_today(berlin(2026, 7, 1, 12, 0), Some(berlin(2026, 6, 30, 3, 0)), true)]
    // Last backup two days ago: still ONE catch-up (the function is a yes/no).
    #[case::missed_several_days(berlin(2026, 7, 3, 12, 0), Some(berlin(2026, 7, 1, 3, 0)), true)]
    // Today's run happened.
    #[case::done_today(berlin(2026, 7, 1, 12, 0), Some(berlin(2026, 7, 1, 3, 0)), false)]
    #[case::done_just_after(berlin(2026, 7, 1, 12, 0), Some(berlin(2026, 7, 1, 3, 1)), false)]
    // Before 03:00 the last slot is yesterday's; a backup yesterday at 03:00 covers it.
    #[case::early_morning(berlin(2026, 7, 1, 2, 59), Some(berlin(2026, 6, 30, 3, 0)), false)]
    #[case::early_morning_missed(berlin(2026, 7, 1, 2, 59), Some(berlin(2026, 6, 29, 3, 0)), true)]
    // Exactly at the slot: the slot has passed (at or before now) and needs its backup.
    #[case::at_the_slot(berlin(2026, 7, 1, 3, 0), Some(berlin(2026, 6, 30, 3, 0)), true)]
    // A manual backup in the afternoon covers the morning's slot.
    #[case::manual_later(berlin(2026, 7, 1, 18, 0), Some(berlin(2026, 7, 1, 15, 0)), false)]
    // DST: 03:00 CEST on the day summer time starts is 01:00 UTC; a backup at 02:30 UTC covers it.
    #[case::dst_start_covered(utc(2026, 3, 29, 6, 0, 0), Some(utc(2026, 3, 29, 1, 0, 5)), false)]
    // …and one at 00:30 UTC (02:30 CET, before the slot) does not.
    #[case::dst_start_missed(utc(2026, 3, 29, 6, 0, 0), Some(utc(2026, 3, 29, 0, 30, 0)), true)]
    // Day summer time ends: 03:00 local is 02:00 UTC (CET again); 01:30 UTC is before it.
    #[case::dst_end_missed(utc(2026, 10, 25, 9, 0, 0), Some(utc(2026, 10, 25, 1, 30, 0)), true)]
    #[case::dst_end_covered(utc(2026, 10, 25, 9, 0, 0), Some(utc(2026, 10, 25, 2, 0, 0)), false)]
    fn catch_up_decision(
        #[case] now: DateTime<Utc>,
        #[case] last: Option<DateTime<Utc>>,
        #[case] due: bool,
    ) {
        assert_eq!(catch_up_due(now, last, &daily3(), Berlin), due);
    }

    #[test]
    fn catch_up_with_a_seconds_schedule() {
        let every5: Schedule = "*/5 * * * * *".parse().unwrap();
        let now = utc(2026, 1, 1, 0, 0, 12);
        assert!(catch_up_due(
            now,
            Some(utc(2026, 1, 1, 0, 0, 9)),
            &every5,
            Tz::UTC
        ));
        assert!(!catch_up_due(
            now,
            Some(utc(2026, 1, 1, 0, 0, 10)),
            &every5,
            Tz::UTC
        ));
    }

    /// Drive the planner with a scripted wall clock the way the loop does (runs take `run_for`)
    /// and return the slots that ran.
    fn simulate(
        p: &mut Planner,
        clock: &[DateTime<Utc>],
        run_for: TimeDelta,
    ) -> Vec<DateTime<Utc>> {
        let mut runs = Vec::new();
        for &now in clock {
            let mut now = now;
            while let Action::Run { slot } = p.poll(now) {
                runs.push(slot);
                now += run_for;
                p.ran(slot, now);
            }
        }
        runs
    }

    #[test]
    fn stays_at_03_local_across_both_dst_changes() {
        let start = berlin(2026, 3, 27, 12, 0);
        let mut p = Planner::new(daily3(), Berlin, start);
        // Wake every minute for 8 months would be slow; waking at each answer is equivalent.
        let mut now = start;
        let mut runs = Vec::new();
        while now < berlin(2026, 11, 2, 0, 0) {
            match p.poll(now) {
                Action::Run { slot } => {
                    runs.push(slot);
                    p.ran(slot, now + TimeDelta::seconds(5));
                    now += TimeDelta::seconds(5);
                }
                Action::Sleep { wait, .. } => now += TimeDelta::from_std(wait).unwrap(),
                Action::Never => unreachable!(),
            }
        }
        // One a day, March 28th to November 1st inclusive.
        assert_eq!(runs.len(), 219);
        for r in &runs {
            assert_eq!(
                r.with_timezone(&Berlin).format("%H:%M:%S").to_string(),
                "03:00:00"
            );
        }
        // Across the spring change the gap is 23 h, across the autumn one 25 h.
        let gap = |d: u32, m: u32| {
            let i = runs
                .iter()
                .position(|r| {
                    r.with_timezone(&Berlin).date_naive()
                        == chrono::NaiveDate::from_ymd_opt(2026, m, d).unwrap()
                })
                .unwrap();
            (runs[i] - runs[i - 1]).num_hours()
        };
        assert_eq!(gap(29, 3), 23);
        assert_eq!(gap(25, 10), 25);
    }

    #[test]
    fn idle_sleeps_in_slices_of_at_most_a_minute() {
        let start = berlin(2026, 7, 1, 12, 0);
        let mut p = Planner::new(daily3(), Berlin, start);
        match p.poll(start) {
            Action::Sleep { wait, next } => {
                assert_eq!(wait, MAX_SLICE);
                assert_eq!(next, berlin(2026, 7, 2, 3, 0));
            }
            other => panic!("{other:?}"),
        }
        match p.poll(berlin(2026, 7, 2, 3, 0) - TimeDelta::seconds(7)) {
            Action::Sleep { wait, .. } => assert_eq!(wait, Duration::from_secs(7)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_suspend_over_several_slots_runs_once_when_noticed() {
        let start = berlin(2026, 7, 1, 12, 0);
        let mut p = Planner::new(daily3(), Berlin, start);
        // Asleep from noon on the 1st until 09:00 on the 4th: three 03:00s passed.
        let runs = simulate(
            &mut p,
            &[start, berlin(2026, 7, 4, 9, 0), berlin(2026, 7, 4, 9, 1)],
            TimeDelta::seconds(30),
        );
        assert_eq!(runs, vec![berlin(2026, 7, 2, 3, 0)]);
        // …and the next one is the 5th at 03:00, not earlier.
        match p.poll(berlin(2026, 7, 4, 10, 0)) {
            Action::Sleep { next, .. } => assert_eq!(next, berlin(2026, 7, 5, 3, 0)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_run_longer_than_the_interval_does_not_queue_runs() {
        let every3: Schedule = "*/3 * * * * *".parse().unwrap();
        let start = utc(2026, 1, 1, 0, 0, 1);
        let mut p = Planner::new(every3, Tz::UTC, start);
        // Each run takes 10 s; slots 3, 6, 9 … would pile up if runs were queued.
        let clock: Vec<_> = (0..30).map(|s| start + TimeDelta::seconds(s)).collect();
        let runs = simulate(&mut p, &clock, TimeDelta::seconds(10));
        assert_eq!(
            runs,
            vec![
                utc(2026, 1, 1, 0, 0, 3),
                utc(2026, 1, 1, 0, 0, 15),
                utc(2026, 1, 1, 0, 0, 27)
            ]
        );
    }

    #[test]
    fn a_small_backward_step_does_not_fire_a_slot_twice() {
        let start = berlin(2026, 7, 1, 2, 50);
        let mut p = Planner::new(daily3(), Berlin, start);
        let runs = simulate(
            &mut p,
            &[
                berlin(2026, 7, 1, 3, 0),
                // NTP steps the clock back 20 minutes, and it passes 03:00 again.
                berlin(2026, 7, 1, 2, 41),
                berlin(2026, 7, 1, 3, 0),
                berlin(2026, 7, 1, 3, 5),
            ],
            TimeDelta::seconds(30),
        );
        assert_eq!(runs, vec![berlin(2026, 7, 1, 3, 0)]);
    }

    #[test]
    fn a_large_backward_step_does_not_lose_runs() {
        // Booted with the clock two days ahead, ran "03:00 on the 3rd", then NTP fixed it.
        let start = berlin(2026, 7, 3, 2, 59);
        let mut p = Planner::new(daily3(), Berlin, start);
        let runs = simulate(
            &mut p,
            &[
                berlin(2026, 7, 3, 3, 0),
                berlin(2026, 7, 1, 3, 1),
                berlin(2026, 7, 2, 3, 0),
            ],
            TimeDelta::seconds(30),
        );
        assert_eq!(
            runs,
            vec![berlin(2026, 7, 3, 3, 0), berlin(2026, 7, 2, 3, 0)]
        );
    }

    #[test]
    fn nothing_runs_before_the_first_slot_after_start() {
        let start = berlin(2026, 7, 1, 3, 0) + TimeDelta::seconds(1);
        let mut p = Planner::new(daily3(), Berlin, start);
        assert!(simulate(
            &mut p,
            &[start, berlin(2026, 7, 2, 2, 59)],
            TimeDelta::zero()
        )
        .is_empty());
        assert_eq!(
            simulate(&mut p, &[berlin(2026, 7, 2, 3, 0)], TimeDelta::zero()),
            vec![berlin(2026, 7, 2, 3, 0)]
        );
    }
}
