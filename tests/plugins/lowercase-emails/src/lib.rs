//! `normalize-emails` without its collision report: every user's e-mail
//! trimmed and in lower case, each batch on its own. It declares that it
//! keeps no state across batches (`keeps_state` false), so the host keeps
//! its instance when the write guard refuses a batch and resumes without
//! replaying the written batches.
//!
//! With `--param lie=yes` it keeps state anyway - the number of batches its
//! instance processed, written beside each address - which no instance that
//! was restarted (a resume) agrees with: `godwit journal replay` must catch it.

use godwit_sdk::{Action, Context, Document, Error, Manifest, Migration, Params, Pass, doc};

pub struct LowercaseEmails {
    /// `Some(batches processed)` when lying about keeping state.
    lie: Option<i64>,
}

impl Migration for LowercaseEmails {
    fn manifest() -> Manifest {
        Manifest::new("lowercase-emails", "1.0.0")
            .description("Trim and lower-case users.email, batch by batch")
            .pass(
                Pass::new("users", "users")
                    .filter(doc! {"email": {"$type": "string"}})
                    .projection(doc! {"email": 1})
                    .batch_size(1000)
                    .writes(["users"]),
            )
    }

    fn keeps_state() -> bool {
        false
    }

    fn begin(params: &Params, _cx: &mut Context) -> Result<Self, Error> {
        Ok(LowercaseEmails {
            lie: (params.get("lie") == Some("yes")).then_some(0),
        })
    }

    fn process(&mut self, _cx: &mut Context, _pass: usize, batch: Vec<Document>) -> Result<Vec<Action>, Error> {
        if let Some(batches) = self.lie.as_mut() {
            *batches += 1;
        }
        let mut actions = Vec::new();
        for user in batch {
            let id = user.get("_id").cloned().ok_or_else(|| Error::new("user without _id"))?;
            let email = user
                .get_str("email")
                .map_err(|e| Error::new(e).for_document(id.clone()))?;
            let normalized = email.trim().to_lowercase();
            if normalized == email {
                continue;
            }
            actions.push(match self.lie {
                Some(batches) => Action::set("users", id, doc! {"email": normalized, "batches_seen": batches}),
                None => Action::set("users", id, doc! {"email": normalized}),
            });
        }
        Ok(actions)
    }
}

godwit_sdk::export!(LowercaseEmails);

#[cfg(test)]
mod tests {
    use super::*;
    use godwit_sdk::testing::Harness;

    #[test]
    fn lowercases_and_trims_each_batch_on_its_own() {
        let mut h = Harness::<LowercaseEmails>::new();
        let users = || vec![doc! {"_id": 1, "email": " Ada@Example.COM "}];
        let expect = vec![Action::set("users", 1, doc! {"email": "ada@example.com"})];
        assert_eq!(h.process(0, users()).unwrap(), expect);
        assert_eq!(
            h.process(0, users()).unwrap(),
            expect,
            "the same batch, the same actions"
        );
        assert!(!LowercaseEmails::keeps_state());
    }
}
