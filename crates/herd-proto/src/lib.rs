//! Generated code for the herd agent protocol (`proto/herd/agent/v1/agent.proto`).
//!
//! Architecture invariant: nothing but generated code lives here.
#![allow(clippy::all, missing_docs)]

pub mod v1 {
    tonic::include_proto!("herd.agent.v1");
}
