//! What a worker does with a schedule whose tick is due: a pure function of
//! the definition, the due tick and Redis's time, so every worker that looks
//! decides the same, and the compare-and-set in `schedule_tick.lua` lets
//! exactly one of them carry it out.

use super::definition::{Definition, Misfire};
use super::timetable::Timetable;
use super::Result;

/// One decided step of a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The tick whose job to enqueue (unix s), if any.
    pub job_tick: Option<i64>,
    /// The schedule's next tick (unix s).
    pub next: i64,
    /// Ticks passed the grace unenqueued: the misfire policy decided.
    pub misfired: bool,
}

/// The step for tick `due` at Redis time `now_ms`, or `None` while it is not
/// due. A tick at most the grace late is enqueued and the schedule moves to
/// the tick after it (a worker late by a moment catches up tick by tick);
/// one later than that has misfired: `skip` enqueues nothing, `run_once`
/// the latest tick that has passed, and either goes on from the first tick
/// after now.
pub fn decide(
    def: &Definition,
    table: &Timetable,
    due: i64,
    now_ms: u64,
) -> Result<Option<Decision>> {
    let now_s = (now_ms / 1000) as i64;
    if due > now_s {
        return Ok(None);
    }
    let late_ms = now_ms.saturating_sub(due.max(0) as u64 * 1000);
    if late_ms <= def.misfire_grace_s.saturating_mul(1000) {
        return Ok(Some(Decision {
            job_tick: Some(due),
            next: table.next_after(due)?,
            misfired: false,
        }));
    }
    let next = table.next_after(now_s)?;
    let job_tick = match def.misfire {
        Misfire::Skip => None,
        Misfire::RunOnce => Some(table.latest_at_or_before(now_s).unwrap_or(due).max(due)),
    };
    Ok(Some(Decision {
        job_tick,
        next,
        misfired: true,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const T0: i64 = 1_800_000_000;

    fn every_second(misfire: Misfire) -> (Definition, Timetable) {
        let mut d = Definition::new("s", "* * * * * *", "echo", json!({}));
        d.misfire = misfire;
        d.misfire_grace_s = 5;
        let t = d.validate().unwrap();
        (d, t)
    }

    #[test]
    fn nothing_before_the_tick_is_due() {
        let (d, t) = every_second(Misfire::Skip);
        assert_eq!(decide(&d, &t, T0, T0 as u64 * 1000 - 1).unwrap(), None);
    }

    #[test]
    fn a_tick_within_the_grace_is_enqueued_and_the_next_follows_it() {
        let (d, t) = every_second(Misfire::Skip);
        let step = decide(&d, &t, T0, T0 as u64 * 1000 + 4_000).unwrap();
        assert_eq!(
            step,
            Some(Decision {
                job_tick: Some(T0),
                next: T0 + 1,
                misfired: false,
            })
        );
    }

    #[test]
    fn skip_enqueues_none_of_the_missed_ticks_and_resumes_after_now() {
        let (d, t) = every_second(Misfire::Skip);
        let now = (T0 + 30) as u64 * 1000 + 500;
        let step = decide(&d, &t, T0, now).unwrap();
        assert_eq!(
            step,
            Some(Decision {
                job_tick: None,
                next: T0 + 31,
                misfired: true,
            })
        );
    }

    #[test]
    fn run_once_enqueues_only_the_latest_missed_tick() {
        let (d, t) = every_second(Misfire::RunOnce);
        let now = (T0 + 30) as u64 * 1000 + 500;
        let step = decide(&d, &t, T0, now).unwrap();
        assert_eq!(
            step,
            Some(Decision {
                job_tick: Some(T0 + 30),
                next: T0 + 31,
                misfired: true,
            })
        );
    }
}
