#!/usr/bin/env python3
"""PyTorch peer figures for `cargo xtask bench` (prints, asserts nothing).

SmolLM2-135M-Instruct from the same GGUF, loaded by transformers, 2 threads, float32:
forward on the 14-token IOI prompt (also on one thread, beside the page's one-thread engine);
forward caching every module output (what TransformerLens's run_with_cache keeps); and the resid_pre patching sweep (31 x 14) done the best simple way in
PyTorch: the corrupted run's residual stream is cached, and for each layer L the 14 position
variants run layers L.. as one batch (unpatched layers reused); greedy `generate` of 32 tokens
after the prompt (key/value cache).

PEER_MODEL=DIR reads another copy of SmolLM2 (a Hugging Face folder, e.g. the random-weight one
tests/bench/random_smollm2.py writes); PEER_DEVICE=cuda runs on an NVIDIA GPU (timed after
torch.cuda.synchronize), for the real-GPU figures beside `INTERPLAY_BENCH_DEVICE=wgpu`.
"""
import os
import statistics
import sys
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

torch.set_num_threads(int(os.environ.get("PEER_THREADS", "2")))
torch.set_grad_enabled(False)
DEV = os.environ.get("PEER_DEVICE", "cpu")
path = os.environ.get("PEER_MODEL") or os.path.join(
    os.path.dirname(__file__), "..", "..", "public", "models", "smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
if not os.path.exists(path):
    print("peer: SmolLM2 missing")
    sys.exit(0)
if os.path.isdir(path):
    d, kw = path, {}
else:
    d, f = os.path.split(os.path.abspath(path))
    kw = {"gguf_file": f}
tok = AutoTokenizer.from_pretrained(d, **kw)
model = AutoModelForCausalLM.from_pretrained(d, **kw, dtype=torch.float32, attn_implementation="eager").eval().to(DEV)
CUDA = torch.device(DEV).type == "cuda"
WHERE = f"{DEV}, {torch.cuda.get_device_name(DEV)}" if CUDA else f"cpu, {torch.get_num_threads()} threads"
clean = torch.tensor([tok("When Mary and John went to the store, John gave a drink to", add_special_tokens=False).input_ids], device=DEV)
corrupt = torch.tensor([tok("When Mary and John went to the store, Mary gave a drink to", add_special_tokens=False).input_ids], device=DEV)
mary = tok(" Mary", add_special_tokens=False).input_ids[0]
john = tok(" John", add_special_tokens=False).input_ids[0]
P = clean.shape[1]


def sync():
    if CUDA:
        torch.cuda.synchronize()


def med(fn, reps):
    fn()
    sync()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        sync()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


fwd = med(lambda: model(clean), 10)
# The same forward on one thread: the page's one-thread engine is compared with it.
fwd_one = None
if not CUDA and torch.get_num_threads() > 1:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    fwd_one = med(lambda: model(clean), 10)
    torch.set_num_threads(threads)

store = {}
handles = [m.register_forward_hook(lambda mod, a, o, n=n: store.__setitem__(n, o)) for n, m in model.named_modules() if n]
cached = med(lambda: model(clean, output_attentions=True), 5)
for h in handles:
    h.remove()

layers = model.model.layers
n = len(layers)


def sweep(first=0):
    """Variants patch positions first..P-1 (first > 0: the earlier ones are no-ops, see below)."""
    out = model(clean, output_hidden_states=True)
    clean_h = out.hidden_states  # [n+1] of [1, P, d]; index L = input to layer L (last: after norm)
    cor = model(corrupt, output_hidden_states=True).hidden_states
    V = P - first
    pos_ids = torch.arange(P, device=DEV)[None].expand(V, P)
    grid = torch.zeros(n + 1, P, device=DEV)
    for L in range(n):
        h = cor[L].expand(V, P, -1).clone()
        h[torch.arange(V, device=DEV), torch.arange(first, P, device=DEV)] = clean_h[L][0, first:]
        pe = model.model.rotary_emb(h, pos_ids)
        mask = torch.full((P, P), float("-inf"), device=DEV).triu(1)[None, None]
        for layer in layers[L:]:
            h = layer(h, attention_mask=mask, position_ids=pos_ids, position_embeddings=pe)
            h = h[0] if isinstance(h, tuple) else h
        logits = model.lm_head(model.model.norm(h[:, -1]))
        grid[L, first:] = logits[:, mary] - logits[:, john]
    return grid


sw = med(sweep, 3)
# Interplay's sweep skips positions before the first token where the prompts differ (their
# activations are equal in both runs, so the patch is a no-op); the same skip here, for a ratio
# that does not come from that alone.
first = next(i for i in range(P) if clean[0, i] != corrupt[0, i])
sw_skip = med(lambda: sweep(first), 3)
print(f"torch [{WHERE}] forward, {P} tokens: {fwd * 1e3:.1f} ms")
if fwd_one is not None:
    print(f"torch [cpu, 1 thread] forward, {P} tokens: {fwd_one * 1e3:.1f} ms")
print(f"torch [{WHERE}] forward caching every module output: {cached * 1e3:.1f} ms")
print(f"torch [{WHERE}] resid_pre patching sweep (31 x {P}), unpatched layers reused: {sw:.2f} s")
print(f"torch [{WHERE}] the same, patching only positions {first}.. (where the prompts differ and after): {sw_skip:.2f} s")

NEW = 32
gen = med(lambda: model.generate(clean, max_new_tokens=NEW, min_new_tokens=NEW, do_sample=False,
                                  pad_token_id=tok.eos_token_id), 3)
print(f"torch [{WHERE}] greedy generate, {NEW} tokens after {P}: {gen:.2f} s, {NEW / gen:.1f} tokens/s")
