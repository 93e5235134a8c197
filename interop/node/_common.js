'use strict';
// Helpers shared by the Node (amqplib) interop scenarios.
//
// A scenario is run as `node <scenario>.js AMQP_URL`; it exits 0 on success and
// non-zero with a message on stderr on any failure.

const STRING_PROPERTIES = ['product', 'version', 'platform', 'copyright', 'information'];

function fail(message, code = 1) {
  process.stderr.write(`FAIL: ${message}\n`, () => process.exit(code));
  // In case the write callback never runs.
  setTimeout(() => process.exit(code), 1000);
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

function urlFromArgs() {
  const url = process.argv[2] || process.env.AMQP_URL;
  if (!url) {
    process.stderr.write(`usage: node ${process.argv[1]} AMQP_URL\n`);
    process.exit(2);
  }
  return url;
}

function describe(value) {
  if (Buffer.isBuffer(value)) return `Buffer ${JSON.stringify(value.toString())}`;
  return `${typeof value} ${JSON.stringify(value)}`;
}

function checkServerProperties(props) {
  check(props && typeof props === 'object', `server properties are not a table: ${describe(props)}`);
  for (const key of STRING_PROPERTIES) {
    check(key in props, `server property '${key}' missing (got ${Object.keys(props).sort()})`);
    check(typeof props[key] === 'string',
      `server property '${key}' is ${describe(props[key])}, expected a string`);
    console.log(`server ${key}: ${props[key]}`);
  }
  const caps = props.capabilities;
  check(caps !== undefined, `server property 'capabilities' missing (got ${Object.keys(props).sort()})`);
  check(caps !== null && typeof caps === 'object' && !Array.isArray(caps) && !Buffer.isBuffer(caps),
    `server property 'capabilities' is ${describe(caps)}, expected a table`);
  console.log('server capabilities: ' +
    Object.keys(caps).sort().map((k) => `${k}=${caps[k]}`).join(', '));
}

// Runs an async scenario body with a watchdog; exits 0 only if it resolves.
function runScenario(body, timeoutSeconds = 30) {
  const watchdog = setTimeout(() => fail(`timed out after ${timeoutSeconds}s`, 3), timeoutSeconds * 1000);
  body(urlFromArgs()).then(
    () => {
      clearTimeout(watchdog);
      process.exit(0);
    },
    (err) => fail(err && err.stack ? err.stack : String(err)),
  );
}

// Connects with a 10 s timeout; an unexpected connection error or close fails the scenario.
// Call `conn.closeCleanly()` instead of `conn.close()` at the end.
async function connect(url) {
  const amqp = require('amqplib');
  const conn = await amqp.connect(url, { timeout: 10000 });
  let closing = false;
  conn.on('error', (err) => fail(`connection error: ${err.message}`));
  conn.on('close', (err) => {
    if (!closing) fail(`connection closed unexpectedly${err ? `: ${err.message}` : ''}`);
  });
  conn.closeCleanly = async () => {
    closing = true;
    await conn.close();
  };
  return conn;
}

// A channel (a confirm channel if `confirm`) whose errors fail the scenario, unless
// `onError` handles them.
async function openChannel(conn, { confirm = false, onError = null } = {}) {
  const ch = confirm ? await conn.createConfirmChannel() : await conn.createChannel();
  ch.on('error', onError || ((err) => fail(`channel ${ch.ch} error: ${err.message}`)));
  return ch;
}

// A name no other run (parallel or earlier) uses: interop.<scenario>.node.<random>[.<suffix>].
function uniqueName(scenario, suffix = '') {
  const name = `interop.${scenario}.node.${require('node:crypto').randomBytes(4).toString('hex')}`;
  return suffix ? `${name}.${suffix}` : name;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Waits (polling every 10 ms, so deliveries are processed meanwhile) until condition() holds;
// throws after timeoutMs. `what` may be a function, evaluated only for the error message.
async function waitFor(condition, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs / 1000}s waiting for ${typeof what === 'function' ? what() : what}`);
    }
    await sleep(10);
  }
}

// JSON for messages: Buffers as strings, BigInts as numbers.
function show(value) {
  return JSON.stringify(value, (_k, v) => {
    if (typeof v === 'bigint') return Number(v);
    if (v && v.type === 'Buffer' && Array.isArray(v.data)) return Buffer.from(v.data).toString();
    return v;
  });
}

module.exports = {
  check,
  checkServerProperties,
  connect,
  fail,
  openChannel,
  runScenario,
  show,
  sleep,
  uniqueName,
  waitFor,
};
