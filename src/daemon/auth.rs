//! API tokens with names and scopes (R18, least privilege), and what each route needs.
//!
//! A token is known by the SHA-256 of its text only: either written as a digest in the config
//! (`sha256 = "<64 hex digits>"`, so the config file holds no secret) or read from a file at
//! start and hashed (`file = "tokens/soc.token"`, relative to the config file; a trailing line
//! break is not part of the token). A presented token is hashed and compared with every
//! configured digest in constant time, so neither the comparison nor the position of the
//! match tells an attacker anything.
//!
//! Scopes are independent (none implies another): a token lists all it needs.
//!
//! | scope | routes |
//! |---|---|
//! | `notify` | `POST /detections` (AV server scripts, `qlab notify`) |
//! | `read` | `GET /lservers`, `GET /lservers/{path}`, `GET /operations/{id}`, `GET /alerts`, `GET /metrics` |
//! | `operate` | `POST /lservers/{path}/quarantine\|release\|decide`, `POST /policy/reload` |
//!
//! Each route states its scope where it is routed (`api::router`). `GET /health` needs no token. The single `token` of older configs (or `QLAB_TOKEN`) still
//! works: it becomes the token named [`LEGACY_NAME`] with every scope. A valid token without
//! the route's scope gets 403 `forbidden`; an unknown or missing one 401 `unauthorized`.
//! Every command and detection submitted through the API is journaled with the token's name.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::config::{read_capped, EngineConfig, TokenConfig};
use super::DaemonError;
use crate::model::load::KeySeg;

/// Name of the all-scope token that the config's `token` (or `QLAB_TOKEN`) defines.
pub const LEGACY_NAME: &str = "default";

/// Largest token file read.
pub const MAX_TOKEN_FILE_BYTES: u64 = 4096;

/// Longest token name (it is journaled with every command).
pub const MAX_NAME_LEN: usize = 64;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[derive(strum::IntoStaticStr, strum::EnumString, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum Scope {
    /// Submit detections.
    Notify,
    /// Read state, operations, alerts and metrics.
    Read,
    /// Quarantine, release, decide, reload the policy.
    Operate,
}

impl Scope {
    /// The spelling in the config and in 403 messages.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// One configured token.
#[derive(Debug, Clone)]
struct Token {
    name: String,
    digest: [u8; 32],
    scopes: Vec<Scope>,
}

/// Every token the API accepts.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    tokens: Vec<Token>,
}

/// Who made a request: the name of its token and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's name (journaled with what it asks for).
    pub name: String,
    scopes: Vec<Scope>,
}

impl Caller {
    /// Whether the caller's token has `scope`.
    pub fn may(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

fn config_error(key: Vec<KeySeg>, message: impl Into<String>) -> DaemonError {
    DaemonError::Config {
        key,
        message: message.into(),
    }
}

/// Parses `sha256:`-less hex of 32 bytes.
fn parse_digest(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// The SHA-256 of `token` in lower-case hex, as `sha256 = "..."` wants it.
pub fn digest_hex(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Tokens {
    /// The tokens of `config` plus `legacy` (the config's `token` or `QLAB_TOKEN`; empty for
    /// none) as the all-scope [`LEGACY_NAME`]. Errors name the config key.
    pub fn from_config(config: &EngineConfig, legacy: &str) -> Result<Tokens, DaemonError> {
        let mut tokens = Vec::new();
        if !legacy.trim().is_empty() {
            tokens.push(Token {
                name: LEGACY_NAME.into(),
                digest: Sha256::digest(legacy.as_bytes()).into(),
                scopes: vec![Scope::Notify, Scope::Read, Scope::Operate],
            });
        }
        for (i, t) in config.tokens.iter().enumerate() {
            tokens.push(Self::load_one(i, t, &tokens)?);
        }
        if tokens.is_empty() {
            return Err(DaemonError::Token(format!(
                "no API token: set `token` in the config, {}, or one [[tokens]] entry",
                super::TOKEN_ENV
            )));
        }
        Ok(Tokens { tokens })
    }

    fn load_one(i: usize, t: &TokenConfig, earlier: &[Token]) -> Result<Token, DaemonError> {
        let key = |field: &str| vec![KeySeg::from("tokens"), KeySeg::from(i), field.into()];
        let name = t.name.trim();
        if name.is_empty() || name.len() > MAX_NAME_LEN || name.chars().any(char::is_control) {
            return Err(config_error(
                key("name"),
                format!("a token name is 1 to {MAX_NAME_LEN} printable characters"),
            ));
        }
        if earlier.iter().any(|e| e.name == name) {
            let why = if name == LEGACY_NAME {
                " (the config's `token` is named so)"
            } else {
                ""
            };
            return Err(config_error(
                key("name"),
                format!("token name {name:?} is used twice{why}"),
            ));
        }
        if t.scopes.is_empty() {
            return Err(config_error(
                key("scopes"),
                "list at least one of notify, read, operate",
            ));
        }
        let digest = match (&t.sha256, &t.file) {
            (Some(hex), None) => parse_digest(hex).ok_or_else(|| {
                config_error(
                    key("sha256"),
                    "must be 64 hex digits, the SHA-256 of the token (`printf %s TOKEN | sha256sum`)",
                )
            })?,
            (None, Some(path)) => Sha256::digest(read_token_file(path).map_err(|e| config_error(key("file"), e))?.as_bytes()).into(),
            _ => {
                return Err(config_error(
                    key("sha256"),
                    "set exactly one of `sha256` (the token's digest) or `file` (a file holding the token)",
                ))
            }
        };
        #[cfg(unix)]
        if let Some(path) = &t.file {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path).map_or(0, |m| m.permissions().mode());
            if mode & 0o077 != 0 {
                tracing::warn!(
                    token = name,
                    file = %path.display(),
                    mode = format!("{:o}", mode & 0o777),
                    "token file is readable by other users; chmod 600 it"
                );
            }
        }
        if earlier.iter().any(|e| e.digest == digest) {
            return Err(config_error(
                key("name"),
                format!("token {name:?} is the same secret as another token"),
            ));
        }
        Ok(Token {
            name: name.to_string(),
            digest,
            scopes: t.scopes.clone(),
        })
    }

    /// The caller whose token is `presented`, if any. Compares with every token in constant
    /// time.
    pub fn identify(&self, presented: &[u8]) -> Option<Caller> {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        let mut found = None;
        for token in &self.tokens {
            let difference = digest
                .iter()
                .zip(token.digest.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if difference == 0 && found.is_none() {
                found = Some(token);
            }
        }
        found.map(|t| Caller {
            name: t.name.clone(),
            scopes: t.scopes.clone(),
        })
    }

    /// The names of the configured tokens, in config order.
    pub fn names(&self) -> Vec<&str> {
        self.tokens.iter().map(|t| t.name.as_str()).collect()
    }
}

/// Reads a token file: at most [`MAX_TOKEN_FILE_BYTES`], UTF-8, one trailing line break
/// dropped, not empty.
fn read_token_file(path: &Path) -> Result<String, String> {
    let bytes = read_capped(path, MAX_TOKEN_FILE_BYTES)?;
    let text = String::from_utf8(bytes).map_err(|_| format!("{}: not UTF-8", path.display()))?;
    let token = text.strip_suffix('\n').unwrap_or(&text);
    let token = token.strip_suffix('\r').unwrap_or(token);
    if token.trim().is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(token.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r18_digests_parse_as_64_hex_digits_only() {
        let hex = digest_hex("secret");
        assert_eq!(
            parse_digest(&hex),
            Some(<[u8; 32]>::from(Sha256::digest(b"secret")))
        );
        assert_eq!(parse_digest(&hex[..63]), None);
        assert_eq!(parse_digest(&format!("{}zz", &hex[..62])), None);
    }
}
