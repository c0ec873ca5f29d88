"""Send the tasks of one test scenario and print ONE line of JSON describing what was sent.

    /usr/bin/python3 test/celery/produce.py <scenario> [N] [--countdown S] [--traceparent TP]

Uses proj.py from this directory (Python puts the script's directory on sys.path), so the broker
and queue come from CELERY_BROKER_URL / CELERY_TEST_QUEUE (and CELERY_RESULT_BACKEND for chords).

Scenarios and the JSON they print (all ids are Celery task ids):
  add          {"add": id}                          add(1, 2)
  chain        {"chain": [id1, id2, id3]}           add(1, 1) | mul(2) | add(1), in chain order
  group        {"group": [id, id, id]}              add(i, i) for i in 0..2
  chord        {"chord": {"header": [id, id, id], "callback": id}}  needs CELERY_RESULT_BACKEND
  fail         {"fail": id}                         RuntimeError raised from a ValueError
  flaky        {"flaky": id}                        2 retries (same id), then succeeds
  spawn        {"spawn": id}                        spawns 2 adds; find them by parent_id in events
  revoked      {"revoked": id}                      sleepy() with a countdown, revoked before it runs
  rejected     {"rejected": id}                     reject_me(): Reject(requeue=False)
  adds [N]     {"adds": [id, ...]}                  N plain add tasks (default 3)
  slow         {"slow": id}                         slow(4): runs for 4 s
  progress     {"progress": id}                     progress(3): sends 3 task-progress events
  slow_late    {"slow_late": id}                    slow_late(8): acks_late, runs for 8 s
  terminated   {"terminated": id}                   slow(30) revoked with terminate=True once running
  all          every scenario above once, merged into one object
  --traceparent TP (with or without a scenario) also sends add(1, 2) with a `traceparent` message
               header and adds {"traceparent_task": id}. TP is passed through unvalidated so tests
               can send malformed values too.
  --trace-scenario  with --traceparent: the scenario's own messages carry the headers too, as an
               OpenTelemetry-instrumented producer's would (chain: its first step, which the
               client sends; group/chord: every header task and the chord callback). Only the
               add/chain/group/chord/fail/flaky/spawn/rejected scenarios.

Nothing here reads results (no `.get()`): without a result backend there are none.
"""

import argparse
import json
import sys
import time

# Extra apply_async options for the scenario's messages (--trace-scenario sets `headers`).
_OPTIONS = {}


def _log(msg):
    print(f'produce.py: {msg}', file=sys.stderr, flush=True)


def _chain(proj):
    from celery import chain

    last = chain(proj.add.s(1, 1), proj.mul.s(2), proj.add.s(1)).apply_async(**_OPTIONS)
    # chain.apply_async freezes every step up front and links the results through `.parent`
    # (celery/canvas.py `_chain.run` / `prepare_steps`), so all ids are known without a backend.
    ids = []
    node = last
    while node is not None:
        ids.append(node.id)
        node = node.parent
    ids.reverse()
    return {'chain': ids}


def _group(proj):
    from celery import group

    res = group(proj.add.s(i, i) for i in range(3)).apply_async(**_OPTIONS)
    return {'group': [r.id for r in res.results]}


def _chord(proj):
    from celery import chord

    if not proj.app.conf.result_backend:
        raise SystemExit(
            'produce.py: the chord scenario needs a result backend: set CELERY_RESULT_BACKEND '
            '(e.g. redis://127.0.0.1:6379/1) for BOTH the worker and produce.py'
        )
    callback = chord([proj.add.s(i, i) for i in range(3)], proj.xsum.s()).apply_async(**_OPTIONS)
    # celery/canvas.py `chord.run`: `bodyres.parent = header_result` (a GroupResult).
    header = [r.id for r in callback.parent.results]
    return {'chord': {'header': header, 'callback': callback.id}}


def _single(key, sig):
    return lambda proj: {key: sig(proj).apply_async(**_OPTIONS).id}


def _adds(proj, n):
    return {'adds': [proj.add.delay(i, i).id for i in range(n)]}


def _poll(what, check, timeout):
    """Call check() until it returns True or timeout seconds pass; True if it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    _log(f'gave up waiting for {what} after {timeout}s')
    return False


def _revoked(proj, countdown):
    res = proj.sleepy.apply_async((0.1,), countdown=countdown)

    # Wait until a worker holds the ETA task in its timer (`inspect scheduled`,
    # celery/worker/control.py `scheduled`) so the revoke hits a *received* task, which is the
    # interesting case. Revoking only adds the id to the worker's in-memory `revoked` set
    # (control.py `revoke`); the worker sends `task-revoked` when the ETA comes due and
    # Request.execute_using_pool -> Request.revoked() discards it. That is why the countdown is
    # short by default: with 60 s the event would come 60 s later. (Had the revoke arrived before
    # the message, strategy.py would discard it on receipt: task-revoked without task-received.)
    def scheduled():
        replies = proj.app.control.inspect(timeout=0.5).scheduled() or {}
        return any(
            entry.get('request', {}).get('id') == res.id
            for entries in replies.values()
            for entry in entries or []
        )

    _poll(f'a worker to schedule ETA task {res.id}', scheduled, timeout=10)
    proj.app.control.revoke(res.id)
    return {'revoked': res.id}


def _terminated(proj, seconds=30):
    res = proj.slow.apply_async((seconds,))

    # Request.terminate only kills the pool process if the task already started
    # (celery/worker/request.py `terminate`: `if self.time_start: ... else: self._terminate_on_ack`),
    # so wait until a worker reports it active (`inspect query_task` -> 'active').
    def active():
        replies = proj.app.control.inspect(timeout=0.5).query_task(res.id) or {}
        return any(
            (tasks.get(res.id) or [None])[0] == 'active' for tasks in replies.values() if tasks
        )

    started = _poll(f'slow task {res.id} to start', active, timeout=20)
    proj.app.control.revoke(res.id, terminate=True)
    if not started:
        raise SystemExit(
            f'produce.py: slow task {res.id} never started: is a prefork worker consuming queue '
            f'{proj.app.conf.task_default_queue!r} on {proj.app.conf.broker_url}?'
        )
    return {'terminated': res.id}


def _traceparent(proj, traceparent, tracestate):
    headers = {'traceparent': traceparent}
    if tracestate is not None:
        headers['tracestate'] = tracestate
    # Custom apply_async headers become AMQP/kombu message headers (celery/app/amqp.py
    # `send_task_message`: headers2.update(headers)); Celery events do NOT carry them.
    res = proj.add.apply_async((1, 2), headers=headers)
    return {'traceparent_task': res.id}


SIMPLE = {
    'add': _single('add', lambda p: p.add.s(1, 2)),
    'chain': _chain,
    'group': _group,
    'chord': _chord,
    'fail': _single('fail', lambda p: p.fail.s()),
    'flaky': _single('flaky', lambda p: p.flaky.s()),
    'spawn': _single('spawn', lambda p: p.spawn.s(2)),
    'rejected': _single('rejected', lambda p: p.reject_me.s()),
}
SCENARIOS = [*SIMPLE, 'adds', 'revoked', 'terminated', 'slow', 'slow_late', 'progress', 'all']


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('scenario', nargs='?', choices=SCENARIOS)
    parser.add_argument('n', nargs='?', type=int, help='number of tasks for `adds` (default 3)')
    parser.add_argument(
        '--countdown',
        type=float,
        default=5.0,
        help='seconds until the revoked ETA task would run; its task-revoked event is sent then',
    )
    parser.add_argument('--traceparent')
    parser.add_argument('--tracestate')
    parser.add_argument('--trace-scenario', action='store_true')
    opts = parser.parse_args(argv)
    if opts.scenario is None and opts.traceparent is None:
        parser.error('give a scenario and/or --traceparent')
    if opts.n is not None and opts.scenario != 'adds':
        parser.error('N is only for the `adds` scenario')
    if opts.trace_scenario:
        if opts.traceparent is None or opts.scenario not in SIMPLE:
            parser.error('--trace-scenario needs --traceparent and one of ' + ', '.join(SIMPLE))
        _OPTIONS['headers'] = {'traceparent': opts.traceparent}
        if opts.tracestate is not None:
            _OPTIONS['headers']['tracestate'] = opts.tracestate

    # Keep stdout for the single JSON line, whatever Celery/kombu might print.
    real_stdout = sys.stdout
    sys.stdout = sys.stderr
    import proj

    out = {}
    scenario = opts.scenario
    if scenario in SIMPLE:
        out.update(SIMPLE[scenario](proj))
    elif scenario == 'adds':
        out.update(_adds(proj, 3 if opts.n is None else opts.n))
    elif scenario == 'revoked':
        out.update(_revoked(proj, opts.countdown))
    elif scenario == 'terminated':
        out.update(_terminated(proj))
    elif scenario == 'slow':
        # slow(4): a task that is still running while a test restarts something around it.
        out.update({'slow': proj.slow.delay(4).id})
    elif scenario == 'progress':
        out.update({'progress': proj.progress.delay(3).id})
    elif scenario == 'slow_late':
        out.update({'slow_late': proj.slow_late.delay(8).id})
    elif scenario == 'all':
        for fn in SIMPLE.values():
            out.update(fn(proj))
        out.update(_adds(proj, 3))
        out.update(_revoked(proj, opts.countdown))
        # Last: it needs a free pool process, which the earlier tasks have released by now.
        out.update(_terminated(proj))
    if opts.traceparent is not None:
        out.update(_traceparent(proj, opts.traceparent, opts.tracestate))

    real_stdout.write(json.dumps(out) + '\n')
    real_stdout.flush()
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
