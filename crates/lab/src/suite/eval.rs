//! The bundled weights and every task's test split.

use super::*;

/// The bundled models: the base (trained on [`Task::Digits`]) and one fine-tune per
/// [`Task::FINE_TUNED`], trained by `interplay train-suite` (see `suite/README.md`).
pub fn bundled(task: Option<Task>) -> Result<Weights, LabError> {
    let bytes: &[u8] = match task {
        None | Some(Task::Digits) => include_bytes!("../../suite/base.safetensors"),
        Some(Task::Mirror) => include_bytes!("../../suite/mirror.safetensors"),
        Some(Task::Flip) => include_bytes!("../../suite/flip.safetensors"),
        Some(Task::Rotate) => include_bytes!("../../suite/rotate.safetensors"),
        Some(Task::Invert) => include_bytes!("../../suite/invert.safetensors"),
    };
    Ok(interplay_models::safetensors::read_safetensors(bytes)?)
}

/// The bundled linearised fine-tunes (tangent space of the base, [`TrainOptions::linearised_fine_tune`]),
/// one per [`Task::FINE_TUNED`], trained by `interplay train-suite`. They are meant to be run as
/// linearised models around the base ([`Mlp::upload_at`]).
pub fn bundled_linearised(task: Task) -> Result<Weights, LabError> {
    let bytes: &[u8] = match task {
        Task::Digits => {
            return Err(LabError::Spec(format!(
                "{task} is the base model's own task: there is no fine-tune for it"
            )));
        }
        Task::Mirror => include_bytes!("../../suite/linearised/mirror.safetensors"),
        Task::Flip => include_bytes!("../../suite/linearised/flip.safetensors"),
        Task::Rotate => include_bytes!("../../suite/linearised/rotate.safetensors"),
        Task::Invert => include_bytes!("../../suite/linearised/invert.safetensors"),
    };
    Ok(interplay_models::safetensors::read_safetensors(bytes)?)
}

/// A bundled fine-tune, standard or linearised.
pub fn bundled_fine_tune(task: Task, linearised: bool) -> Result<Weights, LabError> {
    if linearised {
        bundled_linearised(task)
    } else {
        bundled(Some(task))
    }
}

/// Weights as safetensors bytes (suite parameter order).
pub fn to_safetensors(w: &Weights) -> Result<Vec<u8>, LabError> {
    check_weights(w)?;
    let names = parameter_names();
    let tensors: Vec<(String, &HostTensor)> = names.iter().map(|n| (n.clone(), &w[n])).collect();
    Ok(interplay_models::safetensors::write_safetensors(&tensors))
}

/// Every task's test split, stacked so a model is scored on all of them in one pass (one
/// dispatch chain and one readback instead of one per task: readbacks dominate on WebGPU).
#[derive(Clone, Debug)]
pub struct TestSets {
    /// Inputs of [`Task::ALL`] in order, `[5 · 450, 64]`.
    x: Tensor<2>,
    /// Labels per task, in [`Task::ALL`] order.
    y: Vec<Vec<u32>>,
}

/// Every task's test inputs on the device with their labels.
pub fn test_sets(device: &Device) -> TestSets {
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for t in Task::ALL {
        let d = Dataset::task(t, Split::Test);
        x.extend(d.x);
        y.push(d.y);
    }
    let n = x.len() / INPUTS;
    TestSets {
        x: Tensor::from_data(TensorData::new(x, [n, INPUTS]), device),
        y,
    }
}

/// Accuracy of `w` on every task's test split, in [`Task::ALL`] order; with `at`, of `w` as a
/// linearised model around `at`.
pub async fn evaluate(
    device: &Device,
    w: &Weights,
    at: Option<&Weights>,
    tests: &TestSets,
) -> Result<Vec<f64>, LabError> {
    let mlp = Mlp::upload_at(w, at, device)?;
    let pred = predict(&mlp, tests.x.clone()).await?;
    let mut at = 0;
    Ok(tests
        .y
        .iter()
        .map(|y| {
            let acc = accuracy(&pred[at..at + y.len()], y);
            at += y.len();
            acc
        })
        .collect())
}
