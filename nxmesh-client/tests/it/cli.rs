//! The `nxmesh` binary against a real master: login and its context file,
//! list/get/create/delete, `apply -f` (idempotent, `--dry-run` diff, bad
//! input changes nothing), `events --follow`, completions, members, users,
//! API tokens, the audit log and `agents reload` of a disconnected agent.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use nxmesh_client::ListParams;
use nxmesh_core::model::CreateRegistrationToken;

use crate::support::{ADMIN_EMAIL, Master, PASSWORD, register_agent};

fn nxmesh(config: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nxmesh"));
    c.args(args)
        .env("NXMESH_CONFIG", config)
        .env_remove("NXMESH_CONTEXT")
        .env("NXMESH_PASSWORD", PASSWORD);
    c
}

/// Runs the binary off the runtime's threads (the master runs on them).
async fn run(config: &Path, args: &[&str]) -> Output {
    let mut cmd = nxmesh(config, args);
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
fn ok(o: &Output) -> String {
    assert!(o.status.success(), "failed: {}\n{}", stdout(o), stderr(o));
    stdout(o)
}

const SITE: &str = r#"
organizations:
  - name: Acme
    slug: acme
    workspaces:
      - name: Production
        slug: production
        upstreams:
          - name: api
            algorithm: least_connections
            servers:
              - address: 10.0.1.30:8080
                weight: 2
        virtual_hosts:
          - name: Main
            server_name: example.com
            listen_port: 8080
            locations:
              - path: /api
                upstream: api
"#;

async fn logged_in(master: &Master) -> std::path::PathBuf {
    let config = master.path("config.yaml");
    let out = run(
        &config,
        &[
            "login",
            "--url",
            &master.url,
            "--email",
            ADMIN_EMAIL,
            "--name",
            "test",
        ],
    )
    .await;
    assert!(ok(&out).contains("logged in"));
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_stores_a_private_context() {
    let master = Master::start().await;
    let config = logged_in(&master).await;
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("current_context: test"), "{text}");
    assert!(!text.contains(PASSWORD), "the password is never stored");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&config).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Wrong password: one clear line, non-zero exit.
    let out = nxmesh(
        &master.path("other.yaml"),
        &["login", "--url", &master.url, "--email", ADMIN_EMAIL],
    )
    .env("NXMESH_PASSWORD", "wrong wrong wrong")
    .output()
    .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("UNAUTHORIZED"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_and_output_formats() {
    let master = Master::start().await;
    let config = logged_in(&master).await;
    let out = ok(&run(
        &config,
        &[
            "create", "org", "--name", "Acme", "--slug", "acme", "-o", "json",
        ],
    )
    .await);
    let org: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = org["id"].as_str().unwrap().to_owned();
    let table = ok(&run(&config, &["list", "organizations"]).await);
    assert!(table.starts_with("ID"), "{table}");
    assert!(table.contains("acme"), "{table}");
    let yaml = ok(&run(&config, &["get", "org", &id, "-o", "yaml"]).await);
    assert!(yaml.contains("slug: acme"), "{yaml}");
    ok(&run(
        &config,
        &[
            "create", "ws", "--org", &id, "--name", "Prod", "--slug", "prod",
        ],
    )
    .await);
    let ws = ok(&run(&config, &["list", "workspaces", "--org", &id]).await);
    assert!(ws.contains("prod"), "{ws}");
    ok(&run(&config, &["delete", "org", &id]).await);
    let out = run(&config, &["get", "org", &id]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("NOT_FOUND"), "{}", stderr(&out));
    let bash = ok(&run(&config, &["completions", "bash"]).await);
    assert!(bash.contains("nxmesh"), "{bash}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_is_idempotent_and_dry_run_shows_the_diff() {
    let master = Master::start().await;
    let config = logged_in(&master).await;
    let site = master.path("site.yaml");
    std::fs::write(&site, SITE).unwrap();
    let site_arg = site.to_str().unwrap();

    let first = ok(&run(&config, &["apply", "-f", site_arg]).await);
    assert!(first.contains("+ organization acme"), "{first}");
    assert!(
        first.contains("+ virtual-host acme/production/Main"),
        "{first}"
    );
    assert!(first.contains("4 change(s) applied"), "{first}");

    let second = ok(&run(&config, &["apply", "-f", site_arg]).await);
    assert!(
        second.contains("0 change(s)"),
        "a second apply is a no-op: {second}"
    );

    std::fs::write(
        &site,
        SITE.replace("listen_port: 8080", "listen_port: 8081"),
    )
    .unwrap();
    let plan = ok(&run(&config, &["apply", "-f", site_arg, "--dry-run"]).await);
    let changed: Vec<&str> = plan.lines().filter(|l| !l.starts_with("= ")).collect();
    assert_eq!(
        changed,
        [
            "~ virtual-host acme/production/Main",
            "    - listen_port: 8080",
            "    + listen_port: 8081",
            "1 change(s) planned (dry run)",
        ],
        "{plan}"
    );
    // The dry run changed nothing.
    let client = master.admin();
    let org = client
        .organizations()
        .list(&ListParams::default())
        .await
        .unwrap()
        .data[0]
        .clone();
    let ws = client
        .workspaces(org.id)
        .list(&ListParams::default())
        .await
        .unwrap()
        .data[0]
        .clone();
    let hosts = client
        .virtual_hosts(ws.id)
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(hosts.data[0].spec.listen_port, 8080);
    let upstream = client
        .upstreams(ws.id)
        .list(&ListParams::default())
        .await
        .unwrap()
        .data[0]
        .clone();
    assert_eq!(
        hosts.data[0].spec.locations[0].upstream_id,
        Some(upstream.id)
    );

    let applied = ok(&run(&config, &["apply", "-f", site_arg]).await);
    assert!(applied.contains("1 change(s) applied"), "{applied}");
    let hosts = client
        .virtual_hosts(ws.id)
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(hosts.data[0].spec.listen_port, 8081);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_apply_input_names_the_field_and_changes_nothing() {
    let master = Master::start().await;
    let config = logged_in(&master).await;
    let client = master.admin();
    let cases = [
        (
            SITE.replace(
                "        slug: production",
                "        slug: production\n        colour: blue",
            ),
            "colour",
        ),
        (
            SITE.replace(
                "                weight: 2",
                "                weight: 2\n                wieght: 3",
            ),
            "wieght",
        ),
        (
            SITE.replace("server_name: example.com", "server_name: \"exa;mple.com\""),
            "server_name",
        ),
        (
            SITE.replace("upstream: api", "upstream: nope"),
            "locations.0.upstream",
        ),
    ];
    for (i, (text, field)) in cases.iter().enumerate() {
        let f = master.path(&format!("bad-{i}.yaml"));
        std::fs::write(&f, text).unwrap();
        let out = run(&config, &["apply", "-f", f.to_str().unwrap()]).await;
        assert!(!out.status.success(), "case {i} must fail");
        let err = stderr(&out);
        assert!(
            err.contains(field),
            "case {i}: the error names {field}: {err}"
        );
        assert!(err.contains("nothing was changed"), "{err}");
        assert_eq!(
            client
                .organizations()
                .list(&ListParams::default())
                .await
                .unwrap()
                .meta
                .total,
            0,
            "case {i} changed nothing"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_follow_prints_agent_connected() {
    let master = Master::start().await;
    let grpc = master.grpc().await;
    let config = logged_in(&master).await;
    let client = master.admin();
    let ws = prod_workspace(&client).await;

    let mut child = nxmesh(&config, &["events", "--follow", "--type", "agent.*"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let ready = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        err.read_line(&mut line).unwrap();
        line
    })
    .await
    .unwrap();
    assert!(ready.contains("watching events"), "{ready}");

    let token = web_01_token(&client, ws.id).await;
    let agent = register_agent(&grpc, &token.token).await;

    let line = tokio::time::timeout(
        std::time::Duration::from_secs(15),
        tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            line
        }),
    )
    .await
    .expect("an event line within 15 s")
    .unwrap();
    child.kill().unwrap();
    let _ = child.wait();
    assert!(line.contains("agent.connected"), "{line}");
    assert!(line.contains(&agent.id.to_string()), "{line}");
}

/// Runs the binary with `input` on its stdin.
async fn run_with_stdin(config: &Path, args: &[&str], input: &str) -> Output {
    let mut cmd = nxmesh(config, args);
    let input = input.to_owned();
    tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

async fn create_org(config: &Path) -> String {
    let out = ok(&run(
        config,
        &[
            "create", "org", "--name", "Acme", "--slug", "acme", "-o", "json",
        ],
    )
    .await);
    json(&out)["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_add_list_and_remove() {
    let master = Master::start().await;
    let config = logged_in(&master).await;
    let org = create_org(&config).await;
    master
        .admin()
        .users()
        .create(&nxmesh_core::model::CreateUser {
            email: "bob@example.com".into(),
            password: PASSWORD.into(),
            name: "Bob".into(),
            is_admin: false,
        })
        .await
        .unwrap();

    let added = ok(&run(
        &config,
        &[
            "members",
            "add",
            &org,
            "--email",
            "bob@example.com",
            "--role",
            "editor",
            "-o",
            "json",
        ],
    )
    .await);
    let added = json(&added);
    assert_eq!(added["role"], "editor", "{added}");
    let bob = added["user_id"].as_str().unwrap().to_owned();

    let table = ok(&run(&config, &["members", "list", &org]).await);
    assert!(table.starts_with("USER ID"), "{table}");
    let row = table
        .lines()
        .find(|l| l.contains("bob@example.com"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains(&bob) && row.contains("editor"), "{row}");
    let yaml = ok(&run(&config, &["members", "list", &org, "-o", "yaml"]).await);
    assert!(yaml.contains("email: bob@example.com"), "{yaml}");

    // A role the server does not know is refused before any request.
    let out = run(
        &config,
        &[
            "members",
            "add",
            &org,
            "--email",
            "x@example.com",
            "--role",
            "god",
        ],
    )
    .await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("unknown role"), "{}", stderr(&out));

    let updated = ok(&run(
        &config,
        &[
            "members", "update", &org, &bob, "--role", "viewer", "-o", "json",
        ],
    )
    .await);
    assert_eq!(json(&updated)["role"], "viewer", "{updated}");

    let removed = ok(&run(&config, &["members", "remove", &org, &bob]).await);
    assert!(removed.contains(&bob), "{removed}");
    let table = ok(&run(&config, &["members", "list", &org]).await);
    assert!(!table.contains("bob@example.com"), "{table}");
    let out = run(&config, &["members", "remove", &org, &bob]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("NOT_FOUND"), "{}", stderr(&out));

    // Deleting the user: gone for good.
    let deleted = ok(&run(&config, &["users", "delete", &bob]).await);
    assert!(deleted.contains(&bob), "{deleted}");
    let out = run(&config, &["users", "delete", &bob]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("NOT_FOUND"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_create_from_stdin_and_me() {
    let master = Master::start().await;
    let config = logged_in(&master).await;
    let new_password = "another long passphrase";
    let out = run_with_stdin(
        &config,
        &[
            "users",
            "create",
            "--email",
            "carol@example.com",
            "--name",
            "Carol",
            "--password-stdin",
            "-o",
            "json",
        ],
        &format!("{new_password}\n"),
    )
    .await;
    let carol = json(&ok(&out));
    assert_eq!(carol["email"], "carol@example.com", "{carol}");
    assert_eq!(carol["is_admin"], false, "{carol}");
    // The password arrived without its newline: Carol can log in.
    let me = master
        .client(nxmesh_client::Auth::Login {
            email: "carol@example.com".into(),
            password: new_password.into(),
        })
        .users()
        .me()
        .await
        .unwrap();
    assert_eq!(me.id.to_string(), carol["id"].as_str().unwrap());

    let out = ok(&run(
        &config,
        &[
            "users",
            "create",
            "--email",
            "dave@example.com",
            "--name",
            "Dave",
            "--password",
            new_password,
        ],
    )
    .await);
    assert!(
        out.starts_with("ID") && out.contains("dave@example.com"),
        "{out}"
    );

    let me = ok(&run(&config, &["users", "me"]).await);
    assert!(me.starts_with("ID"), "{me}");
    assert!(me.contains(ADMIN_EMAIL), "{me}");
    let me = json(&ok(&run(&config, &["users", "me", "-o", "json"]).await));
    assert_eq!(me["email"], ADMIN_EMAIL);
    assert_eq!(me["is_admin"], true);

    // A too-short password: the server's field error, non-zero exit.
    let out = run_with_stdin(
        &config,
        &[
            "users",
            "create",
            "--email",
            "erin@example.com",
            "--name",
            "Erin",
            "--password-stdin",
        ],
        "short\n",
    )
    .await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("password"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_create_list_and_delete() {
    let master = Master::start().await;
    let config = logged_in(&master).await;
    let created = json(&ok(&run(
        &config,
        &[
            "tokens", "create", "--name", "ci", "--scope", "read", "-o", "json",
        ],
    )
    .await));
    assert_eq!(created["name"], "ci", "{created}");
    assert_eq!(created["scopes"], serde_json::json!(["read"]), "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let secret = created["token"].as_str().unwrap().to_owned();

    // The new token works, for reading only.
    let ci = master.client(nxmesh_client::Auth::Token(secret));
    assert_eq!(ci.users().me().await.unwrap().email, ADMIN_EMAIL);
    let err = ci
        .organizations()
        .create(&nxmesh_core::model::CreateOrganization {
            name: "Nope".into(),
            slug: "nope".into(),
        })
        .await
        .unwrap_err();
    assert!(matches!(err, nxmesh_client::Error::Api { .. }), "{err}");

    let table = ok(&run(&config, &["tokens", "list"]).await);
    assert!(table.starts_with("ID"), "{table}");
    let row = table
        .lines()
        .find(|l| l.contains(&id))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("ci"), "{row}");
    // The login's own token is listed too.
    assert!(table.contains("nxmesh-cli-test"), "{table}");

    // The table output shows the secret once, on one line.
    let out = ok(&run(
        &config,
        &[
            "tokens", "create", "--name", "deploy", "--scope", "read", "--scope", "write",
        ],
    )
    .await);
    assert!(out.contains("secret shown once"), "{out}");

    let out = run(
        &config,
        &["tokens", "create", "--name", "x", "--scope", "admin"],
    )
    .await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("unknown scope"), "{}", stderr(&out));

    ok(&run(&config, &["tokens", "delete", &id]).await);
    let table = ok(&run(&config, &["tokens", "list"]).await);
    assert!(!table.contains(&id), "{table}");
    assert!(
        ci.users().me().await.is_err(),
        "a revoked token stops working"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_lists_an_organizations_changes() {
    let master = Master::start().await;
    let config = logged_in(&master).await;
    let org = create_org(&config).await;
    ok(&run(
        &config,
        &[
            "create", "ws", "--org", &org, "--name", "Prod", "--slug", "prod",
        ],
    )
    .await);
    let table = ok(&run(&config, &["audit", &org]).await);
    assert!(table.starts_with("TIME"), "{table}");
    assert!(table.contains("organization.create"), "{table}");
    assert!(table.contains("workspace.create"), "{table}");
    let entries = json(&ok(&run(&config, &["audit", &org, "-o", "json"]).await));
    let actions: Vec<&str> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["workspace.create", "organization.create"],
        "{entries}"
    );
    assert!(
        entries
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["actor"] == ADMIN_EMAIL && e["organization_id"] == org.as_str()),
        "{entries}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_of_a_disconnected_agent_is_one_clear_error() {
    let master = Master::start().await;
    let config = logged_in(&master).await;
    let client = master.admin();
    let ws = prod_workspace(&client).await;
    // The token creates the agent, which never connects.
    let token = web_01_token(&client, ws.id).await;
    let out = run(&config, &["agents", "reload", &token.agent_id.to_string()]).await;
    assert!(!out.status.success());
    assert_eq!(stdout(&out), "", "nothing on stdout");
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    assert!(lines[0].starts_with("nxmesh: "), "{err}");
    assert!(lines[0].contains("not connected"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_status_wait_follows_the_fleet_until_it_is_in_sync() {
    let master = Master::start().await;
    let grpc = master.grpc().await;
    let config = logged_in(&master).await;
    let client = master.admin();
    let ws = prod_workspace(&client).await;
    let token = web_01_token(&client, ws.id).await;
    let mut agent = register_agent(&grpc, &token.token).await;
    let vhost: nxmesh_core::model::CreateVirtualHost = serde_json::from_value(serde_json::json!({
        "name": "Shop",
        "server_name": "shop.example.com",
        "listen_port": 80,
        "locations": [{"path": "/", "proxy_pass": "http://127.0.0.1:9"}]
    }))
    .unwrap();
    client.virtual_hosts(ws.id).create(&vhost).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while client
        .rollout()
        .status(ws.id)
        .await
        .unwrap()
        .summary
        .pending
        != 1
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the change never became pending"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let ws_id = ws.id.to_string();

    // The agent does not answer: the wait gives up, saying what is pending.
    let out = run(
        &config,
        &["rollout", "status", &ws_id, "--wait", "--timeout", "1"],
    )
    .await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("rollout not finished after 1 s: 1 agents pending"),
        "{}",
        stderr(&out)
    );

    // The agent applies while the command waits: it ends in sync.
    let waiting = nxmesh(
        &config,
        &["rollout", "status", &ws_id, "--wait", "--timeout", "60"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let version = agent.apply_next().await;
    let out = tokio::task::spawn_blocking(move || waiting.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("1 agents: 1 in sync, 0 pending, 0 failed"),
        "{text}"
    );
    assert!(
        text.contains(&format!("desired {version}  applied {version}")),
        "{text}"
    );
}

/// Organization `acme` with workspace `prod`, made through the API.
async fn prod_workspace(client: &nxmesh_client::Client) -> nxmesh_core::model::Workspace {
    let org = client
        .organizations()
        .create(&nxmesh_core::model::CreateOrganization {
            name: "Acme".into(),
            slug: "acme".into(),
        })
        .await
        .unwrap();
    client
        .workspaces(org.id)
        .create(&nxmesh_core::model::CreateWorkspace {
            name: "Prod".into(),
            slug: "prod".into(),
        })
        .await
        .unwrap()
}

/// A registration token for a new agent `web-01` in `workspace`.
async fn web_01_token(
    client: &nxmesh_client::Client,
    workspace: uuid::Uuid,
) -> nxmesh_core::model::RegistrationTokenCreated {
    client
        .agents(workspace)
        .create_registration_token(&CreateRegistrationToken {
            name: "web-01".into(),
            labels: Default::default(),
            expires_in_hours: None,
        })
        .await
        .unwrap()
}
