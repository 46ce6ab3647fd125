//! Which store the suite runs on: the embedded one, or PostgreSQL when `NUDGE_TEST_POSTGRES`
//! names a server (`tests/run` starts a throwaway one and runs the suite a second time with it).
//! On PostgreSQL every data directory gets its own database, so tests stay apart and a server
//! restarted on the same directory finds what it stored.

use std::collections::HashSet;
use std::ffi::OsString;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::Mutex;

use nudge::secrets::Secrets;
use nudge::store::{Location, Store};

/// The PostgreSQL server the suite runs on, as `postgres://USER@HOST:PORT`.
pub fn postgres() -> Option<String> {
    std::env::var("NUDGE_TEST_POSTGRES").ok().filter(|url| !url.is_empty())
}

/// Whether the suite runs on PostgreSQL. Tests of several nodes or of the database itself
/// return early on the embedded store, saying `why` they need PostgreSQL.
pub fn on_postgres(why: &str) -> bool {
    let on = postgres().is_some();
    if !on {
        eprintln!("{why}: runs in the suite's PostgreSQL pass (tests/run)");
    }
    on
}

/// Where the store of the data directory `data` is.
pub fn location(data: &Path) -> Location {
    match store_url(data) {
        Some(url) => Location::Postgres(url),
        None => Location::Dir(data.to_path_buf()),
    }
}

/// The database of the data directory `data` (created on first use), on PostgreSQL.
pub fn store_url(data: &Path) -> Option<String> {
    let server = postgres()?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    std::path::absolute(data).unwrap_or(data.to_path_buf()).hash(&mut hasher);
    let name = format!("nudge_{:016x}", hasher.finish());
    static CREATED: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let mut created = CREATED.lock().unwrap_or_else(|e| e.into_inner());
    let url = format!("{server}/{name}");
    if created.get_or_insert_default().insert(name.clone()) {
        create_database(&server, &name);
        // Migrated, as a deployed database is before any command runs on it.
        drop(Store::open_at(&Location::Postgres(url.clone())).expect("migrate the test database"));
    }
    Some(url)
}

/// On a thread of its own: the tests calling it may be running on a runtime already.
fn create_database(server: &str, name: &str) {
    let (server, name) = (server.to_string(), name.to_string());
    std::thread::spawn(move || create_database_now(&server, &name)).join().expect("CREATE DATABASE");
}

fn create_database_now(server: &str, name: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let (client, connection) =
            tokio_postgres::connect(&format!("{server}/postgres"), tokio_postgres::NoTls).await.expect("connect");
        tokio::spawn(connection);
        match client.batch_execute(&format!("CREATE DATABASE {name}")).await {
            Ok(()) => {}
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) => {}
            Err(e) => panic!("CREATE DATABASE {name}: {e}"),
        }
    });
}

/// A `nudge` command line with `--store` added when it names a `--data` directory (and no store)
/// and the suite runs on PostgreSQL.
pub fn args<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Vec<OsString> {
    let mut out: Vec<OsString> = args.iter().map(|a| a.as_ref().to_os_string()).collect();
    if out.iter().any(|a| a == "--store") {
        return out;
    }
    let data = out.iter().position(|a| a == "--data").and_then(|i| out.get(i + 1)).cloned();
    if let Some(url) = data.and_then(|data| store_url(Path::new(&data))) {
        out.extend(["--store".into(), url.into()]);
    }
    out
}

/// Opens the store of `data` (the server must be stopped on the embedded store).
pub fn open_store(data: &Path) -> nudge::store::Result<Store> {
    Store::open_at(&location(data))
}

/// The secrets the server on `data` runs with.
pub fn secrets(data: &Path) -> Secrets {
    match postgres() {
        Some(_) => Secrets::load(Some(&open_store(data).expect("store")), data).expect("secrets").0,
        None => Secrets::load_or_create(data).expect("secrets").0,
    }
}
