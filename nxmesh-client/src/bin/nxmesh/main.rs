//! `nxmesh`, the NxMesh command line. Subcommands are grouped by noun
//! (`nxmesh config ...`, `nxmesh agents ...`); each larger group lives in
//! its own module.

// A command-line tool talks to its user on stdout and stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod access;
mod apply;
mod config;
mod context;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{CommandFactory as _, Parser, Subcommand, ValueEnum};
use futures_util::{StreamExt as _, TryStreamExt as _};
use nxmesh_client::{Auth, Client, Config, ListParams};
use nxmesh_core::event::{EventFilter, Subscription};
use nxmesh_core::model::{CreateApiToken, CreateOrganization, CreateWorkspace, Scope};
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::context::{ConfigFile, Context};
use crate::output::{Format, print_items, print_one};

/// NxMesh command line.
#[derive(Debug, Parser)]
#[command(name = "nxmesh", version, about)]
struct Cli {
    /// The context of the configuration file to use (default: the current).
    #[arg(long, global = true, env = "NXMESH_CONTEXT")]
    context: Option<String>,
    /// Output format.
    #[arg(short, long, global = true, value_enum, default_value_t = Format::Table)]
    output: Format,
    #[command(subcommand)]
    command: Command,
}

/// The resource kinds of `get`, `list`, `create`, `update` and `delete`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Kind {
    /// Organizations.
    #[value(alias = "organization", alias = "org", alias = "orgs")]
    Organizations,
    /// Workspaces (list and create need `--org`).
    #[value(alias = "workspace", alias = "ws")]
    Workspaces,
    /// Agents (list needs `--workspace`; they are created by registering).
    #[value(alias = "agent")]
    Agents,
    /// Virtual hosts (list and create need `--workspace`).
    #[value(alias = "virtual-host", alias = "vhost", alias = "vhosts")]
    VirtualHosts,
    /// Upstreams (list and create need `--workspace`).
    #[value(alias = "upstream")]
    Upstreams,
    /// Certificates (list and create need `--workspace`).
    #[value(alias = "certificate", alias = "cert", alias = "certs")]
    Certificates,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Log in to a master and store the context (an API token, never the
    /// password) in the configuration file.
    Login {
        /// The master's URL.
        #[arg(long)]
        url: String,
        /// The user's email.
        #[arg(long)]
        email: String,
        /// The password (prefer the environment variable).
        #[arg(long, env = "NXMESH_PASSWORD", hide_env_values = true)]
        password: String,
        /// The context's name (default: `default`); it becomes current.
        #[arg(long = "name", default_value = "default")]
        name: String,
    },
    /// List resources.
    #[command(alias = "ls")]
    List {
        /// What to list.
        kind: Kind,
        /// The organization (workspaces).
        #[arg(long)]
        org: Option<Uuid>,
        /// The workspace (agents, virtual hosts, upstreams, certificates).
        #[arg(long, short = 'w')]
        workspace: Option<Uuid>,
    },
    /// Show one resource.
    Get {
        /// What to show.
        kind: Kind,
        /// Its id.
        id: Uuid,
    },
    /// Create a resource from flags or from a YAML/JSON file of its create
    /// request.
    Create {
        /// What to create.
        kind: Kind,
        /// The organization (workspaces).
        #[arg(long)]
        org: Option<Uuid>,
        /// The workspace (virtual hosts, upstreams, certificates).
        #[arg(long, short = 'w')]
        workspace: Option<Uuid>,
        /// The request body (YAML or JSON).
        #[arg(long, short = 'f')]
        file: Option<PathBuf>,
        /// Name (organizations, workspaces without a file).
        #[arg(long)]
        name: Option<String>,
        /// Slug (organizations, workspaces without a file).
        #[arg(long)]
        slug: Option<String>,
    },
    /// Change a resource with a YAML/JSON file of its update request
    /// (absent fields are left unchanged).
    Update {
        /// What to change.
        kind: Kind,
        /// Its id.
        id: Uuid,
        /// The request body (YAML or JSON).
        #[arg(long, short = 'f')]
        file: PathBuf,
    },
    /// Delete a resource.
    Delete {
        /// What to delete.
        kind: Kind,
        /// Its id.
        id: Uuid,
    },
    /// Make the master match a declarative YAML file of organizations,
    /// workspaces, upstreams, certificates and virtual hosts (matched by
    /// slug, name or domain).
    Apply {
        /// The file.
        #[arg(long, short = 'f')]
        file: PathBuf,
        /// Print the plan as a diff and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print events from the WebSocket feed.
    Events {
        /// Keep printing until interrupted (otherwise stop after the first).
        #[arg(long)]
        follow: bool,
        /// Event type patterns, for example `agent.*` (default: all).
        #[arg(long = "type", short = 't')]
        types: Vec<String>,
        /// Only events of this workspace.
        #[arg(long, short = 'w')]
        workspace: Option<Uuid>,
    },
    /// Agent operations.
    #[command(subcommand)]
    Agents(AgentsCommand),
    /// Organization members.
    #[command(subcommand, alias = "member")]
    Members(access::MembersCommand),
    /// User accounts.
    #[command(subcommand, alias = "user")]
    Users(access::UsersCommand),
    /// The logged-in user's API tokens.
    #[command(subcommand, alias = "token")]
    Tokens(access::TokensCommand),
    /// An organization's audit log, newest first.
    Audit {
        /// The organization's id.
        org: Uuid,
    },
    /// Configuration rollout.
    #[command(subcommand)]
    Rollout(RolloutCommand),
    /// Print a shell completion script.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Work with nginx configuration files.
    #[command(subcommand)]
    Config(config::ConfigCommand),
}

#[derive(Debug, Subcommand)]
enum AgentsCommand {
    /// Reload nginx on a connected agent.
    Reload {
        /// The agent's id.
        id: Uuid,
    },
}

#[derive(Debug, Subcommand)]
enum RolloutCommand {
    /// Desired and applied configuration versions of a workspace's agents.
    Status {
        /// The workspace's id.
        workspace: Uuid,
        /// Wait until every agent has applied its desired version.
        #[arg(long)]
        wait: bool,
        /// Give up waiting after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Config(cmd) => config::run(cmd),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "nxmesh", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        command => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the runtime")
            .and_then(|rt| rt.block_on(run(cli.context.as_deref(), cli.output, command))),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            report(&e);
            ExitCode::FAILURE
        }
    }
}

/// One clear line, then the field details of a validation error.
fn report(e: &anyhow::Error) {
    match e.downcast_ref::<nxmesh_client::Error>() {
        Some(nxmesh_client::Error::Api {
            message,
            code,
            details,
            request_id,
            ..
        }) => {
            eprintln!("nxmesh: {message} ({code}, request {request_id})");
            for d in details {
                eprintln!("  {}: {}", d.field, d.message);
            }
        }
        _ => eprintln!("nxmesh: {e:#}"),
    }
}

fn read_body<T: DeserializeOwned>(file: &std::path::Path) -> anyhow::Result<T> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    serde_yaml::from_str(&text).with_context(|| format!("in {}", file.display()))
}

fn need(id: Option<Uuid>, flag: &str, kind: Kind) -> anyhow::Result<Uuid> {
    id.with_context(|| format!("{kind:?} need {flag} ID").to_lowercase())
}

async fn run(context: Option<&str>, format: Format, command: Command) -> anyhow::Result<ExitCode> {
    if let Command::Login {
        url,
        email,
        password,
        name,
    } = command
    {
        return login(url, email, password, name).await;
    }
    let file = ConfigFile::load()?;
    let client = file.client(context)?;
    match command {
        Command::Members(cmd) => access::members(&client, format, cmd).await?,
        Command::Users(cmd) => access::users(&client, format, cmd).await?,
        Command::Tokens(cmd) => access::tokens(&client, &file, context, format, cmd).await?,
        Command::Audit { org } => access::audit(&client, format, org).await?,
        Command::List {
            kind,
            org,
            workspace,
        } => list(&client, format, kind, org, workspace).await?,
        Command::Get { kind, id } => get(&client, format, kind, id).await?,
        Command::Create {
            kind,
            org,
            workspace,
            file,
            name,
            slug,
        } => {
            let named = || -> anyhow::Result<(String, String)> {
                match (&name, &slug) {
                    (Some(n), Some(s)) => Ok((n.clone(), s.clone())),
                    _ => bail!("give --name and --slug, or -f FILE"),
                }
            };
            match (kind, file) {
                (Kind::Organizations, None) => {
                    let (name, slug) = named()?;
                    let o = client
                        .organizations()
                        .create(&CreateOrganization { name, slug })
                        .await?;
                    print_one(format, kind_columns(kind), &o)?;
                }
                (Kind::Workspaces, None) => {
                    let (name, slug) = named()?;
                    let w = client
                        .workspaces(need(org, "--org", kind)?)
                        .create(&CreateWorkspace { name, slug })
                        .await?;
                    print_one(format, kind_columns(kind), &w)?;
                }
                (_, None) => bail!("give -f FILE with the create request"),
                (Kind::Organizations, Some(f)) => {
                    let o = client.organizations().create(&read_body(&f)?).await?;
                    print_one(format, kind_columns(kind), &o)?;
                }
                (Kind::Workspaces, Some(f)) => {
                    let w = client
                        .workspaces(need(org, "--org", kind)?)
                        .create(&read_body(&f)?)
                        .await?;
                    print_one(format, kind_columns(kind), &w)?;
                }
                (Kind::Agents, Some(f)) => {
                    let t = client
                        .agents(need(workspace, "--workspace", kind)?)
                        .create_registration_token(&read_body(&f)?)
                        .await?;
                    println!(
                        "agent {} registration token (shown once): {}",
                        t.agent_id, t.token
                    );
                }
                (Kind::VirtualHosts, Some(f)) => {
                    let v = client
                        .virtual_hosts(need(workspace, "--workspace", kind)?)
                        .create(&read_body(&f)?)
                        .await?;
                    print_one(format, kind_columns(kind), &v)?;
                }
                (Kind::Upstreams, Some(f)) => {
                    let u = client
                        .upstreams(need(workspace, "--workspace", kind)?)
                        .create(&read_body(&f)?)
                        .await?;
                    print_one(format, kind_columns(kind), &u)?;
                }
                (Kind::Certificates, Some(f)) => {
                    let c = client
                        .certificates(need(workspace, "--workspace", kind)?)
                        .create(&read_body(&f)?)
                        .await?;
                    print_one(format, kind_columns(kind), &c)?;
                }
            }
        }
        Command::Update { kind, id, file } => {
            let nil = Uuid::nil();
            match kind {
                Kind::Organizations => print_one(
                    format,
                    kind_columns(kind),
                    &client
                        .organizations()
                        .update(id, &read_body(&file)?)
                        .await?,
                )?,
                Kind::Workspaces => print_one(
                    format,
                    kind_columns(kind),
                    &client
                        .workspaces(nil)
                        .update(id, &read_body(&file)?)
                        .await?,
                )?,
                Kind::Agents => print_one(
                    format,
                    kind_columns(kind),
                    &client.agents(nil).update(id, &read_body(&file)?).await?,
                )?,
                Kind::VirtualHosts => print_one(
                    format,
                    kind_columns(kind),
                    &client
                        .virtual_hosts(nil)
                        .update(id, &read_body(&file)?)
                        .await?,
                )?,
                Kind::Upstreams => print_one(
                    format,
                    kind_columns(kind),
                    &client.upstreams(nil).update(id, &read_body(&file)?).await?,
                )?,
                Kind::Certificates => {
                    bail!("certificates cannot be changed: delete and request a new one")
                }
            }
        }
        Command::Delete { kind, id } => {
            // Item paths do not involve the parent, so any parent will do.
            let nil = Uuid::nil();
            match kind {
                Kind::Organizations => client.organizations().delete(id).await?,
                Kind::Workspaces => client.workspaces(nil).delete(id).await?,
                Kind::Agents => client.agents(nil).delete(id).await?,
                Kind::VirtualHosts => client.virtual_hosts(nil).delete(id).await?,
                Kind::Upstreams => client.upstreams(nil).delete(id).await?,
                Kind::Certificates => client.certificates(nil).delete(id).await?,
            }
            println!("deleted {id}");
        }
        Command::Apply { file, dry_run } => return apply::run(&client, &file, dry_run).await,
        Command::Events {
            follow,
            types,
            workspace,
        } => {
            let events = if types.is_empty() {
                vec!["*".to_owned()]
            } else {
                types
            };
            let patterns = events.join(", ");
            let mut stream = client
                .events(Subscription {
                    events,
                    filter: workspace.map(|w| EventFilter {
                        workspace_id: Some(w),
                    }),
                })
                .await?;
            // On stderr, so scripts reading stdout see events only.
            eprintln!("watching events: {patterns}");
            while let Some(event) = stream.next().await {
                let event = event?;
                match format {
                    Format::Table => {
                        let data = serde_json::to_value(&event.payload)?;
                        println!(
                            "{} {} {}",
                            event.timestamp.to_rfc3339(),
                            event.event_type(),
                            data["data"]
                        );
                    }
                    _ => print_one(format, &[], &event)?,
                }
                use std::io::Write as _;
                std::io::stdout().flush()?;
                if !follow {
                    break;
                }
            }
        }
        Command::Agents(AgentsCommand::Reload { id }) => {
            let r = client.agents(Uuid::nil()).reload(id).await?;
            match format {
                Format::Table => println!(
                    "{}: {}",
                    if r.success { "reloaded" } else { "failed" },
                    r.message
                ),
                _ => print_one(format, &[], &r)?,
            }
            if !r.success {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Rollout(RolloutCommand::Status {
            workspace,
            wait,
            timeout,
        }) => {
            let deadline = std::time::Instant::now() + Duration::from_secs(timeout);
            loop {
                let status = client.rollout().status(workspace).await?;
                let s = status.summary;
                if !wait || s.pending == 0 {
                    match format {
                        Format::Table => {
                            println!(
                                "{} agents: {} in sync, {} pending, {} failed",
                                s.total, s.in_sync, s.pending, s.failed
                            );
                            for a in &status.agents {
                                println!(
                                    "  {}  desired {}  applied {}{}",
                                    a.agent_id,
                                    a.desired_version,
                                    a.applied_version,
                                    a.last_error
                                        .as_deref()
                                        .map(|e| format!("  error: {e}"))
                                        .unwrap_or_default()
                                );
                            }
                        }
                        _ => print_one(format, &[], &status)?,
                    }
                    return Ok(if s.failed > 0 {
                        ExitCode::FAILURE
                    } else {
                        ExitCode::SUCCESS
                    });
                }
                eprint!(
                    "\r[{}{}] {}/{} in sync",
                    "#".repeat(bar(s.in_sync, s.total)),
                    ".".repeat(20 - bar(s.in_sync, s.total)),
                    s.in_sync,
                    s.total
                );
                if std::time::Instant::now() >= deadline {
                    eprintln!();
                    bail!(
                        "rollout not finished after {timeout} s: {} agents pending",
                        s.pending
                    );
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        Command::Login { .. } | Command::Completions { .. } | Command::Config(_) => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// Width of the filled part of a 20-character progress bar.
fn bar(done: u64, total: u64) -> usize {
    if total == 0 {
        return 20;
    }
    usize::try_from((done.min(total) * 20) / total).unwrap_or(20)
}

async fn login(
    url: String,
    email: String,
    password: String,
    name: String,
) -> anyhow::Result<ExitCode> {
    let session = Client::new(Config::new(
        &url,
        Auth::Login {
            email: email.clone(),
            password,
        },
    ))?;
    session.login().await?;
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "cli".into());
    let token = session
        .api_tokens()
        .create(&CreateApiToken {
            name: format!("nxmesh-cli-{name}-{host}")
                .chars()
                .take(64)
                .collect(),
            scopes: vec![Scope::Read, Scope::Write],
            expires_in_days: None,
        })
        .await?;
    // The session served only to make the token.
    session.logout().await?;
    let mut file = ConfigFile::load()?;
    file.contexts.insert(
        name.clone(),
        Context {
            url,
            email: email.clone(),
            token: token.token,
        },
    );
    file.current_context = Some(name.clone());
    file.save()?;
    println!(
        "logged in as {email}; context {name:?} saved to {}",
        context::path()?.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn kind_columns(kind: Kind) -> &'static [(&'static str, &'static str)] {
    match kind {
        Kind::Organizations => &[("ID", "id"), ("SLUG", "slug"), ("NAME", "name")],
        Kind::Workspaces => &[
            ("ID", "id"),
            ("SLUG", "slug"),
            ("NAME", "name"),
            ("ORGANIZATION", "organization_id"),
        ],
        Kind::Agents => &[
            ("ID", "id"),
            ("NAME", "name"),
            ("STATE", "state"),
            ("HOSTNAME", "hostname"),
        ],
        Kind::VirtualHosts => &[
            ("ID", "id"),
            ("NAME", "name"),
            ("SERVER NAME", "server_name"),
            ("PORT", "listen_port"),
        ],
        Kind::Upstreams => &[("ID", "id"), ("NAME", "name"), ("ALGORITHM", "algorithm")],
        Kind::Certificates => &[
            ("ID", "id"),
            ("DOMAIN", "domain"),
            ("PROVIDER", "provider"),
            ("STATUS", "status"),
        ],
    }
}

async fn collect<K: nxmesh_client::Resource + Serialize>(
    api: nxmesh_client::Api<K>,
) -> anyhow::Result<Vec<K>> {
    Ok(api.list_all(&ListParams::default()).try_collect().await?)
}

async fn list(
    client: &Client,
    format: Format,
    kind: Kind,
    org: Option<Uuid>,
    workspace: Option<Uuid>,
) -> anyhow::Result<()> {
    let cols = kind_columns(kind);
    match kind {
        Kind::Organizations => print_items(format, cols, &collect(client.organizations()).await?),
        Kind::Workspaces => print_items(
            format,
            cols,
            &collect(client.workspaces(need(org, "--org", kind)?)).await?,
        ),
        Kind::Agents => print_items(
            format,
            cols,
            &collect(client.agents(need(workspace, "--workspace", kind)?)).await?,
        ),
        Kind::VirtualHosts => print_items(
            format,
            cols,
            &collect(client.virtual_hosts(need(workspace, "--workspace", kind)?)).await?,
        ),
        Kind::Upstreams => print_items(
            format,
            cols,
            &collect(client.upstreams(need(workspace, "--workspace", kind)?)).await?,
        ),
        Kind::Certificates => print_items(
            format,
            cols,
            &collect(client.certificates(need(workspace, "--workspace", kind)?)).await?,
        ),
    }
}

async fn get(client: &Client, format: Format, kind: Kind, id: Uuid) -> anyhow::Result<()> {
    let cols = kind_columns(kind);
    let nil = Uuid::nil();
    match kind {
        Kind::Organizations => print_one(format, cols, &client.organizations().get(id).await?),
        Kind::Workspaces => print_one(format, cols, &client.workspaces(nil).get(id).await?),
        Kind::Agents => print_one(format, cols, &client.agents(nil).get(id).await?),
        Kind::VirtualHosts => print_one(format, cols, &client.virtual_hosts(nil).get(id).await?),
        Kind::Upstreams => print_one(format, cols, &client.upstreams(nil).get(id).await?),
        Kind::Certificates => print_one(format, cols, &client.certificates(nil).get(id).await?),
    }
}
