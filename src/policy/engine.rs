//! The wasmtime engine's configuration, in one place because two programs build engines from
//! it: the policy host at run time, and `build.rs`, which precompiles the built-in policies
//! when the binary is built. A precompiled artifact loads only into an engine of the same
//! wasmtime version and configuration, so the two must never drift apart. The file stands
//! alone (only `std` and `wasmtime`): `build.rs` includes it with `#[path]`.

use wasmtime::{Config, Enabled, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Linear memory a policy may use in one call. A policy parsing a StatefulSet into k8s-openapi
/// types needs a few MiB; a runaway one is stopped here, long before it matters to the server.
pub const MEMORY_LIMIT: usize = 64 << 20;
/// The wasm stack a call may use.
const MAX_WASM_STACK: usize = 1 << 20;

/// Components, epoch deadlines, a bounded stack, and a pool of `slots` instances (the server
/// takes [`default_slots`]). Each slot reserves 4 GiB of address space (wasmtime's default,
/// which spares the guest code its bounds checks), which valgrind can't give sixteen of; the
/// compiled code doesn't depend on the count, so an artifact precompiled with one count loads
/// into an engine with another.
pub fn config(slots: u32) -> Config {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .max_wasm_stack(MAX_WASM_STACK)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling(slots)));
    config
}

/// Evaluations run at most one per core; a reload's validate-settings and `check` add a few.
pub fn default_slots() -> u32 {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get() as u32);
    4 * cores + 8
}

/// Instances come from a pool of slots reserved once: without it every call mmaps and unmaps a
/// linear memory and takes a page fault per page touched, which was most of a call's time
/// (perf on `benches/policies.rs`). Freed memory stays resident up to a bound and is reset
/// page by page where the kernel can say which pages were written (PAGEMAP_SCAN, Linux 6.7).
fn pooling(slots: u32) -> PoolingAllocationConfig {
    let keep_resident = if PoolingAllocationConfig::is_pagemap_scan_available() { 16 << 20 } else { 1 << 20 };
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(slots)
        .total_core_instances(slots * 4)
        .total_memories(slots)
        .total_tables(slots * 4)
        .max_memory_size(MEMORY_LIMIT)
        .table_elements(100_000)
        .linear_memory_keep_resident(keep_resident)
        .table_keep_resident(64 << 10)
        .pagemap_scan(Enabled::Auto);
    pool
}
