#!/usr/bin/env bash
# CPU cost of the resource_metrics sampler at 10 Hz: runs the same 20-second experiment
# (a service tree of 10 processes) with and without the sampler and prints the CPU time the
# host process used in each case, as GNU time measures it.
# Usage: cargo build --release --workspace && scripts/sampler-cost.sh
set -euo pipefail
host="${HOST:-$(dirname "$0")/../target/release/panther-host}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
seconds=20
experiment() { # name, extra
  cat > "$work/$1.toml" <<TOML
[experiment]
name = "$1"

[[service]]
name = "tree"
command = ["/bin/sh", "-c", "for i in 1 2 3 4 5 6 7 8 9; do sleep $seconds & done; wait"]
role = "client"
$2
TOML
}
experiment bare ""
experiment sampled $'[[execution]]\nplugin = "resource_metrics"\nsampling_rate = 10.0'
printf '%-10s %12s %12s %12s\n' run user_s system_s cpu_percent_of_one_core
for name in bare sampled; do
  /usr/bin/time -f "%U %S %e" -o "$work/$name.time" "$host" run -q --output "$work/results" "$work/$name.toml"
  read -r user sys wall < "$work/$name.time"
  pct=$(echo "scale=3; ($user + $sys) * 100 / $wall" | bc)
  printf '%-10s %12s %12s %12s\n' "$name" "$user" "$sys" "$pct"
done
