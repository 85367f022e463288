//! `kubernetes-validate` (PyPI): checks manifests against the official Kubernetes schemas.

use std::path::{Path, PathBuf};

/// How to install `kubernetes-validate`.
pub const KUBERNETES_VALIDATE_INSTALL_COMMAND: &str =
    ".venv-tools/bin/pip install kubernetes-validate";

/// The `kubernetes-validate` binary: `KUBERNETES_VALIDATE`, else the
/// workspace's `.venv-tools/bin`, else `PATH`. Panics, saying how to install
/// it, when there is none (tests that need it fail, never skip).
pub fn kubernetes_validate() -> PathBuf {
    let how = format!(
        "run `{KUBERNETES_VALIDATE_INSTALL_COMMAND}` at the workspace root (`bash scripts/test`, \
         which `.ci/run` calls, does it), or put `kubernetes-validate` on PATH or in KUBERNETES_VALIDATE"
    );
    if let Some(p) = std::env::var_os("KUBERNETES_VALIDATE") {
        let p = PathBuf::from(p);
        assert!(
            p.exists(),
            "KUBERNETES_VALIDATE={} does not exist; install it: {how}",
            p.display()
        );
        return p;
    }
    let venv =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv-tools/bin/kubernetes-validate");
    if venv.exists() {
        return venv;
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("kubernetes-validate"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "kubernetes-validate is required and was not found (tests never skip for it); install it: {how}"
            )
        })
}
