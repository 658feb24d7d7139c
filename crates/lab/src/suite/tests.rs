//! Unit tests: data, gradients against finite differences, training, evaluation.
#![allow(clippy::unwrap_used)]

use super::*;
use interplay_models::patching::no_progress;
use std::collections::BTreeMap;

#[test]
fn splits_and_transforms() {
    let train = Dataset::task(Task::Digits, Split::Train).expect("digits");
    let test = Dataset::task(Task::Digits, Split::Test).expect("digits");
    assert_eq!((train.len(), test.len()), (1347, 450));
    let m = Dataset::task(Task::Mirror, Split::Test).expect("digits");
    let r = Dataset::task(Task::Rotate, Split::Test).expect("digits");
    let inv = Dataset::task(Task::Invert, Split::Test).expect("digits");
    assert_eq!(m.y, test.y);
    // Row 0 of image 0 mirrored; rotating puts the bottom-left pixel at the top-left.
    assert_eq!(m.x[0], test.x[7]);
    assert_eq!(r.x[0], test.x[56]);
    assert!((inv.x[3] - (1.0 - test.x[3])).abs() < 1e-7);
}

/// The loss in float64 on the host: an independent reference for the device code.
fn host_loss(w: &BTreeMap<String, Vec<f64>>, data: &Dataset, loss: Loss) -> f64 {
    let mut total = 0.0;
    for (k, &label) in data.y.iter().enumerate() {
        let mut h: Vec<f64> = data.x[k * INPUTS..(k + 1) * INPUTS]
            .iter()
            .map(|v| *v as f64)
            .collect();
        for (li, (name, fan_in, out)) in LAYERS.iter().enumerate() {
            let wt = &w[&format!("{name}.weight")];
            let b = &w[&format!("{name}.bias")];
            let mut z: Vec<f64> = (0..*out)
                .map(|o| b[o] + (0..*fan_in).map(|i| wt[o * fan_in + i] * h[i]).sum::<f64>())
                .collect();
            if li + 1 < LAYERS.len() {
                z.iter_mut().for_each(|v| *v = v.max(0.0));
            }
            h = z;
        }
        let m = h.iter().cloned().fold(f64::MIN, f64::max);
        let lse = m + h.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
        total += match loss {
            Loss::CrossEntropy => lse - h[label as usize],
            Loss::Entropy => -h.iter().map(|v| (v - lse).exp() * (v - lse)).sum::<f64>(),
        };
    }
    total / data.len() as f64
}

#[test]
fn gradients_match_float64_finite_differences() {
    let device = Device::flex();
    let w = init_weights(3);
    let w64: BTreeMap<String, Vec<f64>> = w
        .iter()
        .map(|(k, t)| (k.clone(), t.data.iter().map(|v| *v as f64).collect()))
        .collect();
    let data = Dataset::task(Task::Digits, Split::Test)
        .expect("digits")
        .per_class(2);
    for loss in [Loss::CrossEntropy, Loss::Entropy] {
        let mlp = Mlp::upload(&w, &device).unwrap();
        let (value, grads) = mlp.gradients(data.inputs(&device), Some(data.one_hot(&device)), loss);
        let value = pollster::block_on(read_f32(value)).unwrap()[0] as f64;
        let reference = host_loss(&w64, &data, loss);
        assert!((value - reference).abs() < 1e-5 * reference.abs().max(1.0));
        for (li, (name, _, _)) in LAYERS.iter().enumerate() {
            let g = pollster::block_on(read_f32(grads[li].0.clone())).unwrap();
            let key = format!("{name}.weight");
            let mut rng = Rng::new(li as u64);
            for _ in 0..6 {
                let j = (rng.uniform() * g.len() as f64) as usize;
                let h = 1e-6;
                let mut plus = w64.clone();
                plus.get_mut(&key).unwrap()[j] += h;
                let mut minus = w64.clone();
                minus.get_mut(&key).unwrap()[j] -= h;
                let fd =
                    (host_loss(&plus, &data, loss) - host_loss(&minus, &data, loss)) / (2.0 * h);
                assert!(
                    (fd - g[j] as f64).abs() < 1e-4 * fd.abs().max(1e-2),
                    "{loss:?} {key}[{j}]: float64 {fd} vs device {}",
                    g[j]
                );
            }
        }
    }
}

#[test]
fn the_linearised_model_is_the_first_order_expansion() {
    let device = Device::flex();
    let base = bundled(None).unwrap();
    let x = Dataset::task(Task::Mirror, Split::Test)
        .expect("digits")
        .per_class(3)
        .inputs(&device);
    let shifted = |scale: f32| -> Weights {
        base.iter()
            .map(|(k, t)| {
                let mut t = t.clone();
                for (i, v) in t.data.iter_mut().enumerate() {
                    *v += scale * (((i * 7919) % 13) as f32 - 6.0) / 6.0;
                }
                (k.clone(), t)
            })
            .collect()
    };
    let logits = |w: &Weights, at: Option<&Weights>| {
        let mlp = Mlp::upload_at(w, at, &device).unwrap();
        pollster::block_on(read_f32(mlp.forward(x.clone()))).unwrap()
    };
    let f0 = logits(&base, None);
    let max_diff = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(p, q)| (p - q).abs())
            .fold(0f32, f32::max)
    };
    // At θ₀ it is the network.
    assert!(max_diff(&logits(&base, Some(&base)), &f0) < 1e-5);
    // Affine in θ: f(θ₀ + 2Δ) − f₀ = 2 (f(θ₀ + Δ) − f₀).
    let (l1, l2) = (
        logits(&shifted(0.01), Some(&base)),
        logits(&shifted(0.02), Some(&base)),
    );
    let twice: Vec<f32> = l1.iter().zip(&f0).map(|(a, b)| 2.0 * (a - b)).collect();
    let got: Vec<f32> = l2.iter().zip(&f0).map(|(a, b)| a - b).collect();
    assert!(max_diff(&got, &twice) < 1e-4, "{}", max_diff(&got, &twice));
    // First order: for a small step it agrees with the network to second order.
    let (lin, net) = (
        logits(&shifted(1e-3), Some(&base)),
        logits(&shifted(1e-3), None),
    );
    let step = max_diff(&net, &f0);
    assert!(
        step > 1e-3 && max_diff(&lin, &net) < 0.05 * step,
        "{} vs {step}",
        max_diff(&lin, &net)
    );
    // Its gradient is the base's gradient at θ₀, wherever θ is.
    let y = Dataset::task(Task::Mirror, Split::Test)
        .expect("digits")
        .per_class(3)
        .one_hot(&device);
    let g_base = Mlp::upload(&base, &device)
        .unwrap()
        .gradients(x.clone(), Some(y.clone()), Loss::Entropy)
        .1;
    let g_lin = Mlp::upload_at(&base, Some(&base), &device)
        .unwrap()
        .gradients(x.clone(), Some(y), Loss::Entropy)
        .1;
    for (a, b) in g_base.into_iter().zip(g_lin) {
        let (a, b) = (
            pollster::block_on(read_f32(a.0)).unwrap(),
            pollster::block_on(read_f32(b.0)).unwrap(),
        );
        assert!(max_diff(&a, &b) < 1e-6);
    }
}

#[test]
fn training_lowers_the_loss_and_cancels() {
    let device = Device::flex();
    let data = Dataset::task(Task::Mirror, Split::Train)
        .expect("digits")
        .per_class(20);
    let opts = TrainOptions {
        epochs: 5,
        ..TrainOptions::default()
    };
    let base = bundled(None).unwrap();
    let t = pollster::block_on(train(&device, &base, &data, &opts, &mut |_| {
        no_progress(0, 0)
    }))
    .unwrap();
    assert!(t.losses[4] < t.losses[0] * 0.7, "{:?}", t.losses);
    let mut cancel = |p: TrainProgress| -> Progress { Box::pin(async move { p.epoch < 2 }) };
    let r = pollster::block_on(train(&device, &base, &data, &opts, &mut cancel));
    assert!(matches!(r, Err(LabError::Cancelled)));
}

#[test]
fn user_data_is_checked() {
    let line = format!("{} 7", vec!["16"; 64].join(","));
    let d = Dataset::parse(&format!("# mine\n{line}\n\n")).unwrap();
    assert_eq!((d.len(), d.y[0], d.x[0]), (1, 7, 1.0));
    assert!(
        Dataset::parse("1,2,3")
            .unwrap_err()
            .to_string()
            .contains("65 numbers")
    );
    let bad = format!("{} 12", vec!["1"; 64].join(","));
    assert!(
        Dataset::parse(&bad)
            .unwrap_err()
            .to_string()
            .contains("not a digit")
    );
    assert!(Dataset::parse("").is_err());
}

/// The hand-written backward pass against PyTorch autograd in float64
/// (tests/fixtures/make_adamerging_goldens.py): ∂L/∂θ of every tensor of the bundled base
/// (cross-entropy and entropy) and of the linearised mirror fine-tune around it (entropy), on 2
/// test digits per class. Every bias entry, every 16th weight entry and each tensor's squared norm.
#[test]
fn gradients_match_pytorch_autograd() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/merge/adamerging_golden.json"
    );
    let g: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let device = Device::flex();
    let base = bundled(None).unwrap();
    let data = Dataset::task(Task::Digits, Split::Test)
        .expect("digits")
        .per_class(2);
    for case in g["parameter_gradients"].as_array().unwrap() {
        let (mlp, loss) = match (case["linearised"].as_bool().unwrap(), case["loss"].as_str()) {
            (true, Some("entropy")) => (
                Mlp::upload_at(
                    &bundled_fine_tune(Task::Mirror, true).unwrap(),
                    Some(&base),
                    &device,
                )
                .unwrap(),
                Loss::Entropy,
            ),
            (false, Some("cross-entropy")) => {
                (Mlp::upload(&base, &device).unwrap(), Loss::CrossEntropy)
            }
            (false, Some("entropy")) => (Mlp::upload(&base, &device).unwrap(), Loss::Entropy),
            other => panic!("no such gradient case: {other:?}"),
        };
        let at = format!("{} {:?}", case["model"], loss);
        let (value, grads) = mlp.gradients(data.inputs(&device), Some(data.one_hot(&device)), loss);
        let value = pollster::block_on(read_f32(value)).unwrap()[0] as f64;
        let want = case["value"].as_f64().unwrap();
        assert!(
            (value - want).abs() <= 1e-5 * want.abs().max(1.0),
            "{at}: loss {value} vs {want}"
        );
        for (li, (name, _, _)) in LAYERS.iter().enumerate() {
            for (part, t) in [("weight", &grads[li].0), ("bias", &grads[li].1)] {
                let key = format!("{name}.{part}");
                let got = pollster::block_on(read_f32(t.clone())).unwrap();
                let norm: f64 = got.iter().map(|v| (*v as f64).powi(2)).sum();
                let want_norm = case["squared_norm"][&key].as_f64().unwrap();
                assert!(
                    (norm - want_norm).abs() <= 1e-4 * want_norm + 1e-12,
                    "{at} {key}: squared norm {norm} vs PyTorch {want_norm}"
                );
                let stride = case["stride"][&key].as_u64().unwrap() as usize;
                let want: Vec<f64> = case["entries"][&key]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap())
                    .collect();
                let sampled: Vec<f32> = got.iter().step_by(stride).copied().collect();
                assert_eq!(sampled.len(), want.len(), "{at} {key}: entries");
                let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
                assert!(scale > 0.0, "{at} {key}: the sampled entries are all 0");
                for (j, (a, b)) in sampled.iter().zip(&want).enumerate() {
                    assert!(
                        (*a as f64 - b).abs() <= 1e-4 * b.abs() + 1e-5 * scale,
                        "{at} {key}[{}]: {a} vs PyTorch {b}",
                        j * stride
                    );
                }
            }
        }
    }
}
