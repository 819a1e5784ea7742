//! The `POST /command` body: parsing and checking it, before anything runs.

// Public only for the property tests (`execd_host::internal`); not API.
#![allow(missing_docs)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::error::RunError;
use crate::exec::envfile;
use crate::http::error::ApiError;

/// The body as sent. Unknown fields are ignored, as execd does.
#[derive(Deserialize)]
struct Body {
    command: Option<String>,
    argv: Option<Vec<String>>,
    cwd: Option<String>,
    // `null` is as good as absent, as for the other optional fields: some
    // clients send every unset field so.
    #[serde(default, deserialize_with = "null_as_default")]
    background: bool,
    timeout: Option<i64>,
    uid: Option<u32>,
    gid: Option<u32>,
    #[serde(default, deserialize_with = "null_as_default")]
    envs: HashMap<String, String>,
}

/// A field's value, or its default for `null`.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// A checked request to run a command.
#[derive(Debug)]
pub struct RunRequest {
    /// The shell text run as `bash -c`; with `argv`, what status reports
    /// as the command's content (the argv, shell-quoted).
    pub command: String,
    /// Run this program with these arguments instead, without a shell.
    pub argv: Option<Vec<String>>,
    pub cwd: Option<PathBuf>,
    pub background: bool,
    pub timeout: Option<Duration>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Laid over the host's environment: the `EXECD_ENVS` file's entries,
    /// then the request's `envs` (later wins).
    pub envs: HashMap<String, String>,
}

impl RunRequest {
    pub fn parse(bytes: &[u8]) -> Result<RunRequest, ApiError> {
        // An object, and nothing else: serde would read a struct from an
        // array of its fields in order, too.
        let object: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(bytes)
            .map_err(|e| ApiError::bad_body(format!("the body must be a JSON object: {e}")))?;
        let body = Body::deserialize(serde_json::Value::Object(object))
            .map_err(|e| ApiError::bad_body(format!("invalid request: {e}")))?;
        let (command, argv) = match (body.command, body.argv) {
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_body(
                    "give `command` (shell text) or `argv` (a program and its arguments), not both",
                ));
            }
            (None, None) => return Err(ApiError::bad_body("`command` or `argv` is required")),
            (Some(command), None) => (check_command(command)?, None),
            (None, Some(argv)) => {
                check_argv(&argv)?;
                (quote_argv(&argv), Some(argv))
            }
        };
        let timeout = timeout(body.timeout)?;
        if body.gid.is_some() && body.uid.is_none() {
            return Err(ApiError::bad_body("`gid` needs `uid`"));
        }
        let envs = command_env(check_envs(body.envs)?);
        let cwd = match body.cwd.as_deref() {
            None | Some("") => None,
            Some(raw) => Some(resolve_cwd(raw, &envs)?),
        };
        Ok(RunRequest {
            command,
            argv,
            cwd,
            background: body.background,
            timeout,
            uid: body.uid,
            gid: body.gid,
            envs,
        })
    }
}

/// Shell text to run: non-blank, no NUL.
pub fn check_command(command: String) -> Result<String, RunError> {
    if command.trim().is_empty() {
        return Err(invalid("`command` must not be empty"));
    }
    if command.contains('\0') {
        return Err(invalid("`command` must not contain NUL bytes"));
    }
    Ok(command)
}

/// A program and its arguments: `argv[0]` non-empty, NUL nowhere (no
/// exec could carry it).
pub fn check_argv(argv: &[String]) -> Result<(), RunError> {
    match argv.first() {
        None => return Err(invalid("`argv` must not be empty")),
        Some(program) if program.is_empty() => {
            return Err(invalid("`argv[0]` must not be empty"));
        }
        Some(_) => {}
    }
    if let Some(i) = argv.iter().position(|a| a.contains('\0')) {
        return Err(invalid(format!("`argv[{i}]` must not contain NUL bytes")));
    }
    Ok(())
}

/// Environment variables a command can be given: a name without `=`,
/// and NUL in neither.
pub fn check_envs(envs: HashMap<String, String>) -> Result<HashMap<String, String>, RunError> {
    for (key, value) in &envs {
        if key.is_empty() || key.contains(['=', '\0']) || value.contains('\0') {
            return Err(invalid(format!(
                "`envs` entry `{}` is not a valid environment variable",
                key.escape_debug()
            )));
        }
    }
    Ok(envs)
}

fn invalid(message: impl Into<String>) -> RunError {
    RunError::Invalid(message.into())
}

/// The argv as one line of shell text that would run the same thing: what
/// status reports as the command.
pub fn quote_argv(argv: &[String]) -> String {
    argv.iter()
        .map(|arg| shell_quote(arg))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `text` as one POSIX shell word.
pub fn shell_quote(text: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// A `timeout` in milliseconds: 0 or absent is none, negative is refused.
pub fn timeout(ms: Option<i64>) -> Result<Option<Duration>, ApiError> {
    match ms {
        None | Some(0) => Ok(None),
        Some(ms) if ms < 0 => Err(ApiError::bad_body(format!(
            "`timeout` must be a non-negative number of milliseconds, not {ms}"
        ))),
        Some(ms) => Ok(Some(Duration::from_millis(ms as u64))),
    }
}

/// What a command's environment lays over the host's: the `EXECD_ENVS`
/// file's entries (read now, so a `set_env` is seen by the next command),
/// then the request's `envs`, later winning.
pub fn command_env(request_envs: HashMap<String, String>) -> HashMap<String, String> {
    let mut envs: HashMap<String, String> = envfile::load().into_iter().collect();
    // The host's own file, where its environment names none: the SDK's
    // `set_env` writes where the command's `EXECD_ENVS` points.
    if let Some(path) = envfile::private() {
        envs.insert(
            envfile::EXECD_ENVS.to_string(),
            path.to_string_lossy().into_owned(),
        );
    }
    envs.extend(request_envs);
    envs
}

/// Expands a leading `~` (the host user's home) and `$NAME`/`${NAME}`
/// (from the command's environment: `envs` over the host's), and checks
/// that the directory exists. An undefined variable is refused: execd's
/// rule, and safer than running in a directory nobody named.
pub fn resolve_cwd(raw: &str, envs: &HashMap<String, String>) -> Result<PathBuf, ApiError> {
    let lookup = |name: &str| envs.get(name).cloned().or_else(|| envfile::host_var(name));
    let (home, rest) = if raw == "~" || raw.starts_with("~/") {
        let home = host_home().ok_or_else(|| {
            ApiError::bad_body("`cwd` starts with `~`, but the host user has no home directory")
        })?;
        (home, &raw[1..])
    } else {
        (String::new(), raw)
    };
    let expanded = envfile::expand_vars(rest, &lookup).map_err(|name| {
        ApiError::bad_body(format!(
            "`cwd` uses `${name}`, which the command's environment does not define"
        ))
    })?;
    let expanded = home + &expanded;
    if expanded.contains('\0') {
        return Err(ApiError::bad_body("`cwd` must not contain NUL bytes"));
    }
    let path = PathBuf::from(&expanded);
    if !path.is_dir() {
        return Err(ApiError::bad_body(format!(
            "`cwd` {expanded:?} is not an existing directory"
        )));
    }
    Ok(path)
}

/// The host user's home: its `HOME`, else its passwd entry.
fn host_home() -> Option<String> {
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        return home.into_string().ok();
    }
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.get(2)?.parse::<u32>().ok()? == uid)
            .then(|| fields.get(5).map(|h| h.to_string()))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<RunRequest, ApiError> {
        RunRequest::parse(json.as_bytes())
    }

    #[test]
    fn minimal_and_unknown_fields() {
        let r = parse(r#"{"command":"echo hi","extra":1}"#).unwrap();
        assert_eq!(r.command, "echo hi");
        assert!(!r.background && r.timeout.is_none() && r.cwd.is_none());
    }

    #[test]
    fn rejections() {
        for bad in [
            "not json",
            "{}",
            r#"{"command":""}"#,
            r#"{"command":"x","timeout":-1}"#,
            r#"{"command":"x","gid":1}"#,
            r#"{"command":"x","cwd":"/definitely/not/here"}"#,
            r#"{"command":"x","uid":-1}"#,
            r#"{"command":"x","envs":{"A=B":"c"}}"#,
            r#"{"command":"x","argv":["echo"]}"#,
            r#"{"argv":[]}"#,
            r#"{"argv":[""]}"#,
            r#"{"argv":["echo","a\u0000b"]}"#,
            r#"{"argv":"echo"}"#,
            r#"{"argv":["echo",1]}"#,
            r#"{"command":"x","cwd":"$EXECD_TEST_UNDEFINED_VARIABLE"}"#,
            r#"{"command":7}"#,
            r#"["echo ran",null,false,null,null,null,{}]"#,
            r#""echo ran""#,
            "null",
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.code, "INVALID_REQUEST_BODY", "{bad}");
        }
    }

    #[test]
    fn cwd_expansion() {
        let r = parse(r#"{"command":"x","cwd":"${D}/..","envs":{"D":"/tmp"}}"#).unwrap();
        assert_eq!(r.cwd.unwrap(), PathBuf::from("/tmp/.."));
        let r = parse(r#"{"command":"x","cwd":"$D","envs":{"D":"/"}}"#).unwrap();
        assert_eq!(r.cwd.unwrap(), PathBuf::from("/"));
    }

    #[test]
    fn argv_is_quoted_for_status() {
        let r = parse(r#"{"argv":["python3","-c","print('a b')",""]}"#).unwrap();
        assert_eq!(r.command, r#"python3 -c 'print('\''a b'\'')' ''"#);
        assert_eq!(r.argv.unwrap().len(), 4);
    }
}
