"""A small Celery app whose tasks make interesting traces: chains, groups, a chord, a failure
with a chained traceback, a task that retries, and a task that sends tasks.

Events: the worker runs with `-E` (docker-compose.yml) and `worker_send_task_events` is on as well;
`task_send_sent_event` makes every client (the producer, and workers sending follow-up tasks)
publish `task-sent`, so the bridge sees how long each task waited in the queue.

Environment: CELERY_BROKER_URL (default amqp://guest:guest@localhost:5672//),
CELERY_RESULT_BACKEND (e.g. redis://localhost:6379/1; optional, only the chord needs it),
DEMO_QUEUE (default celery).
"""

import os
import random
import time

from celery import Celery

app = Celery('demo')
app.conf.update(
    broker_url=os.environ.get('CELERY_BROKER_URL', 'amqp://guest:guest@localhost:5672//'),
    # Only the chord needs a result backend; without one the producer skips it.
    result_backend=os.environ.get('CELERY_RESULT_BACKEND') or None,
    result_expires=600,
    # Tasks, and the tasks they send, go to this queue (Celery's default: `celery`).
    task_default_queue=os.environ.get('DEMO_QUEUE') or 'celery',
    task_send_sent_event=True,
    worker_send_task_events=True,
    event_serializer='json',
    task_serializer='json',
    result_serializer='json',
    accept_content=['json'],
)


class PaymentError(Exception):
    """Raised by `charge`, from a lower-level error, so the traceback shows a chained cause."""


@app.task
def add(x, y):
    time.sleep(random.uniform(0.01, 0.2))
    return x + y


@app.task
def mul(x, y):
    time.sleep(random.uniform(0.01, 0.2))
    return x * y


@app.task
def xsum(numbers):
    return sum(numbers)


def _gateway(order_id):
    raise ConnectionResetError(f'payment gateway reset the connection (order {order_id})')


@app.task
def charge(order_id):
    try:
        _gateway(order_id)
    except ConnectionResetError as exc:
        # `from exc`: "The above exception was the direct cause of ..." in the traceback.
        raise PaymentError(f'could not charge order {order_id}') from exc


@app.task(bind=True, max_retries=4)
def fetch(self, url):
    # Fails about half of the attempts; Celery retries with a short countdown.
    if random.random() < 0.5:
        raise self.retry(exc=TimeoutError(f'GET {url} timed out'), countdown=1)
    return f'fetched {url}'


@app.task
def fan_out(n):
    # Tasks sent from inside a task become its children in the trace.
    return [add.delay(i, i).id for i in range(n)]
