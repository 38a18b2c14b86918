//! Application writers for tests on a live database: threads that keep
//! writing to one collection while godwit runs, each owning its own
//! documents, and recording every write the server acknowledged. A write
//! that fails (a conflict with a godwit transaction) was not acknowledged:
//! the application would retry it, and so do these.

use crate::db::TestDb;
use bson::Document;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One application write.
pub enum Write {
    /// `update_one(filter, update)`.
    Update(Document, Document),
    /// `insert_one(document)`.
    Insert(Document),
}

/// The next write of writer `writer`, given what it had acknowledged so
/// far: the document's id, the write, and the value recorded for that id
/// once the server acknowledges it.
pub type Next<V> = dyn Fn(i64, &HashMap<i64, V>) -> (i64, Write, V) + Send + Sync;

pub struct Writers<V> {
    stop: Arc<AtomicBool>,
    acknowledged: Arc<Mutex<HashMap<i64, V>>>,
    threads: Vec<std::thread::JoinHandle<u64>>,
}

impl<V: Clone + Send + 'static> Writers<V> {
    /// `count` writers on `collection`, each pausing `pause` after a write.
    pub fn start(db: &TestDb, collection: &str, count: i64, pause: Duration, next: Arc<Next<V>>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged = Arc::new(Mutex::new(HashMap::new()));
        let threads = (0..count)
            .map(|writer| {
                let (uri, name, collection) = (db.uri.clone(), db.name.clone(), collection.to_string());
                let (stop, acknowledged, next) = (stop.clone(), acknowledged.clone(), next.clone());
                std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    runtime.block_on(async move {
                        let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
                        let documents = client.database(&name).collection::<Document>(&collection);
                        let mut mine: HashMap<i64, V> = HashMap::new();
                        let mut written = 0u64;
                        while !stop.load(Ordering::SeqCst) {
                            let (id, write, value) = next(writer, &mine);
                            let ok = match write {
                                Write::Update(filter, update) => documents.update_one(filter, update).await.is_ok(),
                                Write::Insert(document) => documents.insert_one(document).await.is_ok(),
                            };
                            if ok {
                                acknowledged.lock().unwrap().insert(id, value.clone());
                                mine.insert(id, value);
                                written += 1;
                            }
                            tokio::time::sleep(pause).await;
                        }
                        written
                    })
                })
            })
            .collect();
        Writers {
            stop,
            acknowledged,
            threads,
        }
    }

    /// Stops the writers: the number of acknowledged writes, and the last
    /// value acknowledged for each document written.
    pub fn stop(self) -> (u64, HashMap<i64, V>) {
        self.stop.store(true, Ordering::SeqCst);
        let written = self.threads.into_iter().map(|t| t.join().unwrap()).sum();
        let acknowledged = self.acknowledged.lock().unwrap().clone();
        (written, acknowledged)
    }
}

/// The users' application of live.rs and fleet.rs: each of `writers`
/// writers owns the users whose `_id % writers` is its number and keeps
/// giving one of them a new address (`$set`) and counting the write
/// (`$inc`); the value recorded is the address's version.
pub fn user_addresses(db: &TestDb, users: i32, writers: i32, address: fn(i32, i64) -> String) -> Writers<i64> {
    let next = move |writer: i64, mine: &HashMap<i64, i64>| {
        let writer = writer as i32;
        let id = {
            use rand::RngExt;
            rand::rng().random_range(0..users / writers) * writers + writer
        };
        let version = mine.get(&i64::from(id)).copied().unwrap_or(0) + 1;
        let update = bson::doc! {"$set": {"email": address(id, version)}, "$inc": {"writes": 1_i64}};
        (i64::from(id), Write::Update(bson::doc! {"_id": id}, update), version)
    };
    Writers::start(
        db,
        "users",
        i64::from(writers),
        Duration::from_millis(3),
        Arc::new(next),
    )
}
