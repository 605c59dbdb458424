//! The unary `ReportHealth` and `ReportMetrics` calls, outside the stream.
//!
//! The stream is the normal path for health and metrics; these calls are
//! for a caller that has a report but no stream (a one-shot tool, or a
//! runtime that reports while the stream is down). They authenticate with
//! `authorization: Bearer <agent_credential>` metadata.

use nxmesh_core::protocol::{Ack, HealthReport, MetricsBatch};
use nxmesh_proto::pb::{self, agent_service_client::AgentServiceClient};
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Request, Status};

use crate::transport::MAX_MESSAGE_BYTES;

fn authorized<T>(message: T, credential: &str) -> Result<Request<T>, Status> {
    let value = MetadataValue::try_from(format!("Bearer {credential}"))
        .map_err(|_| Status::invalid_argument("the credential is not valid metadata"))?;
    let mut request = Request::new(message);
    request.metadata_mut().insert("authorization", value);
    Ok(request)
}

fn client(channel: Channel) -> AgentServiceClient<Channel> {
    AgentServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// Sends one health report with `ReportHealth` (see [`crate::connect`] for
/// the channel).
pub async fn report_health(
    channel: Channel,
    credential: &str,
    report: HealthReport,
) -> Result<Ack, Status> {
    let request = authorized(pb::HealthReport::from(report), credential)?;
    let ack = client(channel).report_health(request).await?.into_inner();
    Ok(ack.into())
}

/// Sends one metrics batch with `ReportMetrics`.
pub async fn report_metrics(
    channel: Channel,
    credential: &str,
    batch: MetricsBatch,
) -> Result<Ack, Status> {
    let request = authorized(pb::MetricsBatch::from(batch), credential)?;
    let ack = client(channel).report_metrics(request).await?.into_inner();
    Ok(ack.into())
}
