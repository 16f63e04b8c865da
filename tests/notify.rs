//! ntfy notifications and healthchecks.io pings after real backups, against real loopback
//! servers that speak each protocol (tests/support).

mod common;
mod support;

use std::process::{Command, Output};
use std::time::Duration;

use common::*;
use support::healthcheck::{FakeHealthcheck, PingKind};
use support::ntfy::{FakeNtfy, NtfyAuth, NtfyMessage, MESSAGE_LIMIT};

const TOPIC: &str = "snapkeep-test";

fn ntfy_env<'a>(c: &'a mut Command, n: &FakeNtfy) -> &'a mut Command {
    c.env("NTFY_URL", n.url()).env("NTFY_TOPIC", TOPIC)
}

fn backup_json(f: &Fixture, n: &FakeNtfy, extra: &[(&str, &str)]) -> Output {
    let mut c = f.cmd(&["backup", "--no-drive", "--json"]);
    ntfy_env(&mut c, n);
    for (k, v) in extra {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn only_message(n: &FakeNtfy) -> NtfyMessage {
    let msgs = n.messages();
    assert_eq!(msgs.len(), 1, "expected one message, got {msgs:#?}");
    msgs.into_iter().next().unwrap()
}

#[test]
fn success_message_names_database_file_size_path_and_rotation() {
    let f = Fixture::new();
    make_db(&f.db(), 2_000, "wal");
    for _ in 0..2 {
        assert_eq!(f.run(&["backup", "--no-drive"]).status.code(), Some(0));
    }
    let n = FakeNtfy::start();
    n.add_token("tk_AgQdq7mVBoFD37zQVN29RhuMzNIz2");
    let out = backup_json(
        &f,
        &n,
        &[
            ("NTFY_TOKEN", "tk_AgQdq7mVBoFD37zQVN29RhuMzNIz2"),
            ("KEEP_DAILY", "1"),
            ("KEEP_WEEKLY", "0"),
            ("KEEP_MONTHLY", "0"),
            ("RUST_LOG", "trace"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert!(
        !stderr(&out).contains("AgQdq7mVBoFD37zQVN29RhuMzNIz2"),
        "the token leaked into the log"
    );
    let report = json(&out);
    assert_eq!(report["rotation"]["deleted"].as_array().unwrap().len(), 2);
    let m = only_message(&n);
    assert_eq!(m.topic, TOPIC);
    assert_eq!(
        m.auth,
        NtfyAuth::Token("tk_AgQdq7mVBoFD37zQVN29RhuMzNIz2".into())
    );
    assert_eq!(m.title.as_deref(), Some("Backup OK: app.db"));
    let name = report["backup"]["name"].as_str().unwrap();
    let path = report["backup"]["path"].as_str().unwrap();
    let bytes = report["backup"]["bytes"].as_u64().unwrap();
    assert!(m.message.contains(name), "{}", m.message);
    assert!(
        m.message.contains(&format!("saved in {path}")),
        "{}",
        m.message
    );
    assert!(
        m.message.contains(&snapkeep::cli::human_bytes(bytes)),
        "size missing: {}",
        m.message
    );
    assert!(
        m.message.contains("rotation removed 2 old backups"),
        "{}",
        m.message
    );
    assert!(m.priority <= 3);
    assert!(!m.tags.contains(&"warning".to_string()));
    assert_eq!(m.click, None, "no Drive link without Drive");
}

#[test]
fn failure_message_is_high_priority_with_a_warning_tag_the_error_and_the_time() {
    let f = Fixture::new();
    let n = FakeNtfy::start();
    let out = backup_json(&f, &n, &[]);
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    let m = only_message(&n);
    assert_eq!(m.title.as_deref(), Some("Backup FAILED: app.db"));
    assert!(m.priority >= 4, "priority {}", m.priority);
    assert!(m.tags.contains(&"warning".to_string()), "{:?}", m.tags);
    assert!(m.message.contains("database not found"), "{}", m.message);
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    assert!(
        m.message.contains(&format!("at {today}")) && m.message.contains("UTC"),
        "{}",
        m.message
    );
}

#[test]
fn a_non_ascii_title_arrives_intact() {
    let f = Fixture::new();
    let db = f.path("données-数据.db");
    make_db(&db, 100, "wal");
    let n = FakeNtfy::start();
    let mut c = f.cmd(&["backup", "--no-drive"]);
    ntfy_env(&mut c, &n).env("DATABASE_URL", &db);
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let m = only_message(&n);
    assert_eq!(m.title.as_deref(), Some("Backup OK: données-数据.db"));
}

#[test]
fn a_500_from_ntfy_is_retried_and_the_backup_still_succeeds() {
    let f = Fixture::new();
    make_db(&f.db(), 100, "wal");
    let n = FakeNtfy::start();
    n.fail_next(2, 500);
    let out = backup_json(&f, &n, &[]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert_eq!(json(&out)["status"], "ok");
    let statuses: Vec<u16> = n.request_log().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![500, 500, 200]);
    assert_eq!(n.messages().len(), 1);
}

#[test]
fn ntfy_failing_every_retry_makes_the_run_partial_and_keeps_the_backup() {
    let f = Fixture::new();
    make_db(&f.db(), 100, "wal");
    let n = FakeNtfy::start();
    n.fail_next(100, 503);
    let started = std::time::Instant::now();
    let out = backup_json(&f, &n, &[]);
    assert_eq!(out.status.code(), Some(3), "stderr: {}", stderr(&out));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "retries are bounded"
    );
    let report = json(&out);
    assert_eq!(report["status"], "partial");
    let error = report["error"].as_str().unwrap();
    assert!(
        error.starts_with("notification failed: ntfy: HTTP 503"),
        "{error}"
    );
    assert!(
        stderr(&out).contains("notification failed"),
        "{}",
        stderr(&out)
    );
    let tries = n.request_log().len();
    assert!((2..=6).contains(&tries), "{tries} attempts");
    assert_eq!(f.listed(), vec![report["backup"]["name"].as_str().unwrap()]);
    assert_eq!(
        sha256_hex(std::path::Path::new(
            report["backup"]["path"].as_str().unwrap()
        )),
        report["backup"]["sha256"].as_str().unwrap()
    );
}

#[test]
fn ntfy_down_makes_the_run_partial() {
    let f = Fixture::new();
    make_db(&f.db(), 100, "wal");
    let n = FakeNtfy::start();
    n.pause();
    let out = backup_json(&f, &n, &[]);
    assert_eq!(out.status.code(), Some(3), "stderr: {}", stderr(&out));
    let report = json(&out);
    assert!(
        report["error"].as_str().unwrap().contains("cannot connect"),
        "{report}"
    );
    assert_eq!(f.listed().len(), 1);
}

#[test]
fn a_wrong_password_is_not_retried_and_never_logged() {
    let f = Fixture::new();
    make_db(&f.db(), 100, "wal");
    let n = FakeNtfy::start();
    n.add_user("alice", "right horse");
    let out = backup_json(
        &f,
        &n,
        &[
            ("NTFY_USER", "alice"),
            ("NTFY_PASSWORD", "wrong-battery-staple"),
            ("RUST_LOG", "trace"),
        ],
    );
    assert_eq!(out.status.code(), Some(3), "stderr: {}", stderr(&out));
    assert_eq!(n.request_log().len(), 1, "401 must not be retried");
    assert!(json(&out)["error"].as_str().unwrap().contains("HTTP 401"));
    assert!(!stderr(&out).contains("wrong-battery-staple"));
    assert!(!stdout(&out).contains("wrong-battery-staple"));
}

#[test]
fn basic_auth_is_sent() {
    let f = Fixture::new();
    make_db(&f.db(), 100, "wal");
    let n = FakeNtfy::start();
    n.add_user("alice", "correct horse");
    let out = backup_json(
        &f,
        &n,
        &[("NTFY_USER", "alice"), ("NTFY_PASSWORD", "correct horse")],
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert_eq!(
        only_message(&n).auth,
        NtfyAuth::Basic {
            user: "alice".into()
        }
    );
}

#[test]
fn a_huge_error_is_truncated_below_the_limit_on_a_char_boundary() {
    let f = Fixture::new();
    // A database path of ~9 KB of multi-byte characters: it does not exist, and the error
    // quotes it in full.
    let db = f.path(&format!("{}.db", "数据".repeat(1_500)));
    let n = FakeNtfy::start();
    let mut c = f.cmd(&["backup", "--no-drive"]);
    ntfy_env(&mut c, &n).env("DATABASE_URL", &db);
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    for r in n.request_log() {
        assert_eq!(r.status, 200, "a request was refused: {r:?}");
    }
    let m = only_message(&n);
    assert!(
        m.message.len() <= MESSAGE_LIMIT,
        "{} bytes",
        m.message.len()
    );
    assert!(m.message.len() > 3_000, "the error was dropped, not cut");
    assert!(m.message.contains("数据数据"));
    assert!(m.message.contains('…'));
    assert!(m.title.unwrap().len() <= 200);
}

#[test]
fn notify_on_failure_stays_quiet_on_success() {
    let f = Fixture::new();
    make_db(&f.db(), 100, "wal");
    let n = FakeNtfy::start();
    let out = backup_json(&f, &n, &[("NTFY_ON", "failure")]);
    assert_eq!(out.status.code(), Some(0));
    assert!(n.request_log().is_empty());
    std::fs::remove_file(f.db()).unwrap();
    let out = backup_json(&f, &n, &[("NTFY_ON", "failure")]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(n.messages().len(), 1);
}

fn hc_backup(f: &Fixture, hc: &FakeHealthcheck) -> Output {
    f.cmd(&["backup", "--no-drive", "--json"])
        .env("HEALTHCHECK_URL", hc.ping_url())
        .env("RUST_LOG", "trace")
        .output()
        .unwrap()
}

#[test]
fn healthcheck_pings_start_then_success() {
    let f = Fixture::new();
    make_db(&f.db(), 100, "wal");
    let hc = FakeHealthcheck::start();
    let out = hc_backup(&f, &hc);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert_eq!(hc.kinds(), vec![PingKind::Start, PingKind::Success]);
    let name = json(&out)["backup"]["name"].as_str().unwrap().to_string();
    assert!(hc.pings()[1].body_text().contains(&name));
    assert!(
        !stderr(&out).contains(&hc.uuid()),
        "HEALTHCHECK_URL is a secret"
    );
}

#[test]
fn healthcheck_pings_start_then_fail_with_the_error() {
    let f = Fixture::new();
    let hc = FakeHealthcheck::start();
    let out = hc_backup(&f, &hc);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(hc.kinds(), vec![PingKind::Start, PingKind::Fail]);
    assert!(hc.pings()[1].body_text().contains("database not found"));
}

#[test]
fn a_partial_run_pings_success_with_the_error_in_the_body() {
    let f = Fixture::new();
    make_db(&f.db(), 100, "wal");
    let hc = FakeHealthcheck::start();
    let n = FakeNtfy::start();
    n.fail_next(100, 500);
    let mut c = f.cmd(&["backup", "--no-drive"]);
    ntfy_env(&mut c, &n).env("HEALTHCHECK_URL", hc.ping_url());
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(hc.kinds(), vec![PingKind::Start, PingKind::Success]);
    assert!(hc.pings()[1].body_text().contains("notification failed"));
}

#[test]
fn a_healthcheck_that_is_down_never_fails_the_run() {
    let f = Fixture::new();
    make_db(&f.db(), 100, "wal");
    let hc = FakeHealthcheck::start();
    hc.pause();
    let out = hc_backup(&f, &hc);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert_eq!(json(&out)["status"], "ok");
    assert!(!stderr(&out).contains(&hc.uuid()), "{}", stderr(&out));
    hc.resume();
    hc.fail_next(10, 500);
    let out = hc_backup(&f, &hc);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
}
