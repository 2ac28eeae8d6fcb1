//! OIDC password login through HTTP, against a fake Keycloak-like token endpoint that signs real
//! RS256 tokens.

use std::time::Duration;

use serde_json::json;

use crate::support::idp::{FakeIdp, KeyKind, TestKey, TokenMode};
use crate::support::{self, error_of, mtx_request, spawn, temp_config, TestApp};

fn keycloak() -> FakeIdp {
    let idp = FakeIdp::start_with_signer(TestKey::generate(KeyKind::Rsa, "rsa-1"));
    idp.set_password_client("mediamtx", "s3cret-client");
    idp.add_password_user(
        "alice",
        "alice-pw",
        json!({ "mediamtx_permissions": [{ "action": "publish", "path": "alice" }, { "action": "read" }] }),
    );
    idp.add_password_user(
        "bob",
        "bob-pw",
        json!({ "realm_access": { "roles": ["viewer", "offline_access"] } }),
    );
    idp.add_password_user("nobody", "nobody-pw", json!({}));
    idp
}

async fn oidc_app(idp: &FakeIdp, extra: &str) -> TestApp {
    let app = spawn(&format!(
        r#"[oidc]
discovery_url = "{}"
client_id = "mediamtx"
client_secret = "s3cret-client"
{extra}

[[oidc.roles]]
claim = "realm_access.roles"
value = "viewer"
permissions = [{{ action = "read" }}, {{ action = "playback" }}]
"#,
        idp.discovery_url()
    ));
    app.wait_ready().await;
    app
}

#[actix_web::test]
async fn oidc_password_login_maps_the_claim_and_roles() {
    let idp = keycloak();
    let app = oidc_app(&idp, "").await;
    let alice =
        |action: &str, path: &str| mtx_request(action, path, "10.0.0.1", "alice", "alice-pw");
    let (s, b) = app.auth(&alice("publish", "alice")).await;
    assert_eq!((s, b["user"].as_str()), (200, Some("alice")));
    app.expect(&[
        (alice("read", "anything"), 200),
        (alice("publish", "bob"), 401),
        (mtx_request("read", "cam", "10.0.0.1", "bob", "bob-pw"), 200),
        (
            mtx_request("publish", "cam", "10.0.0.1", "bob", "bob-pw"),
            401,
        ),
        (
            mtx_request("read", "cam", "10.0.0.1", "alice", "wrong"),
            401,
        ),
        (mtx_request("read", "cam", "10.0.0.1", "ghost", "x"), 401),
        // Valid credentials, but the token grants nothing.
        (
            mtx_request("read", "cam", "10.0.0.1", "nobody", "nobody-pw"),
            401,
        ),
    ])
    .await;
    // Alice's two first requests differ only in action and path: one exchange.
    let alice_exchanges = idp
        .token_requests()
        .iter()
        .filter(|r| r.field("username") == Some("alice") && r.field("password") == Some("alice-pw"))
        .count();
    assert_eq!(alice_exchanges, 1);
    let last = idp.last_token_request().unwrap();
    assert_eq!(last.field("grant_type"), Some("password"));
    assert_eq!(last.field("client_id"), Some("mediamtx"));
}

#[actix_web::test]
async fn oidc_disabled_account_wrong_client_and_outage() {
    let idp = keycloak();
    idp.set_user_disabled("bob", true);
    let app = oidc_app(&idp, "timeout_secs = 1").await;
    assert_eq!(
        app.status(&mtx_request("read", "cam", "10.0.0.1", "bob", "bob-pw"))
            .await,
        401
    );
    // A wrong client secret is our configuration's fault, not the viewer's.
    idp.set_password_client("mediamtx", "another-secret");
    assert_eq!(
        error_of(
            &app,
            &mtx_request("read", "cam", "10.0.0.1", "alice", "alice-pw")
        )
        .await,
        "oidc unreachable"
    );
    idp.set_password_client("mediamtx", "s3cret-client");
    for mode in [
        TokenMode::Status(503),
        TokenMode::Html,
        TokenMode::Garbage,
        TokenMode::Slow(Duration::from_secs(3)),
    ] {
        idp.set_token_mode(mode.clone());
        actix_web::rt::time::sleep(Duration::from_millis(2100)).await;
        assert_eq!(
            error_of(
                &app,
                &mtx_request("read", "cam", "10.0.0.1", "alice", "alice-pw")
            )
            .await,
            "oidc unreachable",
            "{mode:?}"
        );
    }
    idp.set_token_mode(TokenMode::Normal);
    actix_web::rt::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        app.status(&mtx_request("read", "cam", "10.0.0.1", "alice", "alice-pw"))
            .await,
        200
    );
}

#[actix_web::test]
async fn oidc_tokens_signed_by_an_unpublished_key_are_refused() {
    let idp = keycloak();
    let app = oidc_app(&idp, "").await;
    idp.set_signing_key(TestKey::generate(KeyKind::Rsa, "rsa-rogue"));
    assert_eq!(
        error_of(
            &app,
            &mtx_request("read", "cam", "10.0.0.1", "alice", "alice-pw")
        )
        .await,
        "oidc unreachable"
    );
}

#[actix_web::test]
async fn oidc_client_secret_from_file_and_environment() {
    let idp = keycloak();
    let file = temp_config("secret", "s3cret-client\n");
    let config = |secret_line: String| {
        format!(
            "[oidc]\ndiscovery_url = \"{}\"\nclient_id = \"mediamtx\"\n{secret_line}\n",
            idp.discovery_url()
        )
    };
    let app = spawn(&config(format!(
        "client_secret_file = {:?}",
        file.display().to_string()
    )));
    app.wait_ready().await;
    assert_eq!(
        app.status(&mtx_request("read", "cam", "10.0.0.1", "alice", "alice-pw"))
            .await,
        200
    );
    support::test_env(); // MTX_AUTH_TEST_OIDC_SECRET = s3cret-client
    let app = spawn(&config(
        "client_secret_env = \"MTX_AUTH_TEST_OIDC_SECRET\"".into(),
    ));
    app.wait_ready().await;
    assert_eq!(
        app.status(&mtx_request("read", "cam", "10.0.0.1", "alice", "alice-pw"))
            .await,
        200
    );
    let _ = std::fs::remove_dir_all(file.parent().unwrap());
}
