#!/usr/bin/env python3
"""Prints the criterion medians of the `hit` bench as a markdown table, cachemere beside peers."""
import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")


def median(group, bench):
    path = root / group / bench / "new" / "estimates.json"
    return json.loads(path.read_text())["median"]["point_estimate"]


ROWS = [
    ("hit", "u64 argument", "u64_cachemere", "u64_cached", "cached `#[cached(max_size)]`"),
    ("hit", "`&str` (cachemere) vs `String` (cached)", "str_cachemere_&str", "str_cached_String", "cached, String argument"),
    ("hit", "`String` argument built by the caller", "str_cachemere_String", "str_cached_String", "cached, String argument"),
    ("hit", "`async fn`, u64", "async_cachemere", "async_cached", "cached async"),
    ("hit", "u64 with `ttl` and a tag", "u64_ttl_tag_cachemere", "u64_cached", "cached (no ttl, no tags)"),
    ("miss_populate", "miss + populate, u64", "u64_cachemere", "u64_cached", "cached"),
]
REFERENCES = [
    ("hit", "u64_quick_cache_raw_get", "quick_cache raw `get`"),
    ("hit", "u64_moka_raw_get", "moka raw `get`"),
    ("hit", "u64_hashmap_foldhash_floor", "`HashMap` + foldhash, unsynchronised (floor)"),
]

print("| operation | cachemere (ns) | peer | peer (ns) | ratio |")
print("|---|---|---|---|---|")
for group, label, ours, theirs, peer in ROWS:
    a, b = median(group, ours), median(group, theirs)
    print(f"| {label} | {a:.1f} | {peer} | {b:.1f} | {a / b:.2f}× |")
for group, bench, label in REFERENCES:
    print(f"| reference: {label} | | | {median(group, bench):.1f} | |")
