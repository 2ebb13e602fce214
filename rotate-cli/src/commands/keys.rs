//! `rekey keys`: the local keystore.

use std::process::ExitCode;

use crate::cli::KeysCommand;
use crate::exit::{CliError, keystore_error};
use crate::keys::Keys;
use crate::ui::outln;

pub(crate) fn run(keys: &Keys, command: KeysCommand) -> Result<ExitCode, CliError> {
    let store = keys.keystore();
    match command {
        KeysCommand::Create { name } => {
            let info = store.create_key(&name).map_err(keystore_error)?;
            outln!("created local key {} (version {}) in {}", info.name, info.latest_version, store.dir().display())?;
            outln!("use it as --key local:{}", info.name)?;
        }
        KeysCommand::Rotate { name } => {
            let info = store.rotate_key(&name).map_err(keystore_error)?;
            outln!(
                "local key {} is now at version {}; data under older versions still decrypts",
                info.name,
                info.latest_version
            )?;
        }
        KeysCommand::List { json } => {
            let list = store.list().map_err(keystore_error)?;
            if json {
                let items: Vec<_> = list
                    .iter()
                    .map(|k| serde_json::json!({"name": k.name, "key_ref": format!("local:{}", k.name), "latest_version": k.latest_version, "created": k.created}))
                    .collect();
                outln!("{}", serde_json::Value::Array(items))?;
            } else if list.is_empty() {
                outln!("no local keys in {}; create one with `rekey keys create NAME`", store.dir().display())?;
            } else {
                outln!("{:<24} {:>8}  KEYREF", "NAME", "VERSIONS")?;
                for k in list {
                    outln!("{:<24} {:>8}  local:{}", k.name, k.latest_version, k.name)?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
