//! The latency measurement: `clock` jobs enqueued one by one at a steady
//! rate while a worker process runs; enqueue→start from the tool's own
//! timestamp, enqueue→result from the batch completion list.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use super::drain::{start_worker, stop, wait_for};
use super::BenchError;
use crate::job::Job;
use crate::producer::Producer;
use crate::queue::QueueKeys;
use crate::tools::unix_us;

/// p50, p99 and max, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Debug, Clone)]
pub struct LatencyRun {
    pub rate: u32,
    pub jobs: usize,
    pub to_start: Percentiles,
    pub to_result: Percentiles,
}

pub async fn run(
    exe: &Path,
    producer: &Producer,
    url: &str,
    rate: u32,
    duration: Duration,
    concurrency: usize,
) -> Result<LatencyRun, BenchError> {
    let queue = format!("lat-{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let keys = QueueKeys::new(&queue);
    let batch = uuid::Uuid::now_v7().to_string();
    let mut worker = start_worker(exe, producer, url, &keys, concurrency).await?;
    // Let the worker settle into its idle wait.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let arrivals = Arc::new(Mutex::new(HashMap::with_capacity(1024)));
    let listener = tokio::spawn(listen(
        producer.clone(),
        keys.batch(&batch),
        arrivals.clone(),
    ));
    let total = (rate as f64 * duration.as_secs_f64()) as usize;
    let sent = send_at_rate(url, &queue, Some(&batch), rate, total).await;
    let sent = match sent {
        Ok(s) => s,
        Err(e) => {
            listener.abort();
            stop(&mut worker);
            return Err(e);
        }
    };
    let all_in = wait_for(Duration::from_secs(60), || async {
        arrivals.lock().map(|a| a.len() >= total).unwrap_or(true)
    })
    .await;
    listener.abort();
    stop(&mut worker);
    all_in?;
    let arrivals = arrivals.lock().map(|a| a.clone()).unwrap_or_default();
    let ids: Vec<String> = sent.keys().cloned().collect();
    let results = producer.broker().results(&keys, &ids).await?;
    let (mut to_start, mut to_result) = (Vec::new(), Vec::new());
    for (id, r) in ids.iter().zip(results) {
        let sent_at = sent[id];
        if let Some(started) = r
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["output"]["unix_us"].as_u64())
        {
            to_start.push(started.saturating_sub(sent_at) as f64 / 1000.0);
        }
        if let Some(at) = arrivals.get(id) {
            to_result.push(at.saturating_sub(sent_at) as f64 / 1000.0);
        }
    }
    if to_start.len() < total {
        return Err(BenchError::Incomplete(format!(
            "{} of {total} latency jobs finished",
            to_start.len()
        )));
    }
    Ok(LatencyRun {
        rate,
        jobs: total,
        to_start: percentiles(&mut to_start),
        to_result: percentiles(&mut to_result),
    })
}

/// Enqueues `total` `clock` jobs one by one, `rate` a second, each in
/// `batch` when given; the id of each, and when its enqueue began.
///
/// From a thread, runtime and connection of its own, as a service's
/// producer would: on the bench's main thread every command first woke a
/// runtime thread to write it (0.1 ms more at the median, against a
/// producer in C, 2026-12-04).
pub async fn send_at_rate(
    url: &str,
    queue: &str,
    batch: Option<&str>,
    rate: u32,
    total: usize,
) -> Result<HashMap<String, u64>, BenchError> {
    let (url, queue) = (url.to_owned(), queue.to_owned());
    let batch = batch.map(str::to_owned);
    let (done, sent) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let sending = async {
            let producer = Producer::connect(&url, None)?;
            let mut sent = HashMap::with_capacity(total);
            let start = Instant::now();
            for i in 0..total {
                let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
                tokio::time::sleep_until(due.into()).await;
                let mut job = Job::new("clock", json!({}));
                job.batch = batch.clone();
                let t = unix_us();
                let id = producer.enqueue(&queue, job).await?;
                sent.insert(id, t);
            }
            Ok(sent)
        };
        let result = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| BenchError::Spawn(e.to_string()))
            .and_then(|rt| rt.block_on(sending));
        let _ = done.send(result);
    });
    sent.await
        .map_err(|_| BenchError::Incomplete("latency: the sending thread died".into()))?
}

/// Pops finished job ids off the batch list as they arrive.
async fn listen(producer: Producer, list: String, arrivals: Arc<Mutex<HashMap<String, u64>>>) {
    let Ok(mut conn) = producer.broker().dedicated(Duration::from_secs(1)).await else {
        return;
    };
    loop {
        let popped: Result<Option<(String, String)>, _> = redis::cmd("BLPOP")
            .arg(&list)
            .arg(0.5)
            .query_async(&mut conn)
            .await;
        match popped {
            Ok(Some((_, id))) => {
                let at = unix_us();
                if let Ok(mut a) = arrivals.lock() {
                    a.insert(id, at);
                }
            }
            Ok(None) => {}
            Err(_) => return,
        }
    }
}

pub fn percentiles(values: &mut [f64]) -> Percentiles {
    if values.is_empty() {
        return Percentiles {
            p50: f64::NAN,
            p99: f64::NAN,
            max: f64::NAN,
        };
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    Percentiles {
        p50: at(0.50),
        p99: at(0.99),
        max: values[values.len() - 1],
    }
}
