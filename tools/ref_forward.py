#!/usr/bin/python3
"""tools/ref_forward.py: an independent reference forward pass in numpy (float64), written from
the architectures' published descriptions, for checking Kiln's forward on the architectures
llama.cpp's tree of Feb 2025 does not run (gemma3, qwen3moe) and, in CI, on the
Mixture-of-Experts ones it does (llama with experts: Mixtral; qwen2moe; deepseek2). Reads an F32 GGUF as `kiln model make`
writes it (llama.cpp's tensor names and keys; Gemma's norm weights hold 1 + w, as llama.cpp's
converter stores them) and prints, for tokens t0 t1 ..., the log-probability of each token
after the first given the ones before it: "i token logprob" lines, as `kiln perplexity
--per-token` does.

Gemma 3 (Gemma Team, "Gemma 3 Technical Report", 2025; the Hugging Face Gemma3 text model):
embeddings times sqrt(dim); per layer an RMSNorm before and after attention and before and
after the GeGLU FFN (tanh GELU); RMSNorm of every query and key head; rotary embeddings on
(i, i + d/2) pairs, base 10000 on local layers and rope.freq_base (with linear scaling, if the
file has it) on global ones; five local (sliding-window) layers to one global; queries scaled
by head_dim^-1/2; the output tied to the embedding.

Mixtures of experts (Mixtral: Jiang et al., "Mixtral of Experts", 2024; Qwen2-MoE and Qwen3-MoE:
the Hugging Face Qwen2MoeSparseMoeBlock and Qwen3MoeSparseMoeBlock): a llama-style decoder
(RMSNorm before attention and FFN, GQA, rotary embeddings: (2i, 2i+1) pairs for llama as its
GGUF files hold Q and K, (i, i + d/2) for Qwen; Qwen2 adds Q/K/V biases, Qwen3 an RMSNorm of
each query and key head before the rotation) whose FFN is a router (softmax over the experts'
logits), the top-k experts' SwiGLU FFNs summed weighted by their probabilities (renormalised to
sum 1 for Mixtral and Qwen3-MoE's norm_topk_prob), plus for Qwen2-MoE a shared expert for every
token scaled by sigmoid(x . w).

DeepSeek-V2/V3 (DeepSeek-AI, "DeepSeek-V2: A Strong, Economical, and Efficient
Mixture-of-Experts Language Model", 2024, section 2.1, and "DeepSeek-V3 Technical Report", 2024,
section 2.1; the Hugging Face DeepseekV2/V3 models): multi-head latent attention. The query is
W_q h, or low-rank W_qb RMSNorm(W_qa h); each query head is [nope | rope]. W_kva h gives a
compressed latent c (kv_lora_rank) and one key part k_r shared by every head; W_kvb RMSNorm(c)
gives each head's key part and value. The rope parts are rotated ((2i, 2i+1) pairs as the GGUF
files hold them; with YaRN: the angles of the slow pairs interpolated by 1/factor, the fast ones
kept, a linear ramp between, the magnitude unchanged since mscale = mscale_all_dim), and the
scores are scaled by (1 + 0.1 mscale_all_dim ln factor)^2 / sqrt(key length) (the GGUF's
yarn_log_multiplier is 0.1 mscale_all_dim). The first first_k_dense_replace layers have a dense
SwiGLU FFN; the others route each token to the top-k of the router's softmax (V2) or sigmoid
(V3, choosing by the score plus a per-expert bias but weighting by the score), renormalised if
norm_topk_prob, times routed_scaling_factor, plus the shared experts (one SwiGLU FFN of their
summed width) for every token.
BERT (Devlin et al., "BERT", 2018; the Hugging Face BertModel) and nomic-bert (Nussbaum et al.,
"Nomic Embed", 2024; its NomicBertModel): an encoder. Inputs: the token's embedding plus the
embedding of token type 0, plus (BERT) the learned embedding of its position; LayerNorm. Per
layer, post-norm: x = LayerNorm(x + Attention(x)), x = LayerNorm(x + FFN(x)), every LayerNorm
with a bias; attention over the whole input (no mask), scores scaled by head_dim^-1/2; BERT has
Q/K/V and output projections with biases and a GELU FFN (tanh form, as llama.cpp) with biases;
nomic-bert a fused [Q; K; V] projection, rotary embeddings on (i, i + d/2) pairs, a SwiGLU FFN
and no biases. The embedding: the final hidden states pooled as <arch>.pooling_type says (1:
mean, 2: the first token, [CLS]), scaled to unit length. Printed as "i value" lines.

usage: ref_forward.py MODEL.gguf TOKEN...
"""
import struct
import sys

import numpy as np

GGUF_TYPES = {0: 'B', 1: 'b', 2: 'H', 3: 'h', 4: 'I', 5: 'i', 6: 'f', 7: '?', 10: 'Q', 11: 'q', 12: 'd'}


def read_gguf(path):
    data = open(path, 'rb').read()
    off = 0

    def take(fmt):
        nonlocal off
        v = struct.unpack_from('<' + fmt, data, off)
        off += struct.calcsize('<' + fmt)
        return v[0]

    def string():
        nonlocal off
        n = take('Q')
        s = data[off:off + n].decode('utf-8', 'replace')
        off += n
        return s

    def value(t):
        if t == 8:
            return string()
        if t == 9:
            et, n = take('I'), take('Q')
            return [value(et) for _ in range(n)]
        return take(GGUF_TYPES[t])

    assert data[:4] == b'GGUF'
    off = 4
    take('I')
    n_tensors, n_kv = take('Q'), take('Q')
    kv = {}
    for _ in range(n_kv):
        k = string()
        kv[k] = value(take('I'))
    infos = []
    for _ in range(n_tensors):
        name = string()
        nd = take('I')
        ne = [take('Q') for _ in range(nd)]
        typ, toff = take('I'), take('Q')
        infos.append((name, ne, typ, toff))
    align = kv.get('general.alignment', 32)
    base = (off + align - 1) // align * align
    tensors = {}
    for name, ne, typ, toff in infos:
        assert typ in (0, 8), f'{name}: only F32 and Q8_0 tensors (kiln model make --type f32)'
        count = int(np.prod(ne))
        if typ == 0:
            a = np.frombuffer(data, np.float32, count, base + toff).astype(np.float64)
        else:  # Q8_0: blocks of 32 values, an F16 scale then 32 int8
            blk = np.frombuffer(data, np.uint8, count // 32 * 34, base + toff).reshape(-1, 34)
            d = blk[:, :2].copy().view(np.float16).astype(np.float64)
            a = (d * blk[:, 2:].view(np.int8).astype(np.float64)).reshape(-1)
        tensors[name] = a.reshape(list(reversed(ne))) if len(ne) > 1 else a
    return kv, tensors


def rmsnorm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def gelu(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def rope(x, pos, base, scale):
    """x: (T, heads, d); rotates pairs (i, i + d/2) by pos * base^(-2i/d) / scale."""
    d = x.shape[-1]
    inv = base ** (-np.arange(0, d, 2) / d) / scale
    ang = pos[:, None] * inv[None, :]
    c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    a, b = x[..., :d // 2], x[..., d // 2:]
    return np.concatenate([a * c - b * s, a * s + b * c], axis=-1)


def gemma3(kv, t, toks):
    g = lambda k, d=None: kv.get('gemma3.' + k, d)
    dim, n_layers = g('embedding_length'), g('block_count')
    nh, nkv = g('attention.head_count'), g('attention.head_count_kv')
    eps, window = g('attention.layer_norm_rms_epsilon'), g('attention.sliding_window')
    hd = dim // nh
    base = g('rope.freq_base', 10000.0)
    lin = g('rope.scaling.factor', 1.0) if g('rope.scaling.type', 'linear') == 'linear' else 1.0
    T = len(toks)
    pos = np.arange(T, dtype=np.float64)
    x = t['token_embd.weight'][toks] * np.sqrt(dim)
    for l in range(n_layers):
        p = lambda n: t[f'blk.{l}.{n}.weight']
        local = l % 6 < 5
        h = rmsnorm(x, p('attn_norm'), eps)
        q = (h @ p('attn_q').T).reshape(T, nh, hd)
        k = (h @ p('attn_k').T).reshape(T, nkv, hd)
        v = (h @ p('attn_v').T).reshape(T, nkv, hd)
        q, k = rmsnorm(q, p('attn_q_norm'), eps), rmsnorm(k, p('attn_k_norm'), eps)
        q = rope(q, pos, 10000.0 if local else base, 1.0 if local else lin)
        k = rope(k, pos, 10000.0 if local else base, 1.0 if local else lin)
        q = q * hd ** -0.5
        k, v = np.repeat(k, nh // nkv, axis=1), np.repeat(v, nh // nkv, axis=1)
        s = np.einsum('qhd,khd->hqk', q, k)
        qi, ki = np.arange(T)[:, None], np.arange(T)[None, :]
        mask = (ki <= qi) & (~local | (qi - ki < window))
        s = np.where(mask[None], s, -np.inf)
        s = np.exp(s - s.max(-1, keepdims=True))
        s = s / s.sum(-1, keepdims=True)
        o = np.einsum('hqk,khd->qhd', s, v).reshape(T, nh * hd) @ p('attn_output').T
        x = x + rmsnorm(o, p('post_attention_norm'), eps)
        h = rmsnorm(x, p('ffn_norm'), eps)
        f = (gelu(h @ p('ffn_gate').T) * (h @ p('ffn_up').T)) @ p('ffn_down').T
        x = x + rmsnorm(f, p('post_ffw_norm'), eps)
    x = rmsnorm(x, t['output_norm.weight'], eps)
    return x @ t.get('output.weight', t['token_embd.weight']).T


def rope_pairs(x, pos, base):
    """x: (T, heads, d); rotates pairs (2i, 2i+1) by pos * base^(-2i/d) (llama's GGUF layout)."""
    d = x.shape[-1]
    inv = base ** (-np.arange(0, d, 2) / d)
    ang = pos[:, None] * inv[None, :]
    c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    a, b = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2], out[..., 1::2] = a * c - b * s, a * s + b * c
    return out


def silu(x):
    return x / (1 + np.exp(-x))


def moe_ffn(h, p, n_used, renorm, shared):
    """h: (T, dim). The router's softmax, each token's top n_used experts, their FFNs summed
    weighted by their probabilities (renormalised when renorm), plus the gated shared expert."""
    logits = h @ p('ffn_gate_inp').T
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs = probs / probs.sum(-1, keepdims=True)
    gate, up, down = p('ffn_gate_exps'), p('ffn_up_exps'), p('ffn_down_exps')
    out = np.zeros_like(h)
    for t in range(h.shape[0]):
        top = np.argsort(-probs[t], kind='stable')[:n_used]
        w = probs[t][top]
        if renorm:
            w = w / w.sum()
        for e, we in zip(top, w):
            out[t] += we * ((silu(h[t] @ gate[e].T) * (h[t] @ up[e].T)) @ down[e].T)
    if shared:
        g = 1 / (1 + np.exp(-(h @ p('ffn_gate_inp_shexp'))))
        f = (silu(h @ p('ffn_gate_shexp').T) * (h @ p('ffn_up_shexp').T)) @ p('ffn_down_shexp').T
        out = out + g[:, None] * f
    return out


def moe(kv, t, toks, arch):
    g = lambda k, d=None: kv.get(f'{arch}.{k}', d)
    dim, n_layers = g('embedding_length'), g('block_count')
    nh, nkv = g('attention.head_count'), g('attention.head_count_kv')
    eps, base = g('attention.layer_norm_rms_epsilon'), g('rope.freq_base', 10000.0)
    hd = g('attention.key_length', dim // nh)
    n_used = g('expert_used_count')
    T = len(toks)
    pos = np.arange(T, dtype=np.float64)
    x = t['token_embd.weight'][toks]
    for l in range(n_layers):
        p = lambda n: t[f'blk.{l}.{n}.weight']
        b = lambda n: t[f'blk.{l}.{n}.bias'] if arch == 'qwen2moe' else 0.0
        h = rmsnorm(x, p('attn_norm'), eps)
        q = (h @ p('attn_q').T + b('attn_q')).reshape(T, nh, hd)
        k = (h @ p('attn_k').T + b('attn_k')).reshape(T, nkv, hd)
        v = (h @ p('attn_v').T + b('attn_v')).reshape(T, nkv, hd)
        if arch == 'qwen3moe':
            q, k = rmsnorm(q, p('attn_q_norm'), eps), rmsnorm(k, p('attn_k_norm'), eps)
        if arch == 'llama':
            q, k = rope_pairs(q, pos, base), rope_pairs(k, pos, base)
        else:
            q, k = rope(q, pos, base, 1.0), rope(k, pos, base, 1.0)
        k, v = np.repeat(k, nh // nkv, axis=1), np.repeat(v, nh // nkv, axis=1)
        s = np.einsum('qhd,khd->hqk', q, k) * hd ** -0.5
        s = np.where(np.tril(np.ones((T, T), bool))[None], s, -np.inf)
        s = np.exp(s - s.max(-1, keepdims=True))
        s = s / s.sum(-1, keepdims=True)
        x = x + np.einsum('hqk,khd->qhd', s, v).reshape(T, nh * hd) @ p('attn_output').T
        h = rmsnorm(x, p('ffn_norm'), eps)
        x = x + moe_ffn(h, p, n_used, arch != 'qwen2moe', arch == 'qwen2moe')
    x = rmsnorm(x, t['output_norm.weight'], eps)
    return x @ t.get('output.weight', t['token_embd.weight']).T


def yarn_angles(pos, d, base, factor, n_ctx_orig):
    """Angles (T, d/2) of the (2i, 2i+1) pairs: base^(-2i/d) per position; with factor > 1
    YaRN's blend (Peng et al., "YaRN", 2023): pairs turning more than 32 times over the
    original context keep their angle, those turning less than once are interpolated, and
    the ones between are a linear mix, on pair indices floored and ceiled."""
    inv = base ** (-np.arange(0, d, 2) / d)
    if factor > 1:
        dim_at = lambda turns: d * np.log(n_ctx_orig / (turns * 2 * np.pi)) / (2 * np.log(base))
        lo, hi = max(0.0, np.floor(dim_at(32))), min(d - 1.0, np.ceil(dim_at(1)))
        keep = 1 - np.clip((np.arange(d // 2) - lo) / max(0.001, hi - lo), 0, 1)
        inv = inv / factor * (1 - keep) + inv * keep
    return pos[:, None] * inv[None, :]


def rotate_pairs(x, ang):
    """x: (T, heads, d) rotated by ang (T, d/2) on (2i, 2i+1) pairs."""
    c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    a, b = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2], out[..., 1::2] = a * c - b * s, a * s + b * c
    return out


def swiglu_ffn(h, gate, up, down):
    return (silu(h @ gate.T) * (h @ up.T)) @ down.T


def deepseek2(kv, t, toks):
    g = lambda k, d=None: kv.get('deepseek2.' + k, d)
    dim, n_layers, nh = g('embedding_length'), g('block_count'), g('attention.head_count')
    eps, base = g('attention.layer_norm_rms_epsilon'), g('rope.freq_base', 10000.0)
    hd, vd, rot = g('attention.key_length'), g('attention.value_length'), g('rope.dimension_count')
    kvr, nope = g('attention.kv_lora_rank'), hd - rot
    n_used, dense = g('expert_used_count'), g('leading_dense_block_count')
    sigmoid, renorm, wscale = g('expert_gating_func', 1) == 2, g('expert_weights_norm', False), \
        g('expert_weights_scale')
    yarn = g('rope.scaling.type', 'none') == 'yarn'
    factor = g('rope.scaling.factor', 1.0) if yarn else 1.0
    scale = (1 + g('rope.scaling.yarn_log_multiplier', 0.0) * np.log(factor)) ** 2 / np.sqrt(hd)
    T = len(toks)
    ang = yarn_angles(np.arange(T, dtype=np.float64), rot, base, factor,
                      g('rope.scaling.original_context_length', g('context_length')))
    x = t['token_embd.weight'][toks]
    for l in range(n_layers):
        p = lambda n, k='weight': t[f'blk.{l}.{n}.{k}']
        h = rmsnorm(x, p('attn_norm'), eps)
        if f'blk.{l}.attn_q_a.weight' in t:
            q = rmsnorm(h @ p('attn_q_a').T, p('attn_q_a_norm'), eps) @ p('attn_q_b').T
        else:
            q = h @ p('attn_q').T
        q = q.reshape(T, nh, hd)
        lat = h @ p('attn_kv_a_mqa').T
        kvb = (rmsnorm(lat[:, :kvr], p('attn_kv_a_norm'), eps) @ p('attn_kv_b').T)
        kvb = kvb.reshape(T, nh, nope + vd)
        k_r = rotate_pairs(lat[:, None, kvr:], ang)
        q = np.concatenate([q[..., :nope], rotate_pairs(q[..., nope:], ang)], axis=-1)
        k = np.concatenate([kvb[..., :nope], np.repeat(k_r, nh, axis=1)], axis=-1)
        s = np.einsum('qhd,khd->hqk', q, k) * scale
        s = np.where(np.tril(np.ones((T, T), bool))[None], s, -np.inf)
        s = np.exp(s - s.max(-1, keepdims=True))
        s = s / s.sum(-1, keepdims=True)
        o = np.einsum('hqk,khd->qhd', s, kvb[..., nope:]).reshape(T, nh * vd)
        x = x + o @ p('attn_output').T
        h = rmsnorm(x, p('ffn_norm'), eps)
        if l < dense:
            x = x + swiglu_ffn(h, p('ffn_gate'), p('ffn_up'), p('ffn_down'))
            continue
        logits = h @ p('ffn_gate_inp').T
        if sigmoid:
            probs = 1 / (1 + np.exp(-logits))
        else:
            probs = np.exp(logits - logits.max(-1, keepdims=True))
            probs = probs / probs.sum(-1, keepdims=True)
        choose = probs + t.get(f'blk.{l}.exp_probs_b.bias', 0.0)
        gate, up, down = p('ffn_gate_exps'), p('ffn_up_exps'), p('ffn_down_exps')
        out = swiglu_ffn(h, p('ffn_gate_shexp'), p('ffn_up_shexp'), p('ffn_down_shexp'))
        for i in range(T):
            top = np.argsort(-choose[i], kind='stable')[:n_used]
            w = probs[i][top]
            w = (w / w.sum() if renorm else w) * wscale
            for e, we in zip(top, w):
                out[i] += we * swiglu_ffn(h[i], gate[e], up[e], down[e])
        x = x + out
    x = rmsnorm(x, t['output_norm.weight'], eps)
    return x @ t.get('output.weight', t['token_embd.weight']).T
def layernorm(x, w, b, eps):
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / np.sqrt(v + eps) * w + b


def bert(kv, t, toks, arch):
    g = lambda k, d=None: kv.get(f'{arch}.{k}', d)
    dim, n_layers = g('embedding_length'), g('block_count')
    nh, nkv = g('attention.head_count'), g('attention.head_count_kv', g('attention.head_count'))
    eps, base = g('attention.layer_norm_epsilon'), g('rope.freq_base', 10000.0)
    hd = dim // nh
    T = len(toks)
    pos = np.arange(T, dtype=np.float64)
    x = t['token_embd.weight'][toks] + t['token_types.weight'][0]
    if arch == 'bert':
        x = x + t['position_embd.weight'][:T]
    x = layernorm(x, t['token_embd_norm.weight'], t['token_embd_norm.bias'], eps)
    for l in range(n_layers):
        p = lambda n: t[f'blk.{l}.{n}.weight']
        b = lambda n: t[f'blk.{l}.{n}.bias'] if arch == 'bert' else 0.0
        if arch == 'bert':
            q, k, v = (x @ p(n).T + b(n) for n in ('attn_q', 'attn_k', 'attn_v'))
        else:
            qkv = x @ p('attn_qkv').T
            q, k, v = qkv[:, :dim], qkv[:, dim:dim + nkv * hd], qkv[:, dim + nkv * hd:]
        q, k, v = q.reshape(T, nh, hd), k.reshape(T, nkv, hd), v.reshape(T, nkv, hd)
        if arch != 'bert':
            q, k = rope(q, pos, base, 1.0), rope(k, pos, base, 1.0)
        k, v = np.repeat(k, nh // nkv, axis=1), np.repeat(v, nh // nkv, axis=1)
        s = np.einsum('qhd,khd->hqk', q, k) * hd ** -0.5
        s = np.exp(s - s.max(-1, keepdims=True))
        s = s / s.sum(-1, keepdims=True)
        o = np.einsum('hqk,khd->qhd', s, v).reshape(T, dim) @ p('attn_output').T + b('attn_output')
        x = layernorm(x + o, p('attn_output_norm'), t[f'blk.{l}.attn_output_norm.bias'], eps)
        if arch == 'bert':
            f = gelu(x @ p('ffn_up').T + b('ffn_up')) @ p('ffn_down').T + b('ffn_down')
        else:
            f = (silu(x @ p('ffn_gate').T) * (x @ p('ffn_up').T)) @ p('ffn_down').T
        x = layernorm(x + f, p('layer_output_norm'), t[f'blk.{l}.layer_output_norm.bias'], eps)
    e = x[0] if g('pooling_type', 1) == 2 else x.mean(0)
    return e / np.linalg.norm(e)


def main():
    kv, t = read_gguf(sys.argv[1])
    toks = [int(a) for a in sys.argv[2:]]
    arch = kv['general.architecture']
    if arch in ('bert', 'nomic-bert'):
        for i, v in enumerate(bert(kv, t, toks, arch)):
            print(f'{i} {v:.9e}')
        return
    if arch == 'gemma3':
        logits = gemma3(kv, t, toks)
    elif arch == 'deepseek2':
        logits = deepseek2(kv, t, toks)
    else:
        assert arch in ('llama', 'qwen2moe', 'qwen3moe') and f'{arch}.expert_count' in kv, \
            f'{arch}: no reference here (llama.cpp runs it)'
        logits = moe(kv, t, toks, arch)
    for i in range(len(toks) - 1):
        row = logits[i] - logits[i].max()
        lp = row[toks[i + 1]] - np.log(np.exp(row).sum())
        print(f'{i + 1} {toks[i + 1]} {lp:.6f}')


if __name__ == '__main__':
    main()
