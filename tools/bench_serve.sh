#!/usr/bin/env bash
# Serving benchmarks of one model file, kiln serve against llama-server when LLAMA_SERVER is
# set (issue 20): start-up to the first token served (cold page cache when DROP_CACHES=1 and
# root, then warm), peak RSS, and 16 streaming clients (256 in / 128 out; then with a
# 200-token shared prefix) through `kiln bench`. One server at a time, kiln first then
# llama-server for each figure, so the two see the same machine within a minute.
#
#   tools/bench_serve.sh MODEL.gguf
#   KILN_BIN=./kiln LLAMA_SERVER=.../llama-server THREADS=2 REQUESTS=32 DROP_CACHES=1
set -euo pipefail
cd "$(dirname "$0")/.."
M=${1:?usage: tools/bench_serve.sh MODEL.gguf}
KILN=${KILN_BIN:-./kiln}
THREADS=${THREADS:-2}
REQUESTS=${REQUESTS:-32}
PORT=${PORT:-18480}
LOG=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$LOG"' EXIT

now() { date +%s.%N; }

# start NAME: launches server NAME (kiln|llama) on $PORT, sets pid
start() {
    if [ "$1" = kiln ]; then
        "$KILN" serve -m "$M" --port "$PORT" -t "$THREADS" --max-seqs 16 >"$LOG/$1.log" 2>&1 &
    else # 16 slots of 1,024 tokens (256 + 200 prefix + 128 fit), continuous batching
        "$LLAMA_SERVER" -m "$M" --port "$PORT" -t "$THREADS" -np 16 -c 16384 >"$LOG/$1.log" 2>&1 &
    fi
    pid=$!
}

stop() {
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=
}

# first_token: seconds from now until a one-token completion comes back (polling meanwhile)
first_token() {
    local t0=$1
    until curl -sf -m 60 "http://127.0.0.1:$PORT/v1/completions" -H 'Content-Type: application/json' \
        -d '{"prompt": "Once upon a time", "max_tokens": 1}' >/dev/null 2>&1; do
        kill -0 "$pid" 2>/dev/null || { echo "server died: $(tail -3 "$LOG"/*.log)" >&2; exit 1; }
        sleep 0.02
    done
    awk -v a="$t0" -v b="$(now)" 'BEGIN{printf "%.2f", b - a}'
}

hwm() { awk '/VmHWM/{printf "%.0f", $2 / 1024}' "/proc/$pid/status"; }

# load NAME [kiln bench options]: the 16-client run; prints "out_tok/s ttft_p50_ms"
load() {
    local name=$1
    shift
    "$KILN" bench --url "http://127.0.0.1:$PORT" --concurrency 16 --requests "$REQUESTS" \
        --input-len 256 --output-len 128 --quiet --out "$LOG/$name" "$@" >/dev/null
    /usr/bin/python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))["summary"]
print("%.1f %.0f %d" % (s["output_tok_per_s"], s["ttft_ms"]["p50"], s["ok"]))' "$LOG/$name/results.json"
}

export KILN_PACK_CACHE="$LOG/packed" # kiln's first start packs and saves; the next ones map
servers=(kiln)
[ -n "${LLAMA_SERVER:-}" ] && servers+=(llama)
echo "## serve: $(basename "$M") ($(du -m "$M" | cut -f1) MiB), -t $THREADS, load $(cut -d' ' -f1-3 /proc/loadavg)"
for s in "${servers[@]}"; do
    cold=n/a first=
    if [ "$s" = kiln ]; then
        t0=$(now) && start "$s" && first="first start (packs) $(first_token "$t0") s, " && stop
    fi
    if [ "${DROP_CACHES:-0}" = 1 ]; then
        sync && echo 3 >/proc/sys/vm/drop_caches
        t0=$(now) && start "$s" && cold=$(first_token "$t0") && stop
    fi
    t0=$(now) && start "$s" && warm=$(first_token "$t0")
    read -r tps ttft ok < <(load "$s-plain")
    read -r tps2 ttft2 ok2 < <(load "$s-prefix" --shared-prefix 200 --groups 1)
    rss=$(hwm)
    stop
    echo "$s: first token after start: ${first}${cold} s cold, ${warm} s warm; 16 clients 256/128: $tps out tok/s, TTFT p50 $ttft ms ($ok ok); 200-token shared prefix: $tps2 out tok/s, TTFT p50 $ttft2 ms ($ok2 ok); peak RSS $rss MiB"
done
