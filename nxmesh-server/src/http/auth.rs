//! `/auth`: login, refresh (single-use, rotated, reuse revokes the family),
//! logout, and API tokens.

use std::net::SocketAddr;

use axum::Extension;
use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use chrono::Utc;
use nxmesh_core::error::ErrorBody;
use nxmesh_core::model::{
    ApiToken, ApiTokenCreated, CreateApiToken, LoginRequest, LogoutRequest, RefreshRequest,
    TokenResponse,
};
use nxmesh_core::storage::{NewApiToken, RefreshUse};
use nxmesh_core::validate::Validate;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, Auth, Id, Via};
use super::middleware::API_TOKEN_PREFIX;
use crate::auth::{dummy_password_hash, hash_secret, new_secret, verify_password};
use crate::state::AppState;

/// Prefix of refresh tokens.
const REFRESH_PREFIX: &str = "nxr_";

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
}

/// A new access token and refresh token of `family`.
async fn session(state: &AppState, user: Uuid, family: Uuid) -> ApiResult<TokenResponse> {
    let access_token = state.keys.issue(user).map_err(ApiError::internal)?;
    let refresh_token = new_secret(REFRESH_PREFIX)?;
    let ttl = chrono::Duration::from_std(state.settings.refresh_ttl).map_err(ApiError::internal)?;
    state
        .store
        .insert_refresh_token(user, family, &hash_secret(&refresh_token), Utc::now() + ttl)
        .await?;
    Ok(TokenResponse {
        access_token,
        refresh_token,
        expires_in: u64::try_from(state.keys.access_ttl).unwrap_or(0),
        token_type: "Bearer".to_owned(),
    })
}

/// Log in with email and password.
///
/// Public. Answers an access token (a JWT) and a single-use refresh token.
/// Repeated failures for an account or an address are rate limited.
#[utoipa::path(
    post,
    path = "/auth/login",
    tag = "auth",
    operation_id = "login",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in.", body = TokenResponse),
        (status = 401, description = "Wrong email or password.", body = ErrorBody),
        (status = 422, description = "Malformed body.", body = ErrorBody),
        (status = 429, description = "Too many failed logins; `Retry-After` says when to try again.", body = ErrorBody),
    )
)]
async fn login(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<Json<TokenResponse>> {
    req.validate()?;
    let account = format!("login:{}", req.email.to_lowercase());
    let address = peer.map_or_else(
        || "login-ip:unknown".to_owned(),
        |p| format!("login-ip:{}", p.0.0.ip()),
    );
    if let Some(wait) = state.logins.blocked(&[&account, &address]) {
        return Err(ApiError::rate_limited(wait));
    }
    let found = state.store.user_by_email(&req.email).await?;
    // Verify against a dummy hash for unknown accounts, so that timing does
    // not reveal which emails exist.
    let hash = found
        .as_ref()
        .map_or(dummy_password_hash(), |(_, h)| h.as_str())
        .to_owned();
    let password = req.password.clone();
    let ok = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .map_err(ApiError::internal)?;
    let Some((user, _)) = found.filter(|_| ok) else {
        state.logins.failed(&[&account, &address]);
        return Err(ApiError::unauthorized("invalid email or password"));
    };
    state.logins.succeeded(&account);
    Ok(Json(session(&state, user.id, Uuid::new_v4()).await?))
}

/// Exchange a refresh token for a new access token and refresh token.
///
/// Public. A refresh token is single-use: using one twice revokes the whole
/// session.
#[utoipa::path(
    post,
    path = "/auth/refresh",
    tag = "auth",
    operation_id = "refresh",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "A new session pair.", body = TokenResponse),
        (status = 401, description = "Invalid, expired or reused refresh token.", body = ErrorBody),
        (status = 422, description = "Malformed body.", body = ErrorBody),
    )
)]
async fn refresh(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> ApiResult<Json<TokenResponse>> {
    match state
        .store
        .use_refresh_token(&hash_secret(&req.refresh_token), Utc::now())
        .await?
    {
        RefreshUse::Valid { user_id, family_id } => {
            if state.store.get_user(user_id).await?.is_none() {
                return Err(ApiError::unauthorized("the user no longer exists"));
            }
            Ok(Json(session(&state, user_id, family_id).await?))
        }
        RefreshUse::Reused { family_id } => {
            tracing::warn!(%family_id, "refresh token reused; session family revoked");
            Err(ApiError::unauthorized(
                "refresh token already used; the session has been revoked",
            ))
        }
        RefreshUse::Invalid => Err(ApiError::unauthorized("invalid or expired refresh token")),
    }
}

/// Log out: revoke the session of a refresh token.
///
/// Public (the refresh token is the credential).
#[utoipa::path(
    post,
    path = "/auth/logout",
    tag = "auth",
    operation_id = "logout",
    request_body = LogoutRequest,
    responses(
        (status = 204, description = "The session is revoked."),
        (status = 401, description = "Invalid refresh token.", body = ErrorBody),
        (status = 422, description = "Malformed body.", body = ErrorBody),
    )
)]
async fn logout(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<LogoutRequest>,
) -> ApiResult<StatusCode> {
    let family = state
        .store
        .refresh_family(&hash_secret(&req.refresh_token))
        .await?
        .ok_or_else(|| ApiError::unauthorized("invalid refresh token"))?;
    state.store.revoke_refresh_family(family).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// List the caller's API tokens (never the secrets).
#[utoipa::path(
    get,
    path = "/auth/tokens",
    tag = "auth",
    operation_id = "list_api_tokens",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's API tokens.", body = Vec<ApiToken>),
        (status = 401, description = "Authentication required.", body = ErrorBody),
    )
)]
async fn list_tokens(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<Vec<ApiToken>>> {
    Ok(Json(state.store.list_api_tokens(auth.user_id()).await?))
}

/// Create an API token; the secret is returned once.
///
/// Only from a login session, not with another API token.
#[utoipa::path(
    post,
    path = "/auth/tokens",
    tag = "auth",
    operation_id = "create_api_token",
    security(("bearer" = [])),
    request_body = CreateApiToken,
    responses(
        (status = 201, description = "Created; `token` is shown only now.", body = ApiTokenCreated),
        (status = 401, description = "Authentication required.", body = ErrorBody),
        (status = 403, description = "Called with an API token rather than a login session.", body = ErrorBody),
        (status = 422, description = "Validation failed.", body = ErrorBody),
    )
)]
async fn create_token(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(req): ApiJson<CreateApiToken>,
) -> ApiResult<(StatusCode, Json<ApiTokenCreated>)> {
    if auth.0.via != Via::Session {
        return Err(ApiError::forbidden(
            "API tokens are created from a login session, not with another API token",
        ));
    }
    req.validate()?;
    let token = new_secret(API_TOKEN_PREFIX)?;
    let expires_at = req
        .expires_in_days
        .map(|d| Utc::now() + chrono::Duration::days(i64::from(d)));
    let mut scopes = req.scopes.clone();
    scopes.sort();
    scopes.dedup();
    let api_token = state
        .store
        .create_api_token(&NewApiToken {
            user_id: auth.user_id(),
            name: req.name.clone(),
            scopes,
            token_hash: hash_secret(&token),
            expires_at,
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(ApiTokenCreated { token, api_token }),
    ))
}

/// Revoke one of the caller's API tokens.
#[utoipa::path(
    delete,
    path = "/auth/tokens/{token_id}",
    tag = "auth",
    operation_id = "revoke_api_token",
    security(("bearer" = [])),
    params(("token_id" = Uuid, Path, description = "The API token's id.")),
    responses(
        (status = 204, description = "Revoked."),
        (status = 401, description = "Authentication required.", body = ErrorBody),
        (status = 404, description = "No such token of the caller.", body = ErrorBody),
    )
)]
async fn revoke_token(
    State(state): State<AppState>,
    auth: Auth,
    Id(id): Id,
) -> ApiResult<StatusCode> {
    state.store.revoke_api_token(auth.user_id(), id).await?;
    Ok(StatusCode::NO_CONTENT)
}
