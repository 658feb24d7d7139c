//! Training the bundled models (feature `train`): each task's data generator and the trainer
//! that writes `public/bundled/<id>/`.

use super::*;
use interplay_models::ModelError;
use interplay_models::safetensors::write_safetensors;
use interplay_models::train::{
    AdamW, Batch, Rng, Trainer, evaluate, export_gpt2, gpt2_config_json, init_gpt2,
};

use crate::LabError;

/// A batch of the induction task: `rows` sequences of `n_ctx + 1` random words in which a
/// stretch of 4..=20 words appears twice, the first copy anywhere and the second after a
/// random gap (so induction must work at every position, not only where training put it).
/// Inputs are the first `n_ctx` words, targets the next word, weighted on the second copy
/// after its first word: the only predictable words, where induction is the only way to be
/// right (training on the random words too only dilutes the signal and delays the phase
/// change).
pub fn induction_batch(rng: &mut Rng, rows: usize) -> Batch {
    induction_batch_of(rng, rows, Bundled::Induction.config().n_ctx)
}

/// [`induction_batch`] with sequences of `context` inputs (8..=48): the repeated stretch is
/// 4..=min(20, (context + 1) / 2) words.
pub fn induction_batch_of(rng: &mut Rng, rows: usize, context: usize) -> Batch {
    let v = Bundled::Induction.config().d_vocab;
    let len = context + 1;
    let max_n = (len / 2).min(20);
    let mut batch = Batch {
        inputs: Vec::new(),
        targets: Vec::new(),
        weights: Vec::new(),
    };
    for _ in 0..rows {
        let n = 4 + rng.below(max_n - 3);
        let free = len - 2 * n;
        let start = rng.below(free + 1);
        let gap = rng.below(free - start + 1);
        let second = start + n + gap;
        let mut seq: Vec<u32> = (0..len).map(|_| 1 + rng.below(v - 1) as u32).collect();
        for i in 0..n {
            seq[second + i] = seq[start + i];
        }
        batch.inputs.push(seq[..len - 1].to_vec());
        batch.targets.push(seq[1..].to_vec());
        // Target j predicts seq[j + 1]; the second copy's later words are seq[second+1..second+n].
        batch.weights.push(
            (0..len - 1)
                .map(|j| (j + 1 > second && j + 1 < second + n) as u8 as f32)
                .collect(),
        );
    }
    batch
}

/// A batch of training IOI prompts of one template (rows must have equal length), loss on
/// the answer only.
pub fn ioi_batch(rng: &mut Rng, rows: usize) -> Batch {
    let t = rng.below(IOI_TEMPLATES.len());
    let mut batch = Batch {
        inputs: Vec::new(),
        targets: Vec::new(),
        weights: Vec::new(),
    };
    while batch.inputs.len() < rows {
        let (a, s) = (rng.below(IOI_NAMES.len()), rng.below(IOI_NAMES.len()));
        if a == s || ioi_held_out(a, s) {
            continue;
        }
        let p = ioi_prompt(
            t,
            a,
            s,
            rng.below(IOI_PLACES.len()),
            rng.below(IOI_OBJECTS.len()),
            rng.below(2) == 0,
        );
        let n = p.ids.len();
        let mut targets = p.ids[1..].to_vec();
        targets.push(p.answer);
        let mut weights = vec![0.0; n];
        weights[n - 1] = 1.0;
        batch.inputs.push(p.ids);
        batch.targets.push(targets);
        batch.weights.push(weights);
    }
    batch
}

/// A batch of in-context labelling episodes: each row is a fresh rule and as many
/// "w w w w -> L" examples as fit in the context, each of 4 distinct random words. Every word
/// has fixed hidden attributes ([`icl_attributes`]); a rule is a direction `r` in attribute
/// space (half the time one attribute, else a random mix with random signs), and a sentence
/// is `A` when its words' attributes · `r` sum above zero, else `B`. The model can learn the attributes into its embeddings but must infer `r` from
/// the examples. The loss is on every label, so it learns to label from 0, 1, 2, .. earlier
/// examples at once.
pub fn icl_batch(rng: &mut Rng, rows: usize) -> Batch {
    let c = Bundled::Icl.config();
    let len = c.n_ctx + 1;
    let (arrow, first_label, first_word) = (1u32, 2u32, 4u32);
    let attrs = icl_attributes();
    let mut batch = Batch {
        inputs: Vec::new(),
        targets: Vec::new(),
        weights: Vec::new(),
    };
    for _ in 0..rows {
        // Half the rules are "high on one attribute": on average over them a label says
        // something about the words by themselves, which gives the embeddings a signal to
        // learn the attributes from (a symmetric rule family gives none, and training sat at
        // chance for 1000+ steps). The other half mix the attributes with random signs, so
        // reading a rule from the examples is the general skill.
        let r: Vec<f64> = if rng.below(2) == 0 {
            let k = rng.below(ICL_ATTRIBUTES);
            (0..ICL_ATTRIBUTES)
                .map(|j| f64::from(u8::from(j == k)))
                .collect()
        } else {
            (0..ICL_ATTRIBUTES).map(|_| rng.normal()).collect()
        };
        let scores: Vec<f64> = attrs
            .iter()
            .map(|a| a.iter().zip(&r).map(|(x, y)| x * y).sum())
            .collect();
        let mut seq = Vec::with_capacity(len + ICL_SENTENCE + 2);
        while seq.len() < len {
            let words = icl_sentence(rng);
            let sum: f64 = words.iter().map(|&w| scores[w]).sum();
            seq.extend(words.iter().map(|&w| first_word + w as u32));
            seq.push(arrow);
            seq.push(first_label + u32::from(sum <= 0.0));
        }
        seq.truncate(len);
        batch.weights.push(
            (0..len - 1)
                .map(|j| (seq[j] == arrow) as u8 as f32)
                .collect(),
        );
        batch.inputs.push(seq[..len - 1].to_vec());
        batch.targets.push(seq[1..].to_vec());
    }
    batch
}

/// A batch of one-word in-context labelling episodes (`icl-word-3l`): each row is a fresh
/// rule and 43 "w -> L" examples (129 tokens: the context's 128 and the last target), words drawn independently from
/// [`ICL_WORD_WORDS`] (so a word may come back, as in Chan et al.'s bursty sequences). A
/// rule is a direction `r` in attribute space; a word is `A` when its attributes · `r` > 0.
/// With `axis_rules`, half the rules are one attribute (`r = e_k`): on average over them a
/// label says something about the word by itself, the signal from which the embeddings learn
/// the attributes (with Gaussian rules alone training sits at chance); the rest are Gaussian
/// mixes. Held-out rows use Gaussian rules only. Loss on every label.
pub fn icl_word_batch(rng: &mut Rng, rows: usize, axis_rules: bool) -> Batch {
    let len = Bundled::IclWord.config().n_ctx + 1;
    let (arrow, first_label, first_word) = (1u32, 2u32, 4u32);
    let attrs = icl_word_attributes();
    let mut batch = Batch {
        inputs: Vec::new(),
        targets: Vec::new(),
        weights: Vec::new(),
    };
    for _ in 0..rows {
        let r: Vec<f64> = if axis_rules && rng.below(2) == 0 {
            let k = rng.below(ICL_WORD_ATTRIBUTES);
            (0..ICL_WORD_ATTRIBUTES)
                .map(|j| f64::from(u8::from(j == k)))
                .collect()
        } else {
            (0..ICL_WORD_ATTRIBUTES).map(|_| rng.normal()).collect()
        };
        let mut seq = Vec::with_capacity(len + 3);
        while seq.len() < len {
            let w = rng.below(ICL_WORD_WORDS.len());
            let score: f64 = attrs[w].iter().zip(&r).map(|(x, y)| x * y).sum();
            seq.extend([first_word + w as u32, arrow]);
            seq.push(first_label + u32::from(score <= 0.0));
        }
        seq.truncate(len);
        batch.weights.push(
            (0..len - 1)
                .map(|j| (seq[j] == arrow) as u8 as f32)
                .collect(),
        );
        batch.inputs.push(seq[..len - 1].to_vec());
        batch.targets.push(seq[1..].to_vec());
    }
    batch
}

/// `batch` weighted only on the label of example `n` (the one after `n` labelled
/// examples) of one-word rows: the in-context accuracy at N = `n`.
fn label_after(batch: &Batch, n: usize) -> Batch {
    Batch {
        inputs: batch.inputs.clone(),
        targets: batch.targets.clone(),
        weights: batch
            .weights
            .iter()
            .map(|w| {
                (0..w.len())
                    .map(|j| f32::from(u8::from(j == 3 * n + 1)))
                    .collect()
            })
            .collect(),
    }
}

/// `icl-word-3l`'s held-out evaluation: 512 rows of fresh Gaussian rules (seeded), in
/// chunks of 32. Returns the loss and accuracy over every label, and the accuracy after N
/// examples for N = 0, 1, 2, 4, 8, 12, 16, 20, 32.
pub async fn icl_word_held_out(
    model: &interplay_models::Transformer,
) -> Result<(f32, f32, Vec<(usize, f32)>), LabError> {
    let mut rng = Rng::new(0x7E57);
    let ns = [0, 1, 2, 4, 8, 12, 16, 20, 32];
    let (mut loss, mut acc, mut by_n) = (0.0, 0.0, vec![0.0; ns.len()]);
    let chunks = 16;
    for _ in 0..chunks {
        let b = icl_word_batch(&mut rng, 32, false);
        let (l, a) = evaluate(model, &b).await?;
        (loss, acc) = (loss + l / chunks as f32, acc + a / chunks as f32);
        for (i, &n) in ns.iter().enumerate() {
            by_n[i] += evaluate(model, &label_after(&b, n)).await?.1 / chunks as f32;
        }
    }
    Ok((loss, acc, ns.into_iter().zip(by_n).collect()))
}

/// Four distinct word indices (into the first [`ICL_WORDS`] words).
fn icl_sentence(rng: &mut Rng) -> [usize; ICL_SENTENCE] {
    let mut w = [0; ICL_SENTENCE];
    let mut i = 0;
    while i < ICL_SENTENCE {
        let x = rng.below(ICL_WORDS);
        if !w[..i].contains(&x) {
            w[i] = x;
            i += 1;
        }
    }
    w
}

/// How a bundled model was trained.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    /// Model id.
    pub model: String,
    /// Steps, batch size, peak learning rate, seed.
    pub steps: usize,
    /// Rows per batch.
    pub batch: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Seed.
    pub seed: u64,
    /// Training loss every 100 steps.
    pub loss_curve: Vec<f32>,
    /// Held-out loss (induction: on the repeated copy; IOI: on the answer).
    pub test_loss: f32,
    /// Held-out accuracy of the top prediction.
    pub test_accuracy: f32,
    /// Parameters.
    pub parameters: usize,
    /// In-context models: held-out label accuracy after N examples, `(N, accuracy)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accuracy_by_examples: Vec<(usize, f32)>,
}

/// The files of a trained bundled model.
pub struct Trained {
    /// `model.safetensors` (F32, Hugging Face GPT-2 names).
    pub safetensors: Vec<u8>,
    /// `config.json`.
    pub config_json: String,
    /// `tokenizer.json`.
    pub tokenizer_json: String,
    /// Training summary.
    pub report: TrainReport,
}

/// Train a bundled model from its seeded initialisation on `device` (with autodiff added).
/// `on_step(step, loss)` is called after every step.
pub async fn train_bundled(
    which: Bundled,
    steps: usize,
    seed: u64,
    device: &burn::tensor::Device,
    on_step: &mut dyn FnMut(usize, f32),
) -> Result<Trained, LabError> {
    let config = which.config();
    let attn_only = which == Bundled::Induction;
    let weights = init_gpt2(&config, attn_only, seed)?;
    let parameters: usize = weights
        .values()
        .map(|t| t.data.len())
        .sum::<usize>()
        .saturating_sub(if attn_only {
            config.n_layers * (2 * config.d_model * config.d_mlp + config.d_mlp + config.d_model)
        } else {
            0
        });
    let (batch, lr, weight_decay) = match which {
        Bundled::Induction => (64, 1e-3, 0.01),
        Bundled::Ioi => (64, 1e-3, 0.01),
        Bundled::Icl => (32, 1e-3, 0.01),
        // The recipe found in PyTorch (see the model card): no decay, a higher peak.
        Bundled::IclWord => (32, 2e-3, 0.0),
    };
    let opt = AdamW {
        lr,
        weight_decay,
        warmup: 100,
        steps,
    };
    // Attention-only: the MLP (and the norm that feeds only it) stays as initialised.
    let frozen: fn(&str) -> bool = if attn_only {
        |p| p.contains(".mlp.") || p.contains(".ln2.")
    } else {
        |_| false
    };
    let mut trainer = Trainer::new(config.clone(), weights, device, opt, frozen)?;
    let mut rng = Rng::new(seed ^ 0xDA7A);
    let mut curve = Vec::new();
    let mut window = Vec::new();
    for step in 0..steps {
        let b = match which {
            Bundled::Induction => induction_batch(&mut rng, batch),
            Bundled::Ioi => ioi_batch(&mut rng, batch),
            Bundled::Icl => icl_batch(&mut rng, batch),
            Bundled::IclWord => icl_word_batch(&mut rng, batch, true),
        };
        let loss = trainer.step(&b).await?;
        window.push(loss);
        if window.len() == 100 || step + 1 == steps {
            curve.push(window.iter().sum::<f32>() / window.len() as f32);
            window.clear();
        }
        on_step(step, loss);
    }
    // Export, then evaluate a plain copy: forwards of the autodiff model that never run
    // backward keep their graphs (160 held-out chunks reached 24 GB).
    let tensors = export_gpt2(&trainer.model).await?;
    drop(trainer);
    let refs: Vec<(String, &interplay_models::weights::HostTensor)> =
        tensors.iter().map(|(n, t)| (n.clone(), t)).collect();
    let safetensors = write_safetensors(&refs);
    let config_json = serde_json::to_string_pretty(&gpt2_config_json(&config))
        .map_err(|e| LabError::Model(ModelError::Input(e.to_string())))?;
    let model = interplay_models::load::load_safetensors(
        &safetensors,
        config_json.as_bytes(),
        None,
        device,
    )?
    .model;
    let mut accuracy_by_examples = Vec::new();
    let (test_loss, test_accuracy) = match which {
        Bundled::IclWord => {
            let (loss, acc, by_n) = icl_word_held_out(&model).await?;
            accuracy_by_examples = by_n;
            (loss, acc)
        }
        Bundled::Induction => {
            let mut rng = Rng::new(0x7E57);
            evaluate(&model, &induction_batch(&mut rng, 256)).await?
        }
        Bundled::Icl => {
            let mut rng = Rng::new(0x7E57);
            evaluate(&model, &icl_batch(&mut rng, 256)).await?
        }
        Bundled::Ioi => {
            let (mut l, mut a, mut n) = (0.0, 0.0, 0.0);
            for t in 0..IOI_TEMPLATES.len() {
                let prompts: Vec<IoiPrompt> = ioi_test_prompts()
                    .into_iter()
                    .filter(|p| p.template == t)
                    .collect();
                let k = prompts.len() as f32;
                let b = Batch {
                    targets: prompts
                        .iter()
                        .map(|p| {
                            let mut t = p.ids[1..].to_vec();
                            t.push(p.answer);
                            t
                        })
                        .collect(),
                    weights: prompts
                        .iter()
                        .map(|p| {
                            let mut w = vec![0.0; p.ids.len()];
                            w[p.ids.len() - 1] = 1.0;
                            w
                        })
                        .collect(),
                    inputs: prompts.into_iter().map(|p| p.ids).collect(),
                };
                let (tl, ta) = evaluate(&model, &b).await?;
                (l, a, n) = (l + tl * k, a + ta * k, n + k);
            }
            (l / n, a / n)
        }
    };
    Ok(Trained {
        safetensors,
        config_json,
        tokenizer_json: which.tokenizer_json(),
        report: TrainReport {
            model: which.id().into(),
            steps,
            batch,
            lr,
            seed,
            loss_curve: curve,
            test_loss,
            test_accuracy,
            parameters,
            accuracy_by_examples,
        },
    })
}
