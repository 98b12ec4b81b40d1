//! The sandbox the policies run in: one wasmtime [`Engine`] per process, components compiled
//! once (and cached on disk as precompiled artifacts keyed by content hash and engine), a
//! pre-instantiated form per component, and a fresh [`Store`] per call with a memory cap and an
//! epoch deadline. WASI is linked only so that components built by rustc for wasm32-wasip2
//! link: no preopened directories, no environment, no arguments, no sockets, clocks frozen at
//! zero and no timers (a guest can't sleep past its deadline in a host call). A call's WASI
//! context is made only if the guest uses it: the built-ins import nothing of WASI (build.rs).
//!
//! Two worlds load (policies/README.md): `policy@0.2.0` components get the request's view and
//! ask for the whole request through the world's `request` import; `policy@0.1.0` components
//! get the whole request.
//!
//! Everything here is blocking: callers run it off the async executor.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use mysql_webhook_core::policy_request::PolicyInput;
use sha2::{Digest, Sha256};
use wasmtime::component::{
    Component, ComponentExportIndex, ComponentType, InstancePre, Lift, Linker, Resource, ResourceTable,
    WasmList, WasmStr,
};
use wasmtime::{Engine, ResourceLimiter, Store, StoreContextMut, Trap};
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// `mysql-webhook:policy@0.2.0`, the SDK's.
mod bindings {
    wasmtime::component::bindgen!({ path: "policies/wit/policy.wit", world: "policy" });
}
/// `mysql-webhook:policy@0.1.0`, frozen: its components keep loading.
mod bindings_0_1 {
    wasmtime::component::bindgen!({ path: "policies/wit/0.1.0/policy.wit", world: "policy" });
}
pub use super::engine::MEMORY_LIMIT;
pub use bindings::exports::mysql_webhook::policy::validator::Verdict;

/// The 0.2.0 world's export and import, by their component-level names.
const VALIDATOR_0_2: &str = "mysql-webhook:policy/validator@0.2.0";
const REVIEW_0_2: &str = "mysql-webhook:policy/review@0.2.0";

/// The `verdict` record as the guest left it in its memory: strings and the list are lifted
/// lazily, so the host copies only what it keeps (the message and the first
/// [`MAX_WARNINGS`] warnings, truncated), whatever size and count the guest returns.
#[derive(ComponentType, Lift)]
#[component(record)]
struct GuestVerdict {
    allowed: bool,
    message: Option<WasmStr>,
    warnings: WasmList<WasmStr>,
}

/// How often the epoch advances: the precision of every deadline. A thread wakes this often.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);
/// A verdict (message and warnings) larger than this is a failure, not a message to truncate:
/// nothing a human reads in kubectl is that long.
pub const MAX_RESULT_BYTES: usize = 64 << 10;
/// Longest message or warning passed on, in characters; longer ones are cut.
pub const MAX_MESSAGE_CHARS: usize = 1000;
/// Most warnings passed on per policy and call.
pub const MAX_WARNINGS: usize = 16;
/// The bytes `wasi:random` cycles through: policies see the same "randomness" on every call.
const RANDOM_BYTES: [u8; 8] = [0x6d, 0x79, 0x73, 0x71, 0x6c, 0x2d, 0x77, 0x68];
/// Most bytes one `wasi:random` call may ask for (the default is 2 GiB, allocated by the host).
const MAX_RANDOM_BYTES: u64 = 64 << 10;
/// Artifacts in the cache start with this, then the SHA-256 of what follows.
const CACHE_MAGIC: &[u8; 8] = b"mwhcwsm1";

/// A component that can't be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{module} is not a WebAssembly component: {reason}")]
    NotAComponent { module: String, reason: String },
    #[error("{module} can't run in the sandbox: {reason}")]
    Link { module: String, reason: String },
    #[error("the WebAssembly engine can't start: {0}")]
    Engine(String),
}

/// Why a call into a policy produced no verdict. The texts are stable: they reach users and
/// alerts, so they name the cause and never carry addresses or backtraces.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    #[error("did not finish within its timeout of {}ms", .0.as_millis())]
    Timeout(Duration),
    #[error("exceeded its memory limit of {} MiB", MEMORY_LIMIT >> 20)]
    MemoryLimit,
    #[error("trapped: {0}")]
    Trap(String),
    #[error("returned a result of {0} bytes, over the limit of {MAX_RESULT_BYTES}")]
    OversizedResult(usize),
}

impl Fault {
    /// The metric label of the outcome.
    pub fn as_str(&self) -> &'static str {
        match self {
            Fault::Timeout(_) => "timeout",
            Fault::MemoryLimit => "memory_limit",
            Fault::Trap(_) => "trap",
            Fault::OversizedResult(_) => "oversized_result",
        }
    }
}

/// Which policy world a component exports: what its `validate` is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum World {
    /// `policy@0.1.0`: the whole request.
    V0_1,
    /// `policy@0.2.0`: the view, and the whole request through the `request` import.
    V0_2,
}

/// A component ready to instantiate. Cheap to clone.
#[derive(Clone)]
pub struct Compiled {
    pre: InstancePre<Sandbox>,
    pub world: World,
    /// The two exports, looked up once.
    validate: ComponentExportIndex,
    validate_settings: ComponentExportIndex,
    /// SHA-256 of the component's bytes, hex.
    pub digest: String,
}

/// The process's engine, linker and compile caches.
pub struct Host {
    engine: Engine,
    linker: Linker<Sandbox>,
    /// Where precompiled artifacts are kept; `None` compiles every time.
    cache_dir: Option<PathBuf>,
    /// Components compiled by this process, by digest: a reload compiles only what changed.
    compiled: Mutex<HashMap<String, Compiled>>,
    /// Components compiled from WebAssembly by this host: see [`Host::compilations`].
    compilations: AtomicUsize,
    /// Part of every artifact's name: artifacts of another engine build are never tried.
    engine_key: u64,
    _ticker: EpochTicker,
}

/// Per-call state: WASI with nothing granted, and the memory cap.
pub struct Sandbox {
    /// Made at the call's first use of WASI: the built-ins import none, and building it was a
    /// seventh of an empty call's cost.
    wasi: Option<WasiCtx>,
    table: ResourceTable,
    limiter: Limiter,
    /// The request of a `validate` call, for the `request` import.
    input: Option<PolicyInput>,
}

impl WasiView for Sandbox {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: self.wasi.get_or_insert_with(deny_all_wasi), table: &mut self.table }
    }
}

/// WASI that grants nothing: no files, environment, arguments or sockets, frozen clocks, and
/// "randomness" that repeats.
fn deny_all_wasi() -> WasiCtx {
    WasiCtxBuilder::new()
        .wall_clock(FrozenClock)
        .monotonic_clock(FrozenClock)
        // Deterministic: a verdict must not depend on chance, and `check` must repeat the
        // webhook's. Bounded: a request for more bytes traps instead of allocating.
        .secure_random(wasmtime_wasi::Deterministic::new(RANDOM_BYTES.to_vec()))
        .insecure_random(wasmtime_wasi::Deterministic::new(RANDOM_BYTES.to_vec()))
        .insecure_random_seed(0)
        .max_random_size(MAX_RANDOM_BYTES)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build()
}

/// Caps linear memory and remembers that the cap was hit, so the trap it causes is reported as
/// what it is.
struct Limiter {
    hit: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MEMORY_LIMIT {
            self.hit = true;
            // An error traps at once: a guest allocator would otherwise abort with its own,
            // less telling message, or retry.
            anyhow::bail!("memory limit reached");
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// Clocks that say 0: policies decide on the request, not on the time, and a clock would make
/// their verdicts unrepeatable in `check`.
struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

const NO_TIMERS: &str = "the policy sandbox has no timers (wasi:clocks/monotonic-clock subscribe)";

impl Host {
    /// The engine and its epoch ticker. `cache_dir` is created when missing; when it can't be
    /// written (a read-only root filesystem), components are compiled at every start instead.
    pub fn new(cache_dir: Option<PathBuf>) -> Result<Host, LoadError> {
        Host::with_slots(cache_dir, super::engine::default_slots())
    }

    /// [`Host::new`] with `slots` instances at most at once (see
    /// [`engine::config`](super::engine::config)): for valgrind.
    pub fn with_slots(cache_dir: Option<PathBuf>, slots: u32) -> Result<Host, LoadError> {
        let engine_error = |e: wasmtime::Error| LoadError::Engine(format!("{e:#}"));
        let engine = Engine::new(&super::engine::config(slots)).map_err(engine_error)?;
        let mut linker = Linker::<Sandbox>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(engine_error)?;
        // wasmtime-wasi's timers block the calling thread in the host, where the epoch deadline
        // can't interrupt them: replace the interface with frozen time and no timers.
        linker.allow_shadowing(true);
        let mut clock = linker.instance("wasi:clocks/monotonic-clock@0.2.6").map_err(engine_error)?;
        clock
            .func_wrap("now", |_: StoreContextMut<'_, Sandbox>, (): ()| Ok((0u64,)))
            .map_err(engine_error)?;
        clock
            .func_wrap("resolution", |_: StoreContextMut<'_, Sandbox>, (): ()| Ok((1_000_000_000u64,)))
            .map_err(engine_error)?;
        for timer in ["subscribe-instant", "subscribe-duration"] {
            clock
                .func_wrap(timer, |_: StoreContextMut<'_, Sandbox>, (_,): (u64,)| {
                    Err::<(Resource<DynPollable>,), _>(anyhow::anyhow!(NO_TIMERS))
                })
                .map_err(engine_error)?;
        }
        linker.allow_shadowing(false);
        // policy@0.2.0's `request`: the whole request, made on the review's first ask.
        linker
            .instance(REVIEW_0_2)
            .map_err(engine_error)?
            .func_wrap("request", |store: StoreContextMut<'_, Sandbox>, (): ()| match &store.data().input {
                Some(input) => Ok((input.whole().to_owned(),)),
                None => Err(anyhow::anyhow!("request can only be called from validate")),
            })
            .map_err(engine_error)?;
        let mut hasher = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        env!("CARGO_PKG_VERSION").hash(&mut hasher);
        let engine_key = hasher.finish();
        let cache_dir = cache_dir.filter(|dir| match prepare_cache_dir(dir) {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(dir = %dir.display(), %error, "the policy compile cache can't be used; compiling at every start");
                false
            }
        });
        let ticker = EpochTicker::start(engine.clone());
        Ok(Host {
            engine,
            linker,
            cache_dir,
            compiled: Mutex::default(),
            compilations: AtomicUsize::new(0),
            engine_key,
            _ticker: ticker,
        })
    }

    /// Compiles `bytes` (named `module` in errors), or takes it from the caches: this process's,
    /// then the disk's. Checks that it exports the `policy` world and imports nothing the
    /// sandbox lacks.
    pub fn compile(&self, module: &str, bytes: &[u8]) -> Result<Compiled, LoadError> {
        self.compile_with(module, bytes, digest(bytes), None)
    }

    /// A built-in policy: its component and the artifact `build.rs` precompiled from it, which
    /// spares a new process the compilation (seconds and a hundred MiB for the five) as long
    /// as this engine can run it; otherwise it is compiled like any other.
    ///
    /// The component's digest comes from the build too: hashing it here would read its bytes
    /// into memory for nothing when the artifact loads.
    pub fn compile_builtin(&self, name: &str) -> Option<Result<Compiled, LoadError>> {
        let bytes = super::builtin::component(name)?;
        Some(self.compile_with(
            &format!("{}{name}", super::config::BUILTIN_PREFIX),
            bytes,
            super::builtin::digest(name)?.to_owned(),
            super::builtin::precompiled(name),
        ))
    }

    /// How many components this host has compiled from WebAssembly rather than taken
    /// precompiled (from the binary or the disk cache).
    pub fn compilations(&self) -> usize {
        self.compilations.load(Ordering::Relaxed)
    }

    /// `digest` is [`digest`]`(bytes)`.
    fn compile_with(
        &self,
        module: &str,
        bytes: &[u8],
        digest: String,
        precompiled: Option<&'static [u8]>,
    ) -> Result<Compiled, LoadError> {
        if let Some(compiled) = self.compiled.lock().expect("never poisoned").get(&digest) {
            return Ok(compiled.clone());
        }
        let component = match precompiled.and_then(|artifact| self.load_embedded(module, artifact)) {
            Some(component) => component,
            None => match self.load_cached(&digest) {
                Some(component) => component,
                None => {
                    let component =
                        Component::new(&self.engine, bytes).map_err(|e| LoadError::NotAComponent {
                            module: module.to_owned(),
                            reason: not_a_component_reason(bytes, &e),
                        })?;
                    self.compilations.fetch_add(1, Ordering::Relaxed);
                    self.store_cached(&digest, &component);
                    component
                }
            },
        };
        let link_error =
            |e: wasmtime::Error| LoadError::Link { module: module.to_owned(), reason: format!("{e:#}") };
        let pre = self.linker.instantiate_pre(&component).map_err(link_error)?;
        // The newest world first; each PolicyPre checks both exports and their types.
        let world = match bindings::PolicyPre::new(pre.clone()) {
            Ok(_) => World::V0_2,
            Err(newest) => match bindings_0_1::PolicyPre::new(pre.clone()) {
                Ok(_) => World::V0_1,
                Err(_) => {
                    return Err(LoadError::Link {
                        module: module.to_owned(),
                        reason: format!(
                            "it exports neither the mysql-webhook:policy@0.2.0 nor the @0.1.0 world ({newest:#})"
                        ),
                    });
                }
            },
        };
        // 0.1.0 exports the functions at the top level, 0.2.0 inside its versioned interface.
        let interface = match world {
            World::V0_1 => None,
            World::V0_2 => {
                Some(component.get_export_index(None, VALIDATOR_0_2).expect("checked by PolicyPre::new"))
            }
        };
        let export =
            |name| component.get_export_index(interface.as_ref(), name).expect("checked by PolicyPre::new");
        let compiled = Compiled {
            pre,
            world,
            validate: export("validate"),
            validate_settings: export("validate-settings"),
            digest: digest.clone(),
        };
        self.compiled.lock().expect("never poisoned").insert(digest, compiled.clone());
        Ok(compiled)
    }

    /// Forgets the compiled components not in `keep`: after a reload, what the new set doesn't
    /// use would otherwise stay in memory for the life of the process.
    pub fn retain(&self, keep: &std::collections::HashSet<&str>) {
        self.compiled.lock().expect("never poisoned").retain(|digest, _| keep.contains(digest.as_str()));
    }

    /// `validate-settings`: `Ok(Err(reason))` when the policy refuses them; the reason is
    /// truncated as it is read.
    pub fn validate_settings(
        &self,
        compiled: &Compiled,
        timeout: Duration,
        settings: &str,
    ) -> Result<Result<(), String>, Fault> {
        self.call(
            compiled,
            &compiled.validate_settings,
            timeout,
            None,
            (settings,),
            |store, (result,): (Result<(), WasmStr>,)| {
                Ok(match result {
                    Ok(()) => Ok(()),
                    Err(reason) => Err(truncate(&reason.to_str(&*store)?)),
                })
            },
        )
    }

    /// `validate` on `input` in the form the component's world takes, with the verdict checked
    /// for size and its texts truncated, reading no more of the guest's result than it keeps.
    pub fn validate(
        &self,
        compiled: &Compiled,
        timeout: Duration,
        input: &PolicyInput,
        settings: &str,
    ) -> Result<Verdict, Fault> {
        let request = match compiled.world {
            World::V0_2 => input.view(),
            World::V0_1 => input.whole(),
        };
        self.call(
            compiled,
            &compiled.validate,
            timeout,
            Some(input.clone()),
            (request, settings),
            |store, (verdict,): (GuestVerdict,)| {
                let count = verdict.warnings.len();
                let kept = verdict
                    .warnings
                    .iter(&mut *store)
                    .take(MAX_WARNINGS)
                    .collect::<wasmtime::Result<Vec<_>>>()?;
                // Borrowed from the guest's memory: nothing is copied until it is kept.
                let store = &*store;
                let message = verdict.message.as_ref().map(|m| m.to_str(store)).transpose()?;
                let kept = kept.iter().map(|w| w.to_str(store)).collect::<wasmtime::Result<Vec<_>>>()?;
                let size =
                    message.as_ref().map_or(0, |m| m.len()) + kept.iter().map(|w| w.len()).sum::<usize>();
                if size > MAX_RESULT_BYTES {
                    return Ok(Err(Fault::OversizedResult(size)));
                }
                let mut warnings: Vec<String> = kept.iter().map(|w| truncate(w)).collect();
                if count > MAX_WARNINGS {
                    warnings.push(format!("… and {} more warnings", count - MAX_WARNINGS));
                }
                Ok(Ok(Verdict {
                    allowed: verdict.allowed,
                    message: message.as_deref().map(truncate),
                    warnings,
                }))
            },
        )?
    }

    /// One call of `export` with `params` in a fresh store: instantiated from the
    /// pre-instantiated form, with the memory cap and a deadline of `timeout` (to within
    /// [`EPOCH_TICK`]). `read` takes what it needs of the results while they are still in the
    /// guest's memory.
    fn call<P, R, T>(
        &self,
        compiled: &Compiled,
        export: &ComponentExportIndex,
        timeout: Duration,
        input: Option<PolicyInput>,
        params: P,
        read: impl FnOnce(&mut Store<Sandbox>, R) -> wasmtime::Result<T>,
    ) -> Result<T, Fault>
    where
        P: wasmtime::component::ComponentNamedList + wasmtime::component::Lower + Send + Sync,
        R: wasmtime::component::ComponentNamedList + Lift + Send + Sync,
    {
        let sandbox =
            Sandbox { wasi: None, table: ResourceTable::new(), limiter: Limiter { hit: false }, input };
        let mut store = Store::new(&self.engine, sandbox);
        store.limiter(|sandbox| &mut sandbox.limiter);
        store.set_epoch_deadline(deadline_ticks(timeout));
        store.epoch_deadline_trap();
        let result = (|| {
            let instance = compiled.pre.instantiate(&mut store)?;
            let func = instance.get_typed_func::<P, R>(&mut store, export)?;
            let results = func.call(&mut store, params)?;
            let value = read(&mut store, results)?;
            func.post_return(&mut store)?;
            Ok(value)
        })();
        result.map_err(|error| classify(&error, store.data().limiter.hit, timeout))
    }

    fn artifact_path(&self, digest: &str) -> Option<PathBuf> {
        let dir = self.cache_dir.as_ref()?;
        Some(dir.join(format!("{digest}-{:016x}.cwasm", self.engine_key)))
    }

    /// A built-in's artifact from the binary, or `None` (logged) when this engine can't run it:
    /// a machine without the CPU features of the one that built the binary, for instance.
    fn load_embedded(&self, module: &str, artifact: &'static [u8]) -> Option<Component> {
        // SAFETY: `Component::deserialize` runs machine code from the artifact without checking
        // it. This artifact is part of the binary, as trusted as the binary's own code: build.rs
        // produced it from the policy's source with this wasmtime version and this engine
        // configuration (`policy::engine::config`, shared by both). wasmtime still refuses an
        // artifact of another version, configuration or CPU, and then the policy is compiled.
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize(&self.engine, artifact) };
        release_pages(artifact);
        component
            .inspect_err(|error| {
                tracing::warn!(module, error = %format!("{error:#}"), "the precompiled policy can't run on this machine; compiling it");
            })
            .ok()
    }

    fn load_cached(&self, digest: &str) -> Option<Component> {
        let path = self.artifact_path(digest)?;
        let file = read_no_follow(&path).ok()?;
        let artifact = verified_artifact(&file);
        if artifact.is_none() {
            tracing::warn!(path = %path.display(), "ignoring a damaged precompiled policy; compiling it again");
            return None;
        }
        // SAFETY: `Component::deserialize` runs machine code from the artifact without checking
        // it, so only artifacts this program wrote are loaded: they live in a directory that
        // this user owns and nobody else can write (checked by `prepare_cache_dir`), are read
        // without following a symbolic link, are written under a temporary name and renamed into place, and the
        // SHA-256 over their content is checked just above, so a partial write or a damaged file
        // is never loaded. The name carries the engine's compatibility hash, and wasmtime also
        // refuses artifacts of another engine configuration or version.
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize(&self.engine, artifact?) };
        match component {
            Ok(component) => Some(component),
            Err(error) => {
                tracing::warn!(path = %path.display(), error = %format!("{error:#}"), "ignoring an unusable precompiled policy");
                None
            }
        }
    }

    fn store_cached(&self, digest: &str, component: &Component) {
        let Some(path) = self.artifact_path(digest) else { return };
        let result =
            component.serialize().map_err(|e| std::io::Error::other(format!("{e:#}"))).and_then(|artifact| {
                let mut file = Vec::with_capacity(artifact.len() + 40);
                file.extend_from_slice(CACHE_MAGIC);
                file.extend_from_slice(&Sha256::digest(&artifact));
                file.extend_from_slice(&artifact);
                let partial = path.with_extension(format!("partial.{}", std::process::id()));
                write_private(&partial, &file).and_then(|()| std::fs::rename(&partial, &path))
            });
        if let Err(error) = result {
            tracing::warn!(path = %path.display(), %error, "can't keep the precompiled policy; it will be compiled again at the next start");
        }
    }
}

/// Deadline in epoch ticks: one more than the timeout holds, since the first tick may come at
/// once.
fn deadline_ticks(timeout: Duration) -> u64 {
    (timeout.as_nanos().div_ceil(EPOCH_TICK.as_nanos()) as u64).max(1) + 1
}

fn classify(error: &wasmtime::Error, memory_limit_hit: bool, timeout: Duration) -> Fault {
    if memory_limit_hit {
        return Fault::MemoryLimit;
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => Fault::Timeout(timeout),
        Some(trap) => Fault::Trap(trap.to_string()),
        // Host-raised errors (a timer asked for, `exit` called) and results that can't be
        // lifted (invalid UTF-8): the root cause, which is a fixed text.
        None => Fault::Trap(truncate(&error.root_cause().to_string())),
    }
}

/// Says why the bytes are not a component, with the fix when it is a core module.
fn not_a_component_reason(bytes: &[u8], error: &wasmtime::Error) -> String {
    if bytes.len() >= 8 && &bytes[..4] == b"\0asm" && bytes[4..8] == [1, 0, 0, 0] {
        return "it is a core WebAssembly module; build it for wasm32-wasip2, or wrap it with \
                `wasm-tools component new`"
            .into();
    }
    if bytes.len() < 4 || &bytes[..4] != b"\0asm" {
        return "it does not start with the WebAssembly magic bytes".into();
    }
    truncate(&format!("{error:#}"))
}

/// Cuts `text` to [`MAX_MESSAGE_CHARS`] characters, saying so.
pub fn truncate(text: &str) -> String {
    match text.char_indices().nth(MAX_MESSAGE_CHARS) {
        None => text.to_owned(),
        Some((end, _)) => format!("{}… (truncated)", &text[..end]),
    }
}

fn verified_artifact(file: &[u8]) -> Option<&[u8]> {
    let rest = file.strip_prefix(CACHE_MAGIC.as_slice())?;
    let (checksum, artifact) = rest.split_at_checked(32)?;
    (Sha256::digest(artifact).as_slice() == checksum).then_some(artifact)
}

/// Gives the pages of `bytes` (a part of the binary, read once) back to the kernel: wasmtime
/// copied the artifact into executable memory, and the five built-ins' artifacts would
/// otherwise stay resident twice, a fifth of an idle server's memory. They are clean pages of
/// the binary's read-only data, so a later read (the fallback compile never reads them) would
/// fault them in again from the file, unchanged.
fn release_pages(bytes: &'static [u8]) {
    // SAFETY: sysconf has no preconditions.
    #[allow(unsafe_code)]
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    let start = (bytes.as_ptr() as usize).next_multiple_of(page);
    let end = (bytes.as_ptr() as usize + bytes.len()) / page * page;
    if end > start {
        // SAFETY: only whole pages inside `bytes`, a `'static` immutable array in the binary's
        // read-only data: MADV_DONTNEED drops their mapping, and any later access reads the
        // same bytes from the file. Nothing holds a mutable view of them.
        #[allow(unsafe_code)]
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
        }
    }
}

/// The SHA-256 of a component, hex: its name in the caches (as build.rs computes it for the
/// built-ins).
pub fn digest(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Creates the compile cache directory (mode 0700) if missing, and trusts it only when it is a
/// real directory (not a symbolic link) owned by this process's user and writable by nobody
/// else: its artifacts are machine code the server runs.
fn prepare_cache_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    // Probe: a directory that exists but can't be written is as good as none. The probe's
    // owner is this process's effective user.
    let probe = dir.join(format!(".probe.{}", std::process::id()));
    write_private(&probe, b"")?;
    let me = std::fs::symlink_metadata(&probe).map(|m| m.uid());
    std::fs::remove_file(&probe)?;
    let (me, meta) = (me?, std::fs::symlink_metadata(dir)?);
    let refuse = |why: String| Err(std::io::Error::new(std::io::ErrorKind::PermissionDenied, why));
    if meta.file_type().is_symlink() || !meta.is_dir() {
        return refuse("it is not a directory (a symbolic link is not followed)".into());
    }
    if meta.uid() != me {
        return refuse(format!("it is owned by uid {}, not by this server's uid {me}", meta.uid()));
    }
    if meta.mode() & 0o022 != 0 {
        return refuse(format!(
            "it is writable by group or others (mode {:o}); use mode 0700",
            meta.mode() & 0o777
        ));
    }
    Ok(())
}

/// Writes a new file (mode 0600); refuses a path that exists, a symbolic link included.
fn write_private(path: &Path, content: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(content)
}

/// Reads a file, refusing a symbolic link in its place.
fn read_no_follow(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path)?;
    let mut content = Vec::new();
    file.read_to_end(&mut content)?;
    Ok(content)
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine) -> EpochTicker {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("policy-epoch".into())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .expect("spawning the epoch thread");
        EpochTicker { stop, thread: Some(thread) }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_long_texts_on_a_character_boundary() {
        let long = "é".repeat(MAX_MESSAGE_CHARS + 5);
        let cut = truncate(&long);
        assert!(cut.starts_with(&"é".repeat(MAX_MESSAGE_CHARS)));
        assert!(cut.ends_with("… (truncated)"));
        assert_eq!(truncate("short"), "short");
    }

    #[test]
    fn deadline_covers_the_timeout_plus_one_tick() {
        assert_eq!(deadline_ticks(Duration::from_millis(250)), 51);
        assert_eq!(deadline_ticks(Duration::from_millis(1)), 2);
    }

    #[test]
    fn built_in_policies_are_0_2_0_components_importing_nothing_but_the_request() {
        let host = Host::new(None).unwrap();
        for name in super::super::builtin::NAMES {
            let compiled = host.compile_builtin(name).unwrap().unwrap();
            assert_eq!(compiled.world, World::V0_2, "{name}");
            let component = compiled.pre.component();
            let imports: Vec<String> = component
                .component_type()
                .imports(&host.engine)
                .map(|(import, _)| import.to_owned())
                .filter(|import| import != REVIEW_0_2)
                .collect();
            assert!(imports.is_empty(), "{name} imports {imports:?}");
        }
        assert_eq!(host.compilations(), 0, "the built-ins come precompiled");
    }

    #[test]
    fn a_built_in_whose_precompiled_artifact_does_not_load_is_compiled_instead() {
        let host = Host::new(None).unwrap();
        let name = super::super::builtin::NAMES[0];
        let component = super::super::builtin::component(name).unwrap();
        let compiled = host
            .compile_with(name, component, digest(component), Some(b"an artifact of another engine"))
            .unwrap();
        assert_eq!(host.compilations(), 1);
        let request = r#"{"uid":"u","operation":"CREATE","object":{"spec":{"replicas":3}}}"#;
        let input = PolicyInput::from_json(request.into());
        assert!(host.validate(&compiled, Duration::from_secs(1), &input, "{}").unwrap().allowed);
    }

    #[test]
    fn refuses_damaged_artifacts() {
        let mut file = CACHE_MAGIC.to_vec();
        file.extend_from_slice(&Sha256::digest(b"artifact"));
        file.extend_from_slice(b"artifact");
        assert_eq!(verified_artifact(&file), Some(&b"artifact"[..]));
        let last = file.len() - 1;
        file[last] ^= 1;
        assert_eq!(verified_artifact(&file), None);
        assert_eq!(verified_artifact(b"short"), None);
    }
}
