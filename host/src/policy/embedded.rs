//! Policies compiled into the host binary by `build.rs`.

/// `(name, component bytes)` of every embedded policy; the first is the
/// default.
pub const EMBEDDED: &[(&str, &[u8])] = &[
    (
        "ring",
        include_bytes!(concat!(env!("OUT_DIR"), "/ring.wasm")),
    ),
    (
        "exclusive",
        include_bytes!(concat!(env!("OUT_DIR"), "/exclusive.wasm")),
    ),
    (
        "spill",
        include_bytes!(concat!(env!("OUT_DIR"), "/spill.wasm")),
    ),
    (
        "disk",
        include_bytes!(concat!(env!("OUT_DIR"), "/disk.wasm")),
    ),
];

/// The component named `name`, if one is embedded.
pub fn find(name: &str) -> Option<&'static [u8]> {
    EMBEDDED
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| *bytes)
}

/// Names of the embedded policies, for messages.
pub fn names() -> String {
    EMBEDDED
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}
