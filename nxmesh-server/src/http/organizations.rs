//! `/organizations`, their members and audit log.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use nxmesh_core::error::{ErrorBody, FieldErrorCode};
use nxmesh_core::model::{
    AddMember, AuditEntry, CreateOrganization, Member, Organization, Role, UpdateMember,
    UpdateOrganization,
};
use nxmesh_core::pagination::{Page, PageParams};
use nxmesh_core::validate::Validate;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ApiResult};
use super::extract::{ADMIN, ApiJson, ApiQuery, Auth, Id, Ids};
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(read, update, remove))
        .routes(routes!(list_members, add_member))
        .routes(routes!(update_member, remove_member))
        .routes(routes!(audit_log))
}

/// The organizations the caller is a member of.
#[utoipa::path(
    get,
    path = "/organizations",
    tag = "organizations",
    operation_id = "list_organizations",
    security(("bearer" = [])),
    params(PageParams),
    responses(
        (status = 200, description = "A page of organizations.", body = Page<Organization>),
        (status = 401, description = "Authentication required.", body = ErrorBody),
        (status = 422, description = "Bad `page` or `per_page`.", body = ErrorBody),
    )
)]
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

/// Create an organization; the caller becomes its owner.
#[utoipa::path(
    post,
    path = "/organizations",
    tag = "organizations",
    operation_id = "create_organization",
    security(("bearer" = [])),
    request_body = CreateOrganization,
    responses(
        (status = 201, description = "Created.", body = Organization),
        (status = 401, description = "Authentication required.", body = ErrorBody),
        (status = 409, description = "The slug is taken.", body = ErrorBody),
        (status = 422, description = "Validation failed.", body = ErrorBody),
    )
)]
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

/// One organization (viewer).
#[utoipa::path(
    get,
    path = "/organizations/{organization_id}",
    tag = "organizations",
    operation_id = "get_organization",
    security(("bearer" = [])),
    params(("organization_id" = Uuid, Path, description = "The organization's id.")),
    responses(
        (status = 200, description = "The organization.", body = Organization),
        (status = 401, description = "Authentication required.", body = ErrorBody),
        (status = 404, description = "No such organization, or the caller is not a member of its organization.", body = ErrorBody),
    )
)]
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

/// Rename an organization (owner).
#[utoipa::path(
    patch,
    path = "/organizations/{organization_id}",
    tag = "organizations",
    operation_id = "update_organization",
    security(("bearer" = [])),
    params(("organization_id" = Uuid, Path, description = "The organization's id.")),
    request_body = UpdateOrganization,
    responses(
        (status = 200, description = "Updated.", body = Organization),
        (status = 401, description = "Authentication required.", body = ErrorBody),
        (status = 403, description = "The caller is not an owner.", body = ErrorBody),
        (status = 404, description = "No such organization, or the caller is not a member of its organization.", body = ErrorBody),
        (status = 409, description = "The slug is taken.", body = ErrorBody),
        (status = 422, description = "Validation failed.", body = ErrorBody),
    )
)]
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

/// Delete an organization and everything in it (owner).
#[utoipa::path(
    delete,
    path = "/organizations/{organization_id}",
    tag = "organizations",
    operation_id = "delete_organization",
    security(("bearer" = [])),
    params(("organization_id" = Uuid, Path, description = "The organization's id.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 401, description = "Authentication required.", body = ErrorBody),
        (status = 403, description = "The caller is not an owner.", body = ErrorBody),
        (status = 404, description = "No such organization, or the caller is not a member of its organization.", body = ErrorBody),
    )
)]
async fn remove(State(state): State<AppState>, auth: Auth, Id(id): Id) -> ApiResult<StatusCode> {
    state
        .require(&auth, id, Role::Owner, "organization")
        .await?;
    state.store.delete_organization(id).await?;
    // The audit log goes with the organization; the server log keeps it.
    tracing::info!(organization_id = %id, actor = %auth.0.user.email, "organization deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// The members of an organization (viewer).
#[utoipa::path(
    get,
    path = "/organizations/{organization_id}/members",
    tag = "organizations",
    operation_id = "list_members",
    security(("bearer" = [])),
    params(("organization_id" = Uuid, Path, description = "The organization's id."), PageParams),
    responses(
        (status = 200, description = "A page of members.", body = Page<Member>),
        (status = 401, description = "Authentication required.", body = ErrorBody),
        (status = 404, description = "No such organization, or the caller is not a member of its organization.", body = ErrorBody),
        (status = 422, description = "Bad `page` or `per_page`.", body = ErrorBody),
    )
)]
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

/// Add a user to an organization by email or id (admin; only owners grant owner).
#[utoipa::path(
    post,
    path = "/organizations/{organization_id}/members",
    tag = "organizations",
    operation_id = "add_member",
    security(("bearer" = [])),
    params(("organization_id" = Uuid, Path, description = "The organization's id.")),
    request_body = AddMember,
    responses(
        (status = 201, description = "Added.", body = Member),
        (status = 401, description = "Authentication required.", body = ErrorBody),
        (status = 403, description = "The caller's role is too low.", body = ErrorBody),
        (status = 404, description = "No such organization, or the caller is not a member of its organization.", body = ErrorBody),
        (status = 409, description = "The user is already a member.", body = ErrorBody),
        (status = 422, description = "Validation failed, or no such user.", body = ErrorBody),
    )
)]
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

/// Change a member's role (admin; only owners grant or take away owner).
#[utoipa::path(
    patch,
    path = "/organizations/{organization_id}/members/{user_id}",
    tag = "organizations",
    operation_id = "update_member",
    security(("bearer" = [])),
    params(("organization_id" = Uuid, Path, description = "The organization's id."), ("user_id" = Uuid, Path, description = "The member's user id.")),
    request_body = UpdateMember,
    responses(
        (status = 200, description = "Updated.", body = Member),
        (status = 401, description = "Authentication required.", body = ErrorBody),
        (status = 403, description = "The caller's role is too low.", body = ErrorBody),
        (status = 404, description = "No such organization or member.", body = ErrorBody),
        (status = 409, description = "An organization keeps at least one owner.", body = ErrorBody),
        (status = 422, description = "Malformed body.", body = ErrorBody),
    )
)]
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

/// Remove a member (admin; only owners remove owners).
#[utoipa::path(
    delete,
    path = "/organizations/{organization_id}/members/{user_id}",
    tag = "organizations",
    operation_id = "remove_member",
    security(("bearer" = [])),
    params(("organization_id" = Uuid, Path, description = "The organization's id."), ("user_id" = Uuid, Path, description = "The member's user id.")),
    responses(
        (status = 204, description = "Removed."),
        (status = 401, description = "Authentication required.", body = ErrorBody),
        (status = 403, description = "The caller's role is too low.", body = ErrorBody),
        (status = 404, description = "No such organization or member.", body = ErrorBody),
        (status = 409, description = "An organization keeps at least one owner.", body = ErrorBody),
    )
)]
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

/// The organization's audit log, newest first (admin).
#[utoipa::path(
    get,
    path = "/organizations/{organization_id}/audit-log",
    tag = "organizations",
    operation_id = "list_audit_log",
    security(("bearer" = [])),
    params(("organization_id" = Uuid, Path, description = "The organization's id."), PageParams),
    responses(
        (status = 200, description = "A page of audit entries.", body = Page<AuditEntry>),
        (status = 401, description = "Authentication required.", body = ErrorBody),
        (status = 403, description = "The caller's role is too low.", body = ErrorBody),
        (status = 404, description = "No such organization, or the caller is not a member of its organization.", body = ErrorBody),
        (status = 422, description = "Bad `page` or `per_page`.", body = ErrorBody),
    )
)]
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
