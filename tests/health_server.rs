//! The side port over real sockets: every route, readiness flips, metrics
//! rendering, and abuse (junk paths, bad methods, raw garbage) that must not
//! take the probes down; and a real worker's `/health` while its
//! redis-server is killed and started again.

mod common;
mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::connections::{closed_within, held_push_idle};
use reqwest::{header::CONTENT_TYPE, Client, Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use toolq::health::{
    bind, install_recorder, metrics as names, serve, HealthError, HealthState,
    HEARTBEAT_STALE_AFTER, SHUTDOWN_GRACE,
};

const PATIENCE: Duration = Duration::from_secs(10);

struct Server {
    addr: SocketAddr,
    base: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), HealthError>>,
}

async fn start(state: Arc<HealthState>) -> Server {
    let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = install_recorder().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, state, handle, async {
        let _ = rx.await;
    }));
    Server {
        addr,
        base: format!("http://{addr}"),
        stop: Some(tx),
        task,
    }
}

fn ready_state(id: &str) -> Arc<HealthState> {
    let s = HealthState::new(id.into(), vec!["default".into(), "mail".into()], 8);
    s.set_redis_ok(true);
    s.record_heartbeat();
    Arc::new(s)
}

fn client() -> Client {
    Client::builder()
        .no_proxy()
        .timeout(PATIENCE)
        .build()
        .unwrap()
}

async fn get_json(c: &Client, url: &str) -> (StatusCode, String, Value) {
    let r = c.get(url).send().await.unwrap();
    let status = r.status();
    let ct = r.headers()[CONTENT_TYPE].to_str().unwrap().to_string();
    (status, ct, r.json().await.unwrap())
}

async fn readyz(c: &Client, s: &Server) -> (StatusCode, Value) {
    let (st, ct, body) = get_json(c, &format!("{}/readyz", s.base)).await;
    assert_eq!(ct, "application/json");
    (st, body)
}

#[tokio::test]
async fn every_route_answers_with_status_type_and_body() {
    let state = ready_state("w-routes");
    state.set_depths(vec![
        ("default".into(), [3, 1, 2, 5]),
        ("mail".into(), [0; 4]),
    ]);
    state.record_ping(Duration::from_micros(1500));
    state.job_started();
    let s = start(state.clone()).await;
    let c = client();

    let (st, ct, body) = get_json(&c, &format!("{}/healthz", s.base)).await;
    assert_eq!(
        (st, ct.as_str(), body),
        (StatusCode::OK, "application/json", json!({"status": "ok"}))
    );

    let (st, body) = readyz(&c, &s).await;
    assert_eq!((st, body), (StatusCode::OK, json!({"status": "ready"})));

    let (st, ct, h) = get_json(&c, &format!("{}/health", s.base)).await;
    assert_eq!((st, ct.as_str()), (StatusCode::OK, "application/json"));
    assert_eq!(h["status"], "ok");
    assert_eq!(h["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(h["worker_id"], "w-routes");
    assert!(h["uptime_s"].is_u64());
    assert_eq!(h["redis"], json!({"ok": true, "ping_ms": 1.5}));
    assert_eq!(
        (h["in_flight"].as_u64(), h["concurrency"].as_u64()),
        (Some(1), Some(8))
    );
    assert_eq!(h["shutting_down"], false);
    assert!(h["heartbeat_age_ms"].as_u64().unwrap() < 5_000);
    assert_eq!(
        h["queues"],
        json!([
            {"name": "default", "pending": 3, "active": 1, "delayed": 2, "dead": 5},
            {"name": "mail", "pending": 0, "active": 0, "delayed": 0, "dead": 0},
        ])
    );

    let r = c.get(format!("{}/metrics", s.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let ct = r.headers()[CONTENT_TYPE].to_str().unwrap();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");

    for path in ["/", "/nope", "/healthz/extra", "/metrics.json", "/HEALTHZ"] {
        let (st, ct, body) = get_json(&c, &format!("{}{path}", s.base)).await;
        assert_eq!(
            (st, ct.as_str()),
            (StatusCode::NOT_FOUND, "application/json"),
            "{path}"
        );
        assert_eq!(body, json!({"error": "not found"}), "{path}");
    }

    for (method, path) in [
        ("POST", "/healthz"),
        ("DELETE", "/readyz"),
        ("PUT", "/metrics"),
        ("PATCH", "/health"),
    ] {
        let r = c
            .request(
                Method::from_bytes(method.as_bytes()).unwrap(),
                format!("{}{path}", s.base),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        let allow = r
            .headers()
            .get("allow")
            .map(|v| v.to_str().unwrap().to_string());
        assert!(allow.is_some_and(|a| a.contains("GET")), "{method} {path}");
        assert_eq!(
            r.json::<Value>().await.unwrap(),
            json!({"error": "method not allowed"})
        );
    }
    stop(s).await;
}

#[tokio::test]
async fn readiness_follows_redis_shutdown_and_heartbeat() {
    let state = ready_state("w-ready");
    let s = start(state.clone()).await;
    let c = client();
    let health_status = |c: Client, base: String| async move {
        get_json(&c, &format!("{base}/health")).await.2["status"].clone()
    };

    assert_eq!(readyz(&c, &s).await.0, StatusCode::OK);
    state.set_redis_ok(false);
    let (st, body) = readyz(&c, &s).await;
    assert_eq!(
        (st, body),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "not_ready", "failing": "redis"})
        )
    );
    let (st, _, h) = get_json(&c, &format!("{}/health", s.base)).await;
    assert_eq!(
        (st, &h["status"]),
        (StatusCode::SERVICE_UNAVAILABLE, &json!("down"))
    );
    assert_eq!(h["redis"]["ok"], false);
    assert_eq!(h["redis"]["ping_ms"], Value::Null, "no stale round trip");
    // Liveness must not follow Redis, or an outage restarts every worker.
    assert_eq!(
        get_json(&c, &format!("{}/healthz", s.base)).await.0,
        StatusCode::OK
    );

    state.set_redis_ok(true);
    assert_eq!(
        readyz(&c, &s).await,
        (StatusCode::OK, json!({"status": "ready"}))
    );
    assert_eq!(health_status(c.clone(), s.base.clone()).await, "ok");

    state.set_shutting_down();
    let (st, _, h) = get_json(&c, &format!("{}/health", s.base)).await;
    assert_eq!((st, &h["status"]), (StatusCode::OK, &json!("degraded")));
    state.set_redis_ok(false);
    let (st, body) = readyz(&c, &s).await;
    assert_eq!(
        (st, body["failing"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("shutting_down"))
    );
    assert_eq!(
        get_json(&c, &format!("{}/health", s.base)).await.2["shutting_down"],
        true
    );
    stop(s).await;

    // A worker that never heart-beat is not ready either.
    let fresh = Arc::new(HealthState::new("w-new".into(), vec![], 1));
    fresh.set_redis_ok(true);
    let s = start(fresh.clone()).await;
    assert_eq!(readyz(&c, &s).await.1["failing"], "heartbeat");
    assert_eq!(
        get_json(&c, &format!("{}/health", s.base)).await.2["heartbeat_age_ms"],
        Value::Null
    );
    fresh.record_heartbeat();
    assert_eq!(readyz(&c, &s).await.0, StatusCode::OK);
    stop(s).await;
}

#[tokio::test]
async fn stale_heartbeat_fails_readiness_until_the_next_beat() {
    let state = ready_state("w-stale");
    let s = start(state.clone()).await;
    let c = client();
    assert_eq!(readyz(&c, &s).await.0, StatusCode::OK);
    let start = std::time::Instant::now();
    while readyz(&c, &s).await.0 == StatusCode::OK {
        assert!(start.elapsed() < HEARTBEAT_STALE_AFTER * 2, "never stale");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (st, body) = readyz(&c, &s).await;
    assert_eq!(
        (st, body),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "not_ready", "failing": "heartbeat"})
        )
    );
    let age = get_json(&c, &format!("{}/health", s.base)).await.2["heartbeat_age_ms"].as_u64();
    assert!(age.unwrap() > HEARTBEAT_STALE_AFTER.as_millis() as u64);
    state.record_heartbeat();
    assert_eq!(readyz(&c, &s).await.0, StatusCode::OK);
    stop(s).await;
}

#[tokio::test]
async fn recorded_metrics_appear_on_the_metrics_route() {
    let s = start(ready_state("w-metrics")).await;
    let labels = [
        ("queue", "q-metrics-test"),
        ("tool", "echo"),
        ("outcome", "succeeded"),
    ];
    metrics::counter!(names::JOBS_FINISHED, &labels).increment(3);
    metrics::histogram!(names::JOB_DURATION, "queue" => "q-metrics-test", "tool" => "echo")
        .record(0.0004);
    metrics::histogram!(names::REDIS_RTT).record(0.00004);
    toolq::health::describe_metrics();

    let text = client()
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let want = [
        r#"toolq_jobs_finished_total{queue="q-metrics-test",tool="echo",outcome="succeeded"} 3"#,
        r#"toolq_job_duration_seconds_bucket{queue="q-metrics-test",tool="echo",le="0.0005"} 1"#,
        r#"toolq_job_duration_seconds_bucket{queue="q-metrics-test",tool="echo",le="600"} 1"#,
        r#"toolq_redis_rtt_seconds_bucket{le="0.00005"} 1"#,
        "# TYPE toolq_jobs_finished_total counter",
        "# HELP toolq_jobs_finished_total Jobs finished",
    ];
    for line in want {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    stop(s).await;
}

/// Writes raw bytes, half-closes, and waits for the server to answer or hang
/// up; returns what came back.
async fn raw(addr: SocketAddr, bytes: Vec<u8>) -> Vec<u8> {
    let mut sock = TcpStream::connect(addr).await.unwrap();
    let _ = sock.write_all(&bytes).await;
    let _ = sock.shutdown().await;
    let mut out = Vec::new();
    let read = timeout(PATIENCE, sock.read_to_end(&mut out)).await;
    assert!(
        read.is_ok(),
        "server neither answered nor closed for {:?}",
        String::from_utf8_lossy(&bytes[..bytes.len().min(40)])
    );
    out
}

#[tokio::test]
async fn abuse_gets_answers_or_closed_connections_and_the_server_survives() {
    let s = start(ready_state("w-abuse")).await;
    let c = client();
    let huge = format!("/{}", "a".repeat(200_000));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let (c, base) = (c.clone(), s.base.clone());
        let huge = huge.clone();
        tasks.spawn(async move {
            let (method, path, want): (&[u8], String, Option<u16>) = match i % 5 {
                0 => (b"GET", "/metrics".into(), Some(200)),
                1 => (b"GET", "/healthz".into(), Some(200)),
                2 => (
                    b"GET",
                    format!("/%2e%2e/%2e%2e/etc/passwd?x={i}"),
                    Some(404),
                ),
                3 => (b"GET", huge, None),
                _ => (b"BREW", "/healthz".into(), Some(405)),
            };
            let m = Method::from_bytes(method).unwrap();
            match c.request(m, format!("{base}{path}")).send().await {
                Ok(r) => {
                    if let Some(w) = want {
                        assert_eq!(r.status().as_u16(), w, "{path:.40}");
                    } else {
                        assert!(r.status().is_client_error(), "{}", r.status());
                    }
                    let _ = r.bytes().await;
                }
                // Closing on an oversized request is an acceptable answer.
                Err(e) => assert!(want.is_none() && !e.is_timeout(), "{path:.40}: {e}"),
            }
        });
    }
    let garbage: Vec<Vec<u8>> = vec![
        b"GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(),
        (0..4096u32).map(|i| (i * 7919 % 256) as u8).collect(),
        b"GET / HTTP/9.9\r\n\r\n".to_vec(),
        b"\0\0\0\0\r\n\r\n".to_vec(),
        format!(
            "GET /healthz HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n",
            "b".repeat(1 << 20)
        )
        .into_bytes(),
        b"GET /healthz HTTP/1.1\r\nContent-Length: -1\r\n\r\n".to_vec(),
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
        Vec::new(),
    ];
    for g in garbage.clone() {
        let addr = s.addr;
        tasks.spawn(async move {
            let _ = raw(addr, g).await;
        });
    }
    while let Some(res) = timeout(PATIENCE * 3, tasks.join_next())
        .await
        .expect("requests hung")
    {
        res.unwrap();
    }
    let traversal = raw(s.addr, garbage[0].clone()).await;
    assert!(
        String::from_utf8_lossy(&traversal).starts_with("HTTP/1.1 404"),
        "{:?}",
        String::from_utf8_lossy(&traversal)
    );

    let (st, _, body) = get_json(&c, &format!("{}/healthz", s.base)).await;
    assert_eq!((st, body), (StatusCode::OK, json!({"status": "ok"})));
    stop(s).await;
}

#[tokio::test]
async fn bind_failure_names_the_address() {
    let taken = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = taken.local_addr().unwrap();
    let err = bind(addr).await.unwrap_err();
    assert!(matches!(err, HealthError::Bind { .. }));
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}

#[tokio::test]
async fn shutdown_finishes_within_grace_despite_a_stuck_client() {
    let s = start(ready_state("w-stop")).await;
    // Half a request, never finished: graceful shutdown alone would wait on it.
    let mut stuck = TcpStream::connect(s.addr).await.unwrap();
    stuck
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t0 = std::time::Instant::now();
    stop(s).await;
    assert!(
        t0.elapsed() < SHUTDOWN_GRACE + Duration::from_secs(2),
        "{:?}",
        t0.elapsed()
    );
    drop(stuck);
}

async fn stop(mut s: Server) {
    if let Some(tx) = s.stop.take() {
        let _ = tx.send(());
    }
    let res = timeout(SHUTDOWN_GRACE + PATIENCE, &mut s.task).await;
    res.expect("serve did not stop").unwrap().unwrap();
    assert!(
        TcpStream::connect(s.addr).await.is_err(),
        "still accepting after stop"
    );
}

/// `/health` of a worker until `done` holds for its status and body.
async fn health_until(
    c: &Client,
    base: &str,
    what: &str,
    done: impl Fn(StatusCode, &Value) -> bool,
) -> (StatusCode, Value) {
    let start = std::time::Instant::now();
    loop {
        if let Ok(r) = c.get(format!("{base}/health")).send().await {
            let st = r.status();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            if done(st, &body) {
                return (st, body);
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no {what} within 30 s; last {st}: {body}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_worker_reports_redis_down_while_its_server_is_killed() {
    let mut server = toolq::redis_server::RedisServer::start().expect("redis-server starts");
    let port = toolq::redis_server::free_port().unwrap();
    let config = toolq::config::Config {
        redis_url: server.url(),
        queues: vec![format!("health-{}", std::process::id())],
        concurrency: 2,
        http_addr: format!("127.0.0.1:{port}"),
        shutdown_grace_s: 5,
        ..toolq::config::Config::default()
    };
    let shutdown = toolq::worker::Shutdown::new();
    let worker = toolq::worker::Worker::new(config, toolq::tools::Registry::with_builtins());
    let handle = tokio::spawn(worker.run(shutdown.clone()));
    let (c, base) = (client(), format!("http://127.0.0.1:{port}"));

    let (_, up) = health_until(&c, &base, "ok", |st, b| {
        st == StatusCode::OK && b["status"] == "ok" && b["redis"]["ping_ms"].is_f64()
    })
    .await;
    assert_eq!(up["redis"]["ok"], true, "{up}");

    server.stop();
    let (st, down) = health_until(&c, &base, "redis down", |st, _| {
        st == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(down["status"], "down", "{down}");
    assert_eq!(down["redis"]["ok"], false, "{down}");
    assert_eq!(
        down["redis"]["ping_ms"],
        Value::Null,
        "no stale ping: {down}"
    );
    assert!(down["redis"]["down_for_ms"].is_u64(), "{down}");
    assert!(
        !down["redis"]["error"].as_str().unwrap_or("").is_empty(),
        "says why: {down}"
    );
    let r = c.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    // Still down a few seconds later: nothing flips it back on its own.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (st, later) = health_until(&c, &base, "an answer", |_, _| true).await;
    assert_eq!(
        (st, &later["status"]),
        (StatusCode::SERVICE_UNAVAILABLE, &json!("down"))
    );
    assert!(later["redis"]["down_for_ms"].as_u64() >= down["redis"]["down_for_ms"].as_u64());

    server.restart().expect("redis-server restarts");
    let (_, back) = health_until(&c, &base, "ok again", |st, b| {
        st == StatusCode::OK && b["redis"]["ok"] == true
    })
    .await;
    assert!(back["redis"]["ping_ms"].is_f64(), "{back}");
    assert!(back["redis"].get("error").is_none(), "{back}");

    shutdown.begin();
    timeout(Duration::from_secs(30), handle)
        .await
        .expect("worker stops")
        .unwrap()
        .unwrap();
}

/// The hostile-input trial, against a real `toolq worker` process with 64
/// file descriptors (`ulimit -n 64`, so the cap is a quarter of them, 16):
/// 120 connections that send nothing and 20 that send half a header are held
/// open. Before the limits, the worker accepted them all, its weather calls
/// failed with "Too many open files" and `/healthz` stopped answering. Now
/// each probe is answered at once while they are held, the worker's outbound
/// weather calls all succeed, and every held connection is closed by the
/// worker: over the cap at once, the rest within the header timeout (1 s
/// here), a kept-alive one too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_with_64_fds_answers_probes_and_runs_jobs_while_140_idle_connections_are_held() {
    const KEY: &str = "side-port-weather-key";
    let redis = toolq::redis_server::RedisServer::start().expect("redis-server starts");
    let weather = support::fake_weather::FakeWeather::start(KEY).await;
    let port = toolq::redis_server::free_port().unwrap();
    let queue = format!("side-{}", std::process::id());
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = tokio::process::Command::new("sh")
        .args(["-c", "ulimit -n 64 && exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_toolq"))
        .args(["worker", "--queue", &queue, "--concurrency", "4"])
        .args(["--http-addr", &format!("127.0.0.1:{port}")])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RUST_LOG", "toolq=info")
        .env("TOOLQ_REDIS_URL", redis.url())
        .env("TOOLQ_HTTP_HEADER_TIMEOUT_MS", "1000")
        .env("OPENWEATHER_API_KEY", KEY)
        .env("TOOLQ_TOOLS__WEATHER__BASE_URL", weather.base_url())
        .env("TOOLQ_TOOLS__WEATHER__CACHE_TTL_S", "0")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(std::process::Stdio::null())
        .stderr(log.reopen().unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let worker_log = || std::fs::read_to_string(log.path()).unwrap_or_default();
    // A fresh connection per probe: a pooled one would dodge the cap.
    let probe_client = Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let start = std::time::Instant::now();
    while probe_client
        .get(format!("{base}/healthz"))
        .send()
        .await
        .is_err()
    {
        assert!(
            start.elapsed() < PATIENCE,
            "no side port:\n{}",
            worker_log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut held = Vec::new();
    let mut kept_alive = TcpStream::connect(addr).await.unwrap();
    kept_alive
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    held_push_idle(&mut held, addr, 120, b"").await;
    held_push_idle(&mut held, addr, 20, b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await;

    // Probes while they are held, and jobs that need outbound connections.
    let mut slowest = Duration::ZERO;
    let mut took = Vec::new();
    for _ in 0..10 {
        let t = std::time::Instant::now();
        let r = probe_client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("/healthz while held: {e}\n{}", worker_log()));
        assert_eq!(r.status(), StatusCode::OK);
        slowest = slowest.max(t.elapsed());
        took.push(t.elapsed().as_millis());
    }
    eprintln!("probes while held (ms): {took:?}");
    // The first waits while the worker works through the 140 ahead of it in
    // its backlog (16 slots under `ulimit -n 64`, each freed once idle
    // 100 ms); the others are answered at once.
    assert!(slowest < Duration::from_secs(2), "probes (ms): {took:?}");
    assert!(
        took[1..].iter().all(|&ms| ms < 250),
        "probes (ms): {took:?}"
    );
    let mut con = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys = toolq::queue::QueueKeys::new(&queue);
    for i in 0..10 {
        let job = json!({"id": format!("w{i}"), "tool": "weather", "args": {"city": format!("City {i}")}});
        let _: () = redis::cmd("LPUSH")
            .arg(&keys.pending)
            .arg(job.to_string())
            .query_async(&mut con)
            .await
            .unwrap();
    }
    for i in 0..10 {
        let key = keys.result(&format!("w{i}"));
        let start = std::time::Instant::now();
        let result: Value = loop {
            let text: Option<String> = redis::cmd("GET")
                .arg(&key)
                .query_async(&mut con)
                .await
                .unwrap();
            if let Some(r) = text.and_then(|t| serde_json::from_str::<Value>(&t).ok()) {
                if r["status"] != "retrying" {
                    break r;
                }
            }
            assert!(
                start.elapsed() < PATIENCE,
                "no result for w{i}:\n{}",
                worker_log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(
            result["status"],
            "succeeded",
            "w{i}: {result}\n{}",
            worker_log()
        );
    }

    // Every held connection is closed by the worker; timed from here.
    let t = std::time::Instant::now();
    let mut open = 0;
    for stream in held.iter_mut() {
        if !closed_within(stream, Duration::from_secs(3)).await {
            open += 1;
        }
    }
    assert_eq!(open, 0, "connections still open after the header timeout");
    assert!(
        closed_within(&mut kept_alive, Duration::from_secs(3)).await,
        "an idle kept-alive connection is closed too"
    );
    let all_closed = t.elapsed();
    eprintln!(
        "140 held connections, ulimit -n 64: slowest /healthz {slowest:?}, \
         10 weather jobs succeeded, all held connections closed {all_closed:?} later"
    );
    assert!(
        !worker_log().contains("Too many open files"),
        "{}",
        worker_log()
    );

    // SIGTERM: the worker still stops cleanly.
    let pid = child.id().expect("running") as libc::pid_t;
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("worker stops")
        .unwrap();
    assert!(status.success(), "{status}\n{}", worker_log());
}
