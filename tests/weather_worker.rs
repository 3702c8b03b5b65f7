//! The weather tool run by real workers against a fake OpenWeather on
//! 127.0.0.1: the result cache (hits, stampedes, expiry), retries and
//! permanent errors, the distributed rate limit, and the API key kept out of
//! everything a worker writes.

mod common;
mod support;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use support::fake_weather::{FakeWeather, Reply};
use toolq::config::Config;
use toolq::tools::{configured_registry, RateLimit, Secret};

const KEY: &str = "TESTKEY-0a1b2c3d4e5f60718293a4b5c6d7e8f9";
const PATIENCE: Duration = Duration::from_secs(20);

fn weather_config(url: &str, queue: &str, server: &FakeWeather, concurrency: usize) -> Config {
    let mut config = config(url, queue, concurrency);
    config.tools.weather.api_key = Some(Secret::new(KEY));
    config.tools.weather.base_url = server.base_url();
    config
}

fn start(config: Config) -> RunningWorker {
    let (registry, unconfigured) = configured_registry(&config.tools).unwrap();
    assert!(unconfigured.is_empty());
    start_worker_with(config, registry)
}

fn job(id: &str, args: Value) -> String {
    json!({"id": id, "tool": "weather", "args": args}).to_string()
}

async fn run_one(
    con: &mut redis::aio::MultiplexedConnection,
    queue: &str,
    id: &str,
    args: Value,
) -> Value {
    lpush(con, queue, &[job(id, args)]).await;
    wait_result(con, queue, id, PATIENCE).await
}

async fn keys_matching(con: &mut redis::aio::MultiplexedConnection, pattern: &str) -> Vec<String> {
    redis::cmd("KEYS")
        .arg(pattern)
        .query_async(con)
        .await
        .unwrap()
}

#[tokio::test]
async fn jobs_succeed_and_identical_ones_come_from_the_cache() {
    let redis = redis();
    let server = FakeWeather::start(KEY).await;
    let queue = queue_name("weather-cache");
    let worker = start(weather_config(&redis.url(), &queue, &server, 4));
    let mut con = raw(&redis.url()).await;

    let first = run_one(
        &mut con,
        &queue,
        "a",
        json!({"city": "London", "units": "metric"}),
    )
    .await;
    assert_eq!(first["status"], "succeeded", "{first}");
    assert_eq!(first["cached"], false);
    assert_eq!(
        first["output"],
        json!({
            "city": "London", "country": "GB", "lat": 51.5085, "lon": -0.1257,
            "temperature": 298.48, "feels_like": 298.74, "humidity": 64, "pressure": 1015,
            "wind_speed": 0.62, "wind_deg": 349, "description": "moderate rain",
            "units": "metric", "observed_at": 1661870592
        })
    );

    // Same arguments in another order: same entry.
    let second = run_one(
        &mut con,
        &queue,
        "b",
        json!({"units": "metric", "city": "London"}),
    )
    .await;
    assert_eq!(second["status"], "succeeded", "{second}");
    assert_eq!(second["cached"], true);
    assert_eq!(second["attempts"], 1);
    assert_eq!(second["output"], first["output"]);
    assert_eq!(server.requests().len(), 1, "the second job reached the API");

    let entries = keys_matching(&mut con, "toolq:cache:weather:*").await;
    assert_eq!(entries.len(), 1, "{entries:?}: no lock key may be left");
    let digest = entries[0].strip_prefix("toolq:cache:weather:").unwrap();
    assert!(digest.len() == 64 && digest.bytes().all(|c| c.is_ascii_hexdigit()));
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&entries[0])
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(
        (1..=600_000).contains(&ttl),
        "cache TTL {ttl} ms, want the 600 s default"
    );

    // Other arguments are another entry.
    let third = run_one(&mut con, &queue, "c", json!({"city": "Paris"})).await;
    assert_eq!(third["cached"], false);
    assert_eq!(server.requests().len(), 2);
    worker.stop().await;
}

#[tokio::test]
async fn concurrent_identical_jobs_on_two_workers_make_one_request() {
    let redis = redis();
    let server = FakeWeather::start(KEY).await;
    // Slow enough that every job misses while the first call is in flight.
    server.reply(Reply::Delay(
        Duration::from_millis(500),
        Box::new(Reply::Realistic),
    ));
    let queue = queue_name("weather-stampede");
    let a = start(weather_config(&redis.url(), &queue, &server, 10));
    let b = start(weather_config(&redis.url(), &queue, &server, 10));
    let mut con = raw(&redis.url()).await;

    let ids: Vec<String> = (0..20).map(|i| format!("s{i}")).collect();
    let jobs: Vec<String> = ids
        .iter()
        .map(|id| job(id, json!({"city": "Oslo"})))
        .collect();
    lpush(&mut con, &queue, &jobs).await;
    let mut cached = 0;
    let mut workers = std::collections::HashSet::new();
    for id in &ids {
        let r = wait_result(&mut con, &queue, id, PATIENCE).await;
        assert_eq!(r["status"], "succeeded", "{r}");
        assert_eq!(r["attempts"], 1);
        cached += usize::from(r["cached"] == true);
        workers.insert(r["worker"].as_str().unwrap().to_owned());
    }
    assert_eq!(server.requests().len(), 1, "stampede reached the API");
    assert_eq!(cached, 19, "all but the one that called are cache hits");
    assert_eq!(workers.len(), 2, "both workers took part");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn entries_expire_after_the_ttl_and_failures_are_not_cached() {
    let redis = redis();
    let server = FakeWeather::start(KEY).await;
    let queue = queue_name("weather-ttl");
    let mut config = weather_config(&redis.url(), &queue, &server, 2);
    config.tools.weather.cache_ttl = Duration::from_millis(400);
    let worker = start(config);
    let mut con = raw(&redis.url()).await;

    let args = json!({"lat": 44.34, "lon": 10.99});
    assert_eq!(
        run_one(&mut con, &queue, "t1", args.clone()).await["cached"],
        false
    );
    assert_eq!(
        run_one(&mut con, &queue, "t2", args.clone()).await["cached"],
        true
    );
    eventually(Duration::from_secs(5), "the entry to expire", || {
        let mut con = con.clone();
        async move {
            keys_matching(&mut con, "toolq:cache:weather:*")
                .await
                .is_empty()
        }
    })
    .await;
    let third = run_one(&mut con, &queue, "t3", args).await;
    assert_eq!(third["cached"], false);
    assert_eq!(third["status"], "succeeded");
    assert_eq!(server.requests().len(), 2, "fetched again after the TTL");

    server.reply(Reply::error(404, "city not found"));
    for id in ["n1", "n2"] {
        let r = run_one(&mut con, &queue, id, json!({"city": "Atlantis"})).await;
        assert_eq!(r["status"], "dead");
        assert_eq!(r["cached"], false);
    }
    assert_eq!(
        server.requests().len(),
        4,
        "a failure was served from the cache"
    );
    worker.stop().await;
}

#[tokio::test]
async fn a_429_is_retried_after_its_retry_after() {
    let redis = redis();
    let server = FakeWeather::start(KEY).await;
    server.reply(Reply::Json {
        status: 429,
        body: json!({"cod": 429, "message": "too many requests"}),
        headers: vec![("retry-after", "1".into())],
    });
    let queue = queue_name("weather-429");
    let worker = start(weather_config(&redis.url(), &queue, &server, 2));
    let mut con = raw(&redis.url()).await;
    lpush(&mut con, &queue, &[job("r", json!({"city": "Rome"}))]).await;
    eventually(PATIENCE, "the first request", || async {
        !server.requests().is_empty()
    })
    .await;
    server.reply(Reply::Realistic);

    let r = wait_result(&mut con, &queue, "r", PATIENCE).await;
    assert_eq!(r["status"], "succeeded", "{r}");
    assert_eq!(r["attempts"], 2);
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let gap = requests[1].at - requests[0].at;
    // The test backoff is 20 ms; only Retry-After explains a second's wait.
    // (100 ms of slack for Redis's clock against ours.)
    assert!(gap >= Duration::from_millis(900), "retried after {gap:?}");
    worker.stop().await;
}

#[tokio::test]
async fn auth_and_not_found_errors_go_to_dead_with_clear_messages() {
    let redis = redis();
    let server = FakeWeather::start(KEY).await;
    let queue = queue_name("weather-dead");
    let worker = start(weather_config(&redis.url(), &queue, &server, 2));
    let mut con = raw(&redis.url()).await;

    server.reply(Reply::error(404, "city not found"));
    let r = run_one(&mut con, &queue, "nf", json!({"city": "Atlantis"})).await;
    assert_eq!(r["status"], "dead");
    assert_eq!(r["attempts"], 1);
    assert_eq!(r["error"]["message"], "city not found: Atlantis");

    server.reply(Reply::error(401, "Invalid API key."));
    let r = run_one(&mut con, &queue, "auth", json!({"city": "Oslo"})).await;
    assert_eq!(r["status"], "dead");
    assert_eq!(r["attempts"], 1);
    assert_eq!(
        r["error"]["message"],
        "weather API rejected the API key (401)"
    );

    let dead = dead_entries(&mut con, &queue).await;
    assert_eq!(dead.len(), 2);
    let mut messages: Vec<&str> = dead
        .iter()
        .map(|d| d["error"]["message"].as_str().unwrap())
        .collect();
    messages.sort();
    assert_eq!(
        messages,
        [
            "city not found: Atlantis",
            "weather API rejected the API key (401)"
        ]
    );
    assert_eq!(
        server.requests().len(),
        2,
        "permanent errors are not retried"
    );
    worker.stop().await;
}

#[tokio::test]
async fn without_a_key_jobs_die_with_advice() {
    let redis = redis();
    let queue = queue_name("weather-nokey");
    let config = config(&redis.url(), &queue, 2);
    assert!(config.tools.weather.api_key.is_none());
    let mut worker = toolq::cli::worker::build(config).unwrap();
    let shutdown = toolq::worker::Shutdown::new();
    let _health = worker.health();
    let handle = tokio::spawn(worker.run(shutdown.clone()));
    let mut con = raw(&redis.url()).await;

    let r = run_one(&mut con, &queue, "k", json!({"city": "Oslo"})).await;
    assert_eq!(r["status"], "dead");
    assert_eq!(r["attempts"], 1);
    assert_eq!(
        r["error"]["message"],
        "weather tool is not configured: set OPENWEATHER_API_KEY"
    );
    assert_eq!(
        dead_entries(&mut con, &queue).await[0]["error"]["message"],
        "weather tool is not configured: set OPENWEATHER_API_KEY"
    );
    shutdown.begin();
    handle.await.unwrap().unwrap();
}

#[tokio::test]
async fn the_rate_limit_spreads_calls_across_workers_without_failing_jobs() {
    let redis = redis();
    let server = FakeWeather::start(KEY).await;
    let queue = queue_name("weather-rate");
    let mut config = weather_config(&redis.url(), &queue, &server, 10);
    config
        .tools
        .set_rate_limit("weather", Some(RateLimit::new(5, Duration::from_secs(1))));
    let a = start(config.clone());
    let b = start(config);
    let mut con = raw(&redis.url()).await;

    // Distinct cities, so the cache cannot absorb any of them.
    let ids: Vec<String> = (0..20).map(|i| format!("q{i}")).collect();
    let jobs: Vec<String> = ids
        .iter()
        .map(|id| job(id, json!({"city": format!("City {id}")})))
        .collect();
    let sent = Instant::now();
    lpush(&mut con, &queue, &jobs).await;
    for id in &ids {
        let r = wait_result(&mut con, &queue, id, PATIENCE).await;
        assert_eq!(r["status"], "succeeded", "{r}");
        assert_eq!(r["attempts"], 1, "a deferral spent an attempt: {r}");
    }
    let took = sent.elapsed();
    assert!(dead_entries(&mut con, &queue).await.is_empty());

    let mut at: Vec<Instant> = server.requests().iter().map(|r| r.at).collect();
    assert_eq!(at.len(), 20);
    at.sort();
    // At most 5 in any window; 100 ms of slack for HTTP against Redis's clock.
    let window = Duration::from_millis(900);
    let busiest = (0..at.len())
        .map(|i| at[i..].iter().take_while(|t| **t - at[i] < window).count())
        .max()
        .unwrap();
    assert!(busiest <= 5, "{busiest} requests within {window:?}");
    let span = at[19] - at[0];
    assert!(
        span >= Duration::from_millis(2800),
        "20 calls at 5/s in {span:?}"
    );

    let metrics = toolq::health::install_recorder().unwrap().render();
    let limited = metric_value(&metrics, "toolq_rate_limited_total{tool=\"weather\"}");
    assert!(limited >= 1.0, "rate-limited jobs not counted:\n{metrics}");
    println!(
        "20 jobs at 5/s: at most {busiest} requests in any {window:?}, first to last \
         request {span:?}, all results after {took:?}, {limited} deferrals"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn any_tool_can_be_rate_limited() {
    let redis = redis();
    let queue = queue_name("echo-rate");
    let mut config = config(&redis.url(), &queue, 8);
    config
        .tools
        .set_rate_limit("echo", Some(RateLimit::new(2, Duration::from_secs(1))));
    let worker = start_worker(config);
    let mut con = raw(&redis.url()).await;
    let jobs: Vec<String> = (0..5)
        .map(|i| json!({"id": format!("e{i}"), "tool": "echo", "args": {"i": i}}).to_string())
        .collect();
    lpush(&mut con, &queue, &jobs).await;
    let mut started = Vec::new();
    for i in 0..5 {
        let r = wait_result(&mut con, &queue, &format!("e{i}"), PATIENCE).await;
        assert_eq!(r["status"], "succeeded", "{r}");
        assert_eq!(r["attempts"], 1);
        started.push(r["started_at"].as_u64().unwrap());
    }
    started.sort();
    // 2 per second: the 3rd call waits for the 1st to leave the window, the
    // 5th for the 3rd (100 ms of slack between clocks).
    assert!(started[2] - started[0] >= 900, "{started:?}");
    assert!(started[4] - started[2] >= 900, "{started:?}");
    worker.stop().await;
}

fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Kills the worker process if the test fails before stopping it.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_api_key_stays_out_of_results_dead_entries_logs_and_metrics() {
    let redis = redis();
    let server = FakeWeather::start(KEY).await;
    let queue = queue_name("weather-secret");
    let port = toolq::redis_server::free_port().unwrap();
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = Child(
        std::process::Command::new(env!("CARGO_BIN_EXE_toolq"))
            .args(["worker", "--queue", &queue, "--concurrency", "4"])
            .args(["--http-addr", &format!("127.0.0.1:{port}")])
            .env("TOOLQ_REDIS_URL", redis.url())
            .env("OPENWEATHER_API_KEY", KEY)
            .env("TOOLQ_TOOLS__WEATHER__BASE_URL", server.base_url())
            .env("TOOLQ_TOOLS__WEATHER__TIMEOUT_MS", "300")
            .env("TOOLQ_TOOLS__WEATHER__RATE_LIMIT", "2/s")
            .env("TOOLQ_BACKOFF_BASE_MS", "20")
            .env("TOOLQ_BACKOFF_MAX_MS", "100")
            // As chatty as an operator chasing a problem would make it.
            .env("RUST_LOG", "trace")
            .stdout(std::process::Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap(),
    );
    let mut con = raw(&redis.url()).await;

    let ok = run_one(&mut con, &queue, "ok", json!({"city": "London"})).await;
    assert_eq!(ok["status"], "succeeded", "{ok}");
    let again = run_one(&mut con, &queue, "again", json!({"city": "London"})).await;
    assert_eq!(again["cached"], true);
    // Three calls at once against 2/s: one waits for a slot.
    let burst: Vec<String> = ["Bergen", "Tromsø", "Bodø"]
        .iter()
        .map(|c| job(c, json!({"city": c})))
        .collect();
    lpush(&mut con, &queue, &burst).await;
    for id in ["Bergen", "Tromsø", "Bodø"] {
        let r = wait_result(&mut con, &queue, id, PATIENCE).await;
        assert_eq!(r["status"], "succeeded", "{r}");
        assert_eq!(r["attempts"], 1);
    }
    // Every failure path: permanent ones, an API echoing the key back,
    // timeouts and 5xx until attempts run out.
    let failures: [(&str, Reply); 5] = [
        ("nf", Reply::error(404, "city not found")),
        ("auth", Reply::error(401, "Invalid API key")),
        (
            "echo",
            Reply::error(400, &format!("bad request appid={KEY}")),
        ),
        (
            "slow",
            Reply::Delay(Duration::from_secs(1), Box::new(Reply::Realistic)),
        ),
        ("down", Reply::error(503, "maintenance")),
    ];
    for (id, reply) in failures {
        server.reply(reply);
        let payload = json!({"id": id, "tool": "weather", "args": {"city": id}, "max_attempts": 2});
        lpush(&mut con, &queue, &[payload.to_string()]).await;
        let r = wait_result(&mut con, &queue, id, PATIENCE).await;
        assert_eq!(r["status"], "dead", "{r}");
    }

    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metric_value(&metrics, "toolq_cache_hits_total{tool=\"weather\"}") >= 1.0);
    assert!(metric_value(&metrics, "toolq_cache_misses_total{tool=\"weather\"}") >= 1.0);
    assert!(metric_value(&metrics, "toolq_rate_limited_total{tool=\"weather\"}") >= 1.0);
    assert!(!metrics.contains(KEY), "key in /metrics");

    let stored = dump_redis(&mut con).await;
    assert!(
        stored.contains("appid=***"),
        "the echoed key was not redacted"
    );
    assert!(
        stored.contains("did not answer within 300ms"),
        "no timeout seen"
    );
    assert!(!stored.contains(KEY), "key stored in Redis:\n{stored}");

    // SIGTERM, so the worker logs its whole stop sequence too.
    let pid = child.0.id() as libc::pid_t;
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = child.0.wait().unwrap();
    assert!(status.success(), "worker exited with {status}");
    let logs = std::fs::read_to_string(log.path()).unwrap();
    assert!(
        logs.contains("city not found"),
        "logs not captured:\n{logs}"
    );
    assert!(logs.contains("worker stopped"));
    assert!(!logs.contains(KEY), "key in the logs:\n{logs}");
    println!(
        "key absent from {} log lines, {} bytes of /metrics, {} bytes of Redis",
        logs.lines().count(),
        metrics.len(),
        stored.len()
    );
}

/// Every key and value in Redis, as text.
async fn dump_redis(con: &mut redis::aio::MultiplexedConnection) -> String {
    let mut out = String::new();
    for key in keys_matching(con, "*").await {
        let kind: String = redis::cmd("TYPE").arg(&key).query_async(con).await.unwrap();
        let cmd = match kind.as_str() {
            "string" => redis::cmd("GET").arg(&key).clone(),
            "list" => redis::cmd("LRANGE").arg(&key).arg(0).arg(-1).clone(),
            "zset" => redis::cmd("ZRANGE").arg(&key).arg(0).arg(-1).clone(),
            "hash" => redis::cmd("HGETALL").arg(&key).clone(),
            "set" => redis::cmd("SMEMBERS").arg(&key).clone(),
            other => panic!("unexpected type {other} of {key}"),
        };
        let value: redis::Value = cmd.query_async(con).await.unwrap();
        out.push_str(&format!("{key} = {value:?}\n"));
    }
    out
}

/// The hostile-input trial's two leaks, through a real worker process: an
/// API answering 400 with a 190-character message and then the key (a cut
/// at 200 characters made before masking kept the key's first characters),
/// and an API echoing the key in a 200 body (stored whole in the result and
/// the cache). The Redis password, echoed by a job, is scrubbed the same way.
#[tokio::test]
async fn a_key_cut_by_truncation_or_echoed_in_a_success_body_is_stored_nowhere() {
    const PASSWORD: &str = "redis-pw-7c1e90b2";
    let redis = toolq::redis_server::RedisServer::start_with(&["--requirepass", PASSWORD]).unwrap();
    let url = format!("redis://default:{PASSWORD}@127.0.0.1:{}", redis.port());
    let server = FakeWeather::start(KEY).await;
    let queue = queue_name("weather-scrub");
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = Child(
        std::process::Command::new(env!("CARGO_BIN_EXE_toolq"))
            .args(["worker", "--queue", &queue, "--http-addr", "off"])
            .env("TOOLQ_REDIS_URL", &url)
            .env("OPENWEATHER_API_KEY", KEY)
            .env("TOOLQ_TOOLS__WEATHER__BASE_URL", server.base_url())
            .env("RUST_LOG", "toolq=debug")
            .stdout(std::process::Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap(),
    );
    let mut con = raw(&url).await;

    let filler = "x".repeat(190);
    server.reply(Reply::error(400, &format!("{filler}{KEY}")));
    let cut = run_one(&mut con, &queue, "cut", json!({"city": "Oslo"})).await;
    assert_eq!(cut["status"], "dead", "{cut}");
    let message = cut["error"]["message"].as_str().unwrap();
    assert!(message.ends_with(&format!("{filler}***")), "{message}");

    let echoed = fake_weather_current(&format!("Echo {KEY}"));
    server.reply(Reply::json(200, echoed));
    let ok = run_one(&mut con, &queue, "echoed", json!({"city": "Echo"})).await;
    assert_eq!(ok["status"], "succeeded", "{ok}");
    assert_eq!(ok["output"]["city"], "Echo ***", "{ok}");
    let again = run_one(&mut con, &queue, "again", json!({"city": "Echo"})).await;
    assert_eq!(
        (&again["cached"], &again["output"]),
        (&json!(true), &ok["output"])
    );

    let payload = json!({"id": "pw", "tool": "echo", "args": {"said": format!("pw={PASSWORD}")}});
    lpush(&mut con, &queue, &[payload.to_string()]).await;
    let pw = wait_result(&mut con, &queue, "pw", PATIENCE).await;
    assert_eq!(pw["output"]["said"], "pw=***", "{pw}");

    let stored = dump_redis(&mut con).await;
    assert!(
        stored.contains("toolq:cache:weather:"),
        "no cache entry:\n{stored}"
    );
    for secret in [KEY, &KEY[..8], PASSWORD] {
        assert!(
            !stored.contains(secret),
            "{secret} stored in Redis:\n{stored}"
        );
    }
    let pid = child.0.id() as libc::pid_t;
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    assert!(child.0.wait().unwrap().success());
    let logs = std::fs::read_to_string(log.path()).unwrap();
    assert!(
        logs.contains("attempt failed"),
        "logs not captured:\n{logs}"
    );
    for secret in [KEY, &KEY[..8], PASSWORD] {
        assert!(!logs.contains(secret), "{secret} in the logs:\n{logs}");
    }
}

/// A current-weather body for the place `name`, as the fake API sends it.
fn fake_weather_current(name: &str) -> Value {
    support::fake_weather::current_weather(name, "NO", 59.91, 10.75)
}
