//! Builds the built-in policies (`policies/<name>`, listed once in Cargo.toml under
//! `[workspace.metadata.mysql-webhook] builtin-policies`) for `wasm32-unknown-unknown`, wraps
//! each core module into a component (`wit-component`, what `wasm-tools component new` does),
//! and generates
//! `OUT_DIR/builtins.rs`, which `src/policy/builtin.rs` includes: the list of names and the
//! embedded components. The binary carries its policies, so every command works with no other
//! file.
//!
//! Why not `wasm32-wasip2`, which any policy may use: its standard library brings the WASI
//! preview 1 adapter (a second core module, its shims and some thirty WASI imports) into the
//! component, and instantiating all that was most of what an evaluation cost (callgrind on
//! `benches/instructions.rs`). The built-ins use nothing of WASI, so they import nothing.
//!
//! The toolchain and its targets are declared in rust-toolchain.toml, not installed here: a build
//! script has no business changing the machine. A missing target fails with what to run.
//!
//! Each component is also precompiled for this machine with the host's own engine configuration
//! (`src/policy/engine.rs`, included below), so that a new process loads the built-ins in
//! milliseconds instead of compiling them; the host falls back to compiling when the artifact
//! doesn't suit the engine it runs (another CPU, say).
//!
//! The nested cargo gets a target directory of its own (`<target>/wasm-policies`): the outer
//! build holds the lock on its profile directory, and sharing it would deadlock.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::Digest as _;

#[path = "src/policy/engine.rs"]
mod engine;

const TARGET: &str = "wasm32-unknown-unknown";
const LIST_KEY: &str = "builtin-policies";

fn main() {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env("OUT_DIR"));
    for watched in
        ["policies/sdk", "policies/wit", "src/core", "src/policy/engine.rs", "Cargo.lock", "Cargo.toml"]
    {
        println!("cargo:rerun-if-changed={watched}");
    }
    let builtins = builtin_names(&manifest_dir.join("Cargo.toml"));
    for name in &builtins {
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
        .args(["--config", "profile.release.strip=true"])
        // Each policy whole-program optimised: its code runs on every admission.
        .args(["--config", "profile.release.lto=true", "--config", "profile.release.codegen-units=1"]);
    for name in &builtins {
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
    // Each built-in is made into a component, hashed and precompiled once, from memory; the
    // generated module matches on its name for each of the three.
    let engine =
        wasmtime::Engine::new(&engine::config(engine::default_slots())).expect("the policy engine starts");
    let (mut components, mut digests, mut precompiled) = (String::new(), String::new(), String::new());
    for name in &builtins {
        let artifact = format!("policy_{}.wasm", name.replace('-', "_"));
        let built = target_dir.join(TARGET).join("release").join(&artifact);
        let module = std::fs::read(&built).unwrap_or_else(|e| panic!("reading {}: {e}", built.display()));
        let component = componentize(name, &module);
        let compiled = engine
            .precompile_component(&component)
            .unwrap_or_else(|e| panic!("precompiling the built-in policy {name}: {e:#}"));
        let digest: String = sha2::Sha256::digest(&component).iter().map(|b| format!("{b:02x}")).collect();
        for (path, bytes, arms) in [
            (dest.join(format!("{name}.wasm")), component, &mut components),
            (dest.join(format!("{name}.cwasm")), compiled, &mut precompiled),
        ] {
            std::fs::write(&path, bytes).expect("OUT_DIR is writable");
            writeln!(arms, "        {name:?} => include_bytes!({:?}),", path.display().to_string()).unwrap();
        }
        writeln!(digests, "        {name:?} => {digest:?},").unwrap();
    }
    let mut generated =
        String::from("/// Names as used in `module: builtin:<name>`; the order is the default set's.\n");
    writeln!(generated, "pub const NAMES: [&str; {}] = {builtins:?};", builtins.len()).unwrap();
    for (doc, signature, arms) in [
        (
            "The component of the built-in policy `name`, if there is one.",
            "component(name: &str) -> Option<&'static [u8]>",
            components,
        ),
        (
            "The SHA-256 of `component(name)`, hex, as `policy::host::digest` computes it.",
            "digest(name: &str) -> Option<&'static str>",
            digests,
        ),
        (
            "The artifact precompiled from `component(name)` by build.rs for this machine.",
            "precompiled(name: &str) -> Option<&'static [u8]>",
            precompiled,
        ),
    ] {
        writeln!(generated, "\n/// {doc}\npub fn {signature} {{\n    Some(match name {{\n{arms}        _ => return None,\n    }})\n}}").unwrap();
    }
    std::fs::write(out_dir.join("builtins.rs"), generated).expect("OUT_DIR is writable");
}

/// The component of a core module that exports the `policy` world (wit-bindgen left the
/// world's type in a custom section) and imports nothing.
fn componentize(name: &str, module: &[u8]) -> Vec<u8> {
    wit_component::ComponentEncoder::default()
        .validate(true)
        .module(module)
        .and_then(|mut encoder| encoder.encode())
        .unwrap_or_else(|e| panic!("making a component of the built-in policy {name}: {e:#}"))
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("cargo sets {name} for build scripts"))
}

/// The names in `builtin-policies = ["…", …]` of the workspace manifest. A line scan rather than
/// a TOML parser: the entry is one line that this repository writes, and the build script stays
/// free of dependencies.
fn builtin_names(manifest: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(manifest).expect("Cargo.toml is readable");
    let line = text
        .lines()
        .find(|line| line.trim_start().starts_with(LIST_KEY))
        .unwrap_or_else(|| panic!("Cargo.toml has no `{LIST_KEY} = [...]` line"));
    let list = line.split_once('[').and_then(|(_, rest)| rest.split_once(']')).map(|(list, _)| list);
    let names: Vec<String> = list
        .unwrap_or_else(|| panic!("Cargo.toml: `{LIST_KEY}` must be a one-line list of strings"))
        .split(',')
        .map(|name| name.trim().trim_matches('"').to_string())
        .filter(|name| !name.is_empty())
        .collect();
    for name in &names {
        let dir = manifest.with_file_name("policies").join(name);
        assert!(
            dir.join("Cargo.toml").is_file(),
            "built-in policy {name:?} has no crate at {}",
            dir.display()
        );
    }
    names
}

/// `<target>/<profile>/build/<package>-<hash>/out` → `<target>` (or `<target>/<triple>` when
/// cross-compiling, which is as good).
fn outer_target_dir(out_dir: &Path) -> PathBuf {
    out_dir.ancestors().nth(4).expect("OUT_DIR is inside the target directory").to_path_buf()
}

/// A missing target otherwise shows up as "can't find crate for `core`", which says nothing.
fn check_target_installed() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(rustc).args(["--print", "sysroot"]).output().expect("rustc runs");
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_owned();
    if !Path::new(&sysroot).join("lib/rustlib").join(TARGET).is_dir() {
        panic!(
            "\n\nthe built-in policies are built for {TARGET}, which this toolchain ({sysroot}) lacks.\n\
             rust-toolchain.toml declares it: run `rustup toolchain install` in the repository \
             (or `rustup target add {TARGET}`), then build again.\n"
        );
    }
}
