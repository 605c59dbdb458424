//! Rollout: turning changes of desired state into one `ConfigUpdate` per
//! affected agent.
//!
//! Handlers report which agents a change affects; the coordinator
//! coalesces bursts (a quiet period of about 100 ms, at most a bounded
//! wait), bumps each affected agent's desired version in the ledger (the
//! first changes of a window at its start, so that the database work
//! overlaps the quiet period; those changed again during it once more at
//! its end), and pushes the agent's complete configuration, read at the
//! end, down its stream if it is connected here. Agents that are not
//! affected receive nothing; an agent that is offline gets the latest
//! version when it reconnects.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use nxmesh_core::config::{CertificateBundle, ConfigUpdate, UpstreamConfig, VirtualHostConfig};
use nxmesh_core::model::{CertificateStatus, Labels, TargetAgents, VirtualHost};
use nxmesh_core::pagination::PageParams;
use nxmesh_core::storage::{AgentLabels, Storage, StorageError};
use nxmesh_core::transport::AgentSender;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::cluster::Cluster;
use crate::fleet::Fleet;
use crate::secrets::SecretBox;
use crate::wire::SharedConfig;

/// How long the coordinator waits for more changes before pushing.
pub const QUIET_PERIOD: Duration = Duration::from_millis(100);
/// The longest a change waits while changes keep coming.
pub const MAX_WAIT: Duration = Duration::from_secs(2);

/// The handle handlers use to report changes.
#[derive(Clone)]
pub struct Rollout {
    tx: mpsc::UnboundedSender<Vec<Uuid>>,
    ctx: Context,
}

impl std::fmt::Debug for Rollout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rollout").finish_non_exhaustive()
    }
}

impl Rollout {
    /// Starts the coordinator task; it ends when every handle is dropped.
    pub fn spawn(store: Arc<dyn Storage>, fleet: Arc<Fleet>, secrets: Arc<SecretBox>) -> Rollout {
        Rollout::spawn_in(store, fleet, secrets, None)
    }

    /// Like [`Rollout::spawn`], for a master of `cluster`: the versions
    /// of every change also go to the cluster log, for the agents whose
    /// streams other masters hold.
    pub fn spawn_in(
        store: Arc<dyn Storage>,
        fleet: Arc<Fleet>,
        secrets: Arc<SecretBox>,
        cluster: Option<Cluster>,
    ) -> Rollout {
        let (tx, rx) = mpsc::unbounded_channel();
        let ctx = Context {
            store,
            fleet,
            secrets,
            cluster,
        };
        tokio::spawn(coordinate(rx, ctx.clone()));
        Rollout { tx, ctx }
    }

    /// Reports that the configuration of `agents` changed.
    pub fn agents_changed(&self, agents: Vec<Uuid>) {
        if !agents.is_empty() {
            // The coordinator only stops when the master shuts down.
            let _ = self.tx.send(agents);
        }
    }

    /// Sends agents connected here the versions another master's change
    /// gave them (their desired versions are bumped already).
    pub fn deliver(&self, versions: Vec<(Uuid, i64)>) {
        let ctx = self.ctx.clone();
        tokio::spawn(async move {
            if let Err(e) = deliver(&ctx, versions).await {
                tracing::error!(error = %e, "delivering another master's change failed; agents converge when they reconnect");
            }
        });
    }
}

#[derive(Clone)]
struct Context {
    store: Arc<dyn Storage>,
    fleet: Arc<Fleet>,
    secrets: Arc<SecretBox>,
    cluster: Option<Cluster>,
}

async fn coordinate(mut rx: mpsc::UnboundedReceiver<Vec<Uuid>>, ctx: Context) {
    while let Some(first) = rx.recv().await {
        let started = std::time::Instant::now();
        // The first changes' database work (the bump and the label read)
        // runs while the window waits for quiet, rather than after it.
        let first: Vec<Uuid> = first
            .into_iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let early = tokio::spawn({
            let (ctx, first) = (ctx.clone(), first.clone());
            async move { prepare(&ctx, first).await }
        });
        // The agents changed again after that work started.
        let mut again: BTreeSet<Uuid> = BTreeSet::new();
        let deadline = tokio::time::Instant::now() + MAX_WAIT;
        loop {
            tokio::select! {
                more = rx.recv() => match more {
                    Some(agents) => again.extend(agents),
                    None => break,
                },
                () = tokio::time::sleep(QUIET_PERIOD) => break,
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        let early = early.await.unwrap_or_else(|e| {
            Err(StorageError::Unavailable(
                format!("the rollout's bump stopped: {e}").into(),
            ))
        });
        let agents = first.len() + again.len();
        if let Err(e) = push(&ctx, first, early, again, started).await {
            tracing::error!(error = %e, agents, "rollout failed; agents converge when they reconnect");
        }
    }
}

/// A bump's new desired versions, and the workspace and labels of the
/// bumped agents connected once it committed.
struct Prepared {
    versions: Vec<(Uuid, i64)>,
    labels: Vec<AgentLabels>,
}

/// Bumps the desired version of `agents`, then reads the labels of those
/// connected. Both happen after the bump commits: an agent that attaches
/// later reads the new desired version when it converges, and a label
/// change committed by another master before a bump it lost to this one
/// is in what this reads.
async fn prepare(ctx: &Context, agents: Vec<Uuid>) -> Result<Prepared, StorageError> {
    let versions = ctx.store.bump_desired_versions(&agents).await?;
    let connected = connected_of(ctx, agents.iter().copied());
    let labels = ctx.store.agent_labels(&connected).await?;
    Ok(Prepared { versions, labels })
}

/// Ends a window: `first` was bumped at its start (`early`); the agents
/// changed `again` since, or all of them if that bump failed, are bumped
/// now, so every change is under a bump that started after it committed
/// and the configuration sent is read after every bump. An agent changed
/// twice in one window skips a version, which is harmless; it still gets
/// one update.
async fn push(
    ctx: &Context,
    first: Vec<Uuid>,
    early: Result<Prepared, StorageError>,
    mut again: BTreeSet<Uuid>,
    started: std::time::Instant,
) -> Result<(), StorageError> {
    let mut prepared = match early {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, agents = first.len(), "the rollout's first bump failed; bumping again");
            again.extend(first);
            Prepared {
                versions: Vec::new(),
                labels: Vec::new(),
            }
        }
    };
    if !again.is_empty() {
        match prepare(ctx, again.iter().copied().collect()).await {
            Ok(late) => {
                prepared.versions.retain(|(a, _)| !again.contains(a));
                prepared.labels.retain(|a| !again.contains(&a.agent_id));
                prepared.versions.extend(late.versions);
                prepared.labels.extend(late.labels);
            }
            Err(e) if prepared.versions.is_empty() => return Err(e),
            // The agents bumped at the start still get their version, with
            // the configuration as it is now; the others converge when they
            // reconnect.
            Err(e) => {
                tracing::error!(error = %e, agents = again.len(), "bumping the agents changed during the window failed");
            }
        }
    }
    let Prepared { versions, labels } = prepared;
    tracing::debug!(agents = versions.len(), elapsed = ?started.elapsed(), "desired versions bumped");
    if let Some(cluster) = &ctx.cluster
        && let Err(e) = cluster.announce_rollout(&versions).await
    {
        // The other masters' agents get the version when they reconnect.
        tracing::error!(error = %e, "could not tell the other masters about a change");
    }
    offer(ctx, versions, labels, started).await
}

/// The agents among `agents` with a stream open here.
fn connected_of(ctx: &Context, agents: impl Iterator<Item = Uuid>) -> Vec<Uuid> {
    agents
        .filter(|agent| ctx.fleet.is_connected(*agent))
        .collect()
}

/// Sends each agent connected here its configuration at its version.
async fn deliver(ctx: &Context, versions: Vec<(Uuid, i64)>) -> Result<(), StorageError> {
    let started = std::time::Instant::now();
    let connected = connected_of(ctx, versions.iter().map(|(agent, _)| *agent));
    let labels = ctx.store.agent_labels(&connected).await?;
    offer(ctx, versions, labels, started).await
}

/// Offers the agents of `labels` (the connected ones) their configuration
/// at their version of `versions`. Everything is read before anything is
/// sent, in a few statements: a change that targets thousands of agents
/// must not wait behind the status reports of the agents that already got
/// it.
async fn offer(
    ctx: &Context,
    versions: Vec<(Uuid, i64)>,
    labels: Vec<AgentLabels>,
    started: std::time::Instant,
) -> Result<(), StorageError> {
    let found: HashMap<Uuid, AgentLabels> = labels.into_iter().map(|a| (a.agent_id, a)).collect();
    // One snapshot per workspace and one configuration per label set.
    let mut snapshots: HashMap<Uuid, Snapshot> = HashMap::new();
    let mut built: HashMap<(Uuid, &Labels), Arc<SharedConfig>> = HashMap::new();
    for a in found.values() {
        if let std::collections::hash_map::Entry::Vacant(slot) = snapshots.entry(a.workspace_id) {
            slot.insert(Snapshot::load(ctx.store.as_ref(), &ctx.secrets, a.workspace_id).await?);
        }
        built.entry((a.workspace_id, &a.labels)).or_insert_with(|| {
            Arc::new(SharedConfig::new(
                snapshots[&a.workspace_id].config_for(&a.labels),
            ))
        });
    }
    tracing::debug!(agents = found.len(), configurations = built.len(), elapsed = ?started.elapsed(), "configurations built");
    for (agent, version) in versions {
        let Some(a) = found.get(&agent) else {
            continue;
        };
        let shared = built[&(a.workspace_id, &a.labels)].clone();
        if let Err(e) = ctx.fleet.offer_config(agent, shared, version) {
            tracing::debug!(%agent, error = %e, "agent went away before its update; it gets it on reconnect");
        }
    }
    tracing::debug!(elapsed = ?started.elapsed(), "configurations offered");
    Ok(())
}

/// Every virtual host of a workspace.
async fn all_virtual_hosts(
    store: &dyn Storage,
    workspace: Uuid,
) -> Result<Vec<VirtualHost>, StorageError> {
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

/// The agents targeted by any of `targets` in the workspace.
pub async fn targeted(
    store: &dyn Storage,
    workspace: Uuid,
    targets: &[&TargetAgents],
) -> Result<Vec<Uuid>, StorageError> {
    let mut out = BTreeSet::new();
    for t in targets {
        out.extend(store.target_agents(workspace, t).await?);
    }
    Ok(out.into_iter().collect())
}

/// The agents serving a virtual host that uses the upstream or certificate.
pub async fn targeted_by_reference(
    store: &dyn Storage,
    workspace: Uuid,
    object: Uuid,
) -> Result<Vec<Uuid>, StorageError> {
    let vhosts = all_virtual_hosts(store, workspace).await?;
    let users: Vec<&TargetAgents> = vhosts
        .iter()
        .filter(|v| {
            v.spec.ssl_certificate_id == Some(object)
                || v.spec
                    .locations
                    .iter()
                    .any(|l| l.upstream_id == Some(object))
        })
        .map(|v| &v.target_agents)
        .collect();
    targeted(store, workspace, &users).await
}

/// What a workspace serves: its virtual hosts, the upstreams they use and
/// the certificates (with keys opened) of its active TLS virtual hosts.
struct Snapshot {
    virtual_hosts: Vec<VirtualHost>,
    upstreams: HashMap<Uuid, UpstreamConfig>,
    certificates: HashMap<Uuid, CertificateBundle>,
    /// Pending ACME HTTP-01 challenges of the workspace.
    acme_challenges: Vec<nxmesh_core::config::AcmeChallenge>,
}

impl Snapshot {
    async fn load(
        store: &dyn Storage,
        secrets: &SecretBox,
        workspace: Uuid,
    ) -> Result<Snapshot, StorageError> {
        let virtual_hosts = all_virtual_hosts(store, workspace).await?;
        let mut upstreams = HashMap::new();
        let mut certificates = HashMap::new();
        for vh in &virtual_hosts {
            for id in vh.spec.locations.iter().filter_map(|l| l.upstream_id) {
                if upstreams.contains_key(&id) {
                    continue;
                }
                if let Some(u) = store.get_upstream(id).await? {
                    upstreams.insert(
                        id,
                        UpstreamConfig {
                            id: u.id,
                            spec: u.spec,
                        },
                    );
                }
            }
            let Some(cert_id) = vh.spec.ssl_certificate_id.filter(|_| vh.spec.ssl_enabled) else {
                continue;
            };
            if certificates.contains_key(&cert_id) {
                continue;
            }
            let cert = store.get_certificate(cert_id).await?;
            let material = store.certificate_material(cert_id).await?;
            let (Some(cert), Some((pem, sealed))) = (cert, material) else {
                continue;
            };
            // A failed renewal keeps serving the previous material; only
            // a certificate that never had any, or expired, is left out.
            if matches!(
                cert.status,
                CertificateStatus::Pending | CertificateStatus::Expired
            ) {
                continue;
            }
            let key = secrets
                .open(&sealed)
                .map_err(|e| StorageError::Backend(Box::new(e)))?;
            let private_key_pem =
                String::from_utf8(key).map_err(|e| StorageError::Backend(Box::new(e)))?;
            certificates.insert(
                cert_id,
                CertificateBundle {
                    id: cert_id,
                    domain: cert.domain.clone(),
                    certificate_pem: pem,
                    private_key_pem,
                    expires_at: cert.expires_at.unwrap_or_else(chrono::Utc::now),
                },
            );
        }
        let acme_challenges = store.acme_http_challenges(workspace).await?;
        Ok(Snapshot {
            virtual_hosts,
            upstreams,
            certificates,
            acme_challenges,
        })
    }

    /// The configuration of an agent with `labels` (version 0: the caller
    /// sets it). A TLS virtual host whose certificate is not active yet is
    /// left out (and logged) rather than rendered without its certificate.
    fn config_for(&self, labels: &Labels) -> ConfigUpdate {
        let mut virtual_hosts = Vec::new();
        let mut upstream_ids = BTreeSet::new();
        let mut certificates = BTreeMap::new();
        for vh in &self.virtual_hosts {
            let selected = vh
                .target_agents
                .selector()
                .ok()
                .is_some_and(|s| s.is_none_or(|s| s.matches(labels)));
            if !selected {
                continue;
            }
            if vh.spec.ssl_enabled {
                let cert = vh
                    .spec
                    .ssl_certificate_id
                    .and_then(|c| self.certificates.get(&c));
                let Some(cert) = cert else {
                    tracing::warn!(virtual_host = %vh.id, "TLS virtual host left out: its certificate is not active");
                    continue;
                };
                certificates.insert(cert.id.to_string(), cert.clone());
            }
            upstream_ids.extend(vh.spec.locations.iter().filter_map(|l| l.upstream_id));
            virtual_hosts.push(VirtualHostConfig {
                id: vh.id,
                spec: vh.spec.clone(),
            });
        }
        let upstreams = upstream_ids
            .iter()
            .filter_map(|id| self.upstreams.get(id).cloned())
            .collect();
        let acme_challenges = crate::acme::challenges_for(&self.acme_challenges, &virtual_hosts);
        let mut update = ConfigUpdate {
            config_id: String::new(),
            version: 0,
            virtual_hosts,
            upstreams,
            global_settings: nxmesh_core::config::GlobalSettings {
                acme_challenges,
                ..Default::default()
            },
            certificates,
        };
        update.config_id = content_id(&update);
        update
    }
}

/// The complete configuration of `agent` at `version`: the virtual hosts
/// targeting it, the upstreams they use, the certificates they serve.
pub async fn build_config(
    store: &dyn Storage,
    secrets: &SecretBox,
    agent: Uuid,
    version: i64,
) -> Result<ConfigUpdate, StorageError> {
    let a = store
        .get_agent(agent)
        .await?
        .ok_or(StorageError::NotFound { what: "agent" })?;
    let snapshot = Snapshot::load(store, secrets, a.workspace_id).await?;
    let mut update = snapshot.config_for(&a.labels);
    update.version = version;
    Ok(update)
}

/// A stable id for a configuration's content (not its version).
fn content_id(update: &ConfigUpdate) -> String {
    let mut h = Sha256::new();
    let content = serde_json::json!({
        "virtual_hosts": update.virtual_hosts,
        "upstreams": update.upstreams,
        "certificates": update.certificates.iter().map(|(k, c)| (k.clone(), c.certificate_pem.clone())).collect::<BTreeMap<_, _>>(),
        "global_settings": update.global_settings,
    });
    h.update(content.to_string().as_bytes());
    format!("cfg-{}", &hex::encode(h.finalize())[..16])
}

impl crate::state::AppState {
    /// Reports a change of desired state to the rollout: the agents
    /// `affected` computes. The change itself is committed already; if the
    /// affected agents cannot be computed now they converge when they next
    /// reconnect, so this logs rather than fails the request.
    pub(crate) async fn roll_out<F, Fut>(&self, what: &str, affected: F)
    where
        F: FnOnce(Arc<dyn Storage>) -> Fut,
        Fut: std::future::Future<Output = Result<Vec<Uuid>, StorageError>>,
    {
        match affected(self.store.clone()).await {
            Ok(agents) => self.rollout.agents_changed(agents),
            Err(e) => {
                tracing::error!(error = %e, change = what, "could not compute the agents a change affects")
            }
        }
    }
}
