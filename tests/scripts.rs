//! The Lua scripts' contracts, one test per behaviour, driven through the
//! broker against a real `redis-server` (as asynq's `rdb_test.go` tests its
//! scripts): seed Redis, call one operation, read what it wrote. The worker
//! end-to-end cases live in `faults.rs` and `settlement.rs`.

mod common;

use std::time::Duration;

use common::fault_process::held_jobs;
use common::*;
use serde_json::Value;
use toolq::queue::{slot, AckItem, AckReply, DeadCaps, FetchLimits, QueueKeys};

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

/// Fetch limits that hand over every payload whole, with suspects at
/// `solo_at` recoveries.
fn limits(solo_at: u32) -> FetchLimits {
    FetchLimits {
        solo_at,
        max_bytes: 1 << 20,
        head_bytes: 64,
    }
}

/// Dead set caps of `max_jobs` entries, a week and a gigabyte.
fn caps(max_jobs: u64) -> DeadCaps {
    caps_aged(max_jobs, Duration::from_secs(7 * 86_400))
}

fn caps_aged(max_jobs: u64, max_age: Duration) -> DeadCaps {
    DeadCaps {
        max_jobs,
        max_age,
        max_bytes: 1 << 30,
    }
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
        follow_up: None,
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
    assert_eq!(
        b.recover(&k, "quiet", timeout, 3, caps(100)).await.unwrap(),
        None
    );

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
    assert_eq!(b.fetch(&k, "gone", 2, 7, limits(3)).await.unwrap().len(), 2);
    // A fetch that takes jobs refreshes a stale heartbeat (fetch.lua): the
    // jobs are fenced from the start. Then the worker falls silent again.
    let refreshed: u64 = redis::cmd("ZSCORE")
        .arg(&k.workers)
        .arg("gone")
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(refreshed >= now, "the fetch refreshed the heartbeat");
    let _: () = redis::cmd("ZADD")
        .arg(&k.workers)
        .arg(now - 6000)
        .arg("gone")
        .query_async(&mut con)
        .await
        .unwrap();
    lpush(
        &mut con,
        &q,
        &[r#"{"tool":"echo","args":{},"id":"old"}"#.into()],
    )
    .await;
    assert_eq!(
        b.recover(&k, "gone", timeout, 3, caps(100)).await.unwrap(),
        Some((2, vec![]))
    );
    let fetched = b.fetch(&k, "live", 3, 1, limits(3)).await.unwrap();
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
    assert_eq!(
        ids(b.fetch(&k, "w", 10, 1, limits(2)).await.unwrap()),
        ["1", "2"]
    );
    assert_eq!(
        ids(b.fetch(&k, "w", 10, 3, limits(2)).await.unwrap()),
        ["3"]
    );
    assert_eq!(
        ids(b.fetch(&k, "w", 10, 4, limits(2)).await.unwrap()),
        ["4"]
    );
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
    assert_eq!(b.fetch(&k, "w", 10, 1, limits(3)).await.unwrap().len(), 2);
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
    assert_eq!(b.fetch(&k, "w", 10, 2, limits(3)).await.unwrap().len(), 5);
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
        b.recover(&k, "w", timeout, 3, caps(100)).await.unwrap(),
        Some((3, vec![]))
    );
    assert!(!exists(k.active("w")).await);
    // The dead worker's late ack of j1 is fenced off: j1 runs again instead.
    assert_eq!(b.ack(&k, "w", &[ack(2, 1)]).await.unwrap().stale, [0]);
    assert!(!exists(k.result("2-j1")).await);
    assert!(exists(k.result("2-j0")).await && exists(k.result("2-j3")).await);
    let rerun: Vec<String> = b
        .fetch(&k, "live", 10, 1, limits(3))
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
        b.recover(&k, "old", timeout, 3, caps(100)).await.unwrap(),
        Some((2, vec![]))
    );
    let ids: Vec<String> = b
        .fetch(&k, "live", 10, 1, limits(3))
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
    assert_eq!(
        b.fetch(&k, "w", 1000, 1, limits(3)).await.unwrap().len(),
        1000
    );
    assert_eq!(
        b.fetch(&k, "w", 1000, 2, limits(3)).await.unwrap().len(),
        500
    );
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
    assert_eq!(b.fetch(&k, "w", 10, 1, limits(3)).await.unwrap().len(), 4);
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

/// A job whose notification list holds a string (a producer's mistake, or
/// an attacker's) is left held and reported with the key it could not
/// write; the other jobs of the same ack call are settled and counted.
#[tokio::test]
async fn an_ack_leaves_a_job_with_an_unwritable_notification_list_held_and_settles_the_rest() {
    let Scripted {
        _server,
        q,
        k,
        mut con,
        b,
    } = scripted("evil", &["w"]).await;
    redis_cmd(&mut con, &["SET", &k.batch("evil"), "x"]).await;
    lpush(&mut con, &q, &echo_jobs("e", 3)).await;
    assert_eq!(b.fetch(&k, "w", 10, 1, limits(3)).await.unwrap().len(), 3);
    let mut items: Vec<AckItem> = (0..3)
        .map(|i| ack_item(1, i, format!("e{i}"), 60))
        .collect();
    items[1].batch = Some("evil".into());
    let reply = b.ack(&k, "w", &items).await.unwrap();
    assert!(reply.stale.is_empty());
    assert_eq!(reply.unwritable.len(), 1, "{reply:?}");
    assert_eq!(reply.unwritable[0].0, 1);
    assert!(
        reply.unwritable[0].1.contains(&k.batch("evil")),
        "names the key: {}",
        reply.unwritable[0].1
    );
    assert!(exists(&mut con, &k.result("e0")).await && exists(&mut con, &k.result("e2")).await);
    assert!(
        !exists(&mut con, &k.result("e1")).await,
        "nothing written for it"
    );
    assert_eq!(succeeded(&mut con, &k).await, 2);
    assert_eq!(held_jobs(&mut con, &q, "w").await, ["e1"]);
}

/// The same for a unique lock that is not a string.
#[tokio::test]
async fn an_ack_leaves_a_job_whose_unique_lock_is_not_a_string_held() {
    let Scripted {
        _server,
        q,
        k,
        mut con,
        b,
    } = scripted("evillock", &["w"]).await;
    redis_cmd(&mut con, &["LPUSH", &k.unique("u"), "x"]).await;
    lpush(&mut con, &q, &echo_jobs("u", 2)).await;
    assert_eq!(b.fetch(&k, "w", 10, 1, limits(3)).await.unwrap().len(), 2);
    let mut items: Vec<AckItem> = (0..2)
        .map(|i| ack_item(1, i, format!("u{i}"), 60))
        .collect();
    items[0].unique_key = Some("u".into());
    let reply = b.ack(&k, "w", &items).await.unwrap();
    assert_eq!(reply.unwritable.len(), 1, "{reply:?}");
    assert!(reply.unwritable[0].1.contains(&k.unique("u")));
    assert_eq!(held_jobs(&mut con, &q, "w").await, ["u0"]);
    assert!(exists(&mut con, &k.result("u1")).await);
}

fn bury_item(batch: u64, index: usize, id: &str) -> toolq::queue::BuryItem {
    toolq::queue::BuryItem {
        seq: slot(batch, index),
        id: Some(id.to_owned()),
        dead_entry_prefix: format!(
            r#"{{"job":{{"id":"{id}"}},"error":{{"kind":"k","message":"m"}},"died_at":"#
        ),
        result_ttl_s: 60,
        result: format!(r#"{{"id":"{id}","status":"dead"}}"#),
        batch: None,
        unique_key: None,
        cancelled: false,
        follow_up: None,
    }
}

/// Redis keeps the writes a script made before an error. A burial into a
/// dead set of the wrong type must fail before any write, so the job is
/// still held (not settled and then lost), with no result and no count.
#[tokio::test]
async fn a_burial_into_a_dead_set_of_the_wrong_type_writes_nothing_and_keeps_the_job() {
    let Scripted {
        _server,
        q,
        k,
        mut con,
        b,
    } = scripted("baddead", &["w"]).await;
    redis_cmd(&mut con, &["SET", &k.dead, "x"]).await;
    lpush(&mut con, &q, &echo_jobs("d", 1)).await;
    assert_eq!(b.fetch(&k, "w", 10, 1, limits(3)).await.unwrap().len(), 1);
    let max_age = Duration::from_secs(3600);
    let err = b
        .bury(&k, "w", &bury_item(1, 0, "d0"), caps_aged(100, max_age))
        .await
        .unwrap_err();
    assert!(err.to_string().contains(&k.dead), "{err}");
    assert_eq!(held_jobs(&mut con, &q, "w").await, ["d0"]);
    assert!(!exists(&mut con, &k.result("d0")).await);
    assert!(!exists(&mut con, &k.stats).await, "nothing counted");
    // Once the key is fixed the same burial goes through.
    redis_cmd(&mut con, &["DEL", &k.dead]).await;
    let buried = b
        .bury(&k, "w", &bury_item(1, 0, "d0"), caps_aged(100, max_age))
        .await;
    assert_eq!(buried.unwrap(), Some((String::new(), 0)));
    assert_eq!(zcard(&mut con, &k.dead).await, 1);
    assert_eq!(held_count(&mut con, &k.active("w")).await, 0);
}

/// A job's own notification list of the wrong type does not stop its
/// burial: the key is skipped and said so, the rest is written.
#[tokio::test]
async fn a_burial_skips_a_notification_list_of_the_wrong_type() {
    let Scripted {
        _server,
        q,
        k,
        mut con,
        b,
    } = scripted("badlist", &["w"]).await;
    redis_cmd(&mut con, &["SET", &k.batch("evil"), "x"]).await;
    lpush(&mut con, &q, &echo_jobs("s", 1)).await;
    assert_eq!(b.fetch(&k, "w", 10, 1, limits(3)).await.unwrap().len(), 1);
    let mut item = bury_item(1, 0, "s0");
    item.batch = Some("evil".into());
    let skipped = b
        .bury(&k, "w", &item, caps_aged(100, Duration::from_secs(3600)))
        .await
        .unwrap()
        .expect("ours")
        .0;
    assert!(skipped.contains(&k.batch("evil")), "{skipped}");
    assert_eq!(zcard(&mut con, &k.dead).await, 1);
    assert!(exists(&mut con, &k.result("s0")).await);
    assert_eq!(held_count(&mut con, &k.active("w")).await, 0);
}

/// A retry into a delayed set of the wrong type writes nothing either.
#[tokio::test]
async fn a_retry_into_a_delayed_set_of_the_wrong_type_writes_nothing_and_keeps_the_job() {
    let Scripted {
        _server,
        q,
        k,
        mut con,
        b,
    } = scripted("baddelayed", &["w"]).await;
    redis_cmd(&mut con, &["SET", &k.delayed, "x"]).await;
    lpush(&mut con, &q, &echo_jobs("r", 1)).await;
    assert_eq!(b.fetch(&k, "w", 10, 1, limits(3)).await.unwrap().len(), 1);
    let item = toolq::queue::RetryItem {
        seq: slot(1, 0),
        id: "r0".into(),
        delay_ms: 10,
        payload: echo_jobs("r", 1).remove(0),
        result_ttl_s: 60,
        result: "{}".into(),
    };
    assert!(b.retry(&k, "w", &item).await.is_err());
    assert_eq!(held_jobs(&mut con, &q, "w").await, ["r0"]);
    assert!(!exists(&mut con, &k.result("r0")).await);
    assert!(!exists(&mut con, &k.stats).await);
}

/// The blocking wait must not move a job anywhere: Redis serves a blocked
/// command even while its client is paused, so a job moved to a worker's
/// own list after that worker was recovered and deregistered would be held
/// where no recovery looks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_a_job_moves_nothing_even_for_a_worker_recovered_meanwhile() {
    let Scripted {
        _server,
        q,
        k,
        mut con,
        b,
    } = scripted("wait", &["a", "live"]).await;
    let mut blocked = b.dedicated(Duration::from_secs(5)).await.unwrap();
    let wait = {
        let (b, k) = (std::sync::Arc::new(b), k.clone());
        let waiting = b.clone();
        let handle = tokio::spawn(async move {
            waiting
                .wait_for_job(&mut blocked, &k, Duration::from_secs(5))
                .await
        });
        (b, handle)
    };
    let (b, handle) = wait;
    until_waits_block(&con, 1).await;
    // "a" is declared dead and recovered while its wait is still blocked.
    let stale = redis_time_ms(&mut con).await - 60_000;
    redis_cmd(&mut con, &["ZADD", &k.workers, &stale.to_string(), "a"]).await;
    assert_eq!(
        b.recover(&k, "a", Duration::from_secs(1), 3, caps(100))
            .await
            .unwrap(),
        Some((0, vec![]))
    );
    lpush(&mut con, &q, &echo_jobs("w", 1)).await;
    assert!(handle.await.unwrap().unwrap(), "the wait saw the job");
    assert_eq!(llen(&mut con, &k.pending).await, 1, "still pending");
    assert!(!exists(&mut con, &k.landing("a")).await);
    assert_eq!(
        b.fetch(&k, "live", 10, 1, limits(3)).await.unwrap().len(),
        1
    );
}

/// Starts `worker`'s waiting fetch of batch `batch` (heartbeat at most
/// 4 s old) on a connection of its own.
fn wait_and_fetch(
    b: &std::sync::Arc<toolq::queue::Broker>,
    k: &QueueKeys,
    worker: &'static str,
    batch: u64,
) -> tokio::task::JoinHandle<toolq::queue::Landing> {
    let (b, k) = (b.clone(), k.clone());
    tokio::spawn(async move {
        let mut blocked = b.dedicated(Duration::from_secs(5)).await.unwrap();
        let w = toolq::queue::WaitingFetch {
            batch,
            limits: limits(3),
            max_beat_age: Duration::from_secs(4),
            block: Duration::from_secs(5),
        };
        b.wait_and_fetch(&mut blocked, &k, worker, w).await.unwrap()
    })
}

async fn score(con: &mut Con, k: &QueueKeys, worker: &str) -> Option<u64> {
    redis::cmd("ZSCORE")
        .arg(&k.workers)
        .arg(worker)
        .query_async(con)
        .await
        .unwrap()
}

/// The fetch sent behind a blocking wait runs the moment a job lands: the
/// job is held under the batch named (one at a time; the reply says more
/// wait), pending loses it, and the heartbeat is left as it was (the
/// fetch may run long after it was sent: it keeps no one alive).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_fetch_holds_the_job_that_lands_and_says_whether_more_wait() {
    let Scripted {
        _server,
        q,
        k,
        mut con,
        b,
    } = scripted("waitfetch", &["w"]).await;
    let b = std::sync::Arc::new(b);
    // A fetch of nothing loads the script, as a worker's first round does.
    assert!(b.fetch(&k, "w", 1, 1, limits(3)).await.unwrap().is_empty());
    let beat = redis_time_ms(&mut con).await - 2_000;
    redis_cmd(&mut con, &["ZADD", &k.workers, &beat.to_string(), "w"]).await;
    let waiting = wait_and_fetch(&b, &k, "w", 7);
    until_waits_block(&con, 1).await;
    lpush(&mut con, &q, &echo_jobs("a", 1)).await;
    let landing = waiting.await.unwrap();
    assert!(landing.seen);
    let fetched = landing.fetched.unwrap();
    assert_eq!(fetched.len(), 1);
    assert!(String::from_utf8_lossy(&fetched[0]).contains(r#""id":"a0""#));
    assert!(!landing.more, "pending is empty");
    assert_eq!(llen(&mut con, &k.pending).await, 0);
    assert_eq!(held_jobs(&mut con, &q, "w").await, ["a0"]);
    assert_eq!(score(&mut con, &k, "w").await, Some(beat), "not refreshed");
    // Settled by its slot in batch 7, as a fetcher's job is.
    let reply = b
        .ack(&k, "w", &[ack_item(7, 0, "a0".into(), 60)])
        .await
        .unwrap();
    assert!(reply.stale.is_empty() && reply.unwritable.is_empty());
    assert!(held_jobs(&mut con, &q, "w").await.is_empty());

    // Two land at once: one is taken, the reply says the other waits.
    let waiting = wait_and_fetch(&b, &k, "w", 8);
    until_waits_block(&con, 1).await;
    lpush(&mut con, &q, &echo_jobs("b", 2)).await;
    let landing = waiting.await.unwrap();
    assert_eq!(landing.fetched.unwrap().len(), 1);
    assert!(landing.more);
    assert_eq!(held_jobs(&mut con, &q, "w").await, ["b0"]);
    assert_eq!(llen(&mut con, &k.pending).await, 1);
}

/// A waiting fetch may run long after it was sent, for a worker that froze
/// or was cut off meanwhile: it takes nothing for one whose heartbeat is
/// older than the age allowed, nor for one deregistered (recovered), and
/// leaves the job pending for the live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_fetch_takes_nothing_for_a_worker_stale_or_gone_since_it_was_sent() {
    let Scripted {
        _server,
        q,
        k,
        mut con,
        b,
    } = scripted("waitstale", &["stale", "gone", "live"]).await;
    let b = std::sync::Arc::new(b);
    assert!(b
        .fetch(&k, "live", 1, 1, limits(3))
        .await
        .unwrap()
        .is_empty());
    let old = redis_time_ms(&mut con).await - 4_500;
    redis_cmd(&mut con, &["ZADD", &k.workers, &old.to_string(), "stale"]).await;
    let waiting = wait_and_fetch(&b, &k, "stale", 1);
    until_waits_block(&con, 1).await;
    lpush(&mut con, &q, &echo_jobs("s", 1)).await;
    let landing = waiting.await.unwrap();
    assert!(landing.seen);
    assert!(landing.fetched.unwrap().is_empty());
    assert_eq!(llen(&mut con, &k.pending).await, 1);
    assert!(!exists(&mut con, &k.active("stale")).await);
    assert_eq!(score(&mut con, &k, "stale").await, Some(old));

    redis_cmd(&mut con, &["DEL", &k.pending]).await;
    let waiting = wait_and_fetch(&b, &k, "gone", 1);
    until_waits_block(&con, 1).await;
    redis_cmd(&mut con, &["ZREM", &k.workers, "gone"]).await;
    lpush(&mut con, &q, &echo_jobs("g", 1)).await;
    let landing = waiting.await.unwrap();
    assert!(matches!(
        landing.fetched,
        Err(toolq::queue::QueueError::NotRegistered)
    ));
    assert_eq!(llen(&mut con, &k.pending).await, 1);
    assert!(!exists(&mut con, &k.active("gone")).await);
    assert_eq!(
        b.fetch(&k, "live", 10, 1, limits(3)).await.unwrap().len(),
        1
    );
}

/// Redis lost its scripts (a restart without persistence of them, `SCRIPT
/// FLUSH`): the waiting fetch takes nothing that time and loads the
/// script, so the next one fetches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_fetch_loads_its_script_again_when_redis_lost_it() {
    let Scripted {
        _server,
        q,
        k,
        mut con,
        b,
    } = scripted("waitnoscript", &["w"]).await;
    let b = std::sync::Arc::new(b);
    redis_cmd(&mut con, &["SCRIPT", "FLUSH"]).await;
    lpush(&mut con, &q, &echo_jobs("n", 1)).await;
    let landing = wait_and_fetch(&b, &k, "w", 1).await.unwrap();
    assert!(landing.seen);
    assert!(landing.fetched.unwrap().is_empty());
    assert_eq!(llen(&mut con, &k.pending).await, 1);
    let landing = wait_and_fetch(&b, &k, "w", 2).await.unwrap();
    assert_eq!(landing.fetched.unwrap().len(), 1);
    assert_eq!(held_jobs(&mut con, &q, "w").await, ["n0"]);
}

/// A graceful stop puts back every held job and leaves the worker set in
/// one step; if pending cannot be written, neither happens, so the worker
/// stays registered with its jobs and recovery takes them later.
#[tokio::test]
async fn a_stop_puts_held_jobs_back_and_deregisters_in_one_step_or_not_at_all() {
    use toolq::queue::Requeue;
    let Scripted {
        _server,
        q,
        k,
        mut con,
        b,
    } = scripted("stop", &["w"]).await;
    lpush(&mut con, &q, &echo_jobs("s", 3)).await;
    assert_eq!(b.fetch(&k, "w", 2, 1, limits(3)).await.unwrap().len(), 2);
    assert_eq!(b.fetch(&k, "w", 2, 2, limits(3)).await.unwrap().len(), 1);
    // Nothing can be written while pending holds the wrong type.
    let jobs_left: Vec<String> = redis::cmd("LRANGE")
        .arg(&k.pending)
        .arg(0)
        .arg(-1)
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(jobs_left.is_empty());
    redis_cmd(&mut con, &["SET", &k.pending, "x"]).await;
    assert!(b.requeue(&k, "w", Requeue::Stop).await.is_err());
    assert_eq!(held_count(&mut con, &k.active("w")).await, 3);
    assert_eq!(zcard(&mut con, &k.workers).await, 1, "still registered");

    redis_cmd(&mut con, &["DEL", &k.pending]).await;
    assert_eq!(b.requeue(&k, "w", Requeue::Stop).await.unwrap(), 3);
    assert_eq!(zcard(&mut con, &k.workers).await, 0, "deregistered");
    assert!(!exists(&mut con, &k.active("w")).await);
    // Back at the front, oldest first.
    b.heartbeat(&k, "next", true).await.unwrap();
    let ids: Vec<String> = b
        .fetch(&k, "next", 10, 1, limits(3))
        .await
        .unwrap()
        .iter()
        .map(|p| serde_json::from_slice::<Value>(p).unwrap()["id"].to_string())
        .collect();
    assert_eq!(ids, [r#""s0""#, r#""s1""#, r#""s2""#]);
}

/// The jobs of a fetched batch whose reply was lost go back by the batch's
/// number: only those still held, whatever the batch's size was.
#[tokio::test]
async fn a_batch_put_back_by_its_number_returns_only_its_unsettled_jobs() {
    use toolq::queue::Requeue;
    let Scripted {
        _server,
        q,
        k,
        mut con,
        b,
    } = scripted("batchback", &["w"]).await;
    lpush(&mut con, &q, &echo_jobs("p", 4)).await;
    assert_eq!(b.fetch(&k, "w", 3, 7, limits(3)).await.unwrap().len(), 3);
    b.ack(&k, "w", &[ack_item(7, 1, "p1".into(), 60)])
        .await
        .unwrap();
    // Batch 8 was never fetched: naming it puts nothing back.
    assert_eq!(
        b.requeue(&k, "w", Requeue::Batches(&[7, 8])).await.unwrap(),
        2
    );
    assert_eq!(held_count(&mut con, &k.active("w")).await, 0);
    assert_eq!(llen(&mut con, &k.pending).await, 3);
    assert_eq!(b.requeue(&k, "w", Requeue::Batches(&[7])).await.unwrap(), 0);
}

/// Recovery decides everything before it writes: with a poison job to bury
/// and a dead set of the wrong type, it fails whole, and the dead worker's
/// jobs are still where they were (no half-recovered duplicates).
#[tokio::test]
async fn a_recovery_that_cannot_bury_its_poison_job_writes_nothing() {
    let Scripted {
        _server,
        q,
        k,
        mut con,
        b,
    } = scripted("badrecover", &["w"]).await;
    let jobs = [
        r#"{"recoveries":3,"tool":"echo","args":{},"id":"poison"}"#.to_owned(),
        r#"{"tool":"echo","args":{},"id":"fine"}"#.to_owned(),
    ];
    lpush(&mut con, &q, &jobs).await;
    assert_eq!(b.fetch(&k, "w", 10, 1, limits(9)).await.unwrap().len(), 2);
    redis_cmd(&mut con, &["SET", &k.dead, "x"]).await;
    let stale = redis_time_ms(&mut con).await - 60_000;
    redis_cmd(&mut con, &["ZADD", &k.workers, &stale.to_string(), "w"]).await;
    assert!(b
        .recover(&k, "w", Duration::from_secs(1), 3, caps(100))
        .await
        .is_err());
    assert_eq!(llen(&mut con, &k.pending).await, 0);
    assert_eq!(held_count(&mut con, &k.active("w")).await, 2);
    redis_cmd(&mut con, &["DEL", &k.dead]).await;
    let (recovered, buried) = b
        .recover(&k, "w", Duration::from_secs(1), 3, caps(100))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((recovered, buried.len()), (1, 1));
    let entry = &dead_entries(&mut con, &q).await[0];
    assert_eq!(
        (&entry["worker"], &entry["error"]["kind"]),
        (&Value::from("w"), &Value::from("poisoned"))
    );
}

/// A unique lock is released only while it still names the job.
#[tokio::test]
async fn a_unique_lock_is_released_only_by_the_job_it_names() {
    let Scripted {
        _server,
        k,
        mut con,
        b,
        ..
    } = scripted("unlock", &[]).await;
    redis_cmd(&mut con, &["SET", &k.unique("u"), "job-a"]).await;
    assert!(!b.release_unique(&k, "u", "job-b").await.unwrap());
    assert!(exists(&mut con, &k.unique("u")).await);
    assert!(b.release_unique(&k, "u", "job-a").await.unwrap());
    assert!(!exists(&mut con, &k.unique("u")).await);
}

/// A fetch that cannot hold its jobs takes none: the active hash is
/// written before pending is trimmed.
#[tokio::test]
async fn a_fetch_that_cannot_hold_its_jobs_takes_none() {
    let Scripted {
        _server,
        q,
        k,
        mut con,
        b,
    } = scripted("badactive", &["w"]).await;
    redis_cmd(&mut con, &["SET", &k.active("w"), "x"]).await;
    lpush(&mut con, &q, &echo_jobs("f", 3)).await;
    assert!(b.fetch(&k, "w", 10, 1, limits(3)).await.is_err());
    assert_eq!(llen(&mut con, &k.pending).await, 3);
}

/// A park retried after its reply was lost must not answer "due now": the
/// first try parked the job, which would then run here and again from the
/// delayed set. Ownership is checked before the due time.
#[tokio::test]
async fn a_retried_park_whose_first_try_landed_is_stale_not_due() {
    let Scripted {
        _server,
        q,
        k,
        mut con,
        b,
    } = scripted("repark", &["w"]).await;
    lpush(&mut con, &q, &echo_jobs("p", 1)).await;
    assert_eq!(b.fetch(&k, "w", 10, 1, limits(3)).await.unwrap().len(), 1);
    let now = redis_time_ms(&mut con).await;
    let park = |due_ms: u64| toolq::queue::DeferItem {
        seq: slot(1, 0),
        due_ms,
        payload: echo_jobs("p", 1).remove(0),
    };
    assert_eq!(
        b.defer(&k, "w", &park(now + 60_000)).await.unwrap(),
        Some(true)
    );
    assert_eq!(
        b.defer(&k, "w", &park(now - 1)).await.unwrap(),
        None,
        "stale, not due"
    );
    assert_eq!(zcard(&mut con, &k.delayed).await, 1);
}

/// Promotion pushes before it removes: with pending of the wrong type the
/// due jobs stay in the delayed set instead of vanishing.
#[tokio::test]
async fn a_promotion_that_cannot_push_keeps_the_jobs_delayed() {
    let Scripted {
        _server,
        k,
        mut con,
        b,
        ..
    } = scripted("badpromote", &[]).await;
    let due = (redis_time_ms(&mut con).await - 10).to_string();
    redis_cmd(&mut con, &["ZADD", &k.delayed, &due, "job"]).await;
    redis_cmd(&mut con, &["SET", &k.pending, "x"]).await;
    assert!(b.promote(&k, 100).await.is_err());
    assert_eq!(zcard(&mut con, &k.delayed).await, 1);
}

/// A payload over the fetch's byte limit never leaves Redis: the fetch holds
/// and hands over a stand-in (size, SHA-1, head) in its place, between the
/// ordinary jobs around it, and the payload is gone from pending.
#[tokio::test]
async fn an_oversized_payload_is_held_and_handed_over_as_a_stand_in() {
    let Scripted {
        _server,
        q,
        k,
        mut con,
        b,
    } = scripted("oversized", &["w"]).await;
    let big = format!(
        r#"{{"id":"big","batch":"b1","tool":"echo","args":{{"s":"{}"}}}}"#,
        "x".repeat(2 << 20)
    );
    let jobs = echo_jobs("n", 2);
    lpush(
        &mut con,
        &q,
        &[jobs[0].clone(), big.clone(), jobs[1].clone()],
    )
    .await;
    let limits = FetchLimits {
        solo_at: 3,
        max_bytes: 1 << 20,
        head_bytes: 40,
    };
    let fetched = b.fetch(&k, "w", 10, 1, limits).await.unwrap();
    assert_eq!(fetched.len(), 3);
    assert_eq!(fetched[0], jobs[0].as_bytes());
    assert_eq!(fetched[2], jobs[1].as_bytes());
    let o = toolq::queue::Oversized::decode(&fetched[1]).expect("a stand-in");
    assert_eq!(o.bytes, big.len() as u64);
    assert_eq!(o.sha1, sha1_smol::Sha1::from(&big).digest().to_string());
    assert_eq!(o.head, &big.as_bytes()[..40]);
    assert_eq!(o.tail, &big.as_bytes()[big.len() - 4096..]);
    assert_eq!(llen(&mut con, &k.pending).await, 0);
    // The active hash holds the stand-in, not the payload.
    let held: Vec<Vec<u8>> = redis::cmd("HVALS")
        .arg(k.active("w"))
        .query_async(&mut con)
        .await
        .unwrap();
    let bytes: usize = held.iter().map(Vec::len).sum();
    assert!(bytes < 8192, "active hash holds {bytes} bytes");
    // A stand-in recovered to pending is small: fetched again as it is.
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(
        b.recover(&k, "w", Duration::ZERO, 3, caps(100))
            .await
            .unwrap()
            .map(|r| r.0),
        Some(3)
    );
    assert!(b.heartbeat(&k, "w2", true).await.unwrap());
    let again = b.fetch(&k, "w2", 10, 1, limits).await.unwrap();
    assert_eq!(again[1], fetched[1]);
    // Even under a limit smaller than the stand-in itself.
    tokio::time::sleep(Duration::from_millis(5)).await;
    b.recover(&k, "w2", Duration::ZERO, 3, caps(100))
        .await
        .unwrap();
    assert!(b.heartbeat(&k, "w3", true).await.unwrap());
    let tiny = FetchLimits {
        max_bytes: 100,
        ..limits
    };
    let again = b.fetch(&k, "w3", 10, 1, tiny).await.unwrap();
    assert_eq!(again[1], fetched[1]);
}

/// Seeds `n` held echo jobs on worker `w` and buries them one by one with
/// dead entries of about `size` bytes; returns the entries' lengths.
async fn bury_sized(
    b: &toolq::queue::Broker,
    con: &mut Con,
    q: &str,
    n: usize,
    size: usize,
    caps: DeadCaps,
) -> Vec<usize> {
    let k = QueueKeys::new(q);
    lpush(con, q, &echo_jobs("z", n)).await;
    assert_eq!(b.fetch(&k, "w", n, 1, limits(3)).await.unwrap().len(), n);
    let mut lengths = Vec::new();
    for i in 0..n {
        let mut item = bury_item(1, i, &format!("z{i}"));
        item.dead_entry_prefix = format!(
            r#"{{"job":{{"id":"z{i}","pad":"{}"}},"error":{{"kind":"k","message":"m"}},"died_at":"#,
            "p".repeat(size)
        );
        b.bury(&k, "w", &item, caps).await.unwrap().expect("ours");
        let t = redis_time_ms(con).await;
        lengths.push(item.dead_entry_prefix.len() + t.to_string().len() + 1);
    }
    lengths
}

async fn dead_set_bytes(con: &mut Con, k: &QueueKeys) -> (usize, Vec<String>) {
    let entries: Vec<String> = redis::cmd("ZRANGE")
        .arg(&k.dead)
        .arg(0)
        .arg(-1)
        .query_async(con)
        .await
        .unwrap();
    (entries.iter().map(String::len).sum(), entries)
}

async fn stat(con: &mut Con, k: &QueueKeys, field: &str) -> Option<u64> {
    redis::cmd("HGET")
        .arg(&k.stats)
        .arg(field)
        .query_async(con)
        .await
        .unwrap()
}

/// The dead set is capped in bytes as well as by count: burials drop the
/// oldest entries beyond `max_bytes`, keep the byte count exact in the
/// stats hash and count what they dropped in `dead_trimmed`.
#[tokio::test]
async fn the_dead_set_is_trimmed_to_its_byte_cap_oldest_first() {
    let Scripted {
        _server,
        q,
        k,
        mut con,
        b,
    } = scripted("deadbytes", &["w"]).await;
    let caps = DeadCaps {
        max_bytes: 3500,
        ..caps(100)
    };
    bury_sized(&b, &mut con, &q, 10, 1000, caps).await;
    let (bytes, entries) = dead_set_bytes(&mut con, &k).await;
    assert_eq!(entries.len(), 3, "three entries of ~1,070 bytes fit 3,500");
    assert!(bytes <= 3500);
    assert!(entries[2].contains(r#""id":"z9""#), "the newest stays");
    assert_eq!(stat(&mut con, &k, "dead_bytes").await, Some(bytes as u64));
    assert_eq!(stat(&mut con, &k, "dead_trimmed").await, Some(7));
    assert_eq!(stat(&mut con, &k, "dead").await, Some(10));
    // A lone entry over the cap stays: a burial always leaves its record.
    let tiny = DeadCaps {
        max_bytes: 10,
        ..caps
    };
    bury_sized(&b, &mut con, &q, 1, 1000, tiny).await;
    let (bytes, entries) = dead_set_bytes(&mut con, &k).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(stat(&mut con, &k, "dead_bytes").await, Some(bytes as u64));
    // A retried entry leaves the count with the set.
    bury_sized(&b, &mut con, &q, 1, 10, caps).await;
    let (before, entries) = dead_set_bytes(&mut con, &k).await;
    let retried = toolq::queue::DeadRetry {
        entry: entries[1].clone(),
        payload: echo_jobs("again", 1).remove(0),
        id: "again0".into(),
        unique_key: None,
    };
    let ttl = Duration::from_secs(60);
    assert_eq!(b.dead_retry(&k, &[retried], ttl).await.unwrap(), 1);
    let (bytes, _) = dead_set_bytes(&mut con, &k).await;
    assert_eq!(bytes, before - entries[1].len());
    assert_eq!(stat(&mut con, &k, "dead_bytes").await, Some(bytes as u64));
    // A purge drops the count; the next burial sums the set again.
    b.dead_purge(&k, Some(Duration::from_secs(3600)))
        .await
        .unwrap();
    assert_eq!(stat(&mut con, &k, "dead_bytes").await, None);
    bury_sized(&b, &mut con, &q, 2, 10, caps).await;
    let (bytes, entries) = dead_set_bytes(&mut con, &k).await;
    assert_eq!(entries.len(), 3, "the big one and the two new");
    assert_eq!(stat(&mut con, &k, "dead_bytes").await, Some(bytes as u64));
}

/// A dead set written before the byte count (no `dead_bytes`) is summed by
/// the first burial, so the cap holds from then on.
#[tokio::test]
async fn a_dead_set_without_a_byte_count_is_summed_by_the_next_burial() {
    let Scripted {
        _server,
        q,
        k,
        mut con,
        b,
    } = scripted("deadsum", &["w"]).await;
    let now = redis_time_ms(&mut con).await;
    for i in 0..5u64 {
        let entry = format!(r#"{{"job":"old{i}{}","died_at":1}}"#, "o".repeat(500));
        let score = (now - 1000 + i).to_string();
        redis_cmd(&mut con, &["ZADD", &k.dead, &score, &entry]).await;
    }
    let caps = DeadCaps {
        max_bytes: 2000,
        ..caps(100)
    };
    bury_sized(&b, &mut con, &q, 1, 10, caps).await;
    let (bytes, entries) = dead_set_bytes(&mut con, &k).await;
    assert!(bytes <= 2000, "{bytes}");
    assert_eq!(entries.len(), 4, "two old entries went");
    assert_eq!(stat(&mut con, &k, "dead_bytes").await, Some(bytes as u64));
    assert_eq!(stat(&mut con, &k, "dead_trimmed").await, Some(2));
}

async fn lrange(con: &mut Con, key: &str) -> Vec<String> {
    redis::cmd("LRANGE")
        .arg(key)
        .arg(0)
        .arg(-1)
        .query_async(con)
        .await
        .unwrap()
}

fn follow_up(queue: &str, payload: &str) -> toolq::queue::FollowUpItem {
    toolq::queue::FollowUpItem {
        queue: queue.to_owned(),
        payload: payload.to_owned(),
    }
}

/// A follow-up is pushed by the ack that settles its parent, onto its own
/// queue's pending list; the same ack sent again (a lost reply retried, or
/// a worker that lost the job to a recovery) finds the parent settled and
/// pushes nothing: one settlement, one follow-up.
#[tokio::test]
async fn an_ack_pushes_its_follow_up_once_only_when_it_settles_the_job() {
    let Scripted {
        _server,
        q,
        k,
        mut con,
        b,
    } = scripted("fu_ack", &["w"]).await;
    let other = QueueKeys::new(&format!("{q}-next"));
    lpush(&mut con, &q, &echo_jobs("f", 3)).await;
    assert_eq!(b.fetch(&k, "w", 10, 1, limits(3)).await.unwrap().len(), 3);
    let mut items: Vec<AckItem> = (0..3)
        .map(|i| ack_item(1, i, format!("f{i}"), 60))
        .collect();
    items[0].follow_up = Some(follow_up(&other.name, "next-of-f0"));
    items[2].follow_up = Some(follow_up(&q, "next-of-f2"));
    assert_eq!(b.ack(&k, "w", &items).await.unwrap(), AckReply::default());
    assert_eq!(lrange(&mut con, &other.pending).await, ["next-of-f0"]);
    assert_eq!(lrange(&mut con, &k.pending).await, ["next-of-f2"]);
    let again = b.ack(&k, "w", &items).await.unwrap();
    assert_eq!(again.stale, [0, 1, 2]);
    assert_eq!(llen(&mut con, &other.pending).await, 1, "not pushed twice");
    assert_eq!(llen(&mut con, &k.pending).await, 1, "not pushed twice");
}

/// A follow-up whose pending list cannot take it (not a list) keeps its
/// parent held and reported, naming the key, like any key of the job's
/// own: the worker then buries the parent. The rest of the call settles.
#[tokio::test]
async fn an_ack_leaves_a_job_whose_follow_up_cannot_be_pushed_held() {
    let Scripted {
        _server,
        q,
        k,
        mut con,
        b,
    } = scripted("fu_bad", &["w"]).await;
    let broken = QueueKeys::new(&format!("{q}-broken"));
    redis_cmd(&mut con, &["SET", &broken.pending, "x"]).await;
    lpush(&mut con, &q, &echo_jobs("g", 2)).await;
    assert_eq!(b.fetch(&k, "w", 10, 1, limits(3)).await.unwrap().len(), 2);
    let mut items: Vec<AckItem> = (0..2)
        .map(|i| ack_item(1, i, format!("g{i}"), 60))
        .collect();
    items[0].follow_up = Some(follow_up(&broken.name, "next"));
    let reply = b.ack(&k, "w", &items).await.unwrap();
    assert_eq!(reply.unwritable.len(), 1, "{reply:?}");
    assert_eq!(reply.unwritable[0].0, 0);
    assert!(reply.unwritable[0].1.contains(&broken.pending), "{reply:?}");
    assert!(!exists(&mut con, &k.result("g0")).await);
    assert!(exists(&mut con, &k.result("g1")).await);
    assert_eq!(held_jobs(&mut con, &q, "w").await, ["g0"]);
}

/// A burial pushes its job's on_failure follow-up in the same call; a
/// burial of a job no longer held (stale) pushes nothing.
#[tokio::test]
async fn a_burial_pushes_its_follow_up_once_only_when_it_settles_the_job() {
    let Scripted {
        _server,
        q,
        k,
        mut con,
        b,
    } = scripted("fu_bury", &["w"]).await;
    lpush(&mut con, &q, &echo_jobs("d", 1)).await;
    assert_eq!(b.fetch(&k, "w", 10, 1, limits(3)).await.unwrap().len(), 1);
    let mut item = bury_item(1, 0, "d0");
    item.follow_up = Some(follow_up(&q, "on-failure-of-d0"));
    item.unique_key = Some("u".into());
    item.batch = Some("bt".into());
    redis_cmd(&mut con, &["SET", &k.unique("u"), "d0"]).await;
    let buried = b.bury(&k, "w", &item, caps(100)).await.unwrap();
    assert_eq!(buried, Some((String::new(), 0)));
    assert_eq!(lrange(&mut con, &k.pending).await, ["on-failure-of-d0"]);
    assert_eq!(lrange(&mut con, &k.batch("bt")).await, ["d0"]);
    assert!(!exists(&mut con, &k.unique("u")).await, "lock released");
    assert_eq!(b.bury(&k, "w", &item, caps(100)).await.unwrap(), None);
    assert_eq!(llen(&mut con, &k.pending).await, 1, "not pushed twice");
    assert_eq!(zcard(&mut con, &k.dead).await, 1);
}

/// A follow-up's pending list of the wrong type does not stop the burial:
/// the job is buried, the follow-up skipped and said so.
#[tokio::test]
async fn a_burial_skips_a_follow_up_it_cannot_push_and_says_so() {
    let Scripted {
        _server,
        q,
        k,
        mut con,
        b,
    } = scripted("fu_skip", &["w"]).await;
    let broken = QueueKeys::new(&format!("{q}-broken"));
    redis_cmd(&mut con, &["SET", &broken.pending, "x"]).await;
    lpush(&mut con, &q, &echo_jobs("s", 1)).await;
    assert_eq!(b.fetch(&k, "w", 10, 1, limits(3)).await.unwrap().len(), 1);
    let mut item = bury_item(1, 0, "s0");
    item.follow_up = Some(follow_up(&broken.name, "next"));
    let (skipped, _) = b
        .bury(&k, "w", &item, caps(100))
        .await
        .unwrap()
        .expect("ours");
    assert!(skipped.contains(&broken.pending), "{skipped}");
    assert_eq!(zcard(&mut con, &k.dead).await, 1);
    assert_eq!(held_count(&mut con, &k.active("w")).await, 0);
}

/// Arms batch `batch` of `k` with an echo callback to `to` reporting its
/// counts.
async fn arm_callback(b: &toolq::queue::Broker, k: &QueueKeys, batch: &str, to: &str) {
    let t = toolq::job::FollowUp::new(
        "echo",
        serde_json::json!({"ok": "$batch.succeeded", "dead": "$batch.dead",
            "cancelled": "$batch.cancelled", "total": "$batch.total", "batch": "$batch.id"}),
    );
    b.arm_batch_callback(k, batch, to, &t.batch_parts(batch))
        .await
        .unwrap();
}

async fn callbacks(con: &mut Con, q: &str) -> Vec<Value> {
    lrange(con, &QueueKeys::new(q).pending)
        .await
        .iter()
        .map(|p| serde_json::from_str(p).unwrap())
        .collect()
}

/// A sealed batch's callback is pushed by the call that settles its last
/// job (acks and a burial count alike), with the counts, once: a repeated
/// settlement is stale and a repeated seal pushes nothing.
#[tokio::test]
async fn a_batch_callback_is_pushed_once_by_the_settlement_of_its_last_job() {
    let Scripted {
        _server,
        q,
        k,
        mut con,
        b,
    } = scripted("cb_last", &["w"]).await;
    let to = format!("{q}-cb");
    arm_callback(&b, &k, "bt", &to).await;
    lpush(&mut con, &q, &echo_jobs("c", 3)).await;
    assert_eq!(b.fetch(&k, "w", 10, 1, limits(3)).await.unwrap().len(), 3);
    assert!(
        !b.seal_batch(&k, "bt", 3).await.unwrap(),
        "nothing settled yet"
    );
    let mut items: Vec<AckItem> = (0..2)
        .map(|i| ack_item(1, i, format!("c{i}"), 60))
        .collect();
    for item in &mut items {
        item.batch = Some("bt".into());
    }
    assert_eq!(b.ack(&k, "w", &items).await.unwrap(), AckReply::default());
    assert!(callbacks(&mut con, &to).await.is_empty(), "one job to go");
    let mut last = bury_item(1, 2, "c2");
    last.batch = Some("bt".into());
    assert!(b.bury(&k, "w", &last, caps(100)).await.unwrap().is_some());
    let fired = callbacks(&mut con, &to).await;
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0]["id"], "bt:callback");
    assert_eq!(
        fired[0]["args"],
        serde_json::json!({"ok": 2, "dead": 1, "cancelled": 0, "total": 3, "batch": "bt"})
    );
    assert_eq!(b.ack(&k, "w", &items).await.unwrap().stale, [0, 1]);
    assert!(b.seal_batch(&k, "bt", 3).await.unwrap(), "fired already");
    assert_eq!(callbacks(&mut con, &to).await.len(), 1, "pushed once");
}

/// Jobs that all finish before the producer seals the batch (the seal
/// comes after the last enqueue) do not fire it early; the seal does.
#[tokio::test]
async fn a_batch_whose_jobs_finish_before_its_seal_fires_at_the_seal() {
    let Scripted {
        _server,
        q,
        k,
        mut con,
        b,
    } = scripted("cb_seal", &["w"]).await;
    arm_callback(&b, &k, "bs", &q).await;
    lpush(&mut con, &q, &echo_jobs("s", 2)).await;
    assert_eq!(b.fetch(&k, "w", 10, 1, limits(3)).await.unwrap().len(), 2);
    let mut items: Vec<AckItem> = (0..2)
        .map(|i| ack_item(1, i, format!("s{i}"), 60))
        .collect();
    for item in &mut items {
        item.batch = Some("bs".into());
    }
    assert_eq!(b.ack(&k, "w", &items).await.unwrap(), AckReply::default());
    assert!(
        callbacks(&mut con, &q).await.is_empty(),
        "not sealed: more may come"
    );
    assert!(b.seal_batch(&k, "bs", 2).await.unwrap());
    let fired = callbacks(&mut con, &q).await;
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0]["args"]["ok"], 2);
    assert_eq!(fired[0]["args"]["total"], 2);
}

/// A job of the batch that kills its workers is buried as poison by the
/// recovery script, which counts it dead: the batch still ends.
#[tokio::test]
async fn a_poisoned_job_counts_dead_in_its_batch() {
    let Scripted {
        _server,
        q,
        k,
        mut con,
        b,
    } = scripted("cb_poison", &["w"]).await;
    arm_callback(&b, &k, "bp", &q).await;
    let job = r#"{"recoveries":3,"tool":"crash","args":{},"id":"x","batch":"bp"}"#;
    lpush(&mut con, &q, &[job.to_owned()]).await;
    assert_eq!(b.fetch(&k, "w", 10, 1, limits(9)).await.unwrap().len(), 1);
    assert!(!b.seal_batch(&k, "bp", 1).await.unwrap());
    redis_cmd(&mut con, &["ZADD", &k.workers, "0", "w"]).await;
    let (_, buried) = b
        .recover(&k, "w", Duration::from_secs(5), 3, caps(100))
        .await
        .unwrap()
        .expect("the worker is dead");
    assert_eq!(buried.len(), 1);
    let fired = callbacks(&mut con, &q).await;
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0]["args"]["dead"], 1);
}

/// A pending job of the batch cancelled by an operator counts as
/// cancelled.
#[tokio::test]
async fn a_cancelled_pending_job_counts_cancelled_in_its_batch() {
    let Scripted {
        _server,
        q,
        k,
        mut con,
        b,
    } = scripted("cb_cancel", &["w"]).await;
    let to = format!("{q}-cb");
    arm_callback(&b, &k, "bc", &to).await;
    let job = r#"{"tool":"echo","args":{},"id":"p","batch":"bc"}"#;
    lpush(&mut con, &q, &[job.to_owned()]).await;
    assert!(!b.seal_batch(&k, "bc", 1).await.unwrap());
    let producer = toolq::producer::Producer::from_broker(std::sync::Arc::new(b));
    producer.cancel(&q, "p").await.unwrap();
    let fired = callbacks(&mut con, &to).await;
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0]["args"]["cancelled"], 1);
    assert_eq!(fired[0]["args"]["ok"], 0);
}

/// `toolq bench`'s "scripts alone" bound drives the worker's own fetch and
/// ack scripts: it must settle every job once, with its result written
/// under its id with the TTL, and leave nothing pending or held, or its
/// jobs/s would not be the job path's.
#[tokio::test]
async fn the_bench_s_scripts_alone_loop_settles_every_job_through_the_real_scripts() {
    let server = redis();
    let url = server.url();
    let producer = toolq::producer::Producer::connect(&url, None).unwrap();
    let k = QueueKeys::new(&queue_name("scripts-alone"));
    let mut con = raw(&url).await;
    let run = toolq::bench::scripts_only::run(&producer, &k, None, 1234)
        .await
        .unwrap();
    assert!(run.jobs_per_s > 0.0);
    assert_eq!(stat(&mut con, &k, "succeeded").await, Some(1234));
    assert_eq!(llen(&mut con, &k.pending).await, 0);
    let workers: Vec<String> = redis::cmd("ZRANGE")
        .arg(&k.workers)
        .arg(0)
        .arg(-1)
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(workers.len(), 1);
    assert!(
        !exists(&mut con, &k.active(&workers[0])).await,
        "nothing held"
    );
    let results: Vec<String> = redis::cmd("KEYS")
        .arg(format!("toolq:{{{}}}:result:*", k.name))
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(results.len(), 1234, "one result per job");
    for key in results.iter().step_by(97) {
        let ttl: i64 = redis::cmd("TTL")
            .arg(key)
            .query_async(&mut con)
            .await
            .unwrap();
        assert!((3500..=3600).contains(&ttl), "{key}: TTL {ttl}");
        let doc: Value = serde_json::from_str(&get(&mut con, key).await.unwrap()).unwrap();
        assert_eq!(doc["status"], "succeeded", "{doc}");
        assert_eq!(doc["tool"], "echo", "{doc}");
    }
}
