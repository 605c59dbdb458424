//! Token handling: forged, expired and tampered access tokens; refresh
//! rotation and reuse; logout; deleted users; API token scopes; login
//! throttling; the specification's rate limit.

use axum::http::Method;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey, spki::der::pem::LineEnding};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use nxmesh_server::ApiSettings;
use serde_json::json;
use uuid::Uuid;

use crate::support::{ADMIN_EMAIL, App, Backend, PASSWORD, on_every_backend, signing_key};

on_every_backend!(
    forged_tokens_are_refused,
    refresh_rotation_and_reuse,
    deleted_users_and_api_tokens,
    login_throttling
);

fn b64(v: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

async fn forged_tokens_are_refused(app: App) {
    let me = app.get("/v1/users/me", &app.admin).await.ok(200);
    let uid: Uuid = me["id"].as_str().unwrap().parse().unwrap();
    let kid = app.state.keys.kid().to_owned();
    let now = chrono::Utc::now().timestamp();
    let claims =
        json!({"sub": uid, "iat": now, "exp": now + 600, "iss": "nxmesh", "jti": Uuid::new_v4()});
    let refused = |token: String| {
        let app = &app;
        async move {
            let r = app
                .call(Method::GET, "/v1/users/me", Some(&token), None)
                .await;
            assert_eq!(r.status.as_u16(), 401, "accepted a forged token: {token}");
        }
    };
    let sign = |alg: Algorithm, key: &EncodingKey, kid: &str, claims: &serde_json::Value| {
        let mut h = Header::new(alg);
        h.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&h, claims, key).unwrap()
    };
    let ours = EncodingKey::from_ed_pem(
        signing_key()
            .to_pkcs8_pem(LineEnding::LF)
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    // A properly signed token is accepted (so the refusals below are about
    // what was changed).
    let good = sign(Algorithm::EdDSA, &ours, &kid, &claims);
    assert_eq!(
        app.call(Method::GET, "/v1/users/me", Some(&good), None)
            .await
            .status,
        200
    );

    // alg: none.
    refused(format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT", "kid": kid})),
        b64(&claims)
    ))
    .await;
    // HS256 signed with our public key as the HMAC secret.
    let public = signing_key()
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    refused(sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(public.as_bytes()),
        &kid,
        &claims,
    ))
    .await;
    // Expired.
    let expired = json!({"sub": uid, "iat": now - 7200, "exp": now - 3600, "iss": "nxmesh", "jti": Uuid::new_v4()});
    refused(sign(Algorithm::EdDSA, &ours, &kid, &expired)).await;
    // Unknown kid.
    refused(sign(Algorithm::EdDSA, &ours, "not-our-key", &claims)).await;
    // Another Ed25519 key under our kid.
    let other = ed25519_dalek::SigningKey::from_bytes(&[1u8; 32]);
    let other =
        EncodingKey::from_ed_pem(other.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes()).unwrap();
    refused(sign(Algorithm::EdDSA, &other, &kid, &claims)).await;
    // Tampered payload: a valid signature over another payload.
    let parts: Vec<&str> = good.split('.').collect();
    let tampered = json!({"sub": Uuid::new_v4(), "iat": now, "exp": now + 600, "iss": "nxmesh", "jti": Uuid::new_v4()});
    refused(format!("{}.{}.{}", parts[0], b64(&tampered), parts[2])).await;
    // Wrong issuer.
    let foreign = json!({"sub": uid, "iat": now, "exp": now + 600, "iss": "someone-else", "jti": Uuid::new_v4()});
    refused(sign(Algorithm::EdDSA, &ours, &kid, &foreign)).await;
}

async fn refresh_rotation_and_reuse(app: App) {
    let first = app.login(ADMIN_EMAIL, PASSWORD).await;
    let r1 = first["refresh_token"].as_str().unwrap();
    assert_eq!(first["token_type"], "Bearer");
    assert!(first["expires_in"].as_u64().unwrap() > 0);
    let second = app
        .call(
            Method::POST,
            "/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": r1})),
        )
        .await
        .ok(200);
    let r2 = second["refresh_token"].as_str().unwrap();
    assert_ne!(r1, r2, "refresh tokens rotate");
    app.get("/v1/users/me", second["access_token"].as_str().unwrap())
        .await
        .ok(200);
    // Reusing r1 fails and revokes the family: r2 dies too.
    app.call(
        Method::POST,
        "/v1/auth/refresh",
        None,
        Some(json!({"refresh_token": r1})),
    )
    .await
    .err(401, "UNAUTHORIZED");
    app.call(
        Method::POST,
        "/v1/auth/refresh",
        None,
        Some(json!({"refresh_token": r2})),
    )
    .await
    .err(401, "UNAUTHORIZED");
    // Another session is unaffected; logout ends it.
    let other = app.login(ADMIN_EMAIL, PASSWORD).await;
    let r = other["refresh_token"].as_str().unwrap();
    app.call(
        Method::POST,
        "/v1/auth/logout",
        None,
        Some(json!({"refresh_token": r})),
    )
    .await
    .ok(204);
    app.call(
        Method::POST,
        "/v1/auth/refresh",
        None,
        Some(json!({"refresh_token": r})),
    )
    .await
    .err(401, "UNAUTHORIZED");
}

async fn deleted_users_and_api_tokens(app: App) {
    let (dave, dave_token) = app.user("dave@example.com").await;
    let dave_refresh = app.login("dave@example.com", PASSWORD).await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    // API tokens: shown once, scoped, revocable.
    let read = app
        .post(
            "/v1/auth/tokens",
            &dave_token,
            json!({"name": "ci", "scopes": ["read"]}),
        )
        .await
        .ok(201);
    let read_token = read["token"].as_str().unwrap().to_owned();
    assert!(read_token.starts_with("nxm_"));
    let listed = app.get("/v1/auth/tokens", &dave_token).await.ok(200);
    assert_eq!(listed[0]["name"], "ci");
    assert!(
        !listed.to_string().contains(&read_token),
        "the secret is shown only once"
    );
    app.get("/v1/organizations", &read_token).await.ok(200);
    app.post(
        "/v1/organizations",
        &read_token,
        json!({"name": "n", "slug": "n"}),
    )
    .await
    .err(403, "FORBIDDEN");
    app.post(
        "/v1/auth/tokens",
        &read_token,
        json!({"name": "x", "scopes": ["write"]}),
    )
    .await
    .err(403, "FORBIDDEN");
    let write = app
        .post(
            "/v1/auth/tokens",
            &dave_token,
            json!({"name": "deploy", "scopes": ["write"]}),
        )
        .await
        .ok(201);
    let write_token = write["token"].as_str().unwrap().to_owned();
    app.post(
        "/v1/organizations",
        &write_token,
        json!({"name": "n", "slug": "n"}),
    )
    .await
    .ok(201);
    app.post(
        "/v1/auth/tokens",
        &write_token,
        json!({"name": "x", "scopes": ["write"]}),
    )
    .await
    .err(403, "FORBIDDEN");
    app.delete(
        &format!("/v1/auth/tokens/{}", read["id"].as_str().unwrap()),
        &dave_token,
    )
    .await
    .ok(204);
    app.get("/v1/organizations", &read_token)
        .await
        .err(401, "UNAUTHORIZED");
    app.post(
        "/v1/auth/tokens",
        &dave_token,
        json!({"name": "x", "scopes": []}),
    )
    .await
    .err(422, "VALIDATION_ERROR");

    // Deleting the user stops every credential of theirs.
    app.delete(&format!("/v1/users/{dave}"), &dave_token)
        .await
        .err(403, "FORBIDDEN");
    app.delete(&format!("/v1/users/{dave}"), &app.admin)
        .await
        .ok(204);
    app.get("/v1/users/me", &dave_token)
        .await
        .err(401, "UNAUTHORIZED");
    app.get("/v1/organizations", &write_token)
        .await
        .err(401, "UNAUTHORIZED");
    app.call(
        Method::POST,
        "/v1/auth/refresh",
        None,
        Some(json!({"refresh_token": dave_refresh})),
    )
    .await
    .err(401, "UNAUTHORIZED");
    app.call(
        Method::POST,
        "/v1/auth/login",
        None,
        Some(json!({"email": "dave@example.com", "password": PASSWORD})),
    )
    .await
    .err(401, "UNAUTHORIZED");
}

async fn login_throttling(app: App) {
    for _ in 0..10 {
        app.call(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({"email": ADMIN_EMAIL, "password": "wrong password"})),
        )
        .await
        .err(401, "UNAUTHORIZED");
    }
    let r = app
        .call(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({"email": ADMIN_EMAIL, "password": PASSWORD})),
        )
        .await;
    assert!(r.headers.get("retry-after").is_some());
    r.err(429, "RATE_LIMITED");
}

/// The 1001st request of a principal within a minute is refused with the
/// specification's body, `Retry-After` and the `X-RateLimit-*` headers.
#[tokio::test]
async fn rate_limit_is_1000_per_minute() {
    let app = App::with_settings(Backend::Sqlite, ApiSettings::default())
        .await
        .unwrap();
    let (_, other) = app.user("other@example.com").await;
    let used = 1000
        - app.get("/v1/users/me", &app.admin).await.headers["x-ratelimit-remaining"]
            .to_str()
            .unwrap()
            .parse::<u32>()
            .unwrap();
    // Creating the other user spent some of the admin's budget; the probe
    // just above shows how much.
    for i in used..1000u32 {
        let r = app.get("/v1/users/me", &app.admin).await;
        assert_eq!(r.status, 200, "request {} refused", i + 1);
        assert_eq!(r.headers["x-ratelimit-remaining"], (999 - i).to_string());
    }
    let r = app.get("/v1/users/me", &app.admin).await;
    assert_eq!(r.headers["x-ratelimit-limit"], "1000");
    assert_eq!(r.headers["x-ratelimit-remaining"], "0");
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    r.err(429, "RATE_LIMITED");
    // Another principal is not affected.
    app.get("/v1/users/me", &other).await.ok(200);
}
