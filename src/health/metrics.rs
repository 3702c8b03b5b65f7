//! Every metric name toolq exports, in one place, so the Grafana dashboard and
//! alert rules in `ops/` can be checked against this list.
//!
//! Labels stay low-cardinality: `queue`, `tool`, `outcome`, `state`; never an id.

/// Counter `{queue, tool, outcome}`; outcome is `succeeded`, `retried` or `dead`.
pub const JOBS_FINISHED: &str = "toolq_jobs_finished_total";
/// Histogram `{queue, tool}`: one attempt's run time, seconds.
pub const JOB_DURATION: &str = "toolq_job_duration_seconds";
/// Histogram `{queue, tool}`: enqueue (or due time, if later) to the start
/// of the first attempt, seconds. Jobs without `enqueued_at` are not counted.
pub const JOB_WAIT: &str = "toolq_job_wait_seconds";
/// Gauge `{queue}`: attempts running now in this process.
pub const JOBS_IN_FLIGHT: &str = "toolq_jobs_in_flight";
/// Gauge: the process's concurrency cap.
pub const CONCURRENCY_LIMIT: &str = "toolq_concurrency_limit";
/// Counter `{queue, tool}`: attempts sent back to `delayed`.
pub const JOB_RETRIES: &str = "toolq_job_retries_total";
/// Counter `{queue, tool}`: jobs buried in `dead` (tool is `_invalid` for
/// payloads that were not a valid job or named an unknown tool, so producers
/// cannot create series; `_poisoned` for jobs recovered too often).
pub const JOBS_DEAD: &str = "toolq_jobs_dead_total";
/// Gauge `{queue, state}`: state is `pending`, `active`, `delayed` or `dead`.
pub const QUEUE_DEPTH: &str = "toolq_queue_depth";
/// Gauge `{queue}`: workers whose heartbeat is fresh.
pub const WORKERS_LIVE: &str = "toolq_workers_live";
/// Counter `{tool}`.
pub const CACHE_HITS: &str = "toolq_cache_hits_total";
/// Counter `{tool}`.
pub const CACHE_MISSES: &str = "toolq_cache_misses_total";
/// Counter `{tool}`: attempts delayed by the distributed rate limit.
pub const RATE_LIMITED: &str = "toolq_rate_limited_total";
/// Counter: failed Redis calls (connection or server errors).
pub const REDIS_ERRORS: &str = "toolq_redis_errors_total";
/// Histogram: Redis PING round-trip time, seconds.
pub const REDIS_RTT: &str = "toolq_redis_rtt_seconds";
/// Gauge: `used_memory` from `INFO memory`, bytes.
pub const REDIS_MEMORY: &str = "toolq_redis_memory_used_bytes";
/// Counter `{queue}`: jobs moved back to pending from dead workers.
pub const JOBS_RECOVERED: &str = "toolq_jobs_recovered_total";
/// Counter `{queue}`: outcomes dropped because the job was no longer ours.
pub const STALE_ACKS: &str = "toolq_stale_acks_total";
/// Counter `{queue}`: outcome writes Redis answered with an error (a
/// refused write, not an outage); a few in a row stop the worker.
pub const SETTLE_REFUSED: &str = "toolq_settle_refused_total";
/// Counter `{server}`: times an MCP server process was started again.
pub const MCP_RESTARTS: &str = "toolq_mcp_server_restarts_total";
/// Gauge `{queue}`: 1 while an operator has the queue paused.
pub const QUEUE_PAUSED: &str = "toolq_queue_paused";
/// Counter `{route,status}`: gateway (`toolq serve`) requests answered.
pub const HTTP_REQUESTS: &str = "toolq_http_requests_total";
/// Histogram `{route}`: gateway request time, seconds (a waiting
/// `/execute` includes the job's run).
pub const HTTP_REQUEST_DURATION: &str = "toolq_http_request_duration_seconds";
/// Gauge: 1 while the worker runs.
pub const WORKER_UP: &str = "toolq_worker_up";
/// Gauge `{version}`: always 1; carries the build version.
pub const WORKER_INFO: &str = "toolq_worker_info";

/// Every name above, for tests that check dashboards against it.
pub const ALL: &[&str] = &[
    JOBS_FINISHED,
    JOB_DURATION,
    JOB_WAIT,
    JOBS_IN_FLIGHT,
    CONCURRENCY_LIMIT,
    JOB_RETRIES,
    JOBS_DEAD,
    QUEUE_DEPTH,
    WORKERS_LIVE,
    CACHE_HITS,
    CACHE_MISSES,
    RATE_LIMITED,
    REDIS_ERRORS,
    REDIS_RTT,
    REDIS_MEMORY,
    JOBS_RECOVERED,
    STALE_ACKS,
    SETTLE_REFUSED,
    MCP_RESTARTS,
    QUEUE_PAUSED,
    HTTP_REQUESTS,
    HTTP_REQUEST_DURATION,
    WORKER_UP,
    WORKER_INFO,
];
