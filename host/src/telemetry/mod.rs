//! What an operator sees of the host: counters and gauges ([`Metrics`]),
//! their text formats ([`exposition`]), and the OTLP push.

pub mod exposition;
pub mod histogram;
pub mod metrics;
pub mod otlp;

pub use metrics::{Call, Metrics, Snapshot};
pub use otlp::OtlpConfig;
