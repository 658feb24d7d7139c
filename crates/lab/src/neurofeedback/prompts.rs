//! The reporting and control prompts, as token ids, for the chat and plain formats.

use super::*;

/// Token pieces of the prompts.
pub(crate) struct Prompts<'a> {
    pub(crate) tk: &'a TextTokenizer,
    pub(crate) format: PromptFormat,
    pub(crate) label_ids: [u32; 2],
    pub(crate) labels: [String; 2],
}

/// The control tasks' instruction.
pub const CONTROL_INSTRUCTION: &str = "Each sentence has a hidden label, A or B, that depends on the sentence. When I ask for a label, write one new sentence with that label.";

/// The chat format's instruction.
pub const INSTRUCTION: &str = "Each sentence I send has a hidden label, A or B, that depends on the sentence. Reply with the label only.";

impl<'a> Prompts<'a> {
    pub(crate) fn new(tk: &'a TextTokenizer, spec: &NeurofeedbackSpec) -> Result<Self, LabError> {
        let mut ids = [0u32; 2];
        for (i, l) in spec.labels.iter().enumerate() {
            // A label follows "->" after a space (plain) or the assistant header (chat).
            let text = match spec.format {
                PromptFormat::Plain => format!(" {}", l.trim()),
                PromptFormat::Chat => l.trim().to_string(),
            };
            ids[i] = tk.single_token(&text).map_err(|e| {
                LabError::Spec(format!("the label {l:?}: {e}; choose one-token labels"))
            })?;
        }
        if spec.format == PromptFormat::Chat && tk.token_to_id("<|im_start|>").is_none() {
            return Err(LabError::Spec(
                "this tokenizer has no chat template tokens (<|im_start|>): use the plain format"
                    .into(),
            ));
        }
        Ok(Self {
            tk,
            format: spec.format,
            label_ids: ids,
            labels: spec.labels.clone(),
        })
    }

    pub(crate) fn instruction(&self) -> String {
        INSTRUCTION.replace(
            "A or B",
            &format!("{} or {}", self.labels[0], self.labels[1]),
        )
    }

    /// The prompt's start: the instruction (chat) and the examples `(sentence, label index)`.
    pub(crate) fn prefix(&self, examples: &[(&str, usize)]) -> Result<Vec<u32>, LabError> {
        let mut ids = Vec::new();
        match self.format {
            PromptFormat::Chat => {
                ids.extend(self.tk.encode(&format!(
                    "<|im_start|>system\n{}<|im_end|>\n",
                    self.instruction()
                ))?);
                for (s, l) in examples {
                    ids.extend(self.query(s)?);
                    ids.push(self.label_ids[*l]);
                    ids.extend(self.tk.encode("<|im_end|>\n")?);
                }
            }
            PromptFormat::Plain => {
                for (s, l) in examples {
                    ids.extend(self.query(s)?);
                    ids.push(self.label_ids[*l]);
                    ids.extend(self.tk.encode("\n")?);
                }
            }
        }
        Ok(ids)
    }

    /// A query: the sentence, ready for the label.
    pub(crate) fn query(&self, s: &str) -> Result<Vec<u32>, LabError> {
        Ok(match self.format {
            PromptFormat::Chat => self.tk.encode(&format!(
                "<|im_start|>user\n{s}<|im_end|>\n<|im_start|>assistant\n"
            ))?,
            PromptFormat::Plain => self.tk.encode(&format!("{s} {ICL_ARROW}"))?,
        })
    }

    /// The tokens that end the model's turn.
    pub(crate) fn stop_ids(&self) -> Vec<u32> {
        self.tk.end_of_text_ids()
    }

    /// The control tasks' prompt start: the control instruction and the examples the other way
    /// round — a request for each example's label, answered by its sentence — so the model has
    /// seen what a sentence of each label looks like (and that it is asked for a sentence, not a
    /// label).
    pub(crate) fn control_prefix(&self, examples: &[(&str, usize)]) -> Result<Vec<u32>, LabError> {
        let mut ids = self.tk.encode(&format!(
            "<|im_start|>system\n{}<|im_end|>\n",
            CONTROL_INSTRUCTION.replace(
                "A or B",
                &format!("{} or {}", self.labels[0], self.labels[1]),
            )
        ))?;
        for (s, l) in examples {
            ids.extend(self.request(*l)?);
            ids.extend(self.tk.encode(&format!("{s}<|im_end|>\n"))?);
        }
        Ok(ids)
    }

    /// The control task's request for a sentence of label `l`, after which the sentence is read
    /// (implicit) or written (explicit).
    pub(crate) fn request(&self, l: usize) -> Result<Vec<u32>, LabError> {
        Ok(self.tk.encode(&format!(
            "<|im_start|>user\nWrite a sentence whose label is {}.<|im_end|>\n<|im_start|>assistant\n",
            self.labels[l]
        ))?)
    }
}
