//! [`SeaStore`]: the core storage traits over sea-orm, on SQLite (the
//! embedded default: one file, WAL, `synchronous=FULL` so that an
//! acknowledged write survives a crash) or PostgreSQL (for several masters).
//!
//! What is stored: desired state (organizations, workspaces, virtual hosts,
//! upstreams, certificates, agent names and labels), observed state (what
//! each agent reported: identity, state, last seen, health), credentials as
//! hashes only (passwords, registration tokens, agent credentials, refresh
//! and API tokens), the audit log, and telemetry (metric samples, access
//! logs). Entities are mapped to core models here and never leave.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use nxmesh_core::config::{ConfigApplyStatus, ConfigStatus};
use nxmesh_core::error::{FieldErrorCode, ValidationErrors};
use nxmesh_core::ledger::AgentConfigState;
use nxmesh_core::model::*;
use nxmesh_core::pagination::{Page, PageParams};
use nxmesh_core::protocol::{MetricType, MetricsBatch};
use nxmesh_core::storage::*;
use sea_orm::sea_query::Expr;
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectOptions, ConnectionTrait,
    Database, DatabaseConnection, DbBackend, DbErr, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, SqlErr, Statement, TransactionTrait,
};
use sea_orm_migration::MigratorTrait;
use serde_json::Value as Json;
use uuid::Uuid;

use super::entities::*;
use super::migration::Migrator;

/// Ids per statement in bulk reads and writes: far below SQLite's limit of
/// 32,766 bound parameters, large enough that thousands take few trips.
const IN_CHUNK: usize = 500;

/// The sea-orm implementation of every storage trait of `nxmesh-core`.
#[derive(Clone, Debug)]
pub struct SeaStore {
    pub(super) db: DatabaseConnection,
}

impl SeaStore {
    /// Connects to `url` (`sqlite://…?mode=rwc` or `postgres://…`) and runs
    /// the migrations.
    pub async fn connect(url: &str) -> Result<SeaStore, StorageError> {
        let mut opts = ConnectOptions::new(url.to_owned());
        opts.sqlx_logging(false)
            .connect_timeout(Duration::from_secs(10))
            .acquire_timeout(Duration::from_secs(10))
            .map_sqlx_sqlite_opts(|o| {
                o.journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(10))
                    .create_if_missing(true)
            });
        if url.starts_with("sqlite:") {
            // One writer at a time is what SQLite does anyway; a small pool
            // keeps readers concurrent without lock churn.
            opts.max_connections(8);
        }
        let db = Database::connect(opts).await.map_err(unavailable)?;
        if db.get_database_backend() == DbBackend::Postgres {
            // Several masters may start at once on one database: the first
            // migrates while the others wait for its transaction (DDL is
            // transactional in PostgreSQL), then find nothing left to do.
            let txn = db.begin().await.map_err(backend)?;
            txn.execute_unprepared("SELECT pg_advisory_xact_lock(7448775400152829952)")
                .await
                .map_err(backend)?;
            Migrator::up(&txn, None).await.map_err(backend)?;
            txn.commit().await.map_err(backend)?;
        } else {
            Migrator::up(&db, None).await.map_err(backend)?;
        }
        Ok(SeaStore { db })
    }

    /// Membership in the masters sharing this database, when it is
    /// PostgreSQL (see [`crate::cluster`]); `lease` as there.
    pub fn cluster(&self, lease: Duration) -> Option<crate::cluster::Cluster> {
        crate::cluster::Cluster::new(self.db.clone(), lease)
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> bool {
        self.db.ping().await.is_ok()
    }
}

fn backend_err(e: DbErr) -> StorageError {
    backend(e)
}

fn backend(e: DbErr) -> StorageError {
    StorageError::Backend(Box::new(e))
}

fn unavailable(e: DbErr) -> StorageError {
    StorageError::Unavailable(Box::new(e))
}

/// Maps a database error, turning unique-constraint violations into
/// `Conflict` (the one place this happens).
fn db_err(what: &'static str) -> impl Fn(DbErr) -> StorageError {
    move |e| match e.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => StorageError::Conflict {
            what: format!("{what} already exists"),
        },
        // A write naming a parent that does not exist (or was just deleted).
        Some(SqlErr::ForeignKeyConstraintViolation(_)) => StorageError::NotFound {
            what: "referenced object",
        },
        _ => match e {
            DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => unavailable(e),
            other => backend(other),
        },
    }
}

fn not_found(what: &'static str) -> StorageError {
    StorageError::NotFound { what }
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<Json, StorageError> {
    serde_json::to_value(v).map_err(|e| StorageError::Backend(Box::new(e)))
}

fn from_json<T: serde::de::DeserializeOwned>(v: Json) -> Result<T, StorageError> {
    serde_json::from_value(v).map_err(|e| StorageError::Backend(Box::new(e)))
}

fn enum_str<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(Json::String(s)) => s,
        other => unreachable!("unit enums serialize to strings, got {other:?}"),
    }
}

fn parse_enum<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, StorageError> {
    from_json(Json::String(s.to_owned()))
}

/// One page of `q` in creation order (`created`, then `id` to break ties),
/// mapped to core models, with the total count.
async fn paged<E, T>(
    db: &DatabaseConnection,
    q: sea_orm::Select<E>,
    order: (E::Column, E::Column),
    page: PageParams,
    map: impl Fn(E::Model) -> Result<T, StorageError>,
) -> StorageResult<Page<T>>
where
    E: EntityTrait,
    E::Model: sea_orm::FromQueryResult + Send + Sync,
{
    let total = q.clone().count(db).await.map_err(backend)?;
    let rows = q
        .order_by_asc(order.0)
        .order_by_asc(order.1)
        .offset(page.offset())
        .limit(u64::from(page.per_page))
        .all(db)
        .await
        .map_err(backend)?;
    let data = rows.into_iter().map(map).collect::<Result<_, _>>()?;
    Ok(page_of(data, page, total))
}

fn page_of<T>(data: Vec<T>, page: PageParams, total: u64) -> Page<T> {
    Page {
        data,
        meta: page.meta(total),
    }
}

// ---- mappings ----

fn organization(m: organization::Model) -> Organization {
    let organization::Model {
        id,
        name,
        slug,
        created_at,
        updated_at,
    } = m;
    Organization {
        id,
        name,
        slug,
        created_at,
        updated_at,
    }
}

fn workspace(m: workspace::Model) -> Workspace {
    let workspace::Model {
        id,
        organization_id,
        name,
        slug,
        created_at,
    } = m;
    Workspace {
        id,
        organization_id,
        name,
        slug,
        created_at,
    }
}

fn agent(m: agent::Model) -> Result<Agent, StorageError> {
    let agent::Model {
        id,
        workspace_id,
        name,
        labels,
        hostname,
        ip_address,
        version,
        state,
        deployment_mode,
        last_seen_at,
        capabilities,
        health,
        token_hash: _,
        token_expires_at: _,
        credential_hash: _,
        created_at,
    } = m;
    Ok(Agent {
        id,
        workspace_id,
        name,
        hostname,
        ip_address,
        version,
        state: parse_enum(&state)?,
        deployment_mode: deployment_mode.as_deref().map(parse_enum).transpose()?,
        last_seen_at,
        capabilities: from_json(capabilities)?,
        labels: from_json(labels)?,
        health: health.map(from_json).transpose()?,
        created_at,
    })
}

fn virtual_host(m: virtual_host::Model) -> Result<VirtualHost, StorageError> {
    let virtual_host::Model {
        id,
        workspace_id,
        name: _,
        spec,
        target,
        created_at,
        updated_at,
    } = m;
    Ok(VirtualHost {
        id,
        workspace_id,
        spec: from_json(spec)?,
        target_agents: from_json(target)?,
        created_at,
        updated_at,
    })
}

fn upstream(m: upstream::Model) -> Result<Upstream, StorageError> {
    let upstream::Model {
        id,
        workspace_id,
        name: _,
        spec,
        created_at,
        updated_at,
    } = m;
    Ok(Upstream {
        id,
        workspace_id,
        spec: from_json(spec)?,
        created_at,
        updated_at,
    })
}

fn certificate(m: certificate::Model) -> Result<Certificate, StorageError> {
    let certificate::Model {
        id,
        workspace_id,
        domain,
        is_wildcard,
        provider,
        status,
        auto_renew,
        certificate_pem: _,
        encrypted_key: _,
        issued_at,
        expires_at,
        last_error,
        created_at,
    } = m;
    Ok(Certificate {
        id,
        workspace_id,
        domain,
        is_wildcard,
        provider: parse_enum(&provider)?,
        status: parse_enum(&status)?,
        issued_at,
        expires_at,
        auto_renew,
        last_error,
        created_at,
    })
}

fn user(m: user::Model) -> User {
    let user::Model {
        id,
        email,
        name,
        password_hash: _,
        is_admin,
        created_at,
    } = m;
    User {
        id,
        email,
        name,
        is_admin,
        created_at,
    }
}

fn api_token(m: api_token::Model) -> Result<ApiToken, StorageError> {
    let api_token::Model {
        id,
        user_id: _,
        name,
        scopes,
        token_hash: _,
        expires_at,
        created_at,
    } = m;
    Ok(ApiToken {
        id,
        name,
        scopes: from_json(scopes)?,
        created_at,
        expires_at,
    })
}

fn role(s: &str) -> Result<Role, StorageError> {
    Role::parse(s)
        .ok_or_else(|| StorageError::Backend(format!("unknown role {s:?} in the database").into()))
}

// ---- organizations ----

#[async_trait]
impl OrganizationStore for SeaStore {
    async fn create_organization(&self, new: &CreateOrganization) -> StorageResult<Organization> {
        let now = Utc::now();
        let m = organization::ActiveModel {
            id: Set(Uuid::new_v4()),
            name: Set(new.name.clone()),
            slug: Set(new.slug.clone()),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&self.db)
        .await
        .map_err(db_err("an organization with this slug"))?;
        Ok(organization(m))
    }

    async fn get_organization(&self, id: Uuid) -> StorageResult<Option<Organization>> {
        let m = organization::Entity::find_by_id(id)
            .one(&self.db)
            .await
            .map_err(backend)?;
        Ok(m.map(organization))
    }

    async fn list_organizations(
        &self,
        ids: &[Uuid],
        page: PageParams,
    ) -> StorageResult<Page<Organization>> {
        let q = organization::Entity::find()
            .filter(organization::Column::Id.is_in(ids.iter().copied()));
        paged(
            &self.db,
            q,
            (organization::Column::CreatedAt, organization::Column::Id),
            page,
            |m| Ok(organization(m)),
        )
        .await
    }

    async fn update_organization(
        &self,
        id: Uuid,
        update: &UpdateOrganization,
    ) -> StorageResult<Organization> {
        let UpdateOrganization { name, slug } = update;
        let m = organization::Entity::find_by_id(id)
            .one(&self.db)
            .await
            .map_err(backend)?
            .ok_or(not_found("organization"))?;
        let mut a: organization::ActiveModel = m.into();
        if let Some(v) = name {
            a.name = Set(v.clone());
        }
        if let Some(v) = slug {
            a.slug = Set(v.clone());
        }
        a.updated_at = Set(Utc::now());
        let m = a
            .update(&self.db)
            .await
            .map_err(db_err("an organization with this slug"))?;
        Ok(organization(m))
    }

    async fn delete_organization(&self, id: Uuid) -> StorageResult<()> {
        let r = organization::Entity::delete_by_id(id)
            .exec(&self.db)
            .await
            .map_err(backend)?;
        if r.rows_affected == 0 {
            Err(not_found("organization"))
        } else {
            Ok(())
        }
    }
}

// ---- workspaces ----

#[async_trait]
impl WorkspaceStore for SeaStore {
    async fn create_workspace(
        &self,
        organization_id: Uuid,
        new: &CreateWorkspace,
    ) -> StorageResult<Workspace> {
        let m = workspace::ActiveModel {
            id: Set(Uuid::new_v4()),
            organization_id: Set(organization_id),
            name: Set(new.name.clone()),
            slug: Set(new.slug.clone()),
            created_at: Set(Utc::now()),
        }
        .insert(&self.db)
        .await
        .map_err(db_err("a workspace with this slug"))?;
        Ok(workspace(m))
    }

    async fn get_workspace(&self, id: Uuid) -> StorageResult<Option<Workspace>> {
        Ok(workspace::Entity::find_by_id(id)
            .one(&self.db)
            .await
            .map_err(backend)?
            .map(workspace))
    }

    async fn list_workspaces(
        &self,
        organization_id: Uuid,
        page: PageParams,
    ) -> StorageResult<Page<Workspace>> {
        let q =
            workspace::Entity::find().filter(workspace::Column::OrganizationId.eq(organization_id));
        paged(
            &self.db,
            q,
            (workspace::Column::CreatedAt, workspace::Column::Id),
            page,
            |m| Ok(workspace(m)),
        )
        .await
    }

    async fn update_workspace(
        &self,
        id: Uuid,
        update: &UpdateWorkspace,
    ) -> StorageResult<Workspace> {
        let UpdateWorkspace { name, slug } = update;
        let m = workspace::Entity::find_by_id(id)
            .one(&self.db)
            .await
            .map_err(backend)?
            .ok_or(not_found("workspace"))?;
        let mut a: workspace::ActiveModel = m.into();
        if let Some(v) = name {
            a.name = Set(v.clone());
        }
        if let Some(v) = slug {
            a.slug = Set(v.clone());
        }
        let m = a
            .update(&self.db)
            .await
            .map_err(db_err("a workspace with this slug"))?;
        Ok(workspace(m))
    }

    async fn delete_workspace(&self, id: Uuid) -> StorageResult<()> {
        let r = workspace::Entity::delete_by_id(id)
            .exec(&self.db)
            .await
            .map_err(backend)?;
        if r.rows_affected == 0 {
            Err(not_found("workspace"))
        } else {
            Ok(())
        }
    }
}

// ---- agents ----

#[async_trait]
impl AgentStore for SeaStore {
    async fn create_agent(&self, new: &NewAgent) -> StorageResult<Agent> {
        let m = agent::ActiveModel {
            id: Set(Uuid::new_v4()),
            workspace_id: Set(new.workspace_id),
            name: Set(new.name.clone()),
            labels: Set(to_json(&new.labels)?),
            hostname: Set(None),
            ip_address: Set(None),
            version: Set(None),
            state: Set(enum_str(&AgentState::Offline)),
            deployment_mode: Set(None),
            last_seen_at: Set(None),
            capabilities: Set(Json::Array(vec![])),
            health: Set(None),
            token_hash: Set(Some(new.token_hash.clone())),
            token_expires_at: Set(new.token_expires_at),
            credential_hash: Set(None),
            created_at: Set(Utc::now()),
        }
        .insert(&self.db)
        .await
        .map_err(db_err("an agent with this token"))?;
        agent(m)
    }

    async fn get_agent(&self, id: Uuid) -> StorageResult<Option<Agent>> {
        agent::Entity::find_by_id(id)
            .one(&self.db)
            .await
            .map_err(backend)?
            .map(agent)
            .transpose()
    }

    async fn get_agents(&self, ids: &[Uuid]) -> StorageResult<Vec<Agent>> {
        let mut out = Vec::with_capacity(ids.len());
        // Chunks keep each statement well under SQLite's parameter limit.
        for chunk in ids.chunks(IN_CHUNK) {
            let rows = agent::Entity::find()
                .filter(agent::Column::Id.is_in(chunk.iter().copied()))
                .all(&self.db)
                .await
                .map_err(backend)?;
            for row in rows {
                out.push(agent(row)?);
            }
        }
        Ok(out)
    }

    async fn agent_labels(&self, ids: &[Uuid]) -> StorageResult<Vec<AgentLabels>> {
        // One row per label set rather than per agent: a fleet has a few
        // label sets and thousands of agents, and each row costs a hop
        // between the driver's thread and ours.
        let backend = self.db.get_database_backend();
        let (select, group) = match backend {
            DbBackend::Postgres => (
                "SELECT workspace_id::text AS workspace, labels::text AS labels, json_agg(id)::text AS ids",
                "workspace_id, labels::text",
            ),
            _ => (
                "SELECT hex(workspace_id) AS workspace, labels, json_group_array(hex(id)) AS ids",
                "workspace_id, labels",
            ),
        };
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(IN_CHUNK) {
            let mut b = Binds::new(backend, chunk.len());
            let list = in_list(&mut b, chunk);
            let sql = format!("{select} FROM agents WHERE id IN ({list}) GROUP BY {group}");
            let rows = self
                .db
                .query_all_raw(b.statement(sql))
                .await
                .map_err(backend_err)?;
            for row in rows {
                let workspace: String = row.try_get("", "workspace").map_err(backend_err)?;
                let workspace_id =
                    Uuid::parse_str(&workspace).map_err(|e| StorageError::Backend(Box::new(e)))?;
                let labels: String = row.try_get("", "labels").map_err(backend_err)?;
                let labels: Labels = from_json_text(&labels)?;
                let agents: String = row.try_get("", "ids").map_err(backend_err)?;
                for agent_id in from_json_text::<Vec<Uuid>>(&agents)? {
                    out.push(AgentLabels {
                        agent_id,
                        workspace_id,
                        labels: labels.clone(),
                    });
                }
            }
        }
        Ok(out)
    }

    async fn list_agents(
        &self,
        workspace_id: Uuid,
        filter: &AgentFilter,
        page: PageParams,
    ) -> StorageResult<Page<Agent>> {
        let mut q = agent::Entity::find().filter(agent::Column::WorkspaceId.eq(workspace_id));
        let state = match filter.state {
            AgentStateFilter::All => None,
            AgentStateFilter::Online => Some(AgentState::Online),
            AgentStateFilter::Offline => Some(AgentState::Offline),
            AgentStateFilter::Degraded => Some(AgentState::Degraded),
        };
        if let Some(s) = state {
            q = q.filter(agent::Column::State.eq(enum_str(&s)));
        }
        let q = q
            .order_by_asc(agent::Column::CreatedAt)
            .order_by_asc(agent::Column::Id);
        match &filter.selector {
            None => {
                let total = q.clone().count(&self.db).await.map_err(backend)?;
                let rows = q
                    .offset(page.offset())
                    .limit(u64::from(page.per_page))
                    .all(&self.db)
                    .await
                    .map_err(backend)?;
                // Health belongs to `get_agent`; lists leave it out.
                let data = rows
                    .into_iter()
                    .map(|r| agent(r).map(|a| Agent { health: None, ..a }))
                    .collect::<Result<_, _>>()?;
                Ok(page_of(data, page, total))
            }
            Some(selector) => {
                // Labels are a JSON column: match in memory, within one
                // workspace (which bounds the scan).
                let rows = q.all(&self.db).await.map_err(backend)?;
                let mut matching = Vec::new();
                for r in rows {
                    let a = Agent {
                        health: None,
                        ..agent(r)?
                    };
                    if selector.matches(&a.labels) {
                        matching.push(a);
                    }
                }
                let total = matching.len() as u64;
                let data = matching
                    .into_iter()
                    .skip(usize::try_from(page.offset()).unwrap_or(usize::MAX))
                    .take(page.per_page as usize)
                    .collect();
                Ok(page_of(data, page, total))
            }
        }
    }

    async fn target_agents(
        &self,
        workspace_id: Uuid,
        target: &TargetAgents,
    ) -> StorageResult<Vec<Uuid>> {
        let selector = target.selector().map_err(|e| {
            let mut v = ValidationErrors::default();
            v.push(
                "target_agents.label_selector",
                FieldErrorCode::InvalidFormat,
                e.to_string(),
            );
            StorageError::Invalid(v)
        })?;
        let rows = agent::Entity::find()
            .filter(agent::Column::WorkspaceId.eq(workspace_id))
            .order_by_asc(agent::Column::Id)
            .all(&self.db)
            .await
            .map_err(backend)?;
        let mut out = Vec::new();
        for r in rows {
            let id = r.id;
            let labels: Labels = from_json(r.labels)?;
            if selector.as_ref().is_none_or(|s| s.matches(&labels)) {
                out.push(id);
            }
        }
        Ok(out)
    }

    async fn update_agent(&self, id: Uuid, update: &UpdateAgent) -> StorageResult<Agent> {
        let UpdateAgent { name, labels } = update;
        let m = agent::Entity::find_by_id(id)
            .one(&self.db)
            .await
            .map_err(backend)?
            .ok_or(not_found("agent"))?;
        let mut a: agent::ActiveModel = m.into();
        if let Some(v) = name {
            a.name = Set(v.clone());
        }
        if let Some(v) = labels {
            a.labels = Set(to_json(v)?);
        }
        agent(a.update(&self.db).await.map_err(backend)?)
    }

    async fn delete_agent(&self, id: Uuid) -> StorageResult<()> {
        let r = agent::Entity::delete_by_id(id)
            .exec(&self.db)
            .await
            .map_err(backend)?;
        if r.rows_affected == 0 {
            Err(not_found("agent"))
        } else {
            Ok(())
        }
    }

    async fn register_agent(
        &self,
        token_hash: &str,
        now: Timestamp,
        identity: &AgentIdentity,
        credential_hash: &str,
    ) -> StorageResult<Agent> {
        let AgentIdentity {
            hostname,
            ip_address,
            version,
            capabilities,
            deployment_mode,
        } = identity;
        // One conditional UPDATE consumes the token: two concurrent
        // registrations with the same token cannot both succeed.
        let r = agent::Entity::update_many()
            .col_expr(
                agent::Column::TokenHash,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                agent::Column::CredentialHash,
                Expr::value(credential_hash.to_owned()),
            )
            .col_expr(agent::Column::Hostname, Expr::value(hostname.clone()))
            .col_expr(agent::Column::IpAddress, Expr::value(ip_address.clone()))
            .col_expr(agent::Column::Version, Expr::value(version.clone()))
            .col_expr(
                agent::Column::Capabilities,
                Expr::value(to_json(capabilities)?),
            )
            .col_expr(
                agent::Column::DeploymentMode,
                Expr::value(enum_str(deployment_mode)),
            )
            .filter(agent::Column::TokenHash.eq(token_hash))
            .filter(agent::Column::TokenExpiresAt.gt(now))
            .exec(&self.db)
            .await
            .map_err(db_err("an agent with this credential"))?;
        if r.rows_affected != 1 {
            return Err(not_found("registration token"));
        }
        let m = agent::Entity::find()
            .filter(agent::Column::CredentialHash.eq(credential_hash))
            .one(&self.db)
            .await
            .map_err(backend)?
            .ok_or(not_found("agent"))?;
        agent(m)
    }

    async fn agent_by_credential(&self, credential_hash: &str) -> StorageResult<Option<Agent>> {
        agent::Entity::find()
            .filter(agent::Column::CredentialHash.eq(credential_hash))
            .one(&self.db)
            .await
            .map_err(backend)?
            .map(agent)
            .transpose()
    }

    async fn record_agent_state(
        &self,
        id: Uuid,
        state: AgentState,
        seen_at: Timestamp,
        health: Option<&AgentHealth>,
    ) -> StorageResult<()> {
        let record = AgentStateRecord {
            agent_id: id,
            state,
            seen_at,
            health: health.cloned(),
        };
        let statement = agent_states_update(self.db.get_database_backend(), &[(id, &record)])?;
        let found = self.db.query_all_raw(statement).await.map_err(backend)?;
        if found.is_empty() {
            Err(not_found("agent"))
        } else {
            Ok(())
        }
    }

    async fn record_agent_states(&self, records: &[AgentStateRecord]) -> StorageResult<Vec<bool>> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        // One transaction, one commit, and one statement per chunk for a
        // batch of heartbeats.
        let backend_kind = self.db.get_database_backend();
        let txn = self.db.begin().await.map_err(backend)?;
        let mut found = std::collections::HashSet::with_capacity(records.len());
        for round in rounds(records.iter().map(|r| (r.agent_id, r))) {
            for chunk in round.chunks(IN_CHUNK) {
                let rows = txn
                    .query_all_raw(agent_states_update(backend_kind, chunk)?)
                    .await
                    .map_err(backend)?;
                for row in rows {
                    found.insert(row.try_get::<Uuid>("", "id").map_err(backend)?);
                }
            }
        }
        txn.commit().await.map_err(backend)?;
        Ok(records
            .iter()
            .map(|r| found.contains(&r.agent_id))
            .collect())
    }
}

// ---- virtual hosts ----

#[async_trait]
impl VirtualHostStore for SeaStore {
    async fn create_virtual_host(
        &self,
        workspace_id: Uuid,
        spec: &VirtualHostSpec,
        target: &TargetAgents,
    ) -> StorageResult<VirtualHost> {
        let now = Utc::now();
        let m = virtual_host::ActiveModel {
            id: Set(Uuid::new_v4()),
            workspace_id: Set(workspace_id),
            name: Set(spec.name.clone()),
            spec: Set(to_json(spec)?),
            target: Set(to_json(target)?),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&self.db)
        .await
        .map_err(db_err("a virtual host with this name"))?;
        virtual_host(m)
    }

    async fn get_virtual_host(&self, id: Uuid) -> StorageResult<Option<VirtualHost>> {
        virtual_host::Entity::find_by_id(id)
            .one(&self.db)
            .await
            .map_err(backend)?
            .map(virtual_host)
            .transpose()
    }

    async fn list_virtual_hosts(
        &self,
        workspace_id: Uuid,
        page: PageParams,
    ) -> StorageResult<Page<VirtualHost>> {
        let q =
            virtual_host::Entity::find().filter(virtual_host::Column::WorkspaceId.eq(workspace_id));
        paged(
            &self.db,
            q,
            (virtual_host::Column::CreatedAt, virtual_host::Column::Id),
            page,
            virtual_host,
        )
        .await
    }

    async fn update_virtual_host(
        &self,
        id: Uuid,
        spec: &VirtualHostSpec,
        target: &TargetAgents,
    ) -> StorageResult<VirtualHost> {
        let m = virtual_host::Entity::find_by_id(id)
            .one(&self.db)
            .await
            .map_err(backend)?
            .ok_or(not_found("virtual host"))?;
        let mut a: virtual_host::ActiveModel = m.into();
        a.name = Set(spec.name.clone());
        a.spec = Set(to_json(spec)?);
        a.target = Set(to_json(target)?);
        a.updated_at = Set(Utc::now());
        virtual_host(
            a.update(&self.db)
                .await
                .map_err(db_err("a virtual host with this name"))?,
        )
    }

    async fn delete_virtual_host(&self, id: Uuid) -> StorageResult<()> {
        let r = virtual_host::Entity::delete_by_id(id)
            .exec(&self.db)
            .await
            .map_err(backend)?;
        if r.rows_affected == 0 {
            Err(not_found("virtual host"))
        } else {
            Ok(())
        }
    }
}

impl SeaStore {
    /// Whether a virtual host of the workspace references `pred`.
    async fn vhost_uses(
        &self,
        workspace_id: Uuid,
        pred: impl Fn(&VirtualHostSpec) -> bool,
    ) -> StorageResult<bool> {
        let rows = virtual_host::Entity::find()
            .filter(virtual_host::Column::WorkspaceId.eq(workspace_id))
            .all(&self.db)
            .await
            .map_err(backend)?;
        for r in rows {
            let spec: VirtualHostSpec = from_json(r.spec)?;
            if pred(&spec) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

// ---- upstreams ----

#[async_trait]
impl UpstreamStore for SeaStore {
    async fn create_upstream(
        &self,
        workspace_id: Uuid,
        spec: &UpstreamSpec,
    ) -> StorageResult<Upstream> {
        let now = Utc::now();
        let m = upstream::ActiveModel {
            id: Set(Uuid::new_v4()),
            workspace_id: Set(workspace_id),
            name: Set(spec.name.clone()),
            spec: Set(to_json(spec)?),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&self.db)
        .await
        .map_err(db_err("an upstream with this name"))?;
        upstream(m)
    }

    async fn get_upstream(&self, id: Uuid) -> StorageResult<Option<Upstream>> {
        upstream::Entity::find_by_id(id)
            .one(&self.db)
            .await
            .map_err(backend)?
            .map(upstream)
            .transpose()
    }

    async fn list_upstreams(
        &self,
        workspace_id: Uuid,
        page: PageParams,
    ) -> StorageResult<Page<Upstream>> {
        let q = upstream::Entity::find().filter(upstream::Column::WorkspaceId.eq(workspace_id));
        paged(
            &self.db,
            q,
            (upstream::Column::CreatedAt, upstream::Column::Id),
            page,
            upstream,
        )
        .await
    }

    async fn update_upstream(&self, id: Uuid, spec: &UpstreamSpec) -> StorageResult<Upstream> {
        let m = upstream::Entity::find_by_id(id)
            .one(&self.db)
            .await
            .map_err(backend)?
            .ok_or(not_found("upstream"))?;
        let mut a: upstream::ActiveModel = m.into();
        a.name = Set(spec.name.clone());
        a.spec = Set(to_json(spec)?);
        a.updated_at = Set(Utc::now());
        upstream(
            a.update(&self.db)
                .await
                .map_err(db_err("an upstream with this name"))?,
        )
    }

    async fn delete_upstream(&self, id: Uuid) -> StorageResult<()> {
        let m = upstream::Entity::find_by_id(id)
            .one(&self.db)
            .await
            .map_err(backend)?
            .ok_or(not_found("upstream"))?;
        if self
            .vhost_uses(m.workspace_id, |s| {
                s.locations.iter().any(|l| l.upstream_id == Some(id))
            })
            .await?
        {
            return Err(StorageError::Conflict {
                what: "the upstream is used by a virtual host".into(),
            });
        }
        upstream::Entity::delete_by_id(id)
            .exec(&self.db)
            .await
            .map_err(backend)?;
        Ok(())
    }
}

// ---- certificates ----

#[async_trait]
impl CertificateStore for SeaStore {
    async fn create_certificate(&self, new: &NewCertificate) -> StorageResult<Certificate> {
        let m = certificate::ActiveModel {
            id: Set(Uuid::new_v4()),
            workspace_id: Set(new.workspace_id),
            domain: Set(new.domain.clone()),
            is_wildcard: Set(new.is_wildcard),
            provider: Set(enum_str(&new.provider)),
            status: Set(enum_str(&new.status)),
            auto_renew: Set(new.auto_renew),
            certificate_pem: Set(new.certificate_pem.clone()),
            encrypted_key: Set(new.encrypted_private_key.clone()),
            issued_at: Set(new.issued_at),
            expires_at: Set(new.expires_at),
            last_error: Set(None),
            created_at: Set(Utc::now()),
        }
        .insert(&self.db)
        .await
        .map_err(db_err("certificate"))?;
        certificate(m)
    }

    async fn get_certificate(&self, id: Uuid) -> StorageResult<Option<Certificate>> {
        certificate::Entity::find_by_id(id)
            .one(&self.db)
            .await
            .map_err(backend)?
            .map(certificate)
            .transpose()
    }

    async fn list_certificates(
        &self,
        workspace_id: Uuid,
        page: PageParams,
    ) -> StorageResult<Page<Certificate>> {
        let q =
            certificate::Entity::find().filter(certificate::Column::WorkspaceId.eq(workspace_id));
        paged(
            &self.db,
            q,
            (certificate::Column::CreatedAt, certificate::Column::Id),
            page,
            certificate,
        )
        .await
    }

    async fn certificate_material(&self, id: Uuid) -> StorageResult<Option<(String, Vec<u8>)>> {
        let m = certificate::Entity::find_by_id(id)
            .one(&self.db)
            .await
            .map_err(backend)?;
        Ok(m.and_then(|m| Some((m.certificate_pem?, m.encrypted_key?))))
    }

    async fn acme_http_challenges(
        &self,
        workspace_id: Uuid,
    ) -> StorageResult<Vec<nxmesh_core::config::AcmeChallenge>> {
        super::acme::http_challenges(&self.db, workspace_id).await
    }

    async fn delete_certificate(&self, id: Uuid) -> StorageResult<()> {
        let m = certificate::Entity::find_by_id(id)
            .one(&self.db)
            .await
            .map_err(backend)?
            .ok_or(not_found("certificate"))?;
        if self
            .vhost_uses(m.workspace_id, |s| s.ssl_certificate_id == Some(id))
            .await?
        {
            return Err(StorageError::Conflict {
                what: "the certificate is used by a virtual host".into(),
            });
        }
        certificate::Entity::delete_by_id(id)
            .exec(&self.db)
            .await
            .map_err(backend)?;
        Ok(())
    }
}

// ---- telemetry ----

/// Metric names the summary reads (what the agent reports).
mod metric_names {
    pub(super) const REQUESTS: &str = "nginx_http_requests_total";
    pub(super) const ACTIVE: &str = "nginx_connections_active";
    pub(super) const BYTES_IN: &str = "nginx_http_request_bytes_total";
    pub(super) const BYTES_OUT: &str = "nginx_http_response_bytes_total";
    pub(super) const RESPONSES: &str = "nginx_http_responses_total";
}

#[async_trait]
impl TelemetryStore for SeaStore {
    async fn insert_metrics(&self, agent_id: Uuid, batch: &MetricsBatch) -> StorageResult<()> {
        let a = agent::Entity::find_by_id(agent_id)
            .one(&self.db)
            .await
            .map_err(backend)?
            .ok_or(not_found("agent"))?;
        if batch.metrics.is_empty() {
            return Ok(());
        }
        let mut rows = Vec::with_capacity(batch.metrics.len());
        for m in &batch.metrics {
            rows.push(metric_sample::ActiveModel {
                id: sea_orm::ActiveValue::NotSet,
                workspace_id: Set(a.workspace_id),
                agent_id: Set(agent_id),
                name: Set(m.name.clone()),
                value: Set(m.value),
                kind: Set(match m.kind {
                    MetricType::Gauge => "gauge",
                    MetricType::Counter => "counter",
                    MetricType::Histogram => "histogram",
                }
                .to_owned()),
                ts: Set(m.timestamp),
                labels: Set(to_json(&m.labels)?),
            });
        }
        metric_sample::Entity::insert_many(rows)
            .exec(&self.db)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn metrics_summary(
        &self,
        workspace_id: Uuid,
        agent_id: Option<Uuid>,
        query: &MetricsQuery,
    ) -> StorageResult<MetricsSummary> {
        let mut cond = Condition::all()
            .add(metric_sample::Column::WorkspaceId.eq(workspace_id))
            .add(metric_sample::Column::Ts.gte(query.from))
            .add(metric_sample::Column::Ts.lt(query.to));
        if let Some(a) = agent_id {
            cond = cond.add(metric_sample::Column::AgentId.eq(a));
        }
        let rows = metric_sample::Entity::find()
            .filter(cond)
            .order_by_asc(metric_sample::Column::Ts)
            .all(&self.db)
            .await
            .map_err(backend)?;
        Ok(summarize(&rows, query))
    }

    async fn insert_access_logs(&self, entries: &[AccessLogEntry]) -> StorageResult<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut rows = Vec::with_capacity(entries.len());
        for e in entries {
            let a = agent::Entity::find_by_id(e.agent_id)
                .one(&self.db)
                .await
                .map_err(backend)?
                .ok_or(not_found("agent"))?;
            rows.push(access_log::ActiveModel {
                id: Set(e.id),
                workspace_id: Set(a.workspace_id),
                agent_id: Set(e.agent_id),
                ts: Set(e.timestamp),
                remote_addr: Set(e.remote_addr.clone()),
                method: Set(e.method.clone()),
                uri: Set(e.uri.clone()),
                protocol: Set(e.protocol.clone()),
                host: Set(e.host.clone()),
                status: Set(i32::from(e.status)),
                body_bytes_sent: Set(i64::try_from(e.body_bytes_sent).unwrap_or(i64::MAX)),
                response_time_ms: Set(e.response_time_ms),
                user_agent: Set(e.user_agent.clone()),
                referer: Set(e.referer.clone()),
                request_id: Set(e.request_id.clone()),
            });
        }
        access_log::Entity::insert_many(rows)
            .exec(&self.db)
            .await
            .map_err(db_err("access-log entry"))?;
        Ok(())
    }

    async fn query_access_logs(
        &self,
        workspace_id: Uuid,
        query: &AccessLogQuery,
    ) -> StorageResult<AccessLogPage> {
        let mut cond = Condition::all().add(access_log::Column::WorkspaceId.eq(workspace_id));
        if let Some(from) = query.from {
            cond = cond.add(access_log::Column::Ts.gte(from));
        }
        if let Some(to) = query.to {
            cond = cond.add(access_log::Column::Ts.lt(to));
        }
        if let Some(s) = query.status_code {
            cond = cond.add(access_log::Column::Status.eq(i32::from(s)));
        }
        let limit = query.limit.unwrap_or(100);
        let q = access_log::Entity::find().filter(cond);
        let total = q.clone().count(&self.db).await.map_err(backend)?;
        let rows = q
            .order_by_desc(access_log::Column::Ts)
            .order_by_desc(access_log::Column::Id)
            .limit(u64::from(limit))
            .all(&self.db)
            .await
            .map_err(backend)?;
        let data = rows
            .into_iter()
            .map(|r| AccessLogEntry {
                id: r.id,
                agent_id: r.agent_id,
                timestamp: r.ts,
                remote_addr: r.remote_addr,
                method: r.method,
                uri: r.uri,
                protocol: r.protocol,
                host: r.host,
                status: u16::try_from(r.status).unwrap_or(0),
                body_bytes_sent: u64::try_from(r.body_bytes_sent).unwrap_or(0),
                response_time_ms: r.response_time_ms,
                user_agent: r.user_agent,
                referer: r.referer,
                request_id: r.request_id,
            })
            .collect();
        Ok(AccessLogPage {
            data,
            meta: AccessLogMeta { total, limit },
        })
    }
}

/// Aggregates samples into the specification's summary. Counters are
/// cumulative per agent (and label set): the window's total is the last
/// sample minus the first, and a drop (an nginx restart) starts a new run.
fn summarize(rows: &[metric_sample::Model], query: &MetricsQuery) -> MetricsSummary {
    use std::collections::BTreeMap;
    // (agent, name, labels) -> (first, last, increase)
    let mut series: BTreeMap<(Uuid, &str, String), (f64, f64)> = BTreeMap::new();
    let mut active: BTreeMap<Uuid, (Timestamp, f64)> = BTreeMap::new();
    let mut status = StatusCodeCounts::default();
    for r in rows {
        if r.name == metric_names::ACTIVE {
            let e = active.entry(r.agent_id).or_insert((r.ts, r.value));
            if r.ts >= e.0 {
                *e = (r.ts, r.value);
            }
            continue;
        }
        let key = (r.agent_id, r.name.as_str(), r.labels.to_string());
        let e = series.entry(key).or_insert((r.value, 0.0));
        let (last, increase) = *e;
        *e = if r.value >= last {
            (r.value, increase + (r.value - last))
        } else {
            (r.value, increase + r.value)
        };
    }
    let mut summary = MetricsSummary::default();
    for ((_, name, labels), (_, increase)) in &series {
        let n = increase.max(0.0).round() as u64;
        match *name {
            metric_names::REQUESTS => summary.requests_total += n,
            metric_names::BYTES_IN => summary.bandwidth.in_bytes += n,
            metric_names::BYTES_OUT => summary.bandwidth.out_bytes += n,
            metric_names::RESPONSES => {
                let class = serde_json::from_str::<BTreeMap<String, String>>(labels)
                    .ok()
                    .and_then(|l| l.get("status").cloned());
                if let Some(code) = class.and_then(|c| u16::from_str(&c.replace("xx", "00")).ok()) {
                    status.record(code, n);
                }
            }
            _ => {}
        }
    }
    summary.status_codes = status;
    summary.active_connections = active
        .values()
        .map(|(_, v)| v.max(0.0).round() as u64)
        .sum();
    let seconds = (query.to - query.from).num_milliseconds() as f64 / 1000.0;
    if seconds > 0.0 {
        summary.requests_per_second = summary.requests_total as f64 / seconds;
    }
    let responses = status.s2xx + status.s3xx + status.s4xx + status.s5xx;
    if responses > 0 {
        summary.error_rate = status.s5xx as f64 / responses as f64;
    }
    summary
}

// ---- users and members ----

#[async_trait]
impl UserStore for SeaStore {
    async fn create_user(&self, new: &NewUser) -> StorageResult<User> {
        let m = user::ActiveModel {
            id: Set(Uuid::new_v4()),
            email: Set(new.email.to_lowercase()),
            name: Set(new.name.clone()),
            password_hash: Set(new.password_hash.clone()),
            is_admin: Set(new.is_admin),
            created_at: Set(Utc::now()),
        }
        .insert(&self.db)
        .await
        .map_err(db_err("a user with this email"))?;
        Ok(user(m))
    }

    async fn get_user(&self, id: Uuid) -> StorageResult<Option<User>> {
        Ok(user::Entity::find_by_id(id)
            .one(&self.db)
            .await
            .map_err(backend)?
            .map(user))
    }

    async fn user_by_email(&self, email: &str) -> StorageResult<Option<(User, String)>> {
        let m = user::Entity::find()
            .filter(user::Column::Email.eq(email.to_lowercase()))
            .one(&self.db)
            .await
            .map_err(backend)?;
        Ok(m.map(|m| {
            let hash = m.password_hash.clone();
            (user(m), hash)
        }))
    }

    async fn count_users(&self) -> StorageResult<u64> {
        user::Entity::find().count(&self.db).await.map_err(backend)
    }

    async fn delete_user(&self, id: Uuid) -> StorageResult<()> {
        let r = user::Entity::delete_by_id(id)
            .exec(&self.db)
            .await
            .map_err(backend)?;
        if r.rows_affected == 0 {
            Err(not_found("user"))
        } else {
            Ok(())
        }
    }

    async fn set_member(
        &self,
        organization_id: Uuid,
        user_id: Uuid,
        role: Role,
    ) -> StorageResult<Member> {
        let u = user::Entity::find_by_id(user_id)
            .one(&self.db)
            .await
            .map_err(backend)?
            .ok_or(not_found("user"))?;
        // One atomic upsert: concurrent calls for the same membership
        // cannot conflict (PostgreSQL) or deadlock on a lock upgrade (SQLite).
        let backend_kind = self.db.get_database_backend();
        let stmt = Statement::from_sql_and_values(
            backend_kind,
            "INSERT INTO members (organization_id, user_id, role, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (organization_id, user_id) DO UPDATE SET role = excluded.role",
            [
                organization_id.into(),
                user_id.into(),
                role.as_str().into(),
                Utc::now().into(),
            ],
        );
        self.db
            .execute_raw(stmt)
            .await
            .map_err(db_err("membership"))?;
        let m = member::Entity::find_by_id((organization_id, user_id))
            .one(&self.db)
            .await
            .map_err(backend)?
            .ok_or(not_found("member"))?;
        Ok(Member {
            user_id,
            email: u.email,
            name: u.name,
            role,
            created_at: m.created_at,
        })
    }

    async fn member_role(
        &self,
        organization_id: Uuid,
        user_id: Uuid,
    ) -> StorageResult<Option<Role>> {
        let m = member::Entity::find_by_id((organization_id, user_id))
            .one(&self.db)
            .await
            .map_err(backend)?;
        m.map(|m| role(&m.role)).transpose()
    }

    async fn list_members(
        &self,
        organization_id: Uuid,
        page: PageParams,
    ) -> StorageResult<Page<Member>> {
        let q = member::Entity::find().filter(member::Column::OrganizationId.eq(organization_id));
        let total = q.clone().count(&self.db).await.map_err(backend)?;
        let rows = q
            .find_also_related(user::Entity)
            .order_by_asc(member::Column::CreatedAt)
            .order_by_asc(member::Column::UserId)
            .offset(page.offset())
            .limit(u64::from(page.per_page))
            .all(&self.db)
            .await
            .map_err(backend)?;
        let mut data = Vec::with_capacity(rows.len());
        for (m, u) in rows {
            let u = u.ok_or(not_found("user"))?;
            data.push(Member {
                user_id: m.user_id,
                email: u.email,
                name: u.name,
                role: role(&m.role)?,
                created_at: m.created_at,
            });
        }
        Ok(page_of(data, page, total))
    }

    async fn remove_member(&self, organization_id: Uuid, user_id: Uuid) -> StorageResult<()> {
        let r = member::Entity::delete_by_id((organization_id, user_id))
            .exec(&self.db)
            .await
            .map_err(backend)?;
        if r.rows_affected == 0 {
            Err(not_found("member"))
        } else {
            Ok(())
        }
    }

    async fn memberships(&self, user_id: Uuid) -> StorageResult<Vec<(Uuid, Role)>> {
        let rows = member::Entity::find()
            .filter(member::Column::UserId.eq(user_id))
            .all(&self.db)
            .await
            .map_err(backend)?;
        rows.into_iter()
            .map(|m| Ok((m.organization_id, role(&m.role)?)))
            .collect()
    }
}

// ---- sessions ----

#[async_trait]
impl SessionStore for SeaStore {
    async fn insert_refresh_token(
        &self,
        user_id: Uuid,
        family_id: Uuid,
        token_hash: &str,
        expires_at: Timestamp,
    ) -> StorageResult<()> {
        refresh_token::ActiveModel {
            token_hash: Set(token_hash.to_owned()),
            user_id: Set(user_id),
            family_id: Set(family_id),
            used: Set(false),
            revoked: Set(false),
            expires_at: Set(expires_at),
            created_at: Set(Utc::now()),
        }
        .insert(&self.db)
        .await
        .map_err(db_err("refresh token"))?;
        Ok(())
    }

    async fn use_refresh_token(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> StorageResult<RefreshUse> {
        // Consume with one conditional UPDATE so that two concurrent uses
        // cannot both succeed; the loser sees a used token and revokes the
        // family, which is exactly what reuse means.
        let r = refresh_token::Entity::update_many()
            .col_expr(refresh_token::Column::Used, Expr::value(true))
            .filter(refresh_token::Column::TokenHash.eq(token_hash))
            .filter(refresh_token::Column::Used.eq(false))
            .filter(refresh_token::Column::Revoked.eq(false))
            .filter(refresh_token::Column::ExpiresAt.gt(now))
            .exec(&self.db)
            .await
            .map_err(backend)?;
        let Some(m) = refresh_token::Entity::find_by_id(token_hash.to_owned())
            .one(&self.db)
            .await
            .map_err(backend)?
        else {
            return Ok(RefreshUse::Invalid);
        };
        if r.rows_affected == 1 {
            return Ok(RefreshUse::Valid {
                user_id: m.user_id,
                family_id: m.family_id,
            });
        }
        if m.used && !m.revoked {
            self.revoke_refresh_family(m.family_id).await?;
            return Ok(RefreshUse::Reused {
                family_id: m.family_id,
            });
        }
        Ok(RefreshUse::Invalid)
    }

    async fn revoke_refresh_family(&self, family_id: Uuid) -> StorageResult<()> {
        refresh_token::Entity::update_many()
            .col_expr(refresh_token::Column::Revoked, Expr::value(true))
            .filter(refresh_token::Column::FamilyId.eq(family_id))
            .exec(&self.db)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn refresh_family(&self, token_hash: &str) -> StorageResult<Option<Uuid>> {
        let m = refresh_token::Entity::find_by_id(token_hash.to_owned())
            .one(&self.db)
            .await
            .map_err(backend)?;
        Ok(m.map(|m| m.family_id))
    }

    async fn create_api_token(&self, new: &NewApiToken) -> StorageResult<ApiToken> {
        let m = api_token::ActiveModel {
            id: Set(Uuid::new_v4()),
            user_id: Set(new.user_id),
            name: Set(new.name.clone()),
            scopes: Set(to_json(&new.scopes)?),
            token_hash: Set(new.token_hash.clone()),
            expires_at: Set(new.expires_at),
            created_at: Set(Utc::now()),
        }
        .insert(&self.db)
        .await
        .map_err(db_err("API token"))?;
        api_token(m)
    }

    async fn api_token_by_hash(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> StorageResult<Option<(ApiToken, Uuid)>> {
        let m = api_token::Entity::find()
            .filter(api_token::Column::TokenHash.eq(token_hash))
            .one(&self.db)
            .await
            .map_err(backend)?;
        match m {
            Some(m) if m.expires_at.is_none_or(|e| e > now) => {
                let owner = m.user_id;
                Ok(Some((api_token(m)?, owner)))
            }
            _ => Ok(None),
        }
    }

    async fn list_api_tokens(&self, user_id: Uuid) -> StorageResult<Vec<ApiToken>> {
        let rows = api_token::Entity::find()
            .filter(api_token::Column::UserId.eq(user_id))
            .order_by_asc(api_token::Column::CreatedAt)
            .all(&self.db)
            .await
            .map_err(backend)?;
        rows.into_iter().map(api_token).collect()
    }

    async fn revoke_api_token(&self, user_id: Uuid, id: Uuid) -> StorageResult<()> {
        let r = api_token::Entity::delete_many()
            .filter(api_token::Column::Id.eq(id))
            .filter(api_token::Column::UserId.eq(user_id))
            .exec(&self.db)
            .await
            .map_err(backend)?;
        if r.rows_affected == 0 {
            Err(not_found("API token"))
        } else {
            Ok(())
        }
    }
}

// ---- audit ----

#[async_trait]
impl AuditStore for SeaStore {
    async fn record_audit(&self, e: &AuditEntry) -> StorageResult<()> {
        audit::ActiveModel {
            id: Set(e.id),
            organization_id: Set(e.organization_id),
            actor_id: Set(e.actor_id),
            actor: Set(e.actor.clone()),
            action: Set(e.action.clone()),
            target_type: Set(e.target_type.clone()),
            target_id: Set(e.target_id),
            created_at: Set(e.created_at),
        }
        .insert(&self.db)
        .await
        .map_err(db_err("audit entry"))?;
        Ok(())
    }

    async fn list_audit(
        &self,
        organization_id: Uuid,
        page: PageParams,
    ) -> StorageResult<Page<AuditEntry>> {
        let q = audit::Entity::find().filter(audit::Column::OrganizationId.eq(organization_id));
        let total = q.clone().count(&self.db).await.map_err(backend)?;
        let rows = q
            .order_by_desc(audit::Column::CreatedAt)
            .order_by_desc(audit::Column::Id)
            .offset(page.offset())
            .limit(u64::from(page.per_page))
            .all(&self.db)
            .await
            .map_err(backend)?;
        let data = rows
            .into_iter()
            .map(|m| {
                let audit::Model {
                    id,
                    organization_id,
                    actor_id,
                    actor,
                    action,
                    target_type,
                    target_id,
                    created_at,
                } = m;
                AuditEntry {
                    id,
                    organization_id,
                    actor_id,
                    actor,
                    action,
                    target_type,
                    target_id,
                    created_at,
                }
            })
            .collect();
        Ok(page_of(data, page, total))
    }
}

// ---- ledger ----

fn ledger_row(m: agent_config::Model) -> Result<AgentConfigState, StorageError> {
    let agent_config::Model {
        agent_id,
        desired_version,
        applied_version,
        last_status,
        last_error,
        applied_at,
        config_checksum,
        updated_at: _,
    } = m;
    Ok(AgentConfigState {
        agent_id,
        desired_version,
        applied_version,
        last_status: last_status.as_deref().map(parse_enum).transpose()?,
        last_error,
        applied_at,
        config_checksum,
    })
}

#[async_trait]
impl LedgerStore for SeaStore {
    async fn bump_desired_versions(&self, agent_ids: &[Uuid]) -> StorageResult<Vec<(Uuid, i64)>> {
        let backend = self.db.get_database_backend();
        let txn = self.db.begin().await.map_err(backend_err)?;
        // A row may appear once per statement (PostgreSQL refuses to
        // update one row twice in an upsert): each id once, in the order
        // given, which is also the order of the answer.
        let mut seen = std::collections::HashSet::with_capacity(agent_ids.len());
        let ids: Vec<Uuid> = agent_ids
            .iter()
            .copied()
            .filter(|id| seen.insert(*id))
            .collect();
        let mut bumped = std::collections::HashMap::with_capacity(ids.len());
        let now = Utc::now();
        // One multi-row upsert per chunk (insert at 1 or increment), then
        // the versions read back in the same transaction, one row per
        // version rather than per agent: concurrent bumps never lose a
        // version, and thousands of agents cost a few rows.
        let select = match backend {
            DbBackend::Postgres => "desired_version, json_agg(agent_id)::text AS ids",
            _ => "desired_version, json_group_array(hex(agent_id)) AS ids",
        };
        for chunk in ids.chunks(IN_CHUNK) {
            let mut sql = String::from(
                "INSERT INTO agent_config (agent_id, desired_version, applied_version, updated_at) VALUES ",
            );
            let mut b = Binds::new(backend, chunk.len() * 2);
            for (i, id) in chunk.iter().enumerate() {
                if i > 0 {
                    sql.push_str(", ");
                }
                let row = format!("({}, 1, 0, {})", b.bind(*id), b.bind(now));
                sql.push_str(&row);
            }
            sql.push_str(
                " ON CONFLICT (agent_id) DO UPDATE SET desired_version = agent_config.desired_version + 1, \
                 updated_at = excluded.updated_at",
            );
            txn.execute_raw(b.statement(sql))
                .await
                .map_err(db_err("ledger row"))?;
            let mut b = Binds::new(backend, chunk.len());
            let list = in_list(&mut b, chunk);
            let sql = format!(
                "SELECT {select} FROM agent_config WHERE agent_id IN ({list}) GROUP BY desired_version"
            );
            let rows = txn
                .query_all_raw(b.statement(sql))
                .await
                .map_err(backend_err)?;
            let before = bumped.len();
            for row in rows {
                let v: i64 = row.try_get("", "desired_version").map_err(backend_err)?;
                let agents: String = row.try_get("", "ids").map_err(backend_err)?;
                for id in from_json_text::<Vec<Uuid>>(&agents)? {
                    bumped.insert(id, v);
                }
            }
            if bumped.len() - before != chunk.len() {
                return Err(not_found("agent"));
            }
        }
        txn.commit().await.map_err(backend_err)?;
        ids.into_iter()
            .map(|id| bumped.get(&id).map(|v| (id, *v)).ok_or(not_found("agent")))
            .collect()
    }

    async fn record_config_status(
        &self,
        agent_id: Uuid,
        status: &ConfigStatus,
    ) -> StorageResult<AgentConfigState> {
        // No transaction: see `status_statements`.
        for statement in status_statements(self.db.get_database_backend(), agent_id, status) {
            self.db
                .execute_raw(statement)
                .await
                .map_err(db_err("ledger row"))?;
        }
        self.agent_ledger(agent_id).await
    }

    async fn record_config_statuses(
        &self,
        reports: &[(Uuid, ConfigStatus)],
    ) -> StorageResult<Vec<AgentConfigState>> {
        if reports.is_empty() {
            return Ok(Vec::new());
        }
        // One transaction for the whole batch: one commit (one sync of the
        // SQLite journal) instead of two per report. It writes first, so it
        // holds SQLite's write lock from its first statement. Successes,
        // nearly every report, are one multi-row upsert per chunk; the
        // rest two statements each.
        let backend_kind = self.db.get_database_backend();
        let now = Utc::now();
        let txn = self.db.begin().await.map_err(backend_err)?;
        for round in rounds(reports.iter().map(|(id, st)| (*id, st))) {
            let (successes, others): (Vec<_>, Vec<_>) = round
                .into_iter()
                .partition(|(_, st)| st.status == ConfigApplyStatus::Success);
            for chunk in successes.chunks(IN_CHUNK) {
                txn.execute_raw(successes_upsert(backend_kind, now, chunk))
                    .await
                    .map_err(db_err("ledger row"))?;
            }
            for (agent_id, status) in others {
                for statement in status_statements(backend_kind, agent_id, status) {
                    txn.execute_raw(statement)
                        .await
                        .map_err(db_err("ledger row"))?;
                }
            }
        }
        let mut ids: Vec<Uuid> = reports.iter().map(|(id, _)| *id).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut rows = std::collections::HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(IN_CHUNK) {
            for m in agent_config::Entity::find()
                .filter(agent_config::Column::AgentId.is_in(chunk.iter().copied()))
                .all(&txn)
                .await
                .map_err(backend_err)?
            {
                rows.insert(m.agent_id, ledger_row(m)?);
            }
        }
        txn.commit().await.map_err(backend_err)?;
        Ok(reports
            .iter()
            .map(|(id, _)| {
                rows.get(id)
                    .cloned()
                    .unwrap_or_else(|| AgentConfigState::new(*id))
            })
            .collect())
    }

    async fn agent_ledger(&self, agent_id: Uuid) -> StorageResult<AgentConfigState> {
        match agent_config::Entity::find_by_id(agent_id)
            .one(&self.db)
            .await
            .map_err(backend_err)?
        {
            Some(m) => ledger_row(m),
            None => Ok(AgentConfigState::new(agent_id)),
        }
    }

    async fn workspace_ledger(&self, workspace_id: Uuid) -> StorageResult<Vec<AgentConfigState>> {
        let agents = agent::Entity::find()
            .filter(agent::Column::WorkspaceId.eq(workspace_id))
            .order_by_asc(agent::Column::CreatedAt)
            .order_by_asc(agent::Column::Id)
            .all(&self.db)
            .await
            .map_err(backend_err)?;
        let ids: Vec<Uuid> = agents.iter().map(|a| a.id).collect();
        let rows = agent_config::Entity::find()
            .filter(agent_config::Column::AgentId.is_in(ids.iter().copied()))
            .all(&self.db)
            .await
            .map_err(backend_err)?;
        let mut by_id: std::collections::HashMap<Uuid, agent_config::Model> =
            rows.into_iter().map(|r| (r.agent_id, r)).collect();
        ids.into_iter()
            .map(|id| {
                by_id
                    .remove(&id)
                    .map_or(Ok(AgentConfigState::new(id)), ledger_row)
            })
            .collect()
    }
}

/// The statements recording `status` for `agent_id`. A success is one
/// upsert ([`successes_upsert`]); anything else makes sure the ledger row
/// exists, then updates it. Each statement is atomic on its own, so they
/// need no transaction that reads and then writes (which SQLite refuses,
/// busy, when another writer commits in between). The `WHERE` keeps the
/// applied version from going back: a late report about an older version
/// changes nothing.
fn status_statements(
    backend_kind: DbBackend,
    agent_id: Uuid,
    status: &ConfigStatus,
) -> Vec<Statement> {
    let now = Utc::now();
    if status.status == ConfigApplyStatus::Success {
        return vec![successes_upsert(backend_kind, now, &[(agent_id, status)])];
    }
    let ensure = Statement::from_sql_and_values(
        backend_kind,
        "INSERT INTO agent_config (agent_id, desired_version, applied_version, updated_at) VALUES ($1, 0, 0, $2) \
             ON CONFLICT (agent_id) DO NOTHING",
        [agent_id.into(), now.into()],
    );
    let state = enum_str(&status.status);
    let update = match status.status {
        ConfigApplyStatus::Failed | ConfigApplyStatus::RolledBack => {
            Statement::from_sql_and_values(
                backend_kind,
                "UPDATE agent_config SET last_status = $1, last_error = $2, updated_at = $3 \
                 WHERE agent_id = $4 AND applied_version <= $5",
                [
                    state.into(),
                    status.error_message.clone().into(),
                    now.into(),
                    agent_id.into(),
                    status.version.into(),
                ],
            )
        }
        _ => Statement::from_sql_and_values(
            backend_kind,
            "UPDATE agent_config SET last_status = $1, updated_at = $2 WHERE agent_id = $3 AND applied_version <= $4",
            [
                state.into(),
                now.into(),
                agent_id.into(),
                status.version.into(),
            ],
        ),
    };
    vec![ensure, update]
}

/// The values of a statement written by hand, one per placeholder: `?`
/// on SQLite, `$N` on PostgreSQL. SQLite binds anonymous `?` in order,
/// where it looks each named `$N` up in a list, which is quadratic in a
/// multi-row statement of thousands of values.
struct Binds {
    backend: DbBackend,
    values: Vec<sea_orm::Value>,
}

impl Binds {
    fn new(backend: DbBackend, capacity: usize) -> Binds {
        Binds {
            backend,
            values: Vec::with_capacity(capacity),
        }
    }

    /// Adds `value` and returns its placeholder.
    fn bind(&mut self, value: impl Into<sea_orm::Value>) -> String {
        self.values.push(value.into());
        match self.backend {
            DbBackend::Postgres => format!("${}", self.values.len()),
            _ => "?".to_owned(),
        }
    }

    fn statement(self, sql: String) -> Statement {
        Statement::from_sql_and_values(self.backend, sql, self.values)
    }
}

/// `ids` bound one by one, as the inside of `IN (…)`.
fn in_list(b: &mut Binds, ids: &[Uuid]) -> String {
    let mut list = String::with_capacity(ids.len() * 4);
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            list.push_str(", ");
        }
        list.push_str(&b.bind(*id));
    }
    list
}

/// A value the database built or stored as JSON text.
fn from_json_text<T: serde::de::DeserializeOwned>(text: &str) -> StorageResult<T> {
    serde_json::from_str(text).map_err(|e| StorageError::Backend(Box::new(e)))
}

/// `items` split into rounds in which every key appears at most once,
/// each key's items in their order across the rounds: one multi-row
/// statement may touch a row only once (PostgreSQL refuses more), and a
/// later report about the same agent must be written after an earlier one.
fn rounds<'a, T>(items: impl Iterator<Item = (Uuid, &'a T)>) -> Vec<Vec<(Uuid, &'a T)>> {
    let mut rounds: Vec<Vec<(Uuid, &'a T)>> = Vec::new();
    let mut seen: std::collections::HashMap<Uuid, usize> = std::collections::HashMap::new();
    for (key, item) in items {
        let n = seen.entry(key).or_insert(0);
        if rounds.len() == *n {
            rounds.push(Vec::new());
        }
        rounds[*n].push((key, item));
        *n += 1;
    }
    rounds
}

/// The ledger rows of successful applies (distinct agents): a missing row
/// is created, and a row already past the version is left alone.
fn successes_upsert(
    backend_kind: DbBackend,
    now: Timestamp,
    reports: &[(Uuid, &ConfigStatus)],
) -> Statement {
    let mut sql = String::from(
        "INSERT INTO agent_config (agent_id, desired_version, applied_version, last_status, \
         last_error, config_checksum, applied_at, updated_at) VALUES ",
    );
    let mut b = Binds::new(backend_kind, reports.len() * 6);
    let success = enum_str(&ConfigApplyStatus::Success);
    for (i, (agent_id, status)) in reports.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        let row = format!(
            "({}, 0, {}, {}, NULL, {}, {}, {})",
            b.bind(*agent_id),
            b.bind(status.version),
            b.bind(success.clone()),
            b.bind(status.config_checksum.clone()),
            b.bind(status.applied_at.unwrap_or(now)),
            b.bind(now)
        );
        sql.push_str(&row);
    }
    // A confirmation of the version already applied keeps its original
    // time (every expression reads the old row).
    sql.push_str(
        " ON CONFLICT (agent_id) DO UPDATE SET last_status = excluded.last_status, \
         last_error = NULL, config_checksum = excluded.config_checksum, \
         applied_at = CASE WHEN agent_config.applied_version < excluded.applied_version \
         OR agent_config.applied_at IS NULL THEN excluded.applied_at ELSE agent_config.applied_at END, \
         applied_version = excluded.applied_version, updated_at = excluded.updated_at \
         WHERE agent_config.applied_version <= excluded.applied_version",
    );
    b.statement(sql)
}

/// The update recording the observed states of distinct agents (health
/// kept when a record has none), returning the ids of the agents that
/// exist.
fn agent_states_update(
    backend_kind: DbBackend,
    records: &[(Uuid, &AgentStateRecord)],
) -> StorageResult<Statement> {
    // PostgreSQL binds JSON as `jsonb`; the column is `json`.
    let health = match backend_kind {
        DbBackend::Postgres => "v.column4::json",
        _ => "v.column4",
    };
    let mut sql = format!(
        "UPDATE agents SET state = v.column2, last_seen_at = v.column3, \
         health = COALESCE({health}, agents.health) FROM (VALUES "
    );
    let mut b = Binds::new(backend_kind, records.len() * 4);
    for (i, (agent_id, r)) in records.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        let health =
            sea_orm::Value::Json(r.health.as_ref().map(to_json).transpose()?.map(Box::new));
        let row = format!(
            "({}, {}, {}, {})",
            b.bind(*agent_id),
            b.bind(enum_str(&r.state)),
            b.bind(r.seen_at),
            b.bind(health)
        );
        sql.push_str(&row);
    }
    sql.push_str(") AS v WHERE agents.id = v.column1 RETURNING id");
    Ok(b.statement(sql))
}
