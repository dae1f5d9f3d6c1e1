//! `--config FILE` (or `KEYREG_CONFIG`): a TOML file of the flags a
//! deployment always passes, named as on the command line (`data =
//! "/var/lib/keyreg"`, `listen`, `nats`, `stream-prefix`, …). A flag on the
//! command line wins, then the environment, then the file: each key of the
//! file becomes the environment variable its flag already reads
//! (`KEYREG_DATA`) unless that variable is set, so there is one precedence
//! rule, clap's, and no second parser of flags. A key that no flag reads
//! from the environment is an error that lists the keys there are.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{Context, bail};

const ENV: &str = "KEYREG_CONFIG";

/// The file `--config` names (before any `--`), else `KEYREG_CONFIG`.
fn named(args: &[OsString]) -> Option<PathBuf> {
    let mut args = args.iter().map(|a| a.to_str().unwrap_or(""));
    while let Some(arg) = args.next() {
        match arg {
            "--" => break,
            "--config" => return args.next().map(PathBuf::from),
            _ => {
                if let Some(path) = arg.strip_prefix("--config=") {
                    return Some(path.into());
                }
            }
        }
    }
    std::env::var_os(ENV).map(PathBuf::from)
}

/// Every environment variable some flag of some command reads.
fn flag_variables(command: &clap::Command, into: &mut BTreeSet<String>) {
    for arg in command.get_arguments() {
        if let Some(env) = arg.get_env().and_then(|e| e.to_str()).filter(|e| *e != ENV) {
            into.insert(env.to_owned());
        }
    }
    command.get_subcommands().for_each(|c| flag_variables(c, into));
}

/// The variables to set from the config file named on `args`, if any:
/// those not set already.
fn from_file(args: &[OsString], cli: &clap::Command) -> anyhow::Result<Vec<(String, String)>> {
    let Some(path) = named(args) else { return Ok(vec![]) };
    let shown = path.display();
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read the config file {shown}"))?;
    let table: toml::Table = text.parse().with_context(|| format!("the config file {shown} is not valid TOML"))?;
    let mut known = BTreeSet::new();
    flag_variables(cli, &mut known);
    let mut set = vec![];
    for (key, value) in table {
        let variable = format!("KEYREG_{}", key.to_ascii_uppercase().replace('-', "_"));
        if !known.contains(&variable) {
            let keys: Vec<String> =
                known.iter().map(|v| v["KEYREG_".len()..].to_ascii_lowercase().replace('_', "-")).collect();
            bail!("the config file {shown}: no flag is called --{key}; a config file may set {}", keys.join(", "));
        }
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            // Several URLs: `nats = ["nats://a:4222", "nats://b:4222"]`.
            toml::Value::Array(items) if items.iter().all(toml::Value::is_str) => {
                items.iter().filter_map(toml::Value::as_str).collect::<Vec<_>>().join(",")
            }
            _ => bail!("the config file {shown}: {key} must be a string, a number, true/false or a list of strings"),
        };
        if std::env::var_os(&variable).is_none() {
            set.push((variable, value));
        }
    }
    Ok(set)
}

/// Puts the config file's values where their flags read them. Called first
/// thing in `main`, while the process has one thread.
#[allow(unsafe_code)]
pub fn load(args: &[OsString], cli: &clap::Command) -> anyhow::Result<()> {
    for (variable, value) in from_file(args, cli)? {
        // SAFETY: no other thread exists yet to read the environment while
        // it changes (main calls this before the runtime or any thread).
        unsafe { std::env::set_var(variable, value) };
    }
    Ok(())
}
