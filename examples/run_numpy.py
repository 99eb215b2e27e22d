"""A model is a file of numbers plus a short program: greedy generation with numpy alone.

    python examples/run_numpy.py MODEL_FOLDER "prompt text" [--max-new-tokens N]

MODEL_FOLDER is a zeroformer checkpoint (or a run folder: its latest.json is followed):
model.safetensors (the numbers), config.json (their shapes and the architecture switches) and
tokenizer.json. No torch: the safetensors file is read here byte by byte (an 8-byte header
length, a JSON header of {name: dtype, shape, byte offsets}, then raw little-endian arrays), and
the forward pass is written out below in numpy, in float64:

    h = E[x] (+ P[pos])                                  GPT-2: learned positions; LLaMA: none
    per block (pre-norm):   h = h + Attn(Norm(h));   h = h + FFN(Norm(h))
      Attn: q, k, v = h W_q^T, h W_k^T, h W_v^T, split into heads; LLaMA rotates q and k by
            position (RoPE) and shares each k/v head among n_head / n_kv_head query heads (GQA);
            softmax(q k^T / sqrt(d) + causal mask) v, heads concatenated, times W_o^T
      FFN:  GPT-2 W_down gelu(W_up h + b);  LLaMA (SwiGLU) W_down (silu(W_gate h) * W_up h)
      Norm: LayerNorm (GPT-2) or RMSNorm (LLaMA)
    logits = Norm(h) W_out^T       W_out = E when the embeddings are tied
    next token = argmax(logits at the last position); append; repeat (no cache: the short way)

Tokenizer: zeroformer's tokenizer reader (zeroformer/tokenizers/) is pure Python (regex, json;
it never imports torch), so this script uses it to turn text into ids and back. The script
prints `torch imported = False` at the end to show it.
tests/test_examples.py checks that the ids equal `zeroformer generate`'s, token for token, on a
GPT-2-style and a LLaMA-style checkpoint.
"""

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
from zeroformer.tokenizers import load_tokenizer  # noqa: E402  (pure Python, no torch)

DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64}


def read_safetensors(path) -> dict:
    """{name: float64 array} from a .safetensors file (BF16 = the top 16 bits of a float32)."""
    raw = Path(path).read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        if info["dtype"] == "BF16":
            bits = np.frombuffer(data[begin:end], dtype="<u2").astype(np.uint32) << 16
            a = bits.view(np.float32)
        else:
            a = np.frombuffer(data[begin:end], dtype=np.dtype(DTYPES[info["dtype"]]).newbyteorder("<"))
        out[name] = a.reshape(info["shape"]).astype(np.float64)
    return out


def find_checkpoint(folder: Path) -> Path:
    latest = folder / "latest.json"
    return folder / json.loads(latest.read_text())["path"] if latest.exists() else folder


# -- the pieces of the forward pass --------------------------------------------------------------
def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + (b if b is not None else 0.0)


def rms_norm(x, w, eps):
    return x / np.sqrt((x ** 2).mean(-1, keepdims=True) + eps) * w


_erf = np.vectorize(math.erf)
ACT = {
    "relu": lambda x: np.maximum(x, 0.0),
    "gelu": lambda x: 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0))),
    "gelu_tanh": lambda x: 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3))),
    "silu": lambda x: x / (1.0 + np.exp(-x)),
}


def rope(x, base):
    """Rotate pairs (i, i + d/2) of every head of x (h, T, d) by angle pos * base^(-2i/d)."""
    d, t = x.shape[-1], x.shape[-2]
    inv_freq = 1.0 / base ** (np.arange(0, d, 2, dtype=np.float64) / d)        # (d/2,)
    ang = np.arange(t)[:, None] * inv_freq[None, :]                             # (T, d/2)
    cos, sin = np.cos(np.concatenate([ang, ang], -1)), np.sin(np.concatenate([ang, ang], -1))
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return x * cos + np.concatenate([-x2, x1], -1) * sin


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


class NumpyLM:
    def __init__(self, folder):
        folder = find_checkpoint(Path(folder))
        self.c = json.loads((folder / "config.json").read_text())
        self.w = read_safetensors(folder / "model.safetensors")
        self.tok = load_tokenizer(folder)
        if self.c["arch"] != "decoder":
            raise SystemExit(f"{folder}: arch {self.c['arch']!r}: this script runs decoder-only models")

    def norm(self, x, name):
        c, w = self.c, self.w
        if c["norm"] == "rmsnorm":
            return rms_norm(x, w[f"{name}.weight"], c["norm_eps"])
        return layer_norm(x, w[f"{name}.weight"], w.get(f"{name}.bias"), c["norm_eps"])

    def linear(self, x, name):
        y = x @ self.w[f"{name}.weight"].T
        return y + self.w[f"{name}.bias"] if f"{name}.bias" in self.w else y

    def attention(self, x, p):
        c = self.c
        t, hq, hkv, d = x.shape[0], c["n_head"], c["n_kv_head"], c["head_dim"]
        q = self.linear(x, f"{p}.q_proj").reshape(t, hq, d).transpose(1, 0, 2)   # (h, T, d)
        k = self.linear(x, f"{p}.k_proj").reshape(t, hkv, d).transpose(1, 0, 2)
        v = self.linear(x, f"{p}.v_proj").reshape(t, hkv, d).transpose(1, 0, 2)
        if c["position"] == "rope":
            q, k = rope(q, c["rope_base"]), rope(k, c["rope_base"])
        k, v = np.repeat(k, hq // hkv, axis=0), np.repeat(v, hq // hkv, axis=0)   # GQA
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(d)                          # (h, T, T)
        scores = np.where(np.tri(t, dtype=bool), scores, -np.inf)                 # causal
        out = (softmax(scores) @ v).transpose(1, 0, 2).reshape(t, hq * d)
        return self.linear(out, f"{p}.o_proj")

    def ffn(self, x, p):
        act = ACT[self.c["activation"]]
        if self.c["gated_ffn"]:
            return self.linear(act(self.linear(x, f"{p}.gate")) * self.linear(x, f"{p}.up"), f"{p}.down")
        return self.linear(act(self.linear(x, f"{p}.up")), f"{p}.down")

    def logits(self, ids):
        c, w = self.c, self.w
        h = w["embed.tok.weight"][ids]
        if c.get("scale_embeddings"):
            h = h * math.sqrt(c["d_model"])
        if c["position"] == "learned":
            h = h + w["embed.pos.weight"][np.arange(len(ids)) + c.get("position_offset", 0)]
        for i in range(c["n_layer"]):
            p = f"blocks.{i}"
            if c["prenorm"]:
                h = h + self.attention(self.norm(h, f"{p}.norm_attn"), f"{p}.self_attn")
                h = h + self.ffn(self.norm(h, f"{p}.norm_ffn"), f"{p}.ffn")
            else:
                h = self.norm(h + self.attention(h, f"{p}.self_attn"), f"{p}.norm_attn")
                h = self.norm(h + self.ffn(h, f"{p}.ffn"), f"{p}.norm_ffn")
        if c.get("final_norm", True):
            h = self.norm(h, "norm")
        head = w["embed.tok.weight"] if c["tie_embeddings"] else w["lm_head.weight"]
        return h[-1] @ head.T

    def generate(self, ids, max_new_tokens):
        ids, eos = list(ids), self.c.get("eos_token_id")
        for _ in range(max_new_tokens):
            nxt = int(np.argmax(self.logits(ids)))
            ids.append(nxt)
            if nxt == eos:
                break
        return ids


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", help="zeroformer checkpoint or run folder")
    ap.add_argument("prompt")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    args = ap.parse_args(argv)
    lm = NumpyLM(args.model)
    prompt = lm.tok.encode(args.prompt)
    bos = getattr(lm.tok, "bos_token_id", None)
    if getattr(lm.tok, "add_bos", False) and bos is not None and (not prompt or prompt[0] != bos):
        prompt = [bos] + prompt     # the tokenizer asks for a BOS in front (as zeroformer generate)
    ids = lm.generate(prompt, args.max_new_tokens)
    n = sum(a.size for a in lm.w.values())
    print(f"{n:,} numbers; config: {lm.c['n_layer']} layers, d {lm.c['d_model']}, "
          f"{lm.c['norm']}, {lm.c['position']} positions, {lm.c['activation']}"
          f"{' gated' if lm.c['gated_ffn'] else ''}, {lm.c['n_head']}/{lm.c['n_kv_head']} heads")
    print("ids =", ids[len(prompt):])
    print("text =", repr(lm.tok.decode(ids[len(prompt):])))
    print("torch imported =", "torch" in sys.modules)


if __name__ == "__main__":
    main()
