//! Generated code for the herd agent protocol (`proto/herd/agent/v1/agent.proto`), and the
//! codec it is generated to use.
//!
//! Architecture invariant: nothing but generated code and its codec lives here.

pub mod codec;

#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("herd.agent.v1");
}
