//! The gateway's connection cap and timers against a real `toolq serve`
//! process and a real worker: held idle connections and half-sent headers
//! do not keep requests out, a request being answered outlives both
//! timeouts, a half-sent header is closed by the header timeout while a
//! kept-alive connection stays until the idle timeout, and every held
//! connection is closed. Run with `--nocapture` to see the figures.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::connections::{closed_within, held_push_idle};
use common::gateway::*;
use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CAP: &str = "8";
const HEADER_MS: u64 = 1000;
const IDLE_MS: u64 = 5000;
const PATIENCE: Duration = Duration::from_secs(20);

/// Sends a whole `GET /health` on `stream` and reads its answer.
async fn get_health(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(PATIENCE, stream.read(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_connections_do_not_keep_requests_out_and_are_closed_by_the_timers() {
    let redis = redis();
    let (header, idle) = (HEADER_MS.to_string(), IDLE_MS.to_string());
    let env = [
        ("TOOLQ_SERVE__MAX_CONNECTIONS", CAP),
        ("TOOLQ_SERVE__HEADER_TIMEOUT_MS", header.as_str()),
        ("TOOLQ_SERVE__IDLE_TIMEOUT_MS", idle.as_str()),
    ];
    let gw = start_gateway(&redis.url(), &env, &[]).await;
    let _worker = start_worker_for(&gw, &redis.url()).await;
    let addr: SocketAddr = gw.base.trim_start_matches("http://").parse().unwrap();
    let token = token(&grant_all());

    // A request answered for longer than both timeouts, on its own
    // connection: neither a timer nor a newcomer may cut it.
    let long = {
        let (url, token) = (gw.url("/execute"), token.clone());
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .json(&json!({"tool": "sleep", "args": {"ms": IDLE_MS + 2000}, "wait_ms": 30_000}))
                .send()
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut held = Vec::new();
    held_push_idle(&mut held, addr, 40, b"").await;
    held_push_idle(&mut held, addr, 10, b"GET /health HTTP/1.1\r\nHost: x\r\n").await;

    // Requests while 50 are held against a cap of 8, each on a fresh
    // connection: answered, once the idle ones ahead make room.
    let fresh = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(PATIENCE)
        .build()
        .unwrap();
    let mut took = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        let r = fresh
            .get(gw.url("/tools"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("/tools while held: {e}\n{}", gw.process.stderr()));
        assert_eq!(r.status(), 200);
        took.push(t.elapsed().as_millis());
    }
    eprintln!("/tools while 50 connections are held against a cap of {CAP} (ms): {took:?}");
    let mut open = 0;
    for stream in held.iter_mut() {
        if !closed_within(stream, PATIENCE).await {
            open += 1;
        }
    }
    assert_eq!(open, 0, "held connections still open");

    // Under the cap: the header timeout closes a half-sent header while a
    // kept-alive connection, idle as long, stays open until the idle
    // timeout, a limit of its own.
    let mut kept_alive = TcpStream::connect(addr).await.unwrap();
    assert!(get_health(&mut kept_alive)
        .await
        .starts_with("HTTP/1.1 200"));
    let kept_since = Instant::now();
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    assert!(
        closed_within(&mut half, PATIENCE).await,
        "a half-sent header is closed"
    );
    let half_closed = kept_since.elapsed();
    let mut probe = [0u8; 1];
    let still_open = tokio::time::timeout(Duration::from_millis(50), kept_alive.peek(&mut probe))
        .await
        .is_err();
    assert!(
        still_open,
        "the kept-alive connection outlives the header timeout ({half_closed:?})"
    );
    assert!(
        closed_within(&mut kept_alive, PATIENCE).await,
        "and is closed by the idle timeout"
    );
    let kept_closed = kept_since.elapsed();

    let r = long.await.unwrap().expect("the long request is answered");
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["status"], "succeeded", "{doc}");
    eprintln!(
        "header timeout {HEADER_MS} ms, idle timeout {IDLE_MS} ms: half-sent header closed \
         after {half_closed:?}, kept-alive connection after {kept_closed:?}; a {} ms request \
         answered whole",
        IDLE_MS + 2000
    );
}
