//! The state every handler reaches through axum's `State`.

use std::sync::Arc;
use std::time::Duration;

use nxmesh_core::storage::Storage;

use crate::acme::CertificateService;
use crate::auth::TokenKeys;
use crate::cluster::Cluster;
use crate::events::EventBus;
use crate::fleet::Fleet;
use crate::http::limits::{LoginThrottle, RateLimiter};
use crate::rollout::Rollout;
use crate::secrets::SecretBox;

/// Tunables of the API, with the specification's defaults.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Requests per principal per minute (the specification: 1000).
    pub rate_limit_per_minute: u32,
    /// Refresh-token lifetime.
    pub refresh_ttl: Duration,
    /// Failed logins per account (and per address) per 15 minutes before
    /// further attempts are refused.
    pub login_failures_allowed: u32,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// How long `POST /agents/{id}/reload` waits for the agent.
    pub command_timeout: Duration,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            rate_limit_per_minute: 1000,
            refresh_ttl: Duration::from_secs(30 * 24 * 3600),
            login_failures_allowed: 10,
            max_body_bytes: 1024 * 1024,
            command_timeout: Duration::from_secs(15),
        }
    }
}

/// Shared state: storage (any implementation of the core traits), keys,
/// the connected fleet, limits.
#[derive(Clone)]
pub struct AppState {
    /// Where everything is stored.
    pub store: Arc<dyn Storage>,
    /// Access-token keys.
    pub keys: Arc<TokenKeys>,
    /// Encryption of private keys at rest.
    pub secrets: Arc<SecretBox>,
    /// Agents connected to this master.
    pub fleet: Arc<Fleet>,
    /// The event feed.
    pub events: EventBus,
    /// Changes of desired state on their way to agents.
    pub rollout: Rollout,
    /// Tunables.
    pub settings: Arc<ApiSettings>,
    /// Issuance and renewal of certificates, when the store supports it
    /// (see [`AppState::with_certificates`]).
    pub certificates: Option<CertificateService>,
    /// The other masters on the same database, if any (see
    /// [`AppState::in_cluster`]).
    pub cluster: Option<Cluster>,
    pub(crate) rate: Arc<RateLimiter>,
    pub(crate) logins: Arc<LoginThrottle>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

impl AppState {
    /// State over `store` with the given keys and settings. Starts the
    /// rollout coordinator, so it must be called inside a Tokio runtime.
    pub fn new(
        store: Arc<dyn Storage>,
        keys: TokenKeys,
        secrets: SecretBox,
        settings: ApiSettings,
    ) -> AppState {
        let fleet = Arc::new(Fleet::default());
        let secrets = Arc::new(secrets);
        let rollout = Rollout::spawn(store.clone(), fleet.clone(), secrets.clone());
        AppState {
            store,
            keys: Arc::new(keys),
            secrets,
            fleet,
            events: EventBus::default(),
            rollout,
            rate: Arc::new(RateLimiter::new(settings.rate_limit_per_minute)),
            logins: Arc::new(LoginThrottle::new(settings.login_failures_allowed)),
            settings: Arc::new(settings),
            certificates: None,
            cluster: None,
        }
    }

    /// This state as one master of `cluster`: changes and events reach the
    /// other masters, theirs reach this one, agent presence is leased.
    /// Starts the cluster's tasks, so it must be called inside a Tokio
    /// runtime, before the state is shared.
    pub fn in_cluster(mut self, cluster: Cluster) -> AppState {
        self.events = EventBus::clustered(cluster.clone());
        self.rollout = Rollout::spawn_in(
            self.store.clone(),
            self.fleet.clone(),
            self.secrets.clone(),
            Some(cluster.clone()),
        );
        cluster.spawn(
            self.store.clone(),
            self.events.clone(),
            self.rollout.clone(),
        );
        self.cluster = Some(cluster);
        self
    }

    /// This state with a certificate service: forced renewals, and ACME
    /// issuance when the service was started with a directory.
    pub fn with_certificates(mut self, service: CertificateService) -> AppState {
        self.certificates = Some(service);
        self
    }
}
