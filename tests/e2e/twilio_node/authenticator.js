// A minimal software WebAuthn authenticator + "browser" (ES256, 'none' attestation), producing
// exactly what PublicKeyCredential.toJSON() gives for create() and get().
"use strict";
const crypto = require("crypto");

const b64u = (buf) => Buffer.from(buf).toString("base64url");
const unb64u = (s) => Buffer.from(s, "base64url");

// --- tiny CBOR encoder (ints, byte strings, text strings, maps, arrays) ---
function head(major, n) {
  if (n < 24) return Buffer.from([(major << 5) | n]);
  if (n < 256) return Buffer.from([(major << 5) | 24, n]);
  if (n < 65536) { const b = Buffer.alloc(3); b[0] = (major << 5) | 25; b.writeUInt16BE(n, 1); return b; }
  const b = Buffer.alloc(5); b[0] = (major << 5) | 26; b.writeUInt32BE(n, 1); return b;
}
function cbor(v) {
  if (typeof v === "number") return v >= 0 ? head(0, v) : head(1, -1 - v);
  if (Buffer.isBuffer(v)) return Buffer.concat([head(2, v.length), v]);
  if (typeof v === "string") { const b = Buffer.from(v, "utf8"); return Buffer.concat([head(3, b.length), b]); }
  if (Array.isArray(v)) return Buffer.concat([head(4, v.length), ...v.map(cbor)]);
  if (v instanceof Map) {
    const parts = [head(5, v.size)];
    for (const [k, val] of v) parts.push(cbor(k), cbor(val));
    return Buffer.concat(parts);
  }
  throw new Error("cbor: unsupported " + typeof v);
}

const UP = 0x01, UV = 0x04, BE = 0x08, BS = 0x10, AT = 0x40;

class Authenticator {
  constructor({ origin, attachment = "platform", flags = UP | UV, zeroCounter = false } = {}) {
    this.zeroCounter = zeroCounter;
    this.origin = origin;
    this.attachment = attachment;
    this.flags = flags;
    this.creds = new Map(); // credIdB64u -> {key, rpId, userHandle, counter}
  }

  // navigator.credentials.create(parseCreationOptionsFromJSON(options)).toJSON()
  create(options, { counter = 0, origin } = {}) {
    const pk = options.publicKey;
    const rpId = pk.rp.id;
    const { privateKey, publicKey } = crypto.generateKeyPairSync("ec", { namedCurve: "P-256" });
    const jwk = publicKey.export({ format: "jwk" });
    const coseKey = cbor(new Map([[1, 2], [3, -7], [-1, 1], [-2, unb64u(jwk.x)], [-3, unb64u(jwk.y)]]));
    const credId = crypto.randomBytes(32);
    const cnt = Buffer.alloc(4); cnt.writeUInt32BE(counter);
    const idLen = Buffer.alloc(2); idLen.writeUInt16BE(credId.length);
    const authData = Buffer.concat([
      crypto.createHash("sha256").update(rpId).digest(),
      Buffer.from([this.flags | AT]), cnt, Buffer.alloc(16), idLen, credId, coseKey,
    ]);
    const attObj = cbor(new Map([["fmt", "none"], ["attStmt", new Map()], ["authData", authData]]));
    const clientData = Buffer.from(JSON.stringify({
      type: "webauthn.create", challenge: pk.challenge, origin: origin || this.origin, crossOrigin: false,
    }));
    this.creds.set(b64u(credId), { key: privateKey, rpId, userHandle: pk.user.id, counter });
    return {
      id: b64u(credId),
      rawId: b64u(credId),
      type: "public-key",
      authenticatorAttachment: this.attachment,
      clientExtensionResults: {},
      response: {
        clientDataJSON: b64u(clientData),
        attestationObject: b64u(attObj),
        authenticatorData: b64u(authData),
        transports: ["hybrid", "internal"],
        publicKeyAlgorithm: -7,
        publicKey: b64u(publicKey.export({ format: "der", type: "spki" })),
      },
    };
  }

  // navigator.credentials.get(parseRequestOptionsFromJSON(options)).toJSON()
  get(options, { credId, origin, flags, crossOrigin, topOrigin } = {}) {
    const pk = options.publicKey;
    const allowed = (pk.allowCredentials || []).map((c) => c.id);
    let id = credId;
    if (!id) id = allowed.find((a) => this.creds.has(a)) || [...this.creds.keys()][0];
    const cred = this.creds.get(id);
    if (!cred) throw new Error("no credential");
    if (!this.zeroCounter) cred.counter += 1;
    const cnt = Buffer.alloc(4); cnt.writeUInt32BE(cred.counter);
    const rpId = pk.rpId || cred.rpId;
    const authData = Buffer.concat([
      crypto.createHash("sha256").update(rpId).digest(), Buffer.from([flags === undefined ? this.flags : flags]), cnt,
    ]);
    const clientData = Buffer.from(JSON.stringify({
      type: "webauthn.get", challenge: pk.challenge, origin: origin || this.origin, crossOrigin: !!crossOrigin, ...(topOrigin ? { topOrigin } : {}),
    }));
    const sig = crypto.sign("sha256", Buffer.concat([authData,
      crypto.createHash("sha256").update(clientData).digest()]), cred.key);
    return {
      id, rawId: id, type: "public-key",
      authenticatorAttachment: this.attachment,
      clientExtensionResults: {},
      response: {
        clientDataJSON: b64u(clientData),
        authenticatorData: b64u(authData),
        signature: b64u(sig),
        userHandle: cred.userHandle,
      },
    };
  }
}

module.exports = { Authenticator, b64u, unb64u, UP, UV, BE, BS };
