//! A broker that requires SCRAM-SHA-512 over TLS, as the security tests need it: tansu built with
//! PostgreSQL storage (the only build whose SCRAM logins check a stored credential), behind
//! stunnel terminating TLS with a certificate from a CA the test generates. `BROKER.md`'s recipe:
//! users and topics are created while the broker runs without `--authentication`, then it is
//! restarted with the flag, advertising the TLS address.
//!
//! What this proves and what it cannot: the broker answers a wrong password with an error the
//! client must act on, and does not itself close the connection; TLS is enforced by stunnel;
//! ACLs are not enforced at all (README, "Security").

use crate::broker::{Broker, create_topic, free_port};
use crate::postgres::Postgres;
use crate::succeed;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A CA, and a certificate for `localhost` and `127.0.0.1` signed by it, in PEM files.
pub struct Pki {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    dir: PathBuf,
}

/// Runs `openssl` with `args` in `dir`; fails the test, with its stderr, unless it succeeds.
fn openssl(dir: &Path, args: &[&str]) {
    let mut cmd = Command::new("openssl");
    cmd.current_dir(dir).args(args);
    succeed(cmd, &format!("openssl {args:?}"));
}

impl Pki {
    /// A new CA named `name` under `dir`, with a server certificate for `localhost` and
    /// `127.0.0.1`.
    pub fn generate(dir: &Path, name: &str) -> Self {
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).expect("pki dir");
        let subject = format!("/CN={name} test CA");
        openssl(
            &dir,
            &[
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", &subject,
                "-keyout", "ca.key", "-out", "ca.crt",
            ],
        );
        let mut pki = Self {
            ca: dir.join("ca.crt"),
            cert: PathBuf::new(),
            key: PathBuf::new(),
            dir,
        };
        (pki.cert, pki.key) = pki.sign("localhost", Some("DNS:localhost,IP:127.0.0.1"));
        pki
    }

    /// A client certificate for `name` (its subject `CN=<name>`, as Strimzi issues a KafkaUser's
    /// of `type: tls`) signed by this CA: the certificate's and the key's files.
    pub fn issue(&self, name: &str) -> (PathBuf, PathBuf) {
        self.sign(name, None)
    }

    /// A key and a certificate for `CN=<cn>`, with `san` as its subject alternative names.
    fn sign(&self, cn: &str, san: Option<&str>) -> (PathBuf, PathBuf) {
        let (key, csr, cert, ext) = (
            format!("{cn}.key"),
            format!("{cn}.csr"),
            format!("{cn}.crt"),
            format!("{cn}.ext"),
        );
        let subject = format!("/CN={cn}");
        openssl(
            &self.dir,
            &[
                "req", "-newkey", "rsa:2048", "-nodes", "-subj", &subject, "-keyout", &key, "-out",
                &csr,
            ],
        );
        let mut args = vec![
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &cert,
        ];
        if let Some(san) = san {
            std::fs::write(self.dir.join(&ext), format!("subjectAltName={san}\n")).expect("ext");
            args.extend(["-extfile", &ext]);
        }
        openssl(&self.dir, &args);
        (self.dir.join(cert), self.dir.join(key))
    }
}

/// stunnel terminating TLS on `127.0.0.1:tls_port` for the broker at `plain`, with `pki`'s server
/// certificate; with `client_ca`, it also requires a client certificate signed by that CA.
fn stunnel(dir: &Path, tls_port: u16, plain: &str, pki: &Pki, client_ca: Option<&Path>) -> Child {
    let bin = secure_bin();
    let conf = dir.join("stunnel.conf");
    let mut text = format!(
        "foreground = yes\npid =\ndebug = notice\n\n[kafka]\naccept = 127.0.0.1:{tls_port}\n\
         connect = {plain}\ncert = {}\nkey = {}\n",
        pki.cert.display(),
        pki.key.display()
    );
    if let Some(ca) = client_ca {
        text.push_str(&format!(
            "verifyChain = yes\nrequireCert = yes\nCAfile = {}\n",
            ca.display()
        ));
    }
    std::fs::write(&conf, text).expect("stunnel.conf");
    let log = |name: &str| std::fs::File::create(dir.join(name)).expect("log file");
    let child = Command::new(bin.join("stunnel"))
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(log("stunnel.log"))
        .stderr(log("stunnel.err"))
        .spawn()
        .expect("start stunnel");
    wait_listening(&format!("127.0.0.1:{tls_port}"), "stunnel");
    child
}

/// `.tools/bin` with the secure broker and stunnel, installed once per test process.
fn secure_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| crate::install_tools("secure-broker"))
        .clone()
}

fn wait_listening(addr: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A user the broker knows: its name and password.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub password: String,
}

impl User {
    /// A user with a fresh random password.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            password: format!("pw-{}", uuid::Uuid::new_v4().simple()),
        }
    }
}

pub struct SecureBroker {
    /// `localhost:<tls port>`: what clients bootstrap from, and what the broker advertises.
    pub bootstrap: String,
    pub pki: Pki,
    broker: Child,
    stunnel: Child,
    _postgres: Postgres,
}

fn tansu_pg(bin: &Path) -> Command {
    let mut c = Command::new(bin.join("tansu-pg"));
    c.env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdin(Stdio::null());
    c
}

impl SecureBroker {
    /// Starts PostgreSQL, the broker and stunnel for `test`, with `users` (SCRAM-SHA-512) and
    /// every topic of the system.
    pub async fn start(test: &str, users: &[User]) -> Self {
        let bin = secure_bin();
        let dir = crate::log_dir(test);
        let postgres = Postgres::start(test);
        let pool = sqlx::PgPool::connect(&postgres.url)
            .await
            .expect("connect to postgres");
        let schema = std::fs::read_to_string(
            crate::root().join("tests/fixtures/tansu/tansu-0.6.0-schema.sql"),
        )
        .expect("tansu schema");
        sqlx::raw_sql(&schema)
            .execute(&pool)
            .await
            .expect("load tansu's schema");
        pool.close().await;
        let storage = format!(
            "postgres://postgres:postgres@127.0.0.1:{}/postgres",
            postgres.port
        );
        let pki = Pki::generate(&dir, "broker-pki");
        let plain_port = free_port();
        let tls_port = free_port();
        let plain = format!("127.0.0.1:{plain_port}");

        // Without authentication: create the users and the topics.
        let log = |name: &str| std::fs::File::create(dir.join(name)).expect("log file");
        let mut setup = tansu_pg(&bin)
            .args(["broker", "--listener-url", &format!("tcp://{plain}")])
            .args(["--advertised-listener-url", &format!("tcp://{plain}")])
            .args(["--storage-engine", &storage])
            .stdout(log("tansu-setup.log"))
            .stderr(log("tansu-setup.err"))
            .spawn()
            .expect("start tansu-pg");
        wait_listening(&plain, "tansu (setup)");
        for user in users {
            let mut create = tansu_pg(&bin);
            create
                .args(["user", "create", "--broker", &format!("tcp://{plain}")])
                .args(["--mechanism", "scram512", &user.name, &user.password]);
            succeed(create, &format!("tansu user create {}", user.name));
        }
        for (name, partitions, cleanup) in crate::system_topics() {
            create_topic(tansu_pg(&bin), &plain, &name, partitions, cleanup);
        }
        let _ = setup.kill();
        let _ = setup.wait();

        // With authentication, advertising the TLS address stunnel listens on.
        let broker = tansu_pg(&bin)
            .args(["broker", "--listener-url", &format!("tcp://{plain}")])
            .args([
                "--advertised-listener-url",
                &format!("tcp://localhost:{tls_port}"),
            ])
            .args(["--storage-engine", &storage, "--authentication"])
            .stdout(log("tansu.log"))
            .stderr(log("tansu.err"))
            .spawn()
            .expect("start tansu-pg");
        wait_listening(&plain, "tansu");
        let stunnel = stunnel(&dir, tls_port, &plain, &pki, None);
        Self {
            bootstrap: format!("localhost:{tls_port}"),
            pki,
            broker,
            stunnel,
            _postgres: postgres,
        }
    }

    /// The variables that make a service log in as `user` over TLS.
    pub fn client_env(&self, user: &User) -> Vec<(String, String)> {
        [
            ("KAFKA_BOOTSTRAP_SERVERS", self.bootstrap.clone()),
            ("KAFKA_SECURITY_PROTOCOL", "sasl_ssl".to_owned()),
            ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512".to_owned()),
            ("KAFKA_SASL_USERNAME", user.name.clone()),
            ("KAFKA_SASL_PASSWORD", user.password.clone()),
            (
                "KAFKA_SSL_CA_LOCATION",
                self.pki.ca.to_string_lossy().into_owned(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

impl Drop for SecureBroker {
    fn drop(&mut self) {
        for child in [&mut self.stunnel, &mut self.broker] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A broker that requires a client certificate, the shape of the `mtls` mode (Strimzi's listener
/// with `authentication: tls`): the in-memory tansu, which has no login of its own, behind stunnel
/// requiring a certificate signed by a clients CA the test generates. What it proves is the
/// client's side: each service presents the certificate and key the chart mounts for it.
pub struct MtlsBroker {
    /// `localhost:<tls port>`.
    pub bootstrap: String,
    /// The CA of the broker's certificate (Strimzi's cluster CA).
    pub cluster_ca: Pki,
    /// The CA that signs the clients' certificates (Strimzi's clients CA).
    pub clients_ca: Pki,
    _broker: Broker,
    stunnel: Child,
}

impl MtlsBroker {
    /// Starts the broker with every topic of the system, and stunnel in front of it.
    pub fn start(test: &str) -> Self {
        let dir = crate::log_dir(test);
        let cluster_ca = Pki::generate(&dir, "cluster-pki");
        let clients_ca = Pki::generate(&dir, "clients-pki");
        let (plain_port, tls_port) = (free_port(), free_port());
        let plain = format!("127.0.0.1:{plain_port}");
        let broker = Broker::start_behind(plain_port, &format!("localhost:{tls_port}"));
        broker.create_system_topics();
        let stunnel = stunnel(&dir, tls_port, &plain, &cluster_ca, Some(&clients_ca.ca));
        Self {
            bootstrap: format!("localhost:{tls_port}"),
            cluster_ca,
            clients_ca,
            _broker: broker,
            stunnel,
        }
    }
}

impl Drop for MtlsBroker {
    fn drop(&mut self) {
        let _ = self.stunnel.kill();
        let _ = self.stunnel.wait();
    }
}
