//! What the master writes on agents' streams, encoded once per
//! configuration rather than once per agent.
//!
//! A rollout sends the same configuration (a label set's) to thousands of
//! agents, each at its own version. Converting and encoding it per agent
//! costs a deep copy, a conversion and a protobuf encoding each — most of
//! the master's CPU in a large rollout. Here a configuration is encoded
//! once, without its version, and each agent's `MasterMessage` is written
//! around those bytes: the timestamp, the `config_update` field's key and
//! length, the shared bytes, then the agent's `version` field. Protobuf
//! allows fields in any order, so an agent decodes exactly the message the
//! generated code would have written.
//!
//! The `Stream` method is served with [`OutgoingCodec`]; the unary methods
//! go to the generated server as they are ([`AgentServer`]).

use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use nxmesh_core::config::ConfigUpdate;
use nxmesh_proto::pb;
use nxmesh_proto::pb::agent_service_server::AgentServiceServer;
use prost::Message as _;
use prost::bytes::Bytes;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, int64};
use tonic::Status;
use tonic::codec::{Codec, EncodeBuf, Encoder};
use tonic::codegen::{Body, BoxFuture, Service, StdError, http};
use tonic::server::NamedService;
use tonic_prost::ProstDecoder;

use crate::grpc::AgentService;

/// `MasterMessage.timestamp`.
const TIMESTAMP: u32 = 1;
/// `MasterMessage.config_update`.
const CONFIG_UPDATE: u32 = 3;
/// `ConfigUpdate.version`.
const VERSION: u32 = 2;

/// A configuration shared by every agent that receives the same content,
/// encoded the first time a stream sends it.
#[derive(Debug)]
pub struct SharedConfig {
    update: ConfigUpdate,
    encoded: OnceLock<Bytes>,
}

impl SharedConfig {
    /// Wraps `update` (its `version` is ignored: each agent has its own).
    pub fn new(update: ConfigUpdate) -> SharedConfig {
        SharedConfig {
            update,
            encoded: OnceLock::new(),
        }
    }

    /// The configuration's content.
    pub fn update(&self) -> &ConfigUpdate {
        &self.update
    }

    /// The protobuf encoding of the `ConfigUpdate`, without `version`.
    fn encoded(&self) -> Bytes {
        self.encoded
            .get_or_init(|| {
                let mut wire = pb::ConfigUpdate::from(self.update.clone());
                wire.version = 0;
                Bytes::from(wire.encode_to_vec())
            })
            .clone()
    }
}

/// One message on an agent's stream.
#[derive(Debug)]
pub enum Outgoing {
    /// Any message, encoded as usual.
    Message(Box<pb::MasterMessage>),
    /// A `MasterMessage` carrying a shared configuration at `version`.
    Config {
        /// The content.
        config: Arc<SharedConfig>,
        /// This agent's version of it.
        version: i64,
        /// `MasterMessage.timestamp` (Unix milliseconds).
        timestamp: i64,
    },
}

impl Outgoing {
    /// `config` at `version` for one agent, stamped now.
    pub fn config(config: Arc<SharedConfig>, version: i64) -> Outgoing {
        Outgoing::Config {
            config,
            version,
            timestamp: chrono::Utc::now().timestamp_millis(),
        }
    }

    /// The message as the generated types have it (decoding the shared
    /// bytes: for the generic path and tests, not the hot one).
    pub fn into_message(self) -> Result<pb::MasterMessage, Status> {
        match self {
            Outgoing::Message(m) => Ok(*m),
            config @ Outgoing::Config { .. } => {
                let mut buf = Vec::new();
                config.write(&mut buf);
                pb::MasterMessage::decode(buf.as_slice())
                    .map_err(|e| Status::internal(format!("re-decoding a configuration: {e}")))
            }
        }
    }

    fn write(&self, buf: &mut impl prost::bytes::BufMut) {
        match self {
            Outgoing::Message(m) => m.encode_raw(buf),
            Outgoing::Config {
                config,
                version,
                timestamp,
            } => {
                let shared = config.encoded();
                int64::encode(TIMESTAMP, timestamp, buf);
                let body = shared.len() + int64::encoded_len(VERSION, version);
                encode_key(CONFIG_UPDATE, WireType::LengthDelimited, buf);
                encode_varint(body as u64, buf);
                buf.put_slice(&shared);
                int64::encode(VERSION, version, buf);
            }
        }
    }

    fn encoded_len(&self) -> usize {
        match self {
            Outgoing::Message(m) => m.encoded_len(),
            Outgoing::Config {
                config,
                version,
                timestamp,
            } => {
                let body = config.encoded().len() + int64::encoded_len(VERSION, version);
                int64::encoded_len(TIMESTAMP, timestamp)
                    + prost::encoding::key_len(CONFIG_UPDATE)
                    + encoded_len_varint(body as u64)
                    + body
            }
        }
    }
}

/// The codec of the `Stream` method: [`Outgoing`] down, `AgentMessage` up.
#[derive(Debug, Default, Clone, Copy)]
pub struct OutgoingCodec;

impl Codec for OutgoingCodec {
    type Encode = Outgoing;
    type Decode = pb::AgentMessage;
    type Encoder = OutgoingEncoder;
    type Decoder = ProstDecoder<pb::AgentMessage>;

    fn encoder(&mut self) -> Self::Encoder {
        OutgoingEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::default()
    }
}

/// Writes [`Outgoing`] messages.
#[derive(Debug, Default, Clone, Copy)]
pub struct OutgoingEncoder;

impl Encoder for OutgoingEncoder {
    type Item = Outgoing;
    type Error = Status;

    fn encode(&mut self, item: Outgoing, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.reserve(item.encoded_len());
        item.write(dst);
        Ok(())
    }
}

/// The agent service as tonic serves it: `Stream` through
/// [`OutgoingCodec`], the unary methods through the generated server.
#[derive(Clone)]
pub struct AgentServer {
    service: AgentService,
    generated: AgentServiceServer<AgentService>,
}

impl std::fmt::Debug for AgentServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentServer").finish_non_exhaustive()
    }
}

impl AgentServer {
    pub(crate) fn new(service: AgentService) -> AgentServer {
        AgentServer {
            generated: AgentServiceServer::new(service.clone()),
            service,
        }
    }
}

impl NamedService for AgentServer {
    const NAME: &'static str = <AgentServiceServer<AgentService> as NamedService>::NAME;
}

struct StreamMethod(AgentService);

impl tonic::server::StreamingService<pb::AgentMessage> for StreamMethod {
    type Response = Outgoing;
    type ResponseStream = crate::grpc::OutgoingStream;
    type Future = BoxFuture<tonic::Response<Self::ResponseStream>, Status>;

    fn call(
        &mut self,
        request: tonic::Request<tonic::Streaming<pb::AgentMessage>>,
    ) -> Self::Future {
        let service = self.0.clone();
        Box::pin(async move { service.open_stream(request).await })
    }
}

impl<B> Service<http::Request<B>> for AgentServer
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() == "/nxmesh.agent.v1.AgentService/Stream" {
            let method = StreamMethod(self.service.clone());
            Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(OutgoingCodec)
                    .apply_max_message_size_config(Some(MAX_MESSAGE), Some(MAX_MESSAGE));
                Ok(grpc.streaming(method, req).await)
            })
        } else {
            self.generated.call(req)
        }
    }
}

/// The largest message either way: a configuration with many certificates
/// easily exceeds tonic's default of 4 MiB.
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ConfigUpdate {
        serde_json::from_value(serde_json::json!({
            "config_id": "cfg-1",
            "version": 99,
            "virtual_hosts": [{
                "id": "7d2b8a5e-0c64-4b1f-9a53-5f0e9a3c2b11",
                "name": "Shop",
                "server_name": "shop.example.com",
                "listen_port": 80,
                "locations": [{"path": "/", "proxy_pass": "http://127.0.0.1:9"}]
            }],
            "upstreams": [],
            "certificates": {}
        }))
        .unwrap()
    }

    #[test]
    fn a_shared_configuration_decodes_as_the_generated_message() {
        let shared = Arc::new(SharedConfig::new(sample()));
        for version in [1, 7, 300, i64::MAX] {
            let out = Outgoing::Config {
                config: shared.clone(),
                version,
                timestamp: 1_700_000_000_123,
            };
            let mut expected = pb::ConfigUpdate::from(sample());
            expected.version = version;
            let expected = pb::MasterMessage {
                timestamp: 1_700_000_000_123,
                payload: Some(pb::master_message::Payload::ConfigUpdate(expected)),
            };
            let mut buf = Vec::new();
            out.write(&mut buf);
            assert_eq!(buf.len(), out.encoded_len());
            assert_eq!(pb::MasterMessage::decode(buf.as_slice()).unwrap(), expected);
            assert_eq!(out.into_message().unwrap(), expected);
        }
    }
}
