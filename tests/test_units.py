"""The units of distributed work in the store (SQLite and PostgreSQL): one worker at a time
under a lease, a dead worker's unit taken over, what the sweep sends again, and how a
task's units decide its outcome."""

from __future__ import annotations

import time

import pytest

from dcs_migration.store import LogLevel, Store, TaskStatus
from dcs_migration.store.units import PLAN_INDEX, Lease, NewUnit, UnitKey, UnitState

PROJECT = "0605767e8b00d5e42f4ac00a6a0c0f30"
TASK = "migration_task"
SHORT = 0.3  # seconds: a lease that runs out within a test


def a_task(store: Store, project: str = PROJECT) -> str:
    port = 6379 if project == PROJECT else 6380
    instance = store.add_instance(project, "redis-a", f"127.0.0.1:{port}", None, "single")
    task = store.create_task(project, task_name="t", target_instance_id=instance.instance_id)
    return task.task_id


def planned(store: Store, task_id: str, inputs: int, project: str = PROJECT) -> list[UnitKey]:
    """The task's plan unit run (by worker "planner") and its input units made."""
    plan = store.open_units(TASK, task_id, project, PLAN_INDEX)
    lease = store.take_lease(plan, "planner-1", "planner", 60)
    assert lease is not None
    store.mark_started(task_id)
    units = [NewUnit(f"file-{n}.rdb", None, 100) for n in range(inputs)]
    keys = store.plan_units(TASK, task_id, project, units)
    assert store.end_unit(lease, UnitState.SUCCESS)
    return keys


def take(store: Store, key: UnitKey, owner: str, seconds: float = 60) -> Lease:
    lease = store.take_lease(key, owner, owner.split("-")[0], seconds)
    assert lease is not None, owner
    return lease


def test_a_unit_is_held_by_one_worker_at_a_time(store: Store) -> None:
    task_id = a_task(store)
    key = planned(store, task_id, 1)[0]
    first = take(store, key, "a-1")
    assert store.take_lease(key, "b-1", "b", 60) is None
    assert store.renew_lease(first, 60)
    assert store.unit_progress(first, {"bytes_read": 40, "keys_written": 4}, (4, 4))
    assert store.end_unit(first, UnitState.SUCCESS, counters={"bytes_read": 100})
    assert store.take_lease(key, "b-2", "b", 60) is None  # ended: nothing left to do
    (unit,) = store.units_of(TASK, task_id)
    assert (unit.state, unit.runs, unit.checkpoint_records) == (UnitState.SUCCESS, 1, 4)
    assert [r.outcome for r in store.runs_of(TASK, task_id) if r.unit_index == 0] == ["success"]


def test_a_dead_workers_unit_goes_to_another_and_the_first_can_write_nothing_more(
    store: Store,
) -> None:
    task_id = a_task(store)
    key = planned(store, task_id, 1)[0]
    dead = take(store, key, "a-1", SHORT)
    assert store.unit_progress(dead, {"keys_written": 7}, (7, 7))
    time.sleep(SHORT + 0.2)
    heir = take(store, key, "b-1")
    assert (heir.unit.runs, heir.unit.checkpoint_records) == (2, 7)  # from its checkpoint
    assert not store.renew_lease(dead, 60)
    assert not store.unit_progress(dead, {"keys_written": 9}, (9, 9))
    assert not store.end_unit(dead, UnitState.FAILED, error="late")
    assert store.end_unit(heir, UnitState.SUCCESS)
    runs = [r for r in store.runs_of(TASK, task_id) if r.unit_index == 0]
    assert [r.worker for r in runs] == ["a", "b"]
    assert runs[1].started_at >= runs[0].beat_at
    assert runs[0].ended_at is None  # it died: its run never ended


def test_the_sweep_sends_again_what_a_dead_worker_left_and_what_waited_too_long(
    store: Store,
) -> None:
    task_id = a_task(store)
    held, waiting = planned(store, task_id, 2)
    take(store, held, "a-1", SHORT)
    assert store.due_again(lease_seconds=60) == []  # the lease runs; the other was just sent
    time.sleep(SHORT + 0.2)
    assert store.due_again(lease_seconds=60) == [(held, 1)]
    assert store.due_again(lease_seconds=60) == []  # sent once: not again at once
    # A unit nobody took for REDISPATCH_LEASES leases: its message may be lost.
    assert (waiting, 1) in store.due_again(lease_seconds=SHORT / 4)
    store.request_stop(PROJECT, task_id)
    time.sleep(SHORT)
    assert store.due_again(lease_seconds=SHORT / 4) == []  # a stopped task's: left to settle


def test_a_task_succeeds_when_every_unit_does(store: Store) -> None:
    task_id = a_task(store)
    keys = planned(store, task_id, 2)
    leases = [take(store, key, f"w{n}-1") for n, key in enumerate(keys)]
    counters = {"bytes_total": 100, "bytes_read": 100, "keys_written": 10}
    assert store.end_unit(leases[0], UnitState.SUCCESS, counters=counters)
    assert store.settle_task(task_id) is None  # the other still runs
    logs = [(LogLevel.INFO, "file-1.rdb: import finished")]
    assert store.end_unit(leases[1], UnitState.SUCCESS, counters=counters, logs=logs)
    settled = store.settle_task(task_id)
    assert settled is not None and settled.status is TaskStatus.SUCCESS
    task = store.get_task(PROJECT, task_id)
    assert task is not None
    assert (task.status, task.keys_written, task.bytes_read) == (TaskStatus.SUCCESS, 20, 200)
    assert store.settle_task(task_id) is None  # decided once


def test_the_first_failure_fails_the_task_and_stops_its_siblings(store: Store) -> None:
    task_id = a_task(store)
    running, failing, waiting = planned(store, task_id, 3)
    sibling = take(store, running, "a-1")
    broken = take(store, failing, "b-1")
    assert store.end_unit(broken, UnitState.FAILED, error="file-1.rdb: bad CRC64 (offset 9)")
    assert store.is_stop_requested(task_id)  # what the sibling's worker looks at
    assert store.settle_task(task_id) is None  # the sibling still runs
    assert store.end_unit(sibling, UnitState.TERMINATED)
    settled = store.settle_task(task_id)
    assert settled is not None
    assert (settled.status, settled.error_message) == (
        TaskStatus.FAILED,
        "file-1.rdb: bad CRC64 (offset 9)",
    )
    states = {u.key: u.state for u in store.units_of(TASK, task_id)}
    assert states[waiting] is UnitState.TERMINATED  # never started: ended with the task


def test_a_resume_waits_again_for_what_had_not_finished_only(store: Store) -> None:
    task_id = a_task(store)
    done, stopped = planned(store, task_id, 2)
    assert store.end_unit(take(store, done, "a-1"), UnitState.SUCCESS)
    halfway = take(store, stopped, "b-1")
    store.request_stop(PROJECT, task_id)
    assert store.end_unit(halfway, UnitState.TERMINATED, checkpoint=(5, 5))
    assert store.settle_task(task_id) is not None
    assert store.requeue(PROJECT, task_id)
    store.open_units(TASK, task_id, PROJECT, PLAN_INDEX)
    again = store.plan_units(TASK, task_id, PROJECT, [NewUnit("other", None, 1)])
    assert again == [stopped]  # the plan made no new units; only the stopped one waits
    units = {u.key: u for u in store.units_of(TASK, task_id)}
    assert units[done].state is UnitState.SUCCESS
    assert (units[stopped].state, units[stopped].checkpoint_records) == (UnitState.PENDING, 5)


@pytest.mark.parametrize("kind", ["restore", "backup"])
def test_a_restore_or_a_backup_is_one_unit(store: Store, kind: str) -> None:
    key = store.open_units(kind, "a-work-id", PROJECT, 0)
    assert key == UnitKey(kind, "a-work-id", 0)
    lease = take(store, key, "a-1")
    assert store.end_unit(lease, UnitState.SUCCESS)
    assert store.dispatches_of(key) == 0
    assert store.mark_dispatched(key) == 1


def test_a_free_worker_goes_to_the_project_that_runs_the_fewest(store: Store) -> None:
    """Project A took the workers while it was alone; B's first unit is the next to run,
    before A's next, whatever order their messages came in."""
    other = "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0"
    a_running, a_next = planned(store, a_task(store), 2)
    take(store, a_running, "w1-1")
    b_task = a_task(store, other)
    b_plan = store.open_units(TASK, b_task, other, PLAN_INDEX)
    assert store.fairer_unit(a_next) == b_plan  # B's plan first: it makes B's units
    (b_first,) = planned(store, b_task, 1, other)
    assert store.fairer_unit(a_next) == b_first
    assert store.fairer_unit(b_first) == b_first
    b_lease = take(store, b_first, "w2-1")
    assert store.fairer_unit(a_next) == a_next  # one each: A started least recently
    assert store.end_unit(b_lease, UnitState.SUCCESS)
    (b_second,) = planned(store, a_task(store, other), 1, other)
    assert store.fairer_unit(a_next) == b_second  # B runs none now, A one
