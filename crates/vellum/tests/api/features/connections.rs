//! What a slow or idle client can hold: headers must arrive within `http.header_read_timeout`
//! (which also ends idle connections), a body and its answer within `http.request_timeout`, and
//! at most `http.max_connections` connections are served at once.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{API_KEY, TestApp, spawn_app_with};

const WAIT: Duration = Duration::from_secs(20);

fn address(app: &TestApp) -> String {
    app.url.trim_start_matches("http://").to_owned()
}

/// Reads until the server closes the connection (bounded); returns what it sent.
async fn until_closed(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let started = Instant::now();
    loop {
        let left = WAIT.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) => return String::from_utf8_lossy(&received).into_owned(),
            Ok(Ok(read)) => received.extend_from_slice(&buffer[..read]),
            Err(_) => panic!("the server kept the connection open for {WAIT:?}"),
        }
    }
}

#[tokio::test]
async fn clients_that_never_finish_their_headers_or_stay_idle_are_disconnected() {
    let app = spawn_app_with(json!({"http": {"header_read_timeout": "1s"}})).await;
    let mut stalled = Vec::new();
    for index in 0..60 {
        let mut stream = TcpStream::connect(address(&app)).await.expect("connect");
        match index % 3 {
            // Half a request line and a header, then nothing.
            0 => stream
                .write_all(b"GET /health HTTP/1.1\r\nHost: vellum\r\nX-Slow: ")
                .await
                .expect("write"),
            // A complete request, then the connection is kept alive and left idle.
            1 => stream
                .write_all(b"GET /health HTTP/1.1\r\nHost: vellum\r\n\r\n")
                .await
                .expect("write"),
            // A bare TCP connection that never sends a byte.
            _ => {}
        }
        stalled.push((index % 3, stream));
    }
    let started = Instant::now();
    for (kind, mut stream) in stalled {
        let received = until_closed(&mut stream).await;
        if kind == 1 {
            assert!(received.starts_with("HTTP/1.1 200"), "{received}");
        }
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    let health = app.client.get(app.endpoint("/health")).send().await;
    assert_eq!(health.expect("GET").status(), StatusCode::OK);
}

/// A request whose body stops halfway: 408 in the surface's own error format, and the
/// connection is free again.
#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_408_in_the_surfaces_error_format() {
    let app = spawn_app_with(json!({"http": {"request_timeout": "1s"}})).await;
    for (request, member, code) in [
        (
            format!(
                "POST /api/v1/profiles HTTP/1.1\r\nHost: vellum\r\nAuthorization: Bearer {API_KEY}\r\n\
                 Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\": "
            ),
            "code",
            "request_timeout",
        ),
        (
            "POST /token HTTP/1.1\r\nHost: vellum\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ngrant_type="
                .to_owned(),
            "error",
            "invalid_request",
        ),
    ] {
        let mut stream = TcpStream::connect(address(&app)).await.expect("connect");
        stream.write_all(request.as_bytes()).await.expect("write");
        let received = until_closed(&mut stream).await;
        assert!(received.starts_with("HTTP/1.1 408"), "{received}");
        let body = received.split("\r\n\r\n").nth(1).expect("a body");
        let body: Value = serde_json::from_str(body).expect("JSON");
        assert_eq!(body[member], code, "{body}");
    }
}

#[tokio::test]
async fn at_the_connection_cap_a_new_connection_waits_until_one_ends() {
    let app =
        spawn_app_with(json!({"http": {"max_connections": 2, "header_read_timeout": "60s"}})).await;
    let first = TcpStream::connect(address(&app)).await.expect("connect");
    let second = TcpStream::connect(address(&app)).await.expect("connect");
    // The kernel completes the third connection, but nobody serves it.
    let waiting = app
        .client
        .get(app.endpoint("/health"))
        .timeout(Duration::from_millis(1500))
        .send()
        .await;
    assert!(waiting.is_err(), "served beyond the cap: {waiting:?}");
    drop(first);
    let served = app
        .client
        .get(app.endpoint("/health"))
        .timeout(WAIT)
        .send()
        .await
        .expect("served once a connection ended");
    assert_eq!(served.status(), StatusCode::OK);
    drop(second);
}
