//! The bundled data and weights, and every task's test split.

use super::*;

/// Names each bundled checkpoint once: the list the page fetches, and (natively) the bytes.
macro_rules! bundled_files {
    ($($f:literal),* $(,)?) => {
        /// The suite's files, relative to `public/bundled/merge/` (the site's `bundled/merge/`):
        /// the digits, the base, then the fine-tunes and the linearised fine-tunes in
        /// [`Task::FINE_TUNED`] order. Trained by `interplay train-suite` (see the README there).
        pub const BUNDLED_FILES: [&str; 10] = [$($f),*];

        /// The bytes of bundled file `name` (one of [`BUNDLED_FILES`]). Native builds carry
        /// them; the page fetches them when a Merge job first needs them (`provide_bundled`),
        /// so the page's module does not carry nine checkpoints that only one lab uses.
        #[cfg(not(target_arch = "wasm32"))]
        pub(super) fn bundled_bytes(name: &str) -> Result<&'static [u8], LabError> {
            match name {
                $($f => Ok(include_bytes!(concat!("../../../../public/bundled/merge/", $f))),)*
                _ => Err(not_bundled(name)),
            }
        }
    };
}

bundled_files!(
    "digits.u8",
    "base.safetensors",
    "mirror.safetensors",
    "flip.safetensors",
    "rotate.safetensors",
    "invert.safetensors",
    "linearised/mirror.safetensors",
    "linearised/flip.safetensors",
    "linearised/rotate.safetensors",
    "linearised/invert.safetensors",
);

/// The files the page fetched, by name.
#[cfg(target_arch = "wasm32")]
static PROVIDED: std::sync::OnceLock<std::collections::BTreeMap<String, Vec<u8>>> =
    std::sync::OnceLock::new();

/// Whether the page has handed over the bundled files ([`provide_bundled`]).
#[cfg(target_arch = "wasm32")]
pub fn bundled_provided() -> bool {
    PROVIDED.get().is_some()
}

/// Hand over every file of [`BUNDLED_FILES`] (name, bytes), fetched by the page. Checked to be
/// complete before they are kept (a damaged file fails where it is read, with the reader's
/// message); the first complete set stays.
#[cfg(target_arch = "wasm32")]
pub fn provide_bundled(files: Vec<(String, Vec<u8>)>) -> Result<(), LabError> {
    let files: std::collections::BTreeMap<String, Vec<u8>> = files.into_iter().collect();
    if let Some(missing) = BUNDLED_FILES.iter().find(|n| !files.contains_key(**n)) {
        return Err(not_bundled(missing));
    }
    let _ = PROVIDED.set(files);
    Ok(())
}

#[cfg(target_arch = "wasm32")]
pub(super) fn bundled_bytes(name: &str) -> Result<&'static [u8], LabError> {
    PROVIDED
        .get()
        .and_then(|f| f.get(name))
        .map(Vec::as_slice)
        .ok_or_else(|| not_bundled(name))
}

fn not_bundled(name: &str) -> LabError {
    LabError::Spec(format!(
        "the Merge suite's file bundled/merge/{name} is not loaded; reload the page (offline, it \
         is there once the page has been opened online)"
    ))
}

/// The bundled models: the base (trained on [`Task::Digits`]) and one fine-tune per
/// [`Task::FINE_TUNED`], trained by `interplay train-suite`.
pub fn bundled(task: Option<Task>) -> Result<Weights, LabError> {
    let file = match task {
        None | Some(Task::Digits) => "base.safetensors",
        Some(t) => &format!("{t}.safetensors"),
    };
    Ok(interplay_models::safetensors::read_safetensors(
        bundled_bytes(file)?,
    )?)
}

/// The bundled linearised fine-tunes (tangent space of the base, [`TrainOptions::linearised_fine_tune`]),
/// one per [`Task::FINE_TUNED`], trained by `interplay train-suite`. They are meant to be run as
/// linearised models around the base ([`Mlp::upload_at`]).
pub fn bundled_linearised(task: Task) -> Result<Weights, LabError> {
    if task == Task::Digits {
        return Err(LabError::Spec(format!(
            "{task} is the base model's own task: there is no fine-tune for it"
        )));
    }
    Ok(interplay_models::safetensors::read_safetensors(
        bundled_bytes(&format!("linearised/{task}.safetensors"))?,
    )?)
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
pub fn test_sets(device: &Device) -> Result<TestSets, LabError> {
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for t in Task::ALL {
        let d = Dataset::task(t, Split::Test)?;
        x.extend(d.x);
        y.push(d.y);
    }
    let n = x.len() / INPUTS;
    Ok(TestSets {
        x: Tensor::from_data(TensorData::new(x, [n, INPUTS]), device),
        y,
    })
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
