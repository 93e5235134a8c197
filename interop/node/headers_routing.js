'use strict';
// headers_routing: a headers exchange with one server-named queue per binding; messages with
// various header tables are published and each queue must get exactly the messages the table
// says (in publish order). Covers x-match all (also the default when x-match is absent) and
// any, an empty binding (all -> matches everything, any -> nothing), binding keys starting
// with "x-" (ignored in all/any), case-sensitive string values, integer values, and a message
// with no headers property at all.

const { check, connect, openChannel, runScenario, show, uniqueName, waitFor } = require('./_common');

// [name, headers property or null]; the body is the name
const MESSAGES = [
  ['m1', { format: 'pdf', type: 'report' }],
  ['m2', { format: 'pdf', type: 'log' }],
  ['m3', { format: 'zip', type: 'report' }],
  ['m4', { format: 'zip' }],
  ['m5', null],
  ['m6', { format: 'pdf', type: 'report', extra: 'yes' }],
  ['m7', { count: 5 }],
  ['m8', { count: 6, format: 'zip' }],
  ['m9', { type: 'report' }],
  ['m10', { format: 'PDF' }],
  ['m11', { 'x-tag': 'a' }],
];
const ALL = MESSAGES.map(([name]) => name);

// [binding arguments, the messages the queue must get]
const TABLE = [
  [{ 'x-match': 'all', format: 'pdf', type: 'report' }, ['m1', 'm6']],
  [{ 'x-match': 'any', format: 'pdf', type: 'report' }, ['m1', 'm2', 'm3', 'm6', 'm9']],
  [{ format: 'zip' }, ['m3', 'm4', 'm8']],
  [{ 'x-match': 'all', count: 5 }, ['m7']],
  [{ 'x-match': 'all' }, ALL],
  [{ 'x-match': 'any' }, []],
  [{ 'x-match': 'any', 'x-tag': 'a', format: 'zip' }, ['m3', 'm4', 'm8']],
];

const END = { 'x-match': 'all', end: 'yes' }; // every queue is also bound with this; published last

runScenario(async (url) => {
  const conn = await connect(url);
  const ch = await openChannel(conn);
  const exchange = uniqueName('headers_routing');
  await ch.assertExchange(exchange, 'headers', { durable: false, autoDelete: false });

  const queues = [];
  const got = {};
  for (const [args] of TABLE) {
    const { queue } = await ch.assertQueue('', { exclusive: true });
    await ch.bindQueue(queue, exchange, '', args);
    await ch.bindQueue(queue, exchange, '', END);
    queues.push(queue);
    got[queue] = [];
    // msg is null when the broker cancels the consumer (the queue is deleted at the end)
    await ch.consume(queue, (msg) => msg && got[queue].push(msg.content.toString()), { noAck: true });
  }

  for (const [name, headers] of [...MESSAGES, ['end', { end: 'yes' }]]) {
    ch.publish(exchange, 'ignored', Buffer.from(name), headers ? { headers } : {});
  }
  await waitFor(() => queues.every((q) => got[q].includes('end')), 10000,
    () => `the 'end' message in every queue (got ${show(got)})`);

  const failures = [];
  TABLE.forEach(([args, want], i) => {
    const have = got[queues[i]].slice(0, got[queues[i]].indexOf('end'));
    if (show(have) !== show(want)) failures.push(`bound with ${show(args)}: got ${show(have)}, expected ${show(want)}`);
    else console.log(`bound with ${show(args)}: ${show(have)}`);
  });
  check(failures.length === 0, `wrong routing (messages: ${show(MESSAGES)}):\n  ${failures.join('\n  ')}`);

  for (const q of queues) await ch.deleteQueue(q);
  await ch.deleteExchange(exchange);
  await conn.closeCleanly();
  console.log('ok');
});
