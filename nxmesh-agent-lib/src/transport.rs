//! Opening the gRPC channel to the master, over TLS trusting only the
//! master's CA, or plain HTTP/2 for `http://` endpoints.

use std::time::Duration;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::error::ConnectError;

/// Messages larger than this are refused; a configuration with many
/// certificates easily exceeds tonic's default of 4 MiB.
pub(crate) const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// How to reach one master address.
#[derive(Debug, Clone)]
pub(crate) struct Dial {
    pub(crate) ca_pem: Option<Vec<u8>>,
    pub(crate) server_name: Option<String>,
    pub(crate) connect_timeout: Duration,
    pub(crate) keepalive: Duration,
}

/// Opens a channel to `endpoint`.
///
/// For `https://` the master's certificate must chain to `ca_pem` (and only
/// to it: system roots are not trusted) and carry `server_name`, or the
/// endpoint's host when `server_name` is `None`.
pub async fn connect(
    endpoint: &str,
    ca_pem: Option<&[u8]>,
    server_name: Option<&str>,
    connect_timeout: Duration,
) -> Result<Channel, ConnectError> {
    let dial = Dial {
        ca_pem: ca_pem.map(<[u8]>::to_vec),
        server_name: server_name.map(str::to_owned),
        connect_timeout,
        keepalive: Duration::from_secs(30),
    };
    dial.connect(endpoint).await
}

impl Dial {
    pub(crate) async fn connect(&self, endpoint: &str) -> Result<Channel, ConnectError> {
        let invalid = |source| ConnectError::Endpoint {
            endpoint: endpoint.to_owned(),
            source,
        };
        let mut ep = Endpoint::from_shared(endpoint.to_owned())
            .map_err(invalid)?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .tcp_keepalive(Some(self.keepalive))
            .http2_keep_alive_interval(self.keepalive)
            .keep_alive_timeout(self.keepalive)
            .keep_alive_while_idle(true);
        if endpoint.starts_with("https://") {
            let mut tls = ClientTlsConfig::new();
            if let Some(ca) = &self.ca_pem {
                tls = tls.ca_certificate(Certificate::from_pem(ca));
            }
            if let Some(name) = &self.server_name {
                tls = tls.domain_name(name.clone());
            }
            ep = ep.tls_config(tls).map_err(invalid)?;
        }
        // tonic's connect timeout covers the TCP connect only; a handshake
        // that never completes must not hang the agent.
        match tokio::time::timeout(self.connect_timeout, ep.connect()).await {
            Ok(r) => r.map_err(|source| ConnectError::Transport {
                endpoint: endpoint.to_owned(),
                source,
            }),
            Err(_) => Err(ConnectError::Timeout {
                endpoint: endpoint.to_owned(),
                timeout: self.connect_timeout,
            }),
        }
    }
}
