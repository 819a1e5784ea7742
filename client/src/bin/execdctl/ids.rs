//! Command ids as a person types them: whole, or a prefix that names one
//! command of the host's list (as docker takes a short container id).

use execd_client::{Client, Error};

/// Why a given id could not be used.
pub enum Unresolved {
    /// The prefix names several commands: the message lists them.
    Ambiguous(String),
    /// Asking the host failed.
    Failed(Error),
}

/// The id `given` names. A whole id (32 hex digits) is used as it is, and
/// so is a prefix that names no command (the host then says it has none);
/// a prefix of exactly one listed id is that id.
pub async fn resolve(client: &Client, given: &str) -> Result<String, Unresolved> {
    let whole = given.len() == 32 && given.bytes().all(|b| b.is_ascii_hexdigit());
    if whole || given.is_empty() {
        return Ok(given.to_string());
    }
    let commands = match client.list().await {
        Ok(commands) => commands,
        // A host without the list (execd itself): the id as it is.
        Err(Error::Api { status: 404, .. } | Error::NotFound { .. }) => {
            return Ok(given.to_string());
        }
        Err(error) => return Err(Unresolved::Failed(error)),
    };
    let matching: Vec<String> = commands
        .into_iter()
        .map(|c| c.status.id)
        .filter(|id| id.starts_with(given))
        .collect();
    match matching.as_slice() {
        [] => Ok(given.to_string()),
        [one] => Ok(one.clone()),
        many => Err(Unresolved::Ambiguous(format!(
            "{given:?} is the start of {} command ids ({}): give more of the id",
            many.len(),
            many.join(", ")
        ))),
    }
}
