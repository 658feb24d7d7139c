//! Interplay's page: the app shell (labs as navigation, device indicator and switch) and one
//! module per lab.
//!
//! | module | what |
//! |---|---|
//! | [`runtime`] | the page's compute device (WebGPU, else CPU) shared with every lab |
//! | [`engine`] | the engine worker: labs' computations off the main thread (page side and worker side) |
//! | [`assets`] | fetching bundled files relative to the page (works from any sub-path) |
//! | [`shell`] | header, navigation, device switch, start-up check |
//! | [`speclab`] | what every spec lab shares: the opening spec (link, draft, default), autosave, run state |
//! | [`share`] | share links (the one `Experiment` type), embed flags, spec export — a leaf the labs use |
//! | [`offline`] | service worker registration (offline use) |
//! | [`models`] | the loaded model (bundled or from the user's disk), rebuilt on device switch |
//! | [`circuits`] | Circuits lab: model loading, prompt view |
//! | [`ablation`] | Circuits lab: head ablation and path patching |
//! | [`guided`] | Circuits lab: guided experiments (presets + text) |
//! | [`patching`] | Circuits lab: activation patching panel (spec in the URL) |
//! | [`neurons`] | Circuits lab: relation-specific neurons (spec in the URL) |
//! | [`neurofeedback`] | Neurofeedback lab: directions, reporting accuracy against N, control task, share links |
//! | [`dynamics`] | Dynamics lab: spiking/reservoir experiments, raster and line plots, share links |
//! | [`plots`] | heatmap, line plot, palettes, export |
//! | [`views`] | Circuits lab: attention, logit lens, attribution, head detectors |

pub mod ablation;
pub mod assets;
pub mod circuits;
pub mod dynamics;
pub mod engine;
pub mod guided;
pub mod merge;
pub mod models;
pub mod neurofeedback;
pub mod neurons;
pub mod offline;
pub mod patching;
pub mod plots;
pub mod recall;
pub mod reuse;
pub mod runtime;
pub mod share;
pub mod shell;
pub mod speclab;
pub mod views;

pub use shell::App;
