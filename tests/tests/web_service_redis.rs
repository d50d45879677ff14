//! The example web service (`examples/axum_service.rs`) on Redis: `/health` reporting a
//! stopped redis-server, and recovering.

#[path = "../../examples/axum_service.rs"]
#[allow(dead_code, unreachable_pub)]
mod service;
mod web;

use web::*;

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
