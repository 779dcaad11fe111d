/* model/vocab_synth.h: a synthetic SentencePiece ("llama") vocabulary for generated models. */
#ifndef KILN_MODEL_VOCAB_SYNTH_H
#define KILN_MODEL_VOCAB_SYNTH_H
#include "gguf/gguf.h"

/* Sets the tokenizer.* keys of an n-token vocab (n >= 259) in w: <unk> <s> </s>, the 256 byte
 * tokens <0x00>..<0xFF> (type 6), then n - 259 normal pieces (type 1) with decreasing scores:
 * "▁" + common English words, "▁", single characters, then "▁"-prefixed and bare lowercase
 * letter strings of growing length. Returns 0 or the writer's (sticky) error code. */
int vocab_synth_write(gguf_writer *w, int n);
#endif
