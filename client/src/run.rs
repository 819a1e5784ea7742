//! What to run: the body of `POST /command` (and of a session's run).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

/// A command to run: shell text or an argv, and its options.
///
/// ```
/// use std::time::Duration;
/// use execd_client::Run;
///
/// let run = Run::argv(["ls", "-l"])
///     .cwd("/tmp")
///     .env("LANG", "C")
///     .timeout(Duration::from_secs(10));
/// let shell = Run::shell("echo $HOME | wc -c").background(true);
/// # let _ = (run, shell);
/// ```
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Run {
    #[serde(skip_serializing_if = "Option::is_none")]
    command: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    argv: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cwd: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    background: bool,
    /// Milliseconds; absent means none.
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gid: Option<u32>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    envs: BTreeMap<String, String>,
}

impl Run {
    /// Shell text, run by the host as `bash -c` (or `sh -c`).
    pub fn shell(command: impl Into<String>) -> Run {
        Run {
            command: Some(command.into()),
            ..Run::default()
        }
    }

    /// A program and its arguments, run without a shell; a bare name is
    /// searched in the command's `PATH`.
    pub fn argv<I, S>(argv: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Run {
            argv: Some(argv.into_iter().map(Into::into).collect()),
            ..Run::default()
        }
    }

    /// The working directory (the host expands `~`, `$NAME`, `${NAME}`).
    pub fn cwd(mut self, cwd: impl Into<String>) -> Run {
        self.cwd = Some(cwd.into());
        self
    }

    /// One environment variable, overlaid on the host's environment.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Run {
        self.envs.insert(key.into(), value.into());
        self
    }

    /// Whether the host runs it in the background: the run's stream then
    /// ends as soon as the command is spawned; follow it with
    /// [`Client::attach`](crate::Client::attach).
    pub fn background(mut self, background: bool) -> Run {
        self.background = background;
        self
    }

    /// Kill the command (SIGKILL to its process group) after this long;
    /// millisecond precision.
    pub fn timeout(mut self, timeout: Duration) -> Run {
        self.timeout = Some(timeout.as_millis().min(u128::from(u64::MAX)) as u64);
        self
    }

    /// Run as this user id.
    pub fn uid(mut self, uid: u32) -> Run {
        self.uid = Some(uid);
        self
    }

    /// Run with this group id (the host needs a uid with it).
    pub fn gid(mut self, gid: u32) -> Run {
        self.gid = Some(gid);
        self
    }

    /// Whether this is a background run.
    pub fn is_background(&self) -> bool {
        self.background
    }

    pub(crate) fn to_json(&self) -> Vec<u8> {
        // Serializing strings, maps and integers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The shell text a session runs: the command as given, or the argv
    /// quoted for bash so that it means the same.
    pub(crate) fn session_body(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct SessionRun<'a> {
            command: String,
            #[serde(skip_serializing_if = "Option::is_none")]
            cwd: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            timeout: Option<u64>,
        }
        let command = match (&self.command, &self.argv) {
            (Some(command), _) => command.clone(),
            (None, Some(argv)) => argv
                .iter()
                .map(|a| shell_quote(a))
                .collect::<Vec<_>>()
                .join(" "),
            (None, None) => String::new(),
        };
        serde_json::to_vec(&SessionRun {
            command,
            cwd: self.cwd.as_deref(),
            timeout: self.timeout,
        })
        .unwrap_or_default()
    }
}

/// Quotes a word for bash: plain words as they are, others in single
/// quotes (a `'` inside becomes `'\''`).
pub fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%^".contains(&b));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_as_the_contract_spells_them() {
        let run = Run::argv(["ls", "-l"])
            .cwd("/tmp")
            .env("A", "1")
            .timeout(Duration::from_secs(2))
            .uid(5)
            .gid(6);
        assert_eq!(
            String::from_utf8(run.to_json()).unwrap(),
            r#"{"argv":["ls","-l"],"cwd":"/tmp","timeout":2000,"uid":5,"gid":6,"envs":{"A":"1"}}"#
        );
        assert_eq!(
            String::from_utf8(Run::shell("x").background(true).to_json()).unwrap(),
            r#"{"command":"x","background":true}"#
        );
        assert_eq!(
            String::from_utf8(Run::argv(["echo", "a b", "it's"]).session_body()).unwrap(),
            r#"{"command":"echo 'a b' 'it'\\''s'"}"#
        );
    }
}
