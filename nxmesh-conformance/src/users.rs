//! Users, membership, sessions (refresh and API tokens) and the audit log.

use std::collections::BTreeSet;

use nxmesh_core::model::{AuditEntry, Role, Scope};
use nxmesh_core::storage::{NewApiToken, NewUser, RefreshUse, Storage};
use uuid::Uuid;

use crate::support::*;

/// `create_user`, `get_user`, `user_by_email` (case-insensitive),
/// `count_users`, `delete_user`; a duplicate email in any case is
/// `Conflict`.
pub async fn users(store: &dyn Storage) {
    let before = ok(store.count_users().await, "count_users");
    let local = format!("Alice.{}", unique());
    let email = format!("{local}@Example.COM");
    let new = NewUser {
        email: email.clone(),
        name: "Alice".to_owned(),
        password_hash: "$argon2id$v=19$alice".to_owned(),
        is_admin: true,
    };
    let u = ok(store.create_user(&new).await, "create_user");
    assert!(
        u.email.eq_ignore_ascii_case(&email),
        "the email is kept (up to case): {} vs {email}",
        u.email
    );
    assert_eq!(u.name, "Alice");
    assert!(u.is_admin);
    assert_eq!(ok(store.count_users().await, "count_users"), before + 1);
    assert_eq!(ok(store.get_user(u.id).await, "get_user"), Some(u.clone()));
    assert_eq!(ok(store.get_user(Uuid::new_v4()).await, "get_user"), None);

    for probe in [email.clone(), email.to_lowercase(), email.to_uppercase()] {
        let (found, hash) = ok(store.user_by_email(&probe).await, "user_by_email")
            .unwrap_or_else(|| panic!("user_by_email({probe:?}) finds the user"));
        assert_eq!(found, u);
        assert_eq!(hash, new.password_hash, "the password hash is returned");
    }
    assert_eq!(
        ok(
            store.user_by_email("nobody@example.com").await,
            "user_by_email"
        ),
        None
    );

    conflict(
        store
            .create_user(&NewUser {
                email: email.to_lowercase(),
                name: "Alice again".to_owned(),
                ..new.clone()
            })
            .await,
        "create_user with the same email in another case",
    );
    assert_eq!(ok(store.count_users().await, "count_users"), before + 1);

    let other = user(store).await;
    assert!(!other.is_admin);
    assert_eq!(ok(store.count_users().await, "count_users"), before + 2);

    ok(store.delete_user(u.id).await, "delete_user");
    assert_eq!(ok(store.get_user(u.id).await, "get_user"), None);
    assert_eq!(ok(store.user_by_email(&email).await, "user_by_email"), None);
    assert_eq!(ok(store.count_users().await, "count_users"), before + 1);
    not_found(store.delete_user(u.id).await, "delete_user twice");
    // The email is free again.
    ok(
        store.create_user(&new).await,
        "create_user with a freed email",
    );
}

/// `set_member` (add and change), `member_role`, `list_members`
/// (pagination in joining order), `remove_member`, `memberships`.
pub async fn members(store: &dyn Storage) {
    let o = org(store).await;
    let o2 = org(store).await;
    let alice = user(store).await;
    let bob = user(store).await;
    let carol = user(store).await;

    let m = ok(
        store.set_member(o.id, alice.id, Role::Owner).await,
        "set_member",
    );
    assert_eq!(m.user_id, alice.id);
    assert_eq!(m.email, alice.email);
    assert_eq!(m.name, alice.name);
    assert_eq!(m.role, Role::Owner);
    ok(
        store.set_member(o.id, bob.id, Role::Viewer).await,
        "set_member",
    );
    ok(
        store.set_member(o.id, carol.id, Role::Editor).await,
        "set_member",
    );
    ok(
        store.set_member(o2.id, bob.id, Role::Admin).await,
        "set_member",
    );

    assert_eq!(
        ok(store.member_role(o.id, alice.id).await, "member_role"),
        Some(Role::Owner)
    );
    assert_eq!(
        ok(store.member_role(o2.id, alice.id).await, "member_role"),
        None
    );

    let p1 = ok(store.list_members(o.id, page(1, 2)).await, "list_members");
    assert_eq!(p1.meta.total, 3);
    assert_eq!(
        p1.data.iter().map(|m| m.user_id).collect::<Vec<_>>(),
        vec![alice.id, bob.id]
    );
    assert_eq!(p1.data[0], m);
    let p2 = ok(store.list_members(o.id, page(2, 2)).await, "list_members");
    assert_eq!(
        p2.data
            .iter()
            .map(|m| (m.user_id, m.role))
            .collect::<Vec<_>>(),
        vec![(carol.id, Role::Editor)]
    );

    // Changing a role keeps the membership (and its place in the list).
    let changed = ok(
        store.set_member(o.id, bob.id, Role::Admin).await,
        "set_member",
    );
    assert_eq!(changed.role, Role::Admin);
    assert_eq!(
        ok(store.member_role(o.id, bob.id).await, "member_role"),
        Some(Role::Admin)
    );
    let all = ok(store.list_members(o.id, page(1, 20)).await, "list_members");
    assert_eq!(all.meta.total, 3, "a role change adds no member");
    assert_eq!(
        all.data
            .iter()
            .map(|m| (m.user_id, m.role))
            .collect::<Vec<_>>(),
        vec![
            (alice.id, Role::Owner),
            (bob.id, Role::Admin),
            (carol.id, Role::Editor)
        ]
    );
    assert_eq!(
        all.data[1].created_at, p1.data[1].created_at,
        "joined when first added"
    );

    let set = |v: Vec<(Uuid, Role)>| v.into_iter().collect::<BTreeSet<_>>();
    assert_eq!(
        set(ok(store.memberships(bob.id).await, "memberships")),
        set(vec![(o.id, Role::Admin), (o2.id, Role::Admin)])
    );
    assert!(ok(store.memberships(Uuid::new_v4()).await, "memberships").is_empty());

    ok(store.remove_member(o.id, bob.id).await, "remove_member");
    assert_eq!(
        ok(store.member_role(o.id, bob.id).await, "member_role"),
        None
    );
    assert_eq!(
        ok(store.memberships(bob.id).await, "memberships"),
        vec![(o2.id, Role::Admin)]
    );
    not_found(
        store.remove_member(o.id, bob.id).await,
        "remove_member twice",
    );
    let left = ok(store.list_members(o.id, page(1, 20)).await, "list_members");
    assert_eq!(left.meta.total, 2);
    assert!(
        ok(store.get_user(bob.id).await, "get_user").is_some(),
        "removing a member keeps the user"
    );

    fails(
        store.set_member(o.id, Uuid::new_v4(), Role::Viewer).await,
        "set_member of an unknown user",
    );
    fails(
        store
            .set_member(Uuid::new_v4(), alice.id, Role::Viewer)
            .await,
        "set_member in an unknown organization",
    );
}

/// `delete_user` removes the user's memberships, refresh tokens and API
/// tokens, and nobody else's.
pub async fn user_delete_cascades(store: &dyn Storage) {
    let o = org(store).await;
    let doomed = user(store).await;
    let keeper = user(store).await;
    ok(
        store.set_member(o.id, doomed.id, Role::Owner).await,
        "set_member",
    );
    ok(
        store.set_member(o.id, keeper.id, Role::Viewer).await,
        "set_member",
    );
    let t = now();
    let fam = Uuid::new_v4();
    let refresh = format!("refresh-{}", unique());
    ok(
        store
            .insert_refresh_token(doomed.id, fam, &refresh, at(t, 3600))
            .await,
        "insert_refresh_token",
    );
    let keep_refresh = format!("refresh-{}", unique());
    ok(
        store
            .insert_refresh_token(keeper.id, Uuid::new_v4(), &keep_refresh, at(t, 3600))
            .await,
        "insert_refresh_token",
    );
    let api = format!("api-{}", unique());
    ok(
        store
            .create_api_token(&NewApiToken {
                user_id: doomed.id,
                name: "ci".to_owned(),
                scopes: vec![Scope::Read],
                token_hash: api.clone(),
                expires_at: None,
            })
            .await,
        "create_api_token",
    );
    let keep_api = format!("api-{}", unique());
    ok(
        store
            .create_api_token(&NewApiToken {
                user_id: keeper.id,
                name: "ci".to_owned(),
                scopes: vec![Scope::Read],
                token_hash: keep_api.clone(),
                expires_at: None,
            })
            .await,
        "create_api_token",
    );

    ok(store.delete_user(doomed.id).await, "delete_user");

    assert_eq!(
        ok(store.member_role(o.id, doomed.id).await, "member_role"),
        None
    );
    assert!(ok(store.memberships(doomed.id).await, "memberships").is_empty());
    let members = ok(store.list_members(o.id, page(1, 20)).await, "list_members");
    assert_eq!(
        members.data.iter().map(|m| m.user_id).collect::<Vec<_>>(),
        vec![keeper.id]
    );
    assert_eq!(members.meta.total, 1);
    assert_eq!(
        ok(
            store.use_refresh_token(&refresh, t).await,
            "use_refresh_token"
        ),
        RefreshUse::Invalid,
        "a deleted user's refresh token is invalid"
    );
    assert_eq!(
        ok(store.api_token_by_hash(&api, t).await, "api_token_by_hash"),
        None,
        "a deleted user's API token no longer authenticates"
    );
    assert!(ok(store.list_api_tokens(doomed.id).await, "list_api_tokens").is_empty());

    assert!(matches!(
        ok(store.use_refresh_token(&keep_refresh, t).await, "use_refresh_token"),
        RefreshUse::Valid { user_id, .. } if user_id == keeper.id
    ));
    assert!(
        ok(
            store.api_token_by_hash(&keep_api, t).await,
            "api_token_by_hash"
        )
        .is_some()
    );
    assert!(ok(store.get_organization(o.id).await, "get_organization").is_some());
}

/// Refresh tokens: a valid token is consumed once (`Valid`); presenting it
/// again is `Reused` and revokes the whole family; after that it is
/// `Invalid`. Expired, unknown and revoked tokens are `Invalid`.
pub async fn refresh_tokens(store: &dyn Storage) {
    let u = user(store).await;
    let t = now();
    let fam = Uuid::new_v4();
    let first = format!("r1-{}", unique());
    ok(
        store
            .insert_refresh_token(u.id, fam, &first, at(t, 3600))
            .await,
        "insert_refresh_token",
    );
    assert_eq!(
        ok(store.refresh_family(&first).await, "refresh_family"),
        Some(fam)
    );
    assert_eq!(
        ok(store.refresh_family("unknown").await, "refresh_family"),
        None
    );

    assert_eq!(
        ok(
            store.use_refresh_token(&first, t).await,
            "use_refresh_token"
        ),
        RefreshUse::Valid {
            user_id: u.id,
            family_id: fam
        }
    );
    // Rotation: the next token of the family.
    let second = format!("r2-{}", unique());
    ok(
        store
            .insert_refresh_token(u.id, fam, &second, at(t, 3600))
            .await,
        "insert_refresh_token",
    );
    // A thief replays the first token: reuse, the family is revoked.
    assert_eq!(
        ok(
            store.use_refresh_token(&first, t).await,
            "use_refresh_token"
        ),
        RefreshUse::Reused { family_id: fam }
    );
    assert_eq!(
        ok(
            store.use_refresh_token(&second, t).await,
            "use_refresh_token"
        ),
        RefreshUse::Invalid,
        "reuse revokes the whole family, unused tokens included"
    );
    assert_eq!(
        ok(
            store.use_refresh_token(&first, t).await,
            "use_refresh_token"
        ),
        RefreshUse::Invalid,
        "after the family is revoked the reused token is just invalid"
    );
    assert_eq!(
        ok(store.refresh_family(&second).await, "refresh_family"),
        Some(fam),
        "a revoked token still names its family"
    );

    // Another family is untouched by that revocation.
    let fam2 = Uuid::new_v4();
    let other = format!("r3-{}", unique());
    ok(
        store
            .insert_refresh_token(u.id, fam2, &other, at(t, 3600))
            .await,
        "insert_refresh_token",
    );
    // Expiry: refused at and after `expires_at`.
    let short = format!("r4-{}", unique());
    ok(
        store
            .insert_refresh_token(u.id, fam2, &short, at(t, 60))
            .await,
        "insert_refresh_token",
    );
    assert_eq!(
        ok(
            store.use_refresh_token(&short, at(t, 60)).await,
            "use_refresh_token"
        ),
        RefreshUse::Invalid,
        "a token is expired at its expiry"
    );
    assert_eq!(
        ok(
            store.use_refresh_token(&short, at(t, 61)).await,
            "use_refresh_token"
        ),
        RefreshUse::Invalid
    );
    assert_eq!(
        ok(
            store.use_refresh_token("unknown", t).await,
            "use_refresh_token"
        ),
        RefreshUse::Invalid
    );

    // Logout revokes a family.
    ok(
        store.revoke_refresh_family(fam2).await,
        "revoke_refresh_family",
    );
    assert_eq!(
        ok(
            store.use_refresh_token(&other, t).await,
            "use_refresh_token"
        ),
        RefreshUse::Invalid,
        "a revoked token is invalid (not reuse)"
    );
    ok(
        store.revoke_refresh_family(Uuid::new_v4()).await,
        "revoke_refresh_family of an unknown family",
    );

    // Two users' families are independent.
    let v = user(store).await;
    let fam3 = Uuid::new_v4();
    let theirs = format!("r5-{}", unique());
    ok(
        store
            .insert_refresh_token(v.id, fam3, &theirs, at(t, 3600))
            .await,
        "insert_refresh_token",
    );
    assert_eq!(
        ok(
            store.use_refresh_token(&theirs, t).await,
            "use_refresh_token"
        ),
        RefreshUse::Valid {
            user_id: v.id,
            family_id: fam3
        }
    );
}

/// API tokens: create, look up by hash with its owner (refused at expiry),
/// list a user's tokens, revoke (only the owner's).
pub async fn api_tokens(store: &dyn Storage) {
    let u = user(store).await;
    let other = user(store).await;
    let t = now();
    let hash = format!("api-{}", unique());
    let new = NewApiToken {
        user_id: u.id,
        name: "deploy".to_owned(),
        scopes: vec![Scope::Read, Scope::Write],
        token_hash: hash.clone(),
        expires_at: Some(at(t, 3600)),
    };
    let tok = ok(store.create_api_token(&new).await, "create_api_token");
    assert_eq!(tok.name, "deploy");
    assert_eq!(tok.scopes, vec![Scope::Read, Scope::Write]);
    assert_eq!(tok.expires_at, Some(at(t, 3600)));

    assert_eq!(
        ok(store.api_token_by_hash(&hash, t).await, "api_token_by_hash"),
        Some((tok.clone(), u.id))
    );
    assert_eq!(
        ok(
            store.api_token_by_hash(&hash, at(t, 3599)).await,
            "api_token_by_hash"
        ),
        Some((tok.clone(), u.id))
    );
    assert_eq!(
        ok(
            store.api_token_by_hash(&hash, at(t, 3600)).await,
            "api_token_by_hash"
        ),
        None,
        "expired at its expiry"
    );
    assert_eq!(
        ok(
            store.api_token_by_hash(&hash, at(t, 7200)).await,
            "api_token_by_hash"
        ),
        None
    );
    assert_eq!(
        ok(
            store.api_token_by_hash("unknown", t).await,
            "api_token_by_hash"
        ),
        None
    );

    let forever_hash = format!("api-{}", unique());
    let forever = ok(
        store
            .create_api_token(&NewApiToken {
                name: "forever".to_owned(),
                scopes: vec![Scope::Read],
                token_hash: forever_hash.clone(),
                expires_at: None,
                ..new.clone()
            })
            .await,
        "create_api_token",
    );
    assert_eq!(
        ok(
            store
                .api_token_by_hash(&forever_hash, at(t, 10 * 365 * 86_400))
                .await,
            "api_token_by_hash"
        ),
        Some((forever.clone(), u.id)),
        "a token without expiry never expires"
    );
    let theirs = ok(
        store
            .create_api_token(&NewApiToken {
                user_id: other.id,
                name: "theirs".to_owned(),
                scopes: vec![Scope::Read],
                token_hash: format!("api-{}", unique()),
                expires_at: None,
            })
            .await,
        "create_api_token",
    );

    let set =
        |v: Vec<nxmesh_core::model::ApiToken>| v.into_iter().map(|t| t.id).collect::<BTreeSet<_>>();
    assert_eq!(
        set(ok(store.list_api_tokens(u.id).await, "list_api_tokens")),
        [tok.id, forever.id].into_iter().collect(),
        "a user's tokens, expired or not, and nobody else's"
    );
    let listed = ok(store.list_api_tokens(u.id).await, "list_api_tokens");
    assert!(listed.contains(&tok) && listed.contains(&forever));
    assert_eq!(
        ok(store.list_api_tokens(other.id).await, "list_api_tokens"),
        vec![theirs.clone()]
    );

    not_found(
        store.revoke_api_token(other.id, tok.id).await,
        "revoke_api_token of another user's token",
    );
    assert!(
        ok(store.api_token_by_hash(&hash, t).await, "api_token_by_hash").is_some(),
        "a refused revocation leaves the token working"
    );
    ok(
        store.revoke_api_token(u.id, tok.id).await,
        "revoke_api_token",
    );
    assert_eq!(
        ok(store.api_token_by_hash(&hash, t).await, "api_token_by_hash"),
        None,
        "a revoked token no longer authenticates"
    );
    assert_eq!(
        ok(store.list_api_tokens(u.id).await, "list_api_tokens"),
        vec![forever]
    );
    not_found(
        store.revoke_api_token(u.id, tok.id).await,
        "revoke_api_token twice",
    );
    not_found(
        store.revoke_api_token(u.id, Uuid::new_v4()).await,
        "revoke_api_token of an unknown id",
    );
}

/// The audit log: recorded entries come back per organization, newest
/// first, paginated.
pub async fn audit(store: &dyn Storage) {
    let o = org(store).await;
    let o2 = org(store).await;
    let u = user(store).await;
    let t = now();
    let entry = |org: Uuid, secs: i64, action: &str| AuditEntry {
        id: Uuid::new_v4(),
        organization_id: org,
        actor_id: Some(u.id),
        actor: u.email.clone(),
        action: action.to_owned(),
        target_type: "virtual_host".to_owned(),
        target_id: Some(Uuid::new_v4()),
        created_at: at(t, secs),
    };
    // Recorded out of order: the log is ordered by time, not by insertion.
    let e2 = entry(o.id, 20, "virtual_host.update");
    let e1 = entry(o.id, 10, "virtual_host.create");
    let e3 = AuditEntry {
        actor_id: None,
        target_id: None,
        ..entry(o.id, 30, "virtual_host.delete")
    };
    for e in [&e2, &e1, &e3, &entry(o2.id, 15, "upstream.create")] {
        ok(store.record_audit(e).await, "record_audit");
    }
    let all = ok(store.list_audit(o.id, page(1, 20)).await, "list_audit");
    assert_eq!(all.meta.total, 3);
    assert_eq!(
        all.data,
        vec![e3.clone(), e2.clone(), e1.clone()],
        "newest first"
    );
    let p1 = ok(store.list_audit(o.id, page(1, 2)).await, "list_audit");
    assert_eq!(p1.data, vec![e3, e2]);
    assert_eq!(p1.meta.total, 3);
    let p2 = ok(store.list_audit(o.id, page(2, 2)).await, "list_audit");
    assert_eq!(p2.data, vec![e1]);
    let other = ok(store.list_audit(o2.id, page(1, 20)).await, "list_audit");
    assert_eq!(other.meta.total, 1);
    assert_eq!(other.data[0].action, "upstream.create");
    let none = ok(
        store.list_audit(Uuid::new_v4(), page(1, 20)).await,
        "list_audit",
    );
    assert!(none.data.is_empty());
}
