"""Unit tests of the beat side of the companion, on Celery's own scheduler and schedule classes.

Run from companion/: /usr/bin/python3 -m unittest discover -s tests
(test/integration/beat.test.ts runs it against a real `celery beat`.)
"""

import unittest
from datetime import timedelta

from celery import Celery, signals
from celery.beat import Scheduler
from celery.schedules import crontab, schedule, solar

from celery_otel_bridge_companion import beat


class FakeDispatcher:
    def __init__(self, fail=False):
        self.sent = []
        self.fail = fail

    def send(self, type_, **fields):
        if self.fail:
            raise ConnectionError('broker down')
        self.sent.append((type_, fields))


class FakeResult:
    id = 'b7aeb572-0000-4000-8000-000000000001'


class RecordingScheduler(Scheduler):
    """celery.beat.Scheduler, its tick and heap untouched; only the broker send is replaced."""

    def __init__(self, *args, fail_send=False, **kwargs):
        self.fail_send = fail_send
        super().__init__(*args, **kwargs)

    def send_task(self, *args, **kwargs):
        if self.fail_send:
            raise ConnectionError('broker down')
        return FakeResult()

    @property
    def producer(self):
        return None


def make_app(**conf):
    app = Celery('beattest', set_as_current=False)
    app.conf.update(timezone='Europe/Berlin', celery_otel_bridge_beat_heartbeat=5, **conf)
    return app


class ScheduleFields(unittest.TestCase):
    def test_crontab_expanded_with_its_zone(self):
        app = make_app()
        fields = beat.schedule_fields(crontab(minute='*/15', hour='2', day_of_week='mon-fri', app=app))
        self.assertEqual(fields['type'], 'crontab')
        self.assertEqual(fields['cron'], '*/15 2 * * mon-fri')
        self.assertEqual(fields['tz'], 'Europe/Berlin')
        self.assertEqual(fields['minute'], [0, 15, 30, 45])
        self.assertEqual(fields['hour'], [2])
        self.assertEqual(fields['day_of_week'], [1, 2, 3, 4, 5])
        self.assertEqual(fields['day_of_month'], list(range(1, 32)))

    def test_interval_and_solar(self):
        self.assertEqual(beat.schedule_fields(schedule(timedelta(seconds=90))),
                         {'type': 'interval', 'seconds': 90.0, 'relative': False})
        self.assertEqual(beat.schedule_fields(solar('sunset', 48.1, 11.6)),
                         {'type': 'solar', 'event': 'sunset', 'lat': 48.1, 'lon': 11.6})


class Reporter(unittest.TestCase):
    def scheduler(self, **kwargs):
        app = make_app(beat_schedule={
            'poll': {'task': 'proj.poll', 'schedule': 1.0, 'options': {'queue': 'q1'}}})
        return RecordingScheduler(app, lazy=False, **kwargs)

    def test_heartbeat_schedule_and_run_from_the_scheduler_loop(self):
        clock = [1000.0]
        dispatcher = FakeDispatcher()
        scheduler = self.scheduler()
        beat.BeatReporter(scheduler, dispatcher=dispatcher, clock=lambda: clock[0])
        first = scheduler.tick()
        types = [t for t, _ in dispatcher.sent]
        self.assertEqual(types, ['beat-schedule', 'beat-heartbeat'])
        schedule_event = dispatcher.sent[0][1]
        self.assertEqual(schedule_event['app'], 'beattest')
        poll = [e for e in schedule_event['entries'] if e['name'] == 'poll'][0]
        self.assertEqual(poll['task'], 'proj.poll')
        self.assertEqual(poll['queue'], 'q1')
        self.assertEqual(poll['schedule'], {'type': 'interval', 'seconds': 1.0, 'relative': False})
        self.assertEqual(dispatcher.sent[1][1]['freq'], 5.0)
        # Beat never sleeps past the next heartbeat.
        self.assertLessEqual(first, 5.0)
        # Make the entry due, tick: Scheduler.tick -> apply_entry -> apply_async(advance=False).
        entry = scheduler.schedule['poll']
        scheduler.schedule['poll'] = entry._next_instance(entry.last_run_at - timedelta(seconds=5))
        scheduler._heap = None
        dispatcher.sent.clear()
        scheduler.tick()
        runs = [f for t, f in dispatcher.sent if t == 'beat-run']
        self.assertEqual(len(runs), 1)
        self.assertEqual(runs[0]['entry'], 'poll')
        self.assertEqual(runs[0]['task_id'], FakeResult.id)
        self.assertIn('scheduled_at', runs[0])
        self.assertIn('next_run_at', runs[0])

    def test_a_run_beat_could_not_send_is_reported_and_beat_still_sees_the_error(self):
        dispatcher = FakeDispatcher()
        scheduler = self.scheduler(fail_send=True)
        beat.BeatReporter(scheduler, dispatcher=dispatcher)
        entry = scheduler.schedule['poll']
        with self.assertRaises(Exception):
            scheduler.apply_async(entry, advance=False)
        run = [f for t, f in dispatcher.sent if t == 'beat-run'][0]
        self.assertNotIn('task_id', run)
        self.assertIn('broker down', run['error'])

    def test_never_raises_into_beat_when_events_cannot_be_sent(self):
        scheduler = self.scheduler()
        beat.BeatReporter(scheduler, dispatcher=FakeDispatcher(fail=True))
        with self.assertLogs('celery_otel_bridge_companion.beat', 'WARNING'):
            interval = scheduler.tick()
        self.assertIsNotNone(interval)
        entry = scheduler.schedule['poll']
        self.assertIs(type(scheduler.apply_async(entry, advance=False)), FakeResult)


class BeatInit(unittest.TestCase):
    def test_beat_init_hooks_the_service_scheduler_once(self):
        class Service:
            scheduler = Reporter().scheduler()

        signals.beat_init.send(sender=Service)
        signals.beat_init.send(sender=Service)
        reporter = Service.scheduler._celery_otel_bridge_reporter
        self.assertIsInstance(reporter, beat.BeatReporter)
        self.assertEqual(Service.scheduler.tick, reporter.tick)


if __name__ == '__main__':
    unittest.main()
