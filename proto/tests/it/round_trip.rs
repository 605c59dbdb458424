//! Domain → wire → bytes → wire → domain gives back the same value, for
//! every message that has a domain counterpart; invalid wire messages are
//! refused with an error naming the field.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use nxmesh_core::config::*;
use nxmesh_core::event::AlertSeverity;
use nxmesh_core::model::*;
use nxmesh_core::protocol::*;
use nxmesh_proto::pb;
use uuid::Uuid;

fn t(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(1_772_000_000_000 + ms).unwrap()
}

fn id(n: u128) -> Uuid {
    Uuid::from_u128(0x550e8400_e29b_41d4_a716_446655440000 + n)
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Converts to the wire type, encodes, decodes, converts back.
fn through_wire<D, W>(value: &D) -> D
where
    D: Clone + Into<W>,
    W: prost::Message + Default + TryInto<D>,
    <W as TryInto<D>>::Error: std::fmt::Debug,
{
    let wire: W = value.clone().into();
    let bytes = wire.encode_to_vec();
    let decoded = W::decode(bytes.as_slice()).unwrap();
    decoded.try_into().unwrap()
}

fn config_update() -> ConfigUpdate {
    let vh = VirtualHostConfig {
        id: id(4),
        spec: VirtualHostSpec {
            name: "API Gateway".into(),
            server_name: "api.example.com www.example.com".into(),
            listen_port: 443,
            ssl_enabled: true,
            ssl_certificate_id: Some(id(5)),
            http2_enabled: true,
            http3_enabled: true,
            locations: vec![
                Location {
                    path: "/api/v1".into(),
                    modifier: Some(LocationModifier::PreferentialPrefix),
                    upstream_id: Some(id(6)),
                    proxy_pass: None,
                    root: None,
                    index: None,
                    custom_headers: vec![Header {
                        name: "X-Forwarded-Proto".into(),
                        value: "$scheme".into(),
                        always: true,
                    }],
                    rewrite_rules: vec![
                        RewriteRule {
                            pattern: "^/old/(.*)$".into(),
                            replacement: "/new/$1".into(),
                            flag: Some(RewriteFlag::Permanent),
                        },
                        RewriteRule {
                            pattern: "^/x$".into(),
                            replacement: "/y".into(),
                            flag: None,
                        },
                    ],
                    custom_directives: map(&[("proxy_read_timeout", "30s")]),
                },
                Location {
                    path: "\\.php$".into(),
                    modifier: Some(LocationModifier::RegexCaseInsensitive),
                    upstream_id: None,
                    proxy_pass: Some("http://localhost:8080".into()),
                    root: None,
                    index: None,
                    custom_headers: vec![],
                    rewrite_rules: vec![],
                    custom_directives: BTreeMap::new(),
                },
                Location {
                    path: "/static".into(),
                    modifier: None,
                    upstream_id: None,
                    proxy_pass: None,
                    root: Some("/var/www".into()),
                    index: Some("index.html index.htm".into()),
                    custom_headers: vec![],
                    rewrite_rules: vec![],
                    custom_directives: BTreeMap::new(),
                },
            ],
            custom_directives: map(&[("client_max_body_size", "10m")]),
        },
    };
    let up = UpstreamConfig {
        id: id(6),
        spec: UpstreamSpec {
            name: "api-backend".into(),
            algorithm: LoadBalanceAlgorithm::LeastConnections,
            servers: vec![
                UpstreamServer {
                    address: "10.0.1.20:8080".into(),
                    weight: 2,
                    backup: false,
                    down: false,
                    max_fails: 3,
                    fail_timeout: 30,
                },
                UpstreamServer {
                    address: "[::1]:8081".into(),
                    weight: 1,
                    backup: true,
                    down: true,
                    max_fails: 0,
                    fail_timeout: 10,
                },
            ],
            health_check: Some(HealthCheck {
                enabled: true,
                path: "/health".into(),
                interval: 10,
                timeout: 5,
                healthy_threshold: Some(2),
                unhealthy_threshold: None,
            }),
            keepalive_connections: 16,
        },
    };
    let cert = CertificateBundle {
        id: id(5),
        domain: "api.example.com".into(),
        certificate_pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
        private_key_pem: "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n".into(),
        expires_at: t(90 * 86_400_000),
    };
    ConfigUpdate {
        config_id: "config-123".into(),
        version: 42,
        virtual_hosts: vec![vh],
        upstreams: vec![up],
        certificates: [(id(5).to_string(), cert)].into_iter().collect(),
        global_settings: GlobalSettings {
            nginx_directives: map(&[("keepalive_timeout", "65")]),
            env_vars: map(&[("TZ", "UTC")]),
            acme_challenges: vec![nxmesh_core::config::AcmeChallenge {
                domain: "app.example.com".into(),
                token: "tok-EN_1".into(),
                key_authorization: "tok-EN_1.thumb-print_2".into(),
            }],
        },
    }
}

fn health_report() -> HealthReport {
    HealthReport {
        nginx: NginxStatus {
            is_running: true,
            pid: 4242,
            uptime_seconds: 86_400,
            active_connections: 42,
            total_requests: 1_234_567,
            requests_per_second: 150.5,
        },
        system: SystemMetrics {
            cpu_percent: 25.0,
            memory_used_bytes: 512 << 20,
            memory_total_bytes: 8 << 30,
            disk_used_bytes: 10 << 30,
            disk_total_bytes: 100 << 30,
            load_average_1m: 0.75,
        },
        config_checksum: "sha256:abc".into(),
        config_version: 42,
        alerts: vec![Alert {
            id: "alert-456".into(),
            severity: AlertSeverity::Warning,
            message: "High CPU usage: 85%".into(),
            timestamp: t(1),
        }],
    }
}

fn every_agent_payload() -> Vec<AgentPayload> {
    vec![
        AgentPayload::Registration(RegistrationRequest {
            auth: AgentAuth::Token("nxmesh_agent_abc".into()),
            hostname: "web-01.internal".into(),
            ip_address: "10.0.1.10".into(),
            version: "0.1.0".into(),
            capabilities: vec!["http2".into(), "websocket".into()],
            labels: map(&[("env", "production")]),
            deployment_mode: DeploymentMode::DockerSidecar,
            applied: None,
        }),
        AgentPayload::Registration(RegistrationRequest {
            auth: AgentAuth::Credential("cred".into()),
            hostname: "web-02".into(),
            ip_address: "10.0.1.11".into(),
            version: "0.1.0".into(),
            capabilities: vec![],
            labels: BTreeMap::new(),
            deployment_mode: DeploymentMode::Standalone,
            applied: Some(AppliedConfig {
                version: 41,
                checksum: "sha256:def".into(),
            }),
        }),
        AgentPayload::Health(health_report()),
        AgentPayload::ConfigStatus(ConfigStatus {
            config_id: "config-123".into(),
            version: 42,
            status: ConfigApplyStatus::RolledBack,
            error_message: Some("nginx: [emerg] unknown directive".into()),
            applied_at: Some(t(2)),
            config_checksum: Some("sha256:abc".into()),
        }),
        AgentPayload::ConfigStatus(ConfigStatus {
            config_id: "config-124".into(),
            version: 43,
            status: ConfigApplyStatus::Success,
            error_message: None,
            applied_at: None,
            config_checksum: None,
        }),
        AgentPayload::Metrics(MetricsBatch {
            timestamp: t(3),
            metrics: vec![
                Metric {
                    name: "nginx_requests_total".into(),
                    value: 1e6,
                    timestamp: t(3),
                    labels: map(&[("status", "2xx")]),
                    kind: MetricType::Counter,
                },
                Metric {
                    name: "nginx_active".into(),
                    value: 42.0,
                    timestamp: t(3),
                    labels: BTreeMap::new(),
                    kind: MetricType::Gauge,
                },
                Metric {
                    name: "latency_bucket".into(),
                    value: 0.5,
                    timestamp: t(3),
                    labels: map(&[("le", "0.1")]),
                    kind: MetricType::Histogram,
                },
            ],
        }),
        AgentPayload::Logs(LogBatch {
            entries: vec![LogEntry {
                timestamp: t(4),
                level: "access".into(),
                message: "GET / 200".into(),
                fields: map(&[("status", "200")]),
            }],
        }),
        AgentPayload::Event(AgentEvent {
            event_id: "e1".into(),
            event_type: "nginx.restarted".into(),
            timestamp: t(5),
            data: map(&[("pid", "1")]),
        }),
        AgentPayload::CommandResult(CommandResult {
            command_id: "c1".into(),
            success: false,
            message: "failed".into(),
            details: map(&[("a", "b")]),
        }),
    ]
}

fn every_master_payload() -> Vec<MasterPayload> {
    let mut out = vec![
        MasterPayload::RegistrationResponse(RegistrationResponse::Accepted {
            agent_id: id(2),
            heartbeat_interval_seconds: 10,
            agent_credential: Some("cred".into()),
        }),
        MasterPayload::RegistrationResponse(RegistrationResponse::Accepted {
            agent_id: id(2),
            heartbeat_interval_seconds: 10,
            agent_credential: None,
        }),
        MasterPayload::RegistrationResponse(RegistrationResponse::Rejected {
            error_message: "token expired".into(),
        }),
        MasterPayload::ConfigUpdate(Box::new(config_update())),
        MasterPayload::ConfigUpdate(Box::default()),
        MasterPayload::Ack(Ack {
            message_id: "m1".into(),
            success: true,
            error_message: String::new(),
        }),
        MasterPayload::Error(ProtocolError {
            code: "UNAUTHORIZED".into(),
            message: "bad credential".into(),
            details: map(&[("x", "y")]),
        }),
    ];
    for kind in [
        CommandKind::Reload { graceful: true },
        CommandKind::Restart { force: true },
        CommandKind::Stop {
            graceful: true,
            timeout_seconds: 30,
        },
        CommandKind::GetStatus,
        CommandKind::ValidateConfig {
            config_content: "events {}".into(),
        },
    ] {
        out.push(MasterPayload::Command(Command {
            command_id: "cmd-1".into(),
            kind,
        }));
    }
    out
}

#[test]
fn agent_messages_round_trip() {
    for payload in every_agent_payload() {
        let msg = AgentMessage {
            agent_id: Some(id(2)),
            timestamp: t(0),
            payload,
        };
        assert_eq!(through_wire::<_, pb::AgentMessage>(&msg), msg);
        let anon = AgentMessage {
            agent_id: None,
            ..msg
        };
        assert_eq!(through_wire::<_, pb::AgentMessage>(&anon), anon);
    }
}

#[test]
fn master_messages_round_trip() {
    for payload in every_master_payload() {
        let msg = MasterMessage {
            timestamp: t(0),
            payload,
        };
        assert_eq!(through_wire::<_, pb::MasterMessage>(&msg), msg);
    }
}

#[test]
fn inner_messages_round_trip_on_their_own() {
    let cu = config_update();
    assert_eq!(through_wire::<_, pb::ConfigUpdate>(&cu), cu);
    assert_eq!(
        through_wire::<_, pb::VirtualHost>(&cu.virtual_hosts[0]),
        cu.virtual_hosts[0]
    );
    assert_eq!(
        through_wire::<_, pb::Upstream>(&cu.upstreams[0]),
        cu.upstreams[0]
    );
    let hr = health_report();
    assert_eq!(through_wire::<_, pb::HealthReport>(&hr), hr);
    for l in &cu.virtual_hosts[0].spec.locations {
        assert_eq!(through_wire::<_, pb::Location>(l), *l);
    }
}

/// The round-tripped configuration is a valid one: conversions and
/// validation agree.
#[test]
fn round_tripped_config_validates() {
    use nxmesh_core::validate::Validate;
    let cu = through_wire::<_, pb::ConfigUpdate>(&config_update());
    cu.validate().unwrap();
}

#[test]
fn invalid_wire_messages_are_refused_with_the_field() {
    let err = |r: Result<ConfigUpdate, nxmesh_proto::InvalidMessage>| r.unwrap_err().field;

    let mut w: pb::ConfigUpdate = config_update().into();
    w.virtual_hosts[0].listen_port = 70_000;
    assert_eq!(err(w.try_into()), "virtual_host.listen_port");

    let mut w: pb::ConfigUpdate = config_update().into();
    w.virtual_hosts[0].id = "not-a-uuid".into();
    assert_eq!(err(w.try_into()), "virtual_host.id");

    let mut w: pb::ConfigUpdate = config_update().into();
    w.upstreams[0].algorithm = 0;
    assert_eq!(err(w.try_into()), "upstream.algorithm");

    let mut w: pb::ConfigUpdate = config_update().into();
    w.upstreams[0].algorithm = 99;
    assert_eq!(err(w.try_into()), "upstream.algorithm");

    let mut w: pb::ConfigUpdate = config_update().into();
    w.virtual_hosts[0].locations[0].rewrite_rules[0].flag = "forever".into();
    assert_eq!(err(w.try_into()), "rewrite_rule.flag");

    let reg = pb::RegistrationRequest {
        deployment_mode: 1,
        ..Default::default()
    };
    let e = RegistrationRequest::try_from(reg).unwrap_err();
    assert_eq!(e.field, "registration");

    let reg = pb::RegistrationRequest {
        token: "t".into(),
        agent_credential: "c".into(),
        deployment_mode: 1,
        ..Default::default()
    };
    assert_eq!(
        RegistrationRequest::try_from(reg).unwrap_err().field,
        "registration"
    );

    let reg = pb::RegistrationRequest {
        token: "t".into(),
        ..Default::default()
    };
    assert_eq!(
        RegistrationRequest::try_from(reg).unwrap_err().field,
        "deployment_mode"
    );

    let msg = pb::AgentMessage {
        agent_id: String::new(),
        timestamp: 0,
        payload: None,
    };
    assert_eq!(
        AgentMessage::try_from(msg).unwrap_err().field,
        "agent_message.payload"
    );

    let cmd = pb::Command {
        command_id: "x".into(),
        command: None,
    };
    assert_eq!(Command::try_from(cmd).unwrap_err().field, "command.command");

    let alert = pb::Alert {
        id: "a".into(),
        severity: "dire".into(),
        message: String::new(),
        timestamp: 0,
    };
    assert_eq!(Alert::try_from(alert).unwrap_err().field, "alert.severity");

    let status = pb::ConfigStatus {
        status: 0,
        ..Default::default()
    };
    assert_eq!(
        ConfigStatus::try_from(status).unwrap_err().field,
        "config_status.status"
    );

    let resp = pb::RegistrationResponse {
        success: true,
        agent_id: id(1).to_string(),
        heartbeat_interval_seconds: 0,
        ..Default::default()
    };
    assert_eq!(
        RegistrationResponse::try_from(resp).unwrap_err().field,
        "registration_response.heartbeat_interval_seconds"
    );
}
