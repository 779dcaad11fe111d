#!/usr/bin/env bash
# tools/bench_quant.sh: prompt processing and generation (B=1) of every quantization mix on the
# Llama-3.2-1B shape, kiln against llama-bench on the same file (made by `kiln model quantize`
# from one F16 model), measured alternately in rounds so that both see the same machine; per
# mix the median of each and the median and spread (min-max) of the per-round ratios, and
# generation as weight bytes read per second, a fraction of the machine's read bandwidth.
# Run by `make bench KILN_BENCH_SET=quant LLAMA_BENCH=.../llama-bench` (tools/bench.sh).
#
#   KILN_BENCH_MIXES="q4_k_m q8_0"  the mixes (default: every llama-quantize mix Kiln writes
#                                   that llama-quantize makes without an importance matrix)
#   KILN_BENCH_ROUNDS=3             rounds (each runs every mix once with each program)
#   KILN_BENCH_PP=512 KILN_BENCH_TG=128   prompt and generated tokens
#   KILN_BENCH_BW=GB/s              read bandwidth to compare with (default: measured here with
#                                   ../shared/perf/limits.c, 2 threads)
set -euo pipefail
cd "$(dirname "$0")/.."
KILN=${KILN_BIN:-./kiln}
DIR=${KILN_BENCH_MODELS:-${XDG_CACHE_HOME:-$HOME/.cache}/kiln/bench}
THREADS=${THREADS:-2}
MIXES=${KILN_BENCH_MIXES:-"q2_k q3_k_s q3_k_m q3_k_l q4_0 q4_1 q5_0 q5_1 q4_k_s q4_k_m q5_k_s q5_k_m q6_k q8_0 iq4_nl iq4_xs"}
ROUNDS=${KILN_BENCH_ROUNDS:-3}
PP=${KILN_BENCH_PP:-512}
TG=${KILN_BENCH_TG:-128}
mkdir -p "$DIR"
L1B="--dim 2048 --layers 16 --heads 32 --kv-heads 8 --ffn 8192 --vocab 128256 --tied --rope-theta 500000"
src="$DIR/l1b-f16.gguf"
# shellcheck disable=SC2086
[ -s "$src" ] || "$KILN" model make --out "$src" $L1B --type f16 >/dev/null

BW=${KILN_BENCH_BW:-}
if [ -z "$BW" ] && [ -f "${KILN_SHARED:-../shared}/perf/limits.c" ]; then
    [ -x "$DIR/limits" ] ||
        gcc -O2 -march=native -fopenmp -o "$DIR/limits" "${KILN_SHARED:-../shared}/perf/limits.c" -lm
    BW=$("$DIR/limits" | awk '/mem read/ && /threads=2/ {for (i = 1; i < NF; i++) if ($i == "median=") print $(i + 1)}')
fi
echo "## quantization mixes, 1B shape: pp$PP and tg$TG (B=1), kiln vs llama-bench, $ROUNDS alternating rounds, -t $THREADS, read bandwidth ${BW:-?} GB/s"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for mix in $MIXES; do
    f="$DIR/l1b-$mix.gguf"
    [ -s "$f" ] || "$KILN" model quantize "$src" "$f" "$mix" --threads "$THREADS" >/dev/null
    "$KILN" model inspect "$f" | awk '/^total tensor bytes/ {print $4}' > "$tmp/$mix.bytes"
done

run_kiln() { # file -> "pp tg"
    "$KILN" model bench -m "$1" -p "$PP" -n "$TG" -r 1 -t "$THREADS" |
        awk '/^pp/ {pp = $2} /^tg/ {tg = $2} END {print pp, tg}'
}
run_llama() {
    "$LLAMA_BENCH" -m "$1" -p "$PP" -n "$TG" -r 1 -t "$THREADS" -o csv 2>/dev/null |
        tail -n 2 | awk -F, '{gsub(/"/, ""); v[NR] = $(NF-1)} END {print v[1], v[2]}'
}
for r in $(seq "$ROUNDS"); do
    for mix in $MIXES; do
        f="$DIR/l1b-$mix.gguf"
        if [ -z "${LLAMA_BENCH:-}" ]; then
            run_kiln "$f" >> "$tmp/$mix.k"
        elif [ $((r % 2)) = 1 ]; then # who goes first alternates
            run_kiln "$f" >> "$tmp/$mix.k" && run_llama "$f" >> "$tmp/$mix.l"
        else
            run_llama "$f" >> "$tmp/$mix.l" && run_kiln "$f" >> "$tmp/$mix.k"
        fi
    done
done

med() { sort -g | awk '{v[NR] = $1} END {printf "%.2f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
pct() { awk -v s="$1" -v b="${BW:-0}" 'BEGIN {if (b > 0) printf "%.0f%%", 100 * s / b; else printf "?"}'; }
spread() { sort -g | awk 'NR == 1 {lo = $1} {hi = $1} END {printf "%.2f-%.2f", lo, hi}'; }
printf "| mix | GB | kiln pp | llama pp | pp ratio (spread) | kiln tg | llama tg | tg ratio (spread) | kiln tg GB/s (%% of bw) | llama (%% of bw) |\n"
printf "|---|---|---|---|---|---|---|---|---|---|\n"
for mix in $MIXES; do
    gb=$(awk '{printf "%.3f", $1 / 1e9}' "$tmp/$mix.bytes")
    kpp=$(cut -d' ' -f1 "$tmp/$mix.k" | med) ktg=$(cut -d' ' -f2 "$tmp/$mix.k" | med)
    kgbs=$(awk -v g="$gb" -v t="$ktg" 'BEGIN {printf "%.1f", g * t}')
    kfrac=$(pct "$kgbs")
    if [ -s "$tmp/$mix.l" ]; then
        lpp=$(cut -d' ' -f1 "$tmp/$mix.l" | med) ltg=$(cut -d' ' -f2 "$tmp/$mix.l" | med)
        paste -d' ' "$tmp/$mix.k" "$tmp/$mix.l" | awk '{print $1 / $3, $2 / $4}' > "$tmp/$mix.r"
        rpp="$(cut -d' ' -f1 "$tmp/$mix.r" | med) ($(cut -d' ' -f1 "$tmp/$mix.r" | spread))"
        rtg="$(cut -d' ' -f2 "$tmp/$mix.r" | med) ($(cut -d' ' -f2 "$tmp/$mix.r" | spread))"
        lfrac=$(pct "$(awk -v g="$gb" -v t="$ltg" 'BEGIN {print g * t}')")
    else
        lpp=- ltg=- rpp=- rtg=- lfrac=-
    fi
    echo "| $mix | $gb | $kpp | $lpp | $rpp | $ktg | $ltg | $rtg | $kgbs ($kfrac) | $lfrac |"
done
