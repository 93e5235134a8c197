'use strict';
// pubsub_fanout: a fanout exchange with three server-named exclusive queues bound to it
// (with different binding keys, which fanout ignores); every queue gets every message, once,
// in publish order.

const { check, connect, openChannel, runScenario, show, sleep, uniqueName, waitFor } = require('./_common');

const QUEUES = 3;
const MESSAGES = 10;

runScenario(async (url) => {
  const conn = await connect(url);
  const ch = await openChannel(conn);
  const exchange = uniqueName('pubsub_fanout');
  await ch.assertExchange(exchange, 'fanout', { durable: false, autoDelete: false });

  const queues = [];
  const got = {};
  for (let i = 0; i < QUEUES; i++) {
    const { queue } = await ch.assertQueue('', { exclusive: true });
    check(queue !== '', 'queue.declare-ok of a server-named queue has an empty name');
    check(!queues.includes(queue), `server-named queue ${queue} handed out twice`);
    queues.push(queue);
    got[queue] = [];
    await ch.bindQueue(queue, exchange, `ignored.${i}`);
    // msg is null when the broker cancels the consumer (the queue is deleted at the end)
    await ch.consume(queue, (msg) => msg && got[queue].push(msg.content.toString()), { noAck: true });
  }
  console.log(`server-named queues: ${show(queues)}`);

  const expected = [];
  for (let i = 1; i <= MESSAGES; i++) expected.push(`news ${i}`);
  expected.forEach((body, i) => ch.publish(exchange, `any.key.${i}`, Buffer.from(body)));
  await waitFor(() => queues.every((q) => got[q].length >= MESSAGES), 10000,
    () => `every queue to get ${MESSAGES} messages (got ${show(got)})`);
  await sleep(200); // any further delivery would be a duplicate
  for (const q of queues) {
    check(show(got[q]) === show(expected), `queue ${q} got ${show(got[q])}, expected ${show(expected)}`);
  }

  for (const q of queues) await ch.deleteQueue(q);
  await ch.deleteExchange(exchange);
  await conn.closeCleanly();
  console.log('ok');
});
