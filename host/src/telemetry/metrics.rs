//! What the host counts, for `/metrics` on the metrics listener and for
//! OTLP. Every name and label is what a dashboard uses: keep them.
//!
//! Counting on the hot path is an atomic add on a handle resolved once
//! (per stream, per reason, per policy call), never a map lookup or a
//! lock per event. Values the host already knows (commands running and
//! retained, disk used and budget) are read when scraped, not counted.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::histogram::Histogram;

/// Why a command ended: the terminal event's `reason`s.
pub const END_REASONS: &[&str] = &[
    "exit",
    "signal",
    "timeout",
    "interrupted",
    "host-shutdown",
    "host-restarted",
    "spawn-failed",
];

/// The policy calls that are timed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    Append,
    Finish,
    Read,
    Attach,
    Detach,
    Reopen,
}

impl Call {
    const ALL: [Call; 6] = [
        Call::Append,
        Call::Finish,
        Call::Read,
        Call::Attach,
        Call::Detach,
        Call::Reopen,
    ];

    fn name(self) -> &'static str {
        match self {
            Call::Append => "append",
            Call::Finish => "finish",
            Call::Read => "read",
            Call::Attach => "attach",
            Call::Detach => "detach",
            Call::Reopen => "reopen",
        }
    }
}

/// Most distinct gap reasons counted by name; a policy chooses them, so
/// one that invents a new word per gap must not grow the series for ever.
const MAX_GAP_REASONS: usize = 16;
/// The label the rest share.
const OTHER_REASON: &str = "other";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StreamLabel {
    stream: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabel {
    call: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    status: u16,
}

/// Values read when scraped.
#[derive(Clone, Copy, Debug, Default)]
pub struct Snapshot {
    /// Commands whose process has not ended.
    pub running: u64,
    /// Finished commands whose logs are still kept.
    pub retained: u64,
    /// Bytes the logs take on disk.
    pub disk_used: u64,
    /// The host's disk budget.
    pub disk_budget: u64,
}

/// The host's metrics. One per host; shared by reference.
pub struct Metrics {
    registry: Registry,
    started: Counter,
    ended: Vec<Counter>,
    ended_family: Family<ReasonLabel, Counter>,
    running: Gauge,
    retained: Gauge,
    /// `[stdout, stderr]`.
    events: [Counter; 2],
    bytes: [Counter; 2],
    readers: Gauge,
    resumes: Counter,
    gaps: Family<ReasonLabel, Counter>,
    gap_events: Family<ReasonLabel, Counter>,
    gap_reasons: Mutex<Vec<String>>,
    calls: Vec<Histogram>,
    policy_failures: Counter,
    disk_used: Gauge,
    disk_budget: Gauge,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Family<RouteLabel, Histogram, fn() -> Histogram>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Every metric at zero.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let started = Counter::default();
        registry.register(
            "execd_commands_started",
            "Commands started",
            started.clone(),
        );
        let running = Gauge::default();
        registry.register(
            "execd_commands_running",
            "Commands whose process has not ended",
            running.clone(),
        );
        let ended_family = Family::<ReasonLabel, Counter>::default();
        let ended = END_REASONS
            .iter()
            .map(|reason| {
                ended_family
                    .get_or_create(&ReasonLabel {
                        reason: (*reason).to_string(),
                    })
                    .clone()
            })
            .collect();
        registry.register(
            "execd_commands_ended",
            "Commands ended, by the terminal event's reason",
            ended_family.clone(),
        );
        let retained = Gauge::default();
        registry.register(
            "execd_commands_retained",
            "Finished commands whose logs are still kept",
            retained.clone(),
        );
        let events_family = Family::<StreamLabel, Counter>::default();
        let bytes_family = Family::<StreamLabel, Counter>::default();
        let stream = |family: &Family<StreamLabel, Counter>, stream| {
            family.get_or_create(&StreamLabel { stream }).clone()
        };
        let events = [
            stream(&events_family, "stdout"),
            stream(&events_family, "stderr"),
        ];
        let bytes = [
            stream(&bytes_family, "stdout"),
            stream(&bytes_family, "stderr"),
        ];
        registry.register(
            "execd_events_logged",
            "Output events logged, by stream",
            events_family,
        );
        registry.register(
            "execd_output_bytes",
            "Bytes of output text logged, by stream",
            bytes_family,
        );
        let readers = Gauge::default();
        registry.register(
            "execd_readers",
            "Readers following a command's log",
            readers.clone(),
        );
        let resumes = Counter::default();
        registry.register("execd_resumes", "Resume requests", resumes.clone());
        let gaps = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "execd_gaps",
            "Gaps sent to readers, by reason",
            gaps.clone(),
        );
        let gap_events = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "execd_gap_events",
            "Events missing in the gaps sent to readers, by reason",
            gap_events.clone(),
        );
        let call_family = Family::<CallLabel, Histogram, fn() -> Histogram>::new_with_constructor(
            Histogram::calls,
        );
        let calls = Call::ALL
            .iter()
            .map(|call| {
                call_family
                    .get_or_create(&CallLabel { call: call.name() })
                    .clone()
            })
            .collect();
        registry.register(
            "execd_policy_call_duration_seconds",
            "Time spent in policy calls, by call",
            call_family,
        );
        let policy_failures = Counter::default();
        registry.register(
            "execd_policy_failures",
            "Policy instances that failed (trapped, timed out, ran out of memory, broke a rule)",
            policy_failures.clone(),
        );
        let disk_used = Gauge::default();
        registry.register(
            "execd_disk_used_bytes",
            "Bytes the commands' logs take under the state directory",
            disk_used.clone(),
        );
        let disk_budget = Gauge::default();
        registry.register(
            "execd_disk_budget_bytes",
            "The host's disk budget",
            disk_budget.clone(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "execd_http_requests",
            "HTTP requests answered, by route template and status",
            requests.clone(),
        );
        let request_seconds =
            Family::<RouteLabel, Histogram, fn() -> Histogram>::new_with_constructor(
                Histogram::requests,
            );
        registry.register(
            "execd_http_request_duration_seconds",
            "Time to the end of each answer (for a stream, its whole life), by route template",
            request_seconds.clone(),
        );
        Metrics {
            registry,
            started,
            ended,
            ended_family,
            running,
            retained,
            events,
            bytes,
            readers,
            resumes,
            gaps,
            gap_events,
            gap_reasons: Mutex::new(Vec::new()),
            calls,
            policy_failures,
            disk_used,
            disk_budget,
            requests,
            request_seconds,
        }
    }

    /// A command started.
    pub fn command_started(&self) {
        self.started.inc();
    }

    /// A command's terminal event was logged, with this reason.
    pub fn command_ended(&self, reason: &str) {
        match END_REASONS.iter().position(|r| *r == reason) {
            Some(i) => {
                self.ended[i].inc();
            }
            None => {
                self.ended_family
                    .get_or_create(&ReasonLabel {
                        reason: OTHER_REASON.to_string(),
                    })
                    .inc();
            }
        }
    }

    /// `events` output events of `bytes` bytes were logged, stdout
    /// (`stderr` false) or stderr.
    pub fn logged(&self, stderr: bool, events: u64, bytes: u64) {
        let i = usize::from(stderr);
        self.events[i].inc_by(events);
        self.bytes[i].inc_by(bytes);
    }

    /// A reader attached.
    pub fn reader_attached(&self) {
        self.readers.inc();
    }

    /// A reader detached.
    pub fn reader_detached(&self) {
        self.readers.dec();
    }

    /// A resume was asked for.
    pub fn resumed(&self) {
        self.resumes.inc();
    }

    /// A gap over `events` events, for `reason`, went to a reader.
    pub fn gap(&self, reason: &str, events: u64) {
        let label = ReasonLabel {
            reason: self.gap_reason(reason),
        };
        self.gaps.get_or_create(&label).inc();
        self.gap_events.get_or_create(&label).inc_by(events);
    }

    fn gap_reason(&self, reason: &str) -> String {
        let mut known = match self.gap_reasons.lock() {
            Ok(known) => known,
            Err(poisoned) => poisoned.into_inner(),
        };
        if known.iter().any(|r| r == reason) {
            return reason.to_string();
        }
        if known.len() < MAX_GAP_REASONS {
            known.push(reason.to_string());
            return reason.to_string();
        }
        OTHER_REASON.to_string()
    }

    /// A policy call took `took`.
    pub fn policy_call(&self, call: Call, took: Duration) {
        if let Some(i) = Call::ALL.iter().position(|c| *c == call) {
            self.calls[i].observe(took);
        }
    }

    /// A policy instance failed.
    pub fn policy_failed(&self) {
        self.policy_failures.inc();
    }

    /// An HTTP answer on `route` (a template, never an id) with `status`
    /// ended after `took`.
    pub fn request(&self, route: &'static str, status: u16, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels { route, status })
            .inc();
        self.request_seconds
            .get_or_create(&RouteLabel { route })
            .observe(took);
    }

    /// The metrics in the OpenMetrics text format, with `now`'s values.
    pub fn openmetrics(&self, now: Snapshot) -> String {
        self.set(now);
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    fn set(&self, now: Snapshot) {
        let gauge = |g: &Gauge, v: u64| {
            g.set(i64::try_from(v).unwrap_or(i64::MAX));
        };
        gauge(&self.running, now.running);
        gauge(&self.retained, now.retained);
        gauge(&self.disk_used, now.disk_used);
        gauge(&self.disk_budget, now.disk_budget);
    }
}
