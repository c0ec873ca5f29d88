"""Beat-side companion of celery-otel-bridge: the schedule, a heartbeat and every run beat sends.

Celery's events say nothing about periodic tasks: a task sent by beat looks like any other
``task-sent`` (when ``task_send_sent_event`` is on), with no entry name and no schedule, and a
beat that died sends nothing at all. Loaded in the beat process (the same one line as for the
worker: ``import celery_otel_bridge_companion`` in the module that defines the app), this module
sends three events through Celery's own event dispatcher:

* ``beat-schedule``: every entry, its task and its schedule as Celery expresses it (crontab with
  its expanded fields and time zone, interval in seconds, solar event and place), Celery's own
  estimate of its next run; at start, whenever the schedule changes, and every
  ``SCHEDULE_EVERY`` heartbeats so a bridge started later learns it.
* ``beat-heartbeat``: every ``heartbeat interval`` seconds (30 by default; app setting
  ``celery_otel_bridge_beat_heartbeat`` or environment variable
  ``CELERY_OTEL_BRIDGE_BEAT_HEARTBEAT``), with ``freq``, the seconds until the next one.
* ``beat-run``: each run beat sends, with the run's task id, the time it was due and Celery's
  estimate of the entry's next run; ``error`` when beat could not send it.

How it plugs in (Celery 5.2, celery/beat.py): ``beat_init`` is sent by ``Service.start`` with the
service as sender, once the scheduler exists and before its loop starts. The handler wraps two
methods of that scheduler instance: ``tick`` (one loop iteration; the heartbeat is sent from it,
so a heartbeat means the scheduling loop runs, and the returned sleep is shortened to the next
heartbeat when beat would sleep longer, as ``beat_max_loop_interval`` does) and ``apply_async``
(``Scheduler.tick`` -> ``reserve`` -> ``apply_entry`` -> ``apply_async(entry, advance=False)``, the
entry still holding the previous run's ``last_run_at``). Wrapping the instance, not the class,
works for every scheduler built on ``celery.beat.Scheduler`` that keeps these two methods:
PersistentScheduler, django-celery-beat's DatabaseScheduler, RedBeat's RedBeatScheduler.

Events go through ``app.events.Dispatcher`` on a connection of their own, group ``beat`` (routing
keys ``beat.schedule``, ``beat.heartbeat``, ``beat.run`` on the ``celeryev`` exchange). The
dispatcher's offline buffer is off: while the broker is down the events are dropped (beat cannot
send tasks then either) and the first failure is logged. Nothing here ever raises into beat.

Wire format (JSON; Celery adds ``hostname``, ``timestamp``, ``utcoffset``, ``pid``, ``clock``)::

    {"type": "beat-schedule", "app": "proj", "entries": [
        {"name": "nightly", "task": "proj.report", "next_run_at": 1764547200.0,
         "last_run_at": 1764460800.0, "queue": "reports",
         "schedule": {"type": "crontab", "cron": "0 2 * * *", "tz": "Europe/Berlin",
                      "minute": [0], "hour": [2], "day_of_week": [0, 1, 2, 3, 4, 5, 6],
                      "day_of_month": [1, ..., 31], "month_of_year": [1, ..., 12]}},
        {"name": "poll", "task": "proj.poll", "schedule": {"type": "interval", "seconds": 10.0}},
        {"name": "dawn", "task": "proj.lights",
         "schedule": {"type": "solar", "event": "dawn_civil", "lat": 48.1, "lon": 11.6}}],
     "truncated": false}
    {"type": "beat-heartbeat", "app": "proj", "freq": 30.0, "entries": 3}
    {"type": "beat-run", "app": "proj", "entry": "nightly", "task": "proj.report",
     "task_id": "<uuid>", "scheduled_at": 1764547200.0, "next_run_at": 1764633600.0}

Times are Unix seconds. ``scheduled_at`` is when Celery considered the run due (``now +
schedule.remaining_estimate(last_run_at)`` of the entry before it advanced), ``next_run_at`` the
same estimate for the advanced entry.
"""

import hashlib
import logging
import os
import time

from celery import signals

__all__ = ['MAX_ENTRIES', 'SCHEDULE_EVERY', 'entry_fields', 'install', 'schedule_fields',
           'uninstall', 'BeatReporter']

#: Entries sent in one ``beat-schedule`` at most (``truncated`` says when there were more).
MAX_ENTRIES = 10000
#: A full ``beat-schedule`` goes out at least once every this many heartbeats.
SCHEDULE_EVERY = 10
DEFAULT_HEARTBEAT = 30.0
_MAX_NAME = 256
_DISPATCH_UID = 'celery_otel_bridge_companion.beat_init'

logger = logging.getLogger(__name__)


def _text(value, limit=_MAX_NAME):
    return value if isinstance(value, str) and 0 < len(value) <= limit else None


def _epoch(schedule, value):
    """A datetime as Unix seconds; naive ones are in the schedule's time zone, as Celery reads them
    (celery/schedules.py ``BaseSchedule.maybe_make_aware``)."""
    if value is None:
        return None
    try:
        return schedule.maybe_make_aware(value).timestamp()
    except Exception:
        return None


def _tz_name(tz):
    for attribute in ('zone', 'key'):  # pytz, zoneinfo
        name = getattr(tz, attribute, None)
        if isinstance(name, str):
            return name
    return str(tz) if tz is not None else None


def schedule_fields(schedule):
    """A schedule object as the bridge reads it, or ``{'type': 'other'}``.

    Crontab fields are sent expanded (the sets ``celery.schedules.crontab`` parsed them into), so
    the bridge never re-parses cron syntax; its time zone is the one Celery evaluates it in
    (``crontab.tz``, the app's ``timezone``)."""
    from celery import schedules

    if isinstance(schedule, schedules.crontab):
        return {
            'type': 'crontab',
            'cron': ' '.join(str(part) for part in (
                schedule._orig_minute, schedule._orig_hour, schedule._orig_day_of_month,
                schedule._orig_month_of_year, schedule._orig_day_of_week)),
            'tz': _tz_name(schedule.tz),
            'minute': sorted(schedule.minute),
            'hour': sorted(schedule.hour),
            'day_of_week': sorted(schedule.day_of_week),
            'day_of_month': sorted(schedule.day_of_month),
            'month_of_year': sorted(schedule.month_of_year),
        }
    if isinstance(schedule, schedules.solar):
        return {'type': 'solar', 'event': schedule.event, 'lat': schedule.lat,
                'lon': schedule.lon}
    if isinstance(schedule, schedules.schedule):
        # crontab and solar subclass BaseSchedule, not schedule: this is the interval kind.
        return {'type': 'interval', 'seconds': schedule.run_every.total_seconds(),
                'relative': bool(schedule.relative)}
    return {'type': 'other', 'repr': repr(schedule)[:_MAX_NAME]}


def _next_run_at(schedule, last_run_at, now):
    try:
        return now + schedule.remaining_estimate(last_run_at).total_seconds()
    except Exception:  # a custom schedule without an estimate, solar without ephem...
        return None


def entry_fields(entry, now=None):
    """One schedule entry (celery.beat.ScheduleEntry or a subclass) for ``beat-schedule``."""
    now = time.time() if now is None else now
    schedule = entry.schedule
    fields = {'name': _text(entry.name), 'task': _text(entry.task),
              'schedule': schedule_fields(schedule)}
    last_run_at = _epoch(schedule, entry.last_run_at)
    if last_run_at is not None:
        fields['last_run_at'] = last_run_at
    next_run_at = _next_run_at(schedule, entry.last_run_at, now)
    if next_run_at is not None:
        fields['next_run_at'] = next_run_at
    options = entry.options if isinstance(entry.options, dict) else {}
    queue = options.get('queue')
    if _text(queue):
        fields['queue'] = queue
    return fields


def _heartbeat_interval(app):
    value = app.conf.get('celery_otel_bridge_beat_heartbeat') or os.environ.get(
        'CELERY_OTEL_BRIDGE_BEAT_HEARTBEAT')
    try:
        seconds = float(value) if value is not None else DEFAULT_HEARTBEAT
    except (TypeError, ValueError):
        seconds = DEFAULT_HEARTBEAT
    return seconds if seconds > 0 else DEFAULT_HEARTBEAT


class BeatReporter:
    """Wraps one scheduler's ``tick`` and ``apply_async`` and sends the beat events."""

    def __init__(self, scheduler, dispatcher=None, clock=time.time):
        self.scheduler = scheduler
        self.app = scheduler.app
        self.interval = _heartbeat_interval(self.app)
        self._dispatcher = dispatcher
        self._clock = clock
        self._next_heartbeat = 0.0
        self._heartbeats = 0
        self._signature = None
        self._warned = False
        self._tick = scheduler.tick
        self._apply_async = scheduler.apply_async
        scheduler.tick = self.tick
        scheduler.apply_async = self.apply_async

    # -- the wrapped methods --------------------------------------------------------------------
    def tick(self, *args, **kwargs):
        interval = self._tick(*args, **kwargs)
        now = self._clock()
        try:
            if now >= self._next_heartbeat:
                self._next_heartbeat = now + self.interval
                self._beat(now)
        except Exception:
            self._warn('heartbeat')
        until_heartbeat = max(self._next_heartbeat - now, 0.0)
        if interval is None or interval > until_heartbeat:
            return until_heartbeat
        return interval

    def apply_async(self, entry, *args, **kwargs):
        now = self._clock()
        error = None
        result = None
        try:
            result = self._apply_async(entry, *args, **kwargs)
            return result
        except Exception as exc:
            error = exc
            raise
        finally:
            try:
                self._send_run(entry, result, error, now, kwargs.get('advance', True))
            except Exception:
                self._warn('run')

    # -- events ---------------------------------------------------------------------------------
    def _send(self, type_, **fields):
        dispatcher = self._dispatcher
        if dispatcher is None:
            # Own connection; no offline buffer (it would grow without bound while the broker
            # is down). celery/events/dispatcher.py EventDispatcher.
            dispatcher = self._dispatcher = self.app.events.Dispatcher(
                connection=self.app.connection_for_write(), enabled=True,
                buffer_while_offline=False)
        fields['app'] = _text(self.app.main) or 'celery'
        dispatcher.send(type_, **fields)

    def _entries(self):
        return list(self.scheduler.schedule.values())

    def _beat(self, now):
        entries = self._entries()
        signature = hashlib.sha256(repr(sorted(
            (str(e.name), str(e.task), repr(e.schedule)) for e in entries)).encode()).hexdigest()
        if signature != self._signature or self._heartbeats % SCHEDULE_EVERY == 0:
            self._signature = signature
            self._send('beat-schedule', entries=[entry_fields(e, now) for e in
                                                 entries[:MAX_ENTRIES]],
                       truncated=len(entries) > MAX_ENTRIES)
        self._heartbeats += 1
        self._send('beat-heartbeat', freq=self.interval, entries=len(entries))

    def _send_run(self, entry, result, error, now, advance):
        schedule = entry.schedule
        # With advance=False (beat's own tick) `entry` still has the previous run's last_run_at:
        # the run was due at its estimate. The advanced entry is the one now in the schedule.
        scheduled_at = _next_run_at(schedule, entry.last_run_at, now) if not advance else now
        fields = {'entry': _text(entry.name), 'task': _text(entry.task)}
        if scheduled_at is not None:
            fields['scheduled_at'] = min(scheduled_at, now)
        try:
            current = self.scheduler.schedule.get(entry.name)
        except Exception:
            current = None
        if current is not None:
            next_run_at = _next_run_at(current.schedule, current.last_run_at, now)
            if next_run_at is not None:
                fields['next_run_at'] = next_run_at
        task_id = getattr(result, 'id', None)
        if _text(task_id):
            fields['task_id'] = task_id
        if error is not None:
            fields['error'] = repr(error)[:_MAX_NAME]
        self._send('beat-run', **fields)

    def _warn(self, what):
        if not self._warned:
            self._warned = True
            logger.warning('celery_otel_bridge_companion: could not send the beat %s event '
                           '(further failures are not logged)', what, exc_info=True)


def _on_beat_init(sender=None, **_kwargs):
    try:
        scheduler = sender.scheduler
        if getattr(scheduler, '_celery_otel_bridge_reporter', None) is None:
            scheduler._celery_otel_bridge_reporter = BeatReporter(scheduler)
    except Exception:
        logger.warning('celery_otel_bridge_companion: could not hook into celery beat; periodic '
                       'task events are not sent', exc_info=True)


def install():
    """Connects the ``beat_init`` handler; importing the package already did. Idempotent."""
    signals.beat_init.connect(_on_beat_init, weak=False, dispatch_uid=_DISPATCH_UID)


def uninstall():
    signals.beat_init.disconnect(_on_beat_init, dispatch_uid=_DISPATCH_UID)
