// Peer 2: a minimal relying party on @simplewebauthn/server (Node 20), state in memory.
//
// It speaks the benchmark's peer protocol (see bench/README.md), on plain node:http (no
// framework, so the peer gets its best case):
//   POST /registration/options    {username}            -> {session, options}
//   POST /registration/verify     {session, credential} -> {verified: true}
//   POST /authentication/options  {username}            -> {session, options}
//   POST /authentication/verify   {session, credential} -> {verified: true, username}
//   GET  /healthz
// Challenges are single use and expire. Run: PORT=8090 node server.mjs

import { randomBytes } from 'node:crypto';
import http from 'node:http';
import {
  generateAuthenticationOptions,
  generateRegistrationOptions,
  verifyAuthenticationResponse,
  verifyRegistrationResponse,
} from '@simplewebauthn/server';

const RP_ID = process.env.BENCH_RP_ID || 'example.com';
const RP_NAME = 'Example';
const ORIGIN = process.env.BENCH_ORIGIN || 'https://example.com';
const TIMEOUT_MS = 600_000;
const MAX_BODY = 64 * 1024;

const users = new Map(); // username -> { handle: Uint8Array, credentials: [id] }
const credentials = new Map(); // credential id (base64url) -> { username, publicKey, counter, transports }
const sessions = new Map(); // session -> { challenge, username, kind, expires }

class Refused extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function newSession(challenge, username, kind) {
  const session = randomBytes(16).toString('base64url');
  sessions.set(session, { challenge, username, kind, expires: Date.now() + TIMEOUT_MS });
  return session;
}

function takeSession(session, kind) {
  const found = sessions.get(session);
  sessions.delete(session);
  if (!found || found.kind !== kind || found.expires < Date.now()) {
    throw new Refused(400, 'no such challenge');
  }
  return found;
}

function descriptors(user) {
  return user.credentials.map((id) => ({ id, transports: credentials.get(id).transports }));
}

const routes = {
  async '/registration/options'(body) {
    let user = users.get(body.username);
    if (!user) {
      user = { handle: new Uint8Array(randomBytes(16)), credentials: [] };
      users.set(body.username, user);
    }
    const options = await generateRegistrationOptions({
      rpName: RP_NAME,
      rpID: RP_ID,
      userName: body.username,
      userID: user.handle,
      attestationType: 'none',
      excludeCredentials: descriptors(user),
      authenticatorSelection: { residentKey: 'preferred', userVerification: 'preferred' },
    });
    return { session: newSession(options.challenge, body.username, 'registration'), options };
  },

  async '/registration/verify'(body) {
    const { challenge, username } = takeSession(body.session, 'registration');
    let verification;
    try {
      verification = await verifyRegistrationResponse({
        response: body.credential,
        expectedChallenge: challenge,
        expectedOrigin: ORIGIN,
        expectedRPID: RP_ID,
        requireUserVerification: false,
      });
    } catch (err) {
      throw new Refused(400, `registration refused: ${err.message}`);
    }
    if (!verification.verified) throw new Refused(400, 'registration refused');
    const { credential } = verification.registrationInfo;
    if (credentials.has(credential.id)) throw new Refused(400, 'credential already registered');
    credentials.set(credential.id, {
      username,
      publicKey: credential.publicKey,
      counter: credential.counter,
      transports: body.credential.response.transports || [],
    });
    users.get(username).credentials.push(credential.id);
    return { verified: true };
  },

  async '/authentication/options'(body) {
    const user = users.get(body.username);
    if (!user || user.credentials.length === 0) throw new Refused(404, 'no passkey for this user');
    const options = await generateAuthenticationOptions({
      rpID: RP_ID,
      allowCredentials: descriptors(user),
      userVerification: 'preferred',
    });
    return { session: newSession(options.challenge, body.username, 'authentication'), options };
  },

  async '/authentication/verify'(body) {
    const { challenge, username } = takeSession(body.session, 'authentication');
    const id = body.credential && body.credential.id;
    const stored = credentials.get(id);
    if (!stored || stored.username !== username) throw new Refused(400, 'unknown credential');
    let verification;
    try {
      verification = await verifyAuthenticationResponse({
        response: body.credential,
        expectedChallenge: challenge,
        expectedOrigin: ORIGIN,
        expectedRPID: RP_ID,
        credential: { id, publicKey: stored.publicKey, counter: stored.counter },
        requireUserVerification: false,
      });
    } catch (err) {
      throw new Refused(400, `authentication refused: ${err.message}`);
    }
    if (!verification.verified) throw new Refused(400, 'authentication refused');
    stored.counter = verification.authenticationInfo.newCounter;
    return { verified: true, username };
  },
};

function send(res, status, payload) {
  const body = JSON.stringify(payload);
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(body),
  });
  res.end(body);
}

const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/healthz') return send(res, 200, { status: 'ok' });
  const route = req.method === 'POST' && routes[req.url];
  if (!route) return send(res, 404, { error: 'not found' });
  const chunks = [];
  let size = 0;
  req.on('data', (chunk) => {
    size += chunk.length;
    if (size <= MAX_BODY) chunks.push(chunk);
  });
  req.on('end', async () => {
    try {
      if (size > MAX_BODY) throw new Refused(413, 'body too large');
      let body;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        throw new Refused(400, 'body is not JSON');
      }
      send(res, 200, await route(body));
    } catch (err) {
      send(res, err.status || 500, { error: err.message });
    }
  });
});

server.keepAliveTimeout = 60_000;
server.listen(Number(process.env.PORT || 8090), process.env.HOST || '127.0.0.1');
process.on('SIGTERM', () => server.close(() => process.exit(0)));
