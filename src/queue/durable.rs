//! Writes that wait for replicas (`wait_replicas`): `WAIT` goes in the same
//! pipeline as the write, on the same connection, so it covers exactly that
//! write, and success is reported only once enough replicas have it.
//! Replication is otherwise asynchronous: a master that fails right after
//! answering can take the write with it.

use super::cluster::RedisConn;
use redis::{FromRedisValue, ScriptInvocation};

use super::broker::Broker;
use super::connection::WaitReplicas;
use super::{QueueError, Result};

impl Broker {
    /// Runs a script that writes; with `wait_replicas` set, `WAIT` follows
    /// it in one round trip. A pipelined `EVALSHA` does not load a script
    /// Redis lacks (a restart, a promoted replica), so `NOSCRIPT` loads it
    /// and sends the pair again: the failed call wrote nothing.
    pub(super) async fn invoke_durable<T: FromRedisValue>(
        &self,
        op: &'static str,
        inv: &ScriptInvocation<'_>,
    ) -> Result<T> {
        let mut c = self.conn().await?;
        let Some(wait) = self.target().wait_replicas() else {
            return inv.invoke_async(&mut c).await.map_err(|e| self.fail(op, e));
        };
        let mut pipe = redis::pipe();
        pipe.invoke_script(inv);
        wait_cmd(&mut pipe, wait);
        let replied: redis::RedisResult<(T, u64)> = match pipe.query_async(&mut c).await {
            Err(e) if is_no_script(&e) => {
                inv.load_async(&mut c).await.map_err(|e| self.fail(op, e))?;
                pipe.query_async(&mut c).await
            }
            other => other,
        };
        let (value, reached) = replied.map_err(|e| self.fail(op, e))?;
        durable(op, wait, reached)?;
        Ok(value)
    }

    /// Sends `pipe` and returns each command's reply; with `wait_replicas`
    /// set, `WAIT` is sent last and its count checked. The pipeline keeps
    /// each command's error in its reply (`ignore_errors`).
    pub(super) async fn pipe_durable(
        &self,
        op: &'static str,
        pipe: &mut redis::Pipeline,
    ) -> Result<Vec<redis::Value>> {
        let Some(wait) = self.target().wait_replicas() else {
            return self.query_pipe(op, pipe).await;
        };
        wait_cmd(pipe, wait);
        let mut c: RedisConn = self.conn().await?;
        let mut replies: Vec<redis::Value> = pipe
            .query_async(&mut c)
            .await
            .map_err(|e| self.fail(op, e))?;
        let reached = match replies.pop() {
            Some(redis::Value::Int(n)) => u64::try_from(n).unwrap_or(0),
            Some(redis::Value::ServerError(e)) => return Err(self.fail(op, e.into())),
            other => {
                return Err(QueueError::Protocol {
                    op,
                    message: format!("WAIT answered {other:?}"),
                })
            }
        };
        durable(op, wait, reached)?;
        Ok(replies)
    }
}

fn wait_cmd(pipe: &mut redis::Pipeline, wait: WaitReplicas) {
    pipe.cmd("WAIT")
        .arg(wait.replicas)
        .arg(wait.timeout.as_millis() as u64);
}

pub(super) fn is_no_script(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
}

/// Fewer replicas than asked for is [`QueueError::NotDurable`].
fn durable(op: &'static str, wait: WaitReplicas, reached: u64) -> Result<()> {
    if reached >= u64::from(wait.replicas) {
        return Ok(());
    }
    Err(QueueError::NotDurable {
        op,
        reached,
        wanted: wait.replicas,
        timeout_ms: wait.timeout.as_millis() as u64,
    })
}
