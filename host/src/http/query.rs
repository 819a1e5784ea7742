//! Query strings: a parameter's value, percent-decoded, and cursors.

use hyper::Request;

use super::error::ApiError;

/// Value of query parameter `name`, percent-decoded (the first, if it
/// is given more than once).
pub fn query_param<B>(req: &Request<B>, name: &str) -> Option<String> {
    query_values(req, name).next()
}

/// Every value of query parameter `name`, percent-decoded, in order.
fn query_values<'a, B>(req: &'a Request<B>, name: &'a str) -> impl Iterator<Item = String> + 'a {
    req.uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(move |pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key) == name).then(|| percent_decode(value))
        })
}

/// The cursor in query parameter `name`, if given: one value, or the same
/// value more than once. Two that differ are a 400: which one the client
/// meant is not ours to guess.
pub fn cursor_param<B>(req: &Request<B>, name: &str) -> Result<Option<u64>, ApiError> {
    one_cursor(query_values(req, name), &format!("`{name}`"))
}

/// The cursor in header `name` (`Last-Event-ID`), as [`cursor_param`].
pub fn cursor_header<B>(req: &Request<B>, name: &str) -> Result<Option<u64>, ApiError> {
    let values = req
        .headers()
        .get_all(name)
        .iter()
        .map(|value| value.to_str())
        .collect::<Result<Vec<&str>, _>>()
        .map_err(|_| ApiError::bad_cursor(format!("{name} is not text")))?;
    one_cursor(values, name)
}

fn one_cursor(
    values: impl IntoIterator<Item = impl AsRef<str>>,
    what: &str,
) -> Result<Option<u64>, ApiError> {
    let mut found: Option<u64> = None;
    for value in values {
        let this = cursor(value.as_ref(), what)?;
        if found.is_some_and(|before| before != this) {
            return Err(ApiError::bad_cursor(format!(
                "{what} is given more than once, with different values"
            )));
        }
        found = Some(this);
    }
    Ok(found)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push((hi * 16 + lo) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a cursor: a non-negative integer, decimal digits only (no sign,
/// as the spec's pattern says).
pub fn cursor(value: &str, what: &str) -> Result<u64, ApiError> {
    let digits = value.trim();
    let parsed = if digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse::<u64>().ok()
    } else {
        None
    };
    parsed.ok_or_else(|| {
        ApiError::bad_cursor(format!(
            "{what} must be a non-negative integer, not {value:?}"
        ))
    })
}
