"""Unit tests of the companion's field extraction and its never-raise promise.

Run from companion/: /usr/bin/python3 -m unittest discover -s tests
(test/integration/companion.test.ts runs this first, then the real-worker tests.)
"""

import unittest

from celery import signals

import celery_otel_bridge_companion as companion

TP = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'


class FakeRequest:
    """The attributes of celery.worker.request.Request the companion reads."""

    def __init__(self, request_dict, group=None, group_index=None, chord=None,
                 root_id='r1', parent_id=None, send_event=None):
        self.request_dict = request_dict
        self.group = group
        self.group_index = group_index
        self.chord = chord
        self.root_id = root_id
        self.parent_id = parent_id
        self.sent = []
        self._send_event = send_event

    def send_event(self, type, **fields):
        if self._send_event is not None:
            return self._send_event(type, **fields)
        self.sent.append((type, fields))
        return None


class ContextFields(unittest.TestCase):
    def test_plain_task_has_no_fields(self):
        self.assertEqual(companion.context_fields(FakeRequest({'id': 'x', 'task': 't'})), {})

    def test_traceparent_and_tracestate_from_message_headers(self):
        fields = companion.context_fields(
            FakeRequest({'traceparent': TP, 'tracestate': 'a=b'}, root_id='r1'))
        self.assertEqual(fields, {'traceparent': TP, 'tracestate': 'a=b', 'root_id': 'r1'})

    def test_nested_headers_and_bytes(self):
        fields = companion.context_fields(
            FakeRequest({'headers': {'traceparent': TP.encode('ascii')}}, root_id=None))
        self.assertEqual(fields, {'traceparent': TP})

    def test_tracestate_alone_is_not_sent(self):
        self.assertEqual(companion.context_fields(FakeRequest({'tracestate': 'a=b'})), {})

    def test_odd_values_are_dropped(self):
        fields = companion.context_fields(FakeRequest(
            {'traceparent': 'x' * 1000, 'tracestate': 42},
            group=['not', 'a', 'string'], group_index=True, chord='not a dict'))
        self.assertEqual(fields, {})

    def test_group_and_chord(self):
        chord = {'task': 'proj.xsum', 'options': {'task_id': 'cb1'}, 'chord_size': 3}
        fields = companion.context_fields(
            FakeRequest({}, group='g1', group_index=2, chord=chord, root_id='h2'))
        self.assertEqual(fields, {'group': 'g1', 'group_index': 2, 'group_size': 3,
                                  'chord': 'cb1', 'root_id': 'h2'})

    def test_no_request_dict(self):
        request = FakeRequest(None)
        self.assertEqual(companion.context_fields(request), {})


class Handler(unittest.TestCase):
    def test_sends_one_event_through_the_request(self):
        request = FakeRequest({'traceparent': TP}, root_id='r1')
        signals.task_received.send(sender=None, request=request)
        self.assertEqual(request.sent,
                         [('task-otel-context', {'traceparent': TP, 'root_id': 'r1'})])

    def test_sends_nothing_for_a_plain_task(self):
        request = FakeRequest({'id': 'x'})
        signals.task_received.send(sender=None, request=request)
        self.assertEqual(request.sent, [])

    def test_never_raises_into_celery(self):
        def broken(type, **fields):
            raise RuntimeError('broker gone')

        request = FakeRequest({'traceparent': TP}, send_event=broken)
        with self.assertLogs('celery_otel_bridge_companion', level='WARNING'):
            # Signal.send would propagate the exception to the worker if the handler raised.
            signals.task_received.send(sender=None, request=request)

    def test_import_connects_once(self):
        companion.install()
        companion.install()
        request = FakeRequest({'traceparent': TP})
        signals.task_received.send(sender=None, request=request)
        self.assertEqual(len(request.sent), 1)


if __name__ == '__main__':
    unittest.main()
