//! Running `remote_peer`, the second OS process of the Redis tests, and reading what it prints.
//!
//! The binary's path is only known to integration tests (`env!("CARGO_BIN_EXE_remote_peer")`),
//! so they pass it in.

use std::collections::HashMap;
use std::process::Command;

/// Runs `binary` with `args` and `env` (and without the process's own Redis variables);
/// returns its stdout lines as `key=value` maps. Panics, with its output, if it fails.
pub fn run(binary: &str, args: &[&str], env: &[(&str, &str)]) -> Vec<HashMap<String, String>> {
    let mut command = Command::new(binary);
    command
        .args(args)
        .env_remove("CACHEMERE_REDIS_URL")
        .env_remove("CACHEMERE_REDIS_CLUSTER");
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("could not run {binary}: {error}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "remote_peer {args:?} failed ({}): stdout {stdout:?} stderr {:?}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .map(|line| {
            line.split_whitespace()
                .filter_map(|pair| pair.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        })
        .collect()
}

/// [`run`] without extra environment, every line's pairs in one map.
pub fn run_merged(binary: &str, args: &[&str]) -> HashMap<String, String> {
    run(binary, args, &[]).into_iter().flatten().collect()
}
