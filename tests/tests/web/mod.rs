//! What the web-service tests share: starting the example service, and reading its responses.

#![allow(dead_code, unused_imports)]

pub(crate) use std::time::{Duration, Instant};

pub(crate) use cachemere_tests::redis_harness::RedisServer;
pub(crate) use reqwest::StatusCode;
pub(crate) use reqwest::header::{AGE, CACHE_CONTROL, ETAG, IF_NONE_MATCH};
pub(crate) use serde_json::Value;

pub(crate) use crate::service::{self, DATABASE, Storage, User};

/// Held by each test of a binary: they count reads of the one `DATABASE`.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Serves `storage`'s app on a free loopback port; returns its base URL.
pub async fn start(storage: Storage) -> String {
    service::install_metrics().expect("the recorder installs");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let address = listener.local_addr().expect("bound");
    tokio::spawn(async move {
        axum::serve(listener, service::app(storage))
            .await
            .expect("the service runs");
    });
    format!("http://{address}")
}

pub fn header(response: &reqwest::Response, name: impl reqwest::header::AsHeaderName) -> String {
    response
        .headers()
        .get(name)
        .map(|value| value.to_str().expect("text").to_owned())
        .unwrap_or_default()
}

/// `GET url`, with `If-None-Match: if_none_match` when given.
pub async fn get(
    client: &reqwest::Client,
    url: &str,
    if_none_match: Option<&str>,
) -> reqwest::Response {
    let mut request = client.get(url);
    if let Some(tag) = if_none_match {
        request = request.header(IF_NONE_MATCH, tag);
    }
    request.send().await.expect("response")
}

/// The body of `GET url`, as text.
pub async fn text(client: &reqwest::Client, url: &str) -> String {
    get(client, url, None).await.text().await.expect("text")
}

/// `PUT url` with a new name.
pub async fn put_name(client: &reqwest::Client, url: &str, name: &str) -> reqwest::Response {
    client
        .put(url)
        .json(&serde_json::json!({ "name": name }))
        .send()
        .await
        .expect("response")
}

/// `max-age` and `Age` of a response.
pub fn freshness(response: &reqwest::Response) -> (u64, u64) {
    let max_age = header(response, CACHE_CONTROL)
        .rsplit_once("max-age=")
        .and_then(|(_, n)| n.parse().ok())
        .expect("max-age");
    let age = header(response, AGE).parse().expect("an integer Age");
    (max_age, age)
}

/// The value of the sample of `name` whose labels include every one of `labels` in
/// Prometheus text, if there is one.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            (metric == name).then_some((rest.trim_end_matches('}'), value))
        })
        .find(|(series_labels, _)| {
            labels.iter().all(|(key, value)| {
                series_labels
                    .split(',')
                    .any(|pair| pair == format!("{key}=\"{value}\""))
            })
        })
        .and_then(|(_, value)| value.parse().ok())
}

/// `GET /health` until it answers `status`, for at most `within`.
pub async fn health_until(
    client: &reqwest::Client,
    base: &str,
    status: StatusCode,
    within: Duration,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let response = client
            .get(format!("{base}/health"))
            .send()
            .await
            .expect("response");
        let got = response.status();
        let body: Value = response.json().await.expect("json");
        if got == status {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "health stayed {got} (wanted {status}): {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
