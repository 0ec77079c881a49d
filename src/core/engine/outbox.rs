//! The engine's output queue and counters: every datagram, kernel operation, probe,
//! announcement and event leaves through here, and is counted here.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;

use super::{Action, Event, MAX_QUEUED_ACTIONS, Stats};
use crate::core::wire::{self, Body, WireError};

/// Adds one to counter `k` of `m`.
pub(super) fn bump(m: &mut BTreeMap<&'static str, u64>, k: &'static str) {
    *m.entry(k).or_default() += 1;
}

/// Queued actions and the counters.
#[derive(Debug)]
pub(super) struct Outbox {
    cluster_id: u64,
    actions: VecDeque<Action>,
    /// Counters (exported by the metrics layer).
    pub stats: Stats,
}

impl Outbox {
    pub fn new(cluster_id: u64) -> Outbox {
        Outbox {
            cluster_id,
            actions: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    pub fn pop(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Queues `a` (dropped beyond [`MAX_QUEUED_ACTIONS`]: a bound, not a target).
    pub fn emit(&mut self, a: Action) {
        if self.actions.len() < MAX_QUEUED_ACTIONS {
            self.actions.push_back(a);
        }
    }

    pub fn event(&mut self, e: Event) {
        self.emit(Action::Event(e));
    }

    pub fn warn(&mut self, msg: String) {
        self.event(Event::Warning(msg));
    }

    /// Counts a dropped input by cause.
    pub fn drop(&mut self, cause: &'static str) {
        bump(&mut self.stats.drops, cause);
    }

    /// Encodes and sends `body` to `to`.
    pub fn send(&mut self, to: SocketAddr, body: &Body) {
        let encoded = wire::encode(self.cluster_id, body);
        self.send_encoded(to, encoded);
    }

    /// Sends an encoded datagram, or counts why it could not be encoded.
    pub fn send_encoded(&mut self, to: SocketAddr, encoded: Result<Vec<u8>, WireError>) {
        match encoded {
            Ok(payload) => {
                self.stats.datagrams_out += 1;
                self.stats.bytes_out += payload.len() as u64;
                self.emit(Action::Send { to, payload });
            }
            Err(e) => self.drop(if e == WireError::Oversize {
                "send_oversize"
            } else {
                "send_error"
            }),
        }
    }
}
