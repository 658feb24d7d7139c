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
    download_parts(
        name,
        mime,
        js_sys::Array::of1(&wasm_bindgen::JsValue::from_str(contents)),
    );
}

/// Offer binary `bytes` as a file download.
pub fn download_bytes(name: &str, bytes: &[u8]) {
    let array = js_sys::Uint8Array::from(bytes);
    download_parts(name, "application/octet-stream", js_sys::Array::of1(&array));
}

/// A Blob of `parts` (strings or byte arrays: the binding's "str sequence" takes any part).
fn download_parts(name: &str, mime: &str, parts: js_sys::Array) {
    let Some(doc) = web_sys::window().and_then(|w| w.document()) else {
        return;
    };
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

/// Download the figure with test id `testid` as a PNG at twice its on-screen size (on white):
/// the SVG is drawn into a canvas through an image, all inside the page.
pub fn export_png(testid: &str) {
    let testid = testid.to_string();
    leptos::task::spawn_local(async move {
        match png_data_url(&testid).await {
            Ok(url) => save_url(&format!("{testid}.png"), &url),
            Err(e) => web_sys::console::warn_1(&format!("PNG export failed: {e:?}").into()),
        }
    });
}

async fn png_data_url(testid: &str) -> Result<String, wasm_bindgen::JsValue> {
    use wasm_bindgen::JsValue;
    let doc = web_sys::window()
        .and_then(|w| w.document())
        .ok_or_else(|| JsValue::from_str("no document"))?;
    let svg = doc
        .query_selector(&format!("[data-testid='{testid}'] svg"))?
        .ok_or_else(|| JsValue::from_str("no figure"))?;
    let rect = svg.get_bounding_client_rect();
    let (w, h) = (rect.width().max(1.0), rect.height().max(1.0));
    // A copy with its on-screen size fixed (line plots scale to 100% width).
    let copy: web_sys::Element = svg.clone_node_with_deep(true)?.dyn_into()?;
    copy.set_attribute("width", &format!("{w}"))?;
    copy.set_attribute("height", &format!("{h}"))?;
    let opts = web_sys::BlobPropertyBag::new();
    opts.set_type("image/svg+xml");
    let blob = web_sys::Blob::new_with_str_sequence_and_options(
        &js_sys::Array::of1(&JsValue::from_str(&copy.outer_html())),
        &opts,
    )?;
    let url = web_sys::Url::create_object_url_with_blob(&blob)?;
    let img = web_sys::HtmlImageElement::new()?;
    img.set_src(&url);
    let loaded = wasm_bindgen_futures::JsFuture::from(img.decode()).await;
    let _ = web_sys::Url::revoke_object_url(&url);
    loaded?;
    let canvas: web_sys::HtmlCanvasElement = doc.create_element("canvas")?.dyn_into()?;
    canvas.set_width((2.0 * w).round() as u32);
    canvas.set_height((2.0 * h).round() as u32);
    let ctx: web_sys::CanvasRenderingContext2d = canvas
        .get_context("2d")?
        .ok_or_else(|| JsValue::from_str("no 2d canvas"))?
        .dyn_into()?;
    ctx.set_fill_style_str("#ffffff");
    ctx.fill_rect(0.0, 0.0, 2.0 * w, 2.0 * h);
    ctx.scale(2.0, 2.0)?;
    ctx.draw_image_with_html_image_element(&img, 0.0, 0.0)?;
    canvas.to_data_url_with_type("image/png")
}

fn save_url(name: &str, url: &str) {
    if let Some(doc) = web_sys::window().and_then(|w| w.document())
        && let Ok(a) = doc.create_element("a")
        && let Ok(a) = a.dyn_into::<web_sys::HtmlAnchorElement>()
    {
        a.set_href(url);
        a.set_download(name);
        a.click();
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
    /// A fixed colour scale (± this value), shared by maps meant to be compared; else the
    /// map's own largest magnitude.
    #[prop(default = None)]
    scale: Option<f32>,
) -> impl IntoView {
    // Row labels are right-aligned left of the grid: leave room for the longest (~6.5 px/char).
    let longest = rows.iter().map(|r| r.chars().count()).max().unwrap_or(0) as f32;
    let (cw, ch, left, top) = (46.0f32, 18.0f32, (longest * 6.5 + 12.0).max(70.0), 64.0f32);
    let width = left + cw * cols.len() as f32 + 10.0;
    let height = top + ch * rows.len() as f32 + 10.0;
    // The map's own largest magnitude, unless the caller fixes a scale so maps compare.
    let fixed = scale.is_some_and(|s| s.is_finite() && s > 0.0);
    let scale = scale.filter(|_| fixed).unwrap_or_else(|| {
        values
            .iter()
            .flatten()
            .fold(0f32, |m, v| m.max(v.abs()))
            .max(1e-6)
    });
    let bar_id = testid.clone();
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
                let label = on_cell.map(|_| title.clone());
                view! {
                    <rect x=left + c as f32 * cw y=top + r as f32 * ch width=cw - 1.0 height=ch - 1.0
                          fill=diverging(v / scale) data-row=r data-col=c data-value=v
                          style=if on_cell.is_some() { "cursor:pointer" } else { "" }
                          tabindex=on_cell.map(|_| "0") role=on_cell.map(|_| "button")
                          aria-label=label
                          on:click=move |_| if let Some(cb) = on_cell { cb.run((r, c)) }
                          on:keydown=move |ev| {
                              // Keyboard users open a cell like a button: Enter or Space.
                              if let Some(cb) = on_cell && (ev.key() == "Enter" || ev.key() == " ") {
                                  ev.prevent_default();
                                  cb.run((r, c));
                              }
                          }>
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
            <ColourBar scale=scale testid=format!("{bar_id}-colourbar")/>
            <figcaption class="muted">{format!("{what}; colour scale ±{} (purple negative, orange positive){}",
                axis_number(scale as f64), if fixed { ", shared by the maps it is compared with" } else { "" })}</figcaption>
            <p>
                <button data-testid=format!("{svg_id}-svg") on:click={let id = svg_id.clone(); move |_| export_svg(&id)}>"Export SVG"</button>" "
                <button data-testid=format!("{svg_id}-png") on:click=move |_| export_png(&svg_id)>"Export PNG"</button>" "
                <button on:click=move |_| download(&format!("{csv_id}.csv"), "text/csv", &csv)>"Export CSV"</button>
            </p>
            <details><summary>"Data table"</summary>
                <table class="data"><thead><tr><th></th>{cols.iter().map(|c| view! { <th scope="col">{c.clone()}</th> }).collect_view()}</tr></thead>
                <tbody>{table_rows}</tbody></table>
            </details>
        </figure>
    }
}

/// The heatmap's colour bar: the diverging scale from −`scale` to +`scale`, with ticks.
#[component]
fn ColourBar(scale: f32, testid: String) -> impl IntoView {
    let (w, left, bar_h) = (240.0f32, 8.0f32, 10.0f32);
    let stops = (0..=10)
        .map(|i| {
            let t = i as f32 / 10.0;
            view! { <stop offset=format!("{}%", i * 10) stop-color=diverging(2.0 * t - 1.0)/> }
        })
        .collect_view();
    let grad = format!("{testid}-grad");
    let ticks = nice_ticks(-(scale as f64), scale as f64, 4)
        .into_iter()
        .map(|v| {
            let x = left + w * (v as f32 / scale + 1.0) / 2.0;
            view! {
                <line x1=x y1=bar_h x2=x y2=bar_h + 3.0 stroke="#666"/>
                <text x=x y=bar_h + 13.0 font-size="10" text-anchor="middle">{axis_number(v)}</text>
            }
        })
        .collect_view();
    view! {
        <svg xmlns="http://www.w3.org/2000/svg" width=w + 2.0 * left height="28" data-testid=testid.clone()
             data-scale=scale.to_string() role="img" aria-label=format!("colour scale from −{scale} to {scale}")>
            <defs><linearGradient id=grad.clone()>{stops}</linearGradient></defs>
            <rect x=left y="0" width=w height=bar_h fill=format!("url(#{grad})") stroke="#ccc"/>
            {ticks}
        </svg>
    }
}

/// Colour-blind-safe line colours: Okabe–Ito's palette without its yellow (too pale on white).
/// Past seven series they repeat, dashed.
pub const LINE_COLOURS: [&str; 7] = [
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000",
];

/// About `n` round values (steps of 1, 2 or 5 × 10^k) from `lo` to `hi`, for axis ticks.
pub fn nice_ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let span = hi - lo;
    if !(span.is_finite() && span > 0.0) {
        return vec![lo];
    }
    let raw = span / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * mag);
    let (first, last) = ((lo / step - 1e-9).ceil(), (hi / step + 1e-9).floor());
    (first as i64..=last as i64)
        .map(|k| k as f64 * step)
        .map(|v| if v.abs() < step * 1e-9 { 0.0 } else { v })
        .collect()
}

/// Series `k`'s colour and whether it is dashed: past seven series the colours repeat, dashed;
/// from `dashed_from` on, dashed in the colour of the series `dashed_from` before.
fn style(k: usize, dashed_from: Option<usize>) -> (&'static str, bool) {
    let n_c = LINE_COLOURS.len();
    match dashed_from {
        Some(d) if d > 0 && k >= d => (LINE_COLOURS[(k - d) % n_c], true),
        _ => (LINE_COLOURS[k % n_c], k >= n_c),
    }
}

/// One named series of a [`LinePlot`].
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Legend name.
    pub name: String,
    /// y values at x = x0, x0 + dx, ... (or at the plot's `xs`)
    pub values: Vec<f64>,
}

/// A line plot of one or more series over a shared x axis, with a data-table alternative and
/// SVG/CSV export. Long series are drawn decimated (every value stays in the table and CSV).
#[component]
pub fn LinePlot(
    /// The series.
    series: Vec<Series>,
    /// x of the first value.
    #[prop(default = 0.0)]
    x0: f64,
    /// x step between values.
    #[prop(default = 1.0)]
    dx: f64,
    /// Explicit x values (unevenly spaced points); overrides `x0`, `dx`.
    #[prop(optional)]
    xs: Option<Vec<f64>>,
    /// A fixed y range (widened if a value falls outside), e.g. 0–1 for accuracies, so plots
    /// of different runs compare at a glance.
    #[prop(optional)]
    y_range: Option<(f64, f64)>,
    /// A dashed horizontal reference line and its label, e.g. chance level.
    #[prop(optional)]
    reference: Option<(f64, String)>,
    /// Series from this index on are drawn dashed in the colours of the series this many
    /// before them (a control beside each measured series).
    #[prop(optional)]
    dashed_from: Option<usize>,
    /// x axis label.
    xlabel: String,
    /// y axis label.
    ylabel: String,
    /// Test id of the figure.
    testid: String,
) -> impl IntoView {
    let (w, h, left, bottom) = (640.0f64, 200.0f64, 56.0f64, 30.0f64);
    let finite = series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .filter(|v| v.is_finite());
    let (lo, hi) = finite.fold(
        y_range.unwrap_or((f64::INFINITY, f64::NEG_INFINITY)),
        |(l, h), v| (l.min(v), h.max(v)),
    );
    let (lo, hi) = if lo.is_finite() && hi > lo {
        (lo, hi)
    } else if lo.is_finite() {
        (lo - 1.0, lo + 1.0)
    } else {
        (0.0, 1.0)
    };
    let longest = series.iter().map(|s| s.values.len()).max().unwrap_or(0);
    // At least two x positions, so a single point still gets an axis.
    let n = longest.max(2);
    let step = (n / 1500).max(1);
    let xs = xs.filter(|x| !x.is_empty() && x.len() >= longest && x.iter().all(|v| v.is_finite()));
    let x_at = {
        let xs = xs.clone();
        move |i: usize| match &xs {
            // Past the given xs (a lone point): one unit per step.
            Some(x) => x
                .get(i)
                .copied()
                .unwrap_or_else(|| x[x.len() - 1] + (i + 1 - x.len()) as f64),
            None => x0 + dx * i as f64,
        }
    };
    let (xmin, xmax) = (x_at(0), x_at(n - 1));
    let span = if xmax > xmin { xmax - xmin } else { 1.0 };
    let px = {
        let x_at = x_at.clone();
        move |i: usize| left + (w - left - 10.0) * (x_at(i) - xmin) / span
    };
    let py = move |v: f64| 8.0 + (h - bottom - 8.0) * (1.0 - (v - lo) / (hi - lo));
    let y_ticks = nice_ticks(lo, hi, 5);
    let x_ticks = nice_ticks(xmin, xmin + span, 6);
    let lines = series
        .iter()
        .enumerate()
        .map(|(k, s)| {
            let pts: String = s
                .values
                .iter()
                .enumerate()
                .step_by(step)
                .filter(|(_, v)| v.is_finite())
                .map(|(i, &v)| format!("{:.1},{:.1} ", px(i), py(v)))
                .collect();
            let (colour, dashed) = style(k, dashed_from);
            let dash = if dashed { "5 3" } else { "none" };
            view! { <polyline points=pts fill="none" stroke=colour stroke-dasharray=dash stroke-width="1.4"><title>{s.name.clone()}</title></polyline> }
        })
        .collect_view();
    let legend = series
        .iter()
        .enumerate()
        .map(|(k, s)| {
            let (colour, dashed) = style(k, dashed_from);
            view! { <span style=format!("color:{colour}")>{format!("{} {} ", if dashed { "╍" } else { "━" }, s.name)}</span> }
        })
        .collect_view();
    // The CSV and the data table are made when asked for: a streamed run redraws this plot
    // often, and a table of hundreds of rows would cost the page more than the plot itself.
    let csv = {
        let (series, x_at) = (series.clone(), x_at.clone());
        move || {
            let mut out = format!(
                "x,{}\n",
                series
                    .iter()
                    .map(|s| s.name.clone())
                    .collect::<Vec<_>>()
                    .join(",")
            );
            for i in 0..n {
                let vals: Vec<String> = series
                    .iter()
                    .map(|s| s.values.get(i).map(|v| v.to_string()).unwrap_or_default())
                    .collect();
                out += &format!("{},{}\n", x_at(i), vals.join(","));
            }
            out
        }
    };
    let table_open = RwSignal::new(false);
    let table_rows = {
        let series = series.clone();
        move || {
            table_open.get().then(|| {
                (0..n.min(200))
                    .map(|i| view! { <tr><th scope="row">{format!("{}", x_at(i))}</th>
                        {series.iter().map(|s| view! { <td>{s.values.get(i).map(|v| format!("{v:.4}")).unwrap_or_default()}</td> }).collect_view()}</tr> })
                    .collect_view()
            })
        }
    };
    let (svg_id, csv_id) = (testid.clone(), testid.clone());
    view! {
        <figure class="lineplot" data-testid=testid>
            <svg xmlns="http://www.w3.org/2000/svg" viewBox=format!("0 0 {w} {h}") width="100%" role="img" aria-label=format!("{ylabel} against {xlabel}")>
                <line x1=left y1=h - bottom x2=w - 10.0 y2=h - bottom stroke="#999"/>
                <line x1=left y1=8.0 x2=left y2=h - bottom stroke="#999"/>
                {y_ticks.into_iter().map(|v| { let y = py(v); view! {
                    <line x1=left y1=y x2=w - 10.0 y2=y stroke="#eee"/>
                    <line x1=left - 3.0 y1=y x2=left y2=y stroke="#999"/>
                    <text x=left - 5.0 y=y + 3.5 text-anchor="end" font-size="10" class="tick">{axis_number(v)}</text>
                }}).collect_view()}
                {x_ticks.into_iter().map(|v| { let x = left + (w - left - 10.0) * (v - xmin) / span; view! {
                    <line x1=x y1=h - bottom x2=x y2=h - bottom + 3.0 stroke="#999"/>
                    <text x=x y=h - bottom + 13.0 text-anchor="middle" font-size="10" class="tick">{axis_number(v)}</text>
                }}).collect_view()}
                <text x=(left + w) / 2.0 y=h - 2.0 text-anchor="middle" font-size="11">{xlabel.clone()}</text>
                <text x=12.0 y=(h - bottom) / 2.0 font-size="11" transform=format!("rotate(-90 12 {})", (h - bottom) / 2.0) text-anchor="middle">{ylabel.clone()}</text>
                {reference.filter(|(y, _)| y.is_finite() && *y >= lo && *y <= hi).map(|(y, label)| view! {
                    <line x1=left y1=py(y) x2=w - 10.0 y2=py(y) stroke="#777" stroke-dasharray="3 3" data-reference=y.to_string()/>
                    <text x=w - 12.0 y=py(y) - 3.0 text-anchor="end" font-size="10" fill="#555">{label}</text>
                })}
                {lines}
            </svg>
            <figcaption class="muted">{legend}</figcaption>
            <p>
                <button on:click={let id = svg_id.clone(); move |_| export_svg(&id)}>"Export SVG"</button>" "
                <button on:click=move |_| export_png(&svg_id)>"Export PNG"</button>" "
                <button on:click=move |_| download(&format!("{csv_id}.csv"), "text/csv", &csv())>"Export CSV"</button>
            </p>
            <details on:toggle=move |ev| table_open.set(details_open(&ev))><summary>"Data table"</summary>
                <table class="data"><thead><tr><th>{xlabel}</th>{series.iter().map(|s| view! { <th scope="col">{s.name.clone()}</th> }).collect_view()}</tr></thead>
                <tbody>{table_rows}</tbody></table>
            </details>
        </figure>
    }
}

/// Whether the `<details>` element a toggle event came from is now open.
fn details_open(ev: &leptos::ev::Event) -> bool {
    ev.target()
        .and_then(|t| js_sys::Reflect::get(&t, &"open".into()).ok())
        .and_then(|v| v.as_bool())
        .unwrap_or(false)
}

/// An axis end label: whole numbers as they are, others to three decimals without trailing
/// zeros, and very small magnitudes in scientific notation (a ridge of 1e-7 stays readable).
fn axis_number(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e15 {
        format!("{v}")
    } else if v.abs() >= 0.01 {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{v:.2e}")
    }
}

/// One point of a [`ScatterPlot`].
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// Its name (a tooltip and a CSV column), e.g. `head 19.2`.
    pub name: String,
    /// Which group it belongs to (a colour and a legend entry).
    pub group: usize,
    /// x.
    pub x: f64,
    /// y.
    pub y: f64,
}

/// Points in the plane with the diagonal `y = x` drawn (equal effect on both axes), groups in
/// colours, and SVG/PNG/CSV export.
#[component]
pub fn ScatterPlot(
    /// The points.
    points: Vec<Point>,
    /// Group names, by index.
    groups: Vec<String>,
    /// x axis label.
    xlabel: String,
    /// y axis label.
    ylabel: String,
    /// Test id of the figure.
    testid: String,
) -> impl IntoView {
    let (w, h, left, bottom) = (420.0f64, 360.0f64, 56.0f64, 34.0f64);
    let finite: Vec<&Point> = points
        .iter()
        .filter(|p| p.x.is_finite() && p.y.is_finite())
        .collect();
    // One range for both axes, so the diagonal is the 45° line and 0 is always shown.
    let (lo, hi) = finite.iter().fold((0.0f64, 0.0f64), |(l, h), p| {
        (l.min(p.x).min(p.y), h.max(p.x).max(p.y))
    });
    let (lo, hi) = if hi > lo {
        (lo, hi)
    } else {
        (lo - 1.0, lo + 1.0)
    };
    let pad = 0.04 * (hi - lo);
    let (lo, hi) = (lo - pad, hi + pad);
    let px = move |v: f64| left + (w - left - 10.0) * (v - lo) / (hi - lo);
    let py = move |v: f64| 8.0 + (h - bottom - 8.0) * (1.0 - (v - lo) / (hi - lo));
    let ticks = nice_ticks(lo, hi, 5);
    let dots = finite
        .iter()
        .map(|p| {
            let colour = LINE_COLOURS[p.group % LINE_COLOURS.len()];
            let title = format!("{}: {:.3}, {:.3}", p.name, p.x, p.y);
            view! { <circle cx=px(p.x) cy=py(p.y) r="3.2" fill=colour fill-opacity="0.75"><title>{title}</title></circle> }
        })
        .collect_view();
    let legend = groups
        .iter()
        .enumerate()
        .map(|(k, g)| {
            let colour = LINE_COLOURS[k % LINE_COLOURS.len()];
            view! { <span style=format!("color:{colour}")>{format!("● {g} ")}</span> }
        })
        .collect_view();
    let csv = {
        let (points, groups) = (points.clone(), groups.clone());
        let (xl, yl) = (xlabel.clone(), ylabel.clone());
        move || {
            let mut out = format!("name,group,{xl},{yl}\n");
            for p in &points {
                let g = groups.get(p.group).cloned().unwrap_or_default();
                out += &format!("{},{g},{},{}\n", p.name, p.x, p.y);
            }
            out
        }
    };
    let (svg_id, csv_id) = (testid.clone(), testid.clone());
    view! {
        <figure class="scatter" data-testid=testid data-points=points.len()>
            <svg xmlns="http://www.w3.org/2000/svg" viewBox=format!("0 0 {w} {h}") width="100%" style="max-width:32rem" role="img" aria-label=format!("{ylabel} against {xlabel}")>
                <line x1=left y1=h - bottom x2=w - 10.0 y2=h - bottom stroke="#999"/>
                <line x1=left y1=8.0 x2=left y2=h - bottom stroke="#999"/>
                {ticks.iter().map(|&v| view! {
                    <line x1=left y1=py(v) x2=w - 10.0 y2=py(v) stroke="#eee"/>
                    <text x=left - 5.0 y=py(v) + 3.5 text-anchor="end" font-size="10" class="tick">{axis_number(v)}</text>
                    <line x1=px(v) y1=8.0 x2=px(v) y2=h - bottom stroke="#eee"/>
                    <text x=px(v) y=h - bottom + 13.0 text-anchor="middle" font-size="10" class="tick">{axis_number(v)}</text>
                }).collect_view()}
                <line x1=px(lo) y1=py(lo) x2=px(hi) y2=py(hi) stroke="#777" stroke-dasharray="3 3"><title>"equal effect on both"</title></line>
                <text x=(left + w) / 2.0 y=h - 2.0 text-anchor="middle" font-size="11">{xlabel.clone()}</text>
                <text x=12.0 y=(h - bottom) / 2.0 font-size="11" transform=format!("rotate(-90 12 {})", (h - bottom) / 2.0) text-anchor="middle">{ylabel.clone()}</text>
                {dots}
            </svg>
            <figcaption class="muted">{legend}"╌ equal effect on both"</figcaption>
            <p>
                <button on:click={let id = svg_id.clone(); move |_| export_svg(&id)}>"Export SVG"</button>" "
                <button on:click=move |_| export_png(&svg_id)>"Export PNG"</button>" "
                <button on:click=move |_| download(&format!("{csv_id}.csv"), "text/csv", &csv())>"Export CSV"</button>
            </p>
        </figure>
    }
}
