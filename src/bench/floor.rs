//! The latency floor: what starting a job costs on this host with no
//! worker at all. A bare client on its own thread and connection blocks
//! in `BLMOVE` on a queue while a producer enqueues the way the latency
//! rows do, at their rate; enqueue→receipt is the push, Redis woken to
//! serve it, and a sleeping client woken by the reply: what every toolq
//! start pays too, before any of toolq's own work. Read a latency row
//! against the floor measured beside it, not against a fixed figure: on
//! a virtual machine most of an idle start is waking sleeping threads.

use std::time::Duration;

use super::latency::{percentiles, send_at_rate, Percentiles};
use super::BenchError;
use crate::queue::QueueKeys;
use crate::tools::unix_us;

/// How long the bare client waits for the next job before giving up.
const BLOCK_S: f64 = 5.0;

pub async fn run(url: &str, rate: u32, duration: Duration) -> Result<Percentiles, BenchError> {
    let queue = format!("floor-{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let keys = QueueKeys::new(&queue);
    let total = (rate as f64 * duration.as_secs_f64()) as usize;
    let client = redis::Client::open(url).map_err(floor_failed)?;
    let (from, to) = (
        keys.pending.clone(),
        format!("{}:floor-taken", keys.pending),
    );
    let name = queue.clone();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let consumer = std::thread::spawn(move || -> Result<Vec<(Vec<u8>, u64)>, BenchError> {
        let mut con = client.get_connection().map_err(floor_failed)?;
        let _ = ready_tx.send(());
        let mut got = Vec::with_capacity(total);
        let mut outcome = Ok(());
        while got.len() < total {
            let moved: Option<Vec<u8>> = match redis::cmd("BLMOVE")
                .arg(&from)
                .arg(&to)
                .arg("RIGHT")
                .arg("LEFT")
                .arg(BLOCK_S)
                .query(&mut con)
            {
                Ok(m) => m,
                Err(e) => {
                    outcome = Err(floor_failed(e));
                    break;
                }
            };
            match moved {
                Some(payload) => got.push((payload, unix_us())),
                None => {
                    outcome = Err(BenchError::Incomplete(format!(
                        "latency floor: {} of {total} jobs arrived",
                        got.len()
                    )));
                    break;
                }
            }
        }
        // Not a queue anyone serves: nothing of it is left, not even its
        // name, however the run ended (best effort: the bench may be
        // pointed at a Redis of its user's).
        let _: redis::RedisResult<()> = redis::pipe()
            .del(&[&from, &to])
            .srem(crate::queue::keys::QUEUES, &name)
            .query(&mut con);
        outcome.map(|()| got)
    });
    let _ = ready_rx.await;
    // Let the client settle into its wait, as the worker does.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = send_at_rate(url, &queue, None, rate, total).await;
    // Joined before a failed send is reported: the client tidies up once
    // its wait for the next job runs out.
    let received = tokio::task::spawn_blocking(move || consumer.join())
        .await
        .map_err(|e| BenchError::Incomplete(format!("latency floor: {e}")))?
        .map_err(|_| BenchError::Incomplete("latency floor: its client panicked".into()))?;
    let (sent, received) = (sent?, received?);
    let mut delays: Vec<f64> = received
        .iter()
        .filter_map(|(payload, at)| {
            let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
            let sent_at = sent.get(v["id"].as_str()?)?;
            Some(at.saturating_sub(*sent_at) as f64 / 1000.0)
        })
        .collect();
    if delays.len() < total {
        return Err(BenchError::Incomplete(format!(
            "latency floor: {} of {total} jobs matched what was sent",
            delays.len()
        )));
    }
    Ok(percentiles(&mut delays))
}

fn floor_failed(e: redis::RedisError) -> BenchError {
    BenchError::Incomplete(format!("latency floor: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis_server::RedisServer;

    /// Every job the producer sent reaches the bare client and is timed
    /// against its own enqueue, and the floor leaves nothing behind.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn times_every_job_it_was_sent_and_leaves_no_keys() {
        let server = tokio::task::spawn_blocking(RedisServer::start)
            .await
            .expect("the start task ran")
            .expect("a server starts");
        let producer =
            crate::producer::Producer::connect(&server.url(), None).expect("a producer connects");
        let p = run(&server.url(), 400, Duration::from_millis(250))
            .await
            .expect("100 jobs are timed");
        assert!(p.p50 > 0.0, "a push takes some time to arrive: {p:?}");
        assert!(p.p50 <= p.p99 && p.p99 <= p.max, "{p:?}");
        let left: Vec<String> = producer
            .broker()
            .query("test", redis::cmd("KEYS").arg("*floor*"))
            .await
            .expect("KEYS answers");
        assert!(left.is_empty(), "left behind: {left:?}");
        let queues: Vec<String> = producer
            .broker()
            .query(
                "test",
                redis::cmd("SMEMBERS").arg(crate::queue::keys::QUEUES),
            )
            .await
            .expect("SMEMBERS answers");
        assert!(queues.is_empty(), "still listed: {queues:?}");
    }
}
