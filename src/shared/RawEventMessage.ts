/**
 * One message as a broker delivered it, before decoding: the common currency between the
 * sources (RabbitMQ, Redis) and the decoder.
 */
export interface RawEventMessage {
  /** Celery's routing key: `task.multi`, `task.sent`, `worker.heartbeat`, ... */
  readonly routingKey: string;
  /** The message content type, e.g. `application/json` (Celery's `event_serializer`). */
  readonly contentType: string;
  /** kombu's content encoding, usually `utf-8`. */
  readonly contentEncoding?: string;
  /** kombu's `compression` header (e.g. `application/x-gzip`) when the producer compressed. */
  readonly compression?: string;
  readonly body: Buffer;
}
