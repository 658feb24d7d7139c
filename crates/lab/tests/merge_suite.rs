//! The Merge lab's suite and spec against NumPy goldens (`tests/fixtures/make_suite_goldens.py`),
//! on the CPU device and on wgpu.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use burn::tensor::Device;
use interplay_lab::mergelab::{
    AdaOptions, FineTuneSpec, FineTuning, Granularity, LabMethod, MergeSpec, Objective,
};
use interplay_lab::suite::TrainOptions;
use interplay_lab::suite::{self, Dataset, Mlp, Split, Task};
use interplay_lab::{Experiment, share};
use interplay_models::device::read_f32;
use interplay_models::patching::no_progress;
use serde_json::Value;

fn golden() -> Value {
    let text = include_str!("../../../tests/fixtures/merge/suite_golden.json");
    serde_json::from_str(text).expect("golden JSON")
}

async fn suite_matches_numpy(device: &Device) {
    let g = golden();
    for model in ["base", "mirror", "flip", "rotate", "invert"] {
        let task = if model == "base" {
            None
        } else {
            Some(model.parse::<Task>().expect("task"))
        };
        let w = suite::bundled(task).expect("bundled model");
        let mlp = Mlp::upload(&w, device).expect("upload");
        for t in Task::ALL {
            let want = &g["models"][model][t.name()];
            let data = Dataset::task(t, Split::Test).expect("digits");
            let logits = read_f32(mlp.forward(data.inputs(device)))
                .await
                .expect("read");
            for (i, row) in want["logits"].as_array().expect("rows").iter().enumerate() {
                for (j, v) in row.as_array().expect("row").iter().enumerate() {
                    let (ours, theirs) = (logits[i * 10 + j] as f64, v.as_f64().expect("f64"));
                    assert!(
                        (ours - theirs).abs() <= 1e-4 * theirs.abs().max(1.0),
                        "{model} on {t}: logit [{i},{j}] {ours} vs NumPy {theirs}"
                    );
                }
            }
            let pred = suite::predict(&mlp, data.inputs(device))
                .await
                .expect("predict");
            let acc = suite::accuracy(&pred, &data.y);
            let want = want["accuracy"].as_f64().expect("acc");
            assert!((acc - want).abs() < 1e-9, "{model} on {t}: {acc} vs {want}");
        }
    }
    // Task arithmetic of all four vectors through the spec equals NumPy's.
    let spec = MergeSpec {
        method: LabMethod::TaskArithmetic,
        lambda: 0.4,
        ..MergeSpec::default()
    };
    let out = spec.run(device, &mut no_progress).await.expect("merge");
    for (t, acc) in out.columns.iter().zip(&out.merged) {
        let want = g["task_arithmetic"]["accuracy"][t.name()]
            .as_f64()
            .expect("acc");
        assert!(
            (acc - want).abs() < 1e-9,
            "task arithmetic on {t}: {acc} vs {want}"
        );
    }
}

/// The page's guided merges (and the browser test's TIES link) against NumPy: the merged
/// model, every λ of the sweep, the sign-conflict map and the disentanglement map.
async fn guided_merges_match_numpy(device: &Device, on: &str) {
    let g = golden();
    let guided = g["guided"].as_object().expect("guided");
    let close = |what: &str, got: f64, want: &Value| {
        let want = want.as_f64().expect("f64");
        assert!((got - want).abs() < 1e-9, "{what}: {got} vs NumPy {want}");
    };
    let by_task = |what: &str, got: &[f64], want: &Value| {
        assert_eq!(got.len(), Task::ALL.len(), "{what}: one accuracy per task");
        for (t, acc) in Task::ALL.iter().zip(got) {
            close(&format!("{what} on {t}"), *acc, &want[t.name()]);
        }
    };
    let mut checked = 0;
    for (name, case) in guided {
        if name == "margin" {
            continue;
        }
        let spec: MergeSpec = serde_json::from_value(case["spec"].clone()).expect("spec");
        let out = spec.run(device, &mut no_progress).await.expect("merge");
        let at = format!("{name} on {on}");
        by_task(&format!("{at}: merged"), &out.merged, &case["merged"]);
        let sweep = case["sweep"].as_array().expect("sweep");
        assert_eq!(out.sweep.len(), sweep.len(), "{at}: sweep rows");
        for (row, want) in out.sweep.iter().zip(sweep) {
            close(&format!("{at}: λ"), row.lambda, &want["lambda"]);
            by_task(
                &format!("{at}: λ = {}", row.lambda),
                &row.accuracy,
                &want["accuracy"],
            );
        }
        let signs = case["signs"].as_object().expect("signs");
        assert_eq!(out.signs.tensors.len(), signs.len(), "{at}: sign map rows");
        assert_eq!(out.signs.values.len(), signs.len(), "{at}: sign map values");
        for (tensor, row) in out.signs.tensors.iter().zip(&out.signs.values) {
            assert_eq!(
                row.len(),
                out.signs.pairs.len(),
                "{at}: sign map {tensor} pairs"
            );
            let want = signs[tensor].as_array().expect("row");
            assert_eq!(row.len(), want.len(), "{at}: sign map {tensor}");
            for (pair, (got, want)) in out.signs.pairs.iter().zip(row.iter().zip(want)) {
                close(&format!("{at}: sign conflicts {tensor} {pair}"), *got, want);
            }
        }
        if let Some(want) = case.get("disentanglement") {
            let d = out.disentanglement.as_ref().expect("map");
            let want = want.as_array().expect("grid");
            assert_eq!(d.error.len(), want.len(), "{at}: α rows");
            for (i, (row, w)) in d.error.iter().zip(want).enumerate() {
                let w = w.as_array().expect("row");
                assert_eq!(row.len(), w.len(), "{at}: α columns");
                for (j, (got, want)) in row.iter().zip(w).enumerate() {
                    close(&format!("{at}: ξ[{i}][{j}]"), *got, want);
                }
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 1, "the disentanglement case");
}

/// The guided linearised run (and the browser test's linearised link): the linearised fine-tunes,
/// their task arithmetic at λ = 0.4 and its sweep, each evaluated as the linearised network,
/// against `torch.func.jvp` in float64 (make_adamerging_goldens.py `linearised`).
async fn linearised_run_matches_pytorch(device: &Device, on: &str) {
    let g = interplay_testkit::read_json(
        &interplay_testkit::fixtures().join("merge/adamerging_golden.json"),
    );
    let want = &g["linearised"];
    let spec: MergeSpec = serde_json::from_value(want["spec"].clone()).expect("spec");
    assert_eq!(spec.fine_tuning, FineTuning::Linearised);
    let out = spec.run(device, &mut no_progress).await.expect("merge");
    let by_task = |what: &str, got: &[f64], want: &Value| {
        assert_eq!(got.len(), Task::ALL.len(), "{what}");
        for (t, acc) in Task::ALL.iter().zip(got) {
            let w = want[t.name()].as_f64().expect("acc");
            assert!(
                (acc - w).abs() < 1e-9,
                "{what} on {t} ({on}): {acc} vs PyTorch {w}"
            );
        }
    };
    for t in &spec.tasks {
        let name = format!("fine-tuned on {t} (linearised)");
        let row = out
            .rows
            .iter()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("no row {name}"));
        by_task(&name, &row.accuracy, &want["fine_tuned"][t.name()]);
    }
    by_task("merged", &out.merged, &want["merged"]);
    let sweep = want["sweep"].as_array().expect("sweep");
    assert_eq!(out.sweep.len(), sweep.len());
    for (row, w) in out.sweep.iter().zip(sweep) {
        assert_eq!(Some(row.lambda), w["lambda"].as_f64());
        by_task(
            &format!("λ = {}", row.lambda),
            &row.accuracy,
            &w["accuracy"],
        );
    }
}

#[test]
fn linearised_run_matches_pytorch_on_cpu() {
    pollster::block_on(linearised_run_matches_pytorch(&Device::flex(), "cpu"));
}

#[test]
fn linearised_run_matches_pytorch_on_wgpu() {
    let Some(dev) = interplay_testkit::wgpu_device() else {
        return;
    };
    pollster::block_on(linearised_run_matches_pytorch(&dev.device, "wgpu"));
}

/// Page fine-tunes (standard and linearised, and the browser test's run of the page's panel:
/// rotate, 3 epochs, seed 2) against the same training in PyTorch float64: the seeded minibatch
/// order restated, `torch.optim.Adam`, autograd (`torch.func.jvp` for the linearised network);
/// each epoch's mean loss and the result's accuracy on every task.
async fn fine_tunes_match_pytorch(device: &Device, on: &str) {
    let g = interplay_testkit::read_json(
        &interplay_testkit::fixtures().join("merge/adamerging_golden.json"),
    );
    let base = suite::bundled(None).expect("base");
    let tests = suite::test_sets(device).expect("digits");
    let runs = g["fine_tunes"].as_array().expect("fine-tunes");
    assert_eq!(runs.len(), 3);
    // The last is the browser test's run of the page's panel: its options are the panel's
    // (TrainOptions::fine_tune), 3 epochs, on rotate.
    let panel = &runs[2];
    assert_eq!(panel["task"], "rotate");
    assert_eq!(
        serde_json::from_value::<TrainOptions>(panel["options"].clone()).expect("options"),
        TrainOptions {
            epochs: 3,
            ..TrainOptions::fine_tune()
        }
    );
    for r in runs {
        let task: Task = r["task"].as_str().unwrap().parse().expect("task");
        let opts: TrainOptions = serde_json::from_value(r["options"].clone()).expect("options");
        let at = format!("{task} (linearised {}) on {on}", opts.linearised);
        let data = Dataset::task(task, Split::Train).expect("digits");
        let trained = suite::train(device, &base, &data, &opts, &mut |_| {
            Box::pin(async { true })
        })
        .await
        .expect("trains");
        let want: Vec<f64> = r["losses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(trained.losses.len(), want.len(), "{at}: epochs");
        let worst = trained
            .losses
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs() / b.abs())
            .fold(0f64, f64::max);
        eprintln!(
            "{at} (seed {}): worst loss error rel {worst:.1e}",
            opts.seed
        );
        for (i, (a, b)) in trained.losses.iter().zip(&want).enumerate() {
            assert!(
                (a - b).abs() <= 1e-4 * b.abs(),
                "{at}: epoch {i} loss {a} vs PyTorch {b}"
            );
        }
        let acc = suite::evaluate(
            device,
            &trained.weights,
            opts.linearised.then_some(&base),
            &tests,
        )
        .await
        .expect("evaluates");
        assert_eq!(acc.len(), Task::ALL.len(), "{at}: one accuracy per task");
        for (t, a) in Task::ALL.iter().zip(&acc) {
            let w = r["accuracy"][t.name()].as_f64().unwrap();
            assert!(
                (a - w).abs() < 1e-9,
                "{at}: accuracy on {t} {a} vs PyTorch {w}"
            );
        }
    }
}

#[test]
fn fine_tunes_match_pytorch_on_cpu() {
    pollster::block_on(fine_tunes_match_pytorch(&Device::flex(), "cpu"));
}

#[test]
fn fine_tunes_match_pytorch_on_wgpu() {
    let Some(dev) = interplay_testkit::wgpu_device() else {
        return;
    };
    pollster::block_on(fine_tunes_match_pytorch(&dev.device, "wgpu"));
}

#[test]
fn guided_merges_match_numpy_on_cpu() {
    pollster::block_on(guided_merges_match_numpy(&Device::flex(), "cpu"));
}

#[test]
fn guided_merges_match_numpy_on_wgpu() {
    let Some(dev) = interplay_testkit::wgpu_device() else {
        return;
    };
    pollster::block_on(guided_merges_match_numpy(&dev.device, "wgpu"));
}

#[test]
fn suite_matches_numpy_on_cpu() {
    pollster::block_on(suite_matches_numpy(&Device::flex()));
}

#[test]
fn suite_matches_numpy_on_wgpu() {
    let Some(dev) = interplay_testkit::wgpu_device() else {
        return;
    };
    pollster::block_on(suite_matches_numpy(&dev.device));
}

#[test]
fn spec_round_trips_and_bad_specs_say_why() {
    let spec = MergeSpec {
        method: LabMethod::Adamerging,
        sweep: vec![0.2, 0.4],
        disentangle: vec![Task::Mirror, Task::Flip],
        ..MergeSpec::default()
    };
    let back: MergeSpec = share::decode(&share::encode(&spec)).expect("decode");
    assert_eq!(back, spec);
    let json = serde_json::to_value(Experiment::Merge(spec.clone())).expect("json");
    assert_eq!(json["lab"], "merge");
    assert_eq!(json["tasks"][3], "invert");
    let bad = |s: MergeSpec, needle: &str| {
        let e = s.check().expect_err("refused").to_string();
        assert!(e.contains(needle), "{e:?} lacks {needle:?}");
    };
    bad(
        MergeSpec {
            tasks: vec![],
            ..MergeSpec::default()
        },
        "at least one",
    );
    bad(
        MergeSpec {
            tasks: vec![Task::Digits],
            ..MergeSpec::default()
        },
        "base model's own task",
    );
    bad(
        MergeSpec {
            lambda: f64::NAN,
            ..MergeSpec::default()
        },
        "λ",
    );
    bad(
        MergeSpec {
            density: 0.0,
            ..MergeSpec::default()
        },
        "density",
    );
    bad(
        MergeSpec {
            method: LabMethod::Dare,
            drop: 1.0,
            ..MergeSpec::default()
        },
        "drop probability",
    );
    bad(
        MergeSpec {
            disentangle: vec![Task::Mirror],
            ..MergeSpec::default()
        },
        "two different",
    );
    bad(
        MergeSpec {
            method: LabMethod::Adamerging,
            adamerging: AdaOptions {
                steps: 0,
                ..AdaOptions::default()
            },
            ..MergeSpec::default()
        },
        "steps",
    );
    assert!(share::decode::<MergeSpec>("{\"method\":\"average\"}").is_err());
}

#[test]
fn guided_results_hold_on_the_bundled_suite() {
    let device = Device::flex();
    let run =
        |spec: MergeSpec| pollster::block_on(spec.run(&device, &mut no_progress)).expect("run");
    // Negating the mirror vector forgets mirror far more than the control task.
    let neg = run(MergeSpec {
        tasks: vec![Task::Mirror],
        method: LabMethod::TaskArithmetic,
        lambda: -1.0,
        ..MergeSpec::default()
    });
    let base = &neg.rows[0].accuracy;
    let drop_mirror = base[1] - neg.merged[1];
    let drop_control = base[0] - neg.merged[0];
    assert!(
        drop_mirror > 0.2 && drop_control < drop_mirror / 1.5,
        "{base:?} → {:?}",
        neg.merged
    );

    // Learned coefficients lower their own objective and stay in [0, 1].
    for objective in [Objective::Entropy, Objective::FewShot] {
        let out = run(MergeSpec {
            method: LabMethod::Adamerging,
            lambda: 0.3,
            adamerging: AdaOptions {
                objective,
                granularity: Granularity::LayerWise,
                steps: 30,
                ..AdaOptions::default()
            },
            ..MergeSpec::default()
        });
        let l = out.learned.expect("coefficients");
        assert!(l.losses[29] < l.losses[0], "{objective:?}: {:?}", l.losses);
        assert_eq!((l.coefficients.len(), l.coefficients[0].len()), (4, 3));
        assert!(
            l.coefficients
                .iter()
                .flatten()
                .all(|c| (0.0..=1.0).contains(c))
        );
    }

    // Sweeps, the sign map and the disentanglement map have their shapes and ranges.
    let out = run(MergeSpec {
        sweep: vec![0.0, 0.5],
        disentangle: vec![Task::Mirror, Task::Flip],
        alphas: vec![0.0, 1.0],
        ..MergeSpec::default()
    });
    assert_eq!(
        out.sweep[0].accuracy, out.rows[0].accuracy,
        "λ = 0 is the base"
    );
    assert_eq!(out.signs.values.len(), 6);
    assert_eq!(out.signs.pairs.len(), 7);
    let d = out.disentanglement.expect("map");
    assert_eq!(
        d.error[0][0], 0.0,
        "α = 0 for both is the base on both sides"
    );
    assert!(d.error.iter().flatten().all(|x| (0.0..=2.0).contains(x)));
}

#[test]
fn page_fine_tunes_join_the_merge() {
    let device = Device::flex();
    let spec = MergeSpec {
        tasks: vec![Task::Mirror],
        fine_tunes: vec![FineTuneSpec {
            task: Task::Rotate,
            options: TrainOptions {
                epochs: 3,
                ..TrainOptions::fine_tune()
            },
        }],
        method: LabMethod::TaskArithmetic,
        lambda: 0.5,
        ..MergeSpec::default()
    };
    let json = serde_json::to_value(&spec).expect("json");
    assert_eq!(json["fine_tunes"][0]["epochs"], 3);
    let out = pollster::block_on(spec.run(&device, &mut no_progress)).expect("run");
    // base, 4 bundled fine-tunes, the page fine-tune, the merge
    assert_eq!(out.rows.len(), 7);
    assert!(out.rows[5].name.contains("page fine-tune 1 on rotate"));
    assert!(out.rows[5].accuracy[3] > 0.5, "{:?}", out.rows[5].accuracy);
    assert_eq!(out.normalised.len(), 2);
    assert_eq!(
        out.signs.pairs,
        vec!["mirror / page 1 (rotate)".to_string()]
    );
    // Deterministic: the same spec gives the same numbers.
    let again = pollster::block_on(spec.run(&device, &mut no_progress)).expect("run");
    assert_eq!(again.merged, out.merged);
}

#[test]
fn linearised_fine_tunes_run_as_linearised_models() {
    let device = Device::flex();
    let spec = MergeSpec {
        fine_tuning: FineTuning::Linearised,
        method: LabMethod::TaskArithmetic,
        lambda: 0.0,
        ..MergeSpec::default()
    };
    let out = pollster::block_on(spec.run(&device, &mut no_progress)).expect("run");
    // Each bundled linearised fine-tune, run linearised around the base, learned its task; λ = 0
    // is the base itself.
    for (i, t) in Task::FINE_TUNED.iter().enumerate() {
        let row = &out.rows[1 + i];
        assert!(row.name.contains("linearised"), "{}", row.name);
        let col = Task::ALL.iter().position(|c| c == t).expect("task");
        assert!(row.accuracy[col] > 0.9, "{t}: {:?}", row.accuracy);
    }
    assert_eq!(out.merged, out.rows[0].accuracy);
    // The same weights run as a plain network give other numbers: the mode matters.
    let w = suite::bundled_linearised(Task::Mirror).expect("bundled");
    let tests = suite::test_sets(&device).expect("digits");
    let plain = pollster::block_on(suite::evaluate(&device, &w, None, &tests)).expect("eval");
    assert_ne!(plain, out.rows[1].accuracy);
    // A standard page fine-tune does not join a linearised merge: a message.
    let mixed = MergeSpec {
        fine_tunes: vec![FineTuneSpec {
            task: Task::Rotate,
            options: TrainOptions::fine_tune(),
        }],
        ..spec.clone()
    };
    let err = pollster::block_on(mixed.run(&device, &mut no_progress)).expect_err("mixed");
    assert!(
        err.to_string().contains("set the fine-tuning to standard"),
        "{err}"
    );
    // A linearised page fine-tune trains, and the spec round-trips through JSON.
    let ok = MergeSpec {
        tasks: vec![Task::Mirror],
        fine_tunes: vec![FineTuneSpec {
            task: Task::Rotate,
            options: TrainOptions {
                epochs: 2,
                ..TrainOptions::linearised_fine_tune()
            },
        }],
        ..spec
    };
    let json = serde_json::to_string(&ok).expect("json");
    assert!(
        json.contains("\"linearised\":true") && json.contains("\"fine_tuning\":\"linearised\"")
    );
    assert_eq!(serde_json::from_str::<MergeSpec>(&json).expect("parse"), ok);
    let out = pollster::block_on(ok.run(&device, &mut no_progress)).expect("run");
    assert!(
        out.rows[5].name.contains("linearised"),
        "{}",
        out.rows[5].name
    );
}

/// The numbers a text quotes, in order ("-0.50", "38.7", "25"; a sentence's full stop dropped).
fn numbers(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let digit_at = |k: usize| chars.get(k).is_some_and(char::is_ascii_digit);
        if digit_at(i) || (chars[i] == '-' && digit_at(i + 1)) {
            let start = i;
            i += 1;
            while digit_at(i) || chars.get(i) == Some(&'.') {
                i += 1;
            }
            let n: String = chars[start..i].iter().collect();
            out.push(n.trim_end_matches('.').to_string());
        } else {
            i += 1;
        }
    }
    out
}

/// One λ of a golden sweep: its accuracies and their mean over `tasks`.
struct GoldenRow<'a> {
    lambda: f64,
    accuracy: &'a Value,
    mean: f64,
}

fn golden_sweep<'a>(rows: &'a Value, tasks: &[&str]) -> Vec<GoldenRow<'a>> {
    rows.as_array()
        .expect("sweep")
        .iter()
        .map(|r| GoldenRow {
            lambda: r["lambda"].as_f64().expect("λ"),
            accuracy: &r["accuracy"],
            mean: mean_over(&r["accuracy"], tasks),
        })
        .collect()
}

fn mean_over(accuracy: &Value, tasks: &[&str]) -> f64 {
    tasks
        .iter()
        .map(|t| accuracy[*t].as_f64().expect("accuracy"))
        .sum::<f64>()
        / tasks.len() as f64
}

/// The row with the highest mean (the first of equals), as the findings pick it.
fn golden_best<'a, 'b>(rows: &'b [GoldenRow<'a>]) -> &'b GoldenRow<'a> {
    rows.iter()
        .fold(None, |b: Option<&GoldenRow>, r| match b {
            Some(b) if b.mean >= r.mean => Some(b),
            _ => Some(r),
        })
        .expect("a sweep")
}

/// A fraction as the findings print it, without the " %".
fn pct1(v: f64) -> String {
    format!("{:.1}", 100.0 * v)
}

fn fixed(v: f64, places: usize) -> String {
    format!("{v:.places$}")
}

/// The guided experiments' findings on the bundled suite (specs as the page's guided list has
/// them, each equal to the spec its golden was computed for): every number a finding quotes is
/// the one derived from the NumPy and PyTorch goldens (make_suite_goldens.py `guided` and
/// `models`; make_adamerging_goldens.py `runs`, `entropy_sweep`, `linearised`) at the printed
/// precision, and each verdict (agrees or not, and the sentence saying so) follows from the
/// golden's numbers by the rule the finding states. Nothing here is compared with Interplay's own
/// output. The guide texts quote no run (they used to, and a test kept the quote true); the page
/// shows these.
#[test]
fn guided_findings_report_what_the_bundled_suite_shows() {
    use interplay_lab::findings::merge;
    use interplay_lab::guided::{self, Guided};
    const FOUR: [&str; 4] = ["mirror", "flip", "rotate", "invert"];
    let device = Device::flex();
    let run =
        |spec: &MergeSpec| pollster::block_on(spec.run(&device, &mut no_progress)).expect("run");
    let numpy_all = golden();
    let numpy = &numpy_all["guided"];
    let models = &numpy_all["models"];
    let torch = interplay_testkit::read_json(
        &interplay_testkit::fixtures().join("merge/adamerging_golden.json"),
    );
    // Each run is the page's guided experiment (`interplay_lab::guided::MERGE`), and its
    // golden was computed for that spec.
    let page = |id: &str| Guided::spec_of(guided::MERGE, id).expect("a guided experiment");
    let same_spec = |spec: &MergeSpec, golden: &Value, what: &str| {
        let g: MergeSpec = serde_json::from_value(golden.clone()).expect("golden spec");
        assert_eq!(&g, spec, "{what}: the golden was computed for another spec");
    };
    // A finding's verdict, and its sentence saying so when the run disagrees.
    let verdict = |f: &interplay_lab::findings::Finding, agrees: bool, says: &str, what: &str| {
        assert_eq!(f.agrees, Some(agrees), "{what}: {}", f.shows);
        assert_eq!(f.shows.contains(says), !agrees, "{what}: {}", f.shows);
    };
    let quotes = |shows: &str, want: &[String], what: &str| {
        assert_eq!(
            numbers(shows),
            want,
            "{what}: the finding's numbers against the golden's: {shows}"
        );
    };
    let acc = |a: &Value, t: &str| a[t].as_f64().expect("accuracy");
    let base = |t: &str| models["base"][t]["accuracy"].as_f64().expect("accuracy");

    // Adding task vectors: the best λ of the sweep against the fine-tunes on their own tasks.
    let add = page("add");
    same_spec(&add, &numpy["add"]["spec"], "add");
    let standard = run(&add);
    let f = merge("add", &add, &standard, None).expect("finding");
    let std_rows = golden_sweep(&numpy["add"]["sweep"], &FOUR);
    let s = golden_best(&std_rows);
    // The best of the four bundled fine-tunes on each merged task (each is best on its own).
    let own = FOUR
        .iter()
        .map(|t| {
            FOUR.iter()
                .map(|m| models[*m][*t]["accuracy"].as_f64().expect("accuracy"))
                .fold(0.0, f64::max)
        })
        .sum::<f64>()
        / 4.0;
    let share = s.mean / own;
    let agrees = share >= 0.8;
    quotes(
        &f.shows,
        &[
            fixed(s.lambda, 2),
            pct1(s.mean),
            "4".into(),
            pct1(own),
            fixed(100.0 * share, 0),
            pct1(acc(s.accuracy, "digits")),
            pct1(base("digits")),
        ],
        "add",
    );
    verdict(&f, agrees, "Not what the paper reports", "add");
    let want = format!(
        "The best λ is {}: mean accuracy {} %",
        fixed(s.lambda, 2),
        pct1(s.mean)
    );
    assert_eq!(want, "The best λ is 0.50: mean accuracy 38.7 %");
    assert!(f.shows.starts_with(&want), "{}", f.shows);

    // Negation: mirror forgotten, digits the control; the paper's protocol picks the most
    // negative λ keeping the control at 95 % of the base's.
    let negate = page("negate");
    same_spec(&negate, &numpy["negate"]["spec"], "negate");
    let f = merge("negate", &negate, &run(&negate), None).expect("finding");
    let (t0, c0) = (base("mirror"), base("digits"));
    let merged = &numpy["negate"]["merged"];
    let mut want = vec![
        fixed(negate.lambda, 2),
        pct1(t0),
        pct1(acc(merged, "mirror")),
        pct1(c0),
        pct1(acc(merged, "digits")),
        "95".into(),
    ];
    let neg_rows = golden_sweep(&numpy["negate"]["sweep"], &["mirror"]);
    let kept = neg_rows
        .iter()
        .filter(|r| r.lambda < 0.0 && acc(r.accuracy, "digits") >= 0.95 * c0)
        .min_by(|a, b| a.lambda.total_cmp(&b.lambda));
    let agrees = match kept {
        Some(r) => {
            want.extend([
                fixed(r.lambda, 2),
                pct1(acc(r.accuracy, "mirror")),
                pct1(acc(r.accuracy, "digits")),
            ]);
            acc(r.accuracy, "mirror") < t0 - 0.05
        }
        None => false,
    };
    quotes(&f.shows, &want, "negate");
    verdict(&f, agrees, "Not what the paper reports", "negate");
    assert!(
        f.shows.contains("picks λ = -0.50 here: mirror 27.8 %"),
        "{}",
        f.shows
    );

    // The best of a method's sweep (or its learned merge) against the best task arithmetic.
    let compared = |shows: &str, agrees: Option<bool>, mean: f64, lambda: Option<f64>, what| {
        let mut want = vec![pct1(mean)];
        want.extend(lambda.map(|l| fixed(l, 2)));
        want.extend([pct1(s.mean), fixed(s.lambda, 2)]);
        quotes(
            &shows[..shows.find(" The control").unwrap_or(shows.len())],
            &want,
            what,
        );
        let beats = mean > s.mean;
        assert_eq!(agrees, Some(beats), "{what}: {shows}");
        assert_eq!(
            shows.contains("does not beat task arithmetic"),
            !beats,
            "{shows}"
        );
    };

    let ties = page("ties");
    same_spec(&ties, &numpy["ties"]["spec"], "ties");
    let out = run(&ties);
    let ties_rows = golden_sweep(&numpy["ties"]["sweep"], &FOUR);
    let t = golden_best(&ties_rows);
    let alone = merge("ties", &ties, &out, None).expect("finding");
    assert_eq!(alone.agrees, None, "no standard run to compare with");
    quotes(
        &alone.shows,
        &[pct1(t.mean), fixed(t.lambda, 2)],
        "ties alone",
    );
    let f = merge("ties", &ties, &out, Some(&standard)).expect("finding");
    compared(&f.shows, f.agrees, t.mean, Some(t.lambda), "ties");

    // AdaMerging (the guided run: the golden's 100-step layer-wise entropy run) against task
    // arithmetic's best λ and the λ of lowest entropy (PyTorch's entropy over the same sweep).
    let ada = page("adamerging");
    let g_ada = &torch["runs"][2];
    same_spec(
        &MergeSpec {
            sweep: Vec::new(),
            ..ada.clone()
        },
        &g_ada["spec"],
        "adamerging",
    );
    // Its sweep is task arithmetic of the same tasks at the same λ: the "add" golden's.
    assert_eq!((&ada.tasks, &ada.sweep), (&add.tasks, &add.sweep));
    let out = run(&ada);
    let entropy = torch["entropy_sweep"]["sweep"]
        .as_array()
        .expect("entropies");
    assert_eq!(torch["entropy_sweep"]["tasks"], serde_json::json!(FOUR));
    assert_eq!(entropy.len(), out.sweep.len());
    let mut worst = 0f64;
    for (row, w) in out.sweep.iter().zip(entropy) {
        assert_eq!(Some(row.lambda), w["lambda"].as_f64());
        let w = w["entropy"].as_f64().expect("entropy");
        worst = worst.max((row.entropy - w).abs() / w);
        assert!(
            (row.entropy - w).abs() <= 1e-4 * w,
            "entropy at λ = {}: {} vs PyTorch {w}",
            row.lambda,
            row.entropy
        );
    }
    eprintln!("task arithmetic sweep entropy: worst error rel {worst:.1e}");
    // PyTorch's entropies and NumPy's accuracies are rows of the same λ sweep.
    assert_eq!(entropy.len(), std_rows.len());
    for (e, r) in entropy.iter().zip(&std_rows) {
        assert_eq!(e["lambda"].as_f64(), Some(r.lambda), "the sweeps' λ");
    }
    let calm = entropy
        .iter()
        .zip(&std_rows)
        .fold(None, |b: Option<(f64, &GoldenRow)>, (e, r)| {
            let e = e["entropy"].as_f64().expect("entropy");
            match b {
                Some(b) if b.0 <= e => Some(b),
                _ => Some((e, r)),
            }
        })
        .expect("a sweep")
        .1;
    let losses = g_ada["losses"].as_array().expect("losses");
    let learned = mean_over(&g_ada["accuracy"], &FOUR);
    let f = merge("adamerging", &ada, &out, None).expect("finding");
    quotes(
        &f.shows,
        &[
            pct1(learned),
            fixed(losses[0].as_f64().expect("loss"), 3),
            fixed(losses[losses.len() - 1].as_f64().expect("loss"), 3),
            fixed(s.lambda, 2),
            pct1(s.mean),
            fixed(calm.lambda, 2),
            pct1(calm.mean),
        ],
        "adamerging",
    );
    let agrees = learned >= s.mean;
    verdict(&f, agrees, "Not what the paper reports", "adamerging");
    assert!(f.shows.contains("lowest entropy (0.00)"), "{}", f.shows);

    // aTLAS-style (the golden's 100-step block-wise few-shot run).
    let atlas = page("atlas");
    same_spec(&atlas, &torch["runs"][3]["spec"], "atlas");
    let f = merge("atlas", &atlas, &run(&atlas), Some(&standard)).expect("finding");
    let learned = mean_over(&torch["runs"][3]["accuracy"], &FOUR);
    compared(&f.shows, f.agrees, learned, None, "atlas");

    // Weight disentanglement of mirror and flip over the golden's ξ grid.
    let pair = page("disentangle");
    same_spec(&pair, &numpy["disentangle"]["spec"], "disentangle");
    let f = merge("disentangle", &pair, &run(&pair), None).expect("finding");
    let grid: Vec<Vec<f64>> = numpy["disentangle"]["disentanglement"]
        .as_array()
        .expect("grid")
        .iter()
        .map(|r| {
            r.as_array()
                .expect("row")
                .iter()
                .map(|x| x.as_f64().expect("ξ"))
                .collect()
        })
        .collect();
    let inside: Vec<usize> = (0..pair.alphas.len())
        .filter(|&i| (0.0..=1.0).contains(&pair.alphas[i]))
        .collect();
    let region: Vec<f64> = inside
        .iter()
        .flat_map(|&i| inside.iter().map(|&j| grid[i][j]).collect::<Vec<_>>())
        .collect();
    let low = region.iter().filter(|&&e| e <= 0.1).count();
    let one = pair.alphas.iter().position(|&a| a == 1.0).expect("α = 1");
    quotes(
        &f.shows,
        &[
            "0.1".into(),
            low.to_string(),
            region.len().to_string(),
            "0".into(),
            "1".into(),
            "1".into(),
            fixed(grid[one][one], 2),
            "0".into(),
            "2".into(),
        ],
        "disentangle",
    );
    let agrees = 2 * low >= region.len();
    verdict(&f, agrees, "Not a disentangled pair", "disentangle");

    // Linearised fine-tunes: torch.func.jvp's sweep against the standard one, and the control
    // task at both best λ.
    let lin = page("linearised");
    same_spec(&lin, &torch["linearised"]["spec"], "linearised");
    let f = merge("linearised", &lin, &run(&lin), Some(&standard)).expect("finding");
    let lin_rows = golden_sweep(&torch["linearised"]["sweep"], &FOUR);
    let b = golden_best(&lin_rows);
    compared(&f.shows, f.agrees, b.mean, Some(b.lambda), "linearised");
    let control = &f.shows[f.shows.find(" The control").expect("control sentence")..];
    quotes(
        control,
        &[
            pct1(acc(b.accuracy, "digits")),
            pct1(acc(s.accuracy, "digits")),
        ],
        "linearised control",
    );
    assert!(
        f.shows.contains("54.9 % (best λ 0.40)") && f.shows.contains("38.7 % (best λ 0.50)"),
        "{}",
        f.shows
    );
}

/// The loss and its gradient with respect to every merge coefficient — what each AdaMerging /
/// aTLAS step descends — against PyTorch autograd in float64 (make_adamerging_goldens.py):
/// entropy layer- and task-wise, few-shot block-wise, and linearised fine-tunes, at distinct
/// coefficients per task and group, on the CPU and wgpu.
#[test]
fn learned_coefficient_gradients_match_pytorch() {
    let g = interplay_testkit::read_json(
        &interplay_testkit::fixtures().join("merge/adamerging_golden.json"),
    );
    let rows = |v: &Value| -> Vec<Vec<f64>> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap())
                    .collect()
            })
            .collect()
    };
    for dev in interplay_testkit::devices() {
        for case in g["cases"].as_array().unwrap() {
            let spec: MergeSpec = serde_json::from_value(case["spec"].clone()).unwrap();
            let at = format!("{:?} on {}", spec.adamerging, dev.backend.label());
            let (loss, grad) =
                pollster::block_on(spec.coefficient_gradient(&dev.device, &rows(&case["lambda"])))
                    .unwrap();
            let want_loss = case["loss"].as_f64().unwrap();
            assert!(
                (loss - want_loss).abs() <= 1e-5 * want_loss.abs().max(1.0),
                "{at}: loss {loss} vs PyTorch {want_loss}"
            );
            let want = rows(&case["gradient"]);
            let worst = grad
                .iter()
                .flatten()
                .zip(want.iter().flatten())
                .map(|(a, b)| (a - b).abs())
                .fold(0f64, f64::max);
            eprintln!("{at}: loss {loss} vs {want_loss}; worst gradient error {worst:.1e}");
            assert_eq!(grad.len(), want.len(), "{at}: tasks");
            for (k, (gr, w)) in grad.iter().zip(&want).enumerate() {
                assert_eq!(gr.len(), w.len(), "{at}: groups");
                for (j, (a, b)) in gr.iter().zip(w).enumerate() {
                    assert!(
                        (a - b).abs() <= 1e-5,
                        "{at}: ∂L/∂λ[{k}][{j}] = {a} vs PyTorch {b} (off by {:e})",
                        (a - b).abs()
                    );
                }
            }
        }
    }
}

/// The coefficient gradient refuses what it cannot compute, with messages.
#[test]
fn coefficient_gradient_refuses_bad_input() {
    let device = Device::flex();
    let ask = |spec: MergeSpec, lambda: Vec<Vec<f64>>| {
        pollster::block_on(spec.coefficient_gradient(&device, &lambda))
            .unwrap_err()
            .to_string()
    };
    let spec = MergeSpec {
        method: LabMethod::Adamerging,
        ..MergeSpec::default()
    };
    // Four tasks × three layers, given two × three.
    let e = ask(spec.clone(), vec![vec![0.3; 3]; 2]);
    assert!(e.contains("4 × 3 coefficients"), "{e}");
    let digits = MergeSpec {
        tasks: vec![Task::Digits],
        ..spec
    };
    let e = ask(digits, vec![vec![0.3; 3]]);
    assert!(e.contains("no fine-tune"), "{e}");
}

/// Two short AdaMerging runs (entropy layer-wise; few-shot block-wise) against
/// `torch.optim.Adam` over the same objective in float64, coefficients clamped after each step:
/// the loss before every step and the learned coefficients, on the CPU and wgpu.
#[test]
fn adamerging_runs_match_pytorch_adam() {
    let g = interplay_testkit::read_json(
        &interplay_testkit::fixtures().join("merge/adamerging_golden.json"),
    );
    for dev in interplay_testkit::devices() {
        for r in g["runs"].as_array().unwrap() {
            let spec: MergeSpec = serde_json::from_value(r["spec"].clone()).unwrap();
            let at = format!("{:?} on {}", spec.adamerging, dev.backend.label());
            let out = pollster::block_on(spec.run(&dev.device, &mut no_progress)).unwrap();
            let l = out.learned.expect("coefficients");
            let losses: Vec<f64> = r["losses"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            assert_eq!(l.losses.len(), losses.len(), "{at}: steps");
            for (i, (a, b)) in l.losses.iter().zip(&losses).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-5 * b.abs().max(1.0),
                    "{at}: loss before step {} = {a} vs PyTorch {b}",
                    i + 1
                );
            }
            let want = r["coefficients"].as_array().unwrap();
            assert_eq!(l.coefficients.len(), want.len(), "{at}: tasks");
            let mut worst = 0f64;
            for (k, (got, w)) in l.coefficients.iter().zip(want).enumerate() {
                let w = w.as_array().unwrap();
                assert_eq!(got.len(), w.len(), "{at}: groups");
                for (j, (a, b)) in got.iter().zip(w).enumerate() {
                    let b = b.as_f64().unwrap();
                    worst = worst.max((a - b).abs());
                    assert!(
                        (a - b).abs() <= 1e-5,
                        "{at}: λ[{k}][{j}] = {a} vs PyTorch {b}"
                    );
                }
            }
            // The learned merge, as the page's row shows it.
            let acc = &r["accuracy"];
            assert_eq!(out.merged.len(), Task::ALL.len());
            for (t, got) in Task::ALL.iter().zip(&out.merged) {
                let want = acc[t.name()].as_f64().unwrap();
                assert!(
                    (got - want).abs() < 1e-9,
                    "{at}: merged on {t}: {got} vs PyTorch {want}"
                );
            }
            eprintln!("{at}: worst coefficient error {worst:.1e}");
        }
    }
}
