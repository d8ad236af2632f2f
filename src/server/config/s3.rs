//! Where uploads land: the local file system (the default) or an S3 bucket, and the object
//! store's settings. Checked when the file is read; the client is built at start-up.

use std::path::PathBuf;
use std::time::Duration;

use super::policies::StorageKind;

/// The object store's settings (used when `storage = "s3"`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Settings {
    /// e.g. `http://127.0.0.1:3900`, path-style requests.
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    /// A user's keys start with this, `{user}` replaced by the login name: users never see or
    /// touch each other's objects, the way a root directory jails them locally.
    pub prefix: String,
    /// The key id and secret; `None`: from the environment.
    pub credentials_file: Option<PathBuf>,
    /// The first parts' size (parts grow past it only for files beyond 10,000 of them).
    pub part_size: u64,
    /// Bytes all uploads of the server may hold in part buffers at once; an upload past it waits,
    /// and so does its client (TCP back-pressure).
    pub memory_cap: u64,
    /// How long one store request may take, its retries included, before the command fails
    /// with 451: a store that is down costs a client this long, never a hang.
    pub timeout: Duration,
    /// Threads that send requests (each with its own connection pool).
    pub threads: usize,
    /// SO_RCVBUF of an upload's data connection (0: the kernel's autotuning). Back-pressure
    /// leaves a waiting upload's bytes in the kernel: with autotuning up to tcp_rmem's maximum,
    /// a few hundred waiting uploads can push TCP into memory pressure, which slows every
    /// connection of the machine. This bounds the kernel's share per upload.
    pub socket_buffer: usize,
}

impl Default for S3Settings {
    fn default() -> Self {
        S3Settings {
            endpoint: String::new(),
            region: "us-east-1".into(),
            bucket: String::new(),
            prefix: "{user}/".into(),
            credentials_file: None,
            part_size: 8 << 20,
            memory_cap: 1 << 30,
            timeout: Duration::from_secs(30),
            threads: 8,
            socket_buffer: 1 << 20,
        }
    }
}

impl S3Settings {
    /// The key prefix of `user`: `prefix` with `{user}` replaced, any leading '/' dropped, and a
    /// '/' added unless empty, so a user's keys never run into another's (`ann` vs `anna`).
    pub fn prefix_of(&self, user: &str) -> String {
        let p = self.prefix.replace("{user}", user);
        let p = p.trim_start_matches('/');
        if p.is_empty() || p.ends_with('/') {
            p.to_string()
        } else {
            format!("{p}/")
        }
    }

    /// What `storage = "s3"` needs before start-up can go on.
    pub fn check(&self, kind: StorageKind) -> Result<(), String> {
        if kind != StorageKind::S3 {
            return Ok(());
        }
        if self.endpoint.is_empty() {
            return Err("storage = \"s3\" needs s3_endpoint".into());
        }
        if self.bucket.is_empty() {
            return Err("storage = \"s3\" needs s3_bucket".into());
        }
        // S3's part limits (config sits below storage, so they are spelled here).
        if !((5 << 20)..=(5 << 30)).contains(&self.part_size) {
            return Err(format!(
                "s3_part_size must be between 5 MiB and 5 GiB, got {}",
                self.part_size
            ));
        }
        // Two part buffers per upload at least, or no upload could ever make progress.
        if self.memory_cap < 2 * self.part_size {
            return Err(format!(
                "s3_memory_cap ({}) must hold at least two parts of s3_part_size ({})",
                self.memory_cap, self.part_size
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_separated_per_user() {
        let s = S3Settings::default();
        assert_eq!(s.prefix_of("ann"), "ann/");
        let s = S3Settings {
            prefix: "/ingest/{user}".into(),
            ..S3Settings::default()
        };
        assert_eq!(s.prefix_of("ann"), "ingest/ann/");
        let s = S3Settings {
            prefix: String::new(),
            ..S3Settings::default()
        };
        assert_eq!(s.prefix_of("ann"), "");
    }

    #[test]
    fn s3_needs_an_endpoint_a_bucket_and_room_for_two_parts() {
        let mut s = S3Settings::default();
        assert!(s.check(StorageKind::Local).is_ok());
        assert!(s
            .check(StorageKind::S3)
            .unwrap_err()
            .contains("s3_endpoint"));
        s.endpoint = "http://127.0.0.1:3900".into();
        assert!(s.check(StorageKind::S3).unwrap_err().contains("s3_bucket"));
        s.bucket = "b".into();
        assert!(s.check(StorageKind::S3).is_ok());
        s.memory_cap = s.part_size;
        assert!(s.check(StorageKind::S3).unwrap_err().contains("two parts"));
        s.part_size = 1 << 20;
        assert!(s.check(StorageKind::S3).unwrap_err().contains("5 MiB"));
    }
}
