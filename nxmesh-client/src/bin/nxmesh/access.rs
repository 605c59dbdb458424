//! Who may do what: organization members, users, the caller's API tokens
//! and an organization's audit log.

use std::io::BufRead as _;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use futures_util::TryStreamExt as _;
use nxmesh_client::{Auth, Client, Config, ListParams};
use nxmesh_core::model::{AddMember, CreateApiToken, CreateUser, Role, Scope, UpdateMember};
use uuid::Uuid;

use crate::context::ConfigFile;
use crate::output::{Format, print_items, print_one};

const MEMBER_COLUMNS: &[(&str, &str)] = &[
    ("USER ID", "user_id"),
    ("EMAIL", "email"),
    ("NAME", "name"),
    ("ROLE", "role"),
];
const USER_COLUMNS: &[(&str, &str)] = &[
    ("ID", "id"),
    ("EMAIL", "email"),
    ("NAME", "name"),
    ("ADMIN", "is_admin"),
];
const TOKEN_COLUMNS: &[(&str, &str)] = &[
    ("ID", "id"),
    ("NAME", "name"),
    ("SCOPES", "scopes"),
    ("EXPIRES", "expires_at"),
];
const AUDIT_COLUMNS: &[(&str, &str)] = &[
    ("TIME", "created_at"),
    ("ACTOR", "actor"),
    ("ACTION", "action"),
    ("TARGET", "target_type"),
    ("TARGET ID", "target_id"),
];

fn role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| format!("unknown role {s:?} (viewer, editor, admin, owner)"))
}

fn scope(s: &str) -> Result<Scope, String> {
    match s {
        "read" => Ok(Scope::Read),
        "write" => Ok(Scope::Write),
        _ => Err(format!("unknown scope {s:?} (read, write)")),
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum MembersCommand {
    /// The members of an organization.
    #[command(alias = "ls")]
    List {
        /// The organization's id.
        org: Uuid,
    },
    /// Add a user to an organization with a role.
    Add {
        /// The organization's id.
        org: Uuid,
        /// The user's email.
        #[arg(long)]
        email: String,
        /// The role: viewer, editor, admin or owner.
        #[arg(long, value_parser = role)]
        role: Role,
    },
    /// Change a member's role.
    Update {
        /// The organization's id.
        org: Uuid,
        /// The member's user id.
        user_id: Uuid,
        /// The new role: viewer, editor, admin or owner.
        #[arg(long, value_parser = role)]
        role: Role,
    },
    /// Remove a user from an organization.
    #[command(alias = "rm")]
    Remove {
        /// The organization's id.
        org: Uuid,
        /// The user's id.
        user_id: Uuid,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum UsersCommand {
    /// Create a user (administrators only).
    Create {
        /// Login email.
        #[arg(long)]
        email: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// The new user's password (prefer `--password-stdin`).
        #[arg(
            long,
            conflicts_with = "password_stdin",
            required_unless_present = "password_stdin"
        )]
        password: Option<String>,
        /// Read the new user's password from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
        /// Make the user a server administrator.
        #[arg(long)]
        admin: bool,
    },
    /// The logged-in user.
    Me,
    /// Delete a user (administrators only); their memberships, sessions
    /// and API tokens go with them.
    #[command(alias = "rm")]
    Delete {
        /// The user's id.
        id: Uuid,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum TokensCommand {
    /// The logged-in user's API tokens.
    #[command(alias = "ls")]
    List,
    /// Create an API token; its secret is printed once. The server only
    /// makes tokens from a login session, so this logs in again as the
    /// context's user with the password.
    Create {
        /// A name to recognize it by.
        #[arg(long)]
        name: String,
        /// What it may do: read or write (repeat for both; default: read).
        #[arg(long = "scope", value_parser = scope)]
        scopes: Vec<Scope>,
        /// Days until it expires (default: never).
        #[arg(long)]
        expires_in_days: Option<u32>,
        /// The context user's password (prefer the environment variable).
        #[arg(long, env = "NXMESH_PASSWORD", hide_env_values = true)]
        password: String,
    },
    /// Revoke an API token.
    #[command(alias = "rm")]
    Delete {
        /// The token's id.
        id: Uuid,
    },
}

pub(crate) async fn members(
    client: &Client,
    format: Format,
    cmd: MembersCommand,
) -> anyhow::Result<()> {
    match cmd {
        MembersCommand::List { org } => {
            let all: Vec<_> = client
                .members(org)
                .list_all(&ListParams::default())
                .try_collect()
                .await?;
            print_items(format, MEMBER_COLUMNS, &all)
        }
        MembersCommand::Add { org, email, role } => {
            let m = client
                .members(org)
                .create(&AddMember {
                    email: Some(email),
                    user_id: None,
                    role,
                })
                .await?;
            print_one(format, MEMBER_COLUMNS, &m)
        }
        MembersCommand::Update { org, user_id, role } => {
            let m = client
                .members(org)
                .update(user_id, &UpdateMember { role })
                .await?;
            print_one(format, MEMBER_COLUMNS, &m)
        }
        MembersCommand::Remove { org, user_id } => {
            client.members(org).delete(user_id).await?;
            println!("removed {user_id} from {org}");
            Ok(())
        }
    }
}

pub(crate) async fn users(
    client: &Client,
    format: Format,
    cmd: UsersCommand,
) -> anyhow::Result<()> {
    match cmd {
        UsersCommand::Create {
            email,
            name,
            password,
            password_stdin,
            admin,
        } => {
            let password = match (password, password_stdin) {
                (Some(p), false) => p,
                (None, true) => {
                    let mut line = String::new();
                    std::io::stdin()
                        .lock()
                        .read_line(&mut line)
                        .context("reading the password from stdin")?;
                    let p = line.trim_end_matches(['\r', '\n']).to_owned();
                    if p.is_empty() {
                        bail!("no password on stdin");
                    }
                    p
                }
                _ => bail!("give --password or --password-stdin"),
            };
            let u = client
                .users()
                .create(&CreateUser {
                    email,
                    password,
                    name,
                    is_admin: admin,
                })
                .await?;
            print_one(format, USER_COLUMNS, &u)
        }
        UsersCommand::Me => print_one(format, USER_COLUMNS, &client.users().me().await?),
        UsersCommand::Delete { id } => {
            client.users().delete(id).await?;
            println!("deleted user {id}");
            Ok(())
        }
    }
}

pub(crate) async fn tokens(
    client: &Client,
    file: &ConfigFile,
    context: Option<&str>,
    format: Format,
    cmd: TokensCommand,
) -> anyhow::Result<()> {
    match cmd {
        TokensCommand::List => {
            print_items(format, TOKEN_COLUMNS, &client.api_tokens().list().await?)
        }
        TokensCommand::Create {
            name,
            scopes,
            expires_in_days,
            password,
        } => {
            let ctx = file.context(context)?;
            let session = Client::new(Config::new(
                &ctx.url,
                Auth::Login {
                    email: ctx.email.clone(),
                    password,
                },
            ))?;
            session.login().await?;
            let created = session
                .api_tokens()
                .create(&CreateApiToken {
                    name,
                    scopes: if scopes.is_empty() {
                        vec![Scope::Read]
                    } else {
                        scopes
                    },
                    expires_in_days,
                })
                .await;
            // The session served only to make the token.
            let logout = session.logout().await;
            let created = created?;
            logout?;
            match format {
                Format::Table => {
                    println!(
                        "token {} {:?} (secret shown once): {}",
                        created.api_token.id, created.api_token.name, created.token
                    );
                    Ok(())
                }
                _ => print_one(format, &[], &created),
            }
        }
        TokensCommand::Delete { id } => {
            client.api_tokens().delete(id).await?;
            println!("deleted {id}");
            Ok(())
        }
    }
}

pub(crate) async fn audit(client: &Client, format: Format, org: Uuid) -> anyhow::Result<()> {
    let all: Vec<_> = client
        .audit_log(org)
        .list_all(&ListParams::default())
        .try_collect()
        .await?;
    print_items(format, AUDIT_COLUMNS, &all)
}
