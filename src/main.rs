//! The `mysql-webhook` binary: parses the command line and hands over to the library. `serve`
//! is the one command whose errors are `anyhow`'s; the offline commands are `cli::commands`.

use std::process::ExitCode;

use clap::Parser;
use mysql_webhook::cli::{BackupsCommand, Cli, Command, ServeArgs, commands};
use mysql_webhook::{server, telemetry};

/// See Cargo.toml: glibc's allocator was a third of the webhook's CPU under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc commits its first arena eagerly on Linux and then keeps whatever a burst touched;
/// committed on demand, the same load peaks about a third lower for the same CPU (README
/// "Performance"). The option is read when that arena is reserved, at the process's first
/// allocation, so it is set by a constructor that the loader runs before Rust's runtime.
#[used]
#[unsafe(link_section = ".init_array")]
static COMMIT_ARENAS_ON_DEMAND: extern "C" fn() = {
    extern "C" fn commit_arenas_on_demand() {
        /// `mi_option_arena_eager_commit` in `mi_option_e`, the same index in mimalloc v2 and v3
        /// (libmimalloc-sys names no constant for it).
        const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
        // SAFETY: stores one integer in mimalloc's option table, which mimalloc allows at any
        // time; nothing else runs yet.
        unsafe { libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0) };
    }
    commit_arenas_on_demand
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Mutate { file, with_secret } => commands::mutate(&file, with_secret),
        Command::Serve(args) => match run_serve(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Certs(args) => commands::certs(&args),
        Command::Check(args) => commands::check(&args),
        Command::Backups(BackupsCommand::List(args)) => commands::backups_list(&args),
    }
}

fn run_serve(args: ServeArgs) -> anyhow::Result<()> {
    let certificates = args.certificates().unwrap_or_else(|usage| usage.exit());
    telemetry::init(args.log_format);
    let config = server::Config {
        addr: args.addr,
        certificates,
        policies: args.policies,
        policy_cache: args.policy_cache.or_else(mysql_webhook::policy::default_cache_dir),
        controller: !args.no_controller,
        audit_interval: args.audit_interval.0,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(server::run(config))?;
    Ok(())
}
