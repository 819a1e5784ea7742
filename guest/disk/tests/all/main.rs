//! Tests of the disk log through its public API, natively, with real
//! files in temporary directories. One binary with a module per concern.

mod budget;
mod corruption;
mod io_errors;
mod properties;
mod reads;
mod reopen;
mod reopen_any_damage;
mod reopen_budget;
mod reopen_damage;
mod reopen_properties;
mod reopen_resync;
mod support;
