//! The CLI's JSON contract against the Hugging Face goldens, and its errors.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::process::Command;

use serde_json::Value;

use interplay_testkit::fixtures;

use interplay_testkit::golden;

fn interplay(args: &[&str]) -> (i32, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_interplay"))
        .args(args)
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let v = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), v, stderr)
}

fn csv(v: &Value) -> String {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn logits_match_hf_for_folders_and_gguf() {
    for (name, model) in [
        ("tiny-gpt2", "tiny-gpt2".to_string()),
        ("tiny-llama", "tiny-llama".to_string()),
        ("tiny-llama", "tiny-llama/model.gguf".to_string()),
    ] {
        let path = fixtures().join(&model);
        assert_logits_match_hf(path.to_str().unwrap(), name);
    }
}

/// `interplay logits` of `model` at every position equals the golden logits of `name` (1e-4
/// relative).
fn assert_logits_match_hf(model: &str, name: &str) {
    let g = golden(name);
    let (code, v, err) = interplay(&[
        "logits",
        "--model",
        model,
        "--ids",
        &csv(&g["prompt"]),
        "--all-positions",
    ]);
    assert_eq!(code, 0, "{err}");
    let got: Vec<f64> = v["logits"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()))
        .collect();
    let want: Vec<f64> = g["logits"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(got.len(), want.len());
    for (a, b) in got.iter().zip(&want) {
        assert!(
            (a - b).abs() <= 1e-4 * b.abs().max(1.0),
            "{model}: {a} vs {b}"
        );
    }
}

#[test]
fn patch_grid_matches_hf() {
    for name in ["tiny-gpt2", "tiny-llama"] {
        let g = golden(name);
        let p = &g["patching"];
        for hook in ["resid_pre", "attn_out", "head_out"] {
            let (code, v, err) = interplay(&[
                "patch",
                "--model",
                fixtures().join(name).to_str().unwrap(),
                "--clean-ids",
                &csv(&p["clean"]),
                "--corrupt-ids",
                &csv(&p["corrupt"]),
                "--hook",
                hook,
                "--answer",
                &p["answer"].to_string(),
                "--wrong",
                &p["wrong"].to_string(),
            ]);
            assert_eq!(code, 0, "{err}");
            let (got, want) = (v["grid"].as_array().unwrap(), p[hook].as_array().unwrap());
            assert_eq!(got.len(), want.len());
            for (r1, r2) in got.iter().zip(want) {
                for (a, b) in r1.as_array().unwrap().iter().zip(r2.as_array().unwrap()) {
                    let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
                    assert!((a - b).abs() < 1e-3, "{name}/{hook}: {a} vs {b}");
                }
            }
        }
    }
}

#[test]
fn errors_are_messages_not_panics() {
    let tiny = fixtures().join("tiny-llama");
    let bad_gguf = std::env::temp_dir().join("interplay-truncated.gguf");
    let whole = std::fs::read(tiny.join("model.gguf")).unwrap();
    std::fs::write(&bad_gguf, &whole[..whole.len() / 3]).unwrap();
    let cases: Vec<Vec<String>> = vec![
        vec![
            "logits".into(),
            "--model".into(),
            "/nonexistent/model.gguf".into(),
            "--ids".into(),
            "1".into(),
        ],
        vec![
            "logits".into(),
            "--model".into(),
            bad_gguf.display().to_string(),
            "--ids".into(),
            "1".into(),
        ],
        vec![
            "logits".into(),
            "--model".into(),
            tiny.display().to_string(),
            "--ids".into(),
            "1,999".into(),
        ],
        vec![
            "logits".into(),
            "--model".into(),
            tiny.display().to_string(),
            "--ids".into(),
            "".into(),
        ],
        vec![
            "logits".into(),
            "--model".into(),
            tiny.display().to_string(),
        ],
        vec![
            "patch".into(),
            "--model".into(),
            tiny.display().to_string(),
            "--clean-ids".into(),
            "1,2".into(),
            "--corrupt-ids".into(),
            "1".into(),
            "--hook".into(),
            "resid_pre".into(),
            "--answer".into(),
            "1".into(),
            "--wrong".into(),
            "2".into(),
        ],
        vec![
            "patch".into(),
            "--model".into(),
            tiny.display().to_string(),
            "--clean-ids".into(),
            "1,2".into(),
            "--corrupt-ids".into(),
            "1,3".into(),
            "--hook".into(),
            "nope".into(),
            "--answer".into(),
            "1".into(),
            "--wrong".into(),
            "2".into(),
        ],
        vec!["frobnicate".into()],
    ];
    for args in cases {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, _, err) = interplay(&a);
        assert_ne!(code, 0, "{args:?} should fail");
        assert!(err.contains("interplay: error:"), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn dynamics_commands_print_their_contract() {
    // Each ESN task with the flags of a spec ReservoirPy was run on (same weights and series):
    // the CLI's NRMSE is ReservoirPy's.
    let golden = interplay_testkit::read_json(&fixtures().join("dynamics/golden.json"));
    let cases = golden["prediction"].as_array().unwrap();
    assert_eq!(
        cases.len(),
        4,
        "NARMA-10, Mackey-Glass, Santa Fe at 100 and 300 units"
    );
    for c in cases {
        let s = &c["spec"];
        let r = &s["reservoir"];
        let flag = |v: &Value| v.to_string().trim_matches('"').to_string();
        let mut args = vec!["esn".to_string()];
        for (name, v) in [
            ("--task", &s["task"]),
            ("--steps", &s["steps"]),
            ("--train", &s["train"]),
            ("--test", &s["test"]),
            ("--warmup", &s["warmup"]),
            ("--horizon", &s["horizon"]),
            ("--ridge", &s["ridge"]),
            ("--series-seed", &s["series_seed"]),
            ("--units", &r["units"]),
            ("--spectral-radius", &r["spectral_radius"]),
            ("--leak", &r["leak"]),
            ("--input-scaling", &r["input_scaling"]),
            ("--input-connectivity", &r["input_connectivity"]),
            ("--connectivity", &r["rc_connectivity"]),
            ("--bias", &r["bias"]),
            ("--seed", &r["seed"]),
        ] {
            args.extend([name.to_string(), flag(v)]);
        }
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, v, err) = interplay(&a);
        assert_eq!(code, 0, "{args:?}: {err}");
        let (ours, want) = (v["nrmse"].as_f64().unwrap(), c["nrmse"].as_f64().unwrap());
        assert!(
            (ours - want).abs() <= 1e-3 * want,
            "{}: NRMSE {ours} vs ReservoirPy {want}",
            s["task"]
        );
        assert!((v["r2"].as_f64().unwrap() - c["r2"].as_f64().unwrap()).abs() <= 1e-3);
        assert!(v["seconds"].as_f64().unwrap() > 0.0);
    }

    let (code, v, err) = interplay(&[
        "memory-capacity",
        "--units",
        "100",
        "--spectral-radius",
        "1.0",
        "--ridge",
        "1e-4",
        "--k-max",
        "50",
        "--seed",
        "1",
    ]);
    assert_eq!(code, 0, "{err}");
    let mc_k = v["mc_k"].as_array().unwrap();
    assert_eq!(mc_k.len(), 50);
    let sum: f64 = mc_k.iter().map(|x| x.as_f64().unwrap()).sum();
    assert!((sum - v["mc"].as_f64().unwrap()).abs() < 1e-9);

    let (code, v, err) = interplay(&[
        "izhikevich",
        "--excitatory",
        "800",
        "--inhibitory",
        "200",
        "--ms",
        "1000",
        "--seed",
        "1",
    ]);
    assert_eq!(code, 0, "{err}");
    // Izhikevich (2003)'s network: its rates are the NumPy restatement's on the same stream.
    let spiking = interplay_testkit::read_json(&fixtures().join("dynamics/spiking.json"));
    for key in ["rate_exc_hz", "rate_inh_hz"] {
        let (ours, want) = (
            v[key].as_f64().unwrap(),
            spiking["izhikevich"][key].as_f64().unwrap(),
        );
        assert!(
            (ours - want).abs() <= 0.02 * want,
            "{key}: {ours} vs NumPy {want}"
        );
    }
    assert!(v["spikes"].as_u64().unwrap() > 1000);
}

#[test]
fn dynamics_bad_input_is_a_message() {
    // Usage errors (out of range, not a number, unknown flag) exit 2 with clap's message.
    let (code, _, err) = interplay(&["esn", "--units", "0"]);
    assert_eq!(code, 2);
    assert!(err.contains("--units") && err.contains("1..=4096"), "{err}");
    let (code, _, err) = interplay(&["izhikevich", "--ms", "ten"]);
    assert_eq!(code, 2);
    assert!(err.contains("--ms"), "{err}");
    // A spec the lab refuses is a run error: exit 1.
    let (code, _, err) = interplay(&["esn", "--units", "4", "--train", "1", "--steps", "10"]);
    assert_eq!(code, 1, "{err}");
    let dir = std::env::temp_dir().join("interplay-bad-dyn-spec.json");
    std::fs::write(&dir, r#"{"experiment":"spiking","ms":-3}"#).unwrap();
    let (code, _, err) = interplay(&["run", dir.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("not a valid Dynamics experiment spec"),
        "{err}"
    );
}

#[test]
fn misspelt_flags_are_usage_errors_with_a_suggestion() {
    let (code, v, err) = interplay(&["esn", "--task", "mackey-glass", "--unit", "10"]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(v, Value::Null, "nothing may run");
    assert!(err.starts_with("interplay: error:"), "{err}");
    assert!(
        err.contains("'--unit'") && err.contains("'--units'"),
        "{err}"
    );
    // Flags of one command are not accepted by another.
    let (code, _, err) = interplay(&["izhikevich", "--tau", "20"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = interplay(&["memory-capacity", "--k-max", "0"]);
    assert_eq!(code, 2, "{err}");
    // Lists forgive spaces and a trailing comma, as before clap.
    let tiny = fixtures().join("tiny-llama");
    let tiny = tiny.to_str().unwrap();
    let (code, spaced, err) = interplay(&["logits", "--model", tiny, "--ids", " 3, 17,42,"]);
    assert_eq!(code, 0, "{err}");
    let (_, plain, _) = interplay(&["logits", "--model", tiny, "--ids", "3,17,42"]);
    assert_eq!(spaced, plain);
    // Help is not an error.
    let out = Command::new(env!("CARGO_BIN_EXE_interplay"))
        .args(["esn", "--help"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("--spectral-radius") && help.contains("--units"),
        "{help}"
    );
}

#[test]
fn run_reads_every_lab_through_the_one_experiment_type() {
    let dir = std::env::temp_dir();
    // Tagged specs, as "Export spec" writes them, and a bare spec from before the tag.
    let tiny = fixtures().join("tiny-llama").join("model.gguf");
    let p = &golden("tiny-llama")["patching"];
    let circuits = serde_json::json!({
        "lab": "circuits", "model": "tiny-llama", "clean": p["clean"], "corrupt": p["corrupt"],
        "answer": p["answer"], "wrong": p["wrong"], "target": "attn_out",
    });
    let cases: Vec<(&str, Value, Vec<&str>)> = vec![
        (
            "circuits",
            circuits,
            vec!["--model", tiny.to_str().unwrap()],
        ),
        (
            "dynamics",
            serde_json::json!({"lab": "dynamics", "experiment": "spiking", "excitatory": 40,
                "inhibitory": 10, "ms": 20}),
            vec![],
        ),
        (
            "merge",
            serde_json::json!({"lab": "merge", "tasks": ["mirror", "flip"],
                "method": "task_arithmetic", "lambda": 0.5}),
            vec![],
        ),
    ];
    for (lab, spec, extra) in cases {
        let file = dir.join(format!("interplay-tagged-{lab}.json"));
        std::fs::write(&file, spec.to_string()).unwrap();
        let mut args = vec!["run", file.to_str().unwrap()];
        args.extend(extra);
        let (code, v, err) = interplay(&args);
        assert_eq!(code, 0, "{lab}: {err}");
        assert!(v.is_object(), "{lab}: {v}");
        if lab == "circuits" {
            // The same sweep as `interplay patch`, number for number.
            let (_, direct, _) = interplay(&[
                "patch",
                "--model",
                tiny.to_str().unwrap(),
                "--clean-ids",
                &csv(&p["clean"]),
                "--corrupt-ids",
                &csv(&p["corrupt"]),
                "--hook",
                "attn_out",
                "--answer",
                &p["answer"].to_string(),
                "--wrong",
                &p["wrong"].to_string(),
            ]);
            assert_eq!(v["grid"], direct["grid"]);
        }
    }
    // A lab the type does not know is a message, exit 1.
    let file = dir.join("interplay-tagged-bad.json");
    std::fs::write(&file, r#"{"lab":"optics"}"#).unwrap();
    let (code, _, err) = interplay(&["run", file.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown lab"), "{err}");
}

fn read_st(path: &std::path::Path) -> interplay_models::weights::Weights {
    interplay_models::safetensors::read_safetensors(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn merge_matches_the_official_ties_and_task_arithmetic() {
    let dir = fixtures().join("merge");
    let p = |n: &str| dir.join(n).to_str().unwrap().to_string();
    let out_dir = std::env::temp_dir().join(format!("interplay-merge-{}", std::process::id()));
    std::fs::create_dir_all(&out_dir).unwrap();
    for (golden, extra) in [
        (
            "ties_global",
            vec!["--method", "ties", "--lambda", "1.0", "--density", "0.3"],
        ),
        (
            "ties_per_tensor",
            vec![
                "--method",
                "ties",
                "--lambda",
                "0.8",
                "--density",
                "50",
                "--trim-scope",
                "per-tensor",
            ],
        ),
        (
            "task_arithmetic",
            vec!["--method", "task_arithmetic", "--lambda", "0.4"],
        ),
        // DARE's masks drawn by the generator restated in Python, applied in NumPy.
        (
            "dare",
            vec![
                "--method", "dare", "--lambda", "0.5", "--drop", "0.3", "--seed", "7",
            ],
        ),
    ] {
        let out = out_dir.join(format!("{golden}.safetensors"));
        let (base, m1, m2, m3) = (
            p("base.safetensors"),
            p("m1.safetensors"),
            p("m2.safetensors"),
            p("m3.safetensors"),
        );
        let mut args = vec!["merge", "--base", &base, "--models", &m1, &m2, &m3];
        args.extend(extra);
        let out_s = out.to_str().unwrap().to_string();
        args.extend(["--out", &out_s]);
        let (code, v, err) = interplay(&args);
        assert_eq!(code, 0, "{golden}: {err}");
        assert_eq!(v["report"]["tensors"], 3);
        let got = read_st(&out);
        let want = read_st(&dir.join(format!("{golden}.safetensors")));
        assert_eq!(got.len(), want.len());
        for (k, w) in &want {
            let g = &got[k];
            assert_eq!(g.shape, w.shape, "{golden} {k}");
            for (a, b) in g.data.iter().zip(&w.data) {
                assert!(
                    (a - b).abs() <= 1e-6 * b.abs().max(1.0),
                    "{golden} {k}: {a} vs {b}"
                );
            }
        }
    }
    // DARE runs and is reproducible by seed.
    let run_dare = |seed: &str, name: &str| {
        let out = out_dir.join(name);
        let (base, m1, o) = (
            p("base.safetensors"),
            p("m1.safetensors"),
            out.to_str().unwrap().to_string(),
        );
        let (code, _, err) = interplay(&[
            "merge", "--base", &base, "--models", &m1, "--method", "dare", "--lambda", "1",
            "--drop", "0.5", "--seed", seed, "--out", &o,
        ]);
        assert_eq!(code, 0, "{err}");
        read_st(&out)
    };
    assert_eq!(
        run_dare("1", "a.safetensors"),
        run_dare("1", "b.safetensors")
    );
    assert_ne!(
        run_dare("1", "a.safetensors"),
        run_dare("2", "c.safetensors")
    );
    // Mismatched keys: a message, exit 1.
    let (code, _, err) = interplay(&[
        "merge",
        "--base",
        &p("base.safetensors"),
        "--models",
        &fixtures()
            .join("tiny-gpt2/model.safetensors")
            .to_string_lossy(),
        "--method",
        "ties",
        "--lambda",
        "1",
        "--out",
        &out_dir.join("x.safetensors").to_string_lossy(),
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("identical keys") || err.contains("no tensor"),
        "{err}"
    );
}

#[test]
fn merge_of_gguf_checkpoints_is_a_loadable_gguf() {
    use interplay_models::gguf::Gguf;
    let dir = std::env::temp_dir().join(format!("interplay-merge-gguf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let base_path = fixtures().join("tiny-llama/model.gguf");
    let bytes = std::fs::read(&base_path).unwrap();
    let g = Gguf::parse(&bytes).unwrap();
    let base = g.weights().unwrap();
    // A "fine-tune": every parameter moved by a small, position-dependent amount.
    let moved: interplay_models::weights::Weights = base
        .iter()
        .map(|(k, t)| {
            let mut t = t.clone();
            for (i, v) in t.data.iter_mut().enumerate() {
                *v += 0.01 * ((i % 7) as f32 - 3.0);
            }
            (k.clone(), t)
        })
        .collect();
    let order: Vec<(String, _)> = g
        .tensors
        .iter()
        .map(|t| (t.name.clone(), &moved[&t.name]))
        .collect();
    let ft = dir.join("ft.gguf");
    std::fs::write(&ft, g.write_f32(&order)).unwrap();
    let merge = |lambda: &str, out: &str| {
        let out = dir.join(out).to_str().unwrap().to_string();
        let r = interplay(&[
            "merge",
            "--base",
            base_path.to_str().unwrap(),
            "--models",
            ft.to_str().unwrap(),
            "--method",
            "task_arithmetic",
            "--lambda",
            lambda,
            "--out",
            &out,
        ]);
        (r, out)
    };
    // λ = 1 gives the fine-tune back; λ = 0.5 lands half way.
    for (lambda, frac) in [("1", 1.0f32), ("0.5", 0.5)] {
        let ((code, v, err), out) = merge(lambda, &format!("m{lambda}.gguf"));
        assert_eq!(code, 0, "{err}");
        assert_eq!(v["format"], "gguf");
        let merged_bytes = std::fs::read(&out).unwrap();
        let m = Gguf::parse(&merged_bytes).unwrap();
        assert_eq!(m.metadata, g.metadata);
        let mw = m.weights().unwrap();
        for (k, b) in &base {
            for ((x, b), f) in mw[k].data.iter().zip(&b.data).zip(&moved[k].data) {
                let want = b + frac * (f - b);
                assert!(
                    (x - want).abs() <= 1e-6 * want.abs().max(1.0),
                    "{k}: {x} vs {want}"
                );
            }
        }
    }
    // λ = 0 is the base: the merged file loads as a model and gives HF's logits.
    let ((code, _, err), out) = merge("0", "m0.gguf");
    assert_eq!(code, 0, "{err}");
    assert_logits_match_hf(&out, "tiny-llama");
    // A fine-tune written by gguf-py (make_gguf_merge_golden.py) merged at λ = 0.5 gives HF's
    // logits of base + 0.5 (ft − base), computed on HF's own weights.
    let g = interplay_testkit::read_json(&fixtures().join("tiny-llama/merge_golden.json"));
    let half = dir.join("half.gguf");
    let (code, _, err) = interplay(&[
        "merge",
        "--base",
        base_path.to_str().unwrap(),
        "--models",
        fixtures().join("tiny-llama/ft.gguf").to_str().unwrap(),
        "--method",
        "task_arithmetic",
        "--lambda",
        "0.5",
        "--out",
        half.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, v, err) = interplay(&[
        "logits",
        "--model",
        half.to_str().unwrap(),
        "--ids",
        &csv(&g["prompt"]),
        "--all-positions",
    ]);
    assert_eq!(code, 0, "{err}");
    let rows = |v: &Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()))
            .collect()
    };
    let (got, want) = (rows(&v["logits"]), rows(&g["logits"]));
    assert_eq!(got.len(), want.len());
    for (a, b) in got.iter().zip(&want) {
        assert!(
            (a - b).abs() <= 1e-4 * b.abs().max(1.0),
            "merged GGUF: {a} vs HF {b}"
        );
    }
    // Mixed formats and a wrong output extension: messages, exit 1.
    let st = fixtures().join("tiny-llama/model.safetensors");
    let (code, _, err) = interplay(&[
        "merge",
        "--base",
        base_path.to_str().unwrap(),
        "--models",
        st.to_str().unwrap(),
        "--method",
        "ties",
        "--lambda",
        "1",
        "--out",
        dir.join("x.gguf").to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("one format"), "{err}");
    let ((code, _, err), _) = merge("1", "x.safetensors");
    assert_eq!(code, 1);
    assert!(err.contains(".gguf file"), "{err}");
}

#[test]
fn neurofeedback_flags_print_the_contract_and_equal_the_spec_run() {
    let model = fixtures().join("../../public/bundled/icl-3l");
    let model = model.to_str().unwrap();
    let args = [
        "neurofeedback",
        "--model",
        model,
        "--layer",
        "1",
        "--direction",
        "pc1,random",
        "--sentences",
        "icl-words",
        "--examples",
        "0,4",
        "--seed",
        "1",
        "--queries",
        "10",
        "--quantiles",
        "0.25",
    ];
    let (code, v, err) = interplay(&args);
    assert_eq!(code, 0, "{err}");
    let r = &v["result"];
    assert_eq!(v["spec"]["bins"]["quantiles"], 0.25);
    assert_eq!(v["spec"]["format"], "plain"); // icl-3l has no chat template
    let dirs = r["directions"].as_array().unwrap();
    assert_eq!(dirs.len(), 2);
    for d in dirs {
        assert_eq!(d["accuracy"].as_array().unwrap().len(), 1); // one seed
        assert_eq!(d["accuracy"][0].as_array().unwrap().len(), 2); // N = 0, 4
        assert_eq!(d["shuffled"].as_array().unwrap().len(), 2);
        let cuts = d["cuts"].as_array().unwrap();
        assert!(cuts[0].as_f64().unwrap() < cuts[1].as_f64().unwrap());
    }
    // The exported spec runs to the same result.
    let file = std::env::temp_dir().join("interplay-nf-spec.json");
    std::fs::write(&file, v["spec"].to_string()).unwrap();
    let (code, again, err) = interplay(&["run", file.to_str().unwrap(), "--model", model]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(again["result"], v["result"]);

    // Bad input: messages, exit 1.
    let mut bad = args.to_vec();
    let last = bad.len() - 1;
    bad[last] = "0.7";
    let (code, _, err) = interplay(&bad);
    assert_eq!(code, 1);
    assert!(err.contains("between 0 and 0.5"), "{err}");
    let mut explicit = args.to_vec();
    explicit.push("--explicit");
    let (code, _, err) = interplay(&explicit);
    assert_eq!(code, 1);
    assert!(err.contains("needs the chat format"), "{err}");
}

/// `interplay ablate` and `interplay path-patch` print the Hugging Face hooks' numbers
/// (tests/fixtures/ablation/golden.json, the tiny fixtures' cases) and refuse bad flags with a
/// message.
#[test]
fn ablate_and_path_patch_match_hugging_face_hooks() {
    let g = golden("ablation");
    let heads = |v: &Value, sep: &str| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|h| {
                let head = format!("{}.{}", h[0], h[1]);
                match h.get(2) {
                    Some(i) => format!("{head}{sep}{}", i.as_str().unwrap()),
                    None => head,
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    let close = |what: &str, got: &Value, want: &Value, floor: f64| {
        let (a, b) = (got.as_f64().unwrap(), want.as_f64().unwrap());
        assert!(
            (a - b).abs() <= 1e-4 * b.abs() + floor,
            "{what}: {a} vs HF {b}"
        );
    };
    let mut checked = 0;
    for case in g["cases"].as_array().unwrap() {
        let name = case["model"].as_str().unwrap();
        if name == "smollm2" {
            continue; // the lab's test runs these (on both devices)
        }
        let model = fixtures().join(name);
        let model = model.to_str().unwrap();
        let (answer, wrong) = (case["answer"].to_string(), case["wrong"].to_string());
        let want = &case["expect"];
        if case["kind"] == "ablate" {
            let (ids, reference) = (csv(&case["ids"]), csv(&case["ids"]));
            let mode = case["mode"].as_str().unwrap();
            let reference = match &case["reference_ids"] {
                Value::Null => reference,
                r => csv(r),
            };
            let hs = heads(&case["heads"], "");
            let mut args = vec![
                "ablate", "--model", model, "--ids", &ids, "--heads", &hs, "--mode", mode,
                "--answer", &answer, "--wrong", &wrong,
            ];
            if mode != "zero" {
                args.extend(["--reference-ids", reference.as_str()]);
            }
            let (code, v, err) = interplay(&args);
            assert_eq!(code, 0, "{err}");
            let at = format!("{name} ablate {mode}");
            close(&at, &v["clean_metric"], &want["clean_metric"], 1e-5);
            close(&at, &v["metric"], &want["metric"], 1e-5);
            close(&at, &v["p_answer"], &want["p_answer"], 1e-6);
            close(&at, &v["kl"], &want["kl"], 2e-6);
        } else {
            let (senders, receivers) =
                (heads(&case["senders"], ""), heads(&case["receivers"], ":"));
            let (code, v, err) = interplay(&[
                "path-patch",
                "--model",
                model,
                "--clean-ids",
                &csv(&case["clean_ids"]),
                "--corrupt-ids",
                &csv(&case["corrupt_ids"]),
                "--senders",
                &senders,
                "--receivers",
                &receivers,
                "--answer",
                &answer,
                "--wrong",
                &wrong,
            ]);
            assert_eq!(code, 0, "{err}");
            let at = format!("{name} path-patch {senders} -> {receivers}");
            for k in ["clean_metric", "corrupt_metric", "patched_metric"] {
                close(&at, &v[k], &want[k], 1e-5);
            }
        }
        checked += 1;
    }
    assert_eq!(checked, 14, "every tiny case ran");

    let model = fixtures().join("tiny-llama");
    let model = model.to_str().unwrap();
    let base = ["--model", model, "--answer", "30", "--wrong", "58"];
    // Mean ablation needs the reference prompt: a message, exit 1.
    let mut args = vec![
        "ablate", "--ids", "5,30,12", "--heads", "1.2", "--mode", "mean",
    ];
    args.extend(base);
    let (code, _, err) = interplay(&args);
    assert_eq!(code, 1);
    assert!(err.contains("--reference-ids"), "{err}");
    // A head written wrongly is a usage error that says how to write one.
    let mut args = vec![
        "ablate", "--ids", "5,30,12", "--heads", "1:2", "--mode", "zero",
    ];
    args.extend(base);
    let (code, _, err) = interplay(&args);
    assert_eq!(code, 2);
    assert!(err.contains("LAYER.HEAD"), "{err}");
    // An answer outside the vocabulary is a message, not a panic.
    let args = [
        "ablate", "--model", model, "--ids", "5,30,12", "--heads", "1.2", "--mode", "zero",
        "--answer", "96", "--wrong", "58",
    ];
    let (code, _, err) = interplay(&args);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("outside the vocabulary"), "{err}");
    // Receivers before the senders, and heads the model lacks, are refused plainly.
    for (senders, receivers, says) in [("1.0", "0.1:q", "later layer"), ("0.9", "1.1:q", "L0H9")] {
        let mut args = vec![
            "path-patch",
            "--clean-ids",
            "5,30,12",
            "--corrupt-ids",
            "5,58,12",
            "--senders",
            senders,
            "--receivers",
            receivers,
        ];
        args.extend(base);
        let (code, _, err) = interplay(&args);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains(says), "{err}");
    }
}

/// `interplay run` of a relation-neurons spec (the trimmed one of
/// `make_relation_neurons_goldens.py`) gives HF's top neurons and accuracies.
#[test]
fn run_relation_neurons_matches_hugging_face() {
    let Some(model) = interplay_testkit::smollm2() else {
        return;
    };
    let g = &golden("neurons")["trimmed"];
    let s = &g["spec"];
    let spec = serde_json::json!({
        "lab": "circuits", "experiment": "relation-neurons", "model": "smollm2",
        "facts": {"given": g["given"]}, "relation": s["relation"], "ks": s["ks"],
        "random": s["random"], "seed": s["seed"],
    });
    let file = std::env::temp_dir().join("interplay-relation-neurons.json");
    std::fs::write(&file, spec.to_string()).unwrap();
    let (code, v, err) = interplay(&[
        "run",
        file.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let r = &v["result"];
    assert_eq!(r["relations"], g["relations"]);
    assert_eq!(r["tokens"], g["tokens"]);
    let top: Vec<Value> = r["top"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| serde_json::json!([n["layer"], n["index"]]))
        .collect();
    let want: Vec<Value> = g["top"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| serde_json::json!([n[0], n[1]]))
        .collect();
    assert_eq!(top, want, "top neurons");
    for (p, w) in r["ranked"]
        .as_array()
        .unwrap()
        .iter()
        .zip(g["ranked"].as_array().unwrap())
    {
        assert_eq!(p["k"], w["k"]);
        assert_eq!(p["correct"], w["correct"], "k = {}", p["k"]);
    }
}

/// `interplay run` of the trimmed circuit-reuse spec: HF's Colored Objects answers, item by item,
/// with and without the attention intervention, and its IOI attention to the repeated name.
#[test]
fn run_circuit_reuse_matches_hugging_face() {
    let Some(model) = interplay_testkit::smollm2() else {
        return;
    };
    let g = &golden("reuse")["trimmed"];
    let s = &g["spec"];
    let spec = serde_json::json!({
        "lab": "circuits", "experiment": "circuit-reuse", "model": "smollm2",
        "tasks": {"given": g["given"]}, "pairs": s["pairs"], "top_k": s["top_k"],
        "heads": s["heads"], "control": s["control"], "seed": s["seed"],
    });
    let file = std::env::temp_dir().join("interplay-circuit-reuse.json");
    std::fs::write(&file, spec.to_string()).unwrap();
    let (code, v, err) = interplay(&[
        "run",
        file.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let r = &v["result"];
    for (ours, hf) in [("base", "base"), ("intervened", "intervened")] {
        let want: Vec<Value> = g[hf]["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["answered"].clone())
            .collect();
        assert_eq!(r[ours]["answered"].as_array().unwrap(), &want, "{ours}");
    }
    let s2 = &r["s2_attention"];
    for (l, row) in g["s2_attention"].as_array().unwrap().iter().enumerate() {
        for (h, w) in row.as_array().unwrap().iter().enumerate() {
            let x = s2[l][h].as_f64().unwrap();
            assert!(
                (x - w.as_f64().unwrap()).abs() < 1e-4,
                "S2 attention {l}.{h}"
            );
        }
    }
}

/// `interplay run` of the trimmed recall-vs-reasoning spec: HF's margins on every discovery
/// question with each layer's attention or MLP zeroed at the last position, and the test
/// questions answered as the model is.
#[test]
fn run_recall_reasoning_matches_hugging_face() {
    let Some(model) = interplay_testkit::smollm2() else {
        return;
    };
    let g = &golden("recall")["trimmed"];
    let s = &g["spec"];
    let spec = serde_json::json!({
        "lab": "circuits", "experiment": "recall-reasoning", "model": "smollm2",
        "tasks": {"given": g["given"]}, "ablation": s["ablation"], "scope": s["scope"],
        "heads": s["heads"], "top_k": s["top_k"], "control": s["control"], "seed": s["seed"],
    });
    let file = std::env::temp_dir().join("interplay-recall-reasoning.json");
    std::fs::write(&file, spec.to_string()).unwrap();
    let (code, v, err) = interplay(&[
        "run",
        file.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let r = &v["result"];
    for task in ["recall", "reasoning"] {
        let effects = r["effects"].as_array().unwrap();
        let want = g["effects"][task].as_array().unwrap();
        assert_eq!(effects.len(), want.len(), "{task}: components");
        for (j, (e, w)) in effects.iter().zip(want).enumerate() {
            let ours = e[task]["margins"].as_array().unwrap();
            for (x, y) in ours.iter().zip(w["margins"].as_array().unwrap()) {
                let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
                assert!((x - y).abs() < 1e-3, "{task} component {j}: {x} vs HF {y}");
            }
        }
        assert_eq!(
            r["test"][task]["correct"], g["circuits"]["test"][task]["correct"],
            "{task} test questions answered"
        );
    }
}

/// `interplay run` of an attribution-patching spec on the tiny Llama: the estimates are PyTorch
/// autograd's (make_attribution_goldens.py), the sweep beside them Hugging Face's hooks
/// (make_patching_goldens.py), and the correlation and top-10 overlap those two goldens give.
#[test]
fn run_attribution_patching_matches_pytorch() {
    let tiny = fixtures().join("tiny-llama").join("model.gguf");
    let at = &golden("attribution")["models"]["tiny-llama"];
    let act = &golden("patching")["models"]["tiny-llama"];
    let spec = serde_json::json!({
        "lab": "circuits", "experiment": "attribution-patching", "model": "tiny-llama",
        "clean": at["clean"], "corrupt": at["corrupt"], "answer": at["answer"],
        "wrong": at["wrong"], "target": "head_out_pos",
    });
    let file = std::env::temp_dir().join("interplay-attribution.json");
    std::fs::write(&file, spec.to_string()).unwrap();
    let (code, v, err) = interplay(&[
        "run",
        file.to_str().unwrap(),
        "--model",
        tiny.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let r = &v["result"];
    let flat = |g: &Value| -> Vec<f64> {
        g.as_array()
            .unwrap()
            .iter()
            .flat_map(|row| row.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()))
            .collect()
    };
    for (ours, want) in [("attribution", at), ("activation", act)] {
        let (got, want) = (flat(&r[ours]["patched"]), flat(&want["head_out_pos"]));
        assert_eq!(got.len(), want.len(), "{ours}");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-4 * w.abs().max(1.0),
                "{ours}[{i}]: {g} vs {w}"
            );
        }
    }
    // The correlation of the normalised grids, from the goldens.
    let norm = |g: &Value| {
        let (c, x) = (
            g["clean_metric"].as_f64().unwrap(),
            g["corrupt_metric"].as_f64().unwrap(),
        );
        flat(&g["head_out_pos"])
            .iter()
            .map(|v| (v - x) / (c - x))
            .collect::<Vec<_>>()
    };
    let (a, b) = (norm(at), norm(act));
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(&b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let sa: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let sb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    let want = cov / (sa * sb).sqrt();
    let got = r["correlation"].as_f64().unwrap();
    assert!((got - want).abs() < 1e-3, "correlation {got} vs {want}");
    assert_eq!(r["top"], 10);
    assert!(r["top_overlap"].as_u64().unwrap() <= 10);
}

/// `interplay run` of an edge-attribution spec: the EAP-IG scores and exact effects of the top
/// edges are PyTorch's (make_eap_goldens.py), and a circuit of every edge is the clean run.
#[test]
fn run_edge_attribution_matches_pytorch() {
    let tiny = fixtures().join("tiny-llama").join("model.gguf");
    let g = golden("eap");
    let want = &g["models"]["tiny-llama"];
    let spec = serde_json::json!({
        "lab": "circuits", "experiment": "edge-attribution", "model": "tiny-llama",
        "clean": want["clean"], "corrupt": want["corrupt"], "answer": want["answer"],
        "wrong": want["wrong"], "method": "eap-ig", "steps": g["steps"], "top": 30,
    });
    let file = std::env::temp_dir().join("interplay-edges.json");
    std::fs::write(&file, spec.to_string()).unwrap();
    let (code, v, err) = interplay(&[
        "run",
        file.to_str().unwrap(),
        "--model",
        tiny.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let r = &v["result"];
    assert_eq!(r["edges"], 82);
    assert_eq!(r["upstream"], want["upstream"]);
    assert_eq!(r["downstream"], want["downstream"]);
    for e in r["top"].as_array().unwrap() {
        let (u, vv) = (
            e["u"].as_u64().unwrap() as usize,
            e["v"].as_u64().unwrap() as usize,
        );
        for (ours, theirs) in [("score", &want["eap_ig"]), ("exact", &want["exact"])] {
            let (got, w) = (e[ours].as_f64().unwrap(), theirs[u][vv].as_f64().unwrap());
            assert!(
                (got - w).abs() < 1e-4,
                "{ours} {} → {}: {got} vs {w}",
                e["from"],
                e["to"]
            );
        }
    }
    let curve = r["curve"].as_array().unwrap();
    let last = curve.last().unwrap();
    assert_eq!(last["edges"], 82);
    assert!(
        (last["faithfulness"].as_f64().unwrap() - 1.0).abs() < 1e-3,
        "{last}"
    );
    // Bad specs are messages, before any gradient is computed.
    for (change, message) in [
        (
            serde_json::json!({"corrupt": want["clean"]}),
            "nothing to attribute",
        ),
        (
            serde_json::json!({"circuits": []}),
            "give 1 to 40 circuit sizes",
        ),
        (serde_json::json!({"top": 500}), "at most 200 edges"),
        (serde_json::json!({"steps": 0}), "1 to 100 steps"),
    ] {
        let mut bad = spec.clone();
        for (k, v) in change.as_object().unwrap() {
            bad[k] = v.clone();
        }
        std::fs::write(&file, bad.to_string()).unwrap();
        let (code, _, err) = interplay(&[
            "run",
            file.to_str().unwrap(),
            "--model",
            tiny.to_str().unwrap(),
        ]);
        assert_ne!(code, 0);
        assert!(err.contains(message), "{change}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// The numbers the edge guide quotes, from `interplay run` of its spec with each method (the
/// scores and circuits themselves are checked against PyTorch in `models/eap`).
#[test]
fn the_edge_guides_numbers_are_this_projects_runs() {
    let Some(model) = interplay_testkit::smollm2() else {
        return;
    };
    let run = |method: &str| {
        let mut spec = serde_json::to_value(interplay_lab::edges::EdgeSpec::ioi_smollm2()).unwrap();
        spec["lab"] = "circuits".into();
        spec["method"] = method.into();
        let file = std::env::temp_dir().join(format!("interplay-edges-{method}.json"));
        std::fs::write(&file, spec.to_string()).unwrap();
        let (code, v, err) = interplay(&[
            "run",
            file.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{err}");
        v["result"].clone()
    };
    let faith = |r: &Value, n: u64| {
        r["curve"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["edges"] == n)
            .unwrap()["faithfulness"]
            .as_f64()
            .unwrap()
    };
    let close = |got: f64, want: f64, what: &str| {
        assert!((got - want).abs() < 0.006, "{what}: {got} vs {want}")
    };
    let ig = run("eap-ig");
    assert_eq!(ig["edges"], 70651);
    close(
        ig["correlation"].as_f64().unwrap(),
        0.993,
        "EAP-IG correlation",
    );
    // (rank, from, to, score, exact) as the guide states them.
    for (i, from, to, score, exact) in [
        (0, "input", "m0", -11.06, -11.41),
        (1, "a23.h3", "logits", -6.03, -6.19),
    ] {
        let e = &ig["top"][i];
        assert_eq!(
            (e["from"].as_str(), e["to"].as_str()),
            (Some(from), Some(to))
        );
        assert!((e["score"].as_f64().unwrap() - score).abs() < 0.05, "{e}");
        assert!((e["exact"].as_f64().unwrap() - exact).abs() < 0.05, "{e}");
    }
    for (n, f) in [(10, 0.27), (100, 0.48), (1000, 0.83), (10000, 0.96)] {
        close(faith(&ig, n), f, &format!("EAP-IG, {n} edges"));
    }
    let eap = run("eap");
    // EAP's score of input → m0 (not among its top 20) is PyTorch's, -0.50 (the golden's list).
    let g = golden("eap");
    let listed = g["models"]["smollm2"]["edges"].as_array().unwrap();
    let e = listed.iter().find(|e| e[0] == 0 && e[1] == 15).unwrap();
    assert!((e[2].as_f64().unwrap() + 0.50).abs() < 0.005, "{e:?}");
    assert_eq!(g["models"]["smollm2"]["downstream"][15], "m0");
    assert!(
        eap["top"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["from"] != "input" || e["to"] != "m0"),
        "EAP leaves input → m0 out of its top 20"
    );
    for (n, f) in [(10, 0.0), (100, 0.25), (1000, 0.63)] {
        close(faith(&eap, n), f, &format!("EAP, {n} edges"));
    }
    // Edges on a kept path from the input to the logits: none among EAP's top 20, 3 of EAP-IG's
    // top 10.
    let connected = |r: &Value, n: u64| {
        r["curve"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["edges"] == n)
            .unwrap()["connected"]
            .clone()
    };
    assert_eq!(connected(&eap, 20), 0);
    assert_eq!(connected(&ig, 10), 3);
}

/// The numbers the clamping guide quotes, from `interplay run` of its spec (the training itself
/// is checked against PyTorch step by step in `lab/clamp`); bad specs are messages.
#[test]
fn the_clamp_guides_numbers_are_this_projects_runs() {
    let mut spec =
        serde_json::to_value(interplay_lab::clamp::ClampSpec::previous_token_guided()).unwrap();
    spec["lab"] = "circuits".into();
    let file = std::env::temp_dir().join("interplay-clamp-guided.json");
    std::fs::write(&file, spec.to_string()).unwrap();
    let (code, v, err) = interplay(&["run", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let runs = v["result"]["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["label"], "unclamped");
    // Exact here; another CPU's float order may move a level crossing by a step or two.
    let phase = |r: &Value| r["phase_change"].as_i64().unwrap();
    assert!(
        (phase(&runs[0]) - 254).abs() <= 3,
        "unclamped: {}",
        phase(&runs[0])
    );
    assert!(
        (phase(&runs[1]) - 177).abs() <= 3,
        "previous-token head: {}",
        phase(&runs[1])
    );
    let score = |r: &Value, what: &str, l: usize, h: usize| r[what][l][h].as_f64().unwrap();
    // Unclamped, layer 0 forms its own previous-token head; the clamped run's layer 1 heads
    // become induction heads.
    assert!((score(&runs[0], "previous", 0, 1) - 0.77).abs() < 0.01);
    for h in 0..4 {
        let s = score(&runs[1], "induction", 1, h);
        assert!((0.935..0.965).contains(&s), "L1H{h} induction {s}");
    }
    assert!((score(&runs[1], "previous", 0, 0) - 1.0).abs() < 1e-6);

    spec["context"] = 64.into();
    std::fs::write(&file, spec.to_string()).unwrap();
    let (code, _, err) = interplay(&["run", file.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("context: give 8 to 48 positions"), "{err}");
}

/// The numbers the subspace-patching guide quotes, from `interplay run` of its spec (the
/// training and the effects are checked against PyTorch in `lab/subspace`); bad specs are
/// messages.
#[test]
fn the_subspace_guides_numbers_are_this_projects_runs() {
    let mut spec = serde_json::to_value(interplay_lab::subspace::SubspaceSpec::guided()).unwrap();
    spec["lab"] = "circuits".into();
    let file = std::env::temp_dir().join("interplay-subspace-guided.json");
    std::fs::write(&file, spec.to_string()).unwrap();
    let model = fixtures().join("../../public/bundled/ioi-3l");
    let run = |file: &std::path::Path| {
        interplay(&[
            "run",
            file.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
        ])
    };
    let (code, v, err) = run(&file);
    assert_eq!(code, 0, "{err}");
    let r = &v["result"];
    assert_eq!(r["test_pairs"], 480);
    let near = |x: &Value, want: f64, tol: f64, what: &str| {
        let x = x.as_f64().unwrap();
        assert!(
            (x - want).abs() <= tol,
            "{what}: {x}, the guide says {want}"
        );
    };
    near(&r["unpatched"]["logit_diff"], 10.65, 0.01, "unpatched");
    let d = r["directions"].as_array().unwrap();
    assert_eq!(d[0]["hook"], "blocks.1.mlp.hook_post");
    assert_eq!(d[1]["hook"], "blocks.1.hook_resid_post");
    // The MLP: no illusion.
    near(&d[0]["full"]["logit_diff"], 7.11, 0.01, "MLP full patch");
    near(&d[0]["along"]["logit_diff"], 8.59, 0.02, "MLP along v");
    near(&d[0]["row"]["logit_diff"], 8.68, 0.02, "MLP read part");
    near(&d[0]["null"]["logit_diff"], 10.65, 0.01, "MLP unread part");
    near(
        &d[0]["from_null"],
        0.17,
        0.01,
        "MLP coefficient from the unread part",
    );
    assert_eq!(d[0]["null_dim"], 192);
    // The residual stream: faithful, partial.
    near(
        &d[1]["full"]["logit_diff"],
        -10.20,
        0.01,
        "residual full patch",
    );
    near(
        &d[1]["full"]["flipped"],
        0.96,
        0.01,
        "residual full patch flips",
    );
    near(&d[1]["along"]["logit_diff"], 5.75, 0.02, "residual along v");
    near(
        &d[1]["along"]["flipped"],
        0.20,
        0.01,
        "residual along v flips",
    );
    near(&d[1]["row_share"], 0.997, 0.002, "residual row share");

    spec["hooks"] = serde_json::json!(["blocks.3.mlp.hook_post"]);
    std::fs::write(&file, spec.to_string()).unwrap();
    let (code, _, err) = run(&file);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("blocks.3.mlp.hook_post does not exist"),
        "{err}"
    );
}

/// The guide's negative finding: with the opening's order swapped (the paper's position
/// variable), nothing at the last position of `ioi-3l` carries it — at every hook the experiment
/// offers, even the whole activation patched leaves the logit difference where it was.
#[test]
fn the_opening_order_is_not_carried_at_the_last_position() {
    let model = fixtures().join("../../public/bundled/ioi-3l");
    let hooks: Vec<String> = (0..3)
        .flat_map(|l| {
            [
                "hook_resid_pre",
                "hook_resid_mid",
                "mlp.hook_post",
                "hook_resid_post",
            ]
            .map(|h| format!("blocks.{l}.{h}"))
        })
        .collect();
    for four in hooks.chunks(4) {
        let mut spec =
            serde_json::to_value(interplay_lab::subspace::SubspaceSpec::guided()).unwrap();
        spec["lab"] = "circuits".into();
        spec["counterfactual"] = "order".into();
        spec["steps"] = 1.into();
        spec["hooks"] = serde_json::json!(four);
        let file = std::env::temp_dir().join("interplay-subspace-order.json");
        std::fs::write(&file, spec.to_string()).unwrap();
        let (code, v, err) = interplay(&[
            "run",
            file.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{err}");
        let r = &v["result"];
        let base = r["unpatched"]["logit_diff"].as_f64().unwrap();
        for d in r["directions"].as_array().unwrap() {
            let ld = d["full"]["logit_diff"].as_f64().unwrap();
            assert!(
                (ld - base).abs() < 0.05,
                "{}: {ld} against {base}",
                d["hook"]
            );
        }
    }
}
