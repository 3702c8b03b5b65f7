//! A real `toolq serve` process for the gateway tests, HS256 tokens signed
//! with its secret, and a worker process behind it.

use std::time::Duration;

use serde_json::{json, Value};

use super::fault_process::{spawn_worker_process, WorkerProcess};
use super::process::{toolq, Toolq};

/// The HS256 secret the test gateways read from their secret file.
pub const SECRET: &str = "test-secret-0123456789abcdef-0123456789abcdef";

pub struct GatewayProcess {
    pub process: Toolq,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    _dir: tempfile::TempDir,
}

impl GatewayProcess {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// Starts `toolq serve` on a free port with [`SECRET`] and `env` (e.g.
/// `TOOLQ_SERVE__AUDIENCE`); `args` are extra flags.
pub async fn start_gateway(redis_url: &str, env: &[(&str, &str)], args: &[&str]) -> GatewayProcess {
    let dir = tempfile::tempdir().expect("temp dir");
    let secret = dir.path().join("jwt_secret");
    std::fs::write(&secret, format!("{SECRET}\n")).expect("secret file");
    let mut all = vec!["serve", "--addr", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let mut cmd = toolq(&all);
    cmd.env("TOOLQ_REDIS_URL", redis_url)
        .env("TOOLQ_SHUTDOWN_GRACE_S", "10")
        .envs(env.iter().copied());
    let other_key = env
        .iter()
        .any(|(k, _)| k.contains("PUBLIC_KEY_FILE") || k.contains("JWKS_FILE"));
    if !other_key {
        cmd.env("TOOLQ_SERVE__JWT_SECRET_FILE", &secret);
    }
    let process = Toolq::spawn(cmd);
    process
        .wait_for_stderr("gateway listening", Duration::from_secs(30))
        .await;
    let log = process.stderr();
    let port: String = log
        .split("127.0.0.1:")
        .nth(1)
        .expect("the listening line names the address")
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    GatewayProcess {
        process,
        base: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    }
}

/// A worker process serving `default`, and the gateway seeing its catalog.
pub async fn start_worker_for(gateway: &GatewayProcess, redis_url: &str) -> WorkerProcess {
    let worker = spawn_worker_process(redis_url, "default", 8, &[]);
    let client = reqwest::Client::new();
    // With an audience too, for gateways that require one.
    let mut c = claims(&grant_all());
    c["aud"] = json!("toolq-test");
    let token = sign(&c);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let listed = client
            .get(gateway.url("/tools"))
            .bearer_auth(&token)
            .send()
            .await
            .ok();
        if let Some(r) = listed {
            let body: Value = r.json().await.unwrap_or(Value::Null);
            let names = body["tools"].as_array().cloned().unwrap_or_default();
            if names.iter().any(|t| t["name"] == "calculator") {
                return worker;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the worker's catalog never showed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Every right.
pub fn grant_all() -> Value {
    json!({"tools": ["*"], "queues": ["*"], "results": true, "admin": false})
}

/// Claims valid for five minutes with `grant` as the `toolq` claim.
pub fn claims(grant: &Value) -> Value {
    json!({"sub": "tester", "exp": now_s() + 300, "toolq": grant})
}

/// An HS256 token signed with [`SECRET`] carrying `grant`.
pub fn token(grant: &Value) -> String {
    sign(&claims(grant))
}

/// Any claims, HS256 with [`SECRET`].
pub fn sign(claims: &Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("token signs")
}
