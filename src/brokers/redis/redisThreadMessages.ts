import type { RedisChannelOptions } from '../BrokerOptions.js';
import type { BrokerEndpoint } from '../BrokerOptions.js';
import type { LogFields } from '../../log/Logger.js';

/** What RedisEventSource hands its read thread at start (structured-cloned). */
export interface RedisReadThreadData {
  readonly broker: BrokerEndpoint;
  readonly exchange: string;
  readonly channels: RedisChannelOptions;
  readonly connectTimeoutMs: number;
  /** Most bytes of messages in one batch handed to the bridge's thread (but for a larger message). */
  readonly maxBatchBytes: number;
  /** One float64 the thread keeps up to date: bytes of messages it holds (a gauge, read unlocked). */
  readonly bufferedBytes: SharedArrayBuffer;
}

/** Bridge thread -> read thread. */
export type RedisThreadRequest =
  /** The bridge's thread can take the next batch. */
  | { readonly type: 'pull' }
  /** Unsubscribe, hand over what was read, and exit. */
  | { readonly type: 'stop' };

/**
 * Messages as read, in order, nothing decoded: one transferred buffer with each message's channel
 * name and payload (kombu's envelope) back to back; message i's channel is
 * `offsets[3i]`..`offsets[3i+1]` and its payload `offsets[3i+1]`..`offsets[3i+2]`.
 */
export interface RedisBatch {
  readonly type: 'batch';
  readonly bytes: ArrayBuffer;
  readonly offsets: Uint32Array;
  /** Messages dropped since the last batch because the read buffer was full. */
  readonly dropped: number;
  /** Sent after a stop: the thread exits once they are all sent. */
  readonly final: boolean;
}

/** Read thread -> bridge thread. */
export type RedisThreadEvent =
  | RedisBatch
  | { readonly type: 'started'; readonly detail: string }
  | { readonly type: 'failed'; readonly message: string }
  | {
      readonly type: 'connection';
      readonly state: 'connected' | 'disconnected';
      readonly detail: string;
    }
  | { readonly type: 'log'; readonly msg: string; readonly fields: LogFields };
