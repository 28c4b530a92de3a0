"""The run folder's ledger: atomic writes, one run per folder, first capture wins, phase timings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runbook_lib import ledger as ledger_module
from runbook_lib.errors import RunbookError, RunStateError
from runbook_lib.ledger import LEDGER_FILE, Ledger, open_ledger, require_ledger


def on_disk(folder: Path) -> dict[str, Any]:
    return dict(json.loads((folder / LEDGER_FILE).read_text(encoding="utf-8")))


def test_new_folder_gets_an_empty_ledger(tmp_path: Path) -> None:
    ledger = open_ledger(tmp_path / "run", create=True)
    assert ledger.data == {}
    assert on_disk(tmp_path / "run") == {}


def test_every_change_is_on_disk_and_reopening_sees_it(tmp_path: Path) -> None:
    ledger = open_ledger(tmp_path, create=True)
    ledger.bind("drill", "parameters/drill.yaml")
    ledger.set("job_id", "4f6c0a3e")
    ledger.append("retry_rounds", {"round": 1})

    reopened = open_ledger(tmp_path)

    assert reopened.data == on_disk(tmp_path) == ledger.data
    assert reopened.get("job_id") == "4f6c0a3e"
    assert reopened.get("retry_rounds") == [{"round": 1}]


def test_interrupted_save_leaves_the_previous_ledger_whole_and_no_stray_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = open_ledger(tmp_path, create=True)
    ledger.set("job_id", "first")
    before = (tmp_path / LEDGER_FILE).read_bytes()

    def interrupted(data: Any, stream: Any, **_: Any) -> None:
        stream.write('{"values": {"job_id": "sec')
        raise KeyboardInterrupt

    monkeypatch.setattr(ledger_module.json, "dump", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ledger.set("job_id", "second")
    monkeypatch.undo()

    assert (tmp_path / LEDGER_FILE).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [LEDGER_FILE]
    assert open_ledger(tmp_path).get("job_id") == "first"


def test_bind_refuses_a_folder_of_another_run(tmp_path: Path) -> None:
    open_ledger(tmp_path, create=True).bind("drill", "parameters/drill.yaml")

    with pytest.raises(RunbookError, match=r"belongs to run_id 'drill', not 'recovery-2026'.*new run folder"):
        open_ledger(tmp_path).bind("recovery-2026", "parameters/aws.yaml")
    assert on_disk(tmp_path)["run_id"] == "drill"
    assert on_disk(tmp_path)["params_file"] == "parameters/drill.yaml"


def test_bind_again_with_the_same_run_keeps_its_start(tmp_path: Path) -> None:
    first = open_ledger(tmp_path, create=True)
    first.bind("drill", "a.yaml")
    started = first.data["started"]

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


def test_require_says_which_phase_to_run_first(tmp_path: Path) -> None:
    with pytest.raises(RunbookError, match=r"recovery_key_arn .* run phase 01_recovery_bucket first"):
        open_ledger(tmp_path, create=True).require("recovery_key_arn", "01_recovery_bucket")


def test_phase_records_status_and_seconds_on_success(tmp_path: Path) -> None:
    ledger = open_ledger(tmp_path, create=True)
    with ledger.phase("02_batch_role"):
        assert on_disk(tmp_path)["phases"]["02_batch_role"]["status"] == "running"

    recorded = on_disk(tmp_path)["phases"]["02_batch_role"]
    assert recorded["status"] == "ok"
    assert 0 <= recorded["seconds"] < 5
    assert recorded["ended"] >= recorded["started"]


def test_phase_records_failure_with_the_first_line_of_the_error_and_re_raises(tmp_path: Path) -> None:
    ledger = open_ledger(tmp_path, create=True)
    with pytest.raises(RunbookError), ledger.phase("03_grants"):
        raise RunbookError("the vault key policy cannot be read\nsecond line")

    recorded = on_disk(tmp_path)["phases"]["03_grants"]
    assert recorded["status"] == "failed"
    assert recorded["error"] == "the vault key policy cannot be read"
    assert recorded["seconds"] >= 0


@pytest.mark.parametrize(
    "content",
    [b'{"run_id": "drill", "created": [', b"", b"\xff\xfe\x00garbage", b'["a list, not a ledger"]', b"null"],
    ids=["truncated", "empty", "not-utf8", "list", "null"],
)
def test_corrupt_ledger_is_a_runbook_error_that_says_what_to_do(tmp_path: Path, content: bytes) -> None:
    (tmp_path / LEDGER_FILE).write_bytes(content)

    with pytest.raises(RunbookError, match="restore it or use a new run folder"):
        open_ledger(tmp_path)


def test_ledger_is_a_plain_dataclass_over_its_folder(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "elsewhere")
    ledger.set("k", 1)
    assert on_disk(tmp_path / "elsewhere") == {"values": {"k": 1}}


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
    # The phase log outlives a deleted ledger: it shows that this folder's run created things.
    (tmp_path / "phases.json").write_text(json.dumps([
        {"phase": "00_preflight", "status": "ok"}, {"phase": "03_grants", "status": "ok"},
        {"phase": "04_replication_rule", "status": "failed"},
    ]))
    with pytest.raises(RunStateError, match=r"phases 03_grants ran in it"):
        if create_through == "require_ledger":
            require_ledger(tmp_path, "00_preflight")
        else:
            open_ledger(tmp_path, create=True)
    assert not (tmp_path / LEDGER_FILE).exists()


def test_a_phase_log_of_phase_00_alone_does_not_block_a_new_start(tmp_path: Path) -> None:
    # Phase 00 changes nothing; a run that failed in it may simply start again.
    (tmp_path / "phases.json").write_text(json.dumps([{"phase": "00_preflight", "status": "failed"}]))
    assert open_ledger(tmp_path, create=True).data == {}
