//! Reloading a running hub's bearer tokens and certificate: all of them
//! on SIGHUP, and the tokens whenever `--token-file` changes. Connected
//! clients stay connected; a reload that fails (unreadable file, bad
//! token, key that does not fit) keeps what was loaded before and says
//! why on stderr.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use watchtower_hub::{HubHandle, HubTls};

use crate::error::CliError;

/// How often `--token-file` is checked for a change. A file watcher crate
/// would notice sooner, but a rotation taking a second is fine and one
/// `stat` a second costs nothing.
const TOKEN_FILE_POLL: Duration = Duration::from_secs(1);

/// Where the tokens and the certificate come from.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sources {
    pub(crate) tokens: Vec<String>,
    pub(crate) token_file: Option<PathBuf>,
    pub(crate) tls_cert: Option<PathBuf>,
    pub(crate) tls_key: Option<PathBuf>,
    pub(crate) client_ca: Option<PathBuf>,
}

impl Sources {
    /// Every token from --token and --token-file.
    pub(crate) fn tokens(&self) -> Result<Vec<String>, CliError> {
        let mut tokens = self.tokens.clone();
        if let Some(path) = &self.token_file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                CliError::Usage(format!(
                    "could not read the token file {}: {e}",
                    path.display()
                ))
            })?;
            let before = tokens.len();
            tokens.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|line| !line.is_empty())
                    .map(str::to_string),
            );
            if tokens.len() == before {
                return Err(CliError::Usage(format!(
                    "the token file {} holds no token",
                    path.display()
                )));
            }
        }
        Ok(tokens)
    }

    /// The TLS settings, if --tls-cert and --tls-key are given.
    pub(crate) fn tls(&self) -> Result<Option<HubTls>, CliError> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        let mut tls = HubTls::from_pem_files(cert, key)?;
        if let Some(client_ca) = &self.client_ca {
            tls = tls.require_client_certificates_file(client_ca)?;
        }
        Ok(Some(tls))
    }

    /// The token file's modification time and length, to notice a change.
    fn token_file_stamp(&self) -> Option<(SystemTime, u64)> {
        let meta = std::fs::metadata(self.token_file.as_ref()?).ok()?;
        Some((meta.modified().ok()?, meta.len()))
    }

    fn reload_tokens(&self, hub: &HubHandle) {
        if self.tokens.is_empty() && self.token_file.is_none() {
            return;
        }
        let result = self
            .tokens()
            .and_then(|tokens| Ok(hub.reload_tokens(tokens)?));
        match result {
            Ok(()) => eprintln!("reloaded the bearer tokens"),
            Err(e) => eprintln!("token reload failed, keeping the old tokens: {e}"),
        }
    }

    fn reload_tls(&self, hub: &HubHandle) {
        match self.tls() {
            Ok(None) => {}
            Ok(Some(tls)) => match hub.reload_tls(tls) {
                Ok(()) => eprintln!("reloaded the TLS certificate"),
                Err(e) => eprintln!("TLS reload failed, keeping the old certificate: {e}"),
            },
            Err(e) => eprintln!("TLS reload failed, keeping the old certificate: {e}"),
        }
    }
}

/// Reloads on SIGHUP and on a change of the token file, until the hub
/// stops (the caller drops the future). The SIGHUP handler is installed
/// when this is called, not when the future is first polled, so a SIGHUP
/// right after start-up reloads instead of killing the process.
pub(crate) fn watch(sources: Sources, hub: HubHandle) -> impl Future<Output = ()> {
    #[cfg(unix)]
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(stream) => Some(stream),
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGHUP; reload by restarting");
            None
        }
    };
    async move {
        let mut stamp = sources.token_file_stamp();
        loop {
            #[cfg(unix)]
            let hup = async {
                match hangup.as_mut() {
                    Some(stream) => stream.recv().await,
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let hup = std::future::pending::<Option<()>>();
            tokio::select! {
                _ = hup => {
                    sources.reload_tokens(&hub);
                    sources.reload_tls(&hub);
                    stamp = sources.token_file_stamp();
                }
                () = tokio::time::sleep(TOKEN_FILE_POLL), if sources.token_file.is_some() => {
                    let now = sources.token_file_stamp();
                    if now.is_some() && now != stamp {
                        stamp = now;
                        sources.reload_tokens(&hub);
                    }
                }
            }
        }
    }
}
