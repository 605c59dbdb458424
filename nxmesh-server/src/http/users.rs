//! `/users`: administrators create and delete users; everyone reads
//! themselves.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use nxmesh_core::model::{CreateUser, User};
use nxmesh_core::storage::NewUser;
use nxmesh_core::validate::Validate;

use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, Auth, Id};
use crate::auth::hash_password;
use crate::state::AppState;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/users", post(create))
        .route("/users/me", get(me))
        .route("/users/{id}", delete(remove))
}

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

async fn me(auth: Auth) -> Json<User> {
    Json(auth.0.user)
}

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
