//! Helper signatures with warnings denied: `key = expr` with `skip`, remote async helpers with
//! a skipped argument a tag names, `Vec<&str>` keys.
#![deny(warnings)]
#![allow(dead_code)]

use cachemere::{SetOutcome, cached};

#[cached(skip(ctx), key = format!("{id}"))]
fn keyed_skip(id: u64, ctx: &str) -> usize {
    ctx.len() + id as usize
}

fn remote() -> cachemere::remote::Remote {
    static REMOTE: std::sync::OnceLock<cachemere::remote::Remote> = std::sync::OnceLock::new();
    REMOTE
        .get_or_init(|| {
            cachemere::remote::Remote::builder(
                cachemere_tests::user_remote::SharedMapStore::default(),
            )
            .prefix("review2")
            .build()
        })
        .clone()
}

#[cached(backend = "remote", remote = remote, skip(conn), tags = ["c:{conn}"])]
async fn remote_tagged(id: u64, conn: &str, ids: Vec<&str>) -> Option<u64> {
    Some(id + conn.len() as u64 + ids.len() as u64)
}

#[test]
fn more_signatures() {
    assert_eq!(keyed_skip::set(1, 10), SetOutcome::Stored);
    assert_eq!(keyed_skip(1, "x"), 10);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        assert_eq!(
            remote_tagged::set(1, "a", vec!["x"], Some(50)).await,
            SetOutcome::Stored
        );
        assert_eq!(remote_tagged(1, "a", vec!["x"]).await, Some(50));
        assert_eq!(remote_tagged::peek(1, "a", vec!["x"]).await, Some(Some(50)));
        cachemere::invalidate_tag("c:a");
        assert_eq!(remote_tagged::peek(1, "a", vec!["x"]).await, None);
        assert_eq!(remote_tagged::refresh(1, "a", vec!["x"]).await, Some(3));
        assert_eq!(
            remote_tagged::call(1, "a", vec!["x"]).await.status,
            cachemere::Status::Hit
        );
    });
}
