//! The session state machine driven line by line, with no I/O: every rule a client can meet
//! (login, permissions, the drop box, transfers and their replies) checked deterministically.

use super::*;
use proptest::prelude::*;

fn peer() -> SocketAddr {
    "127.0.0.1:50000".parse().unwrap()
}

fn line(s: &str) -> Result<Vec<u8>, LineError> {
    Ok(s.as_bytes().to_vec())
}

fn code(a: &Action) -> u16 {
    match a {
        Action::Reply(r) | Action::Close(r) => r.code,
        other => panic!("expected a reply, got {other:?}"),
    }
}

fn logged_in() -> Session {
    let mut s = Session::new(SessionConfig::default(), peer());
    assert_eq!(code(&s.on_line(line("USER alice"))), 331);
    assert_eq!(
        s.on_line(line("PASS secret")),
        Action::Authenticate {
            user: "alice".into(),
            password: "secret".into()
        }
    );
    assert_eq!(s.login_done(Some(Access::full())).code, 230);
    s
}

#[test]
fn commands_before_login_get_530() {
    let mut s = Session::new(SessionConfig::default(), peer());
    for cmd in [
        "PWD", "STOR x", "LIST", "CWD /", "PASV", "RETR a", "MKD d", "DELE f", "SIZE f",
    ] {
        assert_eq!(code(&s.on_line(line(cmd))), 530, "{cmd}");
    }
    assert_eq!(code(&s.on_line(line("SYST"))), 215);
    assert_eq!(code(&s.on_line(line("FEAT"))), 211);
    assert_eq!(code(&s.on_line(line("QUIT"))), 221);
}

#[test]
fn wrong_password_is_530_and_resets() {
    let mut s = Session::new(SessionConfig::default(), peer());
    s.on_line(line("USER bob"));
    assert!(matches!(
        s.on_line(line("PASS nope")),
        Action::Authenticate { .. }
    ));
    assert_eq!(s.login_done(None).code, 530);
    assert_eq!(code(&s.on_line(line("PWD"))), 530);
    assert_eq!(code(&s.on_line(line("PASS again"))), 503);
}

#[test]
fn unavailable_login_is_421_and_leaves_the_session_logged_out() {
    let mut s = Session::new(SessionConfig::default(), peer());
    s.on_line(line("USER bob"));
    s.on_line(line("PASS right"));
    let r = s.login_unavailable("Home directory not available (it does not exist).");
    assert_eq!(r.code, 421);
    assert!(s.user().is_none());
    assert_eq!(code(&s.on_line(line("PWD"))), 530);
}

#[test]
fn names_reserved_by_the_server_cannot_be_created() {
    let mut s = logged_in();
    s.on_line(line("PASV"));
    s.passive_done(PassiveStyle::Pasv, Some(peer()));
    for cmd in [
        "STOR .ringest-backup.part",
        "STOR sub/.ringest-partial-0123456789abcdef.part",
        "APPE .ringest-x",
        "STOU .ringest-y",
        "MKD .ringest-dir",
    ] {
        assert_eq!(code(&s.on_line(line(cmd))), 553, "{cmd}");
    }
    assert!(matches!(s.on_line(line("RNFR a")), Action::Fs(_)));
    assert_eq!(s.fs_done(Ok(FsOutcome::Done)).code, 350);
    assert_eq!(code(&s.on_line(line("RNTO .ringest-z"))), 553);
    // Other names starting with a dot are the user's business.
    assert!(matches!(
        s.on_line(line("STOR .ringestx")),
        Action::Transfer(_)
    ));
}

#[test]
fn pwd_cwd_and_traversal_stay_in_root() {
    let mut s = logged_in();
    assert_eq!(
        s.on_line(line("CWD ../../..")),
        Action::Fs(FsOp::ChangeDir(VPath::root()))
    );
    assert_eq!(s.fs_done(Ok(FsOutcome::Done)).code, 250);
    let a = s.on_line(line("PWD"));
    assert_eq!(
        a,
        Action::Reply(Reply::new(257, "\"/\" is the current directory."))
    );
    let Action::Fs(FsOp::ChangeDir(p)) = s.on_line(line("CWD a/b")) else {
        panic!()
    };
    assert_eq!(p.as_str(), "/a/b");
    assert_eq!(s.fs_done(Ok(FsOutcome::Done)).code, 250);
    assert_eq!(s.cwd().as_str(), "/a/b");
    let Action::Fs(FsOp::ChangeDir(p)) = s.on_line(line("CDUP")) else {
        panic!()
    };
    assert_eq!(p.as_str(), "/a");
    assert_eq!(s.fs_done(Err(FsError::NotFound)).code, 550);
    assert_eq!(s.cwd().as_str(), "/a/b");
}

#[test]
fn transfer_needs_a_data_endpoint() {
    let mut s = logged_in();
    assert_eq!(code(&s.on_line(line("STOR x"))), 425);
    assert_eq!(
        s.on_line(line("PASV")),
        Action::OpenPassive {
            style: PassiveStyle::Pasv
        }
    );
    let r = s.passive_done(PassiveStyle::Pasv, Some("127.0.0.1:40001".parse().unwrap()));
    assert_eq!(
        r,
        Reply::new(227, "Entering Passive Mode (127,0,0,1,156,65).")
    );
    let Action::Transfer(t) = s.on_line(line("STOR ../up.bin")) else {
        panic!()
    };
    assert_eq!(t.path.as_str(), "/up.bin");
    assert_eq!(t.kind, TransferKind::Store);
    assert_eq!(t.endpoint, DataEndpoint::Passive);
    assert_eq!(s.transfer_opening().code, 150);
    assert_eq!(
        s.transfer_done(TransferOutcome::Complete {
            bytes: 3,
            kept_open: false
        })
        .code,
        226
    );
    // The endpoint is used up by the transfer.
    assert_eq!(code(&s.on_line(line("RETR up.bin"))), 425);
}

#[test]
fn epsv_reply_format() {
    let mut s = logged_in();
    assert_eq!(
        s.on_line(line("EPSV")),
        Action::OpenPassive {
            style: PassiveStyle::Epsv
        }
    );
    let r = s.passive_done(PassiveStyle::Epsv, Some("127.0.0.1:40001".parse().unwrap()));
    assert_eq!(
        r,
        Reply::new(229, "Entering Extended Passive Mode (|||40001|)")
    );
    assert_eq!(code(&s.on_line(line("EPSV 2"))), 522);
}

#[test]
fn port_bounce_is_refused() {
    let mut s = logged_in();
    assert_eq!(code(&s.on_line(line("PORT 127,0,0,2,100,100"))), 500);
    assert_eq!(code(&s.on_line(line("PORT 127,0,0,1,0,80"))), 500);
    assert_eq!(code(&s.on_line(line("EPRT |1|10.0.0.1|5000|"))), 500);
    assert_eq!(code(&s.on_line(line("PORT 127,0,0,1,100,100"))), 200);
    let Action::Transfer(t) = s.on_line(line("RETR f")) else {
        panic!()
    };
    assert_eq!(
        t.endpoint,
        DataEndpoint::Active("127.0.0.1:25700".parse().unwrap())
    );
}

#[test]
fn fs_errors_map_to_replies() {
    let mut s = logged_in();
    s.on_line(line("SIZE nothere"));
    assert_eq!(s.fs_done(Err(FsError::NotFound)).code, 550);
    s.on_line(line("SIZE f"));
    assert_eq!(s.fs_done(Ok(FsOutcome::Size(42))), Reply::new(213, "42"));
    s.on_line(line("MKD d"));
    assert_eq!(
        s.fs_done(Ok(FsOutcome::Done)),
        Reply::new(257, "\"/d\" created.")
    );
    s.on_line(line("PASV"));
    s.passive_done(PassiveStyle::Pasv, Some("127.0.0.1:40001".parse().unwrap()));
    s.on_line(line("STOR big"));
    assert_eq!(
        s.transfer_done(TransferOutcome::Local(FsError::NoSpace))
            .code,
        552
    );
}

#[test]
fn unknown_and_unimplemented() {
    let mut s = logged_in();
    assert_eq!(code(&s.on_line(line("XYZZY"))), 500);
    assert_eq!(code(&s.on_line(Err(LineError::TooLong))), 500);
    assert_eq!(code(&s.on_line(line("MODE B"))), 504);
    assert_eq!(code(&s.on_line(line("SITE IDLE 60"))), 502);
    assert_eq!(code(&s.on_line(line("SITE CHMOD 9 x"))), 501);
}

#[test]
fn modes_name_what_is_available() {
    let mut s = logged_in();
    for m in ["Z", "C"] {
        let Action::Reply(r) = s.on_line(line(&format!("MODE {m}"))) else {
            panic!()
        };
        assert_eq!(r.code, 504, "{m}");
        assert_eq!(
            r.lines[0],
            format!("MODE {m} not implemented; available modes: S (stream).")
        );
    }
    // Without registered buffers MODE E is not offered either.
    let Action::Reply(r) = s.on_line(line("MODE E")) else {
        panic!()
    };
    assert_eq!(r.code, 504);
    assert!(
        r.lines[0].ends_with("available modes: S (stream)."),
        "{r:?}"
    );
    let mut s = Session::new(
        SessionConfig {
            block_mode: true,
            ..SessionConfig::default()
        },
        peer(),
    );
    let Action::Reply(r) = s.on_line(line("MODE Z")) else {
        panic!()
    };
    assert!(
        r.lines[0].ends_with("S (stream), B (block) and E (extended block)."),
        "{r:?}"
    );
    assert_eq!(code(&s.on_line(line("MODE x1"))), 501);
}

#[test]
fn mode_e_sends_and_receives_but_not_over_tls() {
    let mut s = Session::new(
        SessionConfig {
            block_mode: true,
            tls: TlsPolicy {
                control: TlsMode::Optional,
                ..TlsPolicy::default()
            },
            ..SessionConfig::default()
        },
        peer(),
    );
    s.on_line(line("USER alice"));
    s.on_line(line("PASS secret"));
    s.login_done(Some(Access::full()));
    assert_eq!(code(&s.on_line(line("MODE E"))), 200);
    assert_eq!(code(&s.on_line(line("PORT 127,0,0,1,200,10"))), 200);
    // GridFTP: the sender opens as many connections as OPTS RETR asked for.
    for bad in [
        "OPTS RETR Parallelism=0,0,0;",
        "OPTS RETR Parallelism=65;",
        "OPTS RETR Parallelism=x",
        "OPTS RETR Speed=4",
    ] {
        assert_eq!(code(&s.on_line(line(bad))), 501, "{bad}");
    }
    assert_eq!(code(&s.on_line(line("OPTS RETR Parallelism=4,4,4;"))), 200);
    assert_eq!(code(&s.on_line(line("TYPE A"))), 200);
    assert_eq!(code(&s.on_line(line("RETR f"))), 504, "MODE E needs TYPE I");
    assert_eq!(code(&s.on_line(line("TYPE I"))), 200);
    assert_eq!(code(&s.on_line(line("APPE f"))), 504);
    match s.on_line(line("RETR f")) {
        Action::Transfer(t) => {
            assert_eq!(t.mode, TransferMode::Extended);
            assert_eq!(t.parallelism, 4);
            assert!(matches!(t.endpoint, DataEndpoint::Active(_)));
            assert_eq!(s.transfer_opening().code, 150);
            let r = s.transfer_done(TransferOutcome::Complete {
                bytes: 1,
                kept_open: true,
            });
            assert_eq!(r.code, 226);
        }
        other => panic!("{other:?}"),
    }
    // The connections the send opened carry the next transfer, announced with 125.
    match s.on_line(line("MLSD")) {
        Action::Transfer(t) => {
            assert_eq!(t.endpoint, DataEndpoint::Open);
            assert_eq!(s.transfer_opening().code, 125);
            s.transfer_done(TransferOutcome::Complete {
                bytes: 1,
                kept_open: true,
            });
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(code(&s.on_line(line("SITE CLIENTINFO appname=\"x\""))), 250);
    // globus-url-copy -stripe: one stripe, announced as GridFTP servers do.
    assert_eq!(
        s.on_line(line("SPAS")),
        Action::OpenPassive {
            style: PassiveStyle::Striped
        }
    );
    let r = s.passive_done(
        PassiveStyle::Striped,
        Some("127.0.0.1:40001".parse().unwrap()),
    );
    assert_eq!(
        String::from_utf8(r.to_bytes()).unwrap(),
        "229-Entering Striped Passive Mode.\r\n 127,0,0,1,156,65\r\n229 End\r\n"
    );
    assert_eq!(code(&s.on_line(line("SITE STORBUFSIZE 65536"))), 200);
    match s.on_line(line("STOR f")) {
        Action::Transfer(t) => {
            assert_eq!(t.mode, TransferMode::Extended);
            // SPAS made a new passive endpoint.
            assert_eq!(t.endpoint, DataEndpoint::Passive);
            assert_eq!(s.transfer_opening().code, 150);
            let r = s.transfer_done(TransferOutcome::Complete {
                bytes: 1,
                kept_open: true,
            });
            assert_eq!(r.code, 226);
        }
        other => panic!("{other:?}"),
    }
    // The kept connections carry the next STOR without a new PASV.
    assert!(
        matches!(s.on_line(line("STOR g")), Action::Transfer(t) if t.endpoint == DataEndpoint::Open)
    );
}

#[test]
fn host_only_before_login() {
    let mut s = Session::new(SessionConfig::default(), peer());
    assert_eq!(code(&s.on_line(line("HOST ftp.example.com"))), 220);
    s.on_line(line("USER alice"));
    assert_eq!(code(&s.on_line(line("HOST ftp.example.com"))), 503);
    let mut s = logged_in();
    let Action::Reply(r) = s.on_line(line("HOST ftp.example.com")) else {
        panic!()
    };
    assert_eq!(r.code, 503);
    assert!(r.lines[0].contains("RFC 7151"), "{r:?}");
}

#[test]
fn eprt_and_port_name_themselves() {
    let mut s = logged_in();
    let Action::Reply(r) = s.on_line(line("EPRT |1|127.0.0.1|40000|")) else {
        panic!()
    };
    assert_eq!(
        r,
        Reply::new(200, "EPRT command successful. Consider using EPSV.")
    );
    let Action::Reply(r) = s.on_line(line("PORT 127,0,0,1,156,64")) else {
        panic!()
    };
    assert_eq!(
        r,
        Reply::new(200, "PORT command successful. Consider using PASV.")
    );
    let Action::Reply(r) = s.on_line(line("EPRT |1|127.0.0.2|40000|")) else {
        panic!()
    };
    assert_eq!(r, Reply::new(500, "Illegal EPRT command."));
}

#[test]
fn nul_byte_is_named() {
    let mut s = logged_in();
    let Action::Reply(r) = s.on_line(Ok(b"STOR a\0b".to_vec())) else {
        panic!()
    };
    assert_eq!(r, Reply::new(501, "Command contains a NUL byte; refused."));
}

#[test]
fn set_times_and_chmod() {
    let mut s = logged_in();
    let want = FsOp::SetTimes {
        path: VPath::root().join("f.bin").unwrap(),
        mtime: 1_700_000_000,
        atime: None,
    };
    for (cmd, reply) in [
        (
            "MFMT 20231114221320 f.bin",
            Reply::new(213, "Modify=20231114221320; /f.bin"),
        ),
        (
            "MDTM 20231114221320 f.bin",
            Reply::new(213, "Modify=20231114221320; /f.bin"),
        ),
        (
            "SITE UTIME 20231114221320 f.bin",
            Reply::new(200, "SITE UTIME command successful."),
        ),
    ] {
        assert_eq!(s.on_line(line(cmd)), Action::Fs(want.clone()), "{cmd}");
        assert_eq!(s.fs_done(Ok(FsOutcome::Done)), reply, "{cmd}");
    }
    assert_eq!(
        s.on_line(line(
            "SITE UTIME f.bin 19700101000000 20231114221320 20231114221320 UTC"
        )),
        Action::Fs(FsOp::SetTimes {
            path: VPath::root().join("f.bin").unwrap(),
            mtime: 1_700_000_000,
            atime: Some(0),
        })
    );
    assert_eq!(
        s.fs_done(Err(FsError::NotFound)),
        Reply::new(550, "SITE UTIME: No such file or directory.")
    );
    s.on_line(line("MFMT 20231114221320 gone"));
    assert_eq!(
        s.fs_done(Err(FsError::NotFound)),
        Reply::new(550, "MFMT: No such file or directory.")
    );
    assert_eq!(
        s.on_line(line("SITE CHMOD 644 f.bin")),
        Action::Fs(FsOp::Chmod {
            path: VPath::root().join("f.bin").unwrap(),
            mode: 0o644
        })
    );
    assert_eq!(
        s.fs_done(Ok(FsOutcome::Mode(0o644))),
        Reply::new(200, "SITE CHMOD command ok (mode 0644).")
    );
    // A plain MDTM afterwards still answers the query.
    s.on_line(line("MDTM f.bin"));
    assert_eq!(
        s.fs_done(Ok(FsOutcome::ModifyTime(0))),
        Reply::new(213, "19700101000000")
    );
    let Action::Reply(r) = s.on_line(line("SITE HELP")) else {
        panic!()
    };
    assert_eq!(r.code, 214);
    assert!(r.lines.iter().any(|l| l.contains("UTIME")));
    let Action::Reply(r) = s.on_line(line("FEAT")) else {
        panic!()
    };
    assert!(r.lines.iter().any(|l| l == "MFMT"), "{r:?}");
}

#[test]
fn drop_box_cannot_change_attributes() {
    let mut s = Session::new(SessionConfig::default(), peer());
    s.on_line(line("USER anonymous"));
    s.on_line(line("PASS x@y"));
    let incoming = VPath::root().join("incoming").unwrap();
    s.login_done(Some(Access::drop_box(incoming)));
    for cmd in [
        "MFMT 20231114221320 incoming/a",
        "MDTM 20231114221320 incoming/a",
        "SITE UTIME 20231114221320 incoming/a",
        "SITE CHMOD 777 incoming/a",
    ] {
        assert_eq!(code(&s.on_line(line(cmd))), 550, "{cmd}");
    }
}

#[test]
fn wildcards_list_the_parent_with_a_pattern() {
    let mut s = logged_in();
    for (cmd, dir, pat, arg) in [
        ("NLST *.bin", "/", Some("*.bin"), Some("*.bin")),
        (
            "NLST sub/g?.bin",
            "/sub",
            Some("g?.bin"),
            Some("sub/g?.bin"),
        ),
        ("LIST -l [ab]*", "/", Some("[ab]*"), Some("[ab]*")),
        ("NLST sub", "/sub", None, Some("sub")),
        ("NLST", "/", None, None),
        // Only the last component is a pattern.
        ("NLST *x/y", "/*x/y", None, Some("*x/y")),
    ] {
        s.on_line(line("PASV"));
        s.passive_done(PassiveStyle::Pasv, Some(peer()));
        let Action::Transfer(t) = s.on_line(line(cmd)) else {
            panic!("{cmd}")
        };
        assert_eq!(t.path.as_str(), dir, "{cmd}");
        assert_eq!(t.pattern.as_ref().map(|g| g.as_str()), pat, "{cmd}");
        assert_eq!(t.arg.as_deref(), arg, "{cmd}");
        s.transfer_done(TransferOutcome::Complete {
            bytes: 0,
            kept_open: false,
        });
    }
}

#[test]
fn short_upload_is_426() {
    let mut s = logged_in();
    s.on_line(line("ALLO 1000"));
    s.on_line(line("PASV"));
    s.passive_done(PassiveStyle::Pasv, Some(peer()));
    // A listing in between does not use up the ALLO.
    let Action::Transfer(t) = s.on_line(line("NLST")) else {
        panic!()
    };
    assert_eq!(t.allocate, None);
    s.transfer_done(TransferOutcome::Complete {
        bytes: 0,
        kept_open: false,
    });
    s.on_line(line("PASV"));
    s.passive_done(PassiveStyle::Pasv, Some(peer()));
    let Action::Transfer(t) = s.on_line(line("STOR x")) else {
        panic!()
    };
    assert_eq!(t.allocate, Some(1000));
    let r = s.transfer_done(TransferOutcome::Short {
        received: 10,
        announced: 1000,
    });
    assert_eq!(r.code, 426);
    assert!(r.lines[0].contains("10 of the 1000 bytes"), "{r:?}");
}

proptest! {
    /// Any sequence of lines, with any I/O outcomes fed back, never panics and never leaves the root.
    #[test]
    fn arbitrary_lines_never_panic(lines in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..32), ok in any::<bool>()) {
        // TLS offered (required when `ok`), so AUTH/PBSZ/PROT paths are in the mix too.
        let tls = TlsPolicy {
            control: if ok { TlsMode::Required } else { TlsMode::Optional },
            data_required: ok,
            implicit: false,
        };
        let mut s = Session::new(SessionConfig { tls, ..SessionConfig::default() }, peer());
        for l in lines {
            match s.on_line(Ok(l)) {
                Action::Authenticate { .. } => { s.login_done(ok.then(Access::full)); }
                Action::OpenPassive { style } => { s.passive_done(style, Some(peer())); }
                Action::Transfer(_) => { s.transfer_done(TransferOutcome::ConnectionLost); }
                Action::Fs(_) => { s.fs_done(if ok { Ok(FsOutcome::Done) } else { Err(FsError::NotFound) }); }
                Action::Reply(r) | Action::Close(r) => prop_assert!((100..600).contains(&r.code)),
                Action::StartTls(r) => prop_assert_eq!(r.code, 234),
            }
            prop_assert!(s.cwd().as_str().starts_with('/'));
            prop_assert!(!s.cwd().as_str().contains(".."));
        }
    }
}

fn block_session() -> Session {
    let mut s = Session::new(
        SessionConfig {
            block_mode: true,
            ..SessionConfig::default()
        },
        peer(),
    );
    s.on_line(line("USER a"));
    s.on_line(line("PASS b"));
    s.login_done(Some(Access::full()));
    s
}

#[test]
fn block_mode_keeps_the_data_connection() {
    let mut s = block_session();
    assert_eq!(code(&s.on_line(line("MODE B"))), 200);
    s.on_line(line("PASV"));
    s.passive_done(PassiveStyle::Pasv, Some("127.0.0.1:40001".parse().unwrap()));
    let Action::Transfer(t) = s.on_line(line("STOR a")) else {
        panic!()
    };
    assert_eq!(
        (t.endpoint, t.mode),
        (DataEndpoint::Passive, TransferMode::Block)
    );
    assert_eq!(s.transfer_opening().code, 150);
    assert_eq!(
        s.transfer_done(TransferOutcome::Complete {
            bytes: 1,
            kept_open: true
        })
        .code,
        250
    );
    assert!(s.keep_data_connection());
    // The next file rides the open connection: 125, no PASV needed.
    let Action::Transfer(t) = s.on_line(line("STOR b")) else {
        panic!()
    };
    assert_eq!(t.endpoint, DataEndpoint::Open);
    assert_eq!(s.transfer_opening().code, 125);
    // A client that drops the connection mid-file: 426 and the connection is gone.
    assert_eq!(s.transfer_done(TransferOutcome::ConnectionLost).code, 426);
    assert!(!s.keep_data_connection());
    assert_eq!(code(&s.on_line(line("STOR c"))), 425);
}

#[test]
fn block_connection_ends_on_pasv_port_and_mode_s() {
    for cmd in ["PASV", "EPSV", "PORT 127,0,0,1,100,100", "MODE S"] {
        let mut s = block_session();
        s.on_line(line("MODE B"));
        s.on_line(line("EPSV"));
        s.passive_done(PassiveStyle::Epsv, Some("127.0.0.1:40001".parse().unwrap()));
        s.on_line(line("STOR a"));
        s.transfer_done(TransferOutcome::Complete {
            bytes: 1,
            kept_open: true,
        });
        assert!(s.keep_data_connection());
        s.on_line(line(cmd));
        assert!(
            !s.keep_data_connection(),
            "{cmd} must end the kept connection"
        );
    }
}

#[test]
fn rest_applies_to_the_next_transfer_only() {
    let mut s = logged_in();
    assert_eq!(code(&s.on_line(line("REST 100"))), 350);
    s.on_line(line("PASV"));
    s.passive_done(PassiveStyle::Pasv, Some("127.0.0.1:40001".parse().unwrap()));
    let Action::Transfer(t) = s.on_line(line("RETR f")) else {
        panic!()
    };
    assert_eq!(t.offset, 100);
    s.transfer_done(TransferOutcome::Complete {
        bytes: 1,
        kept_open: false,
    });
    s.on_line(line("PASV"));
    s.passive_done(PassiveStyle::Pasv, Some("127.0.0.1:40001".parse().unwrap()));
    let Action::Transfer(t) = s.on_line(line("RETR f")) else {
        panic!()
    };
    assert_eq!(t.offset, 0);
}

#[test]
fn rename_needs_rnfr_right_before() {
    let mut s = logged_in();
    assert_eq!(code(&s.on_line(line("RNTO b"))), 503);
    assert_eq!(
        s.on_line(line("RNFR a")),
        Action::Fs(FsOp::RenameFrom(VPath::root().join("a").unwrap()))
    );
    assert_eq!(s.fs_done(Ok(FsOutcome::Done)).code, 350);
    let Action::Fs(FsOp::Rename { from, to }) = s.on_line(line("RNTO sub/b")) else {
        panic!()
    };
    assert_eq!((from.as_str(), to.as_str()), ("/a", "/sub/b"));
    assert_eq!(s.fs_done(Ok(FsOutcome::Done)).code, 250);
    s.on_line(line("RNFR a"));
    s.fs_done(Ok(FsOutcome::Done));
    s.on_line(line("NOOP"));
    assert_eq!(
        code(&s.on_line(line("RNTO b"))),
        503,
        "RNFR is valid for the next command only"
    );
}

#[test]
fn mdtm_mlst_stat_replies() {
    let mut s = logged_in();
    s.on_line(line("MDTM f"));
    assert_eq!(
        s.fs_done(Ok(FsOutcome::ModifyTime(1_700_000_000))),
        Reply::new(213, "20231114221320")
    );
    s.on_line(line("MLST f"));
    let r = s.fs_done(Ok(FsOutcome::Lines(vec!["type=file;size=1; f".into()])));
    assert_eq!(r.code, 250);
    assert_eq!(r.lines[1], "type=file;size=1; f");
    assert!(String::from_utf8(r.to_bytes())
        .unwrap()
        .contains("\r\n type=file;size=1; f\r\n"));
    let Action::Reply(r) = s.on_line(line("STAT")) else {
        panic!()
    };
    assert_eq!(r.code, 211);
    assert_eq!(code(&s.on_line(line("ABOR"))), 226);
    assert_eq!(code(&s.on_line(line("ALLO 1000"))), 200);
    s.on_line(line("PASV"));
    s.passive_done(PassiveStyle::Pasv, Some(peer()));
    let Action::Transfer(t) = s.on_line(line("STOR x")) else {
        panic!()
    };
    assert_eq!(t.allocate, Some(1000));
}

#[test]
fn drop_box_only_uploads_into_incoming() {
    let mut s = Session::new(SessionConfig::default(), peer());
    s.on_line(line("USER anonymous"));
    s.on_line(line("PASS x@y"));
    let incoming = VPath::root().join("incoming").unwrap();
    assert_eq!(s.login_done(Some(Access::drop_box(incoming))).code, 230);
    for cmd in [
        "LIST",
        "NLST",
        "RETR incoming/a",
        "SIZE incoming/a",
        "DELE incoming/a",
        "MKD x",
        "RNFR incoming/a",
        "APPE incoming/a",
        "MLSD",
        // Outside the incoming directory too: a drop box reads nothing anywhere.
        "RETR pub/f",
        "LIST pub",
        "MLST pub/f",
        "MDTM pub/f",
        "STAT pub",
    ] {
        assert_eq!(code(&s.on_line(line(cmd))), 550, "{cmd}");
    }
    for cmd in ["STOR a", "STOR incomingx/a", "STOR ../a"] {
        assert_eq!(code(&s.on_line(line(cmd))), 553, "{cmd}");
    }
    s.on_line(line("PASV"));
    s.passive_done(PassiveStyle::Pasv, Some(peer()));
    let Action::Transfer(t) = s.on_line(line("STOR incoming/new.bin")) else {
        panic!()
    };
    assert!(t.no_overwrite);
    assert_eq!(t.path.as_str(), "/incoming/new.bin");
}

#[test]
fn aborted_transfer_replies_426_then_226() {
    let mut s = logged_in();
    s.on_line(line("PASV"));
    s.passive_done(PassiveStyle::Pasv, Some(peer()));
    s.on_line(line("STOR x"));
    assert_eq!(s.transfer_done(TransferOutcome::Aborted).code, 426);
    assert_eq!(s.abort_reply().code, 226);
}

fn tls_session(control: TlsMode, data_required: bool) -> Session {
    let cfg = SessionConfig {
        tls: TlsPolicy {
            control,
            data_required,
            implicit: false,
        },
        ..SessionConfig::default()
    };
    Session::new(cfg, peer())
}

fn starts_tls(a: &Action) -> bool {
    matches!(a, Action::StartTls(r) if r.code == 234)
}

#[test]
fn auth_tls_then_pbsz_and_prot_in_order() {
    let mut s = tls_session(TlsMode::Optional, false);
    assert_eq!(code(&s.on_line(line("PBSZ 0"))), 503, "PBSZ before AUTH");
    assert_eq!(code(&s.on_line(line("PROT P"))), 503, "PROT before AUTH");
    assert_eq!(code(&s.on_line(line("AUTH KERBEROS"))), 504);
    assert!(starts_tls(&s.on_line(line("AUTH TLS"))));
    assert!(s.is_secure());
    assert_eq!(
        code(&s.on_line(line("AUTH TLS"))),
        503,
        "a second AUTH inside TLS"
    );
    assert_eq!(code(&s.on_line(line("PROT P"))), 503, "PROT before PBSZ");
    assert_eq!(code(&s.on_line(line("PBSZ 0"))), 200);
    assert_eq!(code(&s.on_line(line("PROT S"))), 536);
    assert_eq!(code(&s.on_line(line("PROT X"))), 504);
    assert_eq!(code(&s.on_line(line("PROT P"))), 200);
    assert!(s.data_protected());
    assert_eq!(code(&s.on_line(line("CCC"))), 534);
    assert_eq!(code(&s.on_line(line("PROT C"))), 200);
    assert!(!s.data_protected());
}

#[test]
fn feat_lists_tls_only_when_it_is_on() {
    let feat = |s: &mut Session| match s.on_line(line("FEAT")) {
        Action::Reply(r) => r.lines.join("\n"),
        other => panic!("{other:?}"),
    };
    let on = feat(&mut tls_session(TlsMode::Optional, false));
    for l in ["AUTH TLS", "PBSZ", "PROT"] {
        assert!(on.contains(l), "{l} in {on}");
    }
    let off = feat(&mut tls_session(TlsMode::Off, false));
    assert!(!off.contains("AUTH TLS"));
    assert_eq!(
        code(&tls_session(TlsMode::Off, false).on_line(line("AUTH TLS"))),
        502
    );
}

#[test]
fn tls_required_refuses_user_before_auth_and_auth_ssl_protects_data() {
    let mut s = tls_session(TlsMode::Required, false);
    assert_eq!(code(&s.on_line(line("USER alice"))), 530);
    assert_eq!(code(&s.on_line(line("PASS x"))), 503);
    // AUTH SSL (old clients) implies protected data without PBSZ/PROT.
    assert!(starts_tls(&s.on_line(line("AUTH SSL"))));
    assert!(s.data_protected());
    assert_eq!(code(&s.on_line(line("USER alice"))), 331);
}

#[test]
fn auth_after_login_is_refused_and_a_clear_user_is_forgotten() {
    let mut s = tls_session(TlsMode::Optional, false);
    assert_eq!(code(&s.on_line(line("USER alice"))), 331);
    assert!(starts_tls(&s.on_line(line("AUTH TLS"))));
    assert_eq!(
        code(&s.on_line(line("PASS secret"))),
        503,
        "USER again under TLS"
    );
    let mut s = logged_in();
    let mut cfg_s = tls_session(TlsMode::Optional, false);
    std::mem::swap(&mut s.cfg, &mut cfg_s.cfg);
    assert_eq!(code(&s.on_line(line("AUTH TLS"))), 503);
}

#[test]
fn required_data_protection_refuses_clear_transfers_and_prot_c() {
    let mut s = tls_session(TlsMode::Optional, true);
    assert!(starts_tls(&s.on_line(line("AUTH TLS"))));
    assert_eq!(code(&s.on_line(line("USER alice"))), 331);
    assert!(matches!(
        s.on_line(line("PASS secret")),
        Action::Authenticate { .. }
    ));
    assert_eq!(s.login_done(Some(Access::full())).code, 230);
    assert_eq!(code(&s.on_line(line("PORT 127,0,0,1,200,10"))), 200);
    assert_eq!(code(&s.on_line(line("STOR f"))), 521);
    assert_eq!(code(&s.on_line(line("PBSZ 0"))), 200);
    assert_eq!(code(&s.on_line(line("PROT C"))), 534);
    assert_eq!(code(&s.on_line(line("PROT P"))), 200);
    match s.on_line(line("STOR f")) {
        Action::Transfer(t) => assert!(t.protected),
        other => panic!("expected a transfer, got {other:?}"),
    }
    assert_eq!(
        s.transfer_done(TransferOutcome::Truncated { received: 5 })
            .code,
        426
    );
}

#[test]
fn a_user_rule_can_require_protected_data_after_login() {
    let mut s = logged_in();
    s.set_data_required(true);
    assert_eq!(code(&s.on_line(line("PORT 127,0,0,1,200,10"))), 200);
    assert_eq!(code(&s.on_line(line("RETR f"))), 521);
}

#[test]
fn data_tls_failures_have_their_own_replies() {
    let mut s = logged_in();
    assert_eq!(
        s.transfer_done(TransferOutcome::DataTlsNotResumed).code,
        522
    );
    assert_eq!(s.transfer_done(TransferOutcome::DataTlsFailed).code, 425);
}

fn fs_op(a: Action) -> FsOp {
    match a {
        Action::Fs(op) => op,
        other => panic!("expected a file operation, got {other:?}"),
    }
}

#[test]
fn checksum_commands_ask_for_the_digest_and_format_each_reply() {
    let mut s = logged_in();
    let f = VPath::root().join("f.bin").unwrap();
    // GridFTP CKSM, as globus-url-copy -verify-checksum sends it.
    assert_eq!(
        fs_op(s.on_line(line("CKSM md5 0 -1 /f.bin"))),
        FsOp::Checksum {
            path: f.clone(),
            algo: Algo::Md5,
            offset: 0,
            length: None
        }
    );
    let hex = "743c3094be99bc57c3bf0503376dda3c".to_string();
    assert_eq!(
        s.fs_done(Ok(FsOutcome::Checksum {
            hex: hex.clone(),
            end: 3
        })),
        Reply::new(213, hex.clone())
    );
    assert_eq!(
        fs_op(s.on_line(line("CKSM SHA256 5 10 f.bin"))),
        FsOp::Checksum {
            path: f.clone(),
            algo: Algo::Sha256,
            offset: 5,
            length: Some(10)
        }
    );
    assert_eq!(s.fs_done(Err(FsError::NotFound)).code, 550);
    assert_eq!(code(&s.on_line(line("CKSM WHIRLPOOL 0 -1 f.bin"))), 504);
    assert_eq!(code(&s.on_line(line("CKSM MD5 0 f.bin"))), 501);

    // HASH: SHA-256 unless configured or chosen otherwise.
    assert_eq!(
        fs_op(s.on_line(line("HASH f.bin"))),
        FsOp::Checksum {
            path: f.clone(),
            algo: Algo::Sha256,
            offset: 0,
            length: None
        }
    );
    assert_eq!(
        s.fs_done(Ok(FsOutcome::Checksum {
            hex: "ab".into(),
            end: 7
        })),
        Reply::new(213, "SHA-256 0-6 ab /f.bin")
    );
    assert_eq!(
        s.on_line(line("OPTS HASH MD5")),
        Action::Reply(Reply::new(200, "MD5"))
    );
    assert_eq!(
        s.on_line(line("OPTS HASH sha-3")),
        Action::Reply(Reply::new(
            501,
            "Unknown algorithm, current selection not changed."
        ))
    );
    assert_eq!(
        s.on_line(line("OPTS HASH")),
        Action::Reply(Reply::new(200, "MD5"))
    );
    let Action::Fs(FsOp::Checksum { algo, .. }) = s.on_line(line("HASH f.bin")) else {
        panic!()
    };
    assert_eq!(algo, Algo::Md5);
    s.fs_done(Err(FsError::IsADirectory));

    // ProFTPD's X-digests answer 250.
    assert_eq!(
        fs_op(s.on_line(line("XSHA256 f.bin"))),
        FsOp::Checksum {
            path: f,
            algo: Algo::Sha256,
            offset: 0,
            length: None
        }
    );
    assert_eq!(
        s.fs_done(Ok(FsOutcome::Checksum {
            hex: "cd".into(),
            end: 1
        })),
        Reply::new(250, "cd")
    );
    let Action::Fs(FsOp::Checksum { algo, .. }) = s.on_line(line("XCRC f.bin")) else {
        panic!()
    };
    assert_eq!(algo, Algo::Crc32);
}

#[test]
fn checksums_need_login_and_read_access() {
    let mut s = Session::new(SessionConfig::default(), peer());
    for cmd in ["CKSM MD5 0 -1 f", "HASH f", "XSHA256 f", "XCRC f"] {
        assert_eq!(code(&s.on_line(line(cmd))), 530, "{cmd}");
    }
    s.on_line(line("USER anonymous"));
    s.on_line(line("PASS x@y"));
    let incoming = VPath::root().join("incoming").unwrap();
    s.login_done(Some(Access::drop_box(incoming)));
    for cmd in [
        "CKSM MD5 0 -1 incoming/f",
        "HASH incoming/f",
        "XMD5 incoming/f",
    ] {
        assert_eq!(code(&s.on_line(line(cmd))), 550, "{cmd}");
    }
}

#[test]
fn feat_lists_cksm_and_hash_with_the_selected_one() {
    let cfg = SessionConfig {
        checksums: vec![Algo::Crc32c, Algo::Md5],
        ..SessionConfig::default()
    };
    let mut s = Session::new(cfg, peer());
    let Action::Reply(r) = s.on_line(line("FEAT")) else {
        panic!()
    };
    assert!(
        r.lines
            .iter()
            .any(|l| l.starts_with("CKSM MD5:10;ADLER32:10;SHA1:10;SHA256:10;")),
        "{r:?}"
    );
    assert!(
        r.lines
            .iter()
            .any(|l| l == "HASH SHA-1;SHA-256;SHA-512;MD5*;CRC32"),
        "{r:?}"
    );
    assert_eq!(
        s.on_line(line("OPTS HASH")),
        Action::Reply(Reply::new(200, "MD5"))
    );
}

#[test]
fn eret_and_esto_are_retr_and_stor_with_a_range() {
    let mut s = logged_in();
    s.on_line(line("PORT 127,0,0,1,200,10"));
    match s.on_line(line("ERET P 100 1000 a b.bin")) {
        Action::Transfer(t) => {
            assert_eq!(t.kind, TransferKind::Retrieve);
            assert_eq!((t.offset, t.partial, t.adjusted), (100, Some(1000), false));
            assert_eq!(t.path.as_str(), "/a b.bin");
        }
        other => panic!("{other:?}"),
    }
    s.transfer_done(TransferOutcome::Complete {
        bytes: 1000,
        kept_open: false,
    });
    s.on_line(line("PORT 127,0,0,1,200,10"));
    match s.on_line(line("ESTO A 7 x.bin")) {
        Action::Transfer(t) => {
            assert_eq!(t.kind, TransferKind::Store);
            assert_eq!((t.offset, t.partial, t.adjusted), (7, None, true));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(code(&s.on_line(line("ERET X 1 2 f"))), 501);
    // ESTO changes a stored file: not for a drop box.
    let mut s = Session::new(SessionConfig::default(), peer());
    s.on_line(line("USER alice"));
    s.on_line(line("PASS secret"));
    s.login_done(Some(Access::drop_box(VPath::root())));
    s.on_line(line("PORT 127,0,0,1,200,10"));
    assert_eq!(code(&s.on_line(line("ESTO A 0 x.bin"))), 550);
}
