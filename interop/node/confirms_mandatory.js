'use strict';
// confirms_mandatory: publisher confirms with mandatory publishes. On a channel in confirm
// mode, messages are numbered from 1; every publish is acked (none nacked), including
// unroutable ones; a mandatory publish that no queue takes comes back as basic.return
// 312 NO_ROUTE *before* the basic.ack for its sequence number; routable messages reach the
// queue. Acks may use multiple=true; they are expanded and each number must be confirmed once.

const { check, connect, openChannel, runScenario, show, uniqueName, waitFor } = require('./_common');

runScenario(async (url) => {
  const conn = await connect(url);
  const ch = await openChannel(conn, { confirm: true });
  const { queue } = await ch.assertQueue('', { exclusive: true });
  const lonely = uniqueName('confirms_mandatory', 'unbound'); // a direct exchange with no bindings
  await ch.assertExchange(lonely, 'direct', { durable: false, autoDelete: false });
  const nowhere = uniqueName('confirms_mandatory', 'nowhere'); // no queue has this name

  // [sequence number, exchange, routing key, mandatory, routed?]
  const publishes = [
    [1, '', queue, false, true],
    [2, '', nowhere, true, false],
    [3, '', queue, false, true],
    [4, '', queue, true, true],
    [5, '', nowhere, false, false],
    [6, lonely, 'any', true, false],
  ];

  const confirmed = {}; // seq -> 'ack' / 'nack'
  const order = []; // ['return', seq] / ['confirm', seq] in arrival order
  ch.on('return', (msg) => {
    const f = msg.fields;
    check(f.replyCode === 312 && f.replyText === 'NO_ROUTE',
      `basic.return ${f.replyCode} ${show(f.replyText)}, expected 312 "NO_ROUTE"`);
    const seq = Number(msg.content.toString().split(' ')[1]);
    const [, exchange, key] = publishes[seq - 1];
    check(f.exchange === exchange && f.routingKey === key,
      `basic.return of msg ${seq} has exchange ${show(f.exchange)} routing key ${show(f.routingKey)}, ` +
      `expected ${show(exchange)} ${show(key)}`);
    order.push(['return', seq]);
  });
  const onConfirm = (kind) => (fields) => {
    const tag = Number(fields.deliveryTag);
    check(tag >= 1 && tag <= publishes.length, `basic.${kind} for unknown sequence number ${tag}`);
    const seqs = [];
    if (fields.multiple) {
      for (let s = 1; s <= tag; s++) if (!(s in confirmed)) seqs.push(s);
    } else {
      seqs.push(tag);
    }
    check(seqs.includes(tag) && !(tag in confirmed), `basic.${kind} ${tag} multiple=${fields.multiple}: already confirmed`);
    for (const s of seqs) {
      confirmed[s] = kind;
      order.push(['confirm', s]);
    }
  };
  ch.on('ack', onConfirm('ack'));
  ch.on('nack', onConfirm('nack'));

  for (const [seq, exchange, key, mandatory] of publishes) {
    ch.publish(exchange, key, Buffer.from(`msg ${seq}`), { mandatory });
  }
  await waitFor(() => Object.keys(confirmed).length === publishes.length, 10000,
    () => `confirms for all ${publishes.length} publishes (got ${show(confirmed)})`);
  console.log(`events: ${order.map(([k, s]) => `${k} ${s}`).join(', ')}`);
  check(Object.values(confirmed).every((k) => k === 'ack'), `expected only acks, got ${show(confirmed)}`);
  const returned = order.filter(([k]) => k === 'return').map(([, s]) => s);
  const wantReturned = publishes.filter(([, , , mandatory, routed]) => mandatory && !routed).map(([s]) => s);
  check(show(returned) === show(wantReturned), `basic.return for ${show(returned)}, expected for ${show(wantReturned)}`);
  const at = (k, s) => order.findIndex(([k2, s2]) => k2 === k && s2 === s);
  for (const s of returned) {
    check(at('return', s) < at('confirm', s), `the basic.ack of msg ${s} arrived before its basic.return (order: ${show(order)})`);
  }

  const bodies = [];
  for (;;) {
    const msg = await ch.get(queue, { noAck: true });
    if (msg === false) break;
    bodies.push(msg.content.toString());
  }
  const want = publishes.filter(([, , , , routed]) => routed).map(([s]) => `msg ${s}`);
  check(show(bodies) === show(want), `queue holds ${show(bodies)}, expected ${show(want)}`);

  await ch.deleteExchange(lonely);
  await ch.deleteQueue(queue);
  await conn.closeCleanly();
  console.log('ok');
});
