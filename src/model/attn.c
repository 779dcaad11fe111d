/* model/attn.c: attention of one layer through the paged KV cache. First the batch's K and V
 * rows go into their cache slots (in the cache's dtype); then every token's query heads attend
 * to positions 0..pos of its own sequence (a non-causal model's: to all of its positions in
 * the batch), reading K/V chunk by chunk through the sequence's
 * block table. Work is split across the workers by (tile of a sequence's tokens, KV head), so
 * a prefill converts each cached row once per tile rather than once per token. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "model/internal.h"

/* Work items per worker that attention aims for when it puts several KV heads in one item */
#define ATTN_ITEMS_PER_WORKER 4

typedef struct attn_job {
    model *m;
    kv_store *kv;
    int layer;
    const model_batch *b;
    const kl_kv_ops *ops; /* the cache dtype's row format */
    size_t row_bytes;     /* one token's K (or V) row in the cache */
    int bs;
    int n_tiles;           /* tiles of m->s.tiles */
    int hg, n_hg;          /* KV heads per work item, and items per tile (or segment) */
    bool split;            /* items are a tile's segments, merged after (merge_split) */
    int32_t *seg0, *part0; /* split: per tile, its first item segment and partial-result row */
} attn_job;

/* The head slice [off, off + hd) of cached positions p0 .. p0 + n - 1 (all in one block) as
 * the attention kernels read it, for nr query rows; buf: room to convert them. */
static kl_kv_run kv_run(const attn_job *j, const uint8_t *block, int p0, int off, int n, int nr,
                        float *buf)
{
    const uint8_t *row = block + (size_t)(p0 % j->bs) * j->row_bytes;
    return j->ops->read(row, j->row_bytes, off, n, j->m->hp.head_dim, nr, buf);
}

/* The cached positions token i attends to: [*lo, pos] (a sliding window starts late). */
static int first_pos(const attn_job *j, int i)
{
    int w = j->m->layers[j->layer].window, p = j->b->pos[i];
    return w > 0 && p - w + 1 > 0 ? p - w + 1 : 0;
}

/* The end of the positions token i attends to: its own + 1, or in a non-causal model the
 * last of its sequence in this batch + 1 (the sequence comes whole: model.h). */
static int end_pos(const attn_job *j, int i)
{
    return j->m->hp.non_causal ? j->m->s.seq_end[j->b->seq[i]] : j->b->pos[i] + 1;
}

/* Of chunk [p0, p0 + n), the positions token i attends to: [*a, *e) (empty: *a >= *e). */
static void chunk_span(const attn_job *j, int i, int p0, int n, int *a, int *e)
{
    int lo = first_pos(j, i), hi = end_pos(j, i);
    *a = lo > p0 ? lo : p0;
    *e = hi < p0 + n ? hi : p0 + n;
}

/* The length of the chunk of cached positions from p0: at most MODEL_KV_CHUNK, inside one
 * block, before end. */
static int chunk_len(const attn_job *j, int p0, int end)
{
    int n = MODEL_KV_CHUNK, left_in_block = j->bs - p0 % j->bs;
    if (n > left_in_block) n = left_in_block;
    return n < end - p0 ? n : end - p0;
}

/* One work item: a tile of consecutive batch tokens of one sequence and KV heads g0 .. g0 + ng
 * - 1, each with the `group` query heads that share it: rows r = (gi * nt + t) * group + h for
 * token t, query head h of KV head g0 + gi. Each row attends to positions lo .. pos of its own
 * token (lo > 0 in a sliding window) by an online softmax over spans of MODEL_ATTN_SPAN
 * positions at fixed offsets (multiples of the span): per span, the scores of every row, then
 * the running max and sum (the row's earlier output rescaled when the max grows), then the
 * weighted values. A row whose positions all lie in one span takes the plain softmax
 * (probabilities normalised before they are rounded to an F16 cache's precision, as llama.cpp's
 * product does: rounding the unnormalised terms moves stories260K's log-probabilities by 2e-3);
 * longer rows round the unnormalised terms of each span. The spans are grouped in segments of
 * MODEL_ATTN_SEG positions, also at fixed offsets: each segment's softmax starts afresh, and
 * the segments' results are folded in order (seg_fold), whether one item computed them all or
 * each was an item of its own (a long context's few decoding rows: see model_attention). Fixed
 * spans and segments make a row's arithmetic independent of the tile and item it is in, and
 * the scratch independent of the context length; each chunk of cached K and V rows is read (and
 * converted, if need be) once for all of the tile's rows. Decoding's one-token tiles take
 * several KV heads (all of them when there are enough items to share out): a chunk's cache
 * rows, every head's slice, are then read once, in order, rather than one head's 1/n_kv_heads
 * of each row per item, a stride that reads memory at a fraction of its bandwidth. */
typedef struct attn_tile_ctx {
    int i0, nt, g0, ng, hrows, rows, lo_min, len_max;
    const model_seq *sq;
    double *sum; /* (rows): running sums of the segment */
    float *mx;   /* (rows): running maxima */
    float *scores, *qs, *acc, *kvb;
} attn_tile_ctx;

/* Asks for the cache rows of positions [p0, p0 + n) (all in one block) to come into the
 * caches: an item that takes every KV head reads them whole, a block's 16 rows of 1 KB at a
 * stride the hardware prefetchers do not follow across blocks, head by head (B=16 decoding
 * spent 10% of the step in attention loads from DRAM at 128-256 positions). */
static void kv_prefetch(const attn_job *j, const uint8_t *block, int p0, int n)
{
    const uint8_t *row = block + (size_t)(p0 % j->bs) * j->row_bytes;
    for (size_t o = 0; o < (size_t)n * j->row_bytes; o += 64)
        __builtin_prefetch(row + o, 0, 2);
}

/* The softmax of the tile's rows over positions [P0, P1) (one segment), from a fresh start:
 * sum, mx and acc of each row (sum 0: the row takes none of these positions). */
static void attend_range(const attn_job *j, const attn_tile_ctx *c, int P0, int P1)
{
    const model *m = j->m;
    const model_hparams *hp = &m->hp;
    int hd = hp->head_dim, group = hp->n_heads / hp->n_kv_heads, span = MODEL_ATTN_SPAN;
    int i0 = c->i0, nt = c->nt, g0 = c->g0, ng = c->ng, hrows = c->hrows, rows = c->rows;
    double *sum = c->sum;
    float *mx = c->mx, *scores = c->scores, *qs = c->qs, *acc = c->acc, *kvb = c->kvb;
    float scale = m->kq_scale, cap = hp->softcap_attn;
    const model_seq *sq = c->sq;
    for (int r = 0; r < rows; r++)
        sum[r] = 0, mx[r] = -INFINITY;
    memset(acc, 0, sizeof(float) * (size_t)rows * hd);
    for (int S = P0 / span * span; S < P1; S += span) {
        int s0 = S > P0 ? S : P0, s1 = S + span < P1 ? S + span : P1;
        for (int p0 = s0, n; p0 < s1; p0 += n) { /* scores */
            n = chunk_len(j, p0, s1);
            const uint8_t *blk = kv_store_k(j->kv, j->layer, sq->blocks[p0 / j->bs]);
            if (ng == hp->n_kv_heads) { /* this chunk's V rows, the next chunk's K rows */
                kv_prefetch(j, kv_store_v(j->kv, j->layer, sq->blocks[p0 / j->bs]), p0, n);
                if (p0 + n < s1)
                    kv_prefetch(j, kv_store_k(j->kv, j->layer, sq->blocks[(p0 + n) / j->bs]),
                                p0 + n, chunk_len(j, p0 + n, s1));
            }
            for (int gi = 0; gi < ng; gi++) {
                kl_kv_run k = kv_run(j, blk, p0, (g0 + gi) * hd, n, hrows, kvb);
                for (int t = 0; t < nt; t++) {
                    int a, e;
                    chunk_span(j, i0 + t, p0, n, &a, &e);
                    if (a >= e) continue;
                    kl_kv_run ka = kl_kv_run_at(&k, a - p0);
                    int r = gi * hrows + t * group; /* the token's query heads: one call */
                    kl_kv_scores(&ka, qs + (size_t)r * hd, hd, group, e - a, hd, scale,
                                 scores + (size_t)r * span + (a - S), span);
                }
            }
        }
        for (int r = 0; r < rows; r++) { /* the online softmax's step */
            int a, e, i = i0 + r % hrows / group;
            chunk_span(j, i, s0, s1 - s0, &a, &e);
            if (a >= e) continue;
            float *sc = scores + (size_t)r * span + (a - S), old = mx[r];
            if (cap > 0) kl_softcap(sc, e - a, cap); /* gemma2: before the softmax */
            if (a == first_pos(j, i) && e == end_pos(j, i)) {
                /* the whole row in one span: the softmax's probabilities themselves are
                 * rounded (for an F16 cache), as llama.cpp's V x KQ product rounds them */
                kl_softmax(sc, e - a);
                j->ops->round(sc, sc, e - a);
                sum[r] = 1.0;
                continue;
            }
            double part = kl_softmax_part(sc, e - a, &mx[r]);
            j->ops->round(sc, sc, e - a);
            if (old != mx[r] && old != -INFINITY) {
                float f = expf(old - mx[r]);
                sum[r] *= (double)f;
                for (int d = 0; d < hd; d++)
                    acc[(size_t)r * hd + d] *= f;
            }
            sum[r] += part;
        }
        for (int p0 = s0, n; p0 < s1; p0 += n) { /* weighted values */
            n = chunk_len(j, p0, s1);
            const uint8_t *blk = kv_store_v(j->kv, j->layer, sq->blocks[p0 / j->bs]);
            for (int gi = 0; gi < ng; gi++) {
                kl_kv_run v = kv_run(j, blk, p0, (g0 + gi) * hd, n, hrows, kvb);
                /* runs of tokens that take the same positions of this chunk (every token
                 * below the chunk takes all n): their rows are consecutive, one call for all
                 * of them */
                for (int t = 0, t2; t < nt; t = t2) {
                    int a, e, a2, e2;
                    chunk_span(j, i0 + t, p0, n, &a, &e);
                    for (t2 = t + 1; t2 < nt; t2++) {
                        chunk_span(j, i0 + t2, p0, n, &a2, &e2);
                        if (a2 != a || e2 != e) break;
                    }
                    if (a >= e) continue;
                    int r = gi * hrows + t * group, nr = (t2 - t) * group;
                    kl_kv_run va = kl_kv_run_at(&v, a - p0);
                    kl_kv_pv(&va, acc + (size_t)r * hd, hd, scores + (size_t)r * span + (a - S),
                             span, nr, e - a, hd);
                }
            }
        }
    }
}

/* Folds a segment's (m, s, a) into a row's running result (*fm, *fs, fa): the first segment the
 * row takes is copied, so a row within one segment ends as if there were no segments. */
static void seg_fold(float *fm, double *fs, float *fa, float m, double s, const float *a, int hd)
{
    if (s == 0) return;
    if (*fs == 0) {
        *fm = m, *fs = s;
        memcpy(fa, a, sizeof(float) * (size_t)hd);
        return;
    }
    float M = *fm > m ? *fm : m, fo = expf(*fm - M), fn = expf(m - M);
    *fs = *fs * (double)fo + s * (double)fn;
    for (int d = 0; d < hd; d++)
        fa[d] = fa[d] * fo + a[d] * fn;
    *fm = M;
}

/* Query head h of token i's output: acc / sum. */
static void write_out(model *m, int i, int h, const float *acc, double sum)
{
    int hd = m->hp.head_dim;
    float inv = (float)(1.0 / sum), *o = m->s.att + (size_t)i * m->q_dim + (size_t)h * hd;
    for (int d = 0; d < hd; d++)
        o[d] = acc[d] * inv;
}

/* The partial results of a split tile's segment k (counted from the tile's first) are at
 * m->s.part_* index part0[tile] + k * n_heads * nt + g * nt * group + t * group + h (every KV
 * head's rows, whichever item computed them). */

/* One work item (see above): the tile's segment seg, counted from its first (the partial
 * results stored for merge_split), or with seg < 0 all of the tile's segments, folded, then the
 * output. */
static void attn_tile(const attn_job *j, int tile, int g0, int ng, int seg, float *ws)
{
    model *m = j->m;
    const model_hparams *hp = &m->hp;
    const model_batch *b = j->b;
    int hd = hp->head_dim, group = hp->n_heads / hp->n_kv_heads;
    size_t rmax = (size_t)MODEL_ATTN_QT * group;
    attn_tile_ctx c = {.i0 = m->s.tiles[tile], .g0 = g0, .ng = ng};
    c.nt = m->s.tiles[tile + 1] - c.i0, c.hrows = c.nt * group, c.rows = ng * c.hrows;
    c.sq = &b->seqs[b->seq[c.i0]];
    c.sum = (double *)(void *)ws;             /* (rows) */
    double *fsum = c.sum + rmax;              /* (rows): the folded segments' sums */
    c.mx = (float *)(void *)(fsum + rmax);    /* (rows) */
    float *fmx = c.mx + rmax;                 /* (rows) */
    c.scores = fmx + rmax;                    /* (rows, span) */
    c.qs = c.scores + rmax * MODEL_ATTN_SPAN; /* (rows, hd) */
    c.acc = c.qs + rmax * hd;                 /* (rows, hd) */
    float *facc = c.acc + rmax * hd;          /* (rows, hd) */
    c.kvb = facc + rmax * hd;                 /* (MODEL_KV_CHUNK, hd) */
    c.len_max = 0, c.lo_min = INT32_MAX;
    for (int t = 0; t < c.nt; t++) {
        if (end_pos(j, c.i0 + t) > c.len_max) c.len_max = end_pos(j, c.i0 + t);
        if (first_pos(j, c.i0 + t) < c.lo_min) c.lo_min = first_pos(j, c.i0 + t);
    }
    for (int gi = 0; gi < ng; gi++)
        for (int t = 0; t < c.nt; t++) {
            const float *q =
                m->s.q + (size_t)(c.i0 + t) * m->q_dim + (size_t)(g0 + gi) * group * hd;
            j->ops->round(q, c.qs + (size_t)(gi * c.hrows + t * group) * hd, group * hd);
        }
    int k0 = c.lo_min / MODEL_ATTN_SEG, k1 = (c.len_max - 1) / MODEL_ATTN_SEG + 1;
    if (seg >= 0) k0 += seg, k1 = k0 + 1;
    for (int r = 0; r < c.rows; r++)
        fsum[r] = 0;
    for (int k = k0; k < k1; k++) {
        int P0 = k * MODEL_ATTN_SEG, P1 = P0 + MODEL_ATTN_SEG;
        attend_range(j, &c, P0 > c.lo_min ? P0 : c.lo_min, P1 < c.len_max ? P1 : c.len_max);
        if (seg >= 0) { /* this segment's rows, for merge_split */
            size_t at = (size_t)j->part0[tile] + (size_t)seg * (size_t)hp->n_heads * (size_t)c.nt +
                        (size_t)g0 * (size_t)c.hrows;
            for (int r = 0; r < c.rows; r++) {
                m->s.part_m[at + (size_t)r] = c.mx[r], m->s.part_s[at + (size_t)r] = c.sum[r];
                memcpy(m->s.part_a + (at + (size_t)r) * (size_t)hd, c.acc + (size_t)r * hd,
                       sizeof(float) * (size_t)hd);
            }
            return;
        }
        for (int r = 0; r < c.rows; r++)
            seg_fold(&fmx[r], &fsum[r], facc + (size_t)r * hd, c.mx[r], c.sum[r],
                     c.acc + (size_t)r * hd, hd);
    }
    for (int gi = 0; gi < ng; gi++)
        for (int t = 0; t < c.nt; t++)
            for (int h = 0; h < group; h++) {
                int r = gi * c.hrows + t * group + h;
                write_out(m, c.i0 + t, (g0 + gi) * group + h, facc + (size_t)r * hd, fsum[r]);
            }
}

static void attn_part(void *ctx, int ith, int nth)
{
    const attn_job *j = ctx;
    model *m = j->m;
    float *ws = m->s.attn_ws + (size_t)ith * m->attn_ws_floats;
    int nkv = m->hp.n_kv_heads;
    int64_t items = (int64_t)(j->split ? j->seg0[j->n_tiles] : j->n_tiles) * j->n_hg;
    /* strided: later tiles of a prefill chunk attend to more positions, so contiguous shares
     * would leave the first workers idle */
    for (int64_t it = ith; it < items; it += nth) {
        int g0 = (int)(it % j->n_hg) * j->hg, ng = g0 + j->hg < nkv ? j->hg : nkv - g0;
        int u = (int)(it / j->n_hg);
        if (!j->split) {
            attn_tile(j, u, g0, ng, -1, ws);
            continue;
        }
        int t = 0;
        while (j->seg0[t + 1] <= u)
            t++;
        attn_tile(j, t, g0, ng, u - j->seg0[t], ws);
    }
}

/* A split step's outputs: each row's segments folded in order, as attn_tile folds them. */
static void merge_split(const attn_job *j)
{
    model *m = j->m;
    int hd = m->hp.head_dim, group = m->hp.n_heads / m->hp.n_kv_heads, nh = m->hp.n_heads;
    for (int t = 0; t < j->n_tiles; t++) {
        int i0 = m->s.tiles[t], nt = m->s.tiles[t + 1] - i0, nseg = j->seg0[t + 1] - j->seg0[t];
        size_t per_seg = (size_t)nh * (size_t)nt;
        for (size_t R = 0; R < per_seg; R++) {
            size_t f = (size_t)j->part0[t] + R; /* segment 0's entry holds the fold */
            float *fa = m->s.part_a + f * (size_t)hd;
            for (int k = 1; k < nseg; k++) {
                size_t e = f + (size_t)k * per_seg;
                seg_fold(&m->s.part_m[f], &m->s.part_s[f], fa, m->s.part_m[e], m->s.part_s[e],
                         m->s.part_a + e * (size_t)hd, hd);
            }
            int g = (int)(R / ((size_t)nt * (size_t)group)),
                tt = (int)(R / (size_t)group % (size_t)nt), h = (int)(R % (size_t)group);
            write_out(m, i0 + tt, g * group + h, fa, m->s.part_s[f]);
        }
    }
}

/* Writes token i's k and v rows into their slots. */
static void kv_write(const attn_job *j, int i)
{
    const model_batch *b = j->b;
    const model_seq *sq = &b->seqs[b->seq[i]];
    int p = b->pos[i], kv_dim = j->m->kv_dim;
    int32_t blk = sq->blocks[p / j->bs];
    size_t at = (size_t)(p % j->bs) * j->row_bytes;
    j->ops->write(j->m->s.k + (size_t)i * kv_dim, (uint8_t *)kv_store_k(j->kv, j->layer, blk) + at,
                  kv_dim);
    j->ops->write(j->m->s.v + (size_t)i * kv_dim, (uint8_t *)kv_store_v(j->kv, j->layer, blk) + at,
                  kv_dim);
}

void model_attention(model *m, kl_workers *w, kv_store *kv, int layer, const model_batch *b)
{
    const kv_store_config *c = kv_store_config_of(kv);
    attn_job j = {.m = m,
                  .kv = kv,
                  .layer = layer,
                  .b = b,
                  .ops = kl_kv_ops_get(c->dtype),
                  .row_bytes = kl_dtype_row_bytes(c->dtype, c->kv_dim),
                  .bs = c->block_tokens};
    for (int i = 0; i < b->n; i++)
        kv_write(&j, i);
    if (m->hp.non_causal) { /* each sequence's end in this batch */
        for (int k = 0; k < b->n_seqs; k++)
            m->s.seq_end[k] = 0;
        for (int i = 0; i < b->n; i++)
            if (b->pos[i] + 1 > m->s.seq_end[b->seq[i]]) m->s.seq_end[b->seq[i]] = b->pos[i] + 1;
    }
    /* tiles: runs of consecutive tokens of one sequence, at most MODEL_ATTN_QT tokens each */
    int nt = 0;
    for (int i = 0; i < b->n; i++)
        if (i == 0 || b->seq[i] != b->seq[i - 1] || i - m->s.tiles[nt - 1] == MODEL_ATTN_QT)
            m->s.tiles[nt++] = i;
    m->s.tiles[nt] = b->n;
    j.n_tiles = nt;
    /* KV heads per item: as many as the scratch holds (MODEL_ATTN_QT tokens' rows) while
     * there are still ATTN_ITEMS_PER_WORKER items per worker to share out */
    int nkv = m->hp.n_kv_heads, nw = w ? kl_workers_count(w) : 1, qt_max = 1;
    for (int t = 0; t < nt; t++)
        if (m->s.tiles[t + 1] - m->s.tiles[t] > qt_max) qt_max = m->s.tiles[t + 1] - m->s.tiles[t];
    /* A long context's few tiles are split by segments, so that there are items to share out
     * without cutting the cache rows into heads (as long as their partial results fit) */
    int want = ATTN_ITEMS_PER_WORKER * nw, units = nt;
    j.seg0 = m->s.attn_seg0, j.part0 = m->s.attn_part0;
    if (nt < want) {
        size_t parts = 0;
        j.seg0[0] = 0;
        for (int t = 0; t < nt; t++) {
            int tl = m->s.tiles[t + 1] - m->s.tiles[t], len = 0, lo = INT32_MAX;
            for (int i = m->s.tiles[t]; i < m->s.tiles[t + 1]; i++) {
                if (end_pos(&j, i) > len) len = end_pos(&j, i);
                if (first_pos(&j, i) < lo) lo = first_pos(&j, i);
            }
            int nseg = (len - 1) / MODEL_ATTN_SEG + 1 - lo / MODEL_ATTN_SEG;
            j.part0[t] = (int32_t)parts;
            parts += (size_t)nseg * (size_t)m->hp.n_heads * (size_t)tl;
            j.seg0[t + 1] = j.seg0[t] + nseg;
        }
        j.split = j.seg0[nt] > nt && parts <= m->attn_parts;
        if (j.split) units = j.seg0[nt];
    }
    int n_hg = (want + units - 1) / units;
    if (n_hg > nkv) n_hg = nkv;
    j.hg = (nkv + n_hg - 1) / n_hg;
    if (j.hg > MODEL_ATTN_QT / qt_max) j.hg = MODEL_ATTN_QT / qt_max;
    j.n_hg = (nkv + j.hg - 1) / j.hg;
    kl_workers_run(w, attn_part, &j);
    if (j.split) merge_split(&j);
}
