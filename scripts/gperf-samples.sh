#!/usr/bin/env bash
# Samples per CPU-second of gperf_cpu against bare libprofiler on the same program
# (tests/fixtures/programs/gperf_burn.c, ≈ 1.11 s of CPU), with GNU time measuring the CPU
# time in both cases (under the host through examples/time-plugin). Prints a table.
#
# Usage: scripts/gperf-samples.sh [runs]   (after `cargo build --workspace`)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-8}
root=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
libprofiler=$(ldconfig -p | awk '/libprofiler\.so\.0 .*x86-64/ {print $NF; exit}')
[ -n "$libprofiler" ] || { echo "libprofiler not found: apt-get install libgoogle-perftools-dev" >&2; exit 2; }
cc -O1 -g -o "$work/burn" tests/fixtures/programs/gperf_burn.c
(cd examples/time-plugin && CARGO_TARGET_DIR="$root/target/scaffold" cargo build -q)

cat > "$work/e.toml" <<TOML
[experiment]
name = "burn"

[[service]]
name = "burn"
command = ["$work/burn"]
role = "client"

[[execution]]
plugin = "gperf_cpu"

[[execution]]
plugin = "time"
TOML

echo "| run | bare samples | bare CPU s | bare /s | host samples | host CPU s | host /s |"
echo "|---|---|---|---|---|---|---|"
for i in $(seq "$runs"); do
  /usr/bin/time -f "%U %S" -o "$work/t$i" env LD_PRELOAD="$libprofiler" CPUPROFILE="$work/bare$i.prof" "$work/burn" > /dev/null 2>&1
  bare=$(google-pprof --text "$work/burn" "$work/bare$i.prof" 2>/dev/null | awk '/^Total:/ {print $2}')
  bare_cpu=$(awk '{print $1 + $2}' "$work/t$i")
  (cd "$work" && "$root/target/debug/panther-host" run -q e.toml --plugin-dir "$root/target/scaffold/debug" > /dev/null)
  run=$(ls -td "$work"/results/burn/*/ | head -1)
  read -r host host_cpu < <(python3 - "$run" <<'PY'
import json, sys
run = sys.argv[1]
g = json.load(open(run + "monitoring/burn/gperf_cpu.json"))
t = json.load(open(run + "monitoring/burn/time.json"))
print(g["samples"], round(t["user_seconds"] + t["system_seconds"], 2))
PY
)
  awk -v i="$i" -v b="$bare" -v bc="$bare_cpu" -v h="$host" -v hc="$host_cpu" \
    'BEGIN { printf "| %d | %d | %.2f | %.1f | %d | %.2f | %.1f |\n", i, b, bc, b / bc, h, hc, h / hc }'
done
