//! Interplay's page: the app shell (labs as navigation, device indicator and switch) and one
//! module per lab.
//!
//! | module | what |
//! |---|---|
//! | [`runtime`] | the page's compute device (WebGPU, else CPU) shared with every lab |
//! | [`assets`] | fetching bundled files relative to the page (works from any sub-path) |
//! | [`shell`] | header, navigation, device switch, start-up check |

pub mod assets;
pub mod runtime;
pub mod shell;

pub use shell::App;
