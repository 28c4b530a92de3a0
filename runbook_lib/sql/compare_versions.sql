-- The per-version comparison of runbook_lib.verify, in Athena's SQL (Trino). DuckDB runs it after
-- sqlglot translates it. One row per (key, version id) seen in the vault inventory, the recovery
-- inventory or the manifest, with every check, the category (first that holds, in verify's
-- precedence order), the scope reason and both sides' normalised values.
--
-- {vault_inventory} and {recovery_inventory} are S3 Inventory rows (Parquet or ORC columns:
-- key, version_id, is_delete_marker, size, last_modified_date, e_tag, storage_class,
-- replication_status, object_lock_mode, object_lock_retain_until_date,
-- object_lock_legal_hold_status, checksum_algorithm: NULL where the report lacks the field);
-- {manifest} has key, version_id (each version once: the caller removes the repeats of several
-- jobs' manifests); {report} has key, version_id, task_status, http_status, error_code,
-- result_message (one row per version: its latest task). A version either lists twice gives two
-- rows, which count_versions.sql counts as duplicates. {sample} has key, version_id
-- of a sample drill's draw (read only when {has_sample}: then only drawn versions are expected).
-- An inventory lists a version's checksum algorithm but never the checksum itself, so checksums
-- are not compared here (checksum_compared is false, vault_checksum and recovery_checksum NULL).
-- Every other {name} is a literal rendered by runbook_lib.inventory_sql.
WITH
vault_rows AS (
    SELECT
        key,
        coalesce(nullif(version_id, ''), 'null') AS version_id,
        coalesce(is_delete_marker, false) AS vault_is_delete_marker,
        last_modified_date AS last_modified,
        CASE WHEN coalesce(is_delete_marker, false) THEN coalesce(size, 0) ELSE size END AS vault_size,
        nullif(e_tag, '') AS vault_etag,
        nullif(storage_class, '') AS raw_storage_class,
        upper(coalesce(nullif(storage_class, ''), 'STANDARD')) AS vault_storage_class,
        upper(coalesce(nullif(replication_status, ''), 'NONE')) AS vault_replication_status,
        upper(nullif(object_lock_mode, '')) AS vault_object_lock_mode,
        date_trunc('second', object_lock_retain_until_date) AS vault_object_lock_retain_until_date,
        upper(coalesce(nullif(object_lock_legal_hold_status, ''), 'OFF')) AS vault_object_lock_legal_hold_status,
        upper(nullif(checksum_algorithm, '')) AS vault_checksum_algorithm
    FROM {vault_inventory}
),
vault AS (
    SELECT
        v.*,
        CASE
            WHEN v.vault_is_delete_marker THEN 'delete marker (not replicated)'
            WHEN {has_window} AND v.last_modified IS NULL THEN 'creation time unknown'
            WHEN {has_after} AND v.last_modified < {created_after} THEN {reason_after}
            WHEN {has_before} AND v.last_modified >= {created_before} THEN {reason_before}
            WHEN {has_prefix} AND NOT starts_with(v.key, {key_prefix}) THEN {reason_prefix}
            WHEN {has_suffix} AND NOT (length(v.key) >= length({key_suffix})
                 AND substr(v.key, length(v.key) - length({key_suffix}) + 1) = {key_suffix}) THEN {reason_suffix}
            WHEN {has_substring} AND strpos(v.key, {key_substring}) = 0 THEN {reason_substring}
            WHEN v.vault_replication_status = 'UNKNOWN' THEN {reason_unreadable}
            WHEN v.vault_replication_status NOT IN ({statuses}) THEN {reason_status}
            WHEN NOT {include_archived} AND upper(v.raw_storage_class) IN ('GLACIER', 'DEEP_ARCHIVE') THEN {reason_archived}
            ELSE ''
        END AS scope
    FROM vault_rows v
),
recovery AS (
    SELECT
        key,
        coalesce(nullif(version_id, ''), 'null') AS version_id,
        coalesce(is_delete_marker, false) AS recovery_is_delete_marker,
        CASE WHEN coalesce(is_delete_marker, false) THEN coalesce(size, 0) ELSE size END AS recovery_size,
        nullif(e_tag, '') AS recovery_etag,
        upper(coalesce(nullif(storage_class, ''), 'STANDARD')) AS recovery_storage_class,
        upper(coalesce(nullif(replication_status, ''), 'NONE')) AS recovery_replication_status,
        upper(nullif(object_lock_mode, '')) AS recovery_object_lock_mode,
        date_trunc('second', object_lock_retain_until_date) AS recovery_object_lock_retain_until_date,
        upper(coalesce(nullif(object_lock_legal_hold_status, ''), 'OFF')) AS recovery_object_lock_legal_hold_status,
        upper(nullif(checksum_algorithm, '')) AS recovery_checksum_algorithm
    FROM {recovery_inventory}
),
listed AS (
    SELECT key, version_id FROM {manifest}
),
drawn AS (
    SELECT DISTINCT key, version_id FROM {sample} WHERE {has_sample}
),
outcomes AS (
    SELECT key, version_id, task_status, http_status, error_code, result_message
    FROM {report}
    WHERE version_id IS NOT NULL AND version_id <> ''
),
sides AS (
    SELECT
        coalesce(v.key, r.key) AS key,
        coalesce(v.version_id, r.version_id) AS version_id,
        v.key IS NOT NULL AS in_vault,
        r.key IS NOT NULL AS in_recovery,
        v.scope,
        v.vault_is_delete_marker, v.vault_size, v.vault_etag, v.vault_storage_class, v.vault_replication_status,
        v.vault_object_lock_mode, v.vault_object_lock_retain_until_date, v.vault_object_lock_legal_hold_status,
        v.vault_checksum_algorithm,
        r.recovery_is_delete_marker, r.recovery_size, r.recovery_etag, r.recovery_storage_class,
        r.recovery_replication_status, r.recovery_object_lock_mode, r.recovery_object_lock_retain_until_date,
        r.recovery_object_lock_legal_hold_status, r.recovery_checksum_algorithm
    FROM vault v
    FULL OUTER JOIN recovery r ON r.key = v.key AND r.version_id = v.version_id
),
joined AS (
    SELECT
        coalesce(s.key, m.key) AS key,
        coalesce(s.version_id, m.version_id) AS version_id,
        s.scope,
        coalesce(s.in_vault, false) AS in_vault,
        coalesce(s.in_recovery, false) AS in_recovery,
        m.key IS NOT NULL AS in_manifest,
        s.vault_is_delete_marker, s.vault_size, s.vault_etag, s.vault_storage_class, s.vault_replication_status,
        s.vault_object_lock_mode, s.vault_object_lock_retain_until_date, s.vault_object_lock_legal_hold_status,
        s.vault_checksum_algorithm,
        s.recovery_is_delete_marker, s.recovery_size, s.recovery_etag, s.recovery_storage_class,
        s.recovery_replication_status, s.recovery_object_lock_mode, s.recovery_object_lock_retain_until_date,
        s.recovery_object_lock_legal_hold_status, s.recovery_checksum_algorithm
    FROM sides s
    FULL OUTER JOIN listed m ON m.key = s.key AND m.version_id = s.version_id
),
reported AS (
    SELECT
        j.*,
        o.key IS NOT NULL AS in_report,
        o.task_status,
        o.http_status,
        o.error_code,
        o.result_message,
        NOT {has_sample} OR d.key IS NOT NULL AS in_sample
    FROM joined j
    LEFT JOIN outcomes o ON o.key = j.key AND o.version_id = j.version_id
    LEFT JOIN drawn d ON d.key = j.key AND d.version_id = j.version_id
),
states AS (
    SELECT
        j.*,
        in_vault AND coalesce(scope = '', false) AS in_scope,
        in_vault AND coalesce(scope = {reason_status} AND vault_replication_status = 'FAILED', false)
            AS failed_status,
        in_vault AND in_recovery AS both_sides
    FROM reported j
),
scoped AS (
    SELECT
        s.*,
        in_scope OR (failed_status AND {failed_replica_possible} AND in_report) AS in_expected_scope,
        in_vault AND (coalesce(scope = {reason_unreadable}, false)
            OR (failed_status AND {failed_replica_possible} AND NOT in_report)) AS status_unknown_anywhere
    FROM states s
),
judged AS (
    SELECT
        s.*,
        in_expected_scope AND in_sample AS expected,
        status_unknown_anywhere AND in_sample AS status_unknown,
        both_sides AND coalesce(vault_object_lock_mode = 'UNKNOWN' OR recovery_object_lock_mode = 'UNKNOWN', false)
            AS retention_unknown,
        both_sides AND coalesce(vault_object_lock_legal_hold_status = 'UNKNOWN'
            OR recovery_object_lock_legal_hold_status = 'UNKNOWN', false) AS hold_unknown,
        both_sides AND (vault_size IS DISTINCT FROM recovery_size
            OR vault_is_delete_marker <> recovery_is_delete_marker
            -- quotes around an ETag are not part of it; stripped only where the two differ at all
            OR CASE WHEN vault_etag IS NOT DISTINCT FROM recovery_etag THEN false
                    ELSE trim(BOTH '"' FROM vault_etag) IS DISTINCT FROM trim(BOTH '"' FROM recovery_etag) END)
            AS content_differs
    FROM scoped s
),
checked AS (
    SELECT
        j.*,
        both_sides AND NOT retention_unknown
            AND vault_object_lock_mode IS DISTINCT FROM recovery_object_lock_mode AS lock_mode_differs,
        both_sides AND NOT retention_unknown
            AND vault_object_lock_retain_until_date IS DISTINCT FROM recovery_object_lock_retain_until_date
            AS retain_until_differs,
        both_sides AND NOT hold_unknown
            AND vault_object_lock_legal_hold_status IS DISTINCT FROM recovery_object_lock_legal_hold_status
            AS legal_hold_differs,
        retention_unknown OR hold_unknown OR status_unknown AS unknown_unreadable
    FROM judged j
),
identical AS (
    SELECT
        c.*,
        both_sides AND NOT content_differs AND NOT lock_mode_differs AND NOT retain_until_differs
            AND NOT legal_hold_differs AND NOT unknown_unreadable AS identical
    FROM checked c
),
flagged AS (
    SELECT
        i.*,
        in_report AND coalesce(task_status = 'failed', false) AND NOT identical AS task_failed,
        expected AND NOT in_recovery AS missing_in_recovery,
        in_recovery AND NOT expected AND NOT status_unknown AS extra_in_recovery,
        expected AND NOT in_manifest AS eligible_not_in_manifest,
        in_manifest AND NOT expected AND NOT status_unknown AS in_manifest_not_eligible,
        expected AND in_manifest AND NOT in_report AS not_in_report,
        expected AND identical AS recovered_identical,
        (in_expected_scope OR status_unknown_anywhere) AND NOT in_sample AND NOT in_recovery AS not_sampled,
        in_vault AND NOT expected AND NOT in_recovery AND {has_as_of}
            AND coalesce(starts_with(scope, {reason_as_of}), false) AS after_as_of,
        in_vault AND coalesce(scope = {reason_archived}, false) AND NOT in_recovery AS archived_not_recovered,
        NOT expected AND NOT in_recovery AND NOT status_unknown AS not_expected,
        both_sides AND NOT vault_is_delete_marker AS content_compared,
        both_sides AND coalesce(strpos(vault_etag, '-') > 0, false) AS multipart_etag,
        false AS checksum_compared,
        both_sides AND (vault_checksum_algorithm IS NOT NULL OR recovery_checksum_algorithm IS NOT NULL)
            AS checksum_not_compared
    FROM identical i
)
SELECT
    key,
    version_id,
    CASE
        WHEN task_failed THEN 'task_failed'
        WHEN missing_in_recovery THEN 'missing_in_recovery'
        WHEN extra_in_recovery THEN 'extra_in_recovery'
        WHEN content_differs THEN 'content_differs'
        WHEN lock_mode_differs THEN 'lock_mode_differs'
        WHEN retain_until_differs THEN 'retain_until_differs'
        WHEN legal_hold_differs THEN 'legal_hold_differs'
        WHEN unknown_unreadable THEN 'unknown_unreadable'
        WHEN eligible_not_in_manifest THEN 'eligible_not_in_manifest'
        WHEN in_manifest_not_eligible THEN 'in_manifest_not_eligible'
        WHEN not_in_report THEN 'not_in_report'
        WHEN recovered_identical THEN 'recovered_identical'
        WHEN not_sampled THEN 'not_sampled'
        WHEN after_as_of THEN 'after_as_of'
        WHEN archived_not_recovered THEN 'archived_not_recovered'
        ELSE 'not_expected'
    END AS category,
    scope,
    in_vault,
    in_recovery,
    in_manifest,
    in_report,
    expected,
    identical,
    task_failed,
    missing_in_recovery,
    extra_in_recovery,
    content_differs,
    lock_mode_differs,
    retain_until_differs,
    legal_hold_differs,
    unknown_unreadable,
    eligible_not_in_manifest,
    in_manifest_not_eligible,
    not_in_report,
    recovered_identical,
    not_sampled,
    after_as_of,
    archived_not_recovered,
    not_expected,
    content_compared,
    multipart_etag,
    checksum_compared,
    checksum_not_compared,
    in_sample,
    vault_is_delete_marker,
    vault_size,
    vault_etag,
    vault_storage_class,
    vault_replication_status,
    vault_object_lock_mode,
    vault_object_lock_retain_until_date,
    vault_object_lock_legal_hold_status,
    vault_checksum_algorithm,
    CAST(NULL AS varchar) AS vault_checksum,
    recovery_is_delete_marker,
    recovery_size,
    recovery_etag,
    recovery_storage_class,
    recovery_replication_status,
    recovery_object_lock_mode,
    recovery_object_lock_retain_until_date,
    recovery_object_lock_legal_hold_status,
    recovery_checksum_algorithm,
    CAST(NULL AS varchar) AS recovery_checksum,
    task_status,
    http_status,
    CASE WHEN task_status = 'failed' THEN error_code END AS error_code,
    CASE WHEN task_status = 'failed' THEN result_message END AS result_message
FROM flagged
