//! The Circuits lab's findings for the guided patching sweeps: the paper beside this run.

use interplay_models::patching::{PatchGrid, PatchTarget};

use super::Finding;
use crate::patching::PatchingSpec;

/// The finding of the Circuits guided experiment `id` from its patching sweep; `cols` are the
/// grid's column labels as the page shows them (`"9 ␣John"` for positions). `None` for an id
/// without a sweep finding or a sweep of another target.
///
/// # Shapes
/// - `grid.grid`: `[layer][position]` (resid_pre, one more row for the final norm's input) or
///   `[layer][head]` (head outputs at all positions).
pub fn circuits(
    id: &str,
    spec: &PatchingSpec,
    grid: &PatchGrid,
    cols: &[String],
) -> Option<Finding> {
    match (id, spec.target) {
        ("ioi-bundled" | "ioi", PatchTarget::ResidPre) => ioi_positions(grid, cols),
        ("ioi-heads", PatchTarget::HeadOut) => ioi_heads(grid),
        _ => None,
    }
}

/// Where the recovery sits layer by layer: at the second name early, at the last position late.
fn ioi_positions(grid: &PatchGrid, cols: &[String]) -> Option<Finding> {
    let last = cols.len().checked_sub(1)?;
    // Layer 0's residual stream differs only where the prompts differ: the second name.
    let first_row = grid.grid.first()?;
    let s2 = argmax(first_row)?;
    let at = |l: usize, p: usize| {
        grid.grid
            .get(l)
            .and_then(|r| r.get(p))
            .map(|&v| f64::from(v))
    };
    // The first layer from which the last position carries more than the second name, for good.
    let layers = grid.grid.len();
    let moved = (0..layers)
        .find(|&l| (l..layers).all(|k| at(k, last).unwrap_or(0.0) > at(k, s2).unwrap_or(0.0)));
    let name = |p: usize| cols.get(p).map(String::as_str).unwrap_or("?");
    let shows = match moved {
        Some(m) if s2 != last && m > 0 => format!(
            "Patching restores most at the second name (position {}) in layers 0–{} ({:.2} at \
             layer 0), and at the last position from layer {m} on ({:.2} at the last row).",
            name(s2),
            m - 1,
            at(0, s2).unwrap_or(f64::NAN),
            at(layers - 1, last).unwrap_or(f64::NAN),
        ),
        _ => format!(
            "Layer 0 restores most at position {} ({:.2}); the last position never takes over \
             for good ({:.2} at the last row).",
            name(s2),
            at(0, s2).unwrap_or(f64::NAN),
            at(layers - 1, last).unwrap_or(f64::NAN),
        ),
    };
    let agrees = s2 != last && moved.is_some_and(|m| m > 0);
    let mut shows = shows;
    if !agrees {
        shows += " Not the move the paper describes.";
    }
    Some(Finding {
        claim: "What decides the answer moves part-way through the model: in the earlier \
                layers it sits at the repeated name (S2), in the later ones at the last token, \
                where name-mover heads copy the indirect object's name (Wang et al. 2022)."
            .into(),
        shows,
        agrees: Some(agrees),
    })
}

/// A few heads in the later layers restore most of the difference.
fn ioi_heads(grid: &PatchGrid) -> Option<Finding> {
    let mut heads: Vec<(usize, usize, f64)> = grid
        .grid
        .iter()
        .enumerate()
        .flat_map(|(l, row)| {
            row.iter()
                .enumerate()
                .map(move |(h, &v)| (l, h, f64::from(v)))
        })
        .filter(|(_, _, v)| v.is_finite())
        .collect();
    heads.sort_by(|a, b| b.2.total_cmp(&a.2));
    let layers = grid.grid.len();
    let top: Vec<_> = heads.iter().take(3).collect();
    let (&&(l0, _, _), sum) = (top.first()?, top.iter().map(|h| h.2).sum::<f64>());
    let strong = heads.iter().filter(|h| h.2 > 0.1).count();
    let late = top.iter().all(|h| 2 * h.0 >= layers);
    let agrees = 2 * l0 >= layers && sum >= 0.3;
    let mut shows = format!(
        "The three heads that restore most: {} — together {sum:.2} of the difference; {strong} of \
         {} heads restore more than 0.1 alone; the strongest is in layer {l0} of {layers}{}.",
        top.iter()
            .map(|(l, h, v)| format!("L{l}H{h} ({v:.2})"))
            .collect::<Vec<_>>()
            .join(", "),
        heads.len(),
        if late {
            ", all three in the later half"
        } else {
            ""
        },
    );
    if !agrees {
        shows += " Not what the paper describes: no small set of late heads carries the name here.";
    }
    Some(Finding {
        claim: "A few attention heads in the later layers (name movers) restore most of the \
                logit difference when patched alone (Wang et al. 2022)."
            .into(),
        shows,
        agrees: Some(agrees),
    })
}

fn argmax(row: &[f32]) -> Option<usize> {
    row.iter()
        .enumerate()
        .filter(|(_, v)| v.is_finite())
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly by design
    use super::*;

    fn grid(rows: Vec<Vec<f32>>) -> PatchGrid {
        PatchGrid {
            clean_metric: 1.0,
            corrupt_metric: -1.0,
            patched: rows.clone(),
            grid: rows,
        }
    }

    #[test]
    fn a_few_late_heads_agree_and_spread_early_heads_do_not() {
        let spec = PatchingSpec {
            target: PatchTarget::HeadOut,
            ..PatchingSpec::ioi_smollm2()
        };
        let late = grid(vec![
            vec![0.0, 0.01],
            vec![0.02, 0.0],
            vec![0.3, 0.05],
            vec![0.2, 0.1],
        ]);
        let f = circuits("ioi-heads", &spec, &late, &[]).unwrap();
        assert_eq!(f.agrees, Some(true), "{}", f.shows);
        assert!(
            f.shows.starts_with(
                "The three heads that restore most: L2H0 (0.30), L3H0 (0.20), L3H1 (0.10)"
            ),
            "{}",
            f.shows
        );
        let early = grid(vec![
            vec![0.3, 0.01],
            vec![0.02, 0.0],
            vec![0.05, 0.05],
            vec![0.0, 0.0],
        ]);
        assert_eq!(
            circuits("ioi-heads", &spec, &early, &[]).unwrap().agrees,
            Some(false)
        );
        // A resid_pre grid is not the head experiment's.
        assert_eq!(
            circuits("ioi-heads", &PatchingSpec::ioi_smollm2(), &late, &[]),
            None
        );
    }
}
