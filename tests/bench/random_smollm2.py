#!/usr/bin/env python3
"""A SmolLM2-135M-shaped model with seeded random weights, as a Hugging Face folder
(config.json, model.safetensors, tokenizer.json), for benchmarking where the real weights cannot
be fetched: the machine the `device` tool lends has no network and takes at most 64 MiB of files.
Speed depends on the shapes, not the values, so both sides of the bench read this one folder:

    python3 tests/bench/random_smollm2.py DIR --tokenizer public/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
    python3 tests/bench/random_smollm2.py DIR --tokenizer TOKDIR   # where no GGUF is: a folder
                                                                   # holding an earlier run's tokenizer files
    INTERPLAY_BENCH_MODEL=DIR cargo bench --profile dev -p interplay-models --bench smollm2
    PEER_MODEL=DIR python3 tests/bench/peer_smollm2.py

The shapes are those of `interplay_models::config::TransformerConfig::smollm2_135m`.
"""
import argparse
import os
import shutil

import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

ap = argparse.ArgumentParser()
ap.add_argument("dir")
ap.add_argument("--tokenizer", required=True, help="SmolLM2's GGUF, or a folder of its tokenizer files")
ap.add_argument("--seed", type=int, default=0)
a = ap.parse_args()
os.makedirs(a.dir, exist_ok=True)

config = LlamaConfig(
    vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
    num_attention_heads=9, num_key_value_heads=3, head_dim=64, max_position_embeddings=8192,
    rms_norm_eps=1e-5, rope_theta=100000.0, tie_word_embeddings=True, hidden_act="silu",
    bos_token_id=1, eos_token_id=2,
)
torch.manual_seed(a.seed)
LlamaForCausalLM(config).to(torch.float32).save_pretrained(a.dir, safe_serialization=True)

if a.tokenizer.endswith(".gguf"):
    d, f = os.path.split(os.path.abspath(a.tokenizer))
    AutoTokenizer.from_pretrained(d, gguf_file=f).save_pretrained(a.dir)
else:
    for f in os.listdir(a.tokenizer):
        if f.startswith("tokenizer") or f == "special_tokens_map.json":
            shutil.copy(os.path.join(a.tokenizer, f), a.dir)
print(f"wrote {a.dir}: {sorted(os.listdir(a.dir))}")
