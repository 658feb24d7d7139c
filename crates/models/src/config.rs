//! Transformer configurations: named presets, and configs read from HF `config.json`.

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// The two families Interplay runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// Learned positions, LayerNorm, GELU MLP, biases everywhere, tied unembedding.
    Gpt2,
    /// RoPE, RMSNorm, SwiGLU MLP, grouped-query attention, no biases.
    Llama,
}

/// Everything the forward pass needs to know about a model's shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TransformerConfig {
    /// Family.
    pub arch: Arch,
    /// Number of blocks.
    pub n_layers: usize,
    /// Residual width.
    pub d_model: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads (`n_heads` without grouped-query attention).
    pub n_kv_heads: usize,
    /// Width of one head.
    pub d_head: usize,
    /// MLP hidden width.
    pub d_mlp: usize,
    /// Vocabulary size.
    pub d_vocab: usize,
    /// Context length (learned position embeddings have this many rows).
    pub n_ctx: usize,
    /// Norm epsilon.
    pub norm_eps: f64,
    /// RoPE base (Llama).
    pub rope_theta: f64,
    /// Whether the unembedding is the embedding's transpose.
    pub tied_embeddings: bool,
}

impl TransformerConfig {
    /// SmolLM2-135M(-Instruct): 30 layers, d_model 576, 9 query heads sharing 3 KV heads.
    pub fn smollm2_135m() -> Self {
        Self {
            arch: Arch::Llama,
            n_layers: 30,
            d_model: 576,
            n_heads: 9,
            n_kv_heads: 3,
            d_head: 64,
            d_mlp: 1536,
            d_vocab: 49152,
            n_ctx: 8192,
            norm_eps: 1e-5,
            rope_theta: 100_000.0,
            tied_embeddings: true,
        }
    }

    /// GPT-2 small (124M).
    pub fn gpt2_small() -> Self {
        Self {
            arch: Arch::Gpt2,
            n_layers: 12,
            d_model: 768,
            n_heads: 12,
            n_kv_heads: 12,
            d_head: 64,
            d_mlp: 3072,
            d_vocab: 50257,
            n_ctx: 1024,
            norm_eps: 1e-5,
            rope_theta: 0.0,
            tied_embeddings: true,
        }
    }

    /// Query heads per key/value head.
    pub fn group_size(&self) -> usize {
        self.n_heads / self.n_kv_heads.max(1)
    }

    /// Check the numbers fit together (a config from a file can say anything).
    pub fn validate(&self) -> Result<()> {
        let bad = |why: String| {
            Err(ModelError::Format {
                format: "model config",
                reason: why,
            })
        };
        if self.n_layers == 0 || self.d_model == 0 || self.n_heads == 0 || self.d_vocab == 0 {
            return bad("zero layers, width, heads or vocabulary".into());
        }
        if self.n_kv_heads == 0 || !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return bad(format!(
                "{} query heads cannot share {} key/value heads",
                self.n_heads, self.n_kv_heads
            ));
        }
        if self.d_head == 0 || (self.arch == Arch::Llama && !self.d_head.is_multiple_of(2)) {
            return bad(format!("head width {} is not usable", self.d_head));
        }
        if self.n_layers > 1024 || self.d_model > 65536 || self.d_vocab > 1 << 22 {
            return bad("implausibly large model".into());
        }
        Ok(())
    }

    /// Read a Hugging Face `config.json` (GPT-2 or Llama families).
    pub fn from_hf_json(bytes: &[u8]) -> Result<Self> {
        let v: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| ModelError::Format {
                format: "config.json",
                reason: e.to_string(),
            })?;
        let get = |k: &str| v.get(k).and_then(|x| x.as_u64()).map(|x| x as usize);
        let getf = |k: &str| v.get(k).and_then(|x| x.as_f64());
        let need = |k: &str| {
            get(k).ok_or_else(|| ModelError::Format {
                format: "config.json",
                reason: format!("missing integer field {k:?}"),
            })
        };
        let model_type = v.get("model_type").and_then(|x| x.as_str()).unwrap_or("");
        let cfg = match model_type {
            "gpt2" => {
                let d = need("n_embd")?;
                let h = need("n_head")?;
                Self {
                    arch: Arch::Gpt2,
                    n_layers: need("n_layer")?,
                    d_model: d,
                    n_heads: h,
                    n_kv_heads: h,
                    d_head: d / h.max(1),
                    d_mlp: get("n_inner").unwrap_or(4 * d),
                    d_vocab: need("vocab_size")?,
                    n_ctx: need("n_positions")?,
                    norm_eps: getf("layer_norm_epsilon").unwrap_or(1e-5),
                    rope_theta: 0.0,
                    tied_embeddings: true,
                }
            }
            "llama" | "mistral" | "qwen2" => {
                if model_type != "llama" {
                    return Err(ModelError::UnsupportedArchitecture(model_type.into()));
                }
                let d = need("hidden_size")?;
                let h = need("num_attention_heads")?;
                Self {
                    arch: Arch::Llama,
                    n_layers: need("num_hidden_layers")?,
                    d_model: d,
                    n_heads: h,
                    n_kv_heads: get("num_key_value_heads").unwrap_or(h),
                    d_head: get("head_dim").unwrap_or(d / h.max(1)),
                    d_mlp: need("intermediate_size")?,
                    d_vocab: need("vocab_size")?,
                    n_ctx: get("max_position_embeddings").unwrap_or(2048),
                    norm_eps: getf("rms_norm_eps").unwrap_or(1e-6),
                    rope_theta: getf("rope_theta")
                        .or_else(|| {
                            v.get("rope_parameters")
                                .and_then(|r| r.get("rope_theta"))
                                .and_then(|x| x.as_f64())
                        })
                        .unwrap_or(10_000.0),
                    tied_embeddings: v
                        .get("tie_word_embeddings")
                        .and_then(|x| x.as_bool())
                        .unwrap_or(false),
                }
            }
            other => return Err(ModelError::UnsupportedArchitecture(other.into())),
        };
        cfg.validate()?;
        Ok(cfg)
    }
}
