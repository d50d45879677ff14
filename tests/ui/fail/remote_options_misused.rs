use cachemere::cached;

fn sessions() -> cachemere::remote::Remote {
    unimplemented!()
}

#[cached(backend = "redis", maxsize = 100)]
fn bounded_by_count(id: u64) -> u64 {
    id
}

#[cached(version = 2)]
fn versioned_in_memory(id: u64) -> u64 {
    id
}

#[cached(remote = sessions)]
fn remote_without_remote_backend(id: u64) -> u64 {
    id
}

struct Repo;

impl Repo {
    #[cached(backend = "redis")]
    fn unnamed_method(&self, id: u64) -> u64 {
        id
    }
}

fn main() {}
