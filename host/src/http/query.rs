//! Query strings: a parameter's value, percent-decoded, and cursors.

use hyper::Request;

use super::error::ApiError;

/// Value of query parameter `name`, percent-decoded.
pub fn query_param<B>(req: &Request<B>, name: &str) -> Option<String> {
    let query = req.uri().query()?;
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(key) == name).then(|| percent_decode(value))
    })
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
