import type { RedisChannelOptions } from '../BrokerOptions.js';
import type { BrokerEndpoint } from '../BrokerOptions.js';
import type { DecodeRejection } from '../../shared/DecodeRejection.js';
import type { LogFields } from '../../log/Logger.js';

/** What RedisEventSource hands its read thread at start (structured-cloned). */
export interface RedisReadThreadData {
  readonly broker: BrokerEndpoint;
  readonly exchange: string;
  readonly channels: RedisChannelOptions;
  readonly connectTimeoutMs: number;
  /** Most bytes of bodies in one batch handed to the bridge's thread. */
  readonly maxBatchBytes: number;
  /** One float64 the thread keeps up to date: bytes of bodies it holds (a gauge, read unlocked). */
  readonly bufferedBytes: SharedArrayBuffer;
}

/** Bridge thread -> read thread. */
export type RedisThreadRequest =
  /** The bridge's thread can take the next batch. */
  | { readonly type: 'pull' }
  /** Unsubscribe, hand over what was read, and exit. */
  | { readonly type: 'stop' };

/**
 * Messages read and unwrapped, in order: their bodies back to back in one transferred buffer,
 * `offsets[2i]`..`offsets[2i+1]` being message i's, and the envelope fields beside them.
 */
export interface RedisBatch {
  readonly type: 'batch';
  readonly bodies: ArrayBuffer;
  readonly offsets: Uint32Array;
  readonly routingKeys: string[];
  readonly contentTypes: string[];
  readonly contentEncodings: (string | undefined)[];
  readonly compressions: (string | undefined)[];
  /** Messages dropped since the last batch because the read buffer was full. */
  readonly dropped: number;
  /** The last batch after a stop: the thread exits next. */
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
  | { readonly type: 'rejected'; readonly rejection: DecodeRejection }
  | { readonly type: 'log'; readonly msg: string; readonly fields: LogFields };
