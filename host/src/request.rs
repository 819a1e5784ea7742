//! The `POST /command` body: parsing and checking it, before anything runs.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::error::ApiError;

/// The body as sent. Unknown fields are ignored, as execd does.
#[derive(Deserialize)]
struct Body {
    command: Option<String>,
    cwd: Option<String>,
    #[serde(default)]
    background: bool,
    timeout: Option<i64>,
    uid: Option<u32>,
    gid: Option<u32>,
    #[serde(default)]
    envs: HashMap<String, String>,
}

/// A checked request to run a command.
#[derive(Debug)]
pub struct RunRequest {
    pub command: String,
    pub cwd: Option<PathBuf>,
    pub background: bool,
    pub timeout: Option<Duration>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
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
        let command = match body.command {
            Some(c) if !c.trim().is_empty() => c,
            Some(_) => return Err(ApiError::bad_body("`command` must not be empty")),
            None => return Err(ApiError::bad_body("`command` is required")),
        };
        if command.contains('\0') {
            return Err(ApiError::bad_body("`command` must not contain NUL bytes"));
        }
        let timeout = match body.timeout {
            None | Some(0) => None,
            Some(ms) if ms < 0 => {
                return Err(ApiError::bad_body(format!(
                    "`timeout` must be a non-negative number of milliseconds, not {ms}"
                )));
            }
            Some(ms) => Some(Duration::from_millis(ms as u64)),
        };
        if body.gid.is_some() && body.uid.is_none() {
            return Err(ApiError::bad_body("`gid` needs `uid`"));
        }
        for (key, value) in &body.envs {
            if key.is_empty() || key.contains(['=', '\0']) || value.contains('\0') {
                return Err(ApiError::bad_body(format!(
                    "`envs` entry `{}` is not a valid environment variable",
                    key.escape_debug()
                )));
            }
        }
        let cwd = match body.cwd.as_deref() {
            None | Some("") => None,
            Some(raw) => Some(resolve_cwd(raw, &body.envs)?),
        };
        Ok(RunRequest {
            command,
            cwd,
            background: body.background,
            timeout,
            uid: body.uid,
            gid: body.gid,
            envs: body.envs,
        })
    }
}

/// Expands `~` and `$VAR`/`${VAR}` (from the request's `envs`, then the
/// host's environment) and checks that the directory exists.
fn resolve_cwd(raw: &str, envs: &HashMap<String, String>) -> Result<PathBuf, ApiError> {
    let lookup = |name: &str| {
        envs.get(name)
            .cloned()
            .or_else(|| std::env::var(name).ok())
            .unwrap_or_default()
    };
    let mut expanded = String::new();
    let rest = if raw == "~" || raw.starts_with("~/") {
        expanded.push_str(&lookup("HOME"));
        &raw[1..]
    } else {
        raw
    };
    let mut chars = rest.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c != '$' {
            expanded.push(c);
            continue;
        }
        let tail = &rest[i + 1..];
        let (name, skip) = if let Some(inner) = tail.strip_prefix('{') {
            match inner.find('}') {
                Some(end) => (&inner[..end], end + 2),
                None => ("", 0),
            }
        } else {
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            (&tail[..end], end)
        };
        if name.is_empty() {
            expanded.push('$');
            continue;
        }
        expanded.push_str(&lookup(name));
        for _ in 0..tail[..skip].chars().count() {
            chars.next();
        }
    }
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
}
