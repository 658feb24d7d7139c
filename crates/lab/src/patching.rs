//! The activation-patching experiment (Circuits lab): a clean and a corrupted prompt, the answer
//! and the wrong token, and which activation to sweep. See `interplay_models::patching` for the
//! method and the clean/corrupted convention.

use interplay_models::load::LoadedModel;
use interplay_models::patching::{PatchGrid, PatchTarget, Progress, check_pair, patch_sweep};
use interplay_models::tokenizer::TextTokenizer;
use serde::{Deserialize, Serialize};

use crate::LabError;

/// A prompt: text (tokenized without BOS) or token ids.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Prompt {
    /// Token ids as given.
    Ids(Vec<u32>),
    /// Text, tokenized by the model's tokenizer.
    Text(String),
}

/// A single token: its text (must be exactly one token, e.g. `" Mary"`) or its id.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum TokenRef {
    /// An id.
    Id(u32),
    /// Text that must be one token.
    Text(String),
}

// Written out rather than `#[serde(untagged)]`, whose error ("data did not match any variant of
// untagged enum Prompt") means nothing to the student who pasted a link.
impl<'de> Deserialize<'de> for Prompt {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Prompt;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("the prompt as text, or a list of token ids such as [15496, 995]")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Prompt, E> {
                Ok(Prompt::Text(s.to_owned()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Prompt, A::Error> {
                let mut ids = Vec::with_capacity(a.size_hint().unwrap_or(0));
                while let Some(id) = a.next_element::<u32>()? {
                    ids.push(id);
                }
                Ok(Prompt::Ids(ids))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for TokenRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = TokenRef;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("one token, as its text (such as \" Mary\") or its id (such as 5335)")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<TokenRef, E> {
                Ok(TokenRef::Text(s.to_owned()))
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<TokenRef, E> {
                u32::try_from(n)
                    .map(TokenRef::Id)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(n), &self))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<TokenRef, E> {
                u64::try_from(n)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(n), &self))
                    .and_then(|n| self.visit_u64(n))
            }
        }
        d.deserialize_any(V)
    }
}

/// One activation-patching sweep.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PatchingSpec {
    /// Which model: `"smollm2"` (bundled) or a name the user gave a file they loaded.
    pub model: String,
    /// The prompt whose behaviour we explain.
    pub clean: Prompt,
    /// The same prompt with the information removed (names swapped, ...).
    pub corrupt: Prompt,
    /// The correct next token on the clean prompt.
    pub answer: TokenRef,
    /// The token the corrupted prompt favours.
    pub wrong: TokenRef,
    /// Which activation to patch.
    pub target: PatchTarget,
}

/// A spec resolved against a model's tokenizer.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedPatching {
    /// Clean ids.
    pub clean: Vec<u32>,
    /// Corrupted ids.
    pub corrupt: Vec<u32>,
    /// Answer id.
    pub answer: u32,
    /// Wrong id.
    pub wrong: u32,
}

impl PatchingSpec {
    /// IOI on the bundled `ioi-3l` model, with a name pair held out of its training.
    pub fn ioi_bundled() -> Self {
        Self {
            model: "ioi-3l".into(),
            clean: Prompt::Text("When Mary and Tom went to the store, Tom gave a drink to".into()),
            corrupt: Prompt::Text(
                "When Mary and Tom went to the store, Mary gave a drink to".into(),
            ),
            answer: TokenRef::Text("Mary".into()),
            wrong: TokenRef::Text("Tom".into()),
            target: PatchTarget::ResidPre,
        }
    }

    /// Induction on the bundled `induction-2l` model: a word sequence repeated; the corruption
    /// changes the word that followed "bell" the first time, so induction predicts it instead.
    pub fn induction_bundled() -> Self {
        Self {
            model: "induction-2l".into(),
            clean: Prompt::Text(
                "cat moon ship rain fork owl bell tree cat moon ship rain fork owl bell".into(),
            ),
            corrupt: Prompt::Text(
                "cat moon ship rain fork owl bell van cat moon ship rain fork owl bell".into(),
            ),
            answer: TokenRef::Text("tree".into()),
            wrong: TokenRef::Text("van".into()),
            target: PatchTarget::ResidPre,
        }
    }

    /// IOI on SmolLM2-135M-Instruct: which layers and positions carry the indirect object's name
    /// (Wang et al. 2022). The corruption swaps which name repeats, so the answer flips.
    pub fn ioi_smollm2() -> Self {
        Self {
            model: "smollm2".into(),
            clean: Prompt::Text(
                "When Mary and John went to the store, John gave a drink to".into(),
            ),
            corrupt: Prompt::Text(
                "When Mary and John went to the store, Mary gave a drink to".into(),
            ),
            answer: TokenRef::Text(" Mary".into()),
            wrong: TokenRef::Text(" John".into()),
            target: PatchTarget::ResidPre,
        }
    }

    /// Token ids for everything, checking the pair and the single-token answers.
    pub fn resolve(&self, tk: Option<&TextTokenizer>) -> Result<ResolvedPatching, LabError> {
        let need_tk = || {
            tk.ok_or_else(|| {
                LabError::Spec("this model has no tokenizer: give token ids instead of text".into())
            })
        };
        let prompt = |p: &Prompt, which: &str| -> Result<Vec<u32>, LabError> {
            match p {
                Prompt::Ids(ids) => Ok(ids.clone()),
                Prompt::Text(t) if t.is_empty() => {
                    Err(LabError::Spec(format!("the {which} prompt is empty")))
                }
                Prompt::Text(t) => Ok(need_tk()?.encode(t)?),
            }
        };
        let token = |t: &TokenRef, which: &str| -> Result<u32, LabError> {
            match t {
                TokenRef::Id(i) => Ok(*i),
                TokenRef::Text(s) => need_tk()?
                    .single_token(s)
                    .map_err(|e| LabError::Spec(format!("the {which}: {e}"))),
            }
        };
        let clean = prompt(&self.clean, "clean")?;
        let corrupt = prompt(&self.corrupt, "corrupted")?;
        check_pair(&clean, &corrupt)?;
        Ok(ResolvedPatching {
            clean,
            corrupt,
            answer: token(&self.answer, "answer")?,
            wrong: token(&self.wrong, "wrong token")?,
        })
    }

    /// Run the sweep. `progress(done, total)` resolving to `false` cancels.
    pub async fn run(
        &self,
        m: &LoadedModel,
        progress: &mut dyn FnMut(usize, usize) -> Progress,
    ) -> Result<PatchGrid, LabError> {
        let r = self.resolve(m.tokenizer.as_ref())?;
        Ok(patch_sweep(
            &m.model,
            &r.clean,
            &r.corrupt,
            self.target,
            r.answer,
            r.wrong,
            progress,
        )
        .await?)
    }
}
