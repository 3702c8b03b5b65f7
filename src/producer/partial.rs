//! A batch Redis took only part of: which jobs are on the queue, which are
//! not, and which are in doubt, so the caller knows exactly what to send
//! again. Each command of a round trip is atomic, so a refusal (`OOM` at
//! `maxmemory`) leaves every job's fate known; only a connection lost
//! mid-trip leaves that trip's jobs in doubt.

use crate::queue::{EnqueueItem, Fate, QueueError};

use super::ProducerError;

/// Part of a batch went in before Redis refused (or was lost for) the rest.
#[derive(Debug, thiserror::Error)]
#[error(
    "producer: {} of {} jobs enqueued{}, then {source}; {} not enqueued{}",
    enqueued.len(),
    enqueued.len() + duplicates.len() + not_enqueued.len() + uncertain.len(),
    skipped(duplicates.len()),
    not_enqueued.len(),
    doubt(uncertain.len())
)]
pub struct PartlyEnqueued {
    /// Ids on the queue, in input order.
    pub enqueued: Vec<String>,
    /// Ids skipped as duplicates of a job already queued (`unique_key`).
    pub duplicates: Vec<String>,
    /// Ids Redis refused, or that were never sent: not on the queue.
    pub not_enqueued: Vec<String>,
    /// Ids sent in the round trip whose reply was lost: they may or may
    /// not be on the queue.
    pub uncertain: Vec<String>,
    /// What stopped the batch.
    pub source: QueueError,
}

fn skipped(n: usize) -> String {
    match n {
        0 => String::new(),
        n => format!(" ({n} skipped as duplicates)"),
    }
}

fn doubt(n: usize) -> String {
    match n {
        0 => String::new(),
        n => format!(", {n} in doubt (the connection failed while they were sent)"),
    }
}

/// What is known of the round trip that failed.
pub(super) enum Sent<'a> {
    /// Its jobs' fates, one per job from `done` on.
    Fates(&'a [Fate]),
    /// Its reply was lost: this many jobs from `done` on are in doubt.
    Unknown(usize),
}

/// The error for a batch of `items` stopped by `source` after the first
/// `done` were handled (`duplicates` among them, by index, ascending) and
/// `sent` was tried: the plain queue error when nothing went in (nothing
/// half-enqueued), else [`PartlyEnqueued`].
pub(super) fn stopped(
    items: &[EnqueueItem],
    done: usize,
    duplicates: &[usize],
    sent: Sent<'_>,
    source: QueueError,
) -> ProducerError {
    let id = |i: &EnqueueItem| i.id.clone();
    let mut p = PartlyEnqueued {
        enqueued: Vec::new(),
        duplicates: Vec::new(),
        not_enqueued: Vec::new(),
        uncertain: Vec::new(),
        source,
    };
    for (i, item) in items[..done].iter().enumerate() {
        // `duplicates` is in input order.
        match duplicates.binary_search(&i).is_ok() {
            true => p.duplicates.push(id(item)),
            false => p.enqueued.push(id(item)),
        }
    }
    let rest = match sent {
        Sent::Fates(fates) => {
            for (item, fate) in items[done..].iter().zip(fates) {
                match fate {
                    Fate::Enqueued => p.enqueued.push(id(item)),
                    Fate::Duplicate => p.duplicates.push(id(item)),
                    Fate::Refused => p.not_enqueued.push(id(item)),
                }
            }
            done + fates.len()
        }
        Sent::Unknown(n) => {
            let end = (done + n).min(items.len());
            p.uncertain.extend(items[done..end].iter().map(id));
            end
        }
    };
    p.not_enqueued
        .extend(items[rest.min(items.len())..].iter().map(id));
    if p.enqueued.is_empty() && p.duplicates.is_empty() {
        return ProducerError::Queue(p.source);
    }
    ProducerError::PartlyEnqueued(Box::new(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(n: usize) -> Vec<EnqueueItem> {
        (0..n)
            .map(|i| EnqueueItem {
                id: format!("j{i}"),
                payload: "{}".into(),
                run_at: None,
                unique_key: None,
            })
            .collect()
    }

    fn refused() -> QueueError {
        QueueError::Protocol {
            op: "enqueue",
            message: "OOM".into(),
        }
    }

    #[test]
    fn nothing_in_is_the_plain_error() {
        let e = stopped(
            &items(3),
            0,
            &[],
            Sent::Fates(&[Fate::Refused; 3]),
            refused(),
        );
        assert!(matches!(e, ProducerError::Queue(_)), "{e}");
    }

    #[test]
    fn every_job_is_named_once_by_its_fate() {
        let fates = [Fate::Enqueued, Fate::Refused, Fate::Duplicate];
        let e = stopped(&items(6), 2, &[1], Sent::Fates(&fates), refused());
        let ProducerError::PartlyEnqueued(p) = e else {
            panic!("{e}")
        };
        assert_eq!(p.enqueued, ["j0", "j2"]);
        assert_eq!(p.duplicates, ["j1", "j4"]);
        assert_eq!(p.not_enqueued, ["j3", "j5"]);
        assert!(p.uncertain.is_empty());
        let text = p.to_string();
        assert!(
            text.starts_with("producer: 2 of 6 jobs enqueued (2 skipped as duplicates)"),
            "{text}"
        );
    }

    #[test]
    fn a_lost_reply_leaves_its_trip_in_doubt() {
        let e = stopped(&items(5), 1, &[], Sent::Unknown(2), refused());
        let ProducerError::PartlyEnqueued(p) = e else {
            panic!("{e}")
        };
        assert_eq!(p.enqueued, ["j0"]);
        assert_eq!(p.uncertain, ["j1", "j2"]);
        assert_eq!(p.not_enqueued, ["j3", "j4"]);
        assert!(p.to_string().contains("2 in doubt"), "{p}");
    }
}
