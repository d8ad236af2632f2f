//! The control-connection state machine, sans-IO.
//!
//! The session turns command lines into [`Action`]s: a reply to send, or a piece of I/O for the server
//! to perform (check a password, open a passive listener, run a transfer, touch the filesystem). The
//! server performs it and feeds the outcome back through the matching `*_done` method, which yields the
//! reply. No sockets, clocks or files here, so every path through the protocol is testable directly.

use std::net::{IpAddr, SocketAddr};

use super::checksum::Algo;
use super::command::{
    self, Command, EpsvArg, LineError, ParseError, Password, TransferMode, TransferType,
};
use super::glob::{self, Glob};
use super::listing::FactSet;
use super::path::VPath;
use super::reply::{quote_path, Reply};
use super::site::{self, OctalMode, SiteCmd, SiteError};

/// Static behaviour of sessions, fixed at start-up.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// Text of the 220 greeting.
    pub greeting: String,
    /// Accept MODE B (block mode). Off until the server implements it.
    pub block_mode: bool,
    /// FTPS (RFC 4217) on this connection.
    pub tls: TlsPolicy,
    /// The digests computed inline while uploads arrive (`checksums`); the first the HASH draft
    /// names is HASH's default, so a client that never sends OPTS HASH is answered from what is
    /// stored.
    pub checksums: Vec<Algo>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            greeting: "ringest FTP server ready".into(),
            block_mode: false,
            tls: TlsPolicy::default(),
            checksums: Vec::new(),
        }
    }
}

/// Whether TLS is offered or demanded on a connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TlsMode {
    /// AUTH TLS is refused (no certificate configured).
    #[default]
    Off,
    Optional,
    Required,
}

/// A session's FTPS rules.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TlsPolicy {
    /// For the control connection: `Required` refuses USER before AUTH TLS.
    pub control: TlsMode,
    /// Data connections must be protected (PROT P): PROT C and transfers without PROT P are refused.
    pub data_required: bool,
    /// The connection came in on the implicit-TLS listener: TLS from the first byte.
    pub implicit: bool,
}

/// What a logged-in user may do; checked before any I/O is asked of the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    /// RETR, LIST, NLST, MLSD, MLST, SIZE, MDTM, STAT with a path.
    pub read: bool,
    /// STOR, APPE, STOU, and the target of RNTO.
    pub write: bool,
    /// DELE, RMD, and the source of RNFR.
    pub delete: bool,
    /// MKD.
    pub mkdir: bool,
    /// A drop box (anonymous upload): uploads only beneath this directory and never over an existing
    /// file; nothing else but moving around.
    pub upload_only: Option<VPath>,
}

impl Access {
    /// Everything allowed.
    pub fn full() -> Access {
        Access {
            read: true,
            write: true,
            delete: true,
            mkdir: true,
            upload_only: None,
        }
    }

    /// Anonymous upload into `incoming` only.
    pub fn drop_box(incoming: VPath) -> Access {
        Access {
            read: false,
            write: true,
            delete: false,
            mkdir: false,
            upload_only: Some(incoming),
        }
    }
}

/// Login state.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Auth {
    AwaitUser,
    AwaitPass { user: String },
    Authenticating { user: String },
    LoggedIn { user: String, access: Access },
}

/// How the next data connection is to be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataEndpoint {
    /// The client connects to the passive listener the server opened for this session.
    Passive,
    /// The server connects to the client's address (PORT/EPRT).
    Active(SocketAddr),
    /// MODE B: the data connection kept open after the previous file carries this one too.
    Open,
}

/// What a transfer moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferKind {
    /// STOR: client to server.
    Store,
    /// APPE: client to server, appended to an existing file (created if missing).
    Append,
    /// STOU: client to server under a name the server picks in the given directory.
    StoreUnique,
    /// MLSD: machine-readable listing (RFC 3659).
    MachineList,
    /// RETR: server to client.
    Retrieve,
    /// LIST: long directory listing.
    List,
    /// NLST: names only.
    NameList,
}

/// A transfer the server must run: open the file, make the data connection, send
/// [`Session::transfer_opening`], move the bytes, then report with [`Session::transfer_done`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transfer {
    pub kind: TransferKind,
    pub path: VPath,
    pub endpoint: DataEndpoint,
    pub ttype: TransferType,
    pub mode: TransferMode,
    /// Restart offset from REST (0 when none): where STOR resumes or RETR starts.
    pub offset: u64,
    /// Size announced by ALLO, to reserve space up front and, for stream-mode binary uploads, to
    /// tell a cut connection from a complete file.
    pub allocate: Option<u64>,
    /// Refuse to replace an existing file (drop box uploads).
    pub no_overwrite: bool,
    /// LIST/NLST with a wildcard in the last component: `path` is then the directory to list and
    /// only the entries matching this pattern are listed.
    pub pattern: Option<Box<Glob>>,
    /// LIST/NLST: the argument as the client wrote it (options stripped), from which NLST builds
    /// names that can be fed back to RETR (`sub/f.bin` for `NLST sub`, as vsftpd answers).
    pub arg: Option<String>,
    /// PROT P: the data connection runs TLS (the server's side of the handshake).
    pub protected: bool,
    /// MODE E sends: how many data connections the server opens to a PORT address (`OPTS RETR
    /// Parallelism=`).
    pub parallelism: u16,
    /// MODE E RETR after `REST a-b,...`: the ranges the client has, sorted and disjoint; the send
    /// skips them.
    pub have: Vec<(u64, u64)>,
    /// `ERET P`: send only this many bytes from `offset`; in MODE E the blocks' offsets then count
    /// from `offset`, as globus-gridftp-server sends them.
    pub partial: Option<u64>,
    /// `ESTO A`: write into the file (created if missing, never truncated) from `offset` on, in
    /// place.
    pub adjusted: bool,
}

/// How the passive address is announced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PassiveStyle {
    /// PASV: `227 ... (h1,h2,h3,h4,p1,p2)`.
    Pasv,
    /// EPSV: `229 ... (|||port|)`.
    Epsv,
    /// SPAS: a multi-line 229 listing one `h1,h2,h3,h4,p1,p2` per stripe (one here).
    Striped,
}

/// A filesystem operation the server must run, then report with [`Session::fs_done`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FsOp {
    /// Check that the path is a directory the user may enter.
    ChangeDir(VPath),
    MakeDir(VPath),
    Delete(VPath),
    Size(VPath),
    RemoveDir(VPath),
    /// RNFR: check that the source exists.
    RenameFrom(VPath),
    Rename {
        from: VPath,
        to: VPath,
    },
    ModifyTime(VPath),
    /// MLST: the facts of one path.
    Facts(VPath),
    /// STAT with a path: a listing over the control connection.
    StatList(VPath),
    /// MFMT, two-argument MDTM, SITE UTIME: set the modification time (and, when given, the
    /// access time), seconds since the epoch.
    SetTimes {
        path: VPath,
        mtime: i64,
        atime: Option<i64>,
    },
    /// SITE CHMOD: the mode the client asked for; the server applies its mask and reports the
    /// mode it set with [`FsOutcome::Mode`].
    Chmod {
        path: VPath,
        mode: u32,
    },
    /// CKSM, HASH, XCRC/XMD5/XSHA*: the digest of `length` bytes of the file from `offset`
    /// (`None`: to its end). The server answers with [`FsOutcome::Checksum`].
    Checksum {
        path: VPath,
        algo: Algo,
        offset: u64,
        length: Option<u64>,
    },
}

/// The next thing the server must do for this session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send this reply.
    Reply(Reply),
    /// Send this reply, then close the control connection.
    Close(Reply),
    /// Send this reply in clear, then start TLS on the control connection (the client's handshake
    /// follows). Bytes already received after the AUTH line belong to the handshake.
    StartTls(Reply),
    /// Check the credentials off the I/O path, then call [`Session::login_done`].
    Authenticate { user: String, password: Password },
    /// Open a passive listener (replacing any previous one), then call [`Session::passive_done`].
    OpenPassive { style: PassiveStyle },
    /// Run a transfer.
    Transfer(Box<Transfer>),
    /// Run a filesystem operation.
    Fs(FsOp),
}

/// Why a filesystem operation or transfer failed on the server's side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FsError {
    NotFound,
    Exists,
    PermissionDenied,
    NotADirectory,
    IsADirectory,
    NoSpace,
    /// The storage cannot do this at all (an object store asked to append): a permanent 504,
    /// unlike `Other`'s 451, so clients do not retry it.
    Unsupported(String),
    /// Anything else, with a short description for the reply.
    Other(String),
}

impl FsError {
    /// Maps an errno to the error a reply can explain.
    pub fn from_errno(errno: i32) -> FsError {
        match errno {
            libc_errno::ENOENT => FsError::NotFound,
            libc_errno::EEXIST | libc_errno::ENOTEMPTY => FsError::Exists,
            libc_errno::EACCES
            | libc_errno::EPERM
            | libc_errno::EXDEV
            | libc_errno::ELOOP
            | libc_errno::EROFS => FsError::PermissionDenied,
            libc_errno::ENOTDIR => FsError::NotADirectory,
            libc_errno::EISDIR => FsError::IsADirectory,
            libc_errno::ENOSPC | libc_errno::EDQUOT | libc_errno::EFBIG => FsError::NoSpace,
            other => FsError::Other(format!("error {other}")),
        }
    }

    fn reply(&self, what: &str) -> Reply {
        match self {
            FsError::NotFound => Reply::new(550, format!("{what}: No such file or directory.")),
            FsError::Exists => Reply::new(550, format!("{what}: File exists.")),
            FsError::PermissionDenied => Reply::new(550, format!("{what}: Permission denied.")),
            FsError::NotADirectory => Reply::new(550, format!("{what}: Not a directory.")),
            FsError::IsADirectory => Reply::new(550, format!("{what}: Is a directory.")),
            FsError::NoSpace => Reply::new(552, format!("{what}: Insufficient storage space.")),
            FsError::Unsupported(msg) => Reply::new(504, format!("{what}: {msg}.")),
            FsError::Other(msg) => Reply::new(451, format!("{what}: Local error: {msg}.")),
        }
    }
}

/// errno values used above; fixed by the Linux ABI, kept here so this module needs no libc.
mod libc_errno {
    pub const EPERM: i32 = 1;
    pub const ENOENT: i32 = 2;
    pub const EACCES: i32 = 13;
    pub const EEXIST: i32 = 17;
    pub const EXDEV: i32 = 18;
    pub const ENOTDIR: i32 = 20;
    pub const EISDIR: i32 = 21;
    pub const EFBIG: i32 = 27;
    pub const ENOSPC: i32 = 28;
    pub const EROFS: i32 = 30;
    pub const ENOTEMPTY: i32 = 39;
    pub const ELOOP: i32 = 40;
    pub const EDQUOT: i32 = 122;
}

/// Successful filesystem results.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FsOutcome {
    Done,
    Size(u64),
    /// Modification time, seconds since the epoch.
    ModifyTime(i64),
    /// Preformatted text lines (MLST facts, STAT listing).
    Lines(Vec<String>),
    /// The permission bits SITE CHMOD set (the requested mode within the server's mask).
    Mode(u32),
    /// A digest in lowercase hex, of the file's bytes `offset..end`.
    Checksum {
        hex: String,
        end: u64,
    },
}

/// How a transfer ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransferOutcome {
    /// All bytes moved (and, for uploads, the file landed). `kept_open`: MODE B, the data connection
    /// stays open for the next transfer.
    Complete { bytes: u64, kept_open: bool },
    /// The data connection could not be established.
    NoConnection,
    /// The data connection broke or timed out mid-transfer.
    ConnectionLost,
    /// A local error (before or after the data connection was made).
    Local(FsError),
    /// The client sent ABOR while the transfer ran.
    Aborted,
    /// A stream-mode upload whose data connection closed before the size announced with ALLO
    /// arrived: a cut connection, not a complete file. Nothing was stored.
    Short { received: u64, announced: u64 },
    /// A protected stream-mode upload whose data connection closed without TLS close_notify: a
    /// cut connection, not a complete file. Nothing was stored.
    Truncated { received: u64 },
    /// The data connection's TLS handshake failed (or timed out).
    DataTlsFailed,
    /// The data connection did not resume the control connection's TLS session, which the server
    /// requires (it proves the data connection comes from the client that logged in).
    DataTlsNotResumed,
}

/// One control connection's protocol state.
#[derive(Debug)]
pub struct Session {
    cfg: SessionConfig,
    peer: SocketAddr,
    auth: Auth,
    cwd: VPath,
    ttype: TransferType,
    mode: TransferMode,
    endpoint: Option<DataEndpoint>,
    epsv_all: bool,
    pending_fs: Option<FsOp>,
    pending_transfer: Option<Transfer>,
    /// REST offset for the next transfer.
    rest: u64,
    /// GridFTP `REST a-b,...` (MODE E): ranges the client has; the next RETR sends the rest.
    rest_ranges: Vec<(u64, u64)>,
    /// A MODE B data connection is open and kept for the next transfer.
    block_open: bool,
    /// `OPTS RETR Parallelism=n,...`: data connections for MODE E sends.
    parallelism: u16,
    /// Source of a rename, valid for the command right after RNFR only.
    rename_from: Option<VPath>,
    /// ALLO size for the next upload.
    allocate: Option<u64>,
    /// MLSx facts selected with OPTS MLST.
    mlst: FactSet,
    /// The verb a pending file operation replies for when it is not the op's own (MFMT and SITE
    /// UTIME share [`FsOp::SetTimes`] but answer differently).
    fs_verb: Option<&'static str>,
    /// TLS is on for the control connection (after AUTH TLS, or implicit).
    secure: bool,
    /// PBSZ was sent (RFC 4217: before PROT).
    pbsz: bool,
    /// PROT P: data connections are protected.
    protected: bool,
    /// Data connections must be protected (the server's policy, or the user's).
    data_required: bool,
    /// The algorithm HASH answers with (OPTS HASH).
    hash_algo: Algo,
}

const NOT_LOGGED_IN: &str = "Please login with USER and PASS.";

impl Session {
    /// A new session for a client connecting from `peer`.
    pub fn new(cfg: SessionConfig, peer: SocketAddr) -> Session {
        Session {
            peer,
            auth: Auth::AwaitUser,
            cwd: VPath::root(),
            ttype: TransferType::Ascii,
            mode: TransferMode::Stream,
            endpoint: None,
            epsv_all: false,
            pending_fs: None,
            pending_transfer: None,
            rest: 0,
            rest_ranges: Vec::new(),
            block_open: false,
            parallelism: 1,
            rename_from: None,
            allocate: None,
            mlst: FactSet::ALL,
            fs_verb: None,
            secure: cfg.tls.implicit,
            pbsz: false,
            protected: false,
            data_required: cfg.tls.data_required,
            hash_algo: cfg
                .checksums
                .iter()
                .copied()
                .find(|a| Algo::HASH.contains(a))
                .unwrap_or(Algo::Sha256),
            cfg,
        }
    }

    /// The 220 greeting sent when the connection opens.
    pub fn greeting(&self) -> Reply {
        Reply::new(220, self.cfg.greeting.clone())
    }

    /// The logged-in user, if any.
    pub fn user(&self) -> Option<&str> {
        match &self.auth {
            Auth::LoggedIn { user, .. } => Some(user),
            _ => None,
        }
    }

    /// The MLSx facts the client selected.
    pub fn mlst_facts(&self) -> FactSet {
        self.mlst
    }

    /// The logged-in user's access, if any.
    pub fn access(&self) -> Option<&Access> {
        match &self.auth {
            Auth::LoggedIn { access, .. } => Some(access),
            _ => None,
        }
    }

    /// The transfer being run, if any (STAT during a transfer reports it).
    pub fn pending_transfer(&self) -> Option<&Transfer> {
        self.pending_transfer.as_ref()
    }

    pub fn cwd(&self) -> &VPath {
        &self.cwd
    }

    pub fn mode(&self) -> TransferMode {
        self.mode
    }

    /// TLS is on for the control connection.
    pub fn is_secure(&self) -> bool {
        self.secure
    }

    /// Data connections of the next transfers are protected (PROT P).
    pub fn data_protected(&self) -> bool {
        self.protected
    }

    /// The logged-in user's own rule for data connections (`true`: PROT P required), in place of
    /// the server's.
    pub fn set_data_required(&mut self, required: bool) {
        self.data_required = required;
    }

    /// Result of [`Action::Authenticate`] for a correct password whose account may not log in this
    /// way (it requires TLS): 530 with the reason.
    pub fn login_refused(&mut self, why: &str) -> Reply {
        self.auth = Auth::AwaitUser;
        Reply::new(530, why)
    }

    /// Whether the server should keep the MODE B data connection it holds. Anything that ends it
    /// (PASV/EPSV/PORT/EPRT, MODE S, a failed transfer) clears this; the server then closes it.
    pub fn keep_data_connection(&self) -> bool {
        self.block_open
    }

    /// Handles one framed line (or a framing error) from the control connection.
    pub fn on_line(&mut self, line: Result<Vec<u8>, LineError>) -> Action {
        let line = match line {
            Ok(l) => l,
            Err(LineError::TooLong) => {
                return Action::Reply(Reply::new(500, "Command line too long."))
            }
        };
        match command::parse(&line) {
            Ok(cmd) => self.on_command(cmd),
            Err(ParseError::Empty) => Action::Reply(Reply::new(500, "Empty command.")),
            Err(ParseError::UnsupportedMode(m)) => {
                let available = if self.cfg.block_mode {
                    "S (stream), B (block) and E (extended block)"
                } else {
                    "S (stream)"
                };
                reply(
                    504,
                    format!("MODE {m} not implemented; available modes: {available}."),
                )
            }
            Err(e) => Action::Reply(Reply::new(e.reply_code(), parse_error_text(&e))),
        }
    }

    /// Handles one parsed command.
    pub fn on_command(&mut self, cmd: Command) -> Action {
        let logged_in = matches!(self.auth, Auth::LoggedIn { .. });
        if !logged_in && !cmd.allowed_before_login() {
            return reply(530, NOT_LOGGED_IN);
        }
        // RNFR's source is valid for the very next command only.
        let rename_from = self.rename_from.take();
        // ALLO applies to the next upload and is consumed by it (see `transfer`).
        if let Some(denied) = self.denied(&cmd) {
            return denied;
        }
        match cmd {
            Command::User(_) if self.cfg.tls.control == TlsMode::Required && !self.secure => reply(
                530,
                "TLS required: send AUTH TLS (and PBSZ 0, PROT P) before USER.",
            ),
            Command::User(name) => self.user_cmd(name),
            Command::Auth(mech) => self.auth_cmd(&mech),
            Command::Pbsz(_) if !self.secure => reply(503, "PBSZ requires AUTH TLS first."),
            Command::Pbsz(_) => {
                self.pbsz = true;
                reply(200, "PBSZ=0")
            }
            Command::Prot(_) if !self.secure => reply(503, "PROT requires AUTH TLS first."),
            Command::Prot(_) if !self.pbsz => reply(503, "PROT requires PBSZ first."),
            Command::Prot(level) => match level.as_str() {
                "P" => {
                    self.protected = true;
                    self.block_open = false;
                    reply(200, "PROT now Private.")
                }
                "C" if self.data_required => reply(
                    534,
                    "PROT C refused: this server requires protected data connections (PROT P).",
                ),
                "C" => {
                    self.protected = false;
                    self.block_open = false;
                    reply(200, "PROT now Clear.")
                }
                "S" | "E" => reply(536, format!("PROT {level} not supported; use C or P.")),
                _ => reply(504, "PROT must be C, S, E or P."),
            },
            Command::Ccc => reply(534, "CCC refused: the control connection stays protected."),
            Command::Pass(password) => match std::mem::replace(&mut self.auth, Auth::AwaitUser) {
                Auth::AwaitPass { user } => {
                    self.auth = Auth::Authenticating { user: user.clone() };
                    Action::Authenticate { user, password }
                }
                Auth::LoggedIn { user, access } => {
                    self.auth = Auth::LoggedIn { user, access };
                    reply(230, "Already logged in.")
                }
                _ => reply(503, "Login with USER first."),
            },
            Command::Acct(_) => reply(202, "ACCT not needed."),
            Command::Quit => Action::Close(Reply::new(221, "Goodbye.")),
            Command::Noop => reply(200, "NOOP ok."),
            Command::Syst => reply(215, "UNIX Type: L8"),
            Command::Feat => Action::Reply(self.feat()),
            Command::Opts(name, value) => {
                match (name.as_str(), value.as_deref().map(str::to_ascii_uppercase)) {
                    ("UTF8", Some(v)) if v == "ON" || v.is_empty() => {
                        reply(200, "Always in UTF8 mode.")
                    }
                    ("UTF8", None) => reply(200, "Always in UTF8 mode."),
                    ("UTF8", Some(_)) => reply(504, "UTF8 cannot be turned off."),
                    ("HASH", None) => reply(200, self.hash_algo.hash_name()),
                    ("HASH", Some(_)) => {
                        let name = value.as_deref().unwrap_or("").trim();
                        match Algo::parse(name).filter(|a| Algo::HASH.contains(a)) {
                            Some(a) => {
                                self.hash_algo = a;
                                reply(200, a.hash_name())
                            }
                            // draft-bryan-ftpext-hash: the selection stays as it was.
                            None => reply(501, "Unknown algorithm, current selection not changed."),
                        }
                    }
                    ("MLST", _) => {
                        self.mlst = FactSet::parse(value.as_deref().unwrap_or(""));
                        reply(200, format!("MLST OPTS {}", self.mlst.names()))
                    }
                    ("RETR", Some(v)) => match parse_parallelism(&v) {
                        Some(n) => {
                            self.parallelism = n;
                            reply(200, "OPTS Command Successful.")
                        }
                        None => reply(
                            501,
                            format!(
                                "Bad OPTS RETR: expected Parallelism=n,n,n; with n from 1 to {}.",
                                MAX_PARALLELISM
                            ),
                        ),
                    },
                    _ => reply(501, "Option not understood."),
                }
            }
            // RFC 7151: HOST selects the virtual host before USER; afterwards it is out of sequence.
            Command::Host(_) if !matches!(self.auth, Auth::AwaitUser) => {
                reply(503, "HOST must be sent before USER and PASS (RFC 7151).")
            }
            Command::Host(_) => reply(220, "Host accepted."),
            Command::Type(t) => {
                self.ttype = t;
                match t {
                    TransferType::Ascii => reply(200, "Switching to ASCII mode."),
                    TransferType::Image => reply(200, "Switching to Binary mode."),
                }
            }
            Command::Stru(_) => reply(200, "Structure set to F."),
            Command::Mode(TransferMode::Stream) => {
                self.mode = TransferMode::Stream;
                self.block_open = false;
                reply(200, "Mode set to S.")
            }
            Command::Mode(TransferMode::Block) if self.cfg.block_mode => {
                self.mode = TransferMode::Block;
                reply(200, "Mode set to B.")
            }
            Command::Mode(TransferMode::Block) => reply(504, "Block mode not supported."),
            Command::Mode(TransferMode::Extended) if self.cfg.block_mode => {
                self.mode = TransferMode::Extended;
                reply(200, "Mode set to E.")
            }
            Command::Mode(TransferMode::Extended) => reply(
                504,
                "MODE E not available (no registered buffers); available modes: S (stream).",
            ),
            Command::Pasv if self.epsv_all => reply(501, "PASV not allowed after EPSV ALL."),
            Command::Pasv => {
                if !self.peer.ip().to_canonical().is_ipv4() {
                    return reply(522, "Network protocol not supported, use EPSV (2).");
                }
                self.block_open = false;
                Action::OpenPassive {
                    style: PassiveStyle::Pasv,
                }
            }
            Command::Spas if self.mode != TransferMode::Extended => {
                reply(503, "SPAS needs MODE E.")
            }
            Command::Spas => {
                if !self.peer.ip().to_canonical().is_ipv4() {
                    return reply(522, "Network protocol not supported, use EPSV (2).");
                }
                self.block_open = false;
                Action::OpenPassive {
                    style: PassiveStyle::Striped,
                }
            }
            Command::Epsv(EpsvArg::All) => {
                self.epsv_all = true;
                reply(200, "EPSV ALL ok.")
            }
            Command::Epsv(EpsvArg::Proto(p)) => {
                let v4 = self.peer.ip().to_canonical().is_ipv4();
                if (p == 1 && v4) || (p == 2 && !v4) {
                    self.block_open = false;
                    Action::OpenPassive {
                        style: PassiveStyle::Epsv,
                    }
                } else {
                    reply(
                        522,
                        if v4 {
                            "Network protocol not supported, use (1)"
                        } else {
                            "Network protocol not supported, use (2)"
                        },
                    )
                }
            }
            Command::Epsv(EpsvArg::Any) => {
                self.block_open = false;
                Action::OpenPassive {
                        style: PassiveStyle::Epsv,
                    }
            }
            Command::RestRanges(_) if self.mode != TransferMode::Extended => {
                reply(501, "REST with ranges needs MODE E.")
            }
            Command::RestRanges(r) => {
                self.rest = 0;
                self.rest_ranges = r;
                reply(350, "Restart Marker OK.")
            }
            Command::Rest(n) => {
                self.rest = n;
                self.rest_ranges.clear();
                reply(350, format!("Restart position accepted ({n})."))
            }
            Command::Port(addr) => self.active(SocketAddr::V4(addr), "PORT"),
            Command::Eprt(addr) => self.active(addr, "EPRT"),
            Command::Pwd => reply(
                257,
                format!(
                    "{} is the current directory.",
                    quote_path(self.cwd.as_str())
                ),
            ),
            Command::Cwd(arg) => self.fs(&arg, FsOp::ChangeDir),
            Command::Cdup => self.fs("..", FsOp::ChangeDir),
            Command::Mkd(arg) => self.fs(&arg, FsOp::MakeDir),
            Command::Dele(arg) => self.fs(&arg, FsOp::Delete),
            Command::Size(arg) => self.fs(&arg, FsOp::Size),
            Command::Rmd(arg) => self.fs(&arg, FsOp::RemoveDir),
            Command::Mdtm(arg) => self.fs(&arg, FsOp::ModifyTime),
            Command::Mfmt { time, path } => self.set_times(&path, time, None, "MFMT"),
            Command::MdtmSet { time, path } => self.set_times(&path, time, None, "MDTM"),
            Command::Site(arg) => self.site(&arg),
            Command::Cksm {
                algo,
                offset,
                length,
                path,
            } => match Algo::parse(&algo) {
                Some(algo) => self.checksum(&path, algo, offset, length, "CKSM"),
                None => reply(
                    504,
                    format!("CKSM: unsupported algorithm; supported: {}.", cksm_list(false)),
                ),
            },
            Command::Hash(path) => self.checksum(&path, self.hash_algo, 0, None, "HASH"),
            Command::XDigest { algo, path } => {
                let verb = Command::XDigest {
                    algo,
                    path: String::new(),
                }
                .verb();
                self.checksum(&path, algo, 0, None, verb)
            }
            Command::Mlst(arg) => self.fs(arg.as_deref().unwrap_or("."), FsOp::Facts),
            Command::Stat(Some(arg)) => self.fs(&arg, FsOp::StatList),
            Command::Stat(None) => Action::Reply(self.status()),
            Command::Rnfr(arg) => self.fs(&arg, FsOp::RenameFrom),
            Command::Rnto(arg) => match rename_from {
                None => reply(503, "RNFR required first."),
                Some(from) => match self.resolve(&arg) {
                    Ok(to) => {
                        let op = FsOp::Rename { from, to };
                        self.pending_fs = Some(op.clone());
                        self.fs_verb = None;
                        Action::Fs(op)
                    }
                    Err(a) => a,
                },
            },
            Command::Stor(arg) => self.transfer(TransferKind::Store, Some(&arg)),
            Command::Appe(arg) => self.transfer(TransferKind::Append, Some(&arg)),
            Command::Stou(arg) => self.transfer(TransferKind::StoreUnique, Some(arg.as_deref().unwrap_or("."))),
            Command::Retr(arg) => self.transfer(TransferKind::Retrieve, Some(&arg)),
            Command::Eret { offset, len, path } => {
                self.rest = offset;
                self.rest_ranges.clear();
                self.extended_transfer(TransferKind::Retrieve, &path, |t| t.partial = Some(len))
            }
            Command::Esto { offset, path } => {
                self.rest = offset;
                self.rest_ranges.clear();
                self.extended_transfer(TransferKind::Store, &path, |t| t.adjusted = true)
            }
            Command::List(arg) => self.transfer(TransferKind::List, arg.as_deref()),
            Command::Nlst(arg) => self.transfer(TransferKind::NameList, arg.as_deref()),
            Command::Mlsd(arg) => self.transfer(TransferKind::MachineList, arg.as_deref()),
            Command::Allo(n) => {
                self.allocate = Some(n);
                reply(200, "ALLO ok; space will be reserved for the next upload.")
            }
            Command::Abor => {
                // Nothing runs (a running transfer's ABOR is handled by the server while it runs);
                // a kept MODE B connection is closed.
                self.block_open = false;
                reply(226, "No transfer to ABOR.")
            }
            Command::Help(Some(topic)) if topic.trim().eq_ignore_ascii_case("SITE") => {
                Action::Reply(site_help())
            }
            Command::Help(_) => Action::Reply(Reply::multi(
                214,
                vec![
                    "The following commands are recognized.".into(),
                    "ABOR ACCT ALLO APPE CDUP CWD DELE EPRT EPSV FEAT HELP HOST LIST MDTM MFMT MKD MLSD".into(),
                    "MLST MODE NLST NOOP OPTS PASS PASV PORT PWD QUIT REST RETR RMD RNFR RNTO SITE SIZE".into(),
                    "STAT STOR STOU STRU SYST TYPE USER XCUP XCWD XMKD XPWD XRMD".into(),
                    "CKSM HASH XCRC XMD5 XSHA1 XSHA256 XSHA512".into(),
                    "Help OK.".into(),
                ],
            )),
            other => reply(502, format!("{} not implemented.", other.verb())),
        }
    }

    /// Refuses a command the user's access does not allow, before any I/O.
    fn denied(&self, cmd: &Command) -> Option<Action> {
        let Auth::LoggedIn { access, .. } = &self.auth else {
            return None;
        };
        let ok = match cmd {
            Command::Retr(_)
            | Command::Eret { .. }
            | Command::List(_)
            | Command::Nlst(_)
            | Command::Mlsd(_)
            | Command::Mlst(_)
            | Command::Size(_)
            | Command::Mdtm(_)
            | Command::Stat(Some(_))
            | Command::Cksm { .. }
            | Command::Hash(_)
            | Command::XDigest { .. } => access.read,
            Command::Stor(_) | Command::Stou(_) | Command::Rnto(_) | Command::Allo(_) => {
                access.write
            }
            // Changing what is already stored is not a drop box's business.
            Command::Mfmt { .. } | Command::MdtmSet { .. } => {
                access.write && access.upload_only.is_none()
            }
            Command::Appe(_) | Command::Esto { .. } => access.write && access.upload_only.is_none(),
            Command::Dele(_) | Command::Rmd(_) | Command::Rnfr(_) => access.delete,
            Command::Mkd(_) => access.mkdir,
            _ => true,
        };
        if !ok {
            return Some(reply(550, "Permission denied."));
        }
        if let Command::Stor(arg)
        | Command::Appe(arg)
        | Command::Esto { path: arg, .. }
        | Command::Stou(Some(arg))
        | Command::Mkd(arg)
        | Command::Rnto(arg) = cmd
        {
            if self.cwd.resolve(arg).is_ok_and(|p| p.is_reserved()) {
                return Some(reply(553, "File name is reserved by the server."));
            }
        }
        let Some(dir) = &access.upload_only else {
            return None;
        };
        let target = match cmd {
            Command::Stor(arg) | Command::Stou(Some(arg)) => {
                self.cwd.resolve(arg).ok().and_then(|p| p.parent())
            }
            Command::Stou(None) => Some(self.cwd.clone()),
            _ => return None,
        };
        match target {
            Some(d) if is_within(&d, dir) => None,
            _ => Some(reply(
                553,
                "Uploads are only allowed into the incoming directory.",
            )),
        }
    }

    /// STAT without argument: the session's state (RFC 959 211 reply).
    fn status(&self) -> Reply {
        let mut lines = vec!["ringest FTP server status:".to_string()];
        lines.push(format!("Connected to {}", self.peer.ip()));
        if let Some(u) = self.user() {
            lines.push(format!("Logged in as {u}"));
        }
        let ty = match self.ttype {
            TransferType::Ascii => "ASCII",
            TransferType::Image => "BINARY",
        };
        let mode = match self.mode {
            TransferMode::Stream => "Stream",
            TransferMode::Block => "Block",
            TransferMode::Extended => "Extended block",
        };
        lines.push(format!("TYPE: {ty}, STRUcture: File, MODE: {mode}"));
        lines.push(match (self.secure, self.protected) {
            (false, _) => "Control connection in clear".into(),
            (true, false) => "Control connection protected (TLS); data in clear".into(),
            (true, true) => "Control connection and data protected (TLS)".into(),
        });
        lines.push(if self.block_open {
            "Data connection open (MODE B)".into()
        } else {
            "No data connection".into()
        });
        lines.push("End of status".into());
        Reply::multi(211, lines)
    }

    /// AUTH TLS (RFC 4217 4.1): only before login, once.
    fn auth_cmd(&mut self, mech: &str) -> Action {
        if self.cfg.tls.control == TlsMode::Off {
            return reply(502, "TLS is not enabled on this server.");
        }
        if !matches!(mech, "TLS" | "SSL" | "TLS-C" | "TLS-P") {
            return reply(504, format!("AUTH {mech} not supported; use AUTH TLS."));
        }
        if self.secure {
            return reply(503, "Already using TLS.");
        }
        if matches!(
            self.auth,
            Auth::LoggedIn { .. } | Auth::Authenticating { .. }
        ) {
            return reply(503, "AUTH TLS must come before login.");
        }
        // A USER sent in clear is forgotten: the login starts again under TLS.
        self.auth = Auth::AwaitUser;
        self.secure = true;
        // Old clients that say AUTH SSL (or TLS-P) expect protected data without PROT P.
        if matches!(mech, "SSL" | "TLS-P") {
            self.pbsz = true;
            self.protected = true;
        }
        Action::StartTls(Reply::new(234, format!("AUTH {mech} successful.")))
    }

    fn user_cmd(&mut self, name: String) -> Action {
        match &self.auth {
            Auth::LoggedIn { .. } => reply(530, "Can't change to another user."),
            Auth::Authenticating { .. } => reply(503, "Login in progress."),
            _ => {
                self.auth = Auth::AwaitPass { user: name };
                reply(331, "Please specify the password.")
            }
        }
    }

    /// Result of [`Action::Authenticate`]: the user's access, or `None` for a failed login.
    pub fn login_done(&mut self, access: Option<Access>) -> Reply {
        match (std::mem::replace(&mut self.auth, Auth::AwaitUser), access) {
            (Auth::Authenticating { user }, Some(access)) => {
                self.auth = Auth::LoggedIn { user, access };
                self.cwd = VPath::root();
                Reply::new(230, "Login successful.")
            }
            _ => Reply::new(530, "Login incorrect."),
        }
    }

    /// Result of [`Action::Authenticate`] when the server could not serve the login at all (out of
    /// resources, the user's home missing): 421 with `why`, after which the server closes the
    /// connection (RFC 959: 421 is the reply that precedes a close). Not a failed login.
    pub fn login_unavailable(&mut self, why: &str) -> Reply {
        self.auth = Auth::AwaitUser;
        Reply::new(421, why)
    }

    /// Result of [`Action::OpenPassive`]: the address the client should connect to, or `None`.
    pub fn passive_done(&mut self, style: PassiveStyle, addr: Option<SocketAddr>) -> Reply {
        let Some(addr) = addr else {
            self.endpoint = None;
            return Reply::new(425, "Can't open passive connection.");
        };
        self.endpoint = Some(DataEndpoint::Passive);
        if style == PassiveStyle::Epsv {
            return Reply::new(
                229,
                format!("Entering Extended Passive Mode (|||{}|)", addr.port()),
            );
        }
        match addr.ip().to_canonical() {
            IpAddr::V4(ip) => {
                let o = ip.octets();
                let (p1, p2) = (addr.port() >> 8, addr.port() & 0xff);
                let hp = format!("{},{},{},{},{p1},{p2}", o[0], o[1], o[2], o[3]);
                match style {
                    PassiveStyle::Striped => Reply::multi(
                        229,
                        vec!["Entering Striped Passive Mode.".into(), hp, "End".into()],
                    ),
                    _ => Reply::new(227, format!("Entering Passive Mode ({hp}).")),
                }
            }
            IpAddr::V6(_) => Reply::new(522, "Network protocol not supported, use EPSV."),
        }
    }

    /// PORT/EPRT: only to the control connection's own peer and an unprivileged port, so the server can
    /// never be used to bounce connections to third parties.
    fn active(&mut self, addr: SocketAddr, verb: &str) -> Action {
        if self.epsv_all {
            return reply(501, "PORT not allowed after EPSV ALL.");
        }
        self.block_open = false;
        if addr.ip().to_canonical() != self.peer.ip().to_canonical() || addr.port() < 1024 {
            self.endpoint = None;
            return reply(500, format!("Illegal {verb} command."));
        }
        self.endpoint = Some(DataEndpoint::Active(addr));
        let passive = if verb == "EPRT" { "EPSV" } else { "PASV" };
        reply(
            200,
            format!("{verb} command successful. Consider using {passive}."),
        )
    }

    /// MFMT, two-argument MDTM and SITE UTIME: set a file's times. `verb` is what the replies
    /// name (SITE UTIME answers 200, the others 213 with the new time).
    fn set_times(
        &mut self,
        arg: &str,
        mtime: i64,
        atime: Option<i64>,
        verb: &'static str,
    ) -> Action {
        match self.resolve(arg) {
            Ok(path) => {
                let op = FsOp::SetTimes { path, mtime, atime };
                self.pending_fs = Some(op.clone());
                self.fs_verb = Some(verb);
                Action::Fs(op)
            }
            Err(a) => a,
        }
    }

    /// CKSM, HASH and the X-digests: `verb` picks the reply's form in [`Session::fs_done`].
    fn checksum(
        &mut self,
        arg: &str,
        algo: Algo,
        offset: u64,
        length: Option<u64>,
        verb: &'static str,
    ) -> Action {
        match self.resolve(arg) {
            Ok(path) => {
                let op = FsOp::Checksum {
                    path,
                    algo,
                    offset,
                    length,
                };
                self.pending_fs = Some(op.clone());
                self.fs_verb = Some(verb);
                Action::Fs(op)
            }
            Err(a) => a,
        }
    }

    /// SITE: CHMOD, UTIME and HELP; anything else is 502.
    fn site(&mut self, arg: &str) -> Action {
        let may_change = self
            .access()
            .is_some_and(|a| a.write && a.upload_only.is_none());
        match site::parse_site(arg) {
            Ok(SiteCmd::Help) => Action::Reply(site_help()),
            Ok(SiteCmd::Noted { clientinfo: true }) => reply(250, "OK."),
            Ok(SiteCmd::Noted { clientinfo: false }) => reply(200, "Buffer size noted."),
            Ok(SiteCmd::Unknown(name)) => reply(502, format!("SITE {name} not implemented.")),
            Ok(_) if !may_change => reply(550, "Permission denied."),
            Ok(SiteCmd::Utime { path, mtime, atime }) => {
                self.set_times(&path, mtime, atime, "SITE UTIME")
            }
            Ok(SiteCmd::Chmod { path, mode }) => match self.resolve(&path) {
                Ok(path) => {
                    let op = FsOp::Chmod { path, mode };
                    self.pending_fs = Some(op.clone());
                    self.fs_verb = Some("SITE CHMOD");
                    Action::Fs(op)
                }
                Err(a) => a,
            },
            Err(SiteError::Usage(usage)) => reply(501, format!("Usage: {usage}.")),
        }
    }

    fn resolve(&self, arg: &str) -> Result<VPath, Action> {
        self.cwd
            .resolve(arg)
            .map_err(|_| reply(553, "File name not allowed."))
    }

    fn fs(&mut self, arg: &str, op: fn(VPath) -> FsOp) -> Action {
        match self.resolve(arg) {
            Ok(path) => {
                let op = op(path);
                self.pending_fs = Some(op.clone());
                self.fs_verb = None;
                Action::Fs(op)
            }
            Err(a) => a,
        }
    }

    /// Result of [`Action::Fs`].
    pub fn fs_done(&mut self, result: Result<FsOutcome, FsError>) -> Reply {
        let Some(op) = self.pending_fs.take() else {
            return Reply::new(503, "No filesystem operation pending.");
        };
        let verb = self.fs_verb.take();
        match (op, result) {
            (FsOp::SetTimes { .. }, Ok(_)) if verb == Some("SITE UTIME") => {
                Reply::new(200, "SITE UTIME command successful.")
            }
            (FsOp::SetTimes { path, mtime, .. }, Ok(_)) => Reply::new(
                213,
                format!(
                    "Modify={}; {}",
                    super::listing::timeval(mtime),
                    path.as_str()
                ),
            ),
            (
                FsOp::Checksum {
                    path, algo, offset, ..
                },
                Ok(FsOutcome::Checksum { hex, end }),
            ) => match verb {
                // GridFTP: the bare hex (globus-url-copy -verify-checksum compares it).
                Some("CKSM") => Reply::new(213, hex),
                // draft-bryan-ftpext-hash: algorithm, byte range (its last byte included, as
                // RANG counts; an empty file says 0-0), hash, path.
                Some("HASH") => Reply::new(
                    213,
                    format!(
                        "{} {offset}-{} {hex} {}",
                        algo.hash_name(),
                        end.saturating_sub(1).max(offset),
                        path.as_str()
                    ),
                ),
                // ProFTPD mod_digest's XCRC/XMD5/XSHA*.
                _ => Reply::new(250, hex),
            },
            (FsOp::Checksum { .. }, Err(FsError::IsADirectory)) => Reply::new(
                550,
                format!("{}: Not a regular file.", verb.unwrap_or("CKSM")),
            ),
            (FsOp::Chmod { .. }, Ok(FsOutcome::Mode(m))) => Reply::new(
                200,
                format!("SITE CHMOD command ok (mode {}).", OctalMode(m)),
            ),
            (FsOp::ChangeDir(p), Ok(_)) => {
                self.cwd = p;
                Reply::new(250, "Directory successfully changed.")
            }
            (FsOp::ChangeDir(_), Err(FsError::NotFound | FsError::NotADirectory)) => {
                Reply::new(550, "Failed to change directory.")
            }
            (FsOp::MakeDir(p), Ok(_)) => {
                Reply::new(257, format!("{} created.", quote_path(p.as_str())))
            }
            (FsOp::Delete(_), Ok(_)) => Reply::new(250, "Delete operation successful."),
            (FsOp::Size(_), Ok(FsOutcome::Size(n))) => Reply::new(213, n.to_string()),
            (FsOp::Size(_) | FsOp::ModifyTime(_), Err(FsError::IsADirectory)) => {
                Reply::new(550, "Not a plain file.")
            }
            (FsOp::ModifyTime(_), Ok(FsOutcome::ModifyTime(t))) => {
                Reply::new(213, super::listing::timeval(t))
            }
            (FsOp::RemoveDir(_), Ok(_)) => {
                Reply::new(250, "Remove directory operation successful.")
            }
            (FsOp::RenameFrom(p), Ok(_)) => {
                self.rename_from = Some(p);
                Reply::new(350, "Ready for RNTO.")
            }
            (FsOp::Rename { .. }, Ok(_)) => Reply::new(250, "Rename successful."),
            (FsOp::Facts(p), Ok(FsOutcome::Lines(lines))) => {
                let mut all = vec![format!("Listing {}", p.as_str())];
                // The encoder puts the single leading space RFC 3659 requires before each facts line.
                all.extend(lines);
                all.push("End".into());
                Reply::multi(250, all)
            }
            (FsOp::StatList(p), Ok(FsOutcome::Lines(lines))) => {
                let mut all = vec![format!("Status of {}:", p.as_str())];
                all.extend(lines);
                all.push("End of status".into());
                Reply::multi(213, all)
            }
            (op, Err(e)) => e.reply(verb.unwrap_or_else(|| op_name(&op))),
            (op, Ok(_)) => Reply::new(451, format!("{}: unexpected result.", op_name(&op))),
        }
    }

    fn transfer(&mut self, kind: TransferKind, arg: Option<&str>) -> Action {
        if self.data_required && !self.protected {
            return reply(
                521,
                "Data connections must be protected: send PBSZ 0 and PROT P first.",
            );
        }
        let offset = std::mem::take(&mut self.rest);
        let have = std::mem::take(&mut self.rest_ranges);
        if !have.is_empty() && kind != TransferKind::Retrieve {
            return reply(
                554,
                "REST ranges apply to RETR only: a failed MODE E upload keeps nothing, send the whole file.",
            );
        }
        if self.mode == TransferMode::Extended {
            if matches!(kind, TransferKind::Append | TransferKind::StoreUnique) {
                return reply(504, "MODE E: APPE and STOU are not supported; use STOR.");
            }
            if self.ttype == TransferType::Ascii && !is_listing(kind) {
                return reply(504, "MODE E needs TYPE I.");
            }
            if self.protected {
                return reply(
                    534,
                    "MODE E is not available on protected data connections.",
                );
            }
        }
        let kept = matches!(self.mode, TransferMode::Block | TransferMode::Extended);
        let endpoint = if self.block_open && kept {
            DataEndpoint::Open
        } else {
            match self.endpoint.take() {
                Some(e) => e,
                None => return reply(425, "Use PORT or PASV first."),
            }
        };
        let listing = matches!(kind, TransferKind::List | TransferKind::NameList);
        if offset > 0 && listing {
            return reply(501, "REST not allowed with listings.");
        }
        let mut path = match arg {
            Some(a) => match self.resolve(a) {
                Ok(p) => p,
                Err(a) => return a,
            },
            None => self.cwd.clone(),
        };
        // A wildcard in the last component lists the matching entries of its directory.
        let mut pattern = None;
        if let (true, Some(name), Some(parent)) = (listing, path.file_name(), path.parent()) {
            if glob::has_wildcards(name) {
                match Glob::new(name) {
                    Ok(g) => pattern = Some(Box::new(g)),
                    Err(_) => return reply(553, "Wildcard pattern too long."),
                }
                path = parent;
            }
        }
        if matches!(kind, TransferKind::Store | TransferKind::Append) && path.is_root() {
            return reply(553, "File name not allowed.");
        }
        let no_overwrite = self.access().is_some_and(|a| a.upload_only.is_some());
        let upload = matches!(
            kind,
            TransferKind::Store | TransferKind::Append | TransferKind::StoreUnique
        );
        // ALLO announces the next upload; a listing in between neither uses nor clears it.
        let allocate = if upload { self.allocate.take() } else { None };
        let t = Transfer {
            kind,
            path,
            endpoint,
            ttype: self.ttype,
            mode: self.mode,
            offset,
            allocate,
            no_overwrite,
            pattern,
            arg: if listing {
                arg.map(str::to_owned)
            } else {
                None
            },
            protected: self.protected,
            parallelism: self.parallelism,
            have,
            partial: None,
            adjusted: false,
        };
        self.pending_transfer = Some(t.clone());
        Action::Transfer(Box::new(t))
    }

    /// ERET/ESTO: a RETR/STOR with one more property set on its transfer.
    fn extended_transfer(
        &mut self,
        kind: TransferKind,
        path: &str,
        set: impl FnOnce(&mut Transfer),
    ) -> Action {
        match self.transfer(kind, Some(path)) {
            Action::Transfer(mut t) => {
                set(&mut t);
                self.pending_transfer = Some((*t).clone());
                Action::Transfer(t)
            }
            other => other,
        }
    }

    /// Records the name the server picked for STOU (reported in the 150 and 226 replies).
    pub fn set_unique_path(&mut self, path: VPath) {
        if let Some(t) = self.pending_transfer.as_mut() {
            t.path = path;
        }
    }

    /// The 226 that follows the 426 of an aborted transfer (RFC 959 ABOR).
    pub fn abort_reply(&self) -> Reply {
        Reply::new(226, "ABOR successful.")
    }

    /// The 150 reply to send once the data connection is open.
    pub fn transfer_opening(&self) -> Reply {
        let Some(t) = &self.pending_transfer else {
            return Reply::new(150, "Opening data connection.");
        };
        if t.mode == TransferMode::Extended {
            // As globus-gridftp-server words them.
            return match t.endpoint {
                DataEndpoint::Open => {
                    Reply::new(125, "Beginning transfer; reusing existing data connection.")
                }
                _ => Reply::new(150, "Beginning transfer."),
            };
        }
        if t.endpoint == DataEndpoint::Open {
            return Reply::new(125, "Data connection already open; transfer starting.");
        }
        let ty = match t.ttype {
            TransferType::Ascii => "ASCII",
            TransferType::Image => "BINARY",
        };
        match t.kind {
            TransferKind::List | TransferKind::NameList | TransferKind::MachineList => {
                Reply::new(150, "Here comes the directory listing.")
            }
            TransferKind::Store | TransferKind::Append => Reply::new(150, "Ok to send data."),
            TransferKind::StoreUnique => {
                Reply::new(150, format!("FILE: {}", t.path.file_name().unwrap_or("")))
            }
            TransferKind::Retrieve => Reply::new(
                150,
                format!(
                    "Opening {ty} mode data connection for {}.",
                    t.path.file_name().unwrap_or("/")
                ),
            ),
        }
    }

    /// Result of [`Action::Transfer`].
    pub fn transfer_done(&mut self, outcome: TransferOutcome) -> Reply {
        let t = self.pending_transfer.take();
        self.block_open = matches!(
            outcome,
            TransferOutcome::Complete {
                kept_open: true,
                ..
            }
        );
        match outcome {
            TransferOutcome::Complete {
                kept_open: true, ..
            } if t.as_ref().is_some_and(|t| t.mode == TransferMode::Extended) => {
                Reply::new(226, "Transfer Complete.")
            }
            TransferOutcome::Complete {
                kept_open: true, ..
            } => Reply::new(250, "Transfer complete; data connection kept open."),
            TransferOutcome::Complete { .. } => match t.as_ref().map(|t| t.kind) {
                Some(TransferKind::List | TransferKind::NameList | TransferKind::MachineList) => {
                    Reply::new(226, "Directory send OK.")
                }
                Some(TransferKind::StoreUnique) => Reply::new(
                    226,
                    format!(
                        "Transfer complete (unique file name: {}).",
                        t.as_ref().map(|t| t.path.as_str()).unwrap_or("")
                    ),
                ),
                _ => Reply::new(226, "Transfer complete."),
            },
            TransferOutcome::Aborted => Reply::new(426, "Transfer aborted."),
            TransferOutcome::NoConnection => Reply::new(425, "Can't open data connection."),
            TransferOutcome::ConnectionLost => {
                Reply::new(426, "Connection closed; transfer aborted.")
            }
            TransferOutcome::Short {
                received,
                announced,
            } => Reply::new(
                426,
                format!(
                    "Connection closed after {received} of the {announced} bytes announced by ALLO; \
                     upload discarded."
                ),
            ),
            TransferOutcome::Truncated { received } => Reply::new(
                426,
                format!(
                    "Data connection closed without TLS close_notify after {received} bytes: \
                     the upload may be truncated and was discarded."
                ),
            ),
            TransferOutcome::DataTlsFailed => {
                Reply::new(425, "TLS handshake on the data connection failed.")
            }
            TransferOutcome::DataTlsNotResumed => Reply::new(
                522,
                "Data connection refused: its TLS session must resume the control connection's \
                 (session reuse required).",
            ),
            TransferOutcome::Local(e) => {
                let what = match t.map(|t| t.kind) {
                    Some(TransferKind::Store) => "STOR",
                    Some(TransferKind::Append) => "APPE",
                    Some(TransferKind::StoreUnique) => "STOU",
                    Some(TransferKind::MachineList) => "MLSD",
                    Some(TransferKind::Retrieve) => "RETR",
                    Some(TransferKind::List) => "LIST",
                    Some(TransferKind::NameList) => "NLST",
                    None => "Transfer",
                };
                match e {
                    FsError::NotFound if what == "STOR" => {
                        Reply::new(553, "Could not create file.")
                    }
                    FsError::Exists if what == "STOR" => {
                        Reply::new(550, "STOR: File exists; overwriting is not allowed.")
                    }
                    e => e.reply(what),
                }
            }
        }
    }

    fn feat(&self) -> Reply {
        let mut lines = vec!["Features:".to_string()];
        lines.extend(
            [
                "EPRT",
                "EPSV",
                // GridFTP's partial retrieve and adjusted store (globus-url-copy -off/-len).
                "ERET",
                "ESTO",
                "MDTM",
                "MFMT",
                "PASV",
                "REST STREAM",
                "SIZE",
                "TVFS",
                "UTF8",
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        if self.cfg.block_mode {
            // PARALLEL: GridFTP's name for MODE E with parallel data connections (GFD.20).
            lines.extend(["MODE B".into(), "PARALLEL".into(), "SPAS".into()]);
        }
        if self.cfg.tls.control != TlsMode::Off {
            lines.extend(["AUTH TLS".into(), "PBSZ".into(), "PROT".into()]);
        }
        lines.push(self.mlst.feat());
        lines.push(format!("CKSM {}", cksm_list(true)));
        // draft-bryan-ftpext-hash: the selected algorithm carries a `*`.
        let hashes: Vec<String> = Algo::HASH
            .iter()
            .map(|&a| {
                let star = if a == self.hash_algo { "*" } else { "" };
                format!("{}{star}", a.hash_name())
            })
            .collect();
        lines.push(format!("HASH {}", hashes.join(";")));
        lines.sort_by(|a, b| (a != "Features:").cmp(&(b != "Features:")).then(a.cmp(b)));
        lines.push("End".into());
        Reply::multi(211, lines)
    }
}

fn op_name(op: &FsOp) -> &'static str {
    match op {
        FsOp::ChangeDir(_) => "CWD",
        FsOp::MakeDir(_) => "MKD",
        FsOp::Delete(_) => "DELE",
        FsOp::Size(_) => "SIZE",
        FsOp::RemoveDir(_) => "RMD",
        FsOp::RenameFrom(_) => "RNFR",
        FsOp::Rename { .. } => "RNTO",
        FsOp::ModifyTime(_) => "MDTM",
        FsOp::Facts(_) => "MLST",
        FsOp::StatList(_) => "STAT",
        FsOp::SetTimes { .. } => "MFMT",
        FsOp::Chmod { .. } => "SITE CHMOD",
        FsOp::Checksum { .. } => "CKSM",
    }
}

/// GridFTP's FEAT list of checksum algorithms (`MD5:10;ADLER32:10;...;`, the number a relative
/// cost, as globus-gridftp-server prints it); without `feat`, the plain names for a reply.
fn cksm_list(feat: bool) -> String {
    let mut out = String::new();
    for a in Algo::ALL {
        if feat {
            out.push_str(a.cksm_name());
            out.push_str(":10;");
        } else {
            if !out.is_empty() {
                out.push_str(", ");
            }
            out.push_str(a.cksm_name());
        }
    }
    out
}

fn parse_error_text(e: &ParseError) -> String {
    match e {
        ParseError::Unknown(verb) => format!("Unknown command {verb}."),
        ParseError::NotImplemented(verb) => format!("{verb} not implemented."),
        ParseError::MissingArgument(verb) => format!("{verb} needs an argument."),
        ParseError::BadArgument(verb) => format!("Bad argument to {verb}."),
        ParseError::NotImplementedParam(verb) => format!("{verb} parameter not implemented."),
        ParseError::Encoding => "Command is not valid UTF-8.".into(),
        ParseError::NulByte => "Command contains a NUL byte; refused.".into(),
        ParseError::UnsupportedMode(m) => format!("MODE {m} not implemented."),
        ParseError::Empty => "Empty command.".into(),
        ParseError::UnsupportedNetworkProtocol => {
            "Network protocol not supported, use (1,2).".into()
        }
    }
}

/// Whether `p` is `dir` or beneath it (component-wise, so "/in" does not contain "/inbox").
fn is_within(p: &VPath, dir: &VPath) -> bool {
    dir.is_root()
        || p == dir
        || p.as_str()
            .strip_prefix(dir.as_str())
            .is_some_and(|rest| rest.starts_with('/'))
}

/// `HELP SITE` and `SITE HELP`: the SITE subcommands and their usage.
fn site_help() -> Reply {
    Reply::multi(
        214,
        vec![
            "The following SITE commands are recognized.".into(),
            "CHMOD HELP UTIME".into(),
            site::CHMOD_USAGE.into(),
            site::UTIME_USAGE.into(),
            "Help OK.".into(),
        ],
    )
}

fn reply(code: u16, text: impl Into<String>) -> Action {
    Action::Reply(Reply::new(code, text))
}

#[cfg(test)]
mod tests;

/// Most data connections a MODE E send opens (`OPTS RETR Parallelism`), as many as a MODE E
/// upload may use.
pub const MAX_PARALLELISM: u16 = 64;

fn is_listing(kind: TransferKind) -> bool {
    matches!(
        kind,
        TransferKind::List | TransferKind::NameList | TransferKind::MachineList
    )
}

/// `Parallelism=start,min,max;` (GridFTP `OPTS RETR`): the connections to open, taken from the
/// first number; the others bound an adaptive sender, which this one is not.
fn parse_parallelism(v: &str) -> Option<u16> {
    let v = v.trim().trim_end_matches(';');
    let (key, nums) = v.split_once('=')?;
    if !key.trim().eq_ignore_ascii_case("parallelism") {
        return None;
    }
    let mut it = nums.split(',').map(|n| n.trim().parse::<u16>().ok());
    let first = it.next()??;
    for n in it {
        n?;
    }
    (1..=MAX_PARALLELISM).contains(&first).then_some(first)
}
