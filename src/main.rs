//! The `toolq` binary: parses arguments, sets up logging and signals, and
//! calls into the library. Exit codes: 0 success, 1 some jobs failed, 2 bad
//! input or configuration (a refused Redis password included), 3 Redis
//! unreachable.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use toolq::cli::{self, CliError, Exit};
use toolq::config::{Config, LogFormat, Overrides};
use toolq::worker::Shutdown;

mod math_symbols;

#[derive(Parser)]
#[command(
    name = "toolq",
    version,
    about = "A fast, reliable background job worker backed by Redis"
)]
struct Args {
    /// Configuration file [default: config/toolq.toml when present]
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Redis URL (redis://, rediss://, or redis+sentinel:// behind Sentinel) [env: TOOLQ_REDIS_URL]
    #[arg(long, global = true, value_name = "URL")]
    redis_url: Option<String>,
    /// Log output format [env: TOOLQ_LOG_FORMAT]
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a worker until SIGTERM/SIGINT (a second signal skips the grace period)
    #[command(after_help = "Examples:\n  \
        toolq worker\n  \
        toolq worker --queue high=5 --queue default=1 --concurrency 50\n  \
        TOOLQ_REDIS_URL=redis://worker:secret@redis:6379 toolq worker --http-addr 0.0.0.0:9464")]
    Worker {
        /// Queue to serve, in priority order; `name=weight` for weighted order [env: TOOLQ_QUEUES]
        #[arg(long = "queue", value_name = "Q")]
        queues: Vec<String>,
        /// Most jobs running at once [env: TOOLQ_CONCURRENCY] [default: 10]
        #[arg(long)]
        concurrency: Option<usize>,
        /// Side port for /healthz, /readyz, /health, /metrics, or `off` [env: TOOLQ_HTTP_ADDR] [default: 127.0.0.1:9464]
        #[arg(long, value_name = "ADDR")]
        http_addr: Option<String>,
    },
    /// Enqueue one job; prints its id, or its result with --wait
    #[command(after_help = "Examples:\n  \
        toolq enqueue calculator '{\"expression\": \"(1+2)*3\"}' --wait\n  \
        toolq enqueue sleep '{\"ms\": 500}' --queue low --max-attempts 3")]
    Enqueue {
        /// Tool name, e.g. calculator
        tool: String,
        /// The tool's arguments as a JSON object
        args_json: String,
        /// Queue to put the job on
        #[arg(long, default_value = "default")]
        queue: String,
        /// Wait for the result and print it as JSON
        #[arg(long)]
        wait: bool,
        /// Longest wait with --wait, in seconds
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// Total tries before the job is dead
        #[arg(long)]
        max_attempts: Option<u32>,
        /// Per-attempt limit in milliseconds
        #[arg(long)]
        timeout_ms: Option<u64>,
        /// Skip checking the tool and its arguments against the tool catalog
        #[arg(long)]
        no_check: bool,
    },
    /// Serve the HTTP API, the MCP endpoint (/mcp) and the web console (/ui): every call becomes a job
    Serve(cli::serve::ServeArgs),
    /// The tools live workers serve, with their sources and workers
    Tools(cli::tools::ToolsArgs),
    /// Print the effective configuration, each value with its source (secrets masked)
    Config(cli::config::ConfigArgs),
    /// Submit jobs from a JSON-lines file (or `-` for stdin); --wait prints each result
    Submit(cli::submit::SubmitArgs),
    /// Per queue: pending, active, delayed and dead jobs, live workers, totals
    Stats(cli::stats::StatsArgs),
    /// Look at, retry or purge dead jobs
    Dead(cli::dead::DeadArgs),
    /// One job by id: where it is, its payload, result and attempts; or cancel it
    Job(cli::job::JobArgs),
    /// List a queue's pending, scheduled, running or dead jobs
    Jobs(cli::jobs::JobsArgs),
    /// Pause, resume or delete a queue, or show or set its shard count
    Queue(cli::queue::QueueArgs),
    /// Periodic jobs: add, list, show, pause, resume or remove a schedule
    Schedule(cli::schedule::ScheduleArgs),
    /// Print a job's result JSON
    #[command(
        after_help = "Example:\n  toolq result 01a2379c-6c65-7051-a6cb-f9b0fb0f3bff --queue emails"
    )]
    Result {
        /// The job id (as `toolq enqueue` printed it)
        id: String,
        /// The job's queue
        #[arg(long, default_value = "default")]
        queue: String,
    },
    /// Start a worker, submit sample jobs and print their results (starts a
    /// throw-away redis-server when none answers)
    #[command(after_help = "Example:\n  toolq demo")]
    Demo,
    /// Measure drain, enqueue and latency against a throw-away redis-server
    /// and compare with redis-benchmark (build with cargo build-static); with
    /// --mcp, MCP tool calls; with --gateway, a running `toolq serve`
    #[command(after_help = "Examples:\n  \
        toolq bench                       # a release build: cargo build-static\n  \
        toolq bench --jobs 100000 --runs 1 --no-latency\n  \
        toolq bench --worker-bin ../old/toolq   # another build's worker, this bench")]
    Bench {
        /// Jobs per drain run
        #[arg(long, default_value_t = 500_000)]
        jobs: usize,
        /// Worker concurrency
        #[arg(long, default_value_t = 50)]
        concurrency: usize,
        /// Runs per figure (the median is reported)
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Skip the latency measurement
        #[arg(long)]
        no_latency: bool,
        /// Run the workers from this toolq binary instead of this one, to
        /// compare two builds' workers under the same bench (it must take
        /// `worker --queue --concurrency --http-addr` and TOOLQ_REDIS_URL)
        #[arg(long, value_name = "PATH")]
        worker_bin: Option<PathBuf>,
        /// Instead, measure MCP tool calls: this server command (split on
        /// spaces), called directly and through toolq
        #[arg(long, value_name = "COMMAND", requires = "mcp_tool")]
        mcp: Option<String>,
        /// With --mcp: the server's tool to call
        #[arg(long, value_name = "TOOL", requires = "mcp")]
        mcp_tool: Option<String>,
        /// With --mcp: the tool's arguments
        #[arg(long, value_name = "JSON", default_value = "{}")]
        mcp_args: String,
        /// Instead, measure a running `toolq serve` at this URL: /execute
        /// beside the producer at a fixed rate (Redis: --redis-url or
        /// TOOLQ_REDIS_URL, the gateway's; a worker serves `default`)
        #[arg(long, value_name = "URL", requires = "token_file")]
        gateway: Option<String>,
        /// With --gateway: a file holding a bearer token for it
        #[arg(long, value_name = "FILE", requires = "gateway")]
        token_file: Option<PathBuf>,
        /// With --gateway: calls per second
        #[arg(long, default_value_t = 500)]
        rate: u32,
        /// With --gateway: seconds each path is measured per run
        #[arg(long, default_value_t = 20.0)]
        seconds: f64,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("toolq: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    // Boxed: the future of every command (13 KB) would otherwise be copied
    // several times on the main thread's stack, whose pages stay resident.
    let code = match runtime.block_on(Box::pin(run(args))) {
        Ok(exit) => exit as u8,
        Err(e) => {
            eprintln!("toolq: {e}");
            e.exit() as u8
        }
    };
    // Do not wait for stray blocking tasks (e.g. a tool stuck in a syscall).
    runtime.shutdown_timeout(Duration::from_secs(1));
    ExitCode::from(code)
}

async fn run(args: Args) -> Result<Exit, CliError> {
    let mut overrides = Overrides {
        redis_url: args.redis_url,
        log_format: args.log_format,
        ..Overrides::default()
    };
    if let Command::Worker {
        queues,
        concurrency,
        http_addr,
    } = &args.command
    {
        overrides.queues = (!queues.is_empty()).then(|| queues.clone());
        overrides.concurrency = *concurrency;
        overrides.http_addr = http_addr.clone();
    }
    let explicit_redis = overrides.redis_url.clone();
    let config = Config::load(args.config.as_deref(), &overrides)?;
    // The benchmark starts its own Redis unless one is named on the command line.
    let config_redis_url = explicit_redis;
    let default_filter = match args.command {
        Command::Worker { .. } | Command::Serve(_) => "info",
        // The demo buries bad jobs on purpose; its output says so.
        Command::Demo => "error",
        _ => "warn",
    };
    toolq::logging::init(config.log_format, default_filter);
    match args.command {
        Command::Worker { .. } => cli::worker::run(config, signals()).await,
        Command::Enqueue {
            tool,
            args_json,
            queue,
            wait,
            timeout,
            max_attempts,
            timeout_ms,
            no_check,
        } => {
            let a = cli::enqueue::EnqueueArgs {
                tool,
                args: args_json,
                queue,
                wait,
                timeout: Duration::from_secs(timeout),
                max_attempts,
                timeout_ms,
                no_check,
            };
            cli::enqueue::run(&config, a).await
        }
        Command::Submit(a) => cli::submit::run(&config, a).await,
        Command::Serve(a) => {
            let shutdown = signals();
            cli::serve::run(config, a, async move { shutdown.begun().await }).await
        }
        Command::Tools(a) => cli::tools::run(&config, a).await,
        Command::Config(a) => cli::config::run(args.config.as_deref(), &overrides, a),
        Command::Stats(a) => cli::stats::run(&config, a).await,
        Command::Dead(a) => cli::dead::run(&config, a).await,
        Command::Job(a) => cli::job::run(&config, a).await,
        Command::Jobs(a) => cli::jobs::run(&config, a).await,
        Command::Queue(a) => cli::queue::run(&config, a).await,
        Command::Schedule(a) => cli::schedule::run(&config, a).await,
        Command::Result { id, queue } => cli::result::run(&config, &queue, &id).await,
        Command::Demo => cli::demo::run(config).await,
        Command::Bench {
            jobs,
            concurrency,
            runs,
            no_latency,
            worker_bin,
            mcp,
            mcp_tool,
            mcp_args,
            gateway,
            token_file,
            rate,
            seconds,
        } => {
            let mcp = match (mcp, mcp_tool) {
                (Some(command), Some(tool)) => Some(toolq::bench::mcp::McpBench {
                    command: command.split_whitespace().map(str::to_owned).collect(),
                    tool,
                    args: serde_json::from_str(&mcp_args)
                        .map_err(|e| CliError::BadInput(format!("--mcp-args: {e}")))?,
                    calls: jobs,
                    concurrency,
                }),
                _ => None,
            };
            let gateway = match (gateway, token_file) {
                (Some(url), Some(file)) => Some(toolq::bench::gateway::GatewayBench {
                    url: url.trim_end_matches('/').to_owned(),
                    token: std::fs::read_to_string(&file)
                        .map_err(|e| {
                            CliError::BadInput(format!("--token-file {}: {e}", file.display()))
                        })?
                        .trim()
                        .to_owned(),
                    rate: rate.max(1),
                    duration: Duration::from_secs_f64(seconds.clamp(0.1, 3600.0)),
                    runs: runs.max(1),
                    concurrency,
                }),
                _ => None,
            };
            let opts = toolq::bench::BenchOptions {
                jobs,
                concurrency,
                runs: runs.max(1),
                // The gateway's Redis, as configured; otherwise a throw-away
                // one unless named on the command line.
                redis_url: match gateway {
                    Some(_) => Some(config.redis_url.clone()),
                    None => config_redis_url,
                },
                latency: !no_latency,
                worker_bin,
                mcp,
                gateway,
            };
            toolq::bench::run(opts)
                .await
                .map_err(|e| CliError::Failed(e.to_string()))?;
            Ok(Exit::Success)
        }
    }
}

/// The first SIGTERM/SIGINT begins a graceful stop, a second one forces it.
fn signals() -> Shutdown {
    let shutdown = Shutdown::new();
    let s = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("signal received: finishing in-flight jobs (send again to stop now)");
        s.begin();
        wait_for_signal().await;
        tracing::warn!("second signal: stopping now");
        s.force();
    });
    shutdown
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
