import { describe, expect, it } from 'vitest';
import { redisEventChannels, redisFanoutChannel } from '../../src/brokers/redis/redisChannels.js';

describe('Redis channel names', () => {
  it("follow kombu's {global_keyprefix}{fanout_prefix}{exchange}", () => {
    expect(redisFanoutChannel({ globalKeyPrefix: '', fanoutPrefix: '/0.' }, 'celeryev')).toBe(
      '/0.celeryev',
    );
    expect(
      redisEventChannels({ globalKeyPrefix: 'tenant:', fanoutPrefix: '' }, 'celeryev'),
    ).toEqual({ plain: 'tenant:celeryev', pattern: 'tenant:celeryev/*' });
  });

  it('escape glob characters of the prefixes in the PSUBSCRIBE pattern, not in the channel', () => {
    const { plain, pattern } = redisEventChannels(
      { globalKeyPrefix: 'a*b?[c]\\', fanoutPrefix: '/1.' },
      'ev',
    );
    expect(plain).toBe('a*b?[c]\\/1.ev');
    expect(pattern).toBe('a\\*b\\?\\[c\\]\\\\/1.ev/*');
  });
});
