//! What a queue's workers share so that each one's background work stays
//! constant as the fleet grows: turns at fleet-wide chores (one worker at a
//! time reads every worker's held-job count for the gauges, or lists the
//! connections), and the gauge readings the turn's holder leaves for the
//! others. Before, every worker read every other worker's count every 2 s:
//! the fleet's cost grew with the square of its size.

use std::time::Duration;

use super::broker::Broker;
use super::keys::QueueKeys;
use super::scripts;
use super::Result;

/// A queue's gauges as the fleet last read them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gauges {
    pub pending: u64,
    pub active: u64,
    pub delayed: u64,
    pub dead: u64,
    /// Workers whose heartbeat is fresh.
    pub live: u64,
    /// When they were read (Redis ms).
    pub at: u64,
}

impl Gauges {
    /// The readings in a fleet hash's flat field/value list, if complete.
    fn from_flat(flat: &[String]) -> Option<Gauges> {
        let field = |name: &str| {
            flat.chunks(2)
                .find(|kv| kv[0] == name)
                .and_then(|kv| kv.get(1))
                .and_then(|v| v.parse::<u64>().ok())
        };
        Some(Gauges {
            pending: field("pending")?,
            active: field("active")?,
            delayed: field("delayed")?,
            dead: field("dead")?,
            live: field("live")?,
            at: field("at")?,
        })
    }
}

/// The answer to [`Broker::take_turn`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Turn {
    /// This worker does the chore until the turn ends.
    pub mine: bool,
    /// The gauges stored by the last turn at reading them, if any.
    pub gauges: Option<Gauges>,
}

impl Broker {
    /// Takes `worker`'s turn at `chore` on this queue for `turn`, unless
    /// another worker's turn is running; the fleet hash is kept `keep` after.
    pub async fn take_turn(
        &self,
        keys: &QueueKeys,
        chore: &str,
        worker: &str,
        turn: Duration,
        keep: Duration,
    ) -> Result<Turn> {
        let mut c = self.conn().await?;
        let (mine, flat): (i64, Vec<String>) = scripts::TURN
            .key(&keys.fleet)
            .arg(chore)
            .arg(worker)
            .arg(turn.as_millis() as u64)
            .arg(keep.as_millis() as u64)
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.fail("turn", e))?;
        Ok(Turn {
            mine: mine == 1,
            gauges: Gauges::from_flat(&flat),
        })
    }

    /// Stores the gauges this worker read in its turn; returns them with
    /// their time.
    pub async fn save_gauges(&self, keys: &QueueKeys, g: Gauges, keep: Duration) -> Result<Gauges> {
        let mut c = self.conn().await?;
        let at: u64 = scripts::SAVE_GAUGES
            .key(&keys.fleet)
            .arg(g.pending)
            .arg(g.active)
            .arg(g.delayed)
            .arg(g.dead)
            .arg(g.live)
            .arg(keep.as_millis() as u64)
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.fail("gauges", e))?;
        Ok(Gauges { at, ..g })
    }
}

#[cfg(test)]
mod tests {
    use super::Gauges;

    #[test]
    fn gauges_are_read_only_when_complete() {
        let flat: Vec<String> = [
            "gauges", "1:w", "pending", "3", "active", "2", "delayed", "1", "dead", "0", "live",
            "4", "at", "99",
        ]
        .map(String::from)
        .to_vec();
        let g = Gauges::from_flat(&flat).unwrap();
        assert_eq!((g.pending, g.active, g.live, g.at), (3, 2, 4, 99));
        assert_eq!(Gauges::from_flat(&flat[..6]), None);
        assert_eq!(Gauges::from_flat(&[]), None);
    }
}
