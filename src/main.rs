//! The `mysql-webhook` binary: parses the command line and hands over to the library.

use std::io::{Read, Write};
use std::process::ExitCode;

use clap::Parser;
use mysql_webhook::cli::{
    BackupsCommand, BackupsListArgs, CertsArgs, CheckArgs, CheckOutput, Cli, Command, ServeArgs,
};
use mysql_webhook::companions::Credentials;
use mysql_webhook::policy::{Host, Policies, Source};
use mysql_webhook::{backups, certs, check, consts, manifests, server, telemetry};

/// See Cargo.toml: glibc's allocator was a third of the webhook's CPU under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code for bad input and for commands that can't run.
const EXIT_BAD_INPUT: u8 = 2;
/// Exit code of `check` when an enforced policy denies.
const EXIT_DENIED: u8 = 1;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Mutate { file, with_secret } => run_mutate(&file, with_secret),
        Command::Serve(args) => match run_serve(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Certs(args) => run_certs(&args),
        Command::Check(args) => run_check(&args),
        Command::Backups(BackupsCommand::List(args)) => run_backups_list(&args),
    }
}

fn run_serve(args: ServeArgs) -> anyhow::Result<()> {
    let certificates = args.certificates().unwrap_or_else(|usage| usage.exit());
    telemetry::init(args.log_format);
    let config = server::Config {
        addr: args.addr,
        certificates,
        policies: args.policies,
        policy_cache: Some(args.policy_cache),
        controller: !args.no_controller,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(server::run(config))?;
    Ok(())
}

fn run_backups_list(args: &BackupsListArgs) -> ExitCode {
    match backups::list(&args.target, args.secret_file.as_deref()) {
        Ok(list) => {
            match args.output {
                CheckOutput::Text => print!("{}", backups::text(&list)),
                CheckOutput::Json => {
                    println!("{}", serde_json::json!({"target": args.target, "backups": list}))
                }
            }
            ExitCode::SUCCESS
        }
        Err(error @ (backups::Error::Rclone { .. } | backups::Error::NoRclone(_))) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}

fn run_certs(args: &CertsArgs) -> ExitCode {
    let result =
        certs::generate(&args.service, certs::service_names(&args.service, &args.namespace), args.days)
            .and_then(|bundle| certs::write(&bundle, &args.out, args.force).map(|()| bundle));
    match result {
        Ok(bundle) => {
            eprintln!(
                "wrote {0}/{1}, {0}/{2} and {0}/{3} (key mode 0600); the caBundle for the webhook configurations:",
                args.out.display(),
                consts::TLS_CA_FILE,
                consts::TLS_CERT_FILE,
                consts::TLS_KEY_FILE
            );
            println!("{}", bundle.ca_bundle());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}

fn run_mutate(file: &std::path::Path, with_secret: bool) -> ExitCode {
    let text = match read_input(file) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", file.display());
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let mut generate = Credentials::generate;
    let credentials: Option<&mut dyn FnMut() -> Credentials> = with_secret.then_some(&mut generate as _);
    let output = manifests::read_documents(&text)
        .and_then(|documents| manifests::expand_documents(documents, credentials));
    match output {
        Ok(output) => {
            for note in &output.notes {
                eprintln!("note: {note}");
            }
            let mut stdout = std::io::stdout().lock();
            match stdout
                .write_all(manifests::to_yaml(&output.documents).as_bytes())
                .and_then(|()| stdout.flush())
            {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: cannot write the output: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}

fn run_check(args: &CheckArgs) -> ExitCode {
    let text = match read_input(&args.file) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", args.file.display());
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let source = args.policies.clone().map_or(Source::Builtins, Source::File);
    let policies = match Host::new(Some(args.policy_cache.clone()))
        .map_err(Into::into)
        .and_then(|host| Policies::load(host, source))
    {
        Ok(policies) => policies,
        Err(e) => {
            eprintln!("error: the policies can't be loaded: {e}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let report = match check::check(&text, &policies) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let printed = match args.output {
        CheckOutput::Text => report.to_text(),
        CheckOutput::Json => report.to_json(),
    };
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_all(printed.as_bytes()).and_then(|()| stdout.flush()) {
        eprintln!("error: cannot write the output: {e}");
        return ExitCode::FAILURE;
    }
    if report.denied() { ExitCode::from(EXIT_DENIED) } else { ExitCode::SUCCESS }
}

fn read_input(file: &std::path::Path) -> std::io::Result<String> {
    if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        Ok(text)
    } else {
        std::fs::read_to_string(file)
    }
}
