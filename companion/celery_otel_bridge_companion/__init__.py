"""Worker-side companion of celery-otel-bridge.

Celery's task events carry neither the W3C trace context a producer put in the task message
(``traceparent`` / ``tracestate`` headers, as opentelemetry-instrumentation-celery sends them) nor
the message's group and chord ids. This module makes the worker tell the bridge: for every task it
receives whose message carries any of them, it sends one extra task event, ``task-otel-context``.

Enable it with ONE line in the module that defines the Celery app (or any module the worker
imports at start)::

    import celery_otel_bridge_companion  # noqa: F401

(Equivalently, add ``'celery_otel_bridge_companion'`` to the app's ``imports`` setting.) Nothing
else changes: no new connection, no new exchange, no per-task broker round trip.

How it rides along (Celery 5.2):

* The handler is connected to the ``task_received`` signal, which the worker's MainProcess sends
  for each received task message, just before it sends ``task-received``
  (celery/worker/strategy.py ``task_message_handler``). This is the same process whatever the
  pool (prefork, solo, threads), so pool children never need it.
* It sends through the request's own event dispatcher (``Request.send_event`` ->
  ``consumer.event_dispatcher.send``, celery/worker/request.py), so it is sent only when the worker
  sends task events at all (``-E`` / ``worker_send_task_events``) and the task does
  (``Task.send_events``).
* The type starts with ``task-``: the dispatcher groups events by the part before the first dash
  (celery/events/event.py ``group_from``) and the worker buffers the ``task`` group
  (celery/worker/consumer/events.py ``buffer_group=['task']``), publishing the buffer as one
  ``task.multi`` message (celery/events/dispatcher.py ``send`` / ``flush``). So the context event
  sits in the same batch as the task's ``task-received``, right before it.

Wire format (JSON, fields absent when unknown; Celery adds ``hostname``, ``timestamp``,
``utcoffset``, ``pid``, ``clock``)::

    {"type": "task-otel-context", "uuid": "<task id>",
     "root_id": "...", "parent_id": "...",
     "traceparent": "00-<32 hex>-<16 hex>-<2 hex>", "tracestate": "k=v,...",
     "group": "<group id>", "group_index": 0, "group_size": 3,
     "chord": "<chord callback task id>"}

The bridge validates ``traceparent``; this module only passes strings of sane length through.
Nothing here ever raises into Celery: a failure is logged once and the task runs as usual.
"""

import logging

from celery import signals

__all__ = ['EVENT_TYPE', 'context_fields', 'install', 'uninstall']

EVENT_TYPE = 'task-otel-context'

# A version-00 traceparent is 55 characters; later versions may append fields. W3C asks
# propagators to keep at least 512 characters of tracestate and to drop, not cut, beyond.
_MAX_TRACEPARENT = 256
_MAX_TRACESTATE = 512
_MAX_ID = 256
_DISPATCH_UID = 'celery_otel_bridge_companion.task_received'

logger = logging.getLogger(__name__)
_warned = False


def _text(value, limit):
    if isinstance(value, bytes):
        try:
            value = value.decode('ascii')
        except UnicodeDecodeError:
            return None
    if isinstance(value, str) and 0 < len(value) <= limit:
        return value
    return None


def _count(value):
    # bool is an int in Python; a group index is never True/False.
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _header(request_dict, name):
    """A message header: top level with task protocol 2 (Request.request_dict is a copy of the
    message headers), or inside a nested ``headers`` mapping (protocol 1 bodies, or producers that
    set ``Task.request.headers``)."""
    value = request_dict.get(name)
    if value is None:
        nested = request_dict.get('headers')
        if isinstance(nested, dict):
            value = nested.get(name)
    return value


def context_fields(request):
    """The fields of the ``task-otel-context`` event for a worker Request, or {} when the message
    carries no trace context, group or chord."""
    request_dict = getattr(request, 'request_dict', None)
    if not isinstance(request_dict, dict):
        return {}
    fields = {}
    traceparent = _text(_header(request_dict, 'traceparent'), _MAX_TRACEPARENT)
    if traceparent is not None:
        fields['traceparent'] = traceparent
        tracestate = _text(_header(request_dict, 'tracestate'), _MAX_TRACESTATE)
        if tracestate is not None:
            fields['tracestate'] = tracestate
    # Request.group / group_index read the `group` / `group_index` message headers (set by
    # celery/app/amqp.py `as_task_v2` from group_id / group_index); Request.chord is the chord
    # callback signature embedded in the message body of every chord header task
    # (celery/canvas.py `chord.run` -> `_freeze_group_tasks(chord=body)`).
    group = _text(getattr(request, 'group', None), _MAX_ID)
    chord = getattr(request, 'chord', None)
    callback_id = None
    group_size = None
    if isinstance(chord, dict):
        options = chord.get('options')
        if isinstance(options, dict):
            callback_id = _text(options.get('task_id'), _MAX_ID)
        group_size = _count(chord.get('chord_size'))
    if group is not None:
        fields['group'] = group
        index = _count(getattr(request, 'group_index', None))
        if index is not None:
            fields['group_index'] = index
        if group_size is not None:
            fields['group_size'] = group_size
    if callback_id is not None:
        fields['chord'] = callback_id
    if not fields:
        return {}
    root_id = _text(getattr(request, 'root_id', None), _MAX_ID)
    parent_id = _text(getattr(request, 'parent_id', None), _MAX_ID)
    if root_id is not None:
        fields['root_id'] = root_id
    if parent_id is not None:
        fields['parent_id'] = parent_id
    return fields


def _on_task_received(sender=None, request=None, **_kwargs):
    global _warned
    try:
        if request is None:
            return
        fields = context_fields(request)
        if fields:
            # Request.send_event: only when the worker and the task send events; `uuid` is added.
            request.send_event(EVENT_TYPE, **fields)
    except Exception:  # never break task delivery over telemetry
        if not _warned:
            _warned = True
            logger.warning(
                'celery_otel_bridge_companion: could not send %s (further failures are not logged)',
                EVENT_TYPE,
                exc_info=True,
            )


def install():
    """Connects the handler; importing this module already did. Idempotent."""
    signals.task_received.connect(_on_task_received, weak=False, dispatch_uid=_DISPATCH_UID)


def uninstall():
    signals.task_received.disconnect(_on_task_received, dispatch_uid=_DISPATCH_UID)


install()

# The beat side (beat_init signal): schedule, heartbeat and runs, see beat.py. Same one line.
from . import beat as _beat  # noqa: E402

_beat.install()
