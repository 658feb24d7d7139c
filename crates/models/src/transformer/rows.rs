//! A few rows times a weight matrix on the CPU, reading the weights where they lie: the
//! products of a decoding step (one row per generated token) and of a last-position readout;
//! and, in register tiles, a prompt's rows (`tiled`).
//!
//! Such a product reads every weight once and does two flops per weight, so it is bound by
//! memory. gemm's one-row path (`m = 1`) runs a scalar loop in WebAssembly (its SIMD kernels
//! need tiles of several rows), about 3-6 GB/s in the page; these loops are written so LLVM
//! vectorises them on every target (independent lanes, no reordered sums) and reach ~11 GB/s
//! there, and they split the columns over the CPU's threads where there are several. Their
//! order of operations is fixed, so the page and the native CLI compute the same bits.

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::{DType, Tensor, TensorData};

/// At most this many rows take these loops; more reuse each weight enough for gemm's tiles.
pub(super) const MAX_ROWS: usize = 4;

/// Above [`MAX_ROWS`] and up to this many rows (a prompt's positions), `x · W` takes [`tiled`]
/// instead of gemm, which repacks all of `W` on every call. SmolLM2's 14-token forward, same
/// session: natively 175 → 112 ms; in the page 837 → 214 ms (2 threads), 332 ms (one).
pub(super) const MAX_TILED_ROWS: usize = 64;

/// A tile of [`tiled`]: its sums stay in registers over the whole of `k` (8 of WebAssembly's
/// 4-lane vectors, within the 16 vector registers of the x86 and Arm CPUs the page runs on).
const TILE_ROWS: usize = 4;
const TILE_COLS: usize = 8;

/// Rows of `W` (or of `W_E` for the dot form) folded into one pass over the output: each
/// output value is loaded and stored once per `UNROLL` weights rows instead of once per row.
const UNROLL: usize = 8;

/// Below this much work — weights read for a few rows, multiply-adds for a tiled product —
/// one thread does the whole product (a thread's start costs more). In the page a pool thread
/// is a Web Worker woken through `Atomics.wait`: splitting a decoding step's 211 products cost
/// more than it saved, from the f32 weights (SmolLM2: 10.8 tokens/s on 2 threads, 11.3 on one)
/// and from Q4_1 blocks (11.2 and 14.5), so there only the unembedding is split. A prompt's
/// products (1M multiply-adds and up) split: with a run's blocks on a pool thread
/// (`par::install`), SmolLM2's 14-token forward takes 70 ms of engine time on 2 threads and
/// 95 ms on one (while the blocks ran on the engine's own thread, splitting gained nothing:
/// 104 ms split from 4M).
#[cfg(not(target_family = "wasm"))]
const PARALLEL_WORK: usize = 1 << 18;
#[cfg(target_family = "wasm")]
const PARALLEL_WORK: usize = 1 << 20;

/// A CPU tensor's dense row-major f32 values, or `None` (another device, another dtype, a
/// strided view, an autodiff tensor).
pub(super) fn dense<const D: usize>(t: &Tensor<D>) -> Option<FlexTensor> {
    let p = t.clone().try_into_primitive::<Flex>().ok()?;
    (p.dtype() == DType::F32 && p.layout().is_contiguous()).then_some(p)
}

/// The values of a tensor from [`dense`], `len` of them.
pub(super) fn values(p: &FlexTensor, len: usize) -> Option<&[f32]> {
    let start = p.layout().start_offset();
    p.storage::<f32>().get(start..start + len)
}

/// `x · w` for a few rows of `x` on the CPU; `None` where gemm does it (more rows, another
/// device, a layout these loops do not read).
///
/// # Shapes
/// - `x`: `[rows, k]`, `w`: `[k, n]` → `[rows, n]`.
pub(super) fn matmul(x: &Tensor<2>, w: &Tensor<2>) -> Option<Tensor<2>> {
    let [k, n] = w.dims();
    if x.dims()[0] <= MAX_ROWS {
        few_rows(x, w, k, n, MAX_ROWS, |xv, wv, cols| {
            axpy_rows(xv, wv, k, n, cols)
        })
    } else {
        few_rows(x, w, k, n, MAX_TILED_ROWS, |xv, wv, cols| {
            tiled(xv, wv, k, n, cols)
        })
    }
}

/// `x · wᵀ` for a few rows of `x` on the CPU, `w` read as rows (the tied unembedding: `W_E`
/// is `[d_vocab, d_model]`); `None` as in [`matmul`].
///
/// # Shapes
/// - `x`: `[rows, k]`, `w`: `[n, k]` → `[rows, n]`.
pub(super) fn matmul_transposed(x: &Tensor<2>, w: &Tensor<2>) -> Option<Tensor<2>> {
    let [n, k] = w.dims();
    few_rows(x, w, k, n, MAX_ROWS, |xv, wv, cols| {
        dot_rows(xv, wv, k, cols)
    })
}

/// `x · Wᵀ` for a few rows of `x` on the CPU with `W` kept in its GGUF blocks (see
/// [`super::quant`]); `None` as in [`matmul`].
///
/// # Shapes
/// - `x`: `[rows, k]`, `w`: `[n, k]` → `[rows, n]`.
pub(super) fn quantised(x: &Tensor<2>, w: &super::quant::QuantMatrix) -> Option<Tensor<2>> {
    let [n, k] = w.dims();
    let [r, kx] = x.dims();
    if r == 0 || r > MAX_ROWS || kx != k || n == 0 {
        return None;
    }
    let xp = dense(x)?;
    let xv = values(&xp, r * k)?;
    let out = by_columns(n, n * k, |cols| w.dot_rows(xv, cols));
    Some(Tensor::from_data(
        TensorData::new(interleave(out, r, n), [r, n]),
        &x.device(),
    ))
}

/// The checks and plumbing the forms share: `x` (`[rows, k]`, at most `max_rows`) and `w`
/// (`k · n` values) dense on the CPU, then `kernel(x, w, columns)` over column ranges, put
/// side by side into `[rows, n]`.
fn few_rows(
    x: &Tensor<2>,
    w: &Tensor<2>,
    k: usize,
    n: usize,
    max_rows: usize,
    kernel: impl Fn(&[f32], &[f32], std::ops::Range<usize>) -> Vec<f32> + Sync,
) -> Option<Tensor<2>> {
    let [r, kx] = x.dims();
    if r == 0 || r > max_rows || kx != k || n == 0 {
        return None;
    }
    let (xp, wp) = (dense(x)?, dense(w)?);
    let (xv, wv) = (values(&xp, r * k)?, values(&wp, k * n)?);
    // A few rows are bound by reading the weights; more rows by their products.
    let work = if r <= MAX_ROWS {
        n * k
    } else {
        r.saturating_mul(n * k)
    };
    let out = by_columns(n, work, |cols| kernel(xv, wv, cols));
    Some(Tensor::from_data(
        TensorData::new(interleave(out, r, n), [r, n]),
        &x.device(),
    ))
}

/// `f` over ranges of the `n` output columns — on the CPU's threads when the product's `work`
/// (weights read, or multiply-adds for many rows) is big enough — each returning its columns for
/// every row, `[rows, len]` row-major.
fn by_columns(
    n: usize,
    work: usize,
    f: impl Fn(std::ops::Range<usize>) -> Vec<f32> + Sync,
) -> Vec<Vec<f32>> {
    let threads = crate::par::threads();
    let parts = if threads > 1 && work >= PARALLEL_WORK {
        threads
    } else {
        1
    };
    // Column ranges of whole 16s, so every thread's loops stay vectorised.
    let step = n.div_ceil(parts).div_ceil(16) * 16;
    let ranges: Vec<_> = (0..n)
        .step_by(step.max(16))
        .map(|a| a..(a + step).min(n))
        .collect();
    crate::par::map(&ranges, |c| f(c.clone()))
}

/// Column blocks (each `[rows, len]`) side by side into `[rows, n]`.
fn interleave(parts: Vec<Vec<f32>>, rows: usize, n: usize) -> Vec<f32> {
    if parts.len() == 1 {
        return parts.into_iter().next().unwrap_or_default();
    }
    let mut out = Vec::with_capacity(rows * n);
    for i in 0..rows {
        for p in &parts {
            let len = p.len() / rows;
            out.extend_from_slice(&p[i * len..(i + 1) * len]);
        }
    }
    out
}

/// Columns `cols` of `x · w` (`x`: rows × `k`, `w`: `k` × `n`), `[rows, cols.len()]`: each row's
/// outputs accumulate `UNROLL` rows of `w` at a time, in order.
fn axpy_rows(x: &[f32], w: &[f32], k: usize, n: usize, cols: std::ops::Range<usize>) -> Vec<f32> {
    let len = cols.len();
    let rows = x.len() / k;
    let mut out = vec![0.0f32; rows * len];
    let full = k / UNROLL * UNROLL;
    for (i, o) in out.chunks_exact_mut(len).enumerate() {
        let xi = &x[i * k..(i + 1) * k];
        // Row `kk` of `w`, columns `cols` (sliced to `len` so the loops below are unchecked).
        let row = |kk: usize| &w[kk * n + cols.start..kk * n + cols.end][..len];
        for kk in (0..full).step_by(UNROLL) {
            let a: [f32; UNROLL] = std::array::from_fn(|l| xi[kk + l]);
            let r: [&[f32]; UNROLL] = std::array::from_fn(|l| row(kk + l));
            let done = simd::axpy8(o, &a, &r);
            for j in done..len {
                o[j] += a[0] * r[0][j]
                    + a[1] * r[1][j]
                    + a[2] * r[2][j]
                    + a[3] * r[3][j]
                    + a[4] * r[4][j]
                    + a[5] * r[5][j]
                    + a[6] * r[6][j]
                    + a[7] * r[7][j];
            }
        }
        for (kk, &a) in xi.iter().enumerate().skip(full) {
            for (oj, wj) in o.iter_mut().zip(row(kk)) {
                *oj += a * wj;
            }
        }
    }
    out
}

/// Columns `cols` of `x · w` (`x`: rows × `k`, `w`: `k` × `n`), `[rows, cols.len()]`, in tiles
/// of [`TILE_ROWS`] × [`TILE_COLS`]: a tile's weights (a `k` × 8 panel: half of `k` cache
/// lines, in L1 or L2 while the tiles of rows take it, the lines' other halves read by the
/// next tile) come from memory once and are reused by every tile of rows. Each output is one sum in `k` order from
/// 0, so the tiling (and the page's vector form) does not change its bits.
fn tiled(x: &[f32], w: &[f32], k: usize, n: usize, cols: std::ops::Range<usize>) -> Vec<f32> {
    let rows = x.len() / k;
    let len = cols.len();
    let mut out = vec![0.0f32; rows * len];
    let whole = len / TILE_COLS * TILE_COLS;
    for c in (0..whole).step_by(TILE_COLS) {
        // Row `kk` of the panel is `panel[kk * n..][..TILE_COLS]`.
        let panel = &w[cols.start + c..];
        for r0 in (0..rows).step_by(TILE_ROWS) {
            let take = (rows - r0).min(TILE_ROWS);
            // A short last tile repeats its first row; those sums are dropped.
            let xr: [&[f32]; TILE_ROWS] = std::array::from_fn(|i| {
                let i = r0 + if i < take { i } else { 0 };
                &x[i * k..(i + 1) * k]
            });
            let sums = simd::tile(&xr, panel, n, k);
            for (i, s) in sums.iter().enumerate().take(take) {
                out[(r0 + i) * len + c..][..TILE_COLS].copy_from_slice(s);
            }
        }
    }
    for (i, o) in out.chunks_exact_mut(len).enumerate() {
        let xi = &x[i * k..(i + 1) * k];
        for (c, oc) in o.iter_mut().enumerate().skip(whole) {
            let j = cols.start + c;
            let mut s = 0.0f32;
            for (kk, a) in xi.iter().enumerate() {
                s += a * w[kk * n + j];
            }
            *oc = s;
        }
    }
    out
}

/// Columns `cols` of `x · wᵀ` (`w`: `n` rows of `k`), `[rows, cols.len()]`: each output is a
/// dot product kept in `UNROLL` independent lanes (summed at the end, in lane order).
fn dot_rows(x: &[f32], w: &[f32], k: usize, cols: std::ops::Range<usize>) -> Vec<f32> {
    let rows = x.len() / k;
    let len = cols.len();
    let full = k / UNROLL * UNROLL;
    let mut out = vec![0.0f32; rows * len];
    for (jj, j) in cols.enumerate() {
        let wj = &w[j * k..(j + 1) * k];
        for i in 0..rows {
            let xi = &x[i * k..(i + 1) * k];
            let lanes = simd::dot8(&xi[..full], &wj[..full]);
            let tail: f32 = xi[full..].iter().zip(&wj[full..]).map(|(a, b)| a * b).sum();
            out[i * len + jj] = lanes.iter().sum::<f32>() + tail;
        }
    }
    out
}

/// The two loops' vector forms. LLVM does not vectorise the page's loops itself (with LTO it
/// vectorises at link time, at the page crate's size-first opt-level), so WebAssembly gets them
/// written with its SIMD instructions; elsewhere they are plain loops the compiler vectorises.
/// Every lane does the scalar loop's operations in the scalar loop's order: the same bits.
pub(super) mod simd {
    use super::{TILE_COLS, TILE_ROWS, UNROLL};

    /// `o[j] += Σ_l a[l] · r[l][j]` (summed in `l` order, then added) for the first columns in
    /// whole vectors; returns how many it did (the caller does the rest).
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    #[allow(unsafe_code)]
    pub(super) fn axpy8(o: &mut [f32], a: &[f32; UNROLL], r: &[&[f32]; UNROLL]) -> usize {
        use core::arch::wasm32::*;
        let len = o.len();
        if r.iter().any(|w| w.len() < len) {
            return 0;
        }
        let av: [v128; UNROLL] = std::array::from_fn(|l| f32x4_splat(a[l]));
        let whole = len / 4 * 4;
        let mut j = 0;
        while j < whole {
            // SAFETY: `j + 4 <= len`, and `o` and every `r[l]` hold at least `len` values;
            // unaligned loads and stores are allowed in WebAssembly.
            unsafe {
                let term = |l: usize| f32x4_mul(av[l], v128_load(r[l].as_ptr().add(j).cast()));
                // Written out: the page's size-first build would not unroll a loop over `l`.
                let s = f32x4_add(f32x4_add(f32x4_add(term(0), term(1)), term(2)), term(3));
                let s = f32x4_add(
                    f32x4_add(f32x4_add(f32x4_add(s, term(4)), term(5)), term(6)),
                    term(7),
                );
                let p = o.as_mut_ptr().add(j).cast::<v128>();
                v128_store(p, f32x4_add(v128_load(p), s));
            }
            j += 4;
        }
        whole
    }

    /// One tile of [`super::tiled`]: for each of the rows `x` (each at least `k` long) and
    /// columns `panel[kk * n..][..TILE_COLS]`, `Σ_kk x[kk] · panel[kk·n + t]` summed in `kk`
    /// order from 0.
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    #[allow(unsafe_code)]
    pub(super) fn tile(
        x: &[&[f32]; TILE_ROWS],
        panel: &[f32],
        n: usize,
        k: usize,
    ) -> [[f32; TILE_COLS]; TILE_ROWS] {
        use core::arch::wasm32::*;
        if k == 0 || panel.len() < (k - 1) * n + TILE_COLS || x.iter().any(|r| r.len() < k) {
            return tile_plain(x, panel, n, k);
        }
        let z = f32x4_splat(0.0);
        let (mut a0, mut b0, mut a1, mut b1) = (z, z, z, z);
        let (mut a2, mut b2, mut a3, mut b3) = (z, z, z, z);
        let (x0, x1, x2, x3) = (x[0].as_ptr(), x[1].as_ptr(), x[2].as_ptr(), x[3].as_ptr());
        for kk in 0..k {
            // SAFETY: `kk < k` and every row holds `k` values; the panel holds
            // `(k - 1) · n + TILE_COLS` values, so `p + 8` stays within it; unaligned loads are
            // allowed in WebAssembly.
            unsafe {
                let p = panel.as_ptr().add(kk * n);
                let lo = v128_load(p.cast());
                let hi = v128_load(p.add(4).cast());
                // Written out: the page's size-first build would keep an array of sums in memory.
                let s = f32x4_splat(*x0.add(kk));
                a0 = f32x4_add(a0, f32x4_mul(s, lo));
                b0 = f32x4_add(b0, f32x4_mul(s, hi));
                let s = f32x4_splat(*x1.add(kk));
                a1 = f32x4_add(a1, f32x4_mul(s, lo));
                b1 = f32x4_add(b1, f32x4_mul(s, hi));
                let s = f32x4_splat(*x2.add(kk));
                a2 = f32x4_add(a2, f32x4_mul(s, lo));
                b2 = f32x4_add(b2, f32x4_mul(s, hi));
                let s = f32x4_splat(*x3.add(kk));
                a3 = f32x4_add(a3, f32x4_mul(s, lo));
                b3 = f32x4_add(b3, f32x4_mul(s, hi));
            }
        }
        [lanes(a0, b0), lanes(a1, b1), lanes(a2, b2), lanes(a3, b3)]
    }

    #[cfg(not(any(
        all(target_arch = "wasm32", target_feature = "simd128"),
        target_arch = "x86_64"
    )))]
    pub(super) fn tile(
        x: &[&[f32]; TILE_ROWS],
        panel: &[f32],
        n: usize,
        k: usize,
    ) -> [[f32; TILE_COLS]; TILE_ROWS] {
        tile_plain(x, panel, n, k)
    }

    /// On x86-64 the plain loops compiled for AVX2 where the CPU has it (checked once, then a
    /// cached flag): a tile's 8 columns are one 8-lane vector instead of two SSE2 vectors. Rust
    /// never fuses `a * b + c` into an FMA, so the bits are the plain loops' (and the page's).
    /// SmolLM2's 14-token products on one core: 95 → 76 ms.
    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    pub(super) fn tile(
        x: &[&[f32]; TILE_ROWS],
        panel: &[f32],
        n: usize,
        k: usize,
    ) -> [[f32; TILE_COLS]; TILE_ROWS] {
        #[target_feature(enable = "avx2")]
        fn avx2(
            x: &[&[f32]; TILE_ROWS],
            panel: &[f32],
            n: usize,
            k: usize,
        ) -> [[f32; TILE_COLS]; TILE_ROWS] {
            tile_plain(x, panel, n, k)
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            unsafe { avx2(x, panel, n, k) }
        } else {
            tile_plain(x, panel, n, k)
        }
    }

    /// [`tile`] as plain loops (natively the compiler vectorises them).
    #[inline(always)]
    pub(super) fn tile_plain(
        x: &[&[f32]; TILE_ROWS],
        panel: &[f32],
        n: usize,
        k: usize,
    ) -> [[f32; TILE_COLS]; TILE_ROWS] {
        let mut acc = [[0.0f32; TILE_COLS]; TILE_ROWS];
        for kk in 0..k {
            let w = &panel[kk * n..kk * n + TILE_COLS];
            for (sums, row) in acc.iter_mut().zip(x) {
                let a = row[kk];
                for (s, wt) in sums.iter_mut().zip(w) {
                    *s += a * wt;
                }
            }
        }
        acc
    }

    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    pub(super) fn axpy8(_o: &mut [f32], _a: &[f32; UNROLL], _r: &[&[f32]; UNROLL]) -> usize {
        0
    }

    /// Per lane `l`, `Σ_c a[c·UNROLL + l] · b[c·UNROLL + l]` over whole chunks, in chunk order.
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    #[allow(unsafe_code)]
    pub(super) fn dot8(a: &[f32], b: &[f32]) -> [f32; UNROLL] {
        use core::arch::wasm32::*;
        let n = a.len().min(b.len()) / UNROLL * UNROLL;
        let (mut lo, mut hi) = (f32x4_splat(0.0), f32x4_splat(0.0));
        let mut c = 0;
        while c < n {
            // SAFETY: `c + UNROLL <= n`, within both slices; unaligned loads are allowed.
            unsafe {
                let (pa, pb) = (a.as_ptr().add(c), b.as_ptr().add(c));
                lo = f32x4_add(lo, f32x4_mul(v128_load(pa.cast()), v128_load(pb.cast())));
                hi = f32x4_add(
                    hi,
                    f32x4_mul(v128_load(pa.add(4).cast()), v128_load(pb.add(4).cast())),
                );
            }
            c += UNROLL;
        }
        lanes(lo, hi)
    }

    /// The 8 lanes of two vectors, `lo`'s first.
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    pub(in crate::transformer) fn lanes(
        lo: core::arch::wasm32::v128,
        hi: core::arch::wasm32::v128,
    ) -> [f32; UNROLL] {
        use core::arch::wasm32::f32x4_extract_lane;
        [
            f32x4_extract_lane::<0>(lo),
            f32x4_extract_lane::<1>(lo),
            f32x4_extract_lane::<2>(lo),
            f32x4_extract_lane::<3>(lo),
            f32x4_extract_lane::<0>(hi),
            f32x4_extract_lane::<1>(hi),
            f32x4_extract_lane::<2>(hi),
            f32x4_extract_lane::<3>(hi),
        ]
    }

    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    pub(super) fn dot8(a: &[f32], b: &[f32]) -> [f32; UNROLL] {
        let mut lanes = [0.0f32; UNROLL];
        for (ca, cb) in a.chunks_exact(UNROLL).zip(b.chunks_exact(UNROLL)) {
            for l in 0..UNROLL {
                lanes[l] += ca[l] * cb[l];
            }
        }
        lanes
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    fn tensor(v: Vec<f32>, shape: [usize; 2]) -> Tensor<2> {
        Tensor::from_data(TensorData::new(v, shape), &Device::flex())
    }

    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "{x} vs {y}");
        }
    }

    /// Patterned `x` (`[r, k]`) and `w` (`[k, n]`), and [`matmul`]'s `x · w`, checked against
    /// gemm's.
    fn matmul_against_gemm(r: usize, k: usize, n: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let x: Vec<f32> = (0..r * k)
            .map(|i| ((i * 37) % 17) as f32 / 17.0 - 0.5)
            .collect();
        let w: Vec<f32> = (0..k * n)
            .map(|i| ((i * 91) % 23) as f32 / 23.0 - 0.5)
            .collect();
        let (xt, wt) = (tensor(x.clone(), [r, k]), tensor(w.clone(), [k, n]));
        let got = matmul(&xt, &wt)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let want = xt.matmul(wt).into_data().try_to_vec::<f32>().unwrap();
        close(&got, &want);
        (x, w, got)
    }

    /// Both forms against gemm, at sizes with tails (k not a multiple of 8, n not of 16) and
    /// big enough to split over threads.
    #[test]
    fn rows_match_gemm() {
        for (r, k, n) in [
            (1, 5, 3),
            (1, 19, 37),
            (3, 64, 100),
            (4, 300, 1000),
            (1, 577, 1537),
        ] {
            let (x, w, want) = matmul_against_gemm(r, k, n);
            let w_rows: Vec<f32> = (0..n * k).map(|i| w[(i % k) * n + i / k]).collect();
            let got = matmul_transposed(&tensor(x, [r, k]), &tensor(w_rows, [n, k])).unwrap();
            close(&got.into_data().try_to_vec::<f32>().unwrap(), &want);
        }
    }

    /// The tiled form against gemm: short last tiles of rows, column tails, threads; and
    /// equal bits to the one-sum-per-output definition.
    #[test]
    fn tiles_match_gemm_and_sum_in_order() {
        // (14, 300, 1001): split over threads natively, with a column tail in the last part.
        for (r, k, n) in [
            (5, 3, 8),
            (6, 19, 37),
            (14, 64, 100),
            (14, 300, 1001),
            (64, 9, 17),
        ] {
            let (x, w, got) = matmul_against_gemm(r, k, n);
            for i in 0..r {
                for j in 0..n {
                    let mut s = 0.0f32;
                    for kk in 0..k {
                        s += x[i * k + kk] * w[kk * n + j];
                    }
                    assert_eq!(got[i * n + j].to_bits(), s.to_bits(), "row {i} column {j}");
                }
            }
        }
    }

    #[test]
    fn many_rows_and_views_are_left_to_gemm() {
        let x = tensor(vec![1.0; (MAX_TILED_ROWS + 1) * 4], [MAX_TILED_ROWS + 1, 4]);
        let w = tensor(vec![1.0; 4 * 3], [4, 3]);
        assert!(matmul(&x, &w).is_none());
        // A transposed view is not dense row-major.
        let x = tensor(vec![1.0; 4], [1, 4]);
        let view = tensor(vec![1.0; 3 * 4], [3, 4]).transpose();
        assert!(matmul(&x, &view).is_none());
        assert!(matmul(&x, &w).is_some());
    }
}
