//! The test database: a SecantusDB server (MongoDB wire protocol, one-member
//! replica set, so transactions work) started on a free loopback port, or the
//! server named by `GODWIT_TEST_MONGODB_URI`. Each test works in a database
//! of its own.

use bson::{Document, RawDocumentBuf, doc};
use futures_util::TryStreamExt;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub struct Server {
    pub uri: String,
    child: Option<Child>,
    /// The server's stderr, where it logs each internal error's traceback.
    log: Option<PathBuf>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The shared replica-set server for this test process.
pub fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| match std::env::var("GODWIT_TEST_MONGODB_URI") {
        Ok(uri) if !uri.is_empty() => Server {
            uri,
            child: None,
            log: None,
        },
        // PR_SET_PDEATHSIG fires when the spawning *thread* ends, so the shared
        // server is started from a thread that lives as long as the process.
        _ => {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                tx.send(start(&[])).unwrap();
                loop {
                    std::thread::park();
                }
            });
            rx.recv().expect("the server thread reports the server")
        }
    })
}

/// A server of its own that advertises itself as standalone (no
/// transactions), like a plain `mongod`.
pub fn standalone() -> Server {
    start(&["--standalone"])
}

/// A server of its own that takes mongod's test-only commands
/// (`configureFailPoint`): a test arms `failCommand` to have it answer a
/// command with a chosen error, as a faulty server would.
pub fn with_test_commands() -> Server {
    start(&["--enable-test-commands"])
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A server with its data on disk that a test can stop and start again on
/// the same port (a database outage).
pub struct Restartable {
    pub uri: String,
    port: u16,
    storage: tempfile::TempDir,
    server: Option<Server>,
}

impl Restartable {
    pub fn new() -> Self {
        let storage = tempfile::tempdir().unwrap();
        let port = free_port();
        let server = start_at(port, storage.path().to_str().unwrap(), &[]);
        Restartable {
            uri: server.uri.clone(),
            port,
            storage,
            server: Some(server),
        }
    }

    /// Shuts the server down as an operator would (SIGTERM), so that it
    /// keeps what it acknowledged.
    pub fn stop(&mut self) {
        if let Some(mut server) = self.server.take()
            && let Some(mut child) = server.child.take()
        {
            // SAFETY: kill(2) with a valid pid and signal.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
            child.wait().unwrap();
        }
    }

    pub fn start(&mut self) {
        self.server = Some(start_at(self.port, self.storage.path().to_str().unwrap(), &[]));
    }
}

fn start(extra: &[&str]) -> Server {
    start_at(free_port(), ":memory:", extra)
}

fn start_at(port: u16, storage: &str, extra: &[&str]) -> Server {
    let mut command = Command::new("secantusd-py");
    command
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--storage-path",
            storage,
            "--log-level",
            "WARNING",
        ])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    // Kept so that a test failing on the server's "internal server error"
    // shows the server's traceback (see `TestDb`'s drop).
    let logs = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("secantusd-logs");
    let log = std::fs::create_dir_all(&logs)
        .ok()
        .map(|()| logs.join(format!("{port}-{}.log", std::process::id())));
    match log.as_ref().and_then(|path| std::fs::File::create(path).ok()) {
        Some(file) => command.stderr(file),
        None => command.stderr(Stdio::null()),
    };
    // SAFETY: prctl is async-signal-safe; it makes the server die with the
    // test process instead of outliving it.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let child = command
        .spawn()
        .expect("start secantusd-py (installed by `just test`: pip install SecantusDB)");
    let server = Server {
        uri: format!("mongodb://127.0.0.1:{port}/?directConnection=true"),
        child: Some(child),
        log,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() && block_on(ping(&server.uri)).is_ok() {
            return server;
        }
        assert!(
            Instant::now() < deadline,
            "secantusd-py did not answer on port {port} within 60s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

async fn ping(uri: &str) -> mongodb::error::Result<()> {
    client(uri)
        .await
        .database("admin")
        .run_command(doc! {"ping": 1})
        .await
        .map(|_| ())
}

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

async fn client(uri: &str) -> mongodb::Client {
    let mut options = mongodb::options::ClientOptions::parse(uri).await.unwrap();
    options.server_selection_timeout = Some(Duration::from_secs(5));
    mongodb::Client::with_options(options).unwrap()
}

/// A database name no other test uses.
pub fn fresh_db(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}_{}_{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst))
}

/// A handle on one database of a server, with blocking helpers.
pub struct TestDb {
    pub uri: String,
    pub name: String,
    server_log: Option<PathBuf>,
}

/// A failing test shows the server's internal errors in its database, with
/// their tracebacks: the server answers them only as "internal server error".
impl Drop for TestDb {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let Some(log) = self.server_log.as_ref().and_then(|p| std::fs::read_to_string(p).ok()) else {
            return;
        };
        let tag = format!("db={})", self.name);
        let lines: Vec<&str> = log.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if line.contains("internal error") && line.contains(&tag) {
                eprintln!("test server's log:\n{}", lines[i..lines.len().min(i + 60)].join("\n"));
            }
        }
    }
}

impl TestDb {
    pub fn new(server: &Server, prefix: &str) -> Self {
        TestDb {
            uri: server.uri.clone(),
            name: fresh_db(prefix),
            server_log: server.log.clone(),
        }
    }

    /// The database `name` on the server at `uri` (one a test did not create).
    pub fn named(uri: &str, name: &str) -> Self {
        TestDb {
            uri: uri.to_string(),
            name: name.to_string(),
            server_log: None,
        }
    }

    pub fn insert(&self, collection: &str, docs: Vec<Document>) {
        block_on(async {
            let c = client(&self.uri).await;
            c.database(&self.name)
                .collection::<Document>(collection)
                .insert_many(docs)
                .await
                .unwrap();
        });
    }

    pub fn find_all(&self, collection: &str) -> Vec<Document> {
        block_on(async {
            let c = client(&self.uri).await;
            let cursor = c
                .database(&self.name)
                .collection::<Document>(collection)
                .find(doc! {})
                .sort(doc! {"_id": 1})
                .await
                .unwrap();
            cursor.try_collect().await.unwrap()
        })
    }

    pub fn find_one(&self, collection: &str, filter: Document) -> Option<Document> {
        block_on(async {
            let c = client(&self.uri).await;
            c.database(&self.name)
                .collection::<Document>(collection)
                .find_one(filter)
                .await
                .unwrap()
        })
    }

    /// Every collection with its documents as raw bytes, sorted by name and `_id`.
    pub fn dump(&self) -> Vec<(String, Vec<Vec<u8>>)> {
        block_on(async {
            let c = client(&self.uri).await;
            let db = c.database(&self.name);
            let mut names = db.list_collection_names().await.unwrap();
            names.sort();
            let mut dump = Vec::new();
            for name in names {
                let cursor = db
                    .collection::<RawDocumentBuf>(&name)
                    .find(doc! {})
                    .sort(doc! {"_id": 1})
                    .await
                    .unwrap();
                let docs: Vec<RawDocumentBuf> = cursor.try_collect().await.unwrap();
                dump.push((name, docs.into_iter().map(|d| d.into_bytes()).collect()));
            }
            dump
        })
    }

    /// Runs a command on this database.
    pub fn command(&self, command: Document) -> Document {
        block_on(async {
            let c = client(&self.uri).await;
            c.database(&self.name).run_command(command).await.unwrap()
        })
    }

    /// Runs a command on the server's `admin` database.
    pub fn admin_command(&self, command: Document) -> Document {
        block_on(async {
            let c = client(&self.uri).await;
            c.database("admin").run_command(command).await.unwrap()
        })
    }

    /// The collections' names, sorted.
    pub fn collections(&self) -> Vec<String> {
        block_on(async {
            let c = client(&self.uri).await;
            let mut names = c.database(&self.name).list_collection_names().await.unwrap();
            names.sort();
            names
        })
    }

    /// `(name, key, unique)` of every index of `collection`, sorted by name.
    pub fn indexes(&self, collection: &str) -> Vec<(String, Document, bool)> {
        if !self.collections().iter().any(|c| c == collection) {
            return Vec::new();
        }
        let reply = self.command(doc! {"listIndexes": collection});
        let mut found: Vec<_> = reply
            .get_document("cursor")
            .unwrap()
            .get_array("firstBatch")
            .unwrap()
            .iter()
            .map(|i| {
                let i = i.as_document().unwrap();
                (
                    i.get_str("name").unwrap().to_string(),
                    i.get_document("key").unwrap().clone(),
                    i.get_bool("unique").unwrap_or(false),
                )
            })
            .collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found
    }

    /// The validator of `collection`, if any.
    pub fn validator(&self, collection: &str) -> Option<Document> {
        let reply = self.command(doc! {"listCollections": 1, "filter": {"name": collection}});
        let batch = reply.get_document("cursor").unwrap().get_array("firstBatch").unwrap();
        batch
            .first()?
            .as_document()?
            .get_document("options")
            .ok()?
            .get_document("validator")
            .ok()
            .filter(|v| !v.is_empty())
            .cloned()
    }
}
