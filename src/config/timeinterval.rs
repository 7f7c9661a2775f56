//! Named time intervals (market hours and the like) in a named time zone, for a
//! route's `active_time_intervals` and `mute_time_intervals`.

use chrono::{DateTime, Datelike, NaiveTime, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// `weekdays` and `times` in `time_zone`; an empty list means "any".
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeInterval {
    pub name: String,
    /// IANA name such as `America/New_York`; UTC when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// `monday`, or a range `monday:friday`.
    #[serde(default)]
    pub weekdays: Vec<String>,
    /// Start inclusive, end exclusive, `HH:MM`.
    #[serde(default)]
    pub times: Vec<TimeRange>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeRange {
    pub start: String,
    pub end: String,
}

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

impl TimeInterval {
    /// Checks names and ranges; the error is (key relative to this interval, reason).
    pub fn check(&self) -> Result<(), (String, String)> {
        if let Some(tz) = &self.time_zone
            && tz.parse::<Tz>().is_err()
        {
            return Err((
                "time_zone".into(),
                format!("unknown time zone {tz:?}: use an IANA name like America/New_York"),
            ));
        }
        for (i, w) in self.weekdays.iter().enumerate() {
            let ok = match w.split_once(':') {
                Some((a, b)) => weekday(a).is_some() && weekday(b).is_some(),
                None => weekday(w).is_some(),
            };
            if !ok {
                return Err((
                    format!("weekdays[{i}]"),
                    format!("{w:?} is not a weekday or a range like monday:friday"),
                ));
            }
        }
        for (i, t) in self.times.iter().enumerate() {
            match (hm(&t.start), hm(&t.end)) {
                (Some(a), Some(b)) if a < b => {}
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
        Ok(())
    }

    /// Whether `at` falls inside the interval, read in its time zone.
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        let tz: Tz = self
            .time_zone
            .as_deref()
            .and_then(|t| t.parse().ok())
            .unwrap_or(Tz::UTC);
        let local = at.with_timezone(&tz);
        let day = local.weekday().num_days_from_monday();
        let day_ok = self.weekdays.is_empty()
            || self.weekdays.iter().any(|w| match w.split_once(':') {
                Some((a, b)) => {
                    let (a, b) = (
                        weekday(a).map_or(7, |d| d.num_days_from_monday()),
                        weekday(b).map_or(7, |d| d.num_days_from_monday()),
                    );
                    if a <= b {
                        (a..=b).contains(&day)
                    } else {
                        day >= a || day <= b
                    }
                }
                None => weekday(w).is_some_and(|d| d.num_days_from_monday() == day),
            });
        let minute = local.hour() * 60 + local.minute();
        let time_ok = self.times.is_empty()
            || self.times.iter().any(|t| match (hm(&t.start), hm(&t.end)) {
                (Some(a), Some(b)) => a <= minute && minute < b,
                _ => false,
            });
        day_ok && time_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn market() -> TimeInterval {
        TimeInterval {
            name: "market".into(),
            time_zone: Some("America/New_York".into()),
            weekdays: vec!["monday:friday".into()],
            times: vec![TimeRange {
                start: "09:30".into(),
                end: "16:00".into(),
            }],
        }
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
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
}
