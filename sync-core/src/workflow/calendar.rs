//! The working calendar: which days count toward a case's time limit.
//!
//! A working day is Monday to Friday unless it is a public holiday, plus any weekend day
//! declared a make-up workday (调休). Time limits count working time only: a limit of one
//! working day is 24 hours of working days, so a case dispatched on Friday 10:00 with a one-day
//! limit is due on Monday 10:00. All dates are in China Standard Time (UTC+8), where the
//! calendar's days begin.

use std::collections::BTreeSet;

use time::{Date, Duration, OffsetDateTime, UtcOffset, Weekday};

use crate::records::Millis;

const DAY_MS: i64 = 86_400_000;
const CST: UtcOffset = match UtcOffset::from_hms(8, 0, 0) {
    Ok(o) => o,
    Err(_) => UtcOffset::UTC,
};

/// Holidays and make-up workdays on top of the Monday-Friday week.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkCalendar {
    /// Days off that would otherwise be working days (法定节假日).
    pub holidays: BTreeSet<Date>,
    /// Weekend days that are working days (调休上班).
    pub workdays: BTreeSet<Date>,
}

fn date_of(ms: Millis) -> (Date, i64) {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .to_offset(CST);
    let start = t.replace_time(time::Time::MIDNIGHT);
    let offset = i64::try_from((t - start).whole_milliseconds()).unwrap_or(0);
    (t.date(), offset)
}

fn start_of(date: Date) -> Millis {
    let t = date.midnight().assume_offset(CST);
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

impl WorkCalendar {
    /// Whether `date` counts toward time limits.
    pub fn is_working_day(&self, date: Date) -> bool {
        if self.workdays.contains(&date) {
            return true;
        }
        if self.holidays.contains(&date) {
            return false;
        }
        !matches!(date.weekday(), Weekday::Saturday | Weekday::Sunday)
    }

    /// The moment `working_ms` of working time after `start` (time on non-working days is
    /// skipped; a start on a non-working day begins counting at the next working day).
    pub fn add_working_time(&self, start: Millis, working_ms: i64) -> Millis {
        let (mut date, offset) = date_of(start);
        let mut left = working_ms.max(0);
        if self.is_working_day(date) {
            let today = DAY_MS - offset;
            if left <= today {
                return start + left;
            }
            left -= today;
        }
        // Whole days after that. Bounded: a limit of decades is a data error, not a loop.
        for _ in 0..20_000 {
            date = date.next_day().unwrap_or(date);
            if !self.is_working_day(date) {
                continue;
            }
            if left <= DAY_MS {
                return start_of(date) + left;
            }
            left -= DAY_MS;
        }
        start + working_ms
    }

    /// Working time between `from` and `to` (0 if `to` is not later).
    pub fn working_time_between(&self, from: Millis, to: Millis) -> i64 {
        if to <= from {
            return 0;
        }
        let (mut date, offset) = date_of(from);
        let (end_date, end_offset) = date_of(to);
        if date == end_date {
            return if self.is_working_day(date) {
                to - from
            } else {
                0
            };
        }
        let mut total = if self.is_working_day(date) {
            DAY_MS - offset
        } else {
            0
        };
        for _ in 0..20_000 {
            date = date.next_day().unwrap_or(date);
            if date >= end_date {
                break;
            }
            if self.is_working_day(date) {
                total += DAY_MS;
            }
        }
        if self.is_working_day(end_date) {
            total += end_offset;
        }
        total
    }

    /// The start of the calendar day after the one holding `ms` (催办 is raised then).
    pub fn next_day_start(ms: Millis) -> Millis {
        let (date, _) = date_of(ms);
        start_of(date + Duration::days(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    const H: i64 = 3_600_000;

    fn at(d: Date, hour: i64) -> Millis {
        start_of(d) + hour * H
    }

    fn national_day_2026() -> WorkCalendar {
        // Oct 1-7 off (Oct 3-4 a weekend anyway), Sat Oct 10 a make-up workday.
        WorkCalendar {
            holidays: (1..=7)
                .map(|d| Date::from_calendar_date(2026, time::Month::October, d).expect("date"))
                .collect(),
            workdays: [date!(2026 - 10 - 10)].into(),
        }
    }

    #[test]
    fn weekends_are_skipped() {
        let c = WorkCalendar::default();
        // Friday 2026-11-20 10:00 + 1 working day = Monday 10:00.
        assert_eq!(
            c.add_working_time(at(date!(2026 - 11 - 20), 10), 24 * H),
            at(date!(2026 - 11 - 23), 10)
        );
        assert_eq!(
            c.add_working_time(at(date!(2026 - 11 - 20), 10), 4 * H),
            at(date!(2026 - 11 - 20), 14)
        );
        // Starting on Saturday: counting starts Monday 00:00.
        assert_eq!(
            c.add_working_time(at(date!(2026 - 11 - 21), 15), 2 * H),
            at(date!(2026 - 11 - 23), 2)
        );
        assert_eq!(
            c.working_time_between(at(date!(2026 - 11 - 20), 10), at(date!(2026 - 11 - 23), 10)),
            24 * H
        );
    }

    #[test]
    fn holidays_and_make_up_workdays() {
        let c = national_day_2026();
        // Wed Sep 30 09:00 + 2 working days: 15 h left on Sep 30, Oct 1-7 off, 24 h on Oct 8,
        // 9 h on Oct 9: due Fri Oct 9 09:00.
        assert_eq!(
            c.add_working_time(at(date!(2026 - 09 - 30), 9), 48 * H),
            at(date!(2026 - 10 - 09), 9)
        );
        assert!(c.is_working_day(date!(2026 - 10 - 10)));
        assert!(!c.is_working_day(date!(2026 - 10 - 11)));
        // Fri Oct 9 12:00 + 1 day runs through the make-up Saturday.
        assert_eq!(
            c.add_working_time(at(date!(2026 - 10 - 09), 12), 24 * H),
            at(date!(2026 - 10 - 10), 12)
        );
        // Sep 30, Oct 8, 9, 10 are the working days before Oct 12.
        assert_eq!(
            c.working_time_between(at(date!(2026 - 09 - 30), 0), at(date!(2026 - 10 - 12), 0)),
            4 * 24 * H
        );
    }

    #[test]
    fn next_day_is_a_calendar_day_in_china_time() {
        assert_eq!(
            WorkCalendar::next_day_start(at(date!(2026 - 11 - 23), 23)),
            at(date!(2026 - 11 - 24), 0)
        );
    }
}
