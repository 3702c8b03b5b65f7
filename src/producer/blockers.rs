//! Connections for blocking waits, kept between waiters. A waiter blocks
//! on a connection of its own (a blocking command holds its connection),
//! and opening one per [`super::Producer::enqueue_and_wait`] cost a TCP
//! (and TLS and AUTH) handshake per call, and a socket in TIME_WAIT after.

use std::sync::Mutex;
use std::time::Duration;

use crate::queue::{Broker, RedisConn, Result};

/// Idle connections kept at most; more waiters at once open their own and
/// close them when they end.
const KEEP: usize = 64;

#[derive(Default)]
pub(super) struct Blockers {
    idle: Mutex<Vec<RedisConn>>,
}

impl Blockers {
    /// An idle connection, or a new one; `true` when it was kept from an
    /// earlier waiter (and may have gone stale since).
    pub async fn take(&self, broker: &Broker, block: Duration) -> Result<(RedisConn, bool)> {
        let kept = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        match kept {
            Some(conn) => Ok((conn, true)),
            None => Ok((broker.dedicated(block).await?, false)),
        }
    }

    /// Drops every kept connection: one of them failed, so Redis closed
    /// them or failed over, and each would fail in turn (a hung one only
    /// after its response timeout).
    pub fn forget(&self) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }

    /// Keeps `conn` for the next waiter. Only a connection with no command
    /// in flight comes back: one dropped mid-`BLPOP` would make the next
    /// waiter's first command wait behind it.
    pub fn give_back(&self, conn: RedisConn) {
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < KEEP {
                idle.push(conn);
            }
        }
    }
}
