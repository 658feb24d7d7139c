//! Share links, embed flags and spec export: what every lab needs from the page's URL. A leaf
//! module (the shell and the labs use it; it uses no lab), so the labs never import the shell.

use interplay_lab::experiment::read_link;
use interplay_lab::{LabError, LabSpec};
use leptos::prelude::*;

/// The page's hash (`#/lab?...`), where share links keep their spec.
pub fn current_hash() -> String {
    web_sys::window()
        .and_then(|w| w.location().hash().ok())
        .unwrap_or_default()
}

/// Put `spec`'s link (`#/{lab}?spec={the experiment}`) in the address bar without reloading and
/// return the full share link. One mechanism for every lab's share links.
pub fn write_share_url<T: LabSpec>(spec: &T) -> String {
    let h = spec.clone().into_experiment().link();
    if let Some(w) = web_sys::window() {
        if let Ok(hist) = w.history() {
            let _ = hist.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&h));
        }
        if let Ok(href) = w.location().href() {
            return format!("{}{}", href.split('#').next().unwrap_or(""), h);
        }
    }
    h
}

/// A lab's share link, its embed snippet and (optionally) the spec export, shown once the lab
/// has written a link. One component for every lab so the embed flags stay the same everywhere.
/// Inside an embed it shows only a link to open the experiment in the full page: the boxes
/// would push the result out of the frame.
#[component]
pub fn ShareLinks(
    /// The share link (empty: nothing shown yet).
    share: RwSignal<String>,
    /// Test-id prefix: `{prefix}share-link`, `{prefix}embed-snippet`, `{prefix}open-full`.
    prefix: &'static str,
    /// Panels the embedded page hides (the `hide=` list).
    hide: &'static str,
    /// The spec as JSON, for "Export spec"; `None` when the lab exports elsewhere.
    #[prop(optional)]
    spec_json: Option<Callback<(), String>>,
) -> impl IntoView {
    let embedded = use_context::<Embed>().is_some_and(|e| e.embed);
    // The link a reader opens runs the experiment; the snippet's frame too, locked.
    let link = move || format!("{}&run=1", share.get());
    let snippet = move || {
        format!(
            "<iframe src=\"{}&run=1&embed=1&lock=1&hide={hide}\" width=\"800\" height=\"600\" title=\"Interplay experiment\" loading=\"lazy\"></iframe>",
            share.get()
        )
    };
    move || {
        let shown = !share.get().is_empty();
        if embedded {
            return shown.then(|| view! {
                <p class="muted"><a href=link target="_blank" rel="noopener" data-testid=format!("{prefix}open-full")>
                    "Open this experiment in Interplay ↗"</a></p>
            }.into_any());
        }
        shown.then(|| view! {
            <div class="share">
                <div class="copyrow">
                    <label>"Share link (opens and runs this experiment)"
                        <input type="text" readonly data-testid=format!("{prefix}share-link") prop:value=link/></label>
                    <CopyButton text=Signal::derive(link) testid=format!("{prefix}copy-link")/>
                </div>
                <div class="copyrow">
                    <label>"Embed in course material (one experiment, no navigation, inputs locked, runs on open)"
                        <input type="text" readonly data-testid=format!("{prefix}embed-snippet") prop:value=snippet/></label>
                    <CopyButton text=Signal::derive(snippet) testid=format!("{prefix}copy-embed")/>
                </div>
                {spec_json.map(|json| view! {
                    <p><button on:click=move |_| crate::plots::download("spec.json", "application/json", &json.run(()))>
                        "Export spec (for `interplay run`)"</button></p>
                })}
            </div>
        }.into_any())
    }
}

/// A button that copies `text` to the clipboard and says whether it did.
#[component]
fn CopyButton(
    /// What to copy.
    text: Signal<String>,
    /// The button's test id.
    testid: String,
) -> impl IntoView {
    let said = RwSignal::new(None::<&'static str>);
    let copy = move |_| {
        said.set(None);
        // `navigator.clipboard` exists only on secure pages (https, localhost): a classroom's
        // plain-http host has none, and calling into it would throw.
        let clipboard = web_sys::window()
            .map(|w| w.navigator())
            .and_then(|n| js_sys::Reflect::get(&n, &"clipboard".into()).ok())
            .filter(|c| !c.is_undefined() && !c.is_null())
            .map(wasm_bindgen::JsCast::unchecked_into::<web_sys::Clipboard>);
        let Some(clipboard) = clipboard else {
            said.set(Some(
                "this page cannot copy (it is not served over https): select the text and copy it",
            ));
            return;
        };
        let promise = clipboard.write_text(&text.get_untracked());
        leptos::task::spawn_local(async move {
            let r = wasm_bindgen_futures::JsFuture::from(promise).await;
            said.set(Some(if r.is_ok() {
                "copied"
            } else {
                "the browser did not allow copying: select the text and copy it"
            }));
        });
    };
    view! {
        <span class="copy">
            <button type="button" data-testid=testid on:click=copy>"Copy"</button>
            <span class="muted" role="status" aria-live="polite">{move || said.get().map(|s| format!(" {s}"))}</span>
        </span>
    }
}

/// Embed mode, from the hash query: `embed=1` shows one lab without navigation; `hide=a,b`
/// hides panels by name (`guided`, `model`, `prompt`, `analysis`, `patching`, `ablation`,
/// `head-scores`); `lock=1` makes the experiment's inputs read-only and hides the panels whose
/// state the link does not hold ([`OUTSIDE_THE_LINK`]); `run=1` runs the experiment once when
/// the page opens.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Embed {
    /// Compact mode without navigation.
    pub embed: bool,
    /// Hidden panels.
    pub hidden: Vec<String>,
    /// Inputs read-only.
    pub locked: bool,
    /// Run the link's experiment when the page opens.
    pub run: bool,
}

/// The Circuits panels whose inputs no share link holds (the prompt and its continuation, the
/// analysis, head scores, head ablation and path patching): a locked page hides them, since a
/// reader could only edit them or see them empty.
pub const OUTSIDE_THE_LINK: [&str; 4] = ["prompt", "analysis", "head-scores", "ablation"];

impl Embed {
    /// Read the flags from a hash such as `#/circuits?spec=...&embed=1&hide=guided`.
    pub fn from_hash(hash: &str) -> Self {
        let query = hash.split_once('?').map(|x| x.1).unwrap_or("");
        let mut e = Embed::default();
        for kv in query.split('&') {
            match kv.split_once('=') {
                Some(("embed", v)) => e.embed = v == "1" || v == "true",
                Some(("lock", v)) => e.locked = v == "1" || v == "true",
                Some(("run", v)) => e.run = v == "1" || v == "true",
                Some(("hide", v)) => {
                    e.hidden = v.split(',').map(|x| x.trim().to_string()).collect()
                }
                _ => {}
            }
        }
        e
    }
}

/// Whether a panel is hidden in this page's embed settings.
pub fn hidden(panel: &str) -> bool {
    use_context::<Embed>().is_some_and(|e| {
        e.hidden.iter().any(|h| h == panel) || (e.locked && OUTSIDE_THE_LINK.contains(&panel))
    })
}

/// Whether the link that opened this lab asks for its experiment to run (`run=1`). Read from
/// the hash as the lab opens, not from the embed flags of the page's first load: a "Try this
/// first" link reaches a lab by a change of hash.
pub fn run_requested() -> bool {
    Embed::from_hash(&current_hash()).run
}

/// A lab's result card, placed first in an embed (where the reader came for the result, and
/// the keyboard and screen readers should reach it first) and last elsewhere: `(first, last)`.
pub fn result_first<V>(result: V) -> (Option<V>, Option<V>) {
    if use_context::<Embed>().is_some_and(|e| e.embed) {
        (Some(result), None)
    } else {
        (None, Some(result))
    }
}

/// Whether inputs are locked.
pub fn locked() -> bool {
    use_context::<Embed>().is_some_and(|e| e.locked)
}

/// The spec of type `T` in the page's hash: `None` when the hash holds none or another experiment
/// of `T`'s lab (another panel's); an error (a message for the page) when the link is damaged or
/// belongs to another lab. Links from before the `"lab"` tag still open.
pub fn read_share_link<T: LabSpec>() -> Option<Result<T, LabError>> {
    read_link::<T>(&current_hash())
}

/// The spec as "Export spec" writes it: the one experiment type, tagged with its lab, which
/// `interplay run` reads.
pub fn export_json<T: LabSpec>(spec: &T) -> String {
    spec.clone().into_experiment().to_json()
}
