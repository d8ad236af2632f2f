//! `--fs-ops ring` (file-system calls through io_uring and its io-wq workers, instead of the default
//! direct calls on the core thread) must land the same bytes as the default: stream uploads of every size class over both data paths, concurrent
//! sessions, and MODE B (tests/py/modeb_edge.py).

mod common;

use common::*;
use std::thread;

fn ring_server(dp: DataPath) -> Server {
    Server::start_with(ServerOpts {
        data_path: Some(dp),
        extra_args: vec!["--fs-ops".into(), "ring".into()],
        ..Default::default()
    })
}

#[test]
fn stream_uploads_land_byte_exact() {
    for_each_data_path(|dp| {
        let srv = ring_server(dp);
        let mut c = srv.login();
        c.cmd_expect("TYPE I", 200);
        for (i, size) in [0usize, 1, 4096, MIB as usize + 1, 8 * MIB as usize + 3]
            .into_iter()
            .enumerate()
        {
            let data = test_bytes(size, 70 + i as u64);
            let name = format!("ring-{size}.bin");
            c.stor(&name, &data, DataMode::Pasv);
            assert_file_content(&srv.root.path().join(&name), &data, &name);
            assert_eq!(c.retr(&name, DataMode::Epsv), data, "{name} read back");
        }
        // Replacing an existing file goes through link + rename.
        let data = test_bytes(5000, 99);
        c.stor("ring-0.bin", &data, DataMode::Pasv);
        assert_file_content(&srv.root.path().join("ring-0.bin"), &data, "replaced");
    });
}

#[test]
fn concurrent_sessions_land_byte_exact() {
    let srv = ring_server(DataPath::Fixed);
    let workers: Vec<_> = (0..16usize)
        .map(|w| {
            let (addr, user, pass) = (srv.addr, srv.user.clone(), srv.pass.clone());
            thread::spawn(move || {
                let mut c = Ftp::connect(addr);
                c.login(&user, &pass);
                c.cmd_expect("TYPE I", 200);
                for i in 0..20usize {
                    c.stor(
                        &format!("c-{w}-{i}"),
                        &test_bytes(i * 997 + w, (w * 1000 + i) as u64),
                        DataMode::Pasv,
                    );
                }
            })
        })
        .collect();
    for h in workers {
        h.join().expect("worker");
    }
    for w in 0..16usize {
        for i in 0..20usize {
            let name = format!("c-{w}-{i}");
            assert_file_content(
                &srv.root.path().join(&name),
                &test_bytes(i * 997 + w, (w * 1000 + i) as u64),
                &name,
            );
        }
    }
}

#[test]
fn block_mode_edge_cases_ring() {
    run_modeb_edge(&ring_server(DataPath::Fixed));
}
