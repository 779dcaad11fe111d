"""Writes tokenizer.json / tokenizer_config.json for ggml-vocab-bert-bge.gguf, so that
transformers.js can run Hugging Face's BERT pipeline over the same vocabulary: GGUF stores
word-initial pieces as "▁x" and continuations as "x"; Hugging Face as "x" and "##x".
usage: bge_json.py VOCAB.gguf OUTDIR"""
import json
import struct
import sys

def read_kv(path):
    with open(path, 'rb') as f:
        data = f.read()
    off = 4
    def take(fmt):
        nonlocal off
        v = struct.unpack_from('<' + fmt, data, off)
        off += struct.calcsize('<' + fmt)
        return v
    def string():
        nonlocal off
        (n,) = take('Q')
        s = data[off:off + n].decode('utf-8', 'replace')
        off += n
        return s
    sizes = {0: 'B', 1: 'b', 2: 'H', 3: 'h', 4: 'I', 5: 'i', 6: 'f', 7: '?', 10: 'Q', 11: 'q', 12: 'd'}
    def value(t):
        if t == 8:
            return string()
        if t == 9:
            et, n = take('IQ')
            return [value(et) for _ in range(n)]
        return take(sizes[t])[0]
    _, _, n_kv = take('IQQ')
    kv = {}
    for _ in range(n_kv):
        k = string()
        (t,) = take('I')
        kv[k] = value(t)
    return kv

kv = read_kv(sys.argv[1])
toks, types = kv['tokenizer.ggml.tokens'], kv['tokenizer.ggml.token_type']
vocab = {}
for i, t in enumerate(toks):
    key = t if types[i] == 3 else (t[1:] if t.startswith('\u2581') else '##' + t)
    vocab.setdefault(key, i)
added = [{"id": i, "content": toks[i], "single_word": False, "lstrip": False, "rstrip": False,
          "normalized": False, "special": True} for i in range(len(toks)) if types[i] == 3]
tj = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
      "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
                     "strip_accents": None, "lowercase": True},
      "pre_tokenizer": {"type": "BertPreTokenizer"}, "post_processor": None,
      "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
      "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                "max_input_chars_per_word": 100, "vocab": vocab}}
json.dump(tj, open(sys.argv[2] + '/tokenizer.json', 'w'))
json.dump({"tokenizer_class": "BertTokenizer", "do_lower_case": True, "unk_token": "[UNK]",
           "cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]",
           "mask_token": "[MASK]", "model_max_length": 512},
          open(sys.argv[2] + '/tokenizer_config.json', 'w'))
