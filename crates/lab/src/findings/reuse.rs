//! The circuit-reuse finding (Merullo et al. 2023).

use super::Finding;
use crate::reuse::{ReuseResult, ReuseSpec};

/// What a circuit-reuse run shows beside the paper's two claims: the IOI and Colored Objects top
/// k heads overlap far above chance, and making a few heads attend to the wrong colours (as
/// S-inhibition heads attend to the repeated name in IOI) raises Colored Objects accuracy. It
/// agrees when the overlap is at least three times chance and the intervention answers more
/// items than the model alone and than the random heads' control. `None` when the overlap at k
/// was not computed.
pub fn reuse(spec: &ReuseSpec, r: &ReuseResult) -> Option<Finding> {
    let k = spec.top_k;
    let overlap = *r.overlap.get(k.checked_sub(1)?)?;
    let chance = *r.chance.get(k - 1)?;
    let heads = spec
        .heads
        .iter()
        .map(|[l, h]| format!("{l}.{h}"))
        .collect::<Vec<_>>()
        .join(", ");
    let pct = |c: usize, n: usize| 100.0 * c as f64 / n.max(1) as f64;
    let control = r.control.as_ref().map_or(String::new(), |c| {
        format!(
            " The same done to {} random heads gives {}/{} ({:.0} %).",
            r.control_heads.len(),
            c.correct,
            c.total,
            pct(c.correct, c.total)
        )
    });
    let shared = (overlap * k as f64).round() as usize;
    let better = r.intervened.correct > r.base.correct
        && r.control
            .as_ref()
            .is_none_or(|c| r.intervened.correct > c.correct);
    Some(Finding {
        claim: "The IOI circuit is mostly reused for Colored Objects (78 % of its heads), and \
                making four middle-layer heads attend to the wrong colours, as IOI's inhibition \
                heads attend to the repeated name, raises Colored Objects accuracy from 49.6 % to \
                93.7 % (Merullo et al. 2023, GPT-2 Medium)."
            .into(),
        shows: format!(
            "{shared} of the top {k} heads by patching effect are the same on both tasks \
             ({o:.0} %; two random sets of {k} share {c:.1} % on average). Colored Objects: \
             {b}/{n} answered ({bp:.0} %); with heads {heads} attending to the two colours not \
             asked about, {i}/{n} ({ip:.0} %).{control}",
            o = 100.0 * overlap,
            c = 100.0 * chance,
            b = r.base.correct,
            n = r.base.total,
            bp = pct(r.base.correct, r.base.total),
            i = r.intervened.correct,
            ip = pct(r.intervened.correct, r.intervened.total),
        ),
        agrees: Some(overlap >= 3.0 * chance && better),
    })
}
