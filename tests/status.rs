//! `snapkeep status [--json]` after real runs.

mod common;

use chrono::{DateTime, FixedOffset};
use common::*;

fn status_json(f: &Fixture, tz: &str) -> serde_json::Value {
    let out = f
        .cmd(&["status", "--json"])
        .env("BACKUP_TZ", tz)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    json(&out)
}

fn time(v: &serde_json::Value) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("not a time: {v}")))
        .unwrap_or_else(|e| panic!("{v}: {e}"))
}

#[test]
fn shape_before_any_run() {
    let f = Fixture::new();
    let s = status_json(&f, "UTC");
    let mut keys: Vec<&str> = s.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "last_run",
            "last_success",
            "local",
            "next_run",
            "pending_uploads",
            "remote"
        ]
    );
    assert!(s["last_run"].is_null());
    assert!(s["last_success"].is_null());
    assert_eq!(s["local"], serde_json::json!({"count": 0, "bytes": 0}));
    assert!(s["remote"].is_null(), "Drive is off");
    assert_eq!(s["pending_uploads"], serde_json::json!([]));
    assert!(!f.backups().exists(), "status must not create anything");
}

#[test]
fn after_a_success_and_after_a_failure() {
    let f = Fixture::new();
    make_db(&f.db(), 1_000, "wal");
    let out = f.run(&["backup", "--no-drive", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let backup = json(&out);

    let s = status_json(&f, "Europe/Berlin");
    let run = &s["last_run"];
    assert_eq!(run["status"], "ok");
    assert!(run["error"].is_null());
    let (started, finished) = (time(&run["started"]), time(&run["finished"]));
    assert!(started <= finished);
    assert_eq!(time(&s["last_success"]), finished);
    assert_eq!(
        s["local"],
        serde_json::json!({"count": 1, "bytes": backup["backup"]["bytes"]})
    );

    // next_run: the next 03:00 in Berlin, written with Berlin's offset.
    let next = time(&s["next_run"]);
    let offset = next.offset().local_minus_utc();
    assert!(offset == 3600 || offset == 7200, "offset {offset}");
    assert_eq!(next.format("%H:%M:%S").to_string(), "03:00:00");
    let now = chrono::Utc::now();
    let next = next.with_timezone(&chrono::Utc);
    assert!(next > now && next - now <= chrono::TimeDelta::hours(25));

    std::fs::remove_file(f.db()).unwrap();
    let out = f.run(&["backup", "--no-drive"]);
    assert_eq!(out.status.code(), Some(1));
    let s2 = status_json(&f, "Europe/Berlin");
    assert_eq!(s2["last_run"]["status"], "failed");
    assert!(
        s2["last_run"]["error"]
            .as_str()
            .unwrap()
            .contains("database not found"),
        "{s2}"
    );
    assert!(time(&s2["last_run"]["started"]) >= finished);
    assert_eq!(
        s2["last_success"], s["last_success"],
        "a failure is not a success"
    );
    assert_eq!(s2["local"]["count"], 1);
}

#[test]
fn pending_uploads_are_listed_by_name() {
    let f = Fixture::new();
    make_db(&f.db(), 100, "wal");
    let out = f.run(&["backup", "--no-drive", "--json"]);
    let name = json(&out)["backup"]["name"].as_str().unwrap().to_string();
    let record_path = f
        .backups()
        .join(".snapkeep/records")
        .join(format!("{name}.json"));
    let mut record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&record_path).unwrap()).unwrap();
    record["upload"] = "pending".into();
    std::fs::write(&record_path, serde_json::to_vec(&record).unwrap()).unwrap();
    let s = status_json(&f, "UTC");
    assert_eq!(s["pending_uploads"], serde_json::json!([name]));
}

#[test]
fn human_output_is_a_few_readable_lines() {
    let f = Fixture::new();
    make_db(&f.db(), 100, "wal");
    f.run(&["backup", "--no-drive"]);
    let out = f
        .cmd(&["status"])
        .env("BACKUP_SCHEDULE", "30 4 * * *")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(text.contains("last run:      ok"), "{text}");
    assert!(text.contains("last success:"), "{text}");
    assert!(
        text.contains("next run:") && text.contains("T04:30:00+00:00"),
        "{text}"
    );
    assert!(text.contains("local:         1 backup(s)"), "{text}");
    assert!(text.contains("Drive is off"), "{text}");
    assert!(text.contains("pending uploads: none"), "{text}");
    assert!(text.lines().count() <= 8);
}
