//! Wires the `metrics` facade to a Prometheus recorder, once per process.
//!
//! The crate's own HTTP listener is left off: `/metrics` shares the side port
//! with the probes, so one address serves everything a platform scrapes.

use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::Duration;

use ::metrics::{describe_counter, describe_gauge, describe_histogram, gauge, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use super::metrics::*;
use super::HealthError;

/// Job run and wait times: a calculator call takes a millisecond, a slow HTTP
/// tool or a backed-up queue takes minutes; the buckets cover both ends.
pub const JOB_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0, 600.0,
];

/// Redis PING on a LAN is tens of microseconds; the top buckets only matter
/// when Redis is in trouble.
pub const REDIS_RTT_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Histograms not listed above still get buckets rather than summaries, so
/// they can be aggregated across workers.
const DEFAULT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 300.0,
];

/// Histogram samples are kept one by one until drained into their buckets,
/// by a scrape or by this upkeep, so the interval bounds the memory they
/// hold: a worker records two per job, and at 120,000 jobs/s a worker that
/// drained them every 250 ms kept 0.4–0.9 MB more anonymous memory than one
/// draining every 50 ms. Draining more often costs no more work per sample.
const UPKEEP_EVERY: Duration = Duration::from_millis(50);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
/// Serializes first installs, so two racing callers cannot both try to set
/// the global recorder and have one of them fail.
static INSTALL: Mutex<()> = Mutex::new(());

/// Installs the global Prometheus recorder; later calls return the first
/// handle, because the `metrics` facade accepts only one recorder per process
/// and tests start many servers in one process.
pub fn install_recorder() -> Result<PrometheusHandle, HealthError> {
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let _guard = INSTALL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let handle = builder()
        .map_err(|e| HealthError::Recorder(e.to_string()))?
        .install_recorder()
        .map_err(|e| HealthError::Recorder(e.to_string()))?;
    spawn_upkeep(handle.clone());
    Ok(HANDLE.get_or_init(|| handle).clone())
}

fn builder() -> Result<PrometheusBuilder, metrics_exporter_prometheus::BuildError> {
    PrometheusBuilder::new()
        .set_buckets(DEFAULT_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(JOB_DURATION.into()), JOB_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(JOB_WAIT.into()), JOB_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(REDIS_RTT.into()), REDIS_RTT_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(HTTP_REQUEST_DURATION.into()), JOB_BUCKETS)
}

/// A plain thread rather than a task: the recorder may be installed before
/// (or without) a Tokio runtime, and upkeep must outlive any one runtime.
fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = thread::Builder::new()
        .name("toolq-metrics-upkeep".into())
        .spawn(move || loop {
            thread::sleep(UPKEEP_EVERY);
            handle.run_upkeep();
        });
    if let Err(e) = spawned {
        // Scrapes drain histograms too, so metrics still work; only memory
        // between scrapes is unbounded.
        tracing::warn!(error = %e, "health.recorder: no upkeep thread");
    }
}

/// Help texts make `/metrics` self-explaining for whoever builds the next
/// dashboard; they are emitted only for metrics that have a value.
pub fn describe_metrics() {
    describe_counter!(
        JOBS_FINISHED,
        "Jobs finished, by outcome (succeeded, retried, dead)."
    );
    describe_histogram!(JOB_DURATION, Unit::Seconds, "Run time of one attempt.");
    describe_histogram!(
        JOB_WAIT,
        Unit::Seconds,
        "Time from enqueue (or due time) to start."
    );
    describe_gauge!(JOBS_IN_FLIGHT, "Attempts running now in this process.");
    describe_gauge!(CONCURRENCY_LIMIT, "This process's concurrency cap.");
    describe_counter!(JOB_RETRIES, "Attempts sent back to the delayed set.");
    describe_counter!(JOBS_DEAD, "Jobs buried in the dead set.");
    describe_gauge!(
        QUEUE_DEPTH,
        "Jobs per queue and state (pending, active, delayed, dead)."
    );
    describe_gauge!(WORKERS_LIVE, "Workers whose heartbeat is fresh.");
    describe_counter!(CACHE_HITS, "Tool calls served from the Redis cache.");
    describe_counter!(CACHE_MISSES, "Tool calls that missed the Redis cache.");
    describe_counter!(
        RATE_LIMITED,
        "Attempts delayed by the distributed rate limit."
    );
    describe_counter!(
        REDIS_ERRORS,
        "Failed Redis calls (connection or server errors)."
    );
    describe_histogram!(REDIS_RTT, Unit::Seconds, "Redis PING round-trip time.");
    describe_gauge!(
        REDIS_MEMORY,
        Unit::Bytes,
        "Redis used_memory from INFO memory."
    );
    describe_counter!(
        JOBS_RECOVERED,
        "Jobs moved back to pending from dead workers."
    );
    describe_counter!(
        STALE_ACKS,
        "Outcomes dropped because the job was no longer ours."
    );
    describe_counter!(
        SETTLE_REFUSED,
        "Outcome writes Redis refused with an error; a few in a row stop the worker."
    );
    describe_counter!(
        MCP_RESTARTS,
        "Times an MCP server process was started again after it exited."
    );
    describe_gauge!(QUEUE_PAUSED, "1 while an operator has the queue paused.");
    describe_counter!(
        HTTP_REQUESTS,
        "Gateway requests answered, by route pattern and status code."
    );
    describe_histogram!(
        HTTP_REQUEST_DURATION,
        Unit::Seconds,
        "Gateway request time; a waiting /execute includes the job's run."
    );
    describe_gauge!(WORKER_UP, "1 while the worker runs.");
    describe_gauge!(
        WORKER_INFO,
        "Always 1; the version label carries the build."
    );
}

/// `toolq_worker_up` lets alerts tell "worker gone" from "no jobs"; the info
/// gauge lets dashboards show which build each worker runs.
pub fn mark_worker_up(version: &str) {
    gauge!(WORKER_UP).set(1.0);
    gauge!(WORKER_INFO, "version" => version.to_string()).set(1.0);
}

/// Called on graceful stop, so the last scrape before exit shows the worker
/// leaving rather than a gap that looks like a crash.
pub fn mark_worker_down() {
    gauge!(WORKER_UP).set(0.0);
}

/// Exported so saturation (`in_flight / limit`) can be graphed per worker.
pub fn set_concurrency_limit(limit: usize) {
    gauge!(CONCURRENCY_LIMIT).set(limit as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_lists_are_sorted_and_cover_the_brief() {
        for b in [JOB_BUCKETS, REDIS_RTT_BUCKETS, DEFAULT_BUCKETS] {
            assert!(b.windows(2).all(|w| w[0] < w[1]));
        }
        assert_eq!(JOB_BUCKETS.first(), Some(&0.0005));
        assert_eq!(JOB_BUCKETS.last(), Some(&600.0));
        assert!(REDIS_RTT_BUCKETS.iter().filter(|b| **b < 0.001).count() >= 4);
    }

    #[test]
    fn second_install_returns_the_first_handle() {
        let a = install_recorder().unwrap();
        let b = install_recorder().unwrap();
        describe_metrics();
        mark_worker_up("9.9.9-unit");
        set_concurrency_limit(7);
        ::metrics::histogram!(REDIS_RTT).record(0.00007);
        // Both handles read the same registry.
        let (ra, rb) = (a.render(), b.render());
        for r in [&ra, &rb] {
            assert!(r.contains("toolq_worker_up 1"), "{r}");
            assert!(
                r.contains("toolq_worker_info{version=\"9.9.9-unit\"} 1"),
                "{r}"
            );
            assert!(r.contains("toolq_concurrency_limit 7"), "{r}");
            assert!(
                r.contains("# HELP toolq_worker_up 1 while the worker runs."),
                "{r}"
            );
        }
        assert!(
            rb.contains("toolq_redis_rtt_seconds_bucket{le=\"0.0001\"} 1"),
            "{rb}"
        );
        mark_worker_down();
        assert!(a.render().contains("toolq_worker_up 0"));
    }
}
