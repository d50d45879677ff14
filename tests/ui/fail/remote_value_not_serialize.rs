use cachemere::cached;

#[derive(Clone)]
struct Report {
    lines: Vec<String>,
}

#[cached(backend = "redis", ttl = 60)]
fn report(id: u64) -> Option<Report> {
    Some(Report { lines: vec![id.to_string()] })
}

fn main() {
    let _ = report(1).map(|r| r.lines);
}
