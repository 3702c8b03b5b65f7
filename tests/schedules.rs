//! Periodic jobs with real `toolq worker` processes, the real `toolq schedule`
//! CLI and a real redis-server. The schedules' queue is paused (`toolq queue
//! pause`) where a test counts ticks: workers still tick its schedules but
//! take none of its jobs, so the pending list holds every job each tick
//! enqueued, once per enqueue, and a duplicate would show as a repeated id.
//! Figures are printed (run with `--nocapture`); the asserts are on what
//! must hold, never on wall-clock speed.

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::fault_process::*;
use common::process::{cli, cli_ok};
use common::*;
use serde_json::Value;
use toolq::queue::{keys, QueueKeys};

type Con = redis::aio::MultiplexedConnection;

async fn show(url: &str, name: &str) -> Value {
    serde_json::from_str(&cli_ok(url, &["schedule", "show", name, "--json"]).await).unwrap()
}

/// One enqueued tick's job, as the pending list holds it.
#[derive(Debug, Clone)]
struct TickJob {
    schedule: String,
    tick: i64,
    job: Value,
}

/// Every job in `q`'s pending list, oldest first.
async fn tick_jobs(con: &mut Con, q: &str) -> Vec<TickJob> {
    pending_jobs(con, q)
        .await
        .into_iter()
        .rev()
        .map(|job| {
            let id = job["id"].as_str().expect("id").to_owned();
            let mut parts = id.rsplitn(2, ':');
            let tick: i64 = parts.next().unwrap().parse().expect("id ends in the tick");
            let schedule = parts
                .next()
                .and_then(|p| p.strip_prefix("schedule:"))
                .expect("id is schedule:<name>:<tick>")
                .to_owned();
            assert_eq!(job["meta"]["tick"], tick, "meta names the tick");
            TickJob {
                schedule,
                tick,
                job,
            }
        })
        .collect()
}

fn ticks_of(jobs: &[TickJob], name: &str) -> Vec<i64> {
    jobs.iter()
        .filter(|j| j.schedule == name)
        .map(|j| j.tick)
        .collect()
}

async fn redis_s(con: &mut Con) -> i64 {
    (redis_time_ms(con).await / 1000) as i64
}

/// Waits until `name` has a tick enqueued after `after`; returns the ticks.
async fn wait_tick_after(
    con: &mut Con,
    q: &str,
    name: &str,
    after: i64,
    within: Duration,
) -> Vec<i64> {
    let start = Instant::now();
    loop {
        let ticks = ticks_of(&tick_jobs(con, q).await, name);
        if ticks.iter().any(|t| *t > after) {
            return ticks;
        }
        assert!(
            start.elapsed() < within,
            "no tick of {name} after {after} within {within:?}; ticks: {ticks:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Ticks seen more than once.
fn duplicates(ticks: &[i64]) -> Vec<i64> {
    let mut seen = BTreeMap::new();
    for t in ticks {
        *seen.entry(*t).or_insert(0) += 1;
    }
    seen.into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(t, _)| t)
        .collect()
}

/// Asserts `ticks` are `from..=to` one second apart, each once.
fn assert_every_second(ticks: &[i64], from: i64, to: i64, what: &str) {
    let expected: Vec<i64> = (from..=to).collect();
    assert_eq!(ticks, expected.as_slice(), "{what}");
}

// ---------------------------------------------------------------------------

/// Three workers tick a one-second schedule for 60 s; every 10 s one of them
/// is SIGKILLed (at whatever point of a tick it is) and started again. Every
/// tick between the first and the last is enqueued exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_one_killed_every_10s_miss_no_tick_and_repeat_none() {
    const RUN: Duration = Duration::from_secs(60);
    const KILL_EVERY: Duration = Duration::from_secs(10);
    let server = redis();
    let url = server.url();
    let q = queue_name("sched-kill");
    let mut con = raw(&url).await;
    cli_ok(&url, &["queue", "pause", &q]).await;
    cli_ok(
        &url,
        &[
            "schedule",
            "add",
            "every-second",
            "* * * * * *",
            "echo",
            "{}",
            "--queue",
            &q,
        ],
    )
    .await;
    let first = show(&url, "every-second").await["next"].as_i64().unwrap();

    let mut workers: Vec<WorkerProcess> = (0..3)
        .map(|_| spawn_worker_process(&url, &q, 2, &[]))
        .collect();
    for w in &workers {
        worker_id_of(&mut con, &q, w.pid(), Duration::from_secs(30)).await;
    }
    let start = Instant::now();
    let mut kills = 0;
    while start.elapsed() < RUN {
        tokio::time::sleep(KILL_EVERY.min(RUN - start.elapsed())).await;
        if start.elapsed() >= RUN {
            break;
        }
        let victim = kills % workers.len();
        workers[victim].signal(libc::SIGKILL);
        workers[victim]
            .wait_exit(Duration::from_secs(10))
            .expect("killed worker exits");
        workers[victim] = spawn_worker_process(&url, &q, 2, &[]);
        kills += 1;
    }
    // Stop ticking, then count: everything up to the last tick is settled.
    cli_ok(&url, &["schedule", "pause", "every-second"]).await;
    let paused_at = redis_s(&mut con).await;
    let jobs = tick_jobs(&mut con, &q).await;
    let ticks = ticks_of(&jobs, "every-second");
    let last = *ticks.iter().max().expect("ticks were enqueued");
    let enqueued: std::collections::BTreeSet<i64> = ticks.iter().copied().collect();
    let expected = (last - first + 1) as usize;
    let missed: Vec<i64> = (first..=last).filter(|t| !enqueued.contains(t)).collect();
    let dups = duplicates(&ticks);
    let lateness: Vec<u64> = jobs
        .iter()
        .map(|j| {
            j.job["enqueued_at"]
                .as_u64()
                .unwrap()
                .saturating_sub(j.tick as u64 * 1000)
        })
        .collect();
    let late_max = lateness.iter().max().copied().unwrap_or(0);
    let mut sorted = lateness.clone();
    sorted.sort_unstable();
    let late_median = sorted[sorted.len() / 2];
    println!(
        "scheduler kill test: 3 workers, 1 s schedule, {:.0} s, {kills} SIGKILLs (one every {} s, restarted): \
         ticks expected {expected}, enqueued {}, missed {}, duplicated {}; \
         enqueued after its tick: median {late_median} ms, max {late_max} ms",
        start.elapsed().as_secs_f64(),
        KILL_EVERY.as_secs(),
        ticks.len(),
        missed.len(),
        dups.len(),
    );
    assert!(kills >= 5, "only {kills} kills");
    assert!(expected >= 60, "only {expected} ticks in the window");
    assert!(missed.is_empty(), "missed ticks: {missed:?}");
    assert!(dups.is_empty(), "duplicated ticks: {dups:?}");
    assert_eq!(ticks.len(), expected);
    // No stall at the end either: the last tick is within a second or two
    // of the pause.
    assert!(
        last >= paused_at - 2,
        "last tick {last}, paused at {paused_at}"
    );
}

// ---------------------------------------------------------------------------

/// A schedule changed while workers tick it follows the new definition from
/// the next tick (no tick twice, no gap); paused, it enqueues nothing; resumed,
/// it goes on from after the resume; removed, it is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_changed_paused_resumed_and_removed_while_running() {
    let server = redis();
    let url = server.url();
    let q = queue_name("sched-change");
    let mut con = raw(&url).await;
    cli_ok(&url, &["queue", "pause", &q]).await;
    let _a = spawn_worker_process(&url, &q, 2, &[]);
    let _b = spawn_worker_process(&url, &q, 2, &[]);
    cli_ok(
        &url,
        &[
            "schedule",
            "add",
            "c",
            "*/2 * * * * *",
            "echo",
            r#"{"v":1}"#,
            "--queue",
            &q,
        ],
    )
    .await;
    let t0 = redis_s(&mut con).await;
    wait_tick_after(&mut con, &q, "c", t0 + 4, Duration::from_secs(30)).await;

    // Change cron and args at once.
    let out = cli_ok(
        &url,
        &[
            "schedule",
            "add",
            "c",
            "* * * * * *",
            "echo",
            r#"{"v":2}"#,
            "--queue",
            &q,
        ],
    )
    .await;
    assert!(out.starts_with("updated schedule c"), "{out}");
    let changed_at = redis_s(&mut con).await;
    wait_tick_after(&mut con, &q, "c", changed_at + 4, Duration::from_secs(30)).await;
    let jobs = tick_jobs(&mut con, &q).await;
    let v1: Vec<i64> = jobs
        .iter()
        .filter(|j| j.job["args"]["v"] == 1)
        .map(|j| j.tick)
        .collect();
    let v2: Vec<i64> = jobs
        .iter()
        .filter(|j| j.job["args"]["v"] == 2)
        .map(|j| j.tick)
        .collect();
    println!("changed at {changed_at}: old ticks {v1:?}, new ticks {v2:?}");
    assert!(duplicates(&ticks_of(&jobs, "c")).is_empty());
    assert!(
        v1.iter().all(|t| t % 2 == 0),
        "old definition: even seconds"
    );
    assert!(
        v1.iter().all(|t| *t <= changed_at + 1),
        "the old definition stopped"
    );
    let first_new = v2[0];
    assert!(
        first_new > *v1.last().unwrap(),
        "new ticks come after the old"
    );
    assert!(
        first_new <= changed_at + 2,
        "no stall: first new tick {first_new}, changed at {changed_at}"
    );
    assert_every_second(
        &v2,
        first_new,
        *v2.last().unwrap(),
        "new definition: every second",
    );

    // Pause: nothing more is enqueued.
    cli_ok(&url, &["schedule", "pause", "c"]).await;
    let paused_count = ticks_of(&tick_jobs(&mut con, &q).await, "c").len();
    let paused_at = redis_s(&mut con).await;
    let listed = cli_ok(&url, &["schedule", "list"]).await;
    assert!(listed.contains("paused"), "{listed}");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let ticks = ticks_of(&tick_jobs(&mut con, &q).await, "c");
    assert!(
        ticks.len() <= paused_count + 1 && ticks.iter().all(|t| *t <= paused_at + 1),
        "ticks after the pause at {paused_at}: {ticks:?}"
    );

    // Resume: from after the resume, not the ticks that fell while paused.
    let before = ticks.len();
    let last_paused = *ticks.iter().max().unwrap();
    cli_ok(&url, &["schedule", "resume", "c"]).await;
    let resumed_at = redis_s(&mut con).await;
    let ticks = wait_tick_after(&mut con, &q, "c", resumed_at + 1, Duration::from_secs(30)).await;
    let after: Vec<i64> = ticks[before..].to_vec();
    println!(
        "paused at {paused_at} (last tick {last_paused}), resumed at {resumed_at}: then {after:?}"
    );
    assert!(
        after[0] > resumed_at - 1 && after[0] <= resumed_at + 2,
        "{after:?}"
    );
    assert!(ticks.iter().all(|t| *t <= last_paused || *t >= resumed_at));
    assert!(duplicates(&ticks).is_empty());

    // Remove: gone from Redis, and no tick after.
    cli_ok(&url, &["schedule", "remove", "c"]).await;
    let removed_count = ticks_of(&tick_jobs(&mut con, &q).await, "c").len();
    let (code, _, err) = cli(&url, &["schedule", "show", "c"]).await;
    assert_eq!(code, 2, "{err}");
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(
        ticks_of(&tick_jobs(&mut con, &q).await, "c").len(),
        removed_count
    );
    assert!(!exists(&mut con, &QueueKeys::new(&q).schedule("c")).await);
    assert_eq!(
        zcard(&mut con, &QueueKeys::new(&q).schedules_due()).await,
        0
    );

    // The jobs run once the queue is resumed; `list` reports the outcome.
    cli_ok(
        &url,
        &[
            "schedule",
            "add",
            "done",
            "* * * * * *",
            "echo",
            "{}",
            "--queue",
            &q,
            "--meta",
            r#"{"team":"ops"}"#,
        ],
    )
    .await;
    cli_ok(&url, &["queue", "resume", &q]).await;
    let start = Instant::now();
    let last_id = loop {
        let listed: Value =
            serde_json::from_str(&cli_ok(&url, &["schedule", "list", "--json"]).await).unwrap();
        let done = &listed.as_array().unwrap()[0];
        if done["last_outcome"] == "succeeded" {
            break done["last_id"].as_str().unwrap().to_owned();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "last job never succeeded: {done}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(last_id.starts_with("schedule:done:"), "{last_id}");
    let result = wait_result(&mut con, &q, &last_id, Duration::from_secs(10)).await;
    assert_eq!(result["meta"]["schedule"], "done");
    assert_eq!(result["meta"]["team"], "ops", "the template's meta");
}

// ---------------------------------------------------------------------------

/// With every worker down for longer than the grace, `skip` enqueues none of
/// the missed ticks and goes on from the next one; `run_once` enqueues
/// exactly one job for them (marked `"misfire": "run_once"` in its meta).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_ticks_are_skipped_or_run_once_after_downtime() {
    const DOWN: Duration = Duration::from_secs(6);
    let server = redis();
    let url = server.url();
    let q = queue_name("sched-misfire");
    let mut con = raw(&url).await;
    cli_ok(&url, &["queue", "pause", &q]).await;
    for (name, policy) in [("skipper", "skip"), ("once", "run_once")] {
        cli_ok(
            &url,
            &[
                "schedule",
                "add",
                name,
                "* * * * * *",
                "echo",
                "{}",
                "--queue",
                &q,
                "--misfire",
                policy,
                "--misfire-grace",
                "2",
            ],
        )
        .await;
    }
    let mut w = spawn_worker_process(&url, &q, 2, &[]);
    let t0 = redis_s(&mut con).await;
    wait_tick_after(&mut con, &q, "skipper", t0 + 1, Duration::from_secs(30)).await;
    wait_tick_after(&mut con, &q, "once", t0 + 1, Duration::from_secs(30)).await;

    w.signal(libc::SIGKILL);
    w.wait_exit(Duration::from_secs(10)).expect("worker exits");
    let down_at = redis_s(&mut con).await;
    tokio::time::sleep(DOWN).await;
    let up_at = redis_s(&mut con).await;
    let _w = spawn_worker_process(&url, &q, 2, &[]);
    wait_tick_after(&mut con, &q, "skipper", up_at + 2, Duration::from_secs(30)).await;
    wait_tick_after(&mut con, &q, "once", up_at + 2, Duration::from_secs(30)).await;

    let jobs = tick_jobs(&mut con, &q).await;
    for name in ["skipper", "once"] {
        let ticks = ticks_of(&jobs, name);
        assert!(duplicates(&ticks).is_empty(), "{name}: {ticks:?}");
        let last_before = *ticks.iter().filter(|t| **t <= down_at).max().unwrap();
        let after: Vec<i64> = ticks.iter().copied().filter(|t| *t > last_before).collect();
        let missed = after[0] - last_before - 1;
        println!(
            "{name}: last tick before the kill {last_before}, down {down_at}..{up_at}, \
                  then {after:?}: {missed} ticks passed unenqueued"
        );
        assert!(
            missed as u64 >= DOWN.as_secs() - 1,
            "{name}: only {missed} missed"
        );
        // After the restart: every second again, from the first tick on.
        assert_every_second(&after, after[0], *after.last().unwrap(), name);
    }
    let marked = |name: &str| -> Vec<i64> {
        jobs.iter()
            .filter(|j| j.schedule == name && j.job["meta"]["misfire"].is_string())
            .map(|j| j.tick)
            .collect()
    };
    // skip: nothing for the missed ticks; the first tick after is later
    // than the restart.
    let skipper = ticks_of(&jobs, "skipper");
    assert!(marked("skipper").is_empty());
    assert!(
        !skipper.iter().any(|t| *t > down_at + 1 && *t <= up_at),
        "{skipper:?}"
    );
    // run_once: exactly one job, for the latest tick passed at the restart.
    let once = marked("once");
    assert_eq!(once.len(), 1, "run_once enqueued {once:?}");
    assert!(once[0] >= up_at, "{once:?}");
    let once_ticks = ticks_of(&jobs, "once");
    assert!(
        !once_ticks.iter().any(|t| *t > down_at + 1 && *t < once[0]),
        "{once_ticks:?}"
    );
}

// ---------------------------------------------------------------------------

/// Bad input is refused with a clear message and exit code 2, and nothing is
/// stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_definitions_are_refused_with_exit_2_and_nothing_stored() {
    let server = redis();
    let url = server.url();
    let mut con = raw(&url).await;
    let cases: [(&[&str], &str); 9] = [
        (
            &["bad-cron", "61 * * * * *", "echo", "{}"],
            "invalid cron expression",
        ),
        (
            &["bad-cron", "every day", "echo", "{}"],
            "invalid cron expression",
        ),
        (&["bad-cron", "0 0 30 2 *", "echo", "{}"], "matches no time"),
        (
            &[
                "bad-tz",
                "* * * * *",
                "echo",
                "{}",
                "--tz",
                "Europe/Atlantis",
            ],
            "unknown time zone",
        ),
        (
            &["bad-json", "* * * * *", "echo", "{\"a\":"],
            "ARGS_JSON is not valid JSON",
        ),
        (&["bad:name", "* * * * *", "echo", "{}"], "the name must be"),
        // The template's options have a job's bounds.
        (
            &["t0", "* * * * *", "echo", "{}", "--timeout-ms", "0"],
            "timeout_ms must be at least 1",
        ),
        (
            &["m", "* * * * *", "echo", "{}", "--meta", "[1]"],
            "meta must be an object",
        ),
        (
            &["m", "* * * * *", "echo", "{}", "--meta", "{"],
            "--meta is not valid JSON",
        ),
    ];
    for (args, message) in cases {
        let mut full = vec!["schedule", "add"];
        full.extend_from_slice(args);
        let (code, out, err) = cli(&url, &full).await;
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(err.contains(message), "{args:?}: {err}");
    }
    let (code, _, err) = cli(&url, &["schedule", "add", "x", "* * * * *", "echo", "[]"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("args must be a JSON object"), "{err}");
    let (code, _, err) = cli(
        &url,
        &[
            "schedule",
            "add",
            "x",
            "* * * * *",
            "echo",
            "{}",
            "--misfire",
            "later",
        ],
    )
    .await;
    assert_eq!(code, 2, "{err}");
    let stored: Vec<String> = redis::cmd("KEYS")
        .arg("*schedule*")
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(stored.is_empty(), "stored: {stored:?}");
    assert!(!exists(&mut con, keys::SCHEDULES).await);
    // A bad [[schedules]] entry stops start-up, naming the key.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("toolq.toml");
    std::fs::write(&file, "[[schedules]]\nname = \"n\"\ncron = \"* * * * *\"\ntool = \"echo\"\ntz = \"Nowhere/Land\"\n").unwrap();
    let (code, _, err) = cli(&url, &["--config", file.to_str().unwrap(), "config"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("`schedules`") && err.contains("unknown time zone"),
        "{err}"
    );
}

/// Schedules in the configuration are written at worker start; one changed
/// at run time is restored by the next worker start (the configuration wins
/// for the names it defines), and its pause is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_schedules_are_written_at_worker_start_and_win() {
    let server = redis();
    let url = server.url();
    let q = queue_name("sched-config");
    let mut con = raw(&url).await;
    cli_ok(&url, &["queue", "pause", &q]).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("toolq.toml");
    std::fs::write(
        &file,
        format!(
            "[[schedules]]\nname = \"from-config\"\ncron = \"*/2 * * * * *\"\ntool = \"calculator\"\n\
             args = {{ expression = \"6*7\" }}\nqueue = \"{q}\"\ntz = \"Europe/Berlin\"\nmisfire = \"run_once\"\nmax_attempts = 2\n"
        ),
    )
    .unwrap();
    let config = file.to_str().unwrap().to_owned();
    let w = spawn_with_config(&url, &q, &config);
    eventually(Duration::from_secs(30), "the configured schedule", || {
        let url = url.clone();
        async move { cli(&url, &["schedule", "show", "from-config"]).await.0 == 0 }
    })
    .await;
    let v = show(&url, "from-config").await;
    assert_eq!(v["source"], "config");
    assert_eq!(v["definition"]["misfire"], "run_once");
    assert_eq!(v["definition"]["args"]["expression"], "6*7");
    let t0 = redis_s(&mut con).await;
    let ticks = wait_tick_after(&mut con, &q, "from-config", t0, Duration::from_secs(30)).await;
    assert!(ticks.iter().all(|t| t % 2 == 0));
    let job = &tick_jobs(&mut con, &q).await[0].job;
    assert_eq!(job["max_attempts"], 2);

    // Changed and paused at run time, then a worker starts: the configured
    // definition is back, still paused.
    cli_ok(
        &url,
        &[
            "schedule",
            "add",
            "from-config",
            "* * * * * *",
            "echo",
            "{}",
            "--queue",
            &q,
        ],
    )
    .await;
    cli_ok(&url, &["schedule", "pause", "from-config"]).await;
    assert_eq!(show(&url, "from-config").await["source"], "cli");
    drop(w);
    let _w = spawn_with_config(&url, &q, &config);
    eventually(
        Duration::from_secs(30),
        "the configuration restored",
        || {
            let url = url.clone();
            async move { show(&url, "from-config").await["source"] == "config" }
        },
    )
    .await;
    let v = show(&url, "from-config").await;
    assert_eq!(v["definition"]["cron"], "*/2 * * * * *");
    assert_eq!(v["paused"], true);
}

/// A worker reading `config`; killed when dropped.
fn spawn_with_config(url: &str, q: &str, config: &str) -> WorkerProcess {
    let child = Command::new(env!("CARGO_BIN_EXE_toolq"))
        .args([
            "--config",
            config,
            "worker",
            "--queue",
            q,
            "--http-addr",
            "off",
        ])
        .env("TOOLQ_REDIS_URL", url)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("toolq worker starts");
    WorkerProcess {
        child,
        log: std::path::PathBuf::new(),
    }
}

// ---------------------------------------------------------------------------
// DST, on Redis's clock.

/// Where Debian's `faketime` package puts the preload library.
fn libfaketime() -> String {
    if let Ok(path) = std::env::var("TOOLQ_TEST_LIBFAKETIME") {
        return path;
    }
    [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/faketime/libfaketime.so.1",
        "/usr/local/lib/faketime/libfaketime.so.1",
    ]
    .iter()
    .find(|p| std::path::Path::new(p).exists())
    .map(|p| (*p).to_owned())
    .expect("libfaketime missing: `apt-get install faketime` (scripts/install-deps.sh)")
}

/// glibc's malloc-debug shim, preloaded before libfaketime. Debian's
/// redis-server allocates with jemalloc, whose start-up reads the clock while
/// libfaketime is still looking up the real clock functions (which
/// allocates): libfaketime gives up and Redis never starts (libfaketime issue
/// 130). With the shim first, libfaketime's own allocations go to glibc's
/// malloc and it starts cleanly; Redis still reports and uses jemalloc.
fn malloc_shim() -> String {
    [
        "/lib/x86_64-linux-gnu/libc_malloc_debug.so.0",
        "/usr/lib/x86_64-linux-gnu/libc_malloc_debug.so.0",
        "/lib/aarch64-linux-gnu/libc_malloc_debug.so.0",
        "/usr/lib/aarch64-linux-gnu/libc_malloc_debug.so.0",
    ]
    .iter()
    .find(|p| std::path::Path::new(p).exists())
    .map(|p| (*p).to_owned())
    .expect("libc_malloc_debug.so.0 (glibc 2.34 or later) missing")
}

/// A redis-server whose clock starts at `start` (UTC) and runs at normal
/// speed; killed when dropped.
struct FakeTimeRedis {
    child: Child,
    url: String,
}

impl FakeTimeRedis {
    fn start(start: &str) -> FakeTimeRedis {
        let port = toolq::redis_server::free_port().unwrap();
        let dir = tempfile::tempdir().unwrap().keep();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&dir)
            .env("LD_PRELOAD", format!("{}:{}", malloc_shim(), libfaketime()))
            .env("FAKETIME", format!("@{start}"))
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
            .env("TZ", "UTC")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        FakeTimeRedis {
            child,
            url: format!("redis://127.0.0.1:{port}"),
        }
    }
}

impl Drop for FakeTimeRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn utc(y: i16, mo: i8, d: i8, h: i8, mi: i8, s: i8) -> i64 {
    jiff::civil::datetime(y, mo, d, h, mi, s, 0)
        .to_zoned(jiff::tz::TimeZone::UTC)
        .unwrap()
        .timestamp()
        .as_second()
}

async fn connect_when_up(url: &str) -> Con {
    let start = Instant::now();
    loop {
        if let Ok(client) = redis::Client::open(url) {
            if let Ok(mut c) = client.get_multiplexed_async_connection().await {
                if redis::cmd("PING")
                    .query_async::<String>(&mut c)
                    .await
                    .is_ok()
                {
                    return c;
                }
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "redis-server under faketime did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Spring forward in Berlin (2027-03-28, 02:00 CET -> 03:00 CEST at 01:00
/// UTC) with Redis's clock five seconds before it and the worker's on
/// today's date: a daily 02:30 tick, which does not exist that day, runs at
/// 03:00 CEST, and the next is 02:30 CEST the day after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spring_forward_on_redis_time() {
    let server = FakeTimeRedis::start("2027-03-28 00:59:55");
    let url = server.url.clone();
    let mut con = connect_when_up(&url).await;
    let now = redis_s(&mut con).await;
    assert!(
        (now - utc(2027, 3, 28, 0, 59, 55)).abs() < 60,
        "Redis's clock is not faked: {now}"
    );
    let q = queue_name("sched-dst");
    cli_ok(&url, &["queue", "pause", &q]).await;
    cli_ok(
        &url,
        &[
            "schedule",
            "add",
            "gap",
            "0 30 2 * * *",
            "echo",
            "{}",
            "--queue",
            &q,
            "--tz",
            "Europe/Berlin",
        ],
    )
    .await;
    let gap_tick = utc(2027, 3, 28, 1, 0, 0);
    assert_eq!(show(&url, "gap").await["next"], gap_tick);
    let _w = spawn_worker_process(&url, &q, 2, &[]);
    let ticks = wait_tick_after(&mut con, &q, "gap", gap_tick - 1, Duration::from_secs(30)).await;
    assert_eq!(ticks, vec![gap_tick]);
    let next = show(&url, "gap").await["next"].as_i64().unwrap();
    println!("spring forward: 02:30 Europe/Berlin ran at {gap_tick} (03:00 CEST), next {next}");
    assert_eq!(next, utc(2027, 3, 29, 0, 30, 0));
}

/// Fall back in Berlin (2027-10-31, 03:00 CEST -> 02:00 CET at 01:00 UTC)
/// with Redis's clock just before it: a half-hourly tick runs again at 02:00
/// CET (the repeated hour), while a daily 02:00 tick, which already had its
/// 02:00 that day (CEST), waits for the next day.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fall_back_on_redis_time() {
    let server = FakeTimeRedis::start("2027-10-31 00:59:55");
    let url = server.url.clone();
    let mut con = connect_when_up(&url).await;
    let now = redis_s(&mut con).await;
    assert!(
        (now - utc(2027, 10, 31, 0, 59, 55)).abs() < 60,
        "Redis's clock is not faked: {now}"
    );
    let q = queue_name("sched-dst");
    cli_ok(&url, &["queue", "pause", &q]).await;
    cli_ok(
        &url,
        &[
            "schedule",
            "add",
            "half-hourly",
            "0 */30 * * * *",
            "echo",
            "{}",
            "--queue",
            &q,
            "--tz",
            "Europe/Berlin",
        ],
    )
    .await;
    cli_ok(
        &url,
        &[
            "schedule",
            "add",
            "daily-two",
            "0 0 2 * * *",
            "echo",
            "{}",
            "--queue",
            &q,
            "--tz",
            "Europe/Berlin",
        ],
    )
    .await;
    let repeated = utc(2027, 10, 31, 1, 0, 0);
    assert_eq!(show(&url, "half-hourly").await["next"], repeated);
    assert_eq!(
        show(&url, "daily-two").await["next"],
        utc(2027, 11, 1, 1, 0, 0)
    );
    let _w = spawn_worker_process(&url, &q, 2, &[]);
    wait_tick_after(
        &mut con,
        &q,
        "half-hourly",
        repeated - 1,
        Duration::from_secs(30),
    )
    .await;
    let jobs = tick_jobs(&mut con, &q).await;
    assert_eq!(ticks_of(&jobs, "half-hourly"), vec![repeated]);
    assert!(ticks_of(&jobs, "daily-two").is_empty());
    let next = show(&url, "half-hourly").await["next"].as_i64().unwrap();
    println!("fall back: */30 Europe/Berlin ran at {repeated} (02:00 CET, the repeated hour), next {next}");
    assert_eq!(next, utc(2027, 10, 31, 1, 30, 0));
}
