//! When a schedule's ticks fall: its cron expression read in its time zone.
//! All times are unix seconds; "now" always comes from Redis, never from the
//! worker's clock. Daylight saving follows Vixie cron (croner's rules): a
//! fixed-time tick (one second, minute and hour) that falls in a skipped
//! local hour runs at the first instant after the gap, and one in a
//! repeated hour runs once, at its first occurrence; interval ticks (a
//! wildcard or step in those fields) run on every real instant that
//! matches, the repeated hour's included.

use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

use super::{Result, ScheduleError};

/// A parsed cron expression and time zone.
#[derive(Debug, Clone)]
pub struct Timetable {
    name: String,
    cron: Cron,
    tz: TimeZone,
}

impl Timetable {
    /// Five fields (seconds = 0) or six with seconds first; `@daily` and
    /// friends too. Refuses an expression with no tick in the coming years.
    pub fn new(name: &str, cron: &str, tz: &str) -> Result<Self> {
        let parsed = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(cron)
            .map_err(|e| ScheduleError::Cron {
                name: name.into(),
                cron: cron.into(),
                reason: e.to_string(),
            })?;
        let tz = TimeZone::get(tz).map_err(|_| ScheduleError::TimeZone {
            name: name.into(),
            tz: tz.into(),
        })?;
        let table = Timetable {
            name: name.into(),
            cron: parsed,
            tz,
        };
        // 2000-01-01: a pattern that matches no date (31 February) fails
        // here rather than on a worker.
        table
            .next_after(946_684_800)
            .map_err(|_| ScheduleError::Cron {
                name: name.into(),
                cron: cron.into(),
                reason: "it matches no time".into(),
            })?;
        Ok(table)
    }

    /// The first tick strictly after `t`.
    pub fn next_after(&self, t: i64) -> Result<i64> {
        let at = self.at(t)?;
        self.cron
            .find_next_occurrence(&at, false)
            .map(|z| z.timestamp().as_second())
            .map_err(|e| self.no_tick(t, e))
    }

    /// The last tick at or before `t`, if any in the year before it.
    pub fn latest_at_or_before(&self, t: i64) -> Option<i64> {
        let at = self.at(t).ok()?;
        self.cron
            .find_previous_occurrence(&at, true)
            .ok()
            .map(|z| z.timestamp().as_second())
    }

    fn at(&self, t: i64) -> Result<Zoned> {
        match Timestamp::from_second(t) {
            Ok(ts) => Ok(ts.to_zoned(self.tz.clone())),
            Err(_) => Err(ScheduleError::Invalid {
                name: self.name.clone(),
                message: format!("time {t} is out of range"),
            }),
        }
    }

    fn no_tick(&self, t: i64, e: croner::errors::CronError) -> ScheduleError {
        ScheduleError::Invalid {
            name: self.name.clone(),
            message: format!("no tick after {t}: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix seconds of a UTC date and time.
    fn utc(y: i16, mo: i8, d: i8, h: i8, mi: i8, s: i8) -> i64 {
        jiff::civil::datetime(y, mo, d, h, mi, s, 0)
            .to_zoned(TimeZone::UTC)
            .unwrap()
            .timestamp()
            .as_second()
    }

    fn ticks(t: &Timetable, from: i64, n: usize) -> Vec<i64> {
        let mut out = Vec::new();
        let mut at = from;
        for _ in 0..n {
            at = t.next_after(at).unwrap();
            out.push(at);
        }
        out
    }

    #[test]
    fn six_fields_have_seconds_and_five_fields_run_on_the_minute() {
        let every_2s = Timetable::new("t", "*/2 * * * * *", "UTC").unwrap();
        let t0 = utc(2026, 1, 1, 0, 0, 0);
        assert_eq!(ticks(&every_2s, t0, 3), vec![t0 + 2, t0 + 4, t0 + 6]);
        let minutely = Timetable::new("t", "* * * * *", "UTC").unwrap();
        assert_eq!(minutely.next_after(t0 + 1).unwrap(), t0 + 60);
    }

    #[test]
    fn bad_expressions_and_zones_are_refused() {
        assert!(matches!(
            Timetable::new("t", "not cron", "UTC"),
            Err(ScheduleError::Cron { .. })
        ));
        assert!(matches!(
            Timetable::new("t", "0 0 30 2 *", "UTC"),
            Err(ScheduleError::Cron { .. })
        ));
        assert!(matches!(
            Timetable::new("t", "* * * * *", "Europe/Nowhere"),
            Err(ScheduleError::TimeZone { .. })
        ));
    }

    #[test]
    fn a_daily_tick_in_the_skipped_hour_runs_right_after_the_gap() {
        // Berlin, 2027-03-28: 02:00 CET becomes 03:00 CEST at 01:00 UTC,
        // so 02:30 does not exist that day.
        let t = Timetable::new("t", "0 30 2 * * *", "Europe/Berlin").unwrap();
        let before = utc(2027, 3, 27, 12, 0, 0);
        assert_eq!(
            ticks(&t, before, 3),
            vec![
                utc(2027, 3, 28, 1, 0, 0),  // 03:00 CEST, first instant after the gap
                utc(2027, 3, 29, 0, 30, 0), // 02:30 CEST
                utc(2027, 3, 30, 0, 30, 0),
            ]
        );
    }

    #[test]
    fn an_hourly_tick_skips_the_hour_that_does_not_exist() {
        // New York, 2027-03-14: 02:00 EST becomes 03:00 EDT at 07:00 UTC.
        let t = Timetable::new("t", "0 15 * * * *", "America/New_York").unwrap();
        let from = utc(2027, 3, 14, 5, 30, 0); // 00:30 EST
        assert_eq!(
            ticks(&t, from, 3),
            vec![
                utc(2027, 3, 14, 6, 15, 0), // 01:15 EST
                utc(2027, 3, 14, 7, 15, 0), // 03:15 EDT: no 02:15 that day
                utc(2027, 3, 14, 8, 15, 0), // 04:15 EDT
            ]
        );
    }

    #[test]
    fn a_daily_tick_in_the_repeated_hour_runs_once() {
        // Berlin, 2027-10-31: 03:00 CEST becomes 02:00 CET at 01:00 UTC, so
        // 02:30 happens at 00:30 UTC and again at 01:30 UTC.
        let t = Timetable::new("t", "0 30 2 * * *", "Europe/Berlin").unwrap();
        let before = utc(2027, 10, 30, 12, 0, 0);
        assert_eq!(
            ticks(&t, before, 2),
            vec![utc(2027, 10, 31, 0, 30, 0), utc(2027, 11, 1, 1, 30, 0)]
        );
        // Asked from inside the repeated hour, after the first 02:30: the
        // second 02:30 is not a new tick.
        assert_eq!(
            t.next_after(utc(2027, 10, 31, 1, 0, 0)).unwrap(),
            utc(2027, 11, 1, 1, 30, 0)
        );
    }

    #[test]
    fn an_interval_tick_runs_in_both_copies_of_the_repeated_hour() {
        let t = Timetable::new("t", "0 */30 * * * *", "Europe/Berlin").unwrap();
        let from = utc(2027, 10, 30, 23, 45, 0); // 01:45 CEST
        assert_eq!(
            ticks(&t, from, 6),
            vec![
                utc(2027, 10, 31, 0, 0, 0),  // 02:00 CEST
                utc(2027, 10, 31, 0, 30, 0), // 02:30 CEST
                utc(2027, 10, 31, 1, 0, 0),  // 02:00 CET
                utc(2027, 10, 31, 1, 30, 0), // 02:30 CET
                utc(2027, 10, 31, 2, 0, 0),  // 03:00 CET
                utc(2027, 10, 31, 2, 30, 0),
            ]
        );
    }

    #[test]
    fn the_latest_tick_is_found_backwards() {
        let t = Timetable::new("t", "0 0 * * * *", "UTC").unwrap();
        let at = utc(2027, 1, 1, 5, 0, 0);
        assert_eq!(t.latest_at_or_before(at), Some(at));
        assert_eq!(t.latest_at_or_before(at + 59), Some(at));
        assert_eq!(t.latest_at_or_before(at - 1), Some(at - 3600));
    }
}
