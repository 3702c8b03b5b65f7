//! Wake-up signals: one pub/sub channel, `toolq:wake`, on which whatever
//! gives idle workers something to do at a time they cannot know says so
//! (a delayed set's new earliest job, a schedule's new tick, a queue paused,
//! resumed or resharded), so that idle workers need not poll each lane
//! every second. Scripts publish from Lua (`wake.lua`); the rest here.
//!
//! Pub/sub is at most once: a message sent while a worker's subscription
//! is down is lost. So a worker treats every (re)subscription as a wake-up
//! of every lane, and still polls, slowly. Publishing is best effort: a
//! Redis user without rights to the channel still writes its jobs.

use std::pin::Pin;

use futures::Stream;
use futures::StreamExt;

use super::broker::Broker;
use super::connection::RESPONSE_TIMEOUT;
use super::keys::WAKE_CHANNEL;
use super::{QueueError, Result};

/// What a wake-up is about; the message is `<kind> <key>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// The delayed set named has a new earliest job.
    Delayed,
    /// The schedules set named has a schedule with a new tick.
    Schedules,
    /// The queue of the key named (its paused flag or shard layout) was
    /// paused, resumed or resharded.
    Flags,
}

impl Signal {
    fn as_str(self) -> &'static str {
        match self {
            Signal::Delayed => "delayed",
            Signal::Schedules => "schedules",
            Signal::Flags => "flags",
        }
    }

    /// The signal and key of a message; `None` for anything else (a newer
    /// build's kind is ignored, not an error).
    pub fn parse(message: &str) -> Option<(Signal, &str)> {
        let (kind, key) = message.split_once(' ')?;
        let signal = match kind {
            "delayed" => Signal::Delayed,
            "schedules" => Signal::Schedules,
            "flags" => Signal::Flags,
            _ => return None,
        };
        Some((signal, key))
    }
}

impl Broker {
    /// Publishes a wake-up about `key`. Best effort: a failure is logged at
    /// debug level only (the workers' slow poll covers it).
    pub async fn wake(&self, signal: Signal, key: &str) {
        let message = format!("{} {key}", signal.as_str());
        let sent: Result<i64> = self
            .query("wake", redis::cmd("PUBLISH").arg(WAKE_CHANNEL).arg(message))
            .await;
        if let Err(e) = sent {
            tracing::debug!(error = %e, "could not publish a wake-up");
        }
    }

    /// A subscription to the wake-up channel.
    pub async fn wake_ups(&self) -> Result<Subscription> {
        let pubsub = self.connector.pubsub().await?;
        let (mut sink, stream) = pubsub.split();
        sink.subscribe(WAKE_CHANNEL)
            .await
            .map_err(|e| QueueError::redis("subscribe", e))?;
        let messages = stream.filter_map(|m| async move { m.get_payload::<String>().ok() });
        Ok(Subscription {
            sink,
            messages: Box::pin(messages),
        })
    }
}

/// A subscription to the wake-up channel: its messages' payloads, and a
/// way to check that the connection still carries them.
pub struct Subscription {
    sink: redis::aio::PubSubSink,
    /// Ends when the connection does.
    pub messages: Pin<Box<dyn Stream<Item = String> + Send>>,
}

impl Subscription {
    /// Whether the server still answers on this connection: a connection
    /// cut without a word (a partition, a failover to a host that never
    /// closed it) would otherwise keep the stream open and silent.
    pub async fn ping(&mut self) -> Result<()> {
        let answer = tokio::time::timeout(RESPONSE_TIMEOUT, self.sink.ping::<redis::Value>()).await;
        match answer {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(QueueError::redis("subscribe", e)),
            Err(_) => Err(QueueError::Unavailable {
                op: "subscribe",
                message: format!("no answer to PING within {} s", RESPONSE_TIMEOUT.as_secs()),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Signal;

    #[test]
    fn messages_name_a_kind_and_a_key() {
        assert_eq!(
            Signal::parse("delayed toolq:{a b}:delayed"),
            Some((Signal::Delayed, "toolq:{a b}:delayed"))
        );
        assert_eq!(
            Signal::parse("schedules toolq:{q}:schedules"),
            Some((Signal::Schedules, "toolq:{q}:schedules"))
        );
        assert_eq!(
            Signal::parse("flags toolq:{q}:paused").map(|s| s.0),
            Some(Signal::Flags)
        );
        assert_eq!(Signal::parse("later toolq:{q}:x"), None);
        assert_eq!(Signal::parse("delayed"), None);
    }
}
