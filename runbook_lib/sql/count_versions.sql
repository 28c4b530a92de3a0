-- The summary counts of runbook_lib.verify (COUNT_KEYS but findings) over the per-version
-- comparison {details}, plus the (key, version id) pairs with more than one row there: an
-- inventory (or the report) listing a version twice, which makes the comparison meaningless.
-- Every vault version has exactly one row when there is none, so the vault's versions are the
-- rows found in the vault. The counts read {details} alone, so DuckDB sums them slice by slice.
-- Athena's SQL (Trino); DuckDB runs it translated.
SELECT
    count_if(in_vault) AS source_versions,
    count_if(expected) AS expected,
    count_if(recovered_identical) AS recovered,
    count_if(missing_in_recovery) AS missing,
    count_if(extra_in_recovery) AS extra,
    count_if(content_differs) AS content_mismatches,
    count_if(lock_mode_differs OR retain_until_differs) AS retention_mismatches,
    count_if(legal_hold_differs) AS legal_hold_mismatches,
    count_if(task_failed) AS failed_tasks,
    count_if(unknown_unreadable) AS unknown,
    count_if(eligible_not_in_manifest) AS not_in_manifest,
    count_if(in_manifest_not_eligible) AS manifest_not_eligible,
    count_if(not_in_report) AS not_in_report,
    count_if(not_sampled) AS not_sampled,
    count_if(after_as_of) AS after_as_of,
    count_if(archived_not_recovered) AS archived_not_recovered,
    (SELECT count(*) FROM (
        SELECT key, version_id FROM ({details}) listed
        GROUP BY key, version_id HAVING count(*) > 1) twice) AS duplicates
FROM ({details}) compared
