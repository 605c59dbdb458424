//! `/organizations`, their members and audit log.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use nxmesh_core::error::FieldErrorCode;
use nxmesh_core::model::{
    AddMember, AuditEntry, CreateOrganization, Member, Organization, Role, UpdateMember,
    UpdateOrganization,
};
use nxmesh_core::pagination::{Page, PageParams};
use nxmesh_core::validate::Validate;

use super::error::{ApiError, ApiResult};
use super::extract::{ADMIN, ApiJson, ApiQuery, Auth, Id, Ids};
use crate::state::AppState;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/organizations", get(list).post(create))
        .route(
            "/organizations/{id}",
            get(read).patch(update).delete(remove),
        )
        .route(
            "/organizations/{id}/members",
            get(list_members).post(add_member),
        )
        .route(
            "/organizations/{id}/members/{user_id}",
            axum::routing::patch(update_member).delete(remove_member),
        )
        .route("/organizations/{id}/audit-log", get(audit_log))
}

async fn list(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(page): ApiQuery<PageParams>,
) -> ApiResult<Json<Page<Organization>>> {
    page.validate()
        .map_err(nxmesh_core::error::ValidationErrors::from)?;
    let ids: Vec<_> = state
        .store
        .memberships(auth.user_id())
        .await?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    Ok(Json(state.store.list_organizations(&ids, page).await?))
}

async fn create(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(req): ApiJson<CreateOrganization>,
) -> ApiResult<(StatusCode, Json<Organization>)> {
    req.validate()?;
    let org = state.store.create_organization(&req).await?;
    state
        .store
        .set_member(org.id, auth.user_id(), Role::Owner)
        .await?;
    state
        .audit(&auth, org.id, "organization.create", Some(org.id))
        .await;
    Ok((StatusCode::CREATED, Json(org)))
}

async fn read(
    State(state): State<AppState>,
    auth: Auth,
    Id(id): Id,
) -> ApiResult<Json<Organization>> {
    state
        .require(&auth, id, Role::Viewer, "organization")
        .await?;
    Ok(Json(
        state
            .store
            .get_organization(id)
            .await?
            .ok_or_else(|| ApiError::not_found("organization"))?,
    ))
}

async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Id(id): Id,
    ApiJson(req): ApiJson<UpdateOrganization>,
) -> ApiResult<Json<Organization>> {
    state
        .require(&auth, id, Role::Owner, "organization")
        .await?;
    req.validate()?;
    let org = state.store.update_organization(id, &req).await?;
    state
        .audit(&auth, id, "organization.update", Some(id))
        .await;
    Ok(Json(org))
}

async fn remove(State(state): State<AppState>, auth: Auth, Id(id): Id) -> ApiResult<StatusCode> {
    state
        .require(&auth, id, Role::Owner, "organization")
        .await?;
    state.store.delete_organization(id).await?;
    // The audit log goes with the organization; the server log keeps it.
    tracing::info!(organization_id = %id, actor = %auth.0.user.email, "organization deleted");
    Ok(StatusCode::NO_CONTENT)
}

async fn list_members(
    State(state): State<AppState>,
    auth: Auth,
    Id(id): Id,
    ApiQuery(page): ApiQuery<PageParams>,
) -> ApiResult<Json<Page<Member>>> {
    state
        .require(&auth, id, Role::Viewer, "organization")
        .await?;
    page.validate()
        .map_err(nxmesh_core::error::ValidationErrors::from)?;
    Ok(Json(state.store.list_members(id, page).await?))
}

/// Only owners grant or take away ownership.
fn check_grant(mine: Role, from: Option<Role>, to: Option<Role>) -> ApiResult<()> {
    let touches_owner = from == Some(Role::Owner) || to == Some(Role::Owner);
    if touches_owner && mine < Role::Owner {
        return Err(ApiError::forbidden(
            "only owners grant or remove the owner role",
        ));
    }
    Ok(())
}

async fn owners_left_after(
    state: &AppState,
    org: uuid::Uuid,
    leaving: uuid::Uuid,
) -> ApiResult<bool> {
    let mut page = PageParams {
        page: 1,
        per_page: 100,
    };
    loop {
        let p = state.store.list_members(org, page).await?;
        if p.data
            .iter()
            .any(|m| m.role == Role::Owner && m.user_id != leaving)
        {
            return Ok(true);
        }
        if !p.meta.has_next() {
            return Ok(false);
        }
        page.page += 1;
    }
}

async fn add_member(
    State(state): State<AppState>,
    auth: Auth,
    Id(id): Id,
    ApiJson(req): ApiJson<AddMember>,
) -> ApiResult<(StatusCode, Json<Member>)> {
    let mine = state.require(&auth, id, ADMIN, "organization").await?;
    req.validate()?;
    let user = match (&req.email, req.user_id) {
        (Some(email), _) => state.store.user_by_email(email).await?.map(|(u, _)| u),
        (None, Some(uid)) => state.store.get_user(uid).await?,
        (None, None) => None,
    };
    let field = if req.email.is_some() {
        "email"
    } else {
        "user_id"
    };
    let user =
        user.ok_or_else(|| ApiError::invalid(field, FieldErrorCode::NotFound, "no such user"))?;
    let current = state.store.member_role(id, user.id).await?;
    if current.is_some() {
        return Err(ApiError::conflict("the user is already a member"));
    }
    check_grant(mine, None, Some(req.role))?;
    let m = state.store.set_member(id, user.id, req.role).await?;
    state.audit(&auth, id, "member.add", Some(user.id)).await;
    Ok((StatusCode::CREATED, Json(m)))
}

async fn update_member(
    State(state): State<AppState>,
    auth: Auth,
    Ids(id, user_id): Ids,
    ApiJson(req): ApiJson<UpdateMember>,
) -> ApiResult<Json<Member>> {
    let mine = state.require(&auth, id, ADMIN, "organization").await?;
    let current = state
        .store
        .member_role(id, user_id)
        .await?
        .ok_or_else(|| ApiError::not_found("member"))?;
    check_grant(mine, Some(current), Some(req.role))?;
    if current == Role::Owner
        && req.role != Role::Owner
        && !owners_left_after(&state, id, user_id).await?
    {
        return Err(ApiError::conflict(
            "an organization keeps at least one owner",
        ));
    }
    let m = state.store.set_member(id, user_id, req.role).await?;
    state.audit(&auth, id, "member.update", Some(user_id)).await;
    Ok(Json(m))
}

async fn remove_member(
    State(state): State<AppState>,
    auth: Auth,
    Ids(id, user_id): Ids,
) -> ApiResult<StatusCode> {
    let mine = state.require(&auth, id, ADMIN, "organization").await?;
    let current = state
        .store
        .member_role(id, user_id)
        .await?
        .ok_or_else(|| ApiError::not_found("member"))?;
    check_grant(mine, Some(current), None)?;
    if current == Role::Owner && !owners_left_after(&state, id, user_id).await? {
        return Err(ApiError::conflict(
            "an organization keeps at least one owner",
        ));
    }
    state.store.remove_member(id, user_id).await?;
    state.audit(&auth, id, "member.remove", Some(user_id)).await;
    Ok(StatusCode::NO_CONTENT)
}

async fn audit_log(
    State(state): State<AppState>,
    auth: Auth,
    Id(id): Id,
    ApiQuery(page): ApiQuery<PageParams>,
) -> ApiResult<Json<Page<AuditEntry>>> {
    state.require(&auth, id, ADMIN, "organization").await?;
    page.validate()
        .map_err(nxmesh_core::error::ValidationErrors::from)?;
    Ok(Json(state.store.list_audit(id, page).await?))
}
