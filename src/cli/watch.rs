//! `toolq submit --wait`: the latest progress report of the batch's jobs,
//! read every half second for the progress line. Only for batches small
//! enough that reading every job's report is cheap (one `MGET`).

use std::time::Duration;

use tokio::task::JoinHandle;

use crate::producer::{Producer, Submitted};

use super::progress::JobLine;

/// Largest batch whose jobs' progress is watched.
pub const WATCH_MAX_JOBS: usize = 100;
const WATCH_EVERY: Duration = Duration::from_millis(500);
/// Longest report shown, in characters, so the line fits a terminal.
const SHOWN_CHARS: usize = 50;

/// Starts the watcher (abort it when the wait ends); `None` for a batch
/// over [`WATCH_MAX_JOBS`].
pub fn spawn(
    producer: &Producer,
    submitted: &Submitted,
    mut line: JobLine,
) -> Option<JoinHandle<()>> {
    if submitted.ids.len() > WATCH_MAX_JOBS {
        return None;
    }
    let producer = producer.clone();
    let queue = submitted.queue.clone();
    let ids = submitted.ids.clone();
    Some(tokio::spawn(async move {
        let mut shown = String::new();
        loop {
            // A failed read only skips a refresh: the wait itself reports
            // Redis trouble.
            if let Ok(reports) = producer.progress_many(&queue, &ids).await {
                let text = latest(&ids, reports);
                if text != shown {
                    line.set(text.clone());
                    shown = text;
                }
            }
            tokio::time::sleep(WATCH_EVERY).await;
        }
    }))
}

/// The most recent report of a job not yet at 100%, with the job's id when
/// the batch has several.
fn latest(ids: &[String], reports: Vec<Option<crate::job::Progress>>) -> String {
    let newest = ids
        .iter()
        .zip(reports)
        .filter_map(|(id, p)| p.map(|p| (id, p)))
        .filter(|(_, p)| p.fraction < 1.0)
        .max_by_key(|(_, p)| p.updated_at);
    let text = match newest {
        Some((id, p)) if ids.len() > 1 => format!("{id}: {}", p.line()),
        Some((_, p)) => p.line(),
        None => return String::new(),
    };
    let mut shown: String = text.chars().take(SHOWN_CHARS).collect();
    if shown.len() < text.len() {
        shown.push('…');
    }
    super::safe(&shown)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::Progress;

    fn report(fraction: f64, at: u64) -> Option<Progress> {
        Some(Progress {
            fraction,
            message: format!("at {at}"),
            attempt: 0,
            updated_at: at,
        })
    }

    #[test]
    fn shows_the_newest_unfinished_report() {
        let ids = vec!["a".to_owned(), "b".to_owned(), "c".to_owned()];
        let text = latest(
            &ids,
            vec![report(0.5, 10), report(0.2, 30), report(1.0, 40)],
        );
        assert_eq!(text, "b: 20% at 30");
        assert_eq!(latest(&ids[..1], vec![report(0.5, 10)]), "50% at 10");
        assert_eq!(latest(&ids[..1], vec![None]), "");
        let long = Some(Progress {
            message: "x".repeat(300),
            ..report(0.5, 1).unwrap()
        });
        assert_eq!(
            latest(&ids[..1], vec![long]).chars().count(),
            SHOWN_CHARS + 1
        );
    }
}
