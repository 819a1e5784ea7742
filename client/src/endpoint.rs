//! The host's base URL: `http://HOST[:PORT][/PREFIX]`, nothing else.

use crate::error::{Error, Result};

/// The host's default address, execd's port.
pub const DEFAULT_URL: &str = "http://127.0.0.1:44772";

/// Where the host listens, parsed once from the base URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// `host` or `[v6]`, as it goes in the `Host` header.
    pub(crate) authority: String,
    /// The name or address to connect to (no brackets).
    pub(crate) host: String,
    pub(crate) port: u16,
    /// Path prefix without a trailing slash (often empty).
    pub(crate) prefix: String,
    /// The URL as given, for messages.
    pub(crate) url: String,
}

impl Endpoint {
    /// Parses `http://HOST[:PORT][/PREFIX]`. A bare `HOST:PORT` is taken as
    /// `http://`; `https://` is refused with a message saying why.
    pub fn parse(url: &str) -> Result<Endpoint> {
        let bad = |why| Error::InvalidUrl {
            url: url.to_string(),
            why,
        };
        let trimmed = url.trim();
        let rest = if let Some(rest) = strip_scheme(trimmed, "http://") {
            rest
        } else if strip_scheme(trimmed, "https://").is_some() {
            return Err(Error::HttpsUnsupported {
                url: url.to_string(),
            });
        } else if trimmed.contains("://") {
            return Err(bad("only http:// URLs are supported"));
        } else {
            trimmed
        };
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if path.contains(['?', '#']) {
            return Err(bad("a base URL takes no query or fragment"));
        }
        if authority.contains('@') {
            return Err(bad(
                "credentials in the URL are not supported; use the access token",
            ));
        }
        let (host, port) =
            split_host_port(authority).ok_or_else(|| bad("cannot read HOST:PORT"))?;
        if host.is_empty() {
            return Err(bad("no host name"));
        }
        Ok(Endpoint {
            authority: authority.to_string(),
            host: host.to_string(),
            port,
            prefix: path.trim_end_matches('/').to_string(),
            url: trimmed.trim_end_matches('/').to_string(),
        })
    }

    /// The URL as given, for messages.
    pub fn url(&self) -> &str {
        &self.url
    }
}

fn strip_scheme<'a>(url: &'a str, scheme: &str) -> Option<&'a str> {
    let head = url.get(..scheme.len())?;
    head.eq_ignore_ascii_case(scheme)
        .then(|| &url[scheme.len()..])
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`; the default port is 80, as
/// for any http:// URL.
fn split_host_port(authority: &str) -> Option<(&str, u16)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(port) => port.parse().ok()?,
            None if after.is_empty() => 80,
            None => return None,
        };
        return Some((host, port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host, port.parse().ok()?)),
        None => Some((authority, 80)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_a_person_types() {
        let e = Endpoint::parse("http://127.0.0.1:44772/").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.prefix.as_str()),
            ("127.0.0.1", 44772, "")
        );
        let e = Endpoint::parse("localhost:9000/execd").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.prefix.as_str()),
            ("localhost", 9000, "/execd")
        );
        let e = Endpoint::parse("HTTP://[::1]:1").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.authority.as_str()),
            ("::1", 1, "[::1]:1")
        );
        assert_eq!(Endpoint::parse("http://h").unwrap().port, 80);
    }

    #[test]
    fn refuses_https_and_nonsense() {
        assert!(matches!(
            Endpoint::parse("https://h:1"),
            Err(Error::HttpsUnsupported { .. })
        ));
        for bad in [
            "ftp://h",
            "http://h:x",
            "http://:1",
            "http://h/?q",
            "http://u@h",
        ] {
            assert!(
                matches!(Endpoint::parse(bad), Err(Error::InvalidUrl { .. })),
                "{bad}"
            );
        }
    }
}
