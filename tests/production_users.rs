//! Users file: password hash formats (argon2id, SHA-crypt $5$/$6$, bcrypt when a generator
//! is available), per-user root jail, permissions, and the anonymous drop box.

mod common;

use common::*;
use std::fs;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn argon2(pw: &str) -> String {
    let r = ringest_cmd(&["passwd", "--password", pw], Duration::from_secs(30));
    r.assert_success("ringest passwd");
    let h = r.stdout_str().trim().to_string();
    assert!(
        h.starts_with("$argon2id$"),
        "ringest passwd printed {h:?}, expected an argon2id PHC string"
    );
    h
}

fn openssl(alg: &str, pw: &str) -> String {
    require_tool("openssl");
    let r = run_cmd(
        Command::new("openssl").args(["passwd", alg, "-salt", "abcdefgh", pw]),
        Duration::from_secs(20),
    );
    r.assert_success("openssl passwd");
    r.stdout_str().trim().to_string()
}

fn bcrypt(pw: &str) -> Option<String> {
    which("python3")?;
    let r = run_cmd(
        Command::new("python3").args([
            "-c",
            "import bcrypt,sys; print(bcrypt.hashpw(sys.argv[1].encode(), bcrypt.gensalt(rounds=4)).decode())",
            pw,
        ]),
        Duration::from_secs(20),
    );
    if r.success() {
        Some(r.stdout_str().trim().to_string())
    } else {
        None
    }
}

struct Users {
    base: tempfile::TempDir,
}

impl Users {
    fn new() -> Users {
        Users {
            base: tempfile::Builder::new()
                .prefix("ringest-users-")
                .tempdir()
                .unwrap(),
        }
    }
    fn dir(&self, name: &str) -> PathBuf {
        let p = self.base.path().join(name);
        fs::create_dir_all(&p).unwrap();
        p
    }
    fn start(&self, toml: &str) -> ServerProc {
        let f = self.base.path().join("users.toml");
        fs::write(&f, toml).unwrap();
        let root = self.dir("unused-root");
        users_file_server(self.base.path(), &f, &["--root", root.to_str().unwrap()])
    }
}

fn user_entry(name: &str, hash: &str, root: &Path, perms: Option<&[&str]>) -> String {
    let mut s = format!(
        "[[user]]\nname = \"{name}\"\npassword = \"{hash}\"\nroot = \"{}\"\n",
        root.display()
    );
    if let Some(p) = perms {
        let list: Vec<String> = p.iter().map(|x| format!("\"{x}\"")).collect();
        s.push_str(&format!("permissions = [{}]\n", list.join(", ")));
    }
    s.push('\n');
    s
}

fn try_login(addr: std::net::SocketAddr, user: &str, pass: &str) -> u16 {
    let mut c = Ftp::connect(addr);
    let r = c.cmd(&format!("USER {user}"));
    if r.code != 331 {
        return r.code;
    }
    c.cmd(&format!("PASS {pass}")).code
}

#[test]
fn password_hash_formats() {
    let u = Users::new();
    let mut toml = String::new();
    let mut accounts: Vec<(String, String)> = vec![
        ("argon".into(), argon2("Argon-pw-1")),
        ("sha512".into(), openssl("-6", "Sha512-pw-2")),
        ("sha256".into(), openssl("-5", "Sha256-pw-3")),
    ];
    let pws = ["Argon-pw-1", "Sha512-pw-2", "Sha256-pw-3", "Bcrypt-pw-4"];
    match bcrypt("Bcrypt-pw-4") {
        Some(h) => accounts.push(("bcrypt".into(), h)),
        None => panic!(
            "python3 module `bcrypt` is needed to generate a $2b$ hash for this test \
             (python3 -m pip install bcrypt; .ci/run does this)"
        ),
    }
    for (name, hash) in &accounts {
        eprintln!("{name}: {hash}");
        toml.push_str(&user_entry(name, hash, &u.dir(name), None));
    }
    let srv = u.start(&toml);
    for (i, (name, _)) in accounts.iter().enumerate() {
        assert_eq!(
            try_login(srv.addr, name, pws[i]),
            230,
            "{name} with the right password"
        );
        assert_eq!(
            try_login(srv.addr, name, "wrong"),
            530,
            "{name} with a wrong password"
        );
        assert_eq!(
            try_login(srv.addr, name, &pws[i][..pws[i].len() - 1]),
            530,
            "{name} with a truncated password"
        );
    }
    assert_eq!(
        try_login(srv.addr, "nobody", "Argon-pw-1"),
        530,
        "unknown user"
    );
}

#[test]
fn per_user_root_jail() {
    let u = Users::new();
    let (ra, rb) = (u.dir("alice"), u.dir("bob"));
    fs::write(ra.join("a.txt"), b"alice's").unwrap();
    fs::write(rb.join("b.txt"), b"bob's secret").unwrap();
    let h = argon2("pw");
    let srv = u.start(&(user_entry("alice", &h, &ra, None) + &user_entry("bob", &h, &rb, None)));
    let mut c = srv.login("alice", "pw");
    c.cmd_expect("TYPE I", 200);
    let names: Vec<String> = c
        .listing("NLST", DataMode::Pasv)
        .lines()
        .map(|l| l.trim_end_matches('\r').trim_start_matches('/').to_string())
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(names, vec!["a.txt".to_string()], "alice's NLST /");
    assert_eq!(c.retr("/a.txt", DataMode::Pasv), b"alice's");
    for p in [
        "../bob/b.txt",
        "/../bob/b.txt",
        "../../bob/b.txt",
        "/bob/b.txt",
    ] {
        let a = c.try_download(&format!("RETR {p}"), DataMode::Pasv);
        assert!(
            !a.succeeded() && a.data.is_empty(),
            "alice: RETR {p} reached bob's file: {:?}",
            a.replies
        );
    }
    c.cmd("CWD ..");
    let r = c.cmd_expect("PWD", 257);
    assert_eq!(
        parse_257(&r.lines[0]).as_deref(),
        Some("/"),
        "PWD after CWD .. at the jail root"
    );
    c.stor("up.txt", b"from alice", DataMode::Pasv);
    assert_file_content(&ra.join("up.txt"), b"from alice", "alice's upload");
    assert!(!rb.join("up.txt").exists() && !u.base.path().join("up.txt").exists());
    c.cmd_expect("QUIT", 221);
    let mut b = srv.login("bob", "pw");
    let list = b.listing("LIST", DataMode::Pasv);
    assert!(
        list.contains("b.txt") && !list.contains("a.txt") && !list.contains("up.txt"),
        "bob's LIST: {list:?}"
    );
    b.cmd_expect("QUIT", 221);
}

#[test]
fn permissions_are_enforced() {
    let u = Users::new();
    let (rr, rw) = (u.dir("ro"), u.dir("nodel"));
    fs::write(rr.join("f.txt"), b"read me").unwrap();
    fs::write(rw.join("f.txt"), b"keep me").unwrap();
    fs::create_dir(rw.join("d")).unwrap();
    let h = argon2("pw");
    let toml = user_entry("ro", &h, &rr, Some(&["read"]))
        + &user_entry("nodel", &h, &rw, Some(&["read", "write", "mkdir"]));
    let srv = u.start(&toml);

    let mut c = srv.login("ro", "pw");
    c.cmd_expect("TYPE I", 200);
    assert_eq!(
        c.retr("f.txt", DataMode::Pasv),
        b"read me",
        "read-only user RETR"
    );
    let a = c.try_stor("new.txt", b"x", DataMode::Pasv);
    assert_eq!(a.final_code(), 550, "read-only user STOR: {:?}", a.replies);
    let a = c.try_upload("APPE", "f.txt", b"x", DataMode::Pasv);
    assert_eq!(a.final_code(), 550, "read-only user APPE: {:?}", a.replies);
    c.cmd_expect("DELE f.txt", 550);
    c.cmd_expect("MKD d", 550);
    c.cmd_expect("RNFR f.txt", 550);
    assert_eq!(
        dir_names(&rr),
        vec!["f.txt".to_string()],
        "read-only user's root changed"
    );
    assert_file_content(&rr.join("f.txt"), b"read me", "read-only user's file");
    c.cmd_expect("QUIT", 221);

    let mut c = srv.login("nodel", "pw");
    c.cmd_expect("TYPE I", 200);
    c.stor("new.txt", b"written", DataMode::Pasv);
    assert_file_content(&rw.join("new.txt"), b"written", "write permission");
    c.cmd_expect("MKD d2", 257);
    c.cmd_expect("DELE f.txt", 550);
    c.cmd_expect("RMD d", 550);
    c.cmd_expect("RNFR f.txt", 550);
    assert_file_content(
        &rw.join("f.txt"),
        b"keep me",
        "DELE without delete permission",
    );
    assert!(
        rw.join("d").is_dir(),
        "RMD without delete permission removed d"
    );
    c.cmd_expect("QUIT", 221);
}

#[test]
fn anonymous_drop_box() {
    let u = Users::new();
    let anon = u.dir("anon");
    fs::create_dir(anon.join("incoming")).unwrap();
    fs::write(anon.join("readme.txt"), b"public?").unwrap();
    let toml = user_entry("alice", &argon2("pw"), &u.dir("alice"), None)
        + &format!(
            "[anonymous]\nenabled = true\nroot = \"{}\"\nincoming = \"/incoming\"\n",
            anon.display()
        );
    let srv = u.start(&toml);
    for user in ["anonymous", "ftp"] {
        let mut c = srv.login(user, "someone@example.org");
        c.cmd_expect("TYPE I", 200);
        let name = format!("/incoming/drop-{user}.bin");
        c.stor(&name, b"dropped", DataMode::Pasv);
        assert_file_content(
            &anon.join(format!("incoming/drop-{user}.bin")),
            b"dropped",
            "anonymous upload",
        );
        // Overwrite.
        let a = c.try_stor(&name, b"overwritten", DataMode::Pasv);
        assert_eq!(
            a.final_code(),
            550,
            "{user}: overwrite in incoming: {:?}",
            a.replies
        );
        assert_file_content(
            &anon.join(format!("incoming/drop-{user}.bin")),
            b"dropped",
            "after refused overwrite",
        );
        // Outside incoming.
        let a = c.try_stor("/outside.bin", b"x", DataMode::Pasv);
        assert_eq!(
            a.final_code(),
            553,
            "{user}: STOR outside incoming: {:?}",
            a.replies
        );
        assert!(!anon.join("outside.bin").exists());
        // No listing, download, delete.
        for line in [
            "LIST",
            "NLST",
            "LIST /incoming",
            "NLST /incoming",
            "MLSD /incoming",
        ] {
            let a = c.try_download(line, DataMode::Pasv);
            assert_eq!(a.final_code(), 550, "{user}: {line}: {:?}", a.replies);
            assert!(
                a.data.is_empty(),
                "{user}: {line} returned data: {:?}",
                String::from_utf8_lossy(&a.data)
            );
        }
        for line in [format!("RETR {name}"), "RETR /readme.txt".into()] {
            let a = c.try_download(&line, DataMode::Pasv);
            assert_eq!(a.final_code(), 550, "{user}: {line}: {:?}", a.replies);
            assert!(a.data.is_empty(), "{user}: {line} returned data");
        }
        c.cmd_expect(&format!("DELE {name}"), 550);
        assert!(
            anon.join(format!("incoming/drop-{user}.bin")).exists(),
            "anonymous DELE deleted the file"
        );
        for line in [
            format!("RNFR {name}"),
            "MKD /incoming/sub".into(),
            "RMD /incoming".into(),
        ] {
            let r = c.cmd(&line);
            assert_eq!(r.first_digit(), 5, "{user}: {line}: expected 5xx, got {r}");
        }
        for line in [format!("SIZE {name}"), format!("MDTM {name}")] {
            let r = c.cmd(&line);
            assert_eq!(r.code, 550, "{user}: {line}: expected 550, got {r}");
        }
        c.cmd_expect("QUIT", 221);
    }
    assert!(!anon.join("incoming/sub").exists());
    // Anonymous is a different account from real users: alice still logs in normally.
    let mut a = srv.login("alice", "pw");
    a.cmd_expect("QUIT", 221);
    let _ = TcpStream::connect(srv.addr).map(|mut s| s.write_all(b"QUIT\r\n"));
}

#[test]
fn anonymous_disabled_by_default() {
    let u = Users::new();
    let srv = u.start(&user_entry("alice", &argon2("pw"), &u.dir("alice"), None));
    for user in ["anonymous", "ftp"] {
        assert_eq!(
            try_login(srv.addr, user, "x@y"),
            530,
            "{user} without an [anonymous] section"
        );
    }
}
