//! Time is injected so that expiry can be tested by moving a clock instead of sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Millis;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        let now = time::OffsetDateTime::now_utc();
        (now.unix_timestamp_nanos() / 1_000_000) as Millis
    }
}

/// A test clock, shared by cloning: frozen (it moves only when told to) or running (real time
/// plus whatever it was told to skip).
#[derive(Clone)]
pub struct ManualClock {
    offset: Arc<AtomicI64>,
    frozen_at: Option<Millis>,
}

impl ManualClock {
    pub fn starting_now() -> Self {
        ManualClock {
            offset: Arc::new(AtomicI64::new(0)),
            frozen_at: Some(SystemClock.now()),
        }
    }

    /// Follows real time, so that scheduled work (webhook retries) comes due by itself.
    pub fn running() -> Self {
        ManualClock {
            offset: Arc::new(AtomicI64::new(0)),
            frozen_at: None,
        }
    }

    pub fn advance_seconds(&self, seconds: i64) {
        self.offset.fetch_add(seconds * 1000, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Millis {
        self.frozen_at.unwrap_or_else(|| SystemClock.now()) + self.offset.load(Ordering::SeqCst)
    }
}
