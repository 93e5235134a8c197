'use strict';
// single_active_consumer: a queue declared with x-single-active-consumer=true and two
// consumers on it (separate channels, registered one after the other). Only the first one
// registered receives messages while it is there; once it cancels, the second one takes over
// and receives the rest. Both count as consumers of the queue all along.

const { check, connect, openChannel, runScenario, show, sleep, uniqueName, waitFor } = require('./_common');

const BATCH = 10;

runScenario(async (url) => {
  const conn = await connect(url);
  const ch = await openChannel(conn);
  const queue = uniqueName('single_active_consumer');
  await ch.assertQueue(queue, {
    durable: false, exclusive: false, autoDelete: false, arguments: { 'x-single-active-consumer': true },
  });

  const got = { first: [], second: [] };
  const consumers = {};
  for (const name of ['first', 'second']) {
    const cch = await openChannel(conn);
    await cch.prefetch(5);
    const ok = await cch.consume(queue, (msg) => {
      if (!msg) return; // the broker cancelled the consumer (queue deleted at the end)
      got[name].push(msg.content.toString());
      cch.ack(msg);
    }, { noAck: false, consumerTag: `sac-${name}` });
    check(ok.consumerTag === `sac-${name}`, `basic.consume-ok tag ${show(ok.consumerTag)}, expected sac-${name}`);
    consumers[name] = cch;
  }
  const info = await ch.checkQueue(queue);
  check(info.consumerCount === 2, `queue.declare-ok consumer_count = ${info.consumerCount}, expected 2`);

  const publish = (from) => {
    const bodies = [];
    for (let i = from; i < from + BATCH; i++) bodies.push(`msg ${i}`);
    for (const body of bodies) ch.sendToQueue(queue, Buffer.from(body));
    return bodies;
  };
  const total = () => got.first.length + got.second.length;

  const batch1 = publish(1);
  await waitFor(() => total() >= BATCH, 10000, () => `${BATCH} deliveries (got ${show(got)})`);
  await sleep(200);
  check(show(got.first) === show(batch1) && got.second.length === 0,
    `with both consumers registered, got ${show(got)}; expected all of ${show(batch1)} for the first one only`);
  console.log(`while the first is active: first=${got.first.length}, second=${got.second.length}`);

  await consumers.first.cancel('sac-first');
  const batch2 = publish(BATCH + 1);
  await waitFor(() => total() >= 2 * BATCH, 10000, () => `${2 * BATCH} deliveries (got ${show(got)})`);
  await sleep(200);
  check(show(got.second) === show(batch2) && got.first.length === BATCH,
    `after the first consumer cancelled, got ${show(got)}; expected ${show(batch2)} for the second one`);
  console.log(`after the first cancelled: first=${got.first.length}, second=${got.second.length}`);

  await consumers.second.cancel('sac-second');
  for (const cch of Object.values(consumers)) await cch.close();
  const del = await ch.deleteQueue(queue);
  check(del.messageCount === 0, `queue.delete-ok message_count = ${del.messageCount}`);
  await conn.closeCleanly();
  console.log('ok');
});
