'use strict';
// nack_requeue_order: messages 1..5 are fetched with basic.get (no ack; get-ok's
// message_count counts down 4..0), then nacked with requeue=true one by one, message 3 first
// and the others in a scrambled order. They come back (to a consumer) in their original order
// 1..5, each with redelivered=true, and once acked the queue is empty.

const { check, connect, openChannel, runScenario, show, sleep, waitFor } = require('./_common');

const MESSAGES = 5;
const NACK_ORDER = [3, 5, 1, 4, 2];

runScenario(async (url) => {
  const conn = await connect(url);
  const ch = await openChannel(conn);
  const { queue } = await ch.assertQueue('', { exclusive: true });
  for (let i = 1; i <= MESSAGES; i++) ch.sendToQueue(queue, Buffer.from(`msg ${i}`));

  const msgs = {};
  for (let i = 1; i <= MESSAGES; i++) {
    const deadline = Date.now() + 5000;
    let msg = await ch.get(queue, { noAck: false });
    while (msg === false && Date.now() < deadline) {
      await sleep(50);
      msg = await ch.get(queue, { noAck: false });
    }
    check(msg !== false, `basic.get ${i} returned get-empty`);
    const text = msg.content.toString();
    check(text === `msg ${i}`, `basic.get ${i} returned '${text}', expected 'msg ${i}'`);
    check(!msg.fields.redelivered, `'${text}' has redelivered=true on first delivery`);
    check(msg.fields.messageCount === MESSAGES - i,
      `get-ok for '${text}' has message_count ${msg.fields.messageCount}, expected ${MESSAGES - i}`);
    msgs[i] = msg;
  }
  const tags = Object.values(msgs).map((m) => Number(m.fields.deliveryTag));
  check(tags.every((t, i) => i === 0 || tags[i - 1] < t), `delivery tags are not increasing: ${show(tags)}`);
  check((await ch.get(queue, { noAck: false })) === false, 'basic.get returned a sixth message');

  for (const i of NACK_ORDER) ch.nack(msgs[i], false, true);
  console.log(`nacked (requeue) in order ${show(NACK_ORDER)}`);

  const got = [];
  await ch.consume(queue, (msg) => {
    got.push([msg.content.toString(), msg.fields.redelivered]);
    ch.ack(msg);
  }, { noAck: false, consumerTag: 'redeliveries' });
  await waitFor(() => got.length >= MESSAGES, 10000, () => `${MESSAGES} redeliveries (got ${show(got)})`);
  await sleep(200);
  const want = [];
  for (let i = 1; i <= MESSAGES; i++) want.push([`msg ${i}`, true]);
  check(show(got) === show(want), `redeliveries [body, redelivered] ${show(got)}, expected ${show(want)}`);
  console.log(`redelivered in order: ${show(got.map(([b]) => b))}`);

  await ch.cancel('redeliveries');
  const info = await ch.checkQueue(queue);
  check(info.messageCount === 0, `queue still has ${info.messageCount} messages ready`);
  await ch.deleteQueue(queue);
  await conn.closeCleanly();
  console.log('ok');
});
