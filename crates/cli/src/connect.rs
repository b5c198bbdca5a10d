//! Connection flags shared by `publish` and `subscribe`, and the transport
//! they build.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use watchtower_websocket::{
    AtLeastOnce, BackpressureConfig, Credentials, ReconnectPolicy, TransportBuilder,
    WebSocketConfig, WebSocketTransport,
};

use crate::error::CliError;

/// Where and how to connect.
#[derive(Debug, Args)]
pub(crate) struct ConnectArgs {
    /// The hub (or any WebSocket server) to connect to; wss:// for TLS.
    /// Repeat for hubs sharing one stream (`hub --nats`): the first is
    /// tried first, and each failed connect attempt moves on to the next.
    #[arg(long, value_name = "URL", default_value = "ws://127.0.0.1:8080/events")]
    pub(crate) url: Vec<String>,

    /// Give up one connection attempt after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value = "5", value_parser = parse_seconds)]
    pub(crate) connect_timeout: Duration,

    /// The server does not speak the hub's control protocol: send no
    /// subscription filters (a plain server then sends every event, and
    /// they are filtered here).
    #[arg(long)]
    pub(crate) no_server_filters: bool,

    /// For wss://: also trust this CA certificate (PEM), e.g. a private or
    /// self-signed CA; repeat for several. The bundled Mozilla roots stay
    /// trusted.
    #[arg(long, value_name = "PATH")]
    pub(crate) ca_cert: Vec<PathBuf>,

    /// For wss://: present this client certificate (PEM chain) to servers
    /// that require one (mutual TLS). Needs --client-key.
    #[arg(long, value_name = "PATH", requires = "client_key")]
    pub(crate) client_cert: Option<PathBuf>,

    /// The private key (PEM) of --client-cert.
    #[arg(long, value_name = "PATH", requires = "client_cert")]
    pub(crate) client_key: Option<PathBuf>,

    /// Send this header with the WebSocket upgrade, as 'Name: value';
    /// repeat for several. Values are never printed.
    #[arg(long = "header", value_name = "'NAME: VALUE'")]
    pub(crate) headers: Vec<String>,

    /// Send 'Authorization: Bearer TOKEN'. Other users of this machine can
    /// see command lines: prefer --token-file.
    #[arg(long, value_name = "TOKEN", conflicts_with = "token_file")]
    pub(crate) token: Option<String>,

    /// Like --token, with the token read from this file. The file is read
    /// again before every reconnect, so a token rotated on disk is picked
    /// up.
    #[arg(long, value_name = "PATH")]
    pub(crate) token_file: Option<PathBuf>,

    /// At-least-once delivery (the server must speak the hub's ack
    /// protocol): `publish` succeeds only once the hub has acknowledged
    /// every event, resending across reconnects; `subscribe` drops
    /// duplicates.
    #[arg(long)]
    pub(crate) at_least_once: bool,
}

impl ConnectArgs {
    /// A transport builder for these flags. The reconnect policy replaces
    /// the config's `max_reconnect_attempts` and `reconnect_delay_seconds`.
    ///
    /// Fails with a usage error for a malformed `--header` or an unusable
    /// `--token-file`; errors never quote a header value or a token.
    pub(crate) fn builder(
        &self,
        policy: ReconnectPolicy,
        backpressure: BackpressureConfig,
    ) -> Result<TransportBuilder, CliError> {
        let (first, fallbacks) = match self.url.split_first() {
            Some((first, rest)) => (first.clone(), rest.to_vec()),
            None => return Err(CliError::Usage("--url needs a URL".into())),
        };
        let mut builder = WebSocketTransport::builder(WebSocketConfig {
            url: first,
            backpressure,
            ..WebSocketConfig::default()
        })
        .fallback_urls(fallbacks)
        .connect_timeout(self.connect_timeout)
        .reconnect_policy(policy)
        .server_filters(!self.no_server_filters);
        if self.at_least_once {
            builder = builder.delivery(AtLeastOnce::default());
        }
        for path in &self.ca_cert {
            builder = builder.add_root_certificate_file(path);
        }
        if let (Some(cert), Some(key)) = (&self.client_cert, &self.client_key) {
            builder = builder.client_certificate_files(cert, key);
        }
        for (n, header) in self.headers.iter().enumerate() {
            let (name, value) = parse_header(header, n + 1)?;
            builder = builder.header(name, value);
        }
        if let Some(token) = &self.token {
            builder = builder.bearer_token(token);
        }
        if let Some(path) = &self.token_file {
            // Read now too, so a missing or empty file is a usage error
            // before any connecting.
            read_token(path).map_err(CliError::Usage)?;
            let path = path.clone();
            builder = builder.credential_provider(move || {
                let path = path.clone();
                async move {
                    let token = tokio::task::spawn_blocking(move || read_token(&path))
                        .await
                        .map_err(|e| format!("reading the token file stopped: {e}"))??;
                    Ok::<_, String>(Credentials::bearer(token))
                }
            });
        }
        Ok(builder)
    }
}

/// `Name: value` → (name, value), both trimmed. The error names the flag's
/// position and never quotes the value.
fn parse_header(text: &str, n: usize) -> Result<(String, String), CliError> {
    match text.split_once(':') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_string(), value.trim().to_string()))
        }
        _ => Err(CliError::Usage(format!(
            "--header number {n} is not of the form 'Name: value'"
        ))),
    }
}

/// The token in `path`: its content without surrounding whitespace. The
/// error never quotes the file's content.
fn read_token(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("could not read the token file {}: {e}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(format!("the token file {} is empty", path.display()));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "the token in {} must be one line of printable ASCII without spaces",
            path.display()
        ));
    }
    Ok(token.to_string())
}

/// Seconds as a decimal number: `5`, `0.5`.
pub(crate) fn parse_seconds(text: &str) -> Result<Duration, String> {
    const MAX: f64 = 24.0 * 60.0 * 60.0;
    match text.trim().parse::<f64>() {
        Ok(secs) if secs > 0.0 && secs <= MAX => Ok(Duration::from_secs_f64(secs)),
        _ => Err(format!(
            "expected a number of seconds above 0 and at most {MAX} (one day), such as 5 or 0.5"
        )),
    }
}

/// [`parse_seconds`] for a flag kept as `f64` (so its default can be shown).
pub(crate) fn parse_seconds_f64(text: &str) -> Result<f64, String> {
    parse_seconds(text).map(|d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds() {
        assert_eq!(parse_seconds("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_seconds("0.25"), Ok(Duration::from_millis(250)));
        for bad in ["0", "-1", "NaN", "inf", "soon", "", "1e9"] {
            assert!(parse_seconds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn token_files() {
        let dir = std::env::temp_dir().join(format!("watchtower-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        assert_eq!(read_token(&file("ok", "  t0ken\n")).unwrap(), "t0ken");
        let e = read_token(&file("empty", " \n")).unwrap_err();
        assert!(e.contains("is empty"), "{e}");
        let e = read_token(&file("two", "s3cret\nother\n")).unwrap_err();
        assert!(e.contains("one line") && !e.contains("s3cret"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn headers() {
        assert_eq!(
            parse_header("X-Tenant:  acme ", 1).unwrap(),
            ("X-Tenant".to_string(), "acme".to_string())
        );
        assert_eq!(
            parse_header("Authorization: Bearer a:b", 1).unwrap().1,
            "Bearer a:b"
        );
        for bad in ["no-colon-s3cret", ": s3cret"] {
            let e = parse_header(bad, 2).unwrap_err().to_string();
            assert!(
                e.contains("--header number 2") && !e.contains("s3cret"),
                "{e}"
            );
        }
    }
}
