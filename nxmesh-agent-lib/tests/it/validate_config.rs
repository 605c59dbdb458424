//! `ValidateConfig` on raw text against a real nginx: the parser and the
//! allowlist refuse what could load code or touch files before `nginx -t`
//! runs; what passes them is checked by `nginx -t` in a temporary prefix.

use nxmesh_agent_lib::{CommandHandler, NginxRuntime};
use nxmesh_core::protocol::{Command, CommandKind, CommandResult};

use crate::nginx_support::{Env, free_port};

async fn validate(rt: &NginxRuntime, text: &str) -> CommandResult {
    rt.handle(Command {
        command_id: "v".to_owned(),
        kind: CommandKind::ValidateConfig {
            config_content: text.to_owned(),
        },
    })
    .await
}

#[tokio::test]
async fn raw_text_is_checked_by_the_allowlist_then_by_nginx() {
    let Some(env) = Env::new() else { return };
    let rt = NginxRuntime::open(env.config.clone()).await.unwrap();
    let outside = tempfile::tempdir().unwrap();

    // Code loading: refused with the line, and nginx never ran (it would
    // have created the access log named on line 3 when opening it).
    let log = outside.path().join("created-by-nginx.log");
    let text = format!(
        "load_module modules/ngx_evil.so;\nevents {{}}\nhttp {{ access_log {}; }}\n",
        log.display()
    );
    let r = validate(&rt, &text).await;
    assert!(!r.success, "{r:?}");
    assert!(
        r.message
            .contains("line 1: directive \"load_module\" is not allowed"),
        "{}",
        r.message
    );
    assert!(
        r.message
            .contains("line 3: \"access_log\" must name a relative path"),
        "{}",
        r.message
    );
    assert!(!log.exists(), "nginx -t ran on refused text");

    // Unknown directives, with nginx's wording and the line.
    let r = validate(&rt, "events {}\nhttp {\n    frobnicate on;\n}\n").await;
    assert!(!r.success);
    assert!(
        r.message
            .contains("line 3: unknown directive \"frobnicate\""),
        "{}",
        r.message
    );

    // Includes and embedded code.
    for (text, what) in [
        (
            "events {}\nhttp {\n include /etc/nginx/mime.types;\n}\n",
            "line 3: \"include\" is not allowed",
        ),
        (
            "events {}\nhttp { server { location / {\n perl Evil::handler; } } }\n",
            "line 3: directive \"perl\" is not allowed",
        ),
        (
            "env LD_PRELOAD;\nevents {}\nhttp {}\n",
            "line 1: directive \"env\" is not allowed",
        ),
    ] {
        let r = validate(&rt, text).await;
        assert!(!r.success, "{text}");
        assert!(r.message.contains(what), "{text}: {}", r.message);
    }

    // Allowed directives nginx itself refuses: nginx's own message.
    let port = free_port();
    let r = validate(
        &rt,
        &format!(
            "events {{}}\nhttp {{\n keepalive_timeout forever;\n server {{ listen 127.0.0.1:{port}; }}\n}}\n"
        ),
    )
    .await;
    assert!(!r.success);
    assert!(
        r.message.contains("[emerg]") && r.message.contains("keepalive_timeout"),
        "{}",
        r.message
    );

    // A valid text passes, with relative paths inside the temporary prefix.
    let text = format!(
        "worker_processes 1;\npid logs/nginx.pid;\nerror_log logs/error.log warn;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n types {{ text/html html; }}\n default_type text/plain;\n\
         access_log logs/access.log;\n client_body_temp_path temp/body;\n\
         proxy_temp_path temp/proxy;\n fastcgi_temp_path temp/fastcgi;\n\
         uwsgi_temp_path temp/uwsgi;\n scgi_temp_path temp/scgi;\n\
         upstream app {{ least_conn; server 127.0.0.1:{port}; keepalive 4; }}\n\
         server {{ listen 127.0.0.1:{port}; server_name a.test;\n\
         location / {{ proxy_pass http://app; gzip on; add_header X-A b always; }} }}\n}}\n"
    );
    let r = validate(&rt, &text).await;
    assert!(r.success, "{r:?}");
    assert_eq!(r.details["valid"], "true");
    // The runtime's own prefix was not used.
    assert!(
        !std::path::Path::new(&env.config.prefix)
            .join("temp/body")
            .exists()
    );
}
