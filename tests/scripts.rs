//! The Lua scripts' contracts, one test per behaviour, driven through the
//! broker against a real `redis-server` (as asynq's `rdb_test.go` tests its
//! scripts): seed Redis, call one operation, read what it wrote. The worker
//! end-to-end cases live in `faults.rs` and `settlement.rs`.

mod common;

use std::time::Duration;

use common::fault_process::held_jobs;
use common::*;
use serde_json::Value;
use toolq::queue::{slot, AckItem, AckReply, QueueKeys};

type Con = redis::aio::MultiplexedConnection;

/// A throw-away Redis and a fresh queue on which `workers` are registered,
/// for tests that drive the broker's scripts directly. Bind `_server` when
/// destructuring: dropping it stops Redis.
struct Scripted {
    _server: toolq::redis_server::RedisServer,
    q: String,
    k: QueueKeys,
    con: Con,
    b: toolq::queue::Broker,
}

async fn scripted(prefix: &str, workers: &[&str]) -> Scripted {
    let server = redis();
    let url = server.url();
    let q = queue_name(prefix);
    let k = QueueKeys::new(&q);
    let con = raw(&url).await;
    let b = broker(&url);
    for w in workers {
        assert!(b.heartbeat(&k, w, true).await.unwrap());
    }
    Scripted {
        _server: server,
        q,
        k,
        con,
        b,
    }
}

/// `n` echo job payloads with ids `{prefix}0`, `{prefix}1`, ...
fn echo_jobs(prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!(r#"{{"tool":"echo","args":{{}},"id":"{prefix}{i}"}}"#))
        .collect()
}

/// A succeeded job `id`, the `index`-th of fetched batch `batch`.
fn ack_item(batch: u64, index: usize, id: String, ttl: u64) -> AckItem {
    AckItem {
        seq: slot(batch, index),
        result: format!(r#"{{"id":"{id}"}}"#),
        id,
        result_ttl_s: ttl,
        batch: None,
        unique_key: None,
    }
}

/// The queue's count of succeeded jobs.
async fn succeeded(con: &mut Con, k: &QueueKeys) -> u64 {
    let n: Option<u64> = redis::cmd("HGET")
        .arg(&k.stats)
        .arg("succeeded")
        .query_async(con)
        .await
        .unwrap();
    n.unwrap_or(0)
}

/// Scores here are set by hand relative to Redis's clock; the scripts must
/// judge them by `TIME`, not by any worker's clock (the test process's clock
/// is never consulted).
#[tokio::test]
async fn staleness_recovery_and_due_times_are_judged_by_redis_time() {
    let server = redis();
    let url = server.url();
    let q = queue_name("clock");
    let k = QueueKeys::new(&q);
    let mut con = raw(&url).await;
    let b = broker(&url);
    let timeout = Duration::from_secs(5);

    let now = redis_time_ms(&mut con).await;
    assert!(b.heartbeat(&k, "live", true).await.unwrap());
    let beat: u64 = redis::cmd("ZSCORE")
        .arg(&k.workers)
        .arg("live")
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(beat >= now && beat < now + 1000, "heartbeat scored by TIME");

    let _: () = redis::cmd("ZADD")
        .arg(&k.workers)
        .arg(now - 4000)
        .arg("quiet")
        .arg(now - 6000)
        .arg("gone")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(b.stale_workers(&k, timeout, 10).await.unwrap(), ["gone"]);
    assert_eq!(b.recover(&k, "quiet", timeout, 3, 100).await.unwrap(), None);

    // The dead worker's two jobs go to the front, oldest first, ahead of the backlog.
    lpush(
        &mut con,
        &q,
        &[
            r#"{"tool":"echo","args":{},"id":"a"}"#.into(),
            r#"{"tool":"echo","args":{},"id":"b"}"#.into(),
        ],
    )
    .await;
    assert_eq!(b.fetch(&k, "gone", 2, 7, 3).await.unwrap().len(), 2);
    lpush(
        &mut con,
        &q,
        &[r#"{"tool":"echo","args":{},"id":"old"}"#.into()],
    )
    .await;
    assert_eq!(
        b.recover(&k, "gone", timeout, 3, 100).await.unwrap(),
        Some((2, vec![]))
    );
    let fetched = b.fetch(&k, "live", 3, 1, 3).await.unwrap();
    let ids: Vec<String> = fetched
        .iter()
        .map(|p| {
            serde_json::from_slice::<Value>(p).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(ids, ["a", "b", "old"]);
    assert!(String::from_utf8_lossy(&fetched[0]).starts_with(r#"{"recoveries":1,"#));

    // Due by Redis's clock: one a second ago, one a minute ahead.
    let now = redis_time_ms(&mut con).await;
    b.schedule(&k, r#"{"id":"due"}"#, now - 1000).await.unwrap();
    b.schedule(&k, r#"{"id":"later"}"#, now + 60_000)
        .await
        .unwrap();
    let (moved, next) = b.promote(&k, 10).await.unwrap();
    assert_eq!(moved, 1);
    let next = next.unwrap();
    assert!(
        next > Duration::from_secs(55) && next <= Duration::from_secs(60),
        "{next:?}"
    );
}

/// A job whose next worker death would bury it (recovered `max_recoveries`
/// times) is fetched alone, and a batch stops before it, so it runs without
/// bystanders that could be buried with it.
#[tokio::test]
async fn a_suspect_job_is_fetched_alone() {
    let Scripted {
        _server,
        q,
        k,
        mut con,
        b,
    } = scripted("suspect", &["w"]).await;
    let jobs = [
        r#"{"tool":"echo","args":{},"id":"1"}"#,
        r#"{"recoveries":1,"tool":"echo","args":{},"id":"2"}"#,
        r#"{"recoveries":2,"tool":"echo","args":{},"id":"3"}"#,
        r#"{"tool":"echo","args":{},"id":"4"}"#,
    ];
    // Oldest first: LPUSH in order leaves "1" where fetch looks first.
    lpush(&mut con, &q, &jobs.map(String::from)).await;
    let ids = |batch: Vec<Vec<u8>>| -> Vec<String> {
        batch
            .iter()
            .map(|p| {
                serde_json::from_slice::<Value>(p).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    assert_eq!(ids(b.fetch(&k, "w", 10, 1, 2).await.unwrap()), ["1", "2"]);
    assert_eq!(ids(b.fetch(&k, "w", 10, 3, 2).await.unwrap()), ["3"]);
    assert_eq!(ids(b.fetch(&k, "w", 10, 4, 2).await.unwrap()), ["4"]);
    assert_eq!(held_count(&mut con, &k.active("w")).await, 4);
}

/// A fetch holds its jobs as one batch entry, settled job by job. A batch
/// fully settled leaves nothing behind; when the worker dies mid-batch, only
/// the jobs not yet settled run again, and its late acks write nothing.
#[tokio::test]
async fn recovery_puts_back_only_the_unsettled_jobs_of_a_batch() {
    let Scripted {
        _server,
        q,
        k,
        mut con,
        b,
    } = scripted("batch", &["w", "live"]).await;
    let ack = |batch: u64, i: usize| ack_item(batch, i, format!("{batch}-j{i}"), 60);
    let probe = con.clone();
    let exists = move |key: String| {
        let mut con = probe.clone();
        async move {
            let n: u64 = redis::cmd("EXISTS")
                .arg(key)
                .query_async(&mut con)
                .await
                .unwrap();
            n == 1
        }
    };

    lpush(&mut con, &q, &echo_jobs("j", 2)).await;
    assert_eq!(b.fetch(&k, "w", 10, 1, 3).await.unwrap().len(), 2);
    assert_eq!(b.depths(&k).await.unwrap().active, 2);
    assert_eq!(
        b.ack(&k, "w", &[ack(1, 1), ack(1, 0)]).await.unwrap(),
        AckReply::default()
    );
    assert!(
        !exists(k.active("w")).await,
        "a settled batch leaves no entry"
    );
    assert_eq!(b.depths(&k).await.unwrap().active, 0);

    lpush(&mut con, &q, &echo_jobs("j", 5)).await;
    assert_eq!(b.fetch(&k, "w", 10, 2, 3).await.unwrap().len(), 5);
    assert_eq!(
        b.ack(&k, "w", &[ack(2, 0), ack(2, 3)]).await.unwrap(),
        AckReply::default()
    );
    // A second try of an applied call (its reply lost) settles nothing.
    assert_eq!(b.ack(&k, "w", &[ack(2, 3)]).await.unwrap().stale, [0]);
    assert_eq!(b.depths(&k).await.unwrap().active, 3);
    assert_eq!(held_jobs(&mut con, &q, "w").await, ["j1", "j2", "j4"]);

    let _: () = redis::cmd("ZADD")
        .arg(&k.workers)
        .arg(redis_time_ms(&mut con).await - 60_000)
        .arg("w")
        .query_async(&mut con)
        .await
        .unwrap();
    let timeout = Duration::from_secs(5);
    assert_eq!(
        b.recover(&k, "w", timeout, 3, 100).await.unwrap(),
        Some((3, vec![]))
    );
    assert!(!exists(k.active("w")).await);
    // The dead worker's late ack of j1 is fenced off: j1 runs again instead.
    assert_eq!(b.ack(&k, "w", &[ack(2, 1)]).await.unwrap().stale, [0]);
    assert!(!exists(k.result("2-j1")).await);
    assert!(exists(k.result("2-j0")).await && exists(k.result("2-j3")).await);
    let rerun: Vec<String> = b
        .fetch(&k, "live", 10, 1, 3)
        .await
        .unwrap()
        .iter()
        .map(|p| serde_json::from_slice::<Value>(p).unwrap()["id"].to_string())
        .collect();
    assert_eq!(rerun, [r#""j1""#, r#""j2""#, r#""j4""#]);
}

/// Jobs held by a worker of the earlier layout (one hash field per job, its
/// payload as the value) are recovered too: a fleet upgraded while such a
/// worker lay dead loses nothing.
#[tokio::test]
async fn jobs_held_in_the_earlier_one_field_per_job_layout_are_recovered() {
    let Scripted {
        _server,
        k,
        mut con,
        b,
        ..
    } = scripted("legacy", &["live"]).await;
    let now = redis_time_ms(&mut con).await;
    let _: () = redis::cmd("ZADD")
        .arg(&k.workers)
        .arg(now - 60_000)
        .arg("old")
        .query_async(&mut con)
        .await
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg(k.active("old"))
        .arg(7)
        .arg(r#"{"tool":"echo","args":{},"id":"a"}"#)
        .arg(8)
        .arg(r#"{"tool":"echo","args":{},"id":"b"}"#)
        .query_async(&mut con)
        .await
        .unwrap();
    let timeout = Duration::from_secs(5);
    assert_eq!(
        b.recover(&k, "old", timeout, 3, 100).await.unwrap(),
        Some((2, vec![]))
    );
    let ids: Vec<String> = b
        .fetch(&k, "live", 10, 1, 3)
        .await
        .unwrap()
        .iter()
        .map(|p| serde_json::from_slice::<Value>(p).unwrap()["id"].to_string())
        .collect();
    assert_eq!(ids, [r#""a""#, r#""b""#]);
    assert_eq!(llen(&mut con, &k.pending).await, 0);
}

/// More finished jobs than one script call takes are settled in several
/// calls; a stale item is still reported by its index in the whole list.
#[tokio::test]
async fn a_large_ack_is_split_and_reports_stale_items_by_their_index() {
    let Scripted {
        _server,
        q,
        k,
        mut con,
        b,
    } = scripted("large", &["w"]).await;
    lpush(&mut con, &q, &echo_jobs("l", 1500)).await;
    assert_eq!(b.fetch(&k, "w", 1000, 1, 3).await.unwrap().len(), 1000);
    assert_eq!(b.fetch(&k, "w", 1000, 2, 3).await.unwrap().len(), 500);
    let mut items: Vec<AckItem> = (0..1500)
        .map(|i| {
            let (batch, index) = if i < 1000 { (1, i) } else { (2, i - 1000) };
            ack_item(batch, index, format!("l{i}"), 60)
        })
        .collect();
    // Settled twice in one list: the second one, past the first call's
    // chunk, is stale.
    items.push(items[3].clone());
    assert_eq!(b.ack(&k, "w", &items).await.unwrap().stale, [1500]);
    assert_eq!(b.depths(&k).await.unwrap().active, 0);
    assert_eq!(succeeded(&mut con, &k).await, 1500);
}

/// One ack call carries jobs that differ in TTL: the shared TTL of plain
/// items, their own TTL for the others (0 stores nothing). (Acks are
/// successes only: a failed attempt is a retry or a burial.)
#[tokio::test]
async fn one_ack_call_settles_jobs_with_their_own_ttl_and_outcome() {
    let Scripted {
        _server,
        q,
        k,
        mut con,
        b,
    } = scripted("mixed", &["w"]).await;
    lpush(&mut con, &q, &echo_jobs("m", 4)).await;
    assert_eq!(b.fetch(&k, "w", 10, 1, 3).await.unwrap().len(), 4);
    let item = |i: usize, ttl: u64| ack_item(1, i, format!("m{i}"), ttl);
    let items = [item(0, 600), item(1, 0), item(2, 30), item(3, 600)];
    assert_eq!(b.ack(&k, "w", &items).await.unwrap(), AckReply::default());
    let ttl = |id: &str| {
        let (mut con, key) = (con.clone(), k.result(id));
        async move {
            let t: i64 = redis::cmd("TTL")
                .arg(key)
                .query_async(&mut con)
                .await
                .unwrap();
            t
        }
    };
    assert!((590..=600).contains(&ttl("m0").await));
    assert_eq!(ttl("m1").await, -2, "TTL 0 stores no result");
    assert!((20..=30).contains(&ttl("m2").await));
    assert!((590..=600).contains(&ttl("m3").await));
    assert_eq!(succeeded(&mut con, &k).await, 4);
    assert_eq!(b.depths(&k).await.unwrap().active, 0);
}
