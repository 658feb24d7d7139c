//! How much memory one step of a run may hold, checked before the run starts.
//!
//! A wasm module has at most 4 GiB of memory and traps (`unreachable`) when an allocation fails,
//! which in the page used to kill the engine mid-run with no message. The largest tensors of a
//! forward pass are a block's attention scores (`batch × heads × queries × keys`), which grow
//! with the square of the prompt, so a prompt or a sweep too big for the budget is refused up
//! front with the length that fits.

use crate::config::TransformerConfig;
use crate::error::{ModelError, Result};

/// The most bytes one block of one run may hold at once. In the page the model (SmolLM2 in f32:
/// 540 MB), the engine's caches and the allocator's slack share 4 GiB with it; natively it only
/// keeps a typo from swapping the machine.
pub const BLOCK_BUDGET: usize = if cfg!(target_arch = "wasm32") {
    768 << 20
} else {
    8 << 30
};

/// Where [`BLOCK_BUDGET`] applies, for messages.
const HOLDER: &str = if cfg!(target_arch = "wasm32") {
    "the page"
} else {
    "Interplay"
};

/// Bytes one block holds at its peak for `batch` rows of `queries` new positions attending to
/// `keys` positions: scores and probabilities, the MLP's two hidden activations and a few copies
/// of the residual stream, all f32.
pub fn block_bytes(c: &TransformerConfig, batch: usize, queries: usize, keys: usize) -> usize {
    let per_query = 2 * c.n_heads * keys + 2 * c.d_mlp + 6 * c.d_model;
    4usize
        .saturating_mul(batch)
        .saturating_mul(queries)
        .saturating_mul(per_query)
}

/// The longest prompt (`keys = queries = tokens`, at most `n_ctx`) for which `fits(tokens)`.
fn longest(c: &TransformerConfig, fits: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0usize, c.n_ctx.max(1));
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if fits(mid) { lo = mid } else { hi = mid - 1 }
    }
    lo
}

/// Refuse a run of `batch` prompts of `queries` new tokens after `keys − queries` cached ones
/// whose blocks would not fit in `budget` bytes; the message says how many tokens would.
pub fn check_prompt(
    c: &TransformerConfig,
    batch: usize,
    queries: usize,
    keys: usize,
    budget: usize,
) -> Result<()> {
    let need = block_bytes(c, batch, queries, keys);
    if need <= budget {
        return Ok(());
    }
    let most = longest(c, |t| block_bytes(c, batch, t, t) <= budget);
    let prompts = if batch > 1 {
        format!("{batch} prompts of {queries} tokens")
    } else {
        format!("{queries} tokens")
    };
    Err(ModelError::Input(format!(
        "{prompts} would need about {} MB in each layer ({} heads × {queries} × {keys} \
         attention scores), more than {HOLDER} can hold at once ({} MB): shorten the prompt to \
         at most {most} tokens",
        need >> 20,
        c.n_heads,
        budget >> 20
    )))
}

/// How many start positions of a patching sweep may run at once (at most `wanted`, at least
/// one), each a batch of `rows` variants over `suffix` positions attending to `keys`; an error
/// when even one does not fit in `budget`, naming the prompt length that would.
pub fn sweep_width(
    c: &TransformerConfig,
    rows: usize,
    suffix: usize,
    keys: usize,
    wanted: usize,
    budget: usize,
) -> Result<usize> {
    let one = block_bytes(c, rows, suffix, keys).max(1);
    if one <= budget {
        return Ok((budget / one).clamp(1, wanted.max(1)));
    }
    let most = longest(c, |t| block_bytes(c, rows, t, t) <= budget);
    Err(ModelError::Input(format!(
        "this sweep runs {rows} patched copies of the last {suffix} positions at once and would \
         need about {} MB in each layer, more than {HOLDER} can hold at once ({} MB): shorten \
         the prompts to at most {most} tokens, or patch whole layers (resid_pre) instead of heads",
        one >> 20,
        budget >> 20
    )))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_long_smollm2_prompt_is_refused_with_the_length_that_fits() {
        let c = TransformerConfig::smollm2_135m();
        let budget = 768 << 20;
        // About 1,270 tokens (a 5,000-character prompt) fits; 5,000 tokens do not.
        assert!(check_prompt(&c, 1, 1270, 1270, budget).is_ok());
        let e = check_prompt(&c, 1, 5000, 5000, budget)
            .unwrap_err()
            .to_string();
        let most = longest(&c, |t| block_bytes(&c, 1, t, t) <= budget);
        assert!((3000..3400).contains(&most), "{most}");
        assert!(e.contains(&format!("at most {most} tokens")), "{e}");
        assert!(block_bytes(&c, 1, most, most) <= budget);
        assert!(block_bytes(&c, 1, most + 1, most + 1) > budget);
        // Decoding one token against a long cache is cheap.
        assert!(check_prompt(&c, 1, 1, 5000, budget).is_ok());
    }

    #[test]
    fn a_sweep_runs_fewer_positions_at_once_before_it_refuses() {
        let c = TransformerConfig::smollm2_135m();
        let budget = 768 << 20;
        // IOI: 270 head variants over the last 5 of 14 positions: 21 start positions could run
        // at once, more than the sweep has.
        assert_eq!(sweep_width(&c, 270, 5, 14, 32, budget).unwrap(), 21);
        // 60 tokens: one position at a time still fits, two do not.
        assert_eq!(sweep_width(&c, 270, 60, 60, 32, budget).unwrap(), 1);
        let e = sweep_width(&c, 270, 1000, 1000, 32, budget)
            .unwrap_err()
            .to_string();
        assert!(e.contains("shorten the prompts to at most"), "{e}");
    }
}
