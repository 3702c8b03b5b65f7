//! toolq: a background job worker backed by Redis.
//!
//! Where things happen:
//! - [`queue`]: everything stored in Redis: key names (`queue/keys.rs`), one
//!   Lua script per atomic operation (`queue/scripts/`), the broker API.
//! - [`worker`]: running jobs: fetcher, executor (with the tool result cache
//!   and per-tool rate limit around each call), acker, heartbeat, reaper,
//!   scheduler, monitor, shutdown.
//! - [`producer`]: enqueueing jobs (batches in pipelined chunks, unique
//!   jobs, back-pressure, batch callbacks), waiting for results through a batch's
//!   notification list, and the operator's stats and dead-job actions.
//! - [`tools`]: the `Tool` trait, the registry and the built-in tools.
//! - [`health`]: the side port (`/healthz`, `/readyz`, `/health`, `/metrics`)
//!   and the metric names.
//! - [`listener`]: the accept loop of the side port and the gateway: a
//!   connection cap that closes the idle longest, header and idle timeouts.
//! - [`job`]: the wire format, results and dead entries, and follow-up
//!   templates (`on_success`, `on_failure`, batch callbacks).
//! - [`schedule`]: periodic jobs: definitions, cron math in time zones,
//!   the tick decision, and managing schedules (the worker's loop is
//!   `worker/periodic.rs`).
//! - [`config`]: defaults, `config/toolq.toml`, the profile's file,
//!   `TOOLQ_*` variables and `*_FILE` secrets, flags; unknown keys refused;
//!   where each value came from (`toolq config`).
//! - [`spec`]: small values config and the modules share (queue specs, the
//!   side port's address, masked Redis URLs, loopback addresses, text made
//!   safe for a terminal); a leaf.
//! - [`cli`]: the subcommands behind `src/main.rs` (which also defines the
//!   C math functions, `src/math_symbols.rs`, so the binary needs no libm).
//! - [`bench`]: `toolq bench`, the throughput and latency benchmark.
//! - `fuzz` (feature `test-tools` only): property fuzz targets for the
//!   parsers of outside data and their driver (`tests/fuzz.rs`,
//!   `scripts/fuzz.sh`).
//! - [`redis_server`]: a throw-away `redis-server` for the demo and tests.
pub mod bench;
pub mod cli;
pub mod config;
#[cfg(feature = "test-tools")]
pub mod fuzz;
pub mod gateway;
pub mod health;
pub mod job;
pub mod listener;
pub mod logging;
pub mod producer;
pub mod queue;
pub mod redis_server;
pub mod schedule;
pub mod spec;
pub mod tools;
pub mod worker;
