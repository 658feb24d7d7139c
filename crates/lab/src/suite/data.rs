//! The tasks and their data: digits under five input transforms, splits, user data files.

use super::*;

/// Input features: 8×8 pixels scaled to [0, 1].
pub const INPUTS: usize = 64;
/// Hidden width of both hidden layers.
pub const HIDDEN: usize = 128;
/// Output classes: the ten digits.
pub const CLASSES: usize = 10;
/// The layers: name, inputs, outputs. Parameters are `{name}.weight` `[out, in]` and
/// `{name}.bias` `[out]`.
pub const LAYERS: [(&str, usize, usize); 3] = [
    ("fc1", INPUTS, HIDDEN),
    ("fc2", HIDDEN, HIDDEN),
    ("head", HIDDEN, CLASSES),
];

/// One task of the suite: the digits under an input transform.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    /// The digits as scanned (the base model's pre-training task; the control task).
    Digits,
    /// Mirrored left to right.
    Mirror,
    /// Upside down (mirrored top to bottom).
    Flip,
    /// Rotated a quarter turn clockwise.
    Rotate,
    /// Ink and paper swapped (16 − pixel).
    Invert,
}

impl Task {
    /// Every task, base task first.
    pub const ALL: [Task; 5] = [
        Task::Digits,
        Task::Mirror,
        Task::Flip,
        Task::Rotate,
        Task::Invert,
    ];
    /// The tasks the bundled fine-tuned models were trained on.
    pub const FINE_TUNED: [Task; 4] = [Task::Mirror, Task::Flip, Task::Rotate, Task::Invert];

    /// The spec name.
    pub fn name(self) -> &'static str {
        match self {
            Task::Digits => "digits",
            Task::Mirror => "mirror",
            Task::Flip => "flip",
            Task::Rotate => "rotate",
            Task::Invert => "invert",
        }
    }

    /// One line for people.
    pub fn describe(self) -> &'static str {
        match self {
            Task::Digits => "digits as scanned",
            Task::Mirror => "digits mirrored left to right",
            Task::Flip => "digits upside down",
            Task::Rotate => "digits turned a quarter clockwise",
            Task::Invert => "digits with ink and paper swapped",
        }
    }

    /// Pixel (r, c) of the transformed image, in [0, 1].
    pub(crate) fn pixel(self, img: &[u8], r: usize, c: usize) -> f32 {
        let at = |r: usize, c: usize| f32::from(img[r * 8 + c]) / 16.0;
        match self {
            Task::Digits => at(r, c),
            Task::Mirror => at(r, 7 - c),
            Task::Flip => at(7 - r, c),
            Task::Rotate => at(7 - c, r),
            Task::Invert => 1.0 - at(r, c),
        }
    }
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Task {
    type Err = LabError;
    fn from_str(s: &str) -> Result<Self, LabError> {
        Task::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| {
                LabError::Spec(format!(
                    "unknown task {s:?}: use digits, mirror, flip, rotate or invert"
                ))
            })
    }
}

/// Which part of the 1797 images: every fourth image is held out for evaluation (450), the rest
/// (1347) is for training.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// Images with index % 4 ≠ 0.
    Train,
    /// Images with index % 4 = 0.
    Test,
}

/// Labelled inputs.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// Inputs `[n, 64]`, row-major.
    pub x: Vec<f32>,
    /// Labels `[n]`, each < 10.
    pub y: Vec<u32>,
}

impl Dataset {
    /// A task's split of the bundled digits (in the page, once the suite's files are fetched).
    pub fn task(task: Task, split: Split) -> Result<Dataset, LabError> {
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for (i, row) in bundled_bytes("digits.u8")?
            .chunks_exact(INPUTS + 1)
            .enumerate()
        {
            if (i % 4 == 0) != (split == Split::Test) {
                continue;
            }
            for r in 0..8 {
                for c in 0..8 {
                    x.push(task.pixel(row, r, c));
                }
            }
            y.push(u32::from(row[INPUTS]));
        }
        Ok(Dataset { x, y })
    }

    /// A user's data: one example per line, 64 numbers (pixels 0..16, row by row) then the label
    /// 0..9, separated by commas or spaces; blank lines and lines starting with `#` are skipped.
    pub fn parse(text: &str) -> Result<Dataset, LabError> {
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|f| !f.is_empty())
                .collect();
            if fields.len() != INPUTS + 1 {
                return Err(LabError::Spec(format!(
                    "line {}: expected 64 pixel values and a label (65 numbers), found {}",
                    n + 1,
                    fields.len()
                )));
            }
            for f in &fields[..INPUTS] {
                let v: f32 = f.parse().map_err(|_| {
                    LabError::Spec(format!("line {}: {f:?} is not a number", n + 1))
                })?;
                if !(0.0..=16.0).contains(&v) {
                    return Err(LabError::Spec(format!(
                        "line {}: pixel {v} is outside 0..16",
                        n + 1
                    )));
                }
                x.push(v / 16.0);
            }
            let label: u32 = fields[INPUTS]
                .parse()
                .ok()
                .filter(|l| *l < CLASSES as u32)
                .ok_or_else(|| {
                    LabError::Spec(format!(
                        "line {}: the label {:?} is not a digit 0..9",
                        n + 1,
                        fields[INPUTS]
                    ))
                })?;
            y.push(label);
        }
        if y.is_empty() {
            return Err(LabError::Spec(
                "the data has no examples: paste lines of 64 pixels and a label".into(),
            ));
        }
        Ok(Dataset { x, y })
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// Whether there are no examples.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    /// The first `per_class` examples of each class (few-shot subsets).
    pub fn per_class(&self, per_class: usize) -> Dataset {
        let mut seen = [0usize; CLASSES];
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for (i, &l) in self.y.iter().enumerate() {
            if seen[l as usize] < per_class {
                seen[l as usize] += 1;
                x.extend_from_slice(&self.x[i * INPUTS..(i + 1) * INPUTS]);
                y.push(l);
            }
        }
        Dataset { x, y }
    }

    /// Inputs on the device.
    ///
    /// # Shapes
    /// - returns `[n, 64]`
    pub fn inputs(&self, device: &Device) -> Tensor<2> {
        Tensor::from_data(
            TensorData::new(self.x.clone(), [self.len(), INPUTS]),
            device,
        )
    }

    /// One-hot labels on the device.
    ///
    /// # Shapes
    /// - returns `[n, 10]`
    pub(crate) fn one_hot(&self, device: &Device) -> Tensor<2> {
        let mut v = vec![0f32; self.len() * CLASSES];
        for (i, &l) in self.y.iter().enumerate() {
            v[i * CLASSES + l as usize] = 1.0;
        }
        Tensor::from_data(TensorData::new(v, [self.len(), CLASSES]), device)
    }
}
