//! [`DocumentExt`]: a document's `_id` and its nested fields by dotted path,
//! typed, without the `get("_id").cloned().ok_or_else(...)` and nested
//! `match` every plugin would otherwise repeat.

use crate::Error;
use bson::oid::ObjectId;
use bson::{Bson, DateTime, Document, doc};

/// Reading documents in plugins. Implemented for [`Document`]; bring it into
/// scope with `use godwit_sdk::DocumentExt;`.
///
/// ```
/// use godwit_sdk::{DocumentExt, doc};
///
/// let user = doc! {"_id": 7, "profile": {"email": "ada@example.com", "age": 36}, "tags": ["a", "b"]};
/// assert_eq!(user.id().unwrap(), 7.into());
/// assert_eq!(user.id_filter().unwrap(), doc! {"_id": 7});
/// assert_eq!(user.str_at("profile.email"), Some("ada@example.com"));
/// assert_eq!(user.i64_at("profile.age"), Some(36));
/// assert_eq!(user.str_at("tags.1"), Some("b"));
/// assert_eq!(user.str_at("profile.age"), None); // another type
/// assert_eq!(user.str_at("profile.phone"), None); // absent
/// ```
///
/// Paths are MongoDB's dotted paths: each segment is a field name, or an
/// index into an array (`"items.0.sku"`). Unlike a query, a path does not fan
/// out over an array's elements: `"items.sku"` on an array is `None`.
/// A typed getter returns `None` both for an absent field and for one of
/// another type; use [`get_path`](DocumentExt::get_path) to tell them apart.
pub trait DocumentExt {
    /// The document's `_id` (cloned, ready for [`Action::set`](crate::Action::set)
    /// and friends), or an error saying the document has none.
    fn id(&self) -> Result<Bson, Error>;

    /// `{"_id": <this document's _id>}`: the filter that addresses exactly
    /// this document, for updates, deletes and lookups.
    fn id_filter(&self) -> Result<Document, Error> {
        Ok(doc! {"_id": self.id()?})
    }

    /// The value at a dotted path, `None` if any segment is missing.
    fn get_path(&self, path: &str) -> Option<&Bson>;

    fn str_at(&self, path: &str) -> Option<&str> {
        self.get_path(path).and_then(Bson::as_str)
    }

    fn bool_at(&self, path: &str) -> Option<bool> {
        self.get_path(path).and_then(Bson::as_bool)
    }

    /// An Int32 or Int64 field, widened to i64 (a Double is not converted:
    /// use [`f64_at`](DocumentExt::f64_at)).
    fn i64_at(&self, path: &str) -> Option<i64> {
        match self.get_path(path)? {
            Bson::Int32(n) => Some(i64::from(*n)),
            Bson::Int64(n) => Some(*n),
            _ => None,
        }
    }

    /// A Double, Int32 or Int64 field as f64.
    fn f64_at(&self, path: &str) -> Option<f64> {
        match self.get_path(path)? {
            Bson::Double(x) => Some(*x),
            Bson::Int32(n) => Some(f64::from(*n)),
            Bson::Int64(n) => Some(*n as f64),
            _ => None,
        }
    }

    fn doc_at(&self, path: &str) -> Option<&Document> {
        self.get_path(path).and_then(Bson::as_document)
    }

    fn array_at(&self, path: &str) -> Option<&Vec<Bson>> {
        self.get_path(path).and_then(Bson::as_array)
    }

    fn datetime_at(&self, path: &str) -> Option<DateTime> {
        self.get_path(path).and_then(Bson::as_datetime).copied()
    }

    fn object_id_at(&self, path: &str) -> Option<ObjectId> {
        self.get_path(path).and_then(Bson::as_object_id)
    }

    /// The value at `path` is absent or null: what "the field still needs a
    /// backfill" usually means.
    fn is_missing_or_null(&self, path: &str) -> bool {
        matches!(self.get_path(path), None | Some(Bson::Null))
    }
}

impl DocumentExt for Document {
    fn id(&self) -> Result<Bson, Error> {
        self.get("_id")
            .cloned()
            .ok_or_else(|| Error::new("a document came without _id (a pass's projection must keep _id)"))
    }

    fn get_path(&self, path: &str) -> Option<&Bson> {
        let mut segments = path.split('.');
        let mut value = self.get(segments.next()?)?;
        for segment in segments {
            value = match value {
                Bson::Document(d) => d.get(segment)?,
                Bson::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(path: &str, expect: Option<Bson>) {
        let d = doc! {
            "a": {"b": {"c": 1}}, "n": Bson::Null, "list": [{"k": "x"}, 2], "dotted.key": 3, "s": "t",
        };
        assert_eq!(d.get_path(path), expect.as_ref(), "{path}");
    }

    #[test]
    fn paths() {
        check("a.b.c", Some(1.into()));
        check("a.b", Some(doc! {"c": 1}.into()));
        check("a.x.c", None);
        check("n", Some(Bson::Null));
        check("n.x", None);
        check("list.0.k", Some("x".into()));
        check("list.1", Some(2.into()));
        check("list.2", None);
        check("list.k", None);
        check("list.-1", None);
        check("s.0", None);
        // A field whose name holds a dot is not reachable by path, as in MongoDB.
        check("dotted.key", None);
        check("", None);
    }

    #[test]
    fn typed_getters() {
        let when = DateTime::from_millis(5);
        let oid = ObjectId::from_bytes([1; 12]);
        let d = doc! {
            "i32": 1, "i64": 2i64, "f": 1.5, "b": true, "s": "x", "d": {"k": 1}, "l": [1], "t": when, "o": oid,
            "n": Bson::Null,
        };
        assert_eq!(
            (d.i64_at("i32"), d.i64_at("i64"), d.i64_at("f"), d.i64_at("s")),
            (Some(1), Some(2), None, None)
        );
        assert_eq!(
            (d.f64_at("f"), d.f64_at("i32"), d.f64_at("i64"), d.f64_at("b")),
            (Some(1.5), Some(1.0), Some(2.0), None)
        );
        assert_eq!(
            (d.bool_at("b"), d.str_at("s"), d.str_at("b")),
            (Some(true), Some("x"), None)
        );
        assert_eq!(d.doc_at("d"), Some(&doc! {"k": 1}));
        assert_eq!(d.array_at("l"), Some(&vec![Bson::Int32(1)]));
        assert_eq!((d.datetime_at("t"), d.object_id_at("o")), (Some(when), Some(oid)));
        assert!(d.is_missing_or_null("n") && d.is_missing_or_null("absent") && !d.is_missing_or_null("s"));
    }

    #[test]
    fn id_helpers() {
        let d = doc! {"_id": "k", "v": 1};
        assert_eq!(d.id().unwrap(), Bson::from("k"));
        assert_eq!(d.id_filter().unwrap(), doc! {"_id": "k"});
        let err = doc! {"v": 1}.id().unwrap_err();
        assert!(err.message.contains("without _id"), "{err}");
    }
}
