//! End-to-end tests of execd-client and execdctl: the real execd-host
//! binary over loopback, often through a proxy of the tests' own that cuts
//! connections at random byte offsets.

mod harness;
mod proxy;

mod commands;
mod cutting;
mod hard;
