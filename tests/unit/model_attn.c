/* Attention over a long context (model/attn.c): a decoding row computed as segments split
 * across the workers and merged after (a step with few rows) gets the same bits as the same
 * row folded inside one work item (a step with many rows). Its numerics against numpy over
 * several segments: model_arch.c. */
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "model/make.h"
#include "model/model.h"
#include "t.h"
#include "t_gguf.h"
#include "t_model.h"

enum { CTX = 2600, BLOCK = 16, BLOCKS = CTX / BLOCK + 1, MANY = 16, VOCAB = 512 };

TEST(model_attn_segments_same_bits_split_or_folded)
{
    model_make_opts mo;
    model_make_defaults(&mo);
    mo.ctx = 4096, mo.std = 0.15f;
    const char *path = t_tmp("long.gguf");
    kl_err err = {0};
    T_EQ(model_make(&mo, path, &err), 0);
    const kl_dtype caches[] = {KL_F32, KL_F16};
    for (int c = 0; c < 2; c++) {
        gguf_file *f;
        model *m;
        kv_store *kv;
        T_EQ(gguf_open(&f, path, &err), 0);
        model_opts o = {.max_batch_tokens = 64, .max_ctx = 4096, .n_workers = 2};
        if (model_load(&m, f, &o, &err)) t_fail(__FILE__, __LINE__, "%s", err.msg);
        const model_hparams *hp = model_hparams_of(m);
        kv_store_config kc = {hp->n_layers, hp->n_kv_heads * hp->head_dim, BLOCK, caches[c],
                              8u << 20};
        T_EQ(kv_store_create(&kv, &kc, &err), 0);
        T_ASSERT(kv_store_n_blocks(kv) >= BLOCKS);
        kl_workers *w = kl_workers_create(2);
        int32_t blocks[BLOCKS], tok[64];
        for (int i = 0; i < BLOCKS; i++)
            blocks[i] = BLOCKS - 1 - i;
        model_seq sq = {blocks, BLOCKS};
        float *l = malloc(sizeof(float) * 64 * VOCAB), *alone = malloc(sizeof(float) * VOCAB);
        t_batch tb;
        for (int i0 = 0; i0 < CTX; i0 += 64) { /* the prompt */
            int k = CTX - i0 < 64 ? CTX - i0 : 64;
            for (int i = 0; i < k; i++)
                tok[i] = ((i0 + i) * 131 + 7) % VOCAB;
            T_EQ(model_forward(m, w, kv, t_batch_seq(&tb, &sq, tok, k, i0), l, &err), 0);
        }
        /* the next token alone: one row per query head, split into 3 segments */
        tok[0] = 42;
        T_EQ(model_forward(m, w, kv, t_batch_seq(&tb, &sq, tok, 1, CTX), alone, &err), 0);
        /* the same token MANY times in one step, each a sequence of its own over the same
         * block table (each writes the same K and V into the same slot): MANY tiles, enough
         * items to share out without splitting, so each is folded in one item */
        model_seq seqs[MANY];
        int32_t pos[MANY], seq[MANY];
        bool want[MANY];
        for (int i = 0; i < MANY; i++)
            seqs[i] = sq, tok[i] = 42, pos[i] = CTX, seq[i] = i, want[i] = true;
        model_batch b = {.n = MANY,
                         .token = tok,
                         .pos = pos,
                         .seq = seq,
                         .want_logits = want,
                         .n_seqs = MANY,
                         .seqs = seqs};
        T_EQ(model_forward(m, w, kv, &b, l, &err), 0);
        for (int i = 0; i < MANY; i++)
            if (memcmp(l + (size_t)i * VOCAB, alone, sizeof(float) * VOCAB))
                t_fail(__FILE__, __LINE__, "%s cache: row %d of %d differs from the row alone",
                       kl_dtype_get(caches[c])->name, i, MANY);
        free(l), free(alone);
        kl_workers_destroy(w);
        kv_store_destroy(kv);
        model_free(m);
        gguf_close(f);
    }
}
