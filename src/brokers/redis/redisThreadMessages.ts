import type { RedisChannelOptions } from '../BrokerOptions.js';
import type { BrokerEndpoint } from '../BrokerOptions.js';
import type { LogFields } from '../../log/Logger.js';
import type { ReadBatch } from '../ReadBuffer.js';

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

/** Read thread -> bridge thread, after its ReadThreadStart. */
export type RedisThreadEvent =
  | ReadBatch
  | {
      readonly type: 'connection';
      readonly state: 'connected' | 'disconnected';
      readonly detail: string;
    }
  | { readonly type: 'log'; readonly msg: string; readonly fields: LogFields };
