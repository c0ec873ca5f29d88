import amqp from 'amqplib';
import type { BrokerEndpoint } from '../BrokerOptions.js';
import type { QueueLengthReader } from '../QueueLengthReader.js';
import { connectAmqp } from './connectAmqp.js';

/**
 * RabbitMQ: a passive queue declare (`queue.declare` with passive=true) returns the ready-message
 * count without creating the queue. A missing queue closes the channel with 404, so each miss
 * costs a new channel. https://www.rabbitmq.com/amqp-0-9-1-reference#queue.declare.passive
 */
export class AmqpQueueLengthReader implements QueueLengthReader {
  private connection: amqp.ChannelModel | undefined;
  private channel: amqp.Channel | undefined;

  constructor(private readonly broker: BrokerEndpoint) {}

  async read(queues: readonly string[]): Promise<Map<string, number>> {
    const lengths = new Map<string, number>();
    for (const queue of queues) {
      const channel = await this.openChannel();
      try {
        const { messageCount } = await channel.checkQueue(queue);
        lengths.set(queue, messageCount);
      } catch {
        this.channel = undefined; // the broker closed it (404): open another for the next queue
      }
    }
    return lengths;
  }

  async close(): Promise<void> {
    const connection = this.connection;
    this.connection = undefined;
    this.channel = undefined;
    await connection?.close().catch(() => undefined);
  }

  private async openChannel(): Promise<amqp.Channel> {
    if (this.connection === undefined) {
      const { broker } = this;
      const connection = await connectAmqp(broker);
      connection.on('error', () => undefined);
      connection.on('close', () => {
        if (this.connection === connection) {
          this.connection = undefined;
          this.channel = undefined;
        }
      });
      this.connection = connection;
    }
    if (this.channel === undefined) {
      const channel = await this.connection.createChannel();
      channel.on('error', () => undefined);
      this.channel = channel;
    }
    return this.channel;
  }
}
