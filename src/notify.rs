//! After-run notifications: an ntfy message to the owner's phone and healthchecks.io pings.
//!
//! Both are best-effort by design. A backup that is safe on disk stays safe whatever the network
//! does: a notification that cannot be delivered after a few bounded retries turns an `ok` run
//! into `partial` (SPEC.md: exit 3, "the local backup is safe but … notification failed"), and a
//! healthcheck ping that fails changes nothing at all, because the dead-man's switch exists to
//! notice silence and will do so on its own.
//!
//! ntfy messages are published as JSON to the server root (`POST {NTFY_URL}/`) rather than as a
//! body plus `Title:`/`Tags:` headers on `/{topic}`. JSON carries UTF-8 as is, so a database
//! called `données.db` or an error quoting a non-ASCII path needs no RFC 2047 encoding, and a
//! newline or control character in an error can never break or inject a header. The `click`
//! field of the JSON form is the `Click` header of the other form.
//!
//! Secrets: the ntfy token and password go only into an `Authorization` header (which reqwest
//! marks sensitive), and HEALTHCHECK_URL (its UUID is the credential) is never logged: transport
//! errors are reported with their URL stripped.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::cancel::Cancel;
use crate::config::{Config, NotifyOn, NtfyAuth, NtfyConfig};
use crate::error::Error;
use crate::job::{Report, Status};

/// ntfy's message limit in bytes; a longer body becomes an attachment or is refused.
pub const MESSAGE_LIMIT: usize = 4096;
/// Titles are shown on one line of a phone notification; keep them short.
pub const TITLE_LIMIT: usize = 200;
/// What a cut text ends with, so a reader knows it was cut.
const ELLIPSIS: &str = "…";

/// One ntfy message, before it is put on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    pub title: String,
    pub message: String,
    /// 1 (min) to 5 (max); 3 is ntfy's default.
    pub priority: u8,
    pub tags: Vec<String>,
    /// Opened when the notification is tapped: the Drive file, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub click: Option<String>,
}

/// The longest prefix of `text` that fits in `max` bytes and ends on a char boundary.
pub fn truncate_utf8(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// `text` cut to at most `max` bytes, ending with "…" when something was cut.
fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let keep = truncate_utf8(text, max.saturating_sub(ELLIPSIS.len()));
    format!("{keep}{ELLIPSIS}")
}

/// The error as at most two lines: a phone shows a few lines, and the log has the rest.
fn error_lines(error: &str) -> String {
    let lines: Vec<&str> = error
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut text = lines.iter().take(2).copied().collect::<Vec<_>>().join("\n");
    if lines.len() > 2 {
        text.push_str(ELLIPSIS);
    }
    if text.is_empty() {
        "unknown error".into()
    } else {
        text
    }
}

fn database_name(database: &Path) -> String {
    database
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| database.display().to_string())
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn rotation_line(report: &Report) -> String {
    let local = report.rotation.deleted.len();
    let remote = report.rotation.remote_deleted.len();
    let mut line = format!(
        "rotation removed {}",
        plural(local, "old backup", "old backups")
    );
    if remote > 0 {
        line.push_str(&format!(" (and {remote} on Drive)"));
    }
    line
}

/// The message for a finished run. Pure: `now` is when the run ended, shown in `tz`.
///
/// The body never exceeds [`MESSAGE_LIMIT`]: the error is the only part of unbounded length, so
/// it gets whatever room the fixed lines leave, and the time line always survives.
pub fn compose(report: &Report, now: DateTime<Utc>, tz: Tz) -> Message {
    let db = database_name(&report.database);
    let when = format!(
        "at {}",
        now.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S %Z")
    );
    let backup_line = report.backup.as_ref().map(|b| {
        format!(
            "{}, {} (database {})\nsaved in {}",
            b.name,
            crate::cli::human_bytes(b.bytes),
            crate::cli::human_bytes(b.source_bytes),
            b.path.display()
        )
    });
    let drive_line = report
        .drive
        .as_ref()
        .map(|d| format!("on Drive: {}", d.link));
    let error = report.error.as_deref().map(error_lines);

    let (title, priority, tags, head, tail): (String, u8, Vec<&str>, Vec<String>, Vec<String>) =
        match report.status {
            Status::Ok => {
                let mut head: Vec<String> = backup_line.into_iter().collect();
                head.extend(drive_line.clone());
                head.push(rotation_line(report));
                (
                    format!("Backup OK: {db}"),
                    3,
                    vec!["white_check_mark"],
                    head,
                    vec![when],
                )
            }
            Status::Partial => {
                let mut head = Vec::new();
                if let Some(b) = backup_line {
                    head.push(format!("Safe: {b}"));
                }
                head.extend(drive_line.clone());
                (
                    format!("Backup partly done: {db}"),
                    4,
                    vec!["warning"],
                    head,
                    vec![
                        "(the local backup is safe; what failed can be retried)".into(),
                        rotation_line(report),
                        when,
                    ],
                )
            }
            Status::Failed => (
                format!("Backup FAILED: {db}"),
                4,
                vec!["warning", "x"],
                // The path is in the error when it matters; an unbounded path here could
                // crowd the error out of the message.
                vec!["No backup was made.".into()],
                vec!["Earlier backups are untouched.".into(), when],
            ),
        };
    let error_prefix = match report.status {
        Status::Partial => "Not done: ",
        _ => "Error: ",
    };

    let head = head.join("\n");
    let tail = tail.join("\n");
    let message = match &error {
        Some(err) => {
            // The fixed parts, the two newlines around the error and its prefix come first.
            let fixed = head.len() + tail.len() + error_prefix.len() + 2;
            let room = MESSAGE_LIMIT.saturating_sub(fixed);
            let parts = [
                head.as_str(),
                &format!("{error_prefix}{}", clip(err, room)),
                tail.as_str(),
            ];
            parts
                .iter()
                .filter(|p| !p.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join("\n")
        }
        None => [head.as_str(), tail.as_str()]
            .iter()
            .filter(|p| !p.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join("\n"),
    };
    Message {
        title: clip(&title, TITLE_LIMIT),
        // The error got the room left over, so this only bites if the fixed lines (paths) are
        // themselves huge; then the end is cut rather than the message refused.
        message: clip(&message, MESSAGE_LIMIT),
        priority,
        tags: tags.into_iter().map(str::to_string).collect(),
        click: report.drive.as_ref().map(|d| d.link.clone()),
    }
}

/// Whether NTFY_ON wants a message for this outcome. `failure` means anything that needs the
/// owner's attention, so a partial run (e.g. the upload failed) is notified too.
pub fn wanted(on: NotifyOn, status: Status) -> bool {
    match on {
        NotifyOn::Always => true,
        NotifyOn::Failure => status != Status::Ok,
    }
}

/// How often and how patiently a request is retried. Bounded: at most `attempts` requests of
/// at most `timeout` each, with the pauses between them doubling from `first_pause`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    pub attempts: u32,
    pub first_pause: Duration,
    pub timeout: Duration,
}

impl Retry {
    /// ntfy: 4 attempts over about 3.5 s of pauses; a flaky server or a restart of it is
    /// ridden out, while a night's run still ends in well under a minute if ntfy is down.
    pub const NTFY: Retry = Retry {
        attempts: 4,
        first_pause: Duration::from_millis(500),
        timeout: Duration::from_secs(10),
    };
    /// healthchecks.io: short, because a ping must never hold up a backup.
    pub const PING: Retry = Retry {
        attempts: 2,
        first_pause: Duration::from_secs(1),
        timeout: Duration::from_secs(5),
    };

    /// The pause after failed attempt number `attempt` (1-based).
    pub fn pause(&self, attempt: u32) -> Duration {
        self.first_pause
            .saturating_mul(1u32 << (attempt.saturating_sub(1)).min(16))
    }
}

/// Whether an HTTP status is worth retrying: overload and server errors may pass, while a
/// refused token, a bad topic or a message too large will be refused again.
pub fn retryable(status: u16) -> bool {
    status == 408 || status == 429 || status >= 500
}

/// Why one request failed: its one-line description and whether to try again.
struct Failure {
    text: String,
    retry: bool,
}

fn transport_failure(e: reqwest::Error) -> Failure {
    // Without the URL: HEALTHCHECK_URL is a credential, and NTFY_URL may embed one.
    let e = e.without_url();
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut text = format!("{kind}: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    Failure { text, retry: true }
}

/// Send `attempt()` until it succeeds, a failure is final, or the attempts run out.
async fn with_retries<F, Fut>(
    service: &'static str,
    retry: Retry,
    cancel: &Cancel,
    mut attempt: F,
) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), Failure>>,
{
    // A run aborted at shutdown still reports, but once: the service manager is waiting.
    let attempts = if cancel.is_cancelled() {
        1
    } else {
        retry.attempts.max(1)
    };
    let mut n = 1;
    loop {
        match attempt().await {
            Ok(()) => return Ok(()),
            Err(f) if f.retry && n < attempts && !cancel.is_cancelled() => {
                tracing::warn!(service, attempt = n, error = %f.text, "request failed; retrying");
                tokio::time::sleep(retry.pause(n)).await;
                n += 1;
            }
            Err(f) => {
                let tries = if n == 1 {
                    String::new()
                } else {
                    format!(" (after {n} attempts)")
                };
                return Err(format!("{}{tries}", f.text));
            }
        }
    }
}

/// ntfy's error body is `{"code":…,"http":…,"error":"…"}`; its `error` is the useful part.
fn ntfy_error_text(status: u16, body: &str) -> String {
    let detail = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        // A proxy's HTML error page says nothing the status does not.
        .unwrap_or_else(|| {
            let text = body.trim();
            if text.starts_with('<') {
                String::new()
            } else {
                text.to_string()
            }
        });
    let detail = clip(detail.lines().next().unwrap_or(""), 200);
    if detail.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {detail}")
    }
}

/// Publish `msg` to ntfy (JSON to the server root), retrying per `retry`.
pub async fn publish(
    ntfy: &NtfyConfig,
    msg: &Message,
    retry: Retry,
    cancel: &Cancel,
) -> Result<(), String> {
    let client = crate::http::client(retry.timeout);
    let mut body = serde_json::to_value(msg).expect("a message serializes");
    body["topic"] = serde_json::Value::String(ntfy.topic.clone());
    let url = format!("{}/", ntfy.url);
    with_retries("ntfy", retry, cancel, || {
        let mut req = client.post(&url).json(&body);
        req = match &ntfy.auth {
            NtfyAuth::None => req,
            NtfyAuth::Token(t) => req.bearer_auth(t.expose()),
            NtfyAuth::Basic { user, password } => req.basic_auth(user, Some(password.expose())),
        };
        async move {
            let resp = req.send().await.map_err(transport_failure)?;
            let status = resp.status().as_u16();
            if resp.status().is_success() {
                return Ok(());
            }
            let text = resp.text().await.unwrap_or_default();
            Err(Failure {
                text: ntfy_error_text(status, &text),
                retry: retryable(status),
            })
        }
    })
    .await
}

/// The healthchecks.io signals snapkeep sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ping {
    Start,
    Success,
    Fail,
}

/// The ping for a finished run. A partial run pings success: the backup exists, which is what
/// a dead-man's switch watches; the body says what failed, and ntfy reports it loudly.
pub fn ping_for(status: Status) -> Ping {
    match status {
        Status::Ok | Status::Partial => Ping::Success,
        Status::Failed => Ping::Fail,
    }
}

/// `<url>/start`, `<url>`, `<url>/fail` (healthchecks.io's pinging API).
pub fn ping_url(base: &str, ping: Ping) -> String {
    let base = base.trim_end_matches('/');
    match ping {
        Ping::Start => format!("{base}/start"),
        Ping::Success => base.to_string(),
        Ping::Fail => format!("{base}/fail"),
    }
}

/// Send one ping (POST, the body is the check's log line), retrying per `retry`.
pub async fn send_ping(base: &str, ping: Ping, body: String, retry: Retry) -> Result<(), String> {
    let client = crate::http::client(retry.timeout);
    let url = ping_url(base, ping);
    with_retries("healthcheck", retry, &Cancel::new(), || {
        let req = client.post(&url).body(body.clone());
        async move {
            let resp = req.send().await.map_err(transport_failure)?;
            let status = resp.status().as_u16();
            if resp.status().is_success() {
                Ok(())
            } else {
                Err(Failure {
                    text: format!("HTTP {status}"),
                    retry: retryable(status),
                })
            }
        }
    })
    .await
}

/// Ping synchronously; a failure is logged (without the URL) and otherwise ignored.
fn ping(cfg: &Config, ping: Ping, body: String) {
    let Some(url) = &cfg.healthcheck_url else {
        return;
    };
    let kind = match ping {
        Ping::Start => "start",
        Ping::Success => "success",
        Ping::Fail => "fail",
    };
    match crate::http::block_on(send_ping(url, ping, body, Retry::PING)) {
        Ok(()) => tracing::debug!(ping = kind, "healthcheck pinged"),
        Err(e) => {
            tracing::warn!(ping = kind, error = %e, "healthcheck ping failed (the run is not affected)")
        }
    }
}

/// A run has taken the lock and begun: tell the dead-man's switch, so it can time the run.
pub fn run_started(cfg: &Config) {
    ping(cfg, Ping::Start, String::new());
}

/// A short log line for the healthcheck: what happened, and the error if any.
fn ping_body(report: &Report) -> String {
    let mut body = format!("status: {:?}", report.status).to_lowercase();
    if let Some(b) = &report.backup {
        body.push_str(&format!("\nbackup: {} ({} bytes)", b.name, b.bytes));
    }
    if let Some(e) = &report.error {
        body.push_str(&format!("\nerror: {}", clip(e, 10_000)));
    }
    body
}

/// Record an undeliverable notification in the report: an ok run becomes partial (SPEC.md);
/// a run that was already partial or failed keeps its status and gains the reason.
pub fn mark_notification_failed(report: &mut Report, why: &str) {
    report.partial(format!("notification failed: {why}"));
}

/// Everything that follows a run: the ntfy message (per NTFY_ON), then the healthcheck ping
/// for its final status. Called by `job::run_backup` while it still holds the lock.
pub fn run_finished(cfg: &Config, report: &mut Report, cancel: &Cancel) {
    if let Some(ntfy) = &cfg.ntfy {
        if wanted(ntfy.on, report.status) {
            let msg = compose(report, Utc::now(), cfg.tz);
            match crate::http::block_on(publish(ntfy, &msg, Retry::NTFY, cancel)) {
                Ok(()) => tracing::info!(topic = %ntfy.topic, "ntfy notified"),
                Err(e) => {
                    tracing::warn!(error = %e, "ntfy notification failed");
                    mark_notification_failed(report, &format!("ntfy: {e}"));
                }
            }
        }
    }
    ping(cfg, ping_for(report.status), ping_body(report));
}

/// A run that could not begin (the backup directory cannot be created, the activity log cannot
/// be written, …) is a failure the owner must hear about, exactly like a failed backup; a run
/// that found the lock held is not (another run is doing the work). Returns `err` unchanged.
pub fn run_not_started(cfg: &Config, database: &Path, err: Error) -> Error {
    if matches!(err, Error::Locked(_) | Error::Config(_)) {
        return err;
    }
    let mut report = Report {
        status: Status::Failed,
        backup: None,
        drive: None,
        rotation: Default::default(),
        error: Some(err.to_string()),
        duration_ms: 0,
        notes: Vec::new(),
        database: database.to_path_buf(),
    };
    run_finished(cfg, &mut report, &Cancel::new());
    err
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::DriveRef;
    use crate::job::{BackupJson, RotationJson};
    use chrono::TimeZone;
    use std::path::PathBuf;

    fn report(status: Status) -> Report {
        Report {
            status,
            backup: (status != Status::Failed).then(|| BackupJson {
                name: "backup-2026-03-29-030000.db.gz".into(),
                path: PathBuf::from("/var/backups/app/backup-2026-03-29-030000.db.gz"),
                bytes: 1_300_000,
                source_bytes: 4_194_304,
                sha256: "ab".repeat(32),
                method: "vacuum",
            }),
            drive: None,
            rotation: RotationJson {
                deleted: vec!["a".into(), "b".into()],
                remote_deleted: vec![],
            },
            error: None,
            duration_ms: 10,
            notes: vec![],
            database: PathBuf::from("/srv/app/données.db"),
        }
    }

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 29, 1, 0, 12).unwrap()
    }

    #[test]
    fn success_names_database_file_size_path_and_rotation() {
        let m = compose(&report(Status::Ok), at(), chrono_tz::Europe::Berlin);
        assert_eq!(m.title, "Backup OK: données.db");
        assert_eq!(m.priority, 3);
        assert!(m
            .message
            .contains("backup-2026-03-29-030000.db.gz, 1.2 MiB"));
        assert!(m
            .message
            .contains("saved in /var/backups/app/backup-2026-03-29-030000.db.gz"));
        assert!(m.message.contains("rotation removed 2 old backups"));
        // 01:00:12 UTC is 03:00:12 CEST on the day summer time starts.
        assert!(
            m.message.contains("at 2026-03-29 03:00:12 CEST"),
            "{}",
            m.message
        );
        assert_eq!(m.click, None);
    }

    #[test]
    fn drive_link_is_in_the_message_and_the_click_action() {
        let mut r = report(Status::Ok);
        r.drive = Some(DriveRef {
            file_id: "f1".into(),
            md5: "00".into(),
            link: "https://drive.google.com/file/d/f1/view".into(),
        });
        r.rotation.remote_deleted = vec!["x".into()];
        let m = compose(&r, at(), Tz::UTC);
        assert!(m
            .message
            .contains("on Drive: https://drive.google.com/file/d/f1/view"));
        assert!(m.message.contains("(and 1 on Drive)"));
        assert_eq!(
            m.click.as_deref(),
            Some("https://drive.google.com/file/d/f1/view")
        );
    }

    #[test]
    fn failure_is_high_priority_with_a_warning_tag_the_error_and_the_time() {
        let mut r = report(Status::Failed);
        r.error = Some("database not found: /srv/app/données.db (check DATABASE_URL)".into());
        let m = compose(&r, at(), Tz::UTC);
        assert_eq!(m.title, "Backup FAILED: données.db");
        assert!(m.priority >= 4);
        assert!(m.tags.contains(&"warning".to_string()));
        assert!(m.message.contains("Error: database not found"));
        assert!(m.message.contains("at 2026-03-29 01:00:12 UTC"));
    }

    #[test]
    fn partial_says_what_is_safe_and_what_is_not() {
        let mut r = report(Status::Partial);
        r.error = Some("upload failed: Drive answered 503".into());
        let m = compose(&r, at(), Tz::UTC);
        assert!(m.message.contains("Safe: backup-2026-03-29-030000.db.gz"));
        assert!(m
            .message
            .contains("Not done: upload failed: Drive answered 503"));
        assert!(m.priority >= 4);
    }

    #[test]
    fn a_huge_error_is_cut_on_a_char_boundary_and_the_time_survives() {
        for filler in ["é", "数", "🦀", "x"] {
            let mut r = report(Status::Failed);
            r.error = Some(filler.repeat(10_000));
            let m = compose(&r, at(), Tz::UTC);
            assert!(m.message.len() <= MESSAGE_LIMIT, "{}", m.message.len());
            assert!(m.message.len() > MESSAGE_LIMIT - 8, "the room was not used");
            assert!(m.message.ends_with("at 2026-03-29 01:00:12 UTC"));
            assert!(m.message.contains(ELLIPSIS));
        }
    }

    #[test]
    fn huge_paths_still_fit() {
        let mut r = report(Status::Failed);
        r.database = PathBuf::from(format!("/{}", "数".repeat(5_000)));
        r.error = Some("x".repeat(5_000));
        let m = compose(&r, at(), Tz::UTC);
        assert!(m.message.len() <= MESSAGE_LIMIT);
        assert!(m.title.len() <= TITLE_LIMIT);
    }

    #[test]
    fn error_keeps_at_most_two_lines() {
        assert_eq!(error_lines("a\n\nb\nc"), "a\nb…");
        assert_eq!(error_lines("one"), "one");
        assert_eq!(error_lines(""), "unknown error");
    }

    #[test]
    fn truncation_never_splits_a_char() {
        let s = "aé数🦀";
        for max in 0..=s.len() + 1 {
            let t = truncate_utf8(s, max);
            assert!(t.len() <= max);
            assert!(s.starts_with(t));
        }
        assert_eq!(truncate_utf8(s, 2), "a");
        assert_eq!(truncate_utf8(s, 3), "aé");
    }

    #[test]
    fn notify_on_failure_covers_partial_and_failed() {
        assert!(wanted(NotifyOn::Always, Status::Ok));
        assert!(!wanted(NotifyOn::Failure, Status::Ok));
        assert!(wanted(NotifyOn::Failure, Status::Partial));
        assert!(wanted(NotifyOn::Failure, Status::Failed));
    }

    #[test]
    fn an_undelivered_notification_makes_ok_partial_and_keeps_failed_failed() {
        let mut r = report(Status::Ok);
        mark_notification_failed(&mut r, "ntfy: HTTP 500");
        assert_eq!(r.status, Status::Partial);
        assert_eq!(
            r.error.as_deref(),
            Some("notification failed: ntfy: HTTP 500")
        );
        let mut r = report(Status::Failed);
        r.error = Some("disk full".into());
        mark_notification_failed(&mut r, "ntfy: HTTP 500");
        assert_eq!(r.status, Status::Failed);
        assert_eq!(
            r.error.as_deref(),
            Some("disk full; notification failed: ntfy: HTTP 500")
        );
    }

    #[test]
    fn retry_pauses_double_and_only_transient_statuses_are_retried() {
        let r = Retry::NTFY;
        assert_eq!(r.pause(1), Duration::from_millis(500));
        assert_eq!(r.pause(2), Duration::from_secs(1));
        assert_eq!(r.pause(3), Duration::from_secs(2));
        for s in [408, 429, 500, 502, 503] {
            assert!(retryable(s), "{s}");
        }
        for s in [400, 401, 403, 404, 413] {
            assert!(!retryable(s), "{s}");
        }
    }

    #[test]
    fn ping_urls_and_partial_counts_as_success() {
        assert_eq!(ping_url("https://hc/u/", Ping::Start), "https://hc/u/start");
        assert_eq!(ping_url("https://hc/u", Ping::Success), "https://hc/u");
        assert_eq!(ping_url("https://hc/u", Ping::Fail), "https://hc/u/fail");
        assert_eq!(ping_for(Status::Partial), Ping::Success);
        assert_eq!(ping_for(Status::Failed), Ping::Fail);
    }

    #[test]
    fn ntfy_errors_are_one_short_line() {
        assert_eq!(
            ntfy_error_text(
                500,
                r#"{"code":50001,"http":500,"error":"internal server error"}"#
            ),
            "HTTP 500: internal server error"
        );
        assert_eq!(ntfy_error_text(502, ""), "HTTP 502");
        assert_eq!(ntfy_error_text(502, "bad\ngateway"), "HTTP 502: bad");
        assert_eq!(
            ntfy_error_text(502, "<!DOCTYPE html>\n<html>Bad Gateway</html>"),
            "HTTP 502"
        );
    }
}
