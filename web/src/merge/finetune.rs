//! Fine-tuning in the page: the suite's base on a task or on pasted data, with a live loss curve.

use super::*;
use crate::engine::JobId;

/// Fine-tuning in the page: the suite's base on a task or on pasted data, with a live loss curve.
#[component]
pub(super) fn FineTune(
    /// The Merge lab's spec: a fine-tune of a bundled task can join its merges.
    spec: RwSignal<MergeSpec>,
) -> impl IntoView {
    let task = RwSignal::new(Some(Task::Mirror));
    let pasted = RwSignal::new(String::new());
    let opts = RwSignal::new(TrainOptions {
        epochs: 5,
        ..TrainOptions::fine_tune()
    });
    let busy = RwSignal::new(false);
    let job = RwSignal::new(None::<JobId>);
    let losses = RwSignal::new(Vec::<f64>::new());
    let result = RwSignal::new(None::<Result<(Vec<f64>, Vec<u8>), String>>);
    let epochs_done = RwSignal::new((0usize, 0usize));
    let steps_done = RwSignal::new((0usize, 1usize));
    let lock = crate::share::locked();

    let bad = BadInputs::new();
    let train = move |_| {
        if bad.refuse_run() {
            return;
        }
        let options = opts.get_untracked();
        // The page's own checks first: a message at once, nothing sent.
        if let Err(e) = options.check() {
            result.set(Some(Err(e.to_string())));
            return;
        }
        busy.set(true);
        losses.set(Vec::new());
        result.set(None);
        let epochs = options.epochs;
        epochs_done.set((0, epochs));
        steps_done.set((0, 1));
        let task = engine::Task::FineTune {
            task: task.get_untracked(),
            pasted: pasted.get_untracked(),
            options,
        };
        let on_part = move |p: Part| {
            if let Part::TrainStep {
                step,
                steps,
                epoch,
                loss,
            } = p
            {
                steps_done.set((step, steps));
                if let Some(loss) = loss {
                    epochs_done.set((epoch, epochs));
                    losses.update(|l| l.push(loss));
                }
            }
        };
        let (id, done) = engine::submit(task, crate::runtime::current(), |_| {}, on_part);
        job.set(Some(id));
        spawn_local(async move {
            let r = match done.await {
                Ok((
                    Output::FineTuned {
                        accuracy,
                        safetensors,
                    },
                    _,
                )) => Ok((accuracy, safetensors)),
                Ok(_) => Err("the engine answered with another result".to_string()),
                Err(engine::Failure::Cancelled) => {
                    Err("Fine-tuning cancelled; the loss so far is kept above.".to_string())
                }
                Err(e) => Err(e.to_string()),
            };
            job.set(None);
            result.set(Some(r));
            busy.set(false);
        });
    };
    let cancel = move || {
        if let Some(id) = job.get_untracked() {
            engine::cancel(id);
        }
    };
    // Leaving the lab ends the fine-tune: nobody will see it, and it holds the engine.
    on_cleanup(move || {
        if let Some(Some(id)) = job.try_get_untracked() {
            engine::cancel(id);
        }
    });

    view! {
        <section class="card" data-testid="merge-finetune" data-state=move || match (busy.get(), result.get()) {
                (true, _) => "running", (false, None) => "idle", (false, Some(Ok(_))) => "done", (false, Some(Err(_))) => "error" }>
            <h2>"Fine-tune the base in the page"</h2>
            <p class="muted">"Adam on the page's device, all parameters, starting from the suite's base. The task vector is the fine-tuned weights minus the base; download it to merge with `interplay merge`."</p>
            <label>"Data "
                <select data-testid="ft-task" prop:disabled=move || busy.get() || lock
                    on:change=move |ev| task.set(event_target_value(&ev).parse().ok())>
                    {Task::ALL.into_iter().map(|t| view! { <option value=t.name() selected=move || task.get() == Some(t)>{format!("{} ({})", t.name(), t.describe())}</option> }).collect_view()}
                    <option value="pasted">"my data (paste below)"</option>
                </select></label>
            {move || task.get().is_none().then(|| view! {
                <label>"One image per line: 64 pixel values 0..16 (row by row), then the label 0..9"
                    <textarea rows="5" cols="70" data-testid="ft-data" prop:disabled=lock prop:value=move || pasted.get()
                        on:change=move |ev| pasted.set(event_target_value(&ev))></textarea></label>
            })}
            <div class="grid2">
                <label>"Epochs "<input type="number" data-testid="ft-epochs" prop:disabled=lock prop:value=move || bad.text("ft-epochs").unwrap_or_else(|| opts.get().epochs.to_string())
                    on:change={move |ev| { let t = event_target_value(&ev); match t.trim().parse::<usize>() { Ok(v) => { opts.update(|o| o.epochs = v); bad.accept("ft-epochs") } Err(_) => bad.reject("ft-epochs", t, "Epochs: a whole number".into()) } }}/></label>
                <label>"Learning rate "<input type="number" step="any" data-testid="ft-lr" prop:disabled=lock prop:value=move || bad.text("ft-lr").unwrap_or_else(|| opts.get().lr.to_string())
                    on:change={move |ev| { let t = event_target_value(&ev); match t.trim().parse::<f64>() { Ok(v) => { opts.update(|o| o.lr = v); bad.accept("ft-lr") } Err(_) => bad.reject("ft-lr", t, "Learning rate: a number".into()) } }}/></label>
                <label>"Batch "<input type="number" data-testid="ft-batch" prop:disabled=lock prop:value=move || bad.text("ft-batch").unwrap_or_else(|| opts.get().batch.to_string())
                    on:change={move |ev| { let t = event_target_value(&ev); match t.trim().parse::<usize>() { Ok(v) => { opts.update(|o| o.batch = v); bad.accept("ft-batch") } Err(_) => bad.reject("ft-batch", t, "Batch: a whole number".into()) } }}/></label>
                <label>"Seed "<input type="number" data-testid="ft-seed" prop:disabled=lock prop:value=move || bad.text("ft-seed").unwrap_or_else(|| opts.get().seed.to_string())
                    on:change={move |ev| { let t = event_target_value(&ev); match t.trim().parse::<u64>() { Ok(v) => { opts.update(|o| o.seed = v); bad.accept("ft-seed") } Err(_) => bad.reject("ft-seed", t, "Seed: a whole number ≥ 0".into()) } }}/></label>
                <label><input type="checkbox" data-testid="ft-linearised" prop:disabled=lock prop:checked=move || opts.get().linearised
                    on:change=move |ev| { let on = event_target_checked(&ev); opts.update(|o| o.linearised = on) }/>
                    " linearised (train f(x; θ₀) + J(θ₀)(θ − θ₀), the tangent space of the base)"</label>
            </div>
            {move || bad.message().map(|e| view! { <p class="error" role="alert" data-testid="ft-input-error">{e}</p> })}
            <p>
                <button data-testid="ft-run" on:click=train prop:disabled=move || busy.get() || lock>"Fine-tune"</button>" "
                <button data-testid="ft-cancel" on:click=move |_| cancel() prop:disabled=move || !busy.get()>"Cancel"</button>" "
                {move || busy.get().then(|| { let (d, t) = steps_done.get(); view! { <progress data-testid="ft-progress" max=t.max(1) value=d></progress> }})}
            </p>
            {move || (!losses.get().is_empty()).then(|| view! {
                <p data-testid="ft-losses" data-losses=move || serde_json::to_string(&losses.get()).unwrap_or_default()>
                    {move || format!("epoch {} of {}: loss {:.4}", epochs_done.get().0, epochs_done.get().1, losses.get().last().copied().unwrap_or(f64::NAN))}</p>
                <LinePlot series=vec![Series { name: "training loss".into(), values: losses.get() }] x0=1.0
                    xlabel="epoch".to_string() ylabel="cross-entropy".to_string() testid="ft-loss-plot".to_string()/>
            })}
            {move || result.get().map(|r| match r {
                Err(e) => view! { <p class="error" role="alert" data-testid="ft-error">{e}</p> }.into_any(),
                Ok((acc, bytes)) => view! {
                    <table class="data" data-testid="ft-accuracy"><caption>"The fine-tuned model on every task"</caption>
                        <thead><tr>{Task::ALL.iter().map(|t| view! { <th scope="col">{t.name()}</th> }).collect_view()}</tr></thead>
                        <tbody><tr>{acc.iter().map(|a| view! { <td>{pct(*a)}</td> }).collect_view()}</tr></tbody>
                    </table>
                    <p><button on:click=move |_| crate::plots::download_bytes("finetuned.safetensors", &bytes)>"Download the model (safetensors)"</button>" "
                    {move || task.get().map(|t| view! {
                        <button data-testid="ft-use" prop:disabled=lock on:click=move |_| {
                            let f = FineTuneSpec { task: t, options: opts.get_untracked() };
                            // A merge runs every model one way: the first page fine-tune sets it.
                            spec.update(|s| if s.fine_tunes.len() < 4 && !s.fine_tunes.contains(&f) {
                                if s.fine_tunes.is_empty() {
                                    s.fine_tuning = if f.options.linearised { FineTuning::Linearised } else { FineTuning::Standard };
                                }
                                s.fine_tunes.push(f)
                            });
                        }>"Use its task vector in the merge above (retrained from this spec when the merge runs)"</button>
                    })}</p>
                }.into_any(),
            })}
        </section>
    }
}
