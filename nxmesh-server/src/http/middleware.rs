//! Request-wide middleware: error rendering with the request id,
//! authentication, rate limiting.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use nxmesh_core::error::{ApiErrorDetail, ErrorBody, ErrorCode};
use nxmesh_core::model::Scope;

use super::error::ApiError;
use super::extract::{Principal, Via};
use crate::auth::hash_secret;
use crate::state::AppState;

/// The header carrying the request id (set by `SetRequestIdLayer`).
pub(crate) const REQUEST_ID: &str = "x-request-id";

/// Prefix of API tokens, which tells them apart from JWTs.
pub const API_TOKEN_PREFIX: &str = "nxm_";

/// Renders an [`ApiError`] left in a response's extensions as the
/// specification's error body, with the request id; logs internal errors
/// once, here.
pub(crate) async fn render_errors(req: Request, next: Next) -> Response {
    let request_id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_default();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let mut res = next.run(req).await;
    let Some(err) = res.extensions_mut().remove::<Arc<ApiError>>() else {
        return res;
    };
    if let Some(cause) = &err.cause {
        if err.code == ErrorCode::InternalError {
            tracing::error!(%request_id, %method, %path, cause = %cause, "internal error");
        } else {
            tracing::warn!(%request_id, %method, %path, cause = %cause, code = %err.code, "request failed");
        }
    }
    let body = ErrorBody {
        error: ApiErrorDetail {
            code: err.code,
            message: err.message.clone(),
            request_id,
            details: err.details.clone(),
        },
    };
    let mut out = (res.status(), Json(body)).into_response();
    for (k, v) in res.headers() {
        if k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH {
            out.headers_mut().insert(k.clone(), v.clone());
        }
    }
    if let Some(secs) = err.retry_after {
        out.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    out
}

/// Authenticates the request when it carries `Authorization: Bearer …`,
/// putting the [`Principal`] in its extensions. Invalid credentials are a
/// 401 at once; no credentials pass on, and handlers that need a principal
/// answer 401 themselves (so public routes stay public).
pub(crate) async fn authenticate(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return next.run(req).await;
    };
    let Some(token) = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
    else {
        return ApiError::unauthorized("expected Authorization: Bearer <token>").into_response();
    };
    match principal(&state, token, req.method()).await {
        Ok(p) => {
            req.extensions_mut().insert(p);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

pub(crate) async fn principal(
    state: &AppState,
    token: &str,
    method: &Method,
) -> Result<Principal, ApiError> {
    if token.starts_with(API_TOKEN_PREFIX) {
        let (api, owner) = state
            .store
            .api_token_by_hash(&hash_secret(token), Utc::now())
            .await?
            .ok_or_else(|| ApiError::unauthorized("invalid or expired API token"))?;
        let user = state
            .store
            .get_user(owner)
            .await?
            .ok_or_else(|| ApiError::unauthorized("the token's user no longer exists"))?;
        let reading = matches!(*method, Method::GET | Method::HEAD);
        let allowed =
            api.scopes.contains(&Scope::Write) || (reading && api.scopes.contains(&Scope::Read));
        if !allowed {
            return Err(ApiError::forbidden(
                "the API token's scopes do not allow this request",
            ));
        }
        return Ok(Principal {
            user,
            via: Via::ApiToken { scopes: api.scopes },
        });
    }
    let claims = state
        .keys
        .verify(token)
        .map_err(|_| ApiError::unauthorized("invalid or expired access token"))?;
    let user = state
        .store
        .get_user(claims.sub)
        .await?
        .ok_or_else(|| ApiError::unauthorized("the token's user no longer exists"))?;
    Ok(Principal {
        user,
        via: Via::Session,
    })
}

/// Counts the request against its principal's (or, unauthenticated, its
/// address's) budget and adds the `X-RateLimit-*` headers.
pub(crate) async fn rate_limit(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let key = match req.extensions().get::<Principal>() {
        Some(p) => format!("user:{}", p.user.id),
        None => match req.extensions().get::<ConnectInfo<SocketAddr>>() {
            Some(ConnectInfo(addr)) => format!("ip:{}", addr.ip()),
            None => "anonymous".to_owned(),
        },
    };
    let d = state.rate.check(&key);
    let mut res = if d.allowed {
        next.run(req).await
    } else {
        ApiError::rate_limited(d.reset_after).into_response()
    };
    let h = res.headers_mut();
    h.insert("x-ratelimit-limit", HeaderValue::from(d.limit));
    h.insert("x-ratelimit-remaining", HeaderValue::from(d.remaining));
    h.insert("x-ratelimit-reset", HeaderValue::from(d.reset_after));
    res
}
