//! Agents: desired fields, registration, observed state, selectors.

use std::collections::BTreeSet;

use nxmesh_core::model::{
    AgentHealth, AgentState, AgentStateFilter, DeploymentMode, NginxRunState, TargetAgents,
    UpdateAgent,
};
use nxmesh_core::storage::{AgentFilter, AgentIdentity, AgentStateRecord, Storage};
use uuid::Uuid;

use crate::support::*;

/// The identity the suites register agents with.
pub(crate) fn identity() -> AgentIdentity {
    AgentIdentity {
        hostname: "edge-1.internal".to_owned(),
        ip_address: "10.0.0.7".to_owned(),
        version: "1.2.3".to_owned(),
        capabilities: vec!["http2".to_owned(), "ssl".to_owned()],
        deployment_mode: DeploymentMode::Standalone,
    }
}

fn selector(s: &str) -> AgentFilter {
    AgentFilter {
        state: AgentStateFilter::All,
        selector: Some(s.parse().expect("a valid selector")),
    }
}

/// `create_agent`, `get_agent`, `get_agents`, `agent_labels`,
/// `list_agents` (pagination in creation order), `update_agent`,
/// `delete_agent`.
pub async fn agents(store: &dyn Storage) {
    let (_, w) = org_and_workspace(store).await;
    let (_, other_w) = org_and_workspace(store).await;
    let new = new_agent(w.id, "edge-1", &[("env", "prod"), ("region", "eu")]);
    let a = ok(store.create_agent(&new).await, "create_agent");
    assert_eq!(a.workspace_id, w.id);
    assert_eq!(a.name, "edge-1");
    assert_eq!(a.labels, new.labels);
    assert_eq!(
        a.state,
        AgentState::Offline,
        "an unregistered agent is offline"
    );
    assert_eq!(a.hostname, None);
    assert_eq!(a.ip_address, None);
    assert_eq!(a.version, None);
    assert_eq!(a.deployment_mode, None);
    assert_eq!(a.last_seen_at, None);
    assert!(a.capabilities.is_empty());
    assert_eq!(a.health, None);
    assert_eq!(
        ok(store.get_agent(a.id).await, "get_agent"),
        Some(a.clone())
    );
    assert_eq!(ok(store.get_agent(Uuid::new_v4()).await, "get_agent"), None);

    let mut ids = vec![a.id];
    for i in 2..=5 {
        let b = ok(
            store
                .create_agent(&new_agent(w.id, &format!("edge-{i}"), &[]))
                .await,
            "create_agent",
        );
        ids.push(b.id);
    }
    ok(
        store
            .create_agent(&new_agent(other_w.id, "elsewhere", &[]))
            .await,
        "create_agent",
    );
    // Bulk read: the ones that exist, whatever the order, unknown ids
    // skipped; enough ids to need several statements in a chunking backend.
    let mut wanted: Vec<Uuid> = ids.iter().rev().copied().collect();
    wanted.extend((0..1200).map(|_| Uuid::new_v4()));
    let mut got: Vec<Uuid> = ok(store.get_agents(&wanted).await, "get_agents")
        .into_iter()
        .map(|a| a.id)
        .collect();
    got.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(
        got, expected,
        "get_agents returns exactly the existing agents"
    );
    assert!(ok(store.get_agents(&[]).await, "get_agents").is_empty());
    // The same for the rollout's read of workspace and labels.
    let mut got = ok(store.agent_labels(&wanted).await, "agent_labels");
    got.sort_by_key(|l| l.agent_id);
    assert_eq!(
        got.iter().map(|l| l.agent_id).collect::<Vec<_>>(),
        expected,
        "agent_labels answers exactly the existing agents"
    );
    assert!(got.iter().all(|l| l.workspace_id == w.id));
    let of_a = got
        .iter()
        .find(|l| l.agent_id == a.id)
        .expect("agent_labels has the first agent");
    assert_eq!(of_a.labels, new.labels);
    assert!(ok(store.agent_labels(&[]).await, "agent_labels").is_empty());

    let all = AgentFilter::default();
    let p1 = ok(
        store.list_agents(w.id, &all, page(1, 2)).await,
        "list_agents",
    );
    assert_eq!(p1.meta.total, 5);
    assert_eq!(p1.data.iter().map(|a| a.id).collect::<Vec<_>>(), ids[..2]);
    let p3 = ok(
        store.list_agents(w.id, &all, page(3, 2)).await,
        "list_agents",
    );
    assert_eq!(p3.data.iter().map(|a| a.id).collect::<Vec<_>>(), ids[4..]);
    assert_eq!(p3.meta.total, 5);

    // Update: absent fields unchanged; labels replace the whole set.
    let renamed = ok(
        store
            .update_agent(
                a.id,
                &UpdateAgent {
                    name: Some("edge-one".to_owned()),
                    labels: None,
                },
            )
            .await,
        "update_agent",
    );
    assert_eq!(renamed.name, "edge-one");
    assert_eq!(renamed.labels, new.labels);
    let relabelled = ok(
        store
            .update_agent(
                a.id,
                &UpdateAgent {
                    name: None,
                    labels: Some(labels(&[("env", "staging")])),
                },
            )
            .await,
        "update_agent",
    );
    assert_eq!(relabelled.name, "edge-one");
    assert_eq!(relabelled.labels, labels(&[("env", "staging")]));
    assert_eq!(relabelled.created_at, a.created_at);
    assert_eq!(
        ok(store.get_agent(a.id).await, "get_agent"),
        Some(relabelled.clone())
    );
    not_found(
        store
            .update_agent(Uuid::new_v4(), &UpdateAgent::default())
            .await,
        "update_agent of an unknown id",
    );

    ok(store.delete_agent(a.id).await, "delete_agent");
    assert_eq!(ok(store.get_agent(a.id).await, "get_agent"), None);
    not_found(store.delete_agent(a.id).await, "delete_agent twice");
    let left = ok(
        store.list_agents(w.id, &all, page(1, 20)).await,
        "list_agents",
    );
    assert_eq!(left.meta.total, 4);
    assert_eq!(left.data.iter().map(|a| a.id).collect::<Vec<_>>(), ids[1..]);
}

/// `register_agent` consumes an unexpired token exactly once and records
/// identity and credential; `agent_by_credential` finds the agent;
/// deleting the agent revokes the credential.
pub async fn agent_registration(store: &dyn Storage) {
    let (_, w) = org_and_workspace(store).await;
    let new = new_agent(w.id, "edge-1", &[("env", "prod")]);
    let created = ok(store.create_agent(&new).await, "create_agent");
    let credential = format!("cred-{}", unique());
    let t = now();

    not_found(
        store
            .register_agent("no-such-token", t, &identity(), &credential)
            .await,
        "register_agent with an unknown token",
    );
    let reg = ok(
        store
            .register_agent(&new.token_hash, t, &identity(), &credential)
            .await,
        "register_agent",
    );
    assert_eq!(reg.id, created.id);
    assert_eq!(reg.workspace_id, w.id);
    assert_eq!(reg.name, "edge-1");
    assert_eq!(reg.labels, new.labels);
    assert_eq!(reg.hostname.as_deref(), Some("edge-1.internal"));
    assert_eq!(reg.ip_address.as_deref(), Some("10.0.0.7"));
    assert_eq!(reg.version.as_deref(), Some("1.2.3"));
    assert_eq!(reg.deployment_mode, Some(DeploymentMode::Standalone));
    assert_eq!(reg.capabilities, vec!["http2".to_owned(), "ssl".to_owned()]);
    assert_eq!(
        ok(store.get_agent(created.id).await, "get_agent"),
        Some(reg.clone()),
        "the identity is stored"
    );

    not_found(
        store
            .register_agent(&new.token_hash, t, &identity(), "another-credential")
            .await,
        "register_agent with a token already used",
    );
    assert_eq!(
        ok(
            store.agent_by_credential("another-credential").await,
            "agent_by_credential"
        ),
        None,
        "a refused registration stores no credential"
    );

    let found = ok(
        store.agent_by_credential(&credential).await,
        "agent_by_credential",
    );
    assert_eq!(found.map(|a| a.id), Some(created.id));
    assert_eq!(
        ok(
            store.agent_by_credential("unknown").await,
            "agent_by_credential"
        ),
        None
    );

    // Expiry: a token is refused at and after its expiry.
    let mut expiring = new_agent(w.id, "edge-2", &[]);
    expiring.token_expires_at = at(t, 60);
    let e = ok(store.create_agent(&expiring).await, "create_agent");
    not_found(
        store
            .register_agent(&expiring.token_hash, at(t, 61), &identity(), "cred-late")
            .await,
        "register_agent with an expired token",
    );
    not_found(
        store
            .register_agent(&expiring.token_hash, at(t, 60), &identity(), "cred-late")
            .await,
        "register_agent at the token's expiry",
    );
    // The refusal did not consume it: before expiry it still works.
    let cred2 = format!("cred-{}", unique());
    let reg2 = ok(
        store
            .register_agent(&expiring.token_hash, at(t, 59), &identity(), &cred2)
            .await,
        "register_agent just before expiry",
    );
    assert_eq!(reg2.id, e.id);

    // Deleting an agent revokes its credential.
    ok(store.delete_agent(created.id).await, "delete_agent");
    assert_eq!(
        ok(
            store.agent_by_credential(&credential).await,
            "agent_by_credential"
        ),
        None
    );
    assert_eq!(
        ok(
            store.agent_by_credential(&cred2).await,
            "agent_by_credential"
        )
        .map(|a| a.id),
        Some(e.id)
    );
}

/// `list_agents` with state and selector filters (totals count matches
/// only), and `target_agents` with `all` and selectors.
pub async fn agent_filters(store: &dyn Storage) {
    let (_, w) = org_and_workspace(store).await;
    let (_, other_w) = org_and_workspace(store).await;
    let mk =
        |name: &'static str, l: &'static [(&'static str, &'static str)]| new_agent(w.id, name, l);
    let prod_eu = ok(
        store
            .create_agent(&mk("a", &[("env", "prod"), ("region", "eu")]))
            .await,
        "create_agent",
    );
    let prod_us = ok(
        store
            .create_agent(&mk("b", &[("env", "prod"), ("region", "us")]))
            .await,
        "create_agent",
    );
    let staging = ok(
        store.create_agent(&mk("c", &[("env", "staging")])).await,
        "create_agent",
    );
    let bare = ok(store.create_agent(&mk("d", &[])).await, "create_agent");
    let foreign = ok(
        store
            .create_agent(&new_agent(other_w.id, "x", &[("env", "prod")]))
            .await,
        "create_agent",
    );
    let t = now();
    ok(
        store
            .record_agent_state(prod_eu.id, AgentState::Online, t, None)
            .await,
        "record_agent_state",
    );
    ok(
        store
            .record_agent_state(prod_us.id, AgentState::Degraded, t, None)
            .await,
        "record_agent_state",
    );
    ok(
        store
            .record_agent_state(staging.id, AgentState::Online, t, None)
            .await,
        "record_agent_state",
    );

    let ids = |p: &nxmesh_core::pagination::Page<nxmesh_core::model::Agent>| {
        p.data.iter().map(|a| a.id).collect::<Vec<_>>()
    };
    let by_state = |state| AgentFilter {
        state,
        selector: None,
    };
    let online = ok(
        store
            .list_agents(w.id, &by_state(AgentStateFilter::Online), page(1, 20))
            .await,
        "list_agents",
    );
    assert_eq!(ids(&online), vec![prod_eu.id, staging.id]);
    assert_eq!(online.meta.total, 2);
    let degraded = ok(
        store
            .list_agents(w.id, &by_state(AgentStateFilter::Degraded), page(1, 20))
            .await,
        "list_agents",
    );
    assert_eq!(ids(&degraded), vec![prod_us.id]);
    let offline = ok(
        store
            .list_agents(w.id, &by_state(AgentStateFilter::Offline), page(1, 20))
            .await,
        "list_agents",
    );
    assert_eq!(ids(&offline), vec![bare.id]);
    assert_eq!(offline.meta.total, 1);

    let prod = ok(
        store
            .list_agents(w.id, &selector("env=prod"), page(1, 20))
            .await,
        "list_agents",
    );
    assert_eq!(
        ids(&prod),
        vec![prod_eu.id, prod_us.id],
        "only this workspace"
    );
    assert_eq!(prod.meta.total, 2);
    let prod_p2 = ok(
        store
            .list_agents(w.id, &selector("env=prod"), page(2, 1))
            .await,
        "list_agents",
    );
    assert_eq!(ids(&prod_p2), vec![prod_us.id], "selector results paginate");
    assert_eq!(prod_p2.meta.total, 2);
    let not_prod = ok(
        store
            .list_agents(w.id, &selector("env!=prod"), page(1, 20))
            .await,
        "list_agents",
    );
    assert_eq!(ids(&not_prod), vec![staging.id, bare.id]);
    let both = AgentFilter {
        state: AgentStateFilter::Online,
        selector: Some("env=prod".parse().expect("a valid selector")),
    };
    let online_prod = ok(
        store.list_agents(w.id, &both, page(1, 20)).await,
        "list_agents",
    );
    assert_eq!(
        ids(&online_prod),
        vec![prod_eu.id],
        "state and selector combine"
    );
    assert_eq!(online_prod.meta.total, 1);

    let set = |v: Vec<Uuid>| v.into_iter().collect::<BTreeSet<_>>();
    let everyone = ok(
        store.target_agents(w.id, &TargetAgents::All).await,
        "target_agents",
    );
    assert_eq!(
        set(everyone),
        set(vec![prod_eu.id, prod_us.id, staging.id, bare.id]),
        "all: every agent of the workspace, in any state"
    );
    let target = |s: &str| TargetAgents::Selector {
        label_selector: s.to_owned(),
    };
    let eu = ok(
        store
            .target_agents(w.id, &target("env=prod,region=eu"))
            .await,
        "target_agents",
    );
    assert_eq!(eu, vec![prod_eu.id]);
    let regions = ok(
        store
            .target_agents(w.id, &target("region in (eu,us)"))
            .await,
        "target_agents",
    );
    assert_eq!(set(regions), set(vec![prod_eu.id, prod_us.id]));
    let no_region = ok(
        store.target_agents(w.id, &target("!region")).await,
        "target_agents",
    );
    assert_eq!(set(no_region), set(vec![staging.id, bare.id]));
    let nobody = ok(
        store.target_agents(w.id, &target("env=dev")).await,
        "target_agents",
    );
    assert!(nobody.is_empty());
    let foreign_targets = ok(
        store.target_agents(other_w.id, &target("env=prod")).await,
        "target_agents",
    );
    assert_eq!(foreign_targets, vec![foreign.id]);
    fails(
        store.target_agents(w.id, &target("env in (prod")).await,
        "target_agents with an invalid selector",
    );
}

/// `record_agent_state`: state, last seen and latest health; a report
/// without health keeps the latest one.
pub async fn agent_state(store: &dyn Storage) {
    let (_, w) = org_and_workspace(store).await;
    let a = ok(
        store.create_agent(&new_agent(w.id, "edge", &[])).await,
        "create_agent",
    );
    let t = now();
    let health = AgentHealth {
        nginx_status: NginxRunState::Running,
        nginx_uptime_seconds: 3600,
        active_connections: 42,
        requests_per_second: 12.5,
        cpu_percent: 3.25,
        memory_used_mb: 512,
        config_version: 7,
    };
    ok(
        store
            .record_agent_state(a.id, AgentState::Online, t, Some(&health))
            .await,
        "record_agent_state",
    );
    let got = ok(store.get_agent(a.id).await, "get_agent").expect("the agent exists");
    assert_eq!(got.state, AgentState::Online);
    assert_eq!(got.last_seen_at, Some(t));
    assert_eq!(got.health, Some(health.clone()));
    assert_eq!(
        (got.name.as_str(), got.labels.clone()),
        (a.name.as_str(), a.labels.clone())
    );

    let later = at(t, 30);
    ok(
        store
            .record_agent_state(a.id, AgentState::Degraded, later, None)
            .await,
        "record_agent_state",
    );
    let got = ok(store.get_agent(a.id).await, "get_agent").expect("the agent exists");
    assert_eq!(got.state, AgentState::Degraded);
    assert_eq!(got.last_seen_at, Some(later));
    assert_eq!(
        got.health,
        Some(health.clone()),
        "no new health keeps the latest"
    );

    let newer = AgentHealth {
        nginx_status: NginxRunState::Stopped,
        active_connections: 0,
        config_version: 8,
        ..health
    };
    ok(
        store
            .record_agent_state(a.id, AgentState::Offline, at(t, 60), Some(&newer))
            .await,
        "record_agent_state",
    );
    let got = ok(store.get_agent(a.id).await, "get_agent").expect("the agent exists");
    assert_eq!(got.state, AgentState::Offline);
    assert_eq!(got.health, Some(newer));

    not_found(
        store
            .record_agent_state(Uuid::new_v4(), AgentState::Online, t, None)
            .await,
        "record_agent_state of an unknown agent",
    );

    // In a batch: each record as alone, in order; an unknown agent is
    // answered `false` without failing the others.
    let b = ok(
        store.create_agent(&new_agent(w.id, "edge-b", &[])).await,
        "create_agent",
    );
    let batch = [
        AgentStateRecord {
            agent_id: a.id,
            state: AgentState::Online,
            seen_at: at(t, 90),
            health: None,
        },
        AgentStateRecord {
            agent_id: Uuid::new_v4(),
            state: AgentState::Online,
            seen_at: at(t, 90),
            health: None,
        },
        AgentStateRecord {
            agent_id: b.id,
            state: AgentState::Degraded,
            seen_at: at(t, 91),
            health: Some(health.clone()),
        },
        // A second record of the same agent: written after the first.
        AgentStateRecord {
            agent_id: a.id,
            state: AgentState::Degraded,
            seen_at: at(t, 92),
            health: None,
        },
    ];
    assert_eq!(
        ok(
            store.record_agent_states(&batch).await,
            "record_agent_states"
        ),
        vec![true, false, true, true]
    );
    let got = ok(store.get_agent(a.id).await, "get_agent").expect("the agent exists");
    assert_eq!(
        (got.state, got.last_seen_at),
        (AgentState::Degraded, Some(at(t, 92)))
    );
    let got = ok(store.get_agent(b.id).await, "get_agent").expect("the agent exists");
    assert_eq!(
        (got.state, got.last_seen_at, got.health),
        (AgentState::Degraded, Some(at(t, 91)), Some(health))
    );
    assert!(ok(store.record_agent_states(&[]).await, "record_agent_states").is_empty());
}
