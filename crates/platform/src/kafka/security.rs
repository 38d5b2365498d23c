//! How a client authenticates and encrypts: the standard `KAFKA_SECURITY_PROTOCOL`, `KAFKA_SASL_*`
//! and `KAFKA_SSL_*` variables, checked at start, and applied to every client of a service.
//!
//! A password never appears in a log line, a config error or a `Debug` print: it is held in a
//! [`Secret`], and the files named by the `*_LOCATION` variables are checked for being readable,
//! never echoed.

use crate::config::{ConfigError, Env};
use rdkafka::ClientConfig;
use std::fmt;
use std::path::PathBuf;

/// A value that is passed to the client and shown nowhere else.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// `security.protocol`, in librdkafka's spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl Protocol {
    const EXPECTED: &'static str = "one of plaintext, ssl, sasl_plaintext, sasl_ssl";

    fn parse(value: &str) -> Option<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "plaintext" => Some(Self::Plaintext),
            "ssl" => Some(Self::Ssl),
            "sasl_plaintext" => Some(Self::SaslPlaintext),
            "sasl_ssl" => Some(Self::SaslSsl),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Ssl => "ssl",
            Self::SaslPlaintext => "sasl_plaintext",
            Self::SaslSsl => "sasl_ssl",
        }
    }

    fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

/// SASL login: the mechanism and the credentials of this service's Kafka user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sasl {
    /// `KAFKA_SASL_MECHANISM`: `SCRAM-SHA-512` (the default, what Strimzi's KafkaUsers get),
    /// `SCRAM-SHA-256` or `PLAIN`.
    pub mechanism: String,
    /// `KAFKA_SASL_USERNAME`.
    pub username: String,
    /// `KAFKA_SASL_PASSWORD`, or the contents of the file `KAFKA_SASL_PASSWORD_FILE` names.
    pub password: Secret,
}

/// TLS files, in PEM.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tls {
    /// `KAFKA_SSL_CA_LOCATION`: the CA that signed the brokers' certificates (Strimzi's
    /// `<cluster>-cluster-ca-cert`). Unset: the system's trust store.
    pub ca_location: Option<PathBuf>,
    /// `KAFKA_SSL_CERTIFICATE_LOCATION` and `KAFKA_SSL_KEY_LOCATION`: this client's certificate
    /// and key, for mutual TLS (a KafkaUser of `type: tls`).
    pub client: Option<(PathBuf, PathBuf)>,
    /// `KAFKA_SSL_ENDPOINT_IDENTIFICATION`: `https` (the default) checks the broker's host name
    /// against its certificate; `none` does not.
    pub verify_hostname: bool,
}

/// The security settings of every client of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Security {
    pub protocol: Protocol,
    pub sasl: Option<Sasl>,
    pub tls: Tls,
}

impl Default for Security {
    fn default() -> Self {
        Self {
            protocol: Protocol::Plaintext,
            sasl: None,
            tls: Tls {
                verify_hostname: true,
                ..Tls::default()
            },
        }
    }
}

const SASL_VARS: [&str; 4] = [
    "KAFKA_SASL_MECHANISM",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD",
    "KAFKA_SASL_PASSWORD_FILE",
];
const TLS_VARS: [&str; 4] = [
    "KAFKA_SSL_CA_LOCATION",
    "KAFKA_SSL_CERTIFICATE_LOCATION",
    "KAFKA_SSL_KEY_LOCATION",
    "KAFKA_SSL_ENDPOINT_IDENTIFICATION",
];

fn invalid(var: &str, value: impl Into<String>, expected: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        var: var.into(),
        value: value.into(),
        expected: expected.into(),
    }
}

impl Security {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let protocol = match env.raw("KAFKA_SECURITY_PROTOCOL") {
            None => Protocol::Plaintext,
            Some(v) => Protocol::parse(v)
                .ok_or_else(|| invalid("KAFKA_SECURITY_PROTOCOL", v, Protocol::EXPECTED))?,
        };
        // A setting the protocol would ignore is a mistake in the deployment: say so at start
        // instead of connecting in plain text.
        let ignored = |vars: &[&str], needs: &str| -> Result<(), ConfigError> {
            match vars.iter().find(|v| env.raw(v).is_some()) {
                Some(var) => Err(invalid(
                    var,
                    "(set)",
                    format!(
                        "unset while KAFKA_SECURITY_PROTOCOL is {}; it needs {needs}",
                        protocol.as_str()
                    ),
                )),
                None => Ok(()),
            }
        };
        let sasl = if protocol.uses_sasl() {
            Some(sasl_from_env(env)?)
        } else {
            ignored(&SASL_VARS, "sasl_plaintext or sasl_ssl")?;
            None
        };
        let tls = if protocol.uses_tls() {
            tls_from_env(env)?
        } else {
            ignored(&TLS_VARS, "ssl or sasl_ssl")?;
            Security::default().tls
        };
        Ok(Self {
            protocol,
            sasl,
            tls,
        })
    }

    /// Sets `security.protocol` and what goes with it.
    pub fn apply(&self, c: &mut ClientConfig) {
        c.set("security.protocol", self.protocol.as_str());
        if let Some(sasl) = &self.sasl {
            c.set("sasl.mechanism", &sasl.mechanism)
                .set("sasl.username", &sasl.username)
                .set("sasl.password", sasl.password.expose());
        }
        if self.protocol.uses_tls() {
            if let Some(ca) = &self.tls.ca_location {
                c.set("ssl.ca.location", ca.to_string_lossy());
            }
            if let Some((cert, key)) = &self.tls.client {
                c.set("ssl.certificate.location", cert.to_string_lossy())
                    .set("ssl.key.location", key.to_string_lossy());
            }
            c.set(
                "ssl.endpoint.identification.algorithm",
                if self.tls.verify_hostname {
                    "https"
                } else {
                    "none"
                },
            );
        }
    }

    /// For the start-up log line: the protocol, the mechanism and the user, never the password.
    pub fn describe(&self) -> String {
        match &self.sasl {
            Some(s) => format!(
                "{} ({} as {})",
                self.protocol.as_str(),
                s.mechanism,
                s.username
            ),
            None if self.tls.client.is_some() => {
                format!("{} (client certificate)", self.protocol.as_str())
            }
            None => self.protocol.as_str().to_owned(),
        }
    }
}

fn sasl_from_env(env: &Env) -> Result<Sasl, ConfigError> {
    let mechanism = env
        .raw("KAFKA_SASL_MECHANISM")
        .unwrap_or("SCRAM-SHA-512")
        .trim()
        .to_ascii_uppercase();
    if !["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"].contains(&mechanism.as_str()) {
        return Err(invalid(
            "KAFKA_SASL_MECHANISM",
            mechanism,
            "one of SCRAM-SHA-512, SCRAM-SHA-256, PLAIN",
        ));
    }
    let username: String = env.required("KAFKA_SASL_USERNAME", "the Kafka user's name")?;
    let password = match (
        env.raw("KAFKA_SASL_PASSWORD"),
        env.raw("KAFKA_SASL_PASSWORD_FILE"),
    ) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "KAFKA_SASL_PASSWORD",
                "(set)",
                "unset when KAFKA_SASL_PASSWORD_FILE is set: give the password one way",
            ));
        }
        (Some(p), None) => p.to_owned(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| {
                invalid(
                    "KAFKA_SASL_PASSWORD_FILE",
                    path,
                    format!("a readable file ({e})"),
                )
            })?
            .trim_end_matches(['\r', '\n'])
            .to_owned(),
        (None, None) => {
            return Err(ConfigError::Missing {
                var: "KAFKA_SASL_PASSWORD".into(),
                expected: "the Kafka user's password (or KAFKA_SASL_PASSWORD_FILE, a file \
                           holding it)"
                    .into(),
            });
        }
    };
    if password.is_empty() {
        return Err(invalid(
            "KAFKA_SASL_PASSWORD_FILE",
            env.raw("KAFKA_SASL_PASSWORD_FILE").unwrap_or_default(),
            "a file holding a non-empty password",
        ));
    }
    Ok(Sasl {
        mechanism,
        username,
        password: Secret::new(password),
    })
}

fn readable_file(env: &Env, var: &str) -> Result<Option<PathBuf>, ConfigError> {
    let Some(path) = env.raw(var) else {
        return Ok(None);
    };
    std::fs::File::open(path)
        .map_err(|e| invalid(var, path, format!("a readable PEM file ({e})")))?;
    Ok(Some(PathBuf::from(path)))
}

fn tls_from_env(env: &Env) -> Result<Tls, ConfigError> {
    let ca_location = readable_file(env, "KAFKA_SSL_CA_LOCATION")?;
    let cert = readable_file(env, "KAFKA_SSL_CERTIFICATE_LOCATION")?;
    let key = readable_file(env, "KAFKA_SSL_KEY_LOCATION")?;
    let client = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        (Some(_), None) => {
            return Err(ConfigError::Missing {
                var: "KAFKA_SSL_KEY_LOCATION".into(),
                expected: "the client key's PEM file, beside KAFKA_SSL_CERTIFICATE_LOCATION".into(),
            });
        }
        (None, Some(_)) => {
            return Err(ConfigError::Missing {
                var: "KAFKA_SSL_CERTIFICATE_LOCATION".into(),
                expected: "the client certificate's PEM file, beside KAFKA_SSL_KEY_LOCATION".into(),
            });
        }
    };
    let verify_hostname = match env
        .raw("KAFKA_SSL_ENDPOINT_IDENTIFICATION")
        .map(|v| v.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("https") => true,
        Some("none") => false,
        Some(other) => {
            return Err(invalid(
                "KAFKA_SSL_ENDPOINT_IDENTIFICATION",
                other,
                "https (check the broker's host name) or none",
            ));
        }
    };
    Ok(Tls {
        ca_location,
        client,
        verify_hostname,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn security(pairs: &[(&str, &str)]) -> Result<Security, ConfigError> {
        Security::from_env(&Env::from_pairs(pairs.iter().copied()))
    }

    #[test]
    fn plaintext_is_the_default_and_refuses_settings_it_would_ignore() {
        assert_eq!(security(&[]), Ok(Security::default()));
        let err = security(&[("KAFKA_SASL_PASSWORD", "hunter2")]).unwrap_err();
        assert!(err.to_string().starts_with("KAFKA_SASL_PASSWORD="), "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let err = security(&[
            ("KAFKA_SECURITY_PROTOCOL", "sasl_plaintext"),
            ("KAFKA_SASL_USERNAME", "u"),
            ("KAFKA_SASL_PASSWORD", "p"),
            ("KAFKA_SSL_CA_LOCATION", "/etc/hostname"),
        ])
        .unwrap_err();
        assert!(
            err.to_string().starts_with("KAFKA_SSL_CA_LOCATION="),
            "{err}"
        );
        let err = security(&[("KAFKA_SECURITY_PROTOCOL", "tls")]).unwrap_err();
        assert!(err.to_string().contains("sasl_ssl"), "{err}");
    }

    #[test]
    fn sasl_needs_a_user_and_one_password_and_never_shows_it() {
        let err = security(&[("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("KAFKA_SASL_USERNAME is not set"),
            "{err}"
        );
        let err = security(&[
            ("KAFKA_SECURITY_PROTOCOL", "sasl_ssl"),
            ("KAFKA_SASL_USERNAME", "payment"),
        ])
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("KAFKA_SASL_PASSWORD is not set"),
            "{err}"
        );
        let err = security(&[
            ("KAFKA_SECURITY_PROTOCOL", "sasl_ssl"),
            ("KAFKA_SASL_USERNAME", "payment"),
            ("KAFKA_SASL_PASSWORD", "hunter2"),
            ("KAFKA_SASL_PASSWORD_FILE", "/nonexistent"),
        ])
        .unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let err = security(&[
            ("KAFKA_SECURITY_PROTOCOL", "sasl_ssl"),
            ("KAFKA_SASL_MECHANISM", "GSSAPI"),
        ])
        .unwrap_err();
        assert!(
            err.to_string().starts_with("KAFKA_SASL_MECHANISM="),
            "{err}"
        );

        let ok = security(&[
            ("KAFKA_SECURITY_PROTOCOL", "sasl_ssl"),
            ("KAFKA_SASL_USERNAME", "payment"),
            ("KAFKA_SASL_PASSWORD", "hunter2"),
        ])
        .expect("valid");
        assert!(!format!("{ok:?}").contains("hunter2"), "{ok:?}");
        assert_eq!(ok.describe(), "sasl_ssl (SCRAM-SHA-512 as payment)");
        let mut c = ClientConfig::new();
        ok.apply(&mut c);
        assert_eq!(c.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(c.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(c.get("sasl.password"), Some("hunter2"));
        assert_eq!(
            c.get("ssl.endpoint.identification.algorithm"),
            Some("https")
        );
    }

    #[test]
    fn the_password_can_come_from_a_file_and_tls_files_must_be_readable() {
        let dir = std::env::temp_dir().join(format!("km-security-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("password");
        std::fs::write(&file, "s3cret\n").expect("write");
        let file = file.to_string_lossy().into_owned();
        let ok = security(&[
            ("KAFKA_SECURITY_PROTOCOL", "sasl_plaintext"),
            ("KAFKA_SASL_USERNAME", "payment"),
            ("KAFKA_SASL_PASSWORD_FILE", &file),
        ])
        .expect("valid");
        assert_eq!(ok.sasl.map(|s| s.password), Some(Secret::new("s3cret")));

        let err = security(&[
            ("KAFKA_SECURITY_PROTOCOL", "ssl"),
            ("KAFKA_SSL_CA_LOCATION", "/nonexistent/ca.crt"),
        ])
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("KAFKA_SSL_CA_LOCATION=\"/nonexistent/ca.crt\""),
            "{err}"
        );
        let err = security(&[
            ("KAFKA_SECURITY_PROTOCOL", "ssl"),
            ("KAFKA_SSL_CERTIFICATE_LOCATION", &file),
        ])
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("KAFKA_SSL_KEY_LOCATION is not set"),
            "{err}"
        );
        let ok = security(&[
            ("KAFKA_SECURITY_PROTOCOL", "ssl"),
            ("KAFKA_SSL_CA_LOCATION", &file),
            ("KAFKA_SSL_CERTIFICATE_LOCATION", &file),
            ("KAFKA_SSL_KEY_LOCATION", &file),
            ("KAFKA_SSL_ENDPOINT_IDENTIFICATION", "none"),
        ])
        .expect("valid");
        assert_eq!(ok.describe(), "ssl (client certificate)");
        let mut c = ClientConfig::new();
        ok.apply(&mut c);
        assert_eq!(c.get("ssl.key.location"), Some(file.as_str()));
        assert_eq!(c.get("ssl.endpoint.identification.algorithm"), Some("none"));
        std::fs::remove_dir_all(&dir).ok();
    }
}
