//! [`Update`]: builds one MongoDB update document (`$set`, `$unset`, `$inc`,
//! ...) field by field and turns it into an [`Action`].

use crate::Action;
use bson::{Bson, Document, doc};

/// An update document built one field at a time:
///
/// ```
/// use godwit_sdk::{Action, Update, doc};
///
/// let action = Update::new()
///     .set("profile.email", "ada@example.com")
///     .unset("legacy_email")
///     .inc("revision", 1)
///     .by_id("users", 7);
/// assert_eq!(
///     action,
///     Action::update_one(
///         "users",
///         doc! {"_id": 7},
///         doc! {"$set": {"profile.email": "ada@example.com"}, "$unset": {"legacy_email": ""}, "$inc": {"revision": 1}},
///     )
/// );
/// ```
///
/// Operators appear in the order first used, fields in the order added; a
/// field added twice to one operator keeps the last value. The builder does
/// not check the update: the host does, and so does
/// [`testing::Harness`](crate::testing::Harness).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Update {
    update: Document,
}

impl Update {
    pub fn new() -> Self {
        Update::default()
    }

    /// `{"$set": {field: value}}`. `field` may be a dotted path (`"a.b"`).
    pub fn set(self, field: impl Into<String>, value: impl Into<Bson>) -> Self {
        self.op("$set", field, value)
    }

    /// Every field of `fields` under `$set`.
    pub fn set_all(self, fields: Document) -> Self {
        fields
            .into_iter()
            .fold(self, |update, (field, value)| update.set(field, value))
    }

    /// `{"$unset": {field: ""}}`.
    pub fn unset(self, field: impl Into<String>) -> Self {
        self.op("$unset", field, "")
    }

    /// `{"$inc": {field: by}}` (a negative `by` decrements; a missing field
    /// starts at 0).
    pub fn inc(self, field: impl Into<String>, by: impl Into<Bson>) -> Self {
        self.op("$inc", field, by)
    }

    /// `{"$rename": {field: to}}`.
    pub fn rename(self, field: impl Into<String>, to: impl Into<String>) -> Self {
        self.op("$rename", field, to.into())
    }

    /// `{"$push": {field: value}}`: appends to an array.
    pub fn push(self, field: impl Into<String>, value: impl Into<Bson>) -> Self {
        self.op("$push", field, value)
    }

    /// `{"$addToSet": {field: value}}`: appends unless already present.
    pub fn add_to_set(self, field: impl Into<String>, value: impl Into<Bson>) -> Self {
        self.op("$addToSet", field, value)
    }

    /// `{"$setOnInsert": {field: value}}`: only when an upsert inserts.
    pub fn set_on_insert(self, field: impl Into<String>, value: impl Into<Bson>) -> Self {
        self.op("$setOnInsert", field, value)
    }

    /// Any other update operator: `{operator: {field: value}}` (`"$min"`,
    /// `"$max"`, `"$mul"`, `"$pull"`, ...).
    pub fn op(mut self, operator: &str, field: impl Into<String>, value: impl Into<Bson>) -> Self {
        match self.update.get_mut(operator) {
            Some(Bson::Document(fields)) => {
                fields.insert(field.into(), value.into());
            }
            _ => {
                let mut fields = Document::new();
                fields.insert(field.into(), value.into());
                self.update.insert(operator, fields);
            }
        }
        self
    }

    /// No field added yet: an empty update is no update (the host refuses
    /// one), so a plugin that builds conditionally checks this first.
    pub fn is_empty(&self) -> bool {
        self.update.is_empty()
    }

    /// The update document, for [`Action::update_one`] and the like.
    pub fn into_document(self) -> Document {
        self.update
    }

    /// Updates the document of `collection` whose `_id` is `id`.
    pub fn by_id(self, collection: impl Into<String>, id: impl Into<Bson>) -> Action {
        Action::update_one(collection, doc! {"_id": id.into()}, self.update)
    }

    /// Updates the first document of `collection` matching `filter`.
    pub fn one(self, collection: impl Into<String>, filter: Document) -> Action {
        Action::update_one(collection, filter, self.update)
    }

    /// Updates every document of `collection` matching `filter`.
    pub fn many(self, collection: impl Into<String>, filter: Document) -> Action {
        Action::update_many(collection, filter, self.update)
    }

    /// Updates the first document matching `filter`, inserting one if none does.
    pub fn upsert(self, collection: impl Into<String>, filter: Document) -> Action {
        Action::upsert(collection, filter, self.update)
    }
}

impl From<Update> for Document {
    fn from(update: Update) -> Document {
        update.update
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(update: Update, expect: Document) {
        assert_eq!(update.into_document(), expect);
    }

    #[test]
    fn operators_group_their_fields() {
        check(Update::new(), doc! {});
        check(
            Update::new().set("a", 1).set("b.c", "x"),
            doc! {"$set": {"a": 1, "b.c": "x"}},
        );
        check(
            Update::new().unset("a").inc("n", -2i64).unset("b"),
            doc! {"$unset": {"a": "", "b": ""}, "$inc": {"n": -2i64}},
        );
        check(Update::new().set("a", 1).set("a", 2), doc! {"$set": {"a": 2}});
        check(
            Update::new().set_all(doc! {"a": 1, "b": 2}).rename("c", "d"),
            doc! {"$set": {"a": 1, "b": 2}, "$rename": {"c": "d"}},
        );
        check(
            Update::new()
                .push("l", 1)
                .add_to_set("s", "x")
                .set_on_insert("created", true)
                .op("$max", "hi", 9),
            doc! {"$push": {"l": 1}, "$addToSet": {"s": "x"}, "$setOnInsert": {"created": true}, "$max": {"hi": 9}},
        );
    }

    #[test]
    fn actions() {
        let update = || Update::new().inc("n", 1);
        assert!(Update::new().is_empty());
        assert!(!update().is_empty());
        assert_eq!(
            update().by_id("c", "k"),
            Action::update_one("c", doc! {"_id": "k"}, doc! {"$inc": {"n": 1}})
        );
        assert_eq!(
            update().one("c", doc! {"a": 1}),
            Action::update_one("c", doc! {"a": 1}, doc! {"$inc": {"n": 1}})
        );
        assert_eq!(
            update().many("c", doc! {"a": 1}),
            Action::update_many("c", doc! {"a": 1}, doc! {"$inc": {"n": 1}})
        );
        assert_eq!(
            update().upsert("c", doc! {"a": 1}),
            Action::upsert("c", doc! {"a": 1}, doc! {"$inc": {"n": 1}})
        );
        assert_eq!(Document::from(update()), doc! {"$inc": {"n": 1}});
        assert_eq!(Action::inc("c", "k", doc! {"n": 1}), update().by_id("c", "k"));
    }
}
