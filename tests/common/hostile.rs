//! Builds the hostile test policy (`tests/policies/hostile`) from source for wasm32-wasip2 on
//! first use, for either policy world; shared by the tests and the policy benchmarks.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The hostile test policy built for `mysql-webhook:policy@0.1.0` (as a component built before
/// 0.2.0 was), from source on first use. Concurrent test processes serialise on cargo's lock
/// and find it built.
pub fn hostile_policy() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| build("wasm-policies", &[])).clone()
}

/// The hostile test policy built for `mysql-webhook:policy@0.2.0` (feature `world-0-2`).
#[allow(dead_code)] // not every test binary including this module uses both worlds
pub fn hostile_policy_0_2() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| build("wasm-policies-0.2", &["--features", "world-0-2"])).clone()
}

/// Each world in a target directory of its own: the two builds write the same file name.
fn build(target: &str, features: &[&str]) -> PathBuf {
    let target_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join(target);
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--release", "--target", "wasm32-wasip2", "-p", "policy-hostile"])
        .args(features)
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
    assert!(status.success(), "building tests/policies/hostile ({features:?}) for wasm32-wasip2 failed");
    target_dir.join("wasm32-wasip2/release/policy_hostile.wasm")
}
