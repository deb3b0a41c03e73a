//! The test binary's throwaway PostgreSQL clusters (the harness is `xtask::cluster`, shared
//! with the demo, the load test and the benchmark), and a fresh database per test.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use tokio_postgres::{Client, NoTls};

pub use xtask::Cluster;

/// The superuser's password: distinctive, so that tests can look for it where it must not be.
pub const PASSWORD: &str = "pw-Zq8r4Lk2";

/// The shared cluster, started on first use.
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<&'static Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| cluster_of(&bin_dir()))
}

/// The cluster of the PostgreSQL build in `bin_dir`, started once, on first use.
pub fn cluster_of(bin_dir: &Path) -> &'static Cluster {
    type Slot = &'static OnceLock<&'static Cluster>;
    static CLUSTERS: OnceLock<Mutex<HashMap<PathBuf, Slot>>> = OnceLock::new();
    let slot: Slot = *CLUSTERS
        .get_or_init(Default::default)
        .lock()
        .unwrap()
        .entry(bin_dir.to_owned())
        .or_insert_with(|| Box::leak(Box::default()));
    // Started outside the map's lock: clusters of different versions start in parallel.
    slot.get_or_init(|| {
        let started =
            Cluster::start(bin_dir, "test", PASSWORD, &[]).unwrap_or_else(|err| panic!("{err:#}"));
        Box::leak(Box::new(started))
    })
}

/// PostgreSQL's bin directory (see `xtask::cluster::bin_dir`).
pub fn bin_dir() -> PathBuf {
    xtask::cluster::bin_dir().unwrap_or_else(|err| panic!("{err:#}"))
}

/// A database of its own for one test.
pub struct TestDb {
    pub name: String,
    pub url: String,
    admin_url: String,
}

impl TestDb {
    /// Creates an empty database.
    pub async fn new() -> TestDb {
        TestDb::new_on(cluster()).await
    }

    /// Creates an empty database on `cluster`.
    pub async fn new_on(cluster: &Cluster) -> TestDb {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        cluster
            .create_database(&name, "")
            .await
            .unwrap_or_else(|err| panic!("{err:#}"));
        TestDb {
            url: cluster.url(&name),
            admin_url: cluster.url("postgres"),
            name,
        }
    }

    /// Creates a database holding `sql`.
    pub async fn with(sql: &str) -> TestDb {
        let db = TestDb::new().await;
        db.client().await.batch_execute(sql).await.expect("schema");
        db
    }

    /// A new client connection to this database.
    pub async fn client(&self) -> Client {
        connect(&self.url).await
    }
}

impl Drop for TestDb {
    /// Drops the database, on a thread of its own since the test's runtime may be gone.
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let (client, connection) = tokio_postgres::connect(&admin_url, NoTls).await.ok()?;
                tokio::spawn(connection);
                // WITH (FORCE) ends sessions a test left open; PostgreSQL 12 lacks it.
                let force = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                if client.batch_execute(&force).await.is_err() {
                    let plain = format!("DROP DATABASE IF EXISTS {name}");
                    client.batch_execute(&plain).await.ok()?;
                }
                Some(())
            })
        });
        // Best effort: the whole cluster is removed when the test binary exits anyway.
        let _ = dropped.join();
    }
}

/// Connects with tokio-postgres; the connection runs on the current runtime.
pub async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|err| panic!("connect {url}: {err}"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}
