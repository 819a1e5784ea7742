//! Idempotency keys (`Idempotency-Key` on the routes that start a
//! command): which command a client-chosen key started, and what was asked
//! for, so a retry after a cut before `init` runs nothing twice.
//!
//! Each key has a slot of its own behind an async lock: the request that
//! finds it empty holds it while it starts the command, so concurrent
//! first uses of one key wait for that start instead of running again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// The longest key the contract allows.
pub const MAX_KEY_BYTES: usize = 255;

/// A key and what its first use asked for: the route and the body, as
/// parsed JSON (so key order and spacing do not make a retry "different").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyUse {
    pub key: String,
    pub request: serde_json::Value,
}

/// The command a key started.
#[derive(Clone, Debug)]
pub struct Claimed {
    pub id: String,
    pub request: serde_json::Value,
}

pub type Slot = Arc<tokio::sync::Mutex<Option<Claimed>>>;

#[derive(Default)]
pub struct Keys {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    slots: HashMap<String, Slot>,
    /// Command id -> its key, to forget the key with the command's
    /// tombstone (never before it: a late retry must find it).
    by_id: HashMap<String, String>,
}

/// Whether `key` is what the contract allows: 1 to 255 visible ASCII
/// characters.
pub fn valid(key: &[u8]) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY_BYTES && key.iter().all(|b| b.is_ascii_graphic())
}

impl Keys {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The slot of `key`, made empty if it has none yet.
    pub fn slot(&self, key: &str) -> Slot {
        Arc::clone(self.lock().slots.entry(key.to_string()).or_default())
    }

    /// The first use of `key` started command `claimed.id`.
    pub fn claim(&self, key: &str, slot: &mut Option<Claimed>, claimed: Claimed) {
        self.lock()
            .by_id
            .insert(claimed.id.clone(), key.to_string());
        *slot = Some(claimed);
    }

    /// The first use of `key` started nothing: a retry may try again, and
    /// the slot does not stay behind. Call with the slot's lock released.
    pub fn release(&self, key: &str, slot: &Slot) {
        let mut inner = self.lock();
        let unclaimed = inner
            .slots
            .get(key)
            .is_some_and(|s| Arc::ptr_eq(s, slot) && s.try_lock().is_ok_and(|s| s.is_none()));
        if unclaimed {
            inner.slots.remove(key);
        }
    }

    /// A key a previous host's command was started with (see `recovery`).
    pub fn restore(&self, used: &KeyUse, id: &str) {
        let claimed = Claimed {
            id: id.to_string(),
            request: used.request.clone(),
        };
        let mut inner = self.lock();
        inner.slots.insert(
            used.key.clone(),
            Arc::new(tokio::sync::Mutex::new(Some(claimed))),
        );
        inner.by_id.insert(id.to_string(), used.key.clone());
    }

    /// The command `id` is forgotten (its tombstone went): so is its key.
    pub fn forget(&self, id: &str) {
        let mut inner = self.lock();
        if let Some(key) = inner.by_id.remove(id) {
            inner.slots.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_one_to_255_visible_ascii_characters() {
        assert!(valid(b"a"));
        assert!(valid(&[b'x'; 255]));
        assert!(!valid(b""));
        assert!(!valid(&[b'x'; 256]));
        assert!(!valid(b"a b"));
        assert!(!valid(b"\x7f"));
        assert!(!valid("é".as_bytes()));
    }
}
