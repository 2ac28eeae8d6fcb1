//! The deployment files agree with each other and with mtx-auth: MediaMTX is pointed at the
//! address mtx-auth listens on, with every decision sent to it, and the containers run what the
//! binary offers. (`scripts/check-deploy.sh` validates their syntax and schemas; this checks
//! what they say.)

use std::path::Path;

use mtx_auth::config::Config;
use serde_json::Value;

use crate::support::{self, bin};

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel))
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn yaml(rel: &str) -> Value {
    serde_saphyr::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn config(rel: &str) -> Config {
    // deploy/kubernetes/mtx-auth.toml reads its OIDC secret from the environment, as in the pod.
    support::test_env();
    Config::parse(&read(rel), rel).unwrap_or_else(|e| panic!("{e}"))
}

/// MediaMTX's three lines: every decision goes to `auth_url`.
fn assert_points_at(mediamtx: &Value, auth_url: &str, file: &str) {
    assert_eq!(mediamtx["authMethod"], "http", "{file}");
    assert_eq!(mediamtx["authHTTPAddress"], auth_url, "{file}");
    assert_eq!(mediamtx["authHTTPExclude"], Value::Array(vec![]), "{file}");
}

#[test]
fn compose_points_mediamtx_at_the_mtx_auth_service() {
    let compose = yaml("deploy/docker-compose.yml");
    let services = &compose["services"];
    let (auth, media) = (&services["mtx-auth"], &services["mediamtx"]);
    assert_eq!(auth["build"]["dockerfile"], "deploy/Dockerfile");
    assert!(
        media["image"]
            .as_str()
            .unwrap()
            .starts_with("bluenviron/mediamtx:"),
        "MediaMTX's official image"
    );
    // Only MediaMTX may reach /auth: the `ip` the failure limits count comes from the body.
    // The one published port is the viewer portal's, on the host's loopback (for the proxy).
    assert_eq!(
        auth["ports"],
        serde_json::json!(["127.0.0.1:9080:9080"]),
        "only the portal is published, on loopback"
    );
    assert_eq!(
        media["depends_on"]["mtx-auth"]["condition"],
        "service_healthy"
    );
    let mounts = |svc: &Value| -> Vec<String> {
        svc["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    assert!(mounts(media).contains(&"./mediamtx.yml:/mediamtx.yml:ro".to_owned()));
    assert!(mounts(auth).contains(&"./mtx-auth.toml:/etc/mtx-auth/mtx-auth.toml:ro".to_owned()));

    // The service name and the port the image listens on (Dockerfile CMD) make the address.
    let dockerfile = read("deploy/Dockerfile");
    assert!(dockerfile.contains(r#"CMD ["serve", "--listen", "0.0.0.0:9000"]"#));
    assert!(dockerfile.contains("ENV MTX_AUTH_CONFIG=/etc/mtx-auth/mtx-auth.toml"));
    assert_points_at(
        &yaml("deploy/mediamtx.yml"),
        "http://mtx-auth:9000/auth",
        "deploy/mediamtx.yml",
    );
    config("deploy/mtx-auth.toml");
}

#[test]
fn dockerfile_is_multi_stage_non_root_with_a_health_check_the_binary_has() {
    let dockerfile = read("deploy/Dockerfile");
    assert_eq!(
        dockerfile.matches("\nFROM ").count(),
        2,
        "builder and runtime"
    );
    assert!(dockerfile.contains("USER 65532:65532"));
    assert!(dockerfile.contains(r#"CMD ["/usr/local/bin/mtx-auth", "healthcheck"]"#));
    // The shipped config at /etc/mtx-auth/mtx-auth.toml, in folders the runtime user may write
    // (the config's relative store, sqlite://mtx-auth.db, lands beside it; /var/lib/mtx-auth
    // takes a volume).
    assert!(dockerfile.contains("COPY config/mtx-auth.toml /image/etc/mtx-auth/mtx-auth.toml"));
    assert!(dockerfile.contains("RUN mkdir -p /image/var/lib/mtx-auth"));
    assert!(dockerfile.contains("COPY --from=builder --chown=65532:65532 /image/ /"));
    // The subcommand exists (and so does its default URL's port, the image's).
    let out = bin().args(["healthcheck", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && help.contains("http://127.0.0.1:9000/healthz"),
        "{help}"
    );
}

#[test]
fn kubernetes_sidecar_shares_the_pod_address_and_probes_both_endpoints() {
    // One network namespace: MediaMTX asks 127.0.0.1 at the port mtx-auth listens on.
    let cfg = config("deploy/kubernetes/mtx-auth.toml");
    let url = format!("http://{}/auth", cfg.server.listen);
    assert_points_at(
        &yaml("deploy/kubernetes/mediamtx.yml"),
        &url,
        "deploy/kubernetes/mediamtx.yml",
    );

    let deployment = yaml("deploy/kubernetes/deployment.yaml");
    let pod = &deployment["spec"]["template"]["spec"];
    let sidecar = pod["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "mtx-auth")
        .expect("mtx-auth sidecar");
    assert_eq!(sidecar["restartPolicy"], "Always", "a native sidecar");
    let probe = |kind: &str| sidecar[kind]["exec"]["command"].as_array().unwrap().clone();
    let base = format!("http://{}", cfg.server.listen);
    for (kind, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let cmd = probe(kind);
        assert_eq!(cmd[1], "healthcheck", "{kind}");
        assert_eq!(cmd[3], format!("{base}{path}").as_str(), "{kind}");
    }
    // The secret the config names comes from the Secret.
    let env = sidecar["env"].as_array().unwrap();
    let secret_env = env
        .iter()
        .find(|e| e["name"] == "MTX_AUTH_OIDC_CLIENT_SECRET")
        .expect("client secret variable");
    assert_eq!(
        secret_env["valueFrom"]["secretKeyRef"]["name"],
        yaml("deploy/kubernetes/secret.yaml")["metadata"]["name"]
    );
    // The config comes from the ConfigMap kustomize builds from the checked file, mounted as a
    // directory so that edits reach the file and the file-poll reload sees them.
    let kustomization = yaml("deploy/kubernetes/kustomization.yaml");
    let generated: Vec<&str> = kustomization["configMapGenerator"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    let mount = sidecar["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == "/etc/mtx-auth")
        .expect("config mount");
    assert!(
        mount.get("subPath").is_none(),
        "a subPath mount never updates"
    );
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("config volume");
    assert!(generated.contains(&volume["configMap"]["name"].as_str().unwrap()));
}

#[test]
fn systemd_unit_reloads_with_sighup_as_a_dedicated_user() {
    let unit = read("deploy/mtx-auth.service");
    for line in [
        "ExecReload=/bin/kill -HUP $MAINPID",
        "User=mtx-auth",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ExecStart=/usr/local/bin/mtx-auth serve --config /etc/mtx-auth/mtx-auth.toml",
    ] {
        assert!(unit.lines().any(|l| l == line), "missing: {line}");
    }
}

/// Each connection holds a file descriptor until mtx-auth closes it, so both deployments that
/// can raise the open-file limit do, to the same figure (issue 15); Kubernetes cannot, which
/// the README says.
#[test]
fn open_file_limit_is_raised_alike_where_it_can_be() {
    let unit = read("deploy/mtx-auth.service");
    let limit: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.strip_prefix("LimitNOFILE="))
        .collect();
    assert_eq!(limit, ["65536"], "one LimitNOFILE= in the unit");

    let compose = yaml("deploy/docker-compose.yml");
    let nofile = &compose["services"]["mtx-auth"]["ulimits"]["nofile"];
    assert_eq!(nofile["soft"].as_u64(), Some(65536), "{nofile}");
    assert_eq!(nofile["hard"].as_u64(), Some(65536), "{nofile}");

    let readme = read("deploy/README.md");
    assert!(
        readme.contains("LimitNOFILE=65536")
            && readme.contains("a Pod spec has no per-container file limit"),
        "deploy/README.md explains the limit"
    );
}
