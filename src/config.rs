//! Configuration from the environment, a `.env` file in the working directory and command-line
//! flags. Precedence (SPEC.md): flags > real environment > `.env` > defaults. Every bad value is
//! reported on its own line, all at once, so a user fixes the file in one go (exit code 2).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono_tz::Tz;

use crate::error::ConfigError;
use crate::retention::Policy;
use crate::schedule::Schedule;

/// A value that must never be printed: tokens and passwords.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The only way to read the secret; grep for it to audit where secrets go.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotCheck {
    /// `PRAGMA integrity_check`: reads every page and index entry.
    Full,
    /// `PRAGMA quick_check`: skips index/content cross-checks, for very large databases.
    Quick,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriveDelete {
    Trash,
    Delete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyOn {
    Always,
    Failure,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub enum NtfyAuth {
    None,
    Token(Secret),
    Basic { user: String, password: Secret },
}

#[derive(Debug, Clone)]
pub struct NtfyConfig {
    pub url: String,
    pub topic: String,
    pub auth: NtfyAuth,
    pub on: NotifyOn,
}

#[derive(Debug, Clone)]
pub struct DriveConfig {
    pub credentials: PathBuf,
    pub folder_name: String,
    pub folder_id: Option<String>,
    pub endpoint: String,
    pub delete: DriveDelete,
    /// How long one Drive operation may keep retrying before the backup is left pending.
    pub retry_timeout: Duration,
    /// Resumable upload chunk size: a multiple of 256 KiB.
    pub chunk_bytes: usize,
}

/// The effective configuration, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// None when DATABASE_URL is unset; commands that need it call [`Config::database`].
    pub database: Option<PathBuf>,
    pub backup_dir: PathBuf,
    pub schedule: Schedule,
    pub tz: Tz,
    pub policy: Policy,
    pub snapshot_check: SnapshotCheck,
    pub gzip_level: u32,
    pub shutdown_grace: Duration,
    /// None when GOOGLE_APPLICATION_CREDENTIALS is unset: Drive is off.
    pub drive: Option<DriveConfig>,
    pub client_secret_file: Option<PathBuf>,
    /// None when NTFY_TOPIC is unset: notifications are off.
    pub ntfy: Option<NtfyConfig>,
    pub healthcheck_url: Option<String>,
    pub log_format: LogFormat,
    /// Where each key's value came from, for `snapkeep config`.
    pub sources: BTreeMap<&'static str, Source>,
}

/// Where a configuration value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Flag,
    Env,
    DotEnv,
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Flag => "flag",
            Source::Env => "environment",
            Source::DotEnv => ".env",
            Source::Default => "default",
        })
    }
}

/// Values given on the command line; they win over everything else.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub database: Option<String>,
    pub backup_dir: Option<PathBuf>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
    pub keep_last: Option<u32>,
}

/// Every key of SPEC.md with its default (None: no default) and whether it is a secret.
pub const KEYS: &[(&str, Option<&str>, bool)] = &[
    ("DATABASE_URL", None, false),
    ("BACKUP_DIR", Some("./backups"), false),
    ("BACKUP_SCHEDULE", Some("0 3 * * *"), false),
    ("BACKUP_TZ", None, false),
    ("KEEP_DAILY", Some("7"), false),
    ("KEEP_WEEKLY", Some("4"), false),
    ("KEEP_MONTHLY", Some("12"), false),
    ("KEEP_LAST", Some("0"), false),
    ("SNAPSHOT_CHECK", Some("full"), false),
    ("GZIP_LEVEL", Some("6"), false),
    ("SHUTDOWN_GRACE", Some("60"), false),
    ("GOOGLE_APPLICATION_CREDENTIALS", None, false),
    ("GOOGLE_CLIENT_SECRET_FILE", None, false),
    ("DRIVE_FOLDER_NAME", Some("AI Assistant Backups"), false),
    ("DRIVE_FOLDER_ID", None, false),
    (
        "DRIVE_API_ENDPOINT",
        Some("https://www.googleapis.com/"),
        false,
    ),
    ("DRIVE_DELETE", Some("trash"), false),
    ("DRIVE_RETRY_TIMEOUT", Some("300"), false),
    ("DRIVE_CHUNK_KIB", Some("8192"), false),
    ("NTFY_URL", Some("https://ntfy.sh"), false),
    ("NTFY_TOPIC", None, false),
    ("NTFY_TOKEN", None, true),
    ("NTFY_USER", None, false),
    ("NTFY_PASSWORD", None, true),
    ("NTFY_ON", Some("always"), false),
    ("HEALTHCHECK_URL", None, true),
    ("LOG_FORMAT", Some("text"), false),
];

/// The raw key/value layers before parsing: real environment over `.env`.
pub struct RawEnv {
    env: BTreeMap<String, String>,
    dotenv: BTreeMap<String, String>,
}

impl RawEnv {
    /// Reads the process environment and `./.env` (if present). A malformed `.env` is an error.
    pub fn from_process() -> Result<Self, ConfigError> {
        let env = std::env::vars().collect();
        let dotenv = match dotenvy::from_path_iter(".env") {
            Ok(iter) => iter
                .collect::<Result<BTreeMap<_, _>, _>>()
                .map_err(|e| ConfigError(format!(".env: cannot parse: {e}")))?,
            Err(e) if e.not_found() => BTreeMap::new(),
            Err(e) => return Err(ConfigError(format!(".env: cannot read: {e}"))),
        };
        Ok(RawEnv { env, dotenv })
    }

    /// For tests and embedding: explicit layers.
    pub fn from_maps(env: BTreeMap<String, String>, dotenv: BTreeMap<String, String>) -> Self {
        RawEnv { env, dotenv }
    }

    /// A key's value and where it came from; empty values count as unset.
    fn get(&self, key: &str) -> Option<(String, Source)> {
        let pick = |map: &BTreeMap<String, String>, src| {
            map.get(key)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .map(|v| (v, src))
        };
        pick(&self.env, Source::Env).or_else(|| pick(&self.dotenv, Source::DotEnv))
    }
}

/// Collects problems so that all of them are reported together.
struct Parser<'a> {
    raw: &'a RawEnv,
    problems: Vec<String>,
    sources: BTreeMap<&'static str, Source>,
}

impl Parser<'_> {
    fn value(&mut self, key: &'static str) -> Option<String> {
        let default = KEYS.iter().find(|k| k.0 == key).and_then(|k| k.1);
        match self.raw.get(key) {
            Some((v, src)) => {
                self.sources.insert(key, src);
                Some(v)
            }
            None => {
                if default.is_some() {
                    self.sources.insert(key, Source::Default);
                }
                default.map(str::to_string)
            }
        }
    }

    fn flag_or_value<T>(
        &mut self,
        key: &'static str,
        flag: Option<T>,
    ) -> Option<Result<T, String>> {
        match flag {
            Some(v) => {
                self.sources.insert(key, Source::Flag);
                Some(Ok(v))
            }
            None => self.value(key).map(Err),
        }
    }

    fn problem(&mut self, msg: String) {
        self.problems.push(msg);
    }

    fn number(
        &mut self,
        key: &'static str,
        flag: Option<u32>,
        range: std::ops::RangeInclusive<u32>,
    ) -> u32 {
        let fallback = *range.start();
        match self.flag_or_value(key, flag) {
            Some(Ok(v)) => self.check_range(key, v, range).unwrap_or(fallback),
            Some(Err(text)) => match text.parse::<u32>() {
                Ok(v) => self.check_range(key, v, range).unwrap_or(fallback),
                Err(_) => {
                    self.problem(format!(
                        "{key}={text:?} is not a whole number in {}..={}",
                        range.start(),
                        range.end()
                    ));
                    fallback
                }
            },
            None => fallback,
        }
    }

    fn check_range(
        &mut self,
        key: &str,
        v: u32,
        range: std::ops::RangeInclusive<u32>,
    ) -> Option<u32> {
        if range.contains(&v) {
            Some(v)
        } else {
            self.problem(format!(
                "{key}={v} is out of range: use {}..={}",
                range.start(),
                range.end()
            ));
            None
        }
    }

    fn choice<T: Copy>(&mut self, key: &'static str, options: &[(&str, T)]) -> T {
        let text = self.value(key).unwrap_or_default();
        match options
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(&text))
        {
            Some((_, v)) => *v,
            None => {
                let names: Vec<&str> = options.iter().map(|o| o.0).collect();
                self.problem(format!(
                    "{key}={text:?} must be one of: {}",
                    names.join(", ")
                ));
                options[0].1
            }
        }
    }

    fn url(&mut self, key: &'static str) -> Option<String> {
        let text = self.value(key)?;
        match reqwest::Url::parse(&text) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => Some(text),
            _ => {
                self.problem(format!("{key}={text:?} is not an http(s) URL"));
                None
            }
        }
    }
}

impl Config {
    /// Build the effective configuration. Err carries one line per problem.
    pub fn load(raw: &RawEnv, flags: &Overrides) -> Result<Config, ConfigError> {
        let mut p = Parser {
            raw,
            problems: Vec::new(),
            sources: BTreeMap::new(),
        };

        let database = match p.flag_or_value("DATABASE_URL", flags.database.clone()) {
            Some(Ok(v)) | Some(Err(v)) => match parse_database_url(&v) {
                Ok(path) => Some(path),
                Err(e) => {
                    p.problem(e);
                    None
                }
            },
            None => None,
        };

        let backup_dir = match p.flag_or_value("BACKUP_DIR", flags.backup_dir.clone()) {
            Some(Ok(v)) => v,
            Some(Err(v)) => PathBuf::from(v),
            None => PathBuf::from("./backups"),
        };

        let tz = match p.value("BACKUP_TZ") {
            Some(name) => match name.parse::<Tz>() {
                Ok(tz) => tz,
                Err(_) => {
                    p.problem(format!(
                        "BACKUP_TZ={name:?} is not an IANA time zone (e.g. Europe/Berlin)"
                    ));
                    Tz::UTC
                }
            },
            None => system_time_zone(),
        };

        let schedule_text = p.value("BACKUP_SCHEDULE").unwrap_or_default();
        let schedule = match schedule_text.parse::<Schedule>() {
            Ok(s) => s,
            Err(e) => {
                p.problem(e.to_string());
                "0 3 * * *".parse().expect("the default schedule parses")
            }
        };

        let policy = Policy {
            daily: p.number("KEEP_DAILY", flags.keep_daily, 0..=100_000),
            weekly: p.number("KEEP_WEEKLY", flags.keep_weekly, 0..=100_000),
            monthly: p.number("KEEP_MONTHLY", flags.keep_monthly, 0..=100_000),
            last: p.number("KEEP_LAST", flags.keep_last, 0..=100_000),
        };
        if let Err(e) = policy.validate() {
            p.problem(e.to_string());
        }

        let snapshot_check = p.choice(
            "SNAPSHOT_CHECK",
            &[
                ("full", SnapshotCheck::Full),
                ("quick", SnapshotCheck::Quick),
            ],
        );
        let gzip_level = p.number("GZIP_LEVEL", None, 1..=9);
        let shutdown_grace =
            Duration::from_secs(p.number("SHUTDOWN_GRACE", None, 0..=86_400).into());

        let endpoint = p.url("DRIVE_API_ENDPOINT").unwrap_or_default();
        let endpoint = if endpoint.ends_with('/') {
            endpoint
        } else {
            format!("{endpoint}/")
        };
        let drive_delete = p.choice(
            "DRIVE_DELETE",
            &[
                ("trash", DriveDelete::Trash),
                ("delete", DriveDelete::Delete),
            ],
        );
        let retry_timeout =
            Duration::from_secs(p.number("DRIVE_RETRY_TIMEOUT", None, 1..=86_400).into());
        let chunk_kib = p.number("DRIVE_CHUNK_KIB", None, 256..=1_048_576);
        if !chunk_kib.is_multiple_of(256) {
            p.problem(format!(
                "DRIVE_CHUNK_KIB={chunk_kib} must be a multiple of 256 (Drive's chunk granule)"
            ));
        }
        let folder_name = p.value("DRIVE_FOLDER_NAME").unwrap_or_default();
        let folder_id = p.value("DRIVE_FOLDER_ID");
        let drive = p
            .value("GOOGLE_APPLICATION_CREDENTIALS")
            .map(|path| DriveConfig {
                credentials: PathBuf::from(path),
                folder_name,
                folder_id,
                endpoint,
                delete: drive_delete,
                retry_timeout,
                chunk_bytes: chunk_kib as usize * 1024,
            });
        let client_secret_file = p.value("GOOGLE_CLIENT_SECRET_FILE").map(PathBuf::from);

        let ntfy_url = p.url("NTFY_URL").unwrap_or_default();
        let ntfy_on = p.choice(
            "NTFY_ON",
            &[("always", NotifyOn::Always), ("failure", NotifyOn::Failure)],
        );
        let token = p.value("NTFY_TOKEN").map(Secret::new);
        let user = p.value("NTFY_USER");
        let password = p.value("NTFY_PASSWORD").map(Secret::new);
        let auth = match (token, user, password) {
            (Some(t), None, None) => NtfyAuth::Token(t),
            (None, Some(user), Some(password)) => NtfyAuth::Basic { user, password },
            (None, None, None) => NtfyAuth::None,
            (Some(_), _, _) => {
                p.problem("NTFY_TOKEN and NTFY_USER/NTFY_PASSWORD are both set: use one".into());
                NtfyAuth::None
            }
            (None, _, _) => {
                p.problem("NTFY_USER and NTFY_PASSWORD must be set together".into());
                NtfyAuth::None
            }
        };
        let ntfy = p.value("NTFY_TOPIC").map(|topic| NtfyConfig {
            url: ntfy_url.trim_end_matches('/').to_string(),
            topic,
            auth,
            on: ntfy_on,
        });
        if let Some(n) = &ntfy {
            let valid = !n.topic.is_empty()
                && n.topic.len() <= 64
                && n.topic
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !valid {
                p.problem(format!(
                    "NTFY_TOPIC={:?} is not a valid ntfy topic (1-64 of A-Z a-z 0-9 - _)",
                    n.topic
                ));
            }
        }
        let healthcheck_url = p.url("HEALTHCHECK_URL");
        let log_format = p.choice(
            "LOG_FORMAT",
            &[("text", LogFormat::Text), ("json", LogFormat::Json)],
        );

        if !p.problems.is_empty() {
            return Err(ConfigError(p.problems.join("\n")));
        }
        Ok(Config {
            database,
            backup_dir,
            schedule,
            tz,
            policy,
            snapshot_check,
            gzip_level,
            shutdown_grace,
            drive,
            client_secret_file,
            ntfy,
            healthcheck_url,
            log_format,
            sources: p.sources,
        })
    }

    /// The database path, or the configuration error that says how to set it.
    pub fn database(&self) -> Result<&Path, ConfigError> {
        self.database.as_deref().ok_or_else(|| {
            ConfigError(
                "DATABASE_URL is not set: set it (e.g. sqlite:////srv/app/app.db) or pass --database PATH"
                    .into(),
            )
        })
    }

    /// `KEY=value  (source)` lines for `snapkeep config`, secrets redacted.
    pub fn describe(&self, raw: &RawEnv) -> Vec<String> {
        KEYS.iter()
            .map(|(key, default, secret)| {
                let shown = match (key, raw.get(key)) {
                    (&"DATABASE_URL", _) => self.database.as_ref().map(|p| p.display().to_string()),
                    (&"BACKUP_DIR", _) => Some(self.backup_dir.display().to_string()),
                    (&"BACKUP_TZ", _) => Some(self.tz.name().to_string()),
                    (_, Some(_)) if *secret => Some("<redacted>".to_string()),
                    (_, Some((v, _))) => Some(redact_url(&v)),
                    (_, None) => default.map(str::to_string),
                };
                let source = self
                    .sources
                    .get(key)
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| {
                        if *key == "BACKUP_TZ" {
                            "system"
                        } else {
                            "unset"
                        }
                        .to_string()
                    });
                format!("{key}={}  ({source})", shown.unwrap_or_default())
            })
            .collect()
    }
}

/// Hide a password embedded in a URL (`https://user:pw@host`).
fn redact_url(text: &str) -> String {
    match reqwest::Url::parse(text) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("redacted"));
            u.to_string()
        }
        _ => text.to_string(),
    }
}

/// `sqlite:///relative.db`, `sqlite:////abs/path.db` (SQLAlchemy style) or a plain path.
/// A query string (`?check_same_thread=false`) is SQLAlchemy's business and is ignored.
pub fn parse_database_url(text: &str) -> Result<PathBuf, String> {
    let text = text.trim();
    let path = if let Some(rest) = text.strip_prefix("sqlite:///") {
        rest
    } else if text.starts_with("sqlite:") || text.contains("://") {
        return Err(format!(
            "DATABASE_URL={text:?} is not a SQLite URL: use sqlite:///relative.db, sqlite:////absolute/path.db or a plain path"
        ));
    } else {
        return if text.is_empty() {
            Err("DATABASE_URL is empty".into())
        } else {
            Ok(PathBuf::from(text))
        };
    };
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() || path == "/" || path == ":memory:" {
        return Err(format!(
            "DATABASE_URL={text:?} names no database file (in-memory databases cannot be backed up)"
        ));
    }
    Ok(PathBuf::from(path))
}

/// BACKUP_TZ unset: the `TZ` variable, then the system's zone, then UTC.
fn system_time_zone() -> Tz {
    let from_tz_var = std::env::var("TZ").ok().and_then(|v| {
        let v = v.trim_start_matches(':');
        let v = v.split("zoneinfo/").last().unwrap_or(v);
        v.parse::<Tz>().ok()
    });
    from_tz_var
        .or_else(|| iana_time_zone::get_timezone().ok()?.parse().ok())
        .unwrap_or(Tz::UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(env: &[(&str, &str)], dotenv: &[(&str, &str)]) -> RawEnv {
        let m = |kv: &[(&str, &str)]| {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        RawEnv::from_maps(m(env), m(dotenv))
    }

    #[test]
    fn database_url_forms() {
        let cases = [
            ("sqlite:///app.db", Ok(PathBuf::from("app.db"))),
            ("sqlite:///data/app.db", Ok(PathBuf::from("data/app.db"))),
            ("sqlite:////srv/app.db", Ok(PathBuf::from("/srv/app.db"))),
            (
                "sqlite:////srv/app.db?check_same_thread=False",
                Ok(PathBuf::from("/srv/app.db")),
            ),
            ("/srv/app.db", Ok(PathBuf::from("/srv/app.db"))),
            ("app.db", Ok(PathBuf::from("app.db"))),
        ];
        for (text, want) in cases {
            assert_eq!(parse_database_url(text), want, "{text}");
        }
        for bad in [
            "postgres://x/y",
            "sqlite://app.db",
            "sqlite:///",
            "sqlite:///:memory:",
            "",
        ] {
            assert!(parse_database_url(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn environment_wins_over_dotenv_and_flags_win_over_both() {
        let r = raw(
            &[("DATABASE_URL", "env.db"), ("GZIP_LEVEL", "9")],
            &[
                ("DATABASE_URL", "dotenv.db"),
                ("GZIP_LEVEL", "1"),
                ("KEEP_DAILY", "3"),
            ],
        );
        let c = Config::load(&r, &Overrides::default()).unwrap();
        assert_eq!(c.database.as_deref(), Some(Path::new("env.db")));
        assert_eq!(c.gzip_level, 9);
        assert_eq!(c.policy.daily, 3);
        assert_eq!(c.sources["KEEP_DAILY"], Source::DotEnv);
        let flags = Overrides {
            database: Some("flag.db".into()),
            keep_daily: Some(2),
            ..Default::default()
        };
        let c = Config::load(&r, &flags).unwrap();
        assert_eq!(c.database.as_deref(), Some(Path::new("flag.db")));
        assert_eq!(c.policy.daily, 2);
    }

    #[test]
    fn defaults_follow_the_spec() {
        let c = Config::load(
            &raw(&[("BACKUP_TZ", "Europe/Berlin")], &[]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.backup_dir, PathBuf::from("./backups"));
        assert_eq!(c.schedule.to_string(), "0 3 * * *");
        assert_eq!(
            (
                c.policy.daily,
                c.policy.weekly,
                c.policy.monthly,
                c.policy.last
            ),
            (7, 4, 12, 0)
        );
        assert_eq!(c.gzip_level, 6);
        assert_eq!(c.snapshot_check, SnapshotCheck::Full);
        assert_eq!(c.shutdown_grace, Duration::from_secs(60));
        assert!(c.drive.is_none() && c.ntfy.is_none() && c.database.is_none());
        assert_eq!(c.tz, chrono_tz::Europe::Berlin);
    }

    #[test]
    fn every_bad_value_is_reported_on_its_own_line() {
        let r = raw(
            &[
                ("GZIP_LEVEL", "11"),
                ("KEEP_DAILY", "many"),
                ("BACKUP_TZ", "Mars/Olympus"),
                ("SNAPSHOT_CHECK", "sometimes"),
                ("NTFY_TOPIC", "bad topic!"),
                ("NTFY_USER", "me"),
                ("BACKUP_SCHEDULE", "0 25 * * *"),
            ],
            &[],
        );
        let err = Config::load(&r, &Overrides::default()).unwrap_err().0;
        let lines: Vec<&str> = err.lines().collect();
        for needle in [
            "GZIP_LEVEL",
            "KEEP_DAILY",
            "BACKUP_TZ",
            "SNAPSHOT_CHECK",
            "NTFY_TOPIC",
            "NTFY_PASSWORD",
            "hour",
        ] {
            assert_eq!(
                lines.iter().filter(|l| l.contains(needle)).count(),
                1,
                "{needle} in {err}"
            );
        }
        assert_eq!(lines.len(), 7, "{err}");
    }

    #[test]
    fn all_tiers_zero_is_a_configuration_error() {
        let r = raw(
            &[
                ("KEEP_DAILY", "0"),
                ("KEEP_WEEKLY", "0"),
                ("KEEP_MONTHLY", "0"),
            ],
            &[],
        );
        assert!(Config::load(&r, &Overrides::default()).is_err());
    }

    #[test]
    fn describe_redacts_secrets() {
        let r = raw(
            &[
                ("NTFY_TOPIC", "alerts"),
                ("NTFY_TOKEN", "tk_supersecret"),
                ("HEALTHCHECK_URL", "https://hc-ping.com/uuid-secret"),
                ("NTFY_URL", "https://user:pw1234@ntfy.example"),
            ],
            &[],
        );
        let c = Config::load(&r, &Overrides::default()).unwrap();
        let text = c.describe(&r).join("\n");
        assert!(text.contains("NTFY_TOKEN=<redacted>"), "{text}");
        for secret in ["tk_supersecret", "uuid-secret", "pw1234"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
    }
}
