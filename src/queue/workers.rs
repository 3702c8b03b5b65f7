//! Worker liveness in Redis: registration, heartbeats, finding stale workers
//! and recovering their jobs, and listing the live ones.

use std::collections::HashSet;
use std::time::Duration;

use redis::AsyncCommands;

use super::broker::Broker;
use super::keys::QueueKeys;
use super::scripts;
use super::Result;

impl Broker {
    /// Registers (`register`) or refreshes a heartbeat. `Ok(false)` means this
    /// worker had been declared dead and its jobs were recovered.
    pub async fn heartbeat(&self, keys: &QueueKeys, worker: &str, register: bool) -> Result<bool> {
        let mut c = self.conn().await?;
        let r: i64 = scripts::HEARTBEAT
            .key(&keys.workers)
            .arg(worker)
            .arg(if register { "register" } else { "beat" })
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.fail("heartbeat", e))?;
        Ok(r >= 0)
    }

    /// Stores a worker's registration document, expiring after `ttl`.
    pub async fn set_worker_info(&self, worker: &str, info: &str, ttl: Duration) -> Result<()> {
        let mut c = self.conn().await?;
        c.set_ex::<_, _, ()>(super::keys::worker_info(worker), info, ttl.as_secs().max(1))
            .await
            .map_err(|e| self.fail("register", e))
    }

    /// Removes a worker's registration document. Leaving a queue's worker
    /// set is done by [`Broker::requeue`] with `Requeue::Stop`, in the same
    /// step that puts its jobs back.
    pub async fn forget_worker_info(&self, worker: &str) -> Result<()> {
        let mut c = self.conn().await?;
        c.del::<_, ()>(super::keys::worker_info(worker))
            .await
            .map_err(|e| self.fail("deregister", e))
    }

    /// Workers of a queue whose heartbeat is older than `timeout`.
    pub async fn stale_workers(
        &self,
        keys: &QueueKeys,
        timeout: Duration,
        limit: usize,
    ) -> Result<Vec<String>> {
        Ok(self.late_workers(keys, timeout, limit).await?.0)
    }

    /// [`Broker::stale_workers`], and how long until the next worker's
    /// heartbeat is older than `timeout` (`None`: no other worker), so the
    /// reaper can look again right then. One script, one round trip.
    pub async fn late_workers(
        &self,
        keys: &QueueKeys,
        timeout: Duration,
        limit: usize,
    ) -> Result<(Vec<String>, Option<Duration>)> {
        let mut c = self.conn().await?;
        let (stale, wait): (Vec<String>, i64) = scripts::STALE_WORKERS
            .key(&keys.workers)
            .arg(timeout.as_millis() as u64)
            .arg(limit)
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.fail("reap", e))?;
        let next = u64::try_from(wait).ok().map(Duration::from_millis);
        Ok((stale, next))
    }

    /// Which of `workers` are in the queue's worker set (one round trip).
    pub async fn members(&self, keys: &QueueKeys, workers: &[&str]) -> Result<Vec<String>> {
        if workers.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for w in workers {
            pipe.zscore(&keys.workers, *w);
        }
        let scores: Vec<Option<f64>> = self.query_pipe("reap", &pipe).await?;
        Ok(workers
            .iter()
            .zip(scores)
            .filter(|(_, s)| s.is_some())
            .map(|(w, _)| (*w).to_owned())
            .collect())
    }

    /// [`Broker::late_workers`] over the whole fleet: the tool catalog's
    /// set, which every worker's heartbeat scores (Redis's clock) whatever
    /// its queues, so one read finds a late worker of any queue. Only
    /// heartbeats younger than `window` count: the set keeps gone workers
    /// for a day.
    pub async fn late_in_fleet(
        &self,
        timeout: Duration,
        window: Duration,
        limit: usize,
    ) -> Result<(Vec<String>, Option<Duration>)> {
        let mut c = self.conn().await?;
        let (stale, wait): (Vec<String>, i64) = scripts::STALE_WORKERS
            .key(super::keys::CATALOG_WORKERS)
            .arg(timeout.as_millis() as u64)
            .arg(limit)
            .arg(window.as_millis() as u64)
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.fail("reap", e))?;
        let next = u64::try_from(wait).ok().map(Duration::from_millis);
        Ok((stale, next))
    }

    /// The workers with at least one connection open to Redis, by the names
    /// their connections carry (`CLIENT LIST TYPE normal`; see
    /// [`super::keys::connection_name`]). Redis drops a client the moment
    /// its socket closes, so a killed worker leaves this set at once. The
    /// reply is a line of ~300 bytes per client: callers ask only when some
    /// worker's heartbeat is already late, not every round.
    pub async fn connected_workers(&self) -> Result<HashSet<String>> {
        let mut c = self.conn().await?;
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .arg("TYPE")
            .arg("normal")
            .query_async(&mut c)
            .await
            .map_err(|e| self.fail("reap", e))?;
        Ok(connection_workers(&list))
    }

    /// Moves a dead worker's jobs back to the front of pending (or buries
    /// those recovered more than `max_recoveries` times, into a dead set
    /// trimmed to `caps`). Returns how many
    /// were recovered and the payloads buried (the caller writes their
    /// results), or `None` when the worker turned out alive.
    pub async fn recover(
        &self,
        keys: &QueueKeys,
        dead_worker: &str,
        timeout: Duration,
        max_recoveries: u32,
        caps: super::DeadCaps,
    ) -> Result<Option<(u64, Vec<String>)>> {
        let mut c = self.conn().await?;
        let (recovered, buried): (i64, Vec<String>) = scripts::RECOVER
            .key(&keys.workers)
            .key(keys.active(dead_worker))
            // Workers before the stop-safe wait moved jobs there.
            .key(keys.landing(dead_worker))
            .key(&keys.pending)
            .key(&keys.dead)
            .key(&keys.stats)
            .arg(dead_worker)
            .arg(timeout.as_millis() as u64)
            .arg(max_recoveries)
            .arg(caps.max_jobs)
            .arg(caps.max_age.as_millis() as u64)
            .arg(caps.max_bytes)
            .arg(&keys.tag)
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.fail("reap", e))?;
        if recovered < 0 {
            return Ok(None);
        }
        Ok(Some((recovered as u64, buried)))
    }

    /// Workers whose heartbeat is within `timeout`, by Redis's clock.
    pub async fn live_workers(&self, keys: &QueueKeys, timeout: Duration) -> Result<Vec<String>> {
        let now = self.time_ms().await?;
        let since = now.saturating_sub(timeout.as_millis() as u64);
        let mut c = self.conn().await?;
        c.zrangebyscore(&keys.workers, since, "+inf")
            .await
            .map_err(|e| self.fail("workers", e))
    }

    /// For each of `workers`: its last heartbeat on this queue (Redis ms;
    /// `None` once it left) and how many of the queue's jobs it holds now.
    /// One round trip, for the operator console.
    pub async fn worker_activity(
        &self,
        keys: &QueueKeys,
        workers: &[String],
    ) -> Result<Vec<(Option<u64>, u64)>> {
        if workers.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for w in workers {
            // The active hash counts its jobs (it stores batches).
            pipe.zscore(&keys.workers, w)
                .hget(keys.active(w), "jobs")
                .llen(keys.landing(w));
        }
        let mut c = self.conn().await?;
        // Three replies per worker: score, held count, landing length.
        let flat: Vec<Option<f64>> = pipe
            .query_async(&mut c)
            .await
            .map_err(|e| self.fail("workers", e))?;
        Ok(flat
            .chunks(3)
            .map(|r| {
                let n = |i: usize| r.get(i).copied().flatten().unwrap_or(0.0) as u64;
                (r[0].map(|b| b as u64), n(1) + n(2))
            })
            .collect())
    }

    /// A worker's registration document, if it is still there.
    pub async fn worker_info(&self, worker: &str) -> Result<Option<String>> {
        let mut c = self.conn().await?;
        c.get(super::keys::worker_info(worker))
            .await
            .map_err(|e| self.fail("workers", e))
    }
}

/// The worker ids named by the connections of a `CLIENT LIST` reply.
fn connection_workers(list: &str) -> HashSet<String> {
    list.lines()
        .filter_map(|line| {
            let name = line.split(' ').find_map(|f| f.strip_prefix("name="))?;
            super::keys::worker_of_connection(name).map(str::to_owned)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::connection_workers;

    #[test]
    fn client_list_lines_give_the_workers_of_named_connections() {
        let list = "id=3 addr=127.0.0.1:50000 laddr=127.0.0.1:6379 fd=8 name=toolq:w:host-12-ab12cd age=3 idle=0 cmd=evalsha user=worker\n\
                    id=4 addr=127.0.0.1:50001 laddr=127.0.0.1:6379 fd=9 name= age=1 idle=0 cmd=client|list user=default\n\
                    id=5 addr=127.0.0.1:50002 laddr=127.0.0.1:6379 fd=10 name=toolq:w:host-12-ab12cd age=3 idle=1 cmd=blmove\n\
                    id=6 addr=127.0.0.1:50003 laddr=127.0.0.1:6379 fd=11 name=other age=3 idle=1 cmd=get\n";
        let workers = connection_workers(list);
        assert_eq!(workers.len(), 1, "{workers:?}");
        assert!(workers.contains("host-12-ab12cd"));
        assert!(connection_workers("").is_empty());
    }
}
