#!/usr/bin/env bash
# Plugin loading, whole processes, with hyperfine: `list` of the shipped plugins and of 100
# plugin files with a warm manifest cache and a cold one, `run -q` of a one-service
# experiment running /bin/true against /bin/true alone, and the floor (process start-up).
# Usage: cargo build --release --workspace && scripts/loading-bench.sh
set -euo pipefail
release="$(cd "$(dirname "$0")/../target/release" && pwd)"
host="$release/panther-host"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export PANTHER_CACHE_DIR="$work/cache"
unset PANTHER_PLUGIN_PATH PANTHER_PROBE
mkdir -p "$work/empty"
# 100 plugin files: copies of json, one per folder (the first is used, 99 are shadowed).
dirs=()
for i in $(seq -w 0 99); do
  mkdir -p "$work/hundred/$i"
  cp "$release/libpanther_plugin_json.so" "$work/hundred/$i/"
  dirs+=(--plugin-dir "$work/hundred/$i")
done
printf '%s\n' '[experiment]' 'name = "true"' '' '[[service]]' 'name = "true"' \
  'command = ["/bin/true"]' 'role = "client"' > "$work/true.toml"
hundred="$host list --no-default-plugins ${dirs[*]}"
cold_cache="rm -rf $work/cold"
opts=(--warmup 5 --min-runs 50 -N --export-markdown "$work/report.md" --style basic)

hyperfine "${opts[@]}" \
  -n "start-up (--version)" "$host --version" \
  -n "list, empty folder" "$host list --no-default-plugins --plugin-dir $work/empty" \
  -n "list, shipped plugins, warm" "$host list" \
  -n "list, 100 files, warm" "$hundred"
grep '^|' "$work/report.md"
hyperfine "${opts[@]}" --prepare "$cold_cache" \
  -n "list, shipped plugins, cold" "env PANTHER_CACHE_DIR=$work/cold $host list" \
  -n "list, 100 files, cold" "env PANTHER_CACHE_DIR=$work/cold $hundred"
grep '^|' "$work/report.md"
(cd "$work" && "$host" run -q --output "$work/results" true.toml)
hyperfine "${opts[@]}" \
  -n "/bin/true" "/bin/true" \
  -n "run -q of /bin/true, warm" "$host run -q --output $work/results $work/true.toml"
grep '^|' "$work/report.md"
