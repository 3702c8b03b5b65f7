//! A steady flow of `count` jobs through a failover, and the ledger that
//! counts each job's runs outside the Redis under test (a redis-server of
//! its own), so "lost" (no count) and "ran twice" (count > 1) are facts.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use toolq::job::Job;
use toolq::producer::Producer;

type Con = redis::aio::MultiplexedConnection;

/// A producer enqueueing one `count` job (running `job_ms`) every 5 ms,
/// and a sampler of the ledger's size every 20 ms, until stopped.
pub struct SteadyFlow {
    seen: Arc<Mutex<Vec<(String, Instant)>>>,
    refused: Arc<Mutex<usize>>,
    samples: Arc<Mutex<Vec<(Instant, u64)>>>,
    stop: tokio_util::sync::CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// What the flow saw once stopped.
pub struct Flowed {
    /// Each job the producer saw as enqueued, and when.
    pub seen: Vec<(String, Instant)>,
    /// Enqueue calls that failed.
    pub refused: usize,
    /// The instants the ledger grew: jobs ran.
    pub grew: Vec<Instant>,
}

impl SteadyFlow {
    pub async fn start(producer: Producer, queue: &str, job_ms: u64, ledger_url: &str) -> Self {
        let flow = SteadyFlow {
            seen: Arc::default(),
            refused: Arc::default(),
            samples: Arc::default(),
            stop: tokio_util::sync::CancellationToken::new(),
            tasks: Vec::new(),
        };
        let (queue, seen, refused, stop) = (
            queue.to_owned(),
            flow.seen.clone(),
            flow.refused.clone(),
            flow.stop.clone(),
        );
        let producing = tokio::spawn(async move {
            while !stop.is_cancelled() {
                let id = uuid::Uuid::now_v7().to_string();
                let args = json!({"key": format!("ledger:{id}"), "ms": job_ms});
                let mut job = Job::new("count", args);
                job.id = Some(id.clone());
                match producer.enqueue(&queue, job).await {
                    Ok(_) => seen.lock().unwrap().push((id, Instant::now())),
                    Err(_) => *refused.lock().unwrap() += 1,
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        let (samples, stop) = (flow.samples.clone(), flow.stop.clone());
        let mut c = super::raw(ledger_url).await;
        let sampling = tokio::spawn(async move {
            while !stop.is_cancelled() {
                let n: u64 = redis::cmd("DBSIZE").query_async(&mut c).await.unwrap_or(0);
                samples.lock().unwrap().push((Instant::now(), n));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        SteadyFlow {
            tasks: vec![producing, sampling],
            ..flow
        }
    }

    /// Jobs enqueued so far.
    pub fn enqueued(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Waits until `more` jobs beyond now went in.
    pub async fn enqueue_more(&self, more: usize) {
        let target = self.enqueued() + more;
        super::eventually(
            Duration::from_secs(30),
            "the producer enqueues again",
            || async move { self.enqueued() >= target },
        )
        .await;
    }

    pub async fn stop(self) -> Flowed {
        self.stop.cancel();
        for t in self.tasks {
            t.await.unwrap();
        }
        let grew = self
            .samples
            .lock()
            .unwrap()
            .windows(2)
            .filter(|w| w[1].1 > w[0].1)
            .map(|w| w[1].0)
            .collect();
        let seen = self.seen.lock().unwrap().clone();
        let refused = *self.refused.lock().unwrap();
        Flowed {
            seen,
            refused,
            grew,
        }
    }
}

/// Waits until at least `n` jobs ran.
pub async fn wait_runs(ledger: &Con, n: u64) {
    super::eventually(Duration::from_secs(30), "jobs flow", || {
        let mut c = ledger.clone();
        async move {
            let ran: u64 = redis::cmd("DBSIZE").query_async(&mut c).await.unwrap_or(0);
            ran >= n
        }
    })
    .await;
}

/// Each job's runs, once every job of `seen` ran or nothing moved for 10 s.
pub async fn runs(ledger: &mut Con, seen: &[(String, Instant)]) -> Vec<Option<u64>> {
    let keys: Vec<String> = seen.iter().map(|(id, _)| format!("ledger:{id}")).collect();
    let mut last = (0, Instant::now());
    loop {
        let counts: Vec<Option<u64>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(ledger)
            .await
            .unwrap();
        let ran = counts.iter().filter(|c| c.is_some()).count();
        if ran == seen.len() || last.1.elapsed() > Duration::from_secs(10) {
            return counts;
        }
        if ran != last.0 {
            last = (ran, Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The jobs of `seen` that never ran, and how many of those were enqueued
/// after `mark`.
pub fn lost(
    seen: &[(String, Instant)],
    counts: &[Option<u64>],
    mark: Instant,
) -> (Vec<String>, usize) {
    let never = || seen.iter().zip(counts).filter(|(_, c)| c.is_none());
    let ids = never().map(|((id, _), _)| id.clone()).collect();
    (ids, never().filter(|((_, at), _)| *at > mark).count())
}

/// Jobs that ran twice or more, enqueued or not in the producer's eyes.
pub async fn ran_twice(ledger: &mut Con) -> usize {
    let all: Vec<String> = redis::cmd("KEYS")
        .arg("ledger:*")
        .query_async(ledger)
        .await
        .unwrap();
    let counts: Vec<u64> = redis::cmd("MGET")
        .arg(&all)
        .query_async(ledger)
        .await
        .unwrap();
    counts.iter().filter(|n| **n > 1).count()
}

/// The longest time between two of `times` after `after`.
pub fn longest_gap(times: &[Instant], after: Instant) -> Duration {
    times
        .windows(2)
        .filter(|w| w[1] > after)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default()
}
