//! Access tokens for Drive, from the credentials file's refresh token (authorized user) or a
//! signed JWT (service account), always at the file's `token_uri`.
//!
//! Written with reqwest rather than yup-oauth2's authenticators on purpose: yup-oauth2 12's
//! `AuthorizedUserAuthenticator` hard-codes Google's token URL, and any refresh failure falls
//! back to its interactive flow, which waits forever. An agent must fail instead, with an
//! error that says to run `snapkeep auth`.

use std::time::{Duration, Instant};

use base64::Engine;
use serde::Deserialize;
use tokio::sync::Mutex;

use super::credentials::Credentials;
use super::retry::{self, RetryPolicy};
use super::DriveError;
use crate::config::Secret;

/// The only scope snapkeep asks for: files it created, nothing else in the user's Drive.
pub const DRIVE_FILE_SCOPE: &str = "https://www.googleapis.com/auth/drive.file";

pub struct TokenSource {
    credentials: Credentials,
    http: reqwest::Client,
    policy: RetryPolicy,
    cached: Mutex<Option<(Secret, Instant)>>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct TokenError {
    error: String,
}

impl TokenSource {
    pub fn new(credentials: Credentials, http: reqwest::Client, policy: RetryPolicy) -> Self {
        TokenSource {
            credentials,
            http,
            policy,
            cached: Mutex::new(None),
        }
    }

    /// A valid access token: the cached one while it has a minute left, else a fresh one.
    pub async fn token(&self) -> Result<Secret, DriveError> {
        let mut cached = self.cached.lock().await;
        if let Some((token, valid_until)) = cached.as_ref() {
            if Instant::now() + Duration::from_secs(60) < *valid_until {
                return Ok(token.clone());
            }
        }
        let (token, lifetime) = self.fetch().await?;
        *cached = Some((token.clone(), Instant::now() + lifetime));
        Ok(token)
    }

    /// Forget the cached token (Drive answered 401: it expired or was revoked early).
    pub async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }

    async fn fetch(&self) -> Result<(Secret, Duration), DriveError> {
        let form: Vec<(&str, String)> = match &self.credentials {
            Credentials::AuthorizedUser {
                client_id,
                client_secret,
                refresh_token,
                ..
            } => vec![
                ("grant_type", "refresh_token".into()),
                ("client_id", client_id.clone()),
                ("client_secret", client_secret.expose().to_string()),
                ("refresh_token", refresh_token.expose().to_string()),
            ],
            Credentials::ServiceAccount {
                client_email,
                private_key,
                token_uri,
            } => vec![
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:jwt-bearer".into(),
                ),
                (
                    "assertion",
                    signed_jwt(client_email, private_key, token_uri)?,
                ),
            ],
        };
        let uri = self.credentials.token_uri().to_string();
        let response = retry::with_retries(&self.policy, "token request", || {
            let form = form.clone();
            let uri = uri.clone();
            async move { self.http.post(&uri).form(&form).send().await }
        })
        .await?;
        let (status, body) = (response.status, response.body);
        if response_ok(status) {
            let t: TokenResponse = serde_json::from_slice(&body)
                .map_err(|e| DriveError::Protocol(format!("token response is not JSON: {e}")))?;
            let lifetime = Duration::from_secs(t.expires_in.unwrap_or(3600));
            return Ok((Secret::new(t.access_token), lifetime));
        }
        // 400/401 with invalid_grant & co: the refresh token was revoked or expired, or the
        // client is wrong. Nothing will fix that but a new consent.
        let code = serde_json::from_slice::<TokenError>(&body)
            .map(|e| e.error)
            .unwrap_or_default();
        if matches!(status, 400 | 401 | 403)
            && matches!(
                code.as_str(),
                "invalid_grant" | "invalid_client" | "unauthorized_client" | "invalid_request" | ""
            )
        {
            return Err(DriveError::CredentialsRejected);
        }
        Err(DriveError::Status {
            status,
            message: format!("token endpoint: {code}"),
        })
    }
}

fn response_ok(status: u16) -> bool {
    (200..300).contains(&status)
}

/// A JWT for the service-account grant (RFC 7523), signed RS256 with the key's PKCS#8 key.
fn signed_jwt(
    client_email: &str,
    private_key: &Secret,
    token_uri: &str,
) -> Result<String, DriveError> {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let now = chrono::Utc::now().timestamp();
    let header = b64.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    let claims = serde_json::json!({
        "iss": client_email,
        "scope": DRIVE_FILE_SCOPE,
        "aud": token_uri,
        "iat": now,
        "exp": now + 3600,
    });
    let claims = b64.encode(claims.to_string());
    let signing_input = format!("{header}.{claims}");
    let der = pem_body(private_key.expose()).ok_or_else(|| {
        DriveError::Credentials("the service-account private_key is not a PEM key".into())
    })?;
    let key = ring::signature::RsaKeyPair::from_pkcs8(&der).map_err(|e| {
        DriveError::Credentials(format!("the service-account private_key is unusable: {e}"))
    })?;
    let mut signature = vec![0; key.public().modulus_len()];
    key.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        signing_input.as_bytes(),
        &mut signature,
    )
    .map_err(|_| DriveError::Credentials("signing the service-account JWT failed".into()))?;
    Ok(format!("{signing_input}.{}", b64.encode(signature)))
}

/// The DER bytes inside a `-----BEGIN PRIVATE KEY-----` block.
fn pem_body(pem: &str) -> Option<Vec<u8>> {
    let body: String = pem
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("-----") && !l.is_empty())
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}
