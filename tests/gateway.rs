//! The gateway (`toolq serve`) as a client sees it: a real gateway process
//! and a real worker process on a test Redis, driven over HTTP with tokens
//! made here (good, expired, not yet valid, wrong key, `alg: none`, wrong
//! audience, without rights).

mod common;

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::fault_process::spawn_worker_process;
use common::gateway::*;
use common::*;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn execute(gw: &GatewayProcess, token: &str, body: Value) -> reqwest::Response {
    client()
        .post(gw.url("/execute"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("gateway answers")
}

async fn error_kind(r: reqwest::Response) -> (u16, String, String) {
    let status = r.status().as_u16();
    let body: Value = r.json().await.expect("error bodies are JSON");
    (
        status,
        body["error"]["kind"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

#[tokio::test]
async fn execute_answers_with_the_result_or_202_and_the_result_appears_at_its_location() {
    let redis = redis();
    let gw = start_gateway(&redis.url(), &[], &[]).await;
    let _worker = start_worker_for(&gw, &redis.url()).await;
    let token = token(&grant_all());

    let r = execute(
        &gw,
        &token,
        json!({"tool": "calculator", "args": {"expression": "6*7"}}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["status"], "succeeded", "{doc}");
    assert_eq!(doc["output"]["result"], 42, "{doc}");

    // A job longer than the wait: 202, then its result at the Location.
    let r = execute(
        &gw,
        &token,
        json!({"tool": "sleep", "args": {"ms": 800}, "wait_ms": 50}),
    )
    .await;
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "pending");
    let id = body["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/jobs/{id}?queue=default"));
    let early = client()
        .get(gw.url(&location))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(early.status(), 202, "not finished: its state");
    let state: Value = early.json().await.unwrap();
    assert!(
        state["status"] == "running" || state["status"] == "pending",
        "{state}"
    );
    let mut doc = Value::Null;
    for _ in 0..300 {
        let r = client()
            .get(gw.url(&location))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            doc = r.json().await.unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(doc["id"], id.as_str());
    assert_eq!(doc["output"]["slept_ms"], 800, "{doc}");

    // A failing job is a finished job: 200 with the dead result document.
    let r = execute(
        &gw,
        &token,
        json!({"tool": "fail", "args": {"permanent": true}, "max_attempts": 1}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["status"], "dead", "{doc}");
}

#[tokio::test]
async fn bad_requests_get_400_422_and_413_with_an_error_kind() {
    let redis = redis();
    let gw = start_gateway(
        &redis.url(),
        &[("TOOLQ_SERVE__MAX_BODY_BYTES", "2000")],
        &[],
    )
    .await;
    let _worker = start_worker_for(&gw, &redis.url()).await;
    let token = token(&grant_all());
    let post = |body: String| {
        client()
            .post(gw.url("/execute"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let (s, kind, _) = error_kind(post("{not json".into()).await.unwrap()).await;
    assert_eq!((s, kind.as_str()), (400, "bad_request"));
    let (s, kind, m) = error_kind(
        post(r#"{"tool":"calculator","args":{},"colour":"red"}"#.into())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, kind.as_str()), (400, "bad_request"), "{m}");
    assert!(m.contains("colour"), "{m}");
    let (s, kind, m) = error_kind(
        post(r#"{"tool":"calculater","args":{}}"#.into())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, kind.as_str()), (400, "unknown_tool"));
    assert!(m.contains("calculater"), "{m}");
    let (s, kind, m) = error_kind(
        post(r#"{"tool":"sleep","args":{"ms":"long"}}"#.into())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, kind.as_str()), (422, "invalid_args"));
    assert!(m.contains("/ms"), "{m}");
    let (s, kind, _) =
        error_kind(post(r#"{"tool":"sleep","args":[1]}"#.into()).await.unwrap()).await;
    assert_eq!((s, kind.as_str()), (422, "invalid_args"));
    let big = format!(
        r#"{{"tool":"echo","args":{{"text":"{}"}}}}"#,
        "x".repeat(5000)
    );
    let (s, kind, _) = error_kind(post(big).await.unwrap()).await;
    assert_eq!((s, kind.as_str()), (413, "too_large"));

    // Nothing of the refused requests reached the queue.
    let mut con = raw(&redis.url()).await;
    assert_eq!(llen(&mut con, "toolq:{default}:pending").await, 0);
    let stats: std::collections::HashMap<String, u64> = redis::cmd("HGETALL")
        .arg("toolq:{default}:stats")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(stats.values().sum::<u64>(), 0, "{stats:?}");
}

fn unsigned(claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{body}.")
}

#[tokio::test]
async fn bad_tokens_get_401_and_missing_rights_get_403() {
    let redis = redis();
    let gw = start_gateway(
        &redis.url(),
        &[("TOOLQ_SERVE__AUDIENCE", "toolq-test")],
        &[],
    )
    .await;
    let _worker = start_worker_for(&gw, &redis.url()).await;
    let call = json!({"tool": "calculator", "args": {"expression": "1+1"}});
    let with_aud = |mut c: Value| {
        c["aud"] = json!("toolq-test");
        c
    };
    let good = sign(&with_aud(claims(&grant_all())));

    let r = execute(&gw, &good, call.clone()).await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);

    let none = client()
        .post(gw.url("/execute"))
        .json(&call)
        .send()
        .await
        .unwrap();
    assert_eq!(none.headers()["www-authenticate"], "Bearer");
    let (s, kind, m) = error_kind(none).await;
    assert_eq!((s, kind.as_str()), (401, "unauthorized"));
    assert!(m.contains("missing"), "{m}");

    let mut expired = with_aud(claims(&grant_all()));
    expired["exp"] = json!(now_s() - 120);
    let mut early = with_aud(claims(&grant_all()));
    early["nbf"] = json!(now_s() + 120);
    let mut other_aud = claims(&grant_all());
    other_aud["aud"] = json!("someone-else");
    let wrong_key = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &with_aud(claims(&grant_all())),
        &jsonwebtoken::EncodingKey::from_secret(b"another-secret-0123456789abcdef-0123456789"),
    )
    .unwrap();
    let cases = [
        ("expired", sign(&expired), "expired"),
        ("not yet valid", sign(&early), "not valid yet"),
        ("wrong audience", sign(&other_aud), "audience"),
        ("no audience", sign(&claims(&grant_all())), "audience"),
        ("wrong key", wrong_key, "signature"),
        (
            "alg none",
            unsigned(&with_aud(claims(&grant_all()))),
            "not accepted",
        ),
        ("garbage", "not.a.jwt".to_owned(), "malformed"),
    ];
    for (what, token, says) in cases {
        let (s, kind, m) = error_kind(execute(&gw, &token, call.clone()).await).await;
        assert_eq!((s, kind.as_str()), (401, "unauthorized"), "{what}: {m}");
        assert!(m.contains(says), "{what}: {m}");
    }

    // Valid tokens without the right to this call: 403.
    let rights = [
        ("no toolq claim", json!(null), "may not use"),
        (
            "other tools",
            json!({"tools": ["weather", "time.*"], "queues": ["*"], "results": true}),
            "tool `calculator`",
        ),
        (
            "other queue",
            json!({"tools": ["*"], "queues": ["low"], "results": true}),
            "queue `default`",
        ),
    ];
    for (what, grant, says) in rights {
        let mut c = with_aud(claims(&grant));
        if grant.is_null() {
            c.as_object_mut().unwrap().remove("toolq");
        }
        let (s, kind, m) = error_kind(execute(&gw, &sign(&c), call.clone()).await).await;
        assert_eq!((s, kind.as_str()), (403, "forbidden"), "{what}: {m}");
        assert!(m.contains(says), "{what}: {m}");
    }

    // A glob grants what it matches.
    let calc_only = sign(&with_aud(claims(
        &json!({"tools": ["calc*"], "queues": ["def*"], "results": true}),
    )));
    assert_eq!(execute(&gw, &calc_only, call.clone()).await.status(), 200);
    let tools: Value = client()
        .get(gw.url("/tools"))
        .bearer_auth(&calc_only)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = tools["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["calculator"], "only the granted tools are listed");

    // Without `results` the job runs, but the token sees only its id.
    let blind = sign(&with_aud(claims(
        &json!({"tools": ["*"], "queues": ["*"], "results": false}),
    )));
    let r = execute(&gw, &blind, call.clone()).await;
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = client()
        .get(gw.url(&format!("/jobs/{id}")))
        .bearer_auth(&blind)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let con = raw(&redis.url()).await;
    let key = format!("toolq:{{default}}:result:{id}");
    eventually(WAIT, "the blind job ran", || {
        let (mut con, key) = (con.clone(), key.clone());
        async move { exists(&mut con, &key).await }
    })
    .await;
}

#[tokio::test]
async fn public_keys_and_key_sets_verify_rs256_and_eddsa_tokens() {
    let redis = redis();
    let dir = tempfile::tempdir().unwrap();
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        "rsa.pem",
    ]);
    openssl(&["pkey", "-in", "rsa.pem", "-pubout", "-out", "rsa.pub.pem"]);
    openssl(&["genpkey", "-algorithm", "ED25519", "-out", "ed.pem"]);
    let ed_der = openssl(&["pkey", "-in", "ed.pem", "-pubout", "-outform", "DER"]);
    let x = URL_SAFE_NO_PAD.encode(&ed_der[ed_der.len() - 32..]);
    let jwks = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "ed-1", "alg": "EdDSA", "use": "sig"}]});
    std::fs::write(dir.path().join("jwks.json"), jwks.to_string()).unwrap();
    let rsa_priv = std::fs::read(dir.path().join("rsa.pem")).unwrap();
    let ed_priv = std::fs::read(dir.path().join("ed.pem")).unwrap();
    let call = json!({"tool": "calculator", "args": {"expression": "2+2"}});
    let all = claims(&grant_all());

    // RS256 with a PEM public key; an HS256 token made with the public key
    // as its secret (key confusion) is refused.
    let pub_pem = dir.path().join("rsa.pub.pem");
    let gw = start_gateway(
        &redis.url(),
        &[(
            "TOOLQ_SERVE__JWT_PUBLIC_KEY_FILE",
            pub_pem.to_str().unwrap(),
        )],
        &[],
    )
    .await;
    let _worker = spawn_worker_process(&redis.url(), "default", 4, &[]);
    let rs = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &all,
        &jsonwebtoken::EncodingKey::from_rsa_pem(&rsa_priv).unwrap(),
    )
    .unwrap();
    eventually(WAIT, "RS256 token accepted", || {
        let (gw, rs, call) = (&gw, rs.clone(), call.clone());
        async move { execute(gw, &rs, call).await.status() == 200 }
    })
    .await;
    let confused = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &all,
        &jsonwebtoken::EncodingKey::from_secret(&std::fs::read(&pub_pem).unwrap()),
    )
    .unwrap();
    assert_eq!(execute(&gw, &confused, call.clone()).await.status(), 401);
    drop(gw);

    // EdDSA from a JWKS file, picked by kid.
    let jwks_path = dir.path().join("jwks.json");
    let gw = start_gateway(
        &redis.url(),
        &[("TOOLQ_SERVE__JWKS_FILE", jwks_path.to_str().unwrap())],
        &[],
    )
    .await;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some("ed-1".into());
    let ed = jsonwebtoken::encode(
        &header,
        &all,
        &jsonwebtoken::EncodingKey::from_ed_pem(&ed_priv).unwrap(),
    )
    .unwrap();
    assert_eq!(execute(&gw, &ed, call.clone()).await.status(), 200);
    header.kid = Some("unknown".into());
    let stranger = jsonwebtoken::encode(
        &header,
        &all,
        &jsonwebtoken::EncodingKey::from_ed_pem(&ed_priv).unwrap(),
    )
    .unwrap();
    assert_eq!(execute(&gw, &stranger, call.clone()).await.status(), 401);
}

#[tokio::test]
async fn batch_streams_one_line_per_job_in_completion_or_input_order() {
    let redis = redis();
    let gw = start_gateway(&redis.url(), &[], &[]).await;
    let _worker = start_worker_for(&gw, &redis.url()).await;
    let token = token(&grant_all());
    let post = |query: &str, body: String| {
        client()
            .post(gw.url(&format!("/batch{query}")))
            .bearer_auth(&token)
            .body(body)
            .send()
    };
    let lines = |text: String| -> Vec<Value> {
        text.lines()
            .map(|l| serde_json::from_str(l).expect("NDJSON line"))
            .collect()
    };
    // NDJSON in; the slow first job finishes last.
    let ndjson = "{\"tool\":\"sleep\",\"args\":{\"ms\":600}}\n\n{\"tool\":\"calculator\",\"args\":{\"expression\":\"1+2\"}}\n";
    let r = post("", ndjson.into()).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    let got = lines(r.text().await.unwrap());
    let order: Vec<u64> = got.iter().map(|l| l["index"].as_u64().unwrap()).collect();
    assert_eq!(order, [1, 0], "completion order: {got:?}");
    assert_eq!(got[0]["result"]["output"]["result"], 3);
    assert!(got.iter().all(|l| l["status"] == "succeeded"), "{got:?}");

    // A JSON array in, ordered: input order whatever finishes first.
    let array = json!([
        {"tool": "sleep", "args": {"ms": 400}},
        {"tool": "calculator", "args": {"expression": "2*5"}},
        {"tool": "fail", "args": {"permanent": true}, "max_attempts": 1},
    ]);
    let got = lines(
        post("?ordered=true", array.to_string())
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    let order: Vec<u64> = got.iter().map(|l| l["index"].as_u64().unwrap()).collect();
    assert_eq!(order, [0, 1, 2]);
    let statuses: Vec<&str> = got.iter().map(|l| l["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["succeeded", "succeeded", "dead"]);

    // The wait ends first: the unfinished job gets a `pending` line.
    let got = lines(
        post(
            "?wait_ms=200",
            json!([{"tool": "sleep", "args": {"ms": 3000}}, {"tool": "echo", "args": {"text": "hi"}}]).to_string(),
        )
        .await
        .unwrap()
        .text()
        .await
        .unwrap(),
    );
    assert_eq!(got.len(), 2, "{got:?}");
    let slow = got.iter().find(|l| l["index"] == 0).unwrap();
    assert_eq!(slow["status"], "pending");

    // One bad item refuses the whole batch, naming it; nothing is enqueued.
    let r = post(
        "",
        json!([{"tool": "echo", "args": {"text": "ok"}}, {"tool": "sleep", "args": {"ms": "x"}}])
            .to_string(),
    )
    .await
    .unwrap();
    let (s, kind, m) = error_kind(r).await;
    assert_eq!((s, kind.as_str()), (422, "invalid_args"));
    assert!(m.starts_with("job 1:"), "{m}");
    // An empty batch is an empty answer; a bad queue or meta is a 400.
    let r = post("", "[]".into()).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "");
    let (s, kind, m) = error_kind(post("?queue=a%20b", "[]".into()).await.unwrap()).await;
    assert_eq!((s, kind.as_str()), (400, "bad_request"), "{m}");
    let (s, kind, m) = error_kind(post("?wait_ms=-1", "[]".into()).await.unwrap()).await;
    assert_eq!((s, kind.as_str()), (400, "bad_request"), "{m}");
    let bad_meta = json!([{"tool": "echo", "args": {}, "meta": [1]}]);
    let (s, kind, m) = error_kind(post("", bad_meta.to_string()).await.unwrap()).await;
    assert_eq!((s, kind.as_str()), (400, "bad_request"), "{m}");
    assert!(m.starts_with("job 0:") && m.contains("meta"), "{m}");
}

#[tokio::test]
async fn per_token_rate_limit_answers_429_with_retry_after() {
    let redis = redis();
    let gw = start_gateway(&redis.url(), &[("TOOLQ_SERVE__RATE_LIMIT", "3/min")], &[]).await;
    let _worker = spawn_worker_process(&redis.url(), "default", 2, &[]);
    let token = token(&grant_all());
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let r = client()
            .get(gw.url("/tools"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            let retry: u64 = r.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=60).contains(&retry), "{retry}");
        }
    }
    assert_eq!(statuses, [200, 200, 200, 429]);
    // Another subject has its own budget.
    let mut other = claims(&grant_all());
    other["sub"] = json!("someone-else");
    let r = client()
        .get(gw.url("/tools"))
        .bearer_auth(sign(&other))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn sigterm_finishes_the_requests_in_flight_then_exits() {
    let redis = redis();
    let mut gw = start_gateway(&redis.url(), &[], &[]).await;
    let _worker = start_worker_for(&gw, &redis.url()).await;
    let token = token(&grant_all());
    let url = gw.url("/execute");
    let waiting = tokio::spawn(async move {
        client()
            .post(url)
            .bearer_auth(token)
            .json(&json!({"tool": "sleep", "args": {"ms": 1500}, "wait_ms": 10000}))
            .send()
            .await
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    gw.process.terminate();
    let r = waiting
        .await
        .unwrap()
        .expect("the waiting request is answered");
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["output"]["slept_ms"], 1500);
    let status = gw.process.wait(Duration::from_secs(15)).await;
    assert!(status.success(), "{status:?}\n{}", gw.process.stderr());
    // New connections are refused once it stopped.
    assert!(client().get(gw.url("/health")).send().await.is_err());
}

#[tokio::test]
async fn health_metrics_and_openapi_need_no_token_and_no_auth_is_loopback_only() {
    let redis = redis();
    let gw = start_gateway(&redis.url(), &[], &[]).await;
    let r = client().get(gw.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["redis"], "up");
    let doc: Value = client()
        .get(gw.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    for path in ["/execute", "/batch", "/jobs/{id}", "/tools", "/health"] {
        assert!(doc["paths"][path].is_object(), "{path} documented");
    }
    let _ = client().get(gw.url("/tools")).send().await.unwrap();
    let metrics = client()
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"toolq_http_requests_total{route="/tools",status="401"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("toolq_http_request_duration_seconds_bucket{route=\"/health\""),
        "{metrics}"
    );

    // Redis gone: /health says so with 503.
    drop(redis);
    let r = client().get(gw.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "down");

    // --no-auth anywhere but loopback is refused before listening.
    let (status, _, err) = process::run(
        process::toolq(&["serve", "--no-auth", "--addr", "0.0.0.0:0"]),
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("loopback"), "{err}");
    // And without any key configured, start-up says what to set.
    let (status, _, err) = process::run(
        process::toolq(&["serve", "--addr", "127.0.0.1:0"]),
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("jwt_secret_file"), "{err}");
}

#[tokio::test]
async fn operators_list_pause_and_cancel_over_http_with_admin_tokens_only() {
    let redis = redis();
    let gw = start_gateway(&redis.url(), &[], &[]).await;
    let _worker = start_worker_for(&gw, &redis.url()).await;
    let reader = token(&grant_all());
    let mut admin_grant = grant_all();
    admin_grant["admin"] = json!(true);
    let admin = token(&admin_grant);
    let post = |path: &str, token: &str| {
        client()
            .post(gw.url(path))
            .bearer_auth(token.to_owned())
            .send()
    };

    let queues: Value = client()
        .get(gw.url("/queues"))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        queues["queues"]
            .as_array()
            .unwrap()
            .iter()
            .any(|q| q["queue"] == "default"),
        "{queues}"
    );
    let (s, kind, _) = error_kind(post("/queues/default/pause", &reader).await.unwrap()).await;
    assert_eq!((s, kind.as_str()), (403, "forbidden"));

    // Paused: a job waits; its state is pending; cancelled, it never runs.
    assert_eq!(
        post("/queues/default/pause", &admin)
            .await
            .unwrap()
            .status(),
        200
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let r = execute(
        &gw,
        &admin,
        json!({"tool": "echo", "args": {"text": "x"}, "wait_ms": 300}),
    )
    .await;
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let state: Value = client()
        .get(gw.url(&format!("/jobs/{id}")))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["status"], "pending", "{state}");
    let queues: Value = client()
        .get(gw.url("/queues"))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let default = queues["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["queue"] == "default")
        .unwrap()
        .clone();
    assert_eq!(default["paused"], true, "{default}");
    assert_eq!(default["pending"], 1, "{default}");

    let (s, _, _) = error_kind(post(&format!("/jobs/{id}/cancel"), &reader).await.unwrap()).await;
    assert_eq!(s, 403);
    let r: Value = post(&format!("/jobs/{id}/cancel"), &admin)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (r["outcome"].as_str(), r["state"].as_str()),
        (Some("removed"), Some("pending")),
        "{r}"
    );
    let doc: Value = client()
        .get(gw.url(&format!("/jobs/{id}")))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["status"], "cancelled", "{doc}");

    // Resumed: work flows again. Deleting needs the name repeated, and no
    // live worker.
    assert_eq!(
        post("/queues/default/resume", &admin)
            .await
            .unwrap()
            .status(),
        200
    );
    let r = execute(&gw, &admin, json!({"tool": "echo", "args": {"text": "y"}})).await;
    assert_eq!(r.status(), 200);
    let r = client()
        .delete(gw.url("/queues/default?confirm=other"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let (s, _, m) = error_kind(
        client()
            .delete(gw.url("/queues/default?confirm=default"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 400);
    assert!(m.contains("live worker"), "{m}");
}
