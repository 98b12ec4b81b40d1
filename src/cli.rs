//! The command line: commands and flags of DESIGN §1, each flag also readable from an
//! environment variable. Parsing only; `main` dispatches.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

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
    Serve,
    /// Expand manifests offline: annotated StatefulSets with their companions, everything else unchanged.
    Mutate {
        /// Manifest file (multi-document YAML or JSON); `-` reads standard input.
        #[arg(short = 'f', long = "filename", env = "MYSQL_WEBHOOK_FILENAME")]
        file: PathBuf,
        /// Also emit a credentials Secret with generated passwords (off: secrets don't belong in Git).
        #[arg(long, env = "MYSQL_WEBHOOK_WITH_SECRET")]
        with_secret: bool,
    },
    /// Run the policies offline on the expanded manifests (CI use).
    Check,
    /// Make a CA and a serving certificate for the webhook's Service.
    Certs,
}
