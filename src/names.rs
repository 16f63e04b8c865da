//! The backup file-name grammar (SPEC.md "Files"). Pure: the clock and zone are passed in.
//!
//! ```text
//! backup-YYYY-MM-DD-HHMMSS.db.gz        a snapkeep backup
//! pre-restore-YYYY-MM-DD-HHMMSS.db.gz   the database as it was before a restore (protected)
//! backup-YYYY-MM-DD-HHMMSS.db           a legacy plain-SQLite backup of the older Python system
//! ```
//! The time is local wall-clock time in `BACKUP_TZ`. Anything else in the directory, including
//! snapkeep's own temporary and partial files, is not a backup.

use std::fmt;

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

const TIME_FORMAT: &str = "%Y-%m-%d-%H%M%S";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `backup-….db.gz`
    Backup,
    /// `pre-restore-….db.gz`: protected from rotation.
    PreRestore,
    /// `backup-….db`: a plain SQLite file from the Python system.
    Legacy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BackupName {
    pub kind: Kind,
    /// Local wall-clock time, whole seconds.
    pub local: NaiveDateTime,
}

impl BackupName {
    /// The name for a backup made at `at`, in `tz`'s wall-clock time.
    pub fn at(kind: Kind, at: DateTime<Utc>, tz: Tz) -> Self {
        let local = at.with_timezone(&tz).naive_local();
        BackupName {
            kind,
            local: local.with_nanosecond_zero(),
        }
    }

    /// Parse a file name; None for anything that is not a backup.
    pub fn parse(file_name: &str) -> Option<Self> {
        let (kind, rest) = if let Some(rest) = file_name.strip_prefix("pre-restore-") {
            (Kind::PreRestore, rest.strip_suffix(".db.gz")?)
        } else if let Some(rest) = file_name.strip_prefix("backup-") {
            match rest.strip_suffix(".db.gz") {
                Some(stamp) => (Kind::Backup, stamp),
                None => (Kind::Legacy, rest.strip_suffix(".db")?),
            }
        } else {
            return None;
        };
        // Exactly YYYY-MM-DD-HHMMSS: chrono alone would accept 1-digit fields.
        if rest.len() != 17 || !rest.is_ascii() {
            return None;
        }
        let local = NaiveDateTime::parse_from_str(rest, TIME_FORMAT).ok()?;
        Some(BackupName { kind, local })
    }

    pub fn file_name(&self) -> String {
        let stamp = self.local.format(TIME_FORMAT);
        match self.kind {
            Kind::Backup => format!("backup-{stamp}.db.gz"),
            Kind::PreRestore => format!("pre-restore-{stamp}.db.gz"),
            Kind::Legacy => format!("backup-{stamp}.db"),
        }
    }

    /// The same name one second later: how a second backup in the same second gets a name of
    /// its own without breaking the grammar.
    pub fn next_second(&self) -> Self {
        BackupName {
            kind: self.kind,
            local: self.local + chrono::Duration::seconds(1),
        }
    }

    /// The instant the name stands for. In a fall-back hour the earlier instant is taken; a
    /// time inside a spring-forward gap (only a hand-made name can have one) maps to the gap's
    /// end. Records carry the exact instant; this is the fallback for files without one.
    pub fn instant(&self, tz: Tz) -> DateTime<Utc> {
        let mut local = self.local;
        loop {
            match tz.from_local_datetime(&local) {
                LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => {
                    return t.with_timezone(&Utc)
                }
                LocalResult::None => local += chrono::Duration::minutes(1),
            }
        }
    }

    pub fn is_gzip(&self) -> bool {
        self.kind != Kind::Legacy
    }

    /// Pre-restore backups are never deleted by rotation.
    pub fn is_protected_by_name(&self) -> bool {
        self.kind == Kind::PreRestore
    }
}

impl fmt::Display for BackupName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file_name())
    }
}

trait NanosecondZero {
    fn with_nanosecond_zero(self) -> Self;
}

impl NanosecondZero for NaiveDateTime {
    fn with_nanosecond_zero(self) -> Self {
        use chrono::Timelike;
        self.with_nanosecond(0).expect("0 ns is valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Europe::Berlin;

    #[test]
    fn names_round_trip_and_use_local_time() {
        let at = Utc.with_ymd_and_hms(2026, 7, 1, 1, 0, 5).unwrap();
        let n = BackupName::at(Kind::Backup, at, Berlin);
        assert_eq!(n.file_name(), "backup-2026-07-01-030005.db.gz");
        assert_eq!(BackupName::parse(&n.file_name()), Some(n));
        assert_eq!(n.instant(Berlin), at);
        let winter = Utc.with_ymd_and_hms(2026, 12, 1, 2, 0, 0).unwrap();
        assert_eq!(
            BackupName::at(Kind::PreRestore, winter, Berlin).file_name(),
            "pre-restore-2026-12-01-030000.db.gz"
        );
    }

    #[test]
    fn parse_table() {
        let cases: &[(&str, Option<Kind>)] = &[
            ("backup-2026-01-02-030405.db.gz", Some(Kind::Backup)),
            (
                "pre-restore-2026-01-02-030405.db.gz",
                Some(Kind::PreRestore),
            ),
            ("backup-2026-01-02-030405.db", Some(Kind::Legacy)),
            ("backup-2026-1-02-030405.db.gz", None),
            ("backup-2026-01-02-030405.db.gz.partial", None),
            (".backup-2026-01-02-030405.db.gz", None),
            ("backup-2026-02-30-030405.db.gz", None),
            ("backup-2026-01-02-250405.db.gz", None),
            ("backup-2026-01-02-030405.sql.gz", None),
            ("pre-restore-2026-01-02-030405.db", None),
            ("notes.txt", None),
        ];
        for (name, want) in cases {
            assert_eq!(BackupName::parse(name).map(|n| n.kind), *want, "{name}");
        }
    }

    #[test]
    fn next_second_keeps_the_grammar() {
        let n = BackupName::parse("backup-2026-12-31-235959.db.gz").unwrap();
        assert_eq!(
            n.next_second().file_name(),
            "backup-2027-01-01-000000.db.gz"
        );
    }

    #[test]
    fn ambiguous_and_missing_local_times_resolve() {
        // 02:30 happens twice on 2026-10-25 in Berlin: the earlier (CEST, UTC+2) instant.
        let n = BackupName::parse("backup-2026-10-25-023000.db.gz").unwrap();
        assert_eq!(
            n.instant(Berlin),
            Utc.with_ymd_and_hms(2026, 10, 25, 0, 30, 0).unwrap()
        );
        // 02:30 does not exist on 2026-03-29: the end of the gap, 03:00 CEST.
        let n = BackupName::parse("backup-2026-03-29-023000.db.gz").unwrap();
        assert_eq!(
            n.instant(Berlin),
            Utc.with_ymd_and_hms(2026, 3, 29, 1, 0, 0).unwrap()
        );
    }
}
