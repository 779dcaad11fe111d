#!/usr/bin/env bash
# Speculative decoding figures (issue 17, "What to measure"): single stream with and without
# speculation (n-gram lookup on an input-grounded workload, a draft model, layer skipping), 16
# streams (the cost at load), the real TinyStories model's acceptance, llama.cpp's
# llama-lookup / llama-speculative on the same files, and the machine's read bandwidth at the
# start and the end, so each rate can be given as a multiple of the bandwidth ceiling
# (weight bytes per target pass / read bandwidth).
#
#   KILN_BIN            the kiln under test (default ./kiln)
#   KILN_BENCH_MODELS   where the models are kept (default ~/.cache/kiln/bench)
#   LLAMA_BIN           llama.cpp's build/bin (llama-lookup, llama-speculative); optional
#   REPEATS, N          repeats and tokens per stream (default 3, 128)
set -euo pipefail
cd "$(dirname "$0")/.."
KILN=${KILN_BIN:-./kiln}
DIR=${KILN_BENCH_MODELS:-${XDG_CACHE_HOME:-$HOME/.cache}/kiln/bench}
SHARED=${KILN_SHARED:-../shared}
R=${REPEATS:-3}
N=${N:-128}
mkdir -p "$DIR"
echo "# kiln speculative decoding ($(nproc) cores, -t 2, load $(cut -d' ' -f1-3 /proc/loadavg))"

L1B="--dim 2048 --heads 32 --kv-heads 8 --ffn 8192 --vocab 128256 --tied --rope-theta 500000"
T="$DIR/l1b-q8_0.gguf"
[ -s "$T" ] || "$KILN" model make --out "$T" $L1B --layers 16 --type q8_0 >/dev/null
# The draft: the target's first layer (the same seed gives the same tensors) and its tied
# embeddings as the head, in Q4_0: 14% of the target's bytes.
D="$DIR/l1b-draft1-q4_0.gguf"
[ -s "$D" ] || "$KILN" model make --out "$D" $L1B --layers 1 --type q4_0 >/dev/null

LIMITS_C="$SHARED/perf/limits.c"
limits() {
    [ -x "$DIR/limits" ] || gcc -O2 -march=native -fopenmp -o "$DIR/limits" "$LIMITS_C" -lm
    echo "## machine limits ($1)"
    "$DIR/limits" | grep 'mem read.*threads=2'
}
limits start

# An input-grounded document: a story the continuation quotes (the prompt holds it, then its
# start again; kiln model bench --spec builds that prompt).
DOC=$(mktemp)
trap 'rm -f "$DOC"' EXIT
cat >"$DOC" <<'EOF'
Once upon a time, there was a little girl named Lily. She loved to play in the park with her
friend Tom. One day, Lily and Tom found a big red ball under a tree. Lily said, "Let's play
with the ball!" Tom said, "Yes, let's play!" They threw the ball high in the sky and laughed.
Then the ball rolled into the pond. Lily was sad. Tom said, "Don't be sad, Lily. I will get
the ball." Tom took a long stick and pulled the ball out of the pond. Lily was happy again.
She hugged Tom and said, "Thank you, Tom. You are a good friend." They played with the ball
until the sun went down, and then they went home to eat dinner with their moms and dads.
EOF

bench() { # label, then kiln model bench options
    local label=$1
    shift
    echo "## $label"
    "$KILN" model bench -t 2 -r "$R" --doc "$DOC" "$@" 2>&1 | grep -v ' info '
}
D16="$DIR/l1b-q4_0.gguf" # the target itself in Q4_0: a draft that mostly agrees
[ -s "$D16" ] || "$KILN" model make --out "$D16" $L1B --layers 16 --type q4_0 >/dev/null
# A model of the same shape whose weights quote their input (kiln model make --copy; untied, so
# 263 MB more file, of which a pass reads one embedding row): drafts that are right.
C="$DIR/l1b-copy-q8_0.gguf"
[ -s "$C" ] || "$KILN" model make --out "$C" --dim 2048 --heads 32 --kv-heads 8 --ffn 8192 \
    --vocab 128256 --rope-theta 1e7 --layers 16 --type q8_0 --copy >/dev/null
echo "weight bytes per pass: target $(stat -L -c %s "$T"), drafts $(stat -L -c %s "$D") and $(stat -L -c %s "$D16")"
bench "1B random, n-gram (adaptive)" -m "$T" --spec ngram -n "$N" -b 1
bench "1B random, n-gram (fixed k=8)" -m "$T" --spec ngram:fixed -n "$N" -b 1
bench "1B random, draft model (1 layer, Q4_0)" -m "$T" --spec draft:k=4 --draft-model "$D" -n "$N" -b 1
bench "1B random, draft model (1 layer, Q4_0, fixed)" -m "$T" --spec draft:k=4,fixed --draft-model "$D" -n 64 -b 1
bench "1B random, draft model (the target in Q4_0)" -m "$T" --spec draft:k=4 --draft-model "$D16" -n "$N" -b 1
bench "1B random, layer skip (4 of 16 layers)" -m "$T" --spec layerskip:layers=4,k=4 -n "$N" -b 1
bench "1B random, 16 streams, n-gram (adaptive)" -m "$T" --spec ngram -n 64 -b 16 -r 4
bench "1B copy (quotes its input), n-gram (adaptive)" -m "$C" --spec ngram -n "$N" -b 1
bench "1B copy, n-gram (fixed k=8)" -m "$C" --spec ngram:fixed -n "$N" -b 1
S="$SHARED/models/stories260K.gguf"
bench "stories260K (trained), n-gram (adaptive)" -m "$S" --spec ngram -n 200 -b 1 -r 5
bench "stories260K (trained), n-gram (fixed)" -m "$S" --spec ngram:fixed -n 200 -b 1 -r 5
bench "stories260K (trained), layer skip (2 of 5, fixed)" -m "$S" --spec layerskip:layers=2,k=4,fixed -n 200 -b 1 -r 5

if [ -n "${LLAMA_BIN:-}" ] && [ -x "$LLAMA_BIN/llama-lookup" ]; then
    # the same prompt as kiln's (document, then its first words again), greedy, same files
    P="$(cat "$DOC") $(head -c 160 "$DOC")"
    pick='decoded|n_drafted|n_accept|accept '
    for run in 1 2; do
        echo "## llama.cpp round $run"
        "$LLAMA_BIN/llama-cli" -m "$T" -t 2 -p "$P" -n "$N" --temp 0 -no-cnv --ignore-eos 2>&1 |
            grep -E ' eval time' | sed 's/^/llama-cli (no spec): /'
        "$LLAMA_BIN/llama-lookup" -m "$T" -t 2 -p "$P" -n "$N" --temp 0 --draft-max 8 2>&1 |
            grep -E "$pick" | sed 's/^/llama-lookup k=8: /'
        "$LLAMA_BIN/llama-cli" -m "$C" -t 2 -p "$P" -n "$N" --temp 0 -no-cnv --ignore-eos 2>&1 |
            grep -E ' eval time' | sed 's/^/llama-cli copy model (no spec): /'
        "$LLAMA_BIN/llama-lookup" -m "$C" -t 2 -p "$P" -n "$N" --temp 0 --draft-max 8 2>&1 |
            grep -E "$pick" | sed 's/^/llama-lookup copy model k=8: /'
        for d in "$D" "$D16"; do
            "$LLAMA_BIN/llama-speculative" -m "$T" -md "$d" -t 2 -p "$P" -n "$N" --temp 0 \
                --draft-max 4 --draft-min 0 --draft-p-min 0 2>&1 |
                grep -E "$pick" | sed "s/^/llama-speculative $(basename "$d"): /"
        done
    done
fi
limits end
