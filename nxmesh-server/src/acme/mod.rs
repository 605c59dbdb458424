//! Certificate issuance and renewal by ACME (RFC 8555) through the fleet.
//!
//! [`CertificateService`] is the handle handlers use: it schedules work in
//! the database and wakes the scheduler. [`CertificateService::spawn`]
//! starts the scheduler, which finds due certificates (`pending` ones and
//! renewals), takes each one's lease (so that one master at a time runs a
//! given certificate) and runs an order:
//!
//! 1. the workspace's ACME account (created once, its credentials sealed);
//! 2. a new order; for each authorization an HTTP-01 challenge, published
//!    to the agents that serve the name (the rollout carries it in their
//!    next configuration, the generator renders it into the matching
//!    server blocks and the plain-HTTP catch-all), then a wait for those
//!    agents to report the new version applied; or, for wildcards, a
//!    DNS-01 TXT record through the [`dns::DnsProvider`];
//! 3. the CA validates; the certificate becomes `active` (its key sealed,
//!    the agents that serve it get it) or `failed` with the CA's reason,
//!    still serving its previous material if it had any;
//! 4. the order's authorizations are deactivated, so that the next renewal
//!    validates through the fleet again instead of reusing them;
//! 5. the next renewal is scheduled ([`schedule`]), with retries and
//!    backoff after a failure and an expiry alert when failures pile up.

pub mod dns;
pub mod schedule;
pub mod store;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeZone as _, Utc};
use instant_acme::{
    Account, AccountBuilder, AccountCredentials, AuthorizationStatus, CertificateIdentifier,
    ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus, Problem, RetryPolicy,
};
use nxmesh_core::config::{AcmeChallenge, VirtualHostConfig};
use nxmesh_core::event::{
    CertificateExpiring, CertificateFailed, CertificateIssued, Event, EventPayload,
};
use nxmesh_core::model::{Certificate, CertificateProvider, CertificateStatus, TargetAgents};
use nxmesh_core::pagination::PageParams;
use nxmesh_core::storage::{Storage, StorageError};
use nxmesh_core::transport::{AgentSender as _, EventEnvelope, EventPublisher as _};
use sha2::{Digest as _, Sha256};
use tokio::sync::{Notify, Semaphore};
use uuid::Uuid;

use crate::state::AppState;
use dns::DnsProvider;
use schedule::RenewalPolicy;
use store::{AcmeStore, NewMaterial};

/// Let's Encrypt's production directory.
pub const LETSENCRYPT_PRODUCTION: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory.
pub const LETSENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// Resolves a directory setting: the presets `letsencrypt` and
/// `letsencrypt-staging`, or the URL of any RFC 8555 directory.
pub fn directory_url(setting: &str) -> Result<String, String> {
    match setting {
        "letsencrypt" | "letsencrypt-production" => Ok(LETSENCRYPT_PRODUCTION.to_owned()),
        "letsencrypt-staging" => Ok(LETSENCRYPT_STAGING.to_owned()),
        url if url.starts_with("https://") || url.starts_with("http://") => Ok(url.to_owned()),
        other => Err(format!(
            "ACME directory {other:?}: expected letsencrypt, letsencrypt-staging or a URL"
        )),
    }
}

/// How the master talks to its ACME CA.
#[derive(Debug, Clone)]
pub struct AcmeConfig {
    /// The directory URL (see [`directory_url`]).
    pub directory_url: String,
    /// A PEM file with the root to trust for the directory's HTTPS (a test
    /// CA such as Pebble); the system roots otherwise.
    pub ca_root: Option<PathBuf>,
    /// Contact URIs of new accounts (`mailto:…`).
    pub contact: Vec<String>,
    /// When to renew, retry and alert.
    pub policy: RenewalPolicy,
    /// Where DNS-01 records go (wildcards need it).
    pub dns: Option<Arc<dyn DnsProvider>>,
    /// How long to wait for the agents to apply a challenge.
    pub challenge_apply_timeout: Duration,
    /// How long the CA may take to validate and issue.
    pub order_timeout: Duration,
    /// How often the scheduler looks for due work when nothing wakes it.
    pub scan_interval: Duration,
    /// How long a lease on a certificate lasts (longer than an order).
    pub lease: Duration,
    /// Concurrent orders of this master.
    pub concurrency: usize,
}

impl AcmeConfig {
    /// A configuration for `directory_url` with the default policy.
    pub fn new(directory_url: String) -> AcmeConfig {
        AcmeConfig {
            directory_url,
            ca_root: None,
            contact: Vec::new(),
            policy: RenewalPolicy::default(),
            dns: None,
            challenge_apply_timeout: Duration::from_secs(60),
            order_timeout: Duration::from_secs(120),
            scan_interval: Duration::from_secs(60),
            lease: Duration::from_secs(15 * 60),
            concurrency: 4,
        }
    }
}

/// Why a certificate could not be scheduled or renewed on request.
#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    /// The store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// This master has no ACME directory configured.
    #[error("this master has no ACME directory configured (--acme-directory)")]
    AcmeDisabled,
}

/// The handle of the certificate service: shared by handlers, cheap to
/// clone.
#[derive(Clone)]
pub struct CertificateService {
    store: Arc<dyn AcmeStore>,
    wake: Arc<Notify>,
    acme_enabled: bool,
}

impl std::fmt::Debug for CertificateService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateService")
            .field("acme_enabled", &self.acme_enabled)
            .finish_non_exhaustive()
    }
}

impl CertificateService {
    /// A service that stores certificate material but issues nothing by
    /// ACME (no directory configured): `letsencrypt` requests stay
    /// `pending` until a master with a directory picks them up.
    pub fn without_acme(store: Arc<dyn AcmeStore>) -> CertificateService {
        CertificateService {
            store,
            wake: Arc::new(Notify::new()),
            acme_enabled: false,
        }
    }

    /// Starts the scheduler over `state` (storage, rollout, fleet, events,
    /// keyring); it stops when `shutdown` resolves. Returns the handle and
    /// the scheduler's task.
    pub fn spawn(
        state: AppState,
        store: Arc<dyn AcmeStore>,
        config: AcmeConfig,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> (CertificateService, tokio::task::JoinHandle<()>) {
        let wake = Arc::new(Notify::new());
        let worker = Worker {
            state,
            store: store.clone(),
            config: Arc::new(config),
            owner: format!("master-{}", Uuid::new_v4()),
        };
        let task = tokio::spawn(scheduler(worker, wake.clone(), shutdown));
        (
            CertificateService {
                store,
                wake,
                acme_enabled: true,
            },
            task,
        )
    }

    /// The storage of the service.
    pub fn store(&self) -> &Arc<dyn AcmeStore> {
        &self.store
    }

    /// Queues the first issuance of an ACME certificate.
    pub async fn request(&self, certificate: Uuid) -> Result<(), RenewError> {
        self.store
            .schedule_renewal(certificate, Utc::now(), false)
            .await?;
        self.wake.notify_one();
        Ok(())
    }

    /// Queues a renewal now, whatever the schedule says.
    pub async fn force_renewal(&self, certificate: Uuid) -> Result<(), RenewError> {
        if !self.acme_enabled {
            return Err(RenewError::AcmeDisabled);
        }
        self.store
            .schedule_renewal(certificate, Utc::now(), true)
            .await?;
        self.wake.notify_one();
        Ok(())
    }
}

#[derive(Clone)]
struct Worker {
    state: AppState,
    store: Arc<dyn AcmeStore>,
    config: Arc<AcmeConfig>,
    /// This master's name in leases.
    owner: String,
}

async fn scheduler(
    worker: Worker,
    wake: Arc<Notify>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let limit = Arc::new(Semaphore::new(worker.config.concurrency.max(1)));
    tokio::pin!(shutdown);
    loop {
        match worker.store.due_certificates(Utc::now()).await {
            Ok(due) => {
                for id in due {
                    let lease_until = Utc::now()
                        + chrono::Duration::from_std(worker.config.lease)
                            .unwrap_or(chrono::Duration::minutes(15));
                    match worker.store.try_lease(id, &worker.owner, lease_until).await {
                        Ok(true) => {}
                        Ok(false) => continue,
                        Err(e) => {
                            tracing::warn!(certificate = %id, error = %e, "cannot lease a certificate");
                            continue;
                        }
                    }
                    let Ok(permit) = limit.clone().acquire_owned().await else {
                        return;
                    };
                    let w = worker.clone();
                    let wake = wake.clone();
                    tokio::spawn(async move {
                        w.attempt(id).await;
                        drop(permit);
                        // Whatever it scheduled next may already be due.
                        wake.notify_one();
                    });
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot list due certificates"),
        }
        tokio::select! {
            () = &mut shutdown => return,
            () = wake.notified() => {}
            () = tokio::time::sleep(worker.config.scan_interval) => {}
        }
    }
}

/// Why an attempt failed, in words for `last_error`.
#[derive(Debug)]
struct AttemptError(String);

impl<E: std::fmt::Display> From<E> for AttemptError {
    fn from(e: E) -> Self {
        AttemptError(e.to_string())
    }
}

fn problem_text(p: &Problem) -> String {
    let mut s = p.detail.clone().unwrap_or_else(|| "no detail".into());
    if let Some(t) = &p.r#type {
        s.push_str(&format!(" ({t})"));
    }
    s
}

/// One challenge of an order, as published.
struct Published {
    http: Vec<AcmeChallenge>,
    /// `(fqdn, value)` of DNS-01 records.
    dns: Vec<(String, String)>,
}

impl Worker {
    #[tracing::instrument(skip_all, fields(certificate = %id))]
    async fn attempt(&self, id: Uuid) {
        let cert = match self.state.store.get_certificate(id).await {
            Ok(Some(c)) => c,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the certificate");
                let _ = self
                    .store
                    .finish_attempt(id, self.retry(1), 1, Some(&e.to_string()))
                    .await;
                return;
            }
        };
        if cert.provider != CertificateProvider::Letsencrypt {
            // Not ours to renew.
            let _ = self.store.finish_attempt(id, never(), 0, None).await;
            return;
        }
        let failures = match self.store.renewal_state(id).await {
            Ok(Some(s)) => s.failures,
            _ => 0,
        };
        let renewing = cert.issued_at.is_some();
        let result = self.order(&cert).await;
        match result {
            Ok(material) => self.succeeded(&cert, material, renewing).await,
            Err(AttemptError(reason)) => self.failed(&cert, failures + 1, &reason).await,
        }
    }

    fn retry(&self, failures: u32) -> DateTime<Utc> {
        schedule::retry_at(Utc::now(), failures, &self.config.policy)
    }

    async fn succeeded(&self, cert: &Certificate, material: Issued, renewing: bool) {
        let sealed = match self.state.secrets.seal(material.key_pem.as_bytes()) {
            Ok(s) => s,
            Err(e) => return self.failed(cert, 1, &e.to_string()).await,
        };
        let new = NewMaterial {
            certificate_pem: material.chain_pem,
            sealed_key: sealed,
            issued_at: material.issued_at,
            expires_at: material.expires_at,
        };
        if let Err(e) = self.store.store_material(cert.id, &new).await {
            tracing::error!(error = %e, "cannot store the issued certificate");
            let _ = self
                .store
                .finish_attempt(cert.id, self.retry(1), 1, Some(&e.to_string()))
                .await;
            return;
        }
        // Without `auto_renew` only a forced renewal renews it.
        let next = if cert.auto_renew {
            schedule::renew_at(
                new.issued_at,
                new.expires_at,
                material.ari_window,
                &self.config.policy,
            )
        } else {
            never()
        };
        if let Err(e) = self.store.finish_attempt(cert.id, next, 0, None).await {
            tracing::error!(error = %e, "cannot schedule the next renewal");
        }
        tracing::info!(domain = %cert.domain, expires_at = %new.expires_at, next_renewal = %next, renewing, "certificate issued");
        self.roll_out_users(cert).await;
        let data = CertificateIssued {
            certificate_id: cert.id,
            domain: cert.domain.clone(),
            is_wildcard: cert.is_wildcard,
            expires_at: new.expires_at,
        };
        self.publish(
            cert.workspace_id,
            if renewing {
                EventPayload::CertificateRenewed(data)
            } else {
                EventPayload::CertificateIssued(data)
            },
        )
        .await;
    }

    async fn failed(&self, cert: &Certificate, failures: u32, reason: &str) {
        tracing::warn!(domain = %cert.domain, failures, reason, "certificate order failed");
        // A first issuance is retried until it succeeds; a renewal only
        // when the certificate renews automatically.
        let retrying = cert.auto_renew || cert.issued_at.is_none();
        let next = if retrying {
            self.retry(failures)
        } else {
            never()
        };
        if let Err(e) = self
            .store
            .set_certificate_status(cert.id, CertificateStatus::Failed, Some(reason))
            .await
        {
            tracing::error!(error = %e, "cannot record the failure");
        }
        if let Err(e) = self
            .store
            .finish_attempt(cert.id, next, failures, Some(reason))
            .await
        {
            tracing::error!(error = %e, "cannot schedule the retry");
        }
        self.publish(
            cert.workspace_id,
            EventPayload::CertificateFailed(CertificateFailed {
                certificate_id: cert.id,
                domain: cert.domain.clone(),
                error: reason.to_owned(),
                failures,
                next_attempt_at: retrying.then_some(next),
            }),
        )
        .await;
        if let Some(expires) = cert.expires_at
            && schedule::should_alert(Utc::now(), expires, failures, &self.config.policy)
        {
            self.publish(
                cert.workspace_id,
                EventPayload::CertificateExpiring(CertificateExpiring {
                    certificate_id: cert.id,
                    domain: cert.domain.clone(),
                    expires_at: expires,
                    error: reason.to_owned(),
                }),
            )
            .await;
        }
    }

    async fn publish(&self, workspace: Uuid, payload: EventPayload) {
        let org = match self.state.store.get_workspace(workspace).await {
            Ok(Some(w)) => w.organization_id,
            _ => return,
        };
        let _ = self
            .state
            .events
            .publish(EventEnvelope {
                organization_id: org,
                workspace_id: workspace,
                event: Event {
                    timestamp: Utc::now(),
                    payload,
                },
            })
            .await;
    }

    /// Sends the agents that serve `cert` their configuration again.
    async fn roll_out_users(&self, cert: &Certificate) {
        let (ws, id) = (cert.workspace_id, cert.id);
        self.state
            .roll_out("certificate.issued", move |store| async move {
                crate::rollout::targeted_by_reference(store.as_ref(), ws, id).await
            })
            .await;
    }

    fn account_builder(&self) -> Result<AccountBuilder, instant_acme::Error> {
        match &self.config.ca_root {
            Some(path) => Account::builder_with_root(path),
            None => Account::builder(),
        }
    }

    /// The workspace's account at the configured directory, created once.
    async fn account(&self, workspace: Uuid) -> Result<Account, AttemptError> {
        let dir = &self.config.directory_url;
        if let Some(sealed) = self.store.acme_account(workspace, dir).await? {
            let plain = self
                .state
                .secrets
                .open(&sealed)
                .map_err(|e| AttemptError(format!("ACME account credentials: {e}")))?;
            let creds: AccountCredentials = serde_json::from_slice(&plain)?;
            return Ok(self.account_builder()?.from_credentials(creds).await?);
        }
        let contact: Vec<&str> = self.config.contact.iter().map(String::as_str).collect();
        let (account, creds) = self
            .account_builder()?
            .create(
                &NewAccount {
                    contact: &contact,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                dir.clone(),
                None,
            )
            .await?;
        let sealed = self.state.secrets.seal(&serde_json::to_vec(&creds)?)?;
        self.store
            .save_acme_account(workspace, dir, account.id(), &sealed)
            .await?;
        tracing::info!(%workspace, account = account.id(), "created an ACME account");
        Ok(account)
    }

    /// Runs one order to the end: issued material, or the reason it failed.
    async fn order(&self, cert: &Certificate) -> Result<Issued, AttemptError> {
        let account = self.account(cert.workspace_id).await?;
        let name = if cert.is_wildcard {
            format!("*.{}", cert.domain)
        } else {
            cert.domain.clone()
        };
        let identifiers = [Identifier::Dns(name)];
        let mut order = account.new_order(&NewOrder::new(&identifiers)).await?;
        self.store.set_order_url(cert.id, order.url()).await?;

        // Pass 1: what to publish.
        let thumbprint = account.key_thumbprint().to_owned();
        let mut published = Published {
            http: Vec::new(),
            dns: Vec::new(),
        };
        {
            let mut authzs = order.authorizations();
            while let Some(authz) = authzs.next().await {
                let authz = authz?;
                match authz.status {
                    AuthorizationStatus::Pending => {}
                    AuthorizationStatus::Valid => continue,
                    other => {
                        return Err(AttemptError(format!(
                            "authorization for {} is {other:?}",
                            authz.identifier()
                        )));
                    }
                }
                let Identifier::Dns(domain) = authz.identifier().identifier.clone() else {
                    return Err(AttemptError(
                        "the CA asked about a non-DNS identifier".into(),
                    ));
                };
                let ty = if authz.wildcard {
                    ChallengeType::Dns01
                } else {
                    ChallengeType::Http01
                };
                let ch = authz
                    .challenges
                    .iter()
                    .find(|c| c.r#type == ty)
                    .ok_or_else(|| AttemptError(format!("the CA offers no {ty:?} challenge")))?;
                let key_authorization = format!("{}.{thumbprint}", ch.token);
                match ty {
                    ChallengeType::Dns01 => {
                        let digest = Sha256::digest(key_authorization.as_bytes());
                        published.dns.push((
                            format!("_acme-challenge.{domain}"),
                            URL_SAFE_NO_PAD.encode(digest),
                        ));
                    }
                    _ => published.http.push(AcmeChallenge {
                        domain,
                        token: ch.token.clone(),
                        key_authorization,
                    }),
                }
            }
        }

        let result = async {
            self.publish_challenges(cert, &published).await?;
            // Pass 2: tell the CA to validate.
            {
                let mut authzs = order.authorizations();
                while let Some(authz) = authzs.next().await {
                    let mut authz = authz?;
                    if authz.status != AuthorizationStatus::Pending {
                        continue;
                    }
                    let ty = if authz.wildcard {
                        ChallengeType::Dns01
                    } else {
                        ChallengeType::Http01
                    };
                    if let Some(mut ch) = authz.challenge(ty) {
                        ch.set_ready().await?;
                    }
                }
            }
            let policy = RetryPolicy::new()
                .initial_delay(Duration::from_millis(250))
                .backoff(1.5)
                .timeout(self.config.order_timeout);
            let status = match order.poll_ready(&policy).await {
                Ok(s) => s,
                Err(instant_acme::Error::Api(p)) => return Err(AttemptError(problem_text(&p))),
                Err(e) => return Err(e.into()),
            };
            if status != OrderStatus::Ready {
                return Err(AttemptError(self.why_invalid(&mut order).await));
            }
            let key_pem = order.finalize().await?;
            let chain_pem = order.poll_certificate(&policy).await?;
            // CAs reuse valid authorizations for weeks; without them the
            // next renewal proves again that the fleet serves the name,
            // rather than succeeding for a name nothing serves any more.
            let mut authzs = order.authorizations();
            while let Some(authz) = authzs.next().await {
                match authz {
                    Ok(mut a) if a.status == AuthorizationStatus::Valid => {
                        if let Err(e) = a.deactivate().await {
                            tracing::debug!(error = %e, "cannot deactivate an authorization");
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::debug!(error = %e, "cannot read an authorization"),
                }
            }
            Ok((key_pem, chain_pem))
        }
        .await;
        self.withdraw_challenges(cert, &published).await;
        let (key_pem, chain_pem) = result?;
        let (issued_at, expires_at, der) = validity(&chain_pem)?;
        let ari_window = match CertificateIdentifier::try_from(&der) {
            Ok(cid) => match account.renewal_info(&cid).await {
                Ok((info, _)) => {
                    let ts =
                        |t: time::OffsetDateTime| Utc.timestamp_opt(t.unix_timestamp(), 0).single();
                    ts(info.suggested_window.start).zip(ts(info.suggested_window.end))
                }
                Err(e) => {
                    tracing::debug!(error = %e, "no renewal information from the CA");
                    None
                }
            },
            Err(e) => {
                tracing::debug!(error = %e, "no certificate identifier for renewal information");
                None
            }
        };
        Ok(Issued {
            chain_pem,
            key_pem,
            issued_at,
            expires_at,
            ari_window,
        })
    }

    /// The CA's reason an order became invalid: the first challenge error.
    async fn why_invalid(&self, order: &mut instant_acme::Order) -> String {
        if let Some(p) = &order.state().error {
            return problem_text(p);
        }
        let mut authzs = order.authorizations();
        while let Some(authz) = authzs.next().await {
            let Ok(authz) = authz else { continue };
            for ch in &authz.challenges {
                if let Some(p) = &ch.error {
                    return problem_text(p);
                }
            }
        }
        "the order became invalid without a reason from the CA".to_owned()
    }

    /// HTTP-01: into the agents' configuration, then wait until the agents
    /// that serve the names applied it. DNS-01: through the provider.
    async fn publish_challenges(
        &self,
        cert: &Certificate,
        published: &Published,
    ) -> Result<(), AttemptError> {
        if !published.dns.is_empty() {
            let dns = self.config.dns.as_ref().ok_or_else(|| {
                AttemptError("a wildcard needs DNS-01, and no DNS provider is configured".into())
            })?;
            for (fqdn, value) in &published.dns {
                dns.present(fqdn, value).await?;
            }
        }
        if published.http.is_empty() {
            return Ok(());
        }
        for ch in &published.http {
            self.store
                .put_http_challenge(cert.workspace_id, cert.id, ch)
                .await?;
        }
        let agents = agents_serving(
            self.state.store.as_ref(),
            cert.workspace_id,
            &published.http,
        )
        .await?;
        let mut before = HashMap::new();
        for a in &agents {
            before.insert(*a, self.state.store.agent_ledger(*a).await?.desired_version);
        }
        self.state.rollout.agents_changed(agents.clone());
        let deadline = tokio::time::Instant::now() + self.config.challenge_apply_timeout;
        loop {
            let mut waiting = 0;
            for a in &agents {
                // Connected to this master or to another one of the
                // cluster: an offline agent gets the challenge when it
                // comes back, too late for this order.
                let online = self.state.fleet.is_connected(*a)
                    || self.state.store.get_agent(*a).await?.is_some_and(|agent| {
                        agent.state != nxmesh_core::model::AgentState::Offline
                    });
                if !online {
                    continue;
                }
                let l = self.state.store.agent_ledger(*a).await?;
                let was = before.get(a).copied().unwrap_or(0);
                let failed = matches!(
                    l.last_status,
                    Some(
                        nxmesh_core::config::ConfigApplyStatus::Failed
                            | nxmesh_core::config::ConfigApplyStatus::RolledBack
                    )
                ) && l.desired_version > was;
                if l.applied_version <= was && !failed {
                    waiting += 1;
                }
            }
            if waiting == 0 {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    waiting,
                    "agents did not apply the challenge in time; asking the CA anyway"
                );
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Removes what [`publish_challenges`](Self::publish_challenges) put in
    /// place; failures are logged (stale challenges are harmless).
    async fn withdraw_challenges(&self, cert: &Certificate, published: &Published) {
        if let Some(dns) = &self.config.dns {
            for (fqdn, value) in &published.dns {
                if let Err(e) = dns.clean_up(fqdn, value).await {
                    tracing::warn!(error = %e, fqdn, "cannot remove a DNS-01 record");
                }
            }
        }
        match self.store.remove_http_challenges(cert.id).await {
            Ok(0) => {}
            Ok(_) => {
                let ws = cert.workspace_id;
                let http = published.http.clone();
                self.state
                    .roll_out("acme.challenge.withdrawn", move |store| async move {
                        agents_serving(store.as_ref(), ws, &http).await
                    })
                    .await;
            }
            Err(e) => tracing::warn!(error = %e, "cannot withdraw HTTP-01 challenges"),
        }
    }
}

/// "No automatic attempt": far enough to never come due.
fn never() -> DateTime<Utc> {
    Utc::now() + chrono::Duration::days(100 * 365)
}

/// What an order produced.
struct Issued {
    chain_pem: String,
    key_pem: String,
    issued_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    ari_window: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

/// The validity of the first certificate of a PEM chain, and its DER.
fn validity(
    chain_pem: &str,
) -> Result<
    (
        DateTime<Utc>,
        DateTime<Utc>,
        rustls_pki_types::CertificateDer<'static>,
    ),
    AttemptError,
> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(chain_pem.as_bytes())
        .map_err(|e| AttemptError(format!("the CA's chain is not PEM: {e}")))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| AttemptError(format!("the CA's certificate does not parse: {e}")))?;
    let v = cert.validity();
    let from = Utc.timestamp_opt(v.not_before.timestamp(), 0).single();
    let to = Utc.timestamp_opt(v.not_after.timestamp(), 0).single();
    let (Some(from), Some(to)) = (from, to) else {
        return Err(AttemptError("the CA's certificate has odd dates".into()));
    };
    Ok((
        from,
        to,
        rustls_pki_types::CertificateDer::from(pem.contents.clone()),
    ))
}

/// Every virtual host of a workspace.
async fn all_virtual_hosts(
    store: &dyn Storage,
    workspace: Uuid,
) -> Result<Vec<nxmesh_core::model::VirtualHost>, StorageError> {
    let mut out = Vec::new();
    let mut page = PageParams {
        page: 1,
        per_page: 100,
    };
    loop {
        let p = store.list_virtual_hosts(workspace, page).await?;
        out.extend(p.data);
        if !p.meta.has_next() {
            return Ok(out);
        }
        page.page += 1;
    }
}

fn names(server_name: &str) -> impl Iterator<Item = &str> {
    server_name.split([' ', '\t']).filter(|n| !n.is_empty())
}

/// The agents that serve any of the challenges' names: the targets of the
/// virtual hosts whose `server_name` covers one.
pub async fn agents_serving(
    store: &dyn Storage,
    workspace: Uuid,
    challenges: &[AcmeChallenge],
) -> Result<Vec<Uuid>, StorageError> {
    let vhosts = all_virtual_hosts(store, workspace).await?;
    let targets: Vec<&TargetAgents> = vhosts
        .iter()
        .filter(|v| {
            names(&v.spec.server_name).any(|n| challenges.iter().any(|c| c.is_served_by(n)))
        })
        .map(|v| &v.target_agents)
        .collect();
    let mut out = BTreeSet::new();
    for t in targets {
        out.extend(store.target_agents(workspace, t).await?);
    }
    Ok(out.into_iter().collect())
}

/// The challenges an agent serving `virtual_hosts` answers: those whose
/// name one of them serves. The rollout calls this for every agent.
pub fn challenges_for(
    challenges: &[AcmeChallenge],
    virtual_hosts: &[VirtualHostConfig],
) -> Vec<AcmeChallenge> {
    challenges
        .iter()
        .filter(|c| {
            virtual_hosts
                .iter()
                .any(|v| names(&v.spec.server_name).any(|n| c.is_served_by(n)))
        })
        .cloned()
        .collect()
}
