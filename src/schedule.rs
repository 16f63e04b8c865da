//! `BACKUP_SCHEDULE`: cron expressions evaluated in the wall-clock time of an IANA time zone.
//!
//! We do not use tokio-cron-scheduler: it fixes the UTC offset when a job is created (jobs drift an
//! hour across DST), wants six fields, and ANDs day-of-month with day-of-week. Instead the daemon
//! asks [`next_run`] when to wake up and sleeps until then, and [`last_run`] tells it after a
//! restart whether a run was missed.
//!
//! The schedule selects local wall-clock times (whole seconds). Each selected time fires once:
//! - at its only instant, if that local time occurs once;
//! - at its first (summer-time) instant, if it occurs twice because DST ends;
//! - at the first instant after the gap, if it does not exist because DST starts. Several
//!   selected times in one gap therefore fire together, once.
//!
//! This mapping from local times to instants never goes backwards, so all runs form one
//! increasing sequence of whole-second instants. `next_run` is the first one after a given
//! instant and `last_run` the last one at or before it; that makes them consistent by
//! construction.

use std::fmt;
use std::str::FromStr;

use chrono::{
    DateTime, Datelike, Days, Months, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeDelta,
    TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;

/// How far [`next_run`] and [`last_run`] search. Parsing guarantees a run in every 28-year
/// calendar cycle up to 2099, so None is practically unreachable (exception: rare combinations
/// such as February 29th on a Sunday, whose gap grows past 30 years around 2100).
const HORIZON: Days = Days::new(366 * 30);

/// A parsed `BACKUP_SCHEDULE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// The expression as written (trimmed), for `Display` and messages.
    text: String,
    seconds: Bits,
    minutes: Bits,
    hours: Bits,
    days: Bits,
    months: Bits,
    /// Sunday is 0; a 7 in the expression is stored as 0.
    weekdays: Bits,
    /// Vixie cron: when both day fields are restricted, a day matches if EITHER matches. A field
    /// counts as unrestricted when it starts with `*` (so `*/2` too, as in Vixie cron), and then
    /// both fields must match, which means the restricted one decides.
    either_day: bool,
}

/// Why a `BACKUP_SCHEDULE` was rejected. Every message is one line naming the field and value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScheduleError {
    #[error(
        "BACKUP_SCHEDULE {expr:?}: expected 5 fields (minute hour day-of-month month \
         day-of-week) or 6 (second first), found {found}"
    )]
    FieldCount { expr: String, found: usize },
    #[error(
        "BACKUP_SCHEDULE {expr:?}: unknown macro; use @yearly, @annually, @monthly, @weekly, \
         @daily, @midnight or @hourly"
    )]
    UnknownMacro { expr: String },
    #[error("BACKUP_SCHEDULE {expr:?}: {field} {value:?} is not {expected}")]
    NotANumber {
        expr: String,
        field: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("BACKUP_SCHEDULE {expr:?}: {field} {value} is out of range {min}-{max}")]
    OutOfRange {
        expr: String,
        field: &'static str,
        value: String,
        min: u32,
        max: u32,
    },
    #[error("BACKUP_SCHEDULE {expr:?}: {field} step {step:?} is not a number from 1 to {max}")]
    BadStep {
        expr: String,
        field: &'static str,
        step: String,
        max: u32,
    },
    #[error("BACKUP_SCHEDULE {expr:?}: {field} range {range} is reversed")]
    ReversedRange {
        expr: String,
        field: &'static str,
        range: String,
    },
    #[error(
        "BACKUP_SCHEDULE {expr:?}: day-of-month {days} never falls in month {months}, \
         so the schedule never fires"
    )]
    NeverFires {
        expr: String,
        days: String,
        months: String,
    },
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let expanded = match text.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            name if name.starts_with('@') => {
                return Err(ScheduleError::UnknownMacro {
                    expr: text.to_string(),
                })
            }
            _ => text,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let [sec, min, hour, dom, month, dow] = match fields[..] {
            [min, hour, dom, month, dow] => ["0", min, hour, dom, month, dow],
            [sec, min, hour, dom, month, dow] => [sec, min, hour, dom, month, dow],
            _ => {
                return Err(ScheduleError::FieldCount {
                    expr: text.to_string(),
                    found: fields.len(),
                })
            }
        };
        let parse = |spec: &FieldSpec, field: &str| spec.parse(field, text);
        let mut schedule = Schedule {
            text: text.to_string(),
            seconds: parse(&SECOND, sec)?,
            minutes: parse(&MINUTE, min)?,
            hours: parse(&HOUR, hour)?,
            days: parse(&DAY_OF_MONTH, dom)?,
            months: parse(&MONTH, month)?,
            weekdays: parse(&DAY_OF_WEEK, dow)?,
            either_day: !dom.starts_with('*') && !dow.starts_with('*'),
        };
        if schedule.weekdays.has(7) {
            schedule.weekdays = Bits(schedule.weekdays.0 & !(1 << 7) | 1);
        }
        // The calendar (leap years and weekdays) repeats every 28 years between 1901 and 2099,
        // so a schedule with no matching day in one such cycle never fires.
        let cycle = NaiveDate::from_ymd_opt(2001, 1, 1).and_then(|start| {
            let end = start.checked_add_months(Months::new(12 * 28))?;
            schedule.next_local(start.and_time(NaiveTime::MIN), end)
        });
        if cycle.is_none() {
            return Err(ScheduleError::NeverFires {
                expr: text.to_string(),
                days: dom.to_string(),
                months: month.to_string(),
            });
        }
        Ok(schedule)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The documented default, `0 3 * * *`: daily at 03:00 local time.
impl Default for Schedule {
    fn default() -> Self {
        "0 3 * * *".parse().expect("the default schedule parses")
    }
}

/// The first scheduled instant strictly after `after`. None only if nothing fires within ~30 years.
pub fn next_run(after: DateTime<Utc>, schedule: &Schedule, tz: Tz) -> Option<DateTime<Utc>> {
    // Runs fall on whole seconds, so dropping the fraction changes nothing.
    let after = DateTime::from_timestamp(after.timestamp(), 0)?;
    let local = wall_clock(after, tz)?;
    let until = local.date().checked_add_days(HORIZON)?;
    // A selected time at or before `local` fires at or before `after` (the mapping never goes
    // backwards and `local` itself first occurs at or before `after`), so start just after it.
    let mut from = local.checked_add_signed(TimeDelta::seconds(1))?;
    loop {
        let candidate = schedule.next_local(from, until)?;
        let run = fire_instant(candidate, tz)?;
        if run > after {
            return Some(run);
        }
        // Only when `after` is in the second pass of a repeated hour: this local time already
        // fired during the first pass.
        from = candidate.checked_add_signed(TimeDelta::seconds(1))?;
    }
}

/// The last scheduled instant at or before `at` (used for missed-run catch-up: if no backup
/// succeeded since this instant, run once now). None if nothing within ~30 years back.
pub fn last_run(at: DateTime<Utc>, schedule: &Schedule, tz: Tz) -> Option<DateTime<Utc>> {
    let at = DateTime::from_timestamp(at.timestamp(), 0)?;
    let local = wall_clock(at, tz)?;
    let limit = local.date().checked_sub_days(HORIZON)?;
    // In the second pass of a repeated hour, the local times up to one fold later fired in the
    // first pass, i.e. before `at`; start there.
    let mut from = match tz.from_local_datetime(&local) {
        chrono::MappedLocalTime::Ambiguous(first, second) if second == at => {
            local.checked_add_signed(second - first)?
        }
        _ => local,
    };
    loop {
        let candidate = schedule.prev_local(from, limit)?;
        let run = fire_instant(candidate, tz)?;
        if run <= at {
            return Some(run);
        }
        from = candidate.checked_sub_signed(TimeDelta::seconds(1))?;
    }
}

/// The wall-clock time in `tz` at `t`; None (instead of a panic) at the ends of chrono's range.
fn wall_clock(t: DateTime<Utc>, tz: Tz) -> Option<NaiveDateTime> {
    let offset = tz.offset_from_utc_datetime(&t.naive_utc()).fix();
    t.naive_utc().checked_add_offset(offset)
}

/// When a selected local time fires: its first occurrence, or the end of the gap it falls in.
fn fire_instant(local: NaiveDateTime, tz: Tz) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&local).earliest() {
        Some(run) => Some(run.with_timezone(&Utc)),
        None => gap_end(local, tz),
    }
}

/// The first instant whose wall-clock time is later than `local`, a time inside a DST gap.
///
/// chrono-tz does not expose its transitions, so bisect. UTC offsets stay within ±24 hours, so
/// `local` read as UTC minus a day shows an earlier wall-clock time and plus a day a later one.
/// Whole-second offsets make the answer the instant the clock jumps over `local`.
fn gap_end(local: NaiveDateTime, tz: Tz) -> Option<DateTime<Utc>> {
    let wall = |ts: i64| wall_clock(DateTime::from_timestamp(ts, 0)?, tz);
    let middle = local.and_utc().timestamp();
    let (mut earlier, mut later) = (middle - 86_400, middle + 86_400);
    while later - earlier > 1 {
        let mid = earlier + (later - earlier) / 2;
        if wall(mid)? > local {
            later = mid;
        } else {
            earlier = mid;
        }
    }
    DateTime::from_timestamp(later, 0)
}

impl Schedule {
    /// The first selected local time at or after `from`, on a day no later than `until`.
    fn next_local(&self, from: NaiveDateTime, until: NaiveDate) -> Option<NaiveDateTime> {
        let (mut day, mut time) = (from.date(), from.time());
        while day <= until {
            if !self.months.has(day.month()) {
                // Skip the whole month instead of testing each of its days.
                day = day.with_day(1)?.checked_add_months(Months::new(1))?;
            } else {
                if self.day_matches(day) {
                    if let Some(t) = self.next_time(time) {
                        return Some(day.and_time(t));
                    }
                }
                day = day.succ_opt()?;
            }
            time = NaiveTime::MIN;
        }
        None
    }

    /// The last selected local time at or before `from`, on a day no earlier than `limit`.
    fn prev_local(&self, from: NaiveDateTime, limit: NaiveDate) -> Option<NaiveDateTime> {
        let (mut day, mut time) = (from.date(), from.time());
        let end_of_day = NaiveTime::from_hms_opt(23, 59, 59)?;
        while day >= limit {
            if !self.months.has(day.month()) {
                day = day.with_day(1)?.pred_opt()?;
            } else {
                if self.day_matches(day) {
                    if let Some(t) = self.prev_time(time) {
                        return Some(day.and_time(t));
                    }
                }
                day = day.pred_opt()?;
            }
            time = end_of_day;
        }
        None
    }

    /// Month, and the day fields combined the Vixie way (see `either_day`).
    fn day_matches(&self, day: NaiveDate) -> bool {
        let dom = self.days.has(day.day());
        let dow = self.weekdays.has(day.weekday().num_days_from_sunday());
        let day_ok = if self.either_day {
            dom || dow
        } else {
            dom && dow
        };
        self.months.has(day.month()) && day_ok
    }

    /// The first selected time of day at or after `from`, found with a few bit operations.
    fn next_time(&self, from: NaiveTime) -> Option<NaiveTime> {
        let (h, m, s) = (from.hour(), from.minute(), from.second());
        if self.hours.has(h) {
            if self.minutes.has(m) {
                if let Some(s) = self.seconds.at_or_after(s) {
                    return NaiveTime::from_hms_opt(h, m, s);
                }
            }
            if let Some(m) = self.minutes.after(m) {
                return NaiveTime::from_hms_opt(h, m, self.seconds.first());
            }
        }
        let h = self.hours.after(h)?;
        NaiveTime::from_hms_opt(h, self.minutes.first(), self.seconds.first())
    }

    /// The last selected time of day at or before `upto`.
    fn prev_time(&self, upto: NaiveTime) -> Option<NaiveTime> {
        let (h, m, s) = (upto.hour(), upto.minute(), upto.second());
        if self.hours.has(h) {
            if self.minutes.has(m) {
                if let Some(s) = self.seconds.at_or_before(s) {
                    return NaiveTime::from_hms_opt(h, m, s);
                }
            }
            if let Some(m) = self.minutes.before(m) {
                return NaiveTime::from_hms_opt(h, m, self.seconds.last());
            }
        }
        let h = self.hours.before(h)?;
        NaiveTime::from_hms_opt(h, self.minutes.last(), self.seconds.last())
    }
}

/// The values of one cron field as a bit set; every field fits in 0..64. Never empty once parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bits(u64);

impl Bits {
    fn has(self, n: u32) -> bool {
        n < 64 && self.0 >> n & 1 == 1
    }
    fn first(self) -> u32 {
        self.0.trailing_zeros()
    }
    fn last(self) -> u32 {
        63 - self.0.leading_zeros()
    }
    fn at_or_after(self, n: u32) -> Option<u32> {
        let rest = self.0 & u64::MAX.checked_shl(n)?;
        (rest != 0).then(|| rest.trailing_zeros())
    }
    fn after(self, n: u32) -> Option<u32> {
        self.at_or_after(n + 1)
    }
    fn at_or_before(self, n: u32) -> Option<u32> {
        let kept = self.0 & (u64::MAX >> (63 - n.min(63)));
        (kept != 0).then(|| 63 - kept.leading_zeros())
    }
    fn before(self, n: u32) -> Option<u32> {
        self.at_or_before(n.checked_sub(1)?)
    }
}

/// How to read one field: its name in messages, its range, and its names (for `min`, `min + 1`, ...).
struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
    expected: &'static str,
}

const SECOND: FieldSpec = FieldSpec::numeric("second", 0, 59);
const MINUTE: FieldSpec = FieldSpec::numeric("minute", 0, 59);
const HOUR: FieldSpec = FieldSpec::numeric("hour", 0, 23);
const DAY_OF_MONTH: FieldSpec = FieldSpec::numeric("day-of-month", 1, 31);
const MONTH: FieldSpec = FieldSpec {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ],
    expected: "a number or a name (JAN-DEC)",
};
/// 0 and 7 are both Sunday, as in Vixie cron.
const DAY_OF_WEEK: FieldSpec = FieldSpec {
    name: "day-of-week",
    min: 0,
    max: 7,
    names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
    expected: "a number or a name (SUN-SAT)",
};

impl FieldSpec {
    const fn numeric(name: &'static str, min: u32, max: u32) -> Self {
        FieldSpec {
            name,
            min,
            max,
            names: &[],
            expected: "a number",
        }
    }

    /// Parses a list of `*`, `n`, `a-b`, each optionally with `/step` (`a/step` runs to the max).
    fn parse(&self, field: &str, expr: &str) -> Result<Bits, ScheduleError> {
        let mut bits = 0u64;
        for item in field.split(',') {
            let (range, step) = match item.split_once('/') {
                Some((range, step)) => (range, Some(step)),
                None => (item, None),
            };
            let (start, end) = if range == "*" {
                (self.min, self.max)
            } else if let Some((a, b)) = range.split_once('-') {
                (self.value(a, expr)?, self.value(b, expr)?)
            } else {
                let start = self.value(range, expr)?;
                (start, if step.is_some() { self.max } else { start })
            };
            if start > end {
                return Err(ScheduleError::ReversedRange {
                    expr: expr.to_string(),
                    field: self.name,
                    range: range.to_string(),
                });
            }
            let max_step = self.max - self.min;
            let step = match step {
                None => 1,
                Some(text) => match text.parse::<u32>() {
                    Ok(n) if is_digits(text) && (1..=max_step).contains(&n) => n,
                    _ => {
                        return Err(ScheduleError::BadStep {
                            expr: expr.to_string(),
                            field: self.name,
                            step: text.to_string(),
                            max: max_step,
                        })
                    }
                },
            };
            for n in (start..=end).step_by(step as usize) {
                bits |= 1 << n;
            }
        }
        Ok(Bits(bits))
    }

    /// One number or name, checked against the field's range.
    fn value(&self, text: &str, expr: &str) -> Result<u32, ScheduleError> {
        let named = self.names.iter().position(|n| n.eq_ignore_ascii_case(text));
        if let Some(index) = named {
            return Ok(self.min + index as u32);
        }
        if !is_digits(text) {
            return Err(ScheduleError::NotANumber {
                expr: expr.to_string(),
                field: self.name,
                value: text.to_string(),
                expected: self.expected,
            });
        }
        match text.parse::<u32>() {
            Ok(n) if (self.min..=self.max).contains(&n) => Ok(n),
            _ => Err(ScheduleError::OutOfRange {
                expr: expr.to_string(),
                field: self.name,
                value: text.to_string(),
                min: self.min,
                max: self.max,
            }),
        }
    }
}

fn is_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::America::New_York;
    use chrono_tz::Europe::Berlin;
    use chrono_tz::UTC;
    use rstest::rstest;

    fn instant(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap_or_else(|e| panic!("{rfc3339}: {e}"))
            .with_timezone(&Utc)
    }

    fn schedule(expr: &str) -> Schedule {
        expr.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    fn check_next(expr: &str, tz: Tz, now: &str, expected: &str) {
        let got = next_run(instant(now), &schedule(expr), tz);
        assert_eq!(got, Some(instant(expected)), "{expr:?} in {tz} after {now}");
    }

    #[rstest]
    #[case("2026-01-15T01:00:00+01:00", "2026-01-15T03:00:00+01:00")]
    #[case("2026-01-15T02:59:59+01:00", "2026-01-15T03:00:00+01:00")]
    #[case("2026-01-15T02:59:59.999+01:00", "2026-01-15T03:00:00+01:00")]
    #[case("2026-01-15T03:00:00+01:00", "2026-01-16T03:00:00+01:00")]
    #[case("2026-01-15T03:00:00.5+01:00", "2026-01-16T03:00:00+01:00")]
    #[case("2026-01-15T03:00:01+01:00", "2026-01-16T03:00:00+01:00")]
    #[case("2026-07-15T12:00:00+02:00", "2026-07-16T03:00:00+02:00")]
    #[case("2026-12-31T23:30:00+01:00", "2027-01-01T03:00:00+01:00")]
    // The same instant written in UTC: the schedule follows Berlin, not the caller's offset.
    #[case("2026-01-15T01:30:00Z", "2026-01-15T03:00:00+01:00")]
    fn ordinary_days(#[case] now: &str, #[case] expected: &str) {
        check_next("0 3 * * *", Berlin, now, expected);
    }

    #[rstest]
    // 03:00 local all year: on the DST days the UTC instant moves by an hour.
    #[case(
        "0 3 * * *",
        Berlin,
        "2026-03-28T12:00:00+01:00",
        "2026-03-29T03:00:00+02:00"
    )]
    #[case(
        "0 3 * * *",
        Berlin,
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T03:00:00+02:00"
    )]
    #[case(
        "0 3 * * *",
        Berlin,
        "2026-10-24T12:00:00+02:00",
        "2026-10-25T03:00:00+01:00"
    )]
    #[case(
        "0 3 * * *",
        Berlin,
        "2026-10-25T03:00:00+01:00",
        "2026-10-26T03:00:00+01:00"
    )]
    #[case(
        "0 3 * * *",
        New_York,
        "2026-03-07T12:00:00-05:00",
        "2026-03-08T03:00:00-04:00"
    )]
    #[case(
        "0 3 * * *",
        New_York,
        "2026-03-08T03:00:00-04:00",
        "2026-03-09T03:00:00-04:00"
    )]
    #[case(
        "0 3 * * *",
        New_York,
        "2026-10-31T12:00:00-04:00",
        "2026-11-01T03:00:00-05:00"
    )]
    #[case(
        "0 3 * * *",
        New_York,
        "2026-11-01T03:00:00-05:00",
        "2026-11-02T03:00:00-05:00"
    )]
    // 02:30 does not exist on spring-forward days: once, at 03:00 local, then back to 02:30.
    #[case(
        "30 2 * * *",
        Berlin,
        "2026-03-28T12:00:00+01:00",
        "2026-03-29T03:00:00+02:00"
    )]
    #[case(
        "30 2 * * *",
        Berlin,
        "2026-03-29T01:59:59+01:00",
        "2026-03-29T03:00:00+02:00"
    )]
    #[case(
        "30 2 * * *",
        Berlin,
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00"
    )]
    #[case(
        "30 2 * * *",
        New_York,
        "2026-03-07T12:00:00-05:00",
        "2026-03-08T03:00:00-04:00"
    )]
    #[case(
        "30 2 * * *",
        New_York,
        "2026-03-08T03:00:00-04:00",
        "2026-03-09T02:30:00-04:00"
    )]
    // A repeated local time fires at its first occurrence only.
    #[case(
        "30 2 * * *",
        Berlin,
        "2026-10-24T12:00:00+02:00",
        "2026-10-25T02:30:00+02:00"
    )]
    #[case(
        "30 2 * * *",
        Berlin,
        "2026-10-25T02:30:00+02:00",
        "2026-10-26T02:30:00+01:00"
    )]
    #[case(
        "30 2 * * *",
        Berlin,
        "2026-10-25T02:15:00+01:00",
        "2026-10-26T02:30:00+01:00"
    )]
    #[case(
        "30 2 * * *",
        Berlin,
        "2026-10-25T02:30:00+01:00",
        "2026-10-26T02:30:00+01:00"
    )]
    #[case(
        "30 1 * * *",
        New_York,
        "2026-10-31T12:00:00-04:00",
        "2026-11-01T01:30:00-04:00"
    )]
    #[case(
        "30 1 * * *",
        New_York,
        "2026-11-01T01:30:00-04:00",
        "2026-11-02T01:30:00-05:00"
    )]
    #[case(
        "30 1 * * *",
        New_York,
        "2026-11-01T01:10:00-05:00",
        "2026-11-02T01:30:00-05:00"
    )]
    // 02:30 is not repeated in New York (01:00-02:00 is).
    #[case(
        "30 2 * * *",
        New_York,
        "2026-10-31T12:00:00-04:00",
        "2026-11-01T02:30:00-05:00"
    )]
    fn dst_days(#[case] expr: &str, #[case] tz: Tz, #[case] now: &str, #[case] expected: &str) {
        check_next(expr, tz, now, expected);
    }

    #[rstest]
    #[case("2026-03-28T03:00:00+01:00", 23)]
    #[case("2026-10-24T03:00:00+02:00", 25)]
    fn daily_runs_are_23_or_25_hours_apart_across_dst(#[case] run: &str, #[case] hours: i64) {
        let next = next_run(instant(run), &Schedule::default(), Berlin).unwrap();
        assert_eq!(next - instant(run), TimeDelta::hours(hours));
    }

    /// Successive runs from `start`: each strictly later than the one before, none repeated.
    #[rstest]
    #[case(
        "*/15 * * * *",
        Berlin,
        "2026-03-29T01:40:00+01:00",
        &[
            "2026-03-29T01:45:00+01:00",
            "2026-03-29T03:00:00+02:00", // 02:00, 02:15, 02:30, 02:45 and 03:00 all fire once here
            "2026-03-29T03:15:00+02:00",
            "2026-03-29T03:30:00+02:00",
        ]
    )]
    #[case(
        "*/15 * * * *",
        Berlin,
        "2026-10-25T01:50:00+02:00",
        &[
            "2026-10-25T02:00:00+02:00",
            "2026-10-25T02:15:00+02:00",
            "2026-10-25T02:30:00+02:00",
            "2026-10-25T02:45:00+02:00",
            "2026-10-25T03:00:00+01:00", // the second 02:00-02:59 stays silent
            "2026-10-25T03:15:00+01:00",
        ]
    )]
    #[case(
        "*/15 * * * *",
        New_York,
        "2026-03-08T01:40:00-05:00",
        &[
            "2026-03-08T01:45:00-05:00",
            "2026-03-08T03:00:00-04:00",
            "2026-03-08T03:15:00-04:00",
        ]
    )]
    #[case(
        "*/15 * * * *",
        New_York,
        "2026-11-01T00:50:00-04:00",
        &[
            "2026-11-01T01:00:00-04:00",
            "2026-11-01T01:15:00-04:00",
            "2026-11-01T01:30:00-04:00",
            "2026-11-01T01:45:00-04:00",
            "2026-11-01T02:00:00-05:00",
            "2026-11-01T02:15:00-05:00",
        ]
    )]
    #[case(
        "*/10 * * * * *",
        Berlin,
        "2026-03-29T01:59:45+01:00",
        &[
            "2026-03-29T01:59:50+01:00",
            "2026-03-29T03:00:00+02:00",
            "2026-03-29T03:00:10+02:00",
        ]
    )]
    fn successive_runs_around_dst(
        #[case] expr: &str,
        #[case] tz: Tz,
        #[case] start: &str,
        #[case] expected: &[&str],
    ) {
        let schedule = schedule(expr);
        let mut now = instant(start);
        for want in expected {
            let next = next_run(now, &schedule, tz).unwrap();
            assert!(next > now, "{expr:?}: {next} is not after {now}");
            assert_eq!(next, instant(want), "{expr:?} after {now}");
            now = next;
        }
    }

    #[rstest]
    // The 31st skips 30-day months (and February).
    #[case("0 3 31 * *", "2026-01-31T03:00:00+01:00", "2026-03-31T03:00:00+02:00")]
    #[case("0 3 31 * *", "2026-03-31T03:00:00+02:00", "2026-05-31T03:00:00+02:00")]
    #[case("0 3 31 * *", "2026-04-01T00:00:00+02:00", "2026-05-31T03:00:00+02:00")]
    #[case("0 3 31 * *", "2026-07-31T03:00:00+02:00", "2026-08-31T03:00:00+02:00")]
    #[case("0 3 31 * *", "2026-08-31T03:00:00+02:00", "2026-10-31T03:00:00+01:00")]
    #[case("0 3 31 * *", "2026-12-31T03:00:00+01:00", "2027-01-31T03:00:00+01:00")]
    // Leap days.
    #[case("0 3 29 2 *", "2026-01-01T00:00:00+01:00", "2028-02-29T03:00:00+01:00")]
    #[case("0 3 29 2 *", "2028-02-29T03:00:00+01:00", "2032-02-29T03:00:00+01:00")]
    // New Year.
    #[case("0 3 1 1 *", "2026-12-31T23:59:59+01:00", "2027-01-01T03:00:00+01:00")]
    #[case("0 3 1 1 *", "2027-01-01T03:00:00+01:00", "2028-01-01T03:00:00+01:00")]
    fn month_ends_leap_days_and_new_year(
        #[case] expr: &str,
        #[case] now: &str,
        #[case] expected: &str,
    ) {
        check_next(expr, Berlin, now, expected);
    }

    #[test]
    fn leap_day_skips_2100() {
        check_next(
            "0 3 29 2 *",
            UTC,
            "2096-03-01T00:00:00Z",
            "2104-02-29T03:00:00Z",
        );
    }

    #[rstest]
    // Six fields: seconds first.
    #[case(
        "*/10 * * * * *",
        "2026-01-15T12:00:00+01:00",
        "2026-01-15T12:00:10+01:00"
    )]
    #[case(
        "*/10 * * * * *",
        "2026-01-15T12:00:05.5+01:00",
        "2026-01-15T12:00:10+01:00"
    )]
    #[case(
        "*/10 * * * * *",
        "2026-01-15T12:00:55+01:00",
        "2026-01-15T12:01:00+01:00"
    )]
    #[case(
        "*/10 * * * * *",
        "2026-12-31T23:59:50+01:00",
        "2027-01-01T00:00:00+01:00"
    )]
    #[case(
        "30 0 3 * * *",
        "2026-01-15T03:00:00+01:00",
        "2026-01-15T03:00:30+01:00"
    )]
    #[case(
        "30 0 3 * * *",
        "2026-01-15T03:00:30+01:00",
        "2026-01-16T03:00:30+01:00"
    )]
    // Macros (2026-01-15 is a Thursday).
    #[case("@yearly", "2026-01-15T12:00:00+01:00", "2027-01-01T00:00:00+01:00")]
    #[case("@annually", "2026-01-15T12:00:00+01:00", "2027-01-01T00:00:00+01:00")]
    #[case("@monthly", "2026-01-15T12:00:00+01:00", "2026-02-01T00:00:00+01:00")]
    #[case("@weekly", "2026-01-15T12:00:00+01:00", "2026-01-18T00:00:00+01:00")]
    #[case("@daily", "2026-01-15T12:00:00+01:00", "2026-01-16T00:00:00+01:00")]
    #[case("@Daily", "2026-01-15T12:00:00+01:00", "2026-01-16T00:00:00+01:00")]
    #[case("@midnight", "2026-01-15T12:00:00+01:00", "2026-01-16T00:00:00+01:00")]
    #[case("@hourly", "2026-01-15T12:00:00+01:00", "2026-01-15T13:00:00+01:00")]
    // Names, case-insensitive.
    #[case(
        "0 3 * * MON-FRI",
        "2026-01-15T12:00:00+01:00",
        "2026-01-16T03:00:00+01:00"
    )]
    #[case(
        "0 3 * * MON-FRI",
        "2026-01-16T12:00:00+01:00",
        "2026-01-19T03:00:00+01:00"
    )]
    #[case(
        "0 3 * * mon-fri",
        "2026-01-16T12:00:00+01:00",
        "2026-01-19T03:00:00+01:00"
    )]
    #[case(
        "0 3 * JAN,JUL *",
        "2026-01-31T12:00:00+01:00",
        "2026-07-01T03:00:00+02:00"
    )]
    #[case(
        "0 3 * JAN,JUL *",
        "2026-07-31T12:00:00+02:00",
        "2027-01-01T03:00:00+01:00"
    )]
    #[case(
        "0 3 * jan-feb/1 *",
        "2026-02-28T12:00:00+01:00",
        "2027-01-01T03:00:00+01:00"
    )]
    // 0, 7 and SUN are all Sunday.
    #[case("0 3 * * 0", "2026-01-15T12:00:00+01:00", "2026-01-18T03:00:00+01:00")]
    #[case("0 3 * * 7", "2026-01-15T12:00:00+01:00", "2026-01-18T03:00:00+01:00")]
    #[case(
        "0 3 * * SUN",
        "2026-01-15T12:00:00+01:00",
        "2026-01-18T03:00:00+01:00"
    )]
    #[case(
        "0 3 * * 5-7",
        "2026-01-17T12:00:00+01:00",
        "2026-01-18T03:00:00+01:00"
    )]
    // Both day fields restricted: either one matches (the 1st, or any Monday).
    #[case(
        "0 3 1 * MON",
        "2026-01-15T12:00:00+01:00",
        "2026-01-19T03:00:00+01:00"
    )]
    #[case(
        "0 3 1 * MON",
        "2026-01-26T03:00:00+01:00",
        "2026-02-01T03:00:00+01:00"
    )]
    #[case(
        "0 3 1 * MON",
        "2026-02-01T03:00:00+01:00",
        "2026-02-02T03:00:00+01:00"
    )]
    // Only one restricted: it alone decides.
    #[case("0 3 1 * *", "2026-01-15T12:00:00+01:00", "2026-02-01T03:00:00+01:00")]
    #[case(
        "0 3 * * MON",
        "2026-01-26T03:00:00+01:00",
        "2026-02-02T03:00:00+01:00"
    )]
    // Vixie cron: a field starting with `*` counts as unrestricted, so both must match
    // (the 1st/11th/21st/31st that is a Monday: 2026-05-11).
    #[case(
        "0 3 */10 * MON",
        "2026-01-01T00:00:00+01:00",
        "2026-05-11T03:00:00+02:00"
    )]
    // Steps, ranges and lists.
    #[case(
        "5/20 * * * *",
        "2026-01-15T12:46:00+01:00",
        "2026-01-15T13:05:00+01:00"
    )]
    #[case(
        "0 8-18/5 * * *",
        "2026-01-15T13:00:00+01:00",
        "2026-01-15T18:00:00+01:00"
    )]
    #[case(
        "0 8-18/5 * * *",
        "2026-01-15T18:00:00+01:00",
        "2026-01-16T08:00:00+01:00"
    )]
    #[case(
        "0 1,13,22 * * *",
        "2026-01-15T13:00:00+01:00",
        "2026-01-15T22:00:00+01:00"
    )]
    fn fields_macros_and_names(#[case] expr: &str, #[case] now: &str, #[case] expected: &str) {
        check_next(expr, Berlin, now, expected);
    }

    #[rstest]
    #[case("0 3 * *", "BACKUP_SCHEDULE \"0 3 * *\": expected 5 fields (minute hour day-of-month month day-of-week) or 6 (second first), found 4")]
    #[case("0 0 3 * * * *", "BACKUP_SCHEDULE \"0 0 3 * * * *\": expected 5 fields (minute hour day-of-month month day-of-week) or 6 (second first), found 7")]
    #[case("", "BACKUP_SCHEDULE \"\": expected 5 fields (minute hour day-of-month month day-of-week) or 6 (second first), found 0")]
    #[case(
        "0 25 * * *",
        "BACKUP_SCHEDULE \"0 25 * * *\": hour 25 is out of range 0-23"
    )]
    #[case(
        "60 3 * * *",
        "BACKUP_SCHEDULE \"60 3 * * *\": minute 60 is out of range 0-59"
    )]
    #[case(
        "60 0 3 * * *",
        "BACKUP_SCHEDULE \"60 0 3 * * *\": second 60 is out of range 0-59"
    )]
    #[case(
        "0 3 0 * *",
        "BACKUP_SCHEDULE \"0 3 0 * *\": day-of-month 0 is out of range 1-31"
    )]
    #[case(
        "0 3 32 * *",
        "BACKUP_SCHEDULE \"0 3 32 * *\": day-of-month 32 is out of range 1-31"
    )]
    #[case(
        "0 3 * 13 *",
        "BACKUP_SCHEDULE \"0 3 * 13 *\": month 13 is out of range 1-12"
    )]
    #[case(
        "0 3 * * 8",
        "BACKUP_SCHEDULE \"0 3 * * 8\": day-of-week 8 is out of range 0-7"
    )]
    #[case(
        "0 3-99999999999 * * *",
        "BACKUP_SCHEDULE \"0 3-99999999999 * * *\": hour 99999999999 is out of range 0-23"
    )]
    #[case(
        "*/0 * * * *",
        "BACKUP_SCHEDULE \"*/0 * * * *\": minute step \"0\" is not a number from 1 to 59"
    )]
    #[case(
        "0 */24 * * *",
        "BACKUP_SCHEDULE \"0 */24 * * *\": hour step \"24\" is not a number from 1 to 23"
    )]
    #[case(
        "0 3 * * 1/x",
        "BACKUP_SCHEDULE \"0 3 * * 1/x\": day-of-week step \"x\" is not a number from 1 to 7"
    )]
    #[case(
        "0 5-2 * * *",
        "BACKUP_SCHEDULE \"0 5-2 * * *\": hour range 5-2 is reversed"
    )]
    #[case(
        "0 3 * * FRI-MON",
        "BACKUP_SCHEDULE \"0 3 * * FRI-MON\": day-of-week range FRI-MON is reversed"
    )]
    #[case(
        "0 3 * * FOO",
        "BACKUP_SCHEDULE \"0 3 * * FOO\": day-of-week \"FOO\" is not a number or a name (SUN-SAT)"
    )]
    #[case("0 3 * JANUARY *", "BACKUP_SCHEDULE \"0 3 * JANUARY *\": month \"JANUARY\" is not a number or a name (JAN-DEC)")]
    #[case(
        "a b c d e",
        "BACKUP_SCHEDULE \"a b c d e\": minute \"a\" is not a number"
    )]
    #[case(
        "0 3 MON * *",
        "BACKUP_SCHEDULE \"0 3 MON * *\": day-of-month \"MON\" is not a number"
    )]
    #[case(
        "0 3,,4 * * *",
        "BACKUP_SCHEDULE \"0 3,,4 * * *\": hour \"\" is not a number"
    )]
    #[case(
        "0 -3 * * *",
        "BACKUP_SCHEDULE \"0 -3 * * *\": hour \"\" is not a number"
    )]
    #[case(
        "0 +3 * * *",
        "BACKUP_SCHEDULE \"0 +3 * * *\": hour \"+3\" is not a number"
    )]
    #[case(
        "0 3 L * *",
        "BACKUP_SCHEDULE \"0 3 L * *\": day-of-month \"L\" is not a number"
    )]
    #[case("@reboot", "BACKUP_SCHEDULE \"@reboot\": unknown macro; use @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly")]
    #[case("0 0 30 2 *", "BACKUP_SCHEDULE \"0 0 30 2 *\": day-of-month 30 never falls in month 2, so the schedule never fires")]
    #[case("0 0 31 4,6,9,11 *", "BACKUP_SCHEDULE \"0 0 31 4,6,9,11 *\": day-of-month 31 never falls in month 4,6,9,11, so the schedule never fires")]
    fn parse_errors(#[case] expr: &str, #[case] message: &str) {
        let err = expr.parse::<Schedule>().unwrap_err();
        assert_eq!(err.to_string(), message);
        assert!(!message.contains('\n'));
    }

    #[rstest]
    #[case("0 3 * * *")]
    #[case("@daily")]
    #[case("*/10 * * * * *")]
    #[case("0 3 * JAN,jul mon-FRI")]
    fn display_is_the_original_expression(#[case] expr: &str) {
        assert_eq!(schedule(expr).to_string(), expr);
        assert_eq!(schedule(&format!("  {expr}\n")).to_string(), expr);
    }

    #[test]
    fn default_is_three_in_the_morning() {
        assert_eq!(Schedule::default(), schedule("0 3 * * *"));
    }

    #[rstest]
    // Catch-up after a restart: the run that should have happened most recently.
    #[case(
        "0 3 * * *",
        Berlin,
        "2026-11-23T10:00:00+01:00",
        "2026-11-23T03:00:00+01:00"
    )]
    #[case(
        "0 3 * * *",
        Berlin,
        "2026-11-23T02:59:00+01:00",
        "2026-11-22T03:00:00+01:00"
    )]
    #[case(
        "0 3 * * *",
        Berlin,
        "2026-11-23T03:00:00+01:00",
        "2026-11-23T03:00:00+01:00"
    )]
    #[case(
        "0 3 * * *",
        Berlin,
        "2026-11-23T03:00:00.5+01:00",
        "2026-11-23T03:00:00+01:00"
    )]
    #[case(
        "0 3 * * *",
        Berlin,
        "2026-03-29T02:59:59+02:00",
        "2026-03-28T03:00:00+01:00"
    )]
    #[case(
        "0 3 * * *",
        Berlin,
        "2026-10-25T12:00:00+01:00",
        "2026-10-25T03:00:00+01:00"
    )]
    // The gap run happened at 03:00.
    #[case(
        "30 2 * * *",
        Berlin,
        "2026-03-29T03:00:00+02:00",
        "2026-03-29T03:00:00+02:00"
    )]
    #[case(
        "30 2 * * *",
        Berlin,
        "2026-03-29T01:59:59+01:00",
        "2026-03-28T02:30:00+01:00"
    )]
    #[case(
        "30 2 * * *",
        New_York,
        "2026-03-08T12:00:00-04:00",
        "2026-03-08T03:00:00-04:00"
    )]
    // In the second pass of the repeated hour, 02:30 already ran in the first pass.
    #[case(
        "30 2 * * *",
        Berlin,
        "2026-10-25T02:15:00+01:00",
        "2026-10-25T02:30:00+02:00"
    )]
    #[case(
        "30 2 * * *",
        Berlin,
        "2026-10-25T02:45:00+01:00",
        "2026-10-25T02:30:00+02:00"
    )]
    #[case(
        "30 2 * * *",
        Berlin,
        "2026-10-25T02:29:59+02:00",
        "2026-10-24T02:30:00+02:00"
    )]
    #[case(
        "30 1 * * *",
        New_York,
        "2026-11-01T01:15:00-05:00",
        "2026-11-01T01:30:00-04:00"
    )]
    #[case(
        "*/15 * * * *",
        Berlin,
        "2026-10-25T02:50:00+01:00",
        "2026-10-25T02:45:00+02:00"
    )]
    #[case(
        "0 3 29 2 *",
        Berlin,
        "2027-06-01T00:00:00+02:00",
        "2024-02-29T03:00:00+01:00"
    )]
    #[case(
        "0 3 1 * MON",
        Berlin,
        "2026-02-01T12:00:00+01:00",
        "2026-02-01T03:00:00+01:00"
    )]
    #[case(
        "0 3 1 * MON",
        Berlin,
        "2026-01-31T12:00:00+01:00",
        "2026-01-26T03:00:00+01:00"
    )]
    #[case(
        "@yearly",
        Berlin,
        "2026-12-31T23:59:59+01:00",
        "2026-01-01T00:00:00+01:00"
    )]
    fn last_run_table(
        #[case] expr: &str,
        #[case] tz: Tz,
        #[case] now: &str,
        #[case] expected: &str,
    ) {
        let got = last_run(instant(now), &schedule(expr), tz);
        assert_eq!(got, Some(instant(expected)), "{expr:?} in {tz} at {now}");
    }

    /// Every 7 minutes for 48 hours around each DST change, both functions describe the same runs.
    #[rstest]
    fn next_and_last_run_agree_across_dst(
        #[values(
            "0 3 * * *",
            "30 2 * * *",
            "30 1 * * *",
            "*/15 * * * *",
            "*/10 * * * * *",
            "0 3 1 * MON"
        )]
        expr: &str,
        #[values(
            (Berlin, "2026-03-28T12:00:00+01:00"),
            (Berlin, "2026-10-24T12:00:00+02:00"),
            (New_York, "2026-03-07T12:00:00-05:00"),
            (New_York, "2026-10-31T12:00:00-04:00")
        )]
        window: (Tz, &str),
    ) {
        let (tz, start) = window;
        let schedule = schedule(expr);
        let second = TimeDelta::seconds(1);
        for step in 0..=(48 * 60 / 7) {
            let t = instant(start) + TimeDelta::minutes(7 * step);
            let next = next_run(t, &schedule, tz).unwrap();
            let last = last_run(t, &schedule, tz).unwrap();
            assert!(last <= t && t < next, "{expr:?} at {t}: {last} / {next}");
            assert_eq!(last_run(next, &schedule, tz), Some(next), "{expr:?} at {t}");
            assert_eq!(
                next_run(last - second, &schedule, tz),
                Some(last),
                "{expr:?} at {t}"
            );
            assert_eq!(next_run(last, &schedule, tz), Some(next), "{expr:?} at {t}");
            assert_eq!(
                last_run(next - second, &schedule, tz),
                Some(last),
                "{expr:?} at {t}"
            );
        }
    }

    #[test]
    fn far_future_and_past_do_not_panic() {
        let daily = Schedule::default();
        assert_eq!(next_run(DateTime::<Utc>::MAX_UTC, &daily, Berlin), None);
        assert_eq!(last_run(DateTime::<Utc>::MIN_UTC, &daily, Berlin), None);
    }
}
