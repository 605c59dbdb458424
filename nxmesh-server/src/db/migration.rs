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
        vec![Box::new(M0001Initial), Box::new(M0002AgentConfig)]
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
