//! 64-bit ID generation in the application, because the three backends disagree on sequences
//! (CockroachDB's SERIAL is `unique_rowid()`, SQLite has none) and an app-side generator works
//! the same on all of them.
//!
//! Layout (Snowflake-style): 41 bits of milliseconds since 2020-01-01, 10 bits of node, 12 bits of
//! sequence. IDs sort by creation time (the watch stream relies on that) and are above 2^53, like
//! CockroachDB's, so any client that rounds IDs through f64 fails early in tests.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

const EPOCH_MS: u64 = 1_577_836_800_000;
const NODE_BITS: u32 = 10;
const SEQ_BITS: u32 = 12;

pub struct IdGen {
    node: u64,
    state: Mutex<(u64, u64)>,
}

impl IdGen {
    /// A random node number: two API replicas share the table and must not collide.
    pub fn new() -> IdGen {
        IdGen {
            node: rand::random::<u64>() & ((1 << NODE_BITS) - 1),
            state: Mutex::new((0, 0)),
        }
    }

    pub fn next(&self) -> i64 {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut now = now_ms();
        // Never go backwards, even if the wall clock does.
        if now < st.0 {
            now = st.0;
        }
        if now == st.0 {
            st.1 += 1;
            if st.1 >= (1 << SEQ_BITS) {
                // Sequence exhausted in this millisecond: borrow the next one.
                now += 1;
                st.1 = 0;
            }
        } else {
            st.1 = 0;
        }
        st.0 = now;
        (((now - EPOCH_MS) << (NODE_BITS + SEQ_BITS)) | (self.node << SEQ_BITS) | st.1) as i64
    }
}

impl Default for IdGen {
    fn default() -> Self {
        Self::new()
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(EPOCH_MS)
}

/// The smallest ID that could have been generated at `ms` (for time-window queries on IDs).
pub fn floor_for_ms(ms: u64) -> i64 {
    (ms.saturating_sub(EPOCH_MS) << (NODE_BITS + SEQ_BITS)) as i64
}

#[cfg(test)]
mod tests {
    #[test]
    fn increasing_and_large() {
        let g = super::IdGen::new();
        let mut last = 0;
        for _ in 0..10_000 {
            let id = g.next();
            assert!(id > last);
            assert!(id > (1i64 << 53));
            last = id;
        }
    }
}
