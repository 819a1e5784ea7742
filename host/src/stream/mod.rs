//! Reading a command's log out: [`reader`] is a cursor that follows the log
//! from an eid to its terminal event (every stream, `/resume` and the first
//! `POST /command` one alike), and [`sse`] frames its events for the wire.

pub mod events;
pub mod reader;
pub mod sse;
