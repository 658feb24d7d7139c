//! Shared plot pieces: a diverging heatmap (colour-blind-safe purple–white–orange, centred on
//! zero) with hover values and a data-table alternative, and data export.

use leptos::prelude::*;
use wasm_bindgen::JsCast;

/// PuOr-style diverging colour for `v` in `[-1, 1]` (purple < 0 < orange), colour-blind safe.
pub fn diverging(v: f32) -> String {
    let v = v.clamp(-1.0, 1.0);
    let (r, g, b) = if v >= 0.0 {
        (179.0, 88.0, 6.0) // #b35806
    } else {
        (84.0, 39.0, 136.0) // #542788
    };
    let t = v.abs();
    let mix = |c: f32| (255.0 + (c - 255.0) * t).round() as u8;
    format!("#{:02x}{:02x}{:02x}", mix(r), mix(g), mix(b))
}

/// Offer `contents` as a file download.
pub fn download(name: &str, mime: &str, contents: &str) {
    let Some(doc) = web_sys::window().and_then(|w| w.document()) else {
        return;
    };
    let parts = js_sys::Array::of1(&wasm_bindgen::JsValue::from_str(contents));
    let opts = web_sys::BlobPropertyBag::new();
    opts.set_type(mime);
    let Ok(blob) = web_sys::Blob::new_with_str_sequence_and_options(&parts, &opts) else {
        return;
    };
    let Ok(url) = web_sys::Url::create_object_url_with_blob(&blob) else {
        return;
    };
    if let Ok(a) = doc.create_element("a")
        && let Ok(a) = a.dyn_into::<web_sys::HtmlAnchorElement>()
    {
        a.set_href(&url);
        a.set_download(name);
        a.click();
    }
    let _ = web_sys::Url::revoke_object_url(&url);
}

/// Download the SVG of the figure with test id `testid` as a standalone file.
pub fn export_svg(testid: &str) {
    let Some(doc) = web_sys::window().and_then(|w| w.document()) else {
        return;
    };
    if let Ok(Some(svg)) = doc.query_selector(&format!("[data-testid='{testid}'] svg")) {
        download(&format!("{testid}.svg"), "image/svg+xml", &svg.outer_html());
    }
}

/// A heatmap of `values[row][col]`, coloured symmetrically around zero.
#[component]
pub fn Heatmap(
    /// Row labels (e.g. layers).
    rows: Vec<String>,
    /// Column labels (e.g. tokens or heads).
    cols: Vec<String>,
    /// The values.
    values: Vec<Vec<f32>>,
    /// What a value means (shown on hover and in the table).
    what: String,
    /// Test id of the figure.
    testid: String,
    /// Called with `(row, col)` when a cell is clicked.
    #[prop(optional)]
    on_cell: Option<Callback<(usize, usize)>>,
) -> impl IntoView {
    let (cw, ch, left, top) = (46.0f32, 18.0f32, 70.0f32, 64.0f32);
    let width = left + cw * cols.len() as f32 + 10.0;
    let height = top + ch * rows.len() as f32 + 10.0;
    let scale = values
        .iter()
        .flatten()
        .fold(0f32, |m, v| m.max(v.abs()))
        .max(1e-6);
    let json = serde_json::to_string(&values).unwrap_or_default();
    let csv = {
        let mut s = format!("row,{}\n", cols.join(","));
        for (l, row) in rows.iter().zip(&values) {
            let vals: Vec<String> = row.iter().map(f32::to_string).collect();
            s += &format!("{l},{}\n", vals.join(","));
        }
        s
    };
    let svg_id = testid.clone();
    let csv_id = testid.clone();
    let cells = values
        .iter()
        .enumerate()
        .flat_map(|(r, row)| {
            let rows = rows.clone();
            let cols = cols.clone();
            let what = what.clone();
            row.iter().enumerate().map(move |(c, &v)| {
                let title = format!("{} · {}: {what} = {v:.4}", rows[r], cols.get(c).cloned().unwrap_or_default());
                view! {
                    <rect x=left + c as f32 * cw y=top + r as f32 * ch width=cw - 1.0 height=ch - 1.0
                          fill=diverging(v / scale) data-row=r data-col=c data-value=v
                          style=if on_cell.is_some() { "cursor:pointer" } else { "" }
                          on:click=move |_| if let Some(cb) = on_cell { cb.run((r, c)) }>
                        <title>{title}</title>
                    </rect>
                }
            })
        })
        .collect_view();
    let row_labels = rows
        .iter()
        .enumerate()
        .map(|(r, l)| view! { <text x=left - 6.0 y=top + r as f32 * ch + ch * 0.7 text-anchor="end" font-size="11">{l.clone()}</text> })
        .collect_view();
    let col_labels = cols
        .iter()
        .enumerate()
        .map(|(c, l)| {
            let x = left + c as f32 * cw + cw / 2.0;
            view! { <text x=x y=top - 6.0 font-size="11" transform=format!("rotate(-45 {x} {})", top - 6.0)>{l.clone()}</text> }
        })
        .collect_view();
    let table_rows = values
        .iter()
        .zip(rows.iter())
        .map(|(row, l)| view! {
            <tr><th scope="row">{l.clone()}</th>{row.iter().map(|v| view! { <td>{format!("{v:.4}")}</td> }).collect_view()}</tr>
        })
        .collect_view();
    view! {
        <figure class="heatmap" data-testid=testid data-values=json>
            <svg xmlns="http://www.w3.org/2000/svg" width=width height=height role="img" aria-label=what.clone()>
                {col_labels}{row_labels}{cells}
            </svg>
            <figcaption class="muted">{format!("{what}; colour scale ±{scale:.3} (purple negative, orange positive)")}</figcaption>
            <p>
                <button data-testid=format!("{svg_id}-svg") on:click=move |_| export_svg(&svg_id)>"Export SVG"</button>" "
                <button on:click=move |_| download(&format!("{csv_id}.csv"), "text/csv", &csv)>"Export CSV"</button>
            </p>
            <details><summary>"Data table"</summary>
                <table class="data"><thead><tr><th></th>{cols.iter().map(|c| view! { <th scope="col">{c.clone()}</th> }).collect_view()}</tr></thead>
                <tbody>{table_rows}</tbody></table>
            </details>
        </figure>
    }
}
