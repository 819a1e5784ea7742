//! Running a command: spawning it in its own process group (and cgroup), and the pump
//! that reads both pipes, splits lines and appends them to the log.

pub mod cgroup;
pub mod envfile;
pub mod group;
pub mod lines;
pub mod output;
mod pump;
mod spawn;

pub use pump::pump;
pub use spawn::{
    hide_token, is_secret, private_thread_umask, private_umask, run_gid, shell, spawn,
};
