//! Virtual hosts, upstreams and certificates, and the references between
//! them.

use nxmesh_core::model::{
    CertificateProvider, CertificateStatus, Header, LoadBalanceAlgorithm, LocationModifier,
    TargetAgents,
};
use nxmesh_core::storage::{NewCertificate, Storage};
use uuid::Uuid;

use crate::support::*;

/// `VirtualHostStore`: create, get, list (pagination in creation order),
/// update, delete; names unique within a workspace but free across
/// workspaces; the spec and target round-trip unchanged.
pub async fn virtual_hosts(store: &dyn Storage) {
    let (_, w) = org_and_workspace(store).await;
    let w2 = workspace(store, w.organization_id).await;
    let mut spec = vhost_spec("site");
    spec.http2_enabled = true;
    spec.locations[0].modifier = Some(LocationModifier::PreferentialPrefix);
    spec.locations[0].path = "/api/".to_owned();
    spec.locations[0].custom_headers = vec![Header {
        name: "X-Frame-Options".to_owned(),
        value: "DENY".to_owned(),
        always: true,
    }];
    spec.custom_directives
        .insert("client_max_body_size".to_owned(), "10m".to_owned());
    let target = TargetAgents::Selector {
        label_selector: "env=prod".to_owned(),
    };
    let v = ok(
        store.create_virtual_host(w.id, &spec, &target).await,
        "create_virtual_host",
    );
    assert_eq!(v.workspace_id, w.id);
    assert_eq!(v.spec, spec, "the spec round-trips");
    assert_eq!(v.target_agents, target);
    assert!(v.updated_at >= v.created_at);
    assert_eq!(
        ok(store.get_virtual_host(v.id).await, "get_virtual_host"),
        Some(v.clone())
    );
    assert_eq!(
        ok(
            store.get_virtual_host(Uuid::new_v4()).await,
            "get_virtual_host"
        ),
        None
    );

    conflict(
        store
            .create_virtual_host(w.id, &vhost_spec("site"), &TargetAgents::All)
            .await,
        "create_virtual_host with a duplicate name in the workspace",
    );
    ok(
        store
            .create_virtual_host(w2.id, &vhost_spec("site"), &TargetAgents::All)
            .await,
        "create_virtual_host with the same name in another workspace",
    );

    let mut ids = vec![v.id];
    for name in ["b", "c"] {
        ids.push(
            ok(
                store
                    .create_virtual_host(w.id, &vhost_spec(name), &TargetAgents::All)
                    .await,
                "create_virtual_host",
            )
            .id,
        );
    }
    let p1 = ok(
        store.list_virtual_hosts(w.id, page(1, 2)).await,
        "list_virtual_hosts",
    );
    assert_eq!(p1.meta.total, 3);
    assert_eq!(p1.data.iter().map(|v| v.id).collect::<Vec<_>>(), ids[..2]);
    assert_eq!(p1.data[0], v);
    let p2 = ok(
        store.list_virtual_hosts(w.id, page(2, 2)).await,
        "list_virtual_hosts",
    );
    assert_eq!(p2.data.iter().map(|v| v.id).collect::<Vec<_>>(), ids[2..]);
    let other = ok(
        store.list_virtual_hosts(w2.id, page(1, 20)).await,
        "list_virtual_hosts",
    );
    assert_eq!(other.meta.total, 1);

    // Update replaces content and target.
    let mut changed = vhost_spec("site-renamed");
    changed.listen_port = 8080;
    let u = ok(
        store
            .update_virtual_host(v.id, &changed, &TargetAgents::All)
            .await,
        "update_virtual_host",
    );
    assert_eq!(u.id, v.id);
    assert_eq!(u.spec, changed);
    assert_eq!(u.target_agents, TargetAgents::All);
    assert_eq!(u.created_at, v.created_at);
    assert!(u.updated_at >= v.updated_at);
    assert_eq!(
        ok(store.get_virtual_host(v.id).await, "get_virtual_host"),
        Some(u.clone())
    );
    // The old name is free again; a sibling's name is not.
    ok(
        store
            .create_virtual_host(w.id, &vhost_spec("site"), &TargetAgents::All)
            .await,
        "create_virtual_host with a name freed by an update",
    );
    conflict(
        store
            .update_virtual_host(v.id, &vhost_spec("b"), &TargetAgents::All)
            .await,
        "update_virtual_host to a sibling's name",
    );
    not_found(
        store
            .update_virtual_host(Uuid::new_v4(), &changed, &TargetAgents::All)
            .await,
        "update_virtual_host of an unknown id",
    );

    ok(store.delete_virtual_host(v.id).await, "delete_virtual_host");
    assert_eq!(
        ok(store.get_virtual_host(v.id).await, "get_virtual_host"),
        None
    );
    not_found(
        store.delete_virtual_host(v.id).await,
        "delete_virtual_host twice",
    );
    let left = ok(
        store.list_virtual_hosts(w.id, page(1, 20)).await,
        "list_virtual_hosts",
    );
    assert_eq!(left.meta.total, 3, "b, c and the new site remain");
    assert!(left.data.iter().all(|x| x.id != v.id));
}

/// `UpstreamStore`: create, get, list, update, delete; names unique within
/// a workspace; deleting an upstream a virtual host uses is `Conflict`.
pub async fn upstreams(store: &dyn Storage) {
    let (_, w) = org_and_workspace(store).await;
    let w2 = workspace(store, w.organization_id).await;
    let mut spec = upstream_spec("backend");
    spec.algorithm = LoadBalanceAlgorithm::LeastConnections;
    spec.keepalive_connections = 16;
    let up = ok(store.create_upstream(w.id, &spec).await, "create_upstream");
    assert_eq!(up.workspace_id, w.id);
    assert_eq!(up.spec, spec);
    assert!(up.updated_at >= up.created_at);
    assert_eq!(
        ok(store.get_upstream(up.id).await, "get_upstream"),
        Some(up.clone())
    );
    assert_eq!(
        ok(store.get_upstream(Uuid::new_v4()).await, "get_upstream"),
        None
    );

    conflict(
        store.create_upstream(w.id, &upstream_spec("backend")).await,
        "create_upstream with a duplicate name in the workspace",
    );
    ok(
        store
            .create_upstream(w2.id, &upstream_spec("backend"))
            .await,
        "create_upstream with the same name in another workspace",
    );

    let mut ids = vec![up.id];
    for name in ["api", "static"] {
        ids.push(
            ok(
                store.create_upstream(w.id, &upstream_spec(name)).await,
                "create_upstream",
            )
            .id,
        );
    }
    let p1 = ok(
        store.list_upstreams(w.id, page(1, 2)).await,
        "list_upstreams",
    );
    assert_eq!(p1.meta.total, 3);
    assert_eq!(p1.data.iter().map(|u| u.id).collect::<Vec<_>>(), ids[..2]);
    assert_eq!(p1.data[0], up);
    let p2 = ok(
        store.list_upstreams(w.id, page(2, 2)).await,
        "list_upstreams",
    );
    assert_eq!(p2.data.iter().map(|u| u.id).collect::<Vec<_>>(), ids[2..]);

    let mut changed = upstream_spec("backend-v2");
    changed.servers.truncate(1);
    let u = ok(
        store.update_upstream(up.id, &changed).await,
        "update_upstream",
    );
    assert_eq!(u.spec, changed);
    assert_eq!(u.created_at, up.created_at);
    assert!(u.updated_at >= up.updated_at);
    assert_eq!(ok(store.get_upstream(up.id).await, "get_upstream"), Some(u));
    conflict(
        store.update_upstream(up.id, &upstream_spec("api")).await,
        "update_upstream to a sibling's name",
    );
    not_found(
        store.update_upstream(Uuid::new_v4(), &changed).await,
        "update_upstream of an unknown id",
    );

    // In use by a virtual host: Conflict, and nothing is deleted.
    let v = ok(
        store
            .create_virtual_host(
                w.id,
                &vhost_using_upstream("site", up.id),
                &TargetAgents::All,
            )
            .await,
        "create_virtual_host",
    );
    conflict(
        store.delete_upstream(up.id).await,
        "delete_upstream while a virtual host uses it",
    );
    assert!(ok(store.get_upstream(up.id).await, "get_upstream").is_some());
    // Once the virtual host no longer uses it, it can go.
    ok(
        store
            .update_virtual_host(v.id, &vhost_spec("site"), &TargetAgents::All)
            .await,
        "update_virtual_host",
    );
    ok(store.delete_upstream(up.id).await, "delete_upstream");
    assert_eq!(ok(store.get_upstream(up.id).await, "get_upstream"), None);
    not_found(store.delete_upstream(up.id).await, "delete_upstream twice");

    // Deleting the virtual host frees an upstream too.
    let v2 = ok(
        store
            .create_virtual_host(
                w.id,
                &vhost_using_upstream("site-2", ids[1]),
                &TargetAgents::All,
            )
            .await,
        "create_virtual_host",
    );
    conflict(
        store.delete_upstream(ids[1]).await,
        "delete_upstream while a virtual host uses it",
    );
    ok(
        store.delete_virtual_host(v2.id).await,
        "delete_virtual_host",
    );
    ok(store.delete_upstream(ids[1]).await, "delete_upstream");
    let left = ok(
        store.list_upstreams(w.id, page(1, 20)).await,
        "list_upstreams",
    );
    assert_eq!(
        left.data.iter().map(|u| u.id).collect::<Vec<_>>(),
        vec![ids[2]]
    );
    assert_eq!(left.meta.total, 1);
}

fn new_certificate(workspace_id: Uuid, domain: &str) -> NewCertificate {
    let t = now();
    NewCertificate {
        workspace_id,
        domain: domain.to_owned(),
        is_wildcard: false,
        provider: CertificateProvider::Custom,
        status: CertificateStatus::Active,
        auto_renew: false,
        certificate_pem: Some(format!("-----BEGIN CERTIFICATE-----\n{domain}\n")),
        encrypted_private_key: Some(vec![7, 7, 7, 1]),
        issued_at: Some(t),
        expires_at: Some(at(t, 90 * 86_400)),
    }
}

/// `CertificateStore`: create, get, list, material, delete; deleting a
/// certificate a virtual host uses is `Conflict`.
pub async fn certificates(store: &dyn Storage) {
    let (_, w) = org_and_workspace(store).await;
    let (_, w2) = org_and_workspace(store).await;
    let new = new_certificate(w.id, "example.com");
    let c = ok(store.create_certificate(&new).await, "create_certificate");
    assert_eq!(c.workspace_id, w.id);
    assert_eq!(c.domain, "example.com");
    assert!(!c.is_wildcard);
    assert_eq!(c.provider, CertificateProvider::Custom);
    assert_eq!(c.status, CertificateStatus::Active);
    assert!(!c.auto_renew);
    assert_eq!(c.issued_at, new.issued_at);
    assert_eq!(c.expires_at, new.expires_at);
    assert_eq!(c.last_error, None);
    assert_eq!(
        ok(store.get_certificate(c.id).await, "get_certificate"),
        Some(c.clone())
    );
    assert_eq!(
        ok(
            store.get_certificate(Uuid::new_v4()).await,
            "get_certificate"
        ),
        None
    );
    assert_eq!(
        ok(
            store.certificate_material(c.id).await,
            "certificate_material"
        ),
        Some((
            new.certificate_pem.clone().expect("set above"),
            new.encrypted_private_key.clone().expect("set above")
        ))
    );
    assert_eq!(
        ok(
            store.certificate_material(Uuid::new_v4()).await,
            "certificate_material"
        ),
        None
    );

    // A pending wildcard certificate without material yet.
    let pending = ok(
        store
            .create_certificate(&NewCertificate {
                domain: "example.org".to_owned(),
                is_wildcard: true,
                provider: CertificateProvider::Letsencrypt,
                status: CertificateStatus::Pending,
                auto_renew: true,
                certificate_pem: None,
                encrypted_private_key: None,
                issued_at: None,
                expires_at: None,
                ..new.clone()
            })
            .await,
        "create_certificate",
    );
    assert!(pending.is_wildcard);
    assert_eq!(pending.status, CertificateStatus::Pending);
    assert_eq!((pending.issued_at, pending.expires_at), (None, None));
    assert_eq!(
        ok(
            store.certificate_material(pending.id).await,
            "certificate_material"
        ),
        None,
        "no material before issuance"
    );
    let third = ok(
        store
            .create_certificate(&new_certificate(w.id, "example.net"))
            .await,
        "create_certificate",
    );
    ok(
        store
            .create_certificate(&new_certificate(w2.id, "example.com"))
            .await,
        "create_certificate in another workspace",
    );

    let p1 = ok(
        store.list_certificates(w.id, page(1, 2)).await,
        "list_certificates",
    );
    assert_eq!(p1.meta.total, 3);
    assert_eq!(
        p1.data.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![c.id, pending.id]
    );
    let p2 = ok(
        store.list_certificates(w.id, page(2, 2)).await,
        "list_certificates",
    );
    assert_eq!(p2.data, vec![third.clone()]);

    // In use by a virtual host: Conflict.
    let mut spec = vhost_spec("secure");
    spec.ssl_enabled = true;
    spec.ssl_certificate_id = Some(c.id);
    let v = ok(
        store
            .create_virtual_host(w.id, &spec, &TargetAgents::All)
            .await,
        "create_virtual_host",
    );
    conflict(
        store.delete_certificate(c.id).await,
        "delete_certificate while a virtual host uses it",
    );
    assert!(ok(store.get_certificate(c.id).await, "get_certificate").is_some());
    ok(store.delete_virtual_host(v.id).await, "delete_virtual_host");
    ok(store.delete_certificate(c.id).await, "delete_certificate");
    assert_eq!(
        ok(store.get_certificate(c.id).await, "get_certificate"),
        None
    );
    assert_eq!(
        ok(
            store.certificate_material(c.id).await,
            "certificate_material"
        ),
        None
    );
    not_found(
        store.delete_certificate(c.id).await,
        "delete_certificate twice",
    );
    let left = ok(
        store.list_certificates(w.id, page(1, 20)).await,
        "list_certificates",
    );
    assert_eq!(
        left.data.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![pending.id, third.id]
    );
}
