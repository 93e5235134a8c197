'use strict';
// dlx_retry_xdeath: the retry loop built from dead-lettering. A consumer of the work queue
// rejects (requeue=false) a message; the work queue dead-letters it to a "retry" direct
// exchange, which routes it (by its unchanged routing key) to a wait queue with a message TTL;
// when the TTL expires the wait queue dead-letters it back to the work queue through the
// default exchange. After RETRIES rounds the consumer acks it. Every delivery's x-death is
// checked: one entry per {queue, reason}, most recent first, `count` = number of rounds so far.
//
// RabbitMQ 3.10 writes x-death and x-first-death-{queue,reason,exchange}; 3.13+ and 4.x also
// write x-last-death-{queue,reason,exchange}, which Warren (targeting 4.x) may add: those are
// not checked here. Neither is the order of the keys inside an x-death entry.

const { check, connect, openChannel, runScenario, show, sleep, uniqueName, waitFor } = require('./_common');

const RETRIES = 3;
const WAIT_TTL_MS = 100;

runScenario(async (url) => {
  const conn = await connect(url);
  const ch = await openChannel(conn);
  const base = uniqueName('dlx_retry_xdeath');
  const work = `${base}.work`;
  const wait = `${base}.wait`;
  const retry = `${base}.retry`;

  await ch.assertExchange(retry, 'direct', { durable: false, autoDelete: false });
  await ch.assertQueue(wait, {
    exclusive: true,
    arguments: { 'x-message-ttl': WAIT_TTL_MS, 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': work },
  });
  await ch.bindQueue(wait, retry, work);
  await ch.assertQueue(work, { exclusive: true, arguments: { 'x-dead-letter-exchange': retry } });

  const deliveries = [];
  await ch.consume(work, (msg) => {
    if (!msg) return; // the broker cancelled the consumer (queue deleted at the end)
    check(msg.content.toString() === 'job', `delivery ${deliveries.length + 1} has body '${msg.content}'`);
    deliveries.push(msg);
    if (deliveries.length <= RETRIES) ch.reject(msg, false);
    else ch.ack(msg);
  }, { noAck: false, consumerTag: 'worker' });
  ch.sendToQueue(work, Buffer.from('job'), { messageId: 'job-1', headers: { 'job-id': '42' } });
  await waitFor(() => deliveries.length >= RETRIES + 1, 15000,
    () => `${RETRIES + 1} deliveries of the job (got ${deliveries.length})`);
  await sleep(3 * WAIT_TTL_MS);
  check(deliveries.length === RETRIES + 1, `the acked job came back: ${deliveries.length} deliveries`);

  const firstTimes = {};
  deliveries.forEach((msg, n) => {
    const what = `delivery ${n + 1} (after ${n} rounds)`;
    const headers = msg.properties.headers || {};
    check(msg.properties.messageId === 'job-1', `${what}: message_id ${show(msg.properties.messageId)}, expected 'job-1'`);
    check(headers['job-id'] === '42', `${what}: header job-id ${show(headers['job-id'])}`);
    check(!msg.fields.redelivered, `${what}: redelivered=true on a dead-lettered message`);
    if (n === 0) {
      check(!('x-death' in headers), `${what}: unexpected x-death ${show(headers['x-death'])}`);
      return;
    }
    const deaths = headers['x-death'];
    check(Array.isArray(deaths) && deaths.length === 2, `${what}: x-death should be a list of 2 entries, got ${show(deaths)}`);
    const expected = [
      { count: n, reason: 'expired', queue: wait, exchange: retry, 'routing-keys': [work] },
      { count: n, reason: 'rejected', queue: work, exchange: '', 'routing-keys': [work] },
    ];
    deaths.forEach((got, i) => {
      const { time, ...rest } = got;
      const norm = Object.fromEntries(Object.keys(rest).sort().map((k) => [k, rest[k]]));
      const want = Object.fromEntries(Object.keys(expected[i]).sort().map((k) => [k, expected[i][k]]));
      check(show(norm) === show(want), `${what}: x-death[${i}] is ${show(norm)}, expected ${show(want)}`);
      check(time && time['!'] === 'timestamp' && typeof time.value === 'number',
        `${what}: x-death[${i}] time is ${show(time)}, expected a timestamp`);
      const key = `${got.queue} ${got.reason}`;
      if (!(key in firstTimes)) firstTimes[key] = time.value;
      check(time.value === firstTimes[key],
        `${what}: x-death[${i}] time changed from ${firstTimes[key]} to ${time.value} ` +
        '(it is the time of the first death for this queue and reason)');
    });
    for (const [key, want] of [['x-first-death-queue', work], ['x-first-death-reason', 'rejected'], ['x-first-death-exchange', '']]) {
      check(headers[key] === want, `${what}: ${key} is ${show(headers[key])}, expected ${show(want)}`);
    }
    console.log(`${what}: x-death (queue, reason, count) ${show(deaths.map((d) => [d.queue.split('.').pop(), d.reason, d.count]))}`);
  });
  console.log(`last delivery's headers: ${show(deliveries[RETRIES].properties.headers)}`);

  await ch.cancel('worker');
  await ch.deleteQueue(work);
  await ch.deleteQueue(wait);
  await ch.deleteExchange(retry);
  await conn.closeCleanly();
  console.log('ok');
});
