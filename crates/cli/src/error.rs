//! The CLI's error: one line of text and an exit code.

use std::process::ExitCode;

use watchtower_hub::HubError;
use watchtower_websocket::{TlsErrorKind, WatchtowerError};

/// Why a command failed. The message is printed after `error: ` as one
/// line.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// Bad arguments, configuration or input: exit code 2.
    #[error("{0}")]
    Usage(String),
    /// Something failed while running: exit code 1.
    #[error("{0}")]
    Runtime(String),
}

impl CliError {
    pub(crate) fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Usage(_) => ExitCode::from(2),
            CliError::Runtime(_) => ExitCode::from(1),
        }
    }
}

impl From<WatchtowerError> for CliError {
    fn from(error: WatchtowerError) -> Self {
        let message = match hint(&error) {
            Some(hint) => format!("{error}; {hint}"),
            None => error.to_string(),
        };
        match error {
            WatchtowerError::Config(_)
            | WatchtowerError::MessageTooLarge { .. }
            | WatchtowerError::Decode(_)
            | WatchtowerError::Tls {
                kind: TlsErrorKind::Config,
                ..
            } => CliError::Usage(message),
            _ => CliError::Runtime(message),
        }
    }
}

/// The flag that fixes a security failure, in the CLI's terms (the
/// library's messages name builder methods).
fn hint(error: &WatchtowerError) -> Option<&'static str> {
    match error {
        WatchtowerError::Tls { kind, .. } => match kind {
            TlsErrorKind::UnknownIssuer => Some("with this CLI, pass the CA with --ca-cert"),
            TlsErrorKind::ClientCertificate => {
                Some("with this CLI, pass --client-cert and --client-key")
            }
            _ => None,
        },
        WatchtowerError::Auth { .. } => Some("with this CLI, pass --token or --token-file"),
        _ => None,
    }
}

impl From<HubError> for CliError {
    fn from(error: HubError) -> Self {
        let message = chain(&error);
        match error {
            HubError::Config(_) | HubError::Tls { .. } => CliError::Usage(message),
            _ => CliError::Runtime(message),
        }
    }
}

/// The error and its sources as one line: `a: b: c`.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_are_usage_errors() {
        let e = CliError::from(WatchtowerError::Config("bad url".into()));
        assert!(matches!(e, CliError::Usage(_)));
        let e = CliError::from(WatchtowerError::connection("refused"));
        assert!(matches!(e, CliError::Runtime(_)));
    }

    #[test]
    fn security_errors_name_the_flag_that_fixes_them() {
        let e = CliError::from(WatchtowerError::Auth { status: 401 });
        assert!(matches!(e, CliError::Runtime(_)));
        assert!(e.to_string().contains("--token"), "{e}");
        let e = CliError::from(WatchtowerError::tls(
            TlsErrorKind::UnknownIssuer,
            "unknown CA",
            None,
        ));
        assert!(e.to_string().ends_with("pass the CA with --ca-cert"), "{e}");
        let e = CliError::from(WatchtowerError::tls(TlsErrorKind::Config, "bad PEM", None));
        assert!(matches!(e, CliError::Usage(_)));
    }

    #[test]
    fn hub_errors_print_their_cause_on_the_same_line() {
        let e = CliError::from(HubError::Bind {
            addr: ([127, 0, 0, 1], 80).into(),
            source: std::io::Error::new(std::io::ErrorKind::AddrInUse, "address in use"),
        });
        assert_eq!(
            e.to_string(),
            "could not listen on 127.0.0.1:80: address in use"
        );
        assert!(matches!(e, CliError::Runtime(_)));
    }
}
