//! The credentials file named by GOOGLE_APPLICATION_CREDENTIALS, in either of two shapes:
//!
//! * an authorized-user file, as Python google-auth's `Credentials.to_json()` writes it
//!   (`client_id`, `client_secret`, `refresh_token`, `token_uri`, and perhaps `token`, `expiry`,
//!   `scopes`, `type: "authorized_user"` — or no `type` at all), and as `snapkeep auth` writes it;
//! * a service-account key (`type: "service_account"`, `client_email`, `private_key`,
//!   `token_uri`).
//!
//! The token endpoint is always the file's `token_uri` (SPEC.md: never hard-coded); Google's
//! own is only the fallback for an authorized-user file that has none.

use std::path::Path;

use serde::Deserialize;

use crate::config::Secret;

pub const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

#[derive(Debug, Clone)]
pub enum Credentials {
    AuthorizedUser {
        client_id: String,
        client_secret: Secret,
        refresh_token: Secret,
        token_uri: String,
    },
    ServiceAccount {
        client_email: String,
        private_key: Secret,
        token_uri: String,
    },
}

#[derive(Deserialize)]
struct Raw {
    #[serde(rename = "type")]
    kind: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    refresh_token: Option<String>,
    token_uri: Option<String>,
    client_email: Option<String>,
    private_key: Option<String>,
}

impl Credentials {
    /// Read and check the file; the error names the file and what is wrong, never a secret.
    pub fn load(path: &Path) -> Result<Credentials, String> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "GOOGLE_APPLICATION_CREDENTIALS={}: cannot read: {e}",
                path.display()
            )
        })?;
        Self::parse(&text)
            .map_err(|e| format!("GOOGLE_APPLICATION_CREDENTIALS={}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Credentials, String> {
        let raw: Raw =
            serde_json::from_str(text).map_err(|e| format!("not a credentials JSON file ({e})"))?;
        let need = |v: Option<String>, field: &str| {
            v.filter(|s| !s.is_empty())
                .ok_or_else(|| format!("the field {field:?} is missing"))
        };
        match raw.kind.as_deref() {
            Some("service_account") => Ok(Credentials::ServiceAccount {
                client_email: need(raw.client_email, "client_email")?,
                private_key: Secret::new(need(raw.private_key, "private_key")?),
                token_uri: need(raw.token_uri, "token_uri")?,
            }),
            None | Some("authorized_user") => Ok(Credentials::AuthorizedUser {
                client_id: need(raw.client_id, "client_id")?,
                client_secret: Secret::new(need(raw.client_secret, "client_secret")?),
                refresh_token: Secret::new(need(raw.refresh_token, "refresh_token")?),
                token_uri: raw
                    .token_uri
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| GOOGLE_TOKEN_URI.to_string()),
            }),
            Some(other) => Err(format!(
                "credentials of type {other:?} are not supported: use an authorized-user file (snapkeep auth) or a service-account key"
            )),
        }
    }

    pub fn token_uri(&self) -> &str {
        match self {
            Credentials::AuthorizedUser { token_uri, .. }
            | Credentials::ServiceAccount { token_uri, .. } => token_uri,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_google_auth_to_json_works_unchanged() {
        // The shape google.oauth2.credentials.Credentials.to_json() writes: no "type" field.
        let text = r#"{"token": "ya29.old", "refresh_token": "1//rt", "token_uri": "http://127.0.0.1:9/token",
            "client_id": "cid.apps.googleusercontent.com", "client_secret": "sec",
            "scopes": ["https://www.googleapis.com/auth/drive.file"], "universe_domain": "googleapis.com",
            "account": "", "expiry": "2026-01-01T00:00:00.000000Z"}"#;
        match Credentials::parse(text).unwrap() {
            Credentials::AuthorizedUser {
                client_id,
                refresh_token,
                token_uri,
                ..
            } => {
                assert_eq!(client_id, "cid.apps.googleusercontent.com");
                assert_eq!(refresh_token.expose(), "1//rt");
                assert_eq!(token_uri, "http://127.0.0.1:9/token");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn service_account_keys_keep_their_token_uri() {
        let text = r#"{"type": "service_account", "client_email": "sa@p.iam.gserviceaccount.com",
            "private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "token_uri": "http://127.0.0.1:9/token"}"#;
        let c = Credentials::parse(text).unwrap();
        assert!(matches!(c, Credentials::ServiceAccount { .. }));
        assert_eq!(c.token_uri(), "http://127.0.0.1:9/token");
    }

    #[test]
    fn bad_files_name_the_problem_without_secrets() {
        for (text, needle) in [
            ("{", "not a credentials JSON"),
            (
                r#"{"client_id": "x", "client_secret": "topsecret"}"#,
                "refresh_token",
            ),
            (r#"{"type": "external_account"}"#, "not supported"),
        ] {
            let e = Credentials::parse(text).unwrap_err();
            assert!(e.contains(needle), "{e}");
            assert!(!e.contains("topsecret"));
        }
    }
}
