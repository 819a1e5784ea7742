//! End-to-end tests: the real `execd-host` binary, real processes, the real
//! compiled policy components, over loopback TCP.

mod harness;

mod api;
mod errors;
mod output;
mod policies;
mod resume;
mod startup;

mod bounds;
mod budgets;
mod cgroups;
mod chaos;
mod cors;
mod dropin;
mod embedding;
mod endings;
mod exact;
mod faults;
mod hardening;
mod hardening2;
mod history;
mod idempotency;
mod leaks;
mod library;
mod lifecycle;
mod lossless;
mod otlp;
mod probes;
mod props;
mod restart;
mod security;
mod sessions;
mod spec;
mod telemetry;
mod upstream;
