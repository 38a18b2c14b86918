//! The SDK harness's in-memory matcher (`godwit_policy::matcher`) against a
//! real server: every row of its table (`policy/src/matcher/cases.rs`) is run
//! as a `find` - filters on the table's documents, projections on theirs -
//! and must return what the table says, so the table (and the matcher its
//! unit tests check against it) follows the server, not our reading of the
//! MongoDB manual.

use crate::db::{TestDb, block_on, server};
use bson::Document;
use futures_util::TryStreamExt;

mod cases {
    include!("../../policy/src/matcher/cases.rs");
}

async fn find(
    c: &mongodb::Collection<Document>,
    filter: Document,
    projection: Option<Document>,
) -> Result<Vec<Document>, String> {
    let mut find = c.find(filter).sort(bson::doc! {"_id": 1});
    if let Some(p) = projection {
        find = find.projection(p);
    }
    let cursor = find.await.map_err(|e| e.to_string())?;
    cursor.try_collect().await.map_err(|e| e.to_string())
}

/// MongoDB 4.4 and later place a field projected with `$elemMatch` after
/// the other included fields, whatever the document's order (the 4.4
/// compatibility notes); SecantusDB keeps the document's order. The table
/// follows MongoDB; on SecantusDB such a row must differ in order only.
fn elem_match_placed_in_order(projection: &Document, got: &Result<Vec<Document>, String>, want: &Document) -> bool {
    let elem_match = projection
        .values()
        .any(|v| matches!(v, bson::Bson::Document(d) if d.contains_key("$elemMatch")));
    let sorted = |d: &Document| {
        let mut fields: Vec<(String, Vec<u8>)> = d
            .iter()
            .map(|(k, v)| (k.clone(), bson::doc! {"v": v.clone()}.to_vec().unwrap()))
            .collect();
        fields.sort();
        fields
    };
    elem_match && matches!(got, Ok(found) if found.len() == 1 && sorted(&found[0]) == sorted(want))
}

#[test]
fn the_matcher_table_is_what_the_server_returns() {
    let db = TestDb::new(server(), "matcher");
    db.insert("docs", cases::matcher_documents());
    let mut projected: Vec<Document> = Vec::new();
    for (_, doc, _) in cases::projection_cases() {
        if !projected.iter().any(|d| d.get("_id") == doc.get("_id")) {
            projected.push(doc);
        }
    }
    db.insert("projected", projected);
    let wrong = block_on(async {
        let client = mongodb::Client::with_uri_str(&db.uri).await.unwrap();
        let database = client.database(&db.name);
        let mut wrong = Vec::new();
        let docs = database.collection::<Document>("docs");
        for (filter, want) in cases::filter_cases() {
            let got = find(&docs, filter.clone(), None)
                .await
                .map(|found| found.iter().map(|d| d.get_i32("_id").unwrap()).collect::<Vec<_>>());
            if got.as_ref() != Ok(&want) {
                wrong.push(format!("filter {filter}: server {got:?}, table {want:?}"));
            }
        }
        let projected = database.collection::<Document>("projected");
        for (projection, doc, want) in cases::projection_cases() {
            let id = bson::doc! {"_id": doc.get("_id").unwrap().clone()};
            let got = find(&projected, id, Some(projection.clone())).await;
            let same = matches!(&got, Ok(found) if found.len() == 1
                && found[0].to_vec().unwrap() == want.to_vec().unwrap());
            if !same && !elem_match_placed_in_order(&projection, &got, &want) {
                wrong.push(format!(
                    "projection {projection} of {doc}: server {got:?}, table {want}"
                ));
            }
        }
        wrong
    });
    assert!(wrong.is_empty(), "{} rows differ:\n{}", wrong.len(), wrong.join("\n"));
}
