//! Rejected requests: each gets its 4xx status and the contract's JSON
//! error body `{code, message}`, never a 5xx; and the access token guards
//! every route.

use crate::harness::*;

use std::time::Duration;

use serde_json::json;

async fn post(host: &Host, path: &str, body: &[u8]) -> Response {
    host.send("POST", path, &[], body).await.finish().await
}

/// Runs `echo hi` to its end and returns its id.
async fn finished_command(host: &Host, background: bool) -> String {
    let mut stream = host
        .run(json!({"command": "echo hi", "background": background}))
        .await;
    let id = init_id(&mut stream).await;
    tokio::time::timeout(Duration::from_secs(5), stream.events())
        .await
        .expect("stream ends");
    host.wait_finished(&id).await;
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_bodies_are_400() {
    // With a token: without one, any `uid` is 403 TOKEN_REQUIRED first.
    let host = Host::start(&["--access-token", "t0ken-for-bodies"]).await;
    let dir = TempDir::new("invalid-bodies");
    let marker = dir.0.join("ran");
    let touch = format!("touch {}", marker.display());
    let cases: Vec<(&str, String)> = vec![
        ("malformed JSON", "{\"command\":".to_string()),
        ("not an object", "[1,2]".to_string()),
        ("empty body", String::new()),
        ("no command", "{}".to_string()),
        ("empty command", r#"{"command":""}"#.to_string()),
        ("command not a string", r#"{"command":7}"#.to_string()),
        (
            "negative timeout",
            json!({"command": touch, "timeout": -1}).to_string(),
        ),
        (
            "gid without uid",
            json!({"command": touch, "gid": 5}).to_string(),
        ),
        (
            "missing cwd",
            json!({"command": touch, "cwd": "/no/such/dir"}).to_string(),
        ),
        (
            "uid not a number",
            json!({"command": touch, "uid": "root"}).to_string(),
        ),
        (
            "background not a bool",
            json!({"command": touch, "background": "yes"}).to_string(),
        ),
        (
            "envs not a map",
            json!({"command": touch, "envs": ["A=B"]}).to_string(),
        ),
    ];
    for (what, body) in &cases {
        let resp = post(&host, "/command", body.as_bytes()).await;
        assert!(resp.status < 500, "{what}: {} {}", resp.status, resp.text());
        assert_eq!(resp.status, 400, "{what}: {}", resp.text());
        resp.assert_error(400, "INVALID_REQUEST_BODY");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!marker.exists(), "a rejected request ran its command");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_fields_are_ignored() {
    let host = Host::start(&[]).await;
    let body = json!({"command": "echo ok", "colour": "red", "nested": {"a": 1}});
    let mut stream = host.run(body).await;
    init_id(&mut stream).await;
    let events = tokio::time::timeout(Duration::from_secs(5), stream.events())
        .await
        .expect("stream ends");
    let logged = logged(&events, 0);
    assert_eq!(logged[0].text(), "ok");
    assert_eq!(logged.last().unwrap().kind(), "execution_complete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_default_limit_is_413() {
    let host = Host::start(&[]).await;
    let body = format!("{{\"command\":\"echo {}\"}}", "a".repeat(2 << 20));
    let resp = post(&host, "/command", body.as_bytes()).await;
    resp.assert_error(413, "PAYLOAD_TOO_LARGE");
    // The host still serves afterwards.
    assert_eq!(host.call("GET", "/ping", "").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_configured_limit_is_413() {
    let host = Host::start(&["--max-body-bytes", "100"]).await;
    let body = format!("{{\"command\":\"echo {}\"}}", "a".repeat(180));
    assert!(body.len() >= 190, "{}", body.len());
    let resp = post(&host, "/command", body.as_bytes()).await;
    resp.assert_error(413, "PAYLOAD_TOO_LARGE");

    // A body under the limit is accepted.
    let mut stream = host.run(json!({"command": "echo small"})).await;
    init_id(&mut stream).await;
    let events = tokio::time::timeout(Duration::from_secs(5), stream.events())
        .await
        .expect("stream ends");
    assert_eq!(logged(&events, 0)[0].text(), "small");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_resume_cursors_are_400() {
    let host = Host::start(&[]).await;
    let id = finished_command(&host, false).await;
    // `%2B3` is a literal `+3`: a sign is not a digit.
    for bad in [
        "abc",
        "-1",
        "1.5",
        "",
        "1e3",
        "18446744073709551616",
        "%2B3",
    ] {
        let resp = host
            .call("GET", &format!("/command/{id}/resume?after_eid={bad}"), "")
            .await;
        assert_eq!(resp.status, 400, "after_eid={bad:?}: {}", resp.text());
        resp.assert_error(400, "INVALID_CURSOR");
    }
    for bad in ["x", "-1", "2.0", "+4"] {
        let resp = host
            .send(
                "GET",
                &format!("/command/{id}/resume"),
                &[("Last-Event-ID", bad)],
                b"",
            )
            .await
            .finish()
            .await;
        assert_eq!(resp.status, 400, "Last-Event-ID {bad:?}: {}", resp.text());
        resp.assert_error(400, "INVALID_CURSOR");
    }
    // Twice with different values: which one was meant is not guessed.
    // The same value twice is still one cursor.
    for (query, status) in [
        ("after_eid=1&after_eid=2", 400),
        ("after_eid=0&after_eid=0", 200),
    ] {
        let resp = host
            .call("GET", &format!("/command/{id}/resume?{query}"), "")
            .await;
        assert_eq!(resp.status, status, "{query}: {}", resp.text());
    }
    let headers = host
        .send(
            "GET",
            &format!("/command/{id}/resume"),
            &[("Last-Event-ID", "1"), ("Last-Event-ID", "2")],
            b"",
        )
        .await
        .finish()
        .await;
    headers.assert_error(400, "INVALID_CURSOR");
    // A good cursor on the same command works.
    let resp = host
        .call("GET", &format!("/command/{id}/resume?after_eid=0"), "")
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_logs_cursor_is_400() {
    let host = Host::start(&[]).await;
    let id = finished_command(&host, true).await;
    for bad in ["-3", "abc", "1.5", "%2B3"] {
        let resp = host
            .call("GET", &format!("/command/{id}/logs?cursor={bad}"), "")
            .await;
        assert_eq!(resp.status, 400, "cursor={bad:?}: {}", resp.text());
        resp.assert_error(400, "INVALID_CURSOR");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_framing_is_400() {
    let host = Host::start(&[]).await;
    let body = json!({"command": "echo hi"}).to_string();
    post(&host, "/command?framing=fancy", body.as_bytes())
        .await
        .assert_error(400, "INVALID_QUERY");
    let id = finished_command(&host, false).await;
    host.call(
        "GET",
        &format!("/command/{id}/resume?after_eid=0&framing=fancy"),
        "",
    )
    .await
    .assert_error(400, "INVALID_QUERY");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_of_unknown_id_is_404() {
    let host = Host::start(&[]).await;
    host.call("GET", "/command/no-such-id/resume?after_eid=0", "")
        .await
        .assert_error(404, "COMMAND_NOT_FOUND");
    host.call("GET", "/command/no-such-id/resume", "")
        .await
        .assert_error(404, "COMMAND_NOT_FOUND");
}

/// Every route, with a body where it takes one.
fn routes(touch: &str) -> Vec<(&'static str, &'static str, String)> {
    vec![
        ("GET", "/ping", String::new()),
        ("POST", "/command", json!({"command": touch}).to_string()),
        ("GET", "/command/status/x", String::new()),
        ("GET", "/command/x/resume", String::new()),
        ("GET", "/command/x/logs", String::new()),
        ("DELETE", "/command?id=x", String::new()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_needs_the_token() {
    let mut host = Host::start(&["--access-token", "s3cret"]).await;
    // Send headers by hand: no automatic token.
    host.token = None;
    let dir = TempDir::new("auth");
    let marker = dir.0.join("ran");
    let touch = format!("touch {}", marker.display());

    let wrong: [&[(&str, &str)]; 5] = [
        &[],
        &[("X-EXECD-ACCESS-TOKEN", "wrong")],
        &[("X-EXECD-ACCESS-TOKEN", "s3cre")],
        &[("X-EXECD-ACCESS-TOKEN", "s3cretX")],
        &[("X-EXECD-ACCESS-TOKEN", "S3CRET")],
    ];
    for (method, path, body) in routes(&touch) {
        for headers in wrong {
            let resp = host
                .send(method, path, headers, body.as_bytes())
                .await
                .finish()
                .await;
            assert_eq!(
                resp.status,
                401,
                "{method} {path} with {headers:?}: {}",
                resp.text()
            );
            resp.assert_error(401, "UNAUTHORIZED");
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!marker.exists(), "an unauthorized POST ran its command");

    // With the right token every route gets past the check.
    let right: &[(&str, &str)] = &[("X-EXECD-ACCESS-TOKEN", "s3cret")];
    let ping = host.send("GET", "/ping", right, b"").await.finish().await;
    assert_eq!(ping.status, 200, "{}", ping.text());
    for (method, path, body) in routes(&touch) {
        let resp = host
            .send(method, path, right, body.as_bytes())
            .await
            .finish()
            .await;
        assert!(
            resp.status != 401 && resp.status < 500,
            "{method} {path} with the token: {} {}",
            resp.status,
            resp.text()
        );
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !marker.exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "authorized POST did not run"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_header_name_is_case_insensitive() {
    let mut host = Host::start(&["--access-token", "s3cret"]).await;
    host.token = None;
    let resp = host
        .send("GET", "/ping", &[("x-execd-access-token", "s3cret")], b"")
        .await
        .finish()
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_configured_means_no_check() {
    let host = Host::start(&[]).await;
    let resp = host
        .send("GET", "/ping", &[("X-EXECD-ACCESS-TOKEN", "anything")], b"")
        .await
        .finish()
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(host.call("GET", "/ping", "").await.status, 200);
}
