//! Drive end to end: the real binary against a loopback server that speaks Google's OAuth
//! token endpoint and Drive v3 (tests/support/google.rs), strict and able to fail.

mod common;
mod support;

use common::*;
use std::process::Command;
use support::google::{FakeGoogle, Fault, Route};

/// Fixture + fake Google + credentials file; small chunks so uploads take several requests.
struct DriveFixture {
    f: Fixture,
    google: FakeGoogle,
}

impl DriveFixture {
    fn new() -> Self {
        let f = Fixture::new();
        let google = FakeGoogle::start();
        std::fs::write(f.path("creds.json"), google.authorized_user_json()).unwrap();
        DriveFixture { f, google }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = self.f.cmd(args);
        c.env("GOOGLE_APPLICATION_CREDENTIALS", self.f.path("creds.json"))
            .env("DRIVE_API_ENDPOINT", self.google.drive_endpoint())
            .env("DRIVE_CHUNK_KIB", "256")
            .env("DRIVE_RETRY_TIMEOUT", "20")
            .env("KEEP_LAST", "100");
        c
    }

    fn backup(&self) -> (std::process::Output, serde_json::Value) {
        let out = self.cmd(&["backup", "--json"]).output().unwrap();
        let v = json(&out);
        (out, v)
    }

    fn folder(&self) -> String {
        self.google
            .folder_id("AI Assistant Backups")
            .expect("the folder was created")
    }

    /// A backup that succeeds and lands on Drive intact; its name.
    fn backup_that_lands(&self) -> String {
        let (out, v) = self.backup();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let name = v["backup"]["name"].as_str().unwrap().to_string();
        self.assert_landed(&name);
        name
    }

    /// The backup landed in the folder, byte-identical, with matching MD5 and SHA-256.
    fn assert_landed(&self, name: &str) {
        let local = self.f.backups().join(name);
        let remote = self
            .google
            .file_by_name(name)
            .unwrap_or_else(|| panic!("{name} not on Drive"));
        assert_eq!(remote.parents, [self.folder()]);
        assert!(!remote.trashed);
        let bytes = std::fs::read(&local).unwrap();
        assert!(
            remote.content == bytes,
            "{name}: content differs ({} vs {} bytes)",
            remote.content.len(),
            bytes.len()
        );
        let md5 = {
            use md5::Digest;
            hex::encode(md5::Md5::digest(&bytes))
        };
        assert_eq!(remote.md5_checksum.as_deref(), Some(md5.as_str()));
        assert_eq!(
            remote.app_properties.get("sha256").map(String::as_str),
            Some(sha256_hex(&local).as_str())
        );
        assert_eq!(
            remote.app_properties.get("snapkeep").map(String::as_str),
            Some("backup")
        );
    }

    /// The appProperties snapkeep puts on this fixture's uploads (mark + source).
    fn mark(&self) -> Vec<(String, String)> {
        vec![
            ("snapkeep".into(), "backup".into()),
            ("source".into(), snapkeep::drive::source_id(&self.f.db())),
            ("sha256".into(), "00".into()),
        ]
    }

    fn seed(&self, folder: &str, name: &str) -> String {
        let mark = self.mark();
        let props: Vec<(&str, &str)> = mark.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.google.create_file(name, Some(folder), b"old", &props)
    }

    /// A backup made while Drive is unreachable: exit 3, kept locally and pending. Its name.
    fn backup_while_drive_is_down(&self) -> String {
        self.google.pause();
        let out = self
            .cmd(&["backup"])
            .env("DRIVE_RETRY_TIMEOUT", "1")
            .output()
            .unwrap();
        self.google.resume();
        assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
        self.f.listed()[0].clone()
    }

    fn record(&self, name: &str) -> serde_json::Value {
        let p = self
            .f
            .backups()
            .join(".snapkeep/records")
            .join(format!("{name}.json"));
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    }
}

/// A database whose backup is about 1.3 MiB (random blobs), so 256 KiB chunks make six.
fn multi_chunk_db(f: &Fixture) {
    let conn = rusqlite::Connection::open(f.db()).unwrap();
    conn.execute_batch("CREATE TABLE b(x BLOB); BEGIN;")
        .unwrap();
    for _ in 0..20 {
        conn.execute("INSERT INTO b VALUES (randomblob(65536))", [])
            .unwrap();
    }
    conn.execute_batch("COMMIT").unwrap();
}

#[test]
fn a_backup_lands_in_the_folder_byte_identical_with_matching_md5_and_sha256() {
    let d = DriveFixture::new();
    multi_chunk_db(&d.f);
    let (out, v) = d.backup();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let name = v["backup"]["name"].as_str().unwrap();
    d.assert_landed(name);
    let remote = d.google.file_by_name(name).unwrap();
    assert_eq!(v["drive"]["file_id"], remote.id.as_str());
    assert_eq!(
        v["drive"]["md5"],
        remote.md5_checksum.clone().unwrap().as_str()
    );
    assert!(v["drive"]["link"].as_str().unwrap().contains(&remote.id));
    assert!(
        d.google.sessions()[0].chunks_accepted >= 5,
        "{:?}",
        d.google.sessions()
    );
    assert_eq!(d.record(name)["upload"], "done");
    // Only the drive.file scope was ever asked for.
    assert!(
        d.google.request_log().iter().all(|r| r.status != 403),
        "{:?}",
        d.google.request_log()
    );

    let listed = d.cmd(&["list", "--remote", "--json"]).output().unwrap();
    assert!(listed.status.success(), "{}", stderr(&listed));
    assert_eq!(json(&listed)[0]["name"], name);
    let verified = d.cmd(&["verify", "--remote"]).output().unwrap();
    assert!(verified.status.success(), "{}", stdout(&verified));

    // A second backup reuses the folder instead of making another.
    let (out, _) = d.backup();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let folders = d
        .google
        .files()
        .into_iter()
        .filter(|f| f.is_folder() && f.name == "AI Assistant Backups")
        .count();
    assert_eq!(folders, 1);
}

fn lands_despite(fault_route: Route, fault: Fault) -> DriveFixture {
    let d = DriveFixture::new();
    multi_chunk_db(&d.f);
    d.google.inject(fault_route, fault.clone());
    let (out, v) = d.backup();
    assert_eq!(out.status.code(), Some(0), "{fault:?}: {}", stderr(&out));
    d.assert_landed(v["backup"]["name"].as_str().unwrap());
    assert_eq!(
        d.google.pending_faults(),
        0,
        "the fault {fault:?} was never hit"
    );
    d
}

#[test]
fn lands_intact_when_a_chunk_gets_503() {
    lands_despite(Route::UploadChunk, Fault::Status(503));
}

#[test]
fn lands_intact_when_the_first_request_gets_429_with_retry_after() {
    let d = lands_despite(
        Route::Any,
        Fault::RateLimit {
            status: 429,
            retry_after_secs: Some(1),
        },
    );
    assert_eq!(d.google.request_log()[0].status, 429);
}

#[test]
fn lands_intact_when_a_403_rate_limit_hits_the_session_start() {
    lands_despite(
        Route::UploadInit,
        Fault::RateLimit {
            status: 403,
            retry_after_secs: None,
        },
    );
}

#[test]
fn lands_intact_when_the_connection_drops_mid_chunk() {
    let d = lands_despite(Route::UploadChunk, Fault::DropConnection);
    assert!(d
        .google
        .request_log()
        .iter()
        .any(|r| r.route == Route::UploadChunk && r.status == 0));
}

#[test]
fn lands_intact_when_the_server_keeps_less_than_a_chunk() {
    lands_despite(Route::UploadChunk, Fault::PartialCommit);
}

#[test]
fn lands_intact_when_the_access_token_expires_mid_run_with_one_refresh() {
    let d = DriveFixture::new();
    multi_chunk_db(&d.f);
    d.google
        .inject(Route::UploadChunk, Fault::ExpireTokenBefore);
    d.backup_that_lands();
    assert_eq!(
        d.google.count(Route::Token),
        2,
        "one initial token, one refresh"
    );
}

#[test]
fn with_the_server_down_the_run_exits_3_keeps_the_backup_and_the_next_run_uploads_both() {
    let d = DriveFixture::new();
    make_db(&d.f.db(), 300, "wal");
    d.google.pause();
    let out = d
        .cmd(&["backup", "--json"])
        .env("DRIVE_RETRY_TIMEOUT", "2")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["status"], "partial");
    assert!(v["drive"].is_null());
    let first = v["backup"]["name"].as_str().unwrap().to_string();
    assert!(d.f.backups().join(&first).exists());
    assert_eq!(d.record(&first)["upload"], "pending");
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("pending"), "{err}");
    let listed = json(&d.cmd(&["list", "--json"]).output().unwrap());
    assert_eq!(listed[0]["upload"], "pending");

    d.google.resume();
    let (out, v) = d.backup();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let second = v["backup"]["name"].as_str().unwrap().to_string();
    d.assert_landed(&first);
    d.assert_landed(&second);
    assert_eq!(d.record(&first)["upload"], "done");
    // Pending first, oldest first, then the new one.
    let order: Vec<String> = d
        .google
        .files()
        .into_iter()
        .filter(|f| !f.is_folder())
        .map(|f| f.name)
        .collect();
    assert_eq!(order, [first, second]);
}

#[test]
fn upload_pending_uploads_what_failed_earlier() {
    let d = DriveFixture::new();
    make_db(&d.f.db(), 100, "wal");
    let name = d.backup_while_drive_is_down();
    let out = d.cmd(&["upload", "--pending"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(&name));
    d.assert_landed(&name);
    let again = d.cmd(&["upload", "--pending"]).output().unwrap();
    assert!(stdout(&again).contains("nothing pending"));
}

#[test]
fn python_google_auth_credentials_work_unchanged() {
    let d = DriveFixture::new();
    std::fs::write(
        d.f.path("creds.json"),
        d.google.python_user_credentials_json(true),
    )
    .unwrap();
    make_db(&d.f.db(), 100, "wal");
    d.backup_that_lands();
}

#[test]
fn a_service_account_key_works_with_its_token_uri() {
    let d = DriveFixture::new();
    std::fs::write(d.f.path("creds.json"), d.google.service_account_json()).unwrap();
    make_db(&d.f.db(), 100, "wal");
    let folder = d.google.create_folder("Team Backups", None);
    let out = d
        .cmd(&["backup", "--json"])
        .env("DRIVE_FOLDER_ID", &folder)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let name = json(&out)["backup"]["name"].as_str().unwrap().to_string();
    assert_eq!(d.google.file_by_name(&name).unwrap().parents, [folder]);
    let claims = d.google.jwt_claims();
    assert_eq!(
        claims[0]["scope"],
        "https://www.googleapis.com/auth/drive.file"
    );
}

#[test]
fn a_rejected_refresh_token_says_run_snapkeep_auth_and_keeps_the_backup() {
    let d = DriveFixture::new();
    d.google.revoke_refresh_token(&d.google.refresh_token());
    make_db(&d.f.db(), 100, "wal");
    let (out, v) = d.backup();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("Drive credentials were rejected: run `snapkeep auth`"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    let name = v["backup"]["name"].as_str().unwrap();
    assert!(d.f.backups().join(name).exists());
    assert_eq!(d.record(name)["upload"], "pending");
    // Secrets never appear in what the user sees.
    for secret in [d.google.refresh_token(), d.google.client_secret()] {
        assert!(!err.contains(&secret) && !stdout(&out).contains(&secret));
    }
    // It failed fast: one token request, no interactive flow, no hang.
    assert_eq!(d.google.count(Route::Token), 1);
}

#[test]
fn an_md5_mismatch_fails_the_upload_and_removes_the_remote_copy() {
    let d = DriveFixture::new();
    multi_chunk_db(&d.f);
    d.google
        .inject(Route::UploadChunk, Fault::CorruptStoredContent);
    // The fault hits the first chunk request it sees; make that the final one by using one chunk.
    let out = d
        .cmd(&["backup", "--json"])
        .env("DRIVE_CHUNK_KIB", "8192")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("MD5"), "{}", stderr(&out));
    let name = json(&out)["backup"]["name"].as_str().unwrap().to_string();
    assert!(
        d.google.files_named(&name).iter().all(|f| f.trashed)
            || d.google.files_named(&name).is_empty()
    );
    assert_eq!(d.record(&name)["upload"], "pending");
}

#[test]
fn remote_rotation_trashes_exactly_what_the_policy_drops_across_pages() {
    let d = DriveFixture::new();
    make_db(&d.f.db(), 100, "wal");
    // A first backup creates the folder; then seed a history on Drive.
    let (out, _) = d.backup();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let folder = d.folder();
    let mut seeded = Vec::new();
    for day in 1..=7 {
        let name = format!("backup-2025-01-{day:02}-030000.db.gz");
        d.seed(&folder, &name);
        seeded.push(name);
    }
    // Not ours: same folder, backup-like name, no mark. Must never be touched.
    let foreign = d
        .google
        .create_file("backup-2025-01-03-120000.db.gz", Some(&folder), b"x", &[]);
    let pre = d.seed(&folder, "pre-restore-2025-01-02-120000.db.gz");
    d.google.set_max_page_size(Some(2));

    let policy = |c: &mut Command| {
        c.env("KEEP_LAST", "0").keep_days_only("3");
    };
    let mut dry = d.cmd(&["rotate", "--remote", "--dry-run", "--json"]);
    policy(&mut dry);
    let dry = dry.output().unwrap();
    assert!(dry.status.success(), "{}", stderr(&dry));
    let plan = json(&dry);
    let doomed: Vec<String> = plan["delete"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    // Kept: today's backup, Jan 7, Jan 6 (daily 3). Dropped: Jan 1..5.
    assert_eq!(
        doomed,
        seeded[..5].iter().rev().cloned().collect::<Vec<_>>()
    );
    assert!(
        d.google.files().iter().all(|f| !f.trashed),
        "dry run changed Drive"
    );

    let mut real = d.cmd(&["rotate", "--remote", "--json"]);
    policy(&mut real);
    let real = real.output().unwrap();
    assert!(real.status.success(), "{}", stderr(&real));
    for f in d.google.files().into_iter().filter(|f| !f.is_folder()) {
        let should_trash = doomed.contains(&f.name) && f.id != foreign;
        assert_eq!(f.trashed, should_trash, "{} trashed={}", f.name, f.trashed);
    }
    assert!(!d.google.file(&pre).unwrap().trashed);
    assert!(
        d.google
            .request_log()
            .iter()
            .filter(|r| r.route == Route::List)
            .count()
            > 3,
        "pagination was exercised"
    );
}

#[test]
fn backup_rotates_drive_after_a_successful_upload_with_drive_delete() {
    let d = DriveFixture::new();
    make_db(&d.f.db(), 100, "wal");
    let (out, _) = d.backup();
    assert_eq!(out.status.code(), Some(0));
    let folder = d.folder();
    let old = d.seed(&folder, "backup-2024-05-01-030000.db.gz");
    let out = d
        .cmd(&["backup", "--json"])
        .env("KEEP_LAST", "0")
        .keep_days_only("1")
        .env("DRIVE_DELETE", "delete")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = json(&out);
    let removed: Vec<&str> = v["rotation"]["remote_deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    assert!(removed.contains(&"backup-2024-05-01-030000.db.gz"), "{v}");
    assert!(
        d.google.file(&old).is_none(),
        "DRIVE_DELETE=delete removes for good"
    );
}

#[test]
fn restore_from_drive_checks_the_hash_and_reproduces_the_content() {
    let d = DriveFixture::new();
    make_db(&d.f.db(), 800, "wal");
    let want = dump(&d.f.db());
    let (out, v) = d.backup();
    assert_eq!(out.status.code(), Some(0));
    let name = v["backup"]["name"].as_str().unwrap().to_string();
    std::fs::remove_file(d.f.backups().join(&name)).unwrap();
    let target = d.f.path("from-drive.db");
    let out = d
        .cmd(&[
            "restore",
            &name,
            "--from-drive",
            "--to",
            target.to_str().unwrap(),
            "--yes",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(dump(&target), want);

    // A download that arrives damaged is refused.
    d.google
        .inject(Route::Download, Fault::CorruptStoredContent);
    let target2 = d.f.path("bad.db");
    let out = d
        .cmd(&[
            "restore",
            &name,
            "--from-drive",
            "--to",
            target2.to_str().unwrap(),
            "--yes",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(!target2.exists());
}

#[test]
fn verify_remote_passes_good_copies_and_names_one_missing_from_drive() {
    let d = DriveFixture::new();
    make_db(&d.f.db(), 100, "wal");
    let (_, v) = d.backup();
    let name = v["backup"]["name"].as_str().unwrap();
    let ok = d.cmd(&["verify", "--remote", "--json"]).output().unwrap();
    assert!(ok.status.success(), "{}", stdout(&ok));
    assert_eq!(json(&ok)["results"][0]["ok"], true);
    // Someone deleted it on Drive: the record says uploaded, Drive does not have it.
    let id = d.google.file_by_name(name).unwrap().id;
    d.google.trash(&id);
    let out = d.cmd(&["verify", "--remote"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains(&format!(
            "BAD  {name} on Drive: recorded as uploaded but missing"
        )),
        "{}",
        stdout(&out)
    );
}

#[test]
fn no_drive_skips_drive_entirely() {
    let d = DriveFixture::new();
    make_db(&d.f.db(), 100, "wal");
    let out = d.cmd(&["backup", "--no-drive", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(json(&out)["drive"].is_null());
    assert!(
        d.google.request_log().is_empty(),
        "{:?}",
        d.google.request_log()
    );
}

#[test]
fn empty_and_tiny_files_upload() {
    let google = FakeGoogle::start();
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("c.json");
    std::fs::write(&creds, google.authorized_user_json()).unwrap();
    let cfg = snapkeep::config::DriveConfig {
        credentials: creds,
        folder_name: "AI Assistant Backups".into(),
        folder_id: None,
        endpoint: google.drive_endpoint(),
        delete: snapkeep::config::DriveDelete::Trash,
        retry_timeout: std::time::Duration::from_secs(10),
        chunk_bytes: 256 * 1024,
    };
    for (name, content) in [
        ("backup-2026-01-01-000000.db.gz", &b""[..]),
        ("backup-2026-01-02-000000.db.gz", &b"x"[..]),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        let uploaded = snapkeep::http::block_on(async {
            let drive = snapkeep::drive::Drive::connect(&cfg, "test-source")
                .await
                .unwrap();
            let sha = sha256_hex(&path);
            snapkeep::drive::upload::upload(&drive, &path, name, &sha, cfg.chunk_bytes).await
        })
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(uploaded.bytes, Some(content.len() as u64));
        assert_eq!(google.content(&uploaded.id).unwrap(), content);
    }
}

#[test]
fn auth_runs_the_loopback_consent_flow_and_writes_a_0600_credentials_file_that_works() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::fs::PermissionsExt;
    let d = DriveFixture::new();
    let creds = d.f.path("new-creds.json");
    std::fs::write(d.f.path("client.json"), d.google.client_secret_json()).unwrap();
    let mut child = d
        .cmd(&["auth"])
        .env("GOOGLE_CLIENT_SECRET_FILE", d.f.path("client.json"))
        .env("GOOGLE_APPLICATION_CREDENTIALS", &creds)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("auth printed no URL").unwrap();
        if line.starts_with("http") {
            break line;
        }
    };
    // A loopback redirect (Google accepts localhost and 127.0.0.1 for installed apps).
    assert!(
        url.contains("redirect_uri=http://localhost:")
            || url.contains("redirect_uri=http://127.0.0.1:"),
        "{url}"
    );
    assert!(url.contains("drive.file"), "{url}");
    assert!(
        !url.contains("urn:ietf:wg:oauth:2.0:oob"),
        "the retired out-of-band flow: {url}"
    );
    // "Consent" in the browser: the fake's /auth redirects to snapkeep's loopback listener.
    let status = snapkeep::http::block_on(async {
        snapkeep::http::client(std::time::Duration::from_secs(10))
            .get(&url)
            .send()
            .await
            .map(|r| r.status())
    })
    .unwrap();
    assert!(status.is_success(), "{status}");
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{} {rest:?}", stderr(&out));
    assert_eq!(
        std::fs::metadata(&creds).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&creds).unwrap()).unwrap();
    assert_eq!(written["token_uri"], d.google.token_uri().as_str());
    assert!(written["refresh_token"]
        .as_str()
        .is_some_and(|t| !t.is_empty()));

    // The file it wrote is what backups use.
    std::fs::copy(&creds, d.f.path("creds.json")).unwrap();
    make_db(&d.f.db(), 50, "wal");
    d.backup_that_lands();
}

#[test]
fn regression_an_unverified_copy_on_drive_is_never_adopted_as_uploaded() {
    let d = DriveFixture::new();
    multi_chunk_db(&d.f);
    // The stored copy is corrupt and removing it fails too: a tagged, bad copy stays on Drive.
    d.google
        .inject(Route::UploadChunk, Fault::CorruptStoredContent);
    d.google.inject_n(Route::Delete, Fault::Status(500), 1000);
    let out = d
        .cmd(&["backup", "--json"])
        .env("DRIVE_CHUNK_KIB", "8192")
        .env("DRIVE_RETRY_TIMEOUT", "2")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("removing the remote copy failed too"),
        "{}",
        stderr(&out)
    );
    let name = json(&out)["backup"]["name"].as_str().unwrap().to_string();
    assert_eq!(
        d.google.files_named(&name).len(),
        1,
        "the bad copy is still there"
    );
    d.google.clear_faults();

    let out = d.cmd(&["upload", "--pending"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let local = std::fs::read(d.f.backups().join(&name)).unwrap();
    let copies = d.google.files_named(&name);
    assert_eq!(copies.len(), 2, "a fresh upload, not the bad copy adopted");
    let good = copies
        .iter()
        .find(|f| f.content == local)
        .expect("an intact copy on Drive");
    assert_eq!(d.record(&name)["drive"]["file_id"], good.id.as_str());
}

#[test]
fn regression_a_run_killed_mid_upload_leaves_the_backup_pending() {
    let d = DriveFixture::new();
    multi_chunk_db(&d.f);
    d.google.inject(
        Route::UploadChunk,
        Fault::Delay(std::time::Duration::from_secs(30)),
    );
    let mut child = d.cmd(&["backup"]).spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while d.google.pending_faults() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the upload never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let name = d.f.listed()[0].clone();
    assert_eq!(d.record(&name)["upload"], "pending");
    let out = d.cmd(&["upload", "--pending"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    d.assert_landed(&name);
}

#[test]
fn regression_two_databases_sharing_a_folder_never_rotate_each_others_backups() {
    let d = DriveFixture::new();
    make_db(&d.f.db(), 50, "wal");
    let (out, v) = d.backup();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let a_name = v["backup"]["name"].as_str().unwrap().to_string();
    let a_id = d.google.file_by_name(&a_name).unwrap().id;

    // A second database backs up into the same folder with a policy that would drop
    // everything but its own newest.
    let other = d.f.path("other.db");
    make_db(&other, 20, "wal");
    let out = d
        .cmd(&["backup", "--json"])
        .env("DATABASE_URL", other.to_str().unwrap())
        .env("BACKUP_DIR", d.f.path("other-backups"))
        .env("KEEP_LAST", "1")
        .keep_days_only("0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        json(&out)["rotation"]["remote_deleted"],
        serde_json::json!([])
    );
    assert!(
        !d.google.file(&a_id).unwrap().trashed,
        "the other install trashed our backup"
    );
}

#[test]
fn regression_a_pending_backup_that_rotted_on_disk_is_not_uploaded() {
    let d = DriveFixture::new();
    make_db(&d.f.db(), 200, "wal");
    let name = d.backup_while_drive_is_down();
    let path = d.f.backups().join(&name);
    let mut bytes = std::fs::read(&path).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x10;
    std::fs::write(&path, bytes).unwrap();
    let out = d.cmd(&["upload", "--pending"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no longer matches its recorded SHA-256"),
        "{}",
        stderr(&out)
    );
    assert!(d.google.files_named(&name).is_empty());
}

#[test]
fn status_counts_the_backups_on_drive_and_says_null_when_drive_is_unreachable() {
    let d = DriveFixture::new();
    make_db(&d.f.db(), 50, "wal");
    for _ in 0..2 {
        let (out, _) = d.backup();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    let out = d.cmd(&["status", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out)["remote"]["count"], 2);
    d.google.pause();
    let out = d
        .cmd(&["status", "--json"])
        .env("DRIVE_RETRY_TIMEOUT", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(json(&out)["remote"].is_null());
}

/// The upload streams from disk: peak memory stays far below the size of the backup (one
/// chunk in flight, 8 MiB by default), measured with GNU time on the real binary.
#[test]
fn uploading_a_large_backup_keeps_memory_bounded_by_the_chunk() {
    let time = std::path::Path::new("/usr/bin/time");
    assert!(time.exists(), "GNU time is needed (.ci/run installs it)");
    let d = DriveFixture::new();
    make_big_db(&d.f.db(), 96); // incompressible: the backup is ~96 MiB
    let mut cmd = d.cmd(&["backup", "--json"]);
    cmd.env("DRIVE_CHUNK_KIB", "8192");
    let program = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
    let envs: Vec<_> = cmd
        .get_envs()
        .map(|(k, v)| (k.to_owned(), v.map(|v| v.to_owned())))
        .collect();
    let mut timed = Command::new(time);
    timed
        .arg("-f")
        .arg("maxrss_kb=%M")
        .arg(program)
        .args(args)
        .current_dir(d.f.path(""))
        .env_clear();
    for (k, v) in envs {
        if let Some(v) = v {
            timed.env(k, v);
        }
    }
    let out = timed.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let name = json(&out)["backup"]["name"].as_str().unwrap().to_string();
    let bytes = std::fs::metadata(d.f.backups().join(&name)).unwrap().len();
    assert!(bytes > 90 << 20, "the backup is {bytes} bytes");
    d.assert_landed(&name);
    let rss_kb: u64 = stderr(&out)
        .lines()
        .find_map(|l| l.strip_prefix("maxrss_kb="))
        .expect("GNU time's report")
        .trim()
        .parse()
        .unwrap();
    println!(
        "peak RSS {} MiB for a {} MiB upload",
        rss_kb / 1024,
        bytes >> 20
    );
    assert!(
        rss_kb < 64 * 1024,
        "peak RSS {rss_kb} KiB for a {bytes}-byte upload"
    );
}

#[test]
fn the_ntfy_message_carries_the_drive_link_and_a_revoked_token_is_reported_to_the_phone() {
    let d = DriveFixture::new();
    let ntfy = support::ntfy::FakeNtfy::start();
    make_db(&d.f.db(), 50, "wal");
    let out = d
        .cmd(&["backup", "--json"])
        .env("NTFY_URL", ntfy.url())
        .env("NTFY_TOPIC", "backups")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let link = json(&out)["drive"]["link"].as_str().unwrap().to_string();
    let msgs = ntfy.messages();
    assert_eq!(msgs.len(), 1, "{msgs:#?}");
    assert_eq!(msgs[0].click.as_deref(), Some(link.as_str()));
    assert!(msgs[0].message.contains(&link), "{}", msgs[0].message);

    // Credentials revoked: the run is partial and the phone hears why.
    d.google.revoke_refresh_token(&d.google.refresh_token());
    let out = d
        .cmd(&["backup", "--json"])
        .env("NTFY_URL", ntfy.url())
        .env("NTFY_TOPIC", "backups")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let msgs = ntfy.messages();
    assert_eq!(msgs.len(), 2);
    assert!(msgs[1].priority >= 4, "{:?}", msgs[1]);
    assert!(
        msgs[1].message.contains("run `snapkeep auth`"),
        "{}",
        msgs[1].message
    );
    assert!(!msgs[1].message.contains(&d.google.refresh_token()));
}
