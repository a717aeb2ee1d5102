//! Calendar periods of `GET /usage`, computed in UTC.

use chrono::{DateTime, Datelike, Days, NaiveDate, NaiveTime, Utc};

use crate::seed::{UsagePeriods, UsageTotals};

/// Value of the `period` query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Period {
    Today,
    Week,
    Month,
    All,
}

impl Period {
    /// Parses the wire name; anything other than `today`, `week`, `month` or `all` is `None`.
    pub fn parse(value: &str) -> Option<Period> {
        match value {
            "today" => Some(Period::Today),
            "week" => Some(Period::Week),
            "month" => Some(Period::Month),
            "all" => Some(Period::All),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Period::Today => "today",
            Period::Week => "week",
            Period::Month => "month",
            Period::All => "all",
        }
    }

    pub fn totals(self, usage: &UsagePeriods) -> &UsageTotals {
        match self {
            Period::Today => &usage.today,
            Period::Week => &usage.week,
            Period::Month => &usage.month,
            Period::All => &usage.all,
        }
    }

    /// Returns the start of the period that contains `now`: midnight UTC of today, of this week's
    /// Monday or of the first of the month. `All` has no start.
    pub fn start(self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let today = now.date_naive();
        let first_day = match self {
            Period::Today => today,
            Period::Week => {
                let days_since_monday = u64::from(today.weekday().num_days_from_monday());
                today.checked_sub_days(Days::new(days_since_monday))?
            }
            Period::Month => NaiveDate::from_ymd_opt(today.year(), today.month(), 1)?,
            Period::All => return None,
        };
        Some(first_day.and_time(NaiveTime::MIN).and_utc())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn starts_of_calendar_periods() {
        // 2026-12-04 is a Friday.
        let now = at("2026-12-04T18:00:00Z");
        assert_eq!(Period::Today.start(now), Some(at("2026-12-04T00:00:00Z")));
        assert_eq!(Period::Week.start(now), Some(at("2026-11-30T00:00:00Z")));
        assert_eq!(Period::Month.start(now), Some(at("2026-12-01T00:00:00Z")));
        assert_eq!(Period::All.start(now), None);
    }

    #[test]
    fn week_starts_on_monday_itself() {
        let monday = at("2026-11-30T00:00:00Z");
        assert_eq!(Period::Week.start(monday), Some(monday));

        let sunday = at("2026-12-06T23:59:59Z");
        assert_eq!(Period::Week.start(sunday), Some(monday));
    }

    #[test]
    fn parse_accepts_only_wire_names() {
        for name in ["today", "week", "month", "all"] {
            assert_eq!(Period::parse(name).map(Period::as_str), Some(name));
        }
        assert_eq!(Period::parse("Month"), None);
        assert_eq!(Period::parse("year"), None);
        assert_eq!(Period::parse(""), None);
    }
}
