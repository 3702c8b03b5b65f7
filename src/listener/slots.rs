//! The open connections of one listener, each with whether it is answering
//! a request and since when it is idle: what the cap judges a newcomer by,
//! and what each connection's timers read.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How long a connection must have been idle before a newcomer may close
/// it: a client's request follows its handshake within a round trip, so a
/// connection idle this long is not about to send one, while a burst of
/// fresh connections is not torn down before its requests arrive.
pub const EVICT_AFTER: Duration = Duration::from_millis(100);

/// Whether a connection is answering a request, since when it is idle, and
/// since when it has been sending a request header (milliseconds since the
/// listener's epoch; 0 = not sending one).
pub(super) struct SlotState {
    epoch: Instant,
    busy: AtomicBool,
    idle_since_ms: AtomicU64,
    header_since_ms: AtomicU64,
    /// Wakes the connection's timers when a header starts: they may be
    /// sleeping towards the (later) idle deadline.
    header_started: Notify,
}

impl SlotState {
    fn new(epoch: Instant) -> Self {
        let s = SlotState {
            epoch,
            busy: AtomicBool::new(false),
            idle_since_ms: AtomicU64::new(0),
            header_since_ms: AtomicU64::new(0),
            header_started: Notify::new(),
        };
        s.touch();
        s
    }

    /// Milliseconds since the epoch, never 0 (0 means "unset").
    pub(super) fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    fn touch(&self) {
        self.idle_since_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Bytes arrived: between requests, they start the next one's header.
    pub(super) fn received(&self) {
        if !self.busy.load(Ordering::Relaxed) {
            let now = self.now_ms();
            let started = self
                .header_since_ms
                .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok();
            if started {
                self.header_started.notify_one();
            }
        }
    }

    /// Resolves when a header starts (at once if one has started since
    /// the last call).
    pub(super) async fn header_started(&self) {
        self.header_started.notified().await;
    }

    /// How long it has been idle; `None` while it answers a request.
    pub(super) fn idle_for(&self, now_ms: u64) -> Option<u64> {
        if self.busy.load(Ordering::Relaxed) {
            return None;
        }
        Some(now_ms.saturating_sub(self.idle_since_ms.load(Ordering::Relaxed)))
    }

    /// What the connection is doing now, for its timers.
    pub(super) fn phase(&self) -> Phase {
        if self.busy.load(Ordering::Relaxed) {
            return Phase::Busy;
        }
        match self.header_since_ms.load(Ordering::Relaxed) {
            0 => Phase::Idle(self.idle_since_ms.load(Ordering::Relaxed)),
            since => Phase::Header(since),
        }
    }
}

/// See [`SlotState::phase`]; times in milliseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Answering a request (its response body not yet all sent).
    Busy,
    /// No request since this time: opened, or the last answer sent.
    Idle(u64),
    /// A request header started arriving at this time.
    Header(u64),
}

/// Marks a connection as answering a request for as long as it lives (the
/// response body included, so a streamed answer is never cut for being
/// idle); its idle time starts again when it is dropped.
pub(super) struct Busy(Arc<SlotState>);

impl Busy {
    pub(super) fn enter(state: Arc<SlotState>) -> Self {
        state.busy.store(true, Ordering::Relaxed);
        state.header_since_ms.store(0, Ordering::Relaxed);
        Busy(state)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.busy.store(false, Ordering::Relaxed);
    }
}

/// One open connection's place in [`Slots`].
pub(super) struct Slot {
    pub(super) id: u64,
    pub(super) state: Arc<SlotState>,
    /// Cancelled to close the connection for a newer one.
    pub(super) evict: CancellationToken,
}

/// What [`Slots`] keeps of each open connection, by id (ids grow with each
/// accept): its state and how to close it.
type OpenSlots = BTreeMap<u64, (Arc<SlotState>, CancellationToken)>;

/// The open connections, and the id the next one gets.
pub(super) struct Slots {
    cap: usize,
    epoch: Instant,
    open: Mutex<(u64, OpenSlots)>,
}

impl Slots {
    pub(super) fn new(cap: usize) -> Self {
        Slots {
            cap,
            epoch: Instant::now(),
            open: Mutex::new((0, BTreeMap::new())),
        }
    }

    /// A slot for a new connection: a free one, or that of the connection
    /// idle longest (at least [`EVICT_AFTER`]), which is closed; `None`
    /// while every connection answers a request or is too fresh to judge.
    pub(super) fn admit(&self) -> Option<Slot> {
        let mut guard = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let (next, open) = &mut *guard;
        if open.len() >= self.cap && !self.evict_locked(open) {
            return None;
        }
        *next += 1;
        let slot = Slot {
            id: *next,
            state: Arc::new(SlotState::new(self.epoch)),
            evict: CancellationToken::new(),
        };
        open.insert(slot.id, (slot.state.clone(), slot.evict.clone()));
        Some(slot)
    }

    /// Closes the connection idle longest (at least [`EVICT_AFTER`]);
    /// false when there is none.
    pub(super) fn evict_idle(&self) -> bool {
        let mut guard = self.open.lock().unwrap_or_else(|p| p.into_inner());
        self.evict_locked(&mut guard.1)
    }

    fn evict_locked(&self, open: &mut OpenSlots) -> bool {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let floor = u64::try_from(EVICT_AFTER.as_millis()).unwrap_or(u64::MAX);
        let victim = open
            .iter()
            .filter_map(|(&id, (state, _))| Some((id, state.idle_for(now)?)))
            .filter(|&(_, idle)| idle >= floor)
            .max_by_key(|&(_, idle)| idle)
            .map(|(id, _)| id);
        match victim.and_then(|id| open.remove(&id)) {
            Some((_, evict)) => {
                evict.cancel();
                true
            }
            None => false,
        }
    }

    pub(super) fn release(&self, id: u64) {
        let mut guard = self.open.lock().unwrap_or_else(|p| p.into_inner());
        guard.1.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newcomer_closes_the_connection_idle_longest_never_a_busy_or_fresh_one() {
        let slots = Slots::new(2);
        let (a, b) = (slots.admit().unwrap(), slots.admit().unwrap());
        // Both fresh: the newcomer must wait.
        assert!(slots.admit().is_none());
        std::thread::sleep(EVICT_AFTER + Duration::from_millis(20));
        let busy = Busy::enter(a.state.clone());
        let c = slots.admit().expect("b has been idle long enough");
        assert!(b.evict.is_cancelled() && !a.evict.is_cancelled());
        // a answers a request, c is fresh: nobody to close.
        assert!(slots.admit().is_none());
        drop(busy);
        slots.release(c.id);
        assert!(slots.admit().is_some(), "a released slot is free");
    }

    #[test]
    fn bytes_between_requests_start_a_header_and_a_request_ends_it() {
        let slots = Slots::new(1);
        let s = slots.admit().unwrap().state;
        assert!(matches!(s.phase(), Phase::Idle(_)));
        s.received();
        let Phase::Header(since) = s.phase() else {
            panic!("{:?}", s.phase())
        };
        s.received();
        assert_eq!(s.phase(), Phase::Header(since), "the first byte counts");
        let busy = Busy::enter(s.clone());
        s.received();
        assert_eq!(s.phase(), Phase::Busy, "a body's bytes start no header");
        drop(busy);
        assert!(matches!(s.phase(), Phase::Idle(_)));
    }
}
