//! Fixtures shared by the integration tests: real SQLite files in temp dirs, the real binary
//! run with a clean environment, and readers for what it leaves on disk.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rusqlite::Connection;

pub const BIN: &str = env!("CARGO_BIN_EXE_snapkeep");
pub const MANUAL_BACKUP: &str = env!("CARGO_BIN_EXE_manual_backup");

/// A temp dir holding `app.db` and `backups/`, and the binary's working directory (so a
/// developer's own `.env` never leaks into a test).
pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Self {
        Fixture {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    pub fn db(&self) -> PathBuf {
        self.path("app.db")
    }
    pub fn backups(&self) -> PathBuf {
        self.path("backups")
    }

    /// `snapkeep ARGS` with DATABASE_URL and BACKUP_DIR pointing into the fixture.
    pub fn cmd(&self, args: &[&str]) -> Command {
        self.cmd_bin(BIN, args)
    }

    pub fn cmd_bin(&self, bin: &str, args: &[&str]) -> Command {
        let mut c = Command::new(bin);
        c.args(args)
            .current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", format!("sqlite:///{}", self.db().display()))
            .env("BACKUP_DIR", self.backups())
            .env("BACKUP_TZ", "UTC")
            .env("RUST_LOG", "warn");
        c
    }

    /// `snapkeep ARGS` run after `setup` (shell, e.g. a mount) in a private user and mount
    /// namespace (unshare), so a test can give it a real small disk or an undeletable file.
    pub fn cmd_in_mount_namespace(&self, setup: &str, args: &[&str]) -> Command {
        let script = format!("{setup} && exec \"$0\" \"$@\"");
        let mut unshare_args = vec![
            "--user",
            "--map-root-user",
            "--mount",
            "sh",
            "-c",
            &script,
            BIN,
        ];
        unshare_args.extend_from_slice(args);
        self.cmd_bin("unshare", &unshare_args)
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run snapkeep")
    }

    /// Backup file names in BACKUP_DIR (what `list` would show, read from disk directly).
    pub fn backup_files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.backups())
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// The names `snapkeep list --json` reports.
    pub fn listed(&self) -> Vec<String> {
        let out = self.run(&["list", "--json"]);
        assert!(out.status.success(), "list failed: {}", stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("list json");
        v.as_array()
            .expect("array")
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_string())
            .collect()
    }
}

/// Retention of the N newest days only (weekly and monthly tiers off), for rotation tests.
pub trait KeepDaysOnly {
    fn keep_days_only(&mut self, days: &str) -> &mut Self;
}

impl KeepDaysOnly for Command {
    fn keep_days_only(&mut self, days: &str) -> &mut Self {
        self.env("KEEP_DAILY", days)
            .env("KEEP_WEEKLY", "0")
            .env("KEEP_MONTHLY", "0")
    }
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", stdout(out)))
}

/// A database with `rows` rows in `items` and `meta.n = rows`, in the given journal mode.
pub fn make_db(path: &Path, rows: i64, journal_mode: &str) {
    let conn = Connection::open(path).unwrap();
    conn.query_row(&format!("PRAGMA journal_mode={journal_mode}"), [], |_| {
        Ok(())
    })
    .unwrap();
    conn.execute_batch(
        "CREATE TABLE items(id INTEGER PRIMARY KEY, payload TEXT NOT NULL);
         CREATE INDEX items_payload ON items(payload);
         CREATE TABLE meta(n INTEGER NOT NULL);",
    )
    .unwrap();
    conn.execute_batch("BEGIN").unwrap();
    for k in 1..=rows {
        conn.execute(
            "INSERT INTO items(id, payload) VALUES (?1, printf('row %d %s', ?1, hex(randomblob(40))))",
            [k],
        )
        .unwrap();
    }
    conn.execute("INSERT INTO meta(n) VALUES (?1)", [rows])
        .unwrap();
    conn.execute_batch("COMMIT").unwrap();
}

/// A database of roughly `mib` MiB of incompressible blobs (slow to gzip, for kill/lock tests).
pub fn make_big_db(path: &Path, mib: usize) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch("CREATE TABLE blobs(id INTEGER PRIMARY KEY, b BLOB); BEGIN;")
        .unwrap();
    for _ in 0..mib * 16 {
        conn.execute("INSERT INTO blobs(b) VALUES (randomblob(65536))", [])
            .unwrap();
    }
    conn.execute_batch("COMMIT").unwrap();
}

/// Decompress a stored backup into `dest` with flate2 (all members, like gunzip).
pub fn gunzip_to(src: &Path, dest: &Path) {
    let mut bytes = Vec::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(src).unwrap())
        .read_to_end(&mut bytes)
        .unwrap();
    std::fs::write(dest, bytes).unwrap();
}

pub fn sha256_hex(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

pub fn integrity(path: &Path) -> String {
    let c = Connection::open(path).unwrap();
    c.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap()
}

/// (count, min id, max id, meta.n) of a database made by `make_db` and the writer.
pub fn shape(path: &Path) -> (i64, i64, i64, i64) {
    let c = Connection::open(path).unwrap();
    c.query_row(
        "SELECT count(*), min(id), max(id), (SELECT n FROM meta) FROM items",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )
    .unwrap()
}

/// Every row, for comparing content exactly.
pub fn dump(path: &Path) -> Vec<(i64, String)> {
    let c = Connection::open(path).unwrap();
    let mut s = c
        .prepare("SELECT id, payload FROM items ORDER BY id")
        .unwrap();
    s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The path of the `writer` example binary (built by `cargo test`).
pub fn writer_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/debug/deps/test-xxxx -> target/debug/examples/writer
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join("writer")
}

/// A writer process hammering the database until stopped.
pub struct Writer {
    child: std::process::Child,
    stop: PathBuf,
}

impl Writer {
    pub fn start(db: &Path, mode: &str) -> Writer {
        let stop = db.with_extension("stop");
        let ready = stop.with_extension("ready");
        let _ = std::fs::remove_file(&stop);
        let _ = std::fs::remove_file(&ready);
        let child = Command::new(writer_bin())
            .args([db.to_str().unwrap(), mode, stop.to_str().unwrap()])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start the writer example (cargo test builds it)");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !ready.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "writer never got going"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Writer { child, stop }
    }

    /// Stop the writer; returns the last row it committed.
    pub fn stop(self) -> i64 {
        std::fs::write(&self.stop, b"").unwrap();
        let out = self.child.wait_with_output().unwrap();
        assert!(out.status.success(), "writer failed");
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    }
}
