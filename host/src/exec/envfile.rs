//! The `EXECD_ENVS` file: `KEY=VALUE` lines that every command's
//! environment takes after the host's own and before the request's `envs`.
//!
//! OpenSandbox's SDK persists `commands.set_env(K, V)` by running a shell
//! command that appends a line to the file the *command's* `EXECD_ENVS`
//! names, so the file is read again at every spawn: a variable set by one
//! command is seen by the next. The SDK writes `K='v'` (literal) for values
//! without a single quote and `K="v"` (backslash escapes, `$NAME`
//! expanded) otherwise; bare values are trimmed and `$NAME`-expanded too.
//! Blank lines, `#` comments and an `export ` prefix are accepted. A
//! malformed line is skipped and logged (by line number: values may be
//! secrets), never fatal.

use std::path::{Path, PathBuf};

use crate::exec::is_secret;

/// The variable naming the file, in the host's own environment.
pub const EXECD_ENVS: &str = "EXECD_ENVS";

/// Largest file read; a bigger one is ignored (and logged): it is read at
/// every spawn.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// The name of the host's own env file, in its state dir, used when its
/// environment has no `EXECD_ENVS`.
const PRIVATE_FILE: &str = "execd.env";

/// That file's path, once [`keep_private`] made it.
static PRIVATE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// When the host's environment names no `EXECD_ENVS` file, makes a
/// private one (0600) in `state_dir` and hands its path to commands as
/// `EXECD_ENVS`, so the SDK's `set_env` works out of the box. Called once
/// at start; a second call (a second host in one process) keeps the
/// first file.
pub fn keep_private(state_dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if configured().is_some() {
        return Ok(());
    }
    let path = state_dir.join(PRIVATE_FILE);
    // Kept if there (a kept --state-dir keeps what `set_env` set).
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)?;
    let _ = PRIVATE.set(path);
    Ok(())
}

/// The path the host's environment names, if any.
fn configured() -> Option<PathBuf> {
    std::env::var_os(EXECD_ENVS)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
}

/// The host's private env file (see [`keep_private`]), to be passed to
/// commands as `EXECD_ENVS`.
pub fn private() -> Option<&'static Path> {
    PRIVATE.get().map(PathBuf::as_path)
}

/// The entries of the host's `EXECD_ENVS` file (or its private one), in
/// file order (later lines win), or none when there is none or it is
/// missing.
pub fn load() -> Vec<(String, String)> {
    match configured().as_deref().or(private()) {
        Some(path) => read(path),
        None => Vec::new(),
    }
}

/// The entries of the file at `path` (see [`parse`]); a missing file has
/// none, quietly: nothing has called `set_env` yet. A file that is not
/// safe to read (see [`open_checked`]) has none either, and the log says
/// why once per path and cause.
pub fn read(path: &Path) -> Vec<(String, String)> {
    let bytes = match open_checked(path) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Vec::new(),
        Err(why) => {
            refused(path, why);
            return Vec::new();
        }
    };
    parse(&String::from_utf8_lossy(&bytes), |line, why| {
        tracing::warn!(path = %path.display(), line, "EXECD_ENVS line skipped: {why}");
    })
}

/// The file's bytes, `None` when it does not exist, or why it is not read.
///
/// It is opened `O_NONBLOCK` so that a FIFO (or a device) cannot stall
/// the open, then checked through its descriptor (no window between the
/// check and the read): a regular file once links are followed, owned by
/// the host's user or root and writable by no one else (anyone else could
/// hand root's commands a `BASH_ENV`), and read with a bound, since the
/// size on disk of what is read can grow while it is read.
fn open_checked(path: &Path) -> Result<Option<Vec<u8>>, String> {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot open it: {e}")),
    };
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot stat it: {e}"))?;
    if !meta.file_type().is_file() {
        return Err("it is not a regular file".into());
    }
    // SAFETY: geteuid has no preconditions.
    let host_uid = unsafe { libc::geteuid() };
    if meta.uid() != host_uid && meta.uid() != 0 {
        return Err(format!(
            "it is owned by uid {}, neither the host's user ({host_uid}) nor root",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err("users other than its owner can write it".into());
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!("it is over {MAX_FILE_BYTES} bytes"));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read it: {e}"))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("it grew over {MAX_FILE_BYTES} bytes while read"));
    }
    Ok(Some(bytes))
}

/// Logs that the file at `path` was not read, once per path and cause:
/// it is looked at by every spawn.
fn refused(path: &Path, why: String) {
    static LOGGED: std::sync::Mutex<Vec<(std::path::PathBuf, String)>> =
        std::sync::Mutex::new(Vec::new());
    let mut logged = LOGGED.lock().unwrap_or_else(|e| e.into_inner());
    let key = (path.to_path_buf(), why);
    if logged.contains(&key) {
        return;
    }
    tracing::warn!(path = %path.display(), "the EXECD_ENVS file is not read: {}; commands run without it", key.1);
    // Bounded: a host sees few paths and causes, but a hostile file can
    // cycle through owners; forgetting old ones only repeats a line.
    if logged.len() >= 64 {
        logged.clear();
    }
    logged.push(key);
}

/// Parses the file's text; `skipped(line_number, why)` hears of each
/// malformed line. `$NAME` in values takes earlier lines first, then the
/// host's environment (less its secrets).
pub fn parse(text: &str, mut skipped: impl FnMut(usize, &str)) -> Vec<(String, String)> {
    let mut entries: Vec<(String, String)> = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map_or(line, str::trim_start);
        let Some((key, value)) = line.split_once('=') else {
            skipped(n + 1, "no `=`");
            continue;
        };
        if !valid_key(key) {
            skipped(n + 1, "not a variable name");
            continue;
        }
        let lookup = |name: &str| {
            entries
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .or_else(|| host_var(name))
        };
        match value_of(value, &lookup) {
            Ok(value) => entries.push((key.to_string(), value)),
            Err(why) => skipped(n + 1, why),
        }
    }
    entries
}

/// A variable of the host's environment as a command sees it (never one
/// of its secrets: see [`is_secret`]).
pub fn host_var(name: &str) -> Option<String> {
    if is_secret(name) {
        return None;
    }
    std::env::var(name).ok()
}

fn valid_key(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn value_of(raw: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, &'static str> {
    let raw = raw.trim();
    let value = if let Some(rest) = raw.strip_prefix('\'') {
        let inner = rest.strip_suffix('\'').ok_or("unterminated single quote")?;
        if inner.contains('\'') {
            return Err("a single quote inside a single-quoted value");
        }
        inner.to_string()
    } else if let Some(rest) = raw.strip_prefix('"') {
        let inner = rest.strip_suffix('"').ok_or("unterminated double quote")?;
        unescape_double_quoted(inner, lookup)?
    } else {
        expand(raw, lookup)
    };
    if value.contains('\0') {
        return Err("a NUL byte");
    }
    Ok(value)
}

/// The SDK's double-quoted form: `\\`, `\"`, `\n`, `\r`, `\t`, `\$`
/// escapes, `$NAME` expanded.
fn unescape_double_quoted(
    inner: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, &'static str> {
    let mut out = String::new();
    let mut literal = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let escaped = match chars.next() {
                    Some('n') => '\n',
                    Some('r') => '\r',
                    Some('t') => '\t',
                    Some(other @ ('\\' | '"' | '$' | '`')) => other,
                    Some(other) => {
                        literal.push('\\');
                        other
                    }
                    None => return Err("a trailing backslash"),
                };
                // An escaped `$` must not be expanded: flush what came
                // before through expansion, keep this one literal.
                out.push_str(&expand(&std::mem::take(&mut literal), lookup));
                out.push(escaped);
            }
            '"' => return Err("an unescaped double quote inside a double-quoted value"),
            c => literal.push(c),
        }
    }
    out.push_str(&expand(&literal, lookup));
    Ok(out)
}

/// Expands `$NAME` and `${NAME}`; an undefined variable is empty, as in a
/// shell. A `$` not followed by a name stays.
pub fn expand(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    expand_vars(text, &|name| Some(lookup(name).unwrap_or_default()))
        .unwrap_or_else(|_| String::new())
}

/// Expands `$NAME` and `${NAME}` (a name is `[A-Za-z0-9_]+`); `Err(name)`
/// for the first variable `lookup` does not know. A `$` not followed by a
/// name, or a `${` never closed, stays as it is.
pub fn expand_vars(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, consumed) = match after.strip_prefix('{') {
            Some(inner) => match inner.find('}') {
                Some(end) if !inner[..end].is_empty() && inner[..end].chars().all(is_name) => {
                    (&inner[..end], end + 2)
                }
                _ => ("", 0),
            },
            None => {
                let end = after.find(|c: char| !is_name(c)).unwrap_or(after.len());
                (&after[..end], end)
            }
        };
        if name.is_empty() {
            out.push('$');
            rest = after;
            continue;
        }
        out.push_str(&lookup(name).ok_or_else(|| name.to_string())?);
        rest = &after[consumed..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(text: &str) -> (Vec<(String, String)>, Vec<usize>) {
        let mut bad = Vec::new();
        let parsed = parse(text, |n, _| bad.push(n));
        (parsed, bad)
    }

    #[test]
    fn the_sdks_two_forms_and_bare_values() {
        let (e, bad) = entries(concat!(
            "# comment\n",
            "\n",
            "A='it is $HOME, literally'\n",
            "B=\"it's \\\"q\\\" \\n $A \\$A\"\n",
            "export C= plain $A\n",
        ));
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(e[0], ("A".into(), "it is $HOME, literally".into()));
        assert_eq!(
            e[1],
            ("B".into(), "it's \"q\" \n it is $HOME, literally $A".into())
        );
        assert_eq!(e[2].1, "plain it is $HOME, literally");
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let (e, bad) = entries("NOEQUALS\n1A=x\nA='open\nB=\"open\nC=ok\nD='a'b'\n");
        assert_eq!(bad, vec![1, 2, 3, 4, 6]);
        assert_eq!(e, vec![("C".into(), "ok".into())]);
    }

    #[test]
    fn expansion() {
        let lookup = |n: &str| (n == "X").then(|| "x".to_string());
        assert_eq!(expand_vars("a$X/${X}b$", &lookup).unwrap(), "ax/xb$");
        assert_eq!(expand_vars("$ {X", &lookup).unwrap(), "$ {X");
        assert_eq!(expand_vars("${Y}", &lookup), Err("Y".to_string()));
        assert_eq!(expand("$Y.", &lookup), ".");
    }
}
