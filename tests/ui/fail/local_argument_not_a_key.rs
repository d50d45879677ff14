use cachemere::cached;

#[derive(serde::Serialize)]
struct Point {
    x: f64,
    y: f64,
}

#[cached(backend = "redis", ttl = 60, local = "10s")]
fn distance(point: &Point) -> f64 {
    (point.x * point.x + point.y * point.y).sqrt()
}

fn main() {
    let _ = distance(&Point { x: 3.0, y: 4.0 });
}
