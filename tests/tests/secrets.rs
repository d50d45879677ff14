//! A Redis password never leaves the process: not in `/health`, `/metrics` or `/caches` of the
//! example service, nor in any log line, before and after the server fails.

#[path = "../../examples/axum_service.rs"]
#[allow(dead_code, unreachable_pub)]
mod service;

use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use cachemere_tests::redis_harness::RedisServer;
use service::Storage;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

const PASSWORD: &str = "s3cret-pw-4711";

/// Every event's fields, as text.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<String>>);

struct Text<'a>(&'a mut String);

impl Visit for Text<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={value:?}", field.name());
    }
}

impl<S: tracing::Subscriber> Layer<S> for Logs {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut line = String::new();
        event.record(&mut Text(&mut line));
        let mut logs = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        logs.push_str(&line);
        logs.push('\n');
    }
}

async fn body(client: &reqwest::Client, url: String) -> String {
    client
        .get(url)
        .send()
        .await
        .expect("response")
        .text()
        .await
        .expect("text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_password_is_in_no_report_and_no_log() {
    let logs = Logs::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(logs.clone()))
        .expect("the only subscriber of this test binary");

    let mut server = RedisServer::start().expect("redis-server starts");
    server
        .command(&["CONFIG", "SET", "requirepass", PASSWORD])
        .expect("a password is set");
    let url = format!("redis://:{PASSWORD}@127.0.0.1:{}", server.port());
    cachemere::redis::RedisConfig::new(url)
        .prefix("secrets-test")
        .timeout(Duration::from_millis(300))
        .circuit_breaker(2, Duration::from_millis(200))
        .install()
        .expect("the remote installs");
    service::install_metrics().expect("the recorder installs");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let base = format!("http://{}", listener.local_addr().expect("bound"));
    tokio::spawn(async move {
        axum::serve(listener, service::app(Storage::Redis))
            .await
            .expect("the service runs");
    });
    let client = reqwest::Client::new();

    // Working: the password authenticates (a hit proves the store is used).
    body(&client, format!("{base}/users/42")).await;
    let hit = client
        .get(format!("{base}/users/42"))
        .send()
        .await
        .expect("response");
    assert_eq!(hit.headers()["x-cache"], "HIT");

    // Failing: the server is gone, errors are counted, reported and logged.
    server.kill().expect("redis-server stops");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut reports = String::new();
    loop {
        for id in 43..46 {
            body(&client, format!("{base}/users/{id}")).await;
        }
        let health = body(&client, format!("{base}/health")).await;
        if health.contains("\"last_error\":{") || Instant::now() > deadline {
            reports.push_str(&health);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        reports.contains("\"last_error\":{"),
        "the failure is reported: {reports}"
    );
    for path in ["metrics", "caches"] {
        reports.push_str(&body(&client, format!("{base}/{path}")).await);
    }
    assert!(
        reports.contains("cachemere_errors_total"),
        "errors are exported: {reports}"
    );
    assert!(
        reports.contains("127.0.0.1"),
        "the store is named: {reports}"
    );
    assert!(!reports.contains(PASSWORD), "{reports}");
    let logs = logs
        .0
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    assert!(!logs.is_empty(), "the failure is logged");
    assert!(!logs.contains(PASSWORD), "{logs}");
}
