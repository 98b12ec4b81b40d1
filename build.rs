//! Builds the built-in policies (`policies/<name>`) for `wasm32-wasip2` and leaves them in
//! `OUT_DIR/policies/<name>.wasm`, where `src/policy/builtin.rs` embeds them: the binary carries
//! its policies, so every command works with no other file.
//!
//! The nested cargo gets a target directory of its own (`<target>/wasm-policies`): the outer
//! build holds the lock on its profile directory, and sharing it would deadlock.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Keep in step with `policy::builtin::NAMES`.
const BUILTINS: [&str; 5] = ["replica-quorum", "spread", "storage", "images", "resources"];
const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env("OUT_DIR"));
    for watched in ["policies/sdk", "policies/wit", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={watched}");
    }
    for name in BUILTINS {
        println!("cargo:rerun-if-changed=policies/{name}");
    }
    println!("cargo:rerun-if-env-changed=MYSQL_WEBHOOK_POLICY_TARGET_DIR");

    check_target_installed();
    let target_dir = std::env::var_os("MYSQL_WEBHOOK_POLICY_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| outer_target_dir(&out_dir).join("wasm-policies"));
    let mut cargo = Command::new(env("CARGO"));
    cargo
        .args(["build", "--release", "--target", TARGET, "--manifest-path"])
        .arg(manifest_dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        // Symbols and debug sections are a fifth of a component; the binary carries five.
        .args(["--config", "profile.release.strip=true"]);
    for name in BUILTINS {
        cargo.args(["-p", &format!("policy-{name}")]);
    }
    // The outer build's flags are for the host (and may name host-only options); the policies
    // get the workspace's release profile and nothing else.
    for inherited in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        cargo.env_remove(inherited);
    }
    let status = cargo.status().expect("cargo runs");
    assert!(status.success(), "building the built-in policies for {TARGET} failed (see above)");

    let dest = out_dir.join("policies");
    std::fs::create_dir_all(&dest).expect("OUT_DIR is writable");
    for name in BUILTINS {
        let artifact = format!("policy_{}.wasm", name.replace('-', "_"));
        let built = target_dir.join(TARGET).join("release").join(&artifact);
        std::fs::copy(&built, dest.join(format!("{name}.wasm")))
            .unwrap_or_else(|e| panic!("copying {}: {e}", built.display()));
    }
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("cargo sets {name} for build scripts"))
}

/// `<target>/<profile>/build/<package>-<hash>/out` → `<target>` (or `<target>/<triple>` when
/// cross-compiling, which is as good).
fn outer_target_dir(out_dir: &Path) -> PathBuf {
    out_dir.ancestors().nth(4).expect("OUT_DIR is inside the target directory").to_path_buf()
}

/// A missing target otherwise shows up as "can't find crate for `core`", which says nothing.
/// With rustup (the usual toolchain install) it is added, so a fresh machine's first
/// `cargo run` works; without it, the error says what to install.
fn check_target_installed() {
    let installed = || {
        let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
        let sysroot = Command::new(rustc).args(["--print", "sysroot"]).output().expect("rustc runs");
        let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_owned();
        Path::new(&sysroot).join("lib/rustlib").join(TARGET).is_dir()
    };
    if installed() {
        return;
    }
    println!(
        "cargo:warning=the built-in policies need the {TARGET} target; running `rustup target add {TARGET}`"
    );
    let added = Command::new("rustup").args(["target", "add", TARGET]).status().is_ok_and(|s| s.success());
    assert!(
        added && installed(),
        "the built-in policies are built for {TARGET}, which is not installed: run `rustup target add {TARGET}`"
    );
}
