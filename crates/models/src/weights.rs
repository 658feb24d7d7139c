//! Host-side weights by name, and the one mapping from checkpoint names (Hugging Face GPT-2 and
//! Llama, GGUF) to [`Transformer`] parameters.
//!
//! | ours | HF GPT-2 | HF Llama | GGUF |
//! |---|---|---|---|
//! | `embed` | `wte` | `model.embed_tokens` | `token_embd` |
//! | `pos_embed` | `wpe` | – | `position_embd` |
//! | `blocks.L.ln1` | `h.L.ln_1` | `model.layers.L.input_layernorm` | `blk.L.attn_norm` |
//! | `blocks.L.attn.{q,k,v}` | `h.L.attn.c_attn` (split) | `…self_attn.{q,k,v}_proj` | `blk.L.attn_{q,k,v}` / `attn_qkv` |
//! | `blocks.L.attn.o` | `h.L.attn.c_proj` | `…self_attn.o_proj` | `blk.L.attn_output` |
//! | `blocks.L.ln2` | `h.L.ln_2` | `…post_attention_layernorm` | `blk.L.ffn_norm` |
//! | `blocks.L.mlp.{in,gate,out}` | `h.L.mlp.c_fc`, –, `c_proj` | `…mlp.{up,gate,down}_proj` | `blk.L.ffn_{up,gate,down}` |
//! | `ln_final` | `ln_f` | `model.norm` | `output_norm` |
//! | `unembed` | (tied) | `lm_head` | `output` |
//!
//! HF GPT-2 stores `Conv1D` weights as `[in, out]`; every other source stores `[out, in]`.

use std::collections::HashMap;

use burn::module::Param;
use burn::tensor::{Device, Tensor, TensorData};

use crate::config::{Arch, TransformerConfig};
use crate::error::{ModelError, Result};
use crate::transformer::{Attention, Block, Mlp, Norm, Transformer};

/// A float tensor on the host, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    /// Shape, outermost first.
    pub shape: Vec<usize>,
    /// Values.
    pub data: Vec<f32>,
}

impl HostTensor {
    /// Transpose a matrix.
    pub fn transposed(&self) -> HostTensor {
        let (r, c) = (self.shape[0], self.shape[1]);
        let mut out = vec![0f32; r * c];
        for i in 0..r {
            for j in 0..c {
                out[j * r + i] = self.data[i * c + j];
            }
        }
        HostTensor {
            shape: vec![c, r],
            data: out,
        }
    }

    /// Columns `a..b` of a matrix.
    pub fn columns(&self, a: usize, b: usize) -> HostTensor {
        let (r, c) = (self.shape[0], self.shape[1]);
        let mut out = Vec::with_capacity(r * (b - a));
        for i in 0..r {
            out.extend_from_slice(&self.data[i * c + a..i * c + b]);
        }
        HostTensor {
            shape: vec![r, b - a],
            data: out,
        }
    }

    /// Entries `a..b` of a vector.
    pub fn range(&self, a: usize, b: usize) -> HostTensor {
        HostTensor {
            shape: vec![b - a],
            data: self.data[a..b].to_vec(),
        }
    }
}

/// Named weights from any checkpoint format.
pub type Weights = HashMap<String, HostTensor>;

/// Where a checkpoint came from (decides names and layouts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Hugging Face safetensors.
    HuggingFace,
    /// GGUF (llama.cpp).
    Gguf,
}

struct Builder<'a> {
    w: &'a mut Weights,
    device: &'a Device,
    prefix: String,
}

impl Builder<'_> {
    fn take(&mut self, name: &str) -> Result<HostTensor> {
        let full = format!("{}{}", self.prefix, name);
        self.w
            .remove(&full)
            .or_else(|| self.w.remove(name))
            .ok_or(ModelError::MissingTensor(full))
    }
    fn take_opt(&mut self, name: &str) -> Option<HostTensor> {
        let full = format!("{}{}", self.prefix, name);
        self.w.remove(&full).or_else(|| self.w.remove(name))
    }
}

fn check(name: &str, t: &HostTensor, expected: &[usize]) -> Result<()> {
    if t.shape != expected {
        return Err(ModelError::Shape {
            name: name.into(),
            found: t.shape.clone(),
            expected: expected.to_vec(),
        });
    }
    if t.data.iter().any(|x| !x.is_finite()) {
        return Err(ModelError::NonFinite(name.into()));
    }
    Ok(())
}

fn p1(t: HostTensor, name: &str, n: usize, device: &Device) -> Result<Param<Tensor<1>>> {
    check(name, &t, &[n])?;
    Ok(Param::from_tensor(Tensor::from_data(
        TensorData::new(t.data, [n]),
        device,
    )))
}

fn p2(t: HostTensor, name: &str, shape: [usize; 2], device: &Device) -> Result<Param<Tensor<2>>> {
    check(name, &t, &shape)?;
    Ok(Param::from_tensor(Tensor::from_data(
        TensorData::new(t.data, shape),
        device,
    )))
}

/// Undo llama.cpp's permutation of Q/K rows (GGUF stores them for interleaved RoPE; we use
/// Hugging Face's rotate-half layout). `w` is `[n_head * d_head, d_in]`.
pub fn unpermute_qk(w: &HostTensor, n_head: usize) -> HostTensor {
    let rows = w.shape[0];
    let cols = w.shape[1];
    let dh = rows / n_head;
    let half = dh / 2;
    let mut out = vec![0f32; rows * cols];
    for h in 0..n_head {
        for i in 0..half {
            for j in 0..2 {
                // GGUF row h*dh + 2i + j holds HF row h*dh + j*half + i.
                let src = h * dh + 2 * i + j;
                let dst = h * dh + j * half + i;
                out[dst * cols..(dst + 1) * cols]
                    .copy_from_slice(&w.data[src * cols..(src + 1) * cols]);
            }
        }
    }
    HostTensor {
        shape: w.shape.clone(),
        data: out,
    }
}

/// Build a [`Transformer`] from named weights. Consumes the map so peak host memory stays low.
pub fn build_transformer(
    config: TransformerConfig,
    mut weights: Weights,
    source: Source,
    device: &Device,
) -> Result<Transformer> {
    config.validate()?;
    let c = &config;
    let (d, h, hkv, dh, dm, v) = (
        c.d_model,
        c.n_heads,
        c.n_kv_heads,
        c.d_head,
        c.d_mlp,
        c.d_vocab,
    );
    // GPT-2 checkpoints saved from GPT2LMHeadModel carry a "transformer." prefix.
    let prefix = if source == Source::HuggingFace
        && c.arch == Arch::Gpt2
        && weights.keys().any(|k| k.starts_with("transformer."))
    {
        "transformer.".to_string()
    } else {
        String::new()
    };
    let mut b = Builder {
        w: &mut weights,
        device,
        prefix,
    };
    let dev = b.device;
    let rms = c.arch == Arch::Llama;
    let norm = |b: &mut Builder, w: &str, bias: &str| -> Result<Norm> {
        Ok(Norm {
            weight: p1(b.take(w)?, w, d, dev)?,
            bias: if rms {
                None
            } else {
                Some(p1(b.take(bias)?, bias, d, dev)?)
            },
            eps: c.norm_eps,
            rms,
        })
    };
    // [out, in] → ours [in, out]
    let lin = |b: &mut Builder, name: &str, din: usize, dout: usize| -> Result<Param<Tensor<2>>> {
        let t = b.take(name)?;
        check(name, &t, &[dout, din])?;
        p2(t.transposed(), name, [din, dout], dev)
    };

    let (embed_name, pos_name, final_w, final_b, out_name) = match (source, c.arch) {
        (Source::HuggingFace, Arch::Gpt2) => (
            "wte.weight",
            "wpe.weight",
            "ln_f.weight",
            "ln_f.bias",
            "lm_head.weight",
        ),
        (Source::HuggingFace, Arch::Llama) => (
            "model.embed_tokens.weight",
            "",
            "model.norm.weight",
            "",
            "lm_head.weight",
        ),
        (Source::Gguf, _) => (
            "token_embd.weight",
            "position_embd.weight",
            "output_norm.weight",
            "output_norm.bias",
            "output.weight",
        ),
    };
    let embed = p2(b.take(embed_name)?, embed_name, [v, d], dev)?;
    let pos_embed = if c.arch == Arch::Gpt2 {
        Some(p2(b.take(pos_name)?, pos_name, [c.n_ctx, d], dev)?)
    } else {
        None
    };

    let mut blocks = Vec::with_capacity(c.n_layers);
    for l in 0..c.n_layers {
        let block = match (source, c.arch) {
            (Source::HuggingFace, Arch::Gpt2) => {
                let pre = format!("h.{l}.");
                let n = |s: &str| format!("{pre}{s}");
                let ln1 = norm(&mut b, &n("ln_1.weight"), &n("ln_1.bias"))?;
                let ln2 = norm(&mut b, &n("ln_2.weight"), &n("ln_2.bias"))?;
                // Conv1D: [in, out]; c_attn packs q, k, v along out.
                let qkv = b.take(&n("attn.c_attn.weight"))?;
                check(&n("attn.c_attn.weight"), &qkv, &[d, 3 * d])?;
                let qkv_b = b.take(&n("attn.c_attn.bias"))?;
                check(&n("attn.c_attn.bias"), &qkv_b, &[3 * d])?;
                let conv = |b: &mut Builder,
                            name: String,
                            din: usize,
                            dout: usize|
                 -> Result<Param<Tensor<2>>> {
                    let t = b.take(&name)?;
                    p2(t, &name, [din, dout], dev)
                };
                let bias =
                    |b: &mut Builder, name: String, n: usize| -> Result<Option<Param<Tensor<1>>>> {
                        Ok(Some(p1(b.take(&name)?, &name, n, dev)?))
                    };
                Block {
                    ln1,
                    attn: Attention {
                        w_q: p2(qkv.columns(0, d), "q", [d, d], dev)?,
                        b_q: Some(p1(qkv_b.range(0, d), "q bias", d, dev)?),
                        w_k: p2(qkv.columns(d, 2 * d), "k", [d, d], dev)?,
                        b_k: Some(p1(qkv_b.range(d, 2 * d), "k bias", d, dev)?),
                        w_v: p2(qkv.columns(2 * d, 3 * d), "v", [d, d], dev)?,
                        b_v: Some(p1(qkv_b.range(2 * d, 3 * d), "v bias", d, dev)?),
                        w_o: conv(&mut b, n("attn.c_proj.weight"), d, d)?,
                        b_o: bias(&mut b, n("attn.c_proj.bias"), d)?,
                    },
                    ln2,
                    mlp: Mlp {
                        w_in: conv(&mut b, n("mlp.c_fc.weight"), d, dm)?,
                        b_in: bias(&mut b, n("mlp.c_fc.bias"), dm)?,
                        w_gate: None,
                        w_out: conv(&mut b, n("mlp.c_proj.weight"), dm, d)?,
                        b_out: bias(&mut b, n("mlp.c_proj.bias"), d)?,
                    },
                }
            }
            (Source::HuggingFace, Arch::Llama) => {
                let n = |s: &str| format!("model.layers.{l}.{s}");
                Block {
                    ln1: norm(&mut b, &n("input_layernorm.weight"), "")?,
                    attn: Attention {
                        w_q: lin(&mut b, &n("self_attn.q_proj.weight"), d, h * dh)?,
                        b_q: None,
                        w_k: lin(&mut b, &n("self_attn.k_proj.weight"), d, hkv * dh)?,
                        b_k: None,
                        w_v: lin(&mut b, &n("self_attn.v_proj.weight"), d, hkv * dh)?,
                        b_v: None,
                        w_o: lin(&mut b, &n("self_attn.o_proj.weight"), h * dh, d)?,
                        b_o: None,
                    },
                    ln2: norm(&mut b, &n("post_attention_layernorm.weight"), "")?,
                    mlp: Mlp {
                        w_in: lin(&mut b, &n("mlp.up_proj.weight"), d, dm)?,
                        b_in: None,
                        w_gate: Some(lin(&mut b, &n("mlp.gate_proj.weight"), d, dm)?),
                        w_out: lin(&mut b, &n("mlp.down_proj.weight"), dm, d)?,
                        b_out: None,
                    },
                }
            }
            (Source::Gguf, arch) => {
                let n = |s: &str| format!("blk.{l}.{s}");
                let ln1 = norm(&mut b, &n("attn_norm.weight"), &n("attn_norm.bias"))?;
                let ln2 = norm(&mut b, &n("ffn_norm.weight"), &n("ffn_norm.bias"))?;
                let bias =
                    |b: &mut Builder, name: String, n: usize| -> Result<Option<Param<Tensor<1>>>> {
                        match b.take_opt(&name) {
                            Some(t) => Ok(Some(p1(t, &name, n, dev)?)),
                            None => Ok(None),
                        }
                    };
                let (w_q, b_q, w_k, b_k, w_v, b_v) =
                    if let Some(qkv) = b.take_opt(&n("attn_qkv.weight")) {
                        // GPT-2 style packed [3d, d] (out, in).
                        check(&n("attn_qkv.weight"), &qkv, &[h * dh + 2 * hkv * dh, d])?;
                        let t = qkv.transposed();
                        let kq = h * dh;
                        let kk = hkv * dh;
                        let qb = b.take_opt(&n("attn_qkv.bias"));
                        let split_b =
                            |a: usize, z: usize, nm: &str| -> Result<Option<Param<Tensor<1>>>> {
                                match &qb {
                                    Some(qb) => Ok(Some(p1(qb.range(a, z), nm, z - a, dev)?)),
                                    None => Ok(None),
                                }
                            };
                        (
                            p2(t.columns(0, kq), "q", [d, kq], dev)?,
                            split_b(0, kq, "q bias")?,
                            p2(t.columns(kq, kq + kk), "k", [d, kk], dev)?,
                            split_b(kq, kq + kk, "k bias")?,
                            p2(t.columns(kq + kk, kq + 2 * kk), "v", [d, kk], dev)?,
                            split_b(kq + kk, kq + 2 * kk, "v bias")?,
                        )
                    } else {
                        let mut q = b.take(&n("attn_q.weight"))?;
                        let mut k = b.take(&n("attn_k.weight"))?;
                        check(&n("attn_q.weight"), &q, &[h * dh, d])?;
                        check(&n("attn_k.weight"), &k, &[hkv * dh, d])?;
                        if arch == Arch::Llama {
                            q = unpermute_qk(&q, h);
                            k = unpermute_qk(&k, hkv);
                        }
                        let vw = b.take(&n("attn_v.weight"))?;
                        check(&n("attn_v.weight"), &vw, &[hkv * dh, d])?;
                        (
                            p2(q.transposed(), "q", [d, h * dh], dev)?,
                            bias(&mut b, n("attn_q.bias"), h * dh)?,
                            p2(k.transposed(), "k", [d, hkv * dh], dev)?,
                            bias(&mut b, n("attn_k.bias"), hkv * dh)?,
                            p2(vw.transposed(), "v", [d, hkv * dh], dev)?,
                            bias(&mut b, n("attn_v.bias"), hkv * dh)?,
                        )
                    };
                let w_o = lin(&mut b, &n("attn_output.weight"), h * dh, d)?;
                let b_o = bias(&mut b, n("attn_output.bias"), d)?;
                let w_gate = match arch {
                    Arch::Llama => Some(lin(&mut b, &n("ffn_gate.weight"), d, dm)?),
                    Arch::Gpt2 => None,
                };
                Block {
                    ln1,
                    attn: Attention {
                        w_q,
                        b_q,
                        w_k,
                        b_k,
                        w_v,
                        b_v,
                        w_o,
                        b_o,
                    },
                    ln2,
                    mlp: Mlp {
                        w_in: lin(&mut b, &n("ffn_up.weight"), d, dm)?,
                        b_in: bias(&mut b, n("ffn_up.bias"), dm)?,
                        w_gate,
                        w_out: lin(&mut b, &n("ffn_down.weight"), dm, d)?,
                        b_out: bias(&mut b, n("ffn_down.bias"), d)?,
                    },
                }
            }
        };
        blocks.push(block);
    }
    let ln_final = norm(&mut b, final_w, final_b)?;
    let unembed = match b.take_opt(out_name) {
        Some(t) if !c.tied_embeddings || source == Source::Gguf => {
            check(out_name, &t, &[v, d])?;
            Some(p2(t.transposed(), out_name, [d, v], dev)?)
        }
        _ if c.tied_embeddings || c.arch == Arch::Gpt2 => None,
        _ => return Err(ModelError::MissingTensor(out_name.into())),
    };
    let mut config = config;
    config.tied_embeddings = unembed.is_none();
    Ok(Transformer {
        embed,
        pos_embed,
        blocks,
        ln_final,
        unembed,
        config,
        quantised: None,
    })
}
