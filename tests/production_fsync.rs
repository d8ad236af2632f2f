//! The fsync policies: with `file` and `batch`, uploads are acknowledged only after their data (and
//! directory entry) are durable; the observable part here is that every policy lands every file
//! byte-exact, concurrently, and that `batch` groups many sessions' files without losing any.

mod common;

use common::*;
use std::thread;

fn run_policy(policy: &'static str) {
    let srv = Server::start_with(ServerOpts {
        extra_args: vec!["--fsync".into(), policy.into()],
        ..Default::default()
    });
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let addr = srv.addr;
            let (user, pass) = (srv.user.clone(), srv.pass.clone());
            thread::spawn(move || {
                let mut c = Ftp::connect(addr);
                c.login(&user, &pass);
                c.cmd_expect("TYPE I", 200);
                for i in 0..10 {
                    let data = test_bytes(1000 + w * 37 + i, (w * 100 + i) as u64);
                    c.stor(&format!("{policy}-{w}-{i}.bin"), &data, DataMode::Pasv);
                }
            })
        })
        .collect();
    for h in workers {
        h.join().expect("upload worker");
    }
    for w in 0..8usize {
        for i in 0..10usize {
            let data = test_bytes(1000 + w * 37 + i, (w * 100 + i) as u64);
            let name = format!("{policy}-{w}-{i}.bin");
            assert_file_content(&srv.root.path().join(&name), &data, &name);
        }
    }
}

#[test]
fn fsync_file_policy_lands_everything() {
    run_policy("file");
}

#[test]
fn fsync_batch_policy_lands_everything() {
    run_policy("batch");
}

#[test]
fn fsync_none_policy_lands_everything() {
    run_policy("none");
}
