//! Named time intervals (market hours, exchange holidays and the like), for a route's
//! `active_time_intervals` and `mute_time_intervals` and for `trading.market_hours`.
//!
//! The semantics are Alertmanager's `time_interval` (its `timeinterval` package): a
//! spec matches an instant when every field it sets matches, a field matches when any
//! of its entries does, and an unset field matches anything. Two shapes are read:
//! ours, one spec written beside `name`, and Alertmanager's, a list of specs under
//! `time_intervals` (any one matching is enough), which a holiday calendar needs.
//!
//! Where m4watch differs, it is in what it refuses or adds, never in what an accepted
//! spec means: `time_zone` is kept as an alias of `location`; a weekday range may wrap
//! over the week's end (`friday:monday`, which Alertmanager refuses); a month over 12
//! and a year outside 1..9999 are refused (Alertmanager accepts them and never
//! matches); `Local` is refused (the zone must be named, so a host's settings cannot
//! move the market's hours).

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Deserializer, Serialize};

/// A named interval: its spec written in place, or Alertmanager's list of specs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeInterval {
    pub name: String,
    /// Alertmanager's shape: the interval holds when any of these specs does. Refused
    /// beside the spec's own keys; `[]` holds never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_intervals: Option<Vec<TimeSpec>>,
    /// IANA name such as `America/New_York`; UTC when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The older name of `location`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weekdays: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub times: Vec<TimeRange>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "scalars"
    )]
    pub days_of_month: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "scalars"
    )]
    pub months: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "scalars"
    )]
    pub years: Vec<String>,
}

/// One spec (Alertmanager's `time_interval_spec`): every field it sets must match.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeSpec {
    /// IANA name such as `America/New_York`; UTC when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The older name of `location`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// `monday`, or a range `monday:friday`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weekdays: Vec<String>,
    /// Start inclusive, end exclusive, `HH:MM` (`24:00` as an end).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub times: Vec<TimeRange>,
    /// `1` to `31`, `-1` (the month's last day) to `-31`, or a range `1:5`, `-3:-1`.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "scalars"
    )]
    pub days_of_month: Vec<String>,
    /// `january` or `1`, or a range `january:march`, `1:3`.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "scalars"
    )]
    pub months: Vec<String>,
    /// `2027`, or a range `2026:2027`.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "scalars"
    )]
    pub years: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeRange {
    /// `start_time` in Alertmanager.
    #[serde(alias = "start_time")]
    pub start: String,
    /// `end_time` in Alertmanager.
    #[serde(alias = "end_time")]
    pub end: String,
}

/// Most specs under one name, and most entries in one of a spec's lists: a holiday
/// calendar for a decade is a few hundred specs.
pub const MAX_SPECS: usize = 1000;
const MAX_ENTRIES: usize = 100;

/// A list of YAML scalars read as text, so `days_of_month: [1, "-3:-1"]` and
/// `years: [2027]` are taken as Alertmanager takes them.
fn scalars<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Int(i64),
        Text(String),
    }
    Ok(Vec::<Scalar>::deserialize(d)?
        .into_iter()
        .map(|s| match s {
            Scalar::Int(n) => n.to_string(),
            Scalar::Text(t) => t,
        })
        .collect())
}

/// A spec read into numbers: each list a set of inclusive ranges (times: end exclusive).
#[derive(Debug, Clone, PartialEq)]
struct Parsed {
    tz: Tz,
    /// Minutes of the day, start inclusive, end exclusive.
    times: Vec<(u32, u32)>,
    /// Days from Monday (0..6); start after end wraps over Sunday.
    weekdays: Vec<(u32, u32)>,
    /// As written: positive from the first day, negative from the last.
    days_of_month: Vec<(i32, i32)>,
    months: Vec<(u32, u32)>,
    years: Vec<(i32, i32)>,
}

/// The error of a spec: (key relative to the spec, reason).
type SpecError = (String, String);

fn weekday(s: &str) -> Option<Weekday> {
    s.trim().to_ascii_lowercase().parse().ok()
}

fn hm(s: &str) -> Option<u32> {
    if s == "24:00" {
        return Some(24 * 60);
    }
    let t = NaiveTime::parse_from_str(s, "%H:%M").ok()?;
    Some(t.hour() * 60 + t.minute())
}

fn month(s: &str) -> Option<u32> {
    const NAMES: [&str; 12] = [
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    ];
    let s = s.trim().to_ascii_lowercase();
    match NAMES.iter().position(|n| *n == s) {
        Some(i) => Some(i as u32 + 1),
        None => s.parse().ok().filter(|m| (1..=12).contains(m)),
    }
}

fn month_name(m: u32) -> String {
    chrono::Month::try_from(m as u8)
        .map_or_else(|_| m.to_string(), |m| m.name().to_ascii_lowercase())
}

/// `a` or `a:b`, each side read by `one`; `None` when a side does not read.
fn range<T: Copy>(s: &str, one: impl Fn(&str) -> Option<T>) -> Option<(T, T)> {
    match s.split_once(':') {
        Some((a, b)) => Some((one(a)?, one(b)?)),
        None => one(s).map(|v| (v, v)),
    }
}

fn zone(key: &str, name: &str) -> Result<Tz, SpecError> {
    if name == "Local" {
        return Err((
            key.into(),
            "\"Local\" would follow the host's settings: name the zone, e.g. America/New_York"
                .into(),
        ));
    }
    name.parse::<Tz>().map_err(|_| {
        (
            key.into(),
            format!("unknown time zone {name:?}: use an IANA name like America/New_York"),
        )
    })
}

fn too_many(key: &str, n: usize) -> Result<(), SpecError> {
    if n > MAX_ENTRIES {
        return Err((key.into(), format!("{n} entries, at most {MAX_ENTRIES}")));
    }
    Ok(())
}

impl TimeSpec {
    fn parse(&self) -> Result<Parsed, SpecError> {
        let tz = match (&self.location, &self.time_zone) {
            (Some(_), Some(_)) => {
                return Err((
                    "time_zone".into(),
                    "set location or its older name time_zone, not both".into(),
                ));
            }
            (Some(l), None) => zone("location", l)?,
            (None, Some(t)) => zone("time_zone", t)?,
            (None, None) => Tz::UTC,
        };
        for (key, n) in [
            ("weekdays", self.weekdays.len()),
            ("times", self.times.len()),
            ("days_of_month", self.days_of_month.len()),
            ("months", self.months.len()),
            ("years", self.years.len()),
        ] {
            too_many(key, n)?;
        }
        let mut p = Parsed {
            tz,
            times: Vec::new(),
            weekdays: Vec::new(),
            days_of_month: Vec::new(),
            months: Vec::new(),
            years: Vec::new(),
        };
        for (i, w) in self.weekdays.iter().enumerate() {
            let r =
                range(w, |d| weekday(d).map(|d| d.num_days_from_monday())).ok_or_else(|| {
                    (
                        format!("weekdays[{i}]"),
                        format!("{w:?} is not a weekday or a range like monday:friday"),
                    )
                })?;
            p.weekdays.push(r);
        }
        for (i, t) in self.times.iter().enumerate() {
            match (hm(&t.start), hm(&t.end)) {
                (Some(a), Some(b)) if a < b => p.times.push((a, b)),
                _ => {
                    return Err((
                        format!("times[{i}]"),
                        format!(
                            "{}-{} is not a range of HH:MM times with start before end",
                            t.start, t.end
                        ),
                    ));
                }
            }
        }
        for (i, d) in self.days_of_month.iter().enumerate() {
            let key = format!("days_of_month[{i}]");
            let (a, b) = range(d, |s| s.trim().parse::<i32>().ok()).ok_or_else(|| {
                (
                    key.clone(),
                    format!("{d:?} is not a day of the month or a range like 1:5 or -3:-1"),
                )
            })?;
            for v in [a, b] {
                if v == 0 || !(-31..=31).contains(&v) {
                    return Err((
                        key,
                        format!(
                            "{v} is not a day of the month: use 1 to 31, or -1 (the last day) to -31"
                        ),
                    ));
                }
            }
            if a < 0 && b > 0 {
                return Err((
                    key,
                    format!("{d:?}: the end must be negative when the start is"),
                ));
            }
            // Alertmanager's test: read in a 28-day month, the end may not come first.
            let in28 = |v: i32| if v < 0 { 28 + v } else { v };
            if in28(a) > in28(b) {
                return Err((
                    key,
                    format!("{d:?}: the end day {b} is always before the start day {a}"),
                ));
            }
            p.days_of_month.push((a, b));
        }
        for (i, m) in self.months.iter().enumerate() {
            let key = format!("months[{i}]");
            let (a, b) = range(m, month).ok_or_else(|| {
                (
                    key.clone(),
                    format!(
                        "{m:?} is not a month (1 to 12 or a name like january) or a range like january:march"
                    ),
                )
            })?;
            if a > b {
                return Err((
                    key,
                    format!(
                        "the end month {} is before the start month {}",
                        month_name(b),
                        month_name(a)
                    ),
                ));
            }
            p.months.push((a, b));
        }
        for (i, y) in self.years.iter().enumerate() {
            let key = format!("years[{i}]");
            let (a, b) = range(y, |s| s.trim().parse::<i32>().ok())
                .filter(|(a, b)| (1..=9999).contains(a) && (1..=9999).contains(b))
                .ok_or_else(|| {
                    (
                        key.clone(),
                        format!("{y:?} is not a year (1 to 9999) or a range like 2026:2027"),
                    )
                })?;
            if a > b {
                return Err((
                    key,
                    format!("the end year {b} is before the start year {a}"),
                ));
            }
            p.years.push((a, b));
        }
        Ok(p)
    }

    fn is_empty(&self) -> bool {
        self.location.is_none()
            && self.time_zone.is_none()
            && self.weekdays.is_empty()
            && self.times.is_empty()
            && self.days_of_month.is_empty()
            && self.months.is_empty()
            && self.years.is_empty()
    }
}

/// The last day of `year`-`month` (28 to 31).
fn days_in_month(year: i32, month: u32) -> i32 {
    let (y, m) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    NaiveDate::from_ymd_opt(y, m, 1)
        .and_then(|d| d.pred_opt())
        .map_or(31, |d| d.day() as i32)
}

impl Parsed {
    fn contains(&self, at: DateTime<Utc>) -> bool {
        let local = at.with_timezone(&self.tz);
        let any = |list: &[(u32, u32)], v: u32| {
            list.is_empty() || list.iter().any(|&(a, b)| a <= v && v <= b)
        };
        let minute = local.hour() * 60 + local.minute();
        let times =
            self.times.is_empty() || self.times.iter().any(|&(a, b)| a <= minute && minute < b);
        let day = local.weekday().num_days_from_monday();
        let weekdays = self.weekdays.is_empty()
            || self.weekdays.iter().any(|&(a, b)| {
                if a <= b {
                    a <= day && day <= b
                } else {
                    day >= a || day <= b
                }
            });
        // Negative days count from the month's end; a range reaching past either end of
        // this month is cut to it, and one starting past its end (31 in April) is not
        // in it.
        let last = days_in_month(local.year(), local.month());
        let mday = local.day() as i32;
        let days = self.days_of_month.is_empty()
            || self.days_of_month.iter().any(|&(a, b)| {
                let from_end = |v: i32| if v < 0 { last + v + 1 } else { v };
                let (a, b) = (from_end(a), from_end(b).min(last));
                a <= last && a <= mday && mday <= b
            });
        let year = local.year();
        let years =
            self.years.is_empty() || self.years.iter().any(|&(a, b)| a <= year && year <= b);
        times && weekdays && days && any(&self.months, local.month()) && years
    }
}

impl TimeInterval {
    /// The specs under this name: Alertmanager's list, or the one written in place.
    pub fn specs(&self) -> Vec<TimeSpec> {
        match &self.time_intervals {
            Some(list) => list.clone(),
            None => vec![TimeSpec {
                location: self.location.clone(),
                time_zone: self.time_zone.clone(),
                weekdays: self.weekdays.clone(),
                times: self.times.clone(),
                days_of_month: self.days_of_month.clone(),
                months: self.months.clone(),
                years: self.years.clone(),
            }],
        }
    }

    /// Checks names and ranges; the error is (key relative to this interval, reason).
    pub fn check(&self) -> Result<(), (String, String)> {
        let Some(list) = &self.time_intervals else {
            return self.specs()[0].parse().map(|_| ());
        };
        if !self.specs_in_place_are_empty() {
            return Err((
                "time_intervals".into(),
                "write the spec in place (weekdays, times, ...) or list specs under \
                 time_intervals, not both"
                    .into(),
            ));
        }
        if list.len() > MAX_SPECS {
            return Err((
                "time_intervals".into(),
                format!("{} specs, at most {MAX_SPECS}", list.len()),
            ));
        }
        for (i, s) in list.iter().enumerate() {
            s.parse()
                .map_err(|(k, r)| (format!("time_intervals[{i}].{k}"), r))?;
        }
        Ok(())
    }

    fn specs_in_place_are_empty(&self) -> bool {
        let mut own = self.clone();
        own.time_intervals = None;
        own.specs()[0].is_empty()
    }

    /// Whether `at` falls inside the interval (any of its specs, each read in its own
    /// time zone). An interval that does not pass [`TimeInterval::check`] holds never.
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.specs()
            .iter()
            .any(|s| s.parse().is_ok_and(|p| p.contains(at)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn market() -> TimeInterval {
        from_yaml(
            "name: market
time_zone: America/New_York
weekdays: [monday:friday]
times: [{start: '09:30', end: '16:00'}]",
        )
    }

    fn from_yaml(y: &str) -> TimeInterval {
        serde_yaml_ng::from_str(y).unwrap()
    }

    /// One spec in Alertmanager's shape.
    fn spec(y: &str) -> TimeInterval {
        let t = from_yaml(&format!("name: t\ntime_intervals:\n  - {y}"));
        t.check().unwrap();
        t
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn error(y: &str) -> (String, String) {
        from_yaml(&format!("name: t\ntime_intervals:\n  - {y}"))
            .check()
            .unwrap_err()
    }

    #[test]
    fn market_hours_in_new_york() {
        let m = market();
        assert!(m.check().is_ok());
        // Tuesday 2026-11-17 10:00 EST = 15:00 UTC.
        assert!(m.contains(utc("2026-11-17T15:00:00Z")));
        // 09:29 EST is before the open.
        assert!(!m.contains(utc("2026-11-17T14:29:00Z")));
        // 16:00 EST is the close (end exclusive).
        assert!(!m.contains(utc("2026-11-17T21:00:00Z")));
        // Summer time: Tuesday 2026-07-14 09:30 EDT = 13:30 UTC.
        assert!(m.contains(utc("2026-07-14T13:30:00Z")));
        // Saturday.
        assert!(!m.contains(utc("2026-11-21T15:00:00Z")));
    }

    #[test]
    fn rejects_bad_values() {
        let mut m = market();
        m.time_zone = Some("Mars/Olympus".into());
        assert_eq!(
            m.check().unwrap_err().1,
            "unknown time zone \"Mars/Olympus\": use an IANA name like America/New_York"
        );
        let mut m = market();
        m.times[0].end = "09:00".into();
        assert_eq!(m.check().unwrap_err().0, "times[0]");
        let mut m = market();
        m.weekdays = vec!["funday".into()];
        assert_eq!(m.check().unwrap_err().0, "weekdays[0]");
    }

    // The cases below are Alertmanager's documented examples (docs/configuration.md,
    // `time_interval_spec`) and the instants its own tests hold them to.

    #[test]
    fn weekdays_and_times_nine_to_five() {
        let t = spec(
            "{times: [{start_time: '09:00', end_time: '17:00'}], weekdays: ['monday:friday']}",
        );
        // Monday 2020-05-04.
        assert!(t.contains(utc("2020-05-04T15:04:00Z")));
        assert!(t.contains(utc("2020-06-09T09:04:00Z")));
        // Sunday; before nine; early morning.
        assert!(!t.contains(utc("2020-05-03T15:04:00Z")));
        assert!(!t.contains(utc("2020-05-04T08:59:00Z")));
        assert!(!t.contains(utc("2020-05-05T05:00:00Z")));
        // 17:00 is the end, exclusive; 24:00 is an end.
        assert!(!t.contains(utc("2020-05-04T17:00:00Z")));
        let late = spec("{times: [{start_time: '17:00', end_time: '24:00'}]}");
        assert!(late.contains(utc("2020-05-04T23:59:00Z")));
        assert!(!late.contains(utc("2020-05-05T00:00:00Z")));
    }

    #[test]
    fn easter_2020_is_days_months_and_years_together() {
        let t = spec("{days_of_month: ['4:6'], months: ['april'], years: ['2020']}");
        for at in [
            "2020-04-04T15:04:00Z",
            "2020-04-05T00:00:00Z",
            "2020-04-06T23:05:00Z",
        ] {
            assert!(t.contains(utc(at)), "{at}");
        }
        for at in [
            "2018-05-03T15:04:00Z",
            "2020-04-03T23:59:00Z",
            "2020-06-04T23:59:00Z",
            "2019-04-06T23:59:00Z",
            "2020-04-07T00:00:00Z",
        ] {
            assert!(!t.contains(utc(at)), "{at}");
        }
    }

    #[test]
    fn negative_days_count_from_the_end_of_each_month() {
        let t = spec("{days_of_month: ['-3:-1']}");
        for at in [
            "2020-01-31T15:04:00Z",
            "2020-01-30T15:04:00Z",
            "2020-01-29T15:04:00Z",
            "2020-06-30T00:00:00Z",
            // 2020 is a leap year: the 29th is February's last day.
            "2020-02-29T23:05:00Z",
            "2020-02-27T00:00:00Z",
        ] {
            assert!(t.contains(utc(at)), "{at}");
        }
        for at in [
            "2020-01-27T15:04:00Z",
            "2020-04-03T23:59:00Z",
            "2020-03-01T00:00:00Z",
            "2020-02-26T12:00:00Z",
        ] {
            assert!(!t.contains(utc(at)), "{at}");
        }
        let last = spec("{days_of_month: [-1]}");
        assert!(last.contains(utc("2021-02-28T12:00:00Z")));
        assert!(!last.contains(utc("2021-02-27T12:00:00Z")));
    }

    #[test]
    fn day_ranges_are_cut_to_the_month() {
        // ['1:31'] in February ends on the 28th or 29th; -31:-1 in June starts before
        // the 1st, so it is all of June.
        let feb = spec("{days_of_month: ['1:31'], months: [february]}");
        assert!(feb.contains(utc("2021-02-28T00:00:00Z")));
        let june = spec("{days_of_month: ['-31:-1'], months: ['6']}");
        assert!(june.contains(utc("2020-06-30T00:00:00Z")));
        assert!(june.contains(utc("2020-06-01T00:00:00Z")));
        assert!(!june.contains(utc("2020-05-31T00:00:00Z")));
        assert!(!june.contains(utc("2020-07-01T00:00:00Z")));
        // A range starting past the month's end is not in it: the 31st of April.
        let d31 = spec("{days_of_month: [31]}");
        assert!(!d31.contains(utc("2020-04-30T12:00:00Z")));
        assert!(d31.contains(utc("2020-05-31T12:00:00Z")));
        // 1:-1 is every day.
        let all = spec("{days_of_month: ['1:-1']}");
        assert!(all.contains(utc("2020-02-29T12:00:00Z")));
    }

    #[test]
    fn months_by_name_or_number_and_years_as_ranges() {
        let t = spec("{months: ['1:3', 'may:august', 'December'], years: ['2020:2022', 2030]}");
        assert!(t.contains(utc("2020-02-10T00:00:00Z")));
        assert!(t.contains(utc("2022-07-10T00:00:00Z")));
        assert!(t.contains(utc("2030-12-31T23:59:00Z")));
        assert!(!t.contains(utc("2021-04-10T00:00:00Z")));
        assert!(!t.contains(utc("2023-02-10T00:00:00Z")));
        assert!(!t.contains(utc("2029-12-10T00:00:00Z")));
    }

    #[test]
    fn location_reads_the_instant_in_that_zone() {
        // AEST 9 to 5, Monday to Friday: 13:00 in Sydney is 03:00 UTC.
        let t = spec(
            "{times: [{start_time: '09:00', end_time: '17:00'}], weekdays: ['monday:friday'], location: Australia/Sydney}",
        );
        assert!(t.contains(utc("2021-04-06T03:00:00Z")));
        assert!(!t.contains(utc("2021-04-06T13:00:00Z")));
        // Daylight saving time: 09:00 AEDT on Monday 1 November is 22:00 UTC Sunday.
        let nov = spec(
            "{times: [{start_time: '09:00', end_time: '17:00'}], weekdays: ['monday:friday'], months: [november], location: Australia/Sydney}",
        );
        assert!(nov.contains(utc("2021-10-31T22:00:00Z")));
        assert!(!nov.contains(utc("2021-10-31T21:00:00Z")));
        // The last day of March in New York, whatever the clock change.
        let last = spec("{days_of_month: [-1], location: America/New_York}");
        assert!(last.contains(utc("2021-03-31T16:00:00Z")));
        assert!(!last.contains(utc("2021-03-30T16:00:00Z")));
    }

    #[test]
    fn any_spec_under_a_name_is_enough_and_none_is_never() {
        let t = from_yaml(
            "name: holidays
time_intervals:
  - {months: [january], days_of_month: [1, 18], years: [2027]}
  - {months: [december], days_of_month: [24], years: [2027]}",
        );
        t.check().unwrap();
        assert!(t.contains(utc("2027-01-18T15:00:00Z")));
        assert!(t.contains(utc("2027-12-24T15:00:00Z")));
        // Not the cross product: 24 January and 1 December are not listed.
        assert!(!t.contains(utc("2027-01-24T15:00:00Z")));
        assert!(!t.contains(utc("2027-12-01T15:00:00Z")));
        let never = from_yaml("name: never\ntime_intervals: []");
        never.check().unwrap();
        assert!(!never.contains(utc("2027-01-18T15:00:00Z")));
        // Nothing set in place: always.
        let always = from_yaml("name: always");
        always.check().unwrap();
        assert!(always.contains(utc("2027-01-18T15:00:00Z")));
    }

    #[test]
    fn the_flat_shape_takes_the_new_fields_too() {
        let t = from_yaml(
            "name: new_year
location: America/New_York
days_of_month: [1]
months: [january]",
        );
        t.check().unwrap();
        // Midnight in New York on 1 January is 05:00 UTC.
        assert!(t.contains(utc("2027-01-01T05:00:00Z")));
        assert!(!t.contains(utc("2027-01-01T04:59:00Z")));
    }

    #[test]
    fn out_of_range_values_are_refused_naming_the_key() {
        let day = |v: i32| {
            format!("{v} is not a day of the month: use 1 to 31, or -1 (the last day) to -31")
        };
        for (y, key, reason) in [
            ("{days_of_month: [0]}", "days_of_month[0]", day(0)),
            ("{days_of_month: [1, 32]}", "days_of_month[1]", day(32)),
            ("{days_of_month: [-32]}", "days_of_month[0]", day(-32)),
            ("{days_of_month: ['1:50']}", "days_of_month[0]", day(50)),
            (
                "{days_of_month: ['-15:5']}",
                "days_of_month[0]",
                "\"-15:5\": the end must be negative when the start is".into(),
            ),
            (
                "{days_of_month: ['10:-25']}",
                "days_of_month[0]",
                "\"10:-25\": the end day -25 is always before the start day 10".into(),
            ),
            (
                "{days_of_month: ['5:1']}",
                "days_of_month[0]",
                "\"5:1\": the end day 1 is always before the start day 5".into(),
            ),
            (
                "{months: ['13']}",
                "months[0]",
                "\"13\" is not a month (1 to 12 or a name like january) or a range like january:march".into(),
            ),
            (
                "{months: ['martius:june']}",
                "months[0]",
                "\"martius:june\" is not a month (1 to 12 or a name like january) or a range like january:march".into(),
            ),
            (
                "{months: ['december:january']}",
                "months[0]",
                "the end month january is before the start month december".into(),
            ),
            (
                "{years: ['2022:2020']}",
                "years[0]",
                "the end year 2020 is before the start year 2022".into(),
            ),
            (
                "{years: [0]}",
                "years[0]",
                "\"0\" is not a year (1 to 9999) or a range like 2026:2027".into(),
            ),
            (
                "{location: Local}",
                "location",
                "\"Local\" would follow the host's settings: name the zone, e.g. America/New_York".into(),
            ),
            (
                "{location: UTC, time_zone: UTC}",
                "time_zone",
                "set location or its older name time_zone, not both".into(),
            ),
        ] {
            let (k, r) = error(y);
            assert_eq!(
                (k.as_str(), r.as_str()),
                (format!("time_intervals[0].{key}").as_str(), reason.as_str()),
                "{y}"
            );
        }
        let both = from_yaml("name: t\nweekdays: [monday]\ntime_intervals: [{weekdays: [friday]}]");
        assert_eq!(both.check().unwrap_err().0, "time_intervals");
        let flat = from_yaml("name: t\nlocation: UTC\ntime_zone: UTC");
        assert_eq!(flat.check().unwrap_err().0, "time_zone");
    }

    #[test]
    fn a_weekday_range_may_wrap_over_the_weekend() {
        let t = spec("{weekdays: ['friday:monday']}");
        // Friday, Sunday and Monday; not Wednesday.
        assert!(t.contains(utc("2027-01-01T12:00:00Z")));
        assert!(t.contains(utc("2027-01-03T12:00:00Z")));
        assert!(t.contains(utc("2027-01-04T12:00:00Z")));
        assert!(!t.contains(utc("2027-01-06T12:00:00Z")));
    }
}
