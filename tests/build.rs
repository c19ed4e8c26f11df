//! Compiles the kubelet's pod-resources API (`agent/proto/podresources/v1/api.proto`,
//! vendored verbatim from k8s.io/kubelet) into the server of
//! tests/tests/kubelet_pod_resources.rs, independently of the client
//! generated into the agent: the two meet only on the wire.
//!
//! protoc comes from scripts/install-deps.sh --test (protobuf-compiler).
//! Without it the build goes on and that test fails, saying so.

fn main() {
    let proto = "../agent/proto/podresources/v1/api.proto";
    println!("cargo:rerun-if-changed={proto}");
    println!("cargo:rerun-if-env-changed=PROTOC");
    println!("cargo:rustc-check-cfg=cfg(strand_no_protoc)");
    if let Err(e) = tonic_prost_build::configure().build_client(false).compile_protos(&[proto], &["../agent/proto"]) {
        println!("cargo:warning=the kubelet pod-resources test server is not built: {e}");
        println!("cargo:rustc-cfg=strand_no_protoc");
    }
}
