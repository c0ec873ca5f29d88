import type { AmqpQueueOptions, BrokerEndpoint } from '../BrokerOptions.js';
import type { LogFields } from '../../log/Logger.js';
import type { ReadBatch } from '../ReadBuffer.js';

/** What AmqpEventSource hands its read thread at start (structured-cloned). */
export interface AmqpReadThreadData {
  readonly broker: BrokerEndpoint;
  readonly exchange: string;
  readonly queue: AmqpQueueOptions;
  readonly connectTimeoutMs: number;
  /** Most bytes of messages in one batch handed to the bridge's thread (but for a larger message). */
  readonly maxBatchBytes: number;
  /** How often the queue's depth is read and reported (`backlog`). */
  readonly backlogIntervalMs: number;
  /**
   * The number of the thread's first channel. Each channel the thread consumes on gets the next
   * number, and numbers are never reused across threads, so an acknowledgement meant for a
   * closed channel is never applied to another one's delivery tags.
   */
  readonly firstGeneration: number;
  /** One float64 the thread keeps up to date: bytes of deliveries it holds (a gauge, read unlocked). */
  readonly bufferedBytes: SharedArrayBuffer;
}

/** Bridge thread -> read thread. */
export type AmqpThreadRequest =
  /** The bridge's thread can take the next batch. */
  | { readonly type: 'pull' }
  /** Acknowledge every message up to `tag` (multiple=true), if channel `generation` is still open. */
  | { readonly type: 'ack'; readonly generation: number; readonly tag: number }
  /** Close the connection (unacknowledged messages go back to the queue) and exit. */
  | { readonly type: 'stop' };

/**
 * Deliveries as read, with their delivery tags (`tags`), from channel `generation`. Each message's
 * meta is its routing key and properties (amqpMessageMeta.ts).
 */
export type AmqpBatch = ReadBatch & { readonly generation: number };

/** Read thread -> bridge thread, after its ReadThreadStart. */
export type AmqpThreadEvent =
  | AmqpBatch
  | {
      readonly type: 'connection';
      readonly state: 'connected' | 'disconnected';
      readonly generation: number;
      readonly detail: string;
    }
  /** Messages ready in the queue (a passive declare). */
  | { readonly type: 'backlog'; readonly messages: number }
  | {
      readonly type: 'log';
      readonly level: 'warn' | 'debug';
      readonly msg: string;
      readonly fields: LogFields;
    };
