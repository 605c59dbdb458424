//! [`AcmeStore`] over sea-orm: ACME accounts (sealed credentials), renewal
//! state with its lease, pending HTTP-01 challenges, and new certificate
//! material.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use nxmesh_core::config::AcmeChallenge;
use nxmesh_core::model::{CertificateProvider, CertificateStatus};
use nxmesh_core::storage::{StorageError, StorageResult};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, DatabaseConnection, DbErr,
    EntityTrait, QueryFilter, QuerySelect, TransactionTrait,
};
use uuid::Uuid;

use super::SeaStore;
use super::entities::{acme_account, acme_challenge, acme_renewal, certificate};
use crate::acme::store::{AcmeStore, NewMaterial, RenewalState};
use crate::secrets::SecretBox;

fn backend(e: DbErr) -> StorageError {
    match e {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => StorageError::Unavailable(Box::new(e)),
        other => StorageError::Backend(Box::new(other)),
    }
}

fn status_str(s: CertificateStatus) -> String {
    match serde_json::to_value(s) {
        Ok(serde_json::Value::String(s)) => s,
        other => unreachable!("unit enums serialize to strings, got {other:?}"),
    }
}

fn provider_str(p: CertificateProvider) -> String {
    match serde_json::to_value(p) {
        Ok(serde_json::Value::String(s)) => s,
        other => unreachable!("unit enums serialize to strings, got {other:?}"),
    }
}

/// The HTTP-01 challenges of a workspace, oldest first.
pub(super) async fn http_challenges(
    db: &DatabaseConnection,
    workspace: Uuid,
) -> StorageResult<Vec<AcmeChallenge>> {
    use sea_orm::QueryOrder as _;
    let rows = acme_challenge::Entity::find()
        .filter(acme_challenge::Column::WorkspaceId.eq(workspace))
        .order_by_asc(acme_challenge::Column::CreatedAt)
        .order_by_asc(acme_challenge::Column::Token)
        .all(db)
        .await
        .map_err(backend)?;
    Ok(rows
        .into_iter()
        .map(|m| AcmeChallenge {
            domain: m.domain,
            token: m.token,
            key_authorization: m.key_authorization,
        })
        .collect())
}

#[async_trait]
impl AcmeStore for SeaStore {
    async fn acme_account(
        &self,
        workspace: Uuid,
        directory: &str,
    ) -> StorageResult<Option<Vec<u8>>> {
        Ok(
            acme_account::Entity::find_by_id((workspace, directory.to_owned()))
                .one(&self.db)
                .await
                .map_err(backend)?
                .map(|m| m.encrypted_credentials),
        )
    }

    async fn save_acme_account(
        &self,
        workspace: Uuid,
        directory: &str,
        account_url: &str,
        sealed: &[u8],
    ) -> StorageResult<()> {
        let txn = self.db.begin().await.map_err(backend)?;
        acme_account::Entity::delete_by_id((workspace, directory.to_owned()))
            .exec(&txn)
            .await
            .map_err(backend)?;
        acme_account::ActiveModel {
            workspace_id: Set(workspace),
            directory_url: Set(directory.to_owned()),
            account_url: Set(account_url.to_owned()),
            encrypted_credentials: Set(sealed.to_vec()),
            created_at: Set(Utc::now()),
        }
        .insert(&txn)
        .await
        .map_err(backend)?;
        txn.commit().await.map_err(backend)
    }

    async fn schedule_renewal(
        &self,
        certificate: Uuid,
        at: DateTime<Utc>,
        forced: bool,
    ) -> StorageResult<()> {
        let txn = self.db.begin().await.map_err(backend)?;
        let existing = acme_renewal::Entity::find_by_id(certificate)
            .one(&txn)
            .await
            .map_err(backend)?;
        match existing {
            Some(m) => {
                let mut am: acme_renewal::ActiveModel = m.into();
                am.next_attempt_at = Set(at);
                am.forced = Set(forced);
                am.updated_at = Set(Utc::now());
                am.update(&txn).await.map_err(backend)?;
            }
            None => {
                acme_renewal::ActiveModel {
                    certificate_id: Set(certificate),
                    next_attempt_at: Set(at),
                    failures: Set(0),
                    last_error: Set(None),
                    forced: Set(forced),
                    order_url: Set(None),
                    lease_owner: Set(None),
                    lease_until: Set(None),
                    updated_at: Set(Utc::now()),
                }
                .insert(&txn)
                .await
                .map_err(|e| match e.sql_err() {
                    Some(sea_orm::SqlErr::ForeignKeyConstraintViolation(_)) => {
                        StorageError::NotFound {
                            what: "certificate",
                        }
                    }
                    _ => backend(e),
                })?;
            }
        }
        txn.commit().await.map_err(backend)
    }

    async fn renewal_state(&self, certificate: Uuid) -> StorageResult<Option<RenewalState>> {
        Ok(acme_renewal::Entity::find_by_id(certificate)
            .one(&self.db)
            .await
            .map_err(backend)?
            .map(|m| RenewalState {
                next_attempt_at: m.next_attempt_at,
                failures: u32::try_from(m.failures).unwrap_or(0),
                last_error: m.last_error,
                forced: m.forced,
            }))
    }

    async fn due_certificates(&self, now: DateTime<Utc>) -> StorageResult<Vec<Uuid>> {
        let mut due: Vec<Uuid> = acme_renewal::Entity::find()
            .select_only()
            .column(acme_renewal::Column::CertificateId)
            .filter(acme_renewal::Column::NextAttemptAt.lte(now))
            .filter(
                Condition::any()
                    .add(acme_renewal::Column::LeaseUntil.is_null())
                    .add(acme_renewal::Column::LeaseUntil.lt(now)),
            )
            .into_tuple()
            .all(&self.db)
            .await
            .map_err(backend)?;
        let pending: Vec<Uuid> = certificate::Entity::find()
            .select_only()
            .column(certificate::Column::Id)
            .filter(
                certificate::Column::Provider.eq(provider_str(CertificateProvider::Letsencrypt)),
            )
            .filter(certificate::Column::Status.eq(status_str(CertificateStatus::Pending)))
            .into_tuple()
            .all(&self.db)
            .await
            .map_err(backend)?;
        let with_state: Vec<Uuid> = acme_renewal::Entity::find()
            .select_only()
            .column(acme_renewal::Column::CertificateId)
            .filter(acme_renewal::Column::CertificateId.is_in(pending.clone()))
            .into_tuple()
            .all(&self.db)
            .await
            .map_err(backend)?;
        due.extend(pending.into_iter().filter(|id| !with_state.contains(id)));
        due.sort();
        due.dedup();
        Ok(due)
    }

    async fn try_lease(
        &self,
        certificate: Uuid,
        owner: &str,
        until: DateTime<Utc>,
    ) -> StorageResult<bool> {
        let now = Utc::now();
        // A certificate without renewal state (pending since before ACME
        // was configured) gets one first, so that it can be leased.
        let exists = acme_renewal::Entity::find_by_id(certificate)
            .one(&self.db)
            .await
            .map_err(backend)?
            .is_some();
        if !exists {
            let inserted = acme_renewal::ActiveModel {
                certificate_id: Set(certificate),
                next_attempt_at: Set(now),
                failures: Set(0),
                last_error: Set(None),
                forced: Set(false),
                order_url: Set(None),
                lease_owner: Set(None),
                lease_until: Set(None),
                updated_at: Set(now),
            }
            .insert(&self.db)
            .await;
            // Another master may have inserted it first: the update below
            // decides who holds the lease either way.
            if let Err(e) = inserted
                && !matches!(
                    e.sql_err(),
                    Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
                )
            {
                return Err(backend(e));
            }
        }
        let r = acme_renewal::Entity::update_many()
            .col_expr(acme_renewal::Column::LeaseOwner, Expr::value(owner))
            .col_expr(acme_renewal::Column::LeaseUntil, Expr::value(until))
            .col_expr(acme_renewal::Column::UpdatedAt, Expr::value(now))
            .filter(acme_renewal::Column::CertificateId.eq(certificate))
            .filter(
                Condition::any()
                    .add(acme_renewal::Column::LeaseUntil.is_null())
                    .add(acme_renewal::Column::LeaseUntil.lt(now))
                    .add(acme_renewal::Column::LeaseOwner.eq(owner)),
            )
            .exec(&self.db)
            .await
            .map_err(backend)?;
        Ok(r.rows_affected == 1)
    }

    async fn finish_attempt(
        &self,
        certificate: Uuid,
        next_attempt_at: DateTime<Utc>,
        failures: u32,
        error: Option<&str>,
    ) -> StorageResult<()> {
        acme_renewal::Entity::update_many()
            .col_expr(
                acme_renewal::Column::NextAttemptAt,
                Expr::value(next_attempt_at),
            )
            .col_expr(
                acme_renewal::Column::Failures,
                Expr::value(i32::try_from(failures).unwrap_or(i32::MAX)),
            )
            .col_expr(
                acme_renewal::Column::LastError,
                Expr::value(error.map(str::to_owned)),
            )
            .col_expr(acme_renewal::Column::Forced, Expr::value(false))
            .col_expr(acme_renewal::Column::OrderUrl, Expr::value(None::<String>))
            .col_expr(
                acme_renewal::Column::LeaseOwner,
                Expr::value(None::<String>),
            )
            .col_expr(
                acme_renewal::Column::LeaseUntil,
                Expr::value(None::<DateTime<Utc>>),
            )
            .col_expr(acme_renewal::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(acme_renewal::Column::CertificateId.eq(certificate))
            .exec(&self.db)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn set_order_url(&self, certificate: Uuid, url: &str) -> StorageResult<()> {
        acme_renewal::Entity::update_many()
            .col_expr(acme_renewal::Column::OrderUrl, Expr::value(url))
            .filter(acme_renewal::Column::CertificateId.eq(certificate))
            .exec(&self.db)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn store_material(&self, id: Uuid, material: &NewMaterial) -> StorageResult<()> {
        let r = certificate::Entity::update_many()
            .col_expr(
                certificate::Column::CertificatePem,
                Expr::value(Some(material.certificate_pem.clone())),
            )
            .col_expr(
                certificate::Column::EncryptedKey,
                Expr::value(Some(material.sealed_key.clone())),
            )
            .col_expr(
                certificate::Column::IssuedAt,
                Expr::value(Some(material.issued_at)),
            )
            .col_expr(
                certificate::Column::ExpiresAt,
                Expr::value(Some(material.expires_at)),
            )
            .col_expr(
                certificate::Column::Status,
                Expr::value(status_str(CertificateStatus::Active)),
            )
            .col_expr(certificate::Column::LastError, Expr::value(None::<String>))
            .filter(certificate::Column::Id.eq(id))
            .exec(&self.db)
            .await
            .map_err(backend)?;
        if r.rows_affected == 0 {
            return Err(StorageError::NotFound {
                what: "certificate",
            });
        }
        Ok(())
    }

    async fn set_certificate_status(
        &self,
        id: Uuid,
        status: CertificateStatus,
        error: Option<&str>,
    ) -> StorageResult<()> {
        let r = certificate::Entity::update_many()
            .col_expr(certificate::Column::Status, Expr::value(status_str(status)))
            .col_expr(
                certificate::Column::LastError,
                Expr::value(error.map(str::to_owned)),
            )
            .filter(certificate::Column::Id.eq(id))
            .exec(&self.db)
            .await
            .map_err(backend)?;
        if r.rows_affected == 0 {
            return Err(StorageError::NotFound {
                what: "certificate",
            });
        }
        Ok(())
    }

    async fn put_http_challenge(
        &self,
        workspace: Uuid,
        certificate: Uuid,
        challenge: &AcmeChallenge,
    ) -> StorageResult<()> {
        acme_challenge::ActiveModel {
            token: Set(challenge.token.clone()),
            certificate_id: Set(certificate),
            workspace_id: Set(workspace),
            domain: Set(challenge.domain.clone()),
            key_authorization: Set(challenge.key_authorization.clone()),
            created_at: Set(Utc::now()),
        }
        .insert(&self.db)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn remove_http_challenges(&self, certificate: Uuid) -> StorageResult<u64> {
        let r = acme_challenge::Entity::delete_many()
            .filter(acme_challenge::Column::CertificateId.eq(certificate))
            .exec(&self.db)
            .await
            .map_err(backend)?;
        Ok(r.rows_affected)
    }
}

impl SeaStore {
    /// Seals again, under the keyring's newest key, every private key and
    /// ACME account credential sealed under an older one: after a key was
    /// appended to the keyring, this completes the rotation (the old key
    /// can then be removed). Returns how many values were resealed. A value
    /// no key of the ring opens is an error, and nothing after it changes.
    pub async fn reseal_secrets(&self, secrets: &SecretBox) -> StorageResult<u64> {
        let seal_err = |e: crate::secrets::ResealError| StorageError::Backend(Box::new(e));
        let mut count = 0;
        let certs = certificate::Entity::find()
            .filter(certificate::Column::EncryptedKey.is_not_null())
            .all(&self.db)
            .await
            .map_err(backend)?;
        for m in certs {
            let Some(sealed) = m.encrypted_key.as_deref() else {
                continue;
            };
            if !secrets.needs_reseal(sealed) {
                continue;
            }
            let fresh = secrets.reseal(sealed).map_err(seal_err)?;
            certificate::Entity::update_many()
                .col_expr(certificate::Column::EncryptedKey, Expr::value(Some(fresh)))
                .filter(certificate::Column::Id.eq(m.id))
                .exec(&self.db)
                .await
                .map_err(backend)?;
            count += 1;
        }
        let accounts = acme_account::Entity::find()
            .all(&self.db)
            .await
            .map_err(backend)?;
        for m in accounts {
            if !secrets.needs_reseal(&m.encrypted_credentials) {
                continue;
            }
            let fresh = secrets.reseal(&m.encrypted_credentials).map_err(seal_err)?;
            acme_account::Entity::update_many()
                .col_expr(
                    acme_account::Column::EncryptedCredentials,
                    Expr::value(fresh),
                )
                .filter(acme_account::Column::WorkspaceId.eq(m.workspace_id))
                .filter(acme_account::Column::DirectoryUrl.eq(m.directory_url.clone()))
                .exec(&self.db)
                .await
                .map_err(backend)?;
            count += 1;
        }
        Ok(count)
    }
}
