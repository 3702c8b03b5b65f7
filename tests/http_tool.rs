//! HTTP endpoints as tools (`[tools.http.<name>]`), against a real HTTP
//! server on 127.0.0.1: the job's args as the JSON body, the JSON response
//! as the output, 5xx and 429 retried (honouring `Retry-After`), other 4xx
//! buried, secrets in headers masked, args checked against a schema file.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use common::*;
use serde_json::{json, Value};
use toolq::config::Config;
use toolq::tools::http::HttpToolConfig;
use toolq::tools::{configured_registry, ToolsConfig};

const WAIT: Duration = Duration::from_secs(30);
const SECRET: &str = "s3cret-token-42";

#[derive(Default)]
struct Calls {
    ok: AtomicUsize,
    flaky: AtomicUsize,
    limited: AtomicUsize,
}

async fn ok(
    State(calls): State<Arc<Calls>>,
    headers: HeaderMap,
    Json(args): Json<Value>,
) -> Response {
    calls.ok.fetch_add(1, Ordering::SeqCst);
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    Json(json!({"got": args, "authorised": auth == Some(&format!("Bearer {SECRET}"))}))
        .into_response()
}

async fn flaky(State(calls): State<Arc<Calls>>) -> Response {
    match calls.flaky.fetch_add(1, Ordering::SeqCst) {
        0 => (StatusCode::SERVICE_UNAVAILABLE, "try later").into_response(),
        _ => Json(json!({"fine": true})).into_response(),
    }
}

async fn limited(State(calls): State<Arc<Calls>>) -> Response {
    match calls.limited.fetch_add(1, Ordering::SeqCst) {
        0 => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            "slow down",
        )
            .into_response(),
        _ => Json(json!({"admitted": true})).into_response(),
    }
}

/// Echoes the caller's token in its error, as careless APIs do.
async fn bad(headers: HeaderMap) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // Long enough that a cut at 200 characters would fall inside the token.
    let filler = "x".repeat(190);
    (StatusCode::BAD_REQUEST, format!("{filler} {auth}")).into_response()
}

/// Echoes the caller's token in a success body: only the worker's scrubber
/// can catch that.
async fn echo_token(headers: HeaderMap) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    Json(json!({"seen": auth, "token": auth.trim_start_matches("Bearer ")})).into_response()
}

async fn serve() -> (String, Arc<Calls>) {
    let calls = Arc::new(Calls::default());
    let app = Router::new()
        .route("/ok", post(ok))
        .route("/flaky", post(flaky))
        .route("/limited", post(limited))
        .route("/bad", post(bad))
        .route("/echo-token", post(echo_token))
        .route("/text", post(|| async { "not json" }))
        .with_state(calls.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, calls)
}

fn tool(url: String) -> HttpToolConfig {
    HttpToolConfig {
        url,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_endpoints_run_as_tools_with_retries_and_masked_secrets() {
    let (base, calls) = serve().await;
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("token");
    std::fs::write(&secret_file, format!("Bearer {SECRET}\n")).unwrap();
    let schema_file = dir.path().join("schema.json");
    std::fs::write(
        &schema_file,
        r#"{"type":"object","properties":{"n":{"type":"integer"}},"required":["n"]}"#,
    )
    .unwrap();
    let with_secret = |path: &str| {
        let mut c = tool(format!("{base}{path}"));
        c.headers.insert(
            "Authorization".into(),
            format!("file:{}", secret_file.display()),
        );
        c
    };
    let mut tools = ToolsConfig::default();
    let mut checked = with_secret("/ok");
    checked.input_schema = Some(schema_file.clone());
    checked.description = "Echoes n.".into();
    tools.http = BTreeMap::from([
        ("api.ok".to_owned(), checked),
        ("api.flaky".to_owned(), with_secret("/flaky")),
        ("api.limited".to_owned(), with_secret("/limited")),
        ("api.bad".to_owned(), with_secret("/bad")),
        ("api.text".to_owned(), with_secret("/text")),
        ("api.echo".to_owned(), with_secret("/echo-token")),
    ]);
    let (registry, _) = configured_registry(&tools).unwrap();

    let server = redis();
    let url = server.url();
    let q = queue_name("http");
    let con = raw(&url).await;
    let worker = start_worker_with(
        Config {
            tools,
            ..config(&url, &q, 4)
        },
        registry,
    );
    let run = |id: &'static str, tool: &'static str, args: Value| {
        let (mut con, q) = (con.clone(), q.clone());
        async move {
            lpush(
                &mut con,
                &q,
                &[json!({"tool": tool, "id": id, "args": args}).to_string()],
            )
            .await;
            wait_result(&mut con, &q, id, WAIT).await
        }
    };

    let r = run("ok", "api.ok", json!({"n": 7})).await;
    assert_eq!(r["status"], "succeeded", "{r}");
    assert_eq!(
        r["output"],
        json!({"got": {"n": 7}, "authorised": true}),
        "{r}"
    );

    let r = run("schema", "api.ok", json!({"n": "seven"})).await;
    assert_eq!(
        (&r["status"], &r["error"]["kind"]),
        (&json!("dead"), &json!("invalid_args")),
        "{r}"
    );
    assert_eq!(
        calls.ok.load(Ordering::SeqCst),
        1,
        "the endpoint never saw the bad args"
    );

    let r = run("flaky", "api.flaky", json!({})).await;
    assert_eq!(
        (&r["status"], &r["attempts"]),
        (&json!("succeeded"), &json!(2)),
        "503 is retried: {r}"
    );

    let started = Instant::now();
    let r = run("limited", "api.limited", json!({})).await;
    assert_eq!(
        (&r["status"], &r["attempts"]),
        (&json!("succeeded"), &json!(2)),
        "{r}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "Retry-After honoured: {:?}",
        started.elapsed()
    );

    let r = run("bad", "api.bad", json!({})).await;
    assert_eq!(
        (&r["status"], &r["error"]["kind"]),
        (&json!("dead"), &json!("permanent")),
        "{r}"
    );
    assert_eq!(r["attempts"], 1, "4xx is not retried: {r}");
    let message = r["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("400") && message.contains("***"),
        "{message}"
    );
    assert!(
        !message.contains(&SECRET[..6]),
        "the token is masked, even cut: {message}"
    );

    let r = run("echo", "api.echo", json!({})).await;
    assert_eq!(r["status"], "succeeded", "{r}");
    assert_eq!(
        r["output"],
        json!({"seen": "***", "token": "***"}),
        "a token echoed in a 2xx body is scrubbed: {r}"
    );

    let r = run("text", "api.text", json!({})).await;
    assert_eq!(r["status"], "dead", "{r}");
    assert!(
        r["error"]["message"].as_str().unwrap().contains("not JSON"),
        "{r}"
    );
    worker.stop().await;
}

/// Each call carries the job's id, attempt and queue as headers (so an
/// endpoint can dedupe): the first attempt gets a 503, the second echoes
/// what it saw on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_tools_get_the_job_id_attempt_and_queue_as_headers() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::<Value>::new()));
    let record = seen.clone();
    let app = Router::new().route(
        "/job",
        post(move |headers: HeaderMap| {
            let record = record.clone();
            async move {
                let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
                let got = json!({
                    "id": header("x-toolq-job-id"),
                    "attempt": header("x-toolq-attempt"),
                    "queue": header("x-toolq-queue"),
                });
                let mut record = record.lock().unwrap();
                record.push(got);
                match record.len() {
                    1 => (StatusCode::SERVICE_UNAVAILABLE, "again").into_response(),
                    _ => Json(json!(record.clone())).into_response(),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let tools = ToolsConfig {
        http: BTreeMap::from([("api.job".to_owned(), tool(format!("{base}/job")))]),
        ..Default::default()
    };
    let (registry, _) = configured_registry(&tools).unwrap();
    let server = redis();
    let url = server.url();
    let q = queue_name("http-headers");
    let mut con = raw(&url).await;
    let worker = start_worker_with(
        Config {
            tools,
            ..config(&url, &q, 2)
        },
        registry,
    );
    let job = json!({"tool": "api.job", "id": "order-7", "args": {}});
    lpush(&mut con, &q, &[job.to_string()]).await;
    let r = wait_result(&mut con, &q, "order-7", WAIT).await;
    assert_eq!(r["status"], "succeeded", "{r}");
    assert_eq!(
        r["output"],
        json!([
            {"id": "order-7", "attempt": "0", "queue": q},
            {"id": "order-7", "attempt": "1", "queue": q},
        ])
    );
    worker.stop().await;
}
