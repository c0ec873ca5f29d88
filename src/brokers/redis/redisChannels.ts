import type { RedisChannelOptions } from '../BrokerOptions.js';

type ChannelPrefixes = Pick<RedisChannelOptions, 'globalKeyPrefix' | 'fanoutPrefix'>;

/**
 * The channel prefixes to use: the configured one, and on `sentinel://` also kombu's unformatted
 * `/{db}.`. kombu's SentinelChannel overrides `_get_pool` and, before kombu 5.4.0 (commit
 * 4d281948, "Fanout exchange messages mixed across virtual databases in Redis sentinel"), never
 * formats `keyprefix_fanout`: Celery apps on kombu 5.2/5.3 publish events on `/{db}.celeryev/…`
 * and listen for remote control on `/{db}.celery.pidbox`, whatever their database.
 */
export function redisFanoutPrefixes(
  options: ChannelPrefixes & Pick<RedisChannelOptions, 'unformattedFanoutPrefix'>,
): ChannelPrefixes[] {
  const prefixes: ChannelPrefixes[] = [options];
  if (options.unformattedFanoutPrefix !== undefined) {
    prefixes.push({ ...options, fanoutPrefix: options.unformattedFanoutPrefix });
  }
  return prefixes;
}

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
