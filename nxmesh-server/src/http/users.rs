//! `/users`: administrators create and delete users; everyone reads
//! themselves.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use nxmesh_core::error::ErrorBody;
use nxmesh_core::model::{CreateUser, User};
use nxmesh_core::storage::NewUser;
use nxmesh_core::validate::Validate;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, Auth, Id};
use crate::auth::hash_password;
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create))
        .routes(routes!(me))
        .routes(routes!(remove))
}

/// Create a user (server administrators only).
#[utoipa::path(
    post,
    path = "/users",
    tag = "users",
    operation_id = "create_user",
    security(("bearer" = [])),
    request_body = CreateUser,
    responses(
        (status = 201, description = "Created.", body = User),
        (status = 401, description = "Authentication required.", body = ErrorBody),
        (status = 403, description = "The caller is not a server administrator.", body = ErrorBody),
        (status = 409, description = "A user with this email exists.", body = ErrorBody),
        (status = 422, description = "Validation failed.", body = ErrorBody),
    )
)]
async fn create(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(req): ApiJson<CreateUser>,
) -> ApiResult<(StatusCode, Json<User>)> {
    if !auth.0.user.is_admin {
        return Err(ApiError::forbidden(
            "only server administrators create users",
        ));
    }
    req.validate()?;
    let password = req.password.clone();
    let password_hash = tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(ApiError::internal)??;
    let user = state
        .store
        .create_user(&NewUser {
            email: req.email.clone(),
            name: req.name.clone(),
            password_hash,
            is_admin: req.is_admin,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(user)))
}

/// The calling user.
#[utoipa::path(
    get,
    path = "/users/me",
    tag = "users",
    operation_id = "get_current_user",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller.", body = User),
        (status = 401, description = "Authentication required.", body = ErrorBody),
    )
)]
async fn me(auth: Auth) -> Json<User> {
    Json(auth.0.user)
}

/// Delete a user (server administrators only), with their memberships,
/// sessions and API tokens.
#[utoipa::path(
    delete,
    path = "/users/{user_id}",
    tag = "users",
    operation_id = "delete_user",
    security(("bearer" = [])),
    params(("user_id" = Uuid, Path, description = "The user's id.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 401, description = "Authentication required.", body = ErrorBody),
        (status = 403, description = "The caller is not a server administrator.", body = ErrorBody),
        (status = 404, description = "No such user.", body = ErrorBody),
        (status = 409, description = "Administrators do not delete themselves.", body = ErrorBody),
    )
)]
async fn remove(State(state): State<AppState>, auth: Auth, Id(id): Id) -> ApiResult<StatusCode> {
    if !auth.0.user.is_admin {
        return Err(ApiError::forbidden(
            "only server administrators delete users",
        ));
    }
    if id == auth.user_id() {
        return Err(ApiError::conflict(
            "administrators do not delete themselves",
        ));
    }
    // Memberships, sessions and API tokens go with the user; access tokens
    // already issued stop working because every request looks the user up.
    state.store.delete_user(id).await?;
    tracing::info!(user_id = %id, actor = %auth.0.user.email, "user deleted");
    Ok(StatusCode::NO_CONTENT)
}
