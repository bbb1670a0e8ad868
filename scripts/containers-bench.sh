#!/usr/bin/env bash
# What a tool carried into a container adds to the container's bring-up: the echo server in
# `docker_compose`, from deployment to ready (TCP), untraced and under strace, from the
# runs' events.jsonl; each configuration run N times in a row, so the first run (nothing
# prepared before) and the next ones (anything a run left behind) can be compared.
# The image is built from local files: the workspace's echo programs and the libraries
# `ldd` names for them, on `FROM scratch`.
#
# Usage: cargo build --workspace && scripts/containers-bench.sh [runs]   (HOST=… for another build)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
host="${HOST:-$(pwd)/target/debug/panther-host}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
docker info > /dev/null 2>&1 || { echo "no Docker engine answers" >&2; exit 2; }

context="$work/image"
mkdir -p "$context/rootfs/usr/local/bin" "$context/rootfs/bin"
cp tests/fixtures/docker/echo/Dockerfile "$context/"
cp target/debug/echo-server target/debug/echo-client "$context/rootfs/usr/local/bin/"
cp /bin/sleep "$context/rootfs/bin/"
for binary in target/debug/echo-server target/debug/echo-client /bin/sleep; do
  for library in $(ldd "$binary" | grep -o '/[^ ]*'); do
    mkdir -p "$context/rootfs$(dirname "$library")"
    cp -L "$library" "$context/rootfs$library"
  done
done

experiment() { # name execution
  cat > "$work/$1.toml" <<TOML
[experiment]
name = "$1"
timeout = "60s"

[network]
plugin = "docker_compose"
image = "$context"

[[service]]
name = "server"
command = ["/usr/local/bin/echo-server", "--host", "0.0.0.0", "--port", "7000"]
ready = { tcp = 7000, timeout = "20s" }

[[service]]
name = "client"
command = ["/usr/local/bin/echo-client", "server:7000", "hello"]
depends_on = ["server"]
role = "client"

$2
TOML
}
experiment untraced ""
experiment strace $'[[execution]]\nplugin = "strace"'

echo "| configuration | run | deploy → ready (ms) | whole run (ms) |"
echo "|---|---|---|---|"
for name in untraced strace; do
  for i in $(seq "$runs"); do
    start=$(date +%s%N)
    (cd "$work" && "$host" run -q "$name.toml" > /dev/null)
    whole=$(( ($(date +%s%N) - start) / 1000000 ))
    run=$(ls -td "$work"/results/"$name"/*/ | head -1)
    ready=$(python3 -c '
import json, sys
for line in open(sys.argv[1] + "events.jsonl"):
    e = json.loads(line)
    if e.get("event") == "service_ready" and e.get("service") == "server":
        print(e["after_ms"])
        break
' "$run")
    echo "| $name | $i | $ready | $whole |"
  done
done
