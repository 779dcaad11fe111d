#!/usr/bin/env bash
# `make bench`: the project's benchmarks, each bounded to a few minutes. KILN_BIN is the
# binary under test. Each section prints its own figures; ratios are against baselines
# measured in the same run.
#
#   KILN_BENCH_MODELS=DIR   where generated models are kept (default ~/.cache/kiln/bench)
#   KILN_BENCH_SET=small|issue|quant   small (default): the 110M shapes; issue: also the
#                           Llama-3.2-1B shapes of issue 4 (1.3 GB each, ~10 s to make);
#                           quant: only the per-mix table of tools/bench_quant.sh (every
#                           quantization mix on the 1B shape against LLAMA_BENCH, alternating
#                           rounds; KILN_BENCH_MIXES, KILN_BENCH_ROUNDS: see that file)
#   LLAMA_BENCH=PATH        a llama-bench binary: run it on the same files and print ratios
#   LLAMA_BATCHED_BENCH=PATH  llama-batched-bench: B=16/32/64 decode against kiln's (issue set)
#   KILN_BENCH_LONG=1       long contexts: prompt and generation at 4k and 16k tokens
#                           (KILN_BENCH_LONG_CTX="4096 16384 32768" for more), against
#                           LLAMA_BATCHED_BENCH when given (~5 min)
#   LLAMA_SERVER=PATH       llama-server: serving figures against kiln serve (issue set, with
#                           KILN_BENCH_SERVE=1: tools/bench_serve.sh, ~10 min; DROP_CACHES=1
#                           as root adds cold-start figures)
set -euo pipefail
cd "$(dirname "$0")/.."
KILN=${KILN_BIN:-./kiln}
DIR=${KILN_BENCH_MODELS:-${XDG_CACHE_HOME:-$HOME/.cache}/kiln/bench}
SET=${KILN_BENCH_SET:-small}
THREADS=${THREADS:-2}
mkdir -p "$DIR"
echo "# kiln benchmarks ($(nproc) cores, -t $THREADS, load $(cut -d' ' -f1-3 /proc/loadavg))"

make_model() { # name, then kiln model make options
    local f="$DIR/$1.gguf"
    shift
    [ -s "$f" ] || "$KILN" model make --out "$f" "$@" >/dev/null
    echo "$f"
}

S110="--dim 768 --layers 12 --heads 12 --kv-heads 12 --ffn 2048 --vocab 32000"
L1B="--dim 2048 --layers 16 --heads 32 --kv-heads 8 --ffn 8192 --vocab 128256 --tied --rope-theta 500000"
if [ "$SET" = quant ]; then
    KILN_BIN="$KILN" KILN_BENCH_MODELS="$DIR" THREADS="$THREADS" tools/bench_quant.sh
    exit
fi
models=("$(make_model m110-f32 $S110 --type f32)" "$(make_model m110-q8_0 $S110 --type q8_0)")
if [ "$SET" = issue ]; then
    for t in q8_0 q4_0 f16; do models+=("$(make_model l1b-$t $L1B --type $t)"); done
fi

# The machine's limits (../shared/perf/limits.c: read bandwidth, FP32 / INT8 dot peaks), at
# the start and the end of the run, so every figure can be read as a fraction of them.
LIMITS_C=${KILN_SHARED:-../shared}/perf/limits.c
limits() {
    [ -f "$LIMITS_C" ] || return 0
    [ -x "$DIR/limits" ] || gcc -O2 -march=native -fopenmp -o "$DIR/limits" "$LIMITS_C" -lm
    echo "## machine limits ($1)"
    "$DIR/limits" | grep 'threads=2'
}
limits start

if [ -n "${KILN_BENCH_KERNELS:-}" ]; then
    echo "## kernels: matmul alone (tests/bench/bench_kernels.c; KILN_BENCH_QUICK=1 for a short run)"
    "$KILN_BENCH_KERNELS" ${KILN_BENCH_QUICK:+--quick}
fi

echo "## kernels: kiln model bench (pp512 / tg128, medians of 3)"
for m in "${models[@]}"; do
    k=$("$KILN" model bench -m "$m" -p 512 -n 128 -r 3 -t "$THREADS" | grep -E '^(pp|tg)')
    kpp=$(echo "$k" | awk '/^pp/{print $2}') ktg=$(echo "$k" | awk '/^tg/{print $2}')
    line="$(basename "$m"): kiln pp512 $kpp tok/s, tg128 $ktg tok/s"
    if [ -n "${LLAMA_BENCH:-}" ]; then
        l=$("$LLAMA_BENCH" -m "$m" -p 512 -n 128 -r 3 -t "$THREADS" -o csv 2>/dev/null | tail -n 2)
        lpp=$(echo "$l" | sed -n 1p | awk -F, '{print $(NF-1)}' | tr -d '"')
        ltg=$(echo "$l" | sed -n 2p | awk -F, '{print $(NF-1)}' | tr -d '"')
        line="$line; llama.cpp $lpp / $ltg; ratio $(awk -v a="$kpp" -v b="$lpp" 'BEGIN{printf "%.2f", a/b}') / $(awk -v a="$ktg" -v b="$ltg" 'BEGIN{printf "%.2f", a/b}')"
    fi
    echo "$line"
done

echo "## engine: batched decoding (B sequences, aggregate tok/s)"
"$KILN" model bench -m "${models[-1]}" -b 1,4,16 -p 64 -n 32 -r 1 -t "$THREADS" | grep '^B='
if [ "$SET" = issue ]; then
    echo "## batched decoding, 1B: B sequences after a 128-token prompt each, 128 steps (tg aggregate tok/s)"
    for t in q8_0 q4_0; do
        m="$DIR/l1b-$t.gguf"
        "$KILN" model bench -m "$m" -b 16,32,64 -p 128 -n 128 -r 1 -t "$THREADS" | grep '^B=' |
            sed "s/^/l1b-$t kiln: /"
        if [ -n "${LLAMA_BATCHED_BENCH:-}" ]; then
            "$LLAMA_BATCHED_BENCH" -m "$m" -c 16384 -b 2048 -ub 512 -npp 128 -ntg 128 \
                -npl 16,32,64 -t "$THREADS" 2>/dev/null | awk -F'|' -v t="$t" \
                '$4 ~ /[0-9]/ && $2 ~ /128/ {gsub(/ /, ""); print "l1b-" t " llama.cpp: B=" $4 ", tg128 " $9 " tok/s aggregate"}'
        fi
    done
    if [ "${KILN_BENCH_SERVE:-0}" = 1 ]; then
        KILN_BIN="$KILN" THREADS="$THREADS" tools/bench_serve.sh "$DIR/l1b-q8_0.gguf"
    fi
fi
if [ "${KILN_BENCH_LONG:-0}" = 1 ]; then
    # Long contexts (issue 20 item 5): a 2-layer model with the 1B's attention (32 heads of
    # 64, 8 KV heads), so the prompt's attention is a real share of the work; a P-token prompt
    # then 32 generated tokens at depth P, as llama-batched-bench -npp P -ntg 32 -npl 1.
    lc=$(make_model lc2-q8_0 --dim 2048 --layers 2 --heads 32 --kv-heads 8 --ffn 8192 \
        --vocab 32000 --ctx 32768 --type q8_0)
    echo "## long contexts: prompt P then tg32 at depth P (2 layers of the 1B shape, Q8_0, F16 KV)"
    for P in ${KILN_BENCH_LONG_CTX:-4096 16384}; do
        k=$("$KILN" model bench -m "$lc" -b 1 -p "$P" -n 32 -r 1 -t "$THREADS" | grep '^B=')
        kpp=$(echo "$k" | sed -E 's/.*pp[0-9]+ ([0-9.]+) tok.*/\1/')
        ktg=$(echo "$k" | sed -E 's/.*tg[0-9]+ ([0-9.]+) tok.*/\1/')
        line="P=$P: kiln pp $kpp tok/s, tg $ktg tok/s"
        if [ -n "${LLAMA_BATCHED_BENCH:-}" ]; then
            l=$("$LLAMA_BATCHED_BENCH" -m "$lc" -c $((P + 64)) -b 2048 -ub 512 -npp "$P" -ntg 32 \
                -npl 1 -t "$THREADS" 2>/dev/null | awk -F'|' '$2 ~ /[0-9]/ {gsub(/ /, ""); print $7, $9}')
            lpp=${l% *} ltg=${l#* }
            line="$line; llama.cpp $lpp / $ltg; ratio $(awk -v a="$kpp" -v b="$lpp" 'BEGIN{printf "%.2f", a/b}') / $(awk -v a="$ktg" -v b="$ltg" 'BEGIN{printf "%.2f", a/b}')"
        fi
        echo "$line"
    done
fi
echo "## engine: prefix cache and chunked prefill (stories-sized synthetic model)"
small=$(make_model small --dim 128 --layers 2 --heads 4 --kv-heads 2 --ffn 384 --vocab 512)
"$KILN" model bench-engine -m "$small" --prefix -t "$THREADS"
"$KILN" model bench-engine -m "$small" --chunked -t "$THREADS"
limits end
