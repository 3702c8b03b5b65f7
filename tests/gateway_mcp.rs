//! The gateway through the eyes of other programs: an MCP client (the
//! official Python SDK) using `/mcp`, and schemathesis fuzzing the REST API
//! from the gateway's own `/openapi.json`. Both come from PyPI through
//! `scripts/install-mcp-fixtures.sh`.

mod common;

use std::process::Command;
use std::time::Duration;

use common::gateway::*;
use common::*;
use serde_json::{json, Value};

/// Runs a Python program of the fixtures' virtualenv with a time limit.
async fn run(program: &str, args: &[&str], within: Duration) -> (bool, String, String) {
    let mut cmd = Command::new(fixtures_dir().join("venv/bin").join(program));
    // Out of the repository: schemathesis leaves a cache folder behind.
    cmd.args(args)
        .current_dir(std::env::temp_dir())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let (status, out, err) = process::run(cmd, within).await;
    (status.success(), out, err)
}

#[tokio::test]
async fn an_mcp_client_lists_and_calls_tools_as_jobs_within_its_rights() {
    let redis = redis();
    let gw = start_gateway(&redis.url(), &[], &[]).await;
    let _worker = start_worker_for(&gw, &redis.url()).await;
    let token = token(
        &json!({"tools": ["calculator", "fail", "progress", "sleep"], "queues": ["default"], "results": true}),
    );
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/mcp_gateway_client.py"
    );
    let (ok, out, err) = run(
        "python",
        &[script, &gw.url("/mcp"), &token],
        Duration::from_secs(60),
    )
    .await;
    assert!(ok, "client failed:\n{err}\n{}", gw.process.stderr());
    let seen: Value = serde_json::from_str(out.trim()).expect("the client prints JSON");

    assert_eq!(
        seen["tools"],
        json!(["calculator", "fail", "progress", "sleep"]),
        "only the granted tools"
    );
    assert_eq!(
        seen["schemas"]["sleep"]["required"],
        json!(["ms"]),
        "schemas come from the catalog"
    );
    assert_eq!(seen["calculator"]["is_error"], false);
    assert_eq!(seen["calculator"]["structured"]["result"], 42);
    assert_eq!(
        seen["fail"]["is_error"], true,
        "a dead job is a tool error: {seen}"
    );
    assert_eq!(seen["denied"]["is_error"], true);
    assert!(
        seen["denied"]["text"]
            .as_str()
            .unwrap()
            .contains("forbidden"),
        "{seen}"
    );
    assert!(
        seen["invalid"]["text"]
            .as_str()
            .unwrap()
            .contains("invalid_args"),
        "{seen}"
    );

    // The tool's reports reached the client as progress notifications while
    // it waited: several, rising, out of 1, with the tool's message.
    assert_eq!(seen["progress"]["is_error"], false, "{seen}");
    assert_eq!(seen["progress"]["structured"]["steps"], 4, "{seen}");
    let reports = seen["progress"]["reports"].as_array().unwrap();
    assert!(reports.len() >= 2, "progress heard: {reports:?}");
    let fractions: Vec<f64> = reports
        .iter()
        .map(|r| r["progress"].as_f64().unwrap())
        .collect();
    assert!(
        fractions.windows(2).all(|w| w[0] < w[1])
            && fractions.iter().all(|f| *f > 0.0 && *f <= 1.0),
        "fractions rise within (0, 1]: {fractions:?}"
    );
    assert!(reports.iter().all(|r| r["total"] == 1.0), "{reports:?}");
    assert!(
        reports[0]["message"].as_str().unwrap().contains(" of 4"),
        "{reports:?}"
    );

    // The calls were jobs: the worker settled the calculator's, the
    // failing one's and the progress one's (the refused ones never reached
    // the queue).
    let mut con = raw(&redis.url()).await;
    let stats: std::collections::HashMap<String, u64> = redis::cmd("HGETALL")
        .arg("toolq:{default}:stats")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(stats.get("succeeded"), Some(&2), "{stats:?}");
    assert_eq!(stats.get("dead"), Some(&1), "{stats:?}");

    // Without a token, /mcp is closed like the rest of the API.
    let r = reqwest::Client::new()
        .post(gw.url("/mcp"))
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

/// Schemathesis generates requests from `/openapi.json` (valid ones and,
/// for negative testing, invalid ones) and checks every response: no 5xx,
/// status codes, content types, headers and bodies as documented, invalid
/// input refused. `positive_data_acceptance` is left out: a schema-valid
/// request naming a tool no worker serves is refused with 400 by contract,
/// and the tool names are the fleet's, not the schema's.
#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_response_off_the_schema() {
    let redis = redis();
    let gw = start_gateway(&redis.url(), &[], &[]).await;
    let _worker = start_worker_for(&gw, &redis.url()).await;
    let token = token(&grant_all());
    let auth = format!("Authorization: Bearer {token}");
    let schema = gw.url("/openapi.json");
    let report = tempfile::tempdir().unwrap();
    let junit = report.path().join("junit.xml");
    let (ok, out, err) = run(
        "schemathesis",
        &[
            "run",
            &schema,
            "--header",
            &auth,
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
            "--max-examples",
            "25",
            "--seed",
            "20261202",
            "--workers",
            "1",
            "--no-color",
            "--report",
            "junit",
            "--report-junit-path",
            junit.to_str().unwrap(),
        ],
        Duration::from_secs(240),
    )
    .await;
    let summary: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("generated") || l.contains("passed") || l.contains("failed"))
        .collect();
    println!("schemathesis: {}", summary.join(" | "));
    assert!(ok, "schemathesis found failures:\n{out}\n{err}");
    let tested = std::fs::read_to_string(&junit).unwrap();
    for operation in [
        "POST /execute",
        "POST /batch",
        "GET /jobs/{id}",
        "GET /tools",
        "GET /health",
    ] {
        assert!(
            tested.contains(operation),
            "{operation} was tested:\n{tested}"
        );
    }
    assert!(
        !gw.process.stderr().contains("panicked"),
        "{}",
        gw.process.stderr()
    );
}
