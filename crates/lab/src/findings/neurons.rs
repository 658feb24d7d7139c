//! The relation-specific neurons finding (Liu et al. 2025).

use super::Finding;
use crate::neurons::{NeuronsResult, NeuronsSpec};

/// What a relation-neurons run shows beside the paper's claim: at the smallest k that costs the
/// target relation at least half of its facts (else the largest k), the target's and the other
/// relations' accuracies, and the target's with k random neurons off. It agrees when the target
/// loses more than every other relation and more than under the random control. `None` without
/// a baseline (k = 0) or a k above 0.
pub fn neurons(spec: &NeuronsSpec, r: &NeuronsResult) -> Option<Finding> {
    let t = r.relations.iter().position(|x| *x == spec.relation)?;
    let base = r.ranked.iter().find(|p| p.k == 0)?;
    let at = r
        .ranked
        .iter()
        .filter(|p| p.k > 0 && 2 * p.correct[t] <= base.correct[t])
        .min_by_key(|p| p.k)
        .or_else(|| r.ranked.iter().filter(|p| p.k > 0).max_by_key(|p| p.k))?;
    let drop = |i: usize| base.accuracy[i] - at.accuracy[i];
    let others: Vec<String> = (0..r.relations.len())
        .filter(|&i| i != t)
        .map(|i| {
            format!(
                "{} {}/{} (was {})",
                r.relations[i], at.correct[i], r.facts[i], base.correct[i]
            )
        })
        .collect();
    let random = r.random.iter().find(|p| p.k == at.k);
    let random_text = random.map_or(String::new(), |q| {
        format!(
            " With {} random neurons off instead, {} keeps {}/{}.",
            at.k, spec.relation, q.correct[t], r.facts[t]
        )
    });
    let specific = (0..r.relations.len())
        .filter(|&i| i != t)
        .all(|i| drop(t) > drop(i));
    let beats_random = random.is_none_or(|q| at.correct[t] < q.correct[t]);
    Some(Finding {
        claim: "Switching off the neurons specific to a relation degrades facts of that relation far \
                more than facts of other relations, and more neurons degrade more (Liu et al. 2025)."
            .into(),
        shows: format!(
            "With the top {k} “{rel}” neurons off the model answers {c}/{n} {rel} facts (was {b}); \
             the other relations: {others}.{random_text}",
            k = at.k,
            rel = spec.relation,
            c = at.correct[t],
            n = r.facts[t],
            b = base.correct[t],
            others = others.join(", "),
        ),
        agrees: Some(drop(t) > 0.0 && specific && beats_random),
    })
}
