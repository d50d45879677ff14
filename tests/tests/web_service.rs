//! The example web service (`examples/axum_service.rs`) on the memory backend, started on a
//! free loopback port and driven with a real HTTP client: caching headers on a miss and a hit,
//! `304` for a matching `If-None-Match`, an update making the next read a miss, `/caches` in its
//! documented shape, and `/metrics` with the documented counters after a known sequence. (The
//! Redis-backed service is tested in `web_service_redis.rs`, another process: an invalidation
//! of a tag reaches every remote the process has used, and a stopped Redis would queue it.)

#[path = "../../examples/axum_service.rs"]
#[allow(dead_code, unreachable_pub)]
mod service;
mod web;

use web::*;

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
            "local_hits",
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
