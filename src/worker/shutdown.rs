//! Shutdown, passed in rather than global: the binary turns the first
//! SIGTERM/SIGINT into [`Shutdown::begin`] and a second into
//! [`Shutdown::force`]; an embedding program does the same from its own
//! signals.

use tokio_util::sync::CancellationToken;

/// A two-stage stop: quiet (stop fetching, let jobs finish within the grace
/// period), then forced (grace over now).
#[derive(Clone, Default)]
pub struct Shutdown {
    quiet: CancellationToken,
    forced: CancellationToken,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stop fetching; in-flight jobs get the grace period.
    pub fn begin(&self) {
        self.quiet.cancel();
    }

    /// Cut the grace period to zero (implies [`Shutdown::begin`]).
    pub fn force(&self) {
        self.quiet.cancel();
        self.forced.cancel();
    }

    pub fn is_begun(&self) -> bool {
        self.quiet.is_cancelled()
    }

    pub async fn begun(&self) {
        self.quiet.cancelled().await
    }

    pub async fn forced(&self) {
        self.forced.cancelled().await
    }
}
