//! The WebSocket event feed: `/v1/events?token=…` (or an `Authorization`
//! header). A user receives only events of workspaces in organizations
//! they belong to; `{"action": "subscribe", "events": [...], "filter":
//! {"workspace_id": …}}` narrows the feed (glob patterns such as
//! `agent.*`). The server pings every 30 s and drops a connection that
//! stops answering, and drops a consumer too slow to keep up rather than
//! buffering for it.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use axum::Extension;
use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use nxmesh_core::error::ErrorBody;
use nxmesh_core::event::{ClientMessage, Subscription};
use nxmesh_core::transport::{EventSubscriber as _, TransportError};
use nxmesh_core::validate::Validate;
use serde::Deserialize;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::error::{ApiError, ApiResult};
use super::extract::{ApiQuery, Principal};
use super::middleware::principal;
use crate::state::AppState;

const PING_EVERY: Duration = Duration::from_secs(30);
const PONG_WITHIN: Duration = Duration::from_secs(75);
const SEND_WITHIN: Duration = Duration::from_secs(10);
const MEMBERSHIP_REFRESH: Duration = Duration::from_secs(30);

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(upgrade))
}

/// The query of the event feed.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct Query {
    /// An access token or API token, for clients that cannot set the
    /// `Authorization` header on a WebSocket request (browsers).
    token: Option<String>,
}

/// The WebSocket event feed of the workspaces the caller can see.
///
/// Upgrade with `Authorization: Bearer <token>` or `?token=<token>`. Send
/// `{"action": "subscribe", "events": ["agent.*"], "filter":
/// {"workspace_id": "..."}}` to narrow the feed; events arrive as JSON text
/// messages (`Event` in the schemas). The server pings every 30 s.
#[utoipa::path(
    get,
    path = "/events",
    tag = "events",
    operation_id = "event_feed",
    security(("bearer" = [])),
    params(Query),
    responses(
        (status = 101, description = "Switched to the WebSocket protocol."),
        (status = 401, description = "Authentication required, or the token is invalid.", body = ErrorBody),
        (status = 426, description = "Not a WebSocket upgrade request (plain-text body from the WebSocket layer)."),
    )
)]
async fn upgrade(
    State(state): State<AppState>,
    header: Option<Extension<Principal>>,
    ApiQuery(q): ApiQuery<Query>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let who = match (header, q.token) {
        (Some(Extension(p)), _) => p,
        (None, Some(token)) => principal(&state, &token, &Method::GET).await?,
        (None, None) => {
            return Err(ApiError::unauthorized(
                "authentication required: ?token=… or Authorization",
            ));
        }
    };
    // Credentials are checked before the upgrade, so that a request
    // without them is a 401 whatever else it lacks.
    match ws {
        Ok(ws) => Ok(ws.on_upgrade(move |socket| feed(state, who, socket))),
        Err(rejection) => Ok(rejection.into_response()),
    }
}

async fn organizations(state: &AppState, user: Uuid) -> BTreeSet<Uuid> {
    match state.store.memberships(user).await {
        Ok(m) => m.into_iter().map(|(org, _)| org).collect(),
        Err(e) => {
            tracing::warn!(error = %e, "could not read memberships for the event feed");
            BTreeSet::new()
        }
    }
}

async fn send_json(socket: &mut WebSocket, value: &serde_json::Value) -> bool {
    matches!(
        tokio::time::timeout(
            SEND_WITHIN,
            socket.send(Message::Text(value.to_string().into()))
        )
        .await,
        Ok(Ok(()))
    )
}

/// Handles one client message; returns the new subscription or an error text.
async fn subscribe(
    state: &AppState,
    orgs: &BTreeSet<Uuid>,
    text: &str,
) -> Result<Subscription, String> {
    let ClientMessage::Subscribe(sub) =
        serde_json::from_str::<ClientMessage>(text).map_err(|e| format!("invalid message: {e}"))?;
    sub.validate().map_err(|e| e.to_string())?;
    if let Some(ws) = sub.filter.as_ref().and_then(|f| f.workspace_id) {
        let visible = matches!(state.store.get_workspace(ws).await, Ok(Some(w)) if orgs.contains(&w.organization_id));
        if !visible {
            return Err("workspace not found".to_owned());
        }
    }
    Ok(sub)
}

async fn feed(state: AppState, who: Principal, mut socket: WebSocket) {
    let user = who.user.id;
    let mut events = state.events.subscribe();
    let mut orgs = organizations(&state, user).await;
    let mut refreshed = Instant::now();
    let mut subscription = Subscription {
        events: vec!["*".to_owned()],
        filter: None,
    };
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    let mut last_pong = Instant::now();
    loop {
        tokio::select! {
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    let reply = match subscribe(&state, &orgs, &text).await {
                        Ok(sub) => {
                            let r = json!({"type": "subscribed", "events": sub.events, "filter": sub.filter});
                            subscription = sub;
                            r
                        }
                        Err(message) => json!({"type": "error", "message": message}),
                    };
                    if !send_json(&mut socket, &reply).await {
                        break;
                    }
                }
                Some(Ok(Message::Pong(_))) => last_pong = Instant::now(),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            event = events.next_event() => match event {
                Ok(env) => {
                    if refreshed.elapsed() > MEMBERSHIP_REFRESH {
                        orgs = organizations(&state, user).await;
                        refreshed = Instant::now();
                    }
                    if !orgs.contains(&env.organization_id) || !subscription.matches(env.event.event_type(), env.workspace_id) {
                        continue;
                    }
                    let Ok(value) = serde_json::to_value(&env.event) else { continue };
                    if !send_json(&mut socket, &value).await {
                        tracing::info!(%user, "event consumer too slow or gone; dropping it");
                        break;
                    }
                }
                Err(TransportError::Lagged(n)) => {
                    tracing::info!(%user, dropped = n, "event consumer lagged; dropping it");
                    let frame = CloseFrame { code: 1008, reason: "too slow: events were dropped".into() };
                    let _ = socket.send(Message::Close(Some(frame))).await;
                    break;
                }
                Err(_) => break,
            },
            _ = ping.tick() => {
                if last_pong.elapsed() > PONG_WITHIN {
                    break;
                }
                if socket.send(Message::Ping(Vec::new().into())).await.is_err() {
                    break;
                }
            }
        }
    }
}
