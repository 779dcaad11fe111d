/* model/llama2c.c: `kiln model convert-llama2c`: a llama2.c checkpoint + tokenizer.bin to GGUF.
 *
 * Checkpoint (legacy v0): 7 little-endian int32 (dim, hidden_dim, n_layers, n_heads,
 * n_kv_heads, vocab_size, seq_len; vocab_size < 0 means a separate classifier follows), then
 * fp32 weights: token_embedding (vocab, dim), rms_att (L, dim), wq (L, dim, dim),
 * wk (L, kv_dim, dim), wv (L, kv_dim, dim), wo (L, dim, dim), rms_ffn (L, dim),
 * w1 (L, hidden, dim), w2 (L, dim, hidden), w3 (L, hidden, dim), rms_final (dim),
 * freq_cis_real and _imag (seq_len, head_size / 2 each), [wcls (vocab, dim)].
 * tokenizer.bin: int32 max_token_length, then per token: f32 score, int32 length, bytes.
 *
 * The output follows llama.cpp's convert-llama2c: the same metadata keys in the same order,
 * context length 2048, every tensor F32 with rows as in the checkpoint (not permuted),
 * output.weight a copy of the embeddings when the classifier is shared, spaces in pieces
 * written as U+2581 and llama2.c's "\n<s>\n" / "\n</s>\n" as "<s>" / "</s>". */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/ckd.h"
#include "gguf/gguf.h"
#include "model/make.h"

#define L2C_CTX 2048 /* llama.cpp's converter writes this, not the checkpoint's seq_len */

typedef struct l2c_cfg {
    int32_t dim, hidden, layers, heads, kv_heads, vocab, seq_len;
} l2c_cfg;

typedef struct mapped {
    const uint8_t *p;
    uint64_t size;
} mapped;

/* Maps path read-only. Returns 0 or KL_EIO with the reason in err. */
static int map_file(const char *path, mapped *m, kl_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return kl_errf(err, KL_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_size == 0) {
        close(fd);
        return kl_errf(err, KL_EIO, "%s: not a regular non-empty file", path);
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return kl_errf(err, KL_EIO, "%s: cannot map: %s", path, strerror(errno));
    m->p = p;
    m->size = (uint64_t)st.st_size;
    return 0;
}

static void unmap_file(mapped *m)
{
    if (m->p) munmap((void *)m->p, m->size);
    m->p = NULL;
}

/* Reads the header and checks the file holds exactly the weights it announces. */
static int read_cfg(const char *path, const mapped *m, l2c_cfg *c, bool *shared, kl_err *err)
{
    if (m->size < 28) return kl_errf(err, KL_EBADFILE, "%s: too small for a llama2.c header", path);
    memcpy(c, m->p, 28);
    *shared = c->vocab > 0;
    if (c->vocab < 0) c->vocab = c->vocab == INT32_MIN ? 0 : -c->vocab;
    if (c->dim <= 0 || c->hidden <= 0 || c->layers <= 0 || c->heads <= 0 || c->kv_heads <= 0 ||
        c->vocab <= 0 || c->seq_len <= 0 || c->dim % c->heads || c->heads % c->kv_heads ||
        (c->dim / c->heads) % 2 || c->layers > 4096)
        return kl_errf(err, KL_EBADFILE,
                       "%s: bad llama2.c header (dim %d hidden %d layers %d heads %d kv %d "
                       "vocab %d seq %d)",
                       path, c->dim, c->hidden, c->layers, c->heads, c->kv_heads, c->vocab,
                       c->seq_len);
    uint64_t d = (uint64_t)c->dim, h = (uint64_t)c->hidden, L = (uint64_t)c->layers;
    uint64_t kv = d / (uint64_t)c->heads * (uint64_t)c->kv_heads, hs = d / (uint64_t)c->heads;
    uint64_t per_layer = 2 * d + 2 * d * d + 2 * d * kv + 3 * d * h, n = 0, t;
    bool bad = ckd_mul_u64(&n, (uint64_t)c->vocab, d) || ckd_mul_u64(&t, L, per_layer) ||
               ckd_add_u64(&n, n, t) || ckd_add_u64(&n, n, d) ||
               ckd_mul_u64(&t, (uint64_t)c->seq_len, hs) || ckd_add_u64(&n, n, t);
    if (!*shared) bad = bad || ckd_mul_u64(&t, (uint64_t)c->vocab, d) || ckd_add_u64(&n, n, t);
    uint64_t bytes;
    bad = bad || ckd_mul_u64(&bytes, n, 4) || ckd_add_u64(&bytes, bytes, 28);
    if (bad || bytes != m->size)
        return kl_errf(err, KL_EBADFILE, "%s: %llu bytes, but its header announces %llu", path,
                       (unsigned long long)m->size, bad ? 0ull : (unsigned long long)bytes);
    return 0;
}

/* Sets the tokenizer keys from a tokenizer.bin of exactly n_vocab tokens. */
static int read_tokenizer(gguf_writer *w, const char *path, const mapped *m, int n_vocab,
                          kl_err *err)
{
    char **toks = calloc((size_t)n_vocab, sizeof *toks);
    uint64_t *lens = calloc((size_t)n_vocab, sizeof *lens);
    float *scores = calloc((size_t)n_vocab, sizeof *scores);
    int32_t *types = calloc((size_t)n_vocab, sizeof *types);
    int rc = 0;
    uint64_t off = 4;
    if (!toks || !lens || !scores || !types) {
        rc = kl_errf(err, KL_ENOMEM, "%s: out of memory", path);
        goto out;
    }
    if (m->size < 4) {
        rc = kl_errf(err, KL_EBADFILE, "%s: too small for a llama2.c tokenizer", path);
        goto out;
    }
    for (int i = 0; i < n_vocab && !rc; i++) {
        int32_t len;
        if (m->size - off < 8) {
            rc = kl_errf(err, KL_EBADFILE, "%s: token %d truncated", path, i);
            break;
        }
        memcpy(&scores[i], m->p + off, 4);
        memcpy(&len, m->p + off + 4, 4);
        off += 8;
        if (len < 0 || (uint64_t)len > m->size - off) {
            rc = kl_errf(err, KL_EBADFILE, "%s: token %d length %d runs past end of file", path, i,
                         len);
            break;
        }
        const char *s = (const char *)m->p + off;
        off += (uint64_t)len;
        /* Every space becomes 3 bytes of U+2581. */
        char *t = malloc((size_t)len * 3 + 1);
        if (!t) {
            rc = kl_errf(err, KL_ENOMEM, "%s: out of memory", path);
            break;
        }
        size_t n = 0;
        if ((i == 1 || i == 2) && len > 2 && s[0] == '\n' && s[len - 1] == '\n') s++, len -= 2;
        for (int32_t k = 0; k < len; k++) {
            if (s[k] == ' ')
                memcpy(t + n, "\xe2\x96\x81", 3), n += 3;
            else
                t[n++] = s[k];
        }
        t[n] = 0;
        toks[i] = t;
        lens[i] = n;
        unsigned b;
        char tail;
        if (i == 0)
            types[i] = 2;
        else if (i == 1 || i == 2)
            types[i] = 3;
        else if (n == 6 && sscanf(t, "<0x%2X>%c", &b, &tail) == 1 && t[5] == '>')
            types[i] = 6;
        else
            types[i] = 1;
    }
    if (!rc && off != m->size)
        rc = kl_errf(err, KL_EBADFILE, "%s: %llu bytes left after %d tokens (vocab mismatch?)",
                     path, (unsigned long long)(m->size - off), n_vocab);
    if (!rc) {
        gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)toks, lens,
                                (uint64_t)n_vocab);
        gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_F32, scores, (uint64_t)n_vocab);
        gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_I32, types, (uint64_t)n_vocab);
    }
out:
    for (int i = 0; toks && i < n_vocab; i++)
        free(toks[i]);
    free(toks);
    free(lens);
    free(scores);
    free(types);
    return rc;
}

static void set_hparams(gguf_writer *w, const l2c_cfg *c)
{
    gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    gguf_writer_set_str(w, "general.architecture", "llama");
    gguf_writer_set_str(w, "general.name", "llama");
    gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    gguf_writer_set_u32(w, "tokenizer.ggml.seperator_token_id", UINT32_MAX);
    gguf_writer_set_u32(w, "tokenizer.ggml.padding_token_id", UINT32_MAX);
    gguf_writer_set_u32(w, "llama.context_length", L2C_CTX);
    gguf_writer_set_u32(w, "llama.embedding_length", (uint32_t)c->dim);
    gguf_writer_set_u32(w, "llama.feed_forward_length", (uint32_t)c->hidden);
    gguf_writer_set_u32(w, "llama.attention.head_count", (uint32_t)c->heads);
    gguf_writer_set_u32(w, "llama.attention.head_count_kv", (uint32_t)c->kv_heads);
    gguf_writer_set_u32(w, "llama.block_count", (uint32_t)c->layers);
    gguf_writer_set_u32(w, "llama.rope.dimension_count", (uint32_t)(c->dim / c->heads));
    gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
}

typedef struct l2c_tensor {
    char name[48];
    int n_dims;
    int64_t ne[2];
    uint64_t src; /* byte offset in the checkpoint */
} l2c_tensor;

/* Lists the output tensors in llama.cpp's order with their place in the checkpoint. */
static int list_tensors(const l2c_cfg *c, bool shared, l2c_tensor *ts)
{
    uint64_t d = (uint64_t)c->dim, h = (uint64_t)c->hidden, L = (uint64_t)c->layers;
    uint64_t kv = d / (uint64_t)c->heads * (uint64_t)c->kv_heads;
    uint64_t hs = d / (uint64_t)c->heads;
    /* Start (in floats) of each checkpoint array. */
    uint64_t emb = 0, rms_att = emb + (uint64_t)c->vocab * d, wq = rms_att + L * d;
    uint64_t wk = wq + L * d * d, wv = wk + L * d * kv, wo = wv + L * d * kv;
    uint64_t rms_ffn = wo + L * d * d, w1 = rms_ffn + L * d, w2 = w1 + L * h * d;
    uint64_t w3 = w2 + L * d * h, rms_fin = w3 + L * h * d;
    uint64_t wcls = rms_fin + d + 2 * (uint64_t)c->seq_len * hs / 2;
    int n = 0;
#define ADD(nm, nd, a, b, at)                                                                      \
    do {                                                                                           \
        l2c_tensor *t = &ts[n++];                                                                  \
        snprintf(t->name, sizeof t->name, "%s", nm);                                               \
        t->n_dims = nd;                                                                            \
        t->ne[0] = (int64_t)(a);                                                                   \
        t->ne[1] = (int64_t)(b);                                                                   \
        t->src = 28 + 4 * (at);                                                                    \
    } while (0)
    ADD("token_embd.weight", 2, d, c->vocab, emb);
    ADD("output_norm.weight", 1, d, 1, rms_fin);
    ADD("output.weight", 2, d, c->vocab, shared ? emb : wcls);
    for (uint64_t l = 0; l < L; l++) {
        char nm[48];
#define BLK(part, nd, a, b, at)                                                                    \
    do {                                                                                           \
        snprintf(nm, sizeof nm, "blk.%llu.%s.weight", (unsigned long long)l, part);                \
        ADD(nm, nd, a, b, at);                                                                     \
    } while (0)
        BLK("attn_q", 2, d, d, wq + l * d * d);
        BLK("attn_k", 2, d, kv, wk + l * d * kv);
        BLK("attn_v", 2, d, kv, wv + l * d * kv);
        BLK("attn_output", 2, d, d, wo + l * d * d);
        BLK("attn_norm", 1, d, 1, rms_att + l * d);
        BLK("ffn_gate", 2, d, h, w1 + l * h * d);
        BLK("ffn_down", 2, h, d, w2 + l * d * h);
        BLK("ffn_up", 2, d, h, w3 + l * h * d);
        BLK("ffn_norm", 1, d, 1, rms_ffn + l * d);
#undef BLK
    }
#undef ADD
    return n;
}

int model_convert_llama2c(const char *ckpt_path, const char *tok_path, const char *out_path,
                          kl_err *err)
{
    mapped ck = {0}, tk = {0};
    l2c_cfg c;
    bool shared;
    l2c_tensor *ts = NULL;
    gguf_writer *w = NULL;
    int rc = map_file(ckpt_path, &ck, err);
    if (!rc) rc = read_cfg(ckpt_path, &ck, &c, &shared, err);
    if (!rc) rc = map_file(tok_path, &tk, err);
    if (!rc) rc = gguf_writer_open(&w, out_path, err);
    if (rc) goto out;
    /* Keys in llama.cpp's order: tokens, scores, token_type, then the rest. */
    if ((rc = read_tokenizer(w, tok_path, &tk, c.vocab, err))) goto out;
    set_hparams(w, &c);
    ts = calloc((size_t)c.layers * 9 + 3, sizeof *ts);
    if (!ts) {
        rc = kl_errf(err, KL_ENOMEM, "%s: out of memory", out_path);
        goto out;
    }
    int n = list_tensors(&c, shared, ts);
    for (int i = 0; i < n; i++)
        gguf_writer_add_tensor(w, ts[i].name, KL_F32, ts[i].n_dims, ts[i].ne);
    gguf_writer_begin_data(w);
    for (int i = 0; i < n; i++)
        if (gguf_writer_write(w, ck.p + ts[i].src, (size_t)(ts[i].ne[0] * ts[i].ne[1] * 4))) break;
    rc = gguf_writer_finish(w, err);
    w = NULL;
out:
    if (w) gguf_writer_abort(w);
    free(ts);
    unmap_file(&ck);
    unmap_file(&tk);
    return rc;
}
