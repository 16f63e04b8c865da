//! Which backups to keep: a pure function from a list of backups and a policy to one
//! keep/delete decision per backup, with the reasons for every kept one.
//!
//! The rule is the one of `restic forget --keep-last L --keep-daily D --keep-weekly W
//! --keep-monthly M`: walk the unprotected backups newest first; every tier that still has
//! count left keeps a backup whose bucket (the backup itself for `last`, the local calendar
//! day, the ISO week, the calendar month) differs from the last bucket that tier kept, and
//! its count drops by one. So each tier keeps the newest backup of each of its N most recent
//! buckets that hold a backup, however far apart those buckets are. Buckets are taken in the
//! configured IANA time zone, so "a day" is the day the operator sees on the wall clock,
//! also across DST changes. Weeks are keyed by ISO week-year + ISO week number: keying them
//! by calendar year would split ISO week 2026-W53 (2026-12-28..2027-01-03) in two and keep
//! one backup too many, and the wrong one, around New Year.
//!
//! Checked against restic's `internal/restic/snapshot_policy.go` (`ApplyPolicy`). Since
//! restic 0.16 the oldest snapshot is also kept by every tier that still has count left when
//! the walk reaches it (`val != b.Last || nr == len(list)-1`), so a young history is not
//! thinned before the policy is "full"; later restic (PR #5039) labels that case
//! "oldest <tier> snapshot" only when the tier would not have kept it anyway (same bucket as
//! the tier's last kept one). We do the same, with the single reason [`Reason::Oldest`].
//!
//! Where we knowingly differ from restic:
//! - Protected backups (pre-restore and pinned) are kept and take no part in the walk: they
//!   use up no tier count, do not occupy a bucket and are never "the oldest"/"the newest".
//!   restic's `--keep-tag` snapshots still go through the buckets and use up counts; ours
//!   must not, or pinning a backup would silently shorten the rotating history.
//! - A policy with every tier at 0 is an error ([`PolicyError::Empty`]); restic treats an
//!   empty policy as "keep everything". Either way nothing is deleted, but a silent no-op
//!   hides a configuration mistake.
//! - Buckets use one configured time zone for all backups; restic uses the zone each
//!   snapshot's timestamp was recorded in.
//! - Backups with the same timestamp are ordered by name, descending (deterministic);
//!   restic keeps the input order (stable sort).
//! - No hourly/yearly/within tiers and no "-1 = unlimited" counts.
//! - [`Reason::Newest`] is a safety net restic does not have: the newest unprotected backup
//!   is kept even if no tier kept it. With a valid policy some tier always keeps it, so the
//!   net never shows in practice; it is there so no future edit can delete the latest backup.

use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use chrono_tz::Tz;

/// One backup as the retention rule sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub created: DateTime<Utc>,
    /// Pre-restore or pinned: never deleted, never counted.
    pub protected: bool,
}

/// How many buckets each tier keeps (`KEEP_DAILY`, `KEEP_WEEKLY`, `KEEP_MONTHLY`, `KEEP_LAST`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Policy {
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
    pub last: u32,
}

impl Policy {
    /// Err when every tier (daily, weekly, monthly, last) is 0: such a policy would keep
    /// only the newest backup, which is never what the operator meant.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.daily == 0 && self.weekly == 0 && self.monthly == 0 && self.last == 0 {
            Err(PolicyError::Empty)
        } else {
            Ok(())
        }
    }
}

/// Why a backup is kept. The order of the variants is the order reasons are listed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    /// One of the `KEEP_LAST` newest unprotected backups.
    Last,
    /// The newest backup of one of the `KEEP_DAILY` most recent local days with a backup.
    Daily,
    /// The newest backup of one of the `KEEP_WEEKLY` most recent ISO weeks with a backup.
    Weekly,
    /// The newest backup of one of the `KEEP_MONTHLY` most recent months with a backup.
    Monthly,
    /// The oldest unprotected backup, kept because a tier still had count left.
    Oldest,
    /// Pre-restore or pinned backup.
    Protected,
    /// Safety net: the newest unprotected backup when nothing else kept it.
    Newest,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::Last => "last",
            Reason::Daily => "daily",
            Reason::Weekly => "weekly",
            Reason::Monthly => "monthly",
            Reason::Oldest => "oldest",
            Reason::Protected => "protected",
            Reason::Newest => "newest",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The verdict on one backup. `reasons` is empty exactly when `keep` is false.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub name: String,
    pub created: DateTime<Utc>,
    pub keep: bool,
    pub reasons: Vec<Reason>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("retention policy keeps nothing: set at least one of KEEP_DAILY, KEEP_WEEKLY, KEEP_MONTHLY or KEEP_LAST above 0")]
    Empty,
}

/// Pure: no I/O, no clock. Returns one Decision per entry, newest first (ties broken by name,
/// descending), reasons in the enum's order.
///
/// The policy is validated first, so an all-zero policy is refused even for an empty list.
pub fn plan(entries: &[Entry], policy: &Policy, tz: Tz) -> Result<Vec<Decision>, PolicyError> {
    policy.validate()?;
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    // Sorting here (not trusting the caller) makes the answer independent of input order.
    sorted.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| b.name.cmp(&a.name)));
    let reasons = reasons_newest_first(&sorted, policy, tz);
    Ok(sorted
        .into_iter()
        .zip(reasons)
        .map(|(entry, reasons)| Decision {
            name: entry.name.clone(),
            created: entry.created,
            keep: !reasons.is_empty(),
            reasons,
        })
        .collect())
}

/// The bucket a backup falls in for one tier; a tier keeps a backup when its bucket differs
/// from the one it kept last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bucket {
    /// `last`: every backup is a bucket of its own (its position in the walk).
    Backup(usize),
    Day(NaiveDate),
    /// ISO week-year and ISO week number.
    Week(i32, u32),
    /// Calendar year and month.
    Month(i32, u32),
}

/// One tier of the policy during the walk.
struct Tier {
    reason: Reason,
    left: u32,
    last_kept: Option<Bucket>,
}

impl Tier {
    fn bucket(&self, position: usize, day: NaiveDate) -> Bucket {
        match self.reason {
            Reason::Daily => Bucket::Day(day),
            Reason::Weekly => {
                let week = day.iso_week();
                Bucket::Week(week.year(), week.week())
            }
            Reason::Monthly => Bucket::Month(day.year(), day.month()),
            // `Last`, the only other tier.
            _ => Bucket::Backup(position),
        }
    }
}

/// The reasons for each of `sorted` (newest first), in the same order; empty means delete.
/// Does not validate the policy, so the `newest` safety net can be tested on its own.
fn reasons_newest_first(sorted: &[&Entry], policy: &Policy, tz: Tz) -> Vec<Vec<Reason>> {
    let mut reasons: Vec<Vec<Reason>> = vec![Vec::new(); sorted.len()];
    let mut tiers = [
        (Reason::Last, policy.last),
        (Reason::Daily, policy.daily),
        (Reason::Weekly, policy.weekly),
        (Reason::Monthly, policy.monthly),
    ]
    .map(|(reason, left)| Tier {
        reason,
        left,
        last_kept: None,
    });

    let unprotected: Vec<usize> = (0..sorted.len())
        .filter(|&i| !sorted[i].protected)
        .collect();
    let oldest = unprotected.last().copied();

    for (i, entry) in sorted.iter().enumerate() {
        if entry.protected {
            reasons[i].push(Reason::Protected);
        }
    }
    for &i in &unprotected {
        // The local wall-clock day, not the UTC day: 00:30 in Berlin is the previous UTC day.
        let day = sorted[i].created.with_timezone(&tz).date_naive();
        for tier in tiers.iter_mut().filter(|t| t.left > 0) {
            let bucket = tier.bucket(i, day);
            if tier.last_kept != Some(bucket) {
                tier.last_kept = Some(bucket);
                tier.left -= 1;
                reasons[i].push(tier.reason);
            } else if Some(i) == oldest {
                // The tier has count left but nothing older to spend it on: keep the
                // oldest backup so a young history is not thinned early (restic >= 0.16).
                reasons[i].push(Reason::Oldest);
            }
        }
    }
    if let Some(&newest) = unprotected.first() {
        if reasons[newest].is_empty() {
            reasons[newest].push(Reason::Newest);
        }
    }

    for r in &mut reasons {
        r.sort();
        r.dedup();
    }
    reasons
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Days, TimeZone};
    use chrono_tz::Europe::Berlin;
    use rstest::rstest;

    const D: Reason = Reason::Daily;
    const W: Reason = Reason::Weekly;
    const M: Reason = Reason::Monthly;
    const L: Reason = Reason::Last;
    const O: Reason = Reason::Oldest;
    const P: Reason = Reason::Protected;

    fn policy(daily: u32, weekly: u32, monthly: u32, last: u32) -> Policy {
        Policy {
            daily,
            weekly,
            monthly,
            last,
        }
    }

    /// A backup taken at local time `y-m-d h:min` in `tz`, named after that local time
    /// ("2026-03-04T1500") so expectations read as wall-clock times.
    fn at_in(tz: Tz, y: i32, m: u32, d: u32, h: u32, min: u32) -> Entry {
        let local = tz
            .with_ymd_and_hms(y, m, d, h, min, 0)
            .single()
            .expect("unambiguous local time");
        Entry {
            name: format!("{y:04}-{m:02}-{d:02}T{h:02}{min:02}"),
            created: local.with_timezone(&Utc),
            protected: false,
        }
    }

    fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> Entry {
        at_in(Berlin, y, m, d, h, min)
    }

    fn protect(mut e: Entry) -> Entry {
        e.protected = true;
        e
    }

    /// One backup a day at `h:00` Berlin time, from `first` to `last` inclusive.
    fn daily_at(first: (i32, u32, u32), last: (i32, u32, u32), h: u32) -> Vec<Entry> {
        let mut day = NaiveDate::from_ymd_opt(first.0, first.1, first.2).unwrap();
        let end = NaiveDate::from_ymd_opt(last.0, last.1, last.2).unwrap();
        let mut out = Vec::new();
        while day <= end {
            out.push(at(day.year(), day.month(), day.day(), h, 0));
            day = day + Days::new(1);
        }
        out
    }

    /// Names of the kept backups with their reasons, newest first.
    fn kept(decisions: &[Decision]) -> Vec<(String, Vec<Reason>)> {
        decisions
            .iter()
            .filter(|d| d.keep)
            .map(|d| (d.name.clone(), d.reasons.clone()))
            .collect()
    }

    fn kept_names(decisions: &[Decision]) -> Vec<String> {
        kept(decisions).into_iter().map(|(n, _)| n).collect()
    }

    fn owned(expected: &[(&str, &[Reason])]) -> Vec<(String, Vec<Reason>)> {
        expected
            .iter()
            .map(|(n, r)| (n.to_string(), r.to_vec()))
            .collect()
    }

    fn names(expected: &[&str]) -> Vec<String> {
        expected.iter().map(|n| n.to_string()).collect()
    }

    /// Invariants every plan must satisfy, whatever the input.
    fn check_shape(entries: &[Entry], decisions: &[Decision]) {
        assert_eq!(decisions.len(), entries.len(), "one decision per entry");
        for pair in decisions.windows(2) {
            assert!(
                (pair[0].created, &pair[0].name) > (pair[1].created, &pair[1].name),
                "newest first, ties by name descending"
            );
        }
        for d in decisions {
            assert_eq!(d.keep, !d.reasons.is_empty(), "{}", d.name);
            let mut sorted = d.reasons.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(d.reasons, sorted, "reasons in enum order, once each");
        }
        for e in entries.iter().filter(|e| e.protected) {
            let d = decisions.iter().find(|d| d.name == e.name).unwrap();
            assert!(d.keep && d.reasons.contains(&P), "{} protected", e.name);
        }
    }

    fn run(entries: &[Entry], p: Policy, tz: Tz) -> Vec<Decision> {
        let decisions = plan(entries, &p, tz).expect("valid policy");
        check_shape(entries, &decisions);
        decisions
    }

    #[test]
    fn four_hundred_days_of_daily_backups_with_7_4_12() {
        // 2025-05-07 .. 2026-06-10 (Wednesday, ISO 2026-W24), 400 backups at 03:00 Berlin.
        let entries = daily_at((2025, 5, 7), (2026, 6, 10), 3);
        assert_eq!(entries.len(), 400);
        let decisions = run(&entries, policy(7, 4, 12, 0), Berlin);
        // daily: the 7 newest days (06-04..06-10);
        // weekly: W24 -> 06-10, W23 -> Sun 06-07, W22 -> Sun 05-31, W21 -> Sun 05-24;
        // monthly: the last day of each month back to 2025-07 (12 months, June first).
        // All tiers are used up before 2025-05-07, so the oldest goes.
        assert_eq!(
            kept_names(&decisions),
            names(&[
                "2026-06-10T0300",
                "2026-06-09T0300",
                "2026-06-08T0300",
                "2026-06-07T0300",
                "2026-06-06T0300",
                "2026-06-05T0300",
                "2026-06-04T0300",
                "2026-05-31T0300",
                "2026-05-24T0300",
                "2026-04-30T0300",
                "2026-03-31T0300",
                "2026-02-28T0300",
                "2026-01-31T0300",
                "2025-12-31T0300",
                "2025-11-30T0300",
                "2025-10-31T0300",
                "2025-09-30T0300",
                "2025-08-31T0300",
                "2025-07-31T0300",
            ])
        );
        let reasons_of = |name: &str| {
            decisions
                .iter()
                .find(|d| d.name == name)
                .unwrap()
                .reasons
                .clone()
        };
        assert_eq!(reasons_of("2026-06-10T0300"), vec![D, W, M]);
        assert_eq!(reasons_of("2026-06-07T0300"), vec![D, W]);
        assert_eq!(reasons_of("2026-06-05T0300"), vec![D]);
        assert_eq!(reasons_of("2026-05-31T0300"), vec![W, M]);
        assert_eq!(reasons_of("2026-05-24T0300"), vec![W]);
        assert_eq!(reasons_of("2026-02-28T0300"), vec![M]);
        assert_eq!(reasons_of("2025-07-31T0300"), vec![M]);
        assert_eq!(reasons_of("2026-06-03T0300"), Vec::<Reason>::new());
        assert_eq!(reasons_of("2025-05-07T0300"), Vec::<Reason>::new());
        assert_eq!(reasons_of("2025-06-30T0300"), Vec::<Reason>::new());
    }

    #[rstest]
    // Three days with backups at 01:00, 09:00 and 17:00: the 17:00 one is each day's newest.
    #[case::two_days(policy(2, 0, 0, 0), &[
        ("2026-05-13T1700", &[D][..]),
        ("2026-05-12T1700", &[D]),
    ])]
    // Daily has count left at the oldest (05-11 01:00), whose day is already kept: `oldest`.
    #[case::more_days_than_backups(policy(5, 0, 0, 0), &[
        ("2026-05-13T1700", &[D][..]),
        ("2026-05-12T1700", &[D]),
        ("2026-05-11T1700", &[D]),
        ("2026-05-11T0100", &[O]),
    ])]
    fn several_backups_a_day_newest_of_the_day_wins(
        #[case] p: Policy,
        #[case] expected: &[(&str, &[Reason])],
    ) {
        let mut entries = Vec::new();
        for d in 11..=13 {
            for h in [1, 9, 17] {
                entries.push(at(2026, 5, d, h, 0));
            }
        }
        assert_eq!(kept(&run(&entries, p, Berlin)), owned(expected));
    }

    #[test]
    fn gaps_of_weeks_each_tier_counts_buckets_that_hold_a_backup() {
        // Mondays six weeks apart: each is its own day, ISO week and month.
        let entries = vec![
            at(2026, 1, 5, 3, 0),
            at(2026, 2, 16, 3, 0),
            at(2026, 3, 30, 3, 0),
            at(2026, 5, 11, 3, 0),
        ];
        let all = &[D, W, M][..];
        assert_eq!(
            kept(&run(&entries, policy(7, 4, 12, 0), Berlin)),
            owned(&[
                ("2026-05-11T0300", all),
                ("2026-03-30T0300", all),
                ("2026-02-16T0300", all),
                ("2026-01-05T0300", all),
            ])
        );
        // "7 daily" means 7 days that hold a backup, not the last 7 calendar days.
        assert_eq!(
            kept(&run(&entries, policy(2, 0, 0, 0), Berlin)),
            owned(&[("2026-05-11T0300", &[D]), ("2026-03-30T0300", &[D])])
        );
    }

    #[rstest]
    #[case::single(vec![at(2026, 5, 13, 3, 0)], &[("2026-05-13T0300", &[D, W, M][..])])]
    // All on one day: the newest for every tier, the oldest for the tiers' left-over counts.
    #[case::one_day(
        vec![at(2026, 5, 13, 1, 0), at(2026, 5, 13, 2, 0), at(2026, 5, 13, 3, 0)],
        &[("2026-05-13T0300", &[D, W, M][..]), ("2026-05-13T0100", &[O])]
    )]
    // Mon..Fri of one week: all days kept; the oldest (Monday) is a new day, and weekly and
    // monthly still have count left for a bucket they already kept.
    #[case::one_week(
        daily_at((2026, 5, 11), (2026, 5, 15), 3),
        &[
            ("2026-05-15T0300", &[D, W, M][..]),
            ("2026-05-14T0300", &[D]),
            ("2026-05-13T0300", &[D]),
            ("2026-05-12T0300", &[D]),
            ("2026-05-11T0300", &[D, O]),
        ]
    )]
    // Ten days across a month end: daily is used up at 05-28, so 05-27 and 05-26 go. The
    // oldest, 05-25, is in W22 and May, both already kept via 05-31, but weekly and monthly
    // still have count left: kept as `oldest`.
    #[case::ten_days(
        daily_at((2026, 5, 25), (2026, 6, 3), 3),
        &[
            ("2026-06-03T0300", &[D, W, M][..]),
            ("2026-06-02T0300", &[D]),
            ("2026-06-01T0300", &[D]),
            ("2026-05-31T0300", &[D, W, M]),
            ("2026-05-30T0300", &[D]),
            ("2026-05-29T0300", &[D]),
            ("2026-05-28T0300", &[D]),
            ("2026-05-25T0300", &[O]),
        ]
    )]
    fn fewer_backups_than_slots(
        #[case] entries: Vec<Entry>,
        #[case] expected: &[(&str, &[Reason])],
    ) {
        assert_eq!(
            kept(&run(&entries, policy(7, 4, 12, 0), Berlin)),
            owned(expected)
        );
    }

    #[rstest]
    // 2026-12-28 (Mon) .. 2027-01-03 (Sun) is ISO 2026-W53; 2027-01-04 starts 2027-W01.
    // (A calendar-year key would split W53 at New Year and keep 12-31 instead of 12-27.)
    #[case::week_53((2026, 12, 24), (2027, 1, 5), &["2027-01-05T0300", "2027-01-03T0300", "2026-12-27T0300"])]
    // 2025-12-29 (Mon) .. 2026-01-04 is ISO 2026-W01: its December days belong to 2026.
    #[case::december_in_week_1((2025, 12, 24), (2026, 1, 6), &["2026-01-06T0300", "2026-01-04T0300", "2025-12-28T0300"])]
    // 2022-01-01/02 (Sat/Sun) are in ISO 2021-W52, with 2021-12-27..31.
    #[case::january_in_week_52((2021, 12, 24), (2022, 1, 4), &["2022-01-04T0300", "2022-01-02T0300", "2021-12-26T0300"])]
    // 2020-W53 runs 2020-12-28 .. 2021-01-03.
    #[case::week_53_2020((2020, 12, 24), (2021, 1, 5), &["2021-01-05T0300", "2021-01-03T0300", "2020-12-27T0300"])]
    fn weekly_buckets_follow_the_iso_week_year(
        #[case] first: (i32, u32, u32),
        #[case] last: (i32, u32, u32),
        #[case] expected: &[&str],
    ) {
        let entries = daily_at(first, last, 3);
        let decisions = run(&entries, policy(0, 3, 0, 0), Berlin);
        assert_eq!(kept_names(&decisions), names(expected));
        assert!(decisions
            .iter()
            .filter(|d| d.keep)
            .all(|d| d.reasons == [W]));
    }

    #[rstest]
    // Spring forward on Sunday 2026-03-29 (02:00 CET -> 03:00 CEST). 00:30 local is still the
    // previous UTC day, 23:30 local is 22:30/21:30 UTC: the local day decides.
    #[case::march_berlin(Berlin, 3, [28, 29, 30], &["2026-03-30T2330", "2026-03-29T2330", "2026-03-28T2330"])]
    // Fall back on Sunday 2026-10-25 (03:00 CEST -> 02:00 CET).
    #[case::october_berlin(Berlin, 10, [24, 25, 26], &["2026-10-26T2330", "2026-10-25T2330", "2026-10-24T2330"])]
    // The same instants bucketed in UTC would keep the wrong ones: UTC 03-30 holds only
    // 30th 23:30 (21:30Z); UTC 03-29 holds 30th 00:30 (22:30Z on the 29th) as its newest;
    // UTC 03-28 holds 29th 00:30 (23:30Z on the 28th) as its newest.
    #[case::march_same_instants_in_utc(chrono_tz::UTC, 3, [28, 29, 30], &["2026-03-30T2330", "2026-03-30T0030", "2026-03-29T0030"])]
    fn dst_change_buckets_by_local_day(
        #[case] tz: Tz,
        #[case] month: u32,
        #[case] days: [u32; 3],
        #[case] expected: &[&str],
    ) {
        let mut entries = Vec::new();
        for d in days {
            entries.push(at(2026, month, d, 0, 30));
            entries.push(at(2026, month, d, 23, 30));
        }
        assert_eq!(
            kept_names(&run(&entries, policy(3, 0, 0, 0), tz)),
            names(expected)
        );
    }

    #[test]
    fn dst_day_offsets_are_what_the_tests_assume() {
        // Guards the DST cases above: these are the UTC instants they rely on.
        let utc = |e: Entry| e.created.to_rfc3339();
        assert_eq!(utc(at(2026, 3, 29, 0, 30)), "2026-03-28T23:30:00+00:00");
        assert_eq!(utc(at(2026, 3, 29, 23, 30)), "2026-03-29T21:30:00+00:00");
        assert_eq!(utc(at(2026, 10, 25, 0, 30)), "2026-10-24T22:30:00+00:00");
        assert_eq!(utc(at(2026, 10, 25, 23, 30)), "2026-10-25T22:30:00+00:00");
    }

    #[test]
    fn protected_backups_are_kept_and_never_counted() {
        // 2026-03-01 .. 03-10 at 03:00; 03-09 is a pre-restore backup, 03-05 is pinned, and
        // 03-08 also has a newer protected backup at 12:00 in the same day bucket.
        let mut entries = daily_at((2026, 3, 1), (2026, 3, 10), 3);
        for e in &mut entries {
            if e.name == "2026-03-09T0300" || e.name == "2026-03-05T0300" {
                e.protected = true;
            }
        }
        entries.push(protect(at(2026, 3, 8, 12, 0)));
        // Daily 3 still keeps three unprotected days: 03-10, 03-08 (its 03:00 backup, since
        // the protected 12:00 one does not occupy the day), 03-07.
        assert_eq!(
            kept(&run(&entries, policy(3, 0, 0, 0), Berlin)),
            owned(&[
                ("2026-03-10T0300", &[D]),
                ("2026-03-09T0300", &[P]),
                ("2026-03-08T1200", &[P]),
                ("2026-03-08T0300", &[D]),
                ("2026-03-07T0300", &[D]),
                ("2026-03-05T0300", &[P]),
            ])
        );
    }

    #[rstest]
    // The newest backup overall is protected: the newest unprotected one is still kept by the
    // tiers, and the protected one is not "the newest" for any tier.
    #[case::protected_newest(
        vec![protect(at(2026, 3, 10, 12, 0)), at(2026, 3, 10, 3, 0), at(2026, 3, 9, 3, 0)],
        policy(1, 0, 0, 0),
        &[("2026-03-10T1200", &[P][..]), ("2026-03-10T0300", &[D])]
    )]
    // The oldest backup overall is protected: `oldest` goes to the oldest unprotected one.
    #[case::protected_oldest(
        vec![protect(at(2026, 3, 2, 3, 0)), at(2026, 3, 3, 3, 0), at(2026, 3, 4, 3, 0)],
        policy(7, 4, 0, 0),
        &[("2026-03-04T0300", &[D, W][..]), ("2026-03-03T0300", &[D, O]), ("2026-03-02T0300", &[P])]
    )]
    // Only protected backups: all kept, nothing else to say.
    #[case::only_protected(
        vec![protect(at(2026, 3, 2, 3, 0)), protect(at(2026, 3, 3, 3, 0))],
        policy(7, 4, 12, 0),
        &[("2026-03-03T0300", &[P][..]), ("2026-03-02T0300", &[P])]
    )]
    fn protected_at_the_edges(
        #[case] entries: Vec<Entry>,
        #[case] p: Policy,
        #[case] expected: &[(&str, &[Reason])],
    ) {
        assert_eq!(kept(&run(&entries, p, Berlin)), owned(expected));
    }

    /// 2026-02-20 (Fri) .. 2026-03-04 (Wed) at 03:00 Berlin, plus 15:00 on 03-04.
    /// ISO weeks: W08 = 02-16..02-22, W09 = 02-23..03-01, W10 = 03-02..03-08.
    fn two_weeks() -> Vec<Entry> {
        let mut entries = daily_at((2026, 2, 20), (2026, 3, 4), 3);
        entries.push(at(2026, 3, 4, 15, 0));
        entries
    }

    #[rstest]
    #[case::last_only(policy(0, 0, 0, 3), &[
        ("2026-03-04T1500", &[L][..]),
        ("2026-03-04T0300", &[L]),
        ("2026-03-03T0300", &[L]),
    ])]
    #[case::weekly_only(policy(0, 2, 0, 0), &[
        ("2026-03-04T1500", &[W][..]),
        ("2026-03-01T0300", &[W]),
    ])]
    #[case::monthly_only(policy(0, 0, 2, 0), &[
        ("2026-03-04T1500", &[M][..]),
        ("2026-02-28T0300", &[M]),
    ])]
    // KEEP_LAST=1 and daily take the same newest backup; daily skips 03-04 03:00 (same day).
    #[case::daily_and_last(policy(2, 0, 0, 1), &[
        ("2026-03-04T1500", &[L, D][..]),
        ("2026-03-03T0300", &[D]),
    ])]
    // KEEP_LAST keeps 03-04 03:00 whatever its day.
    #[case::last_keeps_same_day(policy(2, 0, 0, 2), &[
        ("2026-03-04T1500", &[L, D][..]),
        ("2026-03-04T0300", &[L]),
        ("2026-03-03T0300", &[D]),
    ])]
    // Monthly has one count left when the walk reaches 02-20, whose month is already kept.
    #[case::monthly_oldest(policy(0, 0, 3, 0), &[
        ("2026-03-04T1500", &[M][..]),
        ("2026-02-28T0300", &[M]),
        ("2026-02-20T0300", &[O]),
    ])]
    #[case::weekly_oldest(policy(0, 5, 0, 0), &[
        ("2026-03-04T1500", &[W][..]),
        ("2026-03-01T0300", &[W]),
        ("2026-02-22T0300", &[W]),
        ("2026-02-20T0300", &[O]),
    ])]
    // KEEP_LAST reaching the oldest keeps it as `last`, never as `oldest` (each backup is a
    // bucket of its own).
    #[case::last_covers_all(policy(0, 0, 1, 20), &[
        ("2026-03-04T1500", &[L, M][..]),
        ("2026-03-04T0300", &[L]),
        ("2026-03-03T0300", &[L]),
        ("2026-03-02T0300", &[L]),
        ("2026-03-01T0300", &[L]),
        ("2026-02-28T0300", &[L]),
        ("2026-02-27T0300", &[L]),
        ("2026-02-26T0300", &[L]),
        ("2026-02-25T0300", &[L]),
        ("2026-02-24T0300", &[L]),
        ("2026-02-23T0300", &[L]),
        ("2026-02-22T0300", &[L]),
        ("2026-02-21T0300", &[L]),
        ("2026-02-20T0300", &[L]),
    ])]
    fn policies_with_tiers_at_zero(#[case] p: Policy, #[case] expected: &[(&str, &[Reason])]) {
        assert_eq!(kept(&run(&two_weeks(), p, Berlin)), owned(expected));
    }

    #[rstest]
    #[case::none(policy(0, 0, 0, 0), Err(PolicyError::Empty))]
    #[case::default(Policy::default(), Err(PolicyError::Empty))]
    #[case::daily(policy(1, 0, 0, 0), Ok(()))]
    #[case::weekly(policy(0, 1, 0, 0), Ok(()))]
    #[case::monthly(policy(0, 0, 1, 0), Ok(()))]
    #[case::last(policy(0, 0, 0, 1), Ok(()))]
    fn validate_refuses_only_the_all_zero_policy(
        #[case] p: Policy,
        #[case] expected: Result<(), PolicyError>,
    ) {
        assert_eq!(p.validate(), expected);
        let planned = plan(&two_weeks(), &p, Berlin).map(|_| ());
        assert_eq!(planned, expected);
    }

    #[test]
    fn empty_policy_is_refused_even_for_no_backups_and_says_what_to_set() {
        assert_eq!(
            plan(&[], &Policy::default(), Berlin),
            Err(PolicyError::Empty)
        );
        assert_eq!(
            PolicyError::Empty.to_string(),
            "retention policy keeps nothing: set at least one of KEEP_DAILY, KEEP_WEEKLY, \
             KEEP_MONTHLY or KEEP_LAST above 0"
        );
    }

    #[test]
    fn empty_input_gives_empty_output() {
        assert_eq!(plan(&[], &policy(7, 4, 12, 0), Berlin), Ok(Vec::new()));
    }

    #[test]
    fn the_newest_is_always_kept() {
        for (daily, weekly, monthly, last) in [
            (1, 0, 0, 0),
            (3, 0, 0, 0),
            (0, 1, 0, 0),
            (0, 0, 1, 0),
            (0, 0, 0, 1),
            (0, 0, 0, 2),
            (7, 4, 12, 0),
            (7, 4, 12, 3),
        ] {
            for protected_newer in [false, true] {
                let p = policy(daily, weekly, monthly, last);
                let mut entries = two_weeks();
                if protected_newer {
                    entries.push(protect(at(2026, 3, 4, 18, 0)));
                }
                let decisions = run(&entries, p, Berlin);
                let newest = decisions
                    .iter()
                    .find(|d| d.name == "2026-03-04T1500")
                    .unwrap();
                assert!(newest.keep, "{p:?} {protected_newer}");
                assert!(!newest.reasons.contains(&Reason::Newest), "a tier keeps it");
            }
        }
    }

    #[test]
    fn newest_safety_net_keeps_the_newest_unprotected_when_no_tier_does() {
        // Only reachable without validation: with every tier at 0 nothing but the net keeps.
        let entries = [
            protect(at(2026, 3, 5, 3, 0)),
            at(2026, 3, 4, 3, 0),
            at(2026, 3, 3, 3, 0),
        ];
        let sorted: Vec<&Entry> = entries.iter().collect();
        assert_eq!(
            reasons_newest_first(&sorted, &Policy::default(), Berlin),
            vec![vec![P], vec![Reason::Newest], vec![]]
        );
    }

    #[test]
    fn reason_display_and_order() {
        let all = [
            Reason::Last,
            Reason::Daily,
            Reason::Weekly,
            Reason::Monthly,
            Reason::Oldest,
            Reason::Protected,
            Reason::Newest,
        ];
        let words: Vec<String> = all.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            words,
            [
                "last",
                "daily",
                "weekly",
                "monthly",
                "oldest",
                "protected",
                "newest"
            ]
        );
        assert!(all.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn same_timestamp_is_ordered_by_name_descending() {
        let mut a = at(2026, 3, 4, 3, 0);
        a.name = "a".into();
        let mut b = a.clone();
        b.name = "b".into();
        for input in [vec![a.clone(), b.clone()], vec![b.clone(), a.clone()]] {
            let decisions = run(&input, policy(1, 0, 0, 0), Berlin);
            assert_eq!(
                decisions
                    .iter()
                    .map(|d| (d.name.as_str(), d.keep))
                    .collect::<Vec<_>>(),
                [("b", true), ("a", false)]
            );
        }
    }

    /// A history with every feature: 400 days, several a day near the end, protected ones,
    /// and two backups with the same timestamp.
    fn rich_history() -> Vec<Entry> {
        let mut entries = daily_at((2025, 5, 7), (2026, 6, 10), 3);
        entries.push(at(2026, 6, 10, 15, 0));
        entries.push(protect(at(2026, 6, 9, 12, 0)));
        entries.push(protect(at(2025, 12, 31, 23, 30)));
        let mut twin = at(2026, 6, 10, 15, 0);
        twin.name = "2026-06-10T1500-twin".into();
        entries.push(twin);
        entries
    }

    #[test]
    fn decision_does_not_depend_on_input_order_or_on_when_it_is_asked() {
        let entries = rich_history();
        let baseline = run(&entries, policy(7, 4, 12, 2), Berlin);

        let mut orders: Vec<Vec<Entry>> = Vec::new();
        orders.push(entries.iter().rev().cloned().collect());
        for k in [1, 7, 200, entries.len() - 1] {
            let mut rotated = entries.clone();
            rotated.rotate_left(k);
            orders.push(rotated);
        }
        let (even, odd): (Vec<_>, Vec<_>) = entries
            .iter()
            .cloned()
            .enumerate()
            .partition(|(i, _)| i % 2 == 0);
        orders.push(odd.into_iter().chain(even).map(|(_, e)| e).collect());
        // A fixed pseudo-random shuffle (Fisher-Yates with a small LCG): no clock, no rand.
        let mut shuffled = entries.clone();
        let mut seed: u64 = 0x5eed;
        for i in (1..shuffled.len()).rev() {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            shuffled.swap(i, (seed >> 33) as usize % (i + 1));
        }
        orders.push(shuffled);

        for order in &orders {
            assert_eq!(run(order, policy(7, 4, 12, 2), Berlin), baseline);
        }
        // Asking again and again (same inputs, later "now") changes nothing: there is no clock.
        for _ in 0..5 {
            assert_eq!(run(&entries, policy(7, 4, 12, 2), Berlin), baseline);
        }
    }
}
