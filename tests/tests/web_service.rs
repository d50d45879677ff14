//! The example web service (`examples/axum_service.rs`), started on a free loopback port and
//! driven with a real HTTP client: caching headers on a miss and a hit, `304` for a matching
//! `If-None-Match`, an update making the next read a miss, `/caches` in its documented shape,
//! `/metrics` with the documented counters after a known sequence, and `/health` reporting a
//! stopped redis-server.

#[path = "../../examples/axum_service.rs"]
#[allow(dead_code, unreachable_pub)]
mod service;

use std::time::{Duration, Instant};

use cachemere_tests::redis_harness::RedisServer;
use reqwest::StatusCode;
use reqwest::header::{AGE, CACHE_CONTROL, ETAG, IF_NONE_MATCH};
use serde_json::Value;
use service::{DATABASE, Storage, User};

/// Held by each test: both count reads of the one `DATABASE`.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Serves `storage`'s app on a free loopback port; returns its base URL.
async fn start(storage: Storage) -> String {
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

fn header(response: &reqwest::Response, name: impl reqwest::header::AsHeaderName) -> String {
    response
        .headers()
        .get(name)
        .map(|value| value.to_str().expect("text").to_owned())
        .unwrap_or_default()
}

/// `GET url`, with `If-None-Match: if_none_match` when given.
async fn get(
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
async fn text(client: &reqwest::Client, url: &str) -> String {
    get(client, url, None).await.text().await.expect("text")
}

/// `PUT url` with a new name.
async fn put_name(client: &reqwest::Client, url: &str, name: &str) -> reqwest::Response {
    client
        .put(url)
        .json(&serde_json::json!({ "name": name }))
        .send()
        .await
        .expect("response")
}

/// `max-age` and `Age` of a response.
fn freshness(response: &reqwest::Response) -> (u64, u64) {
    let max_age = header(response, CACHE_CONTROL)
        .rsplit_once("max-age=")
        .and_then(|(_, n)| n.parse().ok())
        .expect("max-age");
    let age = header(response, AGE).parse().expect("an integer Age");
    (max_age, age)
}

/// The value of the sample of `name` whose labels include every one of `labels` in
/// Prometheus text, if there is one.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_backed_service_speaks_http_caching_and_reports_its_cache() {
    let _serial = SERIAL.lock().await;
    let base = start(Storage::Memory).await;
    let client = reqwest::Client::new();
    let url = format!("{base}/users/7");
    let reads = DATABASE.reads();

    // A miss: computed, with headers from the function's policy (ttl = "5m").
    let first = get(&client, &url, None).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(header(&first, "x-cache"), "MISS");
    // The TTL started with the computation (the database takes 5 ms): `Age` is that, rounded
    // up, and `max-age` counts from the same start, so a cache keeps it 299 s more.
    let (max_age, age) = freshness(&first);
    assert_eq!(header(&first, CACHE_CONTROL), "private, max-age=300");
    assert!((1..60).contains(&age), "Age {age}");
    assert_eq!(max_age, 300);
    let etag = header(&first, ETAG);
    assert!(
        etag.len() == 34 && etag.starts_with('"') && etag.ends_with('"'),
        "a strong ETag: {etag}"
    );
    let user: User = first.json().await.expect("a user");
    assert_eq!((user.id, user.version), (7, 1));
    assert_eq!(DATABASE.reads(), reads + 1);

    // A hit: the same representation, not computed again.
    let second = get(&client, &url, None).await;
    assert_eq!(second.status(), StatusCode::OK);
    assert_eq!(header(&second, "x-cache"), "HIT");
    assert_eq!(header(&second, ETAG), etag);
    let (max_age, age) = freshness(&second);
    assert!((1..60).contains(&age), "the entry's age, rounded up: {age}");
    assert_eq!(
        max_age, 300,
        "max-age counts from the computation; Age says how much is used"
    );
    assert_eq!(DATABASE.reads(), reads + 1);

    // Revalidation: 304 without a body for the same ETag, weak or strong; 200 for another.
    let not_modified = get(&client, &url, Some(&etag)).await;
    assert_eq!(not_modified.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(header(&not_modified, ETAG), etag);
    let (max_age, age) = freshness(&not_modified);
    assert!(max_age == 300 && age >= 1, "{max_age} {age}");
    assert!(not_modified.bytes().await.expect("body").is_empty());
    let weak = get(&client, &url, Some(&format!("\"other\", W/{etag}"))).await;
    assert_eq!(weak.status(), StatusCode::NOT_MODIFIED);
    let other = get(&client, &url, Some("\"not-it\"")).await;
    assert_eq!(other.status(), StatusCode::OK);
    assert_eq!(DATABASE.reads(), reads + 1, "all of those were hits");

    // An update invalidates the user's tag: the next read is a miss with the new row.
    let update = put_name(&client, &url, "Ada").await;
    assert_eq!(update.status(), StatusCode::OK);
    let update: Value = update.json().await.expect("json");
    assert_eq!(update["invalidation"], "applied");
    let after = get(&client, &url, Some(&etag)).await;
    assert_eq!(
        after.status(),
        StatusCode::OK,
        "the old ETag no longer matches"
    );
    assert_eq!(header(&after, "x-cache"), "MISS");
    assert_ne!(header(&after, ETAG), etag);
    let user: User = after.json().await.expect("a user");
    assert_eq!((user.name.as_str(), user.version), ("Ada", 2));
    assert_eq!(DATABASE.reads(), reads + 2);

    // A user that does not exist: 404, and `None` is not cached.
    let missing = client
        .get(format!("{base}/users/5000"))
        .send()
        .await
        .expect("response");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    // So far on `users`: 4 hits (the hit, both 304s, the other ETag's 200) and 3 misses
    // (user 7 twice, user 5000 once).
    let caches: Value = client
        .get(format!("{base}/caches"))
        .send()
        .await
        .expect("response")
        .json()
        .await
        .expect("json");
    let users = caches
        .as_array()
        .expect("an array")
        .iter()
        .find(|report| report["name"] == "users")
        .expect("the users cache is listed");
    let info = &users["info"];
    let mut fields: Vec<&str> = info
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "circuit_open",
            "compute_time_secs",
            "currsize",
            "errors",
            "evictions",
            "fail_safe_activations",
            "hit_ratio",
            "hits",
            "maxsize",
            "misses",
            "pending_invalidations",
            "refreshes_failed",
            "refreshes_started",
            "refreshes_succeeded",
            "stale_served"
        ],
        "the documented shape"
    );
    assert_eq!(info["hits"], 4);
    assert_eq!(info["misses"], 3);
    assert_eq!(info["hit_ratio"], 4.0 / 7.0);
    assert_eq!(info["maxsize"], 10_000);
    assert_eq!(info["currsize"], 1);
    assert_eq!(info["errors"], 0);
    assert!(info["compute_time_secs"].as_f64().expect("a float") > 0.0);

    let metrics = text(&client, &format!("{base}/metrics")).await;
    let users = [("cache", "users")];
    let get = |name: &str, labels: &[(&str, &str)]| {
        sample(&metrics, name, labels).unwrap_or_else(|| panic!("{name} {labels:?} in {metrics}"))
    };
    assert_eq!(
        get(
            "cachemere_hits_total",
            &[("cache", "users"), ("level", "local")]
        ),
        4.0
    );
    assert_eq!(get("cachemere_misses_total", &users), 3.0);
    assert_eq!(get("cachemere_entries", &users), 1.0);
    assert_eq!(get("cachemere_max_entries", &users), 10_000.0);
    assert_eq!(get("cachemere_evictions_total", &users), 0.0);
    assert_eq!(
        get(
            "cachemere_compute_duration_seconds_count",
            &[("cache", "users"), ("outcome", "value")]
        ),
        2.0
    );
    assert_eq!(
        get(
            "cachemere_compute_duration_seconds_count",
            &[("cache", "users"), ("outcome", "rejected")]
        ),
        1.0,
        "the unknown user's None"
    );
    assert!(
        get(
            "cachemere_invalidations_total",
            &[("cache", "*"), ("scope", "tag"), ("outcome", "applied")]
        ) >= 1.0
    );

    // `cache_clear` starts `cache_info()` over; the metrics go on counting from where they
    // were (a miss and a hit after it make 4 misses and 5 hits).
    service::user_in_memory::cache_clear().await;
    assert_eq!(service::user_in_memory::cache_info().hits, 0);
    for expected in ["MISS", "HIT"] {
        let response = client.get(&url).send().await.expect("response");
        assert_eq!(header(&response, "x-cache"), expected);
    }
    let metrics = text(&client, &format!("{base}/metrics")).await;
    assert_eq!(
        sample(
            &metrics,
            "cachemere_hits_total",
            &[("cache", "users"), ("level", "local")]
        ),
        Some(5.0)
    );
    assert_eq!(
        sample(&metrics, "cachemere_misses_total", &[("cache", "users")]),
        Some(4.0)
    );
    assert_eq!(
        sample(
            &metrics,
            "cachemere_invalidations_total",
            &[
                ("cache", "users"),
                ("scope", "clear"),
                ("outcome", "applied")
            ]
        ),
        Some(1.0)
    );
}

/// `GET /health` until it answers `status`, for at most `within`.
async fn health_until(
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_backed_service_reports_a_stopped_server_and_recovers() {
    let _serial = SERIAL.lock().await;
    let mut server = RedisServer::start().expect("redis-server starts");
    cachemere::redis::RedisConfig::new(server.url())
        .prefix("web-service-test")
        .timeout(Duration::from_millis(300))
        .circuit_breaker(3, Duration::from_millis(300))
        .install()
        .expect("the remote installs");
    let base = start(Storage::Redis).await;
    let client = reqwest::Client::new();
    let url = format!("{base}/users/500");

    let first = get(&client, &url, None).await;
    assert_eq!(header(&first, "x-cache"), "MISS");
    assert_eq!(header(&first, CACHE_CONTROL), "private, max-age=300");
    let second = get(&client, &url, None).await;
    assert_eq!(header(&second, "x-cache"), "HIT");
    assert_eq!(header(&first, ETAG), header(&second, ETAG));

    let healthy = health_until(&client, &base, StatusCode::OK, Duration::from_secs(5)).await;
    assert_eq!(healthy["ready"], true);
    let remote = &healthy["remotes"][0];
    assert_eq!(remote["circuit"]["state"], "closed");
    assert_eq!(remote["pending_invalidations"], 0);
    assert!(
        remote["store"]
            .as_str()
            .expect("text")
            .contains(&server.port().to_string())
    );

    // Redis stops: the update's invalidation is queued (202), reads still answer (computed,
    // never the replaced row), and health says what is wrong.
    server.kill().expect("redis-server stops");
    let update = put_name(&client, &url, "Grace").await;
    assert_eq!(update.status(), StatusCode::ACCEPTED);
    let update: Value = update.json().await.expect("json");
    assert_eq!(update["invalidation"], "queued");
    let during = client.get(&url).send().await.expect("response");
    assert_eq!(during.status(), StatusCode::OK);
    assert_eq!(header(&during, "x-cache"), "MISS");
    let user: User = during.json().await.expect("a user");
    assert_eq!((user.name.as_str(), user.version), ("Grace", 2));
    // Another user: its lookup fails (an error counted) and it is computed.
    let other = client
        .get(format!("{base}/users/501"))
        .send()
        .await
        .expect("response");
    assert_eq!(other.status(), StatusCode::OK);
    assert_eq!(header(&other, "x-cache"), "MISS");

    let unhealthy = health_until(
        &client,
        &base,
        StatusCode::SERVICE_UNAVAILABLE,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(unhealthy["ready"], false);
    let remote = &unhealthy["remotes"][0];
    assert!(remote["pending_invalidations"].as_u64().expect("a count") >= 1);
    assert!(
        remote["last_error"]["message"].is_string(),
        "the last error is reported: {remote}"
    );

    // Redis is back: the invalidation lands, health is ready again, and the row is the new one.
    server.restart().expect("redis-server restarts");
    let healthy = health_until(&client, &base, StatusCode::OK, Duration::from_secs(30)).await;
    assert_eq!(healthy["remotes"][0]["pending_invalidations"], 0);
    let after = client.get(&url).send().await.expect("response");
    let user: User = after.json().await.expect("a user");
    assert_eq!((user.name.as_str(), user.version), ("Grace", 2));

    let metrics = text(&client, &format!("{base}/metrics")).await;
    let shared = [("cache", "users-shared"), ("level", "remote")];
    assert!(sample(&metrics, "cachemere_hits_total", &shared).is_some_and(|hits| hits >= 1.0));
    assert!(
        sample(
            &metrics,
            "cachemere_errors_total",
            &[("cache", "users-shared")]
        )
        .is_some_and(|errors| errors >= 1.0),
        "errors while Redis was down are counted: {metrics}"
    );
    assert!(
        sample(
            &metrics,
            "cachemere_invalidations_total",
            &[("cache", "*"), ("scope", "tag"), ("outcome", "queued")]
        )
        .is_some_and(|queued| queued >= 1.0)
    );
    assert_eq!(
        sample(&metrics, "cachemere_remote_pending_invalidations", &[]),
        Some(0.0)
    );
    assert!(
        sample(&metrics, "cachemere_remote_errors_total", &[]).is_some_and(|errors| errors >= 1.0)
    );
}
