/* model/mla.c: multi-head latent attention (DeepSeek-V2/V3: deepseek2 files), as llama.cpp's
 * Feb 2025 tree computes it. The query comes straight from attn_q (V2-Lite) or through a
 * low-rank attn_q_a, its RMSNorm and attn_q_b; each head is [nope | rope] (head_dim - n_rot,
 * n_rot). attn_kv_a_mqa gives a compressed latent (kv_lora) and one RoPE key part (n_rot)
 * shared by every head; the latent's RMSNorm goes through attn_kv_b to each head's key part
 * (head_dim - n_rot) and value (v_head_dim). Rotated with RoPE on (2i, 2i+1) pairs.
 *
 * The cache holds the expanded keys and values, one head per query head, as for any other
 * architecture: every value sits in a key head's room (head_dim), zero-padded, so the paged
 * cache and the attention kernels stay as they are; the attention's outputs are packed back
 * to v_head_dim per head for attn_output. (Caching the latent instead, MLA's point, would
 * hold kv_lora + n_rot values per token and layer rather than 2 n_heads head_dim.) */
#include <string.h>

#include "model/internal.h"

typedef enum { MLA_NORMS, MLA_HEADS } mla_stage;

typedef struct {
    model *m;
    const model_batch *b;
    const model_layer *ly;
    mla_stage stage;
} mla_job;

static void mla_row(const mla_job *j, int i)
{
    model *m = j->m;
    const model_hparams *hp = &m->hp;
    const model_layer *ly = j->ly;
    model_scratch *s = &m->s;
    int hd = hp->head_dim, rot = hp->n_rot, nope = hd - rot, vd = hp->v_head_dim;
    int kva = hp->kv_lora + rot;
    float *lat = s->mla_kva + (size_t)i * kva;
    if (j->stage == MLA_NORMS) {
        if (ly->wq_a.data) {
            float *qa = s->mla_qa + (size_t)i * hp->q_lora;
            kl_rmsnorm(qa, qa, ly->q_a_norm, hp->q_lora, hp->norm_eps);
        }
        kl_rmsnorm(lat, lat, ly->kv_a_norm, hp->kv_lora, hp->norm_eps);
        return;
    }
    float cs[MODEL_MAX_HEAD_DIM];
    kl_rope_angles(ly->rope, j->b->pos[i], cs);
    float *pe = lat + hp->kv_lora; /* the shared key part */
    kl_rope(pe, rot, cs, false);
    const float *kvb = s->mla_kvb + (size_t)i * hp->n_heads * (nope + vd);
    float *q = s->q + (size_t)i * m->q_dim, *k = s->k + (size_t)i * m->kv_dim;
    float *v = s->v + (size_t)i * m->kv_dim;
    for (int h = 0; h < hp->n_heads; h++) {
        const float *src = kvb + (size_t)h * (nope + vd);
        float *kh = k + (size_t)h * hd, *vh = v + (size_t)h * hd;
        kl_rope(q + (size_t)h * hd + nope, rot, cs, false);
        memcpy(kh, src, sizeof(float) * (size_t)nope);
        memcpy(kh + nope, pe, sizeof(float) * (size_t)rot);
        memcpy(vh, src + nope, sizeof(float) * (size_t)vd);
        memset(vh + vd, 0, sizeof(float) * (size_t)(hd - vd));
    }
}

static void mla_part(void *ctx, int ith, int nth)
{
    const mla_job *j = ctx;
    int n = j->b->n;
    for (int i = (int)((int64_t)n * ith / nth); i < (int64_t)n * (ith + 1) / nth; i++)
        mla_row(j, i);
}

static void mla_rows(model *m, kl_workers *w, const model_batch *b, int layer, mla_stage st)
{
    mla_job j = {m, b, &m->layers[layer], st};
    if (w && b->n >= 8)
        kl_workers_run(w, mla_part, &j);
    else
        mla_part(&j, 0, 1);
}

void model_mla_qkv(model *m, kl_workers *w, const model_batch *b, int layer)
{
    const model_layer *ly = &m->layers[layer];
    model_scratch *s = &m->s;
    const model_hparams *hp = &m->hp;
    int n = b->n;
    /* the query (or its low-rank form) and the latent read the same normed input */
    if (ly->wq_a.data)
        model_proj2(m, w, &ly->wq_a, s->mla_qa, &ly->wkv_a, s->mla_kva, s->xb, n);
    else
        model_proj2(m, w, &ly->wq, s->q, &ly->wkv_a, s->mla_kva, s->xb, n);
    mla_rows(m, w, b, layer, MLA_NORMS);
    if (ly->wq_a.data) model_proj(m, w, &ly->wq_b, s->mla_qa, n, s->q);
    /* keys' and values' heads from the normed latent (the first kv_lora of each row) */
    kl_mm_out o = model_mm_out(&ly->wkv_b, s->mla_kvb);
    kl_matmul_multi(w, &o, 1, hp->kv_lora, s->mla_kva, hp->kv_lora + hp->n_rot, n, s->mm);
    mla_rows(m, w, b, layer, MLA_HEADS);
}

void model_mla_pack_out(model *m, int n)
{
    const model_hparams *hp = &m->hp;
    int hd = hp->head_dim, vd = hp->v_head_dim, H = hp->n_heads;
    /* in place, front to back: each piece moves to a lower (or the same) address */
    for (int i = 0; i < n; i++)
        for (int h = 0; h < H; h++)
            memmove(m->s.att + ((size_t)i * H + h) * vd, m->s.att + (size_t)i * m->q_dim + h * hd,
                    sizeof(float) * (size_t)vd);
}
