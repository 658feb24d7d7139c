//! The Neurofeedback lab's findings: the paper beside this page's run.

use super::Finding;
use crate::neurofeedback::{Direction, NeurofeedbackResult, NeurofeedbackSpec};

/// How far above its shuffled-label control a direction must report to count as reported.
const MARGIN: f64 = 0.1;

/// The finding of the Neurofeedback guided experiment `id` (`"icl"`, `"icl-word"`, `"smollm2"`)
/// from its spec
/// and result; `None` for an id without a finding or a run without accuracies.
pub fn neurofeedback(
    id: &str,
    spec: &NeurofeedbackSpec,
    run: &NeurofeedbackResult,
) -> Option<Finding> {
    if !matches!(id, "icl" | "icl-word" | "smollm2") {
        return None;
    }
    let n = *spec.examples.iter().max()?;
    let last = spec.examples.iter().position(|&e| e == n)?;
    let n0 = *spec.examples.iter().min()?;
    let first = spec.examples.iter().position(|&e| e == n0)?;
    // Per direction: accuracy at the largest N, its shuffled control there, and at the smallest N.
    let rows: Vec<(Direction, f64, Option<f64>, f64)> = run
        .directions
        .iter()
        .filter_map(|d| {
            Some((
                d.direction,
                *d.mean.get(last)?,
                d.shuffled.as_ref().and_then(|s| s.get(last).copied()),
                *d.mean.get(first)?,
            ))
        })
        .collect();
    if rows.is_empty() {
        return None;
    }
    let list = rows
        .iter()
        .map(|(d, a, s, _)| match s {
            Some(s) => format!("{d} {} (shuffled {})", pct(*a), pct(*s)),
            None => format!("{d} {}", pct(*a)),
        })
        .collect::<Vec<_>>()
        .join(", ");
    // A direction is reported when it beats its own shuffled control (or chance, without one)
    // and the random direction by the margin, and rises with N.
    let random = rows.iter().find(|r| r.0 == Direction::Random).map(|r| r.1);
    let reported: Vec<Direction> = rows
        .iter()
        .filter(|(d, a, s, a0)| {
            *d != Direction::Random
                && *a >= s.unwrap_or(0.5) + MARGIN
                && random.is_none_or(|r| *a >= r + MARGIN)
                && a > a0
        })
        .map(|r| r.0)
        .collect();
    let mut shows = format!("At N = {n}: {list}.");
    if reported.is_empty() {
        shows += &format!(
            " No direction reports more than {:.0} points above its controls.",
            100.0 * MARGIN
        );
    } else {
        let names = reported
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        shows += &format!(
            " Above its controls by {:.0}+ points and rising with N: {names}.",
            100.0 * MARGIN
        );
    }
    if let Some(c) = &run.control {
        let k = c.shift.len();
        let diag = (0..k).filter_map(|i| c.shift[i].get(i)).sum::<f64>() / k.max(1) as f64;
        let off: Vec<f64> = (0..k)
            .flat_map(|i| {
                c.shift[i]
                    .iter()
                    .enumerate()
                    .filter(move |(j, _)| *j != i)
                    .map(|(_, v)| v.abs())
            })
            .collect();
        let off = off.iter().sum::<f64>() / off.len().max(1) as f64;
        shows += &format!(
            " Control task (N = {}): the target direction moves by {diag:.2} SD on average, the \
             others by {off:.2} SD (absolute){}.",
            c.examples,
            if diag > off + MARGIN {
                ""
            } else {
                ": the target does not move more than the rest"
            }
        );
    }
    let (claim, agrees) = match id {
        "icl" => (
            "A model that cannot read a rule from examples in context cannot report its \
             activations either: every direction stays near chance, like the shuffled labels \
             (the paradigm's negative control).",
            reported.is_empty(),
        ),
        "icl-word" => (
            "A model that reads a rule from labelled examples in context can report where an \
             item's activation lies along a direction: accuracy rises with N above the \
             shuffled-label control, most for directions explaining much variance (the \
             paradigm of Ji-An et al. 2025 on a model that learned in-context labelling).",
            !reported.is_empty(),
        ),
        _ => (
            "Language models learn from labelled examples in context to report where a \
             sentence's activation lies along a direction: accuracy rises with N above the \
             shuffled-label control, most for directions explaining much variance (early PCs) \
             (Ji-An et al. 2025).",
            !reported.is_empty(),
        ),
    };
    if !agrees {
        shows += match id {
            "icl" => {
                " Not what a model without in-context learning should show: read it against \
                 the seeds' spread."
            }
            "icl-word" => {
                " Not what a model that labels in context should show: read it against the \
                 seeds' spread."
            }
            _ => {
                " Not what the paper reports (it studied much larger models): at 135M \
                 parameters, on this run, SmolLM2 does not report."
            }
        };
    }
    Some(Finding {
        claim: claim.into(),
        shows,
        agrees: Some(agrees),
    })
}

fn pct(v: f64) -> String {
    format!("{:.1} %", 100.0 * v)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly by design
    use super::*;
    use crate::neurofeedback::{ControlResult, DirectionResult};

    fn direction(direction: Direction, mean: Vec<f64>, shuffled: Vec<f64>) -> DirectionResult {
        DirectionResult {
            direction,
            variance_explained: 0.1,
            projections: Vec::new(),
            median: 0.0,
            cuts: [0.0; 2],
            accuracy: vec![mean.clone()],
            mean,
            shuffled: Some(shuffled),
        }
    }

    fn result(directions: Vec<DirectionResult>) -> NeurofeedbackResult {
        NeurofeedbackResult {
            sentences: 100,
            pc_variance: Vec::new(),
            directions,
            control: None,
            explicit: None,
            example_prompt: String::new(),
        }
    }

    #[test]
    fn a_direction_above_its_controls_is_reported_and_chance_is_not() {
        let spec = NeurofeedbackSpec::smollm2();
        let n = spec.examples.len();
        let flat = vec![0.5; n];
        let mut rising = vec![0.5; n];
        *rising.last_mut().unwrap() = 0.8;
        let run = result(vec![
            direction(Direction::Pc(1), rising, flat.clone()),
            direction(Direction::Random, flat.clone(), flat.clone()),
        ]);
        let f = neurofeedback("smollm2", &spec, &run).unwrap();
        assert_eq!(f.agrees, Some(true), "{}", f.shows);
        assert!(
            f.shows.contains("pc1 80.0 % (shuffled 50.0 %)"),
            "{}",
            f.shows
        );
        assert!(f.shows.contains("rising with N: pc1."), "{}", f.shows);
        // The same run is a failed negative control for a model that should not report.
        let f = neurofeedback("icl", &spec, &run).unwrap();
        assert_eq!(f.agrees, Some(false));

        // Near chance everywhere: the negative control holds, the paper's claim does not.
        let mut run = result(vec![
            direction(Direction::Pc(1), vec![0.55; n], flat.clone()),
            direction(Direction::Random, vec![0.58; n], flat),
        ]);
        run.control = Some(ControlResult {
            examples: 16,
            shift: vec![vec![0.1, 0.3], vec![0.2, 0.1]],
        });
        let f = neurofeedback("icl", &spec, &run).unwrap();
        assert_eq!(f.agrees, Some(true), "{}", f.shows);
        let f = neurofeedback("smollm2", &spec, &run).unwrap();
        assert_eq!(f.agrees, Some(false), "{}", f.shows);
        assert!(
            f.shows
                .contains("moves by 0.10 SD on average, the others by 0.25 SD"),
            "{}",
            f.shows
        );
        assert_eq!(neurofeedback("other", &spec, &run), None);
    }
}
