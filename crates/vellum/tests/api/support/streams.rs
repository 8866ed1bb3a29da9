//! A minimal Server-Sent Events reader for stream tests, and the ways the tests open streams.
use std::time::Duration;

use reqwest::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

use crate::support::{API_KEY, TestApp};

/// How long any single wait may take before the test fails (a hang guard, not a measurement).
pub(crate) const PATIENCE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    pub id: i64,
    pub event: String,
    pub data: Value,
}

#[derive(Debug)]
pub(crate) enum Frame {
    Event(Received),
    Comment(String),
}

/// A minimal SSE reader over a streaming response.
pub struct EventStream {
    response: Response,
    buffer: String,
}

impl EventStream {
    pub fn new(response: Response) -> Self {
        assert_eq!(response.status(), StatusCode::OK);
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        assert!(header(CONTENT_TYPE).starts_with("text/event-stream"));
        assert_eq!(header(CACHE_CONTROL), "no-store");
        assert_eq!(
            header(reqwest::header::HeaderName::from_static(
                "x-accel-buffering"
            )),
            "no"
        );
        EventStream {
            response,
            buffer: String::new(),
        }
    }

    /// The next frame, or `None` when the server ended the stream.
    pub(crate) async fn frame(&mut self) -> Option<Frame> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                return Some(parse_frame(&block));
            }
            let chunk = tokio::time::timeout(PATIENCE, self.response.chunk())
                .await
                .expect("the stream stalled")
                .expect("the stream failed")?;
            self.buffer
                .push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        }
    }

    /// The next event, skipping heartbeats.
    pub async fn event(&mut self) -> Received {
        loop {
            match self.frame().await.expect("the stream ended") {
                Frame::Event(event) => return event,
                Frame::Comment(_) => {}
            }
        }
    }

    pub(crate) async fn events(&mut self, count: usize) -> Vec<Received> {
        let mut events = Vec::with_capacity(count);
        for _ in 0..count {
            events.push(self.event().await);
        }
        events
    }
}

pub(crate) fn parse_frame(block: &str) -> Frame {
    let (mut id, mut event, mut data, mut comment) = (None, None, Vec::new(), None);
    for line in block.lines().filter(|line| !line.is_empty()) {
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match name {
            "" => comment = Some(value.to_owned()),
            "id" => id = Some(value.parse::<i64>().expect("a numeric id")),
            "event" => event = Some(value.to_owned()),
            "data" => data.push(value),
            other => panic!("unexpected field {other:?} in {block:?}"),
        }
    }
    match (id, event) {
        (Some(id), Some(event)) => {
            assert_eq!(data.len(), 1, "data is one line: {block:?}");
            Frame::Event(Received {
                id,
                event,
                data: serde_json::from_str(data[0]).expect("data is JSON"),
            })
        }
        _ => Frame::Comment(comment.unwrap_or_else(|| panic!("not a frame: {block:?}"))),
    }
}

pub(crate) fn stream_request(app: &TestApp, path: &str) -> reqwest::RequestBuilder {
    app.client
        .get(app.endpoint(path))
        .header(ACCEPT, "text/event-stream")
}

pub(crate) async fn open(app: &TestApp, path: &str, last_event_id: Option<i64>) -> EventStream {
    let mut request = stream_request(app, path).bearer_auth(API_KEY);
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id.to_string());
    }
    EventStream::new(request.send().await.expect("connect"))
}

/// Every event in the issuer's log, from the JSON listing (paged).
pub(crate) async fn logged_events(app: &TestApp, path: &str) -> Vec<Received> {
    logged_events_paged(app, path, 7).await
}

pub(crate) async fn logged_events_paged(app: &TestApp, path: &str, limit: usize) -> Vec<Received> {
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let (status, page) = app
            .api_get(&format!("{path}?after={after}&limit={limit}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let items = page["items"].as_array().expect("items").clone();
        for item in &items {
            all.push(Received {
                id: item["sequence"].as_i64().expect("sequence"),
                event: item["type"].as_str().expect("type").to_owned(),
                data: json!({
                    "id": item["id"], "type": item["type"],
                    "timestamp": item["timestamp"], "data": item["data"],
                }),
            });
        }
        match items.last() {
            Some(last) if items.len() == limit => after = last["sequence"].as_i64().expect("seq"),
            _ => return all,
        }
    }
}
