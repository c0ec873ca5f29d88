"""Writes test/fixtures/celery-beat-schedules-5.2.6.json: what Celery itself says about when
crontab and interval entries run next, for test/unit/nextRunAfter.test.ts.

Run: /usr/bin/python3 test/celery/beatScheduleFixture.py > test/fixtures/celery-beat-schedules-5.2.6.json

For every case it calls Celery's own functions with a fixed clock (``nowfun``):
``celery.schedules.crontab.remaining_estimate(last_run_at)`` / ``.is_due(last_run_at)`` and
``celery.schedules.schedule.remaining_estimate`` / ``.is_due``, in the app time zone given
(``app.conf.timezone``, which ``crontab.tz`` reads). ``next_run_at`` is ``now + remaining``, the
instant beat would run the entry. The schedule is serialised by the beat companion's own
``schedule_fields``, exactly what the bridge receives.
"""

import json
import os
import sys
from datetime import datetime, timedelta

import celery
import pytz
from celery import Celery
from celery.schedules import crontab, schedule

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'companion'))
from celery_otel_bridge_companion.beat import schedule_fields  # noqa: E402

ZONES = ['UTC', 'Europe/Berlin', 'America/New_York', 'Asia/Kolkata', 'Australia/Adelaide',
         'Pacific/Chatham']

CRONTABS = [
    dict(minute='*'),
    dict(minute='*/15'),
    dict(minute='0'),
    dict(minute='30', hour='2'),
    dict(minute='0', hour='9', day_of_week='mon-fri'),
    dict(minute='0', hour='0', day_of_month='1'),
    dict(minute='45', hour='23', day_of_week='sun'),
    dict(minute='*/7', hour='*/3'),
    dict(minute='5', hour='4', day_of_month='15', month_of_year='6'),
    dict(minute='0,30', hour='8-18', day_of_week='sat,sun'),
]

# Local wall-clock times of the previous run: inside an hour, on minute, hour and day boundaries,
# at the end of a week (Saturday 2026-03-14), a month and a year.
LAST_RUNS = [
    (2026, 3, 10, 10, 14, 59), (2026, 3, 10, 10, 15, 0), (2026, 3, 10, 10, 59, 30),
    (2026, 3, 10, 11, 0, 0), (2026, 3, 10, 23, 44, 0), (2026, 3, 10, 23, 59, 10),
    (2026, 3, 14, 23, 50, 0), (2026, 3, 31, 23, 59, 0), (2026, 12, 31, 23, 59, 59),
    (2026, 6, 15, 4, 5, 0), (2026, 3, 10, 0, 0, 0), (2026, 3, 10, 2, 30, 0),
]

INTERVALS = [1, 2.5, 10, 60, 3600, 86400]


def fixed_clock(now):
    return lambda: now


def main():
    cases = []
    for zone in ZONES:
        # A new app per zone: Celery caches app.timezone (a cached_property) at first use.
        app = Celery('fixture', set_as_current=False)
        app.conf.timezone = zone
        app.conf.enable_utc = True
        tz = pytz.timezone(zone)
        for wall in LAST_RUNS:
            last_run_at = tz.localize(datetime(*wall))
            # Beat asks right after the previous run (same local day): the ordinary case.
            now = last_run_at + timedelta(seconds=0.5)
            for spec in CRONTABS:
                entry = crontab(app=app, nowfun=fixed_clock(now), **spec)
                remaining = entry.remaining_estimate(last_run_at).total_seconds()
                due, next_check = entry.is_due(last_run_at)
                cases.append({
                    'function': 'celery.schedules.crontab.remaining_estimate',
                    'zone': zone, 'spec': spec, 'schedule': schedule_fields(entry),
                    'last_run_at': last_run_at.timestamp(), 'last_run_local': last_run_at.isoformat(),
                    'now': now.timestamp(), 'remaining': remaining,
                    'next_run_at': now.timestamp() + remaining,
                    'next_run_local': (now + timedelta(seconds=remaining)).astimezone(tz).isoformat(),
                    'is_due': bool(due), 'is_due_next_check': next_check,
                })
            for seconds in INTERVALS:
                entry = schedule(timedelta(seconds=seconds), app=app, nowfun=fixed_clock(now))
                remaining = entry.remaining_estimate(last_run_at).total_seconds()
                due, next_check = entry.is_due(last_run_at)
                cases.append({
                    'function': 'celery.schedules.schedule.remaining_estimate',
                    'zone': zone, 'spec': {'seconds': seconds}, 'schedule': schedule_fields(entry),
                    'last_run_at': last_run_at.timestamp(), 'now': now.timestamp(),
                    'remaining': remaining, 'next_run_at': now.timestamp() + remaining,
                    'is_due': bool(due), 'is_due_next_check': next_check,
                })
    # One case per line: reviewable diffs, no pretty-printed megabyte.
    sys.stdout.write('{"celery": %s, "generator": "test/celery/beatScheduleFixture.py", "cases": [\n'
                     % json.dumps(celery.__version__))
    sys.stdout.write(',\n'.join(json.dumps(case, separators=(',', ':')) for case in cases))
    sys.stdout.write('\n]}\n')


if __name__ == '__main__':
    main()
