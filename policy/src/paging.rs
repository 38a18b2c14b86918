//! Reading a collection in `_id` order, a page after another, across BSON
//! types. `{_id: {$gt: last}}` is not enough: MongoDB's comparison
//! operators match only values of the same type bracket as their argument
//! (numbers with numbers, strings with strings, ...), so after an integer
//! `_id` it skips every string, ObjectId, date or subdocument `_id` - which
//! `_id` order (MongoDB's sort across types) puts later. [`after_id`] adds
//! every later bracket by `$type`.

use crate::matcher::order::canonical;
use bson::{Bson, Document, doc};

/// BSON type brackets in MongoDB's sort order, each with its rank (as
/// [`canonical`] gives it) and its `$type` codes.
const BRACKETS: &[(i32, &[i32])] = &[
    (-1, &[-1]),            // MinKey
    (0, &[6]),              // undefined
    (5, &[10]),             // null
    (10, &[1, 16, 18, 19]), // double, int, long, decimal
    (15, &[2, 14]),         // string, symbol
    (20, &[3]),             // object
    (25, &[4]),             // array
    (30, &[5]),             // binData
    (35, &[7]),             // objectId
    (40, &[8]),             // bool
    (45, &[9]),             // date
    (47, &[17]),            // timestamp
    (50, &[11]),            // regex
    (55, &[12]),            // dbPointer
    (60, &[13]),            // javascript
    (65, &[15]),            // javascriptWithScope
    (127, &[127]),          // MaxKey
];

/// The condition matching every document whose `_id` sorts after `last` in
/// `_id` order: a greater `_id` of the same type bracket, or any `_id` of a
/// later bracket.
pub fn after_id(last: &Bson) -> Document {
    let rank = canonical(last);
    let later: Vec<Bson> = BRACKETS
        .iter()
        .filter(|(r, _)| *r > rank)
        .flat_map(|(_, codes)| codes.iter().map(|c| Bson::Int32(*c)))
        .collect();
    if later.is_empty() {
        return doc! {"_id": {"$gt": last.clone()}};
    }
    doc! {"$or": [{"_id": {"$gt": last.clone()}}, {"_id": {"$type": later}}]}
}

/// The condition matching every document whose `_id` sorts at or before
/// `last` in `_id` order: a lesser or equal `_id` of the same type bracket,
/// or any `_id` of an earlier bracket. With [`after_id`] it bounds a range
/// of `_id`s (a fleet run's partition) without losing any type.
pub fn up_to_id(last: &Bson) -> Document {
    let rank = canonical(last);
    let earlier: Vec<Bson> = BRACKETS
        .iter()
        .filter(|(r, _)| *r < rank)
        .flat_map(|(_, codes)| codes.iter().map(|c| Bson::Int32(*c)))
        .collect();
    if earlier.is_empty() {
        return doc! {"_id": {"$lte": last.clone()}};
    }
    doc! {"$or": [{"_id": {"$lte": last.clone()}}, {"_id": {"$type": earlier}}]}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matcher::matches;
    use bson::oid::ObjectId;

    /// One `_id` of each type a collection may hold, in `_id` order.
    fn ids() -> Vec<Bson> {
        vec![
            Bson::Null,
            Bson::Int32(1),
            Bson::Double(1.5),
            Bson::Int64(7),
            Bson::String("a".into()),
            Bson::String("b".into()),
            Bson::Document(doc! {"k": 1}),
            Bson::ObjectId(ObjectId::from_bytes([1; 12])),
            Bson::Boolean(false),
            Bson::Boolean(true),
            Bson::DateTime(bson::DateTime::from_millis(0)),
        ]
    }

    #[test]
    fn after_each_id_come_exactly_the_ids_that_sort_after_it() {
        let ids = ids();
        for (i, last) in ids.iter().enumerate() {
            let filter = after_id(last);
            let after: Vec<&Bson> = ids
                .iter()
                .filter(|id| matches(&doc! {"_id": (*id).clone()}, &filter).unwrap())
                .collect();
            let expected: Vec<&Bson> = ids[i + 1..].iter().collect();
            assert_eq!(after, expected, "after {last:?}");
        }
    }

    #[test]
    fn up_to_each_id_come_exactly_the_ids_that_sort_at_or_before_it() {
        let ids = ids();
        for (i, last) in ids.iter().enumerate() {
            let filter = up_to_id(last);
            let upto: Vec<&Bson> = ids
                .iter()
                .filter(|id| matches(&doc! {"_id": (*id).clone()}, &filter).unwrap())
                .collect();
            let expected: Vec<&Bson> = ids[..=i].iter().collect();
            assert_eq!(upto, expected, "up to {last:?}");
        }
    }

    #[test]
    fn ranges_between_consecutive_bounds_cover_every_id_once() {
        let ids = ids();
        // Bounds at every other id: (.., b0], (b0, b1], ..., (bn, ..).
        let bounds: Vec<&Bson> = ids.iter().step_by(2).collect();
        for id in &ids {
            let document = doc! {"_id": id.clone()};
            let mut hits = 0;
            for k in 0..=bounds.len() {
                let mut parts = Vec::new();
                if k > 0 {
                    parts.push(Bson::Document(after_id(bounds[k - 1])));
                }
                if k < bounds.len() {
                    parts.push(Bson::Document(up_to_id(bounds[k])));
                }
                let range = doc! {"$and": parts};
                if parts_match(&document, &range) {
                    hits += 1;
                }
            }
            assert_eq!(hits, 1, "{id:?}");
        }
    }

    fn parts_match(document: &Document, range: &Document) -> bool {
        match range.get_array("$and") {
            Ok(parts) if parts.is_empty() => true,
            _ => matches(document, range).unwrap(),
        }
    }

    #[test]
    fn the_condition_passes_the_lookup_policy() {
        for last in ids() {
            let filter = after_id(&last);
            crate::check_query(&filter.to_vec().unwrap()).unwrap();
            crate::check_query(&up_to_id(&last).to_vec().unwrap()).unwrap();
        }
    }
}
