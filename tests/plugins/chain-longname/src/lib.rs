//! Chain test plugin `chain-longname`: the step after `chain-c` with a name
//! and a version far longer than the 32 characters Alembic's
//! `alembic_version.version_num` column held (seed 004). Numeric semver
//! identifiers may not have leading zeros, so the revision dates ride in
//! alphanumeric pre-release and build identifiers.

const NAME: &str = "merge_notifications_into_activitylog_0915_after_expand_alembic_version_len_0915_and_cleanup_mail_status_exclusivity";
const VERSION: &str = "1.3.0-merge-notifications-into-activitylog-0915+expand-verlen-0915.db-timeouts-relax-hotfix-0911.add-fk-cleanup-0907";
const REQUIRES: Option<&str> = Some("^1.2");
const FIELD: &str = "v4";

include!("../../chain-a/src/step.rs");
