//! Virtual hosts: nginx `server` blocks with their locations, and the
//! agents they target.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Timestamp, is_false};
use crate::error::{FieldErrorCode, ValidationErrors};
use crate::selector::LabelSelector;
use crate::validate::{self, Validate};

/// Which agents a virtual host is deployed to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TargetAgents {
    /// Every agent of the workspace.
    #[default]
    All,
    /// Agents whose labels match a selector such as `env=production`.
    Selector {
        /// A Kubernetes-style label selector, see [`LabelSelector`].
        label_selector: String,
    },
}

impl TargetAgents {
    /// The parsed selector (`None` for `all`).
    pub fn selector(&self) -> Result<Option<LabelSelector>, crate::selector::SelectorError> {
        match self {
            TargetAgents::All => Ok(None),
            TargetAgents::Selector { label_selector } => label_selector.parse().map(Some),
        }
    }
}

fn validate_target(errors: &mut ValidationErrors, field: &str, target: &TargetAgents) {
    if let TargetAgents::Selector { label_selector } = target
        && let Err(e) = label_selector.parse::<LabelSelector>()
    {
        errors.push(
            format!("{field}.label_selector"),
            FieldErrorCode::InvalidFormat,
            e.to_string(),
        );
    }
}

/// How a location's path is matched, nginx's location modifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum LocationModifier {
    /// `=`: the path exactly.
    Exact,
    /// `^~`: a prefix that, when longest, stops the regex search.
    PreferentialPrefix,
    /// `~`: a case-sensitive regular expression.
    Regex,
    /// `~*`: a case-insensitive regular expression.
    RegexCaseInsensitive,
}

impl LocationModifier {
    /// The modifier as nginx spells it.
    pub fn as_nginx(self) -> &'static str {
        match self {
            LocationModifier::Exact => "=",
            LocationModifier::PreferentialPrefix => "^~",
            LocationModifier::Regex => "~",
            LocationModifier::RegexCaseInsensitive => "~*",
        }
    }

    /// Whether the path is a regular expression.
    pub fn is_regex(self) -> bool {
        matches!(
            self,
            LocationModifier::Regex | LocationModifier::RegexCaseInsensitive
        )
    }
}

/// A response header added by the location (`add_header`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Header {
    /// Header name, an HTTP token.
    pub name: String,
    /// Header value; may use nginx variables such as `$scheme`.
    pub value: String,
    /// Add it to every response code, not only to successful ones.
    #[serde(default, skip_serializing_if = "is_false")]
    pub always: bool,
}

/// What nginx does after a rewrite matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RewriteFlag {
    /// Stop rewriting and search a location for the new URI.
    Last,
    /// Stop rewriting and stay in this location.
    Break,
    /// Answer with a 302 redirect.
    Redirect,
    /// Answer with a 301 redirect.
    Permanent,
}

impl RewriteFlag {
    /// The flag as nginx spells it.
    pub fn as_nginx(self) -> &'static str {
        match self {
            RewriteFlag::Last => "last",
            RewriteFlag::Break => "break",
            RewriteFlag::Redirect => "redirect",
            RewriteFlag::Permanent => "permanent",
        }
    }
}

/// A `rewrite` rule of a location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RewriteRule {
    /// A regular expression matched against the URI.
    pub pattern: String,
    /// The new URI; may use captures (`$1`) and variables.
    pub replacement: String,
    /// What to do after the rewrite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flag: Option<RewriteFlag>,
}

/// A `location` block of a virtual host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Location {
    /// The path (or regular expression, or `@name`) the location matches.
    pub path: String,
    /// How `path` is matched; absent means a plain prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modifier: Option<LocationModifier>,
    /// Proxy to this upstream of the same workspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_id: Option<Uuid>,
    /// Proxy to this URL (`http://` or `https://`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_pass: Option<String>,
    /// Serve files from this absolute directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    /// Index file names, separated by spaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    /// Response headers to add.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custom_headers: Vec<Header>,
    /// Rewrite rules, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rewrite_rules: Vec<RewriteRule>,
    /// Extra directives from an allowlist (name → arguments).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom_directives: BTreeMap<String, String>,
}

impl Location {
    fn validate_into(&self, outer: &mut ValidationErrors, field: impl Fn() -> String) {
        // Field names are built only for errors: validating thousands of
        // locations (a large rollout) must not format a name per field.
        let mut local = ValidationErrors::default();
        let errors = &mut local;
        validate::location_path(errors, "path", &self.path, self.modifier);
        let targets = [
            self.upstream_id.is_some(),
            self.proxy_pass.is_some(),
            self.root.is_some(),
        ]
        .into_iter()
        .filter(|b| *b)
        .count();
        if targets > 1 {
            errors.push(
                "",
                FieldErrorCode::NotAllowed,
                "a location takes at most one of upstream_id, proxy_pass and root",
            );
        }
        if let Some(url) = &self.proxy_pass {
            validate::proxy_url(errors, "proxy_pass", url);
            // nginx: "proxy_pass cannot have URI part in location given by
            // regular expression, or inside named location".
            let has_uri = url.splitn(4, '/').nth(3).is_some();
            let regex_or_named =
                self.modifier.is_some_and(LocationModifier::is_regex) || self.path.starts_with('@');
            if has_uri && regex_or_named {
                errors.push(
                    "proxy_pass",
                    FieldErrorCode::NotAllowed,
                    "a proxy_pass URL in a regex or named location cannot have a path (nginx refuses it)",
                );
            }
        }
        if let Some(root) = &self.root {
            validate::abs_path(errors, "root", root);
        }
        if let Some(index) = &self.index {
            validate::index_files(errors, "index", index);
        }
        for (i, h) in self.custom_headers.iter().enumerate() {
            validate::header_name(errors, &format!("custom_headers[{i}].name"), &h.name);
            validate::header_value(errors, &format!("custom_headers[{i}].value"), &h.value);
        }
        for (i, r) in self.rewrite_rules.iter().enumerate() {
            validate::regex(errors, &format!("rewrite_rules[{i}].pattern"), &r.pattern);
            validate::rewrite_replacement(
                errors,
                &format!("rewrite_rules[{i}].replacement"),
                &r.replacement,
            );
        }
        validate::custom_directives(
            errors,
            "custom_directives",
            &self.custom_directives,
            validate::DirectiveContext::Location,
        );
        if local.is_empty() {
            return;
        }
        let field = field();
        for mut e in local.errors {
            e.field = if e.field.is_empty() {
                field.clone()
            } else {
                format!("{field}.{}", e.field)
            };
            outer.errors.push(e);
        }
    }
}

/// The user-editable content of a virtual host: what the REST API accepts
/// and what agents render.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VirtualHostSpec {
    /// Display name.
    pub name: String,
    /// nginx `server_name`: names separated by spaces (host names,
    /// `*.example.com`, `.example.com`, `example.*`, `~regex`, `_`).
    pub server_name: String,
    /// The port to listen on.
    pub listen_port: u16,
    /// Serve TLS with `ssl_certificate_id`.
    #[serde(default)]
    pub ssl_enabled: bool,
    /// The certificate to serve when `ssl_enabled`.
    #[serde(default)]
    pub ssl_certificate_id: Option<Uuid>,
    /// Serve HTTP/2.
    #[serde(default)]
    pub http2_enabled: bool,
    /// Serve HTTP/3 over QUIC (needs TLS).
    #[serde(default, skip_serializing_if = "is_false")]
    pub http3_enabled: bool,
    /// The locations, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub locations: Vec<Location>,
    /// Extra server-level directives from an allowlist.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom_directives: BTreeMap<String, String>,
}

impl Validate for VirtualHostSpec {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::default();
        self.validate_into(&mut errors);
        errors.into_result()
    }
}

impl VirtualHostSpec {
    pub(crate) fn validate_into(&self, errors: &mut ValidationErrors) {
        validate::name(errors, "name", &self.name);
        validate::server_names(errors, "server_name", &self.server_name);
        validate::port(errors, "listen_port", self.listen_port);
        if self.ssl_enabled && self.ssl_certificate_id.is_none() {
            errors.push(
                "ssl_certificate_id",
                FieldErrorCode::Required,
                "ssl_enabled needs a certificate",
            );
        }
        if self.http3_enabled && !self.ssl_enabled {
            errors.push(
                "http3_enabled",
                FieldErrorCode::NotAllowed,
                "HTTP/3 needs ssl_enabled",
            );
        }
        if self.locations.len() > validate::MAX_LOCATIONS {
            errors.push(
                "locations",
                FieldErrorCode::TooLong,
                format!("at most {} locations", validate::MAX_LOCATIONS),
            );
        }
        for (i, l) in self.locations.iter().enumerate() {
            l.validate_into(errors, || format!("locations[{i}]"));
        }
        validate::custom_directives(
            errors,
            "custom_directives",
            &self.custom_directives,
            validate::DirectiveContext::Server,
        );
    }
}

/// A virtual host as stored and returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VirtualHost {
    /// Its id.
    pub id: Uuid,
    /// The workspace it belongs to.
    pub workspace_id: Uuid,
    /// Its content.
    #[serde(flatten)]
    pub spec: VirtualHostSpec,
    /// The agents it is deployed to.
    pub target_agents: TargetAgents,
    /// When it was created.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
    /// When it last changed.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub updated_at: Timestamp,
}

/// `POST /workspaces/{id}/virtual-hosts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateVirtualHost {
    /// Its content.
    #[serde(flatten)]
    pub spec: VirtualHostSpec,
    /// The agents it is deployed to (default: all).
    #[serde(default)]
    pub target_agents: TargetAgents,
}

impl Validate for CreateVirtualHost {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::default();
        self.spec.validate_into(&mut errors);
        validate_target(&mut errors, "target_agents", &self.target_agents);
        errors.into_result()
    }
}

/// `PATCH /virtual-hosts/{id}`: absent fields are left unchanged; lists and
/// maps replace the whole value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateVirtualHost {
    /// New display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New server names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// New port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen_port: Option<u16>,
    /// Turn TLS on or off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_enabled: Option<bool>,
    /// New certificate; `null` removes it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "super::double_option"
    )]
    pub ssl_certificate_id: Option<Option<Uuid>>,
    /// Turn HTTP/2 on or off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http2_enabled: Option<bool>,
    /// Turn HTTP/3 on or off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http3_enabled: Option<bool>,
    /// New locations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locations: Option<Vec<Location>>,
    /// New server-level custom directives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_directives: Option<BTreeMap<String, String>>,
    /// New target agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_agents: Option<TargetAgents>,
}

impl UpdateVirtualHost {
    /// Applies the update to a copy of `current`, validating the result as a
    /// whole (so that, say, turning on TLS without a certificate is refused).
    pub fn apply_to(
        &self,
        current: &VirtualHost,
    ) -> Result<(VirtualHostSpec, TargetAgents), ValidationErrors> {
        let UpdateVirtualHost {
            name,
            server_name,
            listen_port,
            ssl_enabled,
            ssl_certificate_id,
            http2_enabled,
            http3_enabled,
            locations,
            custom_directives,
            target_agents,
        } = self;
        let mut spec = current.spec.clone();
        if let Some(v) = name {
            spec.name.clone_from(v);
        }
        if let Some(v) = server_name {
            spec.server_name.clone_from(v);
        }
        if let Some(v) = listen_port {
            spec.listen_port = *v;
        }
        if let Some(v) = ssl_enabled {
            spec.ssl_enabled = *v;
        }
        if let Some(v) = ssl_certificate_id {
            spec.ssl_certificate_id = *v;
        }
        if let Some(v) = http2_enabled {
            spec.http2_enabled = *v;
        }
        if let Some(v) = http3_enabled {
            spec.http3_enabled = *v;
        }
        if let Some(v) = locations {
            spec.locations.clone_from(v);
        }
        if let Some(v) = custom_directives {
            spec.custom_directives.clone_from(v);
        }
        let target = target_agents
            .clone()
            .unwrap_or_else(|| current.target_agents.clone());
        let mut errors = ValidationErrors::default();
        spec.validate_into(&mut errors);
        validate_target(&mut errors, "target_agents", &target);
        errors.into_result().map(|()| (spec, target))
    }
}
