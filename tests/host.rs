//! The policy host with real wasmtime and components built from source: misbehaving policies
//! are contained per their `failure` setting with a message naming them, the set keeps
//! evaluating, bad sets are refused at load, reloads switch behaviour or keep the last good set,
//! and precompiled artifacts are cached on disk.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use mysql_webhook::policy::{FindingResult, Policies, PolicyError, Source};

/// A policy set of the hostile policy (as `hostile`) with `settings` and `extra` YAML fields,
/// followed by the built-in replica-quorum, in a policies.yaml in `dir`.
fn hostile_set(dir: &Path, fields: &str) -> std::path::PathBuf {
    let module = common::hostile_policy();
    common::write_policies(
        dir,
        &format!(
            "policies:\n- name: hostile\n  module: {}\n  {fields}\n- name: replica-quorum\n  module: builtin:replica-quorum\n",
            module.display()
        ),
    )
}

fn load(path: &Path) -> Result<Policies, PolicyError> {
    Policies::load(common::host(), Source::File(path.to_path_buf()))
}

fn request() -> mysql_webhook::policy::PolicyInput {
    common::policy_request(&common::annotated("mysql", "mysql:8.4"))
}

/// Loads the hostile set misbehaving with `what` in validate, failing `failure`, with a timeout
/// of 100 ms; evaluates once.
fn contained(what: &str, failure: &str) -> mysql_webhook::policy::Evaluation {
    contained_within(what, failure, "100ms")
}

/// [`contained`] with the policy's `timeout`.
fn contained_within(what: &str, failure: &str, timeout: &str) -> mysql_webhook::policy::Evaluation {
    let dir = tempfile::tempdir().unwrap();
    let path = hostile_set(
        dir.path(),
        &format!("failure: {failure}\n  timeout: {timeout}\n  settings: {{validate: {what}}}"),
    );
    let policies = load(&path).unwrap();
    let evaluation = policies.evaluate(&request(), None);
    assert_eq!(evaluation.findings.len(), 2);
    assert_eq!(
        evaluation.findings[1].result,
        FindingResult::Allowed,
        "the next policy still runs and allows"
    );
    // The same set keeps answering after the misbehaviour.
    let again = policies.evaluate(&request(), None);
    assert_eq!(again.findings[1].result, FindingResult::Allowed);
    evaluation
}

#[test]
fn an_endless_loop_is_stopped_at_its_timeout_and_denies_with_the_policy_named() {
    let started = Instant::now();
    let evaluation = contained("loop", "deny");
    assert!(started.elapsed() < Duration::from_secs(10), "two timeouts of 100 ms, not forever");
    assert_eq!(evaluation.denials(), ["hostile: policy failed: did not finish within its timeout of 100ms"]);
}

#[test]
fn an_endless_loop_with_failure_allow_is_allowed_with_a_warning() {
    let evaluation = contained("loop", "allow");
    assert!(evaluation.allowed());
    assert_eq!(
        evaluation.warnings(),
        [
            "hostile: policy failed and was skipped (failure: allow): did not finish within its timeout of 100ms"
        ]
    );
}

#[test]
fn a_memory_hog_is_stopped_at_the_memory_cap() {
    // Filling 64 MiB takes a debug build tens of milliseconds, and more on a busy machine: a
    // timeout that can't come first (the suite saw 100 ms do so).
    let evaluation = contained_within("hog", "deny", "2s");
    assert_eq!(evaluation.denials(), ["hostile: policy failed: exceeded its memory limit of 64 MiB"]);
}

#[test]
fn a_panicking_policy_is_a_trap_with_a_stable_message() {
    let evaluation = contained("trap", "deny");
    let denials = evaluation.denials();
    assert_eq!(denials.len(), 1);
    assert!(denials[0].starts_with("hostile: policy failed: trapped: "), "{denials:?}");
    assert_eq!(contained("trap", "deny").denials(), denials, "the same fault, the same message");
}

#[test]
fn an_8_mib_message_is_an_oversized_result() {
    let evaluation = contained("big-message", "deny");
    assert_eq!(
        evaluation.denials(),
        [format!("hostile: policy failed: returned a result of {} bytes, over the limit of 65536", 8 << 20)]
    );
}

#[test]
fn a_million_empty_warnings_are_contained_without_reading_them_all() {
    let evaluation = contained("many-warnings", "deny");
    assert!(evaluation.allowed());
    let warnings = evaluation.warnings();
    assert_eq!(warnings.len(), 17, "16 kept and one that counts the rest");
    assert_eq!(warnings[16], "hostile: … and 999984 more warnings");
}

#[test]
fn the_sandbox_grants_no_files_environment_sockets_names_or_clocks() {
    let evaluation = contained("wasi-probe", "deny");
    assert_eq!(
        evaluation.denials(),
        ["hostile: file=refused;env=refused;cwd=refused;tcp=refused;listen=refused;udp=refused;dns=refused;\
          wall-clock=0;monotonic-elapsed=0"]
    );
}

#[test]
fn a_policy_asking_for_a_timer_traps_at_once_instead_of_sleeping() {
    let started = Instant::now();
    let evaluation = contained("sleep", "deny");
    assert!(started.elapsed() < Duration::from_secs(10));
    let denials = evaluation.denials();
    assert!(denials[0].contains("the policy sandbox has no timers"), "{denials:?}");
}

#[test]
fn a_warn_mode_deny_is_a_warning_and_policy_warnings_pass_through() {
    let dir = tempfile::tempdir().unwrap();
    let path = hostile_set(dir.path(), "mode: warn\n  settings: {validate: deny}");
    let evaluation = load(&path).unwrap().evaluate(&request(), None);
    assert!(evaluation.allowed());
    assert_eq!(evaluation.warnings(), ["hostile: (warn mode, not enforced) hostile says no"]);
    let path = hostile_set(dir.path(), "settings: {validate: warn}");
    let evaluation = load(&path).unwrap().evaluate(&request(), None);
    assert!(evaluation.allowed());
    assert_eq!(evaluation.warnings(), ["hostile: hostile warns"]);
}

#[test]
fn settings_that_are_always_refused_fail_the_load_naming_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let path = hostile_set(dir.path(), "settings: {settings: refuse}");
    let error = load(&path).err().expect("refused").to_string();
    assert_eq!(error, "policy hostile: settings refused: hostile refuses every setting");
}

#[test]
fn a_loop_in_validate_settings_fails_the_load_at_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let path = hostile_set(dir.path(), "timeout: 50ms\n  settings: {settings: loop}");
    let error = load(&path).err().expect("refused").to_string();
    assert_eq!(error, "policy hostile: validate-settings failed: did not finish within its timeout of 50ms");
}

#[test]
fn a_file_that_is_not_a_component_fails_the_load_naming_the_policy_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("broken.wasm");
    std::fs::write(&module, b"this is not WebAssembly").unwrap();
    let path = common::write_policies(dir.path(), "policies:\n- name: broken\n  module: broken.wasm\n");
    let error = load(&path).err().expect("refused").to_string();
    assert_eq!(
        error,
        format!(
            "policy broken: {} is not a WebAssembly component: it does not start with the WebAssembly magic bytes",
            module.display()
        )
    );
    // A core module, the usual mistake (built for wasm32-unknown-unknown or wasip1).
    std::fs::write(&module, b"\0asm\x01\0\0\0").unwrap();
    let error = load(&path).err().expect("refused").to_string();
    assert!(error.contains("it is a core WebAssembly module; build it for wasm32-wasip2"), "{error}");
}

#[test]
fn a_missing_module_fails_the_load_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = common::write_policies(dir.path(), "policies:\n- name: gone\n  module: gone.wasm\n");
    let error = load(&path).err().expect("refused").to_string();
    assert!(error.starts_with("policy gone: cannot read module ") && error.contains("gone.wasm"), "{error}");
}

#[test]
fn reload_switches_to_a_changed_good_set() {
    let dir = tempfile::tempdir().unwrap();
    let path = hostile_set(dir.path(), "settings: {validate: allow}");
    let policies = load(&path).unwrap();
    assert!(policies.evaluate(&request(), None).allowed());
    assert!(policies.reload_if_changed().is_none(), "nothing changed");
    hostile_set(dir.path(), "settings: {validate: deny}");
    assert!(matches!(policies.reload_if_changed(), Some(Ok(()))));
    assert_eq!(policies.evaluate(&request(), None).denials(), ["hostile: hostile says no"]);
}

#[test]
fn reload_notices_a_changed_module_file() {
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("policy.wasm");
    std::fs::copy(common::hostile_policy(), &module).unwrap();
    let path = common::write_policies(dir.path(), "policies:\n- {name: mine, module: policy.wasm}\n");
    let policies = load(&path).unwrap();
    std::fs::write(&module, b"garbage").unwrap();
    let refused = policies.reload_if_changed().expect("the module changed");
    assert!(refused.unwrap_err().to_string().contains("is not a WebAssembly component"));
}

#[test]
fn a_broken_new_set_is_refused_and_the_last_good_one_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let path = hostile_set(dir.path(), "settings: {validate: deny}");
    let policies = load(&path).unwrap();
    for broken in ["policies: [", "policies:\n- {name: x, module: builtin:nope}\n"] {
        std::fs::write(&path, broken).unwrap();
        assert!(matches!(policies.reload_if_changed(), Some(Err(_))), "{broken}");
        assert!(policies.reload_if_changed().is_none(), "a refused set is not retried until it changes");
        assert_eq!(policies.evaluate(&request(), None).denials(), ["hostile: hostile says no"]);
    }
}

#[test]
fn compiled_policies_are_kept_on_disk_and_a_damaged_artifact_is_compiled_again() {
    let cache = tempfile::tempdir().unwrap();
    let host = || mysql_webhook::policy::Host::new(Some(cache.path().to_path_buf())).unwrap();
    let bytes = std::fs::read(common::hostile_policy()).unwrap();
    host().compile("hostile", &bytes).unwrap();
    let artifacts: Vec<_> = std::fs::read_dir(cache.path()).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(artifacts.len(), 1, "{artifacts:?}");
    assert_eq!(artifacts[0].extension().unwrap(), "cwasm");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&artifacts[0]).unwrap().permissions().mode() & 0o777, 0o600);
    // A truncated artifact is not loaded: the policy is compiled again and works.
    let full = std::fs::read(&artifacts[0]).unwrap();
    std::fs::write(&artifacts[0], &full[..full.len() / 2]).unwrap();
    let fresh = host();
    let compiled = fresh.compile("hostile", &bytes).unwrap();
    let verdict =
        fresh.validate(&compiled, Duration::from_secs(1), &request(), r#"{"validate":"deny"}"#).unwrap();
    assert!(!verdict.allowed);
    assert_eq!(std::fs::read(&artifacts[0]).unwrap(), full, "the damaged artifact is replaced");
}

#[test]
fn the_built_in_policies_start_precompiled_from_the_binary_without_compiling() {
    let empty_cache = tempfile::tempdir().unwrap();
    let host = mysql_webhook::policy::Host::new(Some(empty_cache.path().to_path_buf())).unwrap();
    for name in mysql_webhook::policy::builtin::NAMES {
        let compiled = host.compile_builtin(name).expect("a built-in").unwrap();
        let verdict = host.validate(&compiled, Duration::from_secs(1), &request(), "{}").unwrap();
        assert!(verdict.allowed, "{name} judges the default expansion: {verdict:?}");
    }
    assert_eq!(host.compilations(), 0, "every built-in came precompiled");
    assert_eq!(
        std::fs::read_dir(empty_cache.path()).unwrap().count(),
        0,
        "and nothing was written to the cache"
    );
}

/// The artifacts a host with `cache` as its compile cache leaves there after compiling the
/// hostile policy (and checking the compiled policy works).
fn artifacts_after_compiling(cache: &Path) -> Vec<std::path::PathBuf> {
    let host = mysql_webhook::policy::Host::new(Some(cache.to_path_buf())).unwrap();
    let compiled = host.compile("hostile", &std::fs::read(common::hostile_policy()).unwrap()).unwrap();
    assert!(host.validate(&compiled, Duration::from_secs(1), &request(), "{}").unwrap().allowed);
    let artifacts = std::fs::read_dir(cache).unwrap().map(|e| e.unwrap().path());
    artifacts.filter(|p| p.extension().is_some_and(|e| e == "cwasm")).collect()
}

#[test]
fn the_cache_refuses_a_directory_others_can_write() {
    use std::os::unix::fs::PermissionsExt;
    let cache = tempfile::tempdir().unwrap();
    std::fs::set_permissions(cache.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    assert_eq!(artifacts_after_compiling(cache.path()), Vec::<std::path::PathBuf>::new());
    std::fs::set_permissions(cache.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(artifacts_after_compiling(cache.path()).len(), 1, "the same directory, private, is used");
}

#[test]
fn the_cache_refuses_a_directory_of_another_user() {
    let cache = tempfile::tempdir().unwrap();
    // The tests run as root (see README): give the directory to nobody.
    std::os::unix::fs::chown(cache.path(), Some(65534), Some(65534)).expect("the tests run as root");
    assert_eq!(artifacts_after_compiling(cache.path()), Vec::<std::path::PathBuf>::new());
}

#[test]
fn the_cache_never_follows_a_symlinked_artifact() {
    let cache = tempfile::tempdir().unwrap();
    let artifact = artifacts_after_compiling(cache.path()).pop().expect("an artifact");
    // Someone swaps the artifact for a link to a file of theirs.
    let planted = tempfile::tempdir().unwrap();
    let target = planted.path().join("planted.cwasm");
    std::fs::copy(&artifact, &target).unwrap();
    std::fs::remove_file(&artifact).unwrap();
    std::os::unix::fs::symlink(&target, &artifact).unwrap();
    artifacts_after_compiling(cache.path());
    let replaced = std::fs::symlink_metadata(&artifact).unwrap();
    assert!(replaced.file_type().is_file(), "the link was not loaded but replaced by a compiled artifact");
}

#[test]
fn an_unwritable_cache_directory_falls_back_to_compiling() {
    let host = mysql_webhook::policy::Host::new(Some("/proc/mysql-webhook-cache".into())).unwrap();
    let bytes = std::fs::read(common::hostile_policy()).unwrap();
    let compiled = host.compile("hostile", &bytes).unwrap();
    assert!(host.validate(&compiled, Duration::from_secs(1), &request(), "{}").unwrap().allowed);
}

/// Components built against `mysql-webhook:policy@0.1.0` must load in every later version: the
/// world may only grow in a new, versioned package, never change in place.
#[test]
fn the_policy_world_0_1_0_is_exactly_the_published_text() {
    let published = "package mysql-webhook:policy@0.1.0;

world policy {
  record verdict {
    allowed: bool,
    /// shown to the user when denied
    message: option<string>,
    /// returned to kubectl as warnings, allowed or not
    warnings: list<string>,
  }
  /// Called once when the policy is loaded; Err(reason) refuses the settings.
  export validate-settings: func(settings: string) -> result<_, string>;
  /// request: the AdmissionRequest as JSON, object already expanded; settings: JSON.
  export validate: func(request: string, settings: string) -> verdict;
}
";
    let wit = std::fs::read_to_string(common::repo_path("policies/wit/0.1.0/policy.wit")).unwrap();
    assert_eq!(wit, published);
}

/// 0.2.0 is published too: the SDK and the built-ins are built against it.
#[test]
fn the_policy_world_0_2_0_is_exactly_the_published_text() {
    let published = "package mysql-webhook:policy@0.2.0;

/// What the host offers a policy during `validate`.
interface review {
  /// The whole AdmissionRequest as JSON, object already expanded, without managedFields and
  /// kubectl's last-applied copy: for the fields the view of `validate` leaves out. Made by the
  /// host on the first call of a review and copied on each call; traps outside `validate`.
  request: func() -> string;
}

/// What a policy exports.
interface validator {
  record verdict {
    allowed: bool,
    /// shown to the user when denied
    message: option<string>,
    /// returned to kubectl as warnings, allowed or not
    warnings: list<string>,
  }
  /// Called once when the policy is loaded; Err(reason) refuses the settings.
  validate-settings: func(settings: string) -> result<_, string>;
  /// view: the AdmissionRequest as JSON, its object (and oldObject) cut to the StatefulSet view
  /// of policies/README.md; settings: JSON.
  validate: func(view: string, settings: string) -> verdict;
}

world policy {
  import review;
  export validator;
}
";
    let wit = std::fs::read_to_string(common::repo_path("policies/wit/policy.wit")).unwrap();
    assert_eq!(wit, published);
}

/// The deny message of the hostile policy of `module`'s world, in mode `forms`, on `request()`.
fn forms(module: &Path) -> String {
    let host = common::host();
    let compiled = host.compile("hostile", &std::fs::read(module).unwrap()).unwrap();
    let verdict =
        host.validate(&compiled, Duration::from_secs(1), &request(), r#"{"validate":"forms"}"#).unwrap();
    verdict.message.expect("forms denies with what it saw")
}

fn bytes_in(description: &str, form: &str) -> usize {
    let at = description.find(&format!("{form}: ")).unwrap_or_else(|| panic!("{form} in {description}"));
    description[at + form.len() + 2..].split(' ').next().unwrap().parse().unwrap()
}

#[test]
fn a_0_2_0_policy_gets_the_view_and_the_whole_request_when_it_asks() {
    let seen = forms(&common::hostile_policy_0_2());
    assert!(seen.contains("view: ") && seen.contains("commands absent; whole: "), "{seen}");
    assert!(seen.ends_with("commands present"), "the whole request has the scripts: {seen}");
    let (view, whole) = (bytes_in(&seen, "view"), bytes_in(&seen, "whole"));
    assert!(view * 3 < whole, "the view is a fraction of the request: {seen}");
}

#[test]
fn a_0_1_0_policy_still_loads_and_gets_the_whole_request() {
    let host = common::host();
    let compiled = host.compile("hostile", &std::fs::read(common::hostile_policy()).unwrap()).unwrap();
    assert_eq!(compiled.world, mysql_webhook::policy::World::V0_1);
    let seen = forms(&common::hostile_policy());
    assert!(seen.starts_with("request: ") && seen.ends_with("commands present"), "{seen}");
    assert_eq!(bytes_in(&seen, "request"), request().whole().len());
}

#[test]
fn the_request_import_traps_in_validate_settings_where_there_is_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let module = common::hostile_policy_0_2();
    let path = common::write_policies(
        dir.path(),
        &format!(
            "policies:\n- name: hostile\n  module: {}\n  settings: {{settings: request}}\n",
            module.display()
        ),
    );
    let error = load(&path).err().expect("the set is refused").to_string();
    assert!(
        error.contains("hostile") && error.contains("request can only be called from validate"),
        "{error}"
    );
}
