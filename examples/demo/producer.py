"""Keeps sending the demo's workflows, one round every DEMO_INTERVAL seconds (default 3):
a chain, a group, a chord (with a result backend), a failing task, a retrying task and a task that sends tasks.

    python producer.py            # forever
    python producer.py --rounds 1 # one round, then exit
"""

import argparse
import itertools
import os
import sys
import time

from celery import chain, chord, group

from demo import add, app, charge, fan_out, fetch, mul, xsum


def one_round(n):
    chain(add.s(n, 1), mul.s(2), add.s(10)).apply_async()
    group(add.s(i, n) for i in range(4)).apply_async()
    if app.conf.result_backend:
        chord((mul.s(i, n) for i in range(3)), xsum.s()).apply_async()
    charge.delay(order_id=1000 + n)
    fetch.delay(f'https://example.com/items/{n}')
    fan_out.delay(3)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--rounds', type=int, default=0, help='stop after N rounds (0: forever)')
    opts = parser.parse_args(argv)
    interval = float(os.environ.get('DEMO_INTERVAL', '3'))
    rounds = itertools.count(1) if opts.rounds == 0 else range(1, opts.rounds + 1)
    for n in rounds:
        one_round(n)
        print(f'producer: round {n} sent to {app.connection().as_uri()}', flush=True)
        if opts.rounds == 0 or n < opts.rounds:
            time.sleep(interval)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
