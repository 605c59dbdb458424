//! Schema migrations, run at startup before anything else touches the
//! database.
//!
//! `m0001_initial` creates every table from the entities as they were when it
//! was written; later schema changes are new migrations with explicit
//! statements, never edits of this one.

use sea_orm::{EntityTrait, Schema};
use sea_orm_migration::prelude::*;

use super::entities::*;

/// The migrations, in order.
pub(crate) struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(M0001Initial),
            Box::new(M0002AgentConfig),
            Box::new(M0003Acme),
            Box::new(M0004Cluster),
        ]
    }
}

struct M0001Initial;

impl MigrationName for M0001Initial {
    fn name(&self) -> &str {
        "m0001_initial"
    }
}

async fn create<E: EntityTrait>(
    manager: &SchemaManager<'_>,
    schema: &Schema,
    entity: E,
) -> Result<(), DbErr> {
    manager
        .create_table(schema.create_table_from_entity(entity))
        .await?;
    for index in schema.create_index_from_entity(entity) {
        manager.create_index(index).await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for M0001Initial {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let schema = Schema::new(manager.get_database_backend());
        // Parents before children, for the foreign keys.
        create(manager, &schema, user::Entity).await?;
        create(manager, &schema, organization::Entity).await?;
        create(manager, &schema, member::Entity).await?;
        create(manager, &schema, workspace::Entity).await?;
        create(manager, &schema, agent::Entity).await?;
        create(manager, &schema, virtual_host::Entity).await?;
        create(manager, &schema, upstream::Entity).await?;
        create(manager, &schema, certificate::Entity).await?;
        create(manager, &schema, refresh_token::Entity).await?;
        create(manager, &schema, api_token::Entity).await?;
        create(manager, &schema, audit::Entity).await?;
        create(manager, &schema, metric_sample::Entity).await?;
        create(manager, &schema, access_log::Entity).await?;
        Ok(())
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        Err(DbErr::Migration("m0001_initial cannot be reverted".into()))
    }
}

/// The per-agent configuration ledger.
struct M0002AgentConfig;

impl MigrationName for M0002AgentConfig {
    fn name(&self) -> &str {
        "m0002_agent_config"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0002AgentConfig {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let schema = Schema::new(manager.get_database_backend());
        create(manager, &schema, agent_config::Entity).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(agent_config::Entity).to_owned())
            .await
    }
}

/// ACME accounts, renewal state (with the lease that keeps two masters from
/// running one renewal) and pending HTTP-01 challenges.
struct M0003Acme;

impl MigrationName for M0003Acme {
    fn name(&self) -> &str {
        "m0003_acme"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0003Acme {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let schema = Schema::new(manager.get_database_backend());
        create(manager, &schema, acme_account::Entity).await?;
        create(manager, &schema, acme_renewal::Entity).await?;
        create(manager, &schema, acme_challenge::Entity).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(acme_challenge::Entity).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(acme_renewal::Entity).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(acme_account::Entity).to_owned())
            .await
    }
}

/// What several masters on one PostgreSQL share beyond the model: the log
/// they follow (`cluster_log`) and the agents' presence leases
/// (`agent_presence`). See `crate::cluster`. SQLite serves one master, so
/// it gets neither.
struct M0004Cluster;

impl MigrationName for M0004Cluster {
    fn name(&self) -> &str {
        "m0004_cluster"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0004Cluster {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != sea_orm::DbBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE TABLE cluster_log (
                id BIGSERIAL PRIMARY KEY,
                origin UUID NOT NULL,
                kind TEXT NOT NULL,
                payload TEXT NOT NULL,
                created_at TIMESTAMPTZ NOT NULL DEFAULT now()
            )",
        )
        .await?;
        db.execute_unprepared("CREATE INDEX cluster_log_created_at ON cluster_log (created_at)")
            .await?;
        db.execute_unprepared(
            "CREATE TABLE agent_presence (
                agent_id UUID PRIMARY KEY REFERENCES agents (id) ON DELETE CASCADE,
                master_id UUID NOT NULL,
                session_id UUID NOT NULL,
                expires_at TIMESTAMPTZ NOT NULL
            )",
        )
        .await?;
        db.execute_unprepared(
            "CREATE INDEX agent_presence_expires_at ON agent_presence (expires_at)",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != sea_orm::DbBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        db.execute_unprepared("DROP TABLE agent_presence").await?;
        db.execute_unprepared("DROP TABLE cluster_log").await?;
        Ok(())
    }
}
