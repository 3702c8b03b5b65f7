//! MCP servers as tool sources, against real servers: the fixture server in
//! `tests/fixtures/mcp_server.py` (the official Python SDK, with tools that
//! misbehave on request) and the reference `server-everything` from npm.
//! `scripts/install-mcp-fixtures.sh` installs both (`scripts/test.sh` runs
//! it and sets `TOOLQ_MCP_FIXTURES`).

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use toolq::config::Config;
use toolq::queue::QueueKeys;
use toolq::tools::mcp::{McpConfig, McpServerConfig};

const WAIT: Duration = Duration::from_secs(30);

fn fixtures() -> PathBuf {
    fixtures_dir()
}

fn python_server(env: &[(&str, String)]) -> McpServerConfig {
    let python = fixtures().join("venv/bin/python");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mcp_server.py");
    McpServerConfig {
        command: vec![python.display().to_string(), script.display().to_string()],
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        call_timeout_ms: 10_000,
        ..Default::default()
    }
}

fn everything_server() -> McpServerConfig {
    let entry =
        fixtures().join("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    McpServerConfig {
        command: vec!["node".into(), entry.display().to_string(), "stdio".into()],
        ..Default::default()
    }
}

fn with_servers(url: &str, q: &str, servers: &[(&str, McpServerConfig)]) -> Config {
    Config {
        mcp: McpConfig {
            servers: servers
                .iter()
                .map(|(n, c)| (n.to_string(), c.clone()))
                .collect::<BTreeMap<_, _>>(),
        },
        max_attempts: 3,
        ..config(url, q, 8)
    }
}

fn job(tool: &str, id: &str, args: Value) -> String {
    json!({"tool": tool, "id": id, "args": args}).to_string()
}

async fn run_one(
    con: &mut redis::aio::MultiplexedConnection,
    q: &str,
    tool: &str,
    id: &str,
    args: Value,
) -> Value {
    lpush(con, q, &[job(tool, id, args)]).await;
    wait_result(con, q, id, WAIT).await
}

/// The fixture's tools are listed at start and run as jobs; arguments are
/// checked against the tool's `inputSchema` first, and a job that fails
/// the check is buried without the server being called.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_tools_run_as_jobs_and_bad_arguments_never_reach_the_server() {
    let server = redis();
    let url = server.url();
    let q = queue_name("mcp");
    let mut con = raw(&url).await;
    let log = tempfile::NamedTempFile::new().unwrap();
    let fx = python_server(&[("FIXTURE_LOG", log.path().display().to_string())]);
    let worker = start_worker(with_servers(&url, &q, &[("fx", fx)]));

    let r = run_one(&mut con, &q, "fx.add", "sum", json!({"a": 2, "b": 3})).await;
    assert_eq!(r["status"], "succeeded", "{r}");
    assert_eq!(
        r["output"],
        json!({"result": 5}),
        "structuredContent is the output"
    );

    let r = run_one(&mut con, &q, "fx.add", "bad", json!({"a": "two", "b": 3})).await;
    assert_eq!(r["status"], "dead", "{r}");
    assert_eq!(r["error"]["kind"], "invalid_args", "{r}");
    assert!(
        r["error"]["message"].as_str().unwrap().contains("/a"),
        "{r}"
    );
    assert_eq!(r["attempts"], 1, "{r}");
    let calls = std::fs::read_to_string(log.path()).unwrap();
    assert_eq!(calls, "2+3\n", "the server saw only the valid call");

    let r = run_one(&mut con, &q, "fx.fail", "err", json!({"message": "boom"})).await;
    assert_eq!(
        (&r["status"], &r["error"]["kind"]),
        (&json!("dead"), &json!("permanent")),
        "{r}"
    );
    assert_eq!(r["attempts"], 1, "isError is permanent by default: {r}");

    let r = run_one(&mut con, &q, "fx.big", "big", json!({"n": 2_000_000})).await;
    assert_eq!(r["status"], "dead", "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_result_bytes"),
        "{r}"
    );

    // `/health` shows the server's state (refreshed by the monitor loop).
    let health = worker.health.clone();
    eventually(WAIT, "/health to show the server up", || {
        let servers = health.mcp_servers();
        async move { servers == [("fx".to_owned(), true)] }
    })
    .await;
    worker.stop().await;
}

/// A server that exits in the middle of a call: the call fails retryably,
/// the server is restarted, and the job succeeds on its next attempt. A
/// call that hangs past the job's timeout fails as a timeout and is
/// retried; a server that writes garbage to stdout does not lose the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_dies_or_hangs_mid_call_costs_an_attempt_not_the_job() {
    let server = redis();
    let url = server.url();
    let q = queue_name("mcpfault");
    let mut con = raw(&url).await;
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("died").display().to_string();
    let worker = start_worker(with_servers(&url, &q, &[("fx", python_server(&[]))]));

    let r = run_one(
        &mut con,
        &q,
        "fx.die_once",
        "die",
        json!({"marker": marker}),
    )
    .await;
    assert_eq!(r["status"], "succeeded", "{r}");
    assert_eq!(r["output"], json!({"result": "survived"}), "{r}");
    assert_eq!(
        r["attempts"], 2,
        "the crash cost one attempt, the restart none: {r}"
    );

    let hang = json!({"tool": "fx.hang", "id": "hang", "args": {"seconds": 30}, "timeout_ms": 300, "max_attempts": 2});
    lpush(&mut con, &q, &[hang.to_string()]).await;
    let r = wait_result(&mut con, &q, "hang", WAIT).await;
    assert_eq!(
        (&r["status"], &r["error"]["kind"]),
        (&json!("dead"), &json!("timeout")),
        "{r}"
    );
    assert_eq!(r["attempts"], 2, "{r}");

    let r = run_one(&mut con, &q, "fx.garbage", "garbage", json!({})).await;
    assert!(r["status"] == "succeeded" || r["status"] == "dead", "{r}");
    // The server still answers afterwards (restarted if the garbage ended it).
    let r = run_one(&mut con, &q, "fx.add", "after", json!({"a": 1, "b": 1})).await;
    assert_eq!(r["output"], json!({"result": 2}), "{r}");
    worker.stop().await;
}

/// A job for a configured server whose tools are not listed (it never
/// started) is retried with backoff, not buried as an unknown tool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_for_a_server_that_is_down_is_retried_not_buried_as_unknown() {
    let server = redis();
    let url = server.url();
    let q = queue_name("mcpdown");
    let mut con = raw(&url).await;
    let down = McpServerConfig {
        command: vec!["/nonexistent/mcp-server".into()],
        ..Default::default()
    };
    let worker = start_worker(Config {
        backoff_base_ms: 10,
        backoff_max_ms: 20,
        ..with_servers(&url, &q, &[("down", down)])
    });
    let r = run_one(&mut con, &q, "down.anything", "d", json!({})).await;
    assert_eq!(r["status"], "dead", "{r}");
    assert_eq!(r["error"]["kind"], "retryable", "{r}");
    assert_eq!(r["attempts"], 3, "retried, not buried at once: {r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("MCP server `down`"),
        "{r}"
    );
    // A name outside every server's prefix is still an unknown tool.
    let r = run_one(&mut con, &q, "nosuch", "u", json!({})).await;
    assert_eq!(r["error"]["kind"], "unknown_tool", "{r}");
    worker.stop().await;
}

/// The reference server from npm: text, structured and image results, a
/// long-running operation, schema checks, and a tool that would ask the
/// client for sampling (not offered: toolq declares no such capability).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_everything_tools_run_as_jobs() {
    let server = redis();
    let url = server.url();
    let q = queue_name("everything");
    let mut con = raw(&url).await;
    let worker = start_worker(with_servers(&url, &q, &[("ev", everything_server())]));

    let r = run_one(&mut con, &q, "ev.echo", "echo", json!({"message": "hello"})).await;
    assert_eq!(r["status"], "succeeded", "{r}");
    assert!(r["output"].to_string().contains("hello"), "{r}");

    let r = run_one(&mut con, &q, "ev.get-sum", "sum", json!({"a": 2, "b": 40})).await;
    assert_eq!(r["status"], "succeeded", "{r}");
    assert!(r["output"].to_string().contains("42"), "{r}");

    let r = run_one(&mut con, &q, "ev.get-tiny-image", "img", json!({})).await;
    assert_eq!(r["status"], "succeeded", "{r}");
    let blocks = r["output"].as_array().expect("a content list");
    assert!(
        blocks
            .iter()
            .any(|b| b["type"] == "image" && b["data"].is_string()),
        "{r}"
    );

    let r = run_one(
        &mut con,
        &q,
        "ev.trigger-long-running-operation",
        "long",
        json!({"duration": 1, "steps": 2}),
    )
    .await;
    assert_eq!(r["status"], "succeeded", "{r}");

    let r = run_one(
        &mut con,
        &q,
        "ev.get-sum",
        "badsum",
        json!({"a": "x", "b": 1}),
    )
    .await;
    assert_eq!(r["error"]["kind"], "invalid_args", "{r}");

    // Tools that need a client capability toolq does not declare (sampling,
    // elicitation, roots) are not offered to it, so no job can hang on one.
    let r = run_one(
        &mut con,
        &q,
        "ev.trigger-sampling-request",
        "sample",
        json!({"prompt": "hi"}),
    )
    .await;
    assert_eq!(r["status"], "dead", "{r}");
    worker.stop().await;
}

/// 2,000 jobs through a stdio server that is SIGKILLed every second (each
/// process once it has served some calls): every job ends succeeded, none
/// lost; the calls a kill interrupted ran again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_every_second_loses_no_job() {
    let server = redis();
    let url = server.url();
    let q = queue_name("mcpkill");
    let mut con = raw(&url).await;
    let pids = tempfile::tempdir().unwrap();
    let fx = python_server(&[("FIXTURE_PID_DIR", pids.path().display().to_string())]);
    let worker = start_worker(Config {
        backoff_base_ms: 50,
        backoff_max_ms: 500,
        max_attempts: 20,
        ..with_servers(&url, &q, &[("fx", fx)])
    });
    let n = 2000;
    let ids: Vec<String> = (0..n).map(|i| format!("k{i}")).collect();
    let jobs: Vec<String> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| job("fx.add", id, json!({"a": i, "b": 1})))
        .collect();
    lpush(&mut con, &q, &jobs).await;
    let k = QueueKeys::new(&q);
    let start = Instant::now();
    let mut kills = 0;
    let mut killed = std::collections::HashSet::new();
    // Once a second, kill the running server, but only one that has served
    // some calls since the last kill: a restart takes most of a second here
    // (more on a loaded machine), so killing regardless would measure the
    // machine's speed, not toolq.
    const PROGRESS_PER_KILL: u64 = 100;
    let mut done_at_kill = 0;
    loop {
        let done: Option<u64> = redis::cmd("HGET")
            .arg(&k.stats)
            .arg("succeeded")
            .query_async(&mut con)
            .await
            .unwrap();
        let done = done.unwrap_or(0);
        if done >= n as u64 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(240),
            "only {done} of {n} done"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        if done < done_at_kill + PROGRESS_PER_KILL {
            continue;
        }
        for entry in std::fs::read_dir(pids.path()).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            let pid: i32 = name.parse().unwrap();
            if killed.insert(pid) {
                // SAFETY: kill(2) on a pid the fixture server wrote itself.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                kills += 1;
                done_at_kill = done;
            }
        }
    }
    let mut retried = 0;
    for (i, id) in ids.iter().enumerate() {
        let r = wait_result(&mut con, &q, id, WAIT).await;
        assert_eq!(r["status"], "succeeded", "{r}");
        assert_eq!(r["output"], json!({"result": i + 1}), "{r}");
        if r["attempts"].as_u64() > Some(1) {
            retried += 1;
        }
    }
    println!(
        "mcp kill: jobs={n} kills={kills} lost=0 retried_after_a_kill={retried} took={:.1}s",
        start.elapsed().as_secs_f64()
    );
    assert!(kills >= 1, "the server was killed at least once");
    worker.stop().await;
}

/// Stopping the worker stops its servers: no child outlives it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_worker_stops_its_servers() {
    let server = redis();
    let url = server.url();
    let q = queue_name("mcpstop");
    let mut con = raw(&url).await;
    let fx = McpServerConfig {
        instances: 2,
        ..python_server(&[])
    };
    let worker = start_worker(with_servers(&url, &q, &[("fx", fx)]));
    let mut pids = std::collections::HashSet::new();
    for i in 0..10 {
        let r = run_one(&mut con, &q, "fx.pid", &format!("p{i}"), json!({})).await;
        pids.insert(r["output"]["result"].as_i64().unwrap() as i32);
    }
    assert!(!pids.is_empty());
    worker.stop().await;
    eventually(
        Duration::from_secs(15),
        "every server process to exit",
        || {
            let pids = pids.clone();
            // SAFETY: signal 0 only checks that the process exists.
            async move { pids.iter().all(|p| unsafe { libc::kill(*p, 0) } != 0) }
        },
    )
    .await;
}

async fn cli(url: &str, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut cmd = common::process::toolq(args);
    cmd.env("TOOLQ_REDIS_URL", url);
    if stdin.is_none() {
        let (status, out, err) = common::process::run(cmd, WAIT).await;
        return (status.code().unwrap_or(-1), out, err);
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jobs.jsonl");
    std::fs::write(&file, stdin.unwrap()).unwrap();
    let mut args = args.to_vec();
    let path = file.display().to_string();
    args.push(&path);
    let mut cmd = common::process::toolq(&args);
    cmd.env("TOOLQ_REDIS_URL", url);
    let (status, out, err) = common::process::run(cmd, WAIT).await;
    (status.code().unwrap_or(-1), out, err)
}

/// Every worker publishes the tools it serves (built-in and MCP, with their
/// schemas); `toolq tools` lists them with the workers serving each, and
/// `enqueue`/`submit` refuse a job the catalog says would fail at once
/// (exit 2, naming the failing path) unless told `--no-check`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tool_catalog_lists_every_tool_and_producers_check_against_it() {
    let server = redis();
    let url = server.url();
    let q = queue_name("catalog");
    let worker = start_worker(with_servers(&url, &q, &[("fx", python_server(&[]))]));
    let id = worker.health.worker_id.clone();
    let mut listed = Value::Null;
    let start = Instant::now();
    while listed["tools"].as_array().is_none_or(|t| t.is_empty()) {
        assert!(start.elapsed() < WAIT, "no catalog published");
        let (code, out, err) = cli(&url, &["tools", "--json"], None).await;
        assert_eq!(code, 0, "{err}");
        listed = serde_json::from_str(&out).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let find = |name: &str| {
        listed["tools"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} not in {listed}"))
    };
    let calc = find("calculator");
    assert_eq!(
        (&calc["source"], &calc["workers"]),
        (&json!("builtin"), &json!([id]))
    );
    let add = find("fx.add");
    assert_eq!(add["source"], "mcp");
    assert_eq!(add["input_schema"]["required"], json!(["a", "b"]));
    assert_eq!(add["schema_hash"].as_str().unwrap().len(), 64);
    assert_eq!(add["description"], "Adds two integers.");
    let (code, table, _) = cli(&url, &["tools"], None).await;
    assert_eq!(code, 0);
    assert!(table.contains("fx.add") && table.contains("mcp"), "{table}");

    let enqueue = |args: &'static [&'static str]| {
        let mut all = vec!["enqueue", "--queue"];
        all.push(Box::leak(q.clone().into_boxed_str()));
        all.extend_from_slice(args);
        all
    };
    let (code, _, err) = cli(&url, &enqueue(&["fx.add", r#"{"a":"x","b":1}"#]), None).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("/a"), "{err}");
    let (code, _, err) = cli(&url, &enqueue(&["fx.nope", "{}"]), None).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("fx.nope"), "{err}");
    let (code, out, err) = cli(&url, &enqueue(&["fx.add", r#"{"a":2,"b":2}"#]), None).await;
    assert_eq!(code, 0, "{err}");
    let mut con = raw(&url).await;
    let r = wait_result(&mut con, &q, out.trim(), WAIT).await;
    assert_eq!(r["output"], json!({"result": 4}), "{r}");
    let lines = "{\"tool\":\"echo\",\"args\":{}}\n{\"tool\":\"sleep\",\"args\":{\"ms\":\"x\"}}\n";
    let before = llen(&mut con, &QueueKeys::new(&q).pending).await;
    let (code, _, err) = cli(&url, &["submit", "--queue", &q], Some(lines)).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("line 2:") && err.contains("/ms"), "{err}");
    assert_eq!(
        llen(&mut con, &QueueKeys::new(&q).pending).await,
        before,
        "nothing enqueued"
    );
    // Last: its job (a tool no worker serves) may come back to pending for
    // a retry at any moment, which would upset the count of pending above.
    let (code, _, err) = cli(&url, &enqueue(&["--no-check", "fx.nope", "{}"]), None).await;
    assert_eq!(code, 0, "--no-check enqueues: {err}");

    worker.stop().await;
    let (_, out, _) = cli(&url, &["tools", "--json"], None).await;
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap(),
        json!({"tools": []}),
        "a stopped worker withdraws its tools"
    );
}

/// A tool that must not run twice (`redeliver = false`, or an MCP tool
/// hinting `idempotentHint: false`): a job whose worker died holding it is
/// not run again but buried as `interrupted`, for an operator to retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_recovered_from_a_dead_worker_is_not_rerun_on_a_tool_that_must_not_run_twice() {
    let server = redis();
    let url = server.url();
    let q = queue_name("once");
    let mut con = raw(&url).await;
    let log = tempfile::NamedTempFile::new().unwrap();
    let fx = McpServerConfig {
        redeliver: false,
        ..python_server(&[("FIXTURE_LOG", log.path().display().to_string())])
    };
    let worker = start_worker(with_servers(&url, &q, &[("fx", fx)]));
    // What recovery leaves in pending after the worker running it died.
    let recovered = r#"{"recoveries":1,"tool":"fx.add","id":"once","args":{"a":1,"b":2}}"#;
    lpush(&mut con, &q, &[recovered.to_owned()]).await;
    let r = wait_result(&mut con, &q, "once", WAIT).await;
    assert_eq!(
        (&r["status"], &r["error"]["kind"]),
        (&json!("dead"), &json!("interrupted")),
        "{r}"
    );
    let fresh = run_one(&mut con, &q, "fx.add", "fresh", json!({"a": 1, "b": 2})).await;
    assert_eq!(fresh["status"], "succeeded", "a first run is fine: {fresh}");
    assert_eq!(
        std::fs::read_to_string(log.path()).unwrap(),
        "1+2\n",
        "only the fresh job called the server"
    );
    worker.stop().await;
}

/// A call of a tool that must not run twice, cut short by a stop: the job
/// is buried as `interrupted`, not put back to run again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_that_cuts_a_call_short_does_not_rerun_a_tool_that_must_not_run_twice() {
    let server = redis();
    let url = server.url();
    let q = queue_name("cut");
    let mut con = raw(&url).await;
    let fx = McpServerConfig {
        redeliver: false,
        ..python_server(&[])
    };
    let worker = start_worker(Config {
        shutdown_grace_s: 1,
        ..with_servers(&url, &q, &[("fx", fx)])
    });
    lpush(
        &mut con,
        &q,
        &[job("fx.hang", "cut", json!({"seconds": 30}))],
    )
    .await;
    eventually(WAIT, "the call to start", || {
        let (mut con, key) = (con.clone(), QueueKeys::new(&q).pending);
        async move { llen(&mut con, &key).await == 0 }
    })
    .await;
    // The 1 s grace lets the call start before the stop cuts it short.
    worker.stop().await;
    let r = wait_result(&mut con, &q, "cut", WAIT).await;
    assert_eq!(
        (&r["status"], &r["error"]["kind"]),
        (&json!("dead"), &json!("interrupted")),
        "{r}"
    );
    assert_eq!(
        llen(&mut con, &QueueKeys::new(&q).pending).await,
        0,
        "not put back"
    );
}

/// A streamable-HTTP server (`url`): server-everything in its HTTP mode,
/// its tools run as jobs like a stdio server's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamable_http_server_serves_its_tools_as_jobs() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let entry =
        fixtures().join("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    let mut node = std::process::Command::new("node")
        .arg(entry)
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("node starts");
    eventually(WAIT, "the HTTP server to listen", || async move {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await;
    let server = redis();
    let url = server.url();
    let q = queue_name("mcphttp");
    let mut con = raw(&url).await;
    let remote = McpServerConfig {
        url: Some(format!("http://127.0.0.1:{port}/mcp")),
        headers: BTreeMap::from([("X-Toolq-Test".to_owned(), "yes".to_owned())]),
        ..Default::default()
    };
    let worker = start_worker(with_servers(&url, &q, &[("web", remote)]));
    let r = run_one(
        &mut con,
        &q,
        "web.echo",
        "echo",
        json!({"message": "over http"}),
    )
    .await;
    assert_eq!(r["status"], "succeeded", "{r}");
    assert!(r["output"].to_string().contains("over http"), "{r}");
    let r = run_one(&mut con, &q, "web.get-sum", "sum", json!({"a": 1, "b": 2})).await;
    assert!(r["output"].to_string().contains('3'), "{r}");
    worker.stop().await;
    let _ = node.kill();
    let _ = node.wait();
}

/// A server that stays alive but stops answering (its event loop blocked)
/// is restarted after a few calls in a row go unanswered, and jobs succeed
/// again instead of timing out until they are dead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stops_answering_is_restarted() {
    let server = redis();
    let url = server.url();
    let q = queue_name("frozen");
    let mut con = raw(&url).await;
    let worker = start_worker(with_servers(&url, &q, &[("fx", python_server(&[]))]));
    let frozen = json!({"tool": "fx.freeze", "id": "freeze", "args": {"seconds": 600}, "timeout_ms": 300, "max_attempts": 1});
    lpush(&mut con, &q, &[frozen.to_string()]).await;
    let r = wait_result(&mut con, &q, "freeze", WAIT).await;
    assert_eq!(r["error"]["kind"], "timeout", "{r}");
    let add = json!({"tool": "fx.add", "id": "after", "args": {"a": 2, "b": 2}, "timeout_ms": 300, "max_attempts": 20});
    lpush(&mut con, &q, &[add.to_string()]).await;
    let r = wait_result(&mut con, &q, "after", WAIT).await;
    assert_eq!(r["status"], "succeeded", "{r}");
    assert_eq!(r["output"], json!({"result": 4}), "{r}");
    worker.stop().await;
}

/// A server whose tools change while it runs (`notifications/tools/list_changed`):
/// the worker lists them again and serves the new tool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_the_server_adds_while_running_is_served() {
    let server = redis();
    let url = server.url();
    let q = queue_name("grow");
    let mut con = raw(&url).await;
    let worker = start_worker(with_servers(&url, &q, &[("fx", python_server(&[]))]));
    let r = run_one(&mut con, &q, "fx.grow", "grow", json!({})).await;
    assert_eq!(r["status"], "succeeded", "{r}");
    let late = json!({"tool": "fx.late", "id": "late", "args": {"x": 4}, "max_attempts": 10});
    lpush(&mut con, &q, &[late.to_string()]).await;
    let r = wait_result(&mut con, &q, "late", WAIT).await;
    assert_eq!(r["status"], "succeeded", "{r}");
    assert_eq!(r["output"], json!({"result": 40}), "{r}");
    worker.stop().await;
}

/// The progress a running job's MCP tool reports, as `toolq job show` and
/// the gateway read it, while the job runs.
async fn running_progress(
    con: &mut redis::aio::MultiplexedConnection,
    q: &str,
    id: &str,
) -> Option<Value> {
    let keys = QueueKeys::new(q);
    let text = get(con, &keys.progress(id)).await;
    let finished = exists(con, &keys.result(id)).await;
    text.filter(|_| !finished)
        .map(|t| serde_json::from_str(&t).expect("progress is JSON"))
}

/// `notifications/progress` from real servers reach the job: the Python
/// SDK's `report_progress` (progress, total, message) and
/// server-everything's `trigger-long-running-operation` (progress and total,
/// no message) are stored as the job's progress while it runs, and the last
/// one stays after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_progress_notifications_become_the_jobs_progress() {
    let server = redis();
    let url = server.url();
    let q = queue_name("mcp-progress");
    let mut con = raw(&url).await;
    let servers = [("fx", python_server(&[])), ("ev", everything_server())];
    let worker = start_worker(with_servers(&url, &q, &servers));

    let cases = [
        (
            "fx.steps",
            "py",
            json!({"n": 4, "seconds": 2.0}),
            "chunk 4 of 4",
        ),
        (
            "ev.trigger-long-running-operation",
            "ev",
            json!({"duration": 2, "steps": 4}),
            "4 of 4",
        ),
    ];
    for (tool, id, args, last) in cases {
        lpush(&mut con, &q, &[job(tool, id, args)]).await;
        let start = Instant::now();
        let running = loop {
            assert!(start.elapsed() < WAIT, "{tool}: no progress while running");
            if let Some(p) = running_progress(&mut con, &q, id).await {
                if p["fraction"].as_f64().is_some_and(|f| f > 0.0 && f < 1.0) {
                    break p;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        println!("{tool} while running: {running}");
        let r = wait_result(&mut con, &q, id, WAIT).await;
        assert_eq!(r["status"], "succeeded", "{r}");
        let text: String = redis::cmd("GET")
            .arg(QueueKeys::new(&q).progress(id))
            .query_async(&mut con)
            .await
            .unwrap();
        let p: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            (p["fraction"].as_f64(), p["message"].as_str()),
            (Some(1.0), Some(last)),
            "{tool}: {p}"
        );
    }
    worker.stop().await;
}
