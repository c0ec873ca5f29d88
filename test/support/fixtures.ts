import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { RawEventMessage } from '../../src/shared/RawEventMessage.js';

const dir = fileURLToPath(new URL('../fixtures/', import.meta.url));

interface AmqpLine {
  routing_key: string;
  content_type: string;
  body: string;
}

interface RedisLine {
  channel: string;
  payload: string;
}

function lines<T>(file: string): T[] {
  return readFileSync(dir + file, 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as T);
}

/** Any AMQP-format fixture file of test/fixtures, as the AMQP source hands messages on. */
export function amqpFixtureFile(file: string): RawEventMessage[] {
  return lines<AmqpLine>(file).map((line) => ({
    routingKey: line.routing_key,
    contentType: line.content_type,
    body: Buffer.from(line.body, 'utf8'),
  }));
}

/** The captured RabbitMQ stream, as the AMQP source hands messages to the decoder. */
export function amqpFixtureMessages(): RawEventMessage[] {
  return lines<AmqpLine>('amqp-celery-5.2.6.jsonl').map((line) => ({
    routingKey: line.routing_key,
    contentType: line.content_type,
    body: Buffer.from(line.body, 'utf8'),
  }));
}

/**
 * A RabbitMQ stream captured from a prefork worker running the companion (companion/): a chain, a
 * task that spawns tasks and a retried task sent with a `traceparent` header, a group, a chord,
 * and a task with a malformed traceparent.
 */
export function amqpCompanionFixtureMessages(): RawEventMessage[] {
  return lines<AmqpLine>('amqp-companion-celery-5.2.6.jsonl').map((line) => ({
    routingKey: line.routing_key,
    contentType: line.content_type,
    body: Buffer.from(line.body, 'utf8'),
  }));
}

/** The captured Redis stream: channel names and raw kombu envelopes. */
export function redisFixturePayloads(): { channel: string; payload: Buffer }[] {
  return lines<RedisLine>('redis-celery-5.2.6.jsonl').map((line) => ({
    channel: line.channel,
    payload: Buffer.from(line.payload, 'utf8'),
  }));
}

/**
 * A RabbitMQ stream captured from a real `celery beat` running the beat companion (app `fixture`,
 * time zone Europe/Berlin: entries `every-2s` proj.add, `failing` proj.fail, `nightly` crontab
 * 30 2 * * *) and the worker `w1@vm` running its tasks; in one case the worker's events arrive
 * before beat's `beat-run` for the same task.
 */
export function amqpBeatFixtureMessages(): RawEventMessage[] {
  return lines<AmqpLine>('amqp-beat-companion-celery-5.2.6.jsonl').map((line) => ({
    routingKey: line.routing_key,
    contentType: line.content_type,
    body: Buffer.from(line.body, 'utf8'),
  }));
}
