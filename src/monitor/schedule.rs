//! Scheduled retraining: cron expressions evaluated on *event time* (DESIGN §5), so a replay
//! of last week's traffic reproduces last week's scheduled requests exactly.
//!
//! Owns: parsing (via `croner`, standard 5-field patterns or 6/7 fields with seconds and
//! years, all in UTC) and the "which instants did the stream's clock pass" question. Pure:
//! the clock is whatever event time the caller passes in.

use chrono::{DateTime, TimeZone, Utc};
use croner::parser::{CronParser, Seconds};
use croner::Cron;

/// A parsed cron expression; serialized as the expression itself.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CronSchedule {
    expression: String,
    cron: Cron,
}

impl PartialEq for CronSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.expression == other.expression
    }
}

impl TryFrom<String> for CronSchedule {
    type Error = String;

    fn try_from(expression: String) -> Result<Self, String> {
        Self::parse(&expression)
    }
}

impl From<CronSchedule> for String {
    fn from(schedule: CronSchedule) -> String {
        schedule.expression
    }
}

impl CronSchedule {
    /// Parses `expression`: `minute hour day-of-month month day-of-week`, optionally with a
    /// leading seconds field and a trailing year field; names (`MON`, `JAN`) and `@daily`
    /// style nicknames are accepted.
    ///
    /// # Errors
    /// A message saying what is wrong with the expression.
    pub fn parse(expression: &str) -> Result<Self, String> {
        let parser = CronParser::builder().seconds(Seconds::Optional).build();
        let cron = parser
            .parse(expression)
            .map_err(|error| format!("invalid cron expression {expression:?}: {error}"))?;
        Ok(Self {
            expression: expression.to_owned(),
            cron,
        })
    }

    /// The expression as written.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The last instant of the schedule in `(after_ms, through_ms]` (event time, ms), if any.
    /// Several instants passed at once (a quiet stream, a replay jumping ahead) give one
    /// trigger, for the latest: retraining twice on the same data helps nobody.
    pub fn last_between(&self, after_ms: i64, through_ms: i64) -> Option<i64> {
        if through_ms <= after_ms {
            return None;
        }
        let through = utc(through_ms)?;
        let previous = self.cron.find_previous_occurrence(&through, true).ok()?;
        let at = previous.timestamp_millis();
        (at > after_ms).then_some(at)
    }
}

fn utc(ms: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms).single()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;
    /// 2026-11-23T00:00:00Z.
    const MONDAY: i64 = 1_795_392_000_000;

    #[test]
    fn daily_schedule_fires_once_per_day_of_event_time() {
        let daily = CronSchedule::parse("0 3 * * *").unwrap();
        let three_am = MONDAY + 3 * 3_600_000;
        assert_eq!(daily.last_between(MONDAY, MONDAY + DAY), Some(three_am));
        assert_eq!(daily.last_between(MONDAY, three_am - 1), None);
        assert_eq!(daily.last_between(MONDAY, three_am), Some(three_am));
        assert_eq!(daily.last_between(three_am, three_am + 60_000), None);
        // A stream that jumps three days gets one trigger, for the latest instant.
        assert_eq!(
            daily.last_between(MONDAY, MONDAY + 3 * DAY + 4 * 3_600_000),
            Some(three_am + 3 * DAY)
        );
    }

    #[test]
    fn seconds_and_weekday_names_are_understood() {
        let weekly = CronSchedule::parse("30 0 12 * * MON").unwrap();
        let noon_thirty_seconds = MONDAY + 12 * 3_600_000 + 30_000;
        assert_eq!(
            weekly.last_between(MONDAY - DAY, MONDAY + DAY),
            Some(noon_thirty_seconds)
        );
        assert_eq!(
            weekly.last_between(MONDAY + DAY, MONDAY + 6 * DAY),
            None,
            "no Monday in between"
        );
    }

    #[test]
    fn bad_expressions_say_what_is_wrong() {
        for bad in ["", "61 * * * *", "* * *", "every day"] {
            let error = CronSchedule::parse(bad).unwrap_err();
            assert!(error.contains("invalid cron expression"), "{error}");
        }
    }

    #[test]
    fn out_of_range_times_are_no_trigger() {
        let daily = CronSchedule::parse("0 3 * * *").unwrap();
        assert_eq!(daily.last_between(i64::MAX - 1, i64::MAX), None);
        assert_eq!(daily.last_between(10, 5), None);
    }
}
