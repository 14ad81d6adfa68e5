//! The session stream's codec for simulated agents: the generated client's protobuf
//! codec, with small buffers, so ten thousand idle streams stay small.

use herd_proto::v1::{AgentFrame, ServerFrame};

/// The `Session` method of the agent hub (what the generated client calls).
pub(crate) const SESSION_PATH: &str = "/herd.agent.v1.AgentHub/Session";
/// Initial size of the session stream's encode and decode buffers. tonic's default is 8 KiB
/// each way; a simulated agent's frames are far smaller (the buffers grow when one is not),
/// and ten thousand idle streams would otherwise end up holding 160 MiB of them.
const CODEC_BUFFER: usize = 1024;

/// The generated client's protobuf codec, with small buffers.
pub(crate) struct SessionCodec;
pub(crate) struct FrameEncoder;
pub(crate) struct FrameDecoder;

impl tonic::codec::Codec for SessionCodec {
    type Encode = AgentFrame;
    type Decode = ServerFrame;
    type Encoder = FrameEncoder;
    type Decoder = FrameDecoder;

    fn encoder(&mut self) -> FrameEncoder {
        FrameEncoder
    }

    fn decoder(&mut self) -> FrameDecoder {
        FrameDecoder
    }
}

impl tonic::codec::Encoder for FrameEncoder {
    type Item = AgentFrame;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: AgentFrame,
        buf: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        prost::Message::encode(&item, buf)
            .map_err(|e| tonic::Status::internal(format!("cannot encode a frame: {e}")))
    }

    fn buffer_settings(&self) -> tonic::codec::BufferSettings {
        tonic::codec::BufferSettings::new(CODEC_BUFFER, CODEC_BUFFER)
    }
}

impl tonic::codec::Decoder for FrameDecoder {
    type Item = ServerFrame;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        buf: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<ServerFrame>, tonic::Status> {
        <ServerFrame as prost::Message>::decode(buf)
            .map(Some)
            .map_err(|e| tonic::Status::internal(format!("cannot decode a frame: {e}")))
    }

    fn buffer_settings(&self) -> tonic::codec::BufferSettings {
        tonic::codec::BufferSettings::new(CODEC_BUFFER, CODEC_BUFFER)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_path_matches_the_service() {
        assert_eq!(
            SESSION_PATH,
            format!(
                "/{}/Session",
                herd_proto::v1::agent_hub_server::SERVICE_NAME
            )
        );
    }
}
