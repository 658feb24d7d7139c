//! The one experiment type: every lab's spec under a `"lab"` tag. Share links, the page's "Export
//! spec", `interplay run`, the fuzz target and the tests all read and write [`Experiment`], so a
//! file or link says by itself which lab it belongs to.
//!
//! ```json
//! {"lab": "circuits", "model": "ioi-3l", "clean": "...", "target": "resid_pre", ...}
//! {"lab": "dynamics", "experiment": "spiking", "ms": 1000, ...}
//! ```
//!
//! Links and files written before the tag existed (a bare lab spec) still open: a link's path
//! (`#/merge?spec=`) names its lab, and a bare file is recognised by the keys each lab's spec
//! always had ([`Experiment::from_json`]).

use interplay_dynamics::DynamicsSpec;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::LabError;
use crate::attribution::AttributionSpec;
use crate::clamp::ClampSpec;
use crate::edges::EdgeSpec;
use crate::mergelab::MergeSpec;
use crate::neurofeedback::NeurofeedbackSpec;
use crate::neurons::NeuronsSpec;
use crate::patching::PatchingSpec;
use crate::recall::RecallSpec;
use crate::reuse::ReuseSpec;
use crate::share;
use crate::subspace::SubspaceSpec;

/// One experiment of any lab.
///
/// Read through [`Experiment::from_value`] whatever the format (JSON, the engine's messages), so
/// a Circuits spec with `"experiment": "relation-neurons"` is told from a patching sweep. (So a
/// bare spec without `"lab"` deserializes too, its lab recognised by its keys.)
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "lab", rename_all = "kebab-case")]
pub enum Experiment {
    /// Circuits lab: an activation-patching sweep.
    Circuits(PatchingSpec),
    /// Circuits lab: relation-specific neurons (`"experiment": "relation-neurons"`).
    #[serde(rename = "circuits")]
    RelationNeurons(NeuronsSpec),
    /// Circuits lab: circuit component reuse, IOI vs Colored Objects (`"experiment":
    /// "circuit-reuse"`).
    #[serde(rename = "circuits")]
    CircuitReuse(ReuseSpec),
    /// Circuits lab: recall vs reasoning, layer and head ablations (`"experiment":
    /// "recall-reasoning"`).
    #[serde(rename = "circuits")]
    RecallReasoning(RecallSpec),
    /// Circuits lab: attribution patching beside activation patching (`"experiment":
    /// "attribution-patching"`).
    #[serde(rename = "circuits")]
    AttributionPatching(AttributionSpec),
    /// Circuits lab: edge attribution patching (EAP, EAP-IG), the top edges' exact effects and
    /// the faithfulness curve (`"experiment": "edge-attribution"`).
    #[serde(rename = "circuits")]
    EdgeAttribution(EdgeSpec),
    /// Circuits lab: the induction model trained with and without clamped activations
    /// (`"experiment": "clamped-training"`).
    #[serde(rename = "circuits")]
    ClampedTraining(ClampSpec),
    /// Circuits lab: a direction learned by distributed alignment search and patched along, with
    /// the parts of it the model reads and does not (`"experiment": "subspace-patching"`).
    #[serde(rename = "circuits")]
    SubspacePatching(SubspaceSpec),
    /// Merge lab: merges of the bundled suite, sweeps and maps.
    Merge(MergeSpec),
    /// Neurofeedback lab: the metacognition paradigm.
    Neurofeedback(NeurofeedbackSpec),
    /// Dynamics lab: reservoirs and spiking networks.
    Dynamics(DynamicsSpec),
}

/// Which lab an experiment belongs to; its slug is the page's route (`#/{slug}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LabKind {
    /// Circuits lab.
    Circuits,
    /// Merge lab.
    Merge,
    /// Neurofeedback lab.
    Neurofeedback,
    /// Dynamics lab.
    Dynamics,
}

impl LabKind {
    /// Every lab, in the page's order.
    pub const ALL: [LabKind; 4] = [
        LabKind::Circuits,
        LabKind::Merge,
        LabKind::Neurofeedback,
        LabKind::Dynamics,
    ];

    /// The route and tag: `"circuits"`, `"merge"`, `"neurofeedback"`, `"dynamics"`.
    pub fn slug(self) -> &'static str {
        match self {
            LabKind::Circuits => "circuits",
            LabKind::Merge => "merge",
            LabKind::Neurofeedback => "neurofeedback",
            LabKind::Dynamics => "dynamics",
        }
    }

    /// The lab's name in messages: `"Circuits"`, ...
    pub fn title(self) -> &'static str {
        match self {
            LabKind::Circuits => "Circuits",
            LabKind::Merge => "Merge",
            LabKind::Neurofeedback => "Neurofeedback",
            LabKind::Dynamics => "Dynamics",
        }
    }

    /// The lab of a slug.
    pub fn from_slug(slug: &str) -> Option<LabKind> {
        LabKind::ALL.into_iter().find(|l| l.slug() == slug)
    }

    /// The lab a page hash routes to (`#/merge?spec=...` → Merge); `None` for the start page or
    /// an unknown route.
    pub fn from_hash(hash: &str) -> Option<LabKind> {
        let route = hash.trim_start_matches('#').trim_start_matches('/');
        route.split(['?', '/']).next().and_then(LabKind::from_slug)
    }
}

/// A lab's own spec type, so a lab can read and write links of its own kind generically.
pub trait LabSpec: Sized + Clone {
    /// The lab the spec belongs to.
    const LAB: LabKind;
    /// Wrap in the one type.
    fn into_experiment(self) -> Experiment;
    /// The spec, if `e` is of this lab.
    fn from_experiment(e: Experiment) -> Option<Self>;
}

macro_rules! lab_spec {
    ($ty:ty, $variant:ident) => {
        impl LabSpec for $ty {
            const LAB: LabKind = LabKind::$variant;
            fn into_experiment(self) -> Experiment {
                Experiment::$variant(self)
            }
            fn from_experiment(e: Experiment) -> Option<Self> {
                match e {
                    Experiment::$variant(s) => Some(s),
                    _ => None,
                }
            }
        }
    };
}
lab_spec!(PatchingSpec, Circuits);
lab_spec!(MergeSpec, Merge);
lab_spec!(NeurofeedbackSpec, Neurofeedback);
lab_spec!(DynamicsSpec, Dynamics);

impl LabSpec for NeuronsSpec {
    const LAB: LabKind = LabKind::Circuits;
    fn into_experiment(self) -> Experiment {
        Experiment::RelationNeurons(self)
    }
    fn from_experiment(e: Experiment) -> Option<Self> {
        match e {
            Experiment::RelationNeurons(s) => Some(s),
            _ => None,
        }
    }
}

impl LabSpec for ReuseSpec {
    const LAB: LabKind = LabKind::Circuits;
    fn into_experiment(self) -> Experiment {
        Experiment::CircuitReuse(self)
    }
    fn from_experiment(e: Experiment) -> Option<Self> {
        match e {
            Experiment::CircuitReuse(s) => Some(s),
            _ => None,
        }
    }
}

impl LabSpec for RecallSpec {
    const LAB: LabKind = LabKind::Circuits;
    fn into_experiment(self) -> Experiment {
        Experiment::RecallReasoning(self)
    }
    fn from_experiment(e: Experiment) -> Option<Self> {
        match e {
            Experiment::RecallReasoning(s) => Some(s),
            _ => None,
        }
    }
}

impl LabSpec for AttributionSpec {
    const LAB: LabKind = LabKind::Circuits;
    fn into_experiment(self) -> Experiment {
        Experiment::AttributionPatching(self)
    }
    fn from_experiment(e: Experiment) -> Option<Self> {
        match e {
            Experiment::AttributionPatching(s) => Some(s),
            _ => None,
        }
    }
}

impl LabSpec for EdgeSpec {
    const LAB: LabKind = LabKind::Circuits;
    fn into_experiment(self) -> Experiment {
        Experiment::EdgeAttribution(self)
    }
    fn from_experiment(e: Experiment) -> Option<Self> {
        match e {
            Experiment::EdgeAttribution(s) => Some(s),
            _ => None,
        }
    }
}

impl LabSpec for ClampSpec {
    const LAB: LabKind = LabKind::Circuits;
    fn into_experiment(self) -> Experiment {
        Experiment::ClampedTraining(self)
    }
    fn from_experiment(e: Experiment) -> Option<Self> {
        match e {
            Experiment::ClampedTraining(s) => Some(s),
            _ => None,
        }
    }
}

impl LabSpec for SubspaceSpec {
    const LAB: LabKind = LabKind::Circuits;
    fn into_experiment(self) -> Experiment {
        Experiment::SubspacePatching(self)
    }
    fn from_experiment(e: Experiment) -> Option<Self> {
        match e {
            Experiment::SubspacePatching(s) => Some(s),
            _ => None,
        }
    }
}

impl Experiment {
    /// The lab this experiment belongs to.
    pub fn lab(&self) -> LabKind {
        match self {
            Experiment::Circuits(_)
            | Experiment::RelationNeurons(_)
            | Experiment::CircuitReuse(_)
            | Experiment::RecallReasoning(_)
            | Experiment::AttributionPatching(_)
            | Experiment::EdgeAttribution(_)
            | Experiment::ClampedTraining(_)
            | Experiment::SubspacePatching(_) => LabKind::Circuits,
            Experiment::Merge(_) => LabKind::Merge,
            Experiment::Neurofeedback(_) => LabKind::Neurofeedback,
            Experiment::Dynamics(_) => LabKind::Dynamics,
        }
    }

    /// Pretty JSON, as "Export spec" writes it.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Read an experiment from JSON text: the tagged form, or a bare lab spec (written before the
    /// tag existed, or copied from a lab's spec box). `lab` says which lab a bare spec is for (a
    /// link's route); without it the lab is recognised by the keys its spec always has:
    /// `"experiment": "merge"` or `"tasks"` (Merge), `"experiment": "relation-neurons"`
    /// (Circuits), any other `"experiment"` (Dynamics), `"directions"` (Neurofeedback), else
    /// Circuits.
    pub fn from_json(text: &str, lab: Option<LabKind>) -> Result<Experiment, LabError> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| LabError::Spec(format!("the spec is not JSON: {e}")))?;
        Self::from_value(v, lab)
    }

    /// [`Experiment::from_json`] for parsed JSON.
    pub fn from_value(v: Value, lab: Option<LabKind>) -> Result<Experiment, LabError> {
        let Some(obj) = v.as_object() else {
            return Err(LabError::Spec(
                "the spec must be a JSON object such as {\"lab\": \"circuits\", ...}".into(),
            ));
        };
        if let Some(tag) = obj.get("lab") {
            let named = tag.as_str().and_then(LabKind::from_slug);
            let Some(named) = named else {
                return Err(LabError::Spec(format!(
                    "unknown lab {tag}: use one of {}",
                    LabKind::ALL.map(|l| format!("\"{}\"", l.slug())).join(", ")
                )));
            };
            // The lab's own spec is read without the tag, so an error can name the field
            // (serde loses the path inside an internally tagged enum).
            let mut obj = obj.clone();
            obj.remove("lab");
            return Self::parse_as(named, Value::Object(obj));
        }
        let lab = lab.unwrap_or_else(|| legacy_lab(obj));
        Self::parse_as(lab, v)
    }

    /// `v` as a spec of `lab`; an error names the field at fault.
    fn parse_as(lab: LabKind, v: Value) -> Result<Experiment, LabError> {
        let parsed = match lab {
            LabKind::Circuits => match v.get("experiment") {
                None => serde_path_to_error::deserialize(v).map(Experiment::Circuits),
                Some(Value::String(s)) if s == NeuronsSpec::EXPERIMENT => {
                    serde_path_to_error::deserialize(v).map(Experiment::RelationNeurons)
                }
                Some(Value::String(s)) if s == ReuseSpec::EXPERIMENT => {
                    serde_path_to_error::deserialize(v).map(Experiment::CircuitReuse)
                }
                Some(Value::String(s)) if s == RecallSpec::EXPERIMENT => {
                    serde_path_to_error::deserialize(v).map(Experiment::RecallReasoning)
                }
                Some(Value::String(s)) if s == AttributionSpec::EXPERIMENT => {
                    serde_path_to_error::deserialize(v).map(Experiment::AttributionPatching)
                }
                Some(Value::String(s)) if s == EdgeSpec::EXPERIMENT => {
                    serde_path_to_error::deserialize(v).map(Experiment::EdgeAttribution)
                }
                Some(Value::String(s)) if s == ClampSpec::EXPERIMENT => {
                    serde_path_to_error::deserialize(v).map(Experiment::ClampedTraining)
                }
                Some(Value::String(s)) if s == SubspaceSpec::EXPERIMENT => {
                    serde_path_to_error::deserialize(v).map(Experiment::SubspacePatching)
                }
                Some(other) => {
                    return Err(LabError::Spec(format!(
                        "not a valid Circuits experiment spec: experiment: unknown experiment {other}: \
                         use \"{}\", \"{}\", \"{}\", \"{}\", \"{}\", \"{}\" or \"{}\", or \
                         leave it out for a patching sweep",
                        NeuronsSpec::EXPERIMENT,
                        ReuseSpec::EXPERIMENT,
                        RecallSpec::EXPERIMENT,
                        AttributionSpec::EXPERIMENT,
                        EdgeSpec::EXPERIMENT,
                        ClampSpec::EXPERIMENT,
                        SubspaceSpec::EXPERIMENT
                    )));
                }
            },
            LabKind::Merge => match serde_path_to_error::deserialize(v.clone()) {
                Ok(m) => Ok(Experiment::Merge(m)),
                Err(e) => return Err(fine_tune_detail(&v).unwrap_or_else(|| invalid(lab, e))),
            },
            LabKind::Neurofeedback => {
                serde_path_to_error::deserialize(v).map(Experiment::Neurofeedback)
            }
            LabKind::Dynamics => serde_path_to_error::deserialize(v.clone())
                .map(Experiment::Dynamics)
                .map_err(|e| dynamics_detail(&v).unwrap_or(e)),
        };
        parsed.map_err(|e| invalid(lab, e))
    }

    /// The page route with this experiment in it: `#/{lab}?spec={percent-encoded JSON}`.
    pub fn link(&self) -> String {
        format!("#/{}?spec={}", self.lab().slug(), share::encode(self))
    }

    /// The experiment in a page hash such as `#/dynamics?spec=...&embed=1`: `None` when the hash
    /// holds no spec; an error for a damaged link. A bare (pre-tag) spec is read as the route's lab.
    pub fn from_link(hash: &str) -> Option<Result<Experiment, LabError>> {
        let param = share::spec_param(hash)?;
        let route = LabKind::from_hash(hash);
        Some(share::decode_text(param).and_then(|text| {
            Experiment::from_json(&text, route).map_err(|e| {
                LabError::Spec(format!(
                    "the share link does not hold a valid experiment: {e}"
                ))
            })
        }))
    }
}

/// The spec of type `T` in a page hash: `None` when there is none, or when it holds another
/// experiment of `T`'s lab (another panel's); an error for a damaged link or a link of another
/// lab.
pub fn read_link<T: LabSpec>(hash: &str) -> Option<Result<T, LabError>> {
    let e = match Experiment::from_link(hash)? {
        Ok(e) => e,
        Err(e) => return Some(Err(e)),
    };
    let lab = e.lab();
    match T::from_experiment(e) {
        Some(spec) => Some(Ok(spec)),
        None if lab == T::LAB => None,
        None => Some(Err(LabError::Spec(format!(
            "this link holds a {} experiment, not a {} one: open it in the {} lab",
            lab.title(),
            T::LAB.title(),
            lab.title()
        )))),
    }
}

/// A Dynamics spec's error with the field at fault: `DynamicsSpec` is tagged by `experiment`
/// inside the object, where serde loses the path, so the variant is read again on its own.
fn dynamics_detail(v: &Value) -> Option<serde_path_to_error::Error<serde_json::Error>> {
    use interplay_dynamics::{EiSweepSpec, MemoryCapacitySpec, PredictionSpec, SpikingSpec};
    let mut obj = v.as_object()?.clone();
    let tag = obj.remove("experiment")?;
    let v = Value::Object(obj);
    match tag.as_str()? {
        "prediction" => serde_path_to_error::deserialize::<_, PredictionSpec>(v).err(),
        "memory-capacity" => serde_path_to_error::deserialize::<_, MemoryCapacitySpec>(v).err(),
        "spiking" => serde_path_to_error::deserialize::<_, SpikingSpec>(v).err(),
        "ei-sweep" => serde_path_to_error::deserialize::<_, EiSweepSpec>(v).err(),
        "what-when" => {
            serde_path_to_error::deserialize::<_, interplay_dynamics::WhatWhenSpec>(v).err()
        }
        _ => None,
    }
}

/// A Merge spec's error inside one of the page's fine-tunes, with the field at fault:
/// `FineTuneSpec` flattens its training options, where serde loses the path, so each fine-tune
/// is read again on its own. `None` when the fine-tunes are not where the error is.
fn fine_tune_detail(v: &Value) -> Option<LabError> {
    use crate::suite::{Task, TrainOptions};
    let list = v.get("fine_tunes")?.as_array()?;
    list.iter().enumerate().find_map(|(i, f)| {
        let mut obj = f.as_object()?.clone();
        let (field, why) = match obj.remove("task") {
            None => ("task".to_string(), "missing field `task`".to_string()),
            Some(t) => match serde_path_to_error::deserialize::<_, Task>(t) {
                Err(e) => ("task".to_string(), e.inner().to_string()),
                Ok(_) => {
                    let e = serde_path_to_error::deserialize::<_, TrainOptions>(Value::Object(obj))
                        .err()?;
                    (e.path().to_string(), e.inner().to_string())
                }
            },
        };
        Some(LabError::Spec(format!(
            "not a valid {} experiment spec: fine_tunes[{i}].{field}: {why}",
            LabKind::Merge.title()
        )))
    })
}

fn invalid(lab: LabKind, e: serde_path_to_error::Error<serde_json::Error>) -> LabError {
    let path = e.path().to_string();
    let field = if path == "." {
        String::new()
    } else {
        format!("{path}: ")
    };
    LabError::Spec(format!(
        "not a valid {} experiment spec: {field}{}",
        lab.title(),
        e.inner()
    ))
}

impl<'de> Deserialize<'de> for Experiment {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Experiment::from_value(v, None).map_err(serde::de::Error::custom)
    }
}

/// The lab of a bare spec (one lab's spec without the `"lab"` tag: links and files from before
/// the tag, or a lab's spec box), by the keys each spec type always has.
fn legacy_lab(obj: &serde_json::Map<String, Value>) -> LabKind {
    match obj.get("experiment") {
        Some(Value::String(s)) if s == "merge" => LabKind::Merge,
        Some(Value::String(s))
            if s == NeuronsSpec::EXPERIMENT
                || s == ReuseSpec::EXPERIMENT
                || s == RecallSpec::EXPERIMENT =>
        {
            LabKind::Circuits
        }
        Some(_) => LabKind::Dynamics,
        None if obj.contains_key("directions") => LabKind::Neurofeedback,
        // Merge specs written after the tag lost `"experiment": "merge"`; only they have tasks.
        None if obj.contains_key("tasks") => LabKind::Merge,
        None => LabKind::Circuits,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_lab_round_trips_through_json_and_links() {
        let all = [
            Experiment::Circuits(PatchingSpec::ioi_bundled()),
            Experiment::Merge(MergeSpec::default()),
            Experiment::Neurofeedback(NeurofeedbackSpec::icl_bundled()),
            Experiment::Dynamics(DynamicsSpec::Spiking(Default::default())),
            Experiment::RelationNeurons(NeuronsSpec::capital_smollm2()),
            Experiment::CircuitReuse(ReuseSpec::smollm2()),
            Experiment::RecallReasoning(RecallSpec::smollm2()),
            Experiment::AttributionPatching(AttributionSpec::ioi_smollm2()),
            Experiment::EdgeAttribution(EdgeSpec::ioi_smollm2()),
            Experiment::ClampedTraining(ClampSpec::previous_token_guided()),
            Experiment::SubspacePatching(SubspaceSpec::guided()),
        ];
        for e in all {
            let json = e.to_json();
            assert!(json.contains(&format!("\"lab\": \"{}\"", e.lab().slug())));
            assert_eq!(Experiment::from_json(&json, None).unwrap(), e);
            let link = e.link();
            assert!(link.starts_with(&format!("#/{}?spec=", e.lab().slug())));
            assert_eq!(Experiment::from_link(&link).unwrap().unwrap(), e);
        }
    }

    #[test]
    fn a_bad_fine_tune_field_is_named() {
        let err = |json: &str| Experiment::from_json(json, None).unwrap_err().to_string();
        let e = err(
            r#"{"lab": "merge", "fine_tunes": [{"task": "rotate"}, {"task": "flip", "epochs": "x"}]}"#,
        );
        assert!(
            e.contains("fine_tunes[1].epochs: invalid type: string \"x\""),
            "{e}"
        );
        let e = err(r#"{"lab": "merge", "fine_tunes": [{"task": "sideways"}]}"#);
        assert!(
            e.contains("fine_tunes[0].task: unknown variant `sideways`"),
            "{e}"
        );
        let e = err(r#"{"lab": "merge", "fine_tunes": [{"epochs": 3}]}"#);
        assert!(
            e.contains("fine_tunes[0].task: missing field `task`"),
            "{e}"
        );
        // Errors elsewhere keep their own path.
        let e = err(r#"{"lab": "merge", "lambda": "x", "fine_tunes": []}"#);
        assert!(e.contains("lambda: invalid type"), "{e}");
    }

    #[test]
    fn a_link_of_another_lab_is_a_message() {
        let link = Experiment::Merge(MergeSpec::default()).link();
        let err = read_link::<PatchingSpec>(&link).unwrap().unwrap_err();
        assert!(
            err.to_string().contains("open it in the Merge lab"),
            "{err}"
        );
        let err = Experiment::from_json(r#"{"lab":"circuits","experiment":"neurons"}"#, None)
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("\"clamped-training\" or \"subspace-patching\""),
            "{err}"
        );
        // Another experiment of the same lab belongs to another panel: no spec, no error.
        let neurons = Experiment::RelationNeurons(NeuronsSpec::capital_smollm2()).link();
        assert!(read_link::<PatchingSpec>(&neurons).is_none());
        assert_eq!(
            read_link::<NeuronsSpec>(&neurons).unwrap().unwrap(),
            NeuronsSpec::capital_smollm2()
        );
        let reuse = Experiment::CircuitReuse(ReuseSpec::smollm2()).link();
        assert!(read_link::<PatchingSpec>(&reuse).is_none());
        assert!(read_link::<NeuronsSpec>(&reuse).is_none());
        assert_eq!(
            read_link::<ReuseSpec>(&reuse).unwrap().unwrap(),
            ReuseSpec::smollm2()
        );
        let recall = Experiment::RecallReasoning(RecallSpec::smollm2()).link();
        assert!(read_link::<ReuseSpec>(&recall).is_none());
        assert_eq!(
            read_link::<RecallSpec>(&recall).unwrap().unwrap(),
            RecallSpec::smollm2()
        );
        // A bare reuse spec is a Circuits one.
        let bare = serde_json::to_string(&ReuseSpec::smollm2()).unwrap();
        assert_eq!(
            Experiment::from_json(&bare, None).unwrap(),
            Experiment::CircuitReuse(ReuseSpec::smollm2())
        );
        let err = Experiment::from_json(r#"{"lab":"optics"}"#, None).unwrap_err();
        assert!(err.to_string().contains("unknown lab"), "{err}");
        let err = Experiment::from_link("#/circuits?spec=%7Bnot-a-spec")
            .unwrap()
            .unwrap_err();
        assert!(err.to_string().contains("share link"), "{err}");
        assert!(Experiment::from_json("[1]", None).is_err());
        // A bare spec from a lab's spec box (no tag) is still recognised.
        let bare = serde_json::to_string(&MergeSpec::default()).unwrap();
        assert_eq!(
            Experiment::from_json(&bare, None).unwrap(),
            Experiment::Merge(MergeSpec::default())
        );
    }
}
