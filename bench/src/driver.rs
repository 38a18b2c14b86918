//! Contestant (a), the practical limit: the backfill as a hand-written loop
//! over the Rust `mongodb` driver. The same query as the plugin's pass (filter,
//! projection, sorted by `_id`), the users map read once, and one `update`
//! command of up to `batch` statements per batch - no journal, no marker, no
//! transaction, no sandbox. It runs as a child process of the harness (the
//! `driver-loop` subcommand) so that its peak RSS is measured like everyone
//! else's.

use crate::data::{EXECUTIONS, USERS};
use anyhow::{Context, bail};
use bson::{Bson, Document, RawDocumentBuf, doc};
use futures_util::TryStreamExt;
use mongodb::{Client, Database};
use std::collections::HashMap;

pub async fn run(uri: &str, db_name: &str, batch: usize) -> anyhow::Result<()> {
    let client = Client::with_uri_str(uri).await.context("connecting")?;
    let db = client.database(db_name);
    let mut users = db
        .collection::<Document>(USERS)
        .find(doc! {"user_id": {"$exists": true}})
        .projection(doc! {"username": 1, "user_id": 1})
        .await?;
    let mut ids = HashMap::new();
    while let Some(u) = users.try_next().await? {
        if let (Ok(name), Ok(id)) = (u.get_str("username"), u.get_str("user_id")) {
            ids.insert(name.to_string(), id.to_string());
        }
    }

    let mut cursor = db
        .collection::<RawDocumentBuf>(EXECUTIONS)
        .find(doc! {"username": {"$type": "string"}, "owner_user_id": {"$exists": false}})
        .projection(doc! {"username": 1})
        .sort(doc! {"_id": 1})
        .batch_size(batch as u32)
        .await?;
    let mut updates = Vec::with_capacity(batch);
    let (mut seen, mut updated, mut unresolved) = (0u64, 0u64, 0u64);
    while let Some(d) = cursor.try_next().await? {
        seen += 1;
        let id = Bson::try_from(d.get("_id")?.context("execution without _id")?)?;
        match ids.get(d.get_str("username")?) {
            Some(user_id) => updates.push(doc! {"q": {"_id": id}, "u": {"$set": {"owner_user_id": user_id}}}),
            None => unresolved += 1,
        }
        if updates.len() == batch {
            updated += flush(&db, &mut updates).await?;
        }
    }
    updated += flush(&db, &mut updates).await?;
    println!("{{\"documents\": {seen}, \"updated\": {updated}, \"unresolved\": {unresolved}}}");
    client.shutdown().immediate(true).await;
    Ok(())
}

async fn flush(db: &Database, updates: &mut Vec<Document>) -> anyhow::Result<u64> {
    if updates.is_empty() {
        return Ok(0);
    }
    let statements = std::mem::take(updates);
    let reply = db
        .run_command(doc! {"update": EXECUTIONS, "updates": statements, "ordered": true})
        .await?;
    if let Ok(errors) = reply.get_array("writeErrors") {
        bail!("update failed: {errors:?}");
    }
    Ok(reply
        .get_i32("nModified")
        .map(i64::from)
        .or_else(|_| reply.get_i64("nModified"))
        .unwrap_or(0) as u64)
}
