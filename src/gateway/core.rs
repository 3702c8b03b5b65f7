//! What every front end of the gateway (REST and MCP) does with a call:
//! check the caller's rights and the arguments against the catalog, enqueue
//! a durable job, and wait for its result up to a deadline.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::api::ApiError;
use super::auth::Principal;
use super::completions::Completions;
use crate::config::ServeConfig;
use crate::job::{Job, JobResult};
use crate::producer::{Catalog, Producer};
use crate::tools::RateLimit;

/// How long a read of the catalog is reused: workers publish on start and
/// stop, so a second of staleness costs nothing and saves a Redis read per
/// request.
const CATALOG_FRESH: Duration = Duration::from_secs(1);

/// A tool call as the front ends hand it over.
pub struct Call {
    pub tool: String,
    pub args: Value,
    pub queue: String,
    pub timeout_ms: Option<u64>,
    pub max_attempts: Option<u32>,
    pub id: Option<String>,
    pub meta: Option<Value>,
}

/// How a call ended within its wait.
pub enum Reply {
    /// The final result document, exactly as the worker stored it.
    Finished { raw: String },
    /// Still queued or running when the wait ended.
    Pending { id: String },
}

pub struct Gateway {
    pub producer: Producer,
    pub completions: Arc<Completions>,
    pub serve: ServeConfig,
    /// The workers' heartbeat timeout: who counts as live.
    pub heartbeat_timeout_ms: u64,
    rate_limit: Option<RateLimit>,
    catalog: Mutex<Option<(Instant, Arc<Catalog>)>>,
    /// MCP tool calls running now: shutdown ends MCP sessions only once
    /// this is zero.
    mcp_calls: AtomicUsize,
}

/// Counts one MCP call as in flight while it lives.
pub struct McpCallGuard<'a>(&'a AtomicUsize);

impl Drop for McpCallGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Gateway {
    pub fn new(
        producer: Producer,
        completions: Arc<Completions>,
        serve: ServeConfig,
        heartbeat_timeout_ms: u64,
        rate_limit: Option<RateLimit>,
    ) -> Self {
        Gateway {
            producer,
            completions,
            serve,
            heartbeat_timeout_ms,
            rate_limit,
            catalog: Mutex::new(None),
            mcp_calls: AtomicUsize::new(0),
        }
    }

    pub fn mcp_call(&self) -> McpCallGuard<'_> {
        self.mcp_calls.fetch_add(1, Ordering::Relaxed);
        McpCallGuard(&self.mcp_calls)
    }

    pub fn mcp_calls_in_flight(&self) -> usize {
        self.mcp_calls.load(Ordering::Relaxed)
    }

    /// The catalog, read at most once per [`CATALOG_FRESH`].
    pub async fn catalog(&self) -> Result<Arc<Catalog>, ApiError> {
        if let Ok(cached) = self.catalog.lock() {
            if let Some((at, c)) = cached.as_ref() {
                if at.elapsed() < CATALOG_FRESH {
                    return Ok(c.clone());
                }
            }
        }
        let fresh = Arc::new(self.producer.catalog().await?);
        if let Ok(mut cached) = self.catalog.lock() {
            *cached = Some((Instant::now(), fresh.clone()));
        }
        Ok(fresh)
    }

    /// Counts one request against the caller's rate limit (`serve.rate_limit`),
    /// shared by every gateway through Redis.
    pub async fn admit(&self, who: &Principal) -> Result<(), ApiError> {
        let Some(limit) = self.rate_limit else {
            return Ok(());
        };
        let token = uuid::Uuid::new_v4().simple().to_string();
        let slot = self
            .producer
            .broker()
            .rate_limit_take(
                &format!("gateway:{}", who.subject),
                limit.max,
                limit.per,
                &token,
            )
            .await?;
        match slot {
            crate::queue::RateSlot::Taken => Ok(()),
            crate::queue::RateSlot::FullUntil(at) => {
                let wait_ms = at.saturating_sub(crate::job::now_ms());
                Err(ApiError::RateLimited {
                    retry_after_s: wait_ms.div_ceil(1000).max(1),
                })
            }
        }
    }

    /// 403 unless the token may run `tool` on `queue`.
    pub fn authorize(&self, who: &Principal, tool: &str, queue: &str) -> Result<(), ApiError> {
        if !who.grant.may_use_queue(queue) {
            return Err(ApiError::Forbidden(format!(
                "this token may not use queue `{queue}`"
            )));
        }
        if !who.grant.may_use_tool(tool) {
            return Err(ApiError::Forbidden(format!(
                "this token may not use tool `{tool}`"
            )));
        }
        Ok(())
    }

    /// 400 for a tool no live worker serves, 422 for arguments that fail its
    /// schema.
    pub async fn check(&self, tool: &str, args: &Value) -> Result<(), ApiError> {
        if !args.is_object() {
            return Err(ApiError::InvalidArgs(format!(
                "tool `{tool}`: args must be a JSON object"
            )));
        }
        let catalog = self.catalog().await?;
        let known = catalog.tools().any(|t| t.entry.name == tool);
        match catalog.check(tool, args) {
            Ok(()) => Ok(()),
            Err(m) if known => Err(ApiError::InvalidArgs(m)),
            Err(m) => Err(ApiError::UnknownTool(m)),
        }
    }

    /// The `wait_ms` a request gets: its own (or the default), capped.
    pub fn wait_for(&self, who: &Principal, wait_ms: Option<u64>) -> Duration {
        if !who.grant.results {
            return Duration::ZERO;
        }
        let ms = wait_ms
            .unwrap_or(self.serve.default_wait_ms)
            .min(self.serve.max_wait_ms);
        Duration::from_millis(ms)
    }

    /// Enqueues the call as a job and waits up to `wait` for its result;
    /// `stop` ends the wait early (a client that went away or cancelled).
    pub async fn submit(
        &self,
        call: Call,
        wait: Duration,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<Reply, ApiError> {
        let queue = call.queue.clone();
        let id = call
            .id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let mut job = Job::new(call.tool, call.args);
        job.id = Some(id.clone());
        job.timeout_ms = call.timeout_ms;
        job.max_attempts = call.max_attempts;
        job.meta = call.meta;
        if wait.is_zero() {
            self.producer.enqueue(&queue, job).await?;
            return Ok(Reply::Pending { id });
        }
        job.batch = Some(self.completions.batch().to_owned());
        // Registered first, so a job finishing at once is not missed.
        let mut waiting = self.completions.register(&queue, &id);
        self.producer.enqueue(&queue, job).await?;
        let signalled = tokio::select! {
            r = tokio::time::timeout(wait, &mut waiting.receiver) => r.ok().and_then(Result::ok).flatten(),
            () = stop => None,
        };
        let raw = match signalled {
            Some(raw) => Some(raw),
            // The signal can be lost to a Redis blip: one read settles it.
            None => self.producer.result_text(&queue, &id).await.ok().flatten(),
        };
        Ok(match raw {
            Some(raw) if is_final(&raw) => Reply::Finished { raw },
            _ => Reply::Pending { id },
        })
    }
}

fn is_final(raw: &str) -> bool {
    serde_json::from_str::<JobResult>(raw).is_ok_and(|r| r.is_final())
}
