// The update evaluator's table: a document, an update, and what the server
// stores (or that it refuses the update, or that the evaluator leaves it to
// the server). Shared by the unit tests next to it and by
// `tests/e2e/update_eval.rs`, which applies every row on a real server
// (`include!`d there, so plain items only).

#[allow(unused_imports)]
use bson::{Bson, Document, bson, doc};

/// What a row expects.
#[derive(Debug, Clone)]
pub enum Want {
    /// The server stores exactly this (field order and numeric types).
    Stored(Document),
    /// The server refuses the update on this document.
    Refused,
    /// The evaluator does not evaluate it (the server may do anything).
    Unsupported,
}

/// Rows of (document, update, what the server stores). Every document has
/// `_id: 1` first.
pub fn update_cases() -> Vec<(Document, Document, Want)> {
    use Want::*;
    let max32 = i32::MAX;
    let dec = Bson::Decimal128("1".parse().unwrap());
    vec![
        // $set: in place, new fields at the end in the tree's order.
        (doc! {"_id": 1, "a": 1, "b": 2}, doc! {"$set": {"a": "x"}}, Stored(doc! {"_id": 1, "a": "x", "b": 2})),
        (doc! {"_id": 1, "a": 1}, doc! {"$set": {"c": 3}}, Stored(doc! {"_id": 1, "a": 1, "c": 3})),
        // Fields added in another order than the paths': MongoDB 5.0+ and
        // SecantusDB differ (`Order` in `apply.rs`; MongoDB's order is pinned
        // by `mongodb_applies_paths_in_order`).
        (doc! {"_id": 1}, doc! {"$set": {"b": 1, "a": 2}}, Unsupported),
        (doc! {"_id": 1}, doc! {"$set": {"b": 1}, "$inc": {"a": 1}}, Unsupported),
        (doc! {"_id": 1}, doc! {"$set": {"10": 1, "9": 2, "x": 3}}, Unsupported),
        (doc! {"_id": 1}, doc! {"$set": {"a": 2, "b": 1}}, Stored(doc! {"_id": 1, "a": 2, "b": 1})),
        (doc! {"_id": 1}, doc! {"$inc": {"a": 1}, "$set": {"b": 1}}, Stored(doc! {"_id": 1, "a": 1, "b": 1})),
        (doc! {"_id": 1}, doc! {"$set": {"9": 2, "10": 1, "x": 3}}, Unsupported),
        (doc! {"_id": 1}, doc! {"$set": {"B": 1, "_x": 3, "a": 2}}, Stored(doc! {"_id": 1, "B": 1, "_x": 3, "a": 2})),
        (doc! {"_id": 1, "a": 1}, doc! {"$set": {"b": 1, "a": 2}}, Stored(doc! {"_id": 1, "a": 2, "b": 1})),
        (doc! {"_id": 1, "a": {"x": 1}, "c": 1}, doc! {"$set": {"a.y.z": 1}}, Stored(doc! {"_id": 1, "a": {"x": 1, "y": {"z": 1}}, "c": 1})),
        (doc! {"_id": 1}, doc! {"$set": {"a.0": 1}}, Stored(doc! {"_id": 1, "a": {"0": 1}})),
        (doc! {"_id": 1, "a": [1, 2]}, doc! {"$set": {"a.1": 5}}, Stored(doc! {"_id": 1, "a": [1, 5]})),
        (doc! {"_id": 1, "a": [1]}, doc! {"$set": {"a.3": 5}}, Stored(doc! {"_id": 1, "a": [1, null, null, 5]})),
        (doc! {"_id": 1, "a": [1]}, doc! {"$set": {"a.2.b": 5}}, Stored(doc! {"_id": 1, "a": [1, null, {"b": 5}]})),
        (doc! {"_id": 1, "a": [{"b": 1}]}, doc! {"$set": {"a.0.b": 2, "a.0.c": 3}}, Stored(doc! {"_id": 1, "a": [{"b": 2, "c": 3}]})),
        (doc! {"_id": 1, "a": [1, 2]}, doc! {"$set": {"a.1": 7, "a.0": 6}}, Stored(doc! {"_id": 1, "a": [6, 7]})),
        (doc! {"_id": 1, "a": 1}, doc! {"$set": {"a.b": 1}}, Refused),
        (doc! {"_id": 1, "a": [1]}, doc! {"$set": {"a.b": 1}}, Refused),
        (doc! {"_id": 1, "a": [1]}, doc! {"$set": {"a.0.b": 1}}, Refused),
        (doc! {"_id": 1}, doc! {"$set": {"a": 1}, "$inc": {"a.b": 1}}, Refused),
        (doc! {"_id": 1}, doc! {"$set": {"a": 1}, "$unset": {"a": ""}}, Refused),
        (doc! {"_id": 1, "a": 1}, doc! {"$set": {}}, Stored(doc! {"_id": 1, "a": 1})),
        (doc! {"_id": 1, "a": 1}, doc! {"$set": {"a": 1.0}}, Stored(doc! {"_id": 1, "a": 1.0})),
        // $unset: removes; an array element becomes null; nothing where nothing is.
        (doc! {"_id": 1, "a": 1, "b": 2}, doc! {"$unset": {"a": ""}}, Stored(doc! {"_id": 1, "b": 2})),
        (doc! {"_id": 1, "a": [1, 2, 3]}, doc! {"$unset": {"a.1": ""}}, Stored(doc! {"_id": 1, "a": [1, null, 3]})),
        (doc! {"_id": 1, "a": 1, "l": [1]}, doc! {"$unset": {"a.b": "", "c": "", "l.x": "", "l.5": ""}}, Stored(doc! {"_id": 1, "a": 1, "l": [1]})),
        // $inc and $mul: int32 until it overflows, int64 until it fails, double once a double is in.
        (doc! {"_id": 1, "a": 1}, doc! {"$inc": {"a": 2}}, Stored(doc! {"_id": 1, "a": 3})),
        (doc! {"_id": 1, "a": max32}, doc! {"$inc": {"a": 1}}, Stored(doc! {"_id": 1, "a": i64::from(max32) + 1})),
        (doc! {"_id": 1, "a": i64::MAX}, doc! {"$inc": {"a": 1}}, Refused),
        (doc! {"_id": 1, "a": 1}, doc! {"$inc": {"a": 0.5}}, Stored(doc! {"_id": 1, "a": 1.5})),
        (doc! {"_id": 1, "a": 1}, doc! {"$inc": {"a": 1i64}}, Stored(doc! {"_id": 1, "a": 2i64})),
        (doc! {"_id": 1, "a": 1}, doc! {"$inc": {"a": 0}}, Stored(doc! {"_id": 1, "a": 1})),
        (doc! {"_id": 1, "a": 1}, doc! {"$inc": {"a": 0.0}}, Stored(doc! {"_id": 1, "a": 1.0})),
        (doc! {"_id": 1}, doc! {"$inc": {"n": 5i64}}, Stored(doc! {"_id": 1, "n": 5i64})),
        (doc! {"_id": 1}, doc! {"$inc": {"n": -0.0}}, Stored(doc! {"_id": 1, "n": 0.0})),
        (doc! {"_id": 1, "a": [1]}, doc! {"$inc": {"a.2": 1}}, Stored(doc! {"_id": 1, "a": [1, null, 1]})),
        (doc! {"_id": 1, "a": "1"}, doc! {"$inc": {"a": 1}}, Refused),
        (doc! {"_id": 1, "a": null}, doc! {"$inc": {"a": 1}}, Refused),
        (doc! {"_id": 1, "a": 1}, doc! {"$inc": {"a": dec.clone()}}, Unsupported),
        (doc! {"_id": 1, "a": 3}, doc! {"$mul": {"a": 2}}, Stored(doc! {"_id": 1, "a": 6})),
        (doc! {"_id": 1, "a": max32}, doc! {"$mul": {"a": 2}}, Stored(doc! {"_id": 1, "a": i64::from(max32) * 2})),
        (doc! {"_id": 1, "a": i64::MAX}, doc! {"$mul": {"a": 2}}, Refused),
        (doc! {"_id": 1, "a": 3}, doc! {"$mul": {"a": 0.5}}, Stored(doc! {"_id": 1, "a": 1.5})),
        (doc! {"_id": 1}, doc! {"$mul": {"a": 7}}, Stored(doc! {"_id": 1, "a": 0})),
        (doc! {"_id": 1}, doc! {"$mul": {"a": 7i64}}, Stored(doc! {"_id": 1, "a": 0i64})),
        (doc! {"_id": 1}, doc! {"$mul": {"a": 2.5}}, Stored(doc! {"_id": 1, "a": 0.0})),
        (doc! {"_id": 1}, doc! {"$mul": {"a": -2.5}}, Stored(doc! {"_id": 1, "a": -0.0})),
        (doc! {"_id": 1, "a": true}, doc! {"$mul": {"a": 2}}, Refused),
        // $min and $max: BSON's order across types; an equal value is kept as it is.
        (doc! {"_id": 1, "a": 5}, doc! {"$min": {"a": 3}}, Stored(doc! {"_id": 1, "a": 3})),
        (doc! {"_id": 1, "a": 5}, doc! {"$min": {"a": 7}}, Stored(doc! {"_id": 1, "a": 5})),
        (doc! {"_id": 1, "a": 5}, doc! {"$min": {"a": 5.0}}, Stored(doc! {"_id": 1, "a": 5})),
        (doc! {"_id": 1, "a": 5}, doc! {"$max": {"a": 5.5}}, Stored(doc! {"_id": 1, "a": 5.5})),
        (doc! {"_id": 1, "a": 1}, doc! {"$min": {"a": "x"}}, Stored(doc! {"_id": 1, "a": 1})),
        (doc! {"_id": 1, "a": "x"}, doc! {"$min": {"a": 1}}, Stored(doc! {"_id": 1, "a": 1})),
        (doc! {"_id": 1, "a": null}, doc! {"$max": {"a": 1}}, Stored(doc! {"_id": 1, "a": 1})),
        (doc! {"_id": 1, "a": {"b": 1}}, doc! {"$max": {"a": [0]}}, Stored(doc! {"_id": 1, "a": [0]})),
        (doc! {"_id": 1}, doc! {"$max": {"a": 1}}, Stored(doc! {"_id": 1, "a": 1})),
        (doc! {"_id": 1, "a": 1}, doc! {"$max": {"a": dec.clone()}}, Unsupported),
        // $rename: applied at its destination's place, the destination appended.
        (doc! {"_id": 1, "a": 1, "b": 2, "c": 3}, doc! {"$rename": {"a": "b"}}, Unsupported),
        (doc! {"_id": 1, "a": 1, "c": 3}, doc! {"$rename": {"a": "b"}}, Stored(doc! {"_id": 1, "c": 3, "b": 1})),
        (doc! {"_id": 1, "a": 1, "z": 0}, doc! {"$rename": {"a": "x.y"}}, Stored(doc! {"_id": 1, "z": 0, "x": {"y": 1}})),
        (doc! {"_id": 1, "a": {"b": 1, "c": 2}}, doc! {"$rename": {"a.b": "a.d"}}, Stored(doc! {"_id": 1, "a": {"c": 2, "d": 1}})),
        (doc! {"_id": 1, "z": 0}, doc! {"$rename": {"z": "a"}, "$set": {"b": 1}}, Stored(doc! {"_id": 1, "a": 0, "b": 1})),
        (doc! {"_id": 1, "b": 1}, doc! {"$rename": {"a": "c"}}, Stored(doc! {"_id": 1, "b": 1})),
        (doc! {"_id": 1, "a": [{"b": 1}]}, doc! {"$rename": {"a.0.b": "c"}}, Refused),
        (doc! {"_id": 1, "a": 1, "c": [1]}, doc! {"$rename": {"a": "c.0"}}, Refused),
        (doc! {"_id": 1, "a": 1, "c": 5}, doc! {"$rename": {"a": "c.d"}}, Refused),
        (doc! {"_id": 1, "a": 1}, doc! {"$rename": {"a": "a.b"}}, Refused),
        // MongoDB refuses a source path it cannot follow; SecantusDB does nothing.
        (doc! {"_id": 1, "a": 5}, doc! {"$rename": {"a.b": "c"}}, Unsupported),
        // $push and its modifiers: insert at $position, then $sort, then $slice.
        (doc! {"_id": 1, "a": [1]}, doc! {"$push": {"a": 2}}, Stored(doc! {"_id": 1, "a": [1, 2]})),
        (doc! {"_id": 1}, doc! {"$push": {"a": [2]}}, Stored(doc! {"_id": 1, "a": [[2]]})),
        (doc! {"_id": 1, "a": 1}, doc! {"$push": {"a": 2}}, Refused),
        (doc! {"_id": 1, "a": [1, 2]}, doc! {"$push": {"a": {"$each": [3, 4], "$position": 0}}}, Stored(doc! {"_id": 1, "a": [3, 4, 1, 2]})),
        (doc! {"_id": 1, "a": [1, 2, 3]}, doc! {"$push": {"a": {"$each": [9], "$position": -1}}}, Stored(doc! {"_id": 1, "a": [1, 2, 9, 3]})),
        (doc! {"_id": 1, "a": [1, 2, 3]}, doc! {"$push": {"a": {"$each": [9], "$position": -10}}}, Stored(doc! {"_id": 1, "a": [9, 1, 2, 3]})),
        (doc! {"_id": 1, "a": [1, 2, 3]}, doc! {"$push": {"a": {"$each": [9], "$position": 10}}}, Stored(doc! {"_id": 1, "a": [1, 2, 3, 9]})),
        (doc! {"_id": 1, "a": [1, 2, 3]}, doc! {"$push": {"a": {"$each": [4], "$slice": -2}}}, Stored(doc! {"_id": 1, "a": [3, 4]})),
        (doc! {"_id": 1, "a": [1, 2, 3]}, doc! {"$push": {"a": {"$each": [4], "$slice": 2}}}, Stored(doc! {"_id": 1, "a": [1, 2]})),
        (doc! {"_id": 1, "a": [1, 2, 3]}, doc! {"$push": {"a": {"$each": [], "$slice": 0}}}, Stored(doc! {"_id": 1, "a": []})),
        (doc! {"_id": 1}, doc! {"$push": {"a": {"$each": []}}}, Stored(doc! {"_id": 1, "a": []})),
        (doc! {"_id": 1, "a": [3, 1]}, doc! {"$push": {"a": {"$each": [2], "$sort": 1}}}, Stored(doc! {"_id": 1, "a": [1, 2, 3]})),
        (doc! {"_id": 1, "a": ["x", 2, null]}, doc! {"$push": {"a": {"$each": [{"b": 1}, true], "$sort": -1}}}, Stored(doc! {"_id": 1, "a": [true, {"b": 1}, "x", 2, null]})),
        (doc! {"_id": 1, "a": [1, 0]}, doc! {"$push": {"a": {"$each": [2], "$sort": 1, "$slice": 2, "$position": 0}}}, Stored(doc! {"_id": 1, "a": [0, 1]})),
        (doc! {"_id": 1, "a": [{"k": 2}, {"k": 1}]}, doc! {"$push": {"a": {"$each": [{"k": 3}], "$sort": {"k": -1}}}}, Stored(doc! {"_id": 1, "a": [{"k": 3}, {"k": 2}, {"k": 1}]})),
        (doc! {"_id": 1, "a": [{"k": 2, "n": 1}, {"n": 2}]}, doc! {"$push": {"a": {"$each": [{"k": null, "n": 3}], "$sort": {"k": 1}}}}, Stored(doc! {"_id": 1, "a": [{"n": 2}, {"k": null, "n": 3}, {"k": 2, "n": 1}]})),
        (doc! {"_id": 1, "a": [{"k": [2]}, {"k": 1}]}, doc! {"$push": {"a": {"$each": [], "$sort": {"k": 1}}}}, Unsupported),
        // $addToSet: BSON equality (1 equals 1.0), repeats in $each dropped.
        (doc! {"_id": 1, "a": [1, 2]}, doc! {"$addToSet": {"a": 2.0}}, Stored(doc! {"_id": 1, "a": [1, 2]})),
        (doc! {"_id": 1, "a": [1, 2]}, doc! {"$addToSet": {"a": {"$each": [3, 3, 4, 1]}}}, Stored(doc! {"_id": 1, "a": [1, 2, 3, 4]})),
        (doc! {"_id": 1}, doc! {"$addToSet": {"a": {"$each": [1, 1.0, "x"]}}}, Stored(doc! {"_id": 1, "a": [1, "x"]})),
        (doc! {"_id": 1, "a": [{"b": 1, "c": 2}]}, doc! {"$addToSet": {"a": {"c": 2, "b": 1}}}, Stored(doc! {"_id": 1, "a": [{"b": 1, "c": 2}, {"c": 2, "b": 1}]})),
        (doc! {"_id": 1, "a": "s"}, doc! {"$addToSet": {"a": 1}}, Refused),
        // $pull: a value to equal, a condition on the element, or a filter on document elements.
        (doc! {"_id": 1, "a": [1, 2, 3, 2.0]}, doc! {"$pull": {"a": 2}}, Stored(doc! {"_id": 1, "a": [1, 3]})),
        (doc! {"_id": 1, "a": [1, [1], "1"]}, doc! {"$pull": {"a": 1}}, Stored(doc! {"_id": 1, "a": [[1], "1"]})),
        (doc! {"_id": 1, "a": [1, [1, 7], 5, "9"]}, doc! {"$pull": {"a": {"$gte": 5}}}, Stored(doc! {"_id": 1, "a": [1, "9"]})),
        (doc! {"_id": 1, "a": [{"b": 1, "c": 1}, {"b": 2}, 1]}, doc! {"$pull": {"a": {"b": 1}}}, Stored(doc! {"_id": 1, "a": [{"b": 2}, 1]})),
        (doc! {"_id": 1, "a": [{"b": 1}, 1, []]}, doc! {"$pull": {"a": {}}}, Stored(doc! {"_id": 1, "a": [1, []]})),
        (doc! {"_id": 1, "a": [[1, 2], [2, 1]]}, doc! {"$pull": {"a": [1, 2]}}, Stored(doc! {"_id": 1, "a": [[2, 1]]})),
        (doc! {"_id": 1, "a": 3}, doc! {"$pull": {"a": 3}}, Refused),
        (doc! {"_id": 1}, doc! {"$pull": {"a": 3}}, Stored(doc! {"_id": 1})),
        (doc! {"_id": 1, "a": ["x"]}, doc! {"$pull": {"a": {"$in": [dec.clone()]}}}, Unsupported),
        // $pullAll and $pop.
        // SecantusDB equates `true` with `1` (MongoDB does not): left to the server.
        (doc! {"_id": 1, "a": [1, true]}, doc! {"$pullAll": {"a": [true]}}, Unsupported),
        (doc! {"_id": 1, "a": [1]}, doc! {"$addToSet": {"a": true}}, Unsupported),
        (doc! {"_id": 1, "a": [1, 2, 3, 1.0]}, doc! {"$pullAll": {"a": [1, 3]}}, Stored(doc! {"_id": 1, "a": [2]})),
        (doc! {"_id": 1, "a": {}}, doc! {"$pullAll": {"a": [1]}}, Refused),
        (doc! {"_id": 1, "a": [1, 2, 3]}, doc! {"$pop": {"a": 1}}, Stored(doc! {"_id": 1, "a": [1, 2]})),
        (doc! {"_id": 1, "a": [1, 2, 3]}, doc! {"$pop": {"a": -1}}, Stored(doc! {"_id": 1, "a": [2, 3]})),
        (doc! {"_id": 1, "a": []}, doc! {"$pop": {"a": 1}}, Stored(doc! {"_id": 1, "a": []})),
        (doc! {"_id": 1, "a": 1}, doc! {"$pop": {"a": 1}}, Refused),
        (doc! {"_id": 1, "a": 1}, doc! {"$pop": {"b.c": 1, "a.x": -1}}, Stored(doc! {"_id": 1, "a": 1})),
        // $bit: int32 with int32; with an int64 MongoDB stores an int64,
        // SecantusDB an int32 where the result fits.
        (doc! {"_id": 1, "a": 5}, doc! {"$bit": {"a": {"and": 3}}}, Stored(doc! {"_id": 1, "a": 1})),
        (doc! {"_id": 1, "a": 5i64}, doc! {"$bit": {"a": {"or": 2}}}, Unsupported),
        (doc! {"_id": 1, "a": 5}, doc! {"$bit": {"a": {"xor": 1i64}}}, Unsupported),
        (doc! {"_id": 1}, doc! {"$bit": {"a": {"or": 4}}}, Stored(doc! {"_id": 1, "a": 4})),
        (doc! {"_id": 1, "a": 5}, doc! {"$bit": {"a": {"and": 6, "or": 8}}}, Stored(doc! {"_id": 1, "a": 12})),
        (doc! {"_id": 1, "a": 5.0}, doc! {"$bit": {"a": {"and": 1}}}, Refused),
        // $setOnInsert does nothing to an existing document; the rest the server decides.
        (doc! {"_id": 1, "a": 1}, doc! {"$setOnInsert": {"b": 1}}, Stored(doc! {"_id": 1, "a": 1})),
        (doc! {"_id": 1, "a": 1}, doc! {"$setOnInsert": {"a.b": 1}, "$set": {"c": 1}}, Stored(doc! {"_id": 1, "a": 1, "c": 1})),
        (doc! {"_id": 1, "a": 1}, doc! {"$setOnInsert": {"a": 1}, "$set": {"a": 2}}, Refused),
        (doc! {"_id": 1}, doc! {"$set": {"_id": 1}}, Unsupported),
        (doc! {"_id": 1, "a": [1]}, doc! {"$set": {"a.$[]": 2}}, Unsupported),
        // Replacements keep `_id`, first.
        (doc! {"_id": 1, "a": 1}, doc! {"b": 2, "a": 3}, Stored(doc! {"_id": 1, "b": 2, "a": 3})),
        (doc! {"_id": 1, "a": 1}, doc! {"_id": 1, "c": 3}, Stored(doc! {"_id": 1, "c": 3})),
        (doc! {"_id": 1, "a": 1}, doc! {"_id": 2, "c": 3}, Refused),
    ]
}
