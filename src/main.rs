//! The `mysql-webhook` binary: parses the command line and hands over to the library.

use std::io::{Read, Write};
use std::process::ExitCode;

use clap::Parser;
use mysql_webhook::cli::{CertsArgs, CheckArgs, CheckOutput, Cli, Command, ServeArgs};
use mysql_webhook::companions::{self, Credentials};
use mysql_webhook::policy::{Host, Policies, Source};
use mysql_webhook::{certs, check, consts, manifests, server, telemetry};

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
    let mut generate = generate_secrets;
    let secrets: Option<manifests::SecretMaker<'_>> = with_secret.then_some(&mut generate as _);
    let output = manifests::read_documents(&text)
        .and_then(|documents| manifests::expand_documents(documents, secrets));
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

/// `--with-secret`: the credentials, and the TLS identity unless a cert-manager issuer makes it.
fn generate_secrets(plan: &mysql_webhook::Plan) -> Result<Vec<k8s_openapi::api::core::v1::Secret>, String> {
    let mut secrets = vec![companions::credentials_secret(plan, &Credentials::generate())];
    if plan.tls_issuer.is_none() {
        let identity = certs::member_identity(&plan.service_name, companions::member_dns_names(plan))
            .map_err(|e| e.to_string())?;
        secrets.push(companions::tls_secret(plan, &identity));
    }
    Ok(secrets)
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
