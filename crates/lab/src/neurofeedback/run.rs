//! Activations of sentence sets, label logits after in-context examples, and the whole run.

use super::*;

/// Pool a sentence's `[batch, pos, d]` activations to `[batch, d]`. The mean leaves out the
/// first token (when there are others): read alone, it is the attention sink, whose huge
/// activations would otherwise be the first principal component of every set.
pub(crate) fn pool(x: Tensor<3>, pooling: Pooling) -> Tensor<2> {
    let [b, p, d] = x.dims();
    match pooling {
        Pooling::Mean => x
            .slice(s![.., usize::from(p > 1)..p, ..])
            .mean_dim(1)
            .reshape([b, d]),
        Pooling::Last => x.slice(s![.., p - 1..p, ..]).reshape([b, d]),
    }
}

/// Pooled activations of every sentence read alone, `n × d_model` on the host. Sentences of
/// equal token count run as one batch.
pub async fn activations(
    m: &Transformer,
    tk: &TextTokenizer,
    sentences: &[Sentence],
    hook: HookPoint,
    pooling: Pooling,
) -> Result<Vec<Vec<f64>>, LabError> {
    let ids: Vec<Vec<u32>> = sentences
        .iter()
        .map(|s| tk.encode(&s.text))
        .collect::<Result<_, _>>()?;
    if let Some(i) = ids.iter().position(Vec::is_empty) {
        return Err(LabError::Spec(format!(
            "sentence {} has no tokens for this tokenizer",
            i + 1
        )));
    }
    in_context_activations(m, None, &ids, hook, pooling).await
}

/// Indices of `items` grouped by length (queries of equal length run as one batch).
pub(crate) fn by_length(items: &[Vec<u32>]) -> Vec<Vec<usize>> {
    let mut lengths: Vec<usize> = items.iter().map(Vec::len).collect();
    lengths.sort_unstable();
    lengths.dedup();
    lengths
        .into_iter()
        .map(|len| {
            (0..items.len())
                .filter(|&i| items[i].len() == len)
                .collect()
        })
        .collect()
}

/// The keys/values of `tokens` read after `cache` (`cache` itself when `tokens` is empty), so
/// prompts that share a beginning run it once.
pub(crate) fn extend_cache(
    m: &Transformer,
    cache: Option<&KvCache>,
    tokens: &[u32],
) -> Result<Option<KvCache>, LabError> {
    if tokens.is_empty() {
        return Ok(cache.cloned());
    }
    Ok(Some(
        m.extend_residual(m.tokens(&[tokens.to_vec()])?, cache, &HookPlan::default())?
            .2,
    ))
}

/// For every query, `(logit labels[0], logit labels[1])` after `prefix` + the query. Queries of
/// equal length share one batched run after the cached prefix (one readback in all).
pub(crate) async fn answer_logits(
    m: &Transformer,
    prefix: &[u32],
    queries: &[Vec<u32>],
    label_ids: [u32; 2],
) -> Result<Vec<[f32; 2]>, LabError> {
    let cache = extend_cache(m, None, prefix)?;
    let d = m.config.d_model;
    let ids = Tensor::<1, Int>::from_data(
        TensorData::new(label_ids.map(|i| i as i32).to_vec(), [2]),
        &m.device(),
    );
    let groups = by_length(queries);
    let mut picked = Vec::new();
    for rows in &groups {
        let batch: Vec<Vec<u32>> = rows.iter().map(|&i| queries[i].clone()).collect();
        let p = batch[0].len();
        let (resid, _, _) =
            m.extend_residual(m.tokens(&batch)?, cache.as_ref(), &HookPlan::default())?;
        let last = resid.slice(s![.., p - 1..p, ..]).reshape([rows.len(), d]);
        picked.push(m.logits_of(last, ids.clone())); // [rows, 2]
    }
    let flat = read_f32(Tensor::cat(picked, 0)).await?;
    let mut out = vec![[0f32; 2]; queries.len()];
    for (k, &i) in groups.iter().flatten().enumerate() {
        out[i] = [flat[2 * k], flat[2 * k + 1]];
    }
    Ok(out)
}

/// The reporting task's raw readout: the two label logits of each query after `examples`
/// (`(sentence, label index)`), and the token ids of the first query's whole prompt.
pub async fn label_logits(
    spec: &NeurofeedbackSpec,
    m: &Transformer,
    tk: &TextTokenizer,
    examples: &[(&str, usize)],
    queries: &[&str],
) -> Result<(Vec<[f32; 2]>, Vec<u32>), LabError> {
    let prompts = Prompts::new(tk, spec)?;
    let prefix = prompts.prefix(examples)?;
    let qs: Vec<Vec<u32>> = queries
        .iter()
        .map(|q| prompts.query(q))
        .collect::<Result<_, _>>()?;
    let mut first = prefix.clone();
    first.extend(qs.first().cloned().unwrap_or_default());
    Ok((
        answer_logits(m, &prefix, &qs, prompts.label_ids).await?,
        first,
    ))
}

/// Pooled activation (`d_model`) at `hook` of each `sentence` read after the prefix whose
/// keys/values are `prefix` (sentences of equal length batched).
pub(crate) async fn in_context_activations(
    m: &Transformer,
    prefix: Option<&KvCache>,
    sentences: &[Vec<u32>],
    hook: HookPoint,
    pooling: Pooling,
) -> Result<Vec<Vec<f64>>, LabError> {
    let plan = HookPlan::caching([hook]);
    let d = m.config.d_model;
    let groups = by_length(sentences);
    let mut pooled = Vec::new();
    for rows in &groups {
        let batch: Vec<Vec<u32>> = rows.iter().map(|&i| sentences[i].clone()).collect();
        let acts = m.activations(m.tokens(&batch)?, prefix, &plan)?;
        let a = acts.r3(hook).ok_or_else(missing_activation)?;
        pooled.push(pool(a, pooling));
    }
    let flat = read_f32(Tensor::cat(pooled, 0)).await?;
    let mut out = vec![Vec::new(); sentences.len()];
    for (k, &i) in groups.iter().flatten().enumerate() {
        out[i] = flat[k * d..(k + 1) * d]
            .iter()
            .map(|&x| f64::from(x))
            .collect();
    }
    Ok(out)
}

/// Run the whole experiment. `progress(done, total)` resolves to `false` to cancel.
pub async fn run(
    spec: &NeurofeedbackSpec,
    m: &Transformer,
    tk: &TextTokenizer,
    progress: &mut dyn FnMut(usize, usize) -> Progress,
) -> Result<NeurofeedbackResult, LabError> {
    spec.check(m)?;
    let sentences = spec.sentences.load()?;
    let prompts = Prompts::new(tk, spec)?;
    let n = sentences.len();
    let max_n = spec.examples.iter().copied().max().unwrap_or(0);
    if max_n > n / 2 {
        return Err(LabError::Spec(format!(
            "N = {max_n} examples needs at least {} sentences (half are kept for queries); the set has {n}",
            2 * max_n
        )));
    }
    let runs_per_dir = spec.seeds.len() * spec.examples.len() * (1 + usize::from(spec.shuffled));
    let written_per_dir = spec
        .explicit
        .map_or(0, |e| 2 * spec.seeds.len() * e.samples);
    let total = 1
        + spec.directions.len() * runs_per_dir
        + usize::from(spec.control) * spec.directions.len() * 2
        + spec.directions.len() * written_per_dir;
    let mut done = 0;
    if !progress(done, total).await {
        return Err(LabError::Cancelled);
    }

    let x = activations(m, tk, &sentences, spec.hook, spec.pooling).await?;
    done += 1;
    let k = spec
        .directions
        .iter()
        .map(|d| match d {
            Direction::Pc(k) => *k,
            _ => 1,
        })
        .max()
        .unwrap_or(1)
        .max(10);
    let max_pc = n.min(x[0].len()) - 1;
    if let Some(Direction::Pc(bad)) = spec
        .directions
        .iter()
        .find(|d| matches!(d, Direction::Pc(k) if *k > max_pc))
    {
        return Err(LabError::Spec(format!(
            "pc{bad} does not exist: {n} sentences give at most {max_pc} components"
        )));
    }
    let (pcs, pc_variance) = pca(&x, k);
    let mu = mean_row(&x);
    let total_var: f64 = x
        .iter()
        .map(|r| r.iter().zip(&mu).map(|(a, b)| (a - b).powi(2)).sum::<f64>())
        .sum::<f64>()
        .max(f64::MIN_POSITIVE);
    let seed0 = spec.seeds[0];

    // Directions, projections, labels.
    let mut vecs = Vec::new();
    for d in &spec.directions {
        vecs.push(match d {
            Direction::Pc(k) => pcs[k - 1].clone(),
            Direction::Probe => {
                let y: Option<Vec<bool>> = sentences.iter().map(|s| s.concept).collect();
                let y = y.ok_or_else(|| {
                    LabError::Spec(
                        "the probe needs every sentence's concept: end each line with | 1 or | 0"
                            .into(),
                    )
                })?;
                probe(&x, &y)?
            }
            Direction::Random => random_direction(x[0].len(), seed0),
        });
    }
    let query_ids: Vec<Vec<u32>> = sentences
        .iter()
        .map(|s| prompts.query(&s.text))
        .collect::<Result<_, _>>()?;
    let mut results = Vec::new();
    let mut example_prompt = String::new();
    for (di, d) in spec.directions.iter().enumerate() {
        let u = &vecs[di];
        let proj: Vec<f64> = x.iter().map(|r| dot(r, u)).collect();
        let med = median(&proj);
        let (label, cuts) = bin_labels(&proj, spec.bins);
        let var = x
            .iter()
            .map(|r| (dot(r, u) - dot(&mu, u)).powi(2))
            .sum::<f64>()
            / total_var;
        let mut accuracy = Vec::new();
        let mut shuffled_acc = Vec::new();
        for &seed in &spec.seeds {
            let (pool_idx, queries) = labelled_split(n, seed, spec.queries, &label);
            if pool_idx.len() < max_n || queries.is_empty() {
                return Err(LabError::Spec(format!(
                    "with these bins {d} labels {} of seed {seed}'s example pool and {} held-out queries: \
                     N = {max_n} needs {max_n} examples and at least one query (widen the bins or lower N)",
                    pool_idx.len(),
                    queries.len()
                )));
            }
            let qs: Vec<Vec<u32>> = queries.iter().map(|&i| query_ids[i].clone()).collect();
            let mut row = Vec::new();
            let mut srow = Vec::new();
            for shuffle in [false, true] {
                if shuffle && !spec.shuffled {
                    continue;
                }
                for &nn in &spec.examples {
                    let chosen = &pool_idx[..nn];
                    let mut labs: Vec<usize> = chosen.iter().filter_map(|&i| label[i]).collect();
                    if shuffle {
                        let p = permutation(nn, seed ^ 0x5_4FF1E);
                        labs = p.iter().map(|&j| labs[j]).collect();
                    }
                    let ex: Vec<(&str, usize)> = chosen
                        .iter()
                        .zip(&labs)
                        .map(|(&i, &l)| (sentences[i].text.as_str(), l))
                        .collect();
                    let prefix = prompts.prefix(&ex)?;
                    if di == 0 && seed == seed0 && !shuffle && nn == max_n {
                        let mut all = prefix.clone();
                        all.extend(&qs[0]);
                        example_prompt = tk.decode(&all)?;
                    }
                    let logits = answer_logits(m, &prefix, &qs, prompts.label_ids).await?;
                    let right = logits
                        .iter()
                        .zip(&queries)
                        .filter(|(l, q)| Some(usize::from(l[1] > l[0])) == label[**q])
                        .count();
                    let acc = right as f64 / queries.len() as f64;
                    if shuffle {
                        srow.push(acc);
                    } else {
                        row.push(acc);
                    }
                    done += 1;
                    if !progress(done, total).await {
                        return Err(LabError::Cancelled);
                    }
                }
            }
            accuracy.push(row);
            if spec.shuffled {
                shuffled_acc.push(srow);
            }
        }
        let mean_over = |rows: &[Vec<f64>]| -> Vec<f64> {
            (0..spec.examples.len())
                .map(|i| rows.iter().map(|r| r[i]).sum::<f64>() / rows.len() as f64)
                .collect()
        };
        results.push(DirectionResult {
            direction: *d,
            variance_explained: var,
            mean: mean_over(&accuracy),
            shuffled: spec.shuffled.then(|| mean_over(&shuffled_acc)),
            accuracy,
            projections: proj,
            median: med,
            cuts,
        });
    }

    // Mean and standard deviation of each direction's projection over the set: the control
    // tasks' units.
    let (centre, sd): (Vec<f64>, Vec<f64>) = results
        .iter()
        .map(|r| {
            let p = &r.projections;
            let m = p.iter().sum::<f64>() / p.len() as f64;
            let sd = (p.iter().map(|a| (a - m).powi(2)).sum::<f64>() / p.len() as f64)
                .sqrt()
                .max(1e-12);
            (m, sd)
        })
        .unzip();
    let labels_of = |r: &DirectionResult| bin_labels(&r.projections, spec.bins).0;
    // A seed's control examples: the first N labelled sentences of its example pool.
    let control_examples = |label: &[Option<usize>], seed: u64| -> Vec<(&str, usize)> {
        labelled_split(n, seed, spec.queries, label)
            .0
            .iter()
            .take(max_n)
            .filter_map(|&i| label[i].map(|l| (sentences[i].text.as_str(), l)))
            .collect()
    };
    let control = if spec.control {
        let (_, queries) = split(n, seed0, spec.queries);
        let read: Vec<Vec<u32>> = queries
            .iter()
            .map(|&i| tk.encode(&sentences[i].text))
            .collect::<Result<_, _>>()?;
        let mut shift = Vec::new();
        for r in &results {
            let ex = control_examples(&labels_of(r), seed0);
            // The examples run once; each label's request continues them.
            let base = control_cache(spec, m, tk, &ex)?;
            let mut mean_proj = [vec![0.0; vecs.len()], vec![0.0; vecs.len()]];
            for (t, slot) in mean_proj.iter_mut().enumerate() {
                let prefix = extend_cache(m, base.as_ref(), &prompts.request(t)?)?;
                let acts =
                    in_context_activations(m, prefix.as_ref(), &read, spec.hook, spec.pooling)
                        .await?;
                for (j, u) in vecs.iter().enumerate() {
                    slot[j] = acts.iter().map(|a| dot(a, u)).sum::<f64>() / acts.len() as f64;
                }
                done += 1;
                if !progress(done, total).await {
                    return Err(LabError::Cancelled);
                }
            }
            shift.push(
                (0..vecs.len())
                    .map(|j| (mean_proj[0][j] - mean_proj[1][j]) / sd[j])
                    .collect(),
            );
        }
        Some(ControlResult {
            examples: max_n,
            shift,
        })
    } else {
        None
    };
    let explicit = match spec.explicit {
        Some(e) => {
            let mut shift = Vec::new();
            let mut shift_alone = Vec::new();
            let mut written = Vec::new();
            for (di, r) in results.iter().enumerate() {
                let label = labels_of(r);
                // Sums of projections (in context, alone) per target label and direction.
                let mut sums = [
                    [vec![0.0; vecs.len()], vec![0.0; vecs.len()]],
                    [vec![0.0; vecs.len()], vec![0.0; vecs.len()]],
                ];
                let mut count = [0usize; 2];
                for &seed in &spec.seeds {
                    let ex = control_examples(&label, seed);
                    // Both labels' requests, every sample, continue one run of the examples.
                    let cache = control_cache(spec, m, tk, &ex)?;
                    for t in 0..2 {
                        for k in 0..e.samples {
                            let sampling = if e.temperature > 0.0 {
                                Sampling::Temperature {
                                    temperature: e.temperature,
                                    seed: seed
                                        ^ ((di as u64) << 40)
                                        ^ ((t as u64) << 32)
                                        ^ ((k as u64) << 16)
                                        ^ 0x0037_17E5,
                                }
                            } else {
                                Sampling::Greedy
                            };
                            let w =
                                write_sentence(spec, m, tk, cache.as_ref(), t, sampling).await?;
                            for (j, u) in vecs.iter().enumerate() {
                                sums[t][0][j] += dot(&w.in_context, u);
                                sums[t][1][j] += dot(&w.alone, u);
                            }
                            count[t] += 1;
                            let z = |a: &[f64]| (dot(a, &vecs[di]) - centre[di]) / sd[di];
                            written.push(WrittenSentence {
                                direction: r.direction,
                                label: t,
                                seed,
                                text: tk.decode(&w.tokens)?.trim().to_string(),
                                finished: w.finished,
                                z: z(&w.in_context),
                                z_alone: z(&w.alone),
                            });
                            done += 1;
                            if !progress(done, total).await {
                                return Err(LabError::Cancelled);
                            }
                        }
                    }
                }
                let row = |which: usize| -> Vec<f64> {
                    (0..vecs.len())
                        .map(|j| {
                            let a = sums[0][which][j] / count[0].max(1) as f64;
                            let b = sums[1][which][j] / count[1].max(1) as f64;
                            (a - b) / sd[j]
                        })
                        .collect()
                };
                shift.push(row(0));
                shift_alone.push(row(1));
            }
            Some(ExplicitControlResult {
                examples: max_n,
                shift,
                shift_alone,
                sentences: written,
            })
        }
        None => None,
    };
    progress(total, total).await;
    Ok(NeurofeedbackResult {
        sentences: n,
        pc_variance: pc_variance.into_iter().take(k).collect(),
        directions: results,
        control,
        explicit,
        example_prompt,
    })
}
