//! The `mysql-webhook` binary: parses the command line and hands over to the library. `serve`
//! is the one command whose errors are `anyhow`'s; the offline commands are `cli::commands`.

use std::process::ExitCode;

use clap::Parser;
use mysql_webhook::cli::{BackupsCommand, Cli, Command, ServeArgs, commands};
use mysql_webhook::{server, telemetry};

/// See Cargo.toml: glibc's allocator was a third of the webhook's CPU under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
