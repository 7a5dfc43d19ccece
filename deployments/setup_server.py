"""Prepare a running Prefect server for this project: work pools, the `gpu` concurrency limit, block types.

    prefect server start                                   # another terminal; UI at http://127.0.0.1:4200
    export PREFECT_API_URL=http://127.0.0.1:4200/api
    python -m deployments.setup_server                     # then: prefect deploy --all

Creates what is missing and sets what it owns (pool descriptions, the GPU slots) to the values
here; base job templates and everything else stay as they are, so running it again is harmless:
  - work pools cpu-pool, gpu-pool and dft-pool, all of type `process` (what each is for: --help epilog
    below, and deployments/README.md); gpu-pool runs at most --gpu-slots flow runs at once;
  - the global concurrency limit `gpu` with --gpu-slots slots (default 1) for training that holds a
    slot (`with concurrency("gpu")`), also outside the pool. An existing limit is set to --gpu-slots
    and made active;
  - the block types of tasks/blocks.py (e.g. "Potential Generation"), so the UI can show them before the
    first generation is published.
  - the automation "crash runs without heartbeats" (Prefect's "detect zombie flows"): a flow run that
    sent a heartbeat and then neither another one nor a final state within --heartbeat-grace seconds
    (default 600; flow runs send one every PREFECT_FLOWS_HEARTBEAT_FREQUENCY = 180 s) is set Crashed:
    its process is gone (killed, out of memory, a lost node), and the UI stops showing it Running.

Exit codes: 0 done, 1 the server cannot be reached or a pool of that name has another type, 2 usage.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import sys
from dataclasses import dataclass

WORK_POOLS = {
    "cpu-pool": "Campaign flow, exploration (MD), selection, ingest/export, validation: ordinary CPU jobs.",
    "gpu-pool": "Training (Pacemaker, MACE). prefect.yaml gives its jobs CUDA_VISIBLE_DEVICES; the pool "
                "runs as many at once as there are GPU slots (the 'gpu' concurrency limit has as many).",
    "dft-pool": "Labelling with an ASE calculator (EMT, GPAW, ...): long, crash-prone jobs, "
                "one worker process per structure; put its workers where the DFT code runs.",
}
WORK_POOL_TYPE = "process"
GPU_LIMIT = "gpu"
ZOMBIE_AUTOMATION = "crash runs without heartbeats"
HEARTBEAT_GRACE_S = 600


class SetupError(RuntimeError):
    """The server is unreachable or holds something we must not overwrite."""


@dataclass(frozen=True)
class Change:
    kind: str  # "work pool", "concurrency limit", "block type", "automation"
    name: str
    action: str  # "created", "updated", "unchanged", "registered"

    def __str__(self) -> str:
        return f"{self.kind} {self.name}: {self.action}"


async def setup_server(client, gpu_slots: int = 1, heartbeat_grace_s: float = HEARTBEAT_GRACE_S) -> list[Change]:
    """Idempotently create the pools, the `gpu` limit, the block types and the automation that crashes
    runs whose heartbeats stopped on `client`'s server."""
    error = await client.api_healthcheck()
    if error is not None:
        raise SetupError(f"Prefect API at {client.api_url} is not reachable: {error}")
    changes = [await _ensure_work_pool(client, name, description,
                                       concurrency_limit=gpu_slots if name == "gpu-pool" else None)
               for name, description in WORK_POOLS.items()]
    changes.append(await _ensure_gpu_limit(client, gpu_slots))
    changes.extend(await _register_block_types(client))
    changes.append(await _ensure_automation(client, zombie_automation(heartbeat_grace_s)))
    return changes


def zombie_automation(grace_s: float = HEARTBEAT_GRACE_S, name: str = ZOMBIE_AUTOMATION, tag: str | None = None):
    """Prefect's automation for flow runs whose heartbeats stopped (docs: "detect zombie flows"): after a
    heartbeat, expect another heartbeat or a final state within `grace_s`, else set the run Crashed.
    `tag`: only flow runs with this tag (a test's own automation; the server's covers every run)."""
    from datetime import timedelta

    from prefect.automations import AutomationCore
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    return AutomationCore(
        name=name, description="Sets a flow run Crashed when its heartbeats stop (its process is gone); "
                               "created by python -m deployments.setup_server",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", "prefect.flow-run.Completed", "prefect.flow-run.Failed",
                    "prefect.flow-run.Cancelled", "prefect.flow-run.Crashed"},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            match_related=ResourceSpecification({"prefect.resource.id": f"prefect.tag.{tag}"}) if tag else
            ResourceSpecification({}),
            for_each={"prefect.resource.id"}, posture=Posture.Proactive, threshold=1,
            within=timedelta(seconds=grace_s)),
        actions=[ChangeFlowRunState(state=StateType.CRASHED,
                                    message=f"no heartbeat for {grace_s:g} s: the flow run's process is gone "
                                            "(automation " + repr(name) + ")")])


async def _ensure_automation(client, automation) -> Change:
    """Create `automation`, or set the one of that name to it (only when it differs)."""
    existing = await client.read_automations_by_name(automation.name)
    if not existing:
        await client.create_automation(automation)
        return Change("automation", automation.name, "created")
    def settings(item) -> dict:  # without the ids the server gives the trigger
        return item.model_dump(mode="json", include={"trigger", "actions", "description", "enabled"},
                               exclude={"trigger": {"id"}})

    if settings(existing[0]) == settings(automation):
        return Change("automation", automation.name, "unchanged")
    await client.update_automation(existing[0].id, automation)
    return Change("automation", automation.name, "updated")


async def _ensure_work_pool(client, name: str, description: str, concurrency_limit: int | None) -> Change:
    """`concurrency_limit` None: whatever the pool has (unlimited when created) stays."""
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectNotFound
    from prefect.workers.process import ProcessWorker

    try:
        existing = await client.read_work_pool(name)
    except ObjectNotFound:
        await client.create_work_pool(WorkPoolCreate(
            name=name, type=WORK_POOL_TYPE, description=description, concurrency_limit=concurrency_limit,
            base_job_template=ProcessWorker.get_default_base_job_template()))
        return Change("work pool", name, "created")
    if existing.type != WORK_POOL_TYPE:
        raise SetupError(f"work pool {name!r} exists with type {existing.type!r}, not {WORK_POOL_TYPE!r}; "
                         f"delete it (prefect work-pool delete {name}) or point prefect.yaml at another pool")
    update = {}
    if existing.description != description:
        update["description"] = description
    if concurrency_limit is not None and existing.concurrency_limit != concurrency_limit:
        update["concurrency_limit"] = concurrency_limit
    if not update:
        return Change("work pool", name, "unchanged")
    # Never the base job template: one edited in the UI stays as the operator left it.
    await client.update_work_pool(name, WorkPoolUpdate(**update))
    return Change("work pool", name, f"updated ({', '.join(update)})")


async def _ensure_gpu_limit(client, slots: int) -> Change:
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
    from prefect.exceptions import ObjectNotFound

    try:
        existing = await client.read_global_concurrency_limit_by_name(GPU_LIMIT)
    except ObjectNotFound:
        await client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name=GPU_LIMIT, limit=slots, active=True))
        return Change("concurrency limit", GPU_LIMIT, f"created ({slots} slot{'s' * (slots != 1)})")
    if existing.limit == slots and existing.active:
        return Change("concurrency limit", GPU_LIMIT, "unchanged")
    await client.update_global_concurrency_limit(
        GPU_LIMIT, GlobalConcurrencyLimitUpdate(limit=slots, active=True))
    return Change("concurrency limit", GPU_LIMIT, f"updated ({slots} slot{'s' * (slots != 1)}, active)")


def block_types() -> list[type]:
    """Every Block subclass defined in tasks/blocks.py."""
    from prefect.blocks.core import Block

    from tasks import blocks

    return [obj for _, obj in inspect.getmembers(blocks, inspect.isclass)
            if issubclass(obj, Block) and obj is not Block and obj.__module__ == blocks.__name__]


async def _register_block_types(client) -> list[Change]:
    changes = []
    for block in block_types():
        await block.aregister_type_and_schema(client=client)  # idempotent in Prefect itself
        changes.append(Change("block type", block.get_block_type_slug(), "registered"))
    return changes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deployments.setup_server", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="work pools:\n" + "\n".join(f"  {name}: {text}" for name, text in WORK_POOLS.items()))
    parser.add_argument("--api-url", help="the server's API, e.g. http://127.0.0.1:4200/api "
                                          "(default: PREFECT_API_URL from the environment or profile)")
    parser.add_argument("--gpu-slots", type=int, default=1,
                        help="GPUs: concurrent runs of gpu-pool and slots of the 'gpu' limit (default: 1)")
    parser.add_argument("--heartbeat-grace", type=float, default=HEARTBEAT_GRACE_S, metavar="SECONDS",
                        help="a flow run with no heartbeat for this long is set Crashed (default: "
                             f"{HEARTBEAT_GRACE_S}; flow runs send one every PREFECT_FLOWS_HEARTBEAT_FREQUENCY s)")
    args = parser.parse_args(argv)
    if args.gpu_slots < 1:
        parser.error("--gpu-slots must be >= 1")
    if args.heartbeat_grace < 60:
        parser.error("--heartbeat-grace must be >= 60 s (flow runs send a heartbeat every 30 s at most)")

    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    updates = {PREFECT_API_URL: args.api_url} if args.api_url else {}
    with temporary_settings(updates=updates):
        api_url = PREFECT_API_URL.value()
        if not api_url:
            # Without a URL the client would start a throw-away ephemeral server: nothing would persist
            # where the workers look.
            parser.error("no Prefect server given: start one with `prefect server start`, then export "
                         "PREFECT_API_URL=http://127.0.0.1:4200/api or pass --api-url")

        async def run() -> list[Change]:
            async with get_client() as client:
                return await setup_server(client, gpu_slots=args.gpu_slots, heartbeat_grace_s=args.heartbeat_grace)

        try:
            changes = asyncio.run(run())
        except SetupError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    print(f"Prefect server {api_url}:")
    for change in changes:
        print(f"  {change}")
    print("next: prefect deploy --all, then prefect worker start --pool cpu-pool (and gpu-pool, dft-pool)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
