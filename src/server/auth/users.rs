//! The users file and password verification.
//!
//! A TOML file lists the users, each with a password hash, a root directory (their `/`, the jail) and
//! permissions; an optional `[anonymous]` section lets `anonymous`/`ftp` in with any password, with
//! uploads confined to one write-only incoming directory:
//!
//! ```toml
//! [[user]]
//! name = "alice"
//! password = "$argon2id$v=19$m=19456,t=2,p=1$..."
//! root = "/srv/ftp/alice"
//! permissions = ["read", "write", "delete", "mkdir"]   # the default
//!
//! [anonymous]
//! enabled = true
//! root = "/srv/ftp/anon"
//! incoming = "/incoming"
//! ```
//!
//! New hashes are argon2id (PHC strings, see [`hash_password`]). bcrypt (`$2a$`, `$2b$`, `$2y$`) and
//! SHA-crypt (`$5$`, `$6$`) are verified too, so users can be imported from other servers without
//! resetting their passwords. Everything is checked when the file is loaded, so a typo fails start-up
//! (or a reload) instead of locking a user out later.
//!
//! [`UserDb::verify`] is deliberately slow (that is the point of a password hash) and blocking: the
//! server runs it through `engine::blocking::spawn_blocking`, never on a core thread.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::login_cache::LoginCache;
use crate::proto::path::VPath;
use crate::proto::session::Access;
use crate::server::config::server::ServerConfig;

/// Why a users file (or a password to hash) was rejected.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Not valid TOML, an unknown key, or a value of the wrong type; `message` is toml's, which
    /// shows the line and the key.
    #[error("{file}: {message}")]
    Syntax { file: String, message: String },
    /// Valid TOML whose content is wrong: names the user and the key.
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
    /// Hashing a new password failed (no randomness for the salt, or an argon2 error).
    #[error("cannot hash password: {0}")]
    Hash(String),
}

/// What a user may do. `read` covers RETR/LIST/NLST/MLSD/SIZE/MDTM; `write` covers STOR/APPE/STOU
/// and being the target of RNTO; `delete` covers DELE/RMD and being the source of RNFR; `mkdir`
/// covers MKD.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Permissions {
    pub read: bool,
    pub write: bool,
    pub delete: bool,
    pub mkdir: bool,
}

impl Permissions {
    /// Everything: the default when a user has no `permissions` key.
    pub const ALL: Permissions = Permissions {
        read: true,
        write: true,
        delete: true,
        mkdir: true,
    };
    /// Nothing: the starting point when `permissions` is given.
    pub const NONE: Permissions = Permissions {
        read: false,
        write: false,
        delete: false,
        mkdir: false,
    };
}

impl Default for Permissions {
    fn default() -> Self {
        Permissions::ALL
    }
}

/// The restrictions of an anonymous session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnonPolicy {
    /// Normalized virtual path (e.g. `/incoming`) of the only directory where anonymous may upload;
    /// inside it nothing may be listed, downloaded, overwritten or deleted, so it cannot be used to
    /// pass files between strangers.
    pub incoming: String,
}

/// A logged-in user: who, where their `/` is, and what they may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    /// The user name; `"anonymous"` for every anonymous login (whether it said `anonymous` or `ftp`).
    pub name: String,
    /// The user's `/`, absolute (relative roots in the file are resolved against its directory).
    pub root: PathBuf,
    pub perms: Permissions,
    /// Set for anonymous sessions: their extra restrictions, which [`UserInfo::access`] turns into a
    /// drop box.
    pub anonymous: Option<AnonPolicy>,
    /// This user's FTPS rules, where they differ from the server's.
    pub tls: UserTls,
}

/// A user's own FTPS rules (`tls`, `tls_data` in the users file).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UserTls {
    /// `tls = "required"`: the login must come over TLS (a clear one is refused with 530).
    pub login_required: bool,
    /// `tls_data`: `Some(true)` requires protected data connections for this user, `Some(false)`
    /// allows clear ones even where the server requires protection; `None` follows the server.
    pub data_required: Option<bool>,
}

impl UserInfo {
    /// What this user may do in a session, in the terms the session state machine enforces
    /// ([`Access`] in `proto::session`, the one permission model): the permissions as listed, or for
    /// anonymous a drop box (uploads of new files beneath the incoming directory, nothing else).
    /// `None` if the incoming directory is not a valid virtual path (the loader normalises it, so
    /// this does not happen for a loaded file).
    pub fn access(&self) -> Option<Access> {
        Some(match &self.anonymous {
            Some(anon) => Access::drop_box(VPath::root().resolve(&anon.incoming).ok()?),
            None => Access {
                read: self.perms.read,
                write: self.perms.write,
                delete: self.perms.delete,
                mkdir: self.perms.mkdir,
                upload_only: None,
            },
        })
    }

    /// Whether this is an anonymous session.
    pub fn is_anonymous(&self) -> bool {
        self.anonymous.is_some()
    }
}

/// A stored credential, parsed at load time so verification never meets a malformed hash.
#[derive(Clone, Debug)]
enum Credential {
    /// A PHC argon2 string (argon2id, argon2i or argon2d); re-parsed on verify because
    /// `PasswordHash` borrows its text.
    Argon2(String),
    /// A bcrypt string `$2[aby]$cost$salt+hash`.
    Bcrypt(String),
    /// SHA-crypt: `$5$` (SHA-256) or `$6$` (SHA-512), with the parts split out.
    ShaCrypt {
        sha512: bool,
        rounds: usize,
        salt: String,
        hash: String,
    },
    /// SHA-256 of a password given in clear on the command line (see [`UserDb::single`]).
    Plain([u8; 32]),
}

/// The users the server starts with: the users file if one is configured (with the login cache
/// applied), else the single user given on the command line.
pub fn load_for(cfg: &ServerConfig) -> io::Result<UserDb> {
    match &cfg.policies.users_file {
        Some(path) => UserDb::load(path)
            .map(|db| db.with_login_cache(cfg.policies.login_cache))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string())),
        None => Ok(UserDb::single(&cfg.user, &cfg.password, cfg.root.clone())),
    }
}

/// Argon2 memory cost above which a hash is refused at load time: verification allocates it, and
/// an absurd value (a typo) would exhaust memory on every login attempt instead of failing once.
const MAX_ARGON2_M_KIB: u32 = 1 << 20;

impl Credential {
    fn parse(s: &str) -> Result<Credential, String> {
        if s.starts_with("$argon2") {
            let h = PasswordHash::new(s).map_err(|e| format!("invalid argon2 hash: {e}"))?;
            let params = argon2::Params::try_from(&h)
                .map_err(|e| format!("invalid argon2 parameters: {e}"))?;
            if params.m_cost() > MAX_ARGON2_M_KIB {
                return Err(format!(
                    "argon2 memory cost m={} KiB is above the limit of {MAX_ARGON2_M_KIB}",
                    params.m_cost()
                ));
            }
            if h.hash.is_none() {
                return Err("argon2 hash has no hash value".to_owned());
            }
            argon2::Algorithm::try_from(h.algorithm)
                .map_err(|e| format!("invalid argon2 algorithm: {e}"))?;
            return Ok(Credential::Argon2(s.to_owned()));
        }
        if s.starts_with("$2a$") || s.starts_with("$2b$") || s.starts_with("$2y$") {
            let parts: bcrypt::HashParts = s
                .parse()
                .map_err(|e: bcrypt::BcryptError| format!("invalid bcrypt hash: {e}"))?;
            if !(4..=31).contains(&parts.get_cost()) {
                return Err(format!("invalid bcrypt cost {}", parts.get_cost()));
            }
            return Ok(Credential::Bcrypt(s.to_owned()));
        }
        if let Some(rest) = s.strip_prefix("$5$") {
            return parse_sha_crypt(rest, false);
        }
        if let Some(rest) = s.strip_prefix("$6$") {
            return parse_sha_crypt(rest, true);
        }
        Err(
            "password is not a supported hash (expected a PHC $argon2id$ string, bcrypt \
             $2a$/$2b$/$2y$, or SHA-crypt $5$/$6$; make one with `ringest passwd`)"
                .to_owned(),
        )
    }

    /// Whether verifying costs a deliberate hash (everything but the CLI's plain password).
    fn is_slow(&self) -> bool {
        !matches!(self, Credential::Plain(_))
    }

    /// Checks `password`; every branch compares in constant time.
    fn verify(&self, password: &str) -> bool {
        match self {
            Credential::Argon2(s) => match PasswordHash::new(s) {
                Ok(h) => Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok(),
                Err(_) => false,
            },
            // bcrypt compares its decoded outputs with `subtle`.
            Credential::Bcrypt(s) => bcrypt::verify(password, s).unwrap_or(false),
            Credential::ShaCrypt {
                sha512,
                rounds,
                salt,
                hash,
            } => {
                let (pw, salt) = (password.as_bytes(), salt.as_bytes());
                let out = if *sha512 {
                    sha_crypt::Sha512Params::new(*rounds)
                        .and_then(|p| sha_crypt::sha512_crypt_b64(pw, salt, &p))
                } else {
                    sha_crypt::Sha256Params::new(*rounds)
                        .and_then(|p| sha_crypt::sha256_crypt_b64(pw, salt, &p))
                };
                match out {
                    // Both are the fixed-length base64 of the digest, so only content is compared.
                    Ok(out) => bool::from(out.as_bytes().ct_eq(hash.as_bytes())),
                    Err(_) => false,
                }
            }
            Credential::Plain(digest) => {
                let got: [u8; 32] = Sha256::digest(password.as_bytes()).into();
                bool::from(got.ct_eq(digest))
            }
        }
    }
}

/// Parses the part of a SHA-crypt string after `$5$`/`$6$`: `[rounds=N$]salt$hash`. Rounds are
/// clamped and the salt truncated to 16 bytes exactly as glibc's crypt does, so every hash glibc
/// accepts verifies the same here.
fn parse_sha_crypt(rest: &str, sha512: bool) -> Result<Credential, String> {
    let family = if sha512 { "$6$" } else { "$5$" };
    let mut parts: Vec<&str> = rest.split('$').collect();
    let mut rounds = sha_crypt::ROUNDS_DEFAULT;
    if let Some(r) = parts.first().and_then(|p| p.strip_prefix("rounds=")) {
        let n: u64 = r
            .parse()
            .map_err(|_| format!("invalid SHA-crypt {family} rounds {r:?}"))?;
        let (min, max) = (sha_crypt::ROUNDS_MIN as u64, sha_crypt::ROUNDS_MAX as u64);
        rounds = usize::try_from(n.clamp(min, max)).unwrap_or(sha_crypt::ROUNDS_DEFAULT);
        parts.remove(0);
    }
    let [salt, hash] = parts.as_slice() else {
        return Err(format!(
            "invalid SHA-crypt {family} hash (expected {family}[rounds=N$]SALT$HASH)"
        ));
    };
    let want = if sha512 { 86 } else { 43 };
    let b64 = |c: u8| c.is_ascii_alphanumeric() || c == b'.' || c == b'/';
    if hash.len() != want || !hash.bytes().all(b64) {
        return Err(format!(
            "invalid SHA-crypt {family} hash value (expected {want} characters of ./0-9A-Za-z)"
        ));
    }
    // glibc uses at most 16 bytes of salt; cut on a char boundary so non-ASCII cannot panic.
    let mut end = salt.len().min(16);
    while !salt.is_char_boundary(end) {
        end -= 1;
    }
    Ok(Credential::ShaCrypt {
        sha512,
        rounds,
        salt: salt[..end].to_owned(),
        hash: (*hash).to_owned(),
    })
}

#[derive(Clone, Debug)]
struct Entry {
    info: UserInfo,
    cred: Credential,
}

#[derive(Debug)]
struct Inner {
    users: HashMap<String, Entry>,
    /// The credential verified for unknown user names, so a miss costs what a hit costs.
    decoy: Option<Credential>,
    anonymous: Option<UserInfo>,
    cache: Option<LoginCache>,
}

/// The users, loaded once and shared read-only; cloning is cheap (an `Arc`). A reload (SIGHUP)
/// builds a new `UserDb` and swaps it in; sessions already logged in keep their `UserInfo`.
#[derive(Clone, Debug)]
pub struct UserDb {
    inner: Arc<Inner>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    user: Vec<RawUser>,
    anonymous: Option<RawAnon>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: String,
    password: String,
    root: PathBuf,
    permissions: Option<Vec<String>>,
    /// "optional" or "required".
    tls: Option<String>,
    /// "optional" or "required".
    tls_data: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAnon {
    enabled: Option<bool>,
    root: Option<PathBuf>,
    incoming: Option<String>,
}

/// Whether `name` is one of the anonymous login names (case-insensitive, as clients vary).
fn is_anon_name(name: &str) -> bool {
    name.eq_ignore_ascii_case("anonymous") || name.eq_ignore_ascii_case("ftp")
}

impl UserDb {
    /// Reads and checks the users file at `path`; relative roots resolve against its directory.
    pub fn load(path: impl AsRef<Path>) -> Result<UserDb, UsersError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| UsersError::Io {
            path: path.to_owned(),
            source,
        })?;
        let base = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        Self::parse_named(&text, &base, &path.display().to_string())
    }

    /// Parses users-file text; relative roots resolve against `base_dir`.
    pub fn parse(text: &str, base_dir: impl AsRef<Path>) -> Result<UserDb, UsersError> {
        Self::parse_named(text, base_dir.as_ref(), "users file")
    }

    fn parse_named(text: &str, base: &Path, file: &str) -> Result<UserDb, UsersError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| UsersError::Syntax {
            file: file.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        let invalid = |message: String| UsersError::Invalid {
            file: file.to_owned(),
            message,
        };
        let resolve = |root: &Path| {
            if root.is_absolute() {
                root.to_owned()
            } else {
                base.join(root)
            }
        };

        let anonymous = match raw.anonymous {
            Some(a) if a.enabled.unwrap_or(true) => {
                let root = a
                    .root
                    .filter(|r| !r.as_os_str().is_empty())
                    .ok_or_else(|| invalid("[anonymous]: key \"root\" is required".to_owned()))?;
                let incoming = a.incoming.ok_or_else(|| {
                    invalid("[anonymous]: key \"incoming\" is required".to_owned())
                })?;
                let incoming = VPath::root().resolve(&incoming).map_err(|e| {
                    invalid(format!("[anonymous]: key \"incoming\": {e}: {incoming:?}"))
                })?;
                Some(UserInfo {
                    name: "anonymous".to_owned(),
                    root: resolve(&root),
                    perms: Permissions {
                        read: true,
                        write: true,
                        delete: false,
                        mkdir: false,
                    },
                    anonymous: Some(AnonPolicy {
                        incoming: incoming.as_str().to_owned(),
                    }),
                    tls: UserTls::default(),
                })
            }
            _ => None,
        };

        let mut users = HashMap::with_capacity(raw.user.len());
        let mut decoy = None;
        for u in raw.user {
            let who = format!("user {:?}", u.name);
            if u.name.is_empty() || u.name.chars().any(|c| c.is_control() || c == ' ') {
                return Err(invalid(format!(
                    "{who}: key \"name\": must be non-empty without spaces or control characters"
                )));
            }
            if anonymous.is_some() && is_anon_name(&u.name) {
                return Err(invalid(format!(
                    "{who}: this name is reserved for anonymous logins while [anonymous] is enabled"
                )));
            }
            if users.contains_key(&u.name) {
                return Err(invalid(format!("{who}: defined more than once")));
            }
            let cred = Credential::parse(u.password.trim())
                .map_err(|e| invalid(format!("{who}: key \"password\": {e}")))?;
            if u.root.as_os_str().is_empty() {
                return Err(invalid(format!("{who}: key \"root\": must not be empty")));
            }
            let perms = match &u.permissions {
                None => Permissions::ALL,
                Some(list) => {
                    let mut p = Permissions::NONE;
                    for name in list {
                        match name.as_str() {
                            "read" => p.read = true,
                            "write" => p.write = true,
                            "delete" => p.delete = true,
                            "mkdir" => p.mkdir = true,
                            other => {
                                return Err(invalid(format!(
                                    "{who}: unknown permission {other:?} (expected \"read\", \
                                     \"write\", \"delete\" or \"mkdir\")"
                                )))
                            }
                        }
                    }
                    p
                }
            };
            let required = |key: &str, v: &Option<String>| match v.as_deref() {
                None => Ok(None),
                Some("optional") => Ok(Some(false)),
                Some("required") => Ok(Some(true)),
                Some(other) => Err(invalid(format!(
                    "{who}: key {key:?}: expected \"optional\" or \"required\", got {other:?}"
                ))),
            };
            let tls = UserTls {
                login_required: required("tls", &u.tls)?.unwrap_or(false),
                data_required: required("tls_data", &u.tls_data)?,
            };
            if decoy.is_none() {
                decoy = Some(cred.clone());
            }
            let info = UserInfo {
                name: u.name.clone(),
                root: resolve(&u.root),
                perms,
                anonymous: None,
                tls,
            };
            users.insert(u.name, Entry { info, cred });
        }
        Ok(UserDb {
            inner: Arc::new(Inner {
                users,
                decoy,
                anonymous,
                cache: None,
            }),
        })
    }

    /// One user with all permissions, for the CLI's `--user`/`--password`.
    ///
    /// The password is kept as its SHA-256 and compared in constant time rather than argon2-hashed:
    /// it already sits in this process's memory (argv or the environment), so a slow hash would
    /// protect nothing and only add latency to every login.
    pub fn single(name: &str, password_plain: &str, root: impl Into<PathBuf>) -> UserDb {
        let cred = Credential::Plain(Sha256::digest(password_plain.as_bytes()).into());
        let info = UserInfo {
            name: name.to_owned(),
            root: root.into(),
            perms: Permissions::ALL,
            anonymous: None,
            tls: UserTls::default(),
        };
        let mut users = HashMap::new();
        users.insert(
            name.to_owned(),
            Entry {
                info,
                cred: cred.clone(),
            },
        );
        UserDb {
            inner: Arc::new(Inner {
                users,
                decoy: Some(cred),
                anonymous: None,
                cache: None,
            }),
        }
    }

    /// Checks a login; `Some` with the user's details if it succeeds.
    ///
    /// Blocking and slow by design: call it through `engine::blocking::spawn_blocking`. An unknown
    /// name still costs one verification (against the first user's credential, so the cost matches
    /// a real user's when the file uses one hash family), so timing does not tell which names exist.
    /// Anonymous names (`anonymous`, `ftp`, any case) succeed with any password when `[anonymous]`
    /// is enabled; they are public, so there is nothing to hide.
    pub fn verify(&self, name: &str, password: &str) -> Option<UserInfo> {
        if let Some(anon) = &self.inner.anonymous {
            if is_anon_name(name) {
                return Some(anon.clone());
            }
        }
        match self.inner.users.get(name) {
            Some(entry) => {
                let cache = self.inner.cache.as_ref().filter(|_| entry.cred.is_slow());
                if cache.is_some_and(|c| c.hit(name, password)) {
                    return Some(entry.info.clone());
                }
                let ok = entry.cred.verify(password);
                if ok {
                    if let Some(c) = cache {
                        c.remember(name, password);
                    }
                }
                ok.then(|| entry.info.clone())
            }
            None => {
                let spent = match &self.inner.decoy {
                    Some(c) => c.verify(password),
                    None => decoy_argon2().verify(password),
                };
                std::hint::black_box(spent);
                None
            }
        }
    }

    /// Lets a successful login skip the hash for `ttl` when the same name and password come again
    /// (see [`LoginCache`]); zero disables. Call on a freshly loaded database, before it is shared.
    pub fn with_login_cache(mut self, ttl: Duration) -> UserDb {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.cache = LoginCache::new(ttl),
            None => tracing::warn!("users database already shared; login cache not enabled"),
        }
        self
    }

    /// Number of named users (not counting anonymous).
    pub fn len(&self) -> usize {
        self.inner.users.len()
    }

    /// Whether there are no named users (anonymous may still be enabled).
    pub fn is_empty(&self) -> bool {
        self.inner.users.is_empty()
    }

    /// Whether anonymous logins are enabled.
    pub fn anonymous_enabled(&self) -> bool {
        self.inner.anonymous.is_some()
    }

    /// The roots of all users (anonymous included), so start-up can create or check them.
    pub fn roots(&self) -> Vec<PathBuf> {
        let mut roots: Vec<PathBuf> = self
            .inner
            .users
            .values()
            .map(|e| e.info.root.clone())
            .chain(self.inner.anonymous.iter().map(|a| a.root.clone()))
            .collect();
        roots.sort();
        roots.dedup();
        roots
    }
}

/// An argon2id credential with default parameters, verified for unknown names when the file has no
/// users to borrow a decoy from; made once, on first use. Its salt and password need no secrecy:
/// the result of verifying against it is thrown away.
fn decoy_argon2() -> &'static Credential {
    static DECOY: OnceLock<Credential> = OnceLock::new();
    DECOY.get_or_init(|| {
        let hashed = SaltString::encode_b64(b"ringest-decoy-sa")
            .map_err(|e| e.to_string())
            .and_then(|salt| {
                Argon2::default()
                    .hash_password(b"ringest-decoy", &salt)
                    .map(|h| h.to_string())
                    .map_err(|e| e.to_string())
            });
        // Hashing with default parameters and a valid salt cannot fail; if it somehow did, a plain
        // digest still makes the miss do some work rather than none.
        match hashed {
            Ok(h) => Credential::Argon2(h),
            Err(_) => Credential::Plain([0; 32]),
        }
    })
}

/// Hashes `plain` as argon2id (default parameters: m=19456 KiB, t=2, p=1) with a random 16-byte
/// salt, giving the PHC string to put in a users file (`ringest passwd`).
pub fn hash_password(plain: &str) -> Result<String, UsersError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| UsersError::Hash(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| UsersError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(plain.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| UsersError::Hash(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Vectors made with independent implementations: argon2-cffi and Python bcrypt (pip), and
    // `openssl passwd -5/-6`. All are for the password "secret".
    const ARGON2ID: &str =
        "$argon2id$v=19$m=64,t=1,p=1$BBGaM6NPGtDhZkXtmvTk/w$n1Yp626foZ6j7C2Sx7hTWC6XQfWEyxdts96TMFhiyVM";
    const BCRYPT_2B: &str = "$2b$04$QgrqZqlYqOGiSbccQrdMsuyXGAUEE9uNvqyvpWP2BpVz7MZIPJA6K";
    const BCRYPT_2A: &str = "$2a$04$m244ZWTC84ReEzdA4E6Ji.Zcb/A21h3dvLHGdaqeg1LW3HTnCIKqe";
    // $2y$ is the same algorithm as $2b$ under PHP's name.
    const BCRYPT_2Y: &str = "$2y$04$QgrqZqlYqOGiSbccQrdMsuyXGAUEE9uNvqyvpWP2BpVz7MZIPJA6K";
    const SHA512: &str = "$6$abcdefgh$ltjgWl6579NluT/Vi1nwEvcil.G5Nbc4NiXZaNGStk8PSwGfQv72N2CKPPrVACtLtip/cZ/1GM/O6IND4WQhG.";
    const SHA512_ROUNDS: &str = "$6$rounds=10000$saltsalt$WowrPBpEDVlCoruBosYlrZycTCx3//TyDHYqEhX9DUHHt0XTztUqzQDDUuvUGRA8aUe9p55hcAxeGcu58sm3u.";
    const SHA256: &str = "$5$abcdefgh$gruCpC7VkOTspMQTTSAR8mtlO9Upms.fwqE5y16JVM.";

    fn db_with(hash: &str) -> UserDb {
        let text =
            format!("[[user]]\nname = \"alice\"\npassword = \"{hash}\"\nroot = \"/srv/a\"\n");
        UserDb::parse(&text, "/etc/ringest").unwrap()
    }

    fn err(text: &str) -> String {
        UserDb::parse(text, "/base").unwrap_err().to_string()
    }

    #[test]
    fn login_cache_keeps_wrong_passwords_and_unknown_users_out() {
        for hash in [SHA512, ARGON2ID] {
            let db = db_with(hash).with_login_cache(Duration::from_secs(60));
            for round in 0..3 {
                assert!(
                    db.verify("alice", "secret").is_some(),
                    "{hash} round {round}"
                );
                assert!(
                    db.verify("alice", "secret ").is_none(),
                    "{hash} round {round}"
                );
                assert!(db.verify("alice", "").is_none(), "{hash} round {round}");
                assert!(db.verify("bob", "secret").is_none(), "{hash} round {round}");
            }
        }
        let off = db_with(SHA512).with_login_cache(Duration::ZERO);
        assert!(off.verify("alice", "secret").is_some());
        assert!(off.verify("alice", "secret").is_some());
        assert!(off.verify("alice", "nope").is_none());
    }

    #[test]
    fn every_hash_family_verifies_and_rejects_a_wrong_password() {
        for h in [
            ARGON2ID,
            BCRYPT_2B,
            BCRYPT_2A,
            BCRYPT_2Y,
            SHA512,
            SHA512_ROUNDS,
            SHA256,
        ] {
            let db = db_with(h);
            let ok = db.verify("alice", "secret");
            assert!(ok.is_some(), "{h} should accept the right password");
            assert_eq!(ok.unwrap().name, "alice");
            assert!(db.verify("alice", "Secret").is_none(), "{h}");
            assert!(db.verify("alice", "").is_none(), "{h}");
            assert!(db.verify("bob", "secret").is_none(), "{h}");
        }
    }

    #[test]
    fn hash_password_makes_argon2id_that_verifies() {
        let h = hash_password("pässword").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert_ne!(h, hash_password("pässword").unwrap(), "salt is random");
        let db = db_with(&h);
        assert!(db.verify("alice", "pässword").is_some());
        assert!(db.verify("alice", "password").is_none());
    }

    #[test]
    fn single_user_compares_plain() {
        let db = UserDb::single("u", "pw", "/data");
        let info = db.verify("u", "pw").unwrap();
        assert_eq!(info.root, PathBuf::from("/data"));
        assert_eq!(info.perms, Permissions::ALL);
        assert!(db.verify("u", "pw ").is_none());
        assert!(db.verify("u", "p").is_none());
        assert!(db.verify("U", "pw").is_none());
        assert!(db.verify("anonymous", "x").is_none());
    }

    #[test]
    fn full_file_with_permissions_anonymous_and_relative_roots() {
        let text = format!(
            r#"
[[user]]
name = "alice"
password = "{SHA256}"
root = "alice"
permissions = ["read", "mkdir"]

[[user]]
name = "bob"
password = "{BCRYPT_2B}"
root = "/srv/bob"

[anonymous]
enabled = true
root = "anon"
incoming = "in//coming/"
"#
        );
        let db = UserDb::parse(&text, "/etc/ringest").unwrap();
        assert_eq!(db.len(), 2);
        assert!(db.anonymous_enabled());
        let a = db.verify("alice", "secret").unwrap();
        assert_eq!(a.root, PathBuf::from("/etc/ringest/alice"));
        assert_eq!(
            a.perms,
            Permissions {
                read: true,
                write: false,
                delete: false,
                mkdir: true
            }
        );
        assert_eq!(
            a.access(),
            Some(Access {
                read: true,
                write: false,
                delete: false,
                mkdir: true,
                upload_only: None
            })
        );
        let b = db.verify("bob", "secret").unwrap();
        assert_eq!(b.perms, Permissions::ALL);
        assert_eq!(b.root, PathBuf::from("/srv/bob"));
        for name in ["anonymous", "ftp", "FTP", "Anonymous"] {
            let anon = db.verify(name, "me@example.org").unwrap();
            assert_eq!(anon.name, "anonymous");
            assert_eq!(anon.root, PathBuf::from("/etc/ringest/anon"));
            let pol = anon.anonymous.clone().unwrap();
            assert_eq!(pol.incoming, "/in/coming");
        }
        assert_eq!(
            db.roots(),
            vec![
                PathBuf::from("/etc/ringest/alice"),
                PathBuf::from("/etc/ringest/anon"),
                PathBuf::from("/srv/bob")
            ]
        );
    }

    #[test]
    fn anonymous_users_get_a_drop_box_on_incoming() {
        let text = "[anonymous]\nroot = \"/a\"\nincoming = \"/incoming\"\n";
        let db = UserDb::parse(text, "/").unwrap();
        assert!(db.is_empty());
        let anon = db.verify("ftp", "").unwrap();
        assert!(anon.is_anonymous());
        // The session enforces the drop box (see proto::session's tests): new files beneath
        // /incoming only, nothing read, listed, deleted, made or overwritten anywhere.
        let access = anon.access().unwrap();
        assert_eq!(
            access,
            Access::drop_box(VPath::root().resolve("/incoming").unwrap())
        );
        assert!(!access.read && !access.delete && !access.mkdir);
        // Unknown users still fail (and spend a decoy argon2 verification: no users to borrow).
        assert!(db.verify("alice", "x").is_none());
    }

    #[test]
    fn disabled_anonymous_is_ignored() {
        let text = "[anonymous]\nenabled = false\n";
        let db = UserDb::parse(text, "/").unwrap();
        assert!(!db.anonymous_enabled());
        assert!(db.verify("anonymous", "x").is_none());
    }

    #[test]
    fn errors_name_the_user_and_the_key() {
        let user = |extra: &str| {
            format!("[[user]]\nname = \"alice\"\npassword = \"{SHA256}\"\nroot = \"r\"\n{extra}")
        };
        let e = err(&user("permissions = [\"read\", \"exec\"]\n"));
        assert!(
            e.contains("user \"alice\": unknown permission \"exec\""),
            "{e}"
        );
        let e = err(&user("shell = \"/bin/sh\"\n"));
        assert!(e.contains("shell"), "{e}");
        let e = err("[[user]]\nname = \"alice\"\npassword = \"secret\"\nroot = \"r\"\n");
        assert!(e.contains("user \"alice\": key \"password\""), "{e}");
        assert!(e.contains("not a supported hash"), "{e}");
        let e = err("[[user]]\nname = \"alice\"\npassword = \"$6$salt$short\"\nroot = \"r\"\n");
        assert!(e.contains("user \"alice\": key \"password\""), "{e}");
        let e = err("[[user]]\nname = \"alice\"\npassword = \"$2b$04$tooshort\"\nroot = \"r\"\n");
        assert!(e.contains("bcrypt"), "{e}");
        let e = err(
            "[[user]]\nname = \"alice\"\npassword = \"$argon2id$v=19$garbage\"\nroot = \"r\"\n",
        );
        assert!(e.contains("argon2"), "{e}");
        let e = err("[[user]]\nname = \"alice\"\nroot = \"r\"\n");
        assert!(e.contains("password"), "{e}");
        let e = err(&format!("{}{}", user(""), user("")));
        assert!(e.contains("user \"alice\": defined more than once"), "{e}");
        let e = err(&user("").replace("alice", "al ice"));
        assert!(e.contains("key \"name\""), "{e}");
        let e = err(&user("").replace("root = \"r\"", "root = \"\""));
        assert!(e.contains("user \"alice\": key \"root\""), "{e}");
        let e = err(&format!(
            "{}[anonymous]\nroot = \"a\"\nincoming = \"/in\"\n",
            user("").replace("alice", "ftp")
        ));
        assert!(e.contains("reserved"), "{e}");
        let e = err("[anonymous]\nincoming = \"/in\"\n");
        assert!(e.contains("[anonymous]: key \"root\""), "{e}");
        let e = err("[anonymous]\nroot = \"/a\"\n");
        assert!(e.contains("[anonymous]: key \"incoming\""), "{e}");
        let e = err("[anonymous]\nroot = \"/a\"\nincoming = \"/in\"\nwelcome = \"hi\"\n");
        assert!(e.contains("welcome"), "{e}");
        let e = err("[[user]\n");
        assert!(e.starts_with("users file: "), "{e}");
    }

    #[test]
    fn huge_argon2_memory_cost_is_refused_at_load() {
        let h = "$argon2id$v=19$m=4194304,t=1,p=1$BBGaM6NPGtDhZkXtmvTk/w$n1Yp626foZ6j7C2Sx7hTWC6XQfWEyxdts96TMFhiyVM";
        let text = format!("[[user]]\nname = \"a\"\npassword = \"{h}\"\nroot = \"/r\"\n");
        let e = UserDb::parse(&text, "/").unwrap_err().to_string();
        assert!(e.contains("memory cost"), "{e}");
    }

    #[test]
    fn sha_crypt_rounds_clamp_like_glibc() {
        // glibc clamps rounds below 1000 up to 1000; the stored hash is then the 1000-round one.
        match parse_sha_crypt("rounds=10$salt$x", true) {
            Err(e) => assert!(e.contains("hash value"), "{e}"),
            Ok(_) => panic!("short hash accepted"),
        }
        let Ok(Credential::ShaCrypt { rounds, salt, .. }) = parse_sha_crypt(
            &format!("rounds=10$saltsaltsaltsaltEXTRA${}", "a".repeat(43)),
            false,
        ) else {
            panic!("valid layout rejected")
        };
        assert_eq!(rounds, 1000);
        assert_eq!(salt, "saltsaltsaltsalt");
    }

    #[test]
    fn load_reads_a_file_and_names_it_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        std::fs::write(
            &path,
            format!("[[user]]\nname = \"a\"\npassword = \"{SHA512}\"\nroot = \"data\"\n"),
        )
        .unwrap();
        let db = UserDb::load(&path).unwrap();
        assert_eq!(
            db.verify("a", "secret").unwrap().root,
            dir.path().join("data")
        );
        std::fs::write(&path, "[[user]]\nname = \"a\"\n").unwrap();
        let e = UserDb::load(&path).unwrap_err().to_string();
        assert!(e.starts_with(&path.display().to_string()), "{e}");
        let e = UserDb::load(dir.path().join("missing.toml")).unwrap_err();
        assert!(matches!(e, UsersError::Io { .. }));
        assert!(e.to_string().contains("missing.toml"));
    }
}
