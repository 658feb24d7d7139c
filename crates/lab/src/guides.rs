//! The guided experiments' texts, as data: one Markdown file per lab in `crates/lab/guides/`, a
//! section `## <id>` per experiment, so the prose (and the numbers it quotes from this project's
//! runs) is edited and reviewed apart from the code that sets each experiment up.

use crate::LabKind;

/// The Circuits lab's guides.
pub const CIRCUITS: &str = include_str!("../guides/circuits.md");
/// The Merge lab's guides.
pub const MERGE: &str = include_str!("../guides/merge.md");
/// The Neurofeedback lab's guides.
pub const NEUROFEEDBACK: &str = include_str!("../guides/neurofeedback.md");
/// The Dynamics lab's guides.
pub const DYNAMICS: &str = include_str!("../guides/dynamics.md");

/// A lab's guide file.
pub fn of(lab: LabKind) -> &'static str {
    match lab {
        LabKind::Circuits => CIRCUITS,
        LabKind::Merge => MERGE,
        LabKind::Neurofeedback => NEUROFEEDBACK,
        LabKind::Dynamics => DYNAMICS,
    }
}

/// The ids of a guide file's sections, in order.
pub fn ids(md: &str) -> Vec<&str> {
    md.lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(str::trim)
        .collect()
}

/// The text of section `## {id}` of lab `lab`'s guides: its lines joined with spaces, paragraphs
/// (blank lines) kept apart by a newline. `None` if the file has no such section.
pub fn text(lab: LabKind, id: &str) -> Option<String> {
    let md = of(lab);
    let mut lines = md
        .lines()
        .skip_while(|l| l.strip_prefix("## ").map(str::trim) != Some(id));
    lines.next()?;
    let mut paragraphs: Vec<String> = vec![String::new()];
    for l in lines.take_while(|l| !l.starts_with("## ")) {
        let l = l.trim();
        match paragraphs.last_mut() {
            _ if l.is_empty() => paragraphs.push(String::new()),
            Some(p) if p.is_empty() => p.push_str(l),
            Some(p) => {
                p.push(' ');
                p.push_str(l);
            }
            None => {}
        }
    }
    paragraphs.retain(|p| !p.is_empty());
    Some(paragraphs.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every guided experiment the page offers has its text, and no file has a stray section.
    #[test]
    fn every_guided_experiment_has_its_text() {
        let want: [(LabKind, &[&str]); 4] = [
            (
                LabKind::Circuits,
                &[
                    "ioi-bundled",
                    "induction-bundled",
                    "ioi",
                    "ioi-heads",
                    "attribution",
                    "edges",
                    "clamp",
                    "subspace",
                    "subspace-smollm2",
                    "induction",
                    "lens",
                    "relation-neurons",
                    "circuit-reuse",
                    "recall-reasoning",
                ],
            ),
            (
                LabKind::Merge,
                &[
                    "add",
                    "negate",
                    "ties",
                    "adamerging",
                    "atlas",
                    "disentangle",
                    "linearised",
                ],
            ),
            (LabKind::Neurofeedback, &["icl-word", "icl", "smollm2"]),
            (
                LabKind::Dynamics,
                &[
                    "izhikevich",
                    "sparse-10k",
                    "mackey-glass",
                    "memory",
                    "ei-balance",
                    "homogeneous",
                    "what-when",
                    "rls",
                ],
            ),
        ];
        for (lab, ids_wanted) in want {
            assert_eq!(ids(of(lab)), ids_wanted, "{lab:?}");
            for id in ids_wanted {
                let t = text(lab, id).unwrap_or_default();
                assert!(t.len() > 40 && !t.contains("##"), "{lab:?}/{id}: {t:?}");
            }
        }
        assert_eq!(text(LabKind::Dynamics, "nope"), None);
        let t = text(LabKind::Dynamics, "memory").unwrap_or_default();
        assert!(
            t.starts_with("Drive the reservoir") && t.ends_with("number of units."),
            "{t}"
        );
    }
}
