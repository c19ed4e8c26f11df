//! Kubernetes attribution end to end: a gRPC server speaking the kubelet's
//! pod-resources API (compiled by tests/build.rs from the vendored
//! `k8s.io/kubelet/pkg/apis/podresources/v1` proto, independently of the
//! agent's client) on a Unix socket; a real agent on simulated GPUs asks it,
//! and every per-GPU series of the assigned GPU carries `pod`, `namespace`
//! and `container`, the other GPU none; when the kubelet goes away, so do
//! the labels, and the source says so.

#[cfg(strand_no_protoc)]
#[test]
fn the_kubelets_pods_label_the_gpus_they_hold() {
    panic!("protoc was missing when tests/ was built: run scripts/install-deps.sh --test (protobuf-compiler)");
}

#[cfg(not(strand_no_protoc))]
mod with_server {
    use std::process::Command;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use strand_tests::*;

    #[allow(clippy::all, dead_code)]
    mod v1 {
        tonic::include_proto!("v1");
    }
    use v1::pod_resources_lister_server::{PodResourcesLister, PodResourcesListerServer};
    use v1::*;

    /// The simulated GPUs' UUIDs (`--simulate-gpus`).
    const GPU0: &str = "GPU-5173a1d0-0000-4000-8000-000000000000";
    const GPU1: &str = "GPU-5173a1d0-0000-4000-8000-000000000001";

    struct Kubelet {
        calls: Arc<AtomicUsize>,
    }

    #[tonic::async_trait]
    impl PodResourcesLister for Kubelet {
        async fn list(
            &self,
            _: tonic::Request<ListPodResourcesRequest>,
        ) -> Result<tonic::Response<ListPodResourcesResponse>, tonic::Status> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let devices = |resource: &str, ids: &[&str]| ContainerDevices {
                resource_name: resource.into(),
                device_ids: ids.iter().map(|s| s.to_string()).collect(),
                topology: Some(TopologyInfo { nodes: vec![NumaNode { id: 0 }] }),
            };
            Ok(tonic::Response::new(ListPodResourcesResponse {
                pod_resources: vec![PodResources {
                    name: "llama-train-0".into(),
                    namespace: "ml".into(),
                    containers: vec![
                        ContainerResources {
                            name: "trainer".into(),
                            devices: vec![devices("nvidia.com/gpu", &[GPU0]), devices("rdma/hca", &["mlx5_0"])],
                            cpu_ids: vec![2, 3],
                            ..Default::default()
                        },
                        ContainerResources { name: "log-shipper".into(), ..Default::default() },
                    ],
                    ..Default::default()
                }],
            }))
        }

        async fn get_allocatable_resources(
            &self,
            _: tonic::Request<AllocatableResourcesRequest>,
        ) -> Result<tonic::Response<AllocatableResourcesResponse>, tonic::Status> {
            Err(tonic::Status::unimplemented("not used by the agent"))
        }

        async fn get(
            &self,
            _: tonic::Request<GetPodResourcesRequest>,
        ) -> Result<tonic::Response<GetPodResourcesResponse>, tonic::Status> {
            Err(tonic::Status::unimplemented("not used by the agent"))
        }
    }

    fn scrape(port: u16) -> String {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return String::new() };
        let _ = s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n");
        let mut body = String::new();
        let _ = s.read_to_string(&mut body);
        body
    }

    fn series<'a>(metrics: &'a str, name: &str, gpu_uuid: &str) -> Option<&'a str> {
        metrics.lines().find(|l| l.starts_with(&format!("{name}{{")) && l.contains(&format!("uuid=\"{gpu_uuid}\"")))
    }

    #[test]
    fn the_kubelets_pods_label_the_gpus_they_hold() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let socket = dir.path().join("pod-resources/kubelet.sock");
        std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let listener = rt.block_on(async { tokio::net::UnixListener::bind(&socket) }).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = rt.spawn(
            tonic::transport::Server::builder()
                .add_service(PodResourcesListerServer::new(Kubelet { calls: calls.clone() }))
                .serve_with_incoming_shutdown(
                    futures::stream::unfold(listener, |l| async move { Some((l.accept().await.map(|(s, _)| s), l)) }),
                    async {
                        let _ = stopped.await;
                    },
                ),
        );

        let port = free_port();
        let cfg = agent_config(
            dir.path(),
            &data,
            &format!(
                "[ebpf]\nenabled = false\n[kubernetes]\npod_resources_socket = \"{}\"\nperiod = \"300ms\"\n",
                socket.display()
            ),
        );
        let mut agent = Proc::spawn(
            Command::new(bin("strand-agent"))
                .arg("--config")
                .arg(&cfg)
                .arg("--metrics-listen")
                .arg(format!("127.0.0.1:{port}"))
                .arg("--simulate-gpus")
                .arg("2")
                .env("STRAND_LOG", "warn"),
            "strand-agent",
        );

        let labelled = eventually(Duration::from_secs(30), || {
            series(&scrape(port), "strand_gpu_reported_utilization_ratio", GPU0).is_some_and(|l| l.contains("pod="))
        });
        let m = scrape(port);
        assert!(labelled, "GPU 0 never got its pod labels:\n{m}");
        assert!(calls.load(Ordering::SeqCst) >= 1);
        let gpu0 = series(&m, "strand_gpu_reported_utilization_ratio", GPU0).unwrap();
        assert!(
            gpu0.contains(r#"pod="llama-train-0",namespace="ml",container="trainer""#),
            "the container holding the GPU, not the sidecar: {gpu0}"
        );
        for family in ["strand_gpu_power_watts", "strand_gpu_energy_joules_total", "strand_gpu_sm_active_ratio"] {
            let l = series(&m, family, GPU0).unwrap_or_else(|| panic!("{family} of GPU 0:\n{m}"));
            assert!(l.contains(r#"pod="llama-train-0""#), "{l}");
        }
        let gpu1 = series(&m, "strand_gpu_reported_utilization_ratio", GPU1).expect("GPU 1 is sampled");
        assert!(!gpu1.contains("pod="), "GPU 1 is not assigned: {gpu1}");
        let info = series(&m, "strand_gpu_info", GPU0).expect("strand_gpu_info");
        assert!(!info.contains("pod="), "the info metric carries the GPU's identity only: {info}");
        assert!(
            m.contains(r#"strand_agent_source_up{source="kubernetes",part="pod_resources"} 1"#),
            "the kubernetes source is up:\n{m}"
        );

        // The kubelet goes away (socket removed, as on a node leaving Kubernetes): no stale pod labels.
        let _ = stop.send(());
        rt.block_on(server).unwrap().unwrap();
        std::fs::remove_file(&socket).unwrap();
        // The agent may first see the server gone with the socket still there
        // (down, labels dropped), then the socket gone (off): wait for the end state.
        let unlabelled =
            |m: &str| series(m, "strand_gpu_reported_utilization_ratio", GPU0).is_some_and(|l| !l.contains("pod="));
        let off = |m: &str| !m.contains(r#"strand_agent_source_up{source="kubernetes""#);
        eventually(Duration::from_secs(20), || {
            let m = scrape(port);
            unlabelled(&m) && off(&m)
        });
        let m = scrape(port);
        assert!(unlabelled(&m), "the pod labels outlived the kubelet:\n{m}");
        assert!(off(&m), "no socket: the part is off, not down:\n{m}");

        agent.signal(SIGTERM);
        assert!(agent.wait(Duration::from_secs(30)).success());
    }
}
