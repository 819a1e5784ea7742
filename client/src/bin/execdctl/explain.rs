//! Error messages a person can act on: what went wrong, and what to do.

use execd_client::Error;

/// One or two sentences for stderr, after `execdctl: `.
pub fn explain(error: &Error, url: &str) -> String {
    match error {
        Error::Unreachable { source, .. } => format!(
            "cannot reach the host at {url} ({source}). Is execd-host running there? Set the address with --url or EXECD_URL."
        ),
        Error::Unauthorized { .. } => format!(
            "the host at {url} refused the access token (missing or wrong). Set it with --token or EXECD_ACCESS_TOKEN."
        ),
        Error::NotFound { what, id, .. } => format!(
            "the host at {url} has no {what} {id:?}: it never existed, or it ended longer ago than the host retains it.{}",
            if *what == "command" {
                " `execdctl ps` lists the commands it knows."
            } else {
                ""
            }
        ),
        Error::Api {
            status: 404,
            code,
            message,
        } if code == "NOT_FOUND" => format!(
            "the host at {url} does not serve this request ({message}); it may be older than this execdctl."
        ),
        Error::Api { code, message, .. } => {
            format!("the host refused the request: {message} ({code})")
        }
        Error::Expired { id, after_eid } => format!(
            "command {id} expired on the host while reconnecting: its output after event {after_eid}, and its exit status, can no longer be read."
        ),
        Error::PolicyFailed { message } => {
            format!("the host can no longer read this command's log: {message}")
        }
        Error::GaveUp {
            attempts,
            elapsed,
            last,
        } => format!(
            "lost the connection and could not get it back within {} ({attempts} attempts; last: {}). Raise the bound with --retry-for.",
            humantime::format_duration(std::time::Duration::from_secs(elapsed.as_secs().max(1))),
            explain(last, url)
        ),
        other => other.to_string(),
    }
}
