"""The CLI contract (issue #2 §5), run as a user would: a subprocess against the emulators."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from subprocess import CompletedProcess
from typing import Any

import pytest

from devkit.seed import World
from reel_reconciler.engine.changelog import loggable, rfc3339

Cli = Callable[..., CompletedProcess[str]]


def _json(proc: CompletedProcess[str]) -> Any:
    assert proc.stdout, f"no output; stderr: {proc.stderr}"
    return json.loads(proc.stdout)


def test_reconcile_json_reports_in_order_and_exit_status(world: World, cli: Cli) -> None:
    _, paths = world.generated_project("b-stuck", status="generating", prompts=2, in_gcs=2,
                                       in_db=0, job_status="failed")
    world.generated_project("a-fine", status="ready", prompts=1, in_gcs=1, in_db=1)
    proc = cli("reconcile", "b-stuck", "a-fine", "--output", "json")
    assert proc.returncode == 0, proc.stderr
    reports = _json(proc)
    assert isinstance(reports, list)
    assert [r["projectId"] for r in reports] == ["b-stuck", "a-fine"]
    assert [r["action"] for r in reports] == ["corrected", "no_change"]
    assert reports[0]["restoredClips"] == paths
    for key in ("originalStatus", "correctedStatus", "claimedClips", "verifiedClips",
                "missingClips", "restoredClips"):
        assert key in reports[0]
    missing = cli("reconcile", "a-fine", "no-such-project", "--output", "json")
    assert missing.returncode == 1
    assert [r["action"] for r in _json(missing)] == ["no_change", "error"]


def test_reconcile_text_is_a_table(world: World, cli: Cli) -> None:
    world.generated_project("p1", status="generating", prompts=2, in_gcs=2, in_db=0,
                            job_status="failed")
    proc = cli("reconcile", "p1", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "generating → ready" in proc.stdout
    assert "drift" in proc.stdout
    assert world.project("p1")["status"] == "generating"


def test_sweep_json_then_second_sweep_writes_nothing(world: World, cli: Cli) -> None:
    world.generated_project("p-stuck", status="generating", prompts=3, in_gcs=3, in_db=0,
                            job_status="processing", job_updated_ago=timedelta(hours=3))
    world.generated_project("p-false", status="ready", prompts=2, in_gcs=[0], in_db=2)
    world.generated_project("p-failed", status="generating", prompts=2, in_gcs=0, in_db=0,
                            job_status="failed")
    world.generated_project("p-ok", status="ready", prompts=2, in_gcs=2, in_db=2)
    first = _json(cli("sweep", "--output", "json"))
    assert isinstance(first, dict)
    assert set(first) >= {"scanned", "actions", "reports", "gcsRequests", "firestoreRequests",
                          "durationSeconds"}
    assert first["scanned"] == 4
    assert first["actions"] == {"corrected": 3, "no_change": 1}
    assert sorted(r["projectId"] for r in first["reports"]) == ["p-failed", "p-false", "p-stuck"]
    times = {pid: world.update_time(pid) for pid in ("p-stuck", "p-false", "p-failed", "p-ok")}

    second = cli("sweep", "--output", "json")
    assert second.returncode == 0, second.stderr
    body = _json(second)
    assert body["actions"] == {"no_change": 4}
    assert body["reports"] == []
    assert {pid: world.update_time(pid) for pid in times} == times


def test_dry_run_sweep_reports_drift_and_writes_nothing(world: World, cli: Cli) -> None:
    world.generated_project("p1", status="generating", prompts=2, in_gcs=2, in_db=0,
                            job_status="failed")
    before = world.update_time("p1")
    body = _json(cli("sweep", "--dry-run", "--output", "json"))
    assert body["actions"] == {"drift": 1}
    assert body["dryRun"] is True
    assert world.update_time("p1") == before


def test_sweep_over_malformed_documents_reports_and_leaves_them(world: World, cli: Cli) -> None:
    world.generated_project("good-stuck", status="generating", prompts=1, in_gcs=1, in_db=0,
                            job_status="failed")
    bad = {
        "bad-status": {"userId": "u", "status": "exploded", "promptList": ["a"]},
        "bad-types": {"userId": "u", "status": "ready", "promptList": "a,b",
                      "clipFilenames": 3},
        "bad-traversal": {"userId": "u", "status": "ready", "promptList": ["a"],
                          "clipFilenames": ["reel-maker/u/x/../../../etc/passwd"]},
        "bad-bucket": {"userId": "u", "status": "ready", "promptList": ["a"],
                       "clipFilenames": ["gs://someone-elses-bucket/a.mp4"]},
        "bad-size": {"userId": "u", "status": "draft", "promptList": ["p"] * 5000},
        "bad-empty": {},
    }
    for pid, data in bad.items():
        world.projects().document(pid).set(data)
    times = {pid: world.update_time(pid) for pid in bad}
    proc = cli("sweep", "--output", "json")
    assert proc.returncode == 0, proc.stderr
    body = _json(proc)
    assert body["scanned"] == 7
    reports = {r["projectId"]: r for r in body["reports"]}
    for pid in bad:
        assert reports[pid]["action"] == "skipped"
        assert reports[pid]["reason"].startswith("invalid document")
        assert reports[pid]["driftKinds"] == ["invalid_document"]
    assert reports["good-stuck"]["action"] == "corrected"
    assert {pid: world.update_time(pid) for pid in bad} == times
    assert "invalid document" in reports["bad-bucket"]["reason"]
    assert "foreign bucket" in reports["bad-bucket"]["reason"]


def test_pagination_of_firestore_and_gcs(world: World, cli: Cli) -> None:
    """Pages smaller than the data: 7 projects in pages of 2, objects in pages of 2."""
    objects_per_project = [0, 1, 2, 3, 5, 4, 1]
    for index, count in enumerate(objects_per_project):
        world.generated_project(f"p{index}", status="ready", prompts=count, in_gcs=count,
                                in_db=count)
    body = _json(cli("sweep", "--output", "json", "--page-size", "2", "--gcs-page-size", "2",
                     "--ranges", "1"))
    assert body["scanned"] == 7
    # One range: the sweep lists the bucket once, in pages: one request per page of objects,
    # nothing per project or per clip (the last page carries no next-page token, so no empty
    # page); and first one listing of at most one object, the breaker's check that the root
    # holds any.
    objects = sum(objects_per_project)
    assert body["gcsRequests"] == 1 + math.ceil(objects / 2)
    # Firestore: one query for the queued/processing jobs, the projects and the jobs streamed
    # in pages (a page shorter than 2 ends a stream: 7 documents take 4 pages each), one
    # count of the projects (7 streamed, so no scan for documents without userId), and one
    # write: p0 has no prompts, so "ready" becomes "draft".
    projects = jobs = len(objects_per_project)
    pages = (projects // 2 + 1) + (jobs // 2 + 1)
    assert body["firestoreRequests"] == 1 + pages + 1 + 1
    assert body["actions"] == {"no_change": 6, "corrected": 1}


def test_cleanup_stale_jobs_json_and_seed_style_text(world: World, cli: Cli) -> None:
    job1, _ = world.generated_project("p-a", status="generating", prompts=2, in_gcs=2,
                                      in_db=0, job_status="processing",
                                      job_started_ago=timedelta(hours=2))
    job2, _ = world.generated_project("p-b", status="generating", prompts=2, in_gcs=1,
                                      in_db=1, job_status="queued",
                                      job_created_ago=timedelta(hours=1))
    world.generated_project("p-live", status="generating", prompts=2, in_gcs=1, in_db=1,
                            job_status="processing", job_updated_ago=timedelta(minutes=3))
    dry = cli("cleanup-stale-jobs", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "Would clean up 2 stale project(s):" in dry.stdout
    assert world.job(job1)["status"] == "processing"

    body = _json(cli("cleanup-stale-jobs", "--output", "json"))
    assert sorted(body["staleJobs"]) == sorted([job1, job2])
    corrected = {r["projectId"]: r["correctedStatus"] for r in body["reports"]}
    assert corrected == {"p-a": "ready", "p-b": "error"}
    assert world.job(job1)["error"] == "Job timed out after 30 minutes"
    assert world.job(job1)["timedOutAt"] == world.job(job1)["updatedAt"]
    assert world.project("p-live")["status"] == "generating"

    again = cli("cleanup-stale-jobs")
    assert "No stale jobs found" in again.stdout


def test_cleanup_stale_timeout_flag_takes_a_duration(world: World, cli: Cli) -> None:
    job, _ = world.generated_project("p", status="generating", prompts=1, in_gcs=1, in_db=0,
                                     job_status="processing",
                                     job_updated_ago=timedelta(minutes=10))
    assert json.loads(cli("cleanup-stale-jobs", "--output", "json")
                      .stdout)["staleJobs"] == []
    text = cli("cleanup-stale-jobs", "--stale-timeout", "5m")
    assert "Cleaned up 1 stale project(s):" in text.stdout
    assert "  - p" in text.stdout
    assert world.job(job)["error"] == "Job timed out after 5 minutes"


def test_cleanup_takes_the_seeds_timeout_in_minutes(world: World, cli: Cli) -> None:
    """The seed's cron line (`cleanup_stale_reel_jobs.py --timeout 30`, or no flag at all)
    works unchanged: --timeout is minutes; it wins over REEL_STALE_TIMEOUT as a flag does."""
    job, _ = world.generated_project("p", status="generating", prompts=1, in_gcs=1, in_db=0,
                                     job_status="processing",
                                     job_updated_ago=timedelta(minutes=10))
    bare = cli("cleanup-stale-jobs")
    assert bare.returncode == 0, bare.stderr
    assert "No stale jobs found" in bare.stdout
    seed = cli("cleanup-stale-jobs", "--timeout", "30", "--output", "json")
    assert seed.returncode == 0, seed.stderr
    assert _json(seed)["staleJobs"] == []
    assert world.job(job)["status"] == "processing"
    text = cli("cleanup-stale-jobs", "--timeout", "5", env={"REEL_STALE_TIMEOUT": "1h"})
    assert text.returncode == 0, text.stderr
    assert "Cleaned up 1 stale project(s):" in text.stdout
    assert world.job(job)["error"] == "Job timed out after 5 minutes"


def _change_lines(proc: CompletedProcess[str]) -> list[dict[str, Any]]:
    """The change log's lines of one run (JSON logs on stderr)."""
    lines = []
    for text in proc.stderr.splitlines():
        try:
            record = json.loads(text)
        except json.JSONDecodeError:
            continue
        if record.get("logger") == "reel_reconciler.changes":
            lines.append(record)
    return lines


def test_each_write_is_in_the_change_log_and_can_be_undone_from_it(world: World,
                                                                     cli: Cli) -> None:
    """The log's before values rebuild every document as it was: a stale job and its
    project, a forced reconcile (a full read) and a sweep (its reads are projections)."""
    world.generated_project("p-forced", status="error", prompts=3, in_gcs=3, in_db=1,
                            job_status="failed",
                            errorInfo={"message": "quota", "timestamp": datetime.now(UTC)})
    _, paths = world.generated_project("p-swept", status="ready", prompts=3, in_gcs=3,
                                       in_db=3)
    world.delete_object(paths[1])
    job, _ = world.generated_project("p-stale", status="generating", prompts=2, in_gcs=2,
                                     in_db=0, job_status="processing",
                                     job_updated_ago=timedelta(hours=2))
    projects = ("p-forced", "p-swept", "p-stale")
    before = {("project", pid): world.project(pid) for pid in projects}
    before[("job", job)] = world.job(job)
    runs = [cli("cleanup-stale-jobs", "--log-format", "json"),
            cli("reconcile", "p-forced", "--log-format", "json"),
            cli("sweep", "--log-format", "json")]
    for run in runs:
        assert run.returncode == 0, run.stderr
    lines = [line for run in runs for line in _change_lines(run)]
    written = {(line["document"], line.get("jobId") or line["projectId"]): line
               for line in lines}
    assert [line["outcome"] for line in lines] == ["written"] * 4, lines
    assert set(written) == set(before), "one line per write, and only those"
    assert written[("job", job)]["projectId"] == "p-stale"
    assert written[("job", job)]["driftKinds"] == ["stale_job"]
    assert "missing_clip" in written[("project", "p-swept")]["driftKinds"]
    for (document, doc_id), line in written.items():
        now = world.job(doc_id) if document == "job" else world.project(doc_id)
        read = world.jobs() if document == "job" else world.projects()
        snapshot = read.document(doc_id).get()
        assert line["updateTime"] == rfc3339(snapshot.update_time)
        assert line["trigger"] == "cli"
        assert line["precondition"]["updateTime"] < line["updateTime"]
        rebuilt = loggable(now)
        for name, change in line["fields"].items():
            if "after" in change:
                assert change["after"] == rebuilt[name], (doc_id, name)
            else:
                assert change == {"serverTime": True} or set(change) == {"before",
                                                                        "serverTime"}
            if "before" in change:
                rebuilt[name] = change["before"]
            else:
                rebuilt.pop(name)
        assert rebuilt == loggable(before[(document, doc_id)]), doc_id


def test_skipped_rows_show_the_status_and_why(world: World, cli: Cli) -> None:
    """A skip keeps the project's status (no `draft → ?`) and says why in the action."""
    job, _ = world.generated_project("busy", status="generating", prompts=2, in_gcs=1,
                                     in_db=0, job_status="processing",
                                     job_updated_ago=timedelta(seconds=5))
    world.projects().document("odd").set({"userId": "u", "status": "draft",
                                          "promptList": "not a list"})
    proc = cli("reconcile", "busy", "odd")
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[1]: line for line in proc.stdout.splitlines()
            if line.startswith("│ busy") or line.startswith("│ odd")}
    assert "→" not in rows["busy"]
    assert "?" not in rows["busy"]
    assert rows["busy"].split("│")[2].strip() == "generating"
    assert f"skipped (active job {job} (processing))" in rows["busy"]
    assert "→" not in rows["odd"]
    assert rows["odd"].split("│")[2].strip() == "draft"
    assert "skipped (invalid document" in rows["odd"]


@pytest.mark.usefixtures("world")
def test_configuration_errors_exit_2_with_one_line(cli: Cli) -> None:
    no_bucket = cli("sweep", env={"REEL_BUCKET": ""})
    assert no_bucket.returncode == 2
    assert "REEL_BUCKET" in no_bucket.stderr
    assert len(no_bucket.stderr.strip().splitlines()) == 1

    bad_value = cli("sweep", "--concurrency", "0")
    assert bad_value.returncode == 2
    assert "concurrency" in bad_value.stderr

    no_such_bucket = cli("sweep", "--bucket", "does-not-exist-anywhere")
    assert no_such_bucket.returncode == 2
    assert "does not exist" in no_such_bucket.stderr

    unreachable = cli("sweep", "--retry-deadline", "2",
                      env={"FIRESTORE_EMULATOR_HOST": "127.0.0.1:9"})
    assert unreachable.returncode == 2
    assert "FIRESTORE_EMULATOR_HOST" in unreachable.stderr

    usage = cli("sweep", "--output", "yaml")
    assert usage.returncode == 2


def test_app_bucket_variables_are_honoured(world: World, cli: Cli) -> None:
    world.generated_project("p", status="generating", prompts=1, in_gcs=1, in_db=0,
                            job_status="failed")
    proc = cli("reconcile", "p", "--output", "json",
               env={"REEL_BUCKET": "", "VIDEO_STORAGE_BUCKET": world.bucket})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["action"] == "corrected"


def test_ranged_sweep_json_and_bad_counts(world: World, cli: Cli) -> None:
    """`sweep --ranges M --parallel K`: the same `scanned`, each range's share; a bad count
    is one line and exit 2, from a flag or from `watch`'s environment."""
    for i, user in enumerate(("ab", "ab-c", "ab.c", "ab0", "AB", "zz")):
        world.generated_project(f"p{i}", user=user, status="ready", prompts=2, in_gcs=2,
                                in_db=2)
    body = _json(cli("sweep", "--output", "json", "--ranges", "5", "--parallel", "2"))
    assert body["scanned"] == 6
    assert body["actions"] == {"no_change": 6}
    assert len(body["ranges"]) == 5
    assert sum(r["scanned"] for r in body["ranges"]) == 6
    for args, env, where in ((["sweep", "--ranges", "0"], {}, "--ranges"),
                             (["sweep", "--parallel", "x"], {}, "--parallel"),
                             (["watch"], {"REEL_SWEEP_RANGES": "5000"}, "REEL_SWEEP_RANGES"),
                             (["watch", "--sweep-parallel", "65"], {}, "--sweep-parallel")):
        proc = cli(*args, env=env)
        assert proc.returncode == 2, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert where in proc.stderr, proc.stderr
