//! The backfill `just bench` measures (modelled on QDash's `backfill-user-id`,
//! seed 000): every `executions` document carrying a `username` gets
//! `owner_user_id` from a username -> `user_id` map read from `users` once in
//! `begin`. Usernames without a user are reported as `unresolved` and left as
//! they are. The benchmark's driver loop and pymongo script do exactly the
//! same query and the same `$set`, so their results can be compared.

use godwit_sdk::{Action, Context, Document, Error, Manifest, Migration, Params, Pass, doc};
use std::collections::HashMap;

pub struct BenchBackfill {
    user_ids: HashMap<String, String>,
    /// `--param reports=last`: a batch's reports follow all its updates
    /// instead of sitting in document order between them (the benchmark's
    /// probe of how the host groups statements into commands).
    reports_last: bool,
}

impl Migration for BenchBackfill {
    fn manifest() -> Manifest {
        Manifest::new("bench-backfill", "1.8.0")
            .description("executions.owner_user_id from users.user_id by username (benchmark)")
            .pass(
                Pass::new("executions", "executions")
                    // Only documents still to do: the verification after the
                    // run (the pass re-run dry) then reads just the unresolved ones.
                    .filter(doc! {"username": {"$type": "string"}, "owner_user_id": {"$exists": false}})
                    .projection(doc! {"username": 1})
                    .writes(["executions"]),
            )
            .reads(["users"])
    }

    /// Each batch's actions come from the batch and what `begin` loaded: the username map and `reports`.
    fn keeps_state() -> bool {
        false
    }

    fn begin(params: &Params, cx: &mut Context) -> Result<Self, Error> {
        let reports_last = match params.get("reports") {
            None | Some("inline") => false,
            Some("last") => true,
            Some(other) => return Err(Error::new(format!("reports={other}: expected inline or last"))),
        };
        let users = cx.find(
            "users",
            doc! {"user_id": {"$exists": true}},
            Some(doc! {"username": 1, "user_id": 1}),
            0,
        )?;
        let user_ids = users
            .iter()
            .filter_map(|u| {
                Some((
                    u.get_str("username").ok()?.to_string(),
                    u.get_str("user_id").ok()?.to_string(),
                ))
            })
            .collect();
        Ok(BenchBackfill { user_ids, reports_last })
    }

    fn process(&mut self, _cx: &mut Context, _pass: usize, batch: Vec<Document>) -> Result<Vec<Action>, Error> {
        let mut actions = batch
            .iter()
            .map(|d| {
                let id = d
                    .get("_id")
                    .cloned()
                    .ok_or_else(|| Error::new("document without _id"))?;
                let username = d.get_str("username").unwrap_or_default();
                Ok(match self.user_ids.get(username) {
                    Some(user_id) => Action::set("executions", id, doc! {"owner_user_id": user_id}),
                    None => Action::report("unresolved", username, "no user with this username"),
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        if self.reports_last {
            // Stable: updates keep their order, reports move behind them.
            actions.sort_by_key(|a| matches!(a, Action::Report(_)));
        }
        Ok(actions)
    }
}

godwit_sdk::export!(BenchBackfill);

#[cfg(test)]
mod tests {
    use super::*;
    use godwit_sdk::testing::Harness;

    #[test]
    fn known_usernames_get_their_user_id_and_unknown_ones_are_reported() {
        let actions = Harness::<BenchBackfill>::new()
            .collection(
                "users",
                vec![doc! {"username": "ada", "user_id": "usr_1"}, doc! {"username": "bob"}],
            )
            .run_pass(
                0,
                vec![doc! {"_id": 1, "username": "ada"}, doc! {"_id": 2, "username": "bob"}],
            )
            .unwrap();
        assert_eq!(
            actions,
            vec![
                Action::set("executions", 1, doc! {"owner_user_id": "usr_1"}),
                Action::report("unresolved", "bob", "no user with this username"),
            ]
        );
    }
}
