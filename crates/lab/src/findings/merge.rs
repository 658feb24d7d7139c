//! The Merge lab's findings: each guided experiment's paper beside this page's run.

use super::Finding;
use crate::mergelab::{MergeOutcome, MergeSpec, SweepRow};
use crate::suite::Task;

/// The finding of the Merge guided experiment `id` from its spec and outcome. `standard` is this
/// page's run of the first guided experiment (task arithmetic of the standard fine-tunes, with
/// its λ sweep), which TIES, aTLAS and the linearised sweep are compared with; without it their
/// line says to run it. `None` for an id without a finding.
pub fn merge(
    id: &str,
    spec: &MergeSpec,
    run: &MergeOutcome,
    standard: Option<&MergeOutcome>,
) -> Option<Finding> {
    let merged = Merged::of(spec, run);
    match id {
        "add" => {
            let best = best(&run.sweep)?;
            let own = merged.fine_tuned(run);
            let share = best.mean / own;
            let agrees = share >= 0.8;
            let mut shows = format!(
                "The best λ is {:.2}: mean accuracy {} over the {} merged tasks, against {} for \
                 the fine-tunes on their own tasks ({:.0} % of it); there the control task \
                 (digits) has {} (base {}).",
                best.lambda,
                pct(best.mean),
                merged.columns.len(),
                pct(own),
                100.0 * share,
                pct(at(best, run, Task::Digits)),
                pct(base(run, Task::Digits)),
            );
            if !agrees {
                shows += " Not what the paper reports: on this suite the task vectors \
                          interfere, and no λ gives one model near the fine-tunes.";
            }
            Some(Finding {
                claim: "Adding task vectors with one scaling λ gives a single model that does \
                        well on every task it merged (Ilharco et al. 2023)."
                    .into(),
                shows,
                agrees: Some(agrees),
            })
        }
        "negate" => {
            let &target = merged.tasks.first()?;
            let control = Task::Digits;
            let (t0, c0) = (base(run, target), base(run, control));
            // Ilharco et al.'s protocol: the most negative λ that keeps the control task at
            // 95 % of the base model's accuracy.
            let kept = run
                .sweep
                .iter()
                .filter(|r| r.lambda < 0.0 && at(r, run, control) >= 0.95 * c0)
                .min_by(|a, b| a.lambda.total_cmp(&b.lambda));
            let mut shows = format!(
                "At λ = {:.2}, {target} accuracy goes from {} (base) to {}, the control task \
                 (digits) from {} to {}.",
                spec.lambda,
                pct(t0),
                pct(run.merged[col(run, target)?]),
                pct(c0),
                pct(run.control)
            );
            let agrees = match kept {
                Some(r) => {
                    let t = at(r, run, target);
                    shows += &format!(
                        " The paper's protocol (the most negative λ that keeps the control at \
                         95 % of the base's) picks λ = {:.2} here: {target} {}, digits {}.",
                        r.lambda,
                        pct(t),
                        pct(at(r, run, control))
                    );
                    t < t0 - 0.05
                }
                None => {
                    shows += " No negative λ of the sweep keeps the control at 95 % of the \
                              base's accuracy.";
                    false
                }
            };
            if !agrees {
                shows += " Not what the paper reports: here forgetting the task costs the \
                          control task too much.";
            }
            Some(Finding {
                claim: "Subtracting a task vector makes the model forget that task while a \
                        control task barely changes (Ilharco et al. 2023)."
                    .into(),
                shows,
                agrees: Some(agrees),
            })
        }
        "ties" => compare_with_standard(
            "TIES-Merging (trim to the largest entries, elect a sign per parameter, average the \
             agreeing ones) reduces interference and beats task arithmetic (Yadav et al. 2023).",
            "TIES",
            best(&run.sweep).map(|b| (b.mean, Some(b.lambda))),
            standard,
        ),
        "adamerging" => {
            let best = best(&run.sweep)?;
            let calm = run
                .sweep
                .iter()
                .filter(|r| r.entropy.is_finite())
                .min_by(|a, b| a.entropy.total_cmp(&b.entropy))?;
            let losses = run.learned.as_ref().map(|l| &l.losses);
            let agrees = run.mean_accuracy >= best.mean;
            let mut shows = format!(
                "AdaMerging reaches mean accuracy {}{}; task arithmetic's best λ ({:.2}) gives {}, \
                 and the λ with the lowest entropy ({:.2}), the one an unlabelled criterion would \
                 choose, {}.",
                pct(run.mean_accuracy),
                match losses.and_then(|l| Some((l.first()?, l.last()?))) {
                    Some((a, b)) => format!(" (its entropy went from {a:.3} to {b:.3})"),
                    None => String::new(),
                },
                best.lambda,
                pct(best.mean),
                calm.lambda,
                pct(calm.mean)
            );
            if !agrees {
                shows += " Not what the paper reports: on this suite low entropy does not mean \
                          high accuracy, so minimising it does not find the accurate merge.";
            }
            Some(Finding {
                claim: "Coefficients learned per layer by minimising the prediction entropy on \
                        unlabelled test inputs beat task arithmetic clearly (by 11 points on \
                        eight tasks in Yang et al. 2024)."
                    .into(),
                shows,
                agrees: Some(agrees),
            })
        }
        "atlas" => compare_with_standard(
            "Learning one coefficient per parameter block (anisotropic scaling) from a few \
             labelled examples composes task vectors better than one λ (Zhang et al. 2024, \
             aTLAS).",
            "The per-block coefficients",
            Some((run.mean_accuracy, None)),
            standard,
        ),
        "disentangle" => {
            let d = run.disentanglement.as_ref()?;
            // The region the paper looks at: both coefficients in [0, 1].
            let inside: Vec<f64> = d
                .alphas
                .iter()
                .enumerate()
                .filter(|(_, a)| (0.0..=1.0).contains(*a))
                .flat_map(|(i, _)| {
                    d.alphas
                        .iter()
                        .enumerate()
                        .filter(|(_, a)| (0.0..=1.0).contains(*a))
                        .filter_map(move |(j, _)| d.error.get(i)?.get(j).copied())
                })
                .collect();
            if inside.is_empty() {
                return None;
            }
            let low = inside.iter().filter(|&&e| e <= 0.1).count();
            let agrees = 2 * low >= inside.len();
            let one = d
                .alphas
                .iter()
                .position(|&a| (a - 1.0).abs() < 1e-9)
                .and_then(|i| d.error.get(i)?.get(i).copied());
            let mut shows = format!(
                "ξ ≤ 0.1 on {low} of the {} grid points with α₁, α₂ in [0, 1]{} (ξ counts \
                 changed predictions on both tasks: 0 to 2).",
                inside.len(),
                one.map(|e| format!("; at α₁ = α₂ = 1 it is {e:.2}"))
                    .unwrap_or_default()
            );
            if !agrees {
                shows += &format!(
                    " Not a disentangled pair: adding {} changes what the model predicts on {}, \
                     and the other way round.",
                    d.tasks.first()?,
                    d.tasks.get(1)?
                );
            }
            Some(Finding {
                claim: "Task arithmetic works where tasks are weight-disentangled: for such a \
                        pair ξ(α₁, α₂) stays near 0 over a large region (Ortiz-Jiménez et al. \
                        2023)."
                    .into(),
                shows,
                agrees: Some(agrees),
            })
        }
        "linearised" => {
            let b = best(&run.sweep)?;
            let mut f = compare_with_standard(
                "Task vectors fine-tuned in the tangent space of the base (linearised) are more \
                 disentangled and add better than standard ones (Ortiz-Jiménez et al. 2023).",
                "Linearised",
                Some((b.mean, Some(b.lambda))),
                standard,
            )?;
            let digits = |r: &MergeOutcome, row: &SweepRow| at(row, r, Task::Digits);
            if let Some(s) = standard.and_then(|s| Some((s, best(&s.sweep)?))) {
                f.shows += &format!(
                    " The control task (digits) at those λ: {} linearised, {} standard.",
                    pct(digits(run, b)),
                    pct(digits(s.0, s.1))
                );
            }
            Some(f)
        }
        _ => None,
    }
}

/// Which columns a spec merged.
struct Merged {
    tasks: Vec<Task>,
    columns: Vec<usize>,
}

impl Merged {
    fn of(spec: &MergeSpec, run: &MergeOutcome) -> Self {
        let mut tasks = spec.tasks.clone();
        for f in &spec.fine_tunes {
            if !tasks.contains(&f.task) {
                tasks.push(f.task);
            }
        }
        let columns = tasks.iter().filter_map(|&t| col(run, t)).collect();
        Self { tasks, columns }
    }

    /// Mean over the merged tasks of the best fine-tune's accuracy on each (its own task).
    fn fine_tuned(&self, run: &MergeOutcome) -> f64 {
        let fine = run
            .rows
            .get(1..run.rows.len().saturating_sub(1))
            .unwrap_or_default();
        let own: Vec<f64> = self
            .columns
            .iter()
            .map(|&c| {
                fine.iter()
                    .filter_map(|r| r.accuracy.get(c).copied())
                    .fold(0.0, f64::max)
            })
            .collect();
        own.iter().sum::<f64>() / own.len().max(1) as f64
    }
}

/// A method's best mean accuracy (and its λ) against the standard task-arithmetic sweep's.
fn compare_with_standard(
    claim: &str,
    name: &str,
    ours: Option<(f64, Option<f64>)>,
    standard: Option<&MergeOutcome>,
) -> Option<Finding> {
    let (mean, lambda) = ours?;
    let at_lambda = lambda
        .map(|l| format!(" (best λ {l:.2})"))
        .unwrap_or_default();
    let (shows, agrees) = match standard.and_then(|s| best(&s.sweep)) {
        Some(s) => {
            let agrees = mean > s.mean;
            let mut shows = format!(
                "{name}: mean accuracy {}{at_lambda}; task arithmetic of the standard fine-tunes \
                 (\"Adding task vectors\", run in this page): {} (best λ {:.2}).",
                pct(mean),
                pct(s.mean),
                s.lambda
            );
            if !agrees {
                shows += " Here it does not beat task arithmetic: not what the paper reports.";
            }
            (shows, Some(agrees))
        }
        None => (
            format!(
                "{name}: mean accuracy {}{at_lambda}. Run \"Adding task vectors\" too, and this \
                 line compares them.",
                pct(mean)
            ),
            None,
        ),
    };
    Some(Finding {
        claim: claim.into(),
        shows,
        agrees,
    })
}

/// The sweep's row with the highest mean accuracy (the first of equals).
fn best(rows: &[SweepRow]) -> Option<&SweepRow> {
    rows.iter()
        .filter(|r| r.mean.is_finite())
        .fold(None, |b: Option<&SweepRow>, r| match b {
            Some(b) if b.mean >= r.mean => Some(b),
            _ => Some(r),
        })
}

fn col(run: &MergeOutcome, task: Task) -> Option<usize> {
    run.columns.iter().position(|&t| t == task)
}

/// A sweep row's accuracy on `task` (NaN when the outcome has no such column).
fn at(row: &SweepRow, run: &MergeOutcome, task: Task) -> f64 {
    col(run, task)
        .and_then(|c| row.accuracy.get(c).copied())
        .unwrap_or(f64::NAN)
}

/// The base model's accuracy on `task`.
fn base(run: &MergeOutcome, task: Task) -> f64 {
    col(run, task)
        .and_then(|c| run.rows.first()?.accuracy.get(c).copied())
        .unwrap_or(f64::NAN)
}

fn pct(v: f64) -> String {
    format!("{:.1} %", 100.0 * v)
}
