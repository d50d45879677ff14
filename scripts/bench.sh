#!/usr/bin/env bash
# Reproduces every table of BENCHMARKS.md in one run: hit latency beside the peers (criterion),
# allocations per hit, 1 vs 2 threads and a stampede, Redis hits beside raw GETs and `cached`'s
# AsyncRedisCache, and build time of 200 annotated functions.
# The machine is shared: compare the ratios within one run.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== ratios, interleaved rounds"
cargo bench -p cachemere-benches --bench ratios 2>/dev/null
echo
echo "== hit latency (criterion medians)"
cargo bench -p cachemere-benches --bench hit -- --warm-up-time 1 --measurement-time 5 >/dev/null
python3 scripts/criterion_table.py target/criterion
echo
echo "== allocations per hit"
cargo bench -p cachemere-benches --bench allocations 2>/dev/null
echo
echo "== threads and stampede"
cargo bench -p cachemere-benches --bench contention 2>/dev/null
echo
echo "== redis (starts its own redis-server on a free loopback port)"
cargo bench -p cachemere-benches --bench redis 2>/dev/null
echo
echo "== near cache (starts its own redis-server)"
cargo bench -p cachemere-benches --bench near 2>/dev/null
echo
echo "== build time"
./scripts/compile_time.sh
