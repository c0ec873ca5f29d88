"""The test app (proj.py) with a beat schedule, for test/integration/beat.test.ts.

Run ``/usr/bin/python3 -m celery -A beatproj beat -s <temp dir>/schedule`` from this directory.

Environment (besides proj.py's):
  CELERY_BEAT_ENTRIES   JSON object ``{"<entry name>": {"task": "proj.add", "seconds": 2,
                        "args": [1, 2]}}`` or with ``"cron": {"minute": "*", ...}`` instead of
                        ``seconds``: the beat schedule (entries run on CELERY_TEST_QUEUE).
  CELERY_BEAT_APP_NAME  the app's main name, which the companion reports as ``app`` (default 'proj'),
                        so a test's beat is told apart from any other on the shared broker.
  CELERY_OTEL_COMPANION '1' loads the bridge's companion (proj.py), whose beat side then sends
                        beat-schedule / beat-heartbeat / beat-run events.
"""

import json
import os

from celery.schedules import crontab

from proj import app


def _schedule(spec):
    if 'cron' in spec:
        return crontab(**spec['cron'])
    return float(spec['seconds'])


app.conf.beat_schedule = {
    name: {'task': spec['task'], 'schedule': _schedule(spec), 'args': spec.get('args', [])}
    for name, spec in json.loads(os.environ.get('CELERY_BEAT_ENTRIES') or '{}').items()
}
app.conf.timezone = os.environ.get('CELERY_TIMEZONE') or 'UTC'
app.main = os.environ.get('CELERY_BEAT_APP_NAME') or app.main
