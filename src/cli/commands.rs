//! The offline commands (`mutate`, `check`, `certs`): read the input, call the core or the
//! policy host, print, and say how it went in the exit code (0 success, 1 `check` denied, 2 bad
//! input or a command that can't run).

use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;

use mysql_webhook_core::{consts, manifests};

use super::{BackupsListArgs, CertsArgs, CheckArgs, CheckOutput};
use crate::backups;
use crate::certs as certificates;
use crate::policy::{Host, Policies, Source};

/// Exit code for bad input and for commands that can't run.
const EXIT_BAD_INPUT: u8 = 2;
/// Exit code of `check` when an enforced policy denies.
const EXIT_DENIED: u8 = 1;

/// `backups list`: exit 0, 2 on bad input, 1 when the target can't be read.
pub fn backups_list(args: &BackupsListArgs) -> ExitCode {
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

pub fn certs(args: &CertsArgs) -> ExitCode {
    let result = certificates::service_names(&args.service, &args.namespace, &args.ips)
        .and_then(|names| match args.renew {
            true => certificates::renew(&args.out, &args.service, names, args.days),
            false => certificates::generate(&args.service, names, args.days),
        })
        .and_then(|bundle| certificates::write(&bundle, &args.out, args.force).map(|()| bundle));
    match result {
        Ok(bundle) => {
            let (cert, key) = (consts::TLS_CERT_FILE, consts::TLS_KEY_FILE);
            let out = args.out.display();
            match args.renew {
                true => eprintln!(
                    "wrote {out}/{cert} and {out}/{key} (mode 0600), signed by {out}/{}",
                    consts::TLS_CA_FILE
                ),
                false => eprintln!(
                    "wrote {out}/{}, {out}/{} (mode 0600), {out}/{cert} and {out}/{key} (mode 0600); keep {out}/{} out of Git and of the Secret",
                    consts::TLS_CA_FILE,
                    consts::TLS_CA_KEY_FILE,
                    consts::TLS_CA_KEY_FILE
                ),
            }
            eprintln!(
                "the caBundle for the webhook configurations{}:",
                if args.renew { " (unchanged)" } else { "" }
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

/// `--with-secret`: the credentials, and the TLS identity unless a cert-manager issuer makes it.
fn generate_secrets(
    plan: &mysql_webhook_core::Plan,
) -> Result<Vec<k8s_openapi::api::core::v1::Secret>, String> {
    use mysql_webhook_core::companions;
    let mut secrets = vec![companions::credentials_secret(plan, &crate::new_credentials())];
    if plan.tls_issuer.is_none() {
        let identity =
            crate::member_tls::member_identity(&plan.service_name, companions::member_dns_names(plan))
                .map_err(|e| e.to_string())?;
        secrets.push(companions::tls_secret(plan, &identity));
    }
    Ok(secrets)
}

pub fn mutate(file: &Path, with_secret: bool) -> ExitCode {
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

pub fn check(args: &CheckArgs) -> ExitCode {
    let text = match read_input(&args.file) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", args.file.display());
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let source = args.policies.clone().map_or(Source::Builtins, Source::File);
    let policies = match Host::new(args.policy_cache.clone().or_else(crate::policy::default_cache_dir))
        .map_err(Into::into)
        .and_then(|host| Policies::load(host, source))
    {
        Ok(policies) => policies,
        Err(e) => {
            eprintln!("error: the policies can't be loaded: {e}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let given = args.namespace_labels.iter().cloned().collect();
    let report = match super::check::check(&text, &policies, &given) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    for namespace in &report.namespaces {
        eprintln!("note: {}", namespace.note());
    }
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

fn read_input(file: &Path) -> std::io::Result<String> {
    if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        Ok(text)
    } else {
        std::fs::read_to_string(file)
    }
}
