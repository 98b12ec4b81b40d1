//! `mysql-webhook backups list`: what a backup target holds, for people and scripts. The target
//! is read with rclone (the client the backup Jobs use), so what is listed is what a restore
//! would see: a backup is complete when its manifest exists (the manifest is written last),
//! and verified when, besides, its data has the size the manifest records and the Job proved
//! it restores (`prepared`). An interrupted backup is listed as incomplete, never as good.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;
use serde_json::Value;

use mysql_webhook_core::consts::BACKUP_SECRET_KEYS;
use mysql_webhook_core::plan::{Target, backup_id_time};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("--target {0:?}: a claim can't be read from here; mount it (or copy it) and give its directory")]
    ClaimTarget(String),
    #[error("--target {target:?}: {reason}")]
    BadTarget { target: String, reason: String },
    #[error(
        "--target {0:?} is an s3:// target: give the Secret with its endpoint and keys with --secret-file"
    )]
    NoSecret(String),
    #[error("--secret-file {path}: {reason}")]
    BadSecret { path: PathBuf, reason: String },
    #[error("rclone (the client the backup Jobs use) can't be run: {0}; install it (apt-get install rclone)")]
    NoRclone(std::io::Error),
    #[error("reading {target}: rclone {args} failed: {stderr}")]
    Rclone { target: String, args: String, stderr: String },
}

/// One backup of a target.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Backup {
    pub id: String,
    /// The manifest exists: the backup was published.
    pub complete: bool,
    /// Complete, its data of the recorded size, and proven to restore by the Job.
    pub verified: bool,
    /// Why it is not verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// The manifest's fields (flavor, server_version, gtid, binlog_file, binlog_position,
    /// started, finished, size, sha256, member…), when there is one.
    #[serde(flatten)]
    pub manifest: BTreeMap<String, Value>,
}

/// Every backup in `target` (`s3://bucket/prefix` or a directory), oldest first.
pub fn list(target: &str, secret_file: Option<&Path>) -> Result<Vec<Backup>, Error> {
    let rclone = Rclone::new(target, secret_file)?;
    let entries = rclone.json(&["lsjson", "-R", "--files-only"])?;
    let mut sizes: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for entry in entries.as_array().into_iter().flatten() {
        let path = entry["Path"].as_str().unwrap_or_default();
        let Some((id, file)) = path.split_once('/') else { continue };
        if backup_id_time(id).is_some() {
            let size = entry["Size"].as_u64().unwrap_or_default();
            sizes.entry(id.to_owned()).or_default().insert(file.to_owned(), size);
        }
    }
    let mut backups = Vec::new();
    for (id, files) in sizes {
        if !files.contains_key("manifest.json") {
            let problem = "incomplete: no manifest (interrupted, or still running)".to_owned();
            backups.push(Backup {
                id,
                complete: false,
                verified: false,
                problem: Some(problem),
                manifest: BTreeMap::new(),
            });
            continue;
        }
        let text = rclone.output(&["cat", &format!("{{remote}}/{id}/manifest.json")])?;
        let manifest: BTreeMap<String, Value> = match serde_json::from_str(&text) {
            Ok(manifest) => manifest,
            Err(e) => {
                let problem = Some(format!("the manifest is not JSON: {e}"));
                backups.push(Backup {
                    id,
                    complete: true,
                    verified: false,
                    problem,
                    manifest: BTreeMap::new(),
                });
                continue;
            }
        };
        let recorded = manifest.get("size").and_then(Value::as_u64);
        let problem = match files.get("backup.xbstream.gz") {
            None => Some("its data (backup.xbstream.gz) is missing".to_owned()),
            Some(size) if Some(*size) != recorded => Some(format!(
                "its data has {size} bytes, the manifest records {}",
                recorded.unwrap_or_default()
            )),
            Some(_) if manifest.get("prepared") != Some(&Value::Bool(true)) => {
                Some("the Job did not prove it restores".to_owned())
            }
            Some(_) => None,
        };
        backups.push(Backup { id, complete: true, verified: problem.is_none(), problem, manifest });
    }
    Ok(backups)
}

/// The table `backups list` prints for people.
pub fn text(backups: &[Backup]) -> String {
    let field = |b: &Backup, key: &str| b.manifest.get(key).and_then(Value::as_str).unwrap_or("-").to_owned();
    let mut rows = vec![["ID", "FINISHED", "SIZE", "POSITION", "VERIFIED"].map(String::from)];
    for backup in backups {
        let position = match field(backup, "gtid").as_str() {
            "-" | "" => format!("{}:{}", field(backup, "binlog_file"), field(backup, "binlog_position")),
            gtid => format!("gtid {gtid}"),
        };
        let size = backup.manifest.get("size").and_then(Value::as_u64).map(human_size).unwrap_or("-".into());
        let verified = match &backup.problem {
            None => "yes".to_owned(),
            Some(problem) => format!("no: {problem}"),
        };
        rows.push([backup.id.clone(), field(backup, "finished"), size, position, verified]);
    }
    let widths: Vec<usize> = (0..5).map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> =
            row.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn human_size(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1024.0 && unit < units.len() - 1 {
        size /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{size:.1} {}", units[unit]) }
}

/// rclone reaching one target: its remote path and, for S3, the environment that configures it.
struct Rclone {
    target: String,
    remote: String,
    env: Vec<(String, String)>,
}

impl Rclone {
    fn new(target: &str, secret_file: Option<&Path>) -> Result<Rclone, Error> {
        if target.starts_with("pvc://") {
            return Err(Error::ClaimTarget(target.into()));
        }
        if !target.starts_with("s3://") {
            return Ok(Rclone {
                target: target.into(),
                remote: target.trim_end_matches('/').into(),
                env: Vec::new(),
            });
        }
        let parsed = Target::parse("--target", target)
            .map_err(|e| Error::BadTarget { target: target.into(), reason: e.to_string() })?;
        let Target::S3 { bucket, prefix } = parsed else { unreachable!("an s3:// target") };
        let file = secret_file.ok_or_else(|| Error::NoSecret(target.into()))?;
        let secret = read_secret(file)?;
        let mut env = vec![
            ("RCLONE_CONFIG_TARGET_TYPE".to_owned(), "s3".to_owned()),
            ("RCLONE_CONFIG_TARGET_PROVIDER".to_owned(), "Other".to_owned()),
        ];
        for (key, variable) in
            BACKUP_SECRET_KEYS.iter().zip(["ENDPOINT", "ACCESS_KEY_ID", "SECRET_ACCESS_KEY", "REGION"])
        {
            match secret.get(*key) {
                Some(value) => env.push((format!("RCLONE_CONFIG_TARGET_{variable}"), value.clone())),
                None if *key == "region" => {}
                None => {
                    return Err(Error::BadSecret {
                        path: file.into(),
                        reason: format!("it has no key {key}"),
                    });
                }
            }
        }
        let remote =
            if prefix.is_empty() { format!("target:{bucket}") } else { format!("target:{bucket}/{prefix}") };
        Ok(Rclone { target: target.into(), remote, env })
    }

    /// Runs rclone with `args` (`{remote}` in an argument stands for the target), on the target
    /// itself when no argument names it.
    fn output(&self, args: &[&str]) -> Result<String, Error> {
        let mut args: Vec<String> = args.iter().map(|a| a.replace("{remote}", &self.remote)).collect();
        if !args.iter().any(|a| a.starts_with(&self.remote)) {
            args.push(self.remote.clone());
        }
        let output = Command::new("rclone")
            .args(&args)
            .envs(self.env.iter().cloned())
            .output()
            .map_err(Error::NoRclone)?;
        if !output.status.success() {
            return Err(Error::Rclone {
                target: self.target.clone(),
                args: args.join(" "),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn json(&self, args: &[&str]) -> Result<Value, Error> {
        let text = self.output(args)?;
        serde_json::from_str(&text).map_err(|e| Error::Rclone {
            target: self.target.clone(),
            args: args.join(" "),
            stderr: format!("not JSON: {e}"),
        })
    }
}

/// The keys of a Secret manifest (`kubectl get secret … -o yaml`): `data` (base64) and
/// `stringData`.
fn read_secret(path: &Path) -> Result<BTreeMap<String, String>, Error> {
    use base64::Engine;
    let bad = |reason: String| Error::BadSecret { path: path.into(), reason };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let documents = mysql_webhook_core::manifests::read_documents(&text).map_err(|e| bad(e.to_string()))?;
    let secret =
        documents.iter().find(|d| d["kind"] == "Secret").ok_or_else(|| bad("it holds no Secret".into()))?;
    let mut keys = BTreeMap::new();
    for (key, value) in secret["data"].as_object().into_iter().flatten() {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(value.as_str().unwrap_or_default())
            .map_err(|e| bad(format!("data.{key} is not base64: {e}")))?;
        keys.insert(
            key.clone(),
            String::from_utf8(decoded).map_err(|_| bad(format!("data.{key} is not UTF-8")))?,
        );
    }
    for (key, value) in secret["stringData"].as_object().into_iter().flatten() {
        keys.insert(key.clone(), value.as_str().unwrap_or_default().to_owned());
    }
    Ok(keys)
}
