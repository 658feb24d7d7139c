//! GGUF (llama.cpp's format): header, metadata, tensor table, and dequantisation of F32, F16,
//! BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K and Q6_K into f32. The tokenizer stored in the
//! metadata becomes a [`TextTokenizer`]. Block layouts follow ggml's `ggml-quants.c`.

use std::collections::HashMap;

use crate::config::{Arch, TransformerConfig};
use crate::error::{ModelError, Result};
use crate::tokenizer::TextTokenizer;
use crate::weights::{HostTensor, Weights};

/// A metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// Any integer type.
    Int(i64),
    /// f32 or f64.
    Float(f64),
    /// bool.
    Bool(bool),
    /// string.
    Str(String),
    /// array.
    Array(Vec<Value>),
}

impl Value {
    fn as_usize(&self) -> Option<usize> {
        match self {
            Value::Int(i) if *i >= 0 => Some(*i as usize),
            _ => None,
        }
    }
    fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(f) => Some(*f),
            Value::Int(i) => Some(*i as f64),
            _ => None,
        }
    }
    fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// One entry of the tensor table.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    /// Name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// ggml dims (fastest first), e.g. `[d_in, d_out]`.
    pub dims: Vec<usize>,
    /// ggml type id.
    pub ggml_type: u32,
    /// Byte offset within the data section.
    pub offset: usize,
}

/// A parsed GGUF file (borrowing its bytes).
pub struct Gguf<'a> {
    /// Metadata key → value.
    pub metadata: HashMap<String, Value>,
    /// Tensor table.
    pub tensors: Vec<TensorInfo>,
    version: u32,
    n_kv: u64,
    /// The metadata section as stored, so a writer can keep every key with its exact type.
    raw_kv: &'a [u8],
    align: usize,
    data: &'a [u8],
}

fn trunc(what: &str) -> ModelError {
    ModelError::Truncated(format!("the GGUF file ends inside {what}"))
}

fn bad(reason: impl Into<String>) -> ModelError {
    ModelError::Format {
        format: "GGUF",
        reason: reason.into(),
    }
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or_else(|| trunc(what))?;
        if end > self.b.len() {
            return Err(trunc(what));
        }
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        let s = self.take(4, what)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        let s = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_le_bytes(a))
    }
    fn string(&mut self, what: &str) -> Result<String> {
        let n = self.u64(what)?;
        if n > self.b.len() as u64 {
            return Err(trunc(what));
        }
        let s = self.take(n as usize, what)?;
        String::from_utf8(s.to_vec()).map_err(|_| bad(format!("{what} is not UTF-8")))
    }
    fn value(&mut self, ty: u32, depth: usize) -> Result<Value> {
        let w = "a metadata value";
        Ok(match ty {
            0 => Value::Int(self.take(1, w)?[0] as i64),
            1 => Value::Int(self.take(1, w)?[0] as i8 as i64),
            2 => {
                let s = self.take(2, w)?;
                Value::Int(u16::from_le_bytes([s[0], s[1]]) as i64)
            }
            3 => {
                let s = self.take(2, w)?;
                Value::Int(i16::from_le_bytes([s[0], s[1]]) as i64)
            }
            4 => Value::Int(self.u32(w)? as i64),
            5 => Value::Int(self.u32(w)? as i32 as i64),
            6 => Value::Float(f32::from_bits(self.u32(w)?) as f64),
            7 => Value::Bool(self.take(1, w)?[0] != 0),
            8 => Value::Str(self.string(w)?),
            9 => {
                if depth > 2 {
                    return Err(bad("arrays nested too deeply"));
                }
                let ety = self.u32(w)?;
                let n = self.u64(w)?;
                // Every element takes at least one byte: a count beyond the file is a lie.
                if n > (self.b.len() - self.pos) as u64 {
                    return Err(trunc("a metadata array"));
                }
                let mut v = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    v.push(self.value(ety, depth + 1)?);
                }
                Value::Array(v)
            }
            10 => Value::Int(self.u64(w)? as i64),
            11 => Value::Int(self.u64(w)? as i64),
            12 => Value::Float(f64::from_bits(self.u64(w)?)),
            other => return Err(bad(format!("unknown metadata type {other}"))),
        })
    }
}

/// (elements per block, bytes per block, name) of a ggml type.
pub fn block_layout(ty: u32) -> Result<(usize, usize, &'static str)> {
    Ok(match ty {
        0 => (1, 4, "F32"),
        1 => (1, 2, "F16"),
        2 => (32, 18, "Q4_0"),
        3 => (32, 20, "Q4_1"),
        6 => (32, 22, "Q5_0"),
        7 => (32, 24, "Q5_1"),
        8 => (32, 34, "Q8_0"),
        12 => (256, 144, "Q4_K"),
        13 => (256, 176, "Q5_K"),
        14 => (256, 210, "Q6_K"),
        30 => (1, 2, "BF16"),
        other => {
            let name = match other {
                9 => "Q8_1",
                10 => "Q2_K",
                11 => "Q3_K",
                15 => "Q8_K",
                16..=23 => "an IQ quantisation",
                _ => "unknown",
            };
            return Err(ModelError::UnsupportedDtype(format!(
                "ggml type {other} ({name}); Interplay reads F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K"
            )));
        }
    })
}

impl<'a> Gguf<'a> {
    /// Parse the header, metadata and tensor table.
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        let mut r = Reader { b: bytes, pos: 0 };
        let magic = r.take(4, "the magic number")?;
        if magic != b"GGUF" {
            return Err(bad("the file does not start with \"GGUF\""));
        }
        let version = r.u32("the version")?;
        if !(2..=3).contains(&version) {
            return Err(bad(format!("version {version} (Interplay reads 2 and 3)")));
        }
        let n_tensors = r.u64("the tensor count")?;
        let n_kv = r.u64("the metadata count")?;
        if n_tensors > 1 << 20 || n_kv > 1 << 20 {
            return Err(bad("implausible tensor or metadata count"));
        }
        let mut metadata = HashMap::new();
        let kv_start = r.pos;
        for _ in 0..n_kv {
            let key = r.string("a metadata key")?;
            let ty = r.u32("a metadata type")?;
            let v = r.value(ty, 0)?;
            metadata.insert(key, v);
        }
        let raw_kv = &bytes[kv_start..r.pos];
        let mut tensors = Vec::with_capacity(n_tensors as usize);
        for _ in 0..n_tensors {
            let name = r.string("a tensor name")?;
            let nd = r.u32("a tensor rank")?;
            if nd > 4 {
                return Err(bad(format!("tensor {name} has {nd} dimensions")));
            }
            let mut dims = Vec::with_capacity(nd as usize);
            for _ in 0..nd {
                dims.push(r.u64("tensor dims")? as usize);
            }
            let ggml_type = r.u32("a tensor type")?;
            let offset = r.u64("a tensor offset")? as usize;
            tensors.push(TensorInfo {
                name,
                dims,
                ggml_type,
                offset,
            });
        }
        let align = metadata
            .get("general.alignment")
            .and_then(Value::as_usize)
            .unwrap_or(32)
            .max(1);
        let start = r.pos.div_ceil(align) * align;
        let data = bytes.get(start..).unwrap_or(&[]);
        Ok(Self {
            metadata,
            tensors,
            version,
            n_kv,
            raw_kv,
            align,
            data,
        })
    }

    /// A metadata value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> &str {
        self.get("general.architecture")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// A tensor's stored bytes (whole blocks of its ggml type), checked against the data section.
    pub fn raw(&self, info: &TensorInfo) -> Result<&'a [u8]> {
        let (block, bytes_per_block, _) = block_layout(info.ggml_type)?;
        let numel = info
            .dims
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| bad(format!("{}: shape overflows", info.name)))?;
        if numel % block != 0 {
            return Err(bad(format!(
                "{}: {numel} values do not fill whole blocks of {block}",
                info.name
            )));
        }
        // A header can claim any shape: the byte count must not overflow (found by cargo fuzz).
        let nbytes = (numel / block)
            .checked_mul(bytes_per_block)
            .ok_or_else(|| bad(format!("{}: tensor size overflows", info.name)))?;
        let end = info
            .offset
            .checked_add(nbytes)
            .ok_or_else(|| trunc(&info.name))?;
        if end > self.data.len() {
            return Err(ModelError::Truncated(format!(
                "tensor {:?} needs {nbytes} bytes at offset {} but the data section has {}",
                info.name,
                info.offset,
                self.data.len()
            )));
        }
        Ok(&self.data[info.offset..end])
    }

    /// The tensor called `name`, if the file has one.
    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Dequantise one tensor to f32, shape outermost first (ggml dims reversed).
    pub fn tensor(&self, info: &TensorInfo) -> Result<HostTensor> {
        let raw = self.raw(info)?;
        let numel = info.dims.iter().product();
        let data = dequantize(info.ggml_type, raw, numel)?;
        let shape = info.dims.iter().rev().copied().collect();
        Ok(HostTensor { shape, data })
    }

    /// Every tensor, dequantised.
    pub fn weights(&self) -> Result<Weights> {
        // Serial: dequantising on several threads was 6× slower on this project's 2-core VM
        // (every thread faulting in fresh pages).
        self.tensors
            .iter()
            .map(|t| Ok((t.name.clone(), self.tensor(t)?)))
            .collect()
    }

    /// A GGUF file with this file's metadata (copied byte for byte, so the tokenizer, chat
    /// template and every typed key survive) and `tensors` stored as F32, in the given order.
    /// Shapes are outermost first, as [`Gguf::tensor`] returns them. `general.file_type` is
    /// kept as it was: readers take each tensor's own type from the tensor table.
    pub fn write_f32(&self, tensors: &[(String, &HostTensor)]) -> Vec<u8> {
        let pad = |out: &mut Vec<u8>, align: usize| {
            while !out.len().is_multiple_of(align) {
                out.push(0);
            }
        };
        let mut out = Vec::new();
        out.extend_from_slice(b"GGUF");
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&self.n_kv.to_le_bytes());
        out.extend_from_slice(self.raw_kv);
        let mut offset = 0usize;
        for (name, t) in tensors {
            out.extend_from_slice(&(name.len() as u64).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&(t.shape.len() as u32).to_le_bytes());
            for d in t.shape.iter().rev() {
                out.extend_from_slice(&(*d as u64).to_le_bytes());
            }
            out.extend_from_slice(&0u32.to_le_bytes()); // GGML_TYPE_F32
            out.extend_from_slice(&(offset as u64).to_le_bytes());
            offset = (offset + t.data.len() * 4).div_ceil(self.align) * self.align;
        }
        pad(&mut out, self.align);
        let start = out.len();
        for (_, t) in tensors {
            pad(&mut out, self.align);
            for v in &t.data {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        debug_assert!(out.len() - start <= offset);
        out
    }

    /// The model config from metadata (GPT-2 and Llama architectures).
    pub fn config(&self) -> Result<TransformerConfig> {
        let arch_name = self.architecture().to_string();
        let arch = match arch_name.as_str() {
            "llama" => Arch::Llama,
            "gpt2" => Arch::Gpt2,
            other => return Err(ModelError::UnsupportedArchitecture(other.into())),
        };
        let key = |k: &str| format!("{arch_name}.{k}");
        let need = |k: &str| {
            self.get(&key(k))
                .and_then(Value::as_usize)
                .ok_or_else(|| bad(format!("missing metadata {}", key(k))))
        };
        let d_model = need("embedding_length")?;
        let n_heads = need("attention.head_count")?;
        let n_kv_heads = self
            .get(&key("attention.head_count_kv"))
            .and_then(Value::as_usize)
            .unwrap_or(n_heads);
        let embd = self
            .tensors
            .iter()
            .find(|t| t.name == "token_embd.weight")
            .ok_or_else(|| ModelError::MissingTensor("token_embd.weight".into()))?;
        let d_vocab = embd.dims.get(1).copied().unwrap_or(0);
        let tied = !self.tensors.iter().any(|t| t.name == "output.weight");
        let cfg = TransformerConfig {
            arch,
            n_layers: need("block_count")?,
            d_model,
            n_heads,
            n_kv_heads,
            d_head: self
                .get(&key("attention.key_length"))
                .and_then(Value::as_usize)
                .unwrap_or(d_model / n_heads.max(1)),
            d_mlp: need("feed_forward_length")?,
            d_vocab,
            n_ctx: need("context_length")?,
            norm_eps: self
                .get(&key("attention.layer_norm_rms_epsilon"))
                .or_else(|| self.get(&key("attention.layer_norm_epsilon")))
                .and_then(Value::as_f64)
                .unwrap_or(1e-5),
            rope_theta: self
                .get(&key("rope.freq_base"))
                .and_then(Value::as_f64)
                .unwrap_or(10_000.0),
            tied_embeddings: tied,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// The byte-level BPE tokenizer stored in the metadata (`tokenizer.ggml.model = "gpt2"`).
    pub fn tokenizer(&self) -> Result<TextTokenizer> {
        let model = self
            .get("tokenizer.ggml.model")
            .and_then(Value::as_str)
            .unwrap_or("");
        if model.is_empty() {
            return Err(ModelError::Tokenizer(
                "this GGUF file carries no tokenizer; give token ids".into(),
            ));
        }
        if model != "gpt2" {
            return Err(ModelError::Tokenizer(format!(
                "GGUF tokenizer type {model:?} is not supported (byte-level BPE \"gpt2\" is); token ids still work"
            )));
        }
        let strings = |k: &str| -> Result<Vec<String>> {
            match self.get(k) {
                Some(Value::Array(v)) => v
                    .iter()
                    .map(|x| x.as_str().map(str::to_string))
                    .collect::<Option<_>>()
                    .ok_or_else(|| ModelError::Tokenizer(format!("{k} holds non-strings"))),
                _ => Err(ModelError::Tokenizer(format!("GGUF has no {k}"))),
            }
        };
        let tokens = strings("tokenizer.ggml.tokens")?;
        let merges = strings("tokenizer.ggml.merges")?
            .into_iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| ModelError::Tokenizer(format!("bad merge {m:?}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let types: Vec<i64> = match self.get("tokenizer.ggml.token_type") {
            Some(Value::Array(v)) => v
                .iter()
                .map(|x| match x {
                    Value::Int(i) => *i,
                    _ => 1,
                })
                .collect(),
            _ => vec![1; tokens.len()],
        };
        // Control (3) and user-defined (4) tokens match whole, never split by BPE.
        let special: Vec<String> = tokens
            .iter()
            .zip(types.iter().chain(std::iter::repeat(&1)))
            .filter(|(_, t)| **t == 3 || **t == 4)
            .map(|(s, _)| s.clone())
            .collect();
        let vocab = tokens
            .into_iter()
            .enumerate()
            .map(|(i, t)| (t, i as u32))
            .collect();
        let pre = self
            .get("tokenizer.ggml.pre")
            .and_then(Value::as_str)
            .unwrap_or("");
        let digits = matches!(
            pre,
            "smollm" | "starcoder" | "refact" | "smaug-bpe" | "llama-bpe"
        );
        TextTokenizer::byte_level_bpe_with(vocab, merges, Some(special), digits)
    }
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    half::f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Scale and min of sub-block `j` from the 12 packed bytes of a K-quant block.
fn scale_min_k4(j: usize, q: &[u8]) -> (f32, f32) {
    if j < 4 {
        ((q[j] & 63) as f32, (q[j + 4] & 63) as f32)
    } else {
        (
            ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4)) as f32,
            ((q[j + 4] >> 4) | ((q[j] >> 6) << 4)) as f32,
        )
    }
}

/// Dequantise `numel` values of ggml type `ty` from `raw`.
pub fn dequantize(ty: u32, raw: &[u8], numel: usize) -> Result<Vec<f32>> {
    let (_, bpb, _) = block_layout(ty)?;
    let mut y = Vec::with_capacity(numel);
    match ty {
        0 => y.extend(
            raw.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        ),
        1 => y.extend(
            raw.chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()),
        ),
        30 => y.extend(
            raw.chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()),
        ),
        2 | 3 | 6 | 7 => {
            for b in raw.chunks_exact(bpb) {
                let d = f16_at(b, 0);
                let (m, qh, qs) = match ty {
                    2 => (0.0, 0u32, &b[2..18]),
                    3 => (f16_at(b, 2), 0, &b[4..20]),
                    6 => (0.0, u32::from_le_bytes([b[2], b[3], b[4], b[5]]), &b[6..22]),
                    _ => (
                        f16_at(b, 2),
                        u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
                        &b[8..24],
                    ),
                };
                let mut out = [0f32; 32];
                for j in 0..16 {
                    let (mut lo, mut hi) = ((qs[j] & 0xF) as i32, (qs[j] >> 4) as i32);
                    if ty == 6 || ty == 7 {
                        lo |= (((qh >> j) & 1) << 4) as i32;
                        hi |= (((qh >> (j + 12)) & 0x10) as i32) & 0x10;
                    }
                    let (lo, hi) = match ty {
                        2 => (lo - 8, hi - 8),
                        6 => (lo - 16, hi - 16),
                        _ => (lo, hi),
                    };
                    out[j] = lo as f32 * d + m;
                    out[j + 16] = hi as f32 * d + m;
                }
                y.extend_from_slice(&out);
            }
        }
        8 => {
            for b in raw.chunks_exact(bpb) {
                let d = f16_at(b, 0);
                y.extend(b[2..34].iter().map(|&q| q as i8 as f32 * d));
            }
        }
        12 | 13 => {
            for b in raw.chunks_exact(bpb) {
                let d = f16_at(b, 0);
                let dmin = f16_at(b, 2);
                let scales = &b[4..16];
                let (qh, mut ql) = if ty == 13 {
                    (Some(&b[16..48]), &b[48..176])
                } else {
                    (None, &b[16..144])
                };
                let (mut u1, mut u2) = (1u8, 2u8);
                for is in (0..8).step_by(2) {
                    let (sc1, m1) = scale_min_k4(is, scales);
                    let (sc2, m2) = scale_min_k4(is + 1, scales);
                    let (d1, m1) = (d * sc1, dmin * m1);
                    let (d2, m2) = (d * sc2, dmin * m2);
                    for l in 0..32 {
                        let high = qh.map_or(0, |h| if h[l] & u1 != 0 { 16 } else { 0 });
                        y.push(d1 * ((ql[l] & 0xF) as i32 + high) as f32 - m1);
                    }
                    for l in 0..32 {
                        let high = qh.map_or(0, |h| if h[l] & u2 != 0 { 16 } else { 0 });
                        y.push(d2 * ((ql[l] >> 4) as i32 + high) as f32 - m2);
                    }
                    ql = &ql[32..];
                    u1 <<= 2;
                    u2 <<= 2;
                }
            }
        }
        14 => {
            for b in raw.chunks_exact(bpb) {
                let d = f16_at(b, 208);
                let mut out = [0f32; 256];
                for n in 0..2 {
                    let ql = &b[n * 64..n * 64 + 64];
                    let qh = &b[128 + n * 32..128 + n * 32 + 32];
                    let sc = &b[192 + n * 8..192 + n * 8 + 8];
                    let y0 = n * 128;
                    for l in 0..32 {
                        let is = l / 16;
                        let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i32 - 32;
                        let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                        let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                        let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                        out[y0 + l] = d * (sc[is] as i8) as f32 * q1 as f32;
                        out[y0 + l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
                        out[y0 + l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
                        out[y0 + l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
                    }
                }
                y.extend_from_slice(&out);
            }
        }
        _ => unreachable!("block_layout rejected other types"),
    }
    if y.len() != numel {
        return Err(bad(format!(
            "dequantised {} values, expected {numel}",
            y.len()
        )));
    }
    Ok(y)
}
