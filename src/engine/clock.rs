//! Time as the engine reads it: tokio's clock only, so the same code runs on the wall clock in
//! production and on the lab's paused clock (INV-11).

use tokio::time::Instant;

/// Time as the engine sees it: tokio's clock, offset so that journal times read as wall time
/// in production and as run time in the lab.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    origin: Instant,
    origin_ms: u64,
}

impl Clock {
    pub(crate) fn new(origin_ms: u64) -> Clock {
        Clock {
            origin: Instant::now(),
            origin_ms,
        }
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.origin_ms + self.origin.elapsed().as_millis() as u64
    }
}
