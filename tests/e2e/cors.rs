//! `--cors-origin`: what a browser needs to let a page from another origin
//! use the API, through the real binary: preflights answered before the
//! token check, every answer (errors included) readable by the page, the
//! `/logs` cursors exposed, and nothing of it without the flag or for an
//! origin not named.

use serde_json::json;

use crate::harness::*;

const APP: &str = "https://app.example.test";
const TOKEN: &str = "cors-token";

/// Every value of `name` in the headers, joined as one list.
fn all(headers: &[(String, String)], name: &str) -> String {
    headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join(", ")
}

async fn preflight(host: &Host, path: &str, origin: &str, method: &str) -> Response {
    host.send(
        "OPTIONS",
        path,
        &[
            ("Origin", origin),
            ("Access-Control-Request-Method", method),
            (
                "Access-Control-Request-Headers",
                "content-type, x-execd-access-token",
            ),
            // A browser never sends the token with a preflight.
            ("X-EXECD-ACCESS-TOKEN", ""),
        ],
        b"",
    )
    .await
    .finish()
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_origin_may_run_follow_and_read_errors_from_a_browser() {
    let host = Host::start(&["--cors-origin", APP, "--access-token", TOKEN]).await;

    // The preflight of a POST /command with a JSON body and the token.
    let answer = preflight(&host, "/command", APP, "POST").await;
    assert_eq!(answer.status, 204, "{}", answer.text());
    assert_eq!(answer.header("access-control-allow-origin"), Some(APP));
    let methods = all(&answer.headers, "access-control-allow-methods");
    assert!(
        methods.contains("post") && methods.contains("delete"),
        "{methods}"
    );
    let allowed = all(&answer.headers, "access-control-allow-headers");
    for needed in ["content-type", "x-execd-access-token", "last-event-id"] {
        assert!(allowed.contains(needed), "{needed} in {allowed}");
    }
    assert!(all(&answer.headers, "vary").contains("origin"));
    assert_eq!(
        answer.header("access-control-allow-credentials"),
        None,
        "no cookies"
    );

    // The stream itself, as fetch() from the page would open it.
    let body = json!({ "command": "echo from-a-page", "background": true }).to_string();
    let stream = host
        .send("POST", "/command", &[("Origin", APP)], body.as_bytes())
        .await;
    assert_eq!(stream.status, 200);
    assert_eq!(stream.header("access-control-allow-origin"), Some(APP));
    let id = stream.finish().await.text();
    let id = id
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .and_then(|v| v["text"].as_str().map(str::to_string))
        .expect("the init event names the command");
    host.wait_finished(&id).await;

    // A resume with EventSource's header, and /logs with its cursor exposed.
    let mut resumed = host
        .send(
            "GET",
            &format!("/command/{id}/resume"),
            &[("Origin", APP), ("Last-Event-ID", "0")],
            b"",
        )
        .await;
    assert_eq!(resumed.header("access-control-allow-origin"), Some(APP));
    let events = logged(&resumed.events().await, 0);
    let out: Vec<&str> = events
        .iter()
        .filter(|e| e.kind() == "stdout")
        .map(|e| e.text())
        .collect();
    assert_eq!(out, ["from-a-page"]);
    let logs = host
        .send(
            "GET",
            &format!("/command/{id}/logs?cursor=0"),
            &[("Origin", APP)],
            b"",
        )
        .await
        .finish()
        .await;
    assert_eq!(logs.status, 200, "{}", logs.text());
    assert_eq!(logs.header("access-control-allow-origin"), Some(APP));
    let exposed = all(&logs.headers, "access-control-expose-headers");
    assert!(
        exposed.contains("execd-commands-tail-cursor"),
        "the page can read the cursor: {exposed}"
    );

    // An error the page can read: the contract's body, with the header.
    let refused = host
        .send(
            "GET",
            "/command/status/nope",
            &[("Origin", APP), ("X-EXECD-ACCESS-TOKEN", "wrong")],
            b"",
        )
        .await
        .finish()
        .await;
    refused.assert_error(401, "UNAUTHORIZED");
    assert_eq!(refused.header("access-control-allow-origin"), Some(APP));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_origins_and_hosts_without_the_flag_get_no_cors() {
    let host = Host::start(&["--cors-origin", APP, "--access-token", TOKEN]).await;
    for origin in [
        "https://evil.example.test",
        "https://app.example.test.evil.test",
    ] {
        // Not answered as a preflight: the token check refuses it.
        let answer = preflight(&host, "/command", origin, "POST").await;
        answer.assert_error(401, "UNAUTHORIZED");
        assert_eq!(
            answer.header("access-control-allow-origin"),
            None,
            "{origin}"
        );
        let ping = host
            .send("GET", "/ping", &[("Origin", origin)], b"")
            .await
            .finish()
            .await;
        assert_eq!(ping.status, 200);
        assert_eq!(ping.header("access-control-allow-origin"), None, "{origin}");
    }

    let plain = Host::start(&[]).await;
    let answer = preflight(&plain, "/command", APP, "POST").await;
    answer.assert_error(405, "METHOD_NOT_ALLOWED");
    assert_eq!(answer.header("access-control-allow-origin"), None);
    let ping = plain
        .send("GET", "/ping", &[("Origin", APP)], b"")
        .await
        .finish()
        .await;
    assert_eq!(ping.header("access-control-allow-origin"), None);

    let any = Host::start(&["--cors-origin", "*"]).await;
    let ping = any
        .send("GET", "/ping", &[("Origin", "http://localhost:5173")], b"")
        .await
        .finish()
        .await;
    assert_eq!(ping.header("access-control-allow-origin"), Some("*"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_is_not_an_origin_is_refused_at_start() {
    for bad in ["app.example.test", "https://app.example.test/", "ftp://x"] {
        let refused = Host::try_start(&["--cors-origin", bad]).await;
        let err = refused.err().unwrap_or_else(|| panic!("{bad} accepted"));
        assert!(err.contains("--cors-origin"), "{bad}: {err}");
    }
}
