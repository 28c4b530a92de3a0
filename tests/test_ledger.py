"""The run folder's ledger: a typed run state, atomic writes, one run per folder, first capture wins,
phase timings, and run folders of earlier releases migrated or refused, never misread."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runbook_lib import ledger as ledger_module
from runbook_lib.errors import RunbookError, RunStateError
from runbook_lib.ledger import LEDGER_FILE, Ledger, open_ledger, require_ledger
from runbook_lib.run_state import SCHEMA_VERSION, JobRecord, RetryRoundRecord, RunState

DATA = Path(__file__).resolve().parent / "data"


def on_disk(folder: Path) -> dict[str, Any]:
    return dict(json.loads((folder / LEDGER_FILE).read_text(encoding="utf-8")))


def test_new_folder_gets_an_empty_ledger(tmp_path: Path) -> None:
    ledger = open_ledger(tmp_path / "run", create=True)
    assert ledger.state.model_dump(exclude={"revision"}) == RunState().model_dump(exclude={"revision"})
    assert on_disk(tmp_path / "run")["schema_version"] == SCHEMA_VERSION
    assert on_disk(tmp_path / "run")["jobs"] == {} and on_disk(tmp_path / "run")["verdict"] is None


def test_every_change_is_on_disk_and_reopening_sees_it(tmp_path: Path) -> None:
    ledger = open_ledger(tmp_path, create=True)
    ledger.bind("drill", "parameters/drill.yaml")
    ledger.save_job(JobRecord(purpose="recovery-1", job_id="4f6c0a3e", attempt=1))
    ledger.state.retry_rounds.append(RetryRoundRecord(round=1, versions=3, job_id="b1", status="created"))
    ledger.save()

    reopened = open_ledger(tmp_path)

    assert reopened.state == ledger.state
    assert reopened.state.model_dump(mode="json") == on_disk(tmp_path)
    current = reopened.state.current_recovery_job()
    assert current is not None and current.job_id == "4f6c0a3e"
    assert [r.round for r in reopened.state.retry_rounds] == [1]


def test_interrupted_save_leaves_the_previous_ledger_whole_and_no_stray_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = open_ledger(tmp_path, create=True)
    ledger.set_resource("topic_arn", "first")
    before = (tmp_path / LEDGER_FILE).read_bytes()
    real_replace = ledger_module.os.replace

    def interrupted(*_: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(ledger_module.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ledger.set_resource("topic_arn", "second")
    monkeypatch.setattr(ledger_module.os, "replace", real_replace)

    assert (tmp_path / LEDGER_FILE).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [LEDGER_FILE]
    assert open_ledger(tmp_path).state.resources.topic_arn == "first"


def test_bind_refuses_a_folder_of_another_run(tmp_path: Path) -> None:
    open_ledger(tmp_path, create=True).bind("drill", "parameters/drill.yaml")

    with pytest.raises(RunbookError, match=r"belongs to run_id 'drill', not 'recovery-2026'.*new run folder"):
        open_ledger(tmp_path).bind("recovery-2026", "parameters/aws.yaml")
    assert on_disk(tmp_path)["run_id"] == "drill"
    assert on_disk(tmp_path)["params_file"] == "parameters/drill.yaml"


def test_bind_again_with_the_same_run_keeps_its_start(tmp_path: Path) -> None:
    first = open_ledger(tmp_path, create=True)
    first.bind("drill", "a.yaml")
    started = first.state.started

    again = open_ledger(tmp_path)
    again.bind("drill", "b.yaml")

    assert on_disk(tmp_path)["started"] == started
    assert on_disk(tmp_path)["params_file"] == "b.yaml"


def test_capture_original_keeps_the_first_value(tmp_path: Path) -> None:
    ledger = open_ledger(tmp_path, create=True)
    original = {"Version": "2012-10-17", "Statement": [{"Sid": "Admins"}]}

    first = ledger.capture_original("vault_key_policy", original)
    second = open_ledger(tmp_path).capture_original("vault_key_policy", {"Statement": []})

    assert (first, second) == (True, False)
    assert open_ledger(tmp_path).original("vault_key_policy") == original


def test_capture_of_nothing_is_remembered_as_nothing_before_the_run(tmp_path: Path) -> None:
    ledger = open_ledger(tmp_path, create=True)
    ledger.capture_original("vault_replication_configuration", None)
    ledger.capture_original("vault_replication_configuration", {"Rules": []})

    assert ledger.has_original("vault_replication_configuration")
    assert ledger.original("vault_replication_configuration") is None


def test_original_never_captured_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(RunbookError, match="no captured original 'vault_key_policy'"):
        open_ledger(tmp_path, create=True).original("vault_key_policy")


def test_record_created_is_idempotent_per_kind_and_identifier(tmp_path: Path) -> None:
    ledger = open_ledger(tmp_path, create=True)
    ledger.record_created("iam_role", "arn:aws:iam::111111111111:role/r", name="r")
    ledger.record_created("iam_role", "arn:aws:iam::111111111111:role/r", name="changed")
    ledger.record_created("iam_policy", "arn:aws:iam::111111111111:role/r")

    created = open_ledger(tmp_path).created()

    assert [(r["kind"], r["id"]) for r in created] == [
        ("iam_role", "arn:aws:iam::111111111111:role/r"), ("iam_policy", "arn:aws:iam::111111111111:role/r")]
    assert created[0]["name"] == "r"
    assert ledger.was_created("iam_role", "arn:aws:iam::111111111111:role/r")
    assert not ledger.was_created("sns_topic", "arn:aws:iam::111111111111:role/r")


def test_forget_created_moves_the_resource_to_removed(tmp_path: Path) -> None:
    ledger = open_ledger(tmp_path, create=True)
    ledger.record_created("sns_topic", "arn:topic")
    ledger.forget_created("sns_topic", "arn:topic")

    assert ledger.created() == []
    assert [(r["kind"], r["id"]) for r in on_disk(tmp_path)["removed"]] == [("sns_topic", "arn:topic")]


def test_a_resource_not_recorded_yet_says_which_phase_to_run_first(tmp_path: Path) -> None:
    with pytest.raises(RunbookError, match=r"recovery_key_arn .* run phase 01_recovery_bucket first"):
        open_ledger(tmp_path, create=True).resource("recovery_key_arn", "01_recovery_bucket")


def test_a_phase_records_its_start_then_its_end_with_seconds(tmp_path: Path) -> None:
    ledger = open_ledger(tmp_path, create=True)
    ledger.start_phase("02_batch_role")
    assert on_disk(tmp_path)["phases"]["02_batch_role"]["status"] == "running"

    ledger.end_phase("02_batch_role", "ok")

    recorded = on_disk(tmp_path)["phases"]["02_batch_role"]
    assert recorded["status"] == "ok"
    assert 0 <= recorded["seconds"] < 5
    assert recorded["ended"] >= recorded["started"]


def test_a_failed_phase_keeps_its_error(tmp_path: Path) -> None:
    ledger = open_ledger(tmp_path, create=True)
    ledger.start_phase("03_grants")
    ledger.end_phase("03_grants", "failed", "the vault key policy cannot be read")

    recorded = open_ledger(tmp_path).state.phases["03_grants"]
    assert (recorded.status, recorded.error) == ("failed", "the vault key policy cannot be read")
    assert recorded.seconds is not None and recorded.seconds >= 0


@pytest.mark.parametrize(
    "content",
    [b'{"run_id": "drill", "created": [', b"", b"\xff\xfe\x00garbage", b'["a list, not a ledger"]', b"null"],
    ids=["truncated", "empty", "not-utf8", "list", "null"],
)
def test_corrupt_ledger_is_a_runbook_error_that_says_what_to_do(tmp_path: Path, content: bytes) -> None:
    (tmp_path / LEDGER_FILE).write_bytes(content)

    with pytest.raises(RunbookError, match="restore it or use a new run folder"):
        open_ledger(tmp_path)


def test_a_copy_overtaken_by_another_writer_refuses_to_write(tmp_path: Path) -> None:
    # A second kernel (an old JupyterLab tab) must not put back the state it read, an old verdict included.
    stale = open_ledger(tmp_path, create=True)
    current = open_ledger(tmp_path)
    current.set_resource("topic_arn", "written by the current phase")

    with pytest.raises(RunStateError, match="written by another process or notebook kernel"):
        stale.set_resource("topic_arn", "written by the stale kernel")

    assert open_ledger(tmp_path).state.resources.topic_arn == "written by the current phase"


def test_ledger_is_a_plain_dataclass_over_its_folder(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "elsewhere")
    ledger.set_resource("topic_arn", "arn:aws:sns:us-east-1:111111111111:t")
    assert on_disk(tmp_path / "elsewhere")["resources"]["topic_arn"] == "arn:aws:sns:us-east-1:111111111111:t"


# ------------------------------------------------------------------------------ folders of earlier releases


def test_a_run_folder_of_the_previous_release_loads_through_the_migration(tmp_path: Path) -> None:
    # A ledger exactly as the release before the typed run state wrote it after a drill.
    (tmp_path / LEDGER_FILE).write_text((DATA / "ledger-unversioned.json").read_text())
    old = json.loads((DATA / "ledger-unversioned.json").read_text())
    job_id = old["values"]["job_id"]

    state = open_ledger(tmp_path).state

    current = state.current_recovery_job()
    assert current is not None and (current.job_id, current.attempt) == (job_id, 1)
    assert current.final == old["values"][f"final_{job_id}"]
    assert current.confirmed == old["values"][f"confirmed_{job_id}"]
    assert [p.model_dump() for p in current.progress] == old["values"][f"progress_{job_id}"]
    assert state.verdict is not None and state.verdict.verdict == old["values"]["verdict"]
    assert state.resources.topic_arn == old["values"]["topic_arn"]
    assert state.created == old["created"] and state.estimate == old["values"]["estimate"]
    assert set(state.phases) == set(old["phases"])


def test_a_migrated_folder_is_written_back_in_the_current_shape(tmp_path: Path) -> None:
    (tmp_path / LEDGER_FILE).write_text((DATA / "ledger-unversioned.json").read_text())
    ledger = open_ledger(tmp_path)
    ledger.save()

    assert on_disk(tmp_path)["schema_version"] == SCHEMA_VERSION
    assert open_ledger(tmp_path).state == ledger.state


def test_a_version_2_run_folder_loads_as_version_3_without_a_commitment_kind_or_sample(tmp_path: Path) -> None:
    # The release before sample drills wrote version 2: the same fields, none of the three new ones.
    (tmp_path / LEDGER_FILE).write_text((DATA / "ledger-unversioned.json").read_text())
    version_2 = open_ledger(tmp_path).state.model_dump(mode="json", exclude={"commitment", "kind", "sample"})
    version_2["schema_version"] = 2
    (tmp_path / LEDGER_FILE).write_text(json.dumps(version_2))

    migrated = open_ledger(tmp_path)

    assert migrated.state.schema_version == SCHEMA_VERSION == 3
    assert (migrated.state.commitment, migrated.state.kind, migrated.state.sample) == (None, None, None)
    assert migrated.state.current_recovery_job() is not None
    migrated.save()
    assert on_disk(tmp_path)["schema_version"] == 3


@pytest.mark.parametrize(("document", "says"), [
    ({"run_id": "drill", "values": {"job_id": "j", "favourite_colour": "blue"}}, "favourite_colour"),
    ({"run_id": "drill", "surprise": 1}, "surprise"),
    ({"schema_version": 99, "run_id": "drill"}, "schema version 99"),
    ({"schema_version": SCHEMA_VERSION, "jobs": {"recovery-1": {"job_id": "j"}}}, "jobs.recovery-1.purpose"),
], ids=["unknown-value", "unknown-field", "newer-schema", "bad-shape"])
def test_a_ledger_of_an_unknown_shape_is_refused_with_what_is_wrong(
    tmp_path: Path, document: dict[str, Any], says: str
) -> None:
    (tmp_path / LEDGER_FILE).write_text(json.dumps(document))

    with pytest.raises(RunStateError, match=r"restore it or use a new run folder|runbook release") as refused:
        open_ledger(tmp_path)
    assert says in str(refused.value)


# ------------------------------------------------------------------------------ a lost ledger stops the run


def test_a_folder_without_a_ledger_is_refused_unless_a_run_starts(tmp_path: Path) -> None:
    with pytest.raises(RunStateError) as refused:
        open_ledger(tmp_path / "run")
    assert refused.value.run_dir == str(tmp_path / "run")
    assert "phase 00" in str(refused.value) and "Restore ledger.json" in str(refused.value)
    assert not (tmp_path / "run" / LEDGER_FILE).exists()


def test_a_deleted_ledger_is_not_silently_replaced(tmp_path: Path) -> None:
    ledger = open_ledger(tmp_path, create=True)
    ledger.record_created("kms_key", "arn:aws:kms:us-east-1:222222222222:key/1")
    (tmp_path / LEDGER_FILE).unlink()

    with pytest.raises(RunStateError):
        open_ledger(tmp_path)
    assert not (tmp_path / LEDGER_FILE).exists()


@pytest.mark.parametrize("phase", ["01_recovery_bucket", "03", "07_verify", "08_cleanup"])
def test_phases_after_00_need_the_ledger(tmp_path: Path, phase: str) -> None:
    with pytest.raises(RunStateError, match=rf"no ledger.json, so phase {phase} cannot know what this run created"):
        require_ledger(tmp_path, phase)
    open_ledger(tmp_path, create=True)
    require_ledger(tmp_path, phase)


def test_phase_00_may_start_a_run_in_a_new_or_empty_folder(tmp_path: Path) -> None:
    require_ledger(tmp_path / "new", "00_preflight")
    require_ledger(tmp_path, "00")


@pytest.mark.parametrize("create_through", ["require_ledger", "open_ledger"])
def test_a_folder_where_later_phases_ran_never_gets_a_fresh_ledger(tmp_path: Path, create_through: str) -> None:
    # Executed notebooks outlive a deleted ledger: they show that this folder's run created things.
    (tmp_path / "notebooks").mkdir()
    for phase in ("00_preflight", "03_grants"):
        (tmp_path / "notebooks" / f"{phase}.ipynb").write_text("{}")
    with pytest.raises(RunStateError, match=r"phases 03_grants ran in it"):
        if create_through == "require_ledger":
            require_ledger(tmp_path, "00_preflight")
        else:
            open_ledger(tmp_path, create=True)
    assert not (tmp_path / LEDGER_FILE).exists()


def test_a_phase_log_of_phase_00_alone_does_not_block_a_new_start(tmp_path: Path) -> None:
    # Phase 00 changes nothing; a run that failed in it may simply start again.
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "00_preflight.ipynb").write_text("{}")
    fresh = open_ledger(tmp_path, create=True).state
    assert fresh.model_dump(exclude={"revision"}) == RunState().model_dump(exclude={"revision"})
