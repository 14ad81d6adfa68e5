//! The gRPC codec of the agent protocol: prost, except that a message's room in the send
//! buffer is reserved once, at its exact encoded size. (Letting the buffer grow while
//! encoding copies a large event batch several times over as it doubles.)

use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, EncodeBuf, Encoder};

/// What the generated client and server use (`codec_path` in `build.rs`).
pub struct HerdCodec<T, U>(PhantomData<fn(T) -> U>);

impl<T, U> Default for HerdCodec<T, U> {
    fn default() -> Self {
        HerdCodec(PhantomData)
    }
}

impl<T, U> Codec for HerdCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ExactEncoder<T>;
    type Decoder = tonic_prost::ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ExactEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::new(BufferSettings::default())
    }
}

/// Encodes with prost into room reserved at the message's exact size.
pub struct ExactEncoder<T>(PhantomData<fn(T)>);

impl<T: Message> Encoder for ExactEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.reserve(item.encoded_len());
        item.encode(buf)
            .map_err(|e| Status::internal(format!("cannot encode a message: {e}")))
    }
}
