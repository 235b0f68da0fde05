// A recording, fault-injecting HTTP proxy in front of the S3 test server, run as its
// own process so a test that blocks (spawnSync of the CLI) cannot stall the traffic.
// Usage: node s3-proxy-server.mjs TARGET_URL  → prints {"port": N} once listening.
//
// Every request is forwarded unchanged (Host included, so SigV4 signatures hold) and
// recorded as {method, url, bytes, status, fault}. Control routes, under /__proxy/:
//   GET    /__proxy/requests   the records so far      DELETE /__proxy/requests   clear
//   PUT    /__proxy/faults     {"rules": [...]} replaces the fault rules
//   DELETE /__proxy/faults     no more faults
// A rule: {method?, pathIncludes?, queryIncludes?, every?, times?, action, status?,
// code?, seconds?}. It matches requests by method and path substring; with `every: N`
// it fires on every Nth match, with `times: N` on the first N, else on all. Actions:
//   status    answer `status` with an S3 error `code` (e.g. 503 SlowDown, 500
//             InternalError, 412 PreconditionFailed, 409 ConditionalRequestConflict)
//   reset     destroy the connection mid-body (after half of the request body, or of
//             the response body for a GET)
//   stall     wait `seconds`, then forward
//   truncate  forward, then end the response after half of its body
//   corrupt   forward, flipping bytes of the response body (same length)
//   corrupt-request  forward, flipping one byte of the request body (same length, so
//             the request stays well formed and only a checksum can tell)
import { createServer, request } from 'node:http';

const target = new URL(process.argv[2]);
let records = [];
let rules = [];
const counts = new Map();

function pick(req) {
  const [p, q = ''] = req.url.split('?');
  for (const r of rules) {
    if (r.method && r.method !== req.method) continue;
    if (r.pathIncludes && !p.includes(r.pathIncludes)) continue;
    if (r.queryIncludes && !q.includes(r.queryIncludes)) continue;
    const n = (counts.get(r) ?? 0) + 1;
    counts.set(r, n);
    if (r.every ? n % r.every === 0 : r.times === undefined || n <= r.times) return r;
  }
  return null;
}

function control(req, res, body) {
  const send = (v) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(v));
  if (req.url.startsWith('/__proxy/requests')) {
    if (req.method === 'DELETE') records = [];
    return send(records);
  }
  if (req.url.startsWith('/__proxy/faults')) {
    if (req.method === 'PUT') { rules = JSON.parse(body).rules ?? []; counts.clear(); }
    if (req.method === 'DELETE') { rules = []; counts.clear(); }
    return send(rules);
  }
  res.writeHead(404).end();
}

const server = createServer((req, res) => {
  if (req.url.startsWith('/__proxy/')) {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => control(req, res, body));
    return;
  }
  const rule = pick(req);
  const record = { method: req.method, url: req.url, bytes: 0, status: 0, fault: rule?.action ?? null };
  records.push(record);
  if (rule?.action === 'status') {
    req.resume();
    req.on('end', () => {
      record.status = rule.status;
      const xml = `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${rule.code ?? 'InternalError'}</Code><Message>injected by the test proxy</Message></Error>`;
      res.writeHead(rule.status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(xml) }).end(xml);
    });
    return;
  }
  if (rule?.action === 'reset' && req.method !== 'GET') {
    const half = Number(req.headers['content-length'] ?? 0) / 2;
    req.on('data', (c) => { record.bytes += c.length; if (record.bytes >= half) req.socket.destroy(); });
    req.on('end', () => req.socket.destroy());
    return;
  }
  const forward = () => {
    const up = request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (upRes) => {
      record.status = upRes.statusCode;
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      const total = Number(upRes.headers['content-length'] ?? 0);
      let sent = 0;
      upRes.on('data', (chunk) => {
        if ((rule?.action === 'truncate' || rule?.action === 'reset') && sent + chunk.length > total / 2) {
          res.write(chunk.subarray(0, Math.max(0, Math.floor(total / 2) - sent)));
          if (rule.action === 'reset') res.socket?.destroy();
          else res.socket?.end();
          upRes.destroy();
          return;
        }
        if (rule?.action === 'corrupt') chunk = Buffer.from(chunk.map((b) => b ^ 0x5a));
        sent += chunk.length;
        res.write(chunk);
      });
      upRes.on('end', () => res.end());
    });
    up.on('error', () => res.destroy());
    req.on('data', (c) => { record.bytes += c.length; });
    if (rule?.action === 'corrupt-request') {
      let flipped = false;
      req.on('data', (c) => {
        if (!flipped && c.length > 0) {
          c = Buffer.from(c);
          c[c.length >> 1] ^= 0x01;
          flipped = true;
        }
        up.write(c);
      });
      req.on('end', () => up.end());
      return;
    }
    req.pipe(up);
  };
  if (rule?.action === 'stall') setTimeout(forward, (rule.seconds ?? 5) * 1000);
  else forward();
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`);
});
process.on('SIGTERM', () => process.exit(0));
