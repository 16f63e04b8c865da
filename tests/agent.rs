//! `snapkeep run`, the agent, as a real process: scheduled backups, a failing run, catch-up,
//! the lock, and a clean stop on SIGTERM (with and without the grace period running out).

mod common;
mod support;

use std::fs::File;
use std::path::Path;
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The agent, with its log in a file (a pipe nobody reads could fill and block it).
struct Agent {
    child: Child,
    log: std::path::PathBuf,
}

impl Agent {
    fn start(f: &Fixture, env: &[(&str, &str)]) -> Agent {
        let log = f.path("agent.log");
        let mut c = f.cmd(&["run"]);
        c.env("RUST_LOG", "snapkeep=debug")
            .env("KEEP_LAST", "1000")
            .stdout(Stdio::null())
            .stderr(Stdio::from(File::create(&log).unwrap()));
        for (k, v) in env {
            c.env(k, v);
        }
        Agent {
            child: c.spawn().expect("start the agent"),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    fn assert_running(&mut self) {
        assert!(
            self.child.try_wait().unwrap().is_none(),
            "the agent exited; log:\n{}",
            self.log()
        );
    }

    /// Wait for the exit, at most `limit`.
    fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "the agent did not exit within {limit:?}; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self, limit: Duration) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait(limit)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn activity(f: &Fixture) -> Vec<serde_json::Value> {
    std::fs::read_to_string(f.backups().join(".snapkeep/activity.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn ends(f: &Fixture) -> Vec<serde_json::Value> {
    activity(f)
        .into_iter()
        .filter(|a| a["event"] == "end")
        .collect()
}

fn wait_for(what: &str, limit: Duration, agent: &Agent, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; log:\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn tmp_entries(f: &Fixture) -> Vec<String> {
    std::fs::read_dir(f.backups().join(".snapkeep/tmp"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Runs never overlap: the log alternates start/end of the same run.
fn assert_no_overlap(f: &Fixture) {
    let log = activity(f);
    for pair in log.chunks(2) {
        assert_eq!(pair[0]["event"], "start", "{log:#?}");
        if let Some(end) = pair.get(1) {
            assert_eq!(end["event"], "end", "{log:#?}");
            assert_eq!(end["run"], pair[0]["run"], "{log:#?}");
        }
    }
}

#[test]
fn backs_up_on_schedule_survives_a_failing_run_and_stops_cleanly() {
    let f = Fixture::new();
    make_db(&f.db(), 2_000, "wal");
    let mut agent = Agent::start(
        &f,
        &[
            ("BACKUP_SCHEDULE", "*/3 * * * * *"),
            ("SHUTDOWN_GRACE", "30"),
        ],
    );
    // The catch-up run (no backup yet) and at least two scheduled ones.
    wait_for("three good runs", Duration::from_secs(30), &agent, || {
        ends(&f).iter().filter(|e| e["status"] == "ok").count() >= 3
    });

    // Take the database away: the next run fails, and the agent carries on.
    let away = f.path("app.db.away");
    std::fs::rename(f.db(), &away).unwrap();
    wait_for("a failed run", Duration::from_secs(15), &agent, || {
        ends(&f).last().is_some_and(|e| e["status"] == "failed")
    });
    agent.assert_running();
    let failed = ends(&f).last().unwrap().clone();
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("database not found"),
        "{failed}"
    );
    std::fs::rename(&away, f.db()).unwrap();
    wait_for(
        "a good run after the failure",
        Duration::from_secs(15),
        &agent,
        || ends(&f).last().is_some_and(|e| e["status"] == "ok"),
    );
    agent.assert_running();

    let started = Instant::now();
    let status = agent.stop(Duration::from_secs(35));
    assert_eq!(status.code(), Some(0), "log:\n{}", agent.log());
    assert!(started.elapsed() < Duration::from_secs(31));

    assert!(
        tmp_entries(&f).is_empty(),
        "left behind: {:?}",
        tmp_entries(&f)
    );
    assert_no_overlap(&f);
    let log = activity(&f);
    assert_eq!(log.last().unwrap()["event"], "end", "a run was cut short");
    let good: Vec<String> = ends(&f)
        .iter()
        .filter(|e| e["status"] == "ok")
        .map(|e| e["backup"].as_str().unwrap().to_string())
        .collect();
    let mut listed = f.listed();
    listed.sort();
    let mut expected = good.clone();
    expected.sort();
    assert_eq!(listed, expected, "every good run left exactly its backup");

    // Scheduled runs start on the schedule's 3-second marks (the first one is the catch-up).
    for start in log.iter().filter(|a| a["event"] == "start").skip(1) {
        let at = chrono::DateTime::parse_from_rfc3339(start["at"].as_str().unwrap()).unwrap();
        let ms = at.timestamp_millis().rem_euclid(3_000);
        assert!(
            ms < 1_500,
            "run started {ms} ms after its 3-second mark: {start}"
        );
    }
    let text = agent.log();
    assert!(
        text.contains("scheduled backup failed; the agent keeps running"),
        "{text}"
    );
    assert!(text.contains("snapkeep agent stopped"), "{text}");
}

/// A database big enough that its backup takes a few seconds.
fn big_fixture(mib: usize) -> Fixture {
    let f = Fixture::new();
    make_big_db(&f.db(), mib);
    f
}

#[test]
fn sigterm_lets_a_running_backup_finish_within_the_grace_period() {
    let f = big_fixture(96);
    let mut agent = Agent::start(&f, &[("SHUTDOWN_GRACE", "60")]);
    // No backup yet: the catch-up run starts at once.
    wait_for(
        "the backup to be under way",
        Duration::from_secs(20),
        &agent,
        || !tmp_entries(&f).is_empty(),
    );
    let status = agent.stop(Duration::from_secs(60));
    assert_eq!(status.code(), Some(0), "log:\n{}", agent.log());
    let ends = ends(&f);
    assert_eq!(ends.len(), 1, "{ends:#?}");
    assert_eq!(
        ends[0]["status"], "ok",
        "the run was not allowed to finish: {ends:#?}"
    );
    assert_eq!(f.listed().len(), 1);
    assert!(tmp_entries(&f).is_empty());
    assert!(agent.log().contains("letting the running backup finish"));
}

#[test]
fn sigterm_with_no_grace_aborts_the_backup_and_leaves_nothing() {
    let f = big_fixture(192);
    let mut agent = Agent::start(&f, &[("SHUTDOWN_GRACE", "0")]);
    wait_for(
        "the backup to be under way",
        Duration::from_secs(20),
        &agent,
        || !tmp_entries(&f).is_empty(),
    );
    let started = Instant::now();
    let status = agent.stop(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "log:\n{}", agent.log());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the abort took {:?}",
        started.elapsed()
    );
    let ends = ends(&f);
    assert_eq!(ends.len(), 1, "{ends:#?}");
    assert_eq!(ends[0]["status"], "failed");
    assert!(
        ends[0]["error"].as_str().unwrap().contains("aborted"),
        "{ends:#?}"
    );
    assert!(f.listed().is_empty(), "the aborted run left a backup");
    assert!(f.backup_files().is_empty());
    assert!(
        tmp_entries(&f).is_empty(),
        "left behind: {:?}",
        tmp_entries(&f)
    );
    let records = std::fs::read_dir(f.backups().join(".snapkeep/records")).unwrap();
    assert_eq!(records.count(), 0);
    assert!(agent
        .log()
        .contains("grace period over: aborting the running backup"));
}

/// An activity log whose only run ended `status` at `at`.
fn write_history(f: &Fixture, at: chrono::DateTime<chrono::Utc>, status: &str) {
    let dir = f.backups().join(".snapkeep");
    std::fs::create_dir_all(&dir).unwrap();
    let start = serde_json::json!({"at": at - chrono::TimeDelta::seconds(2), "run": "old", "event": "start", "command": "backup"});
    let end = serde_json::json!({"at": at, "run": "old", "event": "end", "command": "backup", "status": status});
    std::fs::write(dir.join("activity.jsonl"), format!("{start}\n{end}\n")).unwrap();
}

fn new_starts(f: &Fixture) -> usize {
    activity(f)
        .iter()
        .filter(|a| a["event"] == "start" && a["run"] != "old")
        .count()
}

#[test]
fn a_missed_run_is_caught_up_once_at_start_then_the_agent_idles() {
    let f = Fixture::new();
    make_db(&f.db(), 500, "wal");
    write_history(&f, chrono::Utc::now() - chrono::TimeDelta::days(2), "ok");
    let mut agent = Agent::start(
        &f,
        &[("BACKUP_SCHEDULE", "0 3 * * *"), ("LOG_FORMAT", "json")],
    );
    wait_for("the catch-up run", Duration::from_secs(20), &agent, || {
        ends(&f).len() == 2
    });
    std::thread::sleep(Duration::from_secs(3));
    agent.assert_running();
    assert_eq!(new_starts(&f), 1, "{:#?}", activity(&f));
    assert_eq!(ends(&f)[1]["status"], "ok");
    assert_eq!(f.listed().len(), 1);
    assert_eq!(agent.stop(Duration::from_secs(10)).code(), Some(0));

    // LOG_FORMAT=json: every line is a JSON object with tracing's fields.
    let text = agent.log();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let catch_up = lines
        .iter()
        .find(|l| l["fields"]["message"] == "a scheduled run was missed: running once now")
        .unwrap_or_else(|| panic!("no catch-up line in:\n{text}"));
    assert!(catch_up["fields"]["missed"]
        .as_str()
        .unwrap()
        .contains("T03:00:00"));
    assert!(lines
        .iter()
        .any(|l| l["fields"]["message"] == "idle until the next run"));
}

/// Also: the agent's runs notify and ping like `backup` does (network code on the blocking
/// thread that runs the backup).
#[test]
fn with_no_backup_at_all_one_runs_at_start_and_is_notified() {
    let f = Fixture::new();
    make_db(&f.db(), 500, "wal");
    let ntfy = support::ntfy::FakeNtfy::start();
    let hc = support::healthcheck::FakeHealthcheck::start();
    let ntfy_url = ntfy.url();
    let hc_url = hc.ping_url();
    let mut agent = Agent::start(
        &f,
        &[
            ("BACKUP_SCHEDULE", "0 3 * * *"),
            ("NTFY_URL", &ntfy_url),
            ("NTFY_TOPIC", "agent"),
            ("HEALTHCHECK_URL", &hc_url),
        ],
    );
    wait_for("the first backup", Duration::from_secs(20), &agent, || {
        ends(&f).len() == 1
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(new_starts(&f), 1);
    assert_eq!(ends(&f)[0]["status"], "ok");
    let msgs = ntfy.messages();
    assert_eq!(msgs.len(), 1, "{msgs:#?}");
    assert_eq!(msgs[0].title.as_deref(), Some("Backup OK: app.db"));
    use support::healthcheck::PingKind;
    assert_eq!(hc.kinds(), vec![PingKind::Start, PingKind::Success]);
    assert_eq!(agent.stop(Duration::from_secs(10)).code(), Some(0));
}

#[test]
fn no_catch_up_when_the_last_scheduled_run_succeeded() {
    let f = Fixture::new();
    make_db(&f.db(), 500, "wal");
    // Succeeded now, which is after the last 03:00 whatever the time of day.
    write_history(&f, chrono::Utc::now(), "ok");
    let mut agent = Agent::start(&f, &[("BACKUP_SCHEDULE", "0 3 * * *")]);
    wait_for(
        "the agent to settle",
        Duration::from_secs(10),
        &agent,
        || agent.log().contains("idle until the next run"),
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(new_starts(&f), 0, "{:#?}", activity(&f));
    let started = Instant::now();
    assert_eq!(agent.stop(Duration::from_secs(10)).code(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "an idle agent stops at once"
    );
}

#[test]
fn a_run_that_finds_the_lock_held_is_skipped_not_fatal() {
    let f = Fixture::new();
    make_db(&f.db(), 500, "wal");
    // A manual run holds the lock (the same lock file `snapkeep backup` takes).
    let state = f.backups().join(".snapkeep");
    std::fs::create_dir_all(&state).unwrap();
    let lock = File::create(state.join("lock")).unwrap();
    lock.try_lock().expect("take the lock");
    let mut agent = Agent::start(&f, &[("BACKUP_SCHEDULE", "*/2 * * * * *")]);
    wait_for("two skipped runs", Duration::from_secs(15), &agent, || {
        agent.log().matches("holds the lock").count() >= 2
    });
    agent.assert_running();
    assert!(activity(&f).is_empty());
    drop(lock);
    wait_for(
        "a run once the lock is free",
        Duration::from_secs(15),
        &agent,
        || ends(&f).iter().any(|e| e["status"] == "ok"),
    );
    assert_eq!(agent.stop(Duration::from_secs(30)).code(), Some(0));
}

#[test]
fn run_without_a_database_is_a_configuration_error() {
    let f = Fixture::new();
    let out = f.cmd(&["run"]).env_remove("DATABASE_URL").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("DATABASE_URL is not set"));
    assert!(!Path::new(&f.backups()).exists());
}
