//! The newest events of the log, shared by every live stream (`streams`): read from the store
//! once per commit and serialized once, however many streams follow.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::ids::SessionId;
use crate::store::{EventRecord, Store, StoreError};

/// Events read from the log per store call.
pub const PAGE: u32 = 256;

/// One event as a stream sends it: `id:` = `sequence`, `event:` = `event_type`, `data:` =
/// `envelope`, the contract's `{id, type, timestamp, data}` as one line of JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEvent {
    pub sequence: i64,
    pub event_type: String,
    pub envelope: String,
}

impl From<EventRecord> for StreamEvent {
    fn from(record: EventRecord) -> Self {
        StreamEvent {
            sequence: record.seq,
            envelope: super::envelope(&record).to_string(),
            event_type: record.event_type,
        }
    }
}

/// Events the shared tail keeps; a stream further behind reads the store.
const TAIL_CAPACITY: usize = 1024;

/// The newest events of the log, read and serialized once for every live stream: with N
/// subscribers a commit costs one store read, not N, and the store's readers stay free for the
/// protocol endpoints. It is filled only from the log, in order, and never holds anything the
/// log does not; a stream whose position is older than what it holds reads the log itself.
pub struct LogTail {
    state: tokio::sync::Mutex<TailState>,
}

struct TailState {
    /// Every event with `start < sequence <= read_through` is in `events`, in order.
    start: i64,
    read_through: i64,
    events: VecDeque<(Option<SessionId>, Arc<StreamEvent>)>,
}

impl LogTail {
    /// An empty tail that starts at `newest`, the store's newest sequence.
    pub fn new(newest: i64) -> Self {
        LogTail {
            state: tokio::sync::Mutex::new(TailState {
                start: newest,
                read_through: newest,
                events: VecDeque::new(),
            }),
        }
    }

    /// Up to a page of the events of `session` (or all) after `after`, and the sequence
    /// through which that answer is complete; `None` when `after` is older than the tail.
    /// When the tail is behind `newest` it catches up from the store first; one caller
    /// reads while the others wait for its result.
    pub async fn read(
        &self,
        store: &dyn Store,
        session: Option<SessionId>,
        after: i64,
        newest: i64,
    ) -> Result<Option<(Vec<Arc<StreamEvent>>, i64)>, StoreError> {
        let mut state = self.state.lock().await;
        if after < state.start {
            return Ok(None);
        }
        if state.read_through < newest {
            let mut read = 0;
            loop {
                let end = state.events.back().map_or(state.start, |(_, e)| e.sequence);
                let page = store.events(None, end, PAGE).await?;
                let full = page.len() == PAGE as usize;
                read += page.len();
                for record in page {
                    state
                        .events
                        .push_back((record.session_id, Arc::new(record.into())));
                }
                let end = state.events.back().map_or(state.start, |(_, e)| e.sequence);
                if !full {
                    // `newest` was announced after its commit, so this read saw it.
                    state.read_through = newest.max(end);
                    break;
                }
                state.read_through = end;
                if read >= TAIL_CAPACITY / 2 {
                    break;
                }
            }
            while state.events.len() > TAIL_CAPACITY {
                if let Some((_, dropped)) = state.events.pop_front() {
                    state.start = dropped.sequence;
                }
            }
            if after < state.start {
                return Ok(None);
            }
        }
        let first = state.events.partition_point(|(_, e)| e.sequence <= after);
        let mut through = state.read_through;
        let mut events = Vec::new();
        for (owner, event) in state.events.range(first..) {
            if session.is_none() || *owner == session {
                events.push(event.clone());
                if events.len() == PAGE as usize {
                    through = event.sequence;
                    break;
                }
            }
        }
        Ok(Some((events, through)))
    }
}
