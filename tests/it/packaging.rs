//! The files users run without us: docker-compose.yml, its config, the
//! Dockerfile and the manifests. No Docker engine runs here, so they are
//! checked by parsing them and tying every reference to something real.

use clap::Parser;
use logs_distributor::cli::{Cli, Command};
use logs_distributor::config::Settings;
use serde_json::Value;
use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn yaml(path: &str) -> Value {
    let text = std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{path} is not YAML: {e}"))
}

fn command_of(service: &Value) -> Vec<String> {
    service["command"]
        .as_array()
        .expect("command is a list")
        .iter()
        .map(|a| a.as_str().expect("string arguments").to_string())
        .collect()
}

#[test]
fn compose_runs_the_distributor_and_four_analyzers_it_can_reach() {
    let compose = yaml("docker-compose.yml");
    let services = compose["services"].as_object().expect("services");
    assert_eq!(services.len(), 5);
    let distributor = &services["distributor"];
    assert_eq!(distributor["build"], ".");
    assert!(distributor["ports"].to_string().contains("8080:8080"));

    // The distributor's command parses, and its config is the one mounted.
    let mut args = vec!["logs-distributor".to_string()];
    args.extend(command_of(distributor));
    let cli = Cli::try_parse_from(&args).expect("the distributor's command parses");
    let Some(Command::Serve(serve)) = cli.command else {
        panic!("the distributor runs `serve`");
    };
    let mounted = serve.config.expect("a --config file");
    let volumes = distributor["volumes"].to_string();
    assert!(volumes.contains(&format!("./deploy/compose/config.yaml:{}", mounted.display())));

    // Every analyzer the config names is a compose service running `analyzer` on that port.
    let settings =
        Settings::from_file(&root().join("deploy/compose/config.yaml")).expect("the config is valid");
    let weights: Vec<i64> = settings.analyzers.iter().map(|a| a.weight).collect();
    assert_eq!(weights, [40, 30, 20, 10]);
    for analyzer in &settings.analyzers {
        let endpoint = analyzer
            .endpoint
            .as_deref()
            .expect("compose analyzers are real services");
        let host_port = endpoint.trim_start_matches("http://").trim_end_matches('/');
        let (host, port) = host_port.split_once(':').expect("host:port");
        let service = &services[host];
        let mut args = vec!["logs-distributor".to_string()];
        args.extend(command_of(service));
        let cli = Cli::try_parse_from(&args).unwrap_or_else(|e| panic!("{host}'s command: {e}"));
        let Some(Command::Analyzer(analyzer_args)) = cli.command else {
            panic!("{host} runs the reference analyzer");
        };
        assert_eq!(
            analyzer_args.listen,
            format!("0.0.0.0:{port}"),
            "{host} listens where the config sends"
        );
    }
}

#[test]
fn the_dockerfile_copies_what_the_build_needs() {
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    for line in dockerfile
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let sources: Vec<&str> = line.split_whitespace().skip(1).collect();
        for source in &sources[..sources.len() - 1] {
            assert!(
                root().join(source).exists(),
                "Dockerfile copies {source}, which does not exist"
            );
        }
    }
    // Everything compiled in (include_str!/include_bytes!) must be copied in.
    for needed in ["src", "ui", "Cargo.toml", "Cargo.lock"] {
        assert!(
            dockerfile.contains(&format!("COPY {needed}")) || dockerfile.contains(&format!(" {needed} ")),
            "{needed}"
        );
    }
    assert!(dockerfile.contains("USER 10001"), "runs as non-root");
    assert!(
        dockerfile.contains("/etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt"),
        "the system's CA certificates, for HTTPS to analyzers"
    );
    assert!(dockerfile.contains("--locked"));
}

#[test]
fn the_manifests_are_valid_kubernetes_objects() {
    for file in [
        "manifests/rbac.yaml",
        "manifests/analyzers.yaml",
        "crds/analyzer.yaml",
    ] {
        let text = std::fs::read_to_string(root().join(file)).unwrap();
        let documents: Vec<Value> =
            serde_saphyr::from_str_multiple(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(!documents.is_empty(), "{file}");
        for doc in documents {
            assert!(
                doc["apiVersion"].is_string() && doc["kind"].is_string(),
                "{file}: {doc}"
            );
            assert!(doc["metadata"]["name"].is_string(), "{file}: {doc}");
        }
    }
}
