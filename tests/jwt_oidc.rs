//! Interoperability with a real OpenID provider written by others: panva's `oidc-provider`
//! (npm), started on loopback. mtx-auth is configured with nothing but its discovery URL.

mod common;
#[path = "support/oidc.rs"]
mod oidc;

use oidc::{OidcOptions, OidcProvider};
use serde_json::json;

fn request(token: &str, action: &str, path: &str) -> serde_json::Value {
    json!({"ip":"127.0.0.1","user":"","password":token,"token":token,"action":action,"path":path,"protocol":"rtsp","id":null,"query":""})
}

#[actix_web::test]
async fn oidc_provider_access_tokens_are_accepted_through_discovery() {
    for options in [
        OidcOptions::default(),
        OidcOptions {
            es256: true,
            ..Default::default()
        },
    ] {
        let provider = OidcProvider::start_with(options.clone());
        let app = common::spawn(&format!(
            "[jwt]\ndiscovery_url = \"{}\"\naudience = \"{}\"\n",
            provider.discovery_url(),
            oidc::RESOURCE
        ));
        app.wait_ready().await;
        let token = provider.client_credentials_token().await;

        // The provider's claim: read "cam", publish "~^live/". The identity is `sub`, which for
        // a client_credentials token is the client id.
        let (s, b) = app.auth(&request(&token, "read", "cam")).await;
        assert_eq!(
            s,
            200,
            "{options:?}: {b}\nprovider output:\n{}",
            provider.output()
        );
        assert_eq!(b["user"], oidc::CLIENT_ID);
        assert_eq!(app.status(&request(&token, "publish", "live/x")).await, 200);
        assert_eq!(app.status(&request(&token, "read", "other")).await, 401);
        // The same token in an HLS query string.
        let hls = json!({"ip":"127.0.0.1","action":"read","path":"cam","protocol":"hls","query":format!("jwt={token}")});
        assert_eq!(app.status(&hls).await, 200);

        // Tampering with any part breaks it.
        let parts: Vec<&str> = token.split('.').collect();
        let mut sig = parts[2].to_owned().into_bytes();
        sig[5] = if sig[5] == b'A' { b'B' } else { b'A' };
        let forged_sig = format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            String::from_utf8(sig).unwrap()
        );
        let claims = format!(
            "{}.{}.{}",
            parts[0],
            &parts[1][..parts[1].len() - 2],
            parts[2]
        );
        for bad in [forged_sig, claims] {
            let (s, b) = app.auth(&request(&bad, "read", "cam")).await;
            assert_eq!(s, 401, "{b}");
        }
    }
}
