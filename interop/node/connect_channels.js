'use strict';
// connect_channels: connect as guest, open 50 channels, close them and the
// connection cleanly, and check the server properties received in connection.start.

const amqp = require('amqplib');
const { check, checkServerProperties, fail, runScenario } = require('./_common');

const CHANNELS = 50;

runScenario(async (url) => {
  const conn = await amqp.connect(url, { timeout: 10000 });
  let closing = false;
  conn.on('error', (err) => fail(`connection error: ${err.message}`));
  conn.on('close', (err) => {
    if (!closing) fail(`connection closed unexpectedly${err ? `: ${err.message}` : ''}`);
  });

  checkServerProperties(conn.connection.serverProperties);

  const channels = [];
  for (let i = 0; i < CHANNELS; i++) {
    const ch = await conn.createChannel();
    ch.on('error', (err) => fail(`channel ${ch.ch} error: ${err.message}`));
    channels.push(ch);
  }
  const numbers = new Set(channels.map((ch) => ch.ch));
  check(numbers.size === CHANNELS, `channel numbers not distinct: ${[...numbers]}`);
  console.log(`opened ${CHANNELS} channels (${Math.min(...numbers)}..${Math.max(...numbers)})`);

  for (const ch of channels) {
    await ch.close();
  }
  console.log(`closed ${CHANNELS} channels`);

  closing = true;
  await conn.close();
  console.log('closed the connection');
});
