//! Redis over TLS: a redis-server that speaks only TLS, with a CA and server
//! certificate made in the test; jobs run over `rediss://` with the CA given
//! as `redis_ca_file` (`TOOLQ_REDIS_CA_FILE`), and a server whose
//! certificate the client cannot verify is refused with a clear error; and
//! `rediss+sentinel://`, TLS to a sentinel and to the master it names.
//!
//! Needs a redis-server built with TLS (Debian's is).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::process::{run, toolq};
use common::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use serde_json::{json, Value};
use toolq::job::Job;
use toolq::producer::Producer;
use toolq::redis_server::{free_port, RedisServer};

const WAIT: Duration = Duration::from_secs(30);

/// A CA and a server certificate for 127.0.0.1 and localhost, as PEM files.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let (ca_pem, issuer) = new_ca("toolq test CA");
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, "redis");
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca_pem).unwrap();
        std::fs::write(dir.path().join("server.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("server.key"), key.serialize_pem()).unwrap();
        // A CA that signed nothing here: trusting it must not be enough.
        let (other_pem, _) = new_ca("some other CA");
        std::fs::write(dir.path().join("other-ca.pem"), other_pem).unwrap();
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn ca(&self) -> PathBuf {
        self.path("ca.pem")
    }

    fn other_ca(&self) -> PathBuf {
        self.path("other-ca.pem")
    }
}

fn new_ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(params, key))
}

/// A redis-server with TLS on a free port and no plaintext port at all.
fn tls_redis(pki: &Pki) -> RedisServer {
    let port = free_port().unwrap();
    let p = |name: &str| pki.path(name).to_str().unwrap().to_owned();
    let (cert, key, ca) = (p("server.pem"), p("server.key"), p("ca.pem"));
    let port_s = port.to_string();
    let args = [
        "--tls-port",
        &port_s,
        "--port",
        "0",
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        &ca,
        "--tls-auth-clients",
        "no",
    ];
    RedisServer::start_on(port, &args, false)
        .expect("redis-server with TLS starts (a build without TLS cannot run this test)")
}

fn tls_url(server: &RedisServer) -> String {
    format!("rediss://127.0.0.1:{}", server.port())
}

#[tokio::test]
async fn jobs_run_over_rediss_with_a_private_ca() {
    let pki = Pki::new();
    let server = tls_redis(&pki);
    let url = tls_url(&server);
    let q = queue_name("tls");
    let mut config = config(&url, &q, 8);
    config.redis_ca_file = Some(pki.ca());
    let worker = start_worker(config);

    let producer = Producer::connect(&url, Some(&pki.ca())).unwrap();
    let jobs: Vec<Job> = (0..50)
        .map(|i| Job::new("calculator", json!({ "expression": format!("{i}+1") })))
        .chain([Job::new("fail", json!({ "times": 1 }))])
        .collect();
    let ids = producer
        .enqueue_batch(&q, &jobs, &Default::default())
        .await
        .unwrap()
        .ids;
    for (i, id) in ids.iter().enumerate() {
        let r = producer.wait(&q, id, WAIT).await.unwrap();
        assert_eq!(r.status, "succeeded", "{r:?}");
        if i < 50 {
            assert_eq!(r.output.unwrap()["result"], json!(i + 1));
        } else {
            assert_eq!(r.attempts, 2, "the failed attempt was retried over TLS");
        }
    }

    // The binary, configured the way a container is: TOOLQ_REDIS_CA_FILE.
    let mut cmd = toolq(&["enqueue", "echo", r#"{"over":"tls"}"#, "--wait"]);
    cmd.args(["--queue", &q])
        .env("TOOLQ_REDIS_URL", &url)
        .env("TOOLQ_REDIS_CA_FILE", pki.ca());
    let (status, stdout, stderr) = run(cmd, WAIT).await;
    assert!(
        status.success(),
        "toolq enqueue over TLS: {status}\n{stderr}"
    );
    let r: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(r["output"], json!({"over": "tls"}));
    worker.stop().await;
}

/// `toolq enqueue` against the TLS server with `ca` as the trusted CA.
async fn enqueue_with_ca(server: &RedisServer, ca: Option<&Path>) -> (i32, String) {
    let mut cmd = toolq(&["enqueue", "echo", "{}", "--queue", "tls-refused"]);
    cmd.env("TOOLQ_REDIS_URL", tls_url(server));
    if let Some(ca) = ca {
        cmd.env("TOOLQ_REDIS_CA_FILE", ca);
    }
    let (status, _, stderr) = run(cmd, WAIT).await;
    (status.code().unwrap_or(-1), stderr)
}

#[tokio::test]
async fn a_server_certificate_from_an_untrusted_ca_is_refused_clearly() {
    let pki = Pki::new();
    let server = tls_redis(&pki);

    // Trusting another CA, or only the built-in roots: the handshake fails,
    // the command says why and exits 3 (Redis unreachable).
    for ca in [Some(pki.other_ca()), None] {
        let (code, stderr) = enqueue_with_ca(&server, ca.as_deref()).await;
        assert_eq!(code, 3, "with CA {ca:?}: {stderr}");
        assert!(
            stderr.contains("certificate") && stderr.contains("UnknownIssuer"),
            "with CA {ca:?}, the error names the certificate problem: {stderr}"
        );
        assert!(stderr.contains(&tls_url(&server)), "{stderr}");
    }

    // Plaintext to the TLS port gets nowhere either.
    let plain = format!("redis://127.0.0.1:{}", server.port());
    let producer = Producer::connect(&plain, None).unwrap();
    let ping = tokio::time::timeout(WAIT, producer.broker().ping()).await;
    assert!(matches!(ping, Ok(Err(_))), "plaintext ping: {ping:?}");

    // A CA file that does not exist is bad configuration (exit 2).
    let missing = pki.path("no-such-ca.pem");
    let (code, stderr) = enqueue_with_ca(&server, Some(&missing)).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("no-such-ca.pem"), "{stderr}");

    // And the right CA works against the very same server.
    let producer = Producer::connect(&tls_url(&server), Some(&pki.ca())).unwrap();
    producer.broker().ping().await.unwrap();
}

/// A child process killed when dropped, even by a failing test.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A sentinel that speaks only TLS, watching `master` (TLS too) alone
/// (quorum 1): enough to find the master through it.
fn tls_sentinel(pki: &Pki, master: &RedisServer) -> (Killed, u16, tempfile::TempDir) {
    let port = free_port().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| pki.path(name).display().to_string();
    let conf = format!(
        "port 0\ntls-port {port}\nbind 127.0.0.1\ndaemonize no\ndir {dir}\n\
         tls-cert-file {cert}\ntls-key-file {key}\ntls-ca-cert-file {ca}\n\
         tls-auth-clients no\ntls-replication yes\n\
         sentinel monitor tls-master 127.0.0.1 {master} 1\n",
        dir = dir.path().display(),
        cert = p("server.pem"),
        key = p("server.key"),
        ca = p("ca.pem"),
        master = master.port(),
    );
    let file = dir.path().join("sentinel.conf");
    std::fs::write(&file, conf).unwrap();
    let child = std::process::Command::new("redis-server")
        .arg(&file)
        .arg("--sentinel")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("redis-server --sentinel starts");
    let child = Killed(child);
    let deadline = std::time::Instant::now() + WAIT;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the sentinel never listened"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, port, dir)
}

#[tokio::test]
async fn jobs_run_over_rediss_sentinel_with_a_private_ca() {
    let pki = Pki::new();
    let server = tls_redis(&pki);
    let (_sentinel, port, _dir) = tls_sentinel(&pki, &server);
    let url = format!("rediss+sentinel://127.0.0.1:{port}/tls-master");
    let q = queue_name("tls-sentinel");
    let mut config = config(&url, &q, 2);
    config.redis_ca_file = Some(pki.ca());
    let worker = start_worker(config);

    let mut cmd = toolq(&["enqueue", "echo", r#"{"over":"tls+sentinel"}"#, "--wait"]);
    cmd.args(["--queue", &q])
        .env("TOOLQ_REDIS_URL", &url)
        .env("TOOLQ_REDIS_CA_FILE", pki.ca());
    let (status, stdout, stderr) = run(cmd, WAIT).await;
    assert!(status.success(), "{status}\n{stderr}");
    let r: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(r["output"], json!({"over": "tls+sentinel"}));

    // Without the CA, neither the sentinel nor the master is trusted.
    let mut cmd = toolq(&["enqueue", "echo", "{}", "--queue", &q]);
    cmd.env("TOOLQ_REDIS_URL", &url);
    let (status, _, stderr) = run(cmd, WAIT).await;
    assert_eq!(status.code(), Some(3), "{stderr}");
    worker.stop().await;
}
