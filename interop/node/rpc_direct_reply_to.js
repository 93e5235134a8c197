'use strict';
// rpc_direct_reply_to: request/reply with RabbitMQ's direct reply-to. A server connection
// consumes a request queue and answers each request by publishing to its reply_to (which the
// broker has rewritten from "amq.rabbitmq.reply-to" to "amq.rabbitmq.reply-to.<opaque>"); the
// client consumes the pseudo-queue "amq.rabbitmq.reply-to" in no-ack mode on the channel it
// publishes the requests on, and matches replies by correlation_id. Publishing with
// reply_to="amq.rabbitmq.reply-to" on a channel that does not consume it closes that channel
// with 406 PRECONDITION_FAILED (the connection and its other channels stay usable).

const { check, connect, openChannel, runScenario, show, sleep, uniqueName, waitFor } = require('./_common');

const REPLY_TO = 'amq.rabbitmq.reply-to';
const REQUESTS = 5;
const MISUSE_TEXT = 'PRECONDITION_FAILED - fast reply consumer does not exist';

runScenario(async (url) => {
  const server = await connect(url);
  const client = await connect(url);

  const sch = await openChannel(server);
  const queue = uniqueName('rpc_direct_reply_to');
  await sch.assertQueue(queue, { durable: false, exclusive: false, autoDelete: true });
  const requests = [];
  await sch.consume(queue, (msg) => {
    if (!msg) return; // the broker cancelled the consumer (queue deleted at the end)
    const text = msg.content.toString();
    requests.push(text);
    const replyTo = msg.properties.replyTo;
    check(typeof replyTo === 'string' && replyTo.startsWith(`${REPLY_TO}.`),
      `request '${text}' arrived with reply_to=${show(replyTo)}; expected the broker to rewrite ` +
      `'${REPLY_TO}' to '${REPLY_TO}.<opaque>'`);
    sch.sendToQueue(replyTo, Buffer.from(text.toUpperCase()), { correlationId: msg.properties.correlationId });
    sch.ack(msg);
  }, { noAck: false });

  const cch = await openChannel(client);
  const replies = {};
  await cch.consume(REPLY_TO, (msg) => {
    const corr = msg.properties.correlationId;
    check(!msg.fields.redelivered, `reply '${msg.content}' has redelivered=true`);
    check(!(corr in replies), `second reply for ${corr}: '${msg.content}'`);
    replies[corr] = msg.content.toString();
  }, { noAck: true });

  const call = (corr, text) => cch.sendToQueue(queue, Buffer.from(text), { replyTo: REPLY_TO, correlationId: corr });

  const expected = {};
  for (let i = 1; i <= REQUESTS; i++) {
    expected[`req-${i}`] = `REQUEST ${i}`;
    call(`req-${i}`, `request ${i}`);
  }
  await waitFor(() => Object.keys(replies).length >= REQUESTS, 10000, () => `${REQUESTS} replies (got ${show(replies)})`);
  check(show(replies) === show(expected), `replies ${show(replies)}, expected ${show(expected)}`);
  console.log(`${REQUESTS} replies by correlation id: ok`);

  // Misuse: reply_to=amq.rabbitmq.reply-to on a channel without the reply consumer.
  let closed = null;
  const mch = await openChannel(client, { onError: (err) => { closed = err; } });
  mch.sendToQueue(queue, Buffer.from('misuse'), { replyTo: REPLY_TO });
  await waitFor(() => closed !== null, 5000, 'the broker to close the misusing channel');
  const m = /with message "(.*)"$/s.exec(closed.message);
  const text = m ? m[1] : closed.message;
  console.log(`misuse: channel closed ${closed.code} ${show(text)}`);
  check(closed.code === 406, `misuse closed the channel with ${closed.code}, expected 406 (${closed.message})`);
  check(text === MISUSE_TEXT, `misuse closed the channel with text ${show(text)}, expected ${show(MISUSE_TEXT)}`);

  // The connection and the client's RPC channel still work.
  await sleep(100);
  call('after', 'after misuse');
  await waitFor(() => 'after' in replies, 10000, 'the reply after the misuse');
  check(replies.after === 'AFTER MISUSE', `reply after misuse: ${show(replies.after)}`);
  check(!requests.includes('misuse'), 'the misusing publish reached the request queue');
  check(requests.length === REQUESTS + 1, `server got ${show(requests)}`);

  await cch.close();
  await client.closeCleanly();
  await sch.deleteQueue(queue);
  await server.closeCleanly();
  console.log('ok');
});
