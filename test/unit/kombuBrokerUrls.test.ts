// Broker URLs kombu accepts beyond one plain URL: sentinel:// lists (kombu/transport/redis.py
// SentinelChannel), redis+socket:// (Channel._connparams, scheme `socket`), and `;`-separated
// failover alternates (kombu/connection.py Connection.__init__), and the ioredis options the
// bridge makes of them.
import { describe, expect, it } from 'vitest';
import { parseBrokerUrl } from '../../src/config/brokerUrl.js';
import { redisFanoutChannel, redisFanoutPrefixes } from '../../src/brokers/redis/redisChannels.js';
import { redisConnectionOptions } from '../../src/brokers/redis/redisConnectionOptions.js';
import { configError, runOptions } from '../support/configHelpers.js';

describe('sentinel:// broker URLs', () => {
  it('takes every sentinel of the list, and credentials and database from the first URL', () => {
    const options = runOptions(['--redis-sentinel-master', 'mymaster'], {
      CELERY_BROKER_URL: 'sentinel://:s3cret@h1:26380/3;sentinel://h2;sentinel://[::1]:26381',
    });
    expect(options.broker).toMatchObject({
      kind: 'redis',
      tls: false,
      db: 3,
      password: 's3cret',
      sentinel: {
        masterName: 'mymaster',
        sentinels: [
          { host: 'h1', port: 26380 },
          { host: 'h2', port: 26379 },
          { host: '::1', port: 26381 },
        ],
      },
    });
    expect(options.broker.sentinel?.password).toBeUndefined();
    expect(options.broker.redactedUrl).toBe(
      'sentinel://:***@h1:26380/3;sentinel://h2;sentinel://[::1]:26381',
    );
    // The database picks kombu's fanout prefix, as for redis://; kombu before 5.4 leaves `{db}`
    // unformatted on sentinel://, so that prefix is listened to as well.
    expect(options.redis.fanoutPrefix).toBe('/3.');
    expect(options.redis.unformattedFanoutPrefix).toBe('/{db}.');
    expect(
      redisFanoutPrefixes(options.redis).map((p) => redisFanoutChannel(p, 'celeryev')),
    ).toEqual(['/3.celeryev', '/{db}.celeryev']);
    const custom = runOptions(['--redis-sentinel-master', 'm', '--redis-fanout-prefix', 'x.'], {
      CELERY_BROKER_URL: 'sentinel://h1',
    });
    expect(custom.redis.unformattedFanoutPrefix).toBeUndefined();
    expect(runOptions([], { CELERY_BROKER_URL: 'redis://h/3' }).redis.unformattedFanoutPrefix).toBe(
      undefined,
    );
    expect(redisConnectionOptions(options.broker)).toMatchObject({
      sentinels: [
        { host: 'h1', port: 26380 },
        { host: 'h2', port: 26379 },
        { host: '::1', port: 26381 },
      ],
      name: 'mymaster',
      password: 's3cret',
      db: 3,
      failoverDetector: true,
    });
    expect(redisConnectionOptions(options.broker)).not.toHaveProperty('host');
  });

  it("reads the master's name and the sentinels' password from flags or variables", () => {
    const options = runOptions([], {
      CELERY_BROKER_URL: 'sentinel://h1:26379',
      CELERY_OTEL_BRIDGE_REDIS_SENTINEL_MASTER: 'cache',
      CELERY_OTEL_BRIDGE_REDIS_SENTINEL_PASSWORD: 'sentinel-pw',
    });
    expect(options.broker.sentinel).toEqual({
      sentinels: [{ host: 'h1', port: 26379 }],
      masterName: 'cache',
      password: 'sentinel-pw',
    });
    expect(redisConnectionOptions(options.broker)).toMatchObject({
      sentinelPassword: 'sentinel-pw',
    });
  });

  it('refuses a Sentinel URL without a master name, or with a path that is no database', () => {
    const missing = configError([], { CELERY_BROKER_URL: 'sentinel://:hunter2@h1:26379' });
    expect(missing).toContain('--redis-sentinel-master');
    expect(missing).toContain('master_name');
    expect(missing).not.toContain('hunter2');
    const path = configError(['--redis-sentinel-master', 'm'], {
      CELERY_BROKER_URL: 'sentinel://:hunter2@h1:26379/x;sentinel://h2',
    });
    expect(path).toContain('database number');
    expect(path).not.toContain('hunter2');
  });
});

describe('redis+socket:// broker URLs', () => {
  it('connects to the Unix socket, database from virtual_host', () => {
    const broker = parseBrokerUrl('redis+socket://:pw@/var/run/redis/redis.sock?virtual_host=2');
    expect(broker).toMatchObject({
      kind: 'redis',
      socketPath: '/var/run/redis/redis.sock',
      password: 'pw',
      db: 2,
    });
    expect(broker.redactedUrl).not.toContain('pw@');
    expect(redisConnectionOptions(broker)).toEqual({
      path: '/var/run/redis/redis.sock',
      username: undefined,
      password: 'pw',
      db: 2,
    });
    expect(parseBrokerUrl('redis+socket:///tmp/r.sock')).toMatchObject({
      socketPath: '/tmp/r.sock',
      db: 0,
    });
  });
});

describe('several brokers in one URL', () => {
  it('says the bridge reads one broker, without repeating a password', () => {
    for (const url of [
      'amqp://u:hunter2@h1//;amqp://u:hunter2@h2//',
      'redis://:hunter2@h1:6379/0;redis://h2:6379/0',
      'sentinel://h1:26379;redis://:hunter2@h2',
    ]) {
      const message = configError([], { CELERY_BROKER_URL: url });
      expect(message, url).toContain('lists several brokers');
      expect(message, url).toContain('Give the URL of one');
      expect(message, url).not.toContain('hunter2');
    }
  });
});
