//! Linear weights kept in their GGUF blocks on the CPU (Q4_0, Q4_1, Q8_0: 4.5 to 8.5 bits a
//! weight instead of 32) for the products of a few rows. A decoding step reads every weight
//! once and does two flops with it, so its speed is the bytes it reads: SmolLM2's Q4_1 blocks
//! are a sixth of its f32 weights.
//!
//! Each weight is dequantised in the kernel the way the loader dequantises it for the f32
//! tensors (`q · d + m`, `(q − 8) · d`, `q · d`), so a product here equals the f32 one up to
//! the order of its sums. The f32 tensors stay the model's weights (gemm, hooks, every other
//! device); these are a second copy that only the CPU's few-row products read.

use std::ops::Range;

use crate::config::{Arch, TransformerConfig};
use crate::gguf::Gguf;

/// Values per block in every kind here.
const BLOCK: usize = 32;

/// The block layouts kept quantised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A scale and 32 unsigned 4-bit values, weight `(q − 8) · d`.
    Q4_0,
    /// A scale, a minimum and 32 unsigned 4-bit values, weight `q · d + m`.
    Q4_1,
    /// A scale and 32 signed bytes, weight `q · d`.
    Q8_0,
}

impl Kind {
    /// The kind of a ggml type id, if it is kept quantised.
    pub fn of_ggml(ty: u32) -> Option<Self> {
        match ty {
            2 => Some(Kind::Q4_0),
            3 => Some(Kind::Q4_1),
            8 => Some(Kind::Q8_0),
            _ => None,
        }
    }

    /// Bytes of one block in the file.
    fn stored(self) -> usize {
        match self {
            Kind::Q4_0 => 18,
            Kind::Q4_1 => 20,
            Kind::Q8_0 => 34,
        }
    }

    /// Bytes of one block's quantised values.
    fn quants(self) -> usize {
        match self {
            Kind::Q8_0 => 32,
            Kind::Q4_0 | Kind::Q4_1 => 16,
        }
    }

    /// f32 values per block for its scale (and minimum).
    fn scales(self) -> usize {
        match self {
            Kind::Q4_1 => 2,
            Kind::Q4_0 | Kind::Q8_0 => 1,
        }
    }
}

/// A weight matrix `[n, k]` (one row per output, as GGUF stores it) in blocks of 32 along `k`.
/// The blocks are repacked at load: the f16 scales into f32 (converting one per block in the
/// kernel cost as much as the block's products in WebAssembly), the rows in output order.
pub struct QuantMatrix {
    kind: Kind,
    n: usize,
    k: usize,
    /// Per row, per block: `d` (and `m` for Q4_1).
    scales: Vec<f32>,
    /// Per row, per block: the quantised values as stored (for 4 bits: value `j` in the low
    /// nibble of byte `j`, value `j + 16` in its high nibble).
    quants: Vec<u8>,
}

impl std::fmt::Debug for QuantMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "QuantMatrix({:?}, [{}, {}])", self.kind, self.n, self.k)
    }
}

impl QuantMatrix {
    /// The rows `rows` (in that order) of a stored tensor of `k` columns; `None` when `k` is not
    /// whole blocks or a row lies outside `raw`.
    pub fn from_blocks(kind: Kind, raw: &[u8], k: usize, rows: &[usize]) -> Option<Self> {
        if k == 0 || !k.is_multiple_of(BLOCK) {
            return None;
        }
        let nb = k / BLOCK;
        let row_bytes = nb * kind.stored();
        let mut scales = Vec::with_capacity(rows.len() * nb * kind.scales());
        let mut quants = Vec::with_capacity(rows.len() * nb * kind.quants());
        let f16 = |b: &[u8], i: usize| half::f16::from_le_bytes([b[i], b[i + 1]]).to_f32();
        for &r in rows {
            let row = raw.get(r * row_bytes..(r + 1) * row_bytes)?;
            for b in row.chunks_exact(kind.stored()) {
                scales.push(f16(b, 0));
                if kind == Kind::Q4_1 {
                    scales.push(f16(b, 2));
                }
                quants.extend_from_slice(&b[kind.stored() - kind.quants()..]);
            }
        }
        Some(Self {
            kind,
            n: rows.len(),
            k,
            scales,
            quants,
        })
    }

    /// `[n, k]`.
    pub fn dims(&self) -> [usize; 2] {
        [self.n, self.k]
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.scales.len() * 4 + self.quants.len()
    }

    /// Outputs `cols` of `x · Wᵀ` for `x` of `rows ≤ MAX_ROWS` rows of `k`, `[rows, cols.len()]`.
    /// Each output is a dot product kept in 8 lanes (lane `l` takes values `l, l + 8, ..`),
    /// summed in lane order at the end — the same order in every build.
    pub(super) fn dot_rows(&self, x: &[f32], cols: Range<usize>) -> Vec<f32> {
        let rows = x.len() / self.k;
        let len = cols.len();
        let nb = self.k / BLOCK;
        let (sb, qb) = (nb * self.kind.scales(), nb * self.kind.quants());
        let mut out = vec![0.0f32; rows * len];
        for (jj, j) in cols.enumerate() {
            let lanes = kernel::row(
                self.kind,
                &self.scales[j * sb..(j + 1) * sb],
                &self.quants[j * qb..(j + 1) * qb],
                x,
                rows,
                self.k,
            );
            for (i, l) in lanes.iter().take(rows).enumerate() {
                out[i * len + jj] = l.iter().sum();
            }
        }
        out
    }
}

/// The quantised copies of one block's linear weights (`None`: that weight is not in a kept
/// kind, and its products go to the f32 tensor).
#[derive(Debug, Default)]
pub struct QuantBlock {
    /// `W_Q`, `[n_heads · d_head, d_model]` (rows in Hugging Face's rotate-half order).
    pub q: Option<QuantMatrix>,
    /// `W_K`, `[n_kv_heads · d_head, d_model]` (same order as `q`).
    pub k: Option<QuantMatrix>,
    /// `W_V`, `[n_kv_heads · d_head, d_model]`.
    pub v: Option<QuantMatrix>,
    /// `W_O`, `[d_model, n_heads · d_head]`.
    pub o: Option<QuantMatrix>,
    /// The MLP's input ("up"), `[d_mlp, d_model]`.
    pub up: Option<QuantMatrix>,
    /// SwiGLU's gate, `[d_mlp, d_model]`.
    pub gate: Option<QuantMatrix>,
    /// The MLP's output ("down"), `[d_model, d_mlp]`.
    pub down: Option<QuantMatrix>,
}

/// Every quantised copy of a model loaded from GGUF.
#[derive(Debug, Default)]
pub struct QuantWeights {
    /// One per layer.
    pub blocks: Vec<QuantBlock>,
    /// The unembedding as rows, `[d_vocab, d_model]` (`output.weight`, or the tied
    /// `token_embd.weight`).
    pub unembed: Option<QuantMatrix>,
}

impl QuantWeights {
    /// The kept-kind weights of a GGUF model of config `c`, or `None` when it has none (an F32
    /// or F16 file, K-quants). Tensors of unexpected shapes are skipped: the f32 loader has
    /// already checked every shape it uses.
    pub fn from_gguf(g: &Gguf, c: &TransformerConfig) -> Option<Self> {
        let (d, h, hkv, dh, dm) = (c.d_model, c.n_heads, c.n_kv_heads, c.d_head, c.d_mlp);
        // The tensor `name`'s rows `rows` (of `k` columns), if it is stored in a kept kind.
        let take = |name: &str, k: usize, rows: &[usize]| -> Option<QuantMatrix> {
            let info = g.info(name)?;
            let kind = Kind::of_ggml(info.ggml_type)?;
            if info.dims.first() != Some(&k) {
                return None;
            }
            QuantMatrix::from_blocks(kind, g.raw(info).ok()?, k, rows)
        };
        let span = |a: usize, b: usize| (a..b).collect::<Vec<_>>();
        // llama.cpp stores Q/K rows for interleaved RoPE: HF row `h·dh + j·half + i` is its
        // row `h·dh + 2i + j` (as `weights::unpermute_qk`).
        let rope_rows = |heads: usize| -> Vec<usize> {
            let half = dh / 2;
            (0..heads * dh)
                .map(|r| {
                    let (hd, within) = (r / dh, r % dh);
                    let (j, i) = (within / half, within % half);
                    hd * dh + 2 * i + j
                })
                .collect()
        };
        let blocks = (0..c.n_layers)
            .map(|l| {
                let n = |s: &str| format!("blk.{l}.{s}");
                let (q, k, v) = if g.info(&n("attn_qkv.weight")).is_some() {
                    let (kq, kk) = (h * dh, hkv * dh);
                    let qkv = n("attn_qkv.weight");
                    (
                        take(&qkv, d, &span(0, kq)),
                        take(&qkv, d, &span(kq, kq + kk)),
                        take(&qkv, d, &span(kq + kk, kq + 2 * kk)),
                    )
                } else {
                    let (qr, kr) = match c.arch {
                        Arch::Llama => (rope_rows(h), rope_rows(hkv)),
                        Arch::Gpt2 => (span(0, h * dh), span(0, hkv * dh)),
                    };
                    (
                        take(&n("attn_q.weight"), d, &qr),
                        take(&n("attn_k.weight"), d, &kr),
                        take(&n("attn_v.weight"), d, &span(0, hkv * dh)),
                    )
                };
                QuantBlock {
                    q,
                    k,
                    v,
                    o: take(&n("attn_output.weight"), h * dh, &span(0, d)),
                    up: take(&n("ffn_up.weight"), d, &span(0, dm)),
                    gate: match c.arch {
                        Arch::Llama => take(&n("ffn_gate.weight"), d, &span(0, dm)),
                        Arch::Gpt2 => None,
                    },
                    down: take(&n("ffn_down.weight"), dm, &span(0, d)),
                }
            })
            .collect();
        let vocab = span(0, c.d_vocab);
        // As the loader: `output.weight` when the file has it, else the tied embedding.
        let unembed = match g.info("output.weight") {
            Some(_) => take("output.weight", d, &vocab),
            None => take("token_embd.weight", d, &vocab),
        };
        let w = QuantWeights { blocks, unembed };
        (w.bytes() > 0).then_some(w)
    }

    /// Bytes held by every copy.
    pub fn bytes(&self) -> usize {
        let m = |m: &Option<QuantMatrix>| m.as_ref().map_or(0, QuantMatrix::bytes);
        self.blocks
            .iter()
            .map(|b| m(&b.q) + m(&b.k) + m(&b.v) + m(&b.o) + m(&b.up) + m(&b.gate) + m(&b.down))
            .sum::<usize>()
            + m(&self.unembed)
    }
}

/// One output row's dot products with every row of `x`, block by block. WebAssembly gets it
/// written with SIMD instructions (the page's size-first build leaves plain loops scalar);
/// elsewhere plain loops. Both dequantise with the loader's operations and accumulate lane `l`
/// over values `l, l + 8, ..` in order: the same bits.
mod kernel {
    use super::{BLOCK, Kind};
    use crate::transformer::rows::MAX_ROWS;

    /// Per row of `x` (`rows` of `k`), 8 lanes of `Σ x · w` over one weight row given as its
    /// blocks' `scales` and `quants`.
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    pub(super) fn row(
        kind: Kind,
        scales: &[f32],
        quants: &[u8],
        x: &[f32],
        rows: usize,
        k: usize,
    ) -> [[f32; 8]; MAX_ROWS] {
        let mut lanes = [[0.0f32; 8]; MAX_ROWS];
        let mut w = [0.0f32; BLOCK];
        let (ns, nq) = (kind.scales(), kind.quants());
        for b in 0..k / BLOCK {
            let (s, q) = (&scales[b * ns..(b + 1) * ns], &quants[b * nq..(b + 1) * nq]);
            match kind {
                Kind::Q8_0 => {
                    for (wj, &qj) in w.iter_mut().zip(q) {
                        *wj = qj as i8 as f32 * s[0];
                    }
                }
                Kind::Q4_0 | Kind::Q4_1 => {
                    let (lo, hi) = w.split_at_mut(16);
                    for j in 0..16 {
                        let (a, c) = (q[j] & 0xF, q[j] >> 4);
                        if kind == Kind::Q4_1 {
                            lo[j] = a as f32 * s[0] + s[1];
                            hi[j] = c as f32 * s[0] + s[1];
                        } else {
                            lo[j] = (a as i32 - 8) as f32 * s[0];
                            hi[j] = (c as i32 - 8) as f32 * s[0];
                        }
                    }
                }
            }
            for (i, lane) in lanes.iter_mut().take(rows).enumerate() {
                let xb = &x[i * k + b * BLOCK..i * k + (b + 1) * BLOCK];
                for (wc, xc) in w.chunks_exact(8).zip(xb.chunks_exact(8)) {
                    for l in 0..8 {
                        lane[l] += wc[l] * xc[l];
                    }
                }
            }
        }
        lanes
    }

    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    #[allow(unsafe_code)]
    pub(super) fn row(
        kind: Kind,
        scales: &[f32],
        quants: &[u8],
        x: &[f32],
        rows: usize,
        k: usize,
    ) -> [[f32; 8]; MAX_ROWS] {
        use core::arch::wasm32::*;
        let nb = k / BLOCK;
        let (ns, nq) = (kind.scales(), kind.quants());
        let rows = rows.min(MAX_ROWS);
        let mut lo = [f32x4_splat(0.0); MAX_ROWS];
        let mut hi = [f32x4_splat(0.0); MAX_ROWS];
        if scales.len() < nb * ns || quants.len() < nb * nq || x.len() < rows * k {
            return [[0.0; 8]; MAX_ROWS];
        }
        // Unsigned bytes → 4 × u32x4, in order.
        let widen_u = |v: v128| {
            let (a, b) = (u16x8_extend_low_u8x16(v), u16x8_extend_high_u8x16(v));
            [
                u32x4_extend_low_u16x8(a),
                u32x4_extend_high_u16x8(a),
                u32x4_extend_low_u16x8(b),
                u32x4_extend_high_u16x8(b),
            ]
        };
        for b in 0..nb {
            let d = f32x4_splat(scales[b * ns]);
            // SAFETY: block `b`'s `nq` bytes lie within `quants` (checked above); unaligned
            // loads are allowed in WebAssembly.
            let w: [v128; 8] = unsafe {
                let q = quants.as_ptr().add(b * nq);
                match kind {
                    Kind::Q8_0 => {
                        let mut w = [f32x4_splat(0.0); 8];
                        for (h, v) in [v128_load(q.cast()), v128_load(q.add(16).cast())]
                            .into_iter()
                            .enumerate()
                        {
                            let (a, c) = (i16x8_extend_low_i8x16(v), i16x8_extend_high_i8x16(v));
                            let ints = [
                                i32x4_extend_low_i16x8(a),
                                i32x4_extend_high_i16x8(a),
                                i32x4_extend_low_i16x8(c),
                                i32x4_extend_high_i16x8(c),
                            ];
                            for (t, iv) in ints.into_iter().enumerate() {
                                w[h * 4 + t] = f32x4_mul(f32x4_convert_i32x4(iv), d);
                            }
                        }
                        w
                    }
                    Kind::Q4_0 | Kind::Q4_1 => {
                        let v = v128_load(q.cast());
                        let halves = [v128_and(v, u8x16_splat(0xF)), u8x16_shr(v, 4)];
                        let m = f32x4_splat(if kind == Kind::Q4_1 {
                            scales[b * ns + 1]
                        } else {
                            0.0
                        });
                        let eight = i32x4_splat(8);
                        let mut w = [f32x4_splat(0.0); 8];
                        for (h, half) in halves.into_iter().enumerate() {
                            for (t, iv) in widen_u(half).into_iter().enumerate() {
                                w[h * 4 + t] = if kind == Kind::Q4_1 {
                                    f32x4_add(f32x4_mul(f32x4_convert_i32x4(iv), d), m)
                                } else {
                                    f32x4_mul(f32x4_convert_i32x4(i32x4_sub(iv, eight)), d)
                                };
                            }
                        }
                        w
                    }
                }
            };
            for i in 0..rows {
                // SAFETY: row `i`'s block `b` lies within `x` (checked above).
                unsafe {
                    let p = x.as_ptr().add(i * k + b * BLOCK);
                    for c in 0..4 {
                        let xl = v128_load(p.add(c * 8).cast());
                        let xh = v128_load(p.add(c * 8 + 4).cast());
                        lo[i] = f32x4_add(lo[i], f32x4_mul(w[2 * c], xl));
                        hi[i] = f32x4_add(hi[i], f32x4_mul(w[2 * c + 1], xh));
                    }
                }
            }
        }
        let mut lanes = [[0.0f32; 8]; MAX_ROWS];
        for i in 0..rows {
            lanes[i] = [
                f32x4_extract_lane::<0>(lo[i]),
                f32x4_extract_lane::<1>(lo[i]),
                f32x4_extract_lane::<2>(lo[i]),
                f32x4_extract_lane::<3>(lo[i]),
                f32x4_extract_lane::<0>(hi[i]),
                f32x4_extract_lane::<1>(hi[i]),
                f32x4_extract_lane::<2>(hi[i]),
                f32x4_extract_lane::<3>(hi[i]),
            ];
        }
        lanes
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::gguf::dequantize;

    /// `n` rows of `k` random but valid blocks of `kind`, as a GGUF file stores them.
    fn blocks(kind: Kind, n: usize, k: usize, seed: u64) -> Vec<u8> {
        let mut rng = crate::rng::Rng::new(seed);
        let mut raw = Vec::new();
        for _ in 0..n * k / BLOCK {
            let mut f16 = |lo: f64, hi: f64| {
                half::f16::from_f64(rng.uniform() * (hi - lo) + lo).to_le_bytes()
            };
            raw.extend(f16(0.001, 0.05));
            if kind == Kind::Q4_1 {
                raw.extend(f16(-0.4, 0.1));
            }
            for _ in 0..kind.quants() {
                raw.push((rng.uniform() * 256.0) as u8);
            }
        }
        raw
    }

    fn ggml(kind: Kind) -> u32 {
        match kind {
            Kind::Q4_0 => 2,
            Kind::Q4_1 => 3,
            Kind::Q8_0 => 8,
        }
    }

    /// Every kind, 1–4 rows, sizes that split over threads, rows taken out of order: the
    /// products equal the loader's dequantised weights' (summed in f64) to f32 rounding.
    #[test]
    fn products_match_the_loaders_dequantised_weights() {
        for kind in [Kind::Q4_0, Kind::Q4_1, Kind::Q8_0] {
            for (r, n, k) in [(1, 3, 32), (2, 37, 96), (4, 600, 576), (3, 70, 1536)] {
                let raw = blocks(kind, n, k, 7 + n as u64);
                let dense = dequantize(ggml(kind), &raw, n * k).unwrap();
                // Outputs in reverse order of the stored rows (as Q/K's RoPE permutation).
                let order: Vec<usize> = (0..n).rev().collect();
                let m = QuantMatrix::from_blocks(kind, &raw, k, &order).unwrap();
                assert_eq!(m.dims(), [n, k]);
                let x: Vec<f32> = (0..r * k)
                    .map(|i| ((i * 37) % 19) as f32 / 19.0 - 0.5)
                    .collect();
                let got = m.dot_rows(&x, 0..n);
                assert_eq!(got.len(), r * n);
                for i in 0..r {
                    for (j, &stored) in order.iter().enumerate() {
                        let (xi, wj) = (&x[i * k..][..k], &dense[stored * k..][..k]);
                        let want: f64 = xi.iter().zip(wj).map(|(a, b)| (a * b) as f64).sum();
                        let mag: f64 = xi.iter().zip(wj).map(|(a, b)| (a * b).abs() as f64).sum();
                        let e = (got[i * n + j] as f64 - want).abs();
                        assert!(e <= 1e-6 * mag + 1e-7, "{kind:?} r{r} n{n} k{k}: {e}");
                    }
                }
                // A column range is the same values as the whole.
                let part = m.dot_rows(&x[..k], 1..n.min(20));
                assert_eq!(part, got[1..n.min(20)].to_vec());
            }
        }
    }

    #[test]
    fn partial_blocks_and_short_data_are_refused() {
        let raw = blocks(Kind::Q8_0, 2, 64, 1);
        assert!(QuantMatrix::from_blocks(Kind::Q8_0, &raw, 48, &[0]).is_none());
        assert!(QuantMatrix::from_blocks(Kind::Q8_0, &raw, 64, &[2]).is_none());
        assert!(QuantMatrix::from_blocks(Kind::Q8_0, &raw, 64, &[1, 0]).is_some());
    }
}
