import type { RedisChannelOptions } from '../config/BridgeOptions.js';

type ChannelPrefixes = Pick<RedisChannelOptions, 'globalKeyPrefix' | 'fanoutPrefix'>;

/**
 * The pub/sub channel kombu publishes a fanout exchange's messages on without a routing key:
 * `{global_keyprefix}{fanout_prefix}{exchange}` (kombu/transport/redis.py `_get_publish_topic`,
 * `PrefixedRedisPubSub`).
 */
export function redisFanoutChannel(prefixes: ChannelPrefixes, exchange: string): string {
  return `${prefixes.globalKeyPrefix}${prefixes.fanoutPrefix}${exchange}`;
}

/**
 * What the bridge subscribes to for the event exchange: the channel without a routing key
 * (`fanout_patterns` off) and the PSUBSCRIBE pattern for `<channel>/<routing_key>`. Patterns are
 * globs: a prefix holding `*`, `?`, `[`, `]` or `\` is escaped so it matches literally.
 */
export function redisEventChannels(
  prefixes: ChannelPrefixes,
  exchange: string,
): { plain: string; pattern: string } {
  const plain = redisFanoutChannel(prefixes, exchange);
  return { plain, pattern: `${plain.replace(/[*?[\]\\]/g, '\\$&')}/*` };
}
