//! Tokenizers: GPT-2's byte-level BPE (bundled as `encoder.json` + `vocab.bpe`), any Hugging Face
//! `tokenizer.json`, and (see [`crate::gguf`]) the one stored in a GGUF file.

use std::collections::HashMap;

use tokenizers::Tokenizer;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;

use crate::error::{ModelError, Result};

/// A tokenizer plus what the views need from it.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TextTokenizer(vocab={})", self.vocab_size())
    }
}

fn tok_err(e: impl std::fmt::Display) -> ModelError {
    ModelError::Tokenizer(e.to_string())
}

impl TextTokenizer {
    /// GPT-2's tokenizer from OpenAI's `encoder.json` (token → id) and `vocab.bpe` (merges).
    pub fn gpt2_from_bpe(encoder_json: &[u8], vocab_bpe: &str) -> Result<Self> {
        let vocab: HashMap<String, u32> = serde_json::from_slice(encoder_json)
            .map_err(|e| tok_err(format!("encoder.json: {e}")))?;
        let merges = parse_merges(vocab_bpe)?;
        Self::byte_level_bpe(vocab, merges, None)
    }

    /// A byte-level BPE tokenizer (GPT-2 style) from vocab and merges.
    pub fn byte_level_bpe(
        vocab: HashMap<String, u32>,
        merges: Vec<(String, String)>,
        special: Option<Vec<String>>,
    ) -> Result<Self> {
        Self::byte_level_bpe_with(vocab, merges, special, false)
    }

    /// Byte-level BPE; `split_digits` splits numbers into single digits first (SmolLM2,
    /// StarCoder).
    pub fn byte_level_bpe_with(
        vocab: HashMap<String, u32>,
        merges: Vec<(String, String)>,
        special: Option<Vec<String>>,
        split_digits: bool,
    ) -> Result<Self> {
        let bpe = BPE::builder()
            .vocab_and_merges(
                vocab
                    .into_iter()
                    .collect::<tokenizers::models::bpe::Vocab>(),
                merges,
            )
            .build()
            .map_err(tok_err)?;
        let mut tk = Tokenizer::new(bpe);
        if split_digits {
            tk.with_pre_tokenizer(Some(Sequence::new(vec![
                PreTokenizerWrapper::Digits(Digits::new(true)),
                PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, true)),
            ])));
        } else {
            tk.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
        }
        tk.with_decoder(Some(ByteLevelDecoder::default()));
        if let Some(special) = special {
            let added: Vec<tokenizers::AddedToken> = special
                .into_iter()
                .map(|s| tokenizers::AddedToken::from(s, true))
                .collect();
            tk.add_special_tokens(added).map_err(tok_err)?;
        }
        Ok(Self { inner: tk })
    }

    /// A Hugging Face `tokenizer.json`.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        Ok(Self {
            inner: Tokenizer::from_bytes(bytes).map_err(tok_err)?,
        })
    }

    /// Token ids of `text`, with no BOS token added (the convention of our experiments).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, false).map_err(tok_err)?;
        Ok(enc.get_ids().to_vec())
    }

    /// The text of `ids`.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, false).map_err(tok_err)
    }

    /// The id of a token string such as `"Ġworld"`.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The one token `text` is (an answer or a wrong token): an error when it is several tokens,
    /// or a word this vocabulary does not have, which a word-level vocabulary would otherwise
    /// read silently as its unknown token.
    pub fn single_token(&self, text: &str) -> Result<u32> {
        match self.encode(text)?[..] {
            [one] if self.unknown_ids().contains(&one) => Err(ModelError::Input(format!(
                "{text:?} is not in this model's vocabulary (it would be read as the unknown token \
                 {}): choose a word the model knows",
                self.inner.id_to_token(one).unwrap_or_default()
            ))),
            [one] => Ok(one),
            ref many => Err(ModelError::Input(format!(
                "{text:?} is {} tokens; it must be exactly one (try a leading space)",
                many.len()
            ))),
        }
    }

    /// The ids of the unknown-word token (`<unk>`, `[UNK]`) if this vocabulary has one.
    fn unknown_ids(&self) -> Vec<u32> {
        ["<unk>", "[UNK]"]
            .iter()
            .filter_map(|t| self.token_to_id(t))
            .collect()
    }

    /// The ids of the tokens that end a text or a chat turn (`<|im_end|>` for SmolLM2's chat
    /// turns, `<|endoftext|>` for GPT-2's documents) that this vocabulary has: where generation
    /// stops.
    pub fn end_of_text_ids(&self) -> Vec<u32> {
        ["<|im_end|>", "<|endoftext|>"]
            .iter()
            .filter_map(|t| self.token_to_id(t))
            .collect()
    }

    /// Each token as a readable string, with a leading space shown as `␣` and a newline as `⏎`.
    pub fn display_tokens(&self, ids: &[u32]) -> Vec<String> {
        ids.iter()
            .map(|&id| {
                let s = self.inner.decode(&[id], false).unwrap_or_default();
                if s.is_empty() {
                    self.inner
                        .id_to_token(id)
                        .unwrap_or_else(|| format!("<{id}>"))
                } else {
                    visible(&s)
                }
            })
            .collect()
    }

    /// Number of ids, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}

/// SmolLM2-Instruct's default system prompt (its chat template adds it when none is given).
pub const SMOLLM2_SYSTEM: &str =
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

/// SmolLM2's chat template for one user turn, ready for the assistant's answer; `system`
/// defaults to [`SMOLLM2_SYSTEM`], as the model's own template does.
pub fn smollm2_chat(system: Option<&str>, user: &str) -> String {
    let system = system.unwrap_or(SMOLLM2_SYSTEM);
    format!(
        "<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
    )
}

/// Make whitespace visible in a token string.
pub fn visible(s: &str) -> String {
    s.replace(' ', "␣").replace('\n', "⏎").replace('\t', "⇥")
}

fn parse_merges(vocab_bpe: &str) -> Result<Vec<(String, String)>> {
    vocab_bpe
        .lines()
        .filter(|l| !l.starts_with("#version") && !l.trim().is_empty())
        .map(|l| {
            let mut parts = l.split(' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(a), Some(b), None) => Ok((a.to_string(), b.to_string())),
                _ => Err(tok_err(format!("vocab.bpe: bad merge line {l:?}"))),
            }
        })
        .collect()
}
