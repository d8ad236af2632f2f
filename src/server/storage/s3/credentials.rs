//! The S3 access key, from the environment or a file, parsed by pure code.
//!
//! The secret is held in a type whose `Debug` prints nothing of it, and no error here quotes a
//! value read from a file or variable (only the names of what was missing or wrong), so neither a
//! log line nor a panic message can leak it.

use std::fmt;
use std::path::Path;

/// A static S3 access key (Garage keys are static: no session token, no STS).
#[derive(Clone, PartialEq, Eq)]
pub struct S3Credentials {
    pub key_id: String,
    secret: String,
}

impl fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Credentials")
            .field("key_id", &self.key_id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Why no credentials could be read. Never carries the secret, nor any value read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    #[error("no S3 credentials: set RINGEST_S3_KEY_ID and RINGEST_S3_SECRET (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), or give a credentials file")]
    Missing,
    #[error("{set} is set but {unset} is not")]
    HalfSet {
        set: &'static str,
        unset: &'static str,
    },
    #[error("S3 credentials file: {0}")]
    File(String),
}

/// Variable pairs, in the order they are looked at: ringest's own first, so a host whose
/// environment already carries AWS keys for something else can still point ringest elsewhere.
const ENV_PAIRS: [(&str, &str); 2] = [
    ("RINGEST_S3_KEY_ID", "RINGEST_S3_SECRET"),
    ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
];

impl S3Credentials {
    pub fn new(key_id: impl Into<String>, secret: impl Into<String>) -> S3Credentials {
        S3Credentials {
            key_id: key_id.into(),
            secret: secret.into(),
        }
    }

    /// The secret, for signing only.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// From the process environment (see [`S3Credentials::from_lookup`]).
    pub fn from_env() -> Result<S3Credentials, CredentialsError> {
        S3Credentials::from_lookup(|name| std::env::var(name).ok())
    }

    /// From the first variable pair that is set, `lookup` standing for the environment. Empty
    /// values count as unset. One half of a pair set without the other is an error rather than
    /// a fall-through to the next pair: it is a configuration mistake worth saying.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<S3Credentials, CredentialsError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        for (id_var, secret_var) in ENV_PAIRS {
            match (get(id_var), get(secret_var)) {
                (Some(id), Some(secret)) => {
                    return Ok(S3Credentials::new(id.trim(), secret.trim()))
                }
                (Some(_), None) => {
                    return Err(CredentialsError::HalfSet {
                        set: id_var,
                        unset: secret_var,
                    })
                }
                (None, Some(_)) => {
                    return Err(CredentialsError::HalfSet {
                        set: secret_var,
                        unset: id_var,
                    })
                }
                (None, None) => {}
            }
        }
        Err(CredentialsError::Missing)
    }

    /// From a file (see [`S3Credentials::parse_file`]).
    pub fn from_file(path: &Path) -> Result<S3Credentials, CredentialsError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CredentialsError::File(format!("{}: {e}", path.display())))?;
        S3Credentials::parse_file(&text)
    }

    /// A credentials file: blank lines and `#` comments are ignored; what is left is either two
    /// lines, the key id then the secret, or `key=value` lines naming both (`key_id` or
    /// `access_key_id` or `aws_access_key_id`, and `secret` or `secret_access_key` or
    /// `aws_secret_access_key`, in any case; the environment variable names work too). An unknown
    /// name is an error, so a typo does not silently leave the key unset.
    pub fn parse_file(text: &str) -> Result<S3Credentials, CredentialsError> {
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        // Two bare lines; the secret itself may contain '=' (base64), the key id does not.
        if lines.len() == 2 && !lines[0].contains('=') {
            return Ok(S3Credentials::new(lines[0], lines[1]));
        }
        let (mut id, mut secret) = (None, None);
        for (n, line) in lines.iter().enumerate() {
            let Some((name, value)) = line.split_once('=') else {
                return Err(CredentialsError::File(format!(
                    "line {} is neither `name=value` nor part of a two-line file",
                    n + 1
                )));
            };
            let name = name.trim().to_ascii_lowercase();
            let value = value.trim().to_string();
            let slot = match name.as_str() {
                "key_id" | "access_key_id" | "aws_access_key_id" | "ringest_s3_key_id" => &mut id,
                "secret" | "secret_access_key" | "aws_secret_access_key" | "ringest_s3_secret" => {
                    &mut secret
                }
                _ => {
                    return Err(CredentialsError::File(format!(
                        "unknown name `{name}` (expected key_id and secret)"
                    )))
                }
            };
            if slot.is_some() {
                return Err(CredentialsError::File(format!("`{name}` given twice")));
            }
            *slot = Some(value);
        }
        match (
            id.filter(|v| !v.is_empty()),
            secret.filter(|v| !v.is_empty()),
        ) {
            (Some(id), Some(secret)) => Ok(S3Credentials::new(id, secret)),
            (None, _) => Err(CredentialsError::File("no key id".into())),
            (_, None) => Err(CredentialsError::File("no secret".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "s3cr3t/With+Base64==";

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let owned: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| {
            owned
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn environment_pairs_in_order() {
        let c = S3Credentials::from_lookup(env(&[
            ("AWS_ACCESS_KEY_ID", "aws-id"),
            ("AWS_SECRET_ACCESS_KEY", "aws-secret"),
        ]))
        .unwrap();
        assert_eq!(c, S3Credentials::new("aws-id", "aws-secret"));
        let c = S3Credentials::from_lookup(env(&[
            ("AWS_ACCESS_KEY_ID", "aws-id"),
            ("AWS_SECRET_ACCESS_KEY", "aws-secret"),
            ("RINGEST_S3_KEY_ID", "GK1"),
            ("RINGEST_S3_SECRET", SECRET),
        ]))
        .unwrap();
        assert_eq!(c, S3Credentials::new("GK1", SECRET));
    }

    #[test]
    fn environment_errors_name_variables_only() {
        assert_eq!(
            S3Credentials::from_lookup(env(&[])),
            Err(CredentialsError::Missing)
        );
        let e = S3Credentials::from_lookup(env(&[("RINGEST_S3_SECRET", SECRET)])).unwrap_err();
        assert_eq!(
            e,
            CredentialsError::HalfSet {
                set: "RINGEST_S3_SECRET",
                unset: "RINGEST_S3_KEY_ID"
            }
        );
        assert!(!e.to_string().contains(SECRET));
        // Empty counts as unset.
        assert_eq!(
            S3Credentials::from_lookup(env(&[
                ("AWS_ACCESS_KEY_ID", ""),
                ("AWS_SECRET_ACCESS_KEY", " ")
            ])),
            Err(CredentialsError::Missing)
        );
    }

    #[test]
    fn two_line_file() {
        let c = S3Credentials::parse_file(&format!("# garage key\nGK1\n\n{SECRET}\n")).unwrap();
        assert_eq!(c, S3Credentials::new("GK1", SECRET));
    }

    #[test]
    fn key_value_file() {
        let c = S3Credentials::parse_file(&format!(
            "aws_access_key_id = GK1\nAWS_SECRET_ACCESS_KEY={SECRET}\n"
        ))
        .unwrap();
        assert_eq!(c, S3Credentials::new("GK1", SECRET));
        let c = S3Credentials::parse_file(&format!("secret={SECRET}\nkey_id=GK2")).unwrap();
        assert_eq!(c, S3Credentials::new("GK2", SECRET));
    }

    #[test]
    fn bad_files_say_why_without_the_secret() {
        for text in [
            String::new(),
            "only-one-line".to_string(),
            format!("key_id=GK1\nsecrte={SECRET}"),
            format!("key_id=GK1\nsecret={SECRET}\nsecret={SECRET}"),
            "key_id=GK1".to_string(),
            format!("secret={SECRET}"),
            format!("GK1\n{SECRET}\nthird"),
        ] {
            let e = S3Credentials::parse_file(&text).unwrap_err();
            assert!(!e.to_string().contains(SECRET), "{e}");
        }
    }

    #[test]
    fn debug_hides_the_secret() {
        let c = S3Credentials::new("GK1", SECRET);
        let shown = format!("{c:?} {c:#?}");
        assert!(shown.contains("GK1"));
        assert!(!shown.contains(SECRET), "{shown}");
    }
}
