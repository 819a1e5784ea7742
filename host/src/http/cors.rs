//! `--cors-origin`: lets a web page served from another origin use the
//! API from the browser (`fetch`, `EventSource`), which it may only do
//! when the answers say that origin may read them (CORS, the Fetch
//! standard). Off unless origins are named: a page on any site could
//! otherwise drive a host that runs without a token.
//!
//! Credentials (cookies) are never allowed: the API authenticates with
//! `X-EXECD-ACCESS-TOKEN`, which the page must send itself, so `*` is as
//! safe as a list. A preflight is answered before the token check, since
//! a browser never sends the token with one.

use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use super::body::{self, ResponseBody};

/// Which origins may read the API's answers.
#[derive(Debug, Clone)]
pub enum Cors {
    Any,
    /// Exact origins, `scheme://host[:port]`, lower case.
    Origins(Vec<String>),
}

/// What a page may send beyond the CORS-safelisted headers: a JSON body,
/// the token, and what an `EventSource` or an SSE library adds.
const ALLOW_HEADERS: &str = "content-type, x-execd-access-token, last-event-id, cache-control";
const ALLOW_METHODS: &str = "GET, POST, DELETE";
/// Headers of the API's answers a page may read beyond the safelisted
/// ones: the `/logs` cursors.
const EXPOSE_HEADERS: &str = "EXECD-COMMANDS-TAIL-CURSOR, EXECD-COMMANDS-HEAD-CURSOR";
/// How long a browser may reuse a preflight's answer, in seconds.
const MAX_AGE: &str = "600";

impl Cors {
    /// The setting from the flag's values: `*`, or origins such as
    /// `https://app.example.com` or `http://localhost:5173`.
    pub fn parse(origins: &[String]) -> Result<Option<Cors>, String> {
        if origins.is_empty() {
            return Ok(None);
        }
        if origins.iter().any(|o| o == "*") {
            return Ok(Some(Cors::Any));
        }
        let mut list = Vec::with_capacity(origins.len());
        for origin in origins {
            list.push(parse_origin(origin)?);
        }
        Ok(Some(Cors::Origins(list)))
    }

    /// The value of `Access-Control-Allow-Origin` for a request with
    /// these headers, if its origin may read the answer.
    pub fn allowed(&self, headers: &HeaderMap) -> Option<HeaderValue> {
        let origin = headers.get(header::ORIGIN)?;
        match self {
            Cors::Any => Some(HeaderValue::from_static("*")),
            Cors::Origins(list) => {
                let origin_text = origin.to_str().ok()?;
                list.iter()
                    .any(|o| o.eq_ignore_ascii_case(origin_text))
                    .then(|| origin.clone())
            }
        }
    }

    /// The answer to a preflight from an allowed origin.
    pub fn preflight(&self, allow_origin: HeaderValue) -> Response<ResponseBody> {
        let mut response = Response::new(body::empty());
        *response.status_mut() = StatusCode::NO_CONTENT;
        let headers = response.headers_mut();
        self.mark(allow_origin, headers);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(ALLOW_METHODS),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOW_HEADERS),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static(MAX_AGE),
        );
        headers.append(
            header::VARY,
            HeaderValue::from_static(
                "access-control-request-method, access-control-request-headers",
            ),
        );
        response
    }

    /// Lets the page read `response` (any answer, errors included, so it
    /// can show the `{code, message}`).
    pub fn expose(&self, allow_origin: HeaderValue, response: &mut Response<ResponseBody>) {
        let headers = response.headers_mut();
        self.mark(allow_origin, headers);
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSE_HEADERS),
        );
    }

    fn mark(&self, allow_origin: HeaderValue, headers: &mut HeaderMap) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin);
        if matches!(self, Cors::Origins(_)) {
            // The answer depends on who asks: a cache must not hand one
            // origin's answer to another.
            headers.append(header::VARY, HeaderValue::from_static("origin"));
        }
    }
}

/// Whether `req` is a CORS preflight rather than a request of its own.
pub fn is_preflight<B>(req: &Request<B>) -> bool {
    req.method() == Method::OPTIONS
        && req.headers().contains_key(header::ORIGIN)
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// `scheme://host[:port]`, as a browser serializes an origin: http or
/// https, a host, nothing after it.
fn parse_origin(origin: &str) -> Result<String, String> {
    let refuse = |why: &str| {
        Err(format!(
            "--cors-origin {origin:?} {why}; give `*` or an origin such as https://app.example.com"
        ))
    };
    let Some((scheme, rest)) = origin.split_once("://") else {
        return refuse("has no scheme");
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return refuse("is not http or https");
    }
    if rest.is_empty() {
        return refuse("has no host");
    }
    if rest.contains(['/', '?', '#', '@']) || rest.chars().any(|c| c.is_whitespace()) {
        return refuse("is more than an origin (no path, query, user or trailing slash)");
    }
    if HeaderValue::from_str(origin).is_err() {
        return refuse("is not a valid header value");
    }
    Ok(origin.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origins(list: &[&str]) -> Result<Option<Cors>, String> {
        Cors::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    fn with_origin(origin: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        headers
    }

    #[test]
    fn origins_are_exact_and_case_blind() {
        let cors = origins(&["https://App.example.com", "http://localhost:5173"])
            .unwrap()
            .unwrap();
        let allowed = cors.allowed(&with_origin("https://app.example.com"));
        assert_eq!(allowed.unwrap(), "https://app.example.com");
        assert!(
            cors.allowed(&with_origin("http://localhost:5173"))
                .is_some()
        );
        for other in [
            "https://app.example.com.evil.test",
            "http://app.example.com",
            "http://localhost:5174",
            "null",
        ] {
            assert!(cors.allowed(&with_origin(other)).is_none(), "{other}");
        }
        assert!(
            cors.allowed(&HeaderMap::new()).is_none(),
            "no Origin, no CORS"
        );
    }

    #[test]
    fn any_is_a_star_and_none_is_off() {
        let cors = origins(&["https://a.test", "*"]).unwrap().unwrap();
        assert_eq!(cors.allowed(&with_origin("https://b.test")).unwrap(), "*");
        assert!(origins(&[]).unwrap().is_none());
    }

    #[test]
    fn what_is_not_an_origin_is_refused_with_why() {
        for (bad, why) in [
            ("app.example.com", "no scheme"),
            ("ftp://app.example.com", "not http or https"),
            ("https://", "no host"),
            ("https://app.example.com/", "more than an origin"),
            ("https://app.example.com/x", "more than an origin"),
            ("https://user@app.example.com", "more than an origin"),
        ] {
            let err = origins(&[bad]).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
