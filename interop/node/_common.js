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

module.exports = { check, checkServerProperties, fail, runScenario };
