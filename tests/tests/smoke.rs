use cachemere::cached;
use std::sync::atomic::{AtomicUsize, Ordering};

static CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = 60, maxsize = 100, tags = ["user:{id}"])]
fn user(id: u64, name: &str) -> Result<String, String> {
    CALLS.fetch_add(1, Ordering::SeqCst);
    if id == 0 {
        return Err("zero".into());
    }
    Ok(format!("{id}:{name}"))
}

#[derive(Clone, Hash, PartialEq, Eq)]
struct Repo(u32);

impl Repo {
    #[cached]
    fn get(&self, id: u64) -> Option<u64> {
        Some(self.0 as u64 + id)
    }
}

#[cached]
async fn slow(x: u64) -> u64 {
    x * 2
}

#[test]
fn smoke() {
    assert_eq!(user(1, "a"), Ok("1:a".into()));
    assert_eq!(user(1, "a"), Ok("1:a".into()));
    assert_eq!(CALLS.load(Ordering::SeqCst), 1);
    assert!(user(0, "a").is_err());
    assert!(user(0, "a").is_err());
    assert_eq!(CALLS.load(Ordering::SeqCst), 3);
    println!("{}", user::cache_info());
    let r = Repo(1);
    assert_eq!(r.get(1), Some(2));
    assert_eq!(r.get(1), Some(2));
    println!("{}", Repo::get_cache_info());
    assert!(r.get_invalidate(1));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        assert_eq!(slow(2).await, 4);
        assert_eq!(slow(2).await, 4);
        assert!(slow::invalidate(2).await);
    });
    println!("{:?}", cachemere::caches());
}
