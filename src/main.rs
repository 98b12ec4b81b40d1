//! The `mysql-webhook` binary: parses the command line and hands over to the library.

use std::io::{Read, Write};
use std::process::ExitCode;

use clap::Parser;
use mysql_webhook::cli::{Cli, Command};
use mysql_webhook::companions::Credentials;
use mysql_webhook::manifests;

/// Exit code for bad input and for commands that can't run.
const EXIT_BAD_INPUT: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Mutate { file, with_secret } => run_mutate(&file, with_secret),
        Command::Serve | Command::Check | Command::Certs => {
            eprintln!("error: this command is not built yet; `mutate` is available");
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

fn read_input(file: &std::path::Path) -> std::io::Result<String> {
    if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        Ok(text)
    } else {
        std::fs::read_to_string(file)
    }
}
