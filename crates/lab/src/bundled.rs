//! The Circuits lab's small bundled transformers, which load instantly for first contact:
//!
//! - `induction-2l`: a 2-layer attention-only GPT-2 trained on random word sequences with a
//!   repeated stretch, where induction heads must form to predict the repeat;
//! - `ioi-3l`: a 3-layer GPT-2 trained on indirect-object-identification template sentences
//!   (Wang et al. 2022), answering with the name that appears once;
//! - `icl-3l`: the Neurofeedback lab's model, a 3-layer GPT-2 meta-trained on in-context
//!   labelling: sequences of "w w w w -> A" examples whose labels follow a new random linear rule
//!   over the words' hidden attributes in every sequence, so it must infer each rule from the
//!   examples (it did not learn to: its labels stay at chance, kept as the lab's negative control);
//! - `icl-word-3l`: the same architecture meta-trained on one-word examples "w -> A" over 24 words
//!   with 3 hidden attributes, which does learn to label from the examples (the lab's positive case).
//!
//! All use a word-level vocabulary (a Hugging Face `tokenizer.json`, WordLevel model), so
//! students type words. The data generators here are shared by training (feature `train`,
//! native only), the tests and the model cards; the weights are committed under
//! `public/bundled/<id>/` and served by the site.

use interplay_models::TransformerConfig;
use interplay_models::config::Arch;
use serde::{Deserialize, Serialize};

/// The bundled models.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Bundled {
    /// 2-layer attention-only model with induction heads.
    #[serde(rename = "induction-2l")]
    Induction,
    /// 3-layer model solving IOI templates.
    #[serde(rename = "ioi-3l")]
    Ioi,
    /// 3-layer model labelling 4-word sentences in context (Neurofeedback lab).
    #[serde(rename = "icl-3l")]
    Icl,
    /// 3-layer model labelling single words in context (Neurofeedback lab).
    #[serde(rename = "icl-word-3l")]
    IclWord,
}

/// The unknown-word token (id 0 in both vocabularies).
pub const UNK: &str = "<unk>";

/// Words of the induction model (after `<unk>`): short, common, distinct nouns.
pub const INDUCTION_WORDS: [&str; 95] = [
    "apple", "arm", "baby", "bag", "ball", "band", "bank", "bed", "bell", "bird", "boat", "bone",
    "book", "box", "bread", "brick", "cake", "car", "cat", "chair", "clock", "cloud", "coat",
    "corn", "cow", "cup", "desk", "dog", "door", "drum", "duck", "egg", "eye", "farm", "fish",
    "flag", "fork", "frog", "game", "gate", "girl", "goat", "hat", "hill", "horse", "house", "ice",
    "ink", "jam", "key", "kite", "lamp", "leaf", "lion", "map", "milk", "moon", "nest", "net",
    "nose", "owl", "pan", "pen", "pig", "pin", "plant", "rain", "ring", "road", "rock", "rope",
    "rose", "salt", "sea", "seed", "sheep", "ship", "shoe", "snow", "sock", "star", "stone", "sun",
    "table", "tail", "tent", "toy", "train", "tree", "truck", "van", "wall", "whale", "wind",
    "wolf",
];

/// The in-context labelling model's arrow between a sentence and its label.
pub const ICL_ARROW: &str = "->";
/// The in-context labelling model's two labels.
pub const ICL_LABELS: [&str; 2] = ["A", "B"];
/// Words per sentence of the in-context labelling model.
pub const ICL_SENTENCE: usize = 4;
/// How many words the in-context labelling model knows (the first of [`INDUCTION_WORDS`]).
pub const ICL_WORDS: usize = 48;
/// Hidden attributes per word of the in-context labelling task.
pub const ICL_ATTRIBUTES: usize = 4;

/// Each word's hidden attributes (seeded normal), which the training rules combine.
pub fn icl_attributes() -> Vec<[f64; ICL_ATTRIBUTES]> {
    let mut rng = interplay_models::rng::Rng::new(0xA77);
    (0..ICL_WORDS)
        .map(|_| std::array::from_fn(|_| rng.normal()))
        .collect()
}

/// The words of `icl-word-3l`: 12 animals and 12 things. The hidden attributes are drawn per
/// word regardless of what it names, so "animal" is a concept the model was never taught.
pub const ICL_WORD_WORDS: [&str; 24] = [
    "apple", "ball", "bird", "boat", "book", "box", "cake", "car", "cat", "chair", "clock", "cow",
    "cup", "dog", "drum", "duck", "fish", "frog", "goat", "hat", "horse", "lion", "owl", "pig",
];
/// Hidden attributes per word of `icl-word-3l`'s task (3: an ideal reader of the attributes
/// labels an unseen word at ~93 % with 16 examples; 4 lower that ceiling to ~89 %).
pub const ICL_WORD_ATTRIBUTES: usize = 3;

/// `icl-word-3l`'s hidden attributes per word: seeded normal draws, centred over the 24 words
/// (so a rule's labels split the words about evenly).
pub fn icl_word_attributes() -> Vec<[f64; ICL_WORD_ATTRIBUTES]> {
    let mut rng = interplay_models::rng::Rng::new(0xA78);
    let mut a: Vec<[f64; ICL_WORD_ATTRIBUTES]> = (0..ICL_WORD_WORDS.len())
        .map(|_| std::array::from_fn(|_| rng.normal()))
        .collect();
    for k in 0..ICL_WORD_ATTRIBUTES {
        let mean = a.iter().map(|x| x[k]).sum::<f64>() / a.len() as f64;
        a.iter_mut().for_each(|x| x[k] -= mean);
    }
    a
}

/// Names of the IOI model.
pub const IOI_NAMES: [&str; 20] = [
    "Mary", "John", "Alice", "Bob", "Anna", "Tom", "Emma", "Paul", "Kate", "Mark", "Lucy", "Sam",
    "Rose", "Jack", "Sara", "Dan", "Amy", "Ben", "Eva", "Max",
];
/// Places of the IOI model.
pub const IOI_PLACES: [&str; 8] = [
    "store",
    "park",
    "school",
    "office",
    "station",
    "garden",
    "house",
    "restaurant",
];
/// Objects of the IOI model.
pub const IOI_OBJECTS: [&str; 8] = [
    "drink",
    "book",
    "ring",
    "bone",
    "kiss",
    "letter",
    "snack",
    "basketball",
];
/// IOI templates: `A`, `B` are the two names (A first), `S` the repeated subject, `P` a place,
/// `O` an object. The answer is the indirect object: the name that is not `S`.
pub const IOI_TEMPLATES: [&str; 4] = [
    "When A and B went to the P , S gave a O to",
    "Then , A and B had a lot of fun at the P . S gave a O to",
    "After A and B went to the P , S gave a O to",
    "Then , A and B were working at the P . S decided to give a O to",
];

/// Every word of the IOI vocabulary after `<unk>`, in id order.
pub fn ioi_words() -> Vec<&'static str> {
    let mut words: Vec<&'static str> = Vec::new();
    for t in IOI_TEMPLATES {
        for w in t.split(' ') {
            if !matches!(w, "A" | "B" | "S" | "P" | "O") && !words.contains(&w) {
                words.push(w);
            }
        }
    }
    words.extend(IOI_NAMES);
    words.extend(IOI_PLACES);
    words.extend(IOI_OBJECTS);
    words
}

impl Bundled {
    /// Every bundled model.
    pub const ALL: [Bundled; 4] = [
        Bundled::Induction,
        Bundled::Ioi,
        Bundled::Icl,
        Bundled::IclWord,
    ];

    /// The id used in specs and URLs (and the folder under `public/bundled/`).
    pub fn id(self) -> &'static str {
        match self {
            Bundled::Induction => "induction-2l",
            Bundled::Ioi => "ioi-3l",
            Bundled::Icl => "icl-3l",
            Bundled::IclWord => "icl-word-3l",
        }
    }

    /// The model named by `id`, if it is a bundled one.
    pub fn from_id(id: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.id() == id)
    }

    /// Shown name.
    pub fn title(self) -> &'static str {
        match self {
            Bundled::Induction => "Bundled: induction (2-layer attention-only)",
            Bundled::Ioi => "Bundled: IOI (3-layer)",
            Bundled::Icl => "Bundled: in-context labelling (3-layer)",
            Bundled::IclWord => "Bundled: in-context labelling of words (3-layer)",
        }
    }

    /// The vocabulary in id order (`<unk>` first).
    pub fn vocabulary(self) -> Vec<&'static str> {
        let mut v = vec![UNK];
        match self {
            Bundled::Induction => v.extend(INDUCTION_WORDS),
            Bundled::Ioi => v.extend(ioi_words()),
            Bundled::Icl => {
                v.push(ICL_ARROW);
                v.extend(ICL_LABELS);
                v.extend(&INDUCTION_WORDS[..ICL_WORDS]);
            }
            Bundled::IclWord => {
                v.push(ICL_ARROW);
                v.extend(ICL_LABELS);
                v.extend(ICL_WORD_WORDS);
            }
        }
        v
    }

    /// The architecture.
    pub fn config(self) -> TransformerConfig {
        let base = TransformerConfig {
            arch: Arch::Gpt2,
            n_layers: 2,
            d_model: 64,
            n_heads: 4,
            n_kv_heads: 4,
            d_head: 16,
            d_mlp: 4,
            d_vocab: self.vocabulary().len(),
            n_ctx: 64,
            norm_eps: 1e-5,
            rope_theta: 0.0,
            tied_embeddings: true,
        };
        match self {
            // Attention-only: the (tiny) MLP is zero and frozen; see `interplay_models::train`.
            Bundled::Induction => TransformerConfig { n_ctx: 48, ..base },
            Bundled::Ioi => TransformerConfig {
                n_layers: 3,
                d_mlp: 256,
                n_ctx: 32,
                ..base
            },
            // Room for 20 examples of 6 tokens and a query (icl-3l), or 42 of 3 (icl-word-3l).
            Bundled::Icl | Bundled::IclWord => TransformerConfig {
                n_layers: 3,
                d_mlp: 256,
                n_ctx: 128,
                ..base
            },
        }
    }

    /// A Hugging Face `tokenizer.json`: WordLevel over [`Self::vocabulary`], split on
    /// whitespace and punctuation, unknown words to `<unk>`.
    pub fn tokenizer_json(self) -> String {
        let vocab: serde_json::Map<String, serde_json::Value> = self
            .vocabulary()
            .iter()
            .enumerate()
            .map(|(i, w)| (w.to_string(), serde_json::Value::from(i)))
            .collect();
        let json = serde_json::json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": [],
            "normalizer": null,
            "pre_tokenizer": {"type": "Whitespace"},
            "post_processor": null,
            "decoder": null,
            "model": {"type": "WordLevel", "vocab": vocab, "unk_token": UNK},
        });
        serde_json::to_string_pretty(&json).unwrap_or_default()
    }
}

/// One IOI prompt.
#[derive(Clone, Debug, PartialEq)]
pub struct IoiPrompt {
    /// The sentence up to "to" (the answer follows).
    pub text: String,
    /// Its word ids.
    pub ids: Vec<u32>,
    /// The indirect object's id (the right answer).
    pub answer: u32,
    /// The subject's id (the repeated name).
    pub subject: u32,
    /// Which template.
    pub template: usize,
}

/// Whether the name pair `(a, b)` is held out of IOI training (one pair in five).
pub fn ioi_held_out(a: usize, b: usize) -> bool {
    (a * 7 + b * 3).is_multiple_of(5)
}

/// The IOI prompt for template `t`, names `a` (indirect object) and `s` (subject), place `p`,
/// object `o` (indices into the word lists). `abba`: the subject is named second in the
/// opening ("A and S … S gave … to"); otherwise first ("S and A … S gave … to").
pub fn ioi_prompt(t: usize, a: usize, s: usize, p: usize, o: usize, abba: bool) -> IoiPrompt {
    let vocab = Bundled::Ioi.vocabulary();
    let id = |w: &str| vocab.iter().position(|x| *x == w).unwrap_or(0) as u32;
    let (first, second) = if abba {
        (IOI_NAMES[a], IOI_NAMES[s])
    } else {
        (IOI_NAMES[s], IOI_NAMES[a])
    };
    let words: Vec<&str> = IOI_TEMPLATES[t % IOI_TEMPLATES.len()]
        .split(' ')
        .map(|w| match w {
            "A" => first,
            "B" => second,
            "S" => IOI_NAMES[s],
            "P" => IOI_PLACES[p],
            "O" => IOI_OBJECTS[o],
            w => w,
        })
        .collect();
    IoiPrompt {
        text: words.join(" "),
        ids: words.iter().map(|w| id(w)).collect(),
        answer: id(IOI_NAMES[a]),
        subject: id(IOI_NAMES[s]),
        template: t,
    }
}

/// Every held-out IOI prompt: held-out name pairs, every template and both orders, with the
/// place and object chosen by the pair (so the set is fixed).
pub fn ioi_test_prompts() -> Vec<IoiPrompt> {
    let mut out = Vec::new();
    for a in 0..IOI_NAMES.len() {
        for s in 0..IOI_NAMES.len() {
            if a == s || !ioi_held_out(a, s) {
                continue;
            }
            for t in 0..IOI_TEMPLATES.len() {
                for abba in [true, false] {
                    let (p, o) = (
                        (a + 3 * s) % IOI_PLACES.len(),
                        (5 * a + s) % IOI_OBJECTS.len(),
                    );
                    out.push(ioi_prompt(t, a, s, p, o, abba));
                }
            }
        }
    }
    out
}

#[cfg(feature = "train")]
pub use training::*;

#[cfg(feature = "train")]
mod training;
