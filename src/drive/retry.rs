//! Retries for Drive and the token endpoint: exponential backoff with jitter, `Retry-After`
//! honoured, and a bounded total time (DRIVE_RETRY_TIMEOUT) after which the run gives up and
//! the backup stays pending.

use std::future::Future;
use std::time::{Duration, Instant};

use super::DriveError;

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// First delay; doubled per attempt.
    pub base: Duration,
    /// No single wait is longer than this (unless the server's Retry-After says so).
    pub max_delay: Duration,
    /// Total time one operation may spend retrying.
    pub deadline: Duration,
}

impl RetryPolicy {
    pub fn new(deadline: Duration) -> Self {
        RetryPolicy {
            base: Duration::from_millis(500),
            max_delay: Duration::from_secs(32),
            deadline,
        }
    }
}

/// Pure: the wait before retry number `attempt` (0-based). `jitter` in [0, 1) spreads clients
/// out (full jitter on the upper half, as Google's backoff guidance suggests); a server's
/// Retry-After wins when it is longer.
pub fn backoff(
    policy: &RetryPolicy,
    attempt: u32,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Duration {
    let exp = policy.base.saturating_mul(1u32 << attempt.min(16));
    let capped = exp.min(policy.max_delay);
    let jittered = capped.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0));
    match retry_after {
        Some(ra) if ra > jittered => ra,
        _ => jittered,
    }
}

/// A cheap jitter source: the sub-second clock. Randomness quality does not matter here.
pub fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos % 1_000_000) as f64 / 1_000_000.0
}

/// Parse `Retry-After` (seconds; the HTTP-date form is rare from Google and treated as absent).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// Whether a response status is worth retrying. 403 only for Google's rate-limit reasons.
pub fn retryable_status(status: u16, body: &[u8]) -> bool {
    match status {
        429 | 500..=599 => true,
        403 => {
            let text = String::from_utf8_lossy(body);
            text.contains("rateLimitExceeded") || text.contains("userRateLimitExceeded")
        }
        _ => false,
    }
}

/// A whole response: status, headers and body, read inside the retry loop (a body cut off
/// mid-way is a transport error like any other, and is retried).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: bytes::Bytes,
}

impl Reply {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Send a request, retrying transport errors and retryable statuses until the policy's
/// deadline. Returns the last reply (success, or an error that retrying cannot fix).
pub async fn with_retries<F, Fut>(
    policy: &RetryPolicy,
    what: &str,
    mut send: F,
) -> Result<Reply, DriveError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = reqwest::Result<reqwest::Response>>,
{
    let started = Instant::now();
    let mut attempt = 0;
    loop {
        let outcome = match send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let headers = resp.headers().clone();
                match resp.bytes().await {
                    Ok(body) => Ok(Reply {
                        status,
                        headers,
                        body,
                    }),
                    Err(e) => Err(transport_reason(&e)),
                }
            }
            Err(e) => Err(transport_reason(&e)),
        };
        let (wait_hint, reason) = match outcome {
            Ok(reply) if retryable_status(reply.status, &reply.body) => (
                retry_after(&reply.headers),
                format!("HTTP {}", reply.status),
            ),
            Ok(reply) => return Ok(reply),
            Err(reason) => (None, reason),
        };
        let wait = backoff(policy, attempt, wait_hint, jitter());
        if started.elapsed() + wait > policy.deadline {
            return Err(DriveError::GaveUp(format!(
                "{what} kept failing for {} s ({reason})",
                started.elapsed().as_secs()
            )));
        }
        tracing::info!(what, attempt, reason = %reason, wait_ms = wait.as_millis() as u64, "retrying");
        tokio::time::sleep(wait).await;
        attempt += 1;
    }
}

pub fn transport_reason(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "could not connect".into()
    } else {
        // Never print the URL: a resumable session URI is a bearer credential of its own.
        let mut text = e.to_string();
        if let Some(url) = e.url() {
            text = text.replace(url.as_str(), "<url>");
        }
        format!("connection error: {text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_is_capped_and_honours_retry_after() {
        let p = RetryPolicy {
            base: Duration::from_secs(1),
            max_delay: Duration::from_secs(8),
            deadline: Duration::from_secs(60),
        };
        let cases = [
            (0, None, 0.0, 500),
            (0, None, 0.999_999, 1000),
            (1, None, 0.0, 1000),
            (2, None, 1.0, 4000),
            (3, None, 1.0, 8000),
            (9, None, 1.0, 8000),
            (0, Some(5), 0.0, 5000),
            (3, Some(2), 1.0, 8000),
        ];
        for (attempt, ra, jitter, want_ms) in cases {
            let got = backoff(&p, attempt, ra.map(Duration::from_secs), jitter);
            assert!(
                (got.as_millis() as i64 - want_ms).abs() <= 1,
                "attempt {attempt} ra {ra:?} jitter {jitter}: {got:?}"
            );
        }
    }

    #[test]
    fn only_transient_statuses_are_retried() {
        assert!(retryable_status(503, b""));
        assert!(retryable_status(429, b""));
        assert!(retryable_status(
            403,
            br#"{"error":{"errors":[{"reason":"userRateLimitExceeded"}]}}"#
        ));
        assert!(!retryable_status(
            403,
            br#"{"error":{"errors":[{"reason":"insufficientPermissions"}]}}"#
        ));
        assert!(!retryable_status(404, b""));
        assert!(!retryable_status(400, b""));
    }
}
