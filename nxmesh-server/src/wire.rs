//! What the master writes on agents' streams, encoded once per
//! configuration rather than once per agent.
//!
//! A rollout sends the same configuration (a label set's) to thousands of
//! agents, each at its own version. Converting and encoding it per agent
//! costs a deep copy, a conversion and a protobuf encoding each — most of
//! the master's CPU in a large rollout. Here a configuration is encoded
//! once, without its version, and each agent's `MasterMessage` is written
//! around those bytes: the timestamp, the `config_update` field's key and
//! length, the agent's `version` field, then the shared bytes. Protobuf
//! allows fields in any order, so an agent decodes exactly the message the
//! generated code would have written.
//!
//! The shared bytes are not copied either: the `Stream` method's response
//! body (`OutgoingBody`) hands HTTP/2 each message as a small head and
//! the shared bytes as they are, where tonic's encoder would copy every
//! message into a buffer per stream that then keeps its size for the
//! stream's life (16 KiB and more for each of thousands of agents). The
//! unary methods go to the generated server as they are ([`AgentServer`]).

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};

use nxmesh_core::config::ConfigUpdate;
use nxmesh_proto::pb;
use nxmesh_proto::pb::agent_service_server::AgentServiceServer;
use prost::Message as _;
use prost::bytes::{BufMut as _, Bytes, BytesMut};
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, int64};
use tokio_stream::Stream;
use tonic::Status;
use tonic::codec::{BufferSettings, Streaming};
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
                let (head, shared) = config.frame();
                let mut message = head.slice(FRAME_PREFIX..).to_vec();
                message.extend_from_slice(&shared.unwrap_or_default());
                pb::MasterMessage::decode(message.as_slice())
                    .map_err(|e| Status::internal(format!("re-decoding a configuration: {e}")))
            }
        }
    }

    /// The message as a gRPC frame (the 5-byte length prefix, then the
    /// message): a head, and for a configuration its shared bytes, which
    /// follow the head on the wire.
    fn frame(&self) -> (Bytes, Option<Bytes>) {
        match self {
            Outgoing::Message(m) => {
                let len = m.encoded_len();
                let mut head = BytesMut::with_capacity(FRAME_PREFIX + len);
                put_prefix(&mut head, len);
                m.encode_raw(&mut head);
                (head.freeze(), None)
            }
            Outgoing::Config {
                config,
                version,
                timestamp,
            } => {
                let shared = config.encoded();
                let body = int64::encoded_len(VERSION, version) + shared.len();
                let len = int64::encoded_len(TIMESTAMP, timestamp)
                    + prost::encoding::key_len(CONFIG_UPDATE)
                    + encoded_len_varint(body as u64)
                    + body;
                let mut head = BytesMut::with_capacity(FRAME_PREFIX + len - shared.len());
                put_prefix(&mut head, len);
                int64::encode(TIMESTAMP, timestamp, &mut head);
                encode_key(CONFIG_UPDATE, WireType::LengthDelimited, &mut head);
                encode_varint(body as u64, &mut head);
                int64::encode(VERSION, version, &mut head);
                (head.freeze(), Some(shared))
            }
        }
    }
}

/// The gRPC length prefix: a compression flag and the length (big endian).
const FRAME_PREFIX: usize = 5;

fn put_prefix(buf: &mut BytesMut, len: usize) {
    buf.put_u8(0);
    // A longer message is refused before it is framed (`MAX_MESSAGE`).
    buf.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
}

/// The body of a `Stream` response: every message as a gRPC frame, a
/// configuration's shared bytes handed on without a copy, then the
/// stream's status as trailers.
struct OutgoingBody {
    messages: crate::grpc::OutgoingStream,
    /// The shared bytes of the configuration whose head went last.
    shared: Option<Bytes>,
    ended: bool,
}

impl OutgoingBody {
    fn new(messages: crate::grpc::OutgoingStream) -> OutgoingBody {
        OutgoingBody {
            messages,
            shared: None,
            ended: false,
        }
    }
}

impl Body for OutgoingBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Status>>> {
        let this = &mut *self;
        if let Some(shared) = this.shared.take() {
            return Poll::Ready(Some(Ok(http_body::Frame::data(shared))));
        }
        if this.ended {
            return Poll::Ready(None);
        }
        let status = match ready!(Stream::poll_next(this.messages.as_mut(), cx)) {
            Some(Ok(message)) => {
                let (head, shared) = message.frame();
                let len = head.len() - FRAME_PREFIX + shared.as_ref().map_or(0, Bytes::len);
                if len <= MAX_MESSAGE {
                    this.shared = shared;
                    return Poll::Ready(Some(Ok(http_body::Frame::data(head))));
                }
                Status::out_of_range(format!(
                    "a message of {len} bytes exceeds the limit of {MAX_MESSAGE}"
                ))
            }
            Some(Err(status)) => status,
            None => Status::ok(""),
        };
        this.ended = true;
        let mut trailers = http::HeaderMap::new();
        status.add_header(&mut trailers)?;
        Poll::Ready(Some(Ok(http_body::Frame::trailers(trailers))))
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.shared.is_none()
    }
}

/// The agent service as tonic serves it: `Stream` with `OutgoingBody`,
/// the unary methods through the generated server.
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
            let service = self.service.clone();
            Box::pin(async move {
                let (parts, body) = req.into_parts();
                // Agents do not compress; a compressed message is refused
                // by the decoder.
                let inbound = Streaming::new_request(
                    ProstDecoder::<pb::AgentMessage>::new(inbound_buffer()),
                    body,
                    None,
                    Some(MAX_MESSAGE),
                );
                let request = tonic::Request::from_http(http::Request::from_parts(parts, inbound));
                Ok(match service.open_stream(request).await {
                    Ok(response) => {
                        let (metadata, messages, extensions) = response.into_parts();
                        let body = tonic::body::Body::new(OutgoingBody::new(messages));
                        let mut response = http::Response::new(body);
                        *response.headers_mut() = metadata.into_headers();
                        response.headers_mut().insert(
                            http::header::CONTENT_TYPE,
                            http::HeaderValue::from_static("application/grpc"),
                        );
                        *response.extensions_mut() = extensions;
                        response
                    }
                    Err(status) => status.into_http(),
                })
            })
        } else {
            self.generated.call(req)
        }
    }
}

/// The largest message either way: a configuration with many certificates
/// easily exceeds tonic's default of 4 MiB.
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// The read buffer of an agent's stream starts at 1 KiB rather than
/// tonic's 8 KiB: most of what agents send is heartbeats of a few hundred
/// bytes, and the buffer is per stream (it grows for a larger message).
fn inbound_buffer() -> BufferSettings {
    BufferSettings::new(1024, 32 * 1024)
}

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
            // On the wire: the gRPC prefix (uncompressed, the length),
            // then the head and the shared bytes.
            let (head, shared) = out.frame();
            let mut frame = head.to_vec();
            frame.extend_from_slice(&shared.expect("a configuration's shared bytes"));
            assert_eq!(frame[0], 0);
            let len = u32::from_be_bytes(frame[1..5].try_into().unwrap()) as usize;
            assert_eq!(len, frame.len() - 5);
            assert_eq!(pb::MasterMessage::decode(&frame[5..]).unwrap(), expected);
            assert_eq!(out.into_message().unwrap(), expected);
        }
    }
}
