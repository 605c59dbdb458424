//! The per-user configuration file: named contexts (master URL and API
//! token), like kubectl's, at `$NXMESH_CONFIG` or
//! `~/.config/nxmesh/config.yaml`, written with mode 0600.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use nxmesh_client::{Auth, Client, Config};
use serde::{Deserialize, Serialize};

/// The whole file.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfigFile {
    /// The context used when `--context` is not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) current_context: Option<String>,
    /// Contexts by name.
    #[serde(default)]
    pub(crate) contexts: BTreeMap<String, Context>,
}

/// One master and the credentials for it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Context {
    /// The master's base URL.
    pub(crate) url: String,
    /// Who logged in.
    pub(crate) email: String,
    /// The API token `login` created.
    pub(crate) token: String,
}

pub(crate) fn path() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("NXMESH_CONFIG") {
        return Ok(PathBuf::from(p));
    }
    let base = match std::env::var_os("XDG_CONFIG_HOME") {
        Some(x) => PathBuf::from(x),
        None => {
            PathBuf::from(std::env::var_os("HOME").context("HOME is not set; set NXMESH_CONFIG")?)
                .join(".config")
        }
    };
    Ok(base.join("nxmesh").join("config.yaml"))
}

impl ConfigFile {
    pub(crate) fn load() -> anyhow::Result<ConfigFile> {
        let p = path()?;
        match std::fs::read_to_string(&p) {
            Ok(text) => {
                serde_yaml::from_str(&text).with_context(|| format!("reading {}", p.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ConfigFile::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
        }
    }

    /// Writes the file atomically, readable by its owner only.
    pub(crate) fn save(&self) -> anyhow::Result<()> {
        let p = path()?;
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let text = serde_yaml::to_string(self)?;
        let tmp = p.with_extension("yaml.tmp");
        {
            use std::io::Write as _;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt as _;
                options.mode(0o600);
            }
            let mut f = options
                .open(&tmp)
                .with_context(|| format!("writing {}", tmp.display()))?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
        }
        std::fs::rename(&tmp, &p).with_context(|| format!("writing {}", p.display()))?;
        Ok(())
    }

    /// The named (or current) context.
    pub(crate) fn context(&self, name: Option<&str>) -> anyhow::Result<&Context> {
        let Some(name) = name.or(self.current_context.as_deref()) else {
            bail!("not logged in: run `nxmesh login --url URL --email EMAIL`");
        };
        let Some(ctx) = self.contexts.get(name) else {
            bail!("no context {name:?} in {}", path()?.display());
        };
        Ok(ctx)
    }

    /// The client of the named (or current) context.
    pub(crate) fn client(&self, name: Option<&str>) -> anyhow::Result<Client> {
        let ctx = self.context(name)?;
        Ok(Client::new(Config::new(
            &ctx.url,
            Auth::Token(ctx.token.clone()),
        ))?)
    }
}
