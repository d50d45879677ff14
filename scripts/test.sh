#!/usr/bin/env bash
# Runs every check and test of the workspace: formatting, clippy (all targets, all features,
# warnings denied), and all tests (unit, integration, trybuild UI cases, doctests).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo is not installed: install a Rust toolchain (https://rustup.rs), then run this again." >&2
    exit 1
fi

echo "== cargo fmt --all --check"
cargo fmt --all --check

echo "== cargo clippy --workspace --all-targets --all-features -- -D warnings"
cargo clippy --workspace --all-targets --all-features -- -D warnings

echo "== cargo test --workspace --all-features"
cargo test --workspace --all-features
