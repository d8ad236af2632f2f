//! Control-connection input: line framing ([`LineBuffer`]) and the command parser ([`parse`]).
//!
//! Covers RFC 959 (base), RFC 775 (X-verbs), RFC 2389 (FEAT/OPTS), RFC 2428 (EPRT/EPSV), RFC 3659
//! (SIZE/MDTM/REST/MLST/MLSD), RFC 7151 (HOST) and RFC 2640 (LANG). Both halves are bounded and total:
//! any byte sequence yields lines or errors, never a panic or unbounded memory, because the control
//! connection is the first thing an attacker reaches, before login.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};

use super::checksum::Algo;
use super::site;

// ---------------------------------------------------------------------------------------------------
// Line framing
// ---------------------------------------------------------------------------------------------------

/// Telnet "interpret as command" (RFC 854): FTP's control connection is a Telnet NVT stream.
const IAC: u8 = 0xFF;
/// WILL, WONT, DO, DONT: option negotiation, followed by one option byte.
const NEGOTIATION: std::ops::RangeInclusive<u8> = 0xFB..=0xFE;

/// Why a line could not be framed.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum LineError {
    /// The line exceeded the configured maximum; its remainder up to the next LF is discarded.
    #[error("line too long")]
    TooLong,
}

/// Where the Telnet filter is inside an IAC sequence; kept across `push` calls because a sequence may
/// be split between two reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Telnet {
    Data,
    /// Saw IAC.
    Iac,
    /// Saw IAC WILL/WONT/DO/DONT: the next byte is an option code.
    Option,
}

/// Splits the control stream into command lines.
///
/// Telnet IAC sequences are removed (clients send IAC IP / IAC DM before ABOR), lines end at LF with
/// an optional CR before it, and an overlong line is reported once and skipped. Memory is bounded:
/// the unterminated tail never holds more than `max_line + 1` bytes (the +1 is a trailing CR that may
/// still be followed by its LF). Complete lines are queued until [`next_line`](Self::next_line) takes
/// them, so pipelined commands in one read are all served, in order.
#[derive(Debug)]
pub struct LineBuffer {
    max_line: usize,
    /// Complete lines (or the error for an overlong one) waiting to be taken.
    ready: VecDeque<Result<Vec<u8>, LineError>>,
    /// Bytes held by `ready`, for [`buffered`](Self::buffered).
    ready_bytes: usize,
    /// The unterminated tail of the current line, Telnet already removed.
    current: Vec<u8>,
    /// The current line overflowed: drop bytes up to the next LF.
    discarding: bool,
    telnet: Telnet,
}

impl LineBuffer {
    /// A buffer for lines of at most `max_line` bytes, not counting the CRLF.
    pub fn new(max_line: usize) -> Self {
        LineBuffer {
            max_line,
            ready: VecDeque::new(),
            ready_bytes: 0,
            current: Vec::new(),
            discarding: false,
            telnet: Telnet::Data,
        }
    }

    /// The configured maximum line length.
    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// Appends received bytes. Complete lines become available from [`next_line`](Self::next_line).
    pub fn push(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.telnet == Telnet::Data {
                // Fast path: copy the run up to the next LF or IAC in one go.
                let run = data
                    .iter()
                    .position(|&b| b == b'\n' || b == IAC)
                    .unwrap_or(data.len());
                let (plain, rest) = data.split_at(run);
                self.append(plain);
                data = rest;
                let Some((&b, rest)) = data.split_first() else {
                    break;
                };
                data = rest;
                if b == b'\n' {
                    self.end_line();
                } else {
                    self.telnet = Telnet::Iac;
                }
                continue;
            }
            let Some((&b, rest)) = data.split_first() else {
                break;
            };
            data = rest;
            match (self.telnet, b) {
                (Telnet::Iac, IAC) => {
                    // IAC IAC is an escaped 0xFF data byte.
                    self.telnet = Telnet::Data;
                    self.append(&[IAC]);
                }
                (Telnet::Iac, b) if NEGOTIATION.contains(&b) => self.telnet = Telnet::Option,
                (Telnet::Iac, 0xF0..=0xFA) => self.telnet = Telnet::Data,
                // A LF always ends the line, even where Telnet would swallow it as an option byte or
                // after a stray IAC: a hostile or broken client must not be able to glue lines.
                (_, b'\n') => {
                    self.telnet = Telnet::Data;
                    self.end_line();
                }
                (Telnet::Iac, b) => {
                    // Not a Telnet command: drop the lone IAC, keep the byte.
                    self.telnet = Telnet::Data;
                    self.append(&[b]);
                }
                (Telnet::Option, _) => self.telnet = Telnet::Data,
                (Telnet::Data, _) => {
                    // Unreachable by the branch above; handled the same way for totality.
                    self.append(&[b]);
                }
            }
        }
    }

    /// The next complete line without its line ending, or the error for an overlong line, in
    /// arrival order; `None` until more data arrives.
    pub fn next_line(&mut self) -> Option<Result<Vec<u8>, LineError>> {
        let item = self.ready.pop_front()?;
        if let Ok(line) = &item {
            self.ready_bytes = self.ready_bytes.saturating_sub(line.len());
        }
        Some(item)
    }

    /// Bytes currently held: queued lines plus the unterminated tail.
    pub fn buffered(&self) -> usize {
        self.ready_bytes + self.current.len()
    }

    /// Adds data bytes to the current line, switching to discard mode on overflow.
    fn append(&mut self, bytes: &[u8]) {
        if self.discarding || bytes.is_empty() {
            return;
        }
        // One extra byte is allowed for the CR that precedes the LF.
        let limit = self.max_line.saturating_add(1);
        let needed = self.current.len().saturating_add(bytes.len());
        if needed > limit {
            self.current = Vec::new();
            self.discarding = true;
            self.ready.push_back(Err(LineError::TooLong));
            return;
        }
        if needed > self.current.capacity() {
            // Grow geometrically but never past the limit, so the allocation itself stays bounded.
            let target = self
                .current
                .capacity()
                .saturating_mul(2)
                .min(limit)
                .max(needed);
            self.current
                .reserve_exact(target.saturating_sub(self.current.len()));
        }
        self.current.extend_from_slice(bytes);
    }

    /// Handles an LF: queues the current line, or ends discard mode.
    fn end_line(&mut self) {
        if self.discarding {
            self.discarding = false;
            return;
        }
        let mut line = std::mem::take(&mut self.current);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.len() > self.max_line {
            self.ready.push_back(Err(LineError::TooLong));
        } else {
            self.ready_bytes += line.len();
            self.ready.push_back(Ok(line));
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------------------

/// Representation type (TYPE). Only the two that matter for bulk transfer are supported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferType {
    /// `A` or `A N`: ASCII, non-print format.
    Ascii,
    /// `I` or `L 8`: bytes as they are.
    Image,
}

/// File structure (STRU). Only `F` is supported; record and page structure are obsolete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Structure {
    /// `F`: a file is a byte stream.
    File,
}

/// Transfer mode (MODE).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferMode {
    /// `S`: end of file is the close of the data connection.
    Stream,
    /// `B`: block mode, end of file in-band, the data connection can carry many files.
    Block,
    /// `E`: GridFTP extended block mode (GFD.20): blocks with their own file offsets over one or
    /// more parallel data connections, kept open across files.
    Extended,
}

/// The argument of EPSV (RFC 2428).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EpsvArg {
    /// No argument: the server picks the protocol of the control connection.
    Any,
    /// `EPSV ALL`: from now on, only EPSV may set up data connections.
    All,
    /// `EPSV 1` (IPv4) or `EPSV 2` (IPv6); other protocol numbers are rejected with 522.
    Proto(u16),
}

/// A password as the client sent it. Its `Debug` form is redacted, so logging a command or an action
/// with `{:?}` can never write a password into a log.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Password(pub String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

impl From<&str> for Password {
    fn from(s: &str) -> Password {
        Password(s.to_owned())
    }
}

/// A parsed command. Path arguments are raw strings: resolving them is the session's job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    User(String),
    /// Password; may be empty (anonymous clients sometimes send a bare `PASS`).
    Pass(Password),
    Acct(String),
    Cwd(String),
    Cdup,
    Smnt(String),
    Rein,
    Quit,
    Port(SocketAddrV4),
    Pasv,
    /// GridFTP striped passive (`globus-url-copy -stripe`): PASV answered with a list of
    /// addresses, one per stripe; ringest is one stripe.
    Spas,
    Type(TransferType),
    Stru(Structure),
    Mode(TransferMode),
    Retr(String),
    Stor(String),
    Stou(Option<String>),
    Appe(String),
    /// GridFTP `ERET P <offset> <length> <path>`: a partial retrieve of `length` bytes from
    /// `offset` (globus-url-copy `-off`/`-len`).
    Eret {
        offset: u64,
        len: u64,
        path: String,
    },
    /// GridFTP `ESTO A <offset> <path>`: an adjusted store, the data written into the file at
    /// `offset` on (globus-url-copy `-off`).
    Esto {
        offset: u64,
        path: String,
    },
    /// ALLO n, or ALLO n R m (the record size is ignored).
    Allo(u64),
    Rest(u64),
    /// GridFTP `REST a-b,c-d` (MODE E): the byte ranges the receiver already has, end exclusive,
    /// sorted and merged. A send then carries only the rest.
    RestRanges(Vec<(u64, u64)>),
    Rnfr(String),
    Rnto(String),
    Abor,
    Dele(String),
    Rmd(String),
    Mkd(String),
    Pwd,
    List(Option<String>),
    Nlst(Option<String>),
    Site(String),
    Syst,
    Stat(Option<String>),
    Help(Option<String>),
    Noop,
    Feat,
    /// Option name (uppercased) and the rest of the line, if any.
    Opts(String, Option<String>),
    Eprt(SocketAddr),
    Epsv(EpsvArg),
    Size(String),
    Mdtm(String),
    /// `MDTM YYYYMMDDHHMMSS path`: the two-argument form sets the time (ncftpput's fallback).
    MdtmSet {
        time: i64,
        path: String,
    },
    /// `MFMT YYYYMMDDHHMMSS path` (draft-somers-ftp-mfxx): sets the modification time.
    Mfmt {
        time: i64,
        path: String,
    },
    Mlsd(Option<String>),
    Mlst(Option<String>),
    Host(String),
    Lang(Option<String>),
    /// `AUTH TLS` / `AUTH SSL` (RFC 4217); the mechanism, upper-cased.
    Auth(String),
    /// `PBSZ n` (RFC 4217: 0 for TLS).
    Pbsz(String),
    /// `PROT C|S|E|P`, upper-cased.
    Prot(String),
    /// `CCC`: drop TLS on the control connection (refused: 534).
    Ccc,
    /// GridFTP `CKSM <algorithm> <offset> <length> <path>`: the checksum of `length` bytes from
    /// `offset` (`None`: to the end, sent as `-1`). The algorithm as the client named it; the
    /// session answers 504 for one it does not know.
    Cksm {
        algo: String,
        offset: u64,
        length: Option<u64>,
        path: String,
    },
    /// `HASH <path>` (draft-bryan-ftpext-hash): the whole file's hash in the algorithm chosen with
    /// `OPTS HASH`.
    Hash(String),
    /// ProFTPD's `XCRC`, `XMD5`, `XSHA1`, `XSHA256`, `XSHA512 <path>`.
    XDigest {
        algo: Algo,
        path: String,
    },
}

impl Command {
    /// The canonical verb (X-variants such as XMKD map to their RFC 959 name), for logs and metrics.
    pub fn verb(&self) -> &'static str {
        use Command::*;
        match self {
            User(_) => "USER",
            Pass(_) => "PASS",
            Acct(_) => "ACCT",
            Cwd(_) => "CWD",
            Cdup => "CDUP",
            Smnt(_) => "SMNT",
            Rein => "REIN",
            Quit => "QUIT",
            Port(_) => "PORT",
            Pasv => "PASV",
            Spas => "SPAS",
            Type(_) => "TYPE",
            Stru(_) => "STRU",
            Mode(_) => "MODE",
            Retr(_) => "RETR",
            Stor(_) => "STOR",
            Stou(_) => "STOU",
            Appe(_) => "APPE",
            Eret { .. } => "ERET",
            Esto { .. } => "ESTO",
            Allo(_) => "ALLO",
            Rest(_) | RestRanges(_) => "REST",
            Rnfr(_) => "RNFR",
            Rnto(_) => "RNTO",
            Abor => "ABOR",
            Dele(_) => "DELE",
            Rmd(_) => "RMD",
            Mkd(_) => "MKD",
            Pwd => "PWD",
            List(_) => "LIST",
            Nlst(_) => "NLST",
            Site(_) => "SITE",
            Syst => "SYST",
            Stat(_) => "STAT",
            Help(_) => "HELP",
            Noop => "NOOP",
            Feat => "FEAT",
            Opts(..) => "OPTS",
            Eprt(_) => "EPRT",
            Epsv(_) => "EPSV",
            Size(_) => "SIZE",
            Mdtm(_) | MdtmSet { .. } => "MDTM",
            Mfmt { .. } => "MFMT",
            Mlsd(_) => "MLSD",
            Mlst(_) => "MLST",
            Host(_) => "HOST",
            Lang(_) => "LANG",
            Auth(_) => "AUTH",
            Pbsz(_) => "PBSZ",
            Prot(_) => "PROT",
            Ccc => "CCC",
            Cksm { .. } => "CKSM",
            Hash(_) => "HASH",
            XDigest { algo, .. } => match algo {
                Algo::Md5 => "XMD5",
                Algo::Sha1 => "XSHA1",
                Algo::Sha256 => "XSHA256",
                Algo::Sha512 => "XSHA512",
                _ => "XCRC",
            },
        }
    }

    /// Whether the command may run before authentication. Everything else gets 530, so an
    /// unauthenticated peer can reach only the login exchange and harmless informational commands.
    pub fn allowed_before_login(&self) -> bool {
        use Command::*;
        matches!(
            self,
            User(_)
                | Pass(_)
                | Acct(_)
                | Quit
                | Feat
                | Syst
                | Help(_)
                | Noop
                | Opts(..)
                | Host(_)
                | Auth(_)
                | Pbsz(_)
                | Prot(_)
                | Ccc
        )
    }
}

/// Why a line is not a command we can run; each maps to a reply code.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum ParseError {
    /// An empty line (or only spaces).
    #[error("empty command line")]
    Empty,
    /// An unknown verb, truncated to 16 characters and with anything but printable ASCII replaced by
    /// `?`, so it is safe to echo and to log.
    #[error("unknown command {0}")]
    Unknown(String),
    /// A known verb we deliberately do not support.
    #[error("{0} not implemented")]
    NotImplemented(&'static str),
    /// The verb needs an argument and got none.
    #[error("{0} requires an argument")]
    MissingArgument(&'static str),
    /// The argument is malformed; the payload is the verb.
    #[error("bad argument for {0}")]
    BadArgument(&'static str),
    /// A valid but unsupported parameter (e.g. TYPE E, MODE C).
    #[error("{0} parameter not implemented")]
    NotImplementedParam(&'static str),
    /// EPRT/EPSV with a network protocol other than 1 (IPv4) or 2 (IPv6); RFC 2428 answers 522.
    #[error("network protocol not supported, use (1,2)")]
    UnsupportedNetworkProtocol,
    /// The argument is not UTF-8.
    #[error("invalid characters in argument")]
    Encoding,
    /// The line contains a NUL byte, which no command or file name may contain.
    #[error("NUL byte in command")]
    NulByte,
    /// `MODE` with a mode letter we do not implement (E, Z, C...); the payload is the letter(s),
    /// safe to echo. Answered 504 with the modes that are available.
    #[error("MODE {0} not implemented")]
    UnsupportedMode(String),
}

impl ParseError {
    /// The reply code RFC 959 (and RFC 2428 for 522) assigns to this error.
    pub fn reply_code(&self) -> u16 {
        match self {
            ParseError::Empty | ParseError::Unknown(_) => 500,
            ParseError::NotImplemented(_) => 502,
            ParseError::MissingArgument(_)
            | ParseError::BadArgument(_)
            | ParseError::Encoding
            | ParseError::NulByte => 501,
            ParseError::NotImplementedParam(_) | ParseError::UnsupportedMode(_) => 504,
            ParseError::UnsupportedNetworkProtocol => 522,
        }
    }
}

/// Longest verb echoed back in [`ParseError::Unknown`].
const MAX_ECHOED_VERB: usize = 16;
/// Longest verb we try to recognise: RFC verbs have 3 or 4 letters, ProFTPD's `XSHA256` 7.
const MAX_VERB: usize = 7;
/// Longest decimal number accepted for REST/ALLO; `u64::MAX` has 20 digits.
const MAX_DIGITS: usize = 20;

/// Verbs from RFC 2228 (security) and RFC 1639 (LPRT/LPSV) that we recognise and refuse with 502.
const NOT_IMPLEMENTED: &[&str] = &["ADAT", "MIC", "CONF", "ENC", "LPRT", "LPSV"];

/// Parses one command line as returned by [`LineBuffer::next_line`] (no line ending).
///
/// The verb is case-insensitive and separated from the argument by one or more spaces; the argument
/// is the rest of the line, verbatim (inner and trailing spaces are part of file names). A file name
/// that itself starts with a space therefore cannot be named relatively; `./ name` still works.
pub fn parse(line: &[u8]) -> Result<Command, ParseError> {
    let line = trim_start_spaces(line);
    if line.is_empty() {
        return Err(ParseError::Empty);
    }
    if line.contains(&0) {
        return Err(ParseError::NulByte);
    }
    let verb_end = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
    let (verb, rest) = line.split_at(verb_end);
    // A letter, then letters or digits (`XSHA256`).
    let verb_ok = verb.first().is_some_and(u8::is_ascii_alphabetic)
        && verb.iter().all(u8::is_ascii_alphanumeric);
    if verb.len() > MAX_VERB || !verb_ok {
        return Err(ParseError::Unknown(sanitize_verb(verb)));
    }
    let mut upper = [0u8; MAX_VERB];
    for (dst, src) in upper.iter_mut().zip(verb) {
        *dst = src.to_ascii_uppercase();
    }
    let verb_up = upper.get(..verb.len()).unwrap_or_default();

    let arg_bytes = trim_start_spaces(rest);
    let arg = std::str::from_utf8(arg_bytes).map_err(|_| ParseError::Encoding)?;
    let opt = || (!arg.is_empty()).then(|| arg.to_owned());
    let req = |name: &'static str| {
        if arg.is_empty() {
            Err(ParseError::MissingArgument(name))
        } else {
            Ok(arg.to_owned())
        }
    };
    // Parameters that are not file names tolerate trailing spaces from sloppy clients.
    let param = |name: &'static str| {
        let p = arg.trim_end_matches(' ');
        if p.is_empty() {
            Err(ParseError::MissingArgument(name))
        } else {
            Ok(p)
        }
    };

    use Command::*;
    let cmd = match verb_up {
        b"USER" => User(req("USER")?),
        b"PASS" => Pass(Password(arg.to_owned())),
        b"ACCT" => Acct(req("ACCT")?),
        b"CWD" | b"XCWD" => Cwd(req("CWD")?),
        b"CDUP" | b"XCUP" => Cdup,
        b"SMNT" => Smnt(req("SMNT")?),
        b"REIN" => Rein,
        b"QUIT" => Quit,
        b"PORT" => Port(parse_port(param("PORT")?)?),
        b"PASV" => Pasv,
        b"SPAS" => Spas,
        b"TYPE" => Type(parse_type(param("TYPE")?)?),
        b"STRU" => Stru(parse_stru(param("STRU")?)?),
        b"MODE" => Mode(parse_mode(param("MODE")?)?),
        b"RETR" => Retr(req("RETR")?),
        b"STOR" => Stor(req("STOR")?),
        b"STOU" => Stou(opt()),
        b"APPE" => Appe(req("APPE")?),
        b"ERET" => parse_eret(&req("ERET")?)?,
        b"ESTO" => parse_esto(&req("ESTO")?)?,
        b"ALLO" => Allo(parse_allo(param("ALLO")?)?),
        b"REST" => parse_rest(param("REST")?)?,
        b"RNFR" => Rnfr(req("RNFR")?),
        b"RNTO" => Rnto(req("RNTO")?),
        b"ABOR" => Abor,
        b"DELE" => Dele(req("DELE")?),
        b"RMD" | b"XRMD" => Rmd(req("RMD")?),
        b"MKD" | b"XMKD" => Mkd(req("MKD")?),
        b"PWD" | b"XPWD" => Pwd,
        b"LIST" => List(strip_options(arg)),
        b"NLST" => Nlst(strip_options(arg)),
        b"SITE" => Site(req("SITE")?),
        b"SYST" => Syst,
        b"STAT" => Stat(strip_options(arg)),
        b"HELP" => Help(opt()),
        b"NOOP" => Noop,
        b"FEAT" => Feat,
        b"OPTS" => parse_opts(param("OPTS")?),
        b"EPRT" => Eprt(parse_eprt(param("EPRT")?)?),
        b"EPSV" => Epsv(parse_epsv(arg.trim_end_matches(' '))?),
        b"SIZE" => Size(req("SIZE")?),
        b"MDTM" => match site::split_time_and_path(arg) {
            Some((time, path)) => MdtmSet {
                time,
                path: path.to_owned(),
            },
            None => Mdtm(req("MDTM")?),
        },
        b"MFMT" => {
            let (time, path) =
                site::split_time_and_path(param("MFMT")?).ok_or(ParseError::BadArgument("MFMT"))?;
            Mfmt {
                time,
                path: path.to_owned(),
            }
        }
        b"MLSD" => Mlsd(strip_options(arg)),
        b"MLST" => Mlst(opt()),
        b"HOST" => Host(param("HOST")?.to_owned()),
        b"LANG" => Lang(opt()),
        b"AUTH" => Auth(param("AUTH")?.to_ascii_uppercase()),
        b"PBSZ" => Pbsz(param("PBSZ")?.to_owned()),
        b"PROT" => Prot(param("PROT")?.to_ascii_uppercase()),
        b"CCC" => Ccc,
        b"CKSM" => parse_cksm(param("CKSM")?)?,
        b"HASH" => Hash(req("HASH")?),
        b"XCRC" => XDigest {
            algo: Algo::Crc32,
            path: req("XCRC")?,
        },
        b"XMD5" => XDigest {
            algo: Algo::Md5,
            path: req("XMD5")?,
        },
        b"XSHA1" => XDigest {
            algo: Algo::Sha1,
            path: req("XSHA1")?,
        },
        b"XSHA256" => XDigest {
            algo: Algo::Sha256,
            path: req("XSHA256")?,
        },
        b"XSHA512" => XDigest {
            algo: Algo::Sha512,
            path: req("XSHA512")?,
        },
        other => {
            return Err(
                match NOT_IMPLEMENTED
                    .iter()
                    .copied()
                    .find(|v| v.as_bytes() == other)
                {
                    Some(v) => ParseError::NotImplemented(v),
                    None => ParseError::Unknown(sanitize_verb(verb)),
                },
            )
        }
    };
    Ok(cmd)
}

fn trim_start_spaces(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&c| c != b' ').unwrap_or(b.len());
    b.get(start..).unwrap_or_default()
}

fn sanitize_verb(verb: &[u8]) -> String {
    verb.iter()
        .take(MAX_ECHOED_VERB)
        .map(|&b| {
            if b.is_ascii_graphic() {
                char::from(b.to_ascii_uppercase())
            } else {
                '?'
            }
        })
        .collect()
}

/// A plain decimal number: digits only (no sign, no spaces), bounded length, no overflow.
/// `ERET P <offset> <length> <path>`: the only module of GridFTP's extended retrieve that
/// globus-url-copy uses (partial transfers).
fn parse_eret(s: &str) -> Result<Command, ParseError> {
    const BAD: ParseError = ParseError::BadArgument("ERET");
    let mut it = s.splitn(4, ' ');
    let (Some(m), Some(off), Some(len), Some(path)) = (it.next(), it.next(), it.next(), it.next())
    else {
        return Err(BAD);
    };
    if !m.eq_ignore_ascii_case("P") || path.is_empty() {
        return Err(BAD);
    }
    Ok(Command::Eret {
        offset: parse_decimal(off).ok_or(BAD)?,
        len: parse_decimal(len).ok_or(BAD)?,
        path: path.to_owned(),
    })
}

/// `ESTO A <offset> <path>`: the adjusted store, the only module of GridFTP's extended store.
fn parse_esto(s: &str) -> Result<Command, ParseError> {
    const BAD: ParseError = ParseError::BadArgument("ESTO");
    let mut it = s.splitn(3, ' ');
    let (Some(m), Some(off), Some(path)) = (it.next(), it.next(), it.next()) else {
        return Err(BAD);
    };
    if !m.eq_ignore_ascii_case("A") || path.is_empty() {
        return Err(BAD);
    }
    Ok(Command::Esto {
        offset: parse_decimal(off).ok_or(BAD)?,
        path: path.to_owned(),
    })
}

/// Most ranges one `REST` may list: a restart after many failures of a scattered parallel
/// transfer, bounded.
pub const MAX_REST_RANGES: usize = 4096;

/// `REST n`, or GridFTP's range list `REST a-b,c-d,...` (`0-100` is the first 100 bytes).
fn parse_rest(s: &str) -> Result<Command, ParseError> {
    const BAD: ParseError = ParseError::BadArgument("REST");
    if !s.contains('-') {
        return parse_decimal(s).map(Command::Rest).ok_or(BAD);
    }
    let mut ranges = Vec::new();
    for r in s.split(',').filter(|r| !r.is_empty()) {
        let (a, b) = r.split_once('-').ok_or(BAD)?;
        let (a, b) = (parse_decimal(a).ok_or(BAD)?, parse_decimal(b).ok_or(BAD)?);
        if a > b || ranges.len() == MAX_REST_RANGES {
            return Err(BAD);
        }
        ranges.push((a, b));
    }
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (a, b) in ranges {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ if a < b => merged.push((a, b)),
            _ => {}
        }
    }
    Ok(Command::RestRanges(merged))
}

fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > MAX_DIGITS || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `PORT h1,h2,h3,h4,p1,p2`, each field 0..=255 in decimal; port 0 is refused because nothing can
/// listen there.
fn parse_port(s: &str) -> Result<SocketAddrV4, ParseError> {
    const BAD: ParseError = ParseError::BadArgument("PORT");
    let mut f = [0u8; 6];
    let mut fields = s.split(',');
    for slot in f.iter_mut() {
        let field = fields.next().ok_or(BAD)?.trim_matches(' ');
        if field.len() > 3 {
            return Err(BAD);
        }
        *slot = parse_decimal(field)
            .and_then(|v| u8::try_from(v).ok())
            .ok_or(BAD)?;
    }
    if fields.next().is_some() {
        return Err(BAD);
    }
    let [a, b, c, d, p1, p2] = f;
    let port = u16::from_be_bytes([p1, p2]);
    if port == 0 {
        return Err(BAD);
    }
    Ok(SocketAddrV4::new(Ipv4Addr::new(a, b, c, d), port))
}

/// `EPRT <d><proto><d><addr><d><port><d>` (RFC 2428) with any delimiter in 33..=126.
fn parse_eprt(s: &str) -> Result<SocketAddr, ParseError> {
    const BAD: ParseError = ParseError::BadArgument("EPRT");
    let delim = s.chars().next().ok_or(BAD)?;
    if !(33..=126).contains(&u32::from(delim)) {
        return Err(BAD);
    }
    let mut parts = s.split(delim);
    let (Some(""), Some(proto), Some(addr), Some(port), Some(""), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(BAD);
    };
    let port = parse_decimal(port)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|&p| p != 0)
        .ok_or(BAD)?;
    let ip = match proto {
        "1" => IpAddr::V4(addr.parse::<Ipv4Addr>().map_err(|_| BAD)?),
        "2" => IpAddr::V6(addr.parse::<Ipv6Addr>().map_err(|_| BAD)?),
        p if parse_decimal(p).is_some() => return Err(ParseError::UnsupportedNetworkProtocol),
        _ => return Err(BAD),
    };
    Ok(SocketAddr::new(ip, port))
}

fn parse_epsv(s: &str) -> Result<EpsvArg, ParseError> {
    if s.is_empty() {
        return Ok(EpsvArg::Any);
    }
    if s.eq_ignore_ascii_case("ALL") {
        return Ok(EpsvArg::All);
    }
    match parse_decimal(s) {
        Some(1) => Ok(EpsvArg::Proto(1)),
        Some(2) => Ok(EpsvArg::Proto(2)),
        Some(_) => Err(ParseError::UnsupportedNetworkProtocol),
        None => Err(ParseError::BadArgument("EPSV")),
    }
}

fn parse_type(s: &str) -> Result<TransferType, ParseError> {
    const BAD: ParseError = ParseError::BadArgument("TYPE");
    const NI: ParseError = ParseError::NotImplementedParam("TYPE");
    let mut words = s.split(' ').filter(|w| !w.is_empty());
    let kind = words.next().ok_or(BAD)?;
    let param = words.next();
    if words.next().is_some() {
        return Err(BAD);
    }
    let up = |w: &str| w.to_ascii_uppercase();
    match (up(kind).as_str(), param.map(up).as_deref()) {
        ("A", None | Some("N")) => Ok(TransferType::Ascii),
        ("A" | "E", Some("T" | "C")) | ("E", None | Some("N")) => Err(NI),
        ("I", None) => Ok(TransferType::Image),
        ("L", Some(size)) => match parse_decimal(size) {
            Some(8) => Ok(TransferType::Image),
            Some(_) => Err(NI),
            None => Err(BAD),
        },
        _ => Err(BAD),
    }
}

fn parse_stru(s: &str) -> Result<Structure, ParseError> {
    match s.to_ascii_uppercase().as_str() {
        "F" => Ok(Structure::File),
        "R" | "P" => Err(ParseError::NotImplementedParam("STRU")),
        _ => Err(ParseError::BadArgument("STRU")),
    }
}

/// `S` and `B`; any other single letter is a mode we do not implement (RFC 959 C, GridFTP's E,
/// MODE Z compression), answered 504 so that clients such as globus-url-copy fall back instead of
/// reporting a syntax error.
fn parse_mode(s: &str) -> Result<TransferMode, ParseError> {
    match s.to_ascii_uppercase().as_str() {
        "S" => Ok(TransferMode::Stream),
        "B" => Ok(TransferMode::Block),
        "E" => Ok(TransferMode::Extended),
        m if m.len() == 1 && m.bytes().all(|b| b.is_ascii_alphabetic()) => {
            Err(ParseError::UnsupportedMode(m.to_owned()))
        }
        _ => Err(ParseError::BadArgument("MODE")),
    }
}

/// `ALLO n` or `ALLO n R m`; only `n` matters (record size is meaningless for file structure).
fn parse_allo(s: &str) -> Result<u64, ParseError> {
    const BAD: ParseError = ParseError::BadArgument("ALLO");
    let mut words = s.split(' ').filter(|w| !w.is_empty());
    let n = words.next().and_then(parse_decimal).ok_or(BAD)?;
    match (words.next(), words.next(), words.next()) {
        (None, _, _) => Ok(n),
        (Some(r), Some(m), None) if r.eq_ignore_ascii_case("R") && parse_decimal(m).is_some() => {
            Ok(n)
        }
        _ => Err(BAD),
    }
}

/// `OPTS name [rest]`: the name is uppercased (option names are case-insensitive).
/// `CKSM <algorithm> <offset> <length> <path>`: the path is the rest of the line (it may hold
/// spaces); a length of `-1` means to the end of the file.
fn parse_cksm(s: &str) -> Result<Command, ParseError> {
    const BAD: ParseError = ParseError::BadArgument("CKSM");
    let mut it = s.splitn(4, ' ');
    let (Some(algo), Some(offset), Some(length), Some(path)) =
        (it.next(), it.next(), it.next(), it.next())
    else {
        return Err(BAD);
    };
    if algo.is_empty() || path.is_empty() {
        return Err(BAD);
    }
    let offset = parse_decimal(offset).ok_or(BAD)?;
    let length = match length {
        "-1" => None,
        l => Some(parse_decimal(l).ok_or(BAD)?),
    };
    Ok(Command::Cksm {
        algo: algo.to_owned(),
        offset,
        length,
        path: path.to_owned(),
    })
}

fn parse_opts(s: &str) -> Command {
    let (name, rest) = s.split_once(' ').unwrap_or((s, ""));
    let rest = rest.trim_start_matches(' ');
    Command::Opts(
        name.to_ascii_uppercase(),
        (!rest.is_empty()).then(|| rest.to_owned()),
    )
}

/// Drops leading `ls`-style option words (`LIST -la dir`), which many clients send whatever the
/// server says. The price is that a name starting with `-` must be given as `./-name`.
fn strip_options(mut s: &str) -> Option<String> {
    loop {
        s = s.trim_start_matches(' ');
        if !s.starts_with('-') {
            break;
        }
        s = s.split_once(' ').map_or("", |(_, rest)| rest);
    }
    (!s.is_empty()).then(|| s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lines(lb: &mut LineBuffer) -> Vec<Result<Vec<u8>, LineError>> {
        std::iter::from_fn(|| lb.next_line()).collect()
    }

    fn ok(s: &str) -> Result<Vec<u8>, LineError> {
        Ok(s.as_bytes().to_vec())
    }

    #[test]
    fn framing_crlf_lf_and_pipelining() {
        let mut lb = LineBuffer::new(100);
        lb.push(b"USER a\r\nPASS b\nNOOP\r\nQU");
        assert_eq!(lines(&mut lb), [ok("USER a"), ok("PASS b"), ok("NOOP")]);
        assert_eq!(lb.buffered(), 2);
        lb.push(b"IT\r");
        assert_eq!(lines(&mut lb), []);
        lb.push(b"\n");
        assert_eq!(lines(&mut lb), [ok("QUIT")]);
        assert_eq!(lb.buffered(), 0);
    }

    #[test]
    fn only_one_trailing_cr_is_stripped() {
        let mut lb = LineBuffer::new(100);
        lb.push(b"STOR a\r\r\n\r\n\n");
        assert_eq!(lines(&mut lb), [ok("STOR a\r"), ok(""), ok("")]);
    }

    #[test]
    fn byte_by_byte() {
        let mut lb = LineBuffer::new(100);
        for b in b"RETR x y \r\nNOOP\n" {
            lb.push(std::slice::from_ref(b));
        }
        assert_eq!(lines(&mut lb), [ok("RETR x y "), ok("NOOP")]);
    }

    #[test]
    fn max_line_boundary() {
        let mut lb = LineBuffer::new(4);
        lb.push(b"ABCD\r\nABCD\nABCDE\r\nABC\n");
        assert_eq!(
            lines(&mut lb),
            [ok("ABCD"), ok("ABCD"), Err(LineError::TooLong), ok("ABC")]
        );
        // A line of max_line + 1 bytes without CR is only known to be too long at its LF.
        lb.push(b"ABCDE");
        assert_eq!(lines(&mut lb), []);
        lb.push(b"\n");
        assert_eq!(lines(&mut lb), [Err(LineError::TooLong)]);
    }

    #[test]
    fn overlong_line_reports_once_and_recovers() {
        let mut lb = LineBuffer::new(16);
        lb.push(b"NOOP\r\n");
        for _ in 0..1000 {
            lb.push(&[b'x'; 64]);
            assert!(lb.buffered() <= 16 + 1 + 4);
        }
        lb.push(b"yyy\r\nNOOP\r\n");
        assert_eq!(
            lines(&mut lb),
            [ok("NOOP"), Err(LineError::TooLong), ok("NOOP")]
        );
    }

    #[test]
    fn bounded_for_64k_line_without_crlf() {
        let mut lb = LineBuffer::new(512);
        lb.push(&vec![b'a'; 64 * 1024]);
        assert!(lb.buffered() <= 513);
        assert_eq!(lines(&mut lb), [Err(LineError::TooLong)]);
        assert!(lb.buffered() <= 513);
    }

    #[test]
    fn telnet_sequences_are_stripped() {
        let mut lb = LineBuffer::new(100);
        // IAC IP, IAC DM before ABOR (RFC 959 section 4.1.3).
        lb.push(&[0xFF, 0xF4, 0xFF, 0xF2]);
        lb.push(b"ABOR\r\n");
        assert_eq!(lines(&mut lb), [ok("ABOR")]);
        // IAC IAC -> 0xFF; IAC WILL x and IAC DO x dropped; split across pushes.
        lb.push(&[b'a', 0xFF]);
        lb.push(&[0xFF, b'b', 0xFF, 0xFB]);
        lb.push(&[0x01, b'c', 0xFF, 0xFD, 0x03, b'\r', b'\n']);
        assert_eq!(lines(&mut lb), [Ok(vec![b'a', 0xFF, b'b', b'c'])]);
        // A lone IAC before a normal byte is dropped; IAC LF and an LF option byte still end lines.
        lb.push(&[
            b'x', 0xFF, b'y', 0xFF, b'\n', 0xFF, 0xFB, b'\n', b'z', b'\n',
        ]);
        assert_eq!(lines(&mut lb), [ok("xy"), ok(""), ok("z")]);
    }

    #[test]
    fn parse_basic_verbs() {
        assert_eq!(parse(b"user alice"), Ok(Command::User("alice".into())));
        assert_eq!(parse(b"PASS"), Ok(Command::Pass(Password::default())));
        let pass = parse(b"PASS hunter2").unwrap();
        assert!(
            !format!("{pass:?}").contains("hunter2"),
            "Debug must not show a password"
        );
        assert_eq!(parse(b"PASV"), Ok(Command::Pasv));
        assert_eq!(parse(b"pasv "), Ok(Command::Pasv));
        assert_eq!(parse(b"SPAS"), Ok(Command::Spas));
        assert_eq!(parse(b"Quit"), Ok(Command::Quit));
        assert_eq!(parse(b"XMKD d"), Ok(Command::Mkd("d".into())));
        assert_eq!(parse(b"XPWD"), Ok(Command::Pwd));
        assert_eq!(parse(b"CDUP"), Ok(Command::Cdup));
        assert_eq!(parse(b"STOU"), Ok(Command::Stou(None)));
        assert_eq!(parse(b"STOU x"), Ok(Command::Stou(Some("x".into()))));
        assert_eq!(parse(b"FEAT"), Ok(Command::Feat));
        assert_eq!(parse(b"MLST"), Ok(Command::Mlst(None)));
        assert_eq!(
            parse(b"HOST ftp.example.com"),
            Ok(Command::Host("ftp.example.com".into()))
        );
        assert_eq!(parse(b"LANG EN"), Ok(Command::Lang(Some("EN".into()))));
        assert_eq!(parse(b"REIN"), Ok(Command::Rein));
        assert_eq!(parse(b"SMNT /x"), Ok(Command::Smnt("/x".into())));
    }

    #[test]
    fn file_names_keep_spaces() {
        assert_eq!(
            parse(b"STOR  my file.txt  "),
            Ok(Command::Stor("my file.txt  ".into()))
        );
        assert_eq!(parse(b"RETR a  b"), Ok(Command::Retr("a  b".into())));
        assert_eq!(
            parse("DELE ünï".as_bytes()),
            Ok(Command::Dele("ünï".into()))
        );
    }

    #[test]
    fn parse_errors() {
        assert_eq!(parse(b""), Err(ParseError::Empty));
        assert_eq!(parse(b"   "), Err(ParseError::Empty));
        assert_eq!(parse(b"FOO bar"), Err(ParseError::Unknown("FOO".into())));
        assert_eq!(
            parse(b"GET\x01\xffzzzzzzzzzzzzzzzzzzzzzz"),
            Err(ParseError::Unknown("GET??ZZZZZZZZZZZ".into()))
        );
        assert_eq!(parse(b"auth tls"), Ok(Command::Auth("TLS".into())));
        assert_eq!(parse(b"pbsz 0"), Ok(Command::Pbsz("0".into())));
        assert_eq!(parse(b"PROT p "), Ok(Command::Prot("P".into())));
        assert_eq!(parse(b"CCC"), Ok(Command::Ccc));
        assert_eq!(parse(b"AUTH"), Err(ParseError::MissingArgument("AUTH")));
        assert_eq!(parse(b"ADAT x"), Err(ParseError::NotImplemented("ADAT")));
        assert_eq!(parse(b"STOR"), Err(ParseError::MissingArgument("STOR")));
        assert_eq!(parse(b"CWD   "), Err(ParseError::MissingArgument("CWD")));
        assert_eq!(parse(b"STOR a\xffb"), Err(ParseError::Encoding));
        assert_eq!(parse(b"STOR a\0b"), Err(ParseError::NulByte));
        assert_eq!(parse(b"NO\0OP"), Err(ParseError::NulByte));
        assert_eq!(parse(b"REST -1"), Err(ParseError::BadArgument("REST")));
        assert_eq!(
            parse(b"REST 99999999999999999999"),
            Err(ParseError::BadArgument("REST"))
        );
        assert_eq!(parse(b"REST"), Err(ParseError::MissingArgument("REST")));
    }

    #[test]
    fn reply_codes() {
        assert_eq!(ParseError::Empty.reply_code(), 500);
        assert_eq!(ParseError::Unknown("X".into()).reply_code(), 500);
        assert_eq!(ParseError::NotImplemented("ADAT").reply_code(), 502);
        assert_eq!(ParseError::MissingArgument("X").reply_code(), 501);
        assert_eq!(ParseError::BadArgument("X").reply_code(), 501);
        assert_eq!(ParseError::Encoding.reply_code(), 501);
        assert_eq!(ParseError::NotImplementedParam("X").reply_code(), 504);
        assert_eq!(ParseError::UnsupportedMode("E".into()).reply_code(), 504);
        assert_eq!(ParseError::NulByte.reply_code(), 501);
        assert_eq!(ParseError::UnsupportedNetworkProtocol.reply_code(), 522);
    }

    #[test]
    fn type_stru_mode() {
        use TransferType::*;
        for (s, want) in [
            ("TYPE A", Ok(Ascii)),
            ("TYPE a n", Ok(Ascii)),
            ("TYPE I", Ok(Image)),
            ("TYPE i ", Ok(Image)),
            ("TYPE L 8", Ok(Image)),
            ("TYPE E", Err(ParseError::NotImplementedParam("TYPE"))),
            ("TYPE A T", Err(ParseError::NotImplementedParam("TYPE"))),
            ("TYPE A C", Err(ParseError::NotImplementedParam("TYPE"))),
            ("TYPE L 16", Err(ParseError::NotImplementedParam("TYPE"))),
            ("TYPE L", Err(ParseError::BadArgument("TYPE"))),
            ("TYPE X", Err(ParseError::BadArgument("TYPE"))),
            ("TYPE I N", Err(ParseError::BadArgument("TYPE"))),
            ("TYPE A N X", Err(ParseError::BadArgument("TYPE"))),
        ] {
            assert_eq!(parse(s.as_bytes()), want.map(Command::Type), "{s}");
        }
        assert_eq!(parse(b"STRU F"), Ok(Command::Stru(Structure::File)));
        assert_eq!(
            parse(b"STRU R"),
            Err(ParseError::NotImplementedParam("STRU"))
        );
        assert_eq!(parse(b"STRU Q"), Err(ParseError::BadArgument("STRU")));
        assert_eq!(parse(b"MODE s"), Ok(Command::Mode(TransferMode::Stream)));
        assert_eq!(parse(b"MODE B"), Ok(Command::Mode(TransferMode::Block)));
        assert_eq!(parse(b"mode e"), Ok(Command::Mode(TransferMode::Extended)));
        for m in ["C", "z"] {
            assert_eq!(
                parse(format!("MODE {m}").as_bytes()),
                Err(ParseError::UnsupportedMode(m.to_ascii_uppercase())),
                "{m}"
            );
        }
        assert_eq!(parse(b"MODE EZ"), Err(ParseError::BadArgument("MODE")));
        assert_eq!(parse(b"MODE 1"), Err(ParseError::BadArgument("MODE")));
        assert_eq!(parse(b"MODE"), Err(ParseError::MissingArgument("MODE")));
    }

    #[test]
    fn port() {
        assert_eq!(
            parse(b"PORT 127,0,0,1,156,64"),
            Ok(Command::Port("127.0.0.1:40000".parse().unwrap()))
        );
        for bad in [
            "PORT 127,0,0,1,156",
            "PORT 127,0,0,1,156,64,1",
            "PORT 256,0,0,1,1,1",
            "PORT 1,0,0,1,1,-1",
            "PORT 1,0,0,1,1,",
            "PORT 1,0,0,1,0,0",
            "PORT 0001,0,0,1,1,1",
            "PORT a,b,c,d,e,f",
        ] {
            assert_eq!(
                parse(bad.as_bytes()),
                Err(ParseError::BadArgument("PORT")),
                "{bad}"
            );
        }
    }

    #[test]
    fn eprt() {
        assert_eq!(
            parse(b"EPRT |1|132.235.1.2|6275|"),
            Ok(Command::Eprt("132.235.1.2:6275".parse().unwrap()))
        );
        assert_eq!(
            parse(b"EPRT |2|::1|6275|"),
            Ok(Command::Eprt("[::1]:6275".parse().unwrap()))
        );
        assert_eq!(
            parse(b"EPRT !2!1080::8:800:200C:417A!5282!"),
            Ok(Command::Eprt(
                "[1080::8:800:200C:417A]:5282".parse().unwrap()
            ))
        );
        for bad in [
            "EPRT |1|::1|6275|",
            "EPRT |2|1.2.3.4|6275|",
            "EPRT |1|1.2.3.4|70000|",
            "EPRT |1|1.2.3.4|0|",
            "EPRT |1|1.2.3.4|6275",
            "EPRT |1|1.2.3.4|6275||",
            "EPRT  1 1.2.3.4 6275 ",
            "EPRT |x|1.2.3.4|6275|",
        ] {
            assert_eq!(
                parse(bad.as_bytes()),
                Err(ParseError::BadArgument("EPRT")),
                "{bad}"
            );
        }
        assert_eq!(
            parse(b"EPRT |3|1.2.3.4|6275|"),
            Err(ParseError::UnsupportedNetworkProtocol)
        );
    }

    #[test]
    fn epsv() {
        assert_eq!(parse(b"EPSV"), Ok(Command::Epsv(EpsvArg::Any)));
        assert_eq!(parse(b"EPSV all"), Ok(Command::Epsv(EpsvArg::All)));
        assert_eq!(parse(b"EPSV 1"), Ok(Command::Epsv(EpsvArg::Proto(1))));
        assert_eq!(parse(b"EPSV 2"), Ok(Command::Epsv(EpsvArg::Proto(2))));
        assert_eq!(
            parse(b"EPSV 3"),
            Err(ParseError::UnsupportedNetworkProtocol)
        );
        assert_eq!(parse(b"EPSV x"), Err(ParseError::BadArgument("EPSV")));
    }

    #[test]
    fn rest_and_allo() {
        assert_eq!(parse(b"REST 0"), Ok(Command::Rest(0)));
        assert_eq!(
            parse(b"ERET P 100 1000 /a b"),
            Ok(Command::Eret {
                offset: 100,
                len: 1000,
                path: "/a b".into()
            })
        );
        assert_eq!(
            parse(b"ESTO A 7 x"),
            Ok(Command::Esto {
                offset: 7,
                path: "x".into()
            })
        );
        for bad in [
            &b"ERET X 1 2 f"[..],
            b"ERET P 1 f",
            b"ERET P a 2 f",
            b"ESTO B 1 f",
            b"ESTO A 1",
        ] {
            assert!(
                matches!(parse(bad), Err(ParseError::BadArgument(_))),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse(b"REST 100-200,0-50,40-60,300-300"),
            Ok(Command::RestRanges(vec![(0, 60), (100, 200)]))
        );
        assert_eq!(
            parse(b"REST 0-1048576,"),
            Ok(Command::RestRanges(vec![(0, 1048576)]))
        );
        for bad in [
            &b"REST 5-4"[..],
            b"REST -4",
            b"REST 1-",
            b"REST a-b",
            b"REST 1-2-3",
        ] {
            assert_eq!(parse(bad), Err(ParseError::BadArgument("REST")), "{bad:?}");
        }
        assert_eq!(
            parse(b"REST 18446744073709551615"),
            Ok(Command::Rest(u64::MAX))
        );
        assert_eq!(parse(b"REST +1"), Err(ParseError::BadArgument("REST")));
        assert_eq!(parse(b"ALLO 1000"), Ok(Command::Allo(1000)));
        assert_eq!(parse(b"ALLO 1000 R 80"), Ok(Command::Allo(1000)));
        assert_eq!(parse(b"ALLO 1000 R"), Err(ParseError::BadArgument("ALLO")));
        assert_eq!(parse(b"ALLO x"), Err(ParseError::BadArgument("ALLO")));
    }

    #[test]
    fn set_time_commands() {
        assert_eq!(
            parse(b"MFMT 20231114221320 a b.txt"),
            Ok(Command::Mfmt {
                time: 1_700_000_000,
                path: "a b.txt".into()
            })
        );
        assert_eq!(parse(b"MFMT 2023 x"), Err(ParseError::BadArgument("MFMT")));
        assert_eq!(
            parse(b"MFMT 20231114221320"),
            Err(ParseError::BadArgument("MFMT"))
        );
        assert_eq!(parse(b"MFMT"), Err(ParseError::MissingArgument("MFMT")));
        assert_eq!(
            parse(b"MDTM 20231114221320 f.bin"),
            Ok(Command::MdtmSet {
                time: 1_700_000_000,
                path: "f.bin".into()
            })
        );
        // One argument is the query; so is a name that merely starts with digits.
        assert_eq!(parse(b"MDTM f.bin"), Ok(Command::Mdtm("f.bin".into())));
        assert_eq!(
            parse(b"MDTM 2023 report.txt"),
            Ok(Command::Mdtm("2023 report.txt".into()))
        );
        assert_eq!(parse(b"MDTM 20231114221320").unwrap().verb(), "MDTM");
        assert!(!parse(b"MFMT 20231114221320 x")
            .unwrap()
            .allowed_before_login());
    }

    #[test]
    fn checksum_commands() {
        assert_eq!(
            parse(b"CKSM MD5 0 -1 /tmp/gft/dst 2.bin"),
            Ok(Command::Cksm {
                algo: "MD5".into(),
                offset: 0,
                length: None,
                path: "/tmp/gft/dst 2.bin".into()
            })
        );
        assert_eq!(
            parse(b"cksm sha256 10 20 f"),
            Ok(Command::Cksm {
                algo: "sha256".into(),
                offset: 10,
                length: Some(20),
                path: "f".into()
            })
        );
        for bad in [
            &b"CKSM MD5 0 -1"[..],
            b"CKSM MD5 x -1 f",
            b"CKSM MD5 0 -2 f",
            b"CKSM MD5 -1 -1 f",
        ] {
            assert_eq!(parse(bad), Err(ParseError::BadArgument("CKSM")), "{bad:?}");
        }
        assert_eq!(parse(b"CKSM"), Err(ParseError::MissingArgument("CKSM")));
        assert_eq!(parse(b"HASH a b"), Ok(Command::Hash("a b".into())));
        let x = parse(b"xsha256 f.bin").unwrap();
        assert_eq!(
            x,
            Command::XDigest {
                algo: Algo::Sha256,
                path: "f.bin".into()
            }
        );
        assert_eq!(x.verb(), "XSHA256");
        assert_eq!(parse(b"XCRC f").unwrap().verb(), "XCRC");
        assert_eq!(parse(b"XMD5"), Err(ParseError::MissingArgument("XMD5")));
        assert!(!x.allowed_before_login());
        // Digits are allowed after the first letter only, and long verbs stay unknown.
        assert_eq!(parse(b"1STOR x"), Err(ParseError::Unknown("1STOR".into())));
        assert_eq!(
            parse(b"XSHA2566 x"),
            Err(ParseError::Unknown("XSHA2566".into()))
        );
    }

    #[test]
    fn list_options() {
        assert_eq!(parse(b"LIST"), Ok(Command::List(None)));
        assert_eq!(parse(b"LIST -la"), Ok(Command::List(None)));
        assert_eq!(
            parse(b"LIST -l -a  my dir"),
            Ok(Command::List(Some("my dir".into())))
        );
        assert_eq!(parse(b"NLST ./-x"), Ok(Command::Nlst(Some("./-x".into()))));
        assert_eq!(parse(b"MLSD -a d"), Ok(Command::Mlsd(Some("d".into()))));
        assert_eq!(parse(b"STAT"), Ok(Command::Stat(None)));
        assert_eq!(parse(b"STAT -l f"), Ok(Command::Stat(Some("f".into()))));
    }

    #[test]
    fn opts() {
        assert_eq!(
            parse(b"OPTS utf8 ON"),
            Ok(Command::Opts("UTF8".into(), Some("ON".into())))
        );
        assert_eq!(
            parse(b"OPTS MLST type;size;"),
            Ok(Command::Opts("MLST".into(), Some("type;size;".into())))
        );
        assert_eq!(parse(b"OPTS x"), Ok(Command::Opts("X".into(), None)));
        assert_eq!(parse(b"OPTS"), Err(ParseError::MissingArgument("OPTS")));
    }

    #[test]
    fn verbs_and_login_gate() {
        let c = parse(b"XRMD d").unwrap();
        assert_eq!(c.verb(), "RMD");
        assert!(parse(b"USER x").unwrap().allowed_before_login());
        assert!(parse(b"FEAT").unwrap().allowed_before_login());
        assert!(!parse(b"STOR x").unwrap().allowed_before_login());
        assert!(!parse(b"PASV").unwrap().allowed_before_login());
        assert!(!parse(b"CWD /").unwrap().allowed_before_login());
    }

    /// Splits `data` at the given cut points (taken modulo its length).
    fn chunks(data: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
        points.push(0);
        points.push(data.len());
        points.sort_unstable();
        points
            .windows(2)
            .map(|w| data[w[0]..w[1]].to_vec())
            .collect()
    }

    fn frame_all(data: &[u8], max: usize, cuts: &[usize]) -> Vec<Result<Vec<u8>, LineError>> {
        let mut lb = LineBuffer::new(max);
        let mut out = Vec::new();
        for c in chunks(data, cuts) {
            lb.push(&c);
            assert!(lb.current.capacity() <= max + 1);
            out.extend(lines(&mut lb));
        }
        out
    }

    proptest! {
        #[test]
        fn prop_parse_never_panics(line in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Err(e) = parse(&line) {
                let code = e.reply_code();
                prop_assert!((500..=599).contains(&code));
                if let ParseError::Unknown(v) = e {
                    prop_assert!(v.len() <= 16 && v.bytes().all(|b| b.is_ascii_graphic()));
                }
            }
        }

        #[test]
        fn prop_parse_text_never_panics(line in "[A-Za-z]{1,5}( [ -~]{0,40})?") {
            let _ = parse(line.as_bytes());
        }

        #[test]
        fn prop_framing_independent_of_splits(
            data in proptest::collection::vec(
                prop_oneof![Just(b'\n'), Just(b'\r'), Just(0xFF), Just(0xF4), Just(0xFB), any::<u8>(), Just(b'a')],
                0..400,
            ),
            max in 0usize..40,
            cuts in proptest::collection::vec(any::<usize>(), 0..20),
        ) {
            let whole = frame_all(&data, max, &[]);
            let split = frame_all(&data, max, &cuts);
            prop_assert_eq!(&whole, &split);
            for line in whole.iter().flatten() {
                prop_assert!(line.len() <= max);
                prop_assert!(!line.contains(&b'\n'));
            }
        }

        #[test]
        fn prop_plain_lines_roundtrip(
            ls in proptest::collection::vec("[ -~]{0,30}", 0..10),
            crlf in any::<bool>(),
            cuts in proptest::collection::vec(any::<usize>(), 0..10),
        ) {
            let sep = if crlf { "\r\n" } else { "\n" };
            let data: String = ls.iter().map(|l| format!("{l}{sep}")).collect();
            let got = frame_all(data.as_bytes(), 30, &cuts);
            let want: Vec<_> = ls.iter().map(|l| Ok(l.as_bytes().to_vec())).collect();
            prop_assert_eq!(got, want);
        }
    }
}
