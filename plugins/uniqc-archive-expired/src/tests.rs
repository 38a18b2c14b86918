use super::*;
use godwit_sdk::testing::Harness;

/// The harness's run starts at 2026-01-01T00:00:00Z.
const START: &str = "2026-01-01T00:00:00+00:00";

fn task(id: &str, status: &str, update_time: &str) -> Document {
    doc! {
        "_id": id, "backend": "dummy:local:simulator", "status": status, "shots": 100,
        "submit_time": "2025-12-20T00:00:00+00:00", "update_time": update_time,
        "result_json": r#"{"00": 50, "11": 50}"#, "metadata_json": r#"{"submitted_by": "test"}"#,
        "error_message": Bson::Null,
    }
}

fn archived(mut d: Document) -> Document {
    d.insert("archived_at", START);
    d
}

#[test]
fn reads_times_as_fromisoformat_does() {
    let start = 1_767_225_600_000;
    for (text, want) in [
        ("2026-01-01", Some(start)),
        ("2026-01-01T00:00:00Z", Some(start)),
        ("2026-01-01T00:00:00+00:00", Some(start)),
        ("2026-01-01 08:00:00+08:00", Some(start)),
        ("2025-12-31T19:00-05:00", Some(start)),
        ("2026-01-01T00:00:00.123456", Some(start + 123)),
        ("2026-01-01T00:00:01.5Z", Some(start + 1500)),
        ("2026-01-01T00:00:00+0130", Some(start - 5_400_000)),
        ("2024-02-29T00:00:00", Some(1_709_164_800_000)),
        ("2025-02-29T00:00:00", None),
        ("2026-13-01", None),
        ("yesterday", None),
        ("", None),
        ("2026-01-01T25:00", None),
        ("2026-01-01T00:00:00.", None),
        ("2026-01-01T00:00:00+00:00junk", None),
    ] {
        assert_eq!(parse_time_ms(text), want, "{text}");
    }
}

#[test]
fn writes_archived_at_as_python_isoformat() {
    assert_eq!(python_isoformat(1_767_225_600_000).unwrap(), START);
    assert_eq!(
        python_isoformat(1_767_225_600_123).unwrap(),
        "2026-01-01T00:00:00.123000+00:00"
    );
}

/// Upstream `archive_expired_tasks` with its defaults: terminal tasks whose
/// `update_time` is at least 72 hours before now move; pending and running
/// ones are `skipped_running`; a later one stays, an unreadable one too.
#[test]
fn terminal_tasks_72_hours_old_move_with_their_shards() {
    let shard = |uid: &str, i: i32| doc! {"_id": {"uniqc_task_id": uid, "shard_index": i}, "platform_task_id": format!("p{i}"), "status": "success"};
    let shards = vec![shard("uqt_a", 0), shard("uqt_a", 1), shard("uqt_keep", 0)];
    let mut h = Harness::<ArchiveExpired>::new().collection("task_shards", shards.clone());
    let batch = vec![
        task("uqt_a", "success", "2025-12-29T00:00:00+00:00"), // exactly 72 h
        task("ok-failed", "failed", "2025-12-01T00:00:00Z"),   // older
        task("uqt_keep", "cancelled", "2025-12-29T00:00:01+00:00"), // 71:59:59
        task("run", "running", "2025-01-01T00:00:00Z"),
        task("wait", "pending", "2025-01-01T00:00:00Z"),
        task("bad-time", "success", "not a time"),
        task("empty-update", "success", ""), // falls back to submit_time, 12 days old
    ];
    let actions = h.process(0, batch.clone()).unwrap();
    let move_task = |t: &Document| {
        [
            Action::delete_one("tasks", doc! {"_id": t.get("_id").unwrap()}),
            Action::insert("archived_tasks", archived(t.clone())),
        ]
    };
    let move_shard = |s: &Document| {
        [
            Action::insert("archived_task_shards", archived(s.clone())),
            Action::delete_one("task_shards", doc! {"_id": s.get("_id").unwrap()}),
        ]
    };
    let mut want = Vec::new();
    want.extend(move_shard(&shards[0]));
    want.extend(move_shard(&shards[1]));
    want.extend(move_task(&batch[0]));
    want.extend(move_task(&batch[1]));
    want.extend(move_task(&batch[6]));
    assert_eq!(actions, want);
    assert_eq!(
        h.finish().unwrap(),
        vec![Action::report(
            "summary",
            "archive_expired",
            r#"{"count": 3, "shards": 2, "skipped_running": 2, "too_recent": 1, "unreadable_time": 1}"#
        )]
    );
}

/// `terminal_only=false` and `hours=0`: every task up to the run's start,
/// as upstream's `archive_task` of one id does (its tests archive a pending
/// parent with its shards).
#[test]
fn parameters_are_upstreams_query_parameters() {
    let mut h = Harness::<ArchiveExpired>::new()
        .param("hours", "0")
        .param("terminal_only", "false");
    let batch = vec![
        task("now", "pending", START),
        task("later", "success", "2026-01-01T00:00:00.001Z"),
    ];
    let actions = h.process(0, batch.clone()).unwrap();
    assert_eq!(
        actions,
        vec![
            Action::delete_one("tasks", doc! {"_id": "now"}),
            Action::insert("archived_tasks", archived(batch[0].clone())),
        ]
    );
    assert!(Harness::<ArchiveExpired>::new().param("hours", "-1").begin().is_err());
}
