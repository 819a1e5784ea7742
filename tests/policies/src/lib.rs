//! Policies that misbehave, each on purpose and each behind a feature, so
//! the tests can prove the host survives them. Until a line says
//! "trigger", each behaves like `ring`.

#![cfg(target_arch = "wasm32")]

#[cfg(not(feature = "incompatible-wit"))]
mod hostile;

#[cfg(feature = "incompatible-wit")]
mod incompatible {
    wit_bindgen::generate!({
        inline: "
            package execd:resume@0.2.0;
            interface log {
                retention-ms: func() -> u64;
            }
            world resume-policy {
                export log;
            }
        ",
    });

    struct Policy;

    impl exports::execd::resume::log::Guest for Policy {
        fn retention_ms() -> u64 {
            0
        }
    }

    export!(Policy);
}
