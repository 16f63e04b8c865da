//! tracing to stderr: human text by default, JSON lines for journald and log shippers.
//! The level comes from RUST_LOG. Without it the agent logs at info (its log is the record of
//! what happened overnight); one-shot commands log warnings only, because their outcome is
//! already printed as a summary or a one-line error and should not be said twice.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

pub fn init(format: LogFormat, daemon: bool) {
    let default = if daemon { "warn,snapkeep=info" } else { "warn" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Json => builder.json().with_current_span(false).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
