'use strict';
// topic_routing: a topic exchange with one server-named queue per binding key; a message is
// published for each routing key of a table, and each queue must get exactly the routing keys
// the table says (in publish order, once each even when several of its bindings match).
//
// Words are split on "."; "*" matches exactly one word and "#" zero or more words; an empty
// word (as in "a..c", "a." or ".") is a word like any other, and the empty routing key has no
// words at all (so "#" and the empty binding key match it, "*" does not).

const { check, connect, openChannel, runScenario, show, uniqueName, waitFor } = require('./_common');

const ROUTING_KEYS = ['a.b.c', 'a.x.c', 'a', 'a.b', 'a.b.c.d', 'a.c', 'a..c', '', 'b', 'x.b.y.z', 'c',
  'a.b.b.c', 'a.', '.', 'x.b'];

// [binding keys of one queue, the routing keys it must get, in publish order]
const TABLE = [
  [['a.b.c'], ['a.b.c']],
  [['a.*.c'], ['a.b.c', 'a.x.c', 'a..c']],
  [['a.#'], ['a.b.c', 'a.x.c', 'a', 'a.b', 'a.b.c.d', 'a.c', 'a..c', 'a.b.b.c', 'a.']],
  [['#'], ROUTING_KEYS],
  [['*'], ['a', 'b', 'c']],
  [['*.*'], ['a.b', 'a.c', 'a.', '.', 'x.b']],
  [['a.#.c'], ['a.b.c', 'a.x.c', 'a.c', 'a..c', 'a.b.b.c']],
  [['#.c'], ['a.b.c', 'a.x.c', 'a.c', 'a..c', 'c', 'a.b.b.c']],
  [['a..c'], ['a..c']],
  [[''], ['']],
  [['a.*'], ['a.b', 'a.c', 'a.']],
  [['*.b.#'], ['a.b.c', 'a.b', 'a.b.c.d', 'x.b.y.z', 'a.b.b.c', 'x.b']],
  [['a.*.#'], ['a.b.c', 'a.x.c', 'a.b', 'a.b.c.d', 'a.c', 'a..c', 'a.b.b.c', 'a.']],
  [['a.#', '#.c'], ['a.b.c', 'a.x.c', 'a', 'a.b', 'a.b.c.d', 'a.c', 'a..c', 'c', 'a.b.b.c', 'a.']],
];

const END = 'end.of.test'; // every queue is also bound with this key; published last

runScenario(async (url) => {
  const conn = await connect(url);
  const ch = await openChannel(conn);
  const exchange = uniqueName('topic_routing');
  await ch.assertExchange(exchange, 'topic', { durable: false, autoDelete: false });

  const queues = [];
  const got = {};
  for (const [keys] of TABLE) {
    const { queue } = await ch.assertQueue('', { exclusive: true });
    for (const key of [...keys, END]) await ch.bindQueue(queue, exchange, key);
    queues.push(queue);
    got[queue] = [];
    // msg is null when the broker cancels the consumer (the queue is deleted at the end)
    await ch.consume(queue, (msg) => msg && got[queue].push(msg.content.toString()), { noAck: true });
  }

  for (const key of [...ROUTING_KEYS, END]) ch.publish(exchange, key, Buffer.from(key));
  await waitFor(() => queues.every((q) => got[q].includes(END)), 10000,
    () => `the '${END}' message in every queue (got ${show(got)})`);

  const failures = [];
  TABLE.forEach(([keys, want], i) => {
    const have = got[queues[i]].slice(0, got[queues[i]].indexOf(END));
    if (show(have) !== show(want)) failures.push(`bound with ${show(keys)}: got ${show(have)}, expected ${show(want)}`);
    else console.log(`bound with ${show(keys)}: ${show(have)}`);
  });
  check(failures.length === 0, `wrong routing:\n  ${failures.join('\n  ')}`);

  for (const q of queues) await ch.deleteQueue(q);
  await ch.deleteExchange(exchange);
  await conn.closeCleanly();
  console.log('ok');
});
