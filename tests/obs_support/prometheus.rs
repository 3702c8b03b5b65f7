//! A real Prometheus (Debian's `prometheus` binary) on a free port, with its
//! storage in a temporary directory, killed when dropped; and the few HTTP
//! API calls the tests need.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use toolq::redis_server::free_port;

/// Where the binary is looked for when `TOOLQ_PROMETHEUS` does not say.
const DEFAULT_BINARY: &str = "prometheus";

pub struct Prometheus {
    child: Child,
    pub base: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
    http: reqwest::Client,
}

/// The binary, or a panic that tells the reader how to get it: a missing
/// Prometheus must fail the suite, not skip the test.
pub fn binary() -> PathBuf {
    let name = std::env::var("TOOLQ_PROMETHEUS").unwrap_or_else(|_| DEFAULT_BINARY.into());
    let found = Command::new(&name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "the `{name}` binary is missing: this test runs a real Prometheus. \
         Run `bash ops/check.sh` (it installs Debian's `prometheus` package), or \
         `apt-get install prometheus`, or point TOOLQ_PROMETHEUS at the binary."
    );
    PathBuf::from(name)
}

impl Prometheus {
    /// Starts Prometheus with `config` (YAML text) written as
    /// `prometheus.yml` next to `files` (name, contents), e.g. the rule files
    /// the config names by relative path. Waits until it is ready.
    pub async fn start(config: &str, files: &[(&str, String)]) -> Prometheus {
        let bin = binary();
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let port = free_port().unwrap();
        let log = dir.path().join("prometheus.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("prometheus starts");
        let prom = Prometheus {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
            _dir: dir,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        };
        prom.wait_ready(Duration::from_secs(30)).await;
        prom
    }

    async fn wait_ready(&self, within: Duration) {
        let start = Instant::now();
        loop {
            let ready = self.http.get(format!("{}/-/ready", self.base)).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            assert!(
                start.elapsed() < within,
                "prometheus not ready within {within:?}; its log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Prometheus's own output, for failure messages.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET /api/v1/<path>` with `params`; the `data` field, or the error
    /// Prometheus gave (e.g. a PromQL parse error).
    pub async fn api(&self, path: &str, params: &[(&str, &str)]) -> Result<Value, String> {
        let r = self
            .http
            .get(format!("{}/api/v1/{path}", self.base))
            .query(params)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let body: Value = r.json().await.map_err(|e| e.to_string())?;
        if body["status"] == "success" {
            Ok(body["data"].clone())
        } else {
            Err(format!("{}: {}", body["errorType"], body["error"]))
        }
    }

    /// An instant query's result vector (empty when nothing matched).
    pub async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let data = self.api("query", &[("query", expr)]).await?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }

    /// The single value of an instant query, `None` when empty.
    pub async fn scalar(&self, expr: &str) -> Option<f64> {
        let result = self.query(expr).await.ok()?;
        let v = result.first()?["value"][1].as_str()?.parse().ok()?;
        Some(v)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The repository's `ops/` directory.
pub fn ops_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("ops")
}
