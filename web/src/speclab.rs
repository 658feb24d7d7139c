//! The plumbing every spec lab shares (Circuits' patching panel, Merge, Neurofeedback, Dynamics):
//! where the spec starts (a share link, else the autosaved draft, else the lab's default), its
//! autosave, and one run's state — busy, the engine job, progress, the share link it wrote, a
//! run count.

use std::collections::BTreeMap;

use interplay_lab::LabSpec;
use leptos::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use wasm_bindgen::JsCast;

use crate::assets::{draft_get, draft_set};
use crate::engine::{self, Finished, JobId, Part, Task};

/// Where a lab's spec starts.
pub struct Initial<T> {
    /// The spec: the share link's, else the autosaved draft, else the default.
    pub spec: T,
    /// Why the share link could not be read (damaged, or another lab's), for the page to show.
    pub link_error: Option<String>,
    /// Whether the spec came from a share link.
    pub from_link: bool,
}

/// The spec a lab opens with: a share link wins; else the draft autosaved under `draft_key`;
/// else `default()`.
pub fn initial_spec<T: LabSpec + DeserializeOwned>(
    draft_key: &str,
    default: impl FnOnce() -> T,
) -> Initial<T> {
    let draft = || {
        draft_get(draft_key)
            .and_then(|d| serde_json::from_str::<T>(&d).ok())
            .unwrap_or_else(default)
    };
    match crate::share::read_share_link::<T>() {
        Some(Ok(spec)) => Initial {
            spec,
            link_error: None,
            from_link: true,
        },
        Some(Err(e)) => Initial {
            spec: draft(),
            link_error: Some(e.to_string()),
            from_link: false,
        },
        None => Initial {
            spec: draft(),
            link_error: None,
            from_link: false,
        },
    }
}

/// Keep the spec `current()` returns autosaved under `draft_key` as it changes, so a reload
/// loses nothing.
pub fn autosave<T: Serialize + 'static>(
    draft_key: &'static str,
    current: impl Fn() -> T + 'static,
) {
    Effect::new(move |_| {
        if let Ok(json) = serde_json::to_string(&current()) {
            draft_set(draft_key, &json);
        }
    });
}

/// A link with `run=1` (the share box's and the embed snippet's) runs its experiment once, when
/// it opened from that link: as soon as the page's device is chosen, `ready()` holds (the link's
/// model loaded, say) and `st` is idle. It gives up once any run of `st` has happened (the
/// student pressed Run first), when the lab closes (the task belongs to it), or after ten
/// minutes (a model that never loads has said why already).
pub fn run_on_open(
    from_link: bool,
    st: RunState,
    ready: impl Fn() -> bool + 'static,
    run: impl Fn() + 'static,
) {
    if !(from_link && crate::share::run_requested()) {
        return;
    }
    leptos::task::spawn_local_scoped_with_cancellation(async move {
        for _ in 0..6000 {
            if st.runs.get_untracked() > 0 {
                return;
            }
            if crate::runtime::chosen() && !st.busy.get_untracked() && ready() {
                run();
                return;
            }
            crate::assets::sleep_ms(100).await;
        }
    });
}

/// A lab's inputs whose text is not valid, kept as typed with why. The spec keeps its last valid
/// values, so without this a Run would silently run them; and since a lab re-renders its fields
/// when the spec changes, the typed text would vanish while its message lingered. Run refuses
/// while any is bad ([`BadInputs::refuse_run`]); a guided reset or a new spec clears them.
#[derive(Clone, Copy)]
pub struct BadInputs(RwSignal<BTreeMap<&'static str, (String, String)>>);

impl BadInputs {
    /// No bad input.
    pub fn new() -> Self {
        Self(RwSignal::new(BTreeMap::new()))
    }

    /// The text typed in the input `id` (named by its test id) if it is bad (tracked): the field
    /// shows it instead of the spec's value.
    pub fn text(&self, id: &'static str) -> Option<String> {
        self.0.with(|m| m.get(id).map(|(t, _)| t.clone()))
    }

    /// The input `id` now holds a valid value (the lab has put it in the spec).
    pub fn accept(&self, id: &'static str) {
        if self.0.with_untracked(|m| m.contains_key(id)) {
            self.0.update(|m| {
                m.remove(id);
            });
        }
    }

    /// A numeric field `id` (shown as `label`) changed to `text`: the spec takes the number when
    /// the field holds it exactly — an integer field refuses 2.5 or −3 instead of rounding them
    /// silently — and, with `non_negative`, when it is ≥ 0; otherwise the text stays, with why.
    #[allow(clippy::too_many_arguments)] // one field's whole description, as the forms list it
    pub fn number<T: Clone + Send + Sync + 'static>(
        &self,
        spec: RwSignal<T>,
        id: &'static str,
        label: &str,
        text: String,
        get: fn(&T) -> Option<f64>,
        set: fn(&mut T, f64),
        non_negative: bool,
    ) {
        let x = match text.trim().parse::<f64>() {
            Ok(x) if x.is_finite() && (!non_negative || x >= 0.0) => x,
            _ if non_negative => {
                return self.reject(id, text, format!("{label}: enter a number ≥ 0"));
            }
            _ => return self.reject(id, text, format!("{label}: enter a number")),
        };
        let mut next = spec.get_untracked();
        set(&mut next, x);
        if get(&next) == Some(x) {
            spec.set(next);
            self.accept(id);
        } else {
            self.reject(
                id,
                text,
                format!("{label}: enter a whole number (0, 1, 2, …)"),
            );
        }
    }

    /// A whole-number input that must lie in `lo..=hi` (the bounds the spec itself checks, so the
    /// page says so at once instead of after the run has started).
    #[allow(clippy::too_many_arguments)]
    pub fn whole_in<T: Clone + Send + Sync + 'static>(
        &self,
        spec: RwSignal<T>,
        id: &'static str,
        label: &str,
        text: String,
        (lo, hi): (usize, usize),
        set: fn(&mut T, usize),
    ) {
        match text.trim().parse::<usize>() {
            Ok(x) if (lo..=hi).contains(&x) => {
                spec.update(|s| set(s, x));
                self.accept(id);
            }
            _ => self.reject(
                id,
                text,
                format!("{label}: enter a whole number from {lo} to {hi}"),
            ),
        }
    }

    /// The input `id` holds `text`, which is not valid because of `why`.
    pub fn reject(&self, id: &'static str, text: String, why: String) {
        self.0.update(|m| {
            m.insert(id, (text, why));
        });
    }

    /// Every input shows the spec again (a guided reset, another kind, a pasted spec).
    pub fn clear(&self) {
        if self.0.with_untracked(|m| !m.is_empty()) {
            self.0.update(BTreeMap::clear);
        }
    }

    /// Why the bad inputs are bad, one line (tracked); `None` when all are valid.
    pub fn message(&self) -> Option<String> {
        self.0.with(|m| {
            (!m.is_empty()).then(|| {
                let why: Vec<&str> = m.values().map(|(_, w)| w.as_str()).collect();
                format!("Fix before running: {}", why.join("; "))
            })
        })
    }

    /// At Run: `true` when a bad input must be fixed first, so the lab does not run its last
    /// valid spec in its place; the bad input first in the page gets the focus (a closed
    /// `<details>` around it opens). Inputs no longer on the page (another method hides them)
    /// are dropped first: nothing could fix them.
    pub fn refuse_run(&self) -> bool {
        let Some(doc) = web_sys::window().and_then(|w| w.document()) else {
            return false;
        };
        let find = |id: &str| {
            doc.query_selector(&format!("[data-testid=\"{id}\"]"))
                .ok()
                .flatten()
        };
        let gone: Vec<&'static str> = self
            .0
            .with_untracked(|m| m.keys().copied().filter(|id| find(id).is_none()).collect());
        if !gone.is_empty() {
            self.0.update(|m| m.retain(|id, _| !gone.contains(id)));
        }
        let shown: Vec<web_sys::Element> = self
            .0
            .with_untracked(|m| m.keys().filter_map(|id| find(id)).collect());
        // The one no other bad input precedes in the document.
        let first = shown.iter().find(|e| {
            shown.iter().all(|o| {
                o == *e
                    || e.compare_document_position(o) & web_sys::Node::DOCUMENT_POSITION_PRECEDING
                        == 0
            })
        });
        let Some(first) = first else { return false };
        if let Ok(Some(details)) = first.closest("details") {
            let _ = details.set_attribute("open", "");
        }
        if let Some(el) = first.dyn_ref::<web_sys::HtmlElement>() {
            let _ = el.focus();
        }
        true
    }
}

impl Default for BadInputs {
    fn default() -> Self {
        Self::new()
    }
}

/// One lab's run state.
#[derive(Clone, Copy)]
pub struct RunState {
    /// A run (or a model load) is in progress.
    pub busy: RwSignal<bool>,
    /// (done, total) of the running work.
    pub progress: RwSignal<(usize, usize)>,
    /// Finished runs, so tests and screen readers can tell a new outcome.
    pub runs: RwSignal<u32>,
    /// The share link of the last run (empty before the first).
    pub share: RwSignal<String>,
    /// Why the page's share link could not be read.
    pub link_error: RwSignal<Option<String>>,
    /// The engine job of the running work, if it runs in the engine.
    pub job: RwSignal<Option<JobId>>,
}

impl RunState {
    /// Idle, with the opening link's error (if any).
    pub fn new(link_error: Option<String>) -> Self {
        let st = Self {
            busy: RwSignal::new(false),
            progress: RwSignal::new((0, 0)),
            runs: RwSignal::new(0),
            share: RwSignal::new(String::new()),
            link_error: RwSignal::new(link_error),
            job: RwSignal::new(None),
        };
        // Leaving the lab ends its engine job: nobody will see it, and it holds the engine.
        on_cleanup(move || {
            if let Some(Some(id)) = st.job.try_get_untracked() {
                engine::cancel(id);
            }
        });
        st
    }

    /// Cancel the running engine job: it ends now for the page, and the engine stops it at its
    /// next progress point.
    pub fn cancel(&self) {
        if let Some(id) = self.job.get_untracked() {
            engine::cancel(id);
        }
    }

    /// Hold or resume the running engine job (`paused` is the lab's Pause state).
    pub fn pause(&self, paused: bool) {
        if let Some(id) = self.job.get_untracked() {
            engine::pause(id, paused);
        }
    }

    /// Run `task` in the engine on the page's device: progress fills this state's bar, Cancel
    /// and Pause reach it, `on_part` receives streamed pieces.
    pub async fn compute(&self, task: Task, on_part: impl FnMut(Part) + 'static) -> Finished {
        let progress = self.progress;
        let backend = crate::runtime::current();
        let (id, done) = engine::submit(task, backend, move |p| progress.set(p), on_part);
        self.job.set(Some(id));
        let r = done.await;
        self.job.set(None);
        r
    }

    /// A run of `spec` starts: its share link goes in the address bar, `total` units of work.
    pub fn start<T: LabSpec>(&self, spec: &T, total: usize) {
        self.share.set(crate::share::write_share_url(spec));
        self.busy.set(true);
        self.progress.set((0, total));
    }

    /// A run ended, whatever its outcome.
    pub fn finish(&self) {
        self.runs.update(|n| *n += 1);
        self.busy.set(false);
    }
}

/// The `data-state` of a lab's status: `running`, `idle`, `done` or `error`.
pub fn state_of<T, E>(busy: bool, outcome: &Option<Result<T, E>>) -> &'static str {
    match (busy, outcome) {
        (true, _) => "running",
        (false, None) => "idle",
        (false, Some(Ok(_))) => "done",
        (false, Some(Err(_))) => "error",
    }
}

/// Run, Pause (when the lab can pause), Cancel and the progress bar.
#[component]
pub fn RunControls(
    /// The lab's run state.
    st: RunState,
    /// Test-id prefix: `{prefix}run`, `{prefix}pause`, `{prefix}cancel`, `{prefix}progress`.
    prefix: &'static str,
    /// The Run button's text.
    label: &'static str,
    /// Starts a run.
    on_run: Callback<()>,
    /// Pauses and resumes the running work, for labs that can.
    #[prop(optional)]
    paused: Option<RwSignal<bool>>,
    /// Run is disabled while this is true (e.g. no model loaded yet).
    #[prop(optional, into)]
    blocked: Option<Signal<bool>>,
) -> impl IntoView {
    let busy = st.busy;
    view! {
        <p>
            <button data-testid=format!("{prefix}run") on:click=move |_| on_run.run(())
                    prop:disabled=move || busy.get() || blocked.is_some_and(|b| b.get())>{label}</button>" "
            {paused.map(|p| view! {
                <button data-testid=format!("{prefix}pause") on:click=move |_| { p.update(|x| *x = !*x); st.pause(p.get_untracked()) }
                        prop:disabled=move || !busy.get()>
                    {move || if p.get() { "Resume" } else { "Pause" }}</button>" "
            })}
            <button data-testid=format!("{prefix}cancel") on:click=move |_| st.cancel()
                    prop:disabled=move || !busy.get()>"Cancel"</button>" "
            {move || busy.get().then(|| { let (d, t) = st.progress.get(); view! {
                <progress data-testid=format!("{prefix}progress") max=t.max(1) value=d></progress> }})}
        </p>
    }
}

/// "computed on {device} in {ms} ms" once a run has finished.
#[component]
pub fn ComputedOn(
    /// The lab's run state.
    st: RunState,
    /// (device label, milliseconds) of the last run.
    facts: RwSignal<(String, f64)>,
    /// Test-id prefix: `{prefix}computed-on`.
    prefix: &'static str,
) -> impl IntoView {
    move || {
        (!st.busy.get() && !facts.get().0.is_empty()).then(|| {
            let (b, ms) = facts.get();
            view! { <p class="muted" data-testid=format!("{prefix}computed-on")>{format!("computed on {b} in {ms:.0} ms")}</p> }
        })
    }
}

/// What a screen reader hears of a run, in a visually hidden polite live region: "{what}:
/// running", then "finished" or "stopped with an error" (the error itself is an alert).
#[component]
pub fn Announce<T: Clone + Send + Sync + 'static, E: Clone + Send + Sync + 'static>(
    /// The run's name, e.g. "Patching sweep".
    what: &'static str,
    /// Whether it runs.
    #[prop(into)]
    busy: Signal<bool>,
    /// Its outcome.
    #[prop(into)]
    outcome: Signal<Option<Result<T, E>>>,
) -> impl IntoView {
    let news = move || {
        outcome.with(|o| match state_of(busy.get(), o) {
            "running" => format!("{what}: running"),
            "done" => format!("{what}: finished"),
            "error" => format!("{what}: stopped with an error"),
            _ => String::new(),
        })
    };
    view! { <p class="sr-only" role="status" aria-live="polite">{news}</p> }
}

/// A guided run's finding: the paper's claim and what this page's run shows (computed from it),
/// marked when they disagree.
#[component]
pub fn FindingView(
    /// The finding.
    finding: interplay_lab::findings::Finding,
    /// Its test id.
    testid: &'static str,
) -> impl IntoView {
    let agrees = finding.agrees.map(|a| a.to_string()).unwrap_or_default();
    view! {
        <div class="finding" data-testid=testid data-agrees=agrees>
            <p><strong>"The paper: "</strong>{finding.claim}</p>
            <p><strong>"This page's run: "</strong>{finding.shows}</p>
        </div>
    }
}
