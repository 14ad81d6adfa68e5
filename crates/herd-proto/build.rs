//! Compiles `proto/herd/agent/v1/agent.proto` with protox, so no `protoc` is needed.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let file = root.join("herd/agent/v1/agent.proto");
    println!("cargo:rerun-if-changed={}", file.display());
    let fds = protox::compile([&file], [&root])?;
    tonic_prost_build::configure()
        .codec_path("crate::codec::HerdCodec")
        .bytes(".herd.agent.v1.Output.data")
        .bytes(".herd.agent.v1.Input.data")
        .bytes(".herd.agent.v1.BlobChunk.data")
        .bytes(".herd.agent.v1.FetchChunk.data")
        .bytes(".herd.agent.v1.StartTask.script")
        .bytes(".herd.agent.v1.StartTask.input")
        .bytes(".herd.agent.v1.StartTask.mask")
        .bytes(".herd.agent.v1.Exited.outputs")
        .compile_fds(fds)?;
    Ok(())
}
