//! Builds the hostile test policy (`tests/policies/hostile`) from source for wasm32-wasip2 on
//! first use; shared by the tests and the policy benchmark (`benches/policies.rs`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The hostile test policy (`tests/policies/hostile`), built from source for wasm32-wasip2 on
/// first use. Concurrent test processes serialise on cargo's lock and find it built.
pub fn hostile_policy() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let target_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/wasm-policies");
            let status = Command::new(env!("CARGO"))
                .args(["build", "--quiet", "--release", "--target", "wasm32-wasip2", "-p", "policy-hostile"])
                .arg("--manifest-path")
                .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
                .arg("--target-dir")
                .arg(&target_dir)
                // As build.rs builds the built-ins, so shared dependencies are built once.
                .args(["--config", "profile.release.strip=true"])
                .env_remove("CARGO_ENCODED_RUSTFLAGS")
                .env_remove("RUSTFLAGS")
                .status()
                .expect("cargo runs");
            assert!(status.success(), "building tests/policies/hostile for wasm32-wasip2 failed");
            target_dir.join("wasm32-wasip2/release/policy_hostile.wasm")
        })
        .clone()
}
