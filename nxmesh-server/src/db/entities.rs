//! sea-orm entities: the tables of the master. They never leave the `db`
//! module; `db::store` maps them to core models at its edge.
//!
//! JSON columns hold structured values that are always read and written as
//! a whole (a virtual host's spec, an agent's labels); everything queried or
//! constrained on is a column of its own.

#![allow(missing_docs, unreachable_pub)]

pub mod user {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "users")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        #[sea_orm(unique)]
        pub email: String,
        pub name: String,
        pub password_hash: String,
        pub is_admin: bool,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod organization {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "organizations")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub name: String,
        #[sea_orm(unique)]
        pub slug: String,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod member {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "members")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub organization_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: Uuid,
        pub role: String,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(
            belongs_to = "super::organization::Entity",
            from = "Column::OrganizationId",
            to = "super::organization::Column::Id",
            on_delete = "Cascade"
        )]
        Organization,
        #[sea_orm(
            belongs_to = "super::user::Entity",
            from = "Column::UserId",
            to = "super::user::Column::Id",
            on_delete = "Cascade"
        )]
        User,
    }

    impl Related<super::user::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::User.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod workspace {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "workspaces")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        #[sea_orm(unique_key = "workspace_slug", indexed)]
        pub organization_id: Uuid,
        pub name: String,
        #[sea_orm(unique_key = "workspace_slug")]
        pub slug: String,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(
            belongs_to = "super::organization::Entity",
            from = "Column::OrganizationId",
            to = "super::organization::Column::Id",
            on_delete = "Cascade"
        )]
        Organization,
    }

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod agent {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "agents")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        #[sea_orm(indexed)]
        pub workspace_id: Uuid,
        pub name: String,
        pub labels: Json,
        pub hostname: Option<String>,
        pub ip_address: Option<String>,
        pub version: Option<String>,
        pub state: String,
        pub deployment_mode: Option<String>,
        pub last_seen_at: Option<DateTimeUtc>,
        pub capabilities: Json,
        pub health: Option<Json>,
        #[sea_orm(unique)]
        pub token_hash: Option<String>,
        pub token_expires_at: DateTimeUtc,
        #[sea_orm(unique)]
        pub credential_hash: Option<String>,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(
            belongs_to = "super::workspace::Entity",
            from = "Column::WorkspaceId",
            to = "super::workspace::Column::Id",
            on_delete = "Cascade"
        )]
        Workspace,
    }

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod virtual_host {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "virtual_hosts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        #[sea_orm(unique_key = "virtual_host_name", indexed)]
        pub workspace_id: Uuid,
        #[sea_orm(unique_key = "virtual_host_name")]
        pub name: String,
        pub spec: Json,
        pub target: Json,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(
            belongs_to = "super::workspace::Entity",
            from = "Column::WorkspaceId",
            to = "super::workspace::Column::Id",
            on_delete = "Cascade"
        )]
        Workspace,
    }

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod upstream {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "upstreams")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        #[sea_orm(unique_key = "upstream_name", indexed)]
        pub workspace_id: Uuid,
        #[sea_orm(unique_key = "upstream_name")]
        pub name: String,
        pub spec: Json,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(
            belongs_to = "super::workspace::Entity",
            from = "Column::WorkspaceId",
            to = "super::workspace::Column::Id",
            on_delete = "Cascade"
        )]
        Workspace,
    }

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod certificate {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "certificates")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        #[sea_orm(indexed)]
        pub workspace_id: Uuid,
        pub domain: String,
        pub is_wildcard: bool,
        pub provider: String,
        pub status: String,
        pub auto_renew: bool,
        pub certificate_pem: Option<String>,
        pub encrypted_key: Option<Vec<u8>>,
        pub issued_at: Option<DateTimeUtc>,
        pub expires_at: Option<DateTimeUtc>,
        pub last_error: Option<String>,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(
            belongs_to = "super::workspace::Entity",
            from = "Column::WorkspaceId",
            to = "super::workspace::Column::Id",
            on_delete = "Cascade"
        )]
        Workspace,
    }

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod refresh_token {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "refresh_tokens")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub token_hash: String,
        #[sea_orm(indexed)]
        pub user_id: Uuid,
        #[sea_orm(indexed)]
        pub family_id: Uuid,
        pub used: bool,
        pub revoked: bool,
        pub expires_at: DateTimeUtc,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(
            belongs_to = "super::user::Entity",
            from = "Column::UserId",
            to = "super::user::Column::Id",
            on_delete = "Cascade"
        )]
        User,
    }

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod api_token {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "api_tokens")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        #[sea_orm(indexed)]
        pub user_id: Uuid,
        pub name: String,
        pub scopes: Json,
        #[sea_orm(unique)]
        pub token_hash: String,
        pub expires_at: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(
            belongs_to = "super::user::Entity",
            from = "Column::UserId",
            to = "super::user::Column::Id",
            on_delete = "Cascade"
        )]
        User,
    }

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod audit {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_log")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        #[sea_orm(indexed)]
        pub organization_id: Uuid,
        pub actor_id: Option<Uuid>,
        pub actor: String,
        pub action: String,
        pub target_type: String,
        pub target_id: Option<Uuid>,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(
            belongs_to = "super::organization::Entity",
            from = "Column::OrganizationId",
            to = "super::organization::Column::Id",
            on_delete = "Cascade"
        )]
        Organization,
    }

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod metric_sample {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "metric_samples")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        #[sea_orm(indexed)]
        pub workspace_id: Uuid,
        #[sea_orm(indexed)]
        pub agent_id: Uuid,
        pub name: String,
        pub value: f64,
        pub kind: String,
        #[sea_orm(indexed)]
        pub ts: DateTimeUtc,
        pub labels: Json,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(
            belongs_to = "super::agent::Entity",
            from = "Column::AgentId",
            to = "super::agent::Column::Id",
            on_delete = "Cascade"
        )]
        Agent,
    }

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod access_log {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "access_logs")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        #[sea_orm(indexed)]
        pub workspace_id: Uuid,
        pub agent_id: Uuid,
        #[sea_orm(indexed)]
        pub ts: DateTimeUtc,
        pub remote_addr: String,
        pub method: String,
        pub uri: String,
        pub protocol: String,
        pub host: String,
        pub status: i32,
        pub body_bytes_sent: i64,
        pub response_time_ms: f64,
        pub user_agent: Option<String>,
        pub referer: Option<String>,
        pub request_id: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(
            belongs_to = "super::agent::Entity",
            from = "Column::AgentId",
            to = "super::agent::Column::Id",
            on_delete = "Cascade"
        )]
        Agent,
    }

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod agent_config {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "agent_config")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub agent_id: Uuid,
        pub desired_version: i64,
        pub applied_version: i64,
        pub last_status: Option<String>,
        pub last_error: Option<String>,
        pub applied_at: Option<DateTimeUtc>,
        pub config_checksum: Option<String>,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(
            belongs_to = "super::agent::Entity",
            from = "Column::AgentId",
            to = "super::agent::Column::Id",
            on_delete = "Cascade"
        )]
        Agent,
    }

    impl ActiveModelBehavior for ActiveModel {}
}

/// One ACME account per workspace and directory; its credentials (account
/// URL and private key) are sealed.
pub mod acme_account {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "acme_accounts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub workspace_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub directory_url: String,
        pub account_url: String,
        pub encrypted_credentials: Vec<u8>,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(
            belongs_to = "super::workspace::Entity",
            from = "Column::WorkspaceId",
            to = "super::workspace::Column::Id",
            on_delete = "Cascade"
        )]
        Workspace,
    }

    impl ActiveModelBehavior for ActiveModel {}
}

/// Issuance and renewal state of one ACME certificate: when the next
/// attempt is due, the failures so far, the order in progress, and the
/// lease of the master running it.
pub mod acme_renewal {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "acme_renewals")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub certificate_id: Uuid,
        #[sea_orm(indexed)]
        pub next_attempt_at: DateTimeUtc,
        pub failures: i32,
        pub last_error: Option<String>,
        pub forced: bool,
        pub order_url: Option<String>,
        pub lease_owner: Option<String>,
        pub lease_until: Option<DateTimeUtc>,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(
            belongs_to = "super::certificate::Entity",
            from = "Column::CertificateId",
            to = "super::certificate::Column::Id",
            on_delete = "Cascade"
        )]
        Certificate,
    }

    impl ActiveModelBehavior for ActiveModel {}
}

/// HTTP-01 challenges the agents of a workspace answer while an order is
/// validated.
pub mod acme_challenge {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "acme_challenges")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub token: String,
        #[sea_orm(indexed)]
        pub certificate_id: Uuid,
        #[sea_orm(indexed)]
        pub workspace_id: Uuid,
        pub domain: String,
        pub key_authorization: String,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(
            belongs_to = "super::certificate::Entity",
            from = "Column::CertificateId",
            to = "super::certificate::Column::Id",
            on_delete = "Cascade"
        )]
        Certificate,
    }

    impl ActiveModelBehavior for ActiveModel {}
}
