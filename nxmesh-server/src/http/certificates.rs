//! Certificates: `/workspaces/{id}/certificates` and `/certificates/{id}`.
//! `letsencrypt` requests start `pending` and are queued for the master's
//! ACME client (`crate::acme`), `self_signed` are issued at once, `custom`
//! uploads are checked. `POST /certificates/{id}/renew` (beyond the
//! specification) forces a renewal. Private keys are sealed before they
//! are stored and never returned.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use nxmesh_core::error::{ErrorBody, ValidationErrors};
use nxmesh_core::model::{
    Certificate, CertificateProvider, CertificateStatus, CreateCertificate, Role,
};
use nxmesh_core::pagination::{Page, PageParams};
use nxmesh_core::storage::NewCertificate;
use nxmesh_core::validate::Validate;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiQuery, Auth, EDIT, Id};
use crate::certs;
use crate::state::AppState;

/// Lifetime of self-signed certificates, in days.
const SELF_SIGNED_DAYS: i64 = 365;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(read, remove))
        .routes(routes!(renew))
}

/// The certificates of a workspace, without private keys (viewer).
#[utoipa::path(
    get,
    path = "/workspaces/{workspace_id}/certificates",
    tag = "certificates",
    operation_id = "list_certificates",
    security(("bearer" = [])),
    params(("workspace_id" = Uuid, Path, description = "The workspace's id."), PageParams),
    responses(
        (status = 200, description = "A page of certificates.", body = Page<Certificate>),
        (status = 401, description = "Authentication required.", body = ErrorBody),
        (status = 404, description = "No such workspace, or the caller is not a member of its organization.", body = ErrorBody),
        (status = 422, description = "Bad `page` or `per_page`.", body = ErrorBody),
    )
)]
async fn list(
    State(state): State<AppState>,
    auth: Auth,
    Id(ws): Id,
    ApiQuery(page): ApiQuery<PageParams>,
) -> ApiResult<Json<Page<Certificate>>> {
    state.workspace(&auth, ws, Role::Viewer).await?;
    page.validate().map_err(ValidationErrors::from)?;
    Ok(Json(state.store.list_certificates(ws, page).await?))
}

/// Request (`letsencrypt`, starts `pending`), issue (`self_signed`) or upload (`custom`) a certificate (editor).
///
/// Private keys are sealed before they are stored and never returned.
#[utoipa::path(
    post,
    path = "/workspaces/{workspace_id}/certificates",
    tag = "certificates",
    operation_id = "create_certificate",
    security(("bearer" = [])),
    params(("workspace_id" = Uuid, Path, description = "The workspace's id.")),
    request_body = CreateCertificate,
    responses(
        (status = 201, description = "Created.", body = Certificate),
        (status = 401, description = "Authentication required.", body = ErrorBody),
        (status = 403, description = "The caller's role is too low.", body = ErrorBody),
        (status = 404, description = "No such workspace, or the caller is not a member of its organization.", body = ErrorBody),
        (status = 409, description = "A certificate for this domain exists in the workspace.", body = ErrorBody),
        (status = 422, description = "Validation failed, or the uploaded certificate and key do not match the domain or each other.", body = ErrorBody),
    )
)]
async fn create(
    State(state): State<AppState>,
    auth: Auth,
    Id(ws): Id,
    ApiJson(req): ApiJson<CreateCertificate>,
) -> ApiResult<(StatusCode, Json<Certificate>)> {
    let workspace = state.workspace(&auth, ws, EDIT).await?;
    req.validate()?;
    let is_wildcard = req.is_wildcard();
    let domain = req.domain.trim_start_matches("*.").to_owned();
    let issued = match req.provider {
        CertificateProvider::Letsencrypt => None,
        CertificateProvider::SelfSigned => {
            let name = req.domain.clone();
            let c =
                tokio::task::spawn_blocking(move || certs::self_signed(&name, SELF_SIGNED_DAYS))
                    .await
                    .map_err(ApiError::internal)?
                    .map_err(ApiError::internal)?;
            Some(c)
        }
        CertificateProvider::Custom => {
            let (Some(cert), Some(key)) = (&req.certificate_pem, &req.private_key_pem) else {
                return Err(ApiError::bad_request(
                    "a custom certificate needs certificate_pem and private_key_pem",
                ));
            };
            Some(certs::check_custom(cert, key, &req.domain)?)
        }
    };
    let new = match issued {
        None => NewCertificate {
            workspace_id: ws,
            domain,
            is_wildcard,
            provider: req.provider,
            status: CertificateStatus::Pending,
            auto_renew: req.auto_renew,
            certificate_pem: None,
            encrypted_private_key: None,
            issued_at: None,
            expires_at: None,
        },
        Some(c) => NewCertificate {
            workspace_id: ws,
            domain,
            is_wildcard,
            provider: req.provider,
            status: CertificateStatus::Active,
            // Nothing renews an uploaded or self-signed certificate by itself.
            auto_renew: false,
            encrypted_private_key: Some(state.secrets.seal(c.private_key_pem.as_bytes())?),
            certificate_pem: Some(c.certificate_pem),
            issued_at: Some(c.issued_at),
            expires_at: Some(c.expires_at),
        },
    };
    let cert = state.store.create_certificate(&new).await?;
    if cert.provider == CertificateProvider::Letsencrypt
        && let Some(service) = &state.certificates
    {
        // Committed already: if queuing fails, the scheduler still finds
        // a pending ACME certificate on its next scan.
        if let Err(e) = service.request(cert.id).await {
            tracing::warn!(certificate = %cert.id, error = %e, "cannot queue the ACME order");
        }
    }
    state
        .audit(
            &auth,
            workspace.organization_id,
            "certificate.create",
            Some(cert.id),
        )
        .await;
    Ok((StatusCode::CREATED, Json(cert)))
}

/// One certificate, without its private key (viewer).
#[utoipa::path(
    get,
    path = "/certificates/{certificate_id}",
    tag = "certificates",
    operation_id = "get_certificate",
    security(("bearer" = [])),
    params(("certificate_id" = Uuid, Path, description = "The certificate's id.")),
    responses(
        (status = 200, description = "The certificate.", body = Certificate),
        (status = 401, description = "Authentication required.", body = ErrorBody),
        (status = 404, description = "No such certificate, or the caller is not a member of its organization.", body = ErrorBody),
    )
)]
async fn read(
    State(state): State<AppState>,
    auth: Auth,
    Id(id): Id,
) -> ApiResult<Json<Certificate>> {
    Ok(Json(state.certificate(&auth, id, Role::Viewer).await?.0))
}

/// Delete a certificate (editor).
#[utoipa::path(
    delete,
    path = "/certificates/{certificate_id}",
    tag = "certificates",
    operation_id = "delete_certificate",
    security(("bearer" = [])),
    params(("certificate_id" = Uuid, Path, description = "The certificate's id.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 401, description = "Authentication required.", body = ErrorBody),
        (status = 403, description = "The caller's role is too low.", body = ErrorBody),
        (status = 404, description = "No such certificate, or the caller is not a member of its organization.", body = ErrorBody),
        (status = 409, description = "A virtual host still uses the certificate.", body = ErrorBody),
    )
)]
async fn remove(State(state): State<AppState>, auth: Auth, Id(id): Id) -> ApiResult<StatusCode> {
    let (_, ws) = state.certificate(&auth, id, EDIT).await?;
    state.store.delete_certificate(id).await?;
    state
        .audit(&auth, ws.organization_id, "certificate.delete", Some(id))
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Renew a certificate now (editor; beyond the specification).
///
/// An ACME certificate is queued for renewal at once (202; the certificate
/// moves to `active` with new material, or `failed` with the CA's reason,
/// and the events `certificate.renewed` or `certificate.failed` follow). A
/// self-signed certificate is issued again at once (200). An uploaded
/// certificate is renewed by uploading a new one (409). Agents that serve
/// the certificate receive the new one without a failed request: nginx
/// reloads gracefully.
#[utoipa::path(
    post,
    path = "/certificates/{certificate_id}/renew",
    tag = "certificates",
    operation_id = "renew_certificate",
    security(("bearer" = [])),
    params(("certificate_id" = Uuid, Path, description = "The certificate's id.")),
    responses(
        (status = 200, description = "Renewed (self-signed).", body = Certificate),
        (status = 202, description = "Renewal queued (ACME).", body = Certificate),
        (status = 401, description = "Authentication required.", body = ErrorBody),
        (status = 403, description = "The caller's role is too low.", body = ErrorBody),
        (status = 404, description = "No such certificate, or the caller is not a member of its organization.", body = ErrorBody),
        (status = 409, description = "An uploaded certificate, or a master without ACME.", body = ErrorBody),
    )
)]
async fn renew(
    State(state): State<AppState>,
    auth: Auth,
    Id(id): Id,
) -> ApiResult<(StatusCode, Json<Certificate>)> {
    let (cert, ws) = state.certificate(&auth, id, EDIT).await?;
    let Some(service) = state.certificates.clone() else {
        return Err(ApiError::conflict(
            "this master has no certificate service to renew with",
        ));
    };
    let status = match cert.provider {
        CertificateProvider::Custom => {
            return Err(ApiError::conflict(
                "an uploaded certificate is renewed by uploading a new one",
            ));
        }
        CertificateProvider::Letsencrypt => {
            service.force_renewal(id).await.map_err(|e| match e {
                crate::acme::RenewError::Storage(e) => ApiError::from(e),
                e @ crate::acme::RenewError::AcmeDisabled => ApiError::conflict(e.to_string()),
            })?;
            StatusCode::ACCEPTED
        }
        CertificateProvider::SelfSigned => {
            let name = if cert.is_wildcard {
                format!("*.{}", cert.domain)
            } else {
                cert.domain.clone()
            };
            let c =
                tokio::task::spawn_blocking(move || certs::self_signed(&name, SELF_SIGNED_DAYS))
                    .await
                    .map_err(ApiError::internal)?
                    .map_err(ApiError::internal)?;
            let material = crate::acme::store::NewMaterial {
                sealed_key: state.secrets.seal(c.private_key_pem.as_bytes())?,
                certificate_pem: c.certificate_pem,
                issued_at: c.issued_at,
                expires_at: c.expires_at,
            };
            service.store().store_material(id, &material).await?;
            let workspace = cert.workspace_id;
            state
                .roll_out("certificate.renew", move |store| async move {
                    crate::rollout::targeted_by_reference(store.as_ref(), workspace, id).await
                })
                .await;
            StatusCode::OK
        }
    };
    state
        .audit(&auth, ws.organization_id, "certificate.renew", Some(id))
        .await;
    let cert = state
        .store
        .get_certificate(id)
        .await?
        .ok_or_else(|| ApiError::not_found("certificate"))?;
    Ok((status, Json(cert)))
}
