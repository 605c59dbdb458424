//! Tenancy and roles. Every object belongs to an organization; a principal
//! that is not a member of it gets 404 (the object's existence is not
//! revealed), a member whose role is too low gets 403.

use chrono::Utc;
use nxmesh_core::model::{Agent, AuditEntry, Certificate, Role, Upstream, VirtualHost, Workspace};
use uuid::Uuid;

use super::error::{ApiError, ApiResult};
use super::extract::Auth;
use crate::state::AppState;

impl AppState {
    /// The principal's role in `org`, or 404 (`what` not found) when not a
    /// member, or 403 when below `min`.
    pub(crate) async fn require(
        &self,
        auth: &Auth,
        org: Uuid,
        min: Role,
        what: &str,
    ) -> ApiResult<Role> {
        let role = self
            .store
            .member_role(org, auth.user_id())
            .await?
            .ok_or_else(|| ApiError::not_found(what))?;
        if role < min {
            return Err(ApiError::forbidden(format!(
                "this needs the {min} role in the organization; you are {role}"
            )));
        }
        Ok(role)
    }

    /// The workspace, if the principal may act on it with `min`.
    pub(crate) async fn workspace(&self, auth: &Auth, id: Uuid, min: Role) -> ApiResult<Workspace> {
        let ws = self
            .store
            .get_workspace(id)
            .await?
            .ok_or_else(|| ApiError::not_found("workspace"))?;
        self.require(auth, ws.organization_id, min, "workspace")
            .await?;
        Ok(ws)
    }

    /// The agent and its workspace, if the principal may act with `min`.
    pub(crate) async fn agent(
        &self,
        auth: &Auth,
        id: Uuid,
        min: Role,
    ) -> ApiResult<(Agent, Workspace)> {
        let a = self
            .store
            .get_agent(id)
            .await?
            .ok_or_else(|| ApiError::not_found("agent"))?;
        let ws = self
            .owning_workspace(auth, a.workspace_id, min, "agent")
            .await?;
        Ok((a, ws))
    }

    /// The virtual host and its workspace.
    pub(crate) async fn virtual_host(
        &self,
        auth: &Auth,
        id: Uuid,
        min: Role,
    ) -> ApiResult<(VirtualHost, Workspace)> {
        let v = self
            .store
            .get_virtual_host(id)
            .await?
            .ok_or_else(|| ApiError::not_found("virtual host"))?;
        let ws = self
            .owning_workspace(auth, v.workspace_id, min, "virtual host")
            .await?;
        Ok((v, ws))
    }

    /// The upstream and its workspace.
    pub(crate) async fn upstream(
        &self,
        auth: &Auth,
        id: Uuid,
        min: Role,
    ) -> ApiResult<(Upstream, Workspace)> {
        let u = self
            .store
            .get_upstream(id)
            .await?
            .ok_or_else(|| ApiError::not_found("upstream"))?;
        let ws = self
            .owning_workspace(auth, u.workspace_id, min, "upstream")
            .await?;
        Ok((u, ws))
    }

    /// The certificate and its workspace.
    pub(crate) async fn certificate(
        &self,
        auth: &Auth,
        id: Uuid,
        min: Role,
    ) -> ApiResult<(Certificate, Workspace)> {
        let c = self
            .store
            .get_certificate(id)
            .await?
            .ok_or_else(|| ApiError::not_found("certificate"))?;
        let ws = self
            .owning_workspace(auth, c.workspace_id, min, "certificate")
            .await?;
        Ok((c, ws))
    }

    async fn owning_workspace(
        &self,
        auth: &Auth,
        ws: Uuid,
        min: Role,
        what: &str,
    ) -> ApiResult<Workspace> {
        let ws = self
            .store
            .get_workspace(ws)
            .await?
            .ok_or_else(|| ApiError::not_found(what))?;
        self.require(auth, ws.organization_id, min, what).await?;
        Ok(ws)
    }

    /// Records a change in the organization's audit log. The change itself
    /// is already committed, so a failure here is logged, not returned.
    pub(crate) async fn audit(
        &self,
        auth: &Auth,
        org: Uuid,
        action: &str,
        target_id: Option<Uuid>,
    ) {
        let target_type = action.split('.').next().unwrap_or(action).to_owned();
        let entry = AuditEntry {
            id: Uuid::new_v4(),
            organization_id: org,
            actor_id: Some(auth.user_id()),
            actor: auth.0.user.email.clone(),
            action: action.to_owned(),
            target_type,
            target_id,
            created_at: Utc::now(),
        };
        if let Err(e) = self.store.record_audit(&entry).await {
            tracing::error!(error = %e, action, "could not record the audit entry");
        }
    }
}
