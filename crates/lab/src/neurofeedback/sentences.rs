//! Sentence sets: the bundled ones (`sentiment`, `icl-words`) and pasted text, with optional
//! concept labels for the probe direction.

use super::*;

/// The bundled English sentence set: 150 positive and 150 negative everyday sentences written for
/// the project, in twin pairs that differ mostly in their sentiment (concept: sentiment,
/// 1 = positive); a few hundred, as the paradigm asks, so accuracies rest on enough queries.
pub const SENTIMENT: &str = include_str!("../../data/sentiment.txt");

/// Where the sentences come from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sentences {
    /// A bundled set: `"sentiment"` (English, for real models), `"icl-words"` (4-word
    /// sentences in `icl-3l`'s vocabulary) or `"icl-word"` (`icl-word-3l`'s 24 words, one each).
    Bundled(String),
    /// Pasted text: one sentence per line, optionally ending in `| 1` or `| 0` (its concept,
    /// needed for the probe).
    Pasted(String),
}

/// One sentence and its concept label, when known.
#[derive(Clone, Debug, PartialEq)]
pub struct Sentence {
    /// The text.
    pub text: String,
    /// The concept (for the probe).
    pub concept: Option<bool>,
}

/// The bundled sentence sets' names.
pub const BUNDLED_SETS: [&str; 3] = ["sentiment", "icl-words", "icl-word"];

impl Sentences {
    /// The sentences, checked.
    pub fn load(&self) -> Result<Vec<Sentence>, LabError> {
        let list = match self {
            Sentences::Bundled(name) => match name.as_str() {
                "sentiment" => parse_sentences(SENTIMENT)?,
                "icl-words" => icl_words_set(),
                "icl-word" => icl_word_set(),
                other => {
                    return Err(LabError::Spec(format!(
                        "unknown bundled sentence set {other:?} (use {BUNDLED_SETS:?})"
                    )));
                }
            },
            Sentences::Pasted(text) => parse_sentences(text)?,
        };
        if list.len() < 8 {
            return Err(LabError::Spec(format!(
                "the experiment needs at least 8 sentences (one per line); it has {}",
                list.len()
            )));
        }
        Ok(list)
    }
}

/// Parse one sentence per line with an optional `| 0` / `| 1` concept; blank lines are skipped.
pub fn parse_sentences(text: &str) -> Result<Vec<Sentence>, LabError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (text, concept) = match line.rsplit_once('|') {
            Some((t, c)) => match c.trim() {
                "1" => (t.trim(), Some(true)),
                "0" => (t.trim(), Some(false)),
                other => {
                    return Err(LabError::Spec(format!(
                        "line {}: after `|` put the concept, 0 or 1 (found {other:?})",
                        i + 1
                    )));
                }
            },
            None => (line, None),
        };
        if text.is_empty() {
            return Err(LabError::Spec(format!(
                "line {}: the sentence is empty",
                i + 1
            )));
        }
        if text.chars().count() > 400 {
            return Err(LabError::Spec(format!(
                "line {}: a sentence may have at most 400 characters",
                i + 1
            )));
        }
        out.push(Sentence {
            text: text.to_string(),
            concept,
        });
    }
    Ok(out)
}

/// The animals among `icl-3l`'s words: the concept of the `icl-words` set.
pub(crate) const ICL_ANIMALS: [&str; 9] = [
    "bird", "cat", "cow", "dog", "duck", "fish", "frog", "goat", "horse",
];

/// `icl-word-3l`'s 24 words, one per item, concept: an animal (12 of them).
pub fn icl_word_set() -> Vec<Sentence> {
    ICL_WORD_WORDS
        .iter()
        .map(|w| Sentence {
            text: (*w).to_string(),
            concept: Some(ICL_WORD_ANIMALS.contains(w)),
        })
        .collect()
}

/// The animals among `icl-word-3l`'s words.
pub(crate) const ICL_WORD_ANIMALS: [&str; 12] = [
    "bird", "cat", "cow", "dog", "duck", "fish", "frog", "goat", "horse", "lion", "owl", "pig",
];

/// 160 four-word sentences of distinct words in `icl-3l`'s vocabulary (seeded), concept: the
/// sentence names an animal.
pub fn icl_words_set() -> Vec<Sentence> {
    let words = &INDUCTION_WORDS[..ICL_WORDS];
    let mut rng = Rng::new(0x5E7);
    (0..160)
        .map(|_| {
            let mut pick: Vec<usize> = Vec::with_capacity(ICL_SENTENCE);
            while pick.len() < ICL_SENTENCE {
                let w = rng.below(ICL_WORDS);
                if !pick.contains(&w) {
                    pick.push(w);
                }
            }
            let text: Vec<&str> = pick.iter().map(|&w| words[w]).collect();
            Sentence {
                concept: Some(text.iter().any(|w| ICL_ANIMALS.contains(w))),
                text: text.join(" "),
            }
        })
        .collect()
}
