//! Where a server's configuration comes from: its defaults, then a TOML
//! file, then `LOCKSTEP_*` environment variables, then flags, each layer
//! overriding the one before. figment merges the layers and remembers
//! which one gave each value, which `lockstep config show` prints.
//!
//! A file is either flat (the keys of one process) or sectioned: a
//! `[coordinator]` and a `[shard]` table, each process reading its own.
//! `lockstep up --config FILE` hands one sectioned file to every process.
//! The environment layer reads only the keys the process has, so a
//! variable meant for the other process (`LOCKSTEP_VNODES` in a shard's
//! environment) is no error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::{Dict, Map};
use figment::{Figment, Metadata, Profile, Provider, Source};
use lockstep_coordinator::CoordinatorConfig;
use lockstep_shard::ShardConfig;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;

/// The prefix of every configuration variable.
pub const ENV_PREFIX: &str = "LOCKSTEP_";

/// A server configuration that can be layered.
pub trait Layered: Serialize + DeserializeOwned + Default {
    /// Its section in a sectioned file.
    const SECTION: &'static str;
    /// The server's own validation.
    fn checked(self) -> Result<Self, Error>;
}

impl Layered for CoordinatorConfig {
    const SECTION: &'static str = "coordinator";
    fn checked(self) -> Result<Self, Error> {
        Ok(self.validate()?)
    }
}

impl Layered for ShardConfig {
    const SECTION: &'static str = "shard";
    fn checked(self) -> Result<Self, Error> {
        Ok(self.validate()?)
    }
}

/// The sections a sectioned file may have.
const SECTIONS: [&str; 2] = [CoordinatorConfig::SECTION, ShardConfig::SECTION];

/// A configuration file, read and classified.
#[derive(Clone, Debug)]
pub struct ConfigFile {
    pub path: PathBuf,
    /// It has `[coordinator]` / `[shard]` tables rather than flat keys.
    pub sectioned: bool,
}

impl ConfigFile {
    /// Reads `path` and checks it is TOML of either shape; a sectioned
    /// file may hold nothing but its sections.
    pub fn read(path: &Path) -> Result<ConfigFile, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let table: toml::Table =
            toml::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        let sectioned = SECTIONS
            .iter()
            .any(|s| table.get(*s).is_some_and(toml::Value::is_table));
        if sectioned && let Some(key) = table.keys().find(|k| !SECTIONS.contains(&k.as_str())) {
            return Err(Error::Config(format!(
                "{}: top-level key {key:?} in a file with sections: every key goes under \
                 [coordinator] or [shard]",
                path.display()
            )));
        }
        Ok(ConfigFile {
            path: path.to_path_buf(),
            sectioned,
        })
    }
}

/// A layer of fixed values under a name of ours, so that a value's source
/// reads `default` or `--flag` rather than figment's `Serialized`.
struct Layer {
    metadata: Metadata,
    dict: Dict,
}

impl Layer {
    /// The layer of `value`'s fields; `None` ones (a flag not given) are
    /// left out, so they override nothing.
    fn new(name: &'static str, value: &impl Serialize) -> Result<Layer, Error> {
        let mut value = serde_json::to_value(value).map_err(|e| Error::Config(e.to_string()))?;
        if let serde_json::Value::Object(map) = &mut value {
            map.retain(|_, v| !v.is_null());
        }
        let dict = Serialized::defaults(value)
            .data()
            .map_err(|e| Error::Config(e.to_string()))?
            .remove(&Profile::Default)
            .unwrap_or_default();
        Ok(Layer {
            metadata: Metadata::named(name),
            dict,
        })
    }
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        self.metadata.clone()
    }
    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

const DEFAULT: &str = "default";
const FLAG: &str = "flag";

/// The keys `T` has, `None`-defaulted ones included.
fn keys<T: Layered>() -> Result<Vec<String>, Error> {
    match serde_json::to_value(T::default()) {
        Ok(serde_json::Value::Object(map)) => Ok(map.keys().cloned().collect()),
        _ => Err(Error::Config(format!(
            "the {} configuration is not a table",
            T::SECTION
        ))),
    }
}

/// A configuration with the source of each of its values.
#[derive(Debug, Serialize)]
pub struct Resolved<T> {
    pub config: T,
    /// key → `default`, `--flag-name`, `LOCKSTEP_KEY` or `FILE [section]`.
    pub sources: BTreeMap<String, String>,
}

/// `T`'s configuration from its defaults, `file`, the process's
/// environment and `flags` (a struct whose unset fields serialise to
/// nothing), validated.
pub fn resolve<T: Layered>(
    file: Option<&ConfigFile>,
    flags: &impl Serialize,
) -> Result<Resolved<T>, Error> {
    let keys = keys::<T>()?;
    let env_keys = keys.clone();
    let env = Env::prefixed(ENV_PREFIX).filter(move |k| env_keys.iter().any(|x| k == x.as_str()));
    let mut figment = Figment::from(Layer::new(DEFAULT, &T::default())?);
    if let Some(f) = file {
        let toml = Figment::from(Toml::file_exact(&f.path));
        figment = figment.merge(if f.sectioned {
            toml.focus(T::SECTION)
        } else {
            toml
        });
    }
    let figment = figment.merge(env).merge(Layer::new(FLAG, flags)?);
    let config: T = figment
        .extract()
        .map_err(|e| Error::Config(figment_message(e, file, T::SECTION)))?;
    let config = config.checked()?;
    let sources = keys
        .into_iter()
        .map(|key| {
            let source = figment.find_metadata(&key).map_or_else(
                || DEFAULT.to_string(),
                |m| describe(m, &key, file, T::SECTION),
            );
            (key, source)
        })
        .collect();
    Ok(Resolved { config, sources })
}

/// Where a value came from, in the words a user would type.
fn describe(m: &Metadata, key: &str, file: Option<&ConfigFile>, section: &str) -> String {
    match (&m.source, m.name.as_ref()) {
        (Some(Source::File(p)), _) if file.is_some_and(|f| f.sectioned) => {
            format!("{} [{section}]", p.display())
        }
        (Some(Source::File(p)), _) => p.display().to_string(),
        (_, FLAG) => format!("--{}", key.replace('_', "-")),
        (_, DEFAULT) => DEFAULT.to_string(),
        (_, name) if name.contains("environment") => {
            format!("{ENV_PREFIX}{}", key.to_ascii_uppercase())
        }
        (_, name) => name.to_string(),
    }
}

/// One line per problem, naming the key as the user wrote it: the file
/// and key, the variable, or the flag. figment's own text names its
/// internal profile (`default.vnodes`).
fn figment_message(err: figment::Error, file: Option<&ConfigFile>, section: &str) -> String {
    let problems: Vec<String> = err
        .into_iter()
        .map(|e| {
            let key = e.path.last().cloned().unwrap_or_default();
            let place = match &e.metadata {
                Some(m) if matches!(m.source, Some(Source::File(_))) => {
                    format!("{key} in {}", describe(m, &key, file, section))
                }
                Some(m) => describe(m, &key, file, section),
                None => key,
            };
            format!("{place}: {}", e.kind)
        })
        .collect();
    format!("{section} configuration: {}", problems.join("; "))
}

#[cfg(test)]
// figment::Jail's closures return figment's own (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;

    const SECTIONED: &str =
        "[coordinator]\nvnodes = 64\ndown_after_ms = 9000\n\n[shard]\nmax_scan_page = 77\n";

    #[test]
    fn each_layer_overrides_the_one_before_and_says_so() {
        Jail::expect_with(|jail| {
            jail.create_file("c.toml", SECTIONED)?;
            jail.set_env("LOCKSTEP_DOWN_AFTER_MS", 12_000);
            jail.set_env("LOCKSTEP_PROBE_TIMEOUT_MS", 300);
            let file = ConfigFile::read(Path::new("c.toml")).unwrap();
            assert!(file.sectioned);
            let flags = serde_json::json!({"probe_timeout_ms": 400, "listen": null});
            let r: Resolved<CoordinatorConfig> = resolve(Some(&file), &flags).unwrap();
            let c = &r.config;
            assert_eq!(
                (c.vnodes, c.down_after_ms, c.probe_timeout_ms),
                (64, 12_000, 400)
            );
            assert_eq!(r.sources["vnodes"], "c.toml [coordinator]");
            assert_eq!(r.sources["down_after_ms"], "LOCKSTEP_DOWN_AFTER_MS");
            assert_eq!(r.sources["probe_timeout_ms"], "--probe-timeout-ms");
            assert_eq!(
                r.sources["listen"], "default",
                "a flag not given is no layer"
            );
            assert_eq!(c.listen, lockstep_coordinator::config::DEFAULT_LISTEN);
            Ok(())
        });
    }

    #[test]
    fn one_sectioned_file_and_one_environment_serve_both_servers() {
        Jail::expect_with(|jail| {
            jail.create_file("c.toml", SECTIONED)?;
            // Meant for the coordinator: a shard that read it would refuse
            // `vnodes` as an unknown field.
            jail.set_env("LOCKSTEP_VNODES", 32);
            jail.set_env("LOCKSTEP_HOME", "/tmp/elsewhere");
            let file = ConfigFile::read(Path::new("c.toml")).unwrap();
            let none = serde_json::json!({});
            let c: Resolved<CoordinatorConfig> = resolve(Some(&file), &none).unwrap();
            let s: Resolved<ShardConfig> = resolve(Some(&file), &none).unwrap();
            assert_eq!(c.config.vnodes, 32);
            assert_eq!(s.config.max_scan_page, 77);
            assert_eq!(s.sources["max_scan_page"], "c.toml [shard]");
            assert!(!s.sources.contains_key("vnodes"));
            Ok(())
        });
    }

    #[test]
    fn a_flat_file_configures_one_server_and_unknown_keys_are_named() {
        Jail::expect_with(|jail| {
            jail.create_file("flat.toml", "vnodes = 64\n")?;
            let file = ConfigFile::read(Path::new("flat.toml")).unwrap();
            assert!(!file.sectioned);
            let none = serde_json::json!({});
            let c: Resolved<CoordinatorConfig> = resolve(Some(&file), &none).unwrap();
            assert_eq!(c.sources["vnodes"], "flat.toml");
            let e = resolve::<ShardConfig>(Some(&file), &none).unwrap_err();
            let e = e.to_string();
            assert!(
                e.contains("vnodes in flat.toml") && e.contains("unknown field"),
                "{e}"
            );
            Ok(())
        });
    }

    #[test]
    fn bad_values_name_their_source_in_one_line() {
        Jail::expect_with(|jail| {
            jail.create_file("bad.toml", "[coordinator]\nvnodes = \"many\"\n")?;
            jail.create_file("mixed.toml", "vnodes = 1\n[shard]\nweight = 2.0\n")?;
            let none = serde_json::json!({});
            let bad = ConfigFile::read(Path::new("bad.toml")).unwrap();
            let e = resolve::<CoordinatorConfig>(Some(&bad), &none).unwrap_err();
            assert!(
                e.to_string().contains("vnodes in bad.toml [coordinator]"),
                "{e}"
            );
            let e = ConfigFile::read(Path::new("mixed.toml")).unwrap_err();
            assert!(e.to_string().contains("top-level key \"vnodes\""), "{e}");
            jail.set_env("LOCKSTEP_WEIGHT", "heavy");
            let e = resolve::<ShardConfig>(None, &none).unwrap_err().to_string();
            assert!(e.contains("LOCKSTEP_WEIGHT") && !e.contains('\n'), "{e}");
            // The servers' own validation runs last, over every layer.
            let flags = serde_json::json!({"vnodes": 0});
            let e = resolve::<CoordinatorConfig>(None, &flags).unwrap_err();
            assert!(e.to_string().contains("vnodes must be in"), "{e}");
            let e = ConfigFile::read(Path::new("missing.toml")).unwrap_err();
            assert!(e.to_string().contains("missing.toml"), "{e}");
            Ok(())
        });
    }
}
