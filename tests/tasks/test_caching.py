from pathlib import Path
from types import SimpleNamespace

from prefect import flow, task
from pydantic import BaseModel, Field

from tasks.caching import DIGEST_CACHE, RESULT_TYPE, run_with_outputs

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


# The same task source twice: once returning a dict (results before they were typed), once a model.
STEPS_MODULE = '''
from pydantic import BaseModel, ConfigDict
from prefect import task
from tasks.caching import DIGEST_CACHE

CALLS = []
{result}

@task(name="step", cache_policy=DIGEST_CACHE, persist_result=True)
def step(target: str, content_digest: str) -> Result:
    CALLS.append(target)
    return Result(target=target)
'''
TYPED = '''
class Result(BaseModel):
    model_config = ConfigDict(frozen=True)
    target: str
'''


def _steps_module(tmp_path, monkeypatch, name: str, result: str):
    import importlib

    (tmp_path / f"{name}.py").write_text(STEPS_MODULE.format(result=result))
    monkeypatch.syspath_prepend(str(tmp_path))
    return importlib.import_module(name)


def test_a_result_persisted_under_another_result_type_is_not_loaded_as_the_new_one(tmp_path, monkeypatch):
    untyped = _steps_module(tmp_path, monkeypatch, "untyped_steps", "Result = dict")
    typed = _steps_module(tmp_path, monkeypatch, "typed_steps", TYPED)
    assert untyped.step.source_code == typed.step.source_code  # TASK_SOURCE alone would not tell them apart
    target = str(tmp_path / "out")

    @flow
    def run(module) -> list:
        return [module.step(target, "abc"), module.step(target, "abc")]

    assert run(untyped) == [{"target": target}] * 2
    first, cached = run(typed)
    assert typed.CALLS == [target]  # the dict was not reused; the model was, loaded back from Prefect's storage
    assert isinstance(cached, typed.Result) and cached == first == typed.Result(target=target)


def test_the_result_type_key_follows_the_shape_not_the_prose():
    def key_for(model):
        def task_fn() -> model: ...
        return RESULT_TYPE.compute_key(SimpleNamespace(task=SimpleNamespace(fn=task_fn)), {}, None)

    class Result(BaseModel):
        """One wording."""
        title: str = Field(description="a field named like a schema keyword")

    class Reworded(BaseModel):
        """Another wording."""
        title: str = Field(description="said differently")

    class Wider(BaseModel):
        """One wording."""
        title: str = Field(description="a field named like a schema keyword")
        description: int = 0

    assert key_for(Result) == key_for(Reworded) != key_for(Wider)
