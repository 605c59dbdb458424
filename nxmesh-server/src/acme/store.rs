//! What the certificate service stores beyond the core storage traits:
//! ACME accounts, the renewal state of each ACME certificate (with the lease
//! that keeps two masters from running one renewal), pending HTTP-01
//! challenges, and new certificate material. [`crate::db::SeaStore`]
//! implements it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use nxmesh_core::config::AcmeChallenge;
use nxmesh_core::model::CertificateStatus;
use nxmesh_core::storage::StorageResult;
use uuid::Uuid;

/// The renewal state of one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenewalState {
    /// When the next attempt is due.
    pub next_attempt_at: DateTime<Utc>,
    /// Consecutive failures.
    pub failures: u32,
    /// The last failure's reason.
    pub last_error: Option<String>,
    /// Whether a user asked for this attempt (`POST …/renew`).
    pub forced: bool,
}

/// New material for a certificate: a freshly issued chain and its sealed
/// key.
pub struct NewMaterial {
    /// The PEM chain.
    pub certificate_pem: String,
    /// The private key, sealed with the master's keyring.
    pub sealed_key: Vec<u8>,
    /// Not before.
    pub issued_at: DateTime<Utc>,
    /// Not after.
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for NewMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewMaterial")
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Storage of the certificate service.
#[async_trait]
pub trait AcmeStore: Send + Sync {
    /// The sealed credentials of the workspace's account at `directory`.
    async fn acme_account(
        &self,
        workspace: Uuid,
        directory: &str,
    ) -> StorageResult<Option<Vec<u8>>>;

    /// Stores the sealed credentials of the workspace's account at
    /// `directory` (replacing any earlier one).
    async fn save_acme_account(
        &self,
        workspace: Uuid,
        directory: &str,
        account_url: &str,
        sealed: &[u8],
    ) -> StorageResult<()>;

    /// Makes the next attempt on `certificate` due at `at` (creating its
    /// renewal state if needed); `forced` marks a user's request.
    async fn schedule_renewal(
        &self,
        certificate: Uuid,
        at: DateTime<Utc>,
        forced: bool,
    ) -> StorageResult<()>;

    /// The renewal state of `certificate`, if it has one.
    async fn renewal_state(&self, certificate: Uuid) -> StorageResult<Option<RenewalState>>;

    /// The ACME certificates with work due at `now`: a due renewal state
    /// whose lease is free, or `pending` with no renewal state yet (created
    /// while this master had no ACME directory).
    async fn due_certificates(&self, now: DateTime<Utc>) -> StorageResult<Vec<Uuid>>;

    /// Takes the lease on `certificate` for `owner` until `until` if it is
    /// free, expired or already `owner`'s. At most one master runs a given
    /// renewal at a time: this is the only place that decides it, an atomic
    /// conditional update that works the same on SQLite and PostgreSQL.
    async fn try_lease(
        &self,
        certificate: Uuid,
        owner: &str,
        until: DateTime<Utc>,
    ) -> StorageResult<bool>;

    /// Records the end of an attempt and releases the lease: the next
    /// attempt's time, the failure count and reason (`None` after a
    /// success), the order in progress cleared.
    async fn finish_attempt(
        &self,
        certificate: Uuid,
        next_attempt_at: DateTime<Utc>,
        failures: u32,
        error: Option<&str>,
    ) -> StorageResult<()>;

    /// Records the URL of the order in progress (for the logs of a master
    /// that picks the certificate up after a crash).
    async fn set_order_url(&self, certificate: Uuid, url: &str) -> StorageResult<()>;

    /// Replaces the material of `certificate`; it becomes `active`.
    async fn store_material(&self, certificate: Uuid, material: &NewMaterial) -> StorageResult<()>;

    /// Sets the status and reason of `certificate`, keeping its material.
    async fn set_certificate_status(
        &self,
        certificate: Uuid,
        status: CertificateStatus,
        error: Option<&str>,
    ) -> StorageResult<()>;

    /// Publishes an HTTP-01 challenge to the workspace's agents (through the
    /// next configuration they receive).
    async fn put_http_challenge(
        &self,
        workspace: Uuid,
        certificate: Uuid,
        challenge: &AcmeChallenge,
    ) -> StorageResult<()>;

    /// Withdraws every HTTP-01 challenge of `certificate`; returns how many
    /// there were.
    async fn remove_http_challenges(&self, certificate: Uuid) -> StorageResult<u64>;
}
