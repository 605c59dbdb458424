//! Every JSON example of the API specification deserializes into its core
//! type and serializes back to equal JSON (field order aside); request
//! bodies also pass validation.

use nxmesh_core::error::ErrorBody;
use nxmesh_core::event::{ClientMessage, Event};
use nxmesh_core::model::*;
use nxmesh_core::pagination::Page;
use nxmesh_core::validate::Validate;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn round_trip<T: Serialize + DeserializeOwned>(name: &str, text: &str) -> T {
    let original: Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}: not JSON: {e}"));
    let typed: T =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}: does not deserialize: {e}"));
    let back = serde_json::to_value(&typed).unwrap();
    assert_eq!(back, original, "{name}: serializes back differently");
    typed
}

macro_rules! example {
    ($name:ident, $ty:ty) => {
        #[test]
        fn $name() {
            round_trip::<$ty>(
                stringify!($name),
                include_str!(concat!("spec_examples/", stringify!($name), ".json")),
            );
        }
    };
    ($name:ident, $ty:ty, validate) => {
        #[test]
        fn $name() {
            let v = round_trip::<$ty>(
                stringify!($name),
                include_str!(concat!("spec_examples/", stringify!($name), ".json")),
            );
            if let Err(e) = v.validate() {
                panic!(
                    "{}: the specification's example fails validation: {e}",
                    stringify!($name)
                );
            }
        }
    };
}

example!(login_request, LoginRequest, validate);
example!(login_response, TokenResponse);
example!(refresh_request, RefreshRequest);
example!(organization_list, Page<Organization>);
example!(organization_create, CreateOrganization, validate);
example!(organization_update, UpdateOrganization, validate);
example!(workspace_list, Page<Workspace>);
example!(workspace_create, CreateWorkspace, validate);
example!(workspace_update, UpdateWorkspace, validate);
example!(agent_list, Page<Agent>);
example!(agent_get, Agent);
example!(registration_token_create, CreateRegistrationToken, validate);
example!(registration_token_created, RegistrationTokenCreated);
example!(agent_update, UpdateAgent, validate);
example!(agent_reload_response, ReloadResponse);
example!(virtual_host_list, Page<VirtualHost>);
example!(virtual_host_create, CreateVirtualHost, validate);
example!(virtual_host_update, UpdateVirtualHost);
example!(upstream_list, Page<Upstream>);
example!(upstream_create, CreateUpstream, validate);
example!(upstream_update, UpdateUpstream);
example!(certificate_list, Page<Certificate>);
example!(certificate_request, CreateCertificate, validate);
example!(workspace_metrics, MetricsSummary);
example!(access_log_page, AccessLogPage);
example!(error_body, ErrorBody);
example!(event_agent_connected, Event);
example!(event_agent_disconnected, Event);
example!(event_config_applied, Event);
example!(event_health_alert, Event);
example!(subscribe, ClientMessage);

/// The list examples' items pass the create-time validation of their
/// content too (the specification's data is valid data).
#[test]
fn listed_resources_hold_valid_content() {
    let vhosts: Page<VirtualHost> =
        serde_json::from_str(include_str!("spec_examples/virtual_host_list.json")).unwrap();
    for vh in &vhosts.data {
        vh.spec.validate().unwrap();
    }
    let ups: Page<Upstream> =
        serde_json::from_str(include_str!("spec_examples/upstream_list.json")).unwrap();
    for up in &ups.data {
        up.spec.validate().unwrap();
    }
}

/// Updates are validated against the resource they change.
#[test]
fn spec_updates_apply_to_spec_resources() {
    let vhosts: Page<VirtualHost> =
        serde_json::from_str(include_str!("spec_examples/virtual_host_list.json")).unwrap();
    let update: UpdateVirtualHost =
        serde_json::from_str(include_str!("spec_examples/virtual_host_update.json")).unwrap();
    let (spec, target) = update.apply_to(&vhosts.data[0]).unwrap();
    assert_eq!(spec.name, "API Gateway v2");
    assert_eq!(spec.locations[0].path, "/api/v2");
    assert_eq!(target, TargetAgents::All);

    let ups: Page<Upstream> =
        serde_json::from_str(include_str!("spec_examples/upstream_list.json")).unwrap();
    let update: UpdateUpstream =
        serde_json::from_str(include_str!("spec_examples/upstream_update.json")).unwrap();
    let spec = update.apply_to(&ups.data[0].spec).unwrap();
    assert_eq!(spec.servers.len(), 1);
    assert_eq!(spec.servers[0].weight, 3);
    assert_eq!(spec.name, "api-backend");
}

/// Every error code has the specification's HTTP status and spelling.
#[test]
fn error_codes_match_the_specification() {
    use nxmesh_core::error::ErrorCode;
    let table = [
        ("UNAUTHORIZED", 401),
        ("FORBIDDEN", 403),
        ("NOT_FOUND", 404),
        ("VALIDATION_ERROR", 422),
        ("CONFLICT", 409),
        ("RATE_LIMITED", 429),
        ("INTERNAL_ERROR", 500),
        ("SERVICE_UNAVAILABLE", 503),
    ];
    assert_eq!(ErrorCode::ALL.len(), table.len());
    for (code, (name, status)) in ErrorCode::ALL.iter().zip(table) {
        assert_eq!(code.as_str(), name);
        assert_eq!(
            serde_json::to_value(code).unwrap(),
            Value::String(name.to_owned())
        );
        assert_eq!(code.http_status(), status);
    }
}
