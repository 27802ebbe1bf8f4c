// The whole Verify Passkeys flow through the official twilio-node SDK, against a running
// passkeyd: services, passkey factors, verification, challenges (by identity, by factor,
// usernameless), approval, entities, factors and challenges lists, errors, API keys.
// Every request goes through a logging proxy on loopback, so what the SDK puts on the wire
// is printed too. Run by tests/e2e/test_twilio_node.py:
//   PASSKEYD_URL=http://127.0.0.1:PORT ACCOUNT_SID=AC... AUTH_TOKEN=... \
//   API_KEY_SID=SK... API_KEY_SECRET=... node sdk_flow.js
// It prints one line per check and exits 1 if any failed (2 if something threw).
"use strict";
const http = require("http");
const twilio = require("twilio");
const { Authenticator, unb64u } = require("./authenticator");

const need = (name) => {
  if (!process.env[name]) throw new Error(`${name} is not set`);
  return process.env[name];
};
const TARGET = new URL(need("PASSKEYD_URL"));
const AC = need("ACCOUNT_SID");
const TOKEN = need("AUTH_TOKEN");
const KEY = { sid: need("API_KEY_SID"), secret: need("API_KEY_SECRET") };
// The SDK rewrites the host for an edge or region (localhost.dublin.us1.localhost).
for (const v of ["TWILIO_EDGE", "TWILIO_REGION"]) delete process.env[v];

// ---- a logging proxy on 127.0.0.1 so we can see what the SDK puts on the wire ----
const wire = [];
function startProxy() {
  return new Promise((resolve) => {
    const srv = http.createServer((req, res) => {
      const chunks = [];
      req.on("data", (c) => chunks.push(c));
      req.on("end", () => {
        const body = Buffer.concat(chunks);
        wire.push({ method: req.method, url: req.url, ct: req.headers["content-type"],
          accept: req.headers["accept"], ua: req.headers["user-agent"], body: body.toString() });
        const up = http.request({ host: TARGET.hostname, port: TARGET.port, method: req.method,
          path: req.url, headers: req.headers }, (ur) => {
          res.writeHead(ur.statusCode, ur.headers);
          ur.pipe(res);
        });
        up.on("error", (e) => { res.writeHead(502); res.end(String(e)); });
        up.end(body);
      });
    });
    srv.keepAliveTimeout = 1000;
    srv.listen(0, "127.0.0.1", () => resolve(srv));
  });
}

let failures = 0, passes = 0;
function check(name, cond, detail) {
  if (cond) { passes++; console.log("  ok   " + name); }
  else { failures++; console.log("  FAIL " + name + (detail !== undefined ? "  -> " + JSON.stringify(detail) : "")); }
}
async function expectError(name, fn, { status, code }) {
  try {
    const r = await fn();
    check(name + " (expected error)", false, { got: r && (r.toJSON ? r.toJSON() : r) });
    return null;
  } catch (e) {
    const got = { cls: e.constructor.name, status: e.status, code: e.code, message: e.message, moreInfo: e.moreInfo };
    check(`${name}: ${status}/${code}`, e.constructor.name === "RestException" && e.status === status &&
      (code === undefined || e.code === code) && typeof e.message === "string" &&
      (code === undefined || e.moreInfo === `https://www.twilio.com/docs/errors/${code}`), got);
    return e;
  }
}
const lastWire = (pred) => [...wire].reverse().find(pred);

async function main() {
  const proxy = await startProxy();
  const BASE = `http://127.0.0.1:${proxy.address().port}`;
  console.log("proxy", BASE, "->", TARGET.href);

  // ---------- pointing the SDK at one base URL ----------
  const client = twilio(AC, TOKEN);
  client.verify.baseUrl = BASE;            // Domain.baseUrl, read per request; client.verify is cached
  const v2 = client.verify.v2;
  const ORIGIN = "https://example.com";
  const RP = "example.com";

  // ---------- services ----------
  console.log("# services");
  const svcParams = {
    friendlyName: "Node Service",
    "passkeys.relyingParty.id": RP,
    "passkeys.relyingParty.name": "Example RP",
    "passkeys.relyingParty.origins": `${ORIGIN},https://login.example.com`,
    "passkeys.authenticatorAttachment": "platform",
    "passkeys.discoverableCredentials": "preferred",
    "passkeys.userVerification": "preferred",
  };
  const service = await v2.services.create(svcParams);
  const w = lastWire((x) => x.method === "POST" && x.url === "/v2/Services");
  console.log("    wire:", w.ct, w.body);
  check("service sid", /^VA[0-9a-f]{32}$/.test(service.sid), service.sid);
  check("service dateCreated parsed to Date", service.dateCreated instanceof Date, service.dateCreated);
  check("service passkeys echoed", JSON.stringify(service.passkeys) === JSON.stringify({
    relying_party: { id: RP, name: "Example RP", origins: [ORIGIN, "https://login.example.com"] },
    authenticator_attachment: "platform", discoverable_credentials: "preferred", user_verification: "preferred",
  }), service.passkeys);
  check("service url/links", typeof service.url === "string" && service.links && service.links.entities, { url: service.url, links: service.links });
  const svc = v2.services(service.sid);
  const fetched = await svc.fetch();
  check("service fetch", fetched.friendlyName === "Node Service" && fetched.passkeys.relying_party.id === RP, fetched.toJSON());
  const updated = await svc.update({ "passkeys.userVerification": "discouraged", friendlyName: "Node Service 2" });
  check("service update partial", updated.passkeys.user_verification === "discouraged" &&
    updated.passkeys.relying_party.origins.length === 2 && updated.friendlyName === "Node Service 2", updated.passkeys);
  await svc.update({ "passkeys.userVerification": "preferred" });
  // origins as array -> qs repeat => repeated keys
  const svc2 = await v2.services.create({ friendlyName: "arr origins", "passkeys.relyingParty.id": RP,
    "passkeys.relyingParty.origins": [ORIGIN, "https://b.example.com"] });
  check("service origins as repeated keys", JSON.stringify(svc2.passkeys.relying_party.origins) ===
    JSON.stringify([ORIGIN, "https://b.example.com"]), svc2.passkeys);
  const extra = [];
  for (let i = 0; i < 3; i++) extra.push(await v2.services.create({ friendlyName: "page svc " + i }));
  const allSvcs = await v2.services.list({ pageSize: 2 });
  check("services list pageSize 2 spans pages", allSvcs.length >= 5 && new Set(allSvcs.map((s) => s.sid)).size === allSvcs.length, allSvcs.length);
  const page1 = await v2.services.page({ pageSize: 2 });
  check("services page nextPageUrl uses our base", page1.nextPageUrl && page1.nextPageUrl.startsWith(BASE), page1.nextPageUrl);
  const page2 = await page1.nextPage();
  check("services nextPage()", page2 && page2.instances.length >= 1, page2 && page2.instances.length);
  const limited = await v2.services.list({ limit: 3 });
  check("services list limit 3", limited.length === 3, limited.length);
  let eachCount = 0;
  await new Promise((resolve, reject) => v2.services.each({ pageSize: 1, done: (err) => err ? reject(err) : resolve() }, () => { eachCount++; }));
  check("services each pageSize 1", eachCount === allSvcs.length, { eachCount, list: allSvcs.length });
  for (const s of extra) check("service delete -> true", (await v2.services(s.sid).remove()) === true);
  await expectError("fetch deleted service", () => v2.services(extra[0].sid).fetch(), { status: 404, code: 20404 });
  await v2.services(svc2.sid).remove();

  // ---------- factor registration ----------
  console.log("# factors");
  const auth = new Authenticator({ origin: ORIGIN });
  const identity = "8c5b2f3e-2a4f-4a53-9b1f-3f0e8d2c1a77";
  // (1) snake_case plain object, as Twilio's Node docs show
  const nf = await svc.newFactors.create({ friendly_name: "alice", identity });
  const wnf = lastWire((x) => x.url.endsWith("/Passkeys/Factors"));
  console.log("    wire:", wnf.ct, wnf.body);
  check("newFactor unverified passkeys", nf.status === "unverified" && nf.factorType === "passkeys" && /^YF/.test(nf.sid), nf.toJSON());
  check("newFactor binding null", nf.binding === null, nf.binding);
  const pk = nf.options && nf.options.publicKey;
  check("creation options shape", pk && pk.rp.id === RP && pk.rp.name === "Example RP" && pk.user.name === "alice" &&
    pk.user.displayName === "alice" && typeof pk.challenge === "string" && Array.isArray(pk.pubKeyCredParams) &&
    pk.authenticatorSelection.authenticatorAttachment === "platform" && pk.authenticatorSelection.residentKey === "preferred" &&
    pk.authenticatorSelection.userVerification === "preferred" && pk.timeout === 600000, pk);
  check("user.id = b64url(entity sid)", pk && unb64u(pk.user.id).toString() === nf.entitySid, pk && pk.user.id);
  check("newFactor config echoed", nf.config && nf.config.relying_party.id === RP, nf.config);

  const cred = auth.create(nf.options);
  const vf = await svc.newVerifyFactors.update(cred);   // the toJSON() object, verbatim
  const wvf = lastWire((x) => x.url.endsWith("/Passkeys/VerifyFactor"));
  console.log("    wire:", wvf.ct, wvf.body.slice(0, 160) + "...");
  check("verifyFactor verified", vf.status === "verified" && vf.sid === nf.sid, vf.toJSON());
  check("verifyFactor metadata.aaguid", vf.metadata && typeof vf.metadata.aaguid === "string", vf.metadata);

  // (2) the SDK's typed classes (camelCase on the wire)
  const { CreateNewPasskeysFactorRequest, CreateNewPasskeysFactorRequestConfig, CreateNewPasskeysFactorRequestConfigRelyingParty } =
    require("twilio/lib/rest/verify/v2/service/newFactor");
  const { VerifyPasskeysFactorRequest } = require("twilio/lib/rest/verify/v2/service/newVerifyFactor");
  const req = new CreateNewPasskeysFactorRequest({
    friendly_name: "alice-2", identity,
    config: new CreateNewPasskeysFactorRequestConfig({
      relying_party: new CreateNewPasskeysFactorRequestConfigRelyingParty({ id: RP, name: "Factor RP", origins: [ORIGIN] }),
      authenticator_attachment: "cross-platform", discoverable_credentials: "required", user_verification: "required",
    }),
  });
  const nf2 = await svc.newFactors.create(req);
  const wnf2 = lastWire((x) => x.url.endsWith("/Passkeys/Factors"));
  console.log("    wire:", wnf2.body);
  const pk2 = nf2.options.publicKey;
  check("typed-class factor config honoured", pk2.rp.name === "Factor RP" && pk2.authenticatorSelection.authenticatorAttachment === "cross-platform" &&
    pk2.authenticatorSelection.residentKey === "required" && pk2.authenticatorSelection.requireResidentKey === true &&
    pk2.authenticatorSelection.userVerification === "required", pk2.authenticatorSelection);
  check("excludeCredentials lists first passkey", (pk2.excludeCredentials || []).some((c) => c.id === cred.id), pk2.excludeCredentials);
  check("typed factor config echoed", nf2.config && nf2.config.relying_party && nf2.config.relying_party.name === "Factor RP" &&
    nf2.config.authenticator_attachment === "cross-platform", nf2.config);
  const auth2 = new Authenticator({ origin: ORIGIN, attachment: "cross-platform" });
  const cred2 = auth2.create(nf2.options);
  const vf2 = await svc.newVerifyFactors.update(new VerifyPasskeysFactorRequest(cred2));
  check("verify via VerifyPasskeysFactorRequest class", vf2.status === "verified", vf2.toJSON());

  // (3) camelCase plain object as the TS types declare
  const nf3 = await svc.newFactors.create({ friendlyName: "alice-3", identity,
    config: { relyingParty: { id: RP, name: "Camel", origins: [ORIGIN] }, authenticatorAttachment: "any",
      discoverableCredentials: "discouraged", userVerification: "discouraged" } });
  check("camel config honoured", nf3.options.publicKey.rp.name === "Camel" &&
    nf3.options.publicKey.authenticatorSelection.residentKey === "discouraged" &&
    !("authenticatorAttachment" in nf3.options.publicKey.authenticatorSelection), nf3.options.publicKey.authenticatorSelection);
  // browser toJSON() for an authenticator that reports no attachment -> null
  const c3 = auth.create(nf3.options); c3.authenticatorAttachment = null;
  const vf3 = await svc.newVerifyFactors.update(c3);
  check("verify with authenticatorAttachment null", vf3.status === "verified", vf3.toJSON());

  // factor without identity (API creates it)
  const nf4 = await svc.newFactors.create({ friendly_name: "anon" });
  check("identity generated when omitted", typeof nf4.identity === "string" && nf4.identity.length >= 8, nf4.identity);

  // ---------- challenges ----------
  console.log("# challenges");
  const ch = await svc.newChallenge().create({ identity });
  const wch = lastWire((x) => x.url.endsWith("/Passkeys/Challenges"));
  console.log("    wire:", wch.ct, wch.body);
  const rpk = ch.options.publicKey;
  check("challenge pending", ch.status === "pending" && /^YC/.test(ch.sid) && ch.factorType === "passkeys" && ch.respondedReason === "none", ch.toJSON());
  check("request options", rpk.rpId === RP && typeof rpk.challenge === "string" && Array.isArray(rpk.allowCredentials) &&
    rpk.allowCredentials.length === 3, rpk);
  check("challenge dates parsed", ch.dateCreated instanceof Date && (ch.expirationDate === null || ch.expirationDate instanceof Date), { dc: ch.dateCreated, ed: ch.expirationDate });
  const as = auth.get(ch.options, { credId: cred.id });
  const ap = await svc.approveChallenge.update(as);
  const wap = lastWire((x) => x.url.endsWith("/Passkeys/ApproveChallenge"));
  console.log("    wire:", wap.ct, wap.body.slice(0, 120) + "...");
  check("approve identity challenge", ap.status === "approved" && ap.identity === identity && ap.factorSid === nf.sid &&
    ap.entitySid === nf.entitySid && ap.sid === ch.sid, ap.toJSON());
  check("approve dateResponded Date", ap.dateResponded instanceof Date, ap.dateResponded);
  await expectError("approve again -> 60322", () => svc.approveChallenge.update(as), { status: 403, code: 60322 });

  // factorSid-restricted challenge via the typed class (camelCase factorSid on the wire)
  const { CreatePasskeysChallengeRequest } = require("twilio/lib/rest/verify/v2/service/newChallenge");
  const chF = await svc.newChallenge().create(new CreatePasskeysChallengeRequest({ identity, factor_sid: nf2.sid }));
  console.log("    wire:", lastWire((x) => x.url.endsWith("/Passkeys/Challenges")).body);
  check("factorSid challenge allows one", chF.factorSid === nf2.sid && chF.options.publicKey.allowCredentials.length === 1 &&
    chF.options.publicKey.allowCredentials[0].id === cred2.id, chF.toJSON());
  const { ApprovePasskeysChallengeRequest } = require("twilio/lib/rest/verify/v2/service/approveChallenge");
  const apF = await svc.approveChallenge.update(new ApprovePasskeysChallengeRequest(auth2.get(chF.options, { credId: cred2.id })));
  check("approve via typed class", apF.status === "approved" && apF.factorSid === nf2.sid, apF.toJSON());

  // usernameless
  const chU = await svc.newChallenge().create({});   // twilio-node 5.x refuses create() without params
  console.log("    wire:", lastWire((x) => x.url.endsWith("/Passkeys/Challenges")).body);
  check("usernameless challenge", chU.status === "pending" && (chU.options.publicKey.allowCredentials || []).length === 0 &&
    chU.identity === "" && chU.entitySid === "" && chU.factorSid === "", chU.toJSON());
  const asU = auth2.get(chU.options, { credId: cred2.id });
  const apU = await svc.approveChallenge.update(asU);
  check("usernameless approve names user", apU.status === "approved" && apU.identity === identity && apU.factorSid === nf2.sid, apU.toJSON());
  const chU2 = await svc.newChallenge().create();   // 6.x sends an empty JSON object
  check("usernameless via create()", chU2.status === "pending" && chU2.identity === "", chU2.toJSON());

  // ---------- entities / factors / challenges list ----------
  console.log("# entities & factors");
  const ent = await svc.entities(identity).fetch();
  check("entity fetch", ent.identity === identity && ent.sid === nf.entitySid && ent.links && ent.links.factors, ent.toJSON());
  const ents = await svc.entities.list({ pageSize: 1 });
  check("entities list pageSize 1", ents.length === 2, ents.map((e) => e.identity));
  const facs = await svc.entities(identity).factors.list({ pageSize: 1 });
  check("factors list pageSize 1 -> 3", facs.length === 3 && facs.every((f) => f.factorType === "passkeys"), facs.map((f) => f.sid));
  const f1 = await svc.entities(identity).factors(nf.sid).fetch();
  check("factor fetch", f1.status === "verified" && f1.metadata && f1.metadata.date_last_approved, f1.toJSON());
  const f1u = await svc.entities(identity).factors(nf.sid).update({ friendlyName: "renamed" });
  check("factor update friendlyName", f1u.friendlyName === "renamed", f1u.toJSON());
  const chs = await svc.entities(identity).challenges.list({ pageSize: 1 });
  check("challenges list", chs.length >= 2 && chs.every((c) => c.factorType === "passkeys"), chs.map((c) => [c.sid, c.status]));
  const chsA = await svc.entities(identity).challenges.list({ status: "approved", factorSid: nf.sid, order: "desc" });
  check("challenges list filtered", chsA.length === 1 && chsA[0].sid === ch.sid, chsA.map((c) => c.sid));
  const chFetched = await svc.entities(identity).challenges(ch.sid).fetch();
  check("challenge fetch", chFetched.status === "approved" && chFetched.factorSid === nf.sid, chFetched.toJSON());
  check("factor delete", (await svc.entities(identity).factors(nf3.sid).remove()) === true);
  await expectError("fetch deleted factor", () => svc.entities(identity).factors(nf3.sid).fetch(), { status: 404, code: 20404 });
  check("entity delete", (await svc.entities(nf4.identity).remove()) === true);
  await expectError("fetch deleted entity", () => svc.entities(nf4.identity).fetch(), { status: 404, code: 20404 });

  // ---------- error paths ----------
  console.log("# errors");
  const bad = twilio(AC, "wrong-token"); bad.verify.baseUrl = BASE;
  const e401 = await expectError("wrong token", () => bad.verify.v2.services(service.sid).fetch(), { status: 401, code: 20003 });
  await expectError("wrong token on passkeys create", () => bad.verify.v2.services(service.sid).newFactors.create({ friendly_name: "x", identity }), { status: 401, code: 20003 });
  try { await bad.verify.v2.services.list(); check("wrong token list raises", false); }
  catch (e) { check("wrong token list -> RestException 401/20003", e.constructor.name === "RestException" && e.status === 401 && e.code === 20003, { cls: e.constructor.name, status: e.status, code: e.code, message: e.message }); }
  const missing = "VA" + "0".repeat(32);
  await expectError("missing service fetch", () => v2.services(missing).fetch(), { status: 404, code: 20404 });
  await expectError("missing service newFactors", () => v2.services(missing).newFactors.create({ friendly_name: "x", identity }), { status: 404, code: 20404 });
  await expectError("missing service challenge", () => v2.services(missing).newChallenge().create({ identity }), { status: 404, code: 20404 });
  try { await v2.services.create({}); check("service create without FriendlyName refused", false); }
  catch (e) { check("service create without FriendlyName refused (SDK-side)", /friendlyName/.test(e.message), e.message); }
  await expectError("service create with empty FriendlyName", () => v2.services.create({ friendlyName: "" }), { status: 400, code: 60200 });
  await expectError("bad userVerification", () => v2.services.create({ friendlyName: "x", "passkeys.userVerification": "sometimes" }), { status: 400, code: 60200 });
  await expectError("factor without friendly_name", () => svc.newFactors.create({ identity }), { status: 400, code: 60388 });
  await expectError("bad identity", () => svc.newFactors.create({ friendly_name: "x", identity: "no" }), { status: 400, code: 60367 });
  await expectError("bad config attachment", () => svc.newFactors.create({ friendly_name: "x", identity, config: { authenticator_attachment: "usb" } }), { status: 400, code: 60370 });
  await expectError("challenge unknown identity", () => svc.newChallenge().create({ identity: "nobody-00000" }), { status: 404, code: 60392 });
  await expectError("challenge bad factorSid", () => svc.newChallenge().create({ identity, factorSid: "nope" }), { status: 400, code: 60362 });
  await expectError("verifyFactor again -> 60383", () => svc.newVerifyFactors.update(cred), { status: 403, code: 60383 });
  await expectError("verifyFactor no response", () => svc.newVerifyFactors.update({ id: cred.id }), { status: 400, code: 60378 });
  const chBad = await svc.newChallenge().create({ identity });
  const asBad = auth.get(chBad.options, { credId: cred.id, origin: "https://evil.example" });
  await expectError("approve wrong origin", () => svc.approveChallenge.update(asBad), { status: 403, code: 60324 });  // passkeyd: origin mismatch = 60324 (403); malformed clientData = 60380
  const asSig = auth.get(chBad.options, { credId: cred.id }); asSig.response.signature = asSig.response.signature.replace(/^../, "MA");
  await expectError("approve bad signature", () => svc.approveChallenge.update(asSig), { status: 403, code: 60324 });
  await expectError("page size 0 via page()", () => svc.entities.page({ pageSize: 0 }), { status: 400, code: 60373 });
  await expectError("factor delete missing", () => svc.entities(identity).factors("YF" + "0".repeat(32)).remove(), { status: 404, code: 20404 });

  // ---------- API key auth ----------
  console.log("# api key");
  {
    const kc = twilio(KEY.sid, KEY.secret, { accountSid: AC }); kc.verify.baseUrl = BASE;
    const ks = await kc.verify.v2.services(service.sid).fetch();
    check("API key fetch service", ks.sid === service.sid && ks.accountSid === AC, ks.toJSON());
    const kch = await kc.verify.v2.services(service.sid).newChallenge().create({ identity });
    const kap = await kc.verify.v2.services(service.sid).approveChallenge.update(auth.get(kch.options, { credId: cred.id }));
    check("API key approve", kap.status === "approved", kap.toJSON());
    const kbad = twilio(KEY.sid, "nope", { accountSid: AC }); kbad.verify.baseUrl = BASE;
    await expectError("API key wrong secret", () => kbad.verify.v2.services(service.sid).fetch(), { status: 401, code: 20003 });
    const kother = twilio(KEY.sid, KEY.secret, { accountSid: "AC" + "9".repeat(32) }); kother.verify.baseUrl = BASE;
    // The accountSid option names the account in v2010 paths only; Verify v2 has none.
    const ko = await kother.verify.v2.services(service.sid).fetch().then((s) => s.sid, (e) => `${e.status}/${e.code}`);
    check("API key with another accountSid option", ko === service.sid, ko);
  }

  // ---------- wire summary ----------
  console.log("# wire summary (method path content-type accept)");
  const seen = new Set();
  for (const x of wire) {
    const k = `${x.method} ${x.url.replace(/VA[0-9a-f]{32}/g, "VA…").replace(/YF[0-9a-f]{32}/g, "YF…").replace(/YC[0-9a-f]{32}/g, "YC…").replace(/\?.*/, "?…")} ct=${x.ct} accept=${x.accept}`;
    if (!seen.has(k)) { seen.add(k); console.log("  " + k); }
  }
  console.log("user-agent:", wire[0].ua);

  await svc.remove();
  proxy.close();
  console.log(`\n${passes} passed, ${failures} failed`);
  process.exitCode = failures ? 1 : 0;
}

main().catch((e) => { console.error("UNCAUGHT", e.constructor.name, e.status, e.code, e.message, e.stack); process.exit(2); });
