//! Periodic jobs: schedules that enqueue a job at each tick of a cron
//! expression, decided in Redis so that any number of workers share the
//! work with no leader.
//!
//! - `definition`: what a schedule is (name, cron, time zone, job template,
//!   misfire policy), checked the same way from the configuration and the CLI.
//! - `timetable`: the cron math, in the schedule's time zone, DST included.
//! - `decide`: which tick a due schedule enqueues, and its next tick.
//! - `manage`: adding, pausing, resuming, removing and reading schedules.
//!
//! The worker's loop that ticks them is `worker/periodic.rs`; the storage
//! and the compare-and-set script are `queue/schedules.rs` and
//! `queue/scripts/schedule_*.lua`.

mod decide;
mod definition;
pub mod manage;
mod timetable;

pub use decide::{decide, Decision};
pub use definition::{Definition, Misfire, DEFAULT_MISFIRE_GRACE_S};
pub use manage::{Source, View};
pub use timetable::Timetable;

use crate::queue::QueueError;

/// What went wrong with a schedule.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("schedule {name:?}: invalid cron expression {cron:?}: {reason}")]
    Cron {
        name: String,
        cron: String,
        reason: String,
    },
    #[error("schedule {name:?}: unknown time zone {tz:?}: expected an IANA name such as UTC, Europe/Berlin or America/New_York")]
    TimeZone { name: String, tz: String },
    #[error("schedule {name:?}: {message}")]
    Invalid { name: String, message: String },
    #[error("no schedule named {0:?} (`toolq schedule list` shows them)")]
    NotFound(String),
    /// What Redis holds for the schedule is not a definition this version
    /// reads (written by hand, or by a newer toolq).
    #[error("schedule {name:?}: the stored definition is unreadable: {message}")]
    Stored { name: String, message: String },
    #[error(transparent)]
    Queue(#[from] QueueError),
}

pub type Result<T, E = ScheduleError> = std::result::Result<T, E>;
