// demo.js: the demo's pages. Each page names itself in <body data-page>; the ceremonies run
// through passkeyd.js, and every sentence shown comes from the server's one table, which the
// page carries as JSON in #messages. The page's state is mirrored in data attributes
// (data-state, data-autofill) so that a person's tools, and tests, can see what it is doing.
import * as passkeyd from "./passkeyd.js";

const body = document.body;
const messages = JSON.parse(document.getElementById("messages").textContent);
const deadlineMs = Number(body.dataset.ceremonyTimeoutMs) || 120000;
const errorBox = document.getElementById("error");
const progressBox = document.getElementById("progress");

/** An error whose message is already a sentence for the person. */
class Sentence extends Error {}

function sentenceFor(error, kind) {
  if (error instanceof Sentence) return error.message;
  const table = messages.browser[kind];
  if (!passkeyd.supported()) return table.Unsupported;
  const uvRequired = body.dataset.userVerification === "required";
  if (error?.name === "NotAllowedError" && uvRequired) return table["NotAllowedError:uv-required"];
  return table[error?.name] ?? table.default;
}

function showError(text) {
  errorBox.textContent = text;
  errorBox.hidden = false;
  body.dataset.state = "error";
}

// A ceremony's button is disabled while it runs, which takes the keyboard focus from it:
// give it back, to the field the person was in or the button they used, so that the next
// Tab does not start from the top of the page.
function restoreFocus(element) {
  if (element && element !== document.body && document.contains(element)) {
    element.focus();
  } else {
    errorBox.tabIndex = -1;
    errorBox.focus();
  }
}

function showProgress(text) {
  progressBox.textContent = text ?? "";
  progressBox.hidden = !text;
}

function clearMessages() {
  errorBox.hidden = true;
  errorBox.textContent = "";
  document.getElementById("notice")?.remove();
}

function setButtons(enabled) {
  for (const button of document.querySelectorAll("button[data-ceremony]")) {
    button.disabled = !enabled;
  }
}

async function post(path, payload) {
  let response;
  try {
    response = await fetch(path, {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify(payload ?? {}),
      credentials: "same-origin",
    });
  } catch {
    throw new Sentence(messages.app.network);
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const refusal = new Sentence(data.error || messages.app.unexpected);
    refusal.unknownCredential = data.unknown_credential === true;
    throw refusal;
  }
  return data;
}

// One ceremony at a time: `steps` resolves to the server's {redirect}, or throws. Resolves
// to whether it succeeded (undefined when another was running); once it has, the buttons
// stay off while the next page loads (a second press meanwhile would start another).
let busy = false;
async function ceremony(kind, steps) {
  if (busy) return undefined;
  busy = true;
  const focused = document.activeElement;
  setButtons(false);
  clearMessages();
  body.dataset.state = "busy";
  showProgress(messages.progress.preparing);
  try {
    const result = await steps();
    body.dataset.state = "done";
    location.assign(result.redirect);
    return true;
  } catch (error) {
    showError(sentenceFor(error, kind));
    setButtons(true);
    busy = false;
    restoreFocus(focused);
    return false;
  } finally {
    showProgress(null);
  }
}

function register(optionsPath, payload) {
  return ceremony("create", async () => {
    const {options} = await post(optionsPath, payload);
    showProgress(messages.progress.create);
    const credential = await passkeyd.create(options, {signal: passkeyd.deadline(deadlineMs)});
    showProgress(messages.progress.checking);
    return post("/api/passkeys/verify", {credential});
  });
}

function signupPage() {
  const form = document.getElementById("signup-form");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    register("/api/signup/options", {name: form.elements.name.value});
  });
}

// A sign-in passkeyd refused because it knows no such passkey (deleted, here or in another
// tab): tell the browser, whose passkey provider then stops offering it.
async function approve(credential) {
  showProgress(messages.progress.checking);
  try {
    return await post("/api/signin/approve", {credential});
  } catch (error) {
    if (error.unknownCredential) passkeyd.signalUnknownPasskey(body.dataset.rpId, credential.id);
    throw error;
  }
}

function accountPage() {
  // A refused rename or delete is answered with this page at the form's POST address:
  // show it as /account, so that a reload does not post the form again.
  if (location.pathname !== "/account") history.replaceState(null, "", "/account");
  // The passkeys this account still has: the provider hides any other it holds for it.
  const accepted = document.getElementById("accepted");
  if (accepted) {
    const ids = accepted.dataset.credentialIds.split(" ").filter(Boolean);
    passkeyd.signalAcceptedPasskeys(body.dataset.rpId, accepted.dataset.userId, ids);
  }
  document.getElementById("add-passkey").addEventListener("click", () => {
    register("/api/passkeys/options", {});
  });
  // Deleting the last passkey leaves no way to sign in: ask first, and say so to the server,
  // which refuses to delete the last one unasked (a page from before another tab deleted
  // the others does not know it is the last).
  for (const form of document.querySelectorAll("form.delete[data-last]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(messages.app.confirm_delete_last)) {
        event.preventDefault();
        return;
      }
      const confirmed = document.createElement("input");
      Object.assign(confirmed, {type: "hidden", name: "last", value: "confirmed"});
      form.append(confirmed);
    });
  }
}

function signinPage() {
  const form = document.getElementById("signin-form");
  let autofill = null; // {controller, done} while an autofill (conditional) request is open
  let buttonUsed = false;

  // Offer passkeys in the name field's autofill for as long as the page is open: each
  // request lasts as long as its challenge, then a fresh one takes over.
  async function offerInAutofill(controller) {
    while (!controller.signal.aborted) {
      let options;
      try {
        ({options} = await post("/api/signin/options", {}));
      } catch (error) {
        if (!controller.signal.aborted) showError(sentenceFor(error, "get"));
        return;
      }
      let credential;
      try {
        const signal = passkeyd.deadline(options.publicKey.timeout, controller.signal);
        const asked = passkeyd.get(options, {mediation: "conditional", signal});
        // Said once the request is with the browser (get() makes it before its first await):
        // a test that lets its authenticator answer once autofill waits must find it asked.
        body.dataset.autofill = "waiting";
        credential = await asked;
      } catch (error) {
        if (controller.signal.aborted) return; // a button took over
        if (error?.name === "TimeoutError") continue; // the challenge expired
        body.dataset.autofill = "failed";
        // Nobody asked for this request: a refusal or a cancel (no passkey here, the
        // browser declined autofill) is no error to show. Anything else may explain why
        // signing in cannot work on this page (e.g. the wrong address).
        if (!["NotAllowedError", "AbortError"].includes(error?.name)) {
          showError(sentenceFor(error, "get"));
        }
        return;
      }
      body.dataset.autofill = "used";
      const done = await ceremony("get", () => approve(credential));
      // Refused: passkeys are offered again when the person comes back to the name field
      // (at once, an authenticator that answers without being asked would loop).
      if (done === false) offerAgainOnFocus();
      return;
    }
  }

  // A browser runs one WebAuthn request at a time: end the autofill one before a button's.
  async function stopAutofill() {
    buttonUsed = true;
    if (!autofill) return;
    autofill.controller.abort(new DOMException("A sign-in button was used.", "AbortError"));
    await autofill.done;
    autofill = null;
    body.dataset.autofill = "stopped";
  }

  async function signIn(name) {
    if (busy) return;
    await stopAutofill();
    if (busy) return; // a second press, while the first waited for the autofill request
    const done = await ceremony("get", async () => {
      const {options} = await post("/api/signin/options", name ? {name} : {});
      showProgress(messages.progress.get);
      const credential = await passkeyd.get(options, {signal: passkeyd.deadline(deadlineMs)});
      return approve(credential);
    });
    if (done === false) startAutofill(); // cancelled or refused: autofill offers passkeys again
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    signIn(form.elements.name.value.trim());
  });
  document.getElementById("signin-passkey").addEventListener("click", () => signIn(""));

  let autofillAvailable = false;
  function startAutofill() {
    if (!autofillAvailable || autofill || busy) return;
    const controller = new AbortController();
    autofill = {controller, done: offerInAutofill(controller)};
  }

  function offerAgainOnFocus() {
    autofill = null; // (this request has ended)
    body.dataset.autofill = "stopped";
    form.elements.name.addEventListener("focus", startAutofill, {once: true});
  }

  passkeyd.autofillSupported().then((available) => {
    autofillAvailable = available;
    if (!available || buttonUsed) {
      body.dataset.autofill = available ? "stopped" : "unavailable";
      return;
    }
    startAutofill();
  });
}

// WebAuthn refuses a page whose origin the service does not list (127.0.0.1, where the
// relying party is localhost: the address uvicorn's start-up line gives): say where to go
// at once, with a link, rather than "does not match" after the first ceremony.
function atTheSiteAddress() {
  const origins = (body.dataset.origins || "").split(" ").filter(Boolean);
  if (!origins.length || origins.includes(location.origin)) return true;
  showError(messages.app.wrong_address);
  const link = document.createElement("a");
  link.href = origins[0] + location.pathname + location.search;
  link.textContent = link.href;
  errorBox.append(" ", link);
  return false;
}

if (!atTheSiteAddress()) {
  setButtons(false); // no ceremony can work here
} else if (!passkeyd.supported()) {
  showError(messages.browser.get.Unsupported);
  setButtons(false);
} else {
  ({signin: signinPage, signup: signupPage, account: accountPage})[body.dataset.page]?.();
}
