//! What a guided experiment's paper claims beside what a run of it shows, the latter computed
//! from the run (never a literal), and whether they agree. The page shows them under a guided
//! experiment's result; the claims are the papers', the rest is this run's.

use interplay_dynamics::spiking::SpikingResult;
use interplay_dynamics::tasks::{EiSweepRow, MemoryCapacityResult, PredictionResult};
use interplay_dynamics::whatwhen::{WhatWhenResult, WhatWhenSpec};

mod circuits;
mod merge;
mod neurofeedback;
mod neurons;
mod recall;
mod reuse;

pub use circuits::circuits;
pub use merge::merge;
pub use neurofeedback::neurofeedback;
pub use neurons::neurons;
pub use recall::recall;
pub use reuse::reuse;

/// A paper's claim and what one run shows.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    /// What the paper reports (its words, briefly).
    pub claim: String,
    /// What this run shows, from its numbers (a sentence; the page labels it as the run's).
    pub shows: String,
    /// Whether the run agrees with the claim; `None` when one run cannot tell.
    pub agrees: Option<bool>,
}

/// A Dynamics run, by kind, with what its finding needs besides the result.
pub enum DynamicsRun<'a> {
    /// A spiking network.
    Spiking(&'a SpikingResult),
    /// An echo state network's prediction.
    Prediction(&'a PredictionResult),
    /// Memory capacity, with the reservoir's number of units (the bound on it).
    Memory(&'a MemoryCapacityResult, usize),
    /// An E/I sweep, with the heterogeneous-target sweep's rows when this page has one to
    /// compare a homogeneous sweep with.
    Sweep(&'a [EiSweepRow], Option<&'a [EiSweepRow]>),
    /// The what/when paradigm and its spec (phases and probabilities).
    WhatWhen(&'a WhatWhenResult, &'a WhatWhenSpec),
}

/// The finding of the Dynamics guided experiment `id` from its run; `None` for an id without
/// one or a run of another kind.
pub fn dynamics(id: &str, run: DynamicsRun) -> Option<Finding> {
    match (id, run) {
        ("izhikevich" | "sparse-10k", DynamicsRun::Spiking(r)) => Some(spiking(id, r)),
        ("mackey-glass", DynamicsRun::Prediction(r)) => Some(Finding {
            claim:
                "A reservoir with a trained linear readout predicts Mackey-Glass one step ahead \
                    with an error well below 1 % (Jaeger 2001)."
                    .into(),
            shows: format!(
                "NRMSE {:.2e} ({:.3} %), R² {:.6}.",
                r.nrmse,
                100.0 * r.nrmse,
                r.r2
            ),
            agrees: Some(r.nrmse < 0.01),
        }),
        ("memory", DynamicsRun::Memory(r, units)) => {
            let falls = match (r.mc_k.first(), r.mc_k.last()) {
                (Some(a), Some(b)) => b < a,
                _ => false,
            };
            Some(Finding {
                claim: "Recall r² falls with the delay k, and the memory capacity (their sum) \
                        cannot exceed the number of units (Jaeger 2002)."
                    .into(),
                shows: format!(
                    "MC {:.2} with {units} units; r² {:.3} at k = 1 and {:.3} at k = {}.",
                    r.mc,
                    r.mc_k.first().copied().unwrap_or(f64::NAN),
                    r.mc_k.last().copied().unwrap_or(f64::NAN),
                    r.mc_k.len()
                ),
                agrees: Some(falls && r.mc <= units as f64 + 1e-9),
            })
        }
        ("ei-balance", DynamicsRun::Sweep(rows, _)) => {
            let (rf, mf) = best(rows, |r| Some(r.mc_fixed))?;
            let adapted = best(rows, |r| r.mc_adapted);
            let mut shows = format!("Fixed weights remember best at ratio {rf:.2} (MC {mf:.2})");
            if let Some((ra, ma)) = adapted {
                shows += &format!("; self-adapted at ratio {ra:.2} (MC {ma:.2})");
            }
            shows += ".";
            let agrees = rf >= 1.0 - 1e-9 && adapted.is_none_or(|(_, ma)| ma >= mf - 1e-9);
            if !agrees {
                shows += " That is not what the paper reports: here ";
                shows += if rf < 1.0 {
                    "excitation-dominated reservoirs (ratio below 1) remember best"
                } else {
                    "self-adaptation does not reach the best fixed reservoir"
                };
                shows += ", with this reservoir size and these targets.";
            }
            Some(Finding {
                claim: "Balanced or slightly inhibition-dominated reservoirs (ratio ≥ 1) remember \
                        best, and self-adaptation toward heterogeneous target rates finds that \
                        regime without tuning (\"Boosting Reservoir Computing\")."
                    .into(),
                shows,
                agrees: Some(agrees),
            })
        }
        ("homogeneous", DynamicsRun::Sweep(rows, heterogeneous)) => {
            let (r_h, m_h) = best(rows, |r| r.mc_adapted)?;
            let other = heterogeneous.and_then(|h| best(h, |r| r.mc_adapted));
            let (shows, agrees) = match other {
                Some((r_x, m_x)) => (
                    format!(
                        "With one shared target the best adapted MC is {m_h:.2} (ratio \
                         {r_h:.2}); with heterogeneous targets (the E/I balance experiment, run \
                         in this page) it was {m_x:.2} (ratio {r_x:.2}).{}",
                        if m_x > m_h {
                            ""
                        } else {
                            " Here the shared target does as well or better: not what the paper reports."
                        }
                    ),
                    Some(m_x > m_h),
                ),
                None => (
                    format!(
                        "With one shared target the best adapted MC is {m_h:.2} (ratio \
                         {r_h:.2}). Run the E/I balance experiment too, and this line compares them."
                    ),
                    None,
                ),
            };
            Some(Finding {
                claim: "Heterogeneous target rates give a larger memory capacity than one shared \
                        target (\"Boosting Reservoir Computing\")."
                    .into(),
                shows,
                agrees,
            })
        }
        ("what-when" | "rls", DynamicsRun::WhatWhen(r, spec)) => what_when(id, r, spec),
        _ => None,
    }
}

/// The ratio and value of the largest `f` over the rows.
fn best(rows: &[EiSweepRow], f: impl Fn(&EiSweepRow) -> Option<f64>) -> Option<(f64, f64)> {
    rows.iter()
        .filter_map(|r| f(r).filter(|v| v.is_finite()).map(|v| (r.inhibition, v)))
        .fold(None, |b: Option<(f64, f64)>, x| match b {
            Some(b) if b.1 >= x.1 => Some(b),
            _ => Some(x),
        })
}

fn spiking(id: &str, r: &SpikingResult) -> Finding {
    let rhythm = strongest_rhythm_hz(&r.pop_exc);
    let claim = if id == "izhikevich" {
        "Izhikevich (2003): the 1000-neuron network fires at about 8 Hz, with alpha- and \
         gamma-like population rhythms."
    } else {
        "With 100 synapses per neuron made stronger in proportion, the 10 000-neuron network keeps \
         the classic network's rates (about 8 Hz)."
    };
    Finding {
        claim: claim.into(),
        shows: format!(
            "Excitatory {:.1} Hz, inhibitory {:.1} Hz{}.",
            r.rate_exc_hz,
            r.rate_inh_hz,
            rhythm
                .map(|f| format!(
                    "; the excitatory population rate's strongest rhythm is at {f:.0} Hz"
                ))
                .unwrap_or_default()
        ),
        agrees: Some((4.0..=15.0).contains(&r.rate_exc_hz)),
    }
}

/// The frequency (2–100 Hz) with the most power in a per-ms spike count, if it has at least a
/// quarter of a second.
pub fn strongest_rhythm_hz(per_ms: &[u32]) -> Option<f64> {
    let n = per_ms.len();
    if n < 250 {
        return None;
    }
    let mean = per_ms.iter().map(|&c| c as f64).sum::<f64>() / n as f64;
    let power = |f: f64| {
        let w = 2.0 * std::f64::consts::PI * f / 1000.0;
        let (mut re, mut im) = (0.0, 0.0);
        for (t, &c) in per_ms.iter().enumerate() {
            let x = c as f64 - mean;
            re += x * (w * t as f64).cos();
            im += x * (w * t as f64).sin();
        }
        re * re + im * im
    };
    (2..=100)
        .map(|f| (f as f64, power(f as f64)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .filter(|(_, p)| *p > 0.0)
        .map(|(f, _)| f)
}

fn what_when(id: &str, r: &WhatWhenResult, spec: &WhatWhenSpec) -> Option<Finding> {
    let first = r.learned.first()?;
    let last = r.learned.last()?;
    let p_first = &spec.phases.first()?.probabilities;
    let p_last = &spec.phases.last()?.probabilities;
    let list = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.2}"))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    // Which stimulus the readout ranks first, in each block, against the probabilities.
    let argmax = |v: &[f64]| {
        v.iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i)
    };
    let follows = argmax(last) == argmax(p_last) && argmax(first) == argmax(p_first);
    let err = |v: &[f64], p: &[f64]| {
        v.iter()
            .zip(p)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f64, f64::max)
    };
    let off = err(first, p_first).max(err(last, p_last));
    let shows = format!(
        "Learned magnitudes {} in the first block (probabilities {}) and {} in the last \
         (probabilities {}); the readout {} the swap, and its magnitudes are within {off:.2} of \
         the probabilities.",
        list(first),
        list(p_first),
        list(last),
        list(p_last),
        if follows {
            "follows"
        } else {
            "does not follow"
        }
    );
    let (claim, agrees) = if id == "what-when" {
        (
            "Readouts trained by the three-factor rule fire at the stimulus time with magnitudes \
             near the stimulus probabilities, and follow a swap of the probabilities without a \
             reset.",
            follows && off <= 0.2,
        )
    } else {
        (
            "An online RLS readout learns the first block quickly, but its gain shrinks as it \
             learns: after the swap it moves slowly unless reset.",
            !follows || err(last, p_last) > err(first, p_first),
        )
    };
    let mut shows = shows;
    if !agrees {
        shows += " That is not what the guide's claim leads one to expect.";
    }
    Some(Finding {
        claim: claim.into(),
        shows,
        agrees: Some(agrees),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly by design
    use super::*;

    #[test]
    fn the_strongest_rhythm_of_a_10_hz_train_is_10_hz() {
        let per_ms: Vec<u32> = (0..1000).map(|t| u32::from(t % 100 < 10) * 5).collect();
        assert_eq!(strongest_rhythm_hz(&per_ms), Some(10.0));
        assert_eq!(strongest_rhythm_hz(&per_ms[..100]), None);
    }

    #[test]
    fn an_excitation_dominated_optimum_is_reported_as_a_disagreement() {
        let row = |inhibition, mc_fixed, mc_adapted| EiSweepRow {
            inhibition,
            mc_fixed,
            mc_adapted: Some(mc_adapted),
        };
        let rows = [
            row(0.25, 10.0, 12.2),
            row(0.5, 11.0, 11.0),
            row(1.0, 9.0, 10.0),
        ];
        let f = dynamics("ei-balance", DynamicsRun::Sweep(&rows, None)).unwrap();
        assert_eq!(f.agrees, Some(false));
        assert!(f.shows.contains("ratio 0.50 (MC 11.00)"), "{}", f.shows);
        assert!(
            f.shows.contains("self-adapted at ratio 0.25 (MC 12.20)"),
            "{}",
            f.shows
        );
        let balanced = [row(0.5, 9.0, 9.5), row(1.0, 11.0, 12.0)];
        let f = dynamics("ei-balance", DynamicsRun::Sweep(&balanced, None)).unwrap();
        assert_eq!(f.agrees, Some(true), "{}", f.shows);
        // The homogeneous sweep compares with the heterogeneous one when the page has it.
        let f = dynamics("homogeneous", DynamicsRun::Sweep(&rows, Some(&balanced))).unwrap();
        assert_eq!(
            f.agrees,
            Some(false),
            "12.20 shared > 12.00 heterogeneous: {}",
            f.shows
        );
        let f = dynamics("homogeneous", DynamicsRun::Sweep(&rows, None)).unwrap();
        assert_eq!(f.agrees, None);
    }
}
