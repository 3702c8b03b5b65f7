//! `toolq bench --gateway URL --token-file FILE`: what the HTTP gateway
//! costs a call. The same `calculator` jobs go, at the same fixed rate (open
//! loop: each request is sent at its time whether or not earlier ones have
//! answered), through `POST /execute` waiting for the result, through
//! [`Producer::enqueue_and_wait`], and through [`Producer::enqueue`] with one
//! shared completion list (how the gateway itself waits), in turn within
//! each run; then the producer's one-job-per-call enqueue rate. The gateway
//! and a worker serving `default` are already running (see
//! `scripts/bench-gateway.sh`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::latency::{percentiles, Percentiles};
use super::{median, BenchError};
use crate::job::Job;
use crate::producer::{BatchOptions, Producer, ProducerError};
use crate::queue::QueueKeys;

/// What to measure.
#[derive(Debug, Clone)]
pub struct GatewayBench {
    /// `http://HOST:PORT` of a running `toolq serve`.
    pub url: String,
    /// A bearer token that may run `calculator` on `default` and wait.
    pub token: String,
    /// Calls per second of each path.
    pub rate: u32,
    /// How long each path is measured per run.
    pub duration: Duration,
    pub runs: usize,
    /// Tasks of the enqueue-rate measurement.
    pub concurrency: usize,
}

const QUEUE: &str = "default";
const TOOL: &str = "calculator";
const WAIT_MS: u64 = 5000;
/// The queue of the enqueue-rate measurement: no worker serves it, so the
/// worker does not compete for the CPU; emptied afterwards.
const ENQUEUE_QUEUE: &str = "bench-enqueue";
const ENQUEUE_FOR: Duration = Duration::from_secs(5);

fn args() -> Value {
    json!({"expression": "6*7"})
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Execute,
    EnqueueAndWait,
    SharedList,
}

impl Path {
    const ALL: [Path; 3] = [Path::Execute, Path::EnqueueAndWait, Path::SharedList];

    fn label(self) -> &'static str {
        match self {
            Path::Execute => "POST /execute, wait_ms 5000",
            Path::EnqueueAndWait => "Producer::enqueue_and_wait",
            Path::SharedList => "Producer::enqueue + shared list",
        }
    }
}

/// One path in one run.
struct PathRun {
    latency: Percentiles,
    /// Calls that did not end in a `succeeded` result: non-200 answers,
    /// transport errors, timeouts.
    failed: usize,
    /// What the failures were (`status 503`, `error: …`), counted.
    why: HashMap<String, usize>,
    /// The rate the sender achieved.
    sent_per_s: f64,
}

/// How one call ended: its latency in ms, or why it failed.
type Outcome = Result<f64, String>;

pub async fn run(b: &GatewayBench, producer: &Producer) -> Result<(), BenchError> {
    let http = reqwest::Client::builder()
        .use_rustls_tls()
        .timeout(Duration::from_millis(WAIT_MS + 10_000))
        .build()
        .map_err(|e| BenchError::Spawn(format!("HTTP client: {e}")))?;
    let shared = SharedList::start(producer.clone());
    let total = (f64::from(b.rate) * b.duration.as_secs_f64()) as usize;
    println!(
        "gateway  {}: `{TOOL}` {} on queue {QUEUE}, {}/s for {:.0} s per path (open loop, {total} calls), medians of {} runs",
        b.url,
        args(),
        b.rate,
        b.duration.as_secs_f64(),
        b.runs
    );
    // Connections, the catalog cache and the worker warm up first.
    for path in Path::ALL {
        let w = measure(b, path, &http, producer, &shared, b.rate as usize).await;
        if w.failed > 0 {
            return Err(BenchError::Incomplete(format!(
                "warm-up of {}: {} of {} calls failed: {:?}",
                path.label(),
                w.failed,
                b.rate,
                w.why
            )));
        }
    }
    let mut runs: Vec<Vec<PathRun>> = Vec::new();
    for i in 0..b.runs {
        let mut this = Vec::new();
        for path in Path::ALL {
            let r = measure(b, path, &http, producer, &shared, total).await;
            eprintln!(
                "  run {}: {:<32} p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, failed {}, sent {:.0}/s",
                i + 1,
                path.label(),
                r.latency.p50,
                r.latency.p99,
                r.latency.max,
                r.failed,
                r.sent_per_s
            );
            this.push(r);
        }
        runs.push(this);
    }
    println!("         path                              p50 ms   p99 ms   max ms   failed   runs p50 / p99 ms");
    for (k, path) in Path::ALL.iter().enumerate() {
        let of = |f: fn(&PathRun) -> f64| median(runs.iter().map(|r| f(&r[k])));
        let list = |f: fn(&PathRun) -> f64| {
            runs.iter()
                .map(|r| format!("{:.2}", f(&r[k])))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let failed: usize = runs.iter().map(|r| r[k].failed).sum();
        println!(
            "         {:<32} {:>7.2}  {:>7.2}  {:>7.2}   {:>6}   {} / {}",
            path.label(),
            of(|r| r.latency.p50),
            of(|r| r.latency.p99),
            of(|r| r.latency.max),
            failed,
            list(|r| r.latency.p50),
            list(|r| r.latency.p99),
        );
        let mut why: HashMap<&str, usize> = HashMap::new();
        for r in &runs {
            for (w, n) in &r[k].why {
                *why.entry(w.as_str()).or_default() += n;
            }
        }
        if !why.is_empty() {
            let mut why: Vec<_> = why.into_iter().collect();
            why.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            for (w, n) in why.iter().take(5) {
                println!("           {n} × {w}");
            }
        }
        let slow = runs
            .iter()
            .map(|r| r[k].sent_per_s)
            .fold(f64::INFINITY, f64::min);
        if slow < 0.95 * f64::from(b.rate) {
            println!("           the sender fell behind: {slow:.0}/s at worst");
        }
    }
    println!("         failed = not a `succeeded` result: non-200 answers, errors and timeouts, all runs");

    let mut rates = Vec::new();
    for _ in 0..b.runs {
        rates.push(enqueue_rate(producer, b.concurrency).await?);
    }
    println!(
        "enqueue  Producer::enqueue, one job per call, {} tasks, {} s: {:.0} jobs/s   runs: {}",
        b.concurrency,
        ENQUEUE_FOR.as_secs(),
        median(rates.iter().copied()),
        rates
            .iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// Sends `n` calls along `path` at the bench's rate, each at its own time.
async fn measure(
    b: &GatewayBench,
    path: Path,
    http: &reqwest::Client,
    producer: &Producer,
    shared: &Arc<SharedList>,
    n: usize,
) -> PathRun {
    let mut calls = Vec::with_capacity(n);
    let start = Instant::now();
    let mut last = start;
    for i in 0..n {
        let due = start + Duration::from_secs_f64(i as f64 / f64::from(b.rate));
        tokio::time::sleep_until(due.into()).await;
        last = Instant::now();
        let call = match path {
            Path::Execute => tokio::spawn(execute(http.clone(), b.url.clone(), b.token.clone())),
            Path::EnqueueAndWait => tokio::spawn(enqueue_and_wait(producer.clone())),
            Path::SharedList => tokio::spawn(shared.clone().call()),
        };
        calls.push(call);
    }
    let sent_per_s = if n > 1 {
        (n - 1) as f64 / last.duration_since(start).as_secs_f64().max(1e-9)
    } else {
        f64::from(b.rate)
    };
    let mut ms = Vec::with_capacity(n);
    let mut why: HashMap<String, usize> = HashMap::new();
    for call in calls {
        match call.await {
            Ok(Ok(t)) => ms.push(t),
            Ok(Err(w)) => *why.entry(w).or_default() += 1,
            Err(e) => *why.entry(format!("task: {e}")).or_default() += 1,
        }
    }
    PathRun {
        failed: n - ms.len(),
        latency: percentiles(&mut ms),
        why,
        sent_per_s,
    }
}

/// Request sent → `200` with a `succeeded` result read in full.
async fn execute(http: reqwest::Client, url: String, token: String) -> Outcome {
    let body = json!({"tool": TOOL, "args": args(), "wait_ms": WAIT_MS});
    let t = Instant::now();
    let response = http
        .post(format!("{url}/execute"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("error: {}", without_url(&e)))?;
    let status = response.status();
    let text = response
        .bytes()
        .await
        .map_err(|e| format!("error: {}", without_url(&e)))?;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    if status != reqwest::StatusCode::OK {
        return Err(format!("status {}", status.as_u16()));
    }
    succeeded(&text).map(|()| ms)
}

fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(url) = e.url() {
        s = s.replace(url.as_str(), "URL");
    }
    s
}

fn succeeded(text: &[u8]) -> Result<(), String> {
    let v: Value = serde_json::from_slice(text).map_err(|_| "not JSON".to_owned())?;
    match v["status"].as_str() {
        Some("succeeded") => Ok(()),
        other => Err(format!("result {}", other.unwrap_or("without status"))),
    }
}

/// Enqueue → the result, through the producer's own wait (one blocking
/// connection per call).
async fn enqueue_and_wait(producer: Producer) -> Outcome {
    let t = Instant::now();
    let r = producer
        .enqueue_and_wait(
            QUEUE,
            Job::new(TOOL, args()),
            &BatchOptions::default(),
            Duration::from_millis(WAIT_MS),
        )
        .await
        .map_err(|e| match e {
            ProducerError::Timeout { .. } => "no result within the wait".to_owned(),
            e => format!("error: {e}"),
        })?;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    if r.status != "succeeded" {
        return Err(format!("result {}", r.status));
    }
    Ok(ms)
}

type Waiters = HashMap<String, oneshot::Sender<Option<String>>>;

/// Every call's job tagged with one batch id; one task blocks on its
/// notification list and hands each result to its caller (the gateway's
/// `Completions`, without HTTP around it).
struct SharedList {
    producer: Producer,
    batch: String,
    waiters: Mutex<Waiters>,
}

impl SharedList {
    fn start(producer: Producer) -> Arc<Self> {
        let shared = Arc::new(SharedList {
            producer,
            batch: format!("bench-{}", uuid::Uuid::new_v4().simple()),
            waiters: Mutex::new(HashMap::new()),
        });
        // Ends with the process (the bench returns right after).
        tokio::spawn(shared.clone().listen());
        shared
    }

    async fn listen(self: Arc<Self>) {
        let broker = self.producer.broker().clone();
        let keys = QueueKeys::new(QUEUE);
        let mut conn = None;
        loop {
            let c = match &mut conn {
                Some(c) => c,
                None => match broker.dedicated(Duration::from_secs(2)).await {
                    Ok(c) => conn.insert(c),
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let ids = match broker
                .pop_finished(c, &keys, &self.batch, 1000, Duration::from_secs(1))
                .await
            {
                Ok(ids) => ids,
                Err(_) => {
                    conn = None;
                    continue;
                }
            };
            let wanted: Vec<String> = match self.waiters.lock() {
                Ok(w) => ids.into_iter().filter(|id| w.contains_key(id)).collect(),
                Err(_) => return,
            };
            if wanted.is_empty() {
                continue;
            }
            let Ok(texts) = broker.results(&keys, &wanted).await else {
                continue;
            };
            if let Ok(mut w) = self.waiters.lock() {
                for (id, text) in wanted.into_iter().zip(texts) {
                    if let Some(tx) = w.remove(&id) {
                        let _ = tx.send(text);
                    }
                }
            }
        }
    }

    /// Enqueue → the result handed over by the listener.
    async fn call(self: Arc<Self>) -> Outcome {
        let id = uuid::Uuid::now_v7().to_string();
        let mut job = Job::new(TOOL, args());
        job.id = Some(id.clone());
        job.batch = Some(self.batch.clone());
        let (tx, rx) = oneshot::channel();
        if let Ok(mut w) = self.waiters.lock() {
            w.insert(id.clone(), tx);
        }
        let t = Instant::now();
        let sent = self.producer.enqueue(QUEUE, job).await;
        let got = match sent {
            Ok(_) => tokio::time::timeout(Duration::from_millis(WAIT_MS), rx).await,
            Err(e) => {
                self.forget(&id);
                return Err(format!("error: {e}"));
            }
        };
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        self.forget(&id);
        match got {
            Ok(Ok(Some(text))) => succeeded(text.as_bytes()).map(|()| ms),
            Ok(Ok(None)) => Err("no result stored".into()),
            Ok(Err(_)) => Err("listener gone".into()),
            Err(_) => Err("no result within the wait".into()),
        }
    }

    fn forget(&self, id: &str) {
        if let Ok(mut w) = self.waiters.lock() {
            w.remove(id);
        }
    }
}

/// Jobs per second of `concurrency` tasks each enqueueing one job per call
/// for [`ENQUEUE_FOR`], on a queue no worker serves (emptied afterwards).
async fn enqueue_rate(producer: &Producer, concurrency: usize) -> Result<f64, BenchError> {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let p = producer.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while start.elapsed() < ENQUEUE_FOR {
                p.enqueue(ENQUEUE_QUEUE, Job::new(TOOL, args())).await?;
                n += 1;
            }
            Ok::<u64, crate::producer::ProducerError>(n)
        }));
    }
    let mut n = 0;
    for t in tasks {
        n += t.await.map_err(|e| BenchError::Spawn(e.to_string()))??;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    let keys = QueueKeys::new(ENQUEUE_QUEUE);
    producer
        .broker()
        .query::<()>("bench", redis::cmd("DEL").arg(&keys.pending))
        .await?;
    Ok(rate)
}
