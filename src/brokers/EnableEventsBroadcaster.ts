import type { Logger } from '../log/Logger.js';
import { describeError } from '../shared/describeError.js';
import { type ControlPublisher, commandHeaders, enableEventsCommand } from './ControlPublisher.js';

export interface EnableEventsBroadcasterOptions {
  /** The broker as logs show it (credentials `***`). */
  readonly brokerUrl: string;
  readonly intervalMs: number;
}

/**
 * `--enable-events`: broadcasts Celery's `enable_events` remote control command now and every
 * `intervalMs`, as Flower does, so workers started without `-E` (and workers that start later)
 * switch their task events on. A worker that receives it adds the `task` group to its event
 * dispatcher (celery/worker/control.py `enable_events`) and logs "Events of group {task} enabled
 * by remote."
 *
 * The wire format is exactly what `app.control.enable_events()` sends (celery/app/control.py
 * `Control.broadcast` -> kombu/pidbox.py `Mailbox._broadcast` / `_publish`): body
 * `{"method": "enable_events", "arguments": {}, "destination": null, "pattern": null,
 * "matcher": null}` as JSON, no `ticket` / `reply_to` since no reply is wanted, published to the
 * fanout exchange `<control_exchange>.pidbox` (non-durable) with an empty routing key.
 *   - RabbitMQ: a message on that exchange (declared as Celery declares it, type fanout, not
 *     durable, not auto-delete); every worker's `<node>.celery.pidbox` queue is bound to it.
 *   - Redis: kombu turns a fanout exchange into pub/sub: PUBLISH on
 *     `{global_keyprefix}/{db}.<control_exchange>.pidbox` (no `/routing_key` suffix: the routing
 *     key is empty) of kombu's JSON envelope with the body base64-encoded.
 * Failures are logged and retried at the next interval; they never stop the bridge.
 */
export class EnableEventsBroadcaster {
  private timer: NodeJS.Timeout | undefined;
  private clock = 0;
  private broadcasts = 0;
  private failing = false;
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly publisher: ControlPublisher,
    private readonly options: EnableEventsBroadcasterOptions,
    private readonly logger: Logger,
  ) {}

  get exchange(): string {
    return this.publisher.exchange;
  }

  /** Broadcasts sent successfully so far. */
  get sent(): number {
    return this.broadcasts;
  }

  start(): void {
    this.stopped = false;
    this.tick();
    this.timer = setInterval(() => this.tick(), this.options.intervalMs).unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
    await this.publisher.close();
  }

  /** One broadcast; resolves true when the broker took it. Never rejects. */
  async broadcastOnce(): Promise<boolean> {
    const headers = commandHeaders(++this.clock, Date.now());
    try {
      const receivers = await this.publisher.publish(enableEventsCommand(), headers);
      this.broadcasts++;
      const fields = {
        exchange: this.exchange,
        broker: this.options.brokerUrl,
        receivers,
        nextInMs: this.options.intervalMs,
      };
      if (this.broadcasts === 1 || this.failing) {
        this.logger.info('broadcast enable_events to the Celery workers', fields);
      } else this.logger.debug('broadcast enable_events', fields);
      this.failing = false;
      return true;
    } catch (error) {
      if (!this.failing) {
        this.logger.warn('could not broadcast enable_events; retrying at the next interval', {
          exchange: this.exchange,
          broker: this.options.brokerUrl,
          error: describeError(error),
          retryInMs: this.options.intervalMs,
        });
      }
      this.failing = true;
      await this.publisher.close();
      return false;
    }
  }

  private tick(): void {
    if (this.running !== undefined || this.stopped) return;
    this.running = this.broadcastOnce().then(() => {
      this.running = undefined;
    });
  }
}
