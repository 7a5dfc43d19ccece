from pathlib import Path

from prefect import flow, task

from tasks.caching import DIGEST_CACHE, run_with_outputs

CALLS = []


@task(cache_policy=DIGEST_CACHE, persist_result=True)
def write_file(target: str, content_digest: str) -> dict:
    CALLS.append(target)
    Path(target).write_text(content_digest)
    return {"files": [target]}


@flow
def twice_with_deletion(target: str) -> None:
    run_with_outputs(write_file, lambda result: result["files"], target, "abc")
    run_with_outputs(write_file, lambda result: result["files"], target, "abc")  # cache hit
    Path(target).unlink()
    run_with_outputs(write_file, lambda result: result["files"], target, "abc")  # files gone: run again


def test_a_cache_hit_whose_files_are_gone_runs_again(tmp_path):
    target = str(tmp_path / "out.txt")
    twice_with_deletion(target)
    assert CALLS == [target, target]
    assert Path(target).read_text() == "abc"
