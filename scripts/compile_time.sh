#!/usr/bin/env bash
# Build time of a crate with 200 cached functions: with cachemere, with the `cached` crate, and
# as plain functions. Dependencies are built first; what is timed is rebuilding the generated
# crate alone (macro expansion, type checking and code generation of the 200 functions).
# Incremental compilation is off, so each rebuild compiles the crate in full (with it on, touching
# an unchanged file mostly re-validates cached results). Prints a markdown table of the median
# of three rebuilds (debug profile).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
work="$root/target/compile-time"
functions="${FUNCTIONS:-200}"
mkdir -p "$work"
export CARGO_TARGET_DIR="$work/target"
export CARGO_INCREMENTAL=0

generate() { # name, dependency line, attribute, second argument type, its use
    local name=$1 dependency=$2 attribute=$3 arg_type=$4 use=$5
    local dir="$work/$name"
    mkdir -p "$dir/src"
    cat > "$dir/Cargo.toml" <<TOML
[package]
name = "compile-time-$name"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
$dependency

[workspace]
TOML
    {
        echo "//! $functions functions ($name)."
        for i in $(seq 1 "$functions"); do
            [ -n "$attribute" ] && echo "$attribute"
            echo "pub fn function_$i(id: u64, name: $arg_type) -> Option<u64> { Some(id + $use as u64 + $i) }"
        done
    } > "$dir/src/lib.rs"
}

generate cachemere "cachemere = { path = \"$root/runtime\" }" "#[cachemere::cached(maxsize = 100)]" "&str" "name.len()"
generate cached "cached = \"4.1.0\"" "#[cached::proc_macro::cached(max_size = 100)]" "String" "name.len()"
generate plain "" "" "&str" "name.len()"

rebuild_seconds() { # crate dir
    touch "$1/src/lib.rs"
    local started ended
    started=$(date +%s%N)
    cargo build --quiet --manifest-path "$1/Cargo.toml"
    ended=$(date +%s%N)
    awk -v ns="$((ended - started))" 'BEGIN { printf "%.2f\n", ns / 1e9 }'
}

echo "| $functions annotated functions, full rebuild of the crate alone (debug, not incremental) | seconds (median of 3) |"
echo "|---|---|"
for name in plain cachemere cached; do
    dir="$work/$name"
    cargo build --quiet --manifest-path "$dir/Cargo.toml" # dependencies
    times=$(for _ in 1 2 3; do rebuild_seconds "$dir"; done | sort -n)
    median=$(echo "$times" | sed -n 2p)
    echo "| $name | $median |"
done
