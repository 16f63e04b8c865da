//! `snapkeep auth`: Google's installed-app consent flow (yup-oauth2, loopback redirect — the
//! out-of-band flow is retired), scope `drive.file` only. It prints the URL instead of opening
//! a browser, so it works over SSH, waits with a timeout, and writes an authorized-user file
//! (google-auth's `Credentials.to_json()` shape) with mode 0600.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use yup_oauth2::authenticator_delegate::InstalledFlowDelegate;
use yup_oauth2::storage::{TokenInfo, TokenStorage, TokenStorageError};
use yup_oauth2::{InstalledFlowAuthenticator, InstalledFlowReturnMethod};

use crate::drive::token::DRIVE_FILE_SCOPE;
use crate::error::{ConfigError, Error, Result};

/// How long `auth` waits for the browser to come back.
pub const CONSENT_TIMEOUT: Duration = Duration::from_secs(300);

/// Prints the consent URL with a line on SSH port forwarding, and never reads stdin.
struct PrintUrl;

impl InstalledFlowDelegate for PrintUrl {
    fn present_user_url<'a>(
        &'a self,
        url: &'a str,
        _need_code: bool,
    ) -> Pin<Box<dyn std::future::Future<Output = Result<String, String>> + Send + 'a>> {
        Box::pin(async move {
            let port = url
                .split("redirect_uri=")
                .nth(1)
                .and_then(|r| r.split("%3A").nth(2).or_else(|| r.split(':').nth(2)))
                .map(|p| {
                    p.chars()
                        .take_while(|c| c.is_ascii_digit())
                        .collect::<String>()
                })
                .unwrap_or_default();
            println!("Open this URL in a browser and allow access to the files snapkeep creates in your Drive:\n\n{url}\n");
            if !port.is_empty() {
                println!(
                    "On a remote machine, forward the redirect port first: ssh -L {port}:127.0.0.1:{port} THIS-HOST"
                );
            }
            println!(
                "Waiting up to {} s for the browser…",
                CONSENT_TIMEOUT.as_secs()
            );
            use std::io::Write;
            let _ = std::io::stdout().flush();
            Ok(String::new())
        })
    }
}

/// Keeps the token the flow obtains in memory, so that its refresh token can be written out.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Option<TokenInfo>>>);

#[async_trait::async_trait]
impl TokenStorage for Capture {
    async fn set(
        &self,
        _scopes: &[&str],
        token: TokenInfo,
    ) -> std::result::Result<(), TokenStorageError> {
        *self.0.lock().expect("not poisoned") = Some(token);
        Ok(())
    }
    async fn get(&self, _scopes: &[&str]) -> Option<TokenInfo> {
        // Always run the flow: `auth` exists to get a fresh consent.
        None
    }
}

/// Run the consent flow and write the credentials file; returns its path.
pub fn run(client_secret_file: Option<&Path>, credentials_out: Option<&Path>) -> Result<PathBuf> {
    let secret_path = client_secret_file.ok_or_else(|| {
        ConfigError(
            "GOOGLE_CLIENT_SECRET_FILE is not set: download the OAuth client (Desktop app) JSON from Google Cloud Console and point it there"
                .into(),
        )
    })?;
    let out = credentials_out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("google_user_credentials.json"));
    crate::http::init_tls();
    crate::http::block_on(async {
        let secret = yup_oauth2::read_application_secret(secret_path)
            .await
            .map_err(|e| {
                ConfigError(format!(
                    "GOOGLE_CLIENT_SECRET_FILE={}: {e}",
                    secret_path.display()
                ))
            })?;
        let capture = Capture::default();
        let auth = InstalledFlowAuthenticator::builder(
            secret.clone(),
            InstalledFlowReturnMethod::HTTPRedirect,
        )
        .flow_delegate(Box::new(PrintUrl))
        .with_storage(Box::new(capture.clone()))
        .build()
        .await
        .map_err(|e| Error::Other(format!("cannot start the consent flow: {e}")))?;
        match tokio::time::timeout(CONSENT_TIMEOUT, auth.token(&[DRIVE_FILE_SCOPE])).await {
            Err(_) => {
                return Err(Error::Other(format!(
                    "no answer from the browser within {} s; run `snapkeep auth` again",
                    CONSENT_TIMEOUT.as_secs()
                )))
            }
            Ok(Err(e)) => return Err(Error::Other(format!("consent failed: {e}"))),
            Ok(Ok(_)) => {}
        }
        let refresh_token = capture
            .0
            .lock()
            .expect("not poisoned")
            .as_ref()
            .and_then(|t| t.refresh_token.clone())
            .ok_or_else(|| Error::Other("Google returned no refresh token; remove snapkeep's access at myaccount.google.com/permissions and run `snapkeep auth` again".into()))?;
        let json = serde_json::json!({
            "type": "authorized_user",
            "client_id": secret.client_id,
            "client_secret": secret.client_secret,
            "refresh_token": refresh_token,
            "token_uri": secret.token_uri,
            "scopes": [DRIVE_FILE_SCOPE],
        });
        let bytes = serde_json::to_vec_pretty(&json).expect("serializes");
        crate::fsutil::write_atomic(&out, &bytes).map_err(|e| Error::Io {
            context: format!("cannot write {}", out.display()),
            source: e,
        })?;
        Ok(out)
    })
}
