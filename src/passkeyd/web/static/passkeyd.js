// passkeyd.js: run WebAuthn ceremonies with the options of passkeyd (or Twilio Verify
// Passkeys), and hand back the JSON that VerifyFactor and ApproveChallenge take.
//
//   import * as passkeyd from "/static/passkeyd.js";
//   const credential = await passkeyd.create(factor.options, {signal});   // -> VerifyFactor
//   const assertion = await passkeyd.get(challenge.options, {signal});    // -> ApproveChallenge
//
// A standalone ES module: no build step, no dependencies, nothing loaded from elsewhere. It
// uses the browser's own JSON support (PublicKeyCredential.parseCreationOptionsFromJSON,
// parseRequestOptionsFromJSON, credential.toJSON()) where present, and an equivalent
// base64url conversion where not. Errors are the browser's DOMExceptions, passed through,
// so a page can tell them apart by `name`: InvalidStateError (already registered),
// NotAllowedError (cancelled, or the user could not be verified), TimeoutError (the
// deadline() below), AbortError (aborted by the page), NotSupportedError (no WebAuthn).

const PKC = () => globalThis.PublicKeyCredential;

/** True when this browser can run passkey ceremonies at all. */
export function supported() {
  return typeof PKC() === "function" && typeof navigator?.credentials?.create === "function";
}

/** True when the browser can offer passkeys in a username field's autofill
 * (`<input autocomplete="username webauthn">`), i.e. get(..., {mediation: "conditional"}). */
export async function autofillSupported() {
  if (!supported() || typeof PKC().isConditionalMediationAvailable !== "function") {
    return false;
  }
  try {
    return await PKC().isConditionalMediationAvailable();
  } catch {
    return false;
  }
}

/** An AbortSignal that fires after `ms` with a TimeoutError, or earlier with `signal`. A
 * ceremony left without one can wait forever: a browser with no usable authenticator keeps
 * the request open until the options' own timeout (ten minutes for passkeyd). */
export function deadline(ms, signal) {
  const controller = new AbortController();
  const timer = setTimeout(
    () => controller.abort(new DOMException("The passkey request took too long.", "TimeoutError")),
    ms,
  );
  const stop = () => clearTimeout(timer);
  controller.signal.addEventListener("abort", stop, {once: true});
  if (signal) {
    if (signal.aborted) {
      controller.abort(signal.reason);
    } else {
      signal.addEventListener("abort", () => controller.abort(signal.reason), {once: true});
    }
  }
  return controller.signal;
}

// --- base64url <-> ArrayBuffer (the fallback) ------------------------------------------------

export function toBase64url(buffer) {
  const bytes = ArrayBuffer.isView(buffer)
    ? new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength)
    : new Uint8Array(buffer);
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function fromBase64url(text) {
  const base64 = text.replace(/-/g, "+").replace(/_/g, "/");
  const binary = atob(base64 + "=".repeat((4 - (base64.length % 4)) % 4));
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes.buffer;
}

function descriptors(list) {
  return (list ?? []).map((d) => ({...d, id: fromBase64url(d.id)}));
}

// --- options JSON -> what navigator.credentials takes ----------------------------------------

// passkeyd and Verify wrap the WebAuthn options as {publicKey: {...}}; accept either form.
function inner(options) {
  if (!options || typeof options !== "object") {
    throw new TypeError("passkeyd: options must be the `options` object of the API's answer");
  }
  return options.publicKey ?? options;
}

/** PublicKeyCredentialCreationOptions from a factor's `options`. */
export function creationOptions(options) {
  const json = inner(options);
  if (typeof PKC()?.parseCreationOptionsFromJSON === "function") {
    return PKC().parseCreationOptionsFromJSON(json);
  }
  return {
    ...json,
    challenge: fromBase64url(json.challenge),
    user: {...json.user, id: fromBase64url(json.user.id)},
    excludeCredentials: descriptors(json.excludeCredentials),
  };
}

/** PublicKeyCredentialRequestOptions from a challenge's `options`. */
export function requestOptions(options) {
  // `rp` rides along in Verify's request options for its quickstart; WebAuthn has no such
  // request member, so leave it out rather than rely on the browser ignoring it.
  const {rp: _rp, ...json} = inner(options);
  if (typeof PKC()?.parseRequestOptionsFromJSON === "function") {
    return PKC().parseRequestOptionsFromJSON(json);
  }
  return {
    ...json,
    challenge: fromBase64url(json.challenge),
    allowCredentials: descriptors(json.allowCredentials),
  };
}

// --- the credential -> JSON (RegistrationResponseJSON / AuthenticationResponseJSON) ----------

function optionalBuffer(read) {
  try {
    const value = read();
    return value ? toBase64url(value) : undefined;
  } catch {
    return undefined; // e.g. getPublicKey() for an algorithm the browser cannot export
  }
}

/** The JSON of a PublicKeyCredential, as credential.toJSON() gives it. */
export function credentialJSON(credential) {
  if (typeof credential.toJSON === "function") {
    return credential.toJSON();
  }
  const r = credential.response;
  const response = {clientDataJSON: toBase64url(r.clientDataJSON)};
  if (r.attestationObject) {
    response.attestationObject = toBase64url(r.attestationObject);
    response.transports = typeof r.getTransports === "function" ? r.getTransports() : [];
    response.authenticatorData = optionalBuffer(() => r.getAuthenticatorData?.());
    response.publicKey = optionalBuffer(() => r.getPublicKey?.());
    if (typeof r.getPublicKeyAlgorithm === "function") {
      response.publicKeyAlgorithm = r.getPublicKeyAlgorithm();
    }
  } else {
    response.authenticatorData = toBase64url(r.authenticatorData);
    response.signature = toBase64url(r.signature);
    response.userHandle = r.userHandle ? toBase64url(r.userHandle) : null;
  }
  return {
    id: credential.id,
    rawId: toBase64url(credential.rawId),
    type: credential.type,
    authenticatorAttachment: credential.authenticatorAttachment ?? null,
    response,
    clientExtensionResults: credential.getClientExtensionResults?.() ?? {},
  };
}

// --- the ceremonies ----------------------------------------------------------------------------

function requireSupport() {
  if (!supported()) {
    throw new DOMException("This browser does not support passkeys.", "NotSupportedError");
  }
}

/** Create a passkey with a factor's `options`; resolves to the JSON for VerifyFactor. */
export async function create(options, {signal} = {}) {
  requireSupport();
  const credential = await navigator.credentials.create({
    publicKey: creationOptions(options),
    signal,
  });
  return credentialJSON(credential);
}

/** Sign in with a challenge's `options`; resolves to the JSON for ApproveChallenge.
 * `mediation: "conditional"` offers the passkeys in autofill instead of a dialog (see
 * autofillSupported()); such a request waits for the user, so give it a signal to end it. */
export async function get(options, {signal, mediation} = {}) {
  requireSupport();
  const request = {publicKey: requestOptions(options), signal};
  if (mediation) request.mediation = mediation;
  const credential = await navigator.credentials.get(request);
  return credentialJSON(credential);
}

// --- telling the passkey provider what the site accepts (WebAuthn L3 §5.1.10) ----------------
// A passkey deleted on the server stays on the device, offered at every sign-in, until the
// site says so. Both resolve to whether the browser took the signal (false where it has no
// such signal: nothing else to do there).

async function signal(method, payload) {
  const call = PKC()?.[method];
  if (typeof call !== "function") return false;
  try {
    await call.call(PKC(), payload);
    return true;
  } catch {
    return false;
  }
}

/** After ApproveChallenge answered 60390 with `details.signal_unknown_credential` true (the
 * passkey is a user's of this service, who no longer has it): the provider may hide or
 * remove it. Not after any 60390: a passkey made for another service with the same RP id is
 * unknown here too, and works there. `credentialId` is the assertion's `id` (base64url). */
export function signalUnknownPasskey(rpId, credentialId) {
  return signal("signalUnknownCredential", {rpId, credentialId});
}

/** Every passkey the site still accepts for one user, e.g. on the account page after a
 * delete: `userId` is the `user.id` of the creation options (the base64url of the entity
 * SID), `credentialIds` the factors' `metadata.credential_id`. */
export function signalAcceptedPasskeys(rpId, userId, credentialIds) {
  return signal("signalAllAcceptedCredentials", {
    rpId,
    userId,
    allAcceptedCredentialIds: credentialIds,
  });
}
