//! DNS-01 challenges: a [`DnsProvider`] publishes and withdraws the
//! `_acme-challenge` TXT records; [`Rfc2136`] does it with dynamic updates
//! (RFC 2136) signed with TSIG (RFC 8945), which BIND, Knot, PowerDNS and
//! most self-hosted DNS servers accept.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use hickory_proto::dnssec::rdata::tsig::TsigAlgorithm;
use hickory_proto::dnssec::tsig::TSigner;
use hickory_proto::op::update_message::UpdateMessage as _;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Why a DNS change failed.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The record's name is not inside the provider's zone.
    #[error("{name} is not inside the zone {zone}")]
    OutsideZone {
        /// The record's name.
        name: String,
        /// The zone.
        zone: String,
    },
    /// A name, key or message could not be built or read.
    #[error("DNS message: {0}")]
    Proto(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The server could not be reached.
    #[error("DNS server {server}")]
    Io {
        /// The server.
        server: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The server refused the update.
    #[error("DNS server refused the update: {0}")]
    Refused(String),
}

fn proto(e: impl std::error::Error + Send + Sync + 'static) -> DnsError {
    DnsError::Proto(Box::new(e))
}

/// Publishes and withdraws the TXT records of DNS-01 challenges.
#[async_trait]
pub trait DnsProvider: Send + Sync + fmt::Debug {
    /// Adds the TXT record `value` at `fqdn` (`_acme-challenge.<domain>`),
    /// next to any other values there (a wildcard and its base name share
    /// one name).
    async fn present(&self, fqdn: &str, value: &str) -> Result<(), DnsError>;
    /// Removes exactly the TXT record `value` at `fqdn`.
    async fn clean_up(&self, fqdn: &str, value: &str) -> Result<(), DnsError>;
}

/// A TSIG key: name, algorithm (`hmac-sha256`, `hmac-sha384` or
/// `hmac-sha512`) and secret.
#[derive(Clone)]
pub struct TsigKey {
    /// The key's name, as configured on the server.
    pub name: String,
    /// The algorithm.
    pub algorithm: String,
    /// The shared secret.
    pub secret: Vec<u8>,
}

impl fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TsigKey")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// RFC 2136 dynamic updates over TCP, signed with a TSIG key.
#[derive(Debug, Clone)]
pub struct Rfc2136 {
    server: SocketAddr,
    zone: String,
    key: TsigKey,
    ttl: u32,
    timeout: Duration,
}

impl Rfc2136 {
    /// Updates `zone` on the primary `server` with `key`. Checks the key's
    /// name and algorithm now, so that bad configuration fails at start.
    pub fn new(server: SocketAddr, zone: &str, key: TsigKey) -> Result<Rfc2136, DnsError> {
        let r = Rfc2136 {
            server,
            zone: zone.trim_end_matches('.').to_ascii_lowercase(),
            key,
            ttl: 60,
            timeout: Duration::from_secs(10),
        };
        r.signer()?;
        Name::from_ascii(&r.zone).map_err(proto)?;
        Ok(r)
    }

    fn signer(&self) -> Result<TSigner, DnsError> {
        let algorithm = match self.key.algorithm.to_ascii_lowercase().as_str() {
            "hmac-sha256" => TsigAlgorithm::HmacSha256,
            "hmac-sha384" => TsigAlgorithm::HmacSha384,
            "hmac-sha512" => TsigAlgorithm::HmacSha512,
            other => {
                return Err(DnsError::Proto(
                    format!("unsupported TSIG algorithm {other:?}").into(),
                ));
            }
        };
        let name = Name::from_ascii(&self.key.name).map_err(proto)?;
        TSigner::new(self.key.secret.clone(), algorithm, name, 300).map_err(proto)
    }

    /// The update message adding (or deleting) one TXT value.
    fn message(&self, fqdn: &str, value: &str, add: bool) -> Result<Message, DnsError> {
        let mut zone = Name::from_ascii(&self.zone).map_err(proto)?;
        zone.set_fqdn(true);
        let mut name = Name::from_ascii(fqdn.trim_end_matches('.')).map_err(proto)?;
        name.set_fqdn(true);
        if !zone.zone_of(&name) {
            return Err(DnsError::OutsideZone {
                name: fqdn.to_owned(),
                zone: self.zone.clone(),
            });
        }
        let mut query = Query::new();
        query
            .set_name(zone)
            .set_query_class(DNSClass::IN)
            .set_query_type(RecordType::SOA);
        let mut message = Message::new();
        message
            .set_id(rand_id())
            .set_message_type(MessageType::Query)
            .set_op_code(OpCode::Update)
            .set_recursion_desired(false);
        message.add_zone(query);
        let txt = RData::TXT(TXT::new(vec![value.to_owned()]));
        let mut record = if add {
            Record::from_rdata(name, self.ttl, txt)
        } else {
            // RFC 2136, 2.5.4: class NONE and TTL 0 delete this value only.
            let mut r = Record::from_rdata(name, 0, txt);
            r.set_dns_class(DNSClass::NONE);
            r
        };
        if add {
            record.set_dns_class(DNSClass::IN);
        }
        message.add_update(record);
        let now = u32::try_from(chrono::Utc::now().timestamp()).unwrap_or(u32::MAX);
        message.finalize(&self.signer()?, now).map_err(proto)?;
        Ok(message)
    }

    async fn send(&self, message: Message) -> Result<(), DnsError> {
        let bytes = message.to_vec().map_err(proto)?;
        let len = u16::try_from(bytes.len())
            .map_err(|_| DnsError::Proto("update message too large".into()))?;
        let io = |source| DnsError::Io {
            server: self.server,
            source,
        };
        let exchange = async {
            let mut s = tokio::net::TcpStream::connect(self.server)
                .await
                .map_err(io)?;
            s.write_all(&len.to_be_bytes()).await.map_err(io)?;
            s.write_all(&bytes).await.map_err(io)?;
            let mut len = [0u8; 2];
            s.read_exact(&mut len).await.map_err(io)?;
            let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
            s.read_exact(&mut buf).await.map_err(io)?;
            Ok::<_, DnsError>(buf)
        };
        let buf = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| {
                io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no answer to the update",
                ))
            })??;
        let answer = Message::from_vec(&buf).map_err(proto)?;
        if answer.id() != message.id() {
            return Err(DnsError::Refused("answer to another message".into()));
        }
        match answer.response_code() {
            ResponseCode::NoError => Ok(()),
            code => Err(DnsError::Refused(code.to_string())),
        }
    }
}

fn rand_id() -> u16 {
    let mut b = [0u8; 2];
    // A predictable id only weakens spoofing protection, which TSIG
    // provides anyway.
    let _ = getrandom::fill(&mut b);
    u16::from_le_bytes(b)
}

#[async_trait]
impl DnsProvider for Rfc2136 {
    async fn present(&self, fqdn: &str, value: &str) -> Result<(), DnsError> {
        self.send(self.message(fqdn, value, true)?).await
    }

    async fn clean_up(&self, fqdn: &str, value: &str) -> Result<(), DnsError> {
        self.send(self.message(fqdn, value, false)?).await
    }
}

/// Parses a BIND key file (`key "name" { algorithm hmac-sha256; secret
/// "base64"; };`, as `tsig-keygen` writes it).
pub fn parse_bind_key(text: &str) -> Result<TsigKey, DnsError> {
    use base64::Engine as _;
    let bad = |what: &str| DnsError::Proto(format!("TSIG key file: {what}").into());
    let after_key = text
        .split_once("key")
        .ok_or_else(|| bad("no key statement"))?
        .1;
    let name = after_key
        .split('"')
        .nth(1)
        .ok_or_else(|| bad("no quoted key name"))?
        .to_owned();
    let field = |label: &str| {
        text.split(';').find_map(|stmt| {
            let stmt = stmt.trim().trim_start_matches(['{', '}', ' ', '\n']);
            let stmt = stmt.rsplit('{').next().unwrap_or(stmt).trim();
            stmt.strip_prefix(label)
                .map(|v| v.trim().trim_matches('"').to_owned())
        })
    };
    let algorithm = field("algorithm").ok_or_else(|| bad("no algorithm"))?;
    let secret = field("secret").ok_or_else(|| bad("no secret"))?;
    let secret = base64::engine::general_purpose::STANDARD
        .decode(secret)
        .map_err(|_| bad("the secret is not base64"))?;
    Ok(TsigKey {
        name,
        algorithm,
        secret,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_tsig_keygen_file() {
        let k = parse_bind_key(
            "key \"nxmesh-acme\" {\n\talgorithm hmac-sha256;\n\tsecret \"c2VjcmV0LWJ5dGVz\";\n};\n",
        )
        .unwrap();
        assert_eq!(k.name, "nxmesh-acme");
        assert_eq!(k.algorithm, "hmac-sha256");
        assert_eq!(k.secret, b"secret-bytes");
    }

    #[test]
    fn updates_are_signed_and_stay_inside_the_zone() {
        let key = TsigKey {
            name: "k".into(),
            algorithm: "hmac-sha256".into(),
            secret: vec![7; 32],
        };
        let p = Rfc2136::new("127.0.0.1:53".parse().unwrap(), "example.test", key).unwrap();
        let m = p
            .message("_acme-challenge.app.example.test", "v", true)
            .unwrap();
        assert!(
            m.signature()
                .iter()
                .any(|r| r.record_type() == RecordType::TSIG)
        );
        assert!(matches!(
            p.message("_acme-challenge.other.test", "v", true),
            Err(DnsError::OutsideZone { .. })
        ));
        let bad = TsigKey {
            name: "k".into(),
            algorithm: "hmac-md5".into(),
            secret: vec![1],
        };
        assert!(Rfc2136::new("127.0.0.1:53".parse().unwrap(), "example.test", bad).is_err());
    }
}
