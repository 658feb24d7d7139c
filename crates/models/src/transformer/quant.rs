//! Linear weights kept in their GGUF blocks on the CPU (Q4_0, Q4_1, Q8_0; as kept, with f32
//! scales: 6, 6 and 9 bits a weight instead of 32) for the products of a few rows. A decoding
//! step reads every weight once and does two flops with it, so its speed is the bytes it reads
//! and the instructions that unpack them: SmolLM2's kept copy is about a fifth of its f32
//! weights.
//!
//! A block's product is computed in the factored form `d · Σ x q + m · Σ x` (for Q4_0
//! `m = −8d`; Q8_0 has no `m`): the loader's dequantised weights `q · d + m`, `(q − 8) · d`,
//! `q · d` regrouped, so a product here equals the f32 one up to rounding (checked at 1e-6 of
//! the terms' magnitude), with two operations a weight fewer than dequantising first. The f32 tensors stay the model's weights (gemm, hooks, every other
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

    /// f32 values per block as kept: the scale, and for 4 bits the offset `m`.
    fn scales(self) -> usize {
        match self {
            Kind::Q4_0 | Kind::Q4_1 => 2,
            Kind::Q8_0 => 1,
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
    /// Per row, per block: `d`, and `m` for 4 bits (Q4_0's is `−8d`).
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
                let d = f16(b, 0);
                scales.push(d);
                match kind {
                    Kind::Q4_1 => scales.push(f16(b, 2)),
                    // `(q − 8) · d` is `q · d + m` with `m = −8d` (exact: a power of two).
                    Kind::Q4_0 => scales.push(-8.0 * d),
                    Kind::Q8_0 => {}
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
        let k = self.k;
        let rows = x.len() / k;
        let len = cols.len();
        let nb = k / BLOCK;
        let (sb, qb) = (nb * self.kind.scales(), nb * self.kind.quants());
        // Each row's block sums, for the `m` term (summed in order: the same on every target).
        let sums: Vec<f32> = x
            .chunks_exact(BLOCK)
            .map(|c| c.iter().fold(0.0f32, |a, &v| a + v))
            .collect();
        let mut out = vec![0.0f32; rows * len];
        for (jj, j) in cols.enumerate() {
            let (s, q) = (
                &self.scales[j * sb..(j + 1) * sb],
                &self.quants[j * qb..(j + 1) * qb],
            );
            for i in 0..rows {
                let (lanes, m) = kernel::row(
                    self.kind,
                    s,
                    q,
                    &x[i * k..(i + 1) * k],
                    &sums[i * nb..(i + 1) * nb],
                );
                out[i * len + jj] = lanes.iter().fold(0.0f32, |a, &v| a + v) + m;
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

/// One weight row's dot product with one row of `x`, block by block, in the factored form
/// `Σ_b d_b · Σ_i x_i q_i + m_b · Σ_i x_i` (4-bit kinds; Q8_0 has no `m`). WebAssembly gets it
/// written with SIMD instructions in straight lines (the page's size-first build leaves plain
/// loops scalar and keeps indexed accumulators in memory); elsewhere plain loops. Both do the
/// same operations in the same order: 8 lanes, lane `l` over values `l, l + 8, l + 16, l + 24`
/// of a block, then scaled by `d` into the lane's total; the same bits on every target.
mod kernel {
    use super::{BLOCK, Kind};

    /// 8 lanes of `Σ_b d_b · s_b` and the `Σ_b m_b · xs_b` term, for one weight row given as its
    /// blocks' `scales` and `quants`; `xs[b]` is the sum of `x`'s block `b`.
    #[cfg(not(any(
        all(target_arch = "wasm32", target_feature = "simd128"),
        target_arch = "x86_64"
    )))]
    pub(super) use scalar as row;

    /// On x86-64 the plain loops compiled for AVX2 where the CPU has it (a cached flag): the 8
    /// lanes are one vector, the nibbles widen 8 at a time. No FMA is formed, so the bits are
    /// the plain loops'.
    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    pub(super) fn row(
        kind: Kind,
        scales: &[f32],
        quants: &[u8],
        x: &[f32],
        xs: &[f32],
    ) -> ([f32; 8], f32) {
        #[target_feature(enable = "avx2")]
        fn avx2(
            kind: Kind,
            scales: &[f32],
            quants: &[u8],
            x: &[f32],
            xs: &[f32],
        ) -> ([f32; 8], f32) {
            scalar(kind, scales, quants, x, xs)
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            unsafe { avx2(kind, scales, quants, x, xs) }
        } else {
            scalar(kind, scales, quants, x, xs)
        }
    }

    /// The plain-loop form (the reference the SIMD form matches bit for bit).
    #[inline(always)]
    #[cfg_attr(
        all(target_arch = "wasm32", target_feature = "simd128"),
        allow(dead_code)
    )]
    pub(super) fn scalar(
        kind: Kind,
        scales: &[f32],
        quants: &[u8],
        x: &[f32],
        xs: &[f32],
    ) -> ([f32; 8], f32) {
        let mut acc = [0.0f32; 8];
        let mut macc = 0.0f32;
        let mut q = [0.0f32; BLOCK];
        let (ns, nq) = (kind.scales(), kind.quants());
        for (b, &sum) in xs.iter().enumerate() {
            let (s, qb) = (&scales[b * ns..(b + 1) * ns], &quants[b * nq..(b + 1) * nq]);
            match kind {
                Kind::Q8_0 => {
                    for (v, &c) in q.iter_mut().zip(qb) {
                        *v = c as i8 as f32;
                    }
                }
                Kind::Q4_0 | Kind::Q4_1 => {
                    let (lo, hi) = q.split_at_mut(16);
                    for j in 0..16 {
                        lo[j] = (qb[j] & 0xF) as f32;
                        hi[j] = (qb[j] >> 4) as f32;
                    }
                }
            }
            let xb = &x[b * BLOCK..(b + 1) * BLOCK];
            for l in 0..8 {
                let mut t = q[l] * xb[l];
                for c in 1..4 {
                    t += q[c * 8 + l] * xb[c * 8 + l];
                }
                acc[l] += s[0] * t;
            }
            if ns == 2 {
                macc += s[1] * sum;
            }
        }
        (acc, macc)
    }

    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    #[allow(unsafe_code)]
    pub(super) fn row(
        kind: Kind,
        scales: &[f32],
        quants: &[u8],
        x: &[f32],
        xs: &[f32],
    ) -> ([f32; 8], f32) {
        use core::arch::wasm32::*;
        let nb = xs.len();
        let (ns, nq) = (kind.scales(), kind.quants());
        if scales.len() < nb * ns || quants.len() < nb * nq || x.len() < nb * BLOCK {
            // Not reached (`dot_rows` slices whole rows); the plain form fails as natively.
            return scalar(kind, scales, quants, x, xs);
        }
        let (mut lo, mut hi) = (f32x4_splat(0.0), f32x4_splat(0.0));
        let mut macc = 0.0f32;
        let f = |v: v128| f32x4_convert_i32x4(v);
        for (b, &sum) in xs.iter().enumerate() {
            // SAFETY: block `b`'s `nq` bytes lie within `quants` and its 32 values within `x`
            // (checked above); unaligned loads are allowed in WebAssembly.
            let (w, xv) = unsafe {
                let q = quants.as_ptr().add(b * nq);
                let w = if kind == Kind::Q8_0 {
                    let (v0, v1) = (v128_load(q.cast()), v128_load(q.add(16).cast()));
                    let (a, c) = (i16x8_extend_low_i8x16(v0), i16x8_extend_high_i8x16(v0));
                    let (e, g) = (i16x8_extend_low_i8x16(v1), i16x8_extend_high_i8x16(v1));
                    [
                        f(i32x4_extend_low_i16x8(a)),
                        f(i32x4_extend_high_i16x8(a)),
                        f(i32x4_extend_low_i16x8(c)),
                        f(i32x4_extend_high_i16x8(c)),
                        f(i32x4_extend_low_i16x8(e)),
                        f(i32x4_extend_high_i16x8(e)),
                        f(i32x4_extend_low_i16x8(g)),
                        f(i32x4_extend_high_i16x8(g)),
                    ]
                } else {
                    let v = v128_load(q.cast());
                    let (l4, h4) = (v128_and(v, u8x16_splat(0xF)), u8x16_shr(v, 4));
                    let (a, c) = (u16x8_extend_low_u8x16(l4), u16x8_extend_high_u8x16(l4));
                    let (e, g) = (u16x8_extend_low_u8x16(h4), u16x8_extend_high_u8x16(h4));
                    [
                        f(u32x4_extend_low_u16x8(a)),
                        f(u32x4_extend_high_u16x8(a)),
                        f(u32x4_extend_low_u16x8(c)),
                        f(u32x4_extend_high_u16x8(c)),
                        f(u32x4_extend_low_u16x8(e)),
                        f(u32x4_extend_high_u16x8(e)),
                        f(u32x4_extend_low_u16x8(g)),
                        f(u32x4_extend_high_u16x8(g)),
                    ]
                };
                let p = x.as_ptr().add(b * BLOCK);
                let xv: [v128; 8] = [
                    v128_load(p.cast()),
                    v128_load(p.add(4).cast()),
                    v128_load(p.add(8).cast()),
                    v128_load(p.add(12).cast()),
                    v128_load(p.add(16).cast()),
                    v128_load(p.add(20).cast()),
                    v128_load(p.add(24).cast()),
                    v128_load(p.add(28).cast()),
                ];
                (w, xv)
            };
            // Lanes 0-3 take vectors 0, 2, 4, 6 (values l, l + 8, ..), lanes 4-7 the others.
            let t_lo = f32x4_add(
                f32x4_add(
                    f32x4_add(f32x4_mul(w[0], xv[0]), f32x4_mul(w[2], xv[2])),
                    f32x4_mul(w[4], xv[4]),
                ),
                f32x4_mul(w[6], xv[6]),
            );
            let t_hi = f32x4_add(
                f32x4_add(
                    f32x4_add(f32x4_mul(w[1], xv[1]), f32x4_mul(w[3], xv[3])),
                    f32x4_mul(w[5], xv[5]),
                ),
                f32x4_mul(w[7], xv[7]),
            );
            let d = f32x4_splat(scales[b * ns]);
            lo = f32x4_add(lo, f32x4_mul(d, t_lo));
            hi = f32x4_add(hi, f32x4_mul(d, t_hi));
            if ns == 2 {
                macc += scales[b * ns + 1] * sum;
            }
        }
        (crate::transformer::rows::simd::lanes(lo, hi), macc)
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

    /// Every kind, 1–4 rows, block counts from 1 to 48, rows taken out of order: the products
    /// equal the loader's dequantised weights' (summed in f64) to f32 rounding.
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

    /// The same products against gguf-py: random valid blocks of each kind written by gguf-py
    /// and its `dequantize`d values (tests/fixtures/quants, also the loader's reference), rows
    /// swapped; the reference sums in f64.
    #[test]
    fn products_match_gguf_py_dequantisation() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
        let bytes = std::fs::read(root.join("quants/quants.gguf")).unwrap();
        let g = crate::gguf::Gguf::parse(&bytes).unwrap();
        let gold: serde_json::Value =
            serde_json::from_slice(&std::fs::read(root.join("quants/golden.json")).unwrap())
                .unwrap();
        for (name, kind) in [
            ("Q4_0", Kind::Q4_0),
            ("Q4_1", Kind::Q4_1),
            ("Q8_0", Kind::Q8_0),
        ] {
            let info = g.info(name).unwrap();
            let want = &gold["tensors"][name];
            let shape: Vec<usize> = want["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect();
            let (n, k) = (shape[0], shape[1]);
            let dense: Vec<f64> = want["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            assert_eq!(dense.len(), n * k, "{name}");
            let order: Vec<usize> = (0..n).rev().collect();
            let m = QuantMatrix::from_blocks(kind, g.raw(info).unwrap(), k, &order).unwrap();
            let x: Vec<f32> = (0..3 * k)
                .map(|i| ((i * 37) % 19) as f32 / 19.0 - 0.5)
                .collect();
            let got = m.dot_rows(&x, 0..n);
            assert_eq!(got.len(), 3 * n, "{name}");
            for i in 0..3 {
                for (j, &stored) in order.iter().enumerate() {
                    let (xi, wj) = (&x[i * k..][..k], &dense[stored * k..][..k]);
                    let want: f64 = xi.iter().zip(wj).map(|(a, b)| *a as f64 * b).sum();
                    let mag: f64 = xi.iter().zip(wj).map(|(a, b)| (*a as f64 * b).abs()).sum();
                    let e = (got[i * n + j] as f64 - want).abs();
                    assert!(e <= 1e-6 * mag + 1e-7, "{name} row {i} col {j}: {e}");
                }
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
