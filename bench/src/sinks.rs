//! What a client does with each event: count it, or also measure the
//! latency of the timestamp the child printed in it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;

use crate::wire::{self, EventSink, Kind};

/// Counts events by kind; remembers the command id from `init`.
#[derive(Default, Debug)]
pub struct Count {
    /// Logged events: stdout, stderr and the terminal one.
    pub logged: u64,
    pub gaps: u64,
    pub id: Option<String>,
    /// The terminal event's `data:` line, for diagnostics.
    pub terminal: Option<String>,
}

impl EventSink for Count {
    fn on_event(&mut self, event: &[u8]) {
        match wire::kind(event) {
            Kind::Logged => {
                self.logged += 1;
                if wire::is_terminal(event) {
                    self.terminal = Some(String::from_utf8_lossy(event).into_owned());
                }
            }
            Kind::Gap => self.gaps += 1,
            Kind::Init if self.id.is_none() => {
                self.id = wire::text(event).map(|t| String::from_utf8_lossy(t).into_owned());
            }
            Kind::Init | Kind::Other => {}
        }
    }
}

/// Counts, and adds up the length of every stdout text (raw JSON string
/// bytes: equal to the text for lines without escapes).
#[derive(Default, Debug)]
pub struct TextBytes {
    pub count: Count,
    pub text: u64,
}

impl EventSink for TextBytes {
    fn on_event(&mut self, event: &[u8]) {
        self.count.on_event(event);
        if wire::is_stdout(event) {
            self.text += wire::text(event).map_or(0, |t| t.len() as u64);
        }
    }
}

/// Wall-clock microseconds since the epoch (the clock the children print).
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Counts, and for each stdout line holding a microsecond timestamp keeps
/// that timestamp and the receive time minus it. The clock is read once
/// per socket read: every event in one read arrived at the same time.
#[derive(Default, Debug)]
pub struct Latency {
    pub count: Count,
    /// (sent, latency) in µs.
    pub samples: Vec<(u64, u64)>,
    /// Stdout lines that were not a timestamp.
    pub unparsed: u64,
    /// Told of the ticker's `ready` line, if it prints one.
    pub ready: Option<Arc<Ready>>,
    received_us: u64,
}

impl Latency {
    pub fn new(ready: Option<Arc<Ready>>) -> Latency {
        Latency {
            ready,
            ..Latency::default()
        }
    }
}

/// Counts tickers that printed `ready`.
#[derive(Default, Debug)]
pub struct Ready {
    pub count: AtomicUsize,
    pub changed: Notify,
}

impl EventSink for Latency {
    fn on_read(&mut self) {
        self.received_us = now_us();
    }

    fn on_event(&mut self, event: &[u8]) {
        self.count.on_event(event);
        if !wire::is_stdout(event) {
            return;
        }
        let text = wire::text(event);
        if let (Some(ready), Some(crate::tick::READY)) = (&self.ready, text) {
            ready.count.fetch_add(1, Ordering::Relaxed);
            ready.changed.notify_one();
            return;
        }
        match text.and_then(wire::decimal) {
            Some(sent) => self
                .samples
                .push((sent, self.received_us.saturating_sub(sent))),
            None => self.unparsed += 1,
        }
    }
}
