//! Process-wide settings a program embedding the host may choose to make,
//! as the daemon does. The library never makes them by itself.

mod logging;

pub use crate::exec::{private_thread_umask, private_umask};
pub use logging::{LogFormat, init_logging};

/// Raises the open-file limit (`RLIMIT_NOFILE`) to its hard maximum:
/// every running command holds pipes, and every stream a socket.
pub fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
