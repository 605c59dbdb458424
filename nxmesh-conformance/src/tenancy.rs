//! Organizations and workspaces, and what deleting them removes.

use nxmesh_core::model::{AccessLogEntry, AccessLogQuery, MetricsQuery};
use nxmesh_core::model::{
    AuditEntry, CertificateProvider, CertificateStatus, CreateOrganization, CreateWorkspace, Role,
    TargetAgents, UpdateOrganization, UpdateWorkspace,
};
use nxmesh_core::protocol::{Metric, MetricType, MetricsBatch};
use nxmesh_core::storage::{AgentFilter, NewCertificate, Storage};
use uuid::Uuid;

use crate::support::metric_names;
use crate::support::*;

/// `OrganizationStore`: create, get, list by ids (pagination in creation
/// order), update, delete; `Conflict` on a duplicate slug, `NotFound` on a
/// missing organization.
pub async fn organizations(store: &dyn Storage) {
    let slug = format!("acme-{}", unique());
    let created = ok(
        store
            .create_organization(&CreateOrganization {
                name: "Acme".to_owned(),
                slug: slug.clone(),
            })
            .await,
        "create_organization",
    );
    assert_eq!(created.name, "Acme");
    assert_eq!(created.slug, slug);
    assert!(created.updated_at >= created.created_at);
    let got = ok(store.get_organization(created.id).await, "get_organization");
    assert_eq!(
        got.as_ref(),
        Some(&created),
        "get returns what create returned"
    );
    assert_eq!(
        ok(
            store.get_organization(Uuid::new_v4()).await,
            "get_organization"
        ),
        None,
        "an unknown organization is None"
    );

    conflict(
        store
            .create_organization(&CreateOrganization {
                name: "Other".to_owned(),
                slug: slug.clone(),
            })
            .await,
        "create_organization with a duplicate slug",
    );

    // Pagination over the ids given, in creation order.
    let mut ids = vec![created.id];
    for _ in 0..4 {
        ids.push(org(store).await.id);
    }
    let other = org(store).await; // not among `ids`: never listed
    let first = ok(
        store.list_organizations(&ids, page(1, 2)).await,
        "list_organizations",
    );
    assert_eq!(first.meta.total, 5);
    assert_eq!((first.meta.page, first.meta.per_page), (1, 2));
    assert_eq!(
        first.data.iter().map(|o| o.id).collect::<Vec<_>>(),
        ids[..2]
    );
    assert_eq!(first.data[0], created);
    let third = ok(
        store.list_organizations(&ids, page(3, 2)).await,
        "list_organizations",
    );
    assert_eq!(
        third.data.iter().map(|o| o.id).collect::<Vec<_>>(),
        ids[4..]
    );
    assert_eq!(third.meta.total, 5);
    let beyond = ok(
        store.list_organizations(&ids, page(4, 2)).await,
        "list_organizations",
    );
    assert!(beyond.data.is_empty());
    assert_eq!(beyond.meta.total, 5);
    let none = ok(
        store.list_organizations(&[], page(1, 20)).await,
        "list_organizations",
    );
    assert!(none.data.is_empty(), "no ids, no organizations");
    assert_eq!(none.meta.total, 0);

    // Update: absent fields unchanged.
    let renamed = ok(
        store
            .update_organization(
                created.id,
                &UpdateOrganization {
                    name: Some("Acme Corp".to_owned()),
                    slug: None,
                },
            )
            .await,
        "update_organization",
    );
    assert_eq!(renamed.name, "Acme Corp");
    assert_eq!(renamed.slug, slug);
    assert_eq!(renamed.created_at, created.created_at);
    assert!(renamed.updated_at >= created.updated_at);
    let new_slug = format!("acme-corp-{}", unique());
    let reslugged = ok(
        store
            .update_organization(
                created.id,
                &UpdateOrganization {
                    name: None,
                    slug: Some(new_slug.clone()),
                },
            )
            .await,
        "update_organization",
    );
    assert_eq!(
        (reslugged.name.as_str(), reslugged.slug.as_str()),
        ("Acme Corp", new_slug.as_str())
    );
    assert_eq!(
        ok(store.get_organization(created.id).await, "get_organization"),
        Some(reslugged.clone()),
        "the update is stored"
    );
    conflict(
        store
            .update_organization(
                created.id,
                &UpdateOrganization {
                    name: None,
                    slug: Some(other.slug.clone()),
                },
            )
            .await,
        "update_organization to another organization's slug",
    );
    // The freed slug can be taken again.
    ok(
        store
            .create_organization(&CreateOrganization {
                name: "Acme again".to_owned(),
                slug,
            })
            .await,
        "create_organization with a slug freed by an update",
    );
    not_found(
        store
            .update_organization(Uuid::new_v4(), &UpdateOrganization::default())
            .await,
        "update_organization of an unknown id",
    );

    // Delete.
    ok(
        store.delete_organization(created.id).await,
        "delete_organization",
    );
    assert_eq!(
        ok(store.get_organization(created.id).await, "get_organization"),
        None
    );
    not_found(
        store.delete_organization(created.id).await,
        "delete_organization twice",
    );
    let after = ok(
        store.list_organizations(&ids, page(1, 20)).await,
        "list_organizations",
    );
    assert_eq!(
        after.meta.total, 4,
        "the deleted organization is not listed"
    );
    assert!(after.data.iter().all(|o| o.id != created.id));
}

/// `WorkspaceStore`: create, get, list per organization (pagination in
/// creation order), update, delete; slugs unique within an organization but
/// free across organizations.
pub async fn workspaces(store: &dyn Storage) {
    let o = org(store).await;
    let o2 = org(store).await;
    let slug = format!("prod-{}", unique());
    let ws = ok(
        store
            .create_workspace(
                o.id,
                &CreateWorkspace {
                    name: "Production".to_owned(),
                    slug: slug.clone(),
                },
            )
            .await,
        "create_workspace",
    );
    assert_eq!(ws.organization_id, o.id);
    assert_eq!(
        (ws.name.as_str(), ws.slug.as_str()),
        ("Production", slug.as_str())
    );
    assert_eq!(
        ok(store.get_workspace(ws.id).await, "get_workspace"),
        Some(ws.clone())
    );
    assert_eq!(
        ok(store.get_workspace(Uuid::new_v4()).await, "get_workspace"),
        None
    );

    conflict(
        store
            .create_workspace(
                o.id,
                &CreateWorkspace {
                    name: "Again".to_owned(),
                    slug: slug.clone(),
                },
            )
            .await,
        "create_workspace with a duplicate slug in the organization",
    );
    let elsewhere = ok(
        store
            .create_workspace(
                o2.id,
                &CreateWorkspace {
                    name: "Production".to_owned(),
                    slug: slug.clone(),
                },
            )
            .await,
        "create_workspace with the same slug in another organization",
    );
    assert_eq!(elsewhere.organization_id, o2.id);

    let mut ids = vec![ws.id];
    for _ in 0..2 {
        ids.push(workspace(store, o.id).await.id);
    }
    let p1 = ok(
        store.list_workspaces(o.id, page(1, 2)).await,
        "list_workspaces",
    );
    assert_eq!(p1.meta.total, 3);
    assert_eq!(p1.data.iter().map(|w| w.id).collect::<Vec<_>>(), ids[..2]);
    let p2 = ok(
        store.list_workspaces(o.id, page(2, 2)).await,
        "list_workspaces",
    );
    assert_eq!(p2.data.iter().map(|w| w.id).collect::<Vec<_>>(), ids[2..]);
    let p_other = ok(
        store.list_workspaces(o2.id, page(1, 20)).await,
        "list_workspaces",
    );
    assert_eq!(p_other.meta.total, 1);
    assert_eq!(p_other.data, vec![elsewhere.clone()]);
    let p_none = ok(
        store.list_workspaces(Uuid::new_v4(), page(1, 20)).await,
        "list_workspaces",
    );
    assert!(p_none.data.is_empty());
    assert_eq!(p_none.meta.total, 0);

    let renamed = ok(
        store
            .update_workspace(
                ws.id,
                &UpdateWorkspace {
                    name: Some("Prod".to_owned()),
                    slug: None,
                },
            )
            .await,
        "update_workspace",
    );
    assert_eq!(
        (renamed.name.as_str(), renamed.slug.as_str()),
        ("Prod", slug.as_str())
    );
    assert_eq!(renamed.created_at, ws.created_at);
    let sibling = ok(store.get_workspace(ids[1]).await, "get_workspace")
        .expect("the sibling workspace exists");
    conflict(
        store
            .update_workspace(
                ws.id,
                &UpdateWorkspace {
                    name: None,
                    slug: Some(sibling.slug.clone()),
                },
            )
            .await,
        "update_workspace to a sibling's slug",
    );
    let new_slug = format!("staging-{}", unique());
    let moved = ok(
        store
            .update_workspace(
                ws.id,
                &UpdateWorkspace {
                    name: None,
                    slug: Some(new_slug.clone()),
                },
            )
            .await,
        "update_workspace",
    );
    assert_eq!(moved.slug, new_slug);
    assert_eq!(
        ok(store.get_workspace(ws.id).await, "get_workspace"),
        Some(moved)
    );
    not_found(
        store
            .update_workspace(Uuid::new_v4(), &UpdateWorkspace::default())
            .await,
        "update_workspace of an unknown id",
    );

    ok(store.delete_workspace(ws.id).await, "delete_workspace");
    assert_eq!(ok(store.get_workspace(ws.id).await, "get_workspace"), None);
    not_found(
        store.delete_workspace(ws.id).await,
        "delete_workspace twice",
    );
    let left = ok(
        store.list_workspaces(o.id, page(1, 20)).await,
        "list_workspaces",
    );
    assert_eq!(left.meta.total, 2);
    assert_eq!(left.data.iter().map(|w| w.id).collect::<Vec<_>>(), ids[1..]);
}

/// Everything a workspace holds, for the cascade suites.
struct Contents {
    agent: Uuid,
    credential: String,
    vhost: Uuid,
    upstream: Uuid,
    certificate: Uuid,
}

async fn fill(store: &dyn Storage, workspace_id: Uuid) -> Contents {
    let new = new_agent(workspace_id, "edge-1", &[("env", "prod")]);
    let agent = ok(store.create_agent(&new).await, "create_agent");
    let credential = format!("cred-{}", unique());
    ok(
        store
            .register_agent(
                &new.token_hash,
                now(),
                &crate::agents::identity(),
                &credential,
            )
            .await,
        "register_agent",
    );
    let upstream = ok(
        store
            .create_upstream(workspace_id, &upstream_spec("backend"))
            .await,
        "create_upstream",
    );
    let certificate = ok(
        store
            .create_certificate(&NewCertificate {
                workspace_id,
                domain: "example.com".to_owned(),
                is_wildcard: false,
                provider: CertificateProvider::SelfSigned,
                status: CertificateStatus::Active,
                auto_renew: true,
                certificate_pem: Some("PEM".to_owned()),
                encrypted_private_key: Some(vec![1, 2, 3]),
                issued_at: Some(now()),
                expires_at: Some(at(now(), 86_400)),
            })
            .await,
        "create_certificate",
    );
    let mut spec = vhost_using_upstream("site", upstream.id);
    spec.ssl_enabled = true;
    spec.ssl_certificate_id = Some(certificate.id);
    let vhost = ok(
        store
            .create_virtual_host(workspace_id, &spec, &TargetAgents::All)
            .await,
        "create_virtual_host",
    );
    // Telemetry of the agent.
    let t = now();
    ok(
        store
            .insert_metrics(
                agent.id,
                &MetricsBatch {
                    timestamp: t,
                    metrics: vec![
                        Metric {
                            name: metric_names::REQUESTS.to_owned(),
                            value: 10.0,
                            timestamp: at(t, -20),
                            labels: Default::default(),
                            kind: MetricType::Counter,
                        },
                        Metric {
                            name: metric_names::REQUESTS.to_owned(),
                            value: 20.0,
                            timestamp: at(t, -10),
                            labels: Default::default(),
                            kind: MetricType::Counter,
                        },
                    ],
                },
            )
            .await,
        "insert_metrics",
    );
    ok(
        store
            .insert_access_logs(&[AccessLogEntry {
                id: Uuid::new_v4(),
                agent_id: agent.id,
                timestamp: at(t, -5),
                remote_addr: "192.0.2.1".to_owned(),
                method: "GET".to_owned(),
                uri: "/".to_owned(),
                protocol: "HTTP/1.1".to_owned(),
                host: "example.com".to_owned(),
                status: 200,
                body_bytes_sent: 10,
                response_time_ms: 1.0,
                user_agent: None,
                referer: None,
                request_id: None,
            }])
            .await,
        "insert_access_logs",
    );
    Contents {
        agent: agent.id,
        credential,
        vhost: vhost.id,
        upstream: upstream.id,
        certificate: certificate.id,
    }
}

async fn assert_gone(store: &dyn Storage, workspace_id: Uuid, c: &Contents) {
    assert_eq!(
        ok(store.get_workspace(workspace_id).await, "get_workspace"),
        None
    );
    assert_eq!(ok(store.get_agent(c.agent).await, "get_agent"), None);
    assert_eq!(
        ok(
            store.agent_by_credential(&c.credential).await,
            "agent_by_credential"
        ),
        None,
        "a deleted agent's credential no longer authenticates"
    );
    assert_eq!(
        ok(store.get_virtual_host(c.vhost).await, "get_virtual_host"),
        None
    );
    assert_eq!(
        ok(store.get_upstream(c.upstream).await, "get_upstream"),
        None
    );
    assert_eq!(
        ok(
            store.get_certificate(c.certificate).await,
            "get_certificate"
        ),
        None
    );
    assert_eq!(
        ok(
            store.certificate_material(c.certificate).await,
            "certificate_material"
        ),
        None
    );
    let agents = ok(
        store
            .list_agents(workspace_id, &AgentFilter::default(), page(1, 20))
            .await,
        "list_agents",
    );
    assert_eq!(agents.meta.total, 0);
    let vhosts = ok(
        store.list_virtual_hosts(workspace_id, page(1, 20)).await,
        "list_virtual_hosts",
    );
    assert_eq!(vhosts.meta.total, 0);
    let upstreams = ok(
        store.list_upstreams(workspace_id, page(1, 20)).await,
        "list_upstreams",
    );
    assert_eq!(upstreams.meta.total, 0);
    let certs = ok(
        store.list_certificates(workspace_id, page(1, 20)).await,
        "list_certificates",
    );
    assert_eq!(certs.meta.total, 0);
    let logs = ok(
        store
            .query_access_logs(workspace_id, &AccessLogQuery::default())
            .await,
        "query_access_logs",
    );
    assert_eq!(
        logs.meta.total, 0,
        "the workspace's access logs are deleted"
    );
    let t = now();
    let summary = ok(
        store
            .metrics_summary(
                workspace_id,
                None,
                &MetricsQuery {
                    from: at(t, -3600),
                    to: at(t, 3600),
                },
            )
            .await,
        "metrics_summary",
    );
    assert_eq!(
        summary.requests_total, 0,
        "the workspace's metrics are deleted"
    );
}

/// `delete_organization` removes "everything in it": workspaces and their
/// agents, virtual hosts, upstreams and certificates, memberships and the
/// audit log; other organizations are untouched.
pub async fn organization_delete_cascades(store: &dyn Storage) {
    let (o, w) = org_and_workspace(store).await;
    let w2 = workspace(store, o.id).await;
    let c1 = fill(store, w.id).await;
    let c2 = fill(store, w2.id).await;
    let u = user(store).await;
    ok(
        store.set_member(o.id, u.id, Role::Owner).await,
        "set_member",
    );
    ok(
        store
            .record_audit(&AuditEntry {
                id: Uuid::new_v4(),
                organization_id: o.id,
                actor_id: Some(u.id),
                actor: u.email.clone(),
                action: "organization.create".to_owned(),
                target_type: "organization".to_owned(),
                target_id: Some(o.id),
                created_at: now(),
            })
            .await,
        "record_audit",
    );
    // A neighbour that must survive.
    let (keep_o, keep_w) = org_and_workspace(store).await;
    let keep = fill(store, keep_w.id).await;
    ok(
        store.set_member(keep_o.id, u.id, Role::Viewer).await,
        "set_member",
    );

    ok(store.delete_organization(o.id).await, "delete_organization");

    assert_eq!(
        ok(store.get_organization(o.id).await, "get_organization"),
        None
    );
    let ws = ok(
        store.list_workspaces(o.id, page(1, 20)).await,
        "list_workspaces",
    );
    assert_eq!(
        ws.meta.total, 0,
        "the organization's workspaces are deleted"
    );
    assert_gone(store, w.id, &c1).await;
    assert_gone(store, w2.id, &c2).await;
    assert_eq!(ok(store.member_role(o.id, u.id).await, "member_role"), None);
    assert_eq!(
        ok(store.memberships(u.id).await, "memberships"),
        vec![(keep_o.id, Role::Viewer)],
        "only the surviving organization's membership is left"
    );
    let members = ok(store.list_members(o.id, page(1, 20)).await, "list_members");
    assert_eq!(members.meta.total, 0);
    let audit = ok(store.list_audit(o.id, page(1, 20)).await, "list_audit");
    assert_eq!(
        audit.meta.total, 0,
        "the organization's audit log is deleted"
    );
    assert!(
        ok(store.get_user(u.id).await, "get_user").is_some(),
        "users outlive organizations"
    );

    // The neighbour is intact.
    assert!(ok(store.get_workspace(keep_w.id).await, "get_workspace").is_some());
    assert!(ok(store.get_agent(keep.agent).await, "get_agent").is_some());
    assert!(ok(store.get_virtual_host(keep.vhost).await, "get_virtual_host").is_some());
    assert!(ok(store.get_upstream(keep.upstream).await, "get_upstream").is_some());
    assert!(
        ok(
            store.get_certificate(keep.certificate).await,
            "get_certificate"
        )
        .is_some()
    );
}

/// `delete_workspace` removes "everything in it" and nothing else.
pub async fn workspace_delete_cascades(store: &dyn Storage) {
    let (o, w) = org_and_workspace(store).await;
    let sibling = workspace(store, o.id).await;
    let c = fill(store, w.id).await;
    let keep = fill(store, sibling.id).await;

    ok(store.delete_workspace(w.id).await, "delete_workspace");

    assert_gone(store, w.id, &c).await;
    assert!(ok(store.get_organization(o.id).await, "get_organization").is_some());
    let ws = ok(
        store.list_workspaces(o.id, page(1, 20)).await,
        "list_workspaces",
    );
    assert_eq!(
        ws.data.iter().map(|w| w.id).collect::<Vec<_>>(),
        vec![sibling.id]
    );
    assert!(ok(store.get_agent(keep.agent).await, "get_agent").is_some());
    assert!(
        ok(
            store.agent_by_credential(&keep.credential).await,
            "agent_by_credential"
        )
        .is_some()
    );
    assert!(ok(store.get_virtual_host(keep.vhost).await, "get_virtual_host").is_some());
    assert!(ok(store.get_upstream(keep.upstream).await, "get_upstream").is_some());
    assert!(
        ok(
            store.get_certificate(keep.certificate).await,
            "get_certificate"
        )
        .is_some()
    );
}
