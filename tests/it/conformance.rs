//! MediaMTX's own test rows (shared/conformance/internal-users.json, copied into tests/data),
//! replayed through HTTP against a running server.

use serde_json::Value;

use crate::support;

#[actix_web::test]
async fn mediamtx_internal_user_cases() {
    let data: Value =
        serde_json::from_str(include_str!("../data/internal-users.json")).expect("valid JSON");
    let mut failures = Vec::new();
    let mut count = 0;
    for suite in data["suites"].as_array().unwrap() {
        let app = support::spawn(suite["config"].as_str().unwrap());
        for case in suite["cases"].as_array().unwrap() {
            count += 1;
            let (status, body) = app.auth(&case["request"]).await;
            let want_allow = case["allow"].as_bool().unwrap();
            let allowed = (200..300).contains(&status);
            if allowed != want_allow {
                failures.push(format!(
                    "{} / {}: status {status} {body}",
                    suite["name"], case["name"]
                ));
            }
            // Whatever the outcome, the body is the contract's shape.
            let key = if allowed { "user" } else { "error" };
            assert!(body[key].is_string(), "{}: {body}", case["name"]);
        }
    }
    assert_eq!(count, 27, "every conformance case was replayed");
    assert!(failures.is_empty(), "{failures:#?}");
}
