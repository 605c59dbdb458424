//! The per-agent configuration ledger: desired versus applied versions.

use std::collections::BTreeMap;

use nxmesh_core::config::{ConfigApplyStatus, ConfigStatus};
use nxmesh_core::ledger::AgentConfigState;
use nxmesh_core::storage::Storage;
use uuid::Uuid;

use crate::support::*;

fn report(version: i64, status: ConfigApplyStatus) -> ConfigStatus {
    ConfigStatus {
        config_id: format!("cfg-{version}"),
        version,
        status,
        error_message: None,
        applied_at: None,
        config_checksum: None,
    }
}

/// `LedgerStore`: a never-targeted agent has a fresh row; desired versions
/// increase by one per bump, per agent; the applied version only moves
/// forward; the last report's status and a failure's error are kept;
/// `workspace_ledger` has a row for every agent of the workspace.
pub async fn ledger(store: &dyn Storage) {
    let (_, w) = org_and_workspace(store).await;
    let (_, other_w) = org_and_workspace(store).await;
    let a = ok(
        store.create_agent(&new_agent(w.id, "a", &[])).await,
        "create_agent",
    );
    let b = ok(
        store.create_agent(&new_agent(w.id, "b", &[])).await,
        "create_agent",
    );
    let c = ok(
        store.create_agent(&new_agent(w.id, "c", &[])).await,
        "create_agent",
    );
    let x = ok(
        store.create_agent(&new_agent(other_w.id, "x", &[])).await,
        "create_agent",
    );

    assert_eq!(
        ok(store.agent_ledger(a.id).await, "agent_ledger"),
        AgentConfigState::new(a.id),
        "a never-targeted agent has a fresh row"
    );

    assert_eq!(
        ok(
            store.bump_desired_versions(&[a.id, b.id]).await,
            "bump_desired_versions"
        ),
        vec![(a.id, 1), (b.id, 1)]
    );
    assert_eq!(
        ok(
            store.bump_desired_versions(&[a.id]).await,
            "bump_desired_versions"
        ),
        vec![(a.id, 2)]
    );
    assert_eq!(
        ok(
            store.bump_desired_versions(&[x.id]).await,
            "bump_desired_versions"
        ),
        vec![(x.id, 1)],
        "versions are per agent"
    );
    assert!(
        ok(
            store.bump_desired_versions(&[]).await,
            "bump_desired_versions"
        )
        .is_empty()
    );
    let row = ok(store.agent_ledger(a.id).await, "agent_ledger");
    assert_eq!((row.desired_version, row.applied_version), (2, 0));
    assert!(!row.in_sync());

    // A successful apply of the desired version.
    let t = now();
    let applied = ok(
        store
            .record_config_status(
                a.id,
                &ConfigStatus {
                    applied_at: Some(t),
                    config_checksum: Some("sha256:abc".to_owned()),
                    ..report(2, ConfigApplyStatus::Success)
                },
            )
            .await,
        "record_config_status",
    );
    assert_eq!(applied.agent_id, a.id);
    assert_eq!(
        applied.desired_version, 2,
        "a report does not change the desired version"
    );
    assert_eq!(applied.applied_version, 2);
    assert_eq!(applied.last_status, Some(ConfigApplyStatus::Success));
    assert_eq!(applied.applied_at, Some(t));
    assert_eq!(applied.config_checksum.as_deref(), Some("sha256:abc"));
    assert_eq!(applied.last_error, None);
    assert!(applied.in_sync());
    assert_eq!(ok(store.agent_ledger(a.id).await, "agent_ledger"), applied);

    // An older (late) success does not move the applied version back.
    let late = ok(
        store
            .record_config_status(a.id, &report(1, ConfigApplyStatus::Success))
            .await,
        "record_config_status",
    );
    assert_eq!(
        late.applied_version, 2,
        "the applied version only moves forward"
    );

    // A failure keeps the applied version and records the error.
    ok(
        store.bump_desired_versions(&[a.id]).await,
        "bump_desired_versions",
    );
    let failed = ok(
        store
            .record_config_status(
                a.id,
                &ConfigStatus {
                    error_message: Some("unknown directive".to_owned()),
                    ..report(3, ConfigApplyStatus::Failed)
                },
            )
            .await,
        "record_config_status",
    );
    assert_eq!(failed.applied_version, 2);
    assert_eq!(failed.desired_version, 3);
    assert_eq!(failed.last_status, Some(ConfigApplyStatus::Failed));
    assert_eq!(failed.last_error.as_deref(), Some("unknown directive"));
    assert!(failed.failed() && !failed.in_sync());
    assert_eq!(ok(store.agent_ledger(a.id).await, "agent_ledger"), failed);

    // A report from an agent never targeted creates its row.
    let first = ok(
        store
            .record_config_status(c.id, &report(5, ConfigApplyStatus::Success))
            .await,
        "record_config_status",
    );
    assert_eq!((first.desired_version, first.applied_version), (0, 5));

    let rows = ok(store.workspace_ledger(w.id).await, "workspace_ledger");
    let by_agent: BTreeMap<Uuid, AgentConfigState> =
        rows.iter().map(|r| (r.agent_id, r.clone())).collect();
    assert_eq!(
        rows.len(),
        3,
        "one row per agent of the workspace: {rows:?}"
    );
    assert_eq!(by_agent.get(&a.id), Some(&failed));
    assert_eq!(by_agent.get(&b.id).map(|r| r.desired_version), Some(1));
    assert_eq!(by_agent.get(&c.id), Some(&first));
    let other = ok(store.workspace_ledger(other_w.id).await, "workspace_ledger");
    assert_eq!(
        other
            .iter()
            .map(|r| (r.agent_id, r.desired_version))
            .collect::<Vec<_>>(),
        vec![(x.id, 1)]
    );

    assert_eq!(
        ok(
            store.bump_desired_versions(&[b.id, a.id, b.id]).await,
            "bump_desired_versions"
        ),
        vec![(b.id, 2), (a.id, 4)],
        "in the order given, an id given twice bumped once"
    );
    // Many agents at once (a backend may split them into statements).
    let (_, many_w) = org_and_workspace(store).await;
    let mut many = Vec::new();
    for i in 0..1100 {
        let m = ok(
            store
                .create_agent(&new_agent(many_w.id, &format!("m{i}"), &[]))
                .await,
            "create_agent",
        );
        many.push(m.id);
    }
    ok(
        store.bump_desired_versions(&many[..600]).await,
        "bump_desired_versions",
    );
    let bumped = ok(
        store.bump_desired_versions(&many).await,
        "bump_desired_versions",
    );
    assert_eq!(
        bumped,
        many.iter()
            .enumerate()
            .map(|(i, id)| (*id, if i < 600 { 2 } else { 1 }))
            .collect::<Vec<_>>()
    );

    // Reports in a batch: the same results as one by one, in order (a
    // late report returns the row as it is).
    let (_, batch_w) = org_and_workspace(store).await;
    let p = ok(
        store.create_agent(&new_agent(batch_w.id, "p", &[])).await,
        "create_agent",
    );
    let q = ok(
        store.create_agent(&new_agent(batch_w.id, "q", &[])).await,
        "create_agent",
    );
    let r = ok(
        store.create_agent(&new_agent(batch_w.id, "r", &[])).await,
        "create_agent",
    );
    ok(
        store.bump_desired_versions(&[p.id, q.id]).await,
        "bump_desired_versions",
    );
    ok(
        store.bump_desired_versions(&[p.id]).await,
        "bump_desired_versions",
    );
    let rows = ok(
        store
            .record_config_statuses(&[
                (p.id, report(2, ConfigApplyStatus::Success)),
                (
                    q.id,
                    ConfigStatus {
                        error_message: Some("boom".to_owned()),
                        ..report(1, ConfigApplyStatus::Failed)
                    },
                ),
                (p.id, report(1, ConfigApplyStatus::Success)),
                // Never targeted: its ledger row starts with this report.
                (r.id, report(1, ConfigApplyStatus::Success)),
            ])
            .await,
        "record_config_statuses",
    );
    assert_eq!(rows.len(), 4);
    assert_eq!(
        (
            rows[3].agent_id,
            rows[3].applied_version,
            rows[3].desired_version,
            rows[3].last_status
        ),
        (r.id, 1, 0, Some(ConfigApplyStatus::Success))
    );
    assert_eq!(
        (
            rows[0].agent_id,
            rows[0].applied_version,
            rows[0].desired_version
        ),
        (p.id, 2, 2)
    );
    assert_eq!(
        (
            rows[1].agent_id,
            rows[1].applied_version,
            rows[1].last_error.as_deref()
        ),
        (q.id, 0, Some("boom"))
    );
    assert_eq!(
        rows[2].applied_version, 2,
        "a late report in the same batch does not move the version back"
    );
    assert_eq!(ok(store.agent_ledger(p.id).await, "agent_ledger"), rows[2]);
    assert!(
        ok(
            store.record_config_statuses(&[]).await,
            "record_config_statuses"
        )
        .is_empty()
    );
}
