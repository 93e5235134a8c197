'use strict';
// work_queue: a named, non-durable queue shared by two workers with prefetch 1 and manual
// acks. 20 messages are each processed exactly once, no worker is ever given a second message
// while it still holds one, and so the slow worker gets few messages and the fast one the rest
// (fair dispatch).

const { check, connect, openChannel, runScenario, show, sleep, uniqueName, waitFor } = require('./_common');

const MESSAGES = 20;
const WORKERS = [['slow', 300], ['fast', 10]]; // [name, ms a message is held before its ack]

runScenario(async (url) => {
  const conn = await connect(url);
  const ch = await openChannel(conn);
  const queue = uniqueName('work_queue');
  const ok = await ch.assertQueue(queue, { durable: false, exclusive: false, autoDelete: false });
  check(ok.queue === queue, `queue.declare-ok names ${ok.queue}, expected ${queue}`);

  const got = {};
  const holding = {};
  const acked = [];
  const channels = {};
  for (const [name, delay] of WORKERS) {
    got[name] = [];
    holding[name] = 0;
    const wch = await openChannel(conn);
    await wch.prefetch(1);
    channels[name] = wch;
    await wch.consume(queue, (msg) => {
      const text = msg.content.toString();
      check(holding[name] === 0,
        `worker ${name} was given '${text}' while still holding an unacked message ` +
        `(prefetch 1 not honoured; it got ${show(got[name])} so far)`);
      check(!msg.fields.redelivered, `worker ${name}: '${text}' has redelivered=true`);
      holding[name] += 1;
      got[name].push(text);
      setTimeout(() => {
        holding[name] -= 1;
        acked.push(text);
        wch.ack(msg);
      }, delay);
    }, { noAck: false, consumerTag: `worker-${name}` });
  }

  const expected = [];
  for (let i = 1; i <= MESSAGES; i++) expected.push(`task ${i}`);
  for (const body of expected) ch.sendToQueue(queue, Buffer.from(body));
  await waitFor(() => acked.length >= MESSAGES, 15000,
    () => `${MESSAGES} acks (acked so far: ${acked.length}, deliveries: ${show(got)})`);
  await sleep(300); // any further delivery would be a duplicate

  const every = WORKERS.flatMap(([name]) => got[name]);
  const dupes = [...new Set(every.filter((m, i) => every.indexOf(m) !== i))];
  check(dupes.length === 0, `messages processed more than once: ${show(dupes)} (deliveries: ${show(got)})`);
  check(show([...every].sort()) === show([...expected].sort()),
    `processed ${show(every)}, expected each of ${show(expected)} once`);
  for (const [name] of WORKERS) {
    const order = got[name].map((m) => expected.indexOf(m));
    check(order.every((v, i) => i === 0 || order[i - 1] < v), `worker ${name} got messages out of order: ${show(got[name])}`);
  }
  console.log(`distribution: ${WORKERS.map(([name]) => `${name}=${got[name].length}`).join(', ')}`);
  check(got.slow.length >= 1, `the slow worker got nothing (deliveries: ${show(got)})`);
  check(got.slow.length <= 5,
    `the slow worker got ${got.slow.length} of ${MESSAGES} messages: dispatch is not fair ` +
    `(round-robin ignoring prefetch 1?); deliveries: ${show(got)}`);

  const info = await ch.checkQueue(queue);
  check(info.messageCount === 0, `queue still has ${info.messageCount} messages ready`);
  check(info.consumerCount === WORKERS.length,
    `queue.declare-ok consumer_count = ${info.consumerCount}, expected ${WORKERS.length}`);

  for (const [name, wch] of Object.entries(channels)) {
    await wch.cancel(`worker-${name}`);
    await wch.close();
  }
  const del = await ch.deleteQueue(queue);
  check(del.messageCount === 0, `queue.delete-ok message_count = ${del.messageCount}`);
  await conn.closeCleanly();
  console.log('ok');
});
