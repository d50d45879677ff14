#!/usr/bin/env bash
# Instructions per call of a cached function (u64 hit, async u64 hit, &str hit, hit with TTL and a tag, miss
# that populates, stale hits: see benches/instructions/src/main.rs), counted by valgrind's callgrind: immune to the noise of a shared machine.
# Builds benches/instructions/ (outside the workspace) in release against this checkout's
# runtime; to compare two commits, run it in a worktree of each. Needs valgrind.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
work="$root/target/instructions"
mkdir -p "$work/src"
cp benches/instructions/src/main.rs "$work/src/main.rs"
cat > "$work/Cargo.toml" <<TOML
[package]
name = "instructions"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
cachemere = { path = "$root/runtime" }

[profile.release]
debug = 1

[workspace]
TOML
cargo build --release --quiet --manifest-path "$work/Cargo.toml"
binary="$work/target/release/instructions"
count() {
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$binary" "$@" 2>&1 |
        sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
echo "| call | instructions per call |"
echo "|---|---|"
for mode in u64 async str tagged miss stale; do
    # The difference of two runs cancels start-up and the first (populating) call.
    small=$(count "$mode" 100000)
    large=$(count "$mode" 200000)
    echo "| $mode | $(( (large - small) / 100000 )) |"
done
