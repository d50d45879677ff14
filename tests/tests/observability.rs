//! What a `tracing` subscriber sees: one `compute` span per computation (cache, mode, outcome,
//! duration), none on a hit, an event per invalidation, a rate-limited warning per backend
//! error; and never an argument, a key or a tag unless the function opts in with
//! `trace_args = true`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use cachemere::remote::{Remote, RemoteStore, StoreFuture};
use cachemere::{BackendError, cached};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// A span or an event as recorded: its name, target, fields (as text) and parent span's name.
#[derive(Clone, Debug, Default)]
struct Seen {
    name: String,
    target: String,
    fields: BTreeMap<String, String>,
    parent: Option<String>,
}

#[derive(Clone, Default)]
struct Capture {
    spans: Arc<Mutex<Vec<(u64, Seen)>>>,
    events: Arc<Mutex<Vec<Seen>>>,
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut seen = Seen {
            name: attrs.metadata().name().to_owned(),
            target: attrs.metadata().target().to_owned(),
            parent: ctx.current_span().metadata().map(|m| m.name().to_owned()),
            ..Seen::default()
        };
        attrs.record(&mut Fields(&mut seen.fields));
        self.lock_spans().push((id.into_u64(), seen));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        let mut spans = self.lock_spans();
        if let Some((_, seen)) = spans.iter_mut().rev().find(|(i, _)| *i == id.into_u64()) {
            values.record(&mut Fields(&mut seen.fields));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut seen = Seen {
            name: event.metadata().name().to_owned(),
            target: event.metadata().target().to_owned(),
            parent: ctx.current_span().metadata().map(|m| m.name().to_owned()),
            ..Seen::default()
        };
        event.record(&mut Fields(&mut seen.fields));
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(seen);
    }
}

impl Capture {
    fn lock_spans(&self) -> std::sync::MutexGuard<'_, Vec<(u64, Seen)>> {
        self.spans.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The `compute` spans of `cache`.
    fn computations(&self, cache: &str) -> Vec<BTreeMap<String, String>> {
        self.lock_spans()
            .iter()
            .filter(|(_, s)| {
                s.name == "compute" && s.fields.get("cache").map(String::as_str) == Some(cache)
            })
            .map(|(_, s)| s.fields.clone())
            .collect()
    }

    fn events_of(&self, target: &str) -> Vec<Seen> {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|e| e.target == target)
            .cloned()
            .collect()
    }

    /// Everything recorded, as one text.
    fn everything(&self) -> String {
        format!(
            "{:?}{:?}",
            self.lock_spans(),
            self.events.lock().unwrap_or_else(PoisonError::into_inner)
        )
    }
}

/// Runs `body` with a capturing subscriber as this thread's default.
fn captured(body: impl FnOnce()) -> Capture {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    tracing::subscriber::with_default(subscriber, body);
    capture
}

/// A distinctive argument, so that any trace of it is found.
const SECRET: u64 = 987_654_321;

#[cached(name = "obs-plain")]
fn plain(id: u64) -> Result<u64, String> {
    tracing::info!("inside the body");
    if id == 0 {
        return Err("no zero".into());
    }
    if id == 1 {
        panic!("the origin panicked");
    }
    Ok(id + 1)
}

#[test]
fn a_computation_is_one_span_with_its_outcome_and_no_arguments() {
    let capture = captured(|| {
        assert_eq!(plain(SECRET), Ok(SECRET + 1));
        assert_eq!(plain(SECRET), Ok(SECRET + 1), "a hit");
        assert!(plain(0).is_err());
        let panicked = std::panic::catch_unwind(|| plain(1));
        assert!(panicked.is_err());
        assert_eq!(plain::refresh(SECRET), Ok(SECRET + 1));
    });
    let spans = capture.computations("obs-plain");
    let outcomes: Vec<(&str, &str)> = spans
        .iter()
        .map(|f| (f["mode"].as_str(), f["outcome"].as_str()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("lookup", "value"),
            ("lookup", "rejected"),
            ("lookup", "panicked"),
            ("refresh", "value")
        ],
        "one span per computation, none for the hit: {spans:?}"
    );
    for fields in &spans {
        let duration: f64 = fields["duration_ms"].parse().expect("a number");
        assert!(duration >= 0.0);
        assert!(!fields.contains_key("args"), "{fields:?}");
    }
    let inside = capture
        .events
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter(|e| e.fields.get("message").map(String::as_str) == Some("inside the body"))
        .map(|e| e.parent.clone())
        .collect::<Vec<_>>();
    assert_eq!(
        inside.first(),
        Some(&Some("compute".to_owned())),
        "the body's events nest in the span"
    );
    let everything = capture.everything();
    assert!(
        !everything.contains(&SECRET.to_string()),
        "no argument is recorded by default: {everything}"
    );
}

#[cached(name = "obs-opted-in", trace_args = true, skip(token))]
fn opted_in(id: u64, label: &str, token: &str) -> String {
    format!("{id}{label}{token}")
}

#[test]
fn trace_args_records_the_key_arguments_only() {
    let capture = captured(|| {
        opted_in(SECRET, "tagged", "hunter2");
    });
    let spans = capture.computations("obs-opted-in");
    assert_eq!(spans.len(), 1);
    let args = &spans[0]["args"];
    assert!(
        args.contains(&SECRET.to_string()) && args.contains("tagged"),
        "{args}"
    );
    assert!(
        !capture.everything().contains("hunter2"),
        "a skipped argument is not part of the key and is not recorded"
    );
}

#[test]
fn trace_args_never_writes_into_the_applications_span() {
    use tracing_subscriber::filter::filter_fn;
    // A filter that leaves our spans out: the current span is then the application's.
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(
        capture
            .clone()
            .with_filter(filter_fn(|meta| meta.target() != "cachemere::compute")),
    );
    tracing::subscriber::with_default(subscriber, || {
        let request = tracing::info_span!("request", args = tracing::field::Empty);
        request.in_scope(|| opted_in(SECRET + 1, "filtered", "token"));
    });
    let spans = capture.lock_spans();
    let request = spans
        .iter()
        .find(|(_, s)| s.name == "request")
        .expect("the application's span");
    assert!(!request.1.fields.contains_key("args"), "{:?}", request.1);
    drop(spans);
    assert!(!capture.everything().contains(&(SECRET + 1).to_string()));
}

#[cached(name = "obs-async")]
async fn slow(id: u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(if id == 2 { 10_000 } else { 1 })).await;
    id
}

#[test]
fn async_computations_are_spans_too_and_a_dropped_one_says_cancelled() {
    let capture = captured(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            assert_eq!(slow(1).await, 1);
            let dropped = tokio::time::timeout(Duration::from_millis(20), slow(2)).await;
            assert!(dropped.is_err());
        });
    });
    let outcomes: Vec<String> = capture
        .computations("obs-async")
        .iter()
        .map(|f| f["outcome"].clone())
        .collect();
    assert_eq!(outcomes, ["value", "cancelled"]);
}

#[cached(name = "obs-invalidated", tags = ["obs-user:{id}"])]
fn tagged(id: u64) -> u64 {
    id
}

#[test]
fn invalidations_are_events_without_keys_or_tags() {
    let capture = captured(|| {
        tagged(SECRET);
        tagged::invalidate(SECRET);
        tagged::invalidate(SECRET);
        cachemere::invalidate_tag(&format!("obs-user:{SECRET}"));
        tagged::cache_clear();
    });
    let events: Vec<(String, String, String)> = capture
        .events_of("cachemere::invalidate")
        .into_iter()
        .map(|e| {
            (
                e.fields["cache"].clone(),
                e.fields["scope"].clone(),
                e.fields["outcome"].clone(),
            )
        })
        .collect();
    let own = |scope: &str, outcome: &str| {
        (
            "obs-invalidated".to_owned(),
            scope.to_owned(),
            outcome.to_owned(),
        )
    };
    assert!(events.contains(&own("key", "removed")), "{events:?}");
    assert!(events.contains(&own("key", "absent")), "{events:?}");
    assert!(events.contains(&own("clear", "applied")), "{events:?}");
    // Applied, or queued when another test's failing remote is in use: a tag reaches every
    // remote in use.
    assert!(
        events
            .iter()
            .any(|(cache, scope, _)| cache == "*" && scope == "tag"),
        "{events:?}"
    );
    assert!(!capture.everything().contains(&SECRET.to_string()));
}

/// A store whose every operation fails with an error naming a URL with a password.
struct Failing;

fn failure<T>() -> StoreFuture<T> {
    Box::pin(async {
        Err(BackendError::Other(
            "could not reach redis://:hunter2@10.0.0.5:6379 (refused)".into(),
        ))
    })
}

impl RemoteStore for Failing {
    fn get_many(&self, _: Vec<String>) -> StoreFuture<Vec<Option<Vec<u8>>>> {
        failure()
    }
    fn set(&self, _: String, _: Vec<u8>, _: Duration) -> StoreFuture<()> {
        failure()
    }
    fn compare_and_set(&self, _: String, _: Vec<u8>, _: Vec<u8>, _: Duration) -> StoreFuture<bool> {
        failure()
    }
    fn delete(&self, _: String) -> StoreFuture<bool> {
        failure()
    }
    fn count_prefix(&self, _: String) -> StoreFuture<u64> {
        failure()
    }
    fn describe(&self) -> String {
        "failing store".into()
    }
}

fn failing() -> Remote {
    static REMOTE: std::sync::OnceLock<Remote> = std::sync::OnceLock::new();
    REMOTE
        .get_or_init(|| Remote::builder(Failing).build())
        .clone()
}

#[cached(name = "obs-remote", backend = "remote", remote = failing)]
fn remote_value(id: u64) -> u64 {
    id * 2
}

#[test]
fn a_backend_error_is_one_warning_without_secrets_and_the_call_returns() {
    let capture = captured(|| {
        for _ in 0..5 {
            assert_eq!(remote_value(SECRET), SECRET * 2);
        }
    });
    let warnings: Vec<Seen> = capture
        .events
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter(|e| e.fields.get("cache").map(String::as_str) == Some("obs-remote"))
        .cloned()
        .collect();
    assert_eq!(warnings.len(), 1, "rate-limited: {warnings:?}");
    assert_eq!(warnings[0].fields["operation"], "get");
    assert!(
        warnings[0].fields["error"].contains("refused"),
        "{:?}",
        warnings[0]
    );
    let everything = capture.everything();
    assert!(!everything.contains("hunter2"), "{everything}");
    assert!(!everything.contains(&SECRET.to_string()), "{everything}");
}
