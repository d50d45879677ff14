#!/usr/bin/env bash
# Runs every check and test of the workspace: formatting, clippy (all targets, all features,
# warnings denied; and the runtime with each feature alone), and all tests (unit, integration, trybuild UI cases, doctests). Installs
# redis-server (Debian/Ubuntu) when missing: the Redis tests start their own servers.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo is not installed: install a Rust toolchain (https://rustup.rs), then run this again." >&2
    exit 1
fi

# The Redis tests start their own redis-server processes (never the machine's own server).
if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
        echo "== installing redis-server and redis-cli (Debian/Ubuntu packages)"
        sudo=""
        if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
        $sudo apt-get update -q
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q redis-server
    else
        echo "The tests need redis-server and redis-cli on PATH: install Redis, then run this again." >&2
        exit 1
    fi
fi

echo "== cargo fmt --all --check"
cargo fmt --all --check

echo "== cargo clippy --workspace --all-targets --all-features -- -D warnings"
cargo clippy --workspace --all-targets --all-features -- -D warnings

# Each feature on its own (and none): a feature that only compiles beside another, or code that
# is dead without one, fails here rather than in a user's build.
for feature in "" remote moka redis json bincode serde metrics http; do
    echo "== cargo clippy -p cachemere ${feature:+--features $feature} -- -D warnings"
    cargo clippy -p cachemere ${feature:+--features "$feature"} -- -D warnings
done

# Remote caches in a crate without the `remote` feature: one error per cache, each the feature
# check naming the feature (generated code must not add errors of its own).
echo "== tests/without_remote_feature: only the feature checks fail"
without="$(mktemp)"
if cargo build --quiet --manifest-path tests/without_remote_feature/Cargo.toml \
    --target-dir target/without_remote_feature >"$without" 2>&1; then
    echo "tests/without_remote_feature compiled: the feature checks did not fire" >&2
    exit 1
fi
errors="$(grep -cE '^error\[' "$without" || true)"
feature_errors="$(grep -cE '^error\[E0277\]: `backend = "(redis|remote)"` needs the `(redis|remote)` feature' "$without" || true)"
if [ "$errors" -ne 4 ] || [ "$feature_errors" -ne 4 ]; then
    cat "$without" >&2
    echo "expected exactly the 4 feature-check errors, got $errors errors ($feature_errors feature checks)" >&2
    exit 1
fi
rm -f "$without"

echo "== cargo test --workspace --all-features"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cargo test --workspace --all-features 2>&1 | tee "$log"

# One closing line over every test binary and doctest run above.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
