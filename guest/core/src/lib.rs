//! What every execd-host log policy stores and answers, in the shapes of
//! the WIT contract (`wit/policy.wit`), as plain Rust that builds both for
//! wasm32-wasip2 and natively:
//!
//! - [`Batch`]: lines as columns (lengths, [`Run`]s of one [`Channel`] and
//!   millisecond, one text buffer), and [`check_columns`], the one check
//!   that a batch's columns describe the same lines;
//! - [`Ending`] and its [`Outcome`], the terminal event;
//! - the answers: [`ReadResult`] ([`Events`], their [`TextSpan`]s,
//!   [`Gap`]), [`Stored`],
//!   [`Reopened`];
//! - [`wit_conversions!`], the one conversion between these and the types
//!   a WIT bindings generator makes of the contract (`wit_bindgen` inside a
//!   policy, `wasmtime::component::bindgen` in the host).
//!
//! The policies (`ring`, `disk`) keep their logic in these types so that
//! it is tested and benchmarked without wasm; the host uses the generated
//! types as its own and converts only where it runs a policy natively.

mod convert;
mod events;

pub use events::{
    Batch, Channel, Ending, Events, Gap, Outcome, ReadResult, Reason, Reopened, Run, Stored,
    TextSpan, check_columns,
};
