//! Host bindings generated from `wit/`.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "resume-policy",
    exports: { default: async },
});

/// The WIT types of the `log` interface, which the host uses as its own
/// event types: no conversion between the policy and the wire.
pub mod wit {
    pub use super::exports::execd::resume::log::*;
}
