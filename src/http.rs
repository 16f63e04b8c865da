//! The one way snapkeep makes HTTP clients and runs async network code from its synchronous
//! job: a rustls client with ring as the only crypto provider (two providers compiled in make
//! rustls panic), timeouts on every request, and a private runtime for `block_on`.

use std::future::Future;
use std::sync::Once;
use std::time::Duration;

static PROVIDER: Once = Once::new();

/// Install ring as rustls's process-wide provider (idempotent).
pub fn init_tls() {
    PROVIDER.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A client whose every request gives up after `timeout` (connect: at most 10 s).
pub fn client(timeout: Duration) -> reqwest::Client {
    init_tls();
    reqwest::Client::builder()
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .timeout(timeout)
        .user_agent(concat!("snapkeep/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("a reqwest client with the ring provider builds")
}

/// A client for downloads of any size: no total deadline (a large file may take long), but
/// connecting and every read must make progress within a minute.
pub fn streaming_client() -> reqwest::Client {
    init_tls();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(60))
        .user_agent(concat!("snapkeep/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("a reqwest client with the ring provider builds")
}

/// Run a future to completion on a private current-thread runtime. Call from synchronous
/// code only (the CLI, or the daemon's blocking worker thread), never from async code.
pub fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime builds")
        .block_on(future)
}
