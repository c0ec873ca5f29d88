import amqp from 'amqplib';
import type { Logger } from '../../log/Logger.js';
import { describeError } from '../../shared/describeError.js';
import type { BrokerEndpoint } from '../BrokerOptions.js';
import type { ControlCommand, ControlPublisher } from '../ControlPublisher.js';
import { connectAmqp } from './connectAmqp.js';

/**
 * RabbitMQ: a persistent message on the fanout exchange `<control_exchange>.pidbox`, to which
 * every worker's `<node>.celery.pidbox` queue is bound (kombu/pidbox.py `Mailbox._publish`).
 */
export class AmqpControlPublisher implements ControlPublisher {
  private connection: amqp.ChannelModel | undefined;
  private channel: amqp.ConfirmChannel | undefined;

  constructor(
    private readonly broker: BrokerEndpoint,
    /** Celery's `control_exchange` (`celery`). */
    controlExchange: string,
    private readonly logger: Logger,
  ) {
    // kombu/pidbox.py `Mailbox.exchange_fmt`.
    this.exchange = `${controlExchange}.pidbox`;
  }

  readonly exchange: string;

  async publish(
    command: ControlCommand,
    headers: { clock: number; expires: number },
  ): Promise<undefined> {
    const channel = this.channel ?? (await this.open());
    const body = Buffer.from(JSON.stringify(command), 'utf8');
    await new Promise<void>((resolve, reject) => {
      channel.publish(
        this.exchange,
        '',
        body,
        {
          contentType: 'application/json',
          contentEncoding: 'utf-8',
          headers,
          deliveryMode: 2,
          priority: 0,
        },
        (error: unknown) => (error == null ? resolve() : reject(asError(error))),
      );
    });
    return undefined;
  }

  async close(): Promise<void> {
    const connection = this.connection;
    this.connection = undefined;
    this.channel = undefined;
    if (connection !== undefined) await connection.close().catch(() => undefined);
  }

  private async open(): Promise<amqp.ConfirmChannel> {
    const connection = await connectAmqp(this.broker);
    connection.on('error', (error: unknown) => {
      this.logger.debug('RabbitMQ connection error (enable_events)', {
        error: describeError(error),
      });
    });
    connection.on('close', () => {
      if (this.connection === connection) {
        this.connection = undefined;
        this.channel = undefined;
      }
    });
    this.connection = connection;
    try {
      const channel = await connection.createConfirmChannel();
      channel.on('error', () => undefined);
      channel.on('close', () => {
        if (this.channel === channel) this.channel = undefined;
      });
      // As kombu declares it (kombu/pidbox.py `Mailbox._get_exchange`): redeclaring with the same
      // arguments is a no-op, and publishing to a missing exchange would close the channel.
      await channel.assertExchange(this.exchange, 'fanout', { durable: false, autoDelete: false });
      this.channel = channel;
      return channel;
    } catch (error) {
      await this.close();
      throw error;
    }
  }
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}
