//! `nxmesh apply -f FILE`: make the master match a declarative YAML file.
//!
//! Organizations and workspaces match by slug, upstreams and virtual hosts
//! by name, certificates by domain. The file is parsed and validated whole
//! (unknown fields are errors naming the field), then planned against the
//! master read-only; only a plan that resolves completely is carried out,
//! so bad input changes nothing. `--dry-run` prints the plan as a diff.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use futures_util::TryStreamExt as _;
use nxmesh_client::{Client, ListParams};
use nxmesh_core::error::ValidationErrors;
use nxmesh_core::model::{
    CreateCertificate, CreateOrganization, CreateVirtualHost, CreateWorkspace, TargetAgents,
    UpdateOrganization, UpdateUpstream, UpdateVirtualHost, UpdateWorkspace, UpstreamSpec,
    VirtualHostSpec,
};
use nxmesh_core::validate::Validate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Deserialize)]
struct Document {
    #[serde(default)]
    organizations: Vec<OrgDoc>,
}

#[derive(Debug, Deserialize)]
struct OrgDoc {
    name: String,
    slug: String,
    #[serde(default)]
    workspaces: Vec<WorkspaceDoc>,
}

#[derive(Debug, Deserialize)]
struct WorkspaceDoc {
    name: String,
    slug: String,
    #[serde(default)]
    upstreams: Vec<UpstreamSpec>,
    #[serde(default)]
    certificates: Vec<CreateCertificate>,
    /// Checked in a second pass: they refer to upstreams by name, and
    /// `CreateVirtualHost` flattens its spec (which hides unknown fields).
    #[serde(default)]
    virtual_hosts: Vec<serde_json::Value>,
}

/// A virtual host of the file: the spec, its targets, and the upstream
/// name each location refers to (`upstream: api`).
#[derive(Debug)]
struct VhostDoc {
    spec: VirtualHostSpec,
    target_agents: TargetAgents,
    upstream_refs: Vec<Option<String>>,
}

/// Parses and validates the file; every problem is reported at once.
fn parse(text: &str) -> anyhow::Result<(Document, Vec<Vec<Vec<VhostDoc>>>)> {
    let mut unknown = Vec::new();
    let doc: Document =
        serde_ignored::deserialize(serde_yaml::Deserializer::from_str(text), |p| {
            unknown.push(p.to_string());
        })?;
    let mut problems: Vec<String> = unknown
        .iter()
        .map(|p| format!("unknown field {p}"))
        .collect();
    let mut push = |prefix: &str, r: Result<(), ValidationErrors>| {
        if let Err(e) = r {
            for f in e.errors {
                problems.push(format!("{prefix}.{}: {}", f.field, f.message));
            }
        }
    };
    let mut vhosts = Vec::new();
    for (i, org) in doc.organizations.iter().enumerate() {
        let p = format!("organizations.{i}");
        push(
            &p,
            CreateOrganization {
                name: org.name.clone(),
                slug: org.slug.clone(),
            }
            .validate(),
        );
        let mut org_vhosts = Vec::new();
        for (j, ws) in org.workspaces.iter().enumerate() {
            let p = format!("{p}.workspaces.{j}");
            push(
                &p,
                CreateWorkspace {
                    name: ws.name.clone(),
                    slug: ws.slug.clone(),
                }
                .validate(),
            );
            for (k, u) in ws.upstreams.iter().enumerate() {
                push(&format!("{p}.upstreams.{k}"), u.validate());
            }
            for (k, c) in ws.certificates.iter().enumerate() {
                push(&format!("{p}.certificates.{k}"), c.validate());
            }
            let mut ws_vhosts = Vec::new();
            for (k, v) in ws.virtual_hosts.iter().enumerate() {
                let vp = format!("{p}.virtual_hosts.{k}");
                match vhost(v) {
                    Ok((vh, unknown_fields)) => {
                        for f in unknown_fields {
                            push(&vp, Err(field_error(f, "unknown field".into())));
                        }
                        for (l, r) in vh.upstream_refs.iter().enumerate() {
                            if let Some(name) = r
                                && !ws.upstreams.iter().any(|u| &u.name == name)
                            {
                                push(
                                    &vp,
                                    Err(field_error(
                                        format!("locations.{l}.upstream"),
                                        format!(
                                            "no upstream named {name:?} in this workspace of the file"
                                        ),
                                    )),
                                );
                            }
                        }
                        let create = CreateVirtualHost {
                            spec: vh.spec.clone(),
                            target_agents: vh.target_agents.clone(),
                        };
                        push(&vp, create.validate());
                        ws_vhosts.push(vh);
                    }
                    Err(e) => push(&vp, Err(field_error(String::new(), format!("{e:#}")))),
                }
            }
            org_vhosts.push(ws_vhosts);
        }
        vhosts.push(org_vhosts);
    }
    if !problems.is_empty() {
        bail!(
            "the file is invalid; nothing was changed:\n  {}",
            problems.join("\n  ")
        );
    }
    Ok((doc, vhosts))
}

fn field_error(field: String, message: String) -> ValidationErrors {
    let mut e = ValidationErrors::default();
    e.push(
        field,
        nxmesh_core::error::FieldErrorCode::NotAllowed,
        message,
    );
    e
}

/// A virtual host of the file, with `upstream:` names taken out of its
/// locations (upstream ids are filled in when planning).
fn vhost(value: &serde_json::Value) -> anyhow::Result<(VhostDoc, Vec<String>)> {
    let mut unknown = Vec::new();
    let mut map = value
        .as_object()
        .context("a virtual host is a mapping")?
        .clone();
    let target_agents = match map.remove("target_agents") {
        Some(t) => serde_json::from_value(t).context("target_agents")?,
        None => TargetAgents::All,
    };
    let mut upstream_refs = Vec::new();
    if let Some(serde_json::Value::Array(locations)) = map.get_mut("locations") {
        for loc in locations {
            let name = loc
                .as_object_mut()
                .and_then(|o| o.remove("upstream"))
                .map(|n| {
                    n.as_str()
                        .map(str::to_owned)
                        .context("`upstream` is an upstream's name")
                })
                .transpose()?;
            upstream_refs.push(name);
        }
    }
    let spec: VirtualHostSpec = serde_ignored::deserialize(serde_json::Value::Object(map), |p| {
        unknown.push(p.to_string())
    })?;
    Ok((
        VhostDoc {
            spec,
            target_agents,
            upstream_refs,
        },
        unknown,
    ))
}

/// Prints the plan and, unless `dry_run`, carries it out.
struct Planner<'a> {
    client: &'a Client,
    dry_run: bool,
    changes: usize,
    out: Vec<String>,
}

fn yaml_lines<T: Serialize>(v: &T) -> Vec<String> {
    serde_yaml::to_string(v)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A line diff (longest common subsequence), changed lines only.
fn diff(old: &[String], new: &[String]) -> Vec<String> {
    let (n, m) = (old.len(), new.len());
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if old[i] == new[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < n || j < m {
        if i < n && j < m && old[i] == new[j] {
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            // Removed lines first, as diff(1) prints them.
            out.push(format!("    - {}", old[i]));
            i += 1;
        } else {
            out.push(format!("    + {}", new[j]));
            j += 1;
        }
    }
    out
}

impl Planner<'_> {
    fn create(&mut self, what: &str) {
        self.changes += 1;
        self.out.push(format!("+ {what}"));
    }

    /// Records an update when `old` and `new` differ; returns whether.
    fn compare<T: Serialize + PartialEq>(&mut self, what: &str, old: &T, new: &T) -> bool {
        if old == new {
            self.out.push(format!("= {what}"));
            return false;
        }
        self.changes += 1;
        self.out.push(format!("~ {what}"));
        let lines = diff(&yaml_lines(old), &yaml_lines(new));
        self.out.extend(lines);
        true
    }

    async fn run(&mut self, doc: &Document, vhosts: &[Vec<Vec<VhostDoc>>]) -> anyhow::Result<()> {
        let c = self.client;
        let orgs: Vec<_> = c
            .organizations()
            .list_all(&ListParams::default())
            .try_collect()
            .await?;
        for (org_doc, org_vhosts) in doc.organizations.iter().zip(vhosts) {
            let what = format!("organization {}", org_doc.slug);
            let org_id = match orgs.iter().find(|o| o.slug == org_doc.slug) {
                Some(o) => {
                    if self.compare(&what, &o.name, &org_doc.name) && !self.dry_run {
                        c.organizations()
                            .update(
                                o.id,
                                &UpdateOrganization {
                                    name: Some(org_doc.name.clone()),
                                    slug: None,
                                },
                            )
                            .await?;
                    }
                    Some(o.id)
                }
                None => {
                    self.create(&what);
                    if self.dry_run {
                        None
                    } else {
                        let req = CreateOrganization {
                            name: org_doc.name.clone(),
                            slug: org_doc.slug.clone(),
                        };
                        Some(c.organizations().create(&req).await?.id)
                    }
                }
            };
            let existing_ws = match org_id {
                Some(id) => {
                    c.workspaces(id)
                        .list_all(&ListParams::default())
                        .try_collect()
                        .await?
                }
                None => Vec::new(),
            };
            for (ws_doc, ws_vhosts) in org_doc.workspaces.iter().zip(org_vhosts) {
                let what = format!("workspace {}/{}", org_doc.slug, ws_doc.slug);
                let ws_id = match existing_ws.iter().find(|w| w.slug == ws_doc.slug) {
                    Some(w) => {
                        if self.compare(&what, &w.name, &ws_doc.name) && !self.dry_run {
                            c.workspaces(w.organization_id)
                                .update(
                                    w.id,
                                    &UpdateWorkspace {
                                        name: Some(ws_doc.name.clone()),
                                        slug: None,
                                    },
                                )
                                .await?;
                        }
                        Some(w.id)
                    }
                    None => {
                        self.create(&what);
                        match (self.dry_run, org_id) {
                            (false, Some(org)) => {
                                let req = CreateWorkspace {
                                    name: ws_doc.name.clone(),
                                    slug: ws_doc.slug.clone(),
                                };
                                Some(c.workspaces(org).create(&req).await?.id)
                            }
                            _ => None,
                        }
                    }
                };
                let prefix = format!("{}/{}", org_doc.slug, ws_doc.slug);
                self.workspace(ws_id, &prefix, ws_doc, ws_vhosts).await?;
            }
        }
        Ok(())
    }

    async fn workspace(
        &mut self,
        ws: Option<Uuid>,
        prefix: &str,
        doc: &WorkspaceDoc,
        vhosts: &[VhostDoc],
    ) -> anyhow::Result<()> {
        let c = self.client;
        let lp = ListParams::default();
        let (ups, certs, hosts) = match ws {
            Some(ws) => (
                c.upstreams(ws)
                    .list_all(&lp)
                    .try_collect::<Vec<_>>()
                    .await?,
                c.certificates(ws)
                    .list_all(&lp)
                    .try_collect::<Vec<_>>()
                    .await?,
                c.virtual_hosts(ws)
                    .list_all(&lp)
                    .try_collect::<Vec<_>>()
                    .await?,
            ),
            None => Default::default(),
        };
        // Upstream ids by name, for the virtual hosts' locations; in a dry
        // run a new upstream has no id yet, and the nil id stands for it.
        let mut upstream_ids = BTreeMap::new();
        for spec in &doc.upstreams {
            let what = format!("upstream {prefix}/{}", spec.name);
            let id = match ups.iter().find(|u| u.spec.name == spec.name) {
                Some(u) => {
                    if self.compare(&what, &u.spec, spec) && !self.dry_run {
                        let patch: UpdateUpstream =
                            serde_json::from_value(serde_json::to_value(spec)?)?;
                        c.upstreams(u.workspace_id).update(u.id, &patch).await?;
                    }
                    u.id
                }
                None => {
                    self.create(&what);
                    match (self.dry_run, ws) {
                        (false, Some(ws)) => c.upstreams(ws).create(spec).await?.id,
                        _ => Uuid::nil(),
                    }
                }
            };
            upstream_ids.insert(spec.name.clone(), id);
        }
        for cert in &doc.certificates {
            let what = format!("certificate {prefix}/{}", cert.domain);
            if certs.iter().any(|x| x.domain == cert.domain) {
                // Certificates cannot be edited; an existing one is kept.
                self.out.push(format!("= {what}"));
            } else {
                self.create(&what);
                if let (false, Some(ws)) = (self.dry_run, ws) {
                    c.certificates(ws).create(cert).await?;
                }
            }
        }
        for vh in vhosts {
            let mut spec = vh.spec.clone();
            for (loc, name) in spec.locations.iter_mut().zip(&vh.upstream_refs) {
                if let Some(name) = name {
                    loc.upstream_id = upstream_ids.get(name).copied();
                }
            }
            let desired = CreateVirtualHost {
                spec,
                target_agents: vh.target_agents.clone(),
            };
            let what = format!("virtual-host {prefix}/{}", desired.spec.name);
            match hosts.iter().find(|h| h.spec.name == desired.spec.name) {
                Some(h) => {
                    let current = CreateVirtualHost {
                        spec: h.spec.clone(),
                        target_agents: h.target_agents.clone(),
                    };
                    if self.compare(&what, &current, &desired) && !self.dry_run {
                        let patch: UpdateVirtualHost =
                            serde_json::from_value(serde_json::to_value(&desired)?)?;
                        c.virtual_hosts(h.workspace_id).update(h.id, &patch).await?;
                    }
                }
                None => {
                    self.create(&what);
                    if let (false, Some(ws)) = (self.dry_run, ws) {
                        c.virtual_hosts(ws).create(&desired).await?;
                    }
                }
            }
        }
        Ok(())
    }
}

pub(crate) async fn run(client: &Client, file: &Path, dry_run: bool) -> anyhow::Result<ExitCode> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let (doc, vhosts) = parse(&text).with_context(|| format!("in {}", file.display()))?;
    // Plan read-only first: a plan that fails (an unknown reference, a
    // refused read) fails before anything changes.
    let mut plan = Planner {
        client,
        dry_run: true,
        changes: 0,
        out: Vec::new(),
    };
    plan.run(&doc, &vhosts).await?;
    if dry_run || plan.changes == 0 {
        for line in &plan.out {
            println!("{line}");
        }
        println!(
            "{} change(s){}",
            plan.changes,
            if dry_run { " planned (dry run)" } else { "" }
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut apply = Planner {
        client,
        dry_run: false,
        changes: 0,
        out: Vec::new(),
    };
    apply.run(&doc, &vhosts).await?;
    for line in &apply.out {
        println!("{line}");
    }
    println!("{} change(s) applied", apply.changes);
    Ok(ExitCode::SUCCESS)
}
