//! The command line: commands and flags (README.md, one section per command), each flag also readable
//! from an environment variable; and the offline commands beside the server ([`check`]).
//! Parsing here; `main` dispatches.

use std::net::SocketAddr;
use std::path::PathBuf;

pub mod check;
pub mod commands;

use clap::error::ErrorKind;
use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::server::Certificates;
use crate::telemetry::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "mysql-webhook",
    version,
    about = "Expands annotated StatefulSets into replicated MySQL/MariaDB clusters"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTPS admission webhook (and the companion controller).
    Serve(ServeArgs),
    /// Expand manifests offline: annotated StatefulSets with their companions, everything else unchanged.
    Mutate {
        /// Manifest file (multi-document YAML or JSON); `-` reads standard input.
        #[arg(short = 'f', long = "filename", env = "MYSQL_WEBHOOK_FILENAME")]
        file: PathBuf,
        /// Also emit a credentials Secret with generated passwords (off: secrets don't belong in Git).
        #[arg(long, env = "MYSQL_WEBHOOK_WITH_SECRET")]
        with_secret: bool,
    },
    /// Run the policies offline on the expanded manifests (CI use): exit 0 all pass, 1 denied, 2 bad input.
    Check(CheckArgs),
    /// Make a CA and a serving certificate for the webhook's Service.
    Certs(CertsArgs),
    /// Backups in a target.
    #[command(subcommand)]
    Backups(BackupsCommand),
}

#[derive(Debug, Subcommand)]
pub enum BackupsCommand {
    /// List the backups in a target (id, time, size, position, verified): exit 0, 2 on bad input, 1 when the target can't be read.
    List(BackupsListArgs),
}

#[derive(Debug, Args)]
pub struct BackupsListArgs {
    /// `s3://<bucket>/<prefix>`, or a directory (a backup claim mounted or copied here).
    #[arg(long, env = "MYSQL_WEBHOOK_BACKUP_TARGET")]
    pub target: String,
    /// The Secret (YAML or JSON, as `kubectl get secret -o yaml` prints it) with the S3 endpoint and keys.
    #[arg(long, env = "MYSQL_WEBHOOK_BACKUP_SECRET_FILE")]
    pub secret_file: Option<PathBuf>,
    /// Output format.
    #[arg(long, short = 'o', env = "MYSQL_WEBHOOK_OUTPUT", value_enum, default_value = "text")]
    pub output: CheckOutput,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "MYSQL_WEBHOOK_ADDR", default_value = "0.0.0.0:8443")]
    pub addr: SocketAddr,
    /// Serving certificate (PEM, with its chain); reloaded when the file changes.
    #[arg(long, env = "MYSQL_WEBHOOK_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key of the serving certificate (PEM); reloaded when the file changes.
    #[arg(long, env = "MYSQL_WEBHOOK_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Development mode: make a CA and a certificate for localhost and 127.0.0.1 (in certs/dev/).
    #[arg(long, env = "MYSQL_WEBHOOK_DEV")]
    pub dev: bool,
    /// Policy configuration (policies.yaml); without it the built-in policies run with defaults.
    #[arg(long, env = "MYSQL_WEBHOOK_POLICIES")]
    pub policies: Option<PathBuf>,
    /// Directory for precompiled policies, so a restart doesn't compile them again (created if missing).
    /// [default: $XDG_CACHE_HOME/mysql-webhook or $HOME/.cache/mysql-webhook; with neither, none]
    #[arg(long, env = "MYSQL_WEBHOOK_POLICY_CACHE")]
    pub policy_cache: Option<PathBuf>,
    /// Don't run the companion controller.
    #[arg(long, env = "MYSQL_WEBHOOK_NO_CONTROLLER")]
    pub no_controller: bool,
    /// How often the controller audits every managed StatefulSet against the policies (also
    /// at start and after every reload of the set): 30m, 1h, 1h30m…, from 1m to 168h; 0 turns
    /// the audit off.
    #[arg(long, env = "MYSQL_WEBHOOK_AUDIT_INTERVAL", value_name = "DURATION", default_value = "1h", value_parser = parse_audit_interval)]
    pub audit_interval: AuditInterval,
    /// Log format.
    #[arg(long, env = "MYSQL_WEBHOOK_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

/// `--audit-interval`: `None` when 0 turned the audit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditInterval(pub Option<std::time::Duration>);

fn parse_audit_interval(text: &str) -> Result<AuditInterval, String> {
    mysql_webhook_core::audit::parse_interval(text).map(AuditInterval)
}

impl ServeArgs {
    /// Where the serving certificate comes from: the files or `--dev`, exactly one of them.
    /// Checked here rather than with clap's `conflicts_with` and `required_unless_present`,
    /// which take `MYSQL_WEBHOOK_DEV=false` in the environment for `--dev` given.
    ///
    /// # Errors
    /// A usage error when both or neither are given.
    pub fn certificates(&self) -> Result<Certificates, clap::Error> {
        match (&self.tls_cert, &self.tls_key, self.dev) {
            (Some(cert), Some(key), false) => {
                Ok(Certificates::Files { cert: cert.clone(), key: key.clone() })
            }
            (None, None, true) => Ok(Certificates::Development),
            (_, _, true) => Err(Cli::command().error(
                ErrorKind::ArgumentConflict,
                "--dev makes its own certificate: give it without --tls-cert and --tls-key",
            )),
            _ => Err(Cli::command().error(
                ErrorKind::MissingRequiredArgument,
                "give --tls-cert and --tls-key, or --dev for a development certificate",
            )),
        }
    }
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Manifest file (multi-document YAML or JSON); `-` reads standard input.
    #[arg(short = 'f', long = "filename", env = "MYSQL_WEBHOOK_FILENAME")]
    pub file: PathBuf,
    /// Policy configuration (policies.yaml); without it the built-in policies run with defaults.
    #[arg(long, env = "MYSQL_WEBHOOK_POLICIES")]
    pub policies: Option<PathBuf>,
    /// Output format.
    #[arg(long, short = 'o', env = "MYSQL_WEBHOOK_OUTPUT", value_enum, default_value = "text")]
    pub output: CheckOutput,
    /// Labels of a namespace for the policies' namespaceSelectors, as the cluster would have them:
    /// NAMESPACE=KEY=VALUE[,KEY=VALUE…] (NAMESPACE= for none); repeat for more namespaces.
    /// Wins over a Namespace in the input.
    #[arg(long = "namespace-labels", value_name = "NAMESPACE=LABELS", value_parser = check::parse_namespace_labels)]
    pub namespace_labels: Vec<(String, mysql_webhook_core::scope::Labels)>,
    /// Directory for precompiled policies (created if missing).
    /// [default: $XDG_CACHE_HOME/mysql-webhook or $HOME/.cache/mysql-webhook; with neither, none]
    #[arg(long, env = "MYSQL_WEBHOOK_POLICY_CACHE")]
    pub policy_cache: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CheckOutput {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Name of the webhook's Service.
    #[arg(long, env = "MYSQL_WEBHOOK_SERVICE")]
    pub service: String,
    /// Namespace of the webhook's Service.
    #[arg(long, env = "MYSQL_WEBHOOK_NAMESPACE")]
    pub namespace: String,
    /// Directory to write ca.crt, tls.crt and tls.key into.
    #[arg(long, env = "MYSQL_WEBHOOK_CERTS_OUT")]
    pub out: PathBuf,
    /// Validity of the serving certificate in days (the CA gets twice as long).
    #[arg(long, env = "MYSQL_WEBHOOK_CERTS_DAYS", default_value_t = 365)]
    pub days: u32,
    /// An IP address the webhook is reached at, added to the certificate (repeat for more).
    #[arg(long = "ip", value_name = "ADDRESS")]
    pub ips: Vec<std::net::IpAddr>,
    /// Sign a new serving certificate with the CA already in --out (ca.crt, ca.key), keeping the
    /// caBundle; overwrites tls.crt and tls.key.
    #[arg(long, conflicts_with = "force")]
    pub renew: bool,
    /// Overwrite existing files (a new CA: the caBundle changes).
    #[arg(long)]
    pub force: bool,
}
