use cachemere::cached;

// The key is `id` alone: recording the arguments would log `api_token` too.
#[cached(key = id, key_type = u64, trace_args = true)]
fn account(id: u64, api_token: &str) -> String {
    format!("{id}:{}", api_token.len())
}

fn main() {
    account(1, "hunter2");
}
