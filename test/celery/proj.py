"""Celery app used by the integration tests (Celery 5.2.6 from Debian's python3-celery).

Run the worker with `/usr/bin/python3 -m celery -A proj worker -E ...` from this directory (see
test/support/celeryWorker.ts) and send tasks with produce.py.

Environment:
  CELERY_BROKER_URL      broker, e.g. amqp://guest:guest@127.0.0.1:5672// or redis://127.0.0.1:6379/0
  CELERY_TEST_QUEUE      queue the producer sends to and the worker consumes (task_default_queue), so
                         tests that share one broker never steal each other's tasks. Default 'celery'.
  CELERY_TASK_SEND_SENT_EVENT, CELERY_WORKER_SEND_TASK_EVENTS
                         '0' turns the producer's task-sent / the worker's task events off (default on).
  CELERY_BROKER_TRANSPORT_OPTIONS
                         optional JSON object for broker_transport_options, e.g.
                         {"global_keyprefix": "tenant-a:", "fanout_patterns": false}, to run the
                         Redis channel variants kombu can produce (kombu/transport/redis.py).
  CELERY_CONTROL_EXCHANGE
                         optional control_exchange (default 'celery'): the worker's remote control
                         mailbox is the fanout exchange '<name>.pidbox'.
  CELERY_RESULT_BACKEND  optional result backend, e.g. redis://127.0.0.1:6379/1. Only chords need
                         one: celery/canvas.py `chord.run` raises NotImplementedError("Starting chords
                         requires a result backend to be configured") with the DisabledBackend, and
                         the worker needs the same backend to count finished header tasks
                         (celery/backends/redis.py `on_chord_part_return`). Nothing else here reads
                         results (no `.get()` anywhere), so leave it unset when chords aren't used.
  CELERY_CANCEL_ON_CONNECTION_LOSS
                         '1' sets worker_cancel_long_running_tasks_on_connection_loss: on a lost broker
                         connection the worker kills its running acks_late tasks and sends
                         `task-cancelled` (celery/worker/consumer/consumer.py
                         `on_connection_error_after_connected` -> celery/worker/request.py `cancel`).
  CELERY_OTEL_COMPANION  '1' loads the bridge's worker companion (companion/ in this repo) the way a
                         user enables it: one `import celery_otel_bridge_companion` line.
"""

import json
import os
import time

from celery import Celery
from celery.exceptions import Reject

app = Celery('proj')

if os.environ.get('CELERY_OTEL_COMPANION') == '1':
    import sys

    # A user pip-installs companion/; the tests use the checkout.
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'companion'))
    import celery_otel_bridge_companion  # noqa: F401

_queue = os.environ.get('CELERY_TEST_QUEUE') or 'celery'


def _flag(name):
    # Both event switches default to on; tests set the variable to '0' to see Celery without them.
    return os.environ.get(name, '1') != '0'


app.conf.update(
    broker_url=os.environ.get('CELERY_BROKER_URL', 'amqp://guest:guest@127.0.0.1:5672//'),
    result_backend=os.environ.get('CELERY_RESULT_BACKEND') or None,
    # With a backend every task stores its result: expire them so test runs don't pile keys up.
    result_expires=3600,
    task_default_queue=_queue,
    # Producers publish `task-sent` (celery/app/amqp.py `send_task_message` -> evd.publish) ...
    task_send_sent_event=_flag('CELERY_TASK_SEND_SENT_EVENT'),
    # ... and workers publish task-received/started/succeeded/... even without `-E`. With '0' (and
    # no -E) the worker still sends worker-online/heartbeat/offline: celery/worker/consumer/
    # events.py enables the dispatcher with groups=['worker'] when heartbeats are on.
    worker_send_task_events=_flag('CELERY_WORKER_SEND_TASK_EVENTS'),
    event_serializer='json',
    task_serializer='json',
    result_serializer='json',
    accept_content=['json'],
    broker_transport_options=json.loads(os.environ.get('CELERY_BROKER_TRANSPORT_OPTIONS') or '{}'),
    # Remote control commands go to the fanout exchange '<control_exchange>.pidbox'. A test that
    # broadcasts (--enable-events) gives its worker its own, so no other test's worker obeys.
    control_exchange=os.environ.get('CELERY_CONTROL_EXCHANGE') or 'celery',
    worker_cancel_long_running_tasks_on_connection_loss=(
        os.environ.get('CELERY_CANCEL_ON_CONNECTION_LOSS') == '1'
    ),
)


@app.task
def add(x, y):
    return x + y


@app.task
def mul(x, y):
    return x * y


@app.task
def xsum(numbers):
    return sum(numbers)


def _inner(depth):
    # Several nested frames, so the traceback in `task-failed` has a real stack to parse.
    if depth <= 0:
        raise ValueError('boom: checksum mismatch in order 42')
    _inner(depth - 1)


@app.task
def fail(depth=3):
    try:
        _inner(depth)
    except ValueError as exc:
        # `from exc` makes Python print "The above exception was the direct cause of the following
        # exception:" between the two tracebacks (billiard's ExceptionInfo uses
        # traceback.format_exception, so the chain ends up in the event's `traceback` field).
        raise RuntimeError('payment step failed') from exc


@app.task(bind=True, max_retries=5)
def flaky(self, fail_times=2):
    if self.request.retries < fail_times:
        # Task.retry re-publishes the same task id with retries+1 and an ETA (celery/app/task.py
        # `retry` -> `signature_from_request` + apply_async); the worker then sends `task-retried`
        # for this run (celery/worker/request.py `on_retry`).
        raise self.retry(
            exc=ConnectionError(f'transient, try {self.request.retries}'),
            countdown=0.2,
        )
    return 'ok'


@app.task
def spawn(n=2):
    # Calls made inside a task get parent_id = this task's id and root_id = its root
    # (celery/app/task.py `apply_async` -> amqp.as_task_v2 fills them from the current request).
    return [add.delay(i, i).id for i in range(n)]


@app.task
def sleepy(seconds):
    time.sleep(seconds)
    return seconds


# acks_late matters: Request.reject() only sends `task-rejected` when the message has not been
# acknowledged yet (celery/worker/request.py `reject`: `if not self.acknowledged: ... send_event`).
# Without acks_late the message is acked in `on_accepted`, before the task body runs, and a
# raised Reject is then swallowed silently: no task-rejected, no task-failed, nothing.
# The path is: app/trace.py `except Reject` -> Info(REJECTED) -> fast_trace_task returns
# (1, ExceptionInfo, T) -> Request.on_success(failed) -> on_failure(return_ok=True) ->
# `isinstance(exc, Reject)` -> self.reject(requeue=exc.requeue).
@app.task(acks_late=True)
def reject_me():
    raise Reject('not for me', requeue=False)


@app.task(bind=True)
def progress(self, steps=3):
    # Custom task events from user code: Task.send_event publishes them at once through the app's
    # default dispatcher, with uuid = this task's id (celery/app/task.py `send_event`).
    for step in range(1, steps + 1):
        self.send_event('task-progress', current=step, total=steps, stage=f'step {step}')
        time.sleep(0.05)
    return steps


@app.task(acks_late=True)
def slow_late(seconds=8):
    # acks_late: the message is acknowledged only after the run, so a worker killed (or one that
    # cancels the run on a lost connection) leaves it to the broker, which delivers it again.
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.1)
    return seconds


@app.task
def slow(seconds=30):
    # Revoked with terminate=True while running: the prefork pool SIGTERMs the child and the
    # worker sends `task-revoked` with terminated=True (celery/worker/request.py `terminate` ->
    # `_announce_revoked('terminated', True, signum, False)`). Needs the prefork (or eventlet/gevent)
    # pool: the solo and threads pools can't terminate a running task.
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.1)
    return seconds
