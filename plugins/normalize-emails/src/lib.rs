//! Example migration: store every user's e-mail address trimmed and in lower
//! case, and report addresses that collide once normalized (two accounts that
//! differed only in case) instead of silently merging them.

use godwit_sdk::{Action, Context, Document, Error, Manifest, Migration, Params, Pass, doc};
use std::collections::HashMap;

pub struct NormalizeEmails {
    /// Normalized address -> `_id` of the first user seen with it.
    seen: HashMap<String, String>,
}

impl Migration for NormalizeEmails {
    fn manifest() -> Manifest {
        Manifest::new("normalize-emails", "1.1.0")
            .requires(">=1.0.0")
            .description("Trim and lower-case users.email; report addresses that collide once normalized")
            .pass(
                Pass::new("users", "users")
                    .filter(doc! {"email": {"$type": "string"}})
                    .projection(doc! {"email": 1})
                    .batch_size(1000)
                    .writes(["users"]),
            )
    }

    fn begin(_params: &Params, _cx: &mut Context) -> Result<Self, Error> {
        Ok(NormalizeEmails { seen: HashMap::new() })
    }

    fn process(&mut self, _cx: &mut Context, _pass: usize, batch: Vec<Document>) -> Result<Vec<Action>, Error> {
        let mut actions = Vec::new();
        for user in batch {
            let id = user.get("_id").cloned().ok_or_else(|| Error::new("user without _id"))?;
            let email = user
                .get_str("email")
                .map_err(|e| Error::new(e).for_document(id.clone()))?;
            let normalized = email.trim().to_lowercase();
            if let Some(first) = self.seen.get(&normalized) {
                actions.push(Action::report(
                    "conflict",
                    normalized.clone(),
                    format!("user {id} has the same address as user {first} once normalized"),
                ));
                continue;
            }
            self.seen.insert(normalized.clone(), id.to_string());
            if normalized != email {
                actions.push(Action::set("users", id, doc! {"email": normalized}));
            }
        }
        Ok(actions)
    }
}

godwit_sdk::export!(NormalizeEmails);

#[cfg(test)]
mod tests {
    use super::*;
    use godwit_sdk::testing::Harness;

    fn check(users: Vec<Document>, expect: Vec<Action>) {
        let actions = Harness::<NormalizeEmails>::new().run_pass(0, users).unwrap();
        assert_eq!(actions, expect);
    }

    #[test]
    fn lowercases_and_trims() {
        check(
            vec![doc! {"_id": 1, "email": " Ada@Example.COM "}],
            vec![Action::set("users", 1, doc! {"email": "ada@example.com"})],
        );
    }

    #[test]
    fn leaves_normalized_addresses_alone() {
        check(vec![doc! {"_id": 1, "email": "ada@example.com"}], vec![]);
    }

    #[test]
    fn reports_collisions_across_batches_instead_of_merging() {
        let mut h = Harness::<NormalizeEmails>::new();
        assert!(
            h.process(0, vec![doc! {"_id": 1, "email": "ada@example.com"}])
                .unwrap()
                .is_empty()
        );
        let actions = h.process(0, vec![doc! {"_id": 2, "email": "ADA@example.com"}]).unwrap();
        assert_eq!(
            actions,
            vec![Action::report(
                "conflict",
                "ada@example.com",
                "user 2 has the same address as user 1 once normalized"
            )]
        );
    }

    /// The pass's filter keeps non-string addresses from the plugin (the
    /// harness applies it as a run does); should one reach `process` anyway,
    /// the error names the document.
    #[test]
    fn non_string_email_is_an_error_naming_the_document() {
        let mut h = Harness::<NormalizeEmails>::new();
        assert_eq!(h.process(0, vec![doc! {"_id": 7, "email": 3}]).unwrap(), vec![]);
        let err = h.process_as_given(0, vec![doc! {"_id": 7, "email": 3}]).unwrap_err();
        assert_eq!(err.document_id, Some(7.into()));
    }
}
