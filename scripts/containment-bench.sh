#!/usr/bin/env bash
# Containment figures:
#  1. teardown of a run whose server ignores SIGTERM and leaves a daemonized (setsid, double
#     fork) child, for several grace periods: the time from the client's exit to the end of
#     the run, read from the run's events.jsonl;
#  2. `panther-host clean` with 10 SIGKILLed runs behind it (3 processes each).
# Usage: cargo build --workspace && scripts/containment-bench.sh   (HOST=... for another build)
set -euo pipefail
host="${HOST:-$(dirname "$0")/../target/debug/panther-host}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

teardown_experiment() { # grace
  cat > "$work/t$1.toml" <<TOML
[experiment]
name = "t$1"
timeout = "60s"

[network]
plugin = "localhost"
stop_grace = "$1"

[[service]]
name = "server"
command = ["/bin/sh", "-c", "(setsid sleep 600 </dev/null >/dev/null 2>&1 &); trap '' TERM; echo up; while true; do sleep 0.05; done"]
ready = { log = "up" }

[[service]]
name = "client"
role = "client"
command = ["true"]
depends_on = ["server"]
TOML
}

echo "teardown (client exit -> run finished), 5 runs each:"
printf '%-8s %s\n' grace teardown_ms
# The host gives a service at least 3 s (its STOP_GRACE): a smaller `stop_grace` is raised.
for grace in 3s 5s; do
  teardown_experiment "$grace"
  figures=()
  for _ in 1 2 3 4 5; do
    "$host" run -q --output "$work/results" "$work/t$grace.toml" >/dev/null 2>&1 || true
    run=$(ls -d "$work/results/t$grace"/* | sort | tail -1)
    figures+=("$(python3 - "$run/events.jsonl" <<'PY'
import json, sys
events = [json.loads(l) for l in open(sys.argv[1])]
exited = next(e["elapsed_ms"] for e in events if e["event"] == "service_exited" and e.get("service") == "client")
done = next(e["elapsed_ms"] for e in events if e["event"] == "experiment_finished")
print(done - exited)
PY
)")
  done
  printf '%-8s %s\n' "$grace" "${figures[*]}"
done

cat > "$work/long.toml" <<TOML
[experiment]
name = "long"
timeout = "600s"

[[service]]
name = "server"
command = ["/bin/sh", "-c", "(setsid sleep 600 </dev/null >/dev/null 2>&1 &); echo up; exec sleep 601"]
ready = { log = "up" }

[[service]]
name = "client"
role = "client"
command = ["sleep", "602"]
depends_on = ["server"]
TOML
echo
echo "clean with 10 killed runs behind it, 3 rounds:"
for round in 1 2 3; do
  pids=()
  for i in $(seq 10); do
    "$host" run -q --output "$work/long$round-$i" "$work/long.toml" >/dev/null 2>&1 &
    pids+=($!)
  done
  # Wait until every run has its three processes (server, daemon, client).
  for _ in $(seq 300); do
    n=$( (grep -las "PANTHER_RUN_ID=long-" /proc/[0-9]*/environ 2>/dev/null || true) | wc -l)
    [ "$n" -ge 30 ] && break
    sleep 0.1
  done
  kill -9 "${pids[@]}"
  wait "${pids[@]}" 2>/dev/null || true
  start=$(date +%s%N)
  ended=$("$host" clean --network localhost | grep -c "ended process" || true)
  stop=$(date +%s%N)
  echo "round $round: ended $ended processes in $(( (stop - start) / 1000000 )) ms"
done
