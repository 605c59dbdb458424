//! What must hold when callers race: single-use tokens are used once,
//! counters lose no increment, uniqueness holds, upserts do not fail.
//!
//! The calls of each race are polled together on the current task, so a
//! store whose methods await IO (a connection pool) really runs them at
//! the same time.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use nxmesh_core::model::{CreateOrganization, Role};
use nxmesh_core::storage::{RefreshUse, Storage, StorageError};
use uuid::Uuid;

use crate::agents::identity;
use crate::support::*;

/// How many callers race.
const RACERS: usize = 8;

type Racer<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Polls every future until all are done; their outputs in order.
async fn join_all<T>(mut futures: Vec<Racer<'_, T>>) -> Vec<T> {
    let mut out: Vec<Option<T>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (slot, fut) in out.iter_mut().zip(futures.iter_mut()) {
            if slot.is_none() {
                match fut.as_mut().poll(cx) {
                    Poll::Ready(v) => *slot = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    out.into_iter()
        .map(|v| v.expect("poll_fn returned only when every future was ready"))
        .collect()
}

/// Racing callers: a registration token registers one agent; a refresh
/// token is `Valid` once; concurrent `bump_desired_versions` lose no
/// version; a slug is taken once.
pub async fn concurrency(store: &dyn Storage) {
    let (_, w) = org_and_workspace(store).await;

    // Registration tokens are single-use.
    let new = new_agent(w.id, "racer", &[]);
    let agent = ok(store.create_agent(&new).await, "create_agent");
    let t = now();
    let id = identity();
    let creds: Vec<String> = (0..RACERS)
        .map(|i| format!("cred-{i}-{}", unique()))
        .collect();
    let results = join_all(
        creds
            .iter()
            .map(|c| -> Racer<'_, _> { Box::pin(store.register_agent(&new.token_hash, t, &id, c)) })
            .collect(),
    )
    .await;
    let winners: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_ok())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(winners.len(), 1, "one registration wins: {results:?}");
    for r in &results {
        if let Err(e) = r {
            assert!(
                matches!(e, StorageError::NotFound { .. }),
                "losers see NotFound, got {e:?}"
            );
        }
    }
    let winner = &creds[winners[0]];
    assert_eq!(
        ok(
            store.agent_by_credential(winner).await,
            "agent_by_credential"
        )
        .map(|a| a.id),
        Some(agent.id)
    );
    for (i, c) in creds.iter().enumerate() {
        if i != winners[0] {
            assert_eq!(
                ok(store.agent_by_credential(c).await, "agent_by_credential"),
                None,
                "a losing registration stores no credential"
            );
        }
    }

    // A refresh token is valid once.
    let u = user(store).await;
    let fam = Uuid::new_v4();
    let token = format!("race-{}", unique());
    ok(
        store
            .insert_refresh_token(u.id, fam, &token, at(t, 3600))
            .await,
        "insert_refresh_token",
    );
    let uses = join_all(
        (0..RACERS)
            .map(|_| -> Racer<'_, _> { Box::pin(store.use_refresh_token(&token, t)) })
            .collect(),
    )
    .await;
    let valid = uses
        .iter()
        .filter(|r| matches!(r, Ok(RefreshUse::Valid { .. })))
        .count();
    assert_eq!(valid, 1, "one use is valid: {uses:?}");
    for r in &uses {
        assert!(r.is_ok(), "a race is not an error: {r:?}");
    }

    // Desired versions lose no increment.
    let ids = [agent.id];
    let bumps = join_all(
        (0..RACERS)
            .map(|_| -> Racer<'_, _> { Box::pin(store.bump_desired_versions(&ids)) })
            .collect(),
    )
    .await;
    let mut versions: Vec<i64> = bumps
        .into_iter()
        .map(|r| ok(r, "bump_desired_versions")[0].1)
        .collect();
    versions.sort_unstable();
    assert_eq!(
        versions,
        (1..=RACERS as i64).collect::<Vec<_>>(),
        "every bump gets its own version"
    );
    assert_eq!(
        ok(store.agent_ledger(agent.id).await, "agent_ledger").desired_version,
        RACERS as i64
    );

    // A slug is taken once.
    let slug = format!("race-{}", unique());
    let req = CreateOrganization {
        name: "Race".to_owned(),
        slug,
    };
    let creates = join_all(
        (0..RACERS)
            .map(|_| -> Racer<'_, _> { Box::pin(store.create_organization(&req)) })
            .collect(),
    )
    .await;
    assert_eq!(
        creates.iter().filter(|r| r.is_ok()).count(),
        1,
        "one creation wins: {creates:?}"
    );
    for r in &creates {
        if let Err(e) = r {
            assert!(
                matches!(e, StorageError::Conflict { .. }),
                "losers see Conflict, got {e:?}"
            );
        }
    }
}

/// `set_member` "adds (or changes)" a membership: callers racing on the
/// same user and organization all succeed, and one membership results.
pub async fn set_member_race(store: &dyn Storage) {
    let o = org(store).await;
    let m = user(store).await;
    let roles = [Role::Viewer, Role::Editor, Role::Admin, Role::Owner];
    let sets = join_all(
        (0..RACERS)
            .map(|i| -> Racer<'_, _> { Box::pin(store.set_member(o.id, m.id, roles[i % 4])) })
            .collect(),
    )
    .await;
    for r in &sets {
        assert!(r.is_ok(), "set_member is an upsert, racing or not: {r:?}");
    }
    let role = ok(store.member_role(o.id, m.id).await, "member_role");
    assert!(role.is_some());
    let members = ok(store.list_members(o.id, page(1, 100)).await, "list_members");
    assert_eq!(
        members.data.iter().filter(|x| x.user_id == m.id).count(),
        1,
        "one membership"
    );
}
