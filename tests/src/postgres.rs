//! A throwaway PostgreSQL cluster for one test, through the project's `scripts/postgres.sh`
//! (Debian's server binaries, unpacked by `scripts/install-tools.sh postgres`), stopped when
//! dropped.

use std::path::PathBuf;
use std::process::Command;

pub struct Postgres {
    pub url: String,
    pub port: u16,
    dir: PathBuf,
}

fn script(args: &[&str]) -> String {
    let mut cmd = Command::new("bash");
    cmd.arg(crate::root().join("scripts/postgres.sh"))
        .args(args);
    let out = crate::succeed(cmd, &format!("scripts/postgres.sh {args:?} failed"));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

impl Postgres {
    /// A new cluster under the test's log directory, on a free port.
    pub fn start(test: &str) -> Self {
        let dir = crate::log_dir(test).join("postgres");
        let _ = std::fs::remove_dir_all(&dir);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut pg = Self {
            url: String::new(),
            port,
            dir,
        };
        pg.url = pg.resume();
        pg
    }

    /// Stops the server (a database outage); [`resume`](Self::resume) starts it again.
    pub fn stop(&self) {
        script(&["stop", self.dir.to_str().expect("utf-8 path")]);
    }

    pub fn resume(&self) -> String {
        script(&[
            "start",
            self.dir.to_str().expect("utf-8 path"),
            &self.port.to_string(),
        ])
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(crate::root().join("scripts/postgres.sh"))
            .args(["stop", self.dir.to_str().unwrap_or_default()])
            .output();
    }
}
