//! An HTTP/1 accept loop for ports anyone can reach: the worker's side
//! port and the gateway. `axum::serve` accepts every connection and keeps
//! each as long as the client likes; here each port has a cap and timers.
//!
//! - At most [`Limits::max_connections`] are open at once (and never more
//!   than a share of the process's file descriptors). A hostile-input trial
//!   held 120 idle connections against a worker with 64 file descriptors:
//!   its weather calls failed with EMFILE and `/healthz` stopped answering.
//!   Now a connection over the cap closes the one that has been idle
//!   longest (no request in progress: still owing its header, or kept alive
//!   after an answer) once that one has been idle [`EVICT_AFTER`], so real
//!   requests get through while idle connections are held. While every open
//!   connection is answering a request or too fresh to judge, the newcomer
//!   waits and no other connection is accepted: the rest wait in the
//!   kernel's backlog, not in our file descriptors; one that waits longer
//!   than the header timeout is closed.
//! - A request's header must be complete within [`Limits::header_timeout`]
//!   of its first byte; a connection with no request in progress is closed
//!   after [`Limits::idle_timeout`] (from its opening or its last answer).
//!   A request being answered, its streamed response body included, is
//!   never cut by either.
//! - [`Limits::max_age`], when set, closes a connection however busy.

mod slots;
mod watched;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use slots::EVICT_AFTER;
use slots::{Busy, Phase, Slot, SlotState, Slots};
use watched::Watched;

/// Pause after a failed `accept` (e.g. EMFILE), so the loop does not spin
/// while the process is out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How often a connection waiting for a slot looks again.
const ADMIT_POLL: Duration = Duration::from_millis(10);

/// What a port allows each client, so that clients together can never cost
/// the process more than a fixed share of its file descriptors and memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// The cap is also at most the soft file-descriptor limit divided by
    /// this, whatever `max_connections` says.
    pub fd_share_divisor: u64,
    /// Longest from a request's first byte to the end of its header.
    pub header_timeout: Duration,
    /// Longest a connection stays open with no request in progress.
    pub idle_timeout: Duration,
    /// Longest a connection stays open at all, when set.
    pub max_age: Option<Duration>,
    /// How long requests in progress may finish after shutdown is asked.
    pub grace: Duration,
}

/// Serves `app` on `listener` until `shutdown` resolves, then gives
/// requests in progress [`Limits::grace`] to finish. False when the grace
/// ran out with some still open (they are dropped).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) -> bool {
    let cap = limits
        .max_connections
        .min(fd_share(limits.fd_share_divisor))
        .max(1);
    let slots = Arc::new(Slots::new(cap));
    let stop = CancellationToken::new();
    // Dropping the set aborts what is left after the grace period.
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors (EMFILE): give one back by
                    // closing the connection idle longest, if any.
                    tracing::debug!(error = %e, "listener: accept failed");
                    slots.evict_idle();
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        // Nothing else is accepted while this one waits for a slot.
        let waited = std::time::Instant::now();
        let mut stopping = false;
        let slot = loop {
            if let Some(slot) = slots.admit() {
                break Some(slot);
            }
            if waited.elapsed() >= limits.header_timeout {
                break None;
            }
            tokio::select! {
                () = &mut shutdown => {
                    stopping = true;
                    break None;
                }
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                () = tokio::time::sleep(ADMIT_POLL) => {}
            }
        };
        let Some(slot) = slot else {
            drop(stream);
            if stopping {
                break;
            }
            continue;
        };
        let (app, stop, slots) = (app.clone(), stop.clone(), slots.clone());
        tasks.spawn(async move {
            connection(stream, app, &slot, &limits, stop).await;
            slots.release(slot.id);
        });
    }
    drop(listener);
    stop.cancel();
    let drained = async { while tasks.join_next().await.is_some() {} };
    tokio::time::timeout(limits.grace, drained).await.is_ok()
}

/// The soft `RLIMIT_NOFILE` divided by `divisor`: the port's share whatever
/// `max_connections` says, so that a process started with few descriptors
/// keeps the rest for Redis and its tools (16 connections of a side port
/// under `ulimit -n 64`).
fn fd_share(divisor: u64) -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) only writes the struct we pass it.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return usize::MAX;
    }
    usize::try_from(limit.rlim_cur / divisor.max(1)).unwrap_or(usize::MAX)
}

/// Serves one connection until it closes, times out, is evicted for a
/// newer one, or shutdown asks it to finish its request and close.
async fn connection(
    stream: TcpStream,
    app: Router,
    slot: &Slot,
    limits: &Limits,
    stop: CancellationToken,
) {
    let state = slot.state.clone();
    let service = hyper::service::service_fn(move |req| {
        let mut app = app.clone();
        let busy = Busy::enter(state.clone());
        async move {
            let response = tower_service::Service::call(&mut app, req).await;
            // Busy until the body is sent (or the connection drops it).
            response.map(|r| {
                r.map(|body| {
                    Body::new(body.map_frame(move |frame| {
                        let _held = &busy;
                        frame
                    }))
                })
            })
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        // A client may shut its write side once its request is sent (as
        // `curl` and probes can); it still gets its answer.
        .half_close(true)
        .serve_connection(
            TokioIo::new(Watched::new(stream, slot.state.clone())),
            service,
        );
    let max_age = async {
        match limits.max_age {
            Some(age) => tokio::time::sleep(age).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        () = slot.evict.cancelled() => {}
        () = timed_out(&slot.state, limits) => {}
        () = max_age => {}
        () = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Resolves once the connection has sent a header for too long or has had
/// no request for too long.
async fn timed_out(state: &SlotState, limits: &Limits) {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let (header, idle) = (ms(limits.header_timeout), ms(limits.idle_timeout));
    loop {
        let now = state.now_ms();
        let left = match state.phase() {
            // Looked at again soon: its answer may end at any time.
            Phase::Busy => (header.min(idle) / 4).max(10),
            Phase::Idle(since) => since.saturating_add(idle).saturating_sub(now),
            Phase::Header(since) => since.saturating_add(header).saturating_sub(now),
        };
        if left == 0 {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(left)) => {}
            () = state.header_started() => {}
        }
    }
}
